//! Helpers shared by the integration tests: run the real binary with a
//! scrubbed environment.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `kiln` binary under test.
pub fn kiln() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SOURCE_DATE_EPOCH", "0")
        .env("LANG", "C.UTF-8");
    cmd
}

/// Runs `kiln` with `args` and returns what it did.
pub fn run(args: &[&str]) -> Output {
    kiln().args(args).output().expect("failed to start kiln")
}

/// The shared folder beside the project (`../shared`), if present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    dir.is_dir().then_some(dir)
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Why the sandbox cannot run here, if it cannot: it needs root or
/// unprivileged user namespaces, and the tests need `/bin/busybox`
/// (Debian: `busybox-static`) for their root filesystems.
pub fn sandbox_unavailable() -> Option<String> {
    if !Path::new("/bin/busybox").is_file() {
        return Some("/bin/busybox is missing (apt-get install busybox-static)".into());
    }
    if is_root() {
        return None;
    }
    let ok = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--pid",
            "--fork",
            "true",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    (!ok).then(|| "user namespaces are not available to this user".into())
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Prints why a test is skipped.
#[expect(clippy::print_stderr, reason = "a skipped test says why")]
pub fn print_skip(reason: &str) {
    eprintln!("skipped: {reason}");
}

/// Starts a sandbox test: returns early (printing why) when the sandbox
/// cannot run here, or panics if `KILN_TEST_REQUIRE_SANDBOX=1` (CI).
#[allow(unused_macros, reason = "only sandbox tests use it")]
macro_rules! require_sandbox {
    () => {
        if let Some(reason) = crate::common::sandbox_unavailable() {
            if std::env::var_os("KILN_TEST_REQUIRE_SANDBOX").is_some_and(|v| v == "1") {
                panic!("the sandbox is required (KILN_TEST_REQUIRE_SANDBOX=1): {reason}");
            }
            crate::common::print_skip(&reason);
            return;
        }
    };
}
#[allow(unused_imports, reason = "only sandbox tests use it")]
pub(crate) use require_sandbox;

/// Why the sandbox has only one id (root) inside, if so: a normal user
/// outside kiln's own user namespace (`kiln unshare`) cannot give files
/// other owners.
#[allow(dead_code, reason = "only some test binaries use it")]
pub fn several_ids_unavailable() -> Option<String> {
    kiln::sandbox::IdMap::for_invoker().is_single().then(|| {
        "as a normal user only your own uid exists in the sandbox; run the tests under          `kiln unshare` (needs newuidmap and ranges in /etc/subuid and /etc/subgid)"
            .into()
    })
}

/// Returns from a test, printing why, when the sandbox has only root.
#[allow(unused_macros, reason = "only sandbox tests use it")]
macro_rules! require_several_ids {
    () => {
        if let Some(reason) = crate::common::several_ids_unavailable() {
            crate::common::print_skip(&reason);
            return;
        }
    };
}
#[allow(unused_imports, reason = "only sandbox tests use it")]
pub(crate) use require_several_ids;

/// Makes a busybox root filesystem under `dir`: `/bin/busybox` with applet
/// symlinks, `/etc/passwd` (root, `user` 1000), `/etc/group`, `/tmp` (1777),
/// and no `/proc` or `/dev` (the sandbox makes those mount points itself).
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "ls", "id", "env", "hostname", "date", "sleep", "mount", "touch", "rm",
        "mkdir", "chown", "echo", "wget", "nc", "ps", "stat", "true", "false", "kill", "nslookup",
        "pwd", "grep", "wc", "test",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    root
}

/// A tar of [`busybox_rootfs`] under `dir` (sorted, as `kiln image import`
/// takes it); returns its path.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let rootfs = busybox_rootfs(dir);
    let tar = dir.join("busybox.tar");
    let st = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar failed");
    tar
}
