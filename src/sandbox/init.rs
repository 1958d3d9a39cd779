//! The child side of the sandbox: `kiln __sandbox-init`.
//!
//! Owns: entering the namespaces (in this fresh single-threaded process),
//! running the mount plan as PID 1 of the new pid namespace, the root switch,
//! resolving USER, exec'ing the command and supervising it (reap, forward
//! signals, time limit). Never prints: every outcome goes to the parent as a
//! JSON line on fd 3 (`Report`); stdout and stderr belong to the
//! command.
//!
//! Process tree: the helper (in the host's namespaces) clones PID 1 into the
//! new ones and writes its id maps; PID 1 forks the command. PID 1 exits when
//! the command does; the kernel then SIGKILLs whatever is left in the
//! namespace (pid_namespaces(7)), and the helper reaps PID 1 and exits: the
//! mount namespace went with PID 1, its last member.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid};

use super::plan::MountOp;
use super::sys::{self, Forked};
use super::{DEFAULT_PATH, ExitStatus, Network, Report, Request, WireError};

/// The hidden subcommand that runs [`main`].
pub const SUBCOMMAND: &str = "__sandbox-init";

/// Docker's default capability set (moby `oci/caps/defaults.go`); everything
/// else leaves the bounding set before the command runs, so a step cannot
/// mount, load modules or change the clock, as under `docker build`.
const DOCKER_CAPS: [u32; 14] = [
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// Signals PID 1 forwards to the command.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

struct Reporter(File);

impl Reporter {
    fn send(&self, report: &Report) {
        let mut line = serde_json::to_vec(report).expect("reports always serialize");
        line.push(b'\n');
        // One write per line: lines stay whole (and under PIPE_BUF they are atomic).
        let _ = (&self.0).write_all(&line);
    }
}

fn setup_err(op: impl Into<String>) -> impl FnOnce(Errno) -> WireError {
    let op = op.into();
    move |e| WireError::Setup {
        op,
        errno: e as i32,
    }
}

fn io_setup_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> WireError {
    let op = op.into();
    move |e| WireError::Setup {
        op,
        errno: e.raw_os_error().unwrap_or(nix::libc::EIO),
    }
}

/// The helper's entry point; returns the process exit code (0 when the
/// command ran, whatever its status: that went over fd 3).
pub fn main() -> i32 {
    let report = match sys::take_report_fd() {
        Ok(f) => Reporter(f),
        Err(_) => return 2,
    };
    match helper(&report) {
        Ok(()) => 0,
        Err(e) => {
            report.send(&Report::Error(e));
            1
        }
    }
}

fn helper(report: &Reporter) -> Result<(), WireError> {
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(io_setup_err("read the request"))?;
    let req: Request = serde_json::from_str(&line).map_err(|e| WireError::Other {
        detail: format!("bad request: {e}"),
    })?;
    drop(input);
    enter(&req, report)
}

/// The helper's work without the exec: for [`super::run`] in a process
/// that is single-threaded, in a child it forked (a fresh single-threaded
/// process too). Reports go to `report`; returns the exit code.
pub(super) fn forked_helper(req: &Request, report: File) -> i32 {
    let report = Reporter(report);
    match enter(req, &report) {
        Ok(()) => 0,
        Err(e) => {
            report.send(&Report::Error(e));
            1
        }
    }
}

/// Clones PID 1 into the new namespaces, maps its ids, lets it go and
/// waits for it (enforcing the time limit).
fn enter(req: &Request, report: &Reporter) -> Result<(), WireError> {
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if req.spec.network == Network::Off {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if !req.id_map.shared {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    // PID 1 starts in the new namespaces straight from clone(2): with
    // CLONE_NEWUSER the user namespace is created first and owns the others.
    // It waits on `go` until we (in the parent user namespace, where writing
    // a full map is allowed) have written its uid_map and gid_map.
    let (go_read, go_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(setup_err("pipe2"))?;
    let pid1 = match sys::clone_into(flags).map_err(io_setup_err(
        "clone(user, mount, pid, uts, ipc, cgroup, net namespaces)",
    ))? {
        Forked::Child => {
            drop(go_write);
            let mut byte = [0u8; 1];
            let mapped = loop {
                match nix::unistd::read(&go_read, &mut byte) {
                    Err(Errno::EINTR) => continue,
                    r => break r == Ok(1),
                }
            };
            if !mapped {
                std::process::exit(1); // the helper reports why
            }
            drop(go_read);
            let code = match pid1(req, report) {
                Ok(status) => {
                    report.send(&Report::Exit(status));
                    0
                }
                Err(e) => {
                    report.send(&Report::Error(e));
                    1
                }
            };
            std::process::exit(code);
        }
        Forked::Parent(pid) => pid,
    };
    drop(go_read);
    if let Err(e) = req.id_map.apply(pid1.as_raw()) {
        let _ = kill(pid1, Signal::SIGKILL);
        let _ = waitpid(pid1, None);
        let errno = match &e {
            super::SandboxError::IdMap { source, .. } => {
                source.raw_os_error().unwrap_or(nix::libc::EIO)
            }
            _ => nix::libc::EIO,
        };
        let what = match e {
            super::SandboxError::IdMap { what, .. } => what,
            other => other.to_string(),
        };
        return Err(WireError::IdMap { what, errno });
    }
    let _ = nix::unistd::write(&go_write, b"1");
    drop(go_write);

    if let Some(limit) = req.spec.time_limit {
        let pidfd = sys::pidfd_open(pid1).map_err(io_setup_err("pidfd_open PID 1"))?;
        let ms = limit.as_millis().min(i32::MAX as u128) as i32;
        let timeout = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        loop {
            match nix::poll::poll(&mut fds, timeout) {
                Err(Errno::EINTR) => continue,
                Ok(0) => {
                    // Timed out. PID 1 is not reaped yet, so its pid is still ours to kill.
                    report.send(&Report::Exit(ExitStatus::TimedOut));
                    let _ = kill(pid1, Signal::SIGKILL);
                    break;
                }
                _ => break,
            }
        }
    }
    loop {
        match waitpid(pid1, None) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, _)) => return Ok(()), // PID 1 reported its error itself
            Ok(status) => {
                return Err(WireError::Other {
                    detail: format!("PID 1 of the sandbox died: {status:?}"),
                });
            }
            Err(e) => {
                return Err(WireError::Other {
                    detail: format!("waitpid PID 1: {e}"),
                });
            }
        }
    }
}

/// State of the mount plan's executor.
struct Mounter<'a> {
    report: &'a Reporter,
    /// Host mount point of the new root, until the root switch.
    root: PathBuf,
    /// Host source path -> `/proc/self/fd/N` of an `O_PATH` fd opened while
    /// we still had our host credentials (the caller's dirs may be 0700).
    sources: Vec<(PathBuf, OwnedFd)>,
    /// Fresh filesystems we mounted (anything created under them is not in the overlay).
    fresh: Vec<PathBuf>,
}

impl Mounter<'_> {
    fn source(&self, path: &Path) -> PathBuf {
        match self.sources.iter().find(|(p, _)| p == path) {
            Some((_, fd)) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => path.to_path_buf(),
        }
    }

    fn host(&self, inside: &Path) -> PathBuf {
        let rel: PathBuf = inside
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        self.root.join(rel)
    }

    /// Makes sure `inside` exists (a dir, or an empty file), creating it and
    /// its parents if needed; reports what was created in the overlay.
    fn ensure(&self, inside: &Path, dir: bool) -> Result<PathBuf, WireError> {
        let host = self.host(inside);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                // TODO(#4): resolve inside the root (openat2 RESOLVE_IN_ROOT) instead.
                return Err(WireError::Setup {
                    op: format!(
                        "mount on {}: the mount point is a symlink",
                        inside.display()
                    ),
                    errno: nix::libc::ELOOP,
                });
            }
            Ok(_) => return Ok(host),
            Err(_) => {}
        }
        // The topmost missing ancestor is what the stub is.
        let mut top = inside.to_path_buf();
        while let Some(parent) = top.parent() {
            if parent == Path::new("/") || self.host(parent).exists() {
                break;
            }
            top = parent.to_path_buf();
        }
        let parent_mtime = std::fs::metadata(self.host(top.parent().unwrap_or(Path::new("/"))))
            .map(|m| (m.mtime(), m.mtime_nsec()))
            .unwrap_or((0, 0));
        let op = format!("create mount point {}", inside.display());
        if dir {
            std::fs::create_dir_all(&host).map_err(io_setup_err(op))?;
        } else {
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).map_err(io_setup_err(op.clone()))?;
            }
            File::create(&host).map_err(io_setup_err(op))?;
        }
        if !self.fresh.iter().any(|f| inside.starts_with(f)) {
            // Every created component, top first: the parent removes them
            // deepest first, each only if still empty.
            let mut created = vec![inside.to_path_buf()];
            let mut p = inside;
            while p != top {
                p = p.parent().unwrap_or(&top);
                created.push(p.to_path_buf());
            }
            for path in created.into_iter().rev() {
                self.report.send(&Report::Stub { path, parent_mtime });
            }
        }
        Ok(host)
    }

    fn run(&mut self, op: &MountOp) -> Result<(), WireError> {
        let none: Option<&str> = None;
        match op {
            MountOp::MakeRootSlave => {
                // mount(2) MS_SLAVE|MS_REC: our mounts never propagate to the host.
                mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)
                    .map_err(setup_err("mount --make-rslave /"))?;
            }
            MountOp::Scratch { files } => {
                let scratch = Path::new(super::plan::SCRATCH);
                let at = scratch.parent().unwrap_or(Path::new("/tmp"));
                mount(
                    Some("tmpfs"),
                    at,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some("mode=0755"),
                )
                .map_err(setup_err(format!(
                    "mount scratch tmpfs on {}",
                    at.display()
                )))?;
                for dir in ["root", "empty", "etc", "stubs", "upper", "work"] {
                    std::fs::create_dir_all(scratch.join(dir)).map_err(io_setup_err(format!(
                        "create {}",
                        scratch.join(dir).display()
                    )))?;
                }
                for (name, contents) in files {
                    let path = scratch.join("etc").join(name);
                    std::fs::write(&path, contents)
                        .map_err(io_setup_err(format!("write {}", path.display())))?;
                }
            }
            MountOp::Stubs {
                layer,
                lower,
                stubs,
            } => {
                let lower: Vec<PathBuf> = lower.iter().map(|l| self.source(l)).collect();
                let mut mtimes = Vec::new();
                for stub in stubs {
                    let rel: PathBuf = stub
                        .path
                        .components()
                        .filter(|c| matches!(c, Component::Normal(_)))
                        .collect();
                    let mut parent = PathBuf::new();
                    for comp in rel.parent().unwrap_or(Path::new("")).components() {
                        parent.push(comp);
                        let dst = layer.join(&parent);
                        if dst.exists() {
                            continue;
                        }
                        let op = format!("create stub dir {}", dst.display());
                        std::fs::create_dir(&dst).map_err(io_setup_err(op.clone()))?;
                        let image_dir = lower
                            .iter()
                            .find_map(|l| std::fs::symlink_metadata(l.join(&parent)).ok());
                        if let Some(m) = image_dir.filter(|m| m.is_dir()) {
                            std::fs::set_permissions(
                                &dst,
                                std::fs::Permissions::from_mode(m.mode() & 0o7777),
                            )
                            .map_err(io_setup_err(op.clone()))?;
                            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))
                                .map_err(io_setup_err(op))?;
                            mtimes.push((dst, (m.mtime(), m.mtime_nsec())));
                        }
                    }
                    let dst = layer.join(&rel);
                    let is_dir = match &stub.like {
                        None => true,
                        Some(source) => std::fs::metadata(self.source(source))
                            .map_err(io_setup_err(format!(
                                "stat bind source {}",
                                source.display()
                            )))?
                            .is_dir(),
                    };
                    let op = format!("create stub {}", dst.display());
                    if is_dir {
                        std::fs::create_dir_all(&dst).map_err(io_setup_err(op))?;
                    } else {
                        File::create(&dst).map_err(io_setup_err(op))?;
                    }
                }
                // Last, deepest first: creating entries moved the parents' mtimes.
                for (dir, mtime) in mtimes.iter().rev() {
                    sys::set_mtime(dir, *mtime)
                        .map_err(io_setup_err(format!("set mtime of {}", dir.display())))?;
                }
            }
            MountOp::Overlay {
                lower,
                upper,
                work,
                root,
            } => {
                let scratch = Path::new(super::plan::SCRATCH);
                if upper.starts_with(scratch) {
                    // An ephemeral upper is the step's `/`: give it the top
                    // image layer's root mode and owner (seen from inside).
                    let top = lower.iter().find(|l| !l.starts_with(scratch));
                    let (mode, uid, gid) = match top.map(|t| std::fs::metadata(self.source(t))) {
                        Some(Ok(m)) => (m.mode() & 0o7777, m.uid(), m.gid()),
                        _ => (0o755, 0, 0),
                    };
                    let op = format!("set up {}", upper.display());
                    std::fs::set_permissions(upper, std::fs::Permissions::from_mode(mode))
                        .map_err(io_setup_err(op.clone()))?;
                    std::os::unix::fs::lchown(upper, Some(uid), Some(gid))
                        .map_err(io_setup_err(op))?;
                }
                let lower: Vec<String> = lower
                    .iter()
                    .map(|l| self.source(l).to_string_lossy().into_owned())
                    .collect();
                // userxattr: in a user namespace overlayfs may not use
                // trusted.* xattrs; opaque dirs get user.overlay.opaque.
                // volatile (overlayfs.rst): no syncs of the upper fs, above
                // all not the whole-filesystem sync at unmount, which cost
                // tens of ms per step; the store fsyncs what it ingests.
                let data = format!(
                    "lowerdir={},upperdir={},workdir={},userxattr,volatile",
                    lower.join(":"),
                    self.source(upper).display(),
                    self.source(work).display()
                );
                mount(
                    Some("overlay"),
                    root,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(data.as_str()),
                )
                .map_err(setup_err(format!(
                    "mount overlay on {} ({data})",
                    root.display()
                )))?;
                // Bind the new root onto itself (STYLE §4), so it is a mount
                // point of its own whatever it was mounted as.
                mount(Some(root), root, none, MsFlags::MS_BIND, none)
                    .map_err(setup_err(format!("bind {} onto itself", root.display())))?;
                self.root = root.clone();
            }
            MountOp::Proc { target } => {
                let host = self.ensure(target, true)?;
                let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                mount(Some("proc"), &host, Some("proc"), flags, none)
                    .map_err(setup_err(format!("mount proc on {}", target.display())))?;
                self.fresh.push(target.clone());
            }
            MountOp::Tmpfs {
                target,
                mode,
                size,
                nodev,
            } => {
                let host = self.ensure(target, true)?;
                let mut flags = MsFlags::MS_NOSUID;
                if *nodev {
                    flags |= MsFlags::MS_NODEV;
                }
                let mut data = format!("mode={mode:o}");
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                mount(
                    Some("tmpfs"),
                    &host,
                    Some("tmpfs"),
                    flags,
                    Some(data.as_str()),
                )
                .map_err(setup_err(format!("mount tmpfs on {}", target.display())))?;
                self.fresh.push(target.clone());
            }
            MountOp::Devpts { target } => {
                let host = self.ensure(target, true)?;
                // devpts(5) newinstance: our own ptys, not the host's.
                mount(
                    Some("devpts"),
                    &host,
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some("newinstance,ptmxmode=0666,mode=0620"),
                )
                .map_err(setup_err(format!("mount devpts on {}", target.display())))?;
                self.fresh.push(target.clone());
            }
            MountOp::Bind {
                source,
                target,
                readonly,
            } => {
                let src = self.source(source);
                let is_dir = std::fs::metadata(&src)
                    .map_err(io_setup_err(format!(
                        "stat bind source {}",
                        source.display()
                    )))?
                    .is_dir();
                let host = self.ensure(target, is_dir)?;
                let what = format!("bind {} on {}", source.display(), target.display());
                mount(
                    Some(&src),
                    &host,
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                )
                .map_err(setup_err(what.clone()))?;
                if *readonly {
                    // In a user namespace a remount must keep the flags the
                    // mount was locked with (mount_namespaces(7)), so read them.
                    let st = nix::sys::statvfs::statvfs(&host)
                        .map_err(setup_err(format!("statvfs {}", target.display())))?;
                    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                    use nix::sys::statvfs::FsFlags;
                    for (f, m) in [
                        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
                    ] {
                        if st.flags().contains(f) {
                            flags |= m;
                        }
                    }
                    mount(none, &host, none, flags, none)
                        .map_err(setup_err(format!("{what}: remount read-only")))?;
                }
            }
            MountOp::Symlink { link, target } => {
                let host = self.host(target);
                std::os::unix::fs::symlink(link, &host).map_err(io_setup_err(format!(
                    "symlink {} -> {}",
                    target.display(),
                    link.display()
                )))?;
            }
            MountOp::PivotRoot => {
                let root = self.root.clone();
                nix::unistd::chdir(&root)
                    .map_err(setup_err(format!("chdir {}", root.display())))?;
                // pivot_root(2) with new_root == put_old: the old root ends up
                // stacked on "/" here, and is detached right below (runc, bubblewrap).
                nix::unistd::pivot_root(".", ".")
                    .map_err(setup_err(format!("pivot_root {}", root.display())))?;
                // rprivate before the detach: the unmount must not propagate anywhere.
                mount(none, ".", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
                    .map_err(setup_err("mount --make-rprivate old root"))?;
                // umount2(2) MNT_DETACH: lazy, since the old root is busy.
                umount2(".", MntFlags::MNT_DETACH)
                    .map_err(setup_err("umount2 old root MNT_DETACH"))?;
                nix::unistd::chdir("/").map_err(setup_err("chdir /"))?;
                self.root = PathBuf::from("/");
            }
        }
        Ok(())
    }
}

fn lookup(argv0: &str, env: &[(String, String)]) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    path.split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(argv0))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString, WireError> {
    CString::new(s.as_ref()).map_err(|_| WireError::Other {
        detail: "NUL byte in argv or env".into(),
    })
}

/// PID 1: mounts, root switch, user, then the command; returns its status.
fn pid1(req: &Request, report: &Reporter) -> Result<ExitStatus, WireError> {
    let spec = &req.spec;
    // If the helper dies, so do we, and with us the namespace.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup_err("prctl PR_SET_PDEATHSIG"))?;

    // Open the host sources with our host credentials: after setresuid below
    // we are the inside root, who may not traverse the caller's private dirs.
    let mut sources = Vec::new();
    for op in &req.plan {
        let paths: Vec<&PathBuf> = match op {
            MountOp::Overlay {
                lower, upper, work, ..
            } => lower.iter().chain([upper, work]).collect(),
            MountOp::Bind { source, .. } if !source.starts_with("/dev") => vec![source],
            _ => continue,
        };
        // Scratch paths exist only once the scratch tmpfs is up.
        for p in paths
            .into_iter()
            .filter(|p| !p.starts_with(super::plan::SCRATCH))
        {
            let fd = nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(setup_err(format!("open {}", p.display())))?;
            sources.push((p.clone(), fd));
        }
    }
    // Become root inside (the id map's inside 0). Clear the host's
    // supplementary groups first: they are not mapped.
    if req.id_map.setgroups {
        nix::unistd::setgroups(&[]).map_err(setup_err("setgroups []"))?;
    }
    let root = (Gid::from_raw(0), Uid::from_raw(0));
    nix::unistd::setresgid(root.0, root.0, root.0).map_err(setup_err("setresgid 0"))?;
    nix::unistd::setresuid(root.1, root.1, root.1).map_err(setup_err("setresuid 0"))?;
    // prctl(2): a change of effective uid or gid clears the parent-death
    // signal, so arm it again; without this a sandbox whose helper was
    // killed (`kiln run` stopped by a signal) ran on, reparented to init.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(setup_err("prctl PR_SET_PDEATHSIG after setresuid"))?;

    let mut mounter = Mounter {
        report,
        root: PathBuf::from("/"),
        sources,
        fresh: Vec::new(),
    };
    for op in &req.plan {
        mounter.run(op)?;
    }
    drop(mounter);

    nix::unistd::sethostname(&spec.hostname).map_err(setup_err("sethostname"))?;
    if spec.network == Network::Off {
        sys::set_loopback_up().map_err(io_setup_err("bring up lo"))?;
    }

    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user = super::user::resolve(&spec.user, &passwd, &group).map_err(|e| match e {
        super::user::UserError::UnknownUser(user) => WireError::UnknownUser { user },
        super::user::UserError::UnknownGroup(group) => WireError::UnknownGroup { group },
    })?;
    if req.id_map.host_uid(user.uid).is_none() || req.id_map.host_gid(user.gid).is_none() {
        return Err(WireError::UnmappedUser {
            user: spec.user.clone(),
            uid: user.uid,
            gid: user.gid,
        });
    }
    let mut env = spec.env.clone();
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), user.home.clone()));
    }

    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    std::fs::create_dir_all(&spec.cwd).map_err(io_setup_err(format!(
        "create working directory {}",
        spec.cwd.display()
    )))?;

    let argv0 = &spec.argv[0];
    let Some(path) = lookup(argv0, &env) else {
        return Err(WireError::CommandNotFound {
            command: argv0.clone(),
        });
    };
    let c_path = cstring(path.as_os_str().as_bytes())?;
    let c_argv = spec
        .argv
        .iter()
        .map(cstring)
        .collect::<Result<Vec<_>, _>>()?;
    let c_env = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    let c_cwd = cstring(spec.cwd.as_os_str().as_bytes())?;
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();

    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGCHLD);
    for s in FORWARDED {
        blocked.add(s);
    }
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut old_mask))
        .map_err(setup_err("sigprocmask"))?;
    let (err_read, err_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(setup_err("pipe2"))?;

    let child = match sys::fork().map_err(io_setup_err("fork the command"))? {
        Forked::Child => {
            drop(err_read);
            let errno = exec_command(
                &old_mask,
                &groups,
                &user,
                req.id_map.setgroups,
                &c_cwd,
                &c_path,
                &c_argv,
                &c_env,
            );
            let _ = nix::unistd::write(&err_write, &(errno as i32).to_ne_bytes());
            std::process::exit(127);
        }
        Forked::Parent(pid) => pid,
    };
    drop(err_write);
    let mut buf = [0u8; 4];
    let n = loop {
        match nix::unistd::read(&err_read, &mut buf) {
            Err(Errno::EINTR) => continue,
            other => break other.unwrap_or(0),
        }
    };
    if n == 4 {
        let _ = waitpid(child, None);
        let errno = Errno::from_raw(i32::from_ne_bytes(buf));
        return Err(match errno {
            Errno::ENOENT => WireError::CommandNotFound {
                command: argv0.clone(),
            },
            e => WireError::Exec {
                command: argv0.clone(),
                errno: e as i32,
            },
        });
    }
    supervise(child, &blocked)
}

/// In the command's process: drop privileges and exec. Returns only on failure.
#[allow(clippy::too_many_arguments)]
fn exec_command(
    old_mask: &SigSet,
    groups: &[Gid],
    user: &super::user::ExecUser,
    setgroups: bool,
    cwd: &CString,
    path: &CString,
    argv: &[CString],
    env: &[CString],
) -> Errno {
    let step = || -> Result<std::convert::Infallible, Errno> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None)?;
        let null = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, Mode::empty())?;
        nix::unistd::dup2_stdin(&null)?;
        drop(null);
        sys::drop_bounding_caps(&DOCKER_CAPS)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        if setgroups {
            nix::unistd::setgroups(groups)?;
        }
        let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
        nix::unistd::setresgid(gid, gid, gid)?;
        // setresuid to non-root clears the capability sets (capabilities(7)).
        nix::unistd::setresuid(uid, uid, uid)?;
        nix::unistd::chdir(cwd.as_c_str())?;
        nix::unistd::execve(path, argv, env)
    };
    match step() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// PID 1's loop: reap everything, forward signals, return the command's status.
fn supervise(child: Pid, blocked: &SigSet) -> Result<ExitStatus, WireError> {
    loop {
        let sig = match blocked.wait() {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(WireError::Setup {
                    op: "sigwait".into(),
                    errno: e as i32,
                });
            }
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        let mut result = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    result = Some(ExitStatus::Exited(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    result = Some(ExitStatus::Signaled(sig as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Some(status) = result {
            return Ok(status);
        }
    }
}
