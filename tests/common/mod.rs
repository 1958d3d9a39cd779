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
