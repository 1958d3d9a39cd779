//! The sandbox, for real (STYLE §6 layer 2): `kiln::sandbox::run` spawns the
//! real binary (`kiln __sandbox-init`) over a busybox root filesystem; this
//! process never unshares. Each test starts with `require_sandbox!()`.
//!
//! Tests hold one lock: some look at host-global state (processes, mounts).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{require_sandbox, require_several_ids};
use kiln::sandbox::{
    self, Change, ChangeKind, ExitStatus, IdMap, Mount, MountKind, Network, Outcome, SandboxError,
    Spec, Upper,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// A step's directories: a busybox rootfs (shifted for the id map), an upper
/// and a work dir.
struct Step {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
}

impl Step {
    fn new() -> Step {
        Step::with(|_| {})
    }

    /// A step whose rootfs `prepare` can change (in inside ids) before shifting.
    fn with(prepare: impl FnOnce(&Path)) -> Step {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = common::busybox_rootfs(dir.path());
        prepare(&rootfs);
        // With a single-id map (a normal user outside `kiln unshare`) the
        // caller's files are already root's inside.
        let map = IdMap::for_invoker();
        if !map.is_single() {
            map.shift_tree(&rootfs).unwrap();
        }
        std::fs::create_dir(dir.path().join("upper")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Step { dir, rootfs }
    }

    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }

    fn spec(&self, script: &str) -> Spec {
        let mut spec = Spec::new(
            env!("CARGO_BIN_EXE_kiln").into(),
            Upper::Dir {
                upper: self.upper(),
                work: self.dir.path().join("work"),
            },
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        );
        spec.lower = vec![self.rootfs.clone()];
        spec.env = vec![("PATH".into(), sandbox::DEFAULT_PATH.into())];
        spec
    }

    fn run(&self, script: &str) -> Outcome {
        sandbox::run(&self.spec(script)).unwrap()
    }

    fn capture(&self, outcome: &Outcome) -> Vec<Change> {
        sandbox::capture(&self.upper(), &[], &outcome.id_map)
            .unwrap()
            .entries
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn find<'a>(changes: &'a [Change], path: &str) -> Option<&'a Change> {
    changes.iter().find(|c| c.path == Path::new(path))
}

fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Host processes whose command line contains `needle`.
fn host_processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = text(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn step_sees_a_fixed_minimal_world() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let out =
        step.run("id; hostname; cat /etc/hostname; ls /dev; ls -d /proc/[0-9]*; cat /proc/net/dev");
    assert_eq!(out.status, ExitStatus::Exited(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("uid=0(root) gid=0(root)"), "{stdout}");
    assert!(
        stdout.contains("buildkitsandbox\nbuildkitsandbox\n"),
        "{stdout}"
    );
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd",
    ] {
        assert!(
            stdout.lines().any(|l| l == dev),
            "no /dev/{dev} in {stdout}"
        );
    }
    // Only PID 1 (the init), the shell and ls: no host process is visible.
    let pids: Vec<_> = stdout.lines().filter(|l| l.starts_with("/proc/")).collect();
    assert!(pids.len() <= 3, "{pids:?}");
    assert!(pids.contains(&"/proc/1"), "{pids:?}");
    // Only loopback in the network namespace.
    let ifaces: Vec<_> = stdout
        .lines()
        .filter(|l| l.contains(':') && !l.contains('|'))
        .collect();
    assert_eq!(ifaces.len(), 1, "{stdout}");
    assert!(ifaces[0].trim_start().starts_with("lo:"), "{stdout}");
}

#[test]
fn step_cannot_reach_a_server_on_host_loopback_or_resolve_names() {
    require_sandbox!();
    let _g = lock();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let step = Step::new();
    let out = step.run(&format!(
        "nc -w 1 127.0.0.1 {port} </dev/null && echo REACHED-HOST; \
         wget -q -T 1 -O - http://10.0.0.1/ && echo REACHED-10; \
         wget -q -T 1 -O - http://example.com/ && echo RESOLVED; \
         nslookup example.com && echo RESOLVED-NS; echo done"
    ));
    let stdout = text(&out.stdout);
    assert!(stdout.ends_with("done\n"), "{stdout}");
    assert!(
        !stdout.contains("REACHED") && !stdout.contains("RESOLVED"),
        "{stdout}"
    );
    assert!(
        listener.accept().is_err(),
        "the host server got a connection"
    );
}

#[test]
fn step_cannot_read_a_host_canary_file() {
    require_sandbox!();
    let _g = lock();
    let host = tempfile::tempdir().unwrap();
    let canary = host.path().join("canary");
    std::fs::write(&canary, "tweet-tweet-4242").unwrap();
    let step = Step::new();
    let out = step.run(&format!(
        "cat {} /etc/../{}; echo done",
        canary.display(),
        canary.display()
    ));
    assert!(!text(&out.stdout).contains("tweet-tweet-4242"));
    assert!(text(&out.stdout).contains("done"));
}

#[test]
fn step_cannot_write_under_a_host_dir() {
    require_sandbox!();
    let _g = lock();
    let store = tempfile::tempdir().unwrap();
    std::fs::write(store.path().join("object"), "stored").unwrap();
    let step = Step::new();
    let dir = store.path().display().to_string();
    let out = step.run(&format!(
        "mkdir -p {dir} && echo pwned > {dir}/object && echo x > {dir}/new; ls {dir}"
    ));
    assert_eq!(out.status, ExitStatus::Exited(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(store.path().join("object")).unwrap(),
        "stored"
    );
    assert!(!store.path().join("new").exists());
    // The write went to the step's own layer instead.
    let changes = step.capture(&out);
    let rel = Path::new(&dir).strip_prefix("/").unwrap().join("new");
    assert!(changes.iter().any(|c| c.path == rel), "{changes:#?}");
}

#[test]
fn step_cannot_mount_and_host_mounts_are_untouched() {
    require_sandbox!();
    let _g = lock();
    let before = host_mounts();
    let step = Step::new();
    let out = step.run(
        "mount -t tmpfs none /tmp && echo mounted; mount --bind / /tmp && echo bound; echo done",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("done") && !stdout.contains("mounted") && !stdout.contains("bound"),
        "{stdout}"
    );
    assert_eq!(host_mounts(), before);
}

#[test]
fn background_processes_die_with_the_step() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let started = Instant::now();
    let out = step.run("sleep 987654 & sleep 987654 & echo started");
    assert_eq!(out.status, ExitStatus::Exited(0));
    assert_eq!(text(&out.stdout), "started\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(host_processes_with("987654"), Vec::<String>::new());
    assert_eq!(
        host_processes_with(&format!("{} __sandbox-init", env!("CARGO_BIN_EXE_kiln"))),
        Vec::<String>::new()
    );
}

#[test]
fn time_limit_kills_everything() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let mut spec = step.spec("sleep 876543 & sleep 876543");
    spec.time_limit = Some(Duration::from_millis(300));
    let started = Instant::now();
    let out = sandbox::run(&spec).unwrap();
    assert_eq!(out.status, ExitStatus::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(host_processes_with("876543"), Vec::<String>::new());
}

#[test]
fn exit_codes_and_signals_are_reported() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    assert_eq!(step.run("exit 3").status, ExitStatus::Exited(3));
    let step = Step::new();
    assert_eq!(step.run("kill -TERM $$").status, ExitStatus::Signaled(15));
}

#[test]
fn file_written_as_user_1000_is_owned_by_1000_in_the_capture() {
    require_sandbox!();
    require_several_ids!();
    let _g = lock();
    let step = Step::new();
    let mut spec = step.spec("id -u; echo $HOME; touch /tmp/mine");
    spec.user = "user".into();
    let out = sandbox::run(&spec).unwrap();
    assert_eq!(out.status, ExitStatus::Exited(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1000\n/home/user\n");
    let changes = step.capture(&out);
    let mine = find(&changes, "tmp/mine").expect("tmp/mine captured");
    assert_eq!((mine.uid, mine.gid, mine.mode), (1000, 1000, 0o644));
}

#[test]
fn chown_inside_works_as_root_and_shows_in_the_capture() {
    require_sandbox!();
    require_several_ids!();
    let _g = lock();
    let step = Step::new();
    let out = step.run("touch /f && chown 1234:5678 /f && stat -c %u:%g /f");
    assert_eq!(text(&out.stdout), "1234:5678\n", "{}", text(&out.stderr));
    let f = step.capture(&out);
    let f = find(&f, "f").unwrap();
    assert_eq!((f.uid, f.gid), (1234, 5678));
    assert!(matches!(f.kind, ChangeKind::File { size: 0, .. }));
}

#[test]
fn deleting_a_lower_file_gives_a_whiteout_and_recreating_a_dir_an_opaque_one() {
    require_sandbox!();
    let _g = lock();
    let step = Step::with(|root| {
        std::fs::write(root.join("etc/motd"), "hello").unwrap();
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/x"), "x").unwrap();
    });
    let out = step.run("rm /etc/motd && rm -rf /d && mkdir /d && echo new > /d/y");
    assert_eq!(out.status, ExitStatus::Exited(0), "{}", text(&out.stderr));
    let changes = step.capture(&out);
    assert_eq!(
        find(&changes, "etc/.wh.motd").map(|c| &c.kind),
        Some(&ChangeKind::Whiteout)
    );
    assert_eq!(find(&changes, "d").map(|c| &c.kind), Some(&ChangeKind::Dir));
    assert_eq!(
        find(&changes, "d/.wh..wh..opq").map(|c| &c.kind),
        Some(&ChangeKind::Opaque)
    );
    assert!(find(&changes, "d/y").is_some());
    // overlayfs's own xattrs never leak into the change set.
    assert!(changes.iter().all(|c| {
        c.xattrs
            .iter()
            .all(|(n, _)| !n.windows(8).any(|w| w == b"overlay."))
    }));
}

#[test]
fn mount_points_and_generated_files_are_not_captured() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let etc_mtime = std::fs::metadata(step.rootfs.join("etc"))
        .unwrap()
        .modified()
        .unwrap();
    let out = step.run("echo 1.2.3.4 extra >> /etc/hosts; true");
    assert_eq!(out.status, ExitStatus::Exited(0), "{}", text(&out.stderr));
    let changes = step.capture(&out);
    for path in [
        "proc",
        "dev",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ] {
        assert!(
            find(&changes, path).is_none(),
            "{path} captured: {changes:#?}"
        );
    }
    // A parent the stubs went into keeps its mtime.
    if let Some(etc) = find(&changes, "etc") {
        let secs = etc_mtime.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(
            etc.mtime,
            (secs.as_secs() as i64, i64::from(secs.subsec_nanos()))
        );
    }
    assert!(!step.upper().join("proc").exists() && !step.upper().join("dev").exists());
}

#[test]
fn two_identical_runs_give_identical_change_sets() {
    require_sandbox!();
    let _g = lock();
    let script =
        "mkdir -p /app && echo hi > /app/a && ln /app/a /app/b && ln -s a /app/c && rm /etc/group";
    let (s1, s2) = (Step::new(), Step::new());
    let (o1, o2) = (s1.run(script), s2.run(script));
    let strip = |step: &Step, changes: Vec<Change>| -> Vec<(PathBuf, String, u32, u32, u32)> {
        changes
            .into_iter()
            .map(|c| {
                let kind = match &c.kind {
                    ChangeKind::File { source, size } => {
                        format!(
                            "file {size} {:?}",
                            source.strip_prefix(step.upper()).unwrap()
                        )
                    }
                    k => format!("{k:?}"),
                };
                (c.path, kind, c.uid, c.gid, c.mode)
            })
            .collect()
    };
    let (c1, c2) = (strip(&s1, s1.capture(&o1)), strip(&s2, s2.capture(&o2)));
    assert_eq!(c1, c2);
    assert!(
        c1.iter()
            .any(|c| c.0 == Path::new("app/b") && c.1 == "HardLink { target: \"app/a\" }"),
        "{c1:#?}"
    );
}

#[test]
fn workdir_is_created_and_extra_mounts_work() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret"), "s3cr3t").unwrap();
    std::fs::create_dir(host.path().join("cache")).unwrap();
    std::fs::create_dir(host.path().join("ro")).unwrap();
    std::fs::write(host.path().join("ro/file"), "ro").unwrap();
    let mut spec = step.spec(
        "pwd; cat /run/secrets/s; echo c > /cache/c; echo no > /ro/x || echo ro-refused; \
         echo t > /scratch/t; cat /ro/file",
    );
    spec.cwd = "/work/dir".into();
    let m = |target: &str, kind| Mount {
        target: target.into(),
        kind,
    };
    spec.mounts = vec![
        m(
            "/run/secrets/s",
            MountKind::Secret {
                source: host.path().join("secret"),
            },
        ),
        m(
            "/cache",
            MountKind::Cache {
                source: host.path().join("cache"),
            },
        ),
        m(
            "/ro",
            MountKind::Bind {
                source: host.path().join("ro"),
                readonly: true,
            },
        ),
        m(
            "/scratch",
            MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        ),
    ];
    let out = sandbox::run(&spec).unwrap();
    assert_eq!(
        text(&out.stdout),
        "/work/dir\ns3cr3tro-refused\nro",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("cache/c")).unwrap(),
        "c\n"
    );
    let changes = step.capture(&out);
    assert!(find(&changes, "work/dir").is_some(), "{changes:#?}");
    for p in ["run", "cache", "ro", "scratch"] {
        assert!(find(&changes, p).is_none(), "{p} captured");
    }
}

#[test]
fn network_host_sees_host_resolv_conf_read_only() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let mut spec = step.spec("cat /etc/resolv.conf; echo x >> /etc/resolv.conf || echo refused");
    spec.network = Network::Host;
    let out = sandbox::run(&spec).unwrap();
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(text(&out.stdout), format!("{host}refused\n"));
}

#[test]
fn missing_command_is_a_clear_error_and_leaves_nothing_behind() {
    require_sandbox!();
    let _g = lock();
    let before = host_mounts();
    let step = Step::new();
    let mut spec = step.spec("");
    spec.argv = vec!["no-such-command".into(), "arg".into()];
    let err = sandbox::run(&spec).unwrap_err();
    assert!(
        matches!(&err, SandboxError::CommandNotFound { command } if command == "no-such-command"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "command `no-such-command` not found in the root filesystem"
    );
    // A fresh upper and work dir, as every build step has (an unprivileged
    // overlay mount refuses a work dir an earlier mount used).
    let step = Step::new();
    let mut spec = step.spec("");
    spec.argv = vec!["/bin/no-such".into()];
    let err = sandbox::run(&spec).unwrap_err();
    assert!(
        matches!(&err, SandboxError::CommandNotFound { command } if command == "/bin/no-such"),
        "{err:?}"
    );
    assert_eq!(host_mounts(), before);
    assert_eq!(
        host_processes_with(&format!("{} __sandbox-init", env!("CARGO_BIN_EXE_kiln"))),
        Vec::<String>::new()
    );
}

#[test]
fn rootfs_without_bin_sh_names_bin_sh() {
    require_sandbox!();
    let _g = lock();
    let before = host_mounts();
    let step = Step::with(|root| std::fs::remove_file(root.join("bin/sh")).unwrap());
    let err = sandbox::run(&step.spec("true")).unwrap_err();
    assert!(
        matches!(&err, SandboxError::CommandNotFound { command } if command == "/bin/sh"),
        "{err:?}"
    );
    assert!(err.hint().is_some());
    assert_eq!(host_mounts(), before);
    assert_eq!(
        host_processes_with(&format!("{} __sandbox-init", env!("CARGO_BIN_EXE_kiln"))),
        Vec::<String>::new()
    );
}

#[test]
fn unknown_user_is_a_clear_error() {
    require_sandbox!();
    let _g = lock();
    let before = host_mounts();
    let step = Step::new();
    let mut spec = step.spec("true");
    spec.user = "nosuchuser".into();
    let err = sandbox::run(&spec).unwrap_err();
    assert!(
        matches!(&err, SandboxError::UnknownUser { user } if user == "nosuchuser"),
        "{err:?}"
    );
    let step = Step::new();
    let mut spec = step.spec("true");
    spec.user = "user:nosuchgroup".into();
    let err = sandbox::run(&spec).unwrap_err();
    assert!(
        matches!(&err, SandboxError::UnknownGroup { group } if group == "nosuchgroup"),
        "{err:?}"
    );
    assert_eq!(host_mounts(), before);
    assert_eq!(
        host_processes_with(&format!("{} __sandbox-init", env!("CARGO_BIN_EXE_kiln"))),
        Vec::<String>::new()
    );
}

/// `kiln run` under a caller with its own env, TZ, LANG, umask and cwd.
fn cli_environment(
    rootfs: &Path,
    caller: &[(&str, &str)],
    umask: &str,
    cwd: &Path,
) -> std::process::Output {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["run", "--rootfs"])
        .arg(rootfs)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "env | sort; umask; hostname; date +%Z; pwd; id",
        ])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in caller {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn environment_is_the_same_whatever_the_caller() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let other = tempfile::tempdir().unwrap();
    let a = cli_environment(&step.rootfs, &[], "022", Path::new("/"));
    let b = cli_environment(
        &step.rootfs,
        &[
            ("TZ", "Asia/Tokyo"),
            ("LANG", "fr_FR.UTF-8"),
            ("HOME", "/home/caller"),
            ("FOO", "bar"),
        ],
        "077",
        other.path(),
    );
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert_eq!(text(&a.stdout), text(&b.stdout));
    assert_eq!(
        text(&a.stdout),
        "HOME=/root\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nPWD=/\nSHLVL=1\n\
         0022\nbuildkitsandbox\nUTC\n/\nuid=0(root) gid=0(root) groups=0(root)\n"
    );
}

#[test]
fn kiln_run_exits_with_the_command_status_and_names_bad_users() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let rootfs = step.rootfs.to_str().unwrap();
    let out = common::run(&[
        "run",
        "--rootfs",
        rootfs,
        "--",
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(common::stdout(&out), "out\n");
    assert_eq!(common::stderr(&out), "err\n");
    let out = common::run(&["run", "--rootfs", rootfs, "--user", "ghost", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("error: unknown user `ghost`"),
        "{}",
        common::stderr(&out)
    );
    let out = common::run(&[
        "run",
        "--rootfs",
        rootfs,
        "-e",
        "A=b",
        "-w",
        "/srv",
        "--",
        "/bin/sh",
        "-c",
        "echo $A; pwd",
    ]);
    assert_eq!(common::stdout(&out), "b\n/srv\n");
}

/// Issue 7 (the examples' servers outlived their test): PID 1 drops to the
/// inside root with setresuid, which clears its parent-death signal
/// (prctl(2)); it must be armed again so that killing `kiln run` (and with
/// it the helper) kills the whole sandbox.
#[test]
fn issue_7_killing_kiln_run_kills_the_sandbox() {
    require_sandbox!();
    let _g = lock();
    let step = Step::new();
    let mut child = common::kiln()
        .args(["run", "--rootfs", step.rootfs.to_str().unwrap(), "--"])
        .args(["/bin/sh", "-c", "sleep 765432 & sleep 765432; echo done"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while host_processes_with("sleep 765432").len() < 2 {
        assert!(Instant::now() < deadline, "the sandbox did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host_processes_with("sleep 765432").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the sandbox outlived kiln run: {:?}",
            host_processes_with("765432")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kiln_unshare_runs_the_command_with_its_arguments_and_status() {
    require_sandbox!();
    let out = kiln_cmd()
        .args([
            "unshare",
            "sh",
            "-c",
            "echo \"$1\"; id -u; exit 3",
            "_",
            "--flag",
        ])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    // As root (of the host or of kiln's namespace), and as a normal user
    // whose kiln can enter a namespace of its own, the command runs there
    // as root; with a single id there is none, and kiln says what is needed.
    let single = !common::is_root() && std::env::var_os("KILN_USERNS").is_some_and(|v| v == "0");
    if single {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("/etc/subuid"), "{err}");
    } else if common::is_root() || out.status.code() == Some(3) {
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert_eq!(common::stdout(&out), "--flag\n0\n");
    } else {
        assert!(err.contains("/etc/subuid"), "{err}");
    }
}

/// `common::kiln()`, keeping `KILN_USERNS` of the test's own environment
/// (the unprivileged passes set it).
fn kiln_cmd() -> std::process::Command {
    let mut cmd = common::kiln();
    if let Some(v) = std::env::var_os("KILN_USERNS") {
        cmd.env("KILN_USERNS", v);
    }
    cmd
}

#[test]
fn a_refused_id_map_is_an_error_not_a_broken_namespace() {
    // Only a normal user with subordinate ids makes a namespace of kiln's own.
    let uid = nix::unistd::geteuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let listed = std::fs::read_to_string("/etc/subuid").is_ok_and(|t| {
        t.lines().any(|l| {
            let who = l.split(':').next().unwrap_or_default();
            who == name || who == uid.to_string()
        })
    });
    if common::is_root() || !listed || std::env::var_os("KILN_USERNS").is_some_and(|v| v == "0") {
        common::print_skip("needs a normal user with ranges in /etc/subuid");
        return;
    }
    // newuidmap and newgidmap that refuse, found first on PATH.
    let fake = tempfile::tempdir().unwrap();
    for tool in ["newuidmap", "newgidmap"] {
        let path = fake.path().join(tool);
        std::fs::write(&path, "#!/bin/sh\necho refused >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let path = format!("{}:/usr/bin:/bin", fake.path().display());
    let out = kiln_cmd()
        .env("PATH", path)
        .arg("--store")
        .arg(store.path())
        .args(["store", "path"])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not map the ids of its own user namespace"),
        "{err}"
    );
    assert!(err.contains("KILN_USERNS=0"), "{err}");
}
