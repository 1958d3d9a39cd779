//! The sandbox: every build step runs here, in fresh Linux namespaces, over an
//! overlay of its layer trees, with nothing of the host visible
//! (`DESIGN.md` decision 4, issue #4).
//!
//! What it owns: turning a [`Spec`] (plain data: paths, argv, env, user,
//! network switch, extra mounts) into one supervised run, and turning the
//! step's overlay upper dir into a change set ([`capture()`]).
//! What it must never do: unshare in the calling process (it may be running
//! rayon threads; `unshare(CLONE_NEWUSER)` fails with `EINVAL` there), touch the
//! store (it gets paths), print (it returns values), or leave anything mounted
//! on the host or running after [`run`] returns.
//!
//! # How a run goes
//! 1. [`run`] (this process) computes the id map ([`IdMap::for_invoker`]) and
//!    the mount plan ([`plan::plan`], data, generated `/etc/hosts`,
//!    `/etc/hostname` and `/etc/resolv.conf` included), and spawns the
//!    helper binary as `kiln __sandbox-init`, sending it the request as JSON on
//!    its stdin. Reports come back as JSON lines on fd 3.
//! 2. The helper ([`init`]) is a fresh single-threaded process: it clones
//!    PID 1 straight into new user, mount, pid, uts, ipc, cgroup (and, unless
//!    the network is on, net) namespaces, writes PID 1's `uid_map`/`gid_map`
//!    from the parent user namespace (a process may only map its own id into
//!    its own namespace) and lets it go.
//! 3. PID 1 mounts the plan (a scratch tmpfs, a stub layer holding the mount
//!    points, the overlay, /proc, /dev, the generated /etc files), pivots into
//!    the overlay, resolves the user, and forks the command. It reaps, forwards
//!    signals and, when the command ends, reports its status and exits; the
//!    kernel then kills everything left in the pid namespace. The mount
//!    namespace dies with its last process, so nothing stays mounted. The
//!    helper enforces the time limit (SIGKILL to PID 1).
//!
//! Not done (yet): seccomp, cgroup limits, `/sys` (not mounted at all), and
//! mount targets under a symlinked parent dir in the image (the stub layer
//! shadows such a parent with a real dir).
//!
//! # Ids on disk
//! As host root the sandbox maps inside ids `0..65536` to host ids
//! `HOST_ROOT_ID_BASE..+65536` (see [`IdMap`]). Layer trees (lower dirs) must
//! therefore be owned on disk by the *shifted* ids, as rootless podman stores
//! them: [`IdMap::shift_tree`] does it. [`capture()`] reports inside ids.
//! Unprivileged, the invoking user is root inside, so trees are owned by that
//! user. Not chosen: idmapped lower mounts (`mount_setattr(MOUNT_ATTR_IDMAP)`
//! under overlayfs), which would let trees keep inside ids on disk but need
//! host root (CAP_SYS_ADMIN over ext4/xfs), an `open_tree` + `mount_setattr`
//! per layer on every step's start-up path, and a second on-disk convention
//! for the unprivileged case. TODO(#4): revisit for stores shared with other tools.

pub mod capture;
mod idmap;
pub mod init;
pub mod plan;
mod sys;
pub mod user;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use capture::{Change, ChangeKind, ChangeSet, capture};
pub use idmap::{HOST_ROOT_ID_BASE, ID_RANGE_SIZE, IdMap, IdRange, enter_own_user_namespace};
pub use plan::MountOp;

/// The hostname every step sees (BuildKit's, so scripts that look at it behave
/// as under `docker build`).
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// Docker's default `PATH`, for callers that compute a step's environment.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The host's CA bundle, bind-mounted read-only for network steps.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One step to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The kiln executable that serves as the helper (`kiln __sandbox-init`):
    /// `std::env::current_exe()` from the CLI, `env!("CARGO_BIN_EXE_kiln")` in tests.
    pub helper: PathBuf,
    /// The read-only layer trees, **bottom first** (base image first, as in an
    /// OCI manifest). May be empty (the step starts from an empty root).
    pub lower: Vec<PathBuf>,
    /// Where the step's writes go.
    pub upper: Upper,
    /// The command; `argv[0]` is looked up in `PATH` (from `env`, else
    /// [`DEFAULT_PATH`]) when it has no `/`.
    pub argv: Vec<String>,
    /// The environment, exactly, in order: the sandbox adds only `HOME` (from
    /// the user's `/etc/passwd` entry, else `/`) when it is not set, as Docker
    /// does, because only the inside can read the rootfs's `/etc/passwd`.
    pub env: Vec<(String, String)>,
    /// The working directory inside (absolute); created (owned by root, 0755)
    /// if missing, as Docker's WORKDIR does, and then part of the change set.
    pub cwd: PathBuf,
    /// `USER`: `name[:group]` or `uid[:gid]`, resolved inside through the
    /// rootfs's `/etc/passwd` and `/etc/group`. Empty means root.
    pub user: String,
    /// The hostname (normally [`DEFAULT_HOSTNAME`]).
    pub hostname: String,
    /// Off (the default for every step): a fresh network namespace with only
    /// loopback up. On (fetch steps): the host's network, with the host's
    /// `/etc/resolv.conf` and CA bundle bind-mounted read-only.
    pub network: Network,
    /// Extra mounts (RUN --mount and the like), applied in order.
    pub mounts: Vec<Mount>,
    /// Kill the step (every process in it) after this long.
    pub time_limit: Option<Duration>,
    /// Where the command's stdout and stderr go (see [`run_streaming`] for a callback).
    #[serde(skip)]
    pub output: Output,
}

impl Spec {
    /// A spec with the defaults: no lower dirs, cwd `/`, root, the default
    /// hostname, network off, no mounts, no time limit, output collected.
    pub fn new(helper: PathBuf, upper: Upper, argv: Vec<String>) -> Spec {
        Spec {
            helper,
            lower: Vec::new(),
            upper,
            argv,
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            user: String::new(),
            hostname: DEFAULT_HOSTNAME.to_owned(),
            network: Network::Off,
            mounts: Vec::new(),
            time_limit: None,
            output: Output::Collect,
        }
    }
}

/// Where a step's writes go: the overlay's upper (and work) dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Upper {
    /// Host directories, for a step whose change set is captured
    /// ([`capture()`] walks `upper` afterwards).
    Dir {
        /// The upper dir: empty, existing. Its root takes the owner and mode
        /// of the top lower dir's root (it is the step's `/`).
        upper: PathBuf,
        /// The overlay work dir: empty, existing, on the same filesystem.
        work: PathBuf,
    },
    /// A tmpfs inside the sandbox that dies with it (`kiln run`): nothing is
    /// written on the host.
    Ephemeral,
}

/// The network switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Network {
    /// A fresh network namespace with only loopback.
    #[default]
    Off,
    /// The host's network (fetch steps only).
    Host,
}

/// An extra mount: where inside, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside; a missing mount point is created as a stub and
    /// left out of the change set.
    pub target: PathBuf,
    /// What is mounted there.
    pub kind: MountKind,
}

/// What an extra [`Mount`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host file or directory.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes (the kernel's default, half of RAM, if none).
        size: Option<u64>,
    },
    /// A persistent cache directory on the host, read-write. If the caller
    /// owns it, [`run`] gives it to root inside (the shifted root id).
    Cache {
        /// The host directory.
        source: PathBuf,
    },
    /// A secret file on the host, read-only.
    Secret {
        /// The host file.
        source: PathBuf,
    },
}

/// Where the command's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Into [`Outcome::stdout`] and [`Outcome::stderr`].
    #[default]
    Collect,
    /// Straight to this process's stdout and stderr (`kiln run`).
    Inherit,
    /// Discarded.
    Null,
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// The time limit ran out and everything was killed.
    TimedOut,
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The shell's convention: the code, or 128 + signal, or 124 (timeout(1)).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => 128 + sig,
            ExitStatus::TimedOut => 124,
        }
    }
}

/// What a run gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How the command ended.
    pub status: ExitStatus,
    /// Collected stdout (with [`Output::Collect`]).
    pub stdout: Vec<u8>,
    /// Collected stderr (with [`Output::Collect`]).
    pub stderr: Vec<u8>,
    /// The id map the step ran under (capture needs it to report inside ids).
    pub id_map: IdMap,
}

/// Everything that can go wrong in the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec was unusable.
    #[error("invalid sandbox spec: {reason}")]
    InvalidSpec {
        /// What was wrong.
        reason: String,
    },
    /// A host-side file operation failed.
    #[error("failed to {op} {}", path.display())]
    Host {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The helper binary could not be started.
    #[error("failed to start the sandbox helper {}", helper.display())]
    Spawn {
        /// The helper binary.
        helper: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the child's id maps failed.
    #[error("failed to map ids into the sandbox ({what})")]
    IdMap {
        /// Which map, and how.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A step of the sandbox setup failed inside (a mount, the root switch...).
    #[error("failed to set up the sandbox: {op}")]
    Setup {
        /// The operation (syscall and paths).
        op: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command does not exist in the root filesystem.
    #[error("command `{command}` not found in the root filesystem")]
    CommandNotFound {
        /// The command (`argv[0]`).
        command: String,
    },
    /// The command exists but could not be executed.
    #[error("failed to execute `{command}`")]
    Exec {
        /// The command (`argv[0]`).
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// USER names no user of the rootfs's `/etc/passwd`.
    #[error("unknown user `{user}`: no such entry in the root filesystem's /etc/passwd")]
    UnknownUser {
        /// The user as given.
        user: String,
    },
    /// USER names no group of the rootfs's `/etc/group`.
    #[error("unknown group `{group}`: no such entry in the root filesystem's /etc/group")]
    UnknownGroup {
        /// The group as given.
        group: String,
    },
    /// The user's ids are outside the id map (not root, no subordinate ids).
    #[error("user `{user}` (uid {uid}, gid {gid}) is not mapped into the sandbox")]
    UnmappedUser {
        /// The user as given.
        user: String,
        /// Its uid.
        uid: u32,
        /// Its gid.
        gid: u32,
    },
    /// The helper broke the protocol or died without a report.
    #[error("the sandbox helper failed: {detail}")]
    Helper {
        /// What happened.
        detail: String,
    },
    /// Walking the upper dir failed.
    #[error("failed to capture {}", path.display())]
    Capture {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file in the upper dir is owned by a host id outside the map.
    #[error("{} is owned by host id {id}, outside the sandbox's id map", path.display())]
    UnmappedOwner {
        /// The host path.
        path: PathBuf,
        /// The host uid or gid.
        id: u32,
    },
}

impl SandboxError {
    /// A `hint:` line for the CLI, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            SandboxError::UnmappedUser { .. } => Some(
                "as a normal user only your own uid is mapped (as root inside); install `newuidmap` \
                 (Debian: `uidmap`) and give yourself ranges in /etc/subuid and /etc/subgid"
                    .to_owned(),
            ),
            SandboxError::CommandNotFound { command } if command == "/bin/sh" => Some(
                "shell-form commands need /bin/sh in the image; use the exec form (JSON array)"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// What the parent sends the helper (one JSON line on its stdin).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub spec: Spec,
    pub plan: Vec<MountOp>,
    pub id_map: IdMap,
}

/// What the helper sends back (JSON lines on fd 3).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// A mount point was created in the overlay (inside path), with the
    /// parent's mtime before (seconds, nanoseconds) so it can be put back.
    Stub {
        path: PathBuf,
        parent_mtime: (i64, i64),
    },
    /// The command ended.
    Exit(ExitStatus),
    /// The step failed before or at exec.
    Error(WireError),
}

/// A [`SandboxError`] as it crosses the pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    Setup { op: String, errno: i32 },
    IdMap { what: String, errno: i32 },
    CommandNotFound { command: String },
    Exec { command: String, errno: i32 },
    UnknownUser { user: String },
    UnknownGroup { group: String },
    UnmappedUser { user: String, uid: u32, gid: u32 },
    Other { detail: String },
}

impl From<WireError> for SandboxError {
    fn from(e: WireError) -> Self {
        let io = std::io::Error::from_raw_os_error;
        match e {
            WireError::Setup { op, errno } => SandboxError::Setup {
                op,
                source: io(errno),
            },
            WireError::IdMap { what, errno } => SandboxError::IdMap {
                what,
                source: io(errno),
            },
            WireError::CommandNotFound { command } => SandboxError::CommandNotFound { command },
            WireError::Exec { command, errno } => SandboxError::Exec {
                command,
                source: io(errno),
            },
            WireError::UnknownUser { user } => SandboxError::UnknownUser { user },
            WireError::UnknownGroup { group } => SandboxError::UnknownGroup { group },
            WireError::UnmappedUser { user, uid, gid } => {
                SandboxError::UnmappedUser { user, uid, gid }
            }
            WireError::Other { detail } => SandboxError::Helper { detail },
        }
    }
}

/// Runs one step and waits for it; output goes where `spec.output` says.
pub fn run(spec: &Spec) -> Result<Outcome, SandboxError> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let collect = spec.output == Output::Collect;
    let mut sink = |stream: Stream, bytes: &[u8]| {
        if collect {
            match stream {
                Stream::Stdout => stdout.extend_from_slice(bytes),
                Stream::Stderr => stderr.extend_from_slice(bytes),
            }
        }
    };
    let mut outcome = run_inner(spec, spec.output, &mut sink)?;
    outcome.stdout = stdout;
    outcome.stderr = stderr;
    Ok(outcome)
}

/// Runs one step, handing its output to `sink` as it comes (for the build log
/// and progress view); `spec.output` is ignored.
pub fn run_streaming(
    spec: &Spec,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    run_inner(spec, Output::Collect, sink)
}

fn host_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Host { op, path, source }
}

fn validate(spec: &Spec) -> Result<(), SandboxError> {
    let invalid = |reason: String| Err(SandboxError::InvalidSpec { reason });
    if spec.argv.is_empty() {
        return invalid("empty command".to_owned());
    }
    if !spec.cwd.is_absolute() {
        return invalid(format!(
            "working directory {} is not absolute",
            spec.cwd.display()
        ));
    }
    for m in &spec.mounts {
        if !m.target.is_absolute() {
            return invalid(format!(
                "mount target {} is not absolute",
                m.target.display()
            ));
        }
    }
    for (k, _) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return invalid(format!("bad environment variable name `{k}`"));
        }
    }
    Ok(())
}

fn run_inner(
    spec: &Spec,
    output: Output,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    validate(spec)?;
    let id_map = IdMap::for_invoker();
    let (root_uid, root_gid) = (id_map.host_uid(0), id_map.host_gid(0));

    // The step's `/` is the upper dir's root: give it the top layer's root
    // owner and mode (a tempdir's 0700 would lock every non-root user out).
    let (mode, uid, gid) = match spec.lower.last() {
        Some(top) => {
            let m = std::fs::metadata(top).map_err(host_err("stat", top))?;
            (m.mode() & 0o7777, Some(m.uid()), Some(m.gid()))
        }
        None => (0o755, root_uid, root_gid),
    };
    if let Upper::Dir { upper, work } = &spec.upper {
        for dir in [upper, work] {
            std::os::unix::fs::chown(dir, uid, gid).map_err(host_err("chown", dir))?;
        }
        std::fs::set_permissions(upper, std::fs::Permissions::from_mode(mode))
            .map_err(host_err("chmod", upper))?;
    }

    // A fresh cache dir (owned by the caller) belongs to root inside, as
    // BuildKit's cache mounts do by default.
    let me = nix::unistd::geteuid().as_raw();
    for m in &spec.mounts {
        if let MountKind::Cache { source } = &m.kind {
            let meta = std::fs::metadata(source).map_err(host_err("stat", source))?;
            if meta.uid() == me && root_uid != Some(me) {
                std::os::unix::fs::chown(source, root_uid, root_gid)
                    .map_err(host_err("chown", source))?;
            }
        }
    }

    let plan = plan::plan(spec, Path::new(HOST_CA_BUNDLE).exists());

    let request = Request {
        spec: spec.clone(),
        plan,
        id_map: id_map.clone(),
    };
    let (report_read, report_write) =
        std::io::pipe().map_err(host_err("create a pipe for", &spec.helper))?;
    let mut helper = if sys::single_threaded() {
        // A single-threaded caller (`kiln run`) forks the helper instead of
        // exec'ing it: the forked child is as fresh and single-threaded as
        // the exec'd one would be, and one program start is saved.
        fork_helper(spec, &request, output, report_write)?
    } else {
        spawn_helper(spec, &request, output, report_write)?
    };
    let result = supervise(
        report_read,
        helper.stdout.take(),
        helper.stderr.take(),
        sink,
    );
    if result.is_err() {
        // The helper's PID 1 dies with it (PR_SET_PDEATHSIG), and with PID 1 the namespace.
        helper.kill();
    }
    let waited = helper.wait();
    let (status, stubs) = result?;
    let status = match status {
        Some(Ok(status)) => status,
        Some(Err(e)) => return cleanup_then(spec, &stubs, Err(e.into())),
        None => {
            let detail = match waited {
                Ok(s) => format!("it exited ({s}) without a report"),
                Err(e) => format!("waiting for it failed: {e}"),
            };
            return cleanup_then(spec, &stubs, Err(SandboxError::Helper { detail }));
        }
    };
    cleanup_then(
        spec,
        &stubs,
        Ok(Outcome {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
            id_map,
        }),
    )
}

/// The helper process: exec'd (`kiln __sandbox-init`) or forked.
struct HelperProcess {
    /// An exec'd helper, or the pid of a forked one.
    process: Result<std::process::Child, nix::unistd::Pid>,
    stdout: Option<std::io::PipeReader>,
    stderr: Option<std::io::PipeReader>,
}

impl HelperProcess {
    fn kill(&mut self) {
        match &mut self.process {
            Ok(child) => {
                let _ = child.kill();
            }
            Err(pid) => {
                let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// Waits for it; describes how it ended.
    fn wait(&mut self) -> std::io::Result<String> {
        match &mut self.process {
            Ok(child) => child.wait().map(|s| s.to_string()),
            Err(pid) => loop {
                match nix::sys::wait::waitpid(*pid, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(status) => break Ok(format!("{status:?}")),
                    Err(e) => break Err(e.into()),
                }
            },
        }
    }
}

/// Where the helper's stdout and stderr go, and the parent's read ends.
type Stdio3 = (
    Option<(std::io::PipeReader, std::io::PipeWriter)>,
    Option<(std::io::PipeReader, std::io::PipeWriter)>,
);

fn output_pipes(spec: &Spec, output: Output) -> Result<Stdio3, SandboxError> {
    if output != Output::Collect {
        return Ok((None, None));
    }
    let pipe = || std::io::pipe().map_err(host_err("create a pipe for", &spec.helper));
    Ok((Some(pipe()?), Some(pipe()?)))
}

/// Starts `kiln __sandbox-init` with the request on its stdin and the
/// report pipe on fd 3.
fn spawn_helper(
    spec: &Spec,
    request: &Request,
    output: Output,
    report_write: std::io::PipeWriter,
) -> Result<HelperProcess, SandboxError> {
    let mut line = serde_json::to_vec(request).expect("a request always serializes");
    line.push(b'\n');
    let mut cmd = Command::new(&spec.helper);
    cmd.arg(init::SUBCOMMAND)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped());
    match output {
        Output::Inherit => cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit()),
        Output::Null => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        Output::Collect => cmd.stdout(Stdio::piped()).stderr(Stdio::piped()),
    };
    let mut child =
        sys::spawn_with_report_fd(&mut cmd, OwnedFd::from(report_write)).map_err(|source| {
            SandboxError::Spawn {
                helper: spec.helper.clone(),
                source,
            }
        })?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    // The helper reads the whole request before it writes anything, so
    // this cannot block on a full stdout pipe.
    if let Err(e) = stdin.write_all(&line) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SandboxError::Helper {
            detail: format!("lost the helper: {e}"),
        });
    }
    drop(stdin);
    let stdout = child
        .stdout
        .take()
        .map(|o| std::io::PipeReader::from(OwnedFd::from(o)));
    let stderr = child
        .stderr
        .take()
        .map(|e| std::io::PipeReader::from(OwnedFd::from(e)));
    Ok(HelperProcess {
        process: Ok(child),
        stdout,
        stderr,
    })
}

/// Forks the helper (this process must be single-threaded): the child sets
/// up its stdout and stderr, dies with this thread (PR_SET_PDEATHSIG), and
/// does the helper's work on `request` directly.
fn fork_helper(
    spec: &Spec,
    request: &Request,
    output: Output,
    report_write: std::io::PipeWriter,
) -> Result<HelperProcess, SandboxError> {
    let (out, err) = output_pipes(spec, output)?;
    // Nothing of ours may be flushed twice (the child exits with `_exit`,
    // but PID 1, forked from it, exits through std).
    let _ = std::io::stdout().flush();
    let parent = nix::unistd::getpid();
    let forked = sys::fork().map_err(|source| SandboxError::Spawn {
        helper: spec.helper.clone(),
        source,
    })?;
    match forked {
        sys::Forked::Child => {
            let code = match sys::redirect_helper_stdio(
                parent,
                output,
                out.as_ref().map(|(_, w)| w.as_fd()),
                err.as_ref().map(|(_, w)| w.as_fd()),
            ) {
                Ok(()) => {
                    drop(out);
                    drop(err);
                    init::forked_helper(request, std::fs::File::from(OwnedFd::from(report_write)))
                }
                Err(_) => 2,
            };
            sys::exit_now(code)
        }
        sys::Forked::Parent(pid) => {
            drop(report_write);
            Ok(HelperProcess {
                process: Err(pid),
                stdout: out.map(|(r, _)| r),
                stderr: err.map(|(r, _)| r),
            })
        }
    }
}

/// Removes the mount-point stubs from the upper dir and puts their parents'
/// mtimes back (BuildKit's mount stub cleaner), then returns `result`.
fn cleanup_then(
    spec: &Spec,
    stubs: &[(PathBuf, (i64, i64))],
    result: Result<Outcome, SandboxError>,
) -> Result<Outcome, SandboxError> {
    let Upper::Dir { upper, work } = &spec.upper else {
        return result;
    };
    // A `volatile` overlay leaves work/work/incompat/volatile behind, and
    // overlayfs refuses to mount that work dir again until it is gone.
    let _ = std::fs::remove_dir_all(work.join("work/incompat"));
    // Deepest first, so a stub dir is empty when its turn comes.
    for (path, mtime) in stubs.iter().rev() {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let host = upper.join(rel);
        let removed = match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(&host),
            Ok(_) => std::fs::remove_file(&host),
            Err(_) => continue,
        };
        if let Err(source) = removed {
            // Not empty: the step wrote under a stub that was not mounted over; keep it.
            if result.is_ok() && source.raw_os_error() != Some(nix::libc::ENOTEMPTY) {
                return Err(SandboxError::Host {
                    op: "remove mount stub",
                    path: host,
                    source,
                });
            }
            continue;
        }
        if let Some(parent) = host.parent() {
            let _ = sys::set_mtime(parent, *mtime);
        }
    }
    result
}

type Supervised = (
    Option<Result<ExitStatus, WireError>>,
    Vec<(PathBuf, (i64, i64))>,
);

fn supervise(
    report: std::io::PipeReader,
    mut stdout: Option<std::io::PipeReader>,
    mut stderr: Option<std::io::PipeReader>,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Supervised, SandboxError> {
    let helper_gone = |e: std::io::Error| SandboxError::Helper {
        detail: format!("lost the helper: {e}"),
    };
    let mut report = Some(BufReader::new(report));
    let mut status = None;
    let mut stubs = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while report.is_some() || stdout.is_some() || stderr.is_some() {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        if let Some(r) = &report {
            fds.push(PollFd::new(r.get_ref().as_fd(), PollFlags::POLLIN));
            which.push(0);
        }
        if let Some(o) = &stdout {
            fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
            which.push(1);
        }
        if let Some(e) = &stderr {
            fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            which.push(2);
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(helper_gone(e.into())),
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&which)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        for w in ready {
            match w {
                0 => {
                    let r = report.as_mut().expect("polled");
                    let mut line = String::new();
                    let n = r.read_line(&mut line).map_err(helper_gone)?;
                    if n == 0 {
                        report = None;
                        continue;
                    }
                    let msg: Report =
                        serde_json::from_str(&line).map_err(|e| SandboxError::Helper {
                            detail: format!("bad report {line:?}: {e}"),
                        })?;
                    match msg {
                        Report::Stub { path, parent_mtime } => stubs.push((path, parent_mtime)),
                        Report::Exit(s) => {
                            status.get_or_insert(Ok(s));
                        }
                        Report::Error(e) => {
                            status.get_or_insert(Err(e));
                        }
                    }
                }
                1 | 2 => {
                    let (pipe, stream): (&mut dyn Read, Stream) = if w == 1 {
                        (stdout.as_mut().expect("polled"), Stream::Stdout)
                    } else {
                        (stderr.as_mut().expect("polled"), Stream::Stderr)
                    };
                    let n = match pipe.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(helper_gone(e)),
                    };
                    if n == 0 {
                        if w == 1 { stdout = None } else { stderr = None }
                    } else {
                        sink(stream, &buf[..n]);
                    }
                }
                _ => unreachable!("only three pipes are polled"),
            }
        }
    }
    Ok((status, stubs))
}
