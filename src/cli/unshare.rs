//! `kiln unshare [CMD...]`: run a command where kiln itself works, as
//! `buildah unshare` and `podman unshare` do.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::Args;

/// Arguments of `kiln unshare`.
#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// The command and its arguments (default: `$SHELL`, else /bin/sh).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Runs after [`super::run`] has entered kiln's own user namespace (or
/// found none needed): replaces this process with the command.
pub fn run(args: &UnshareArgs) -> anyhow::Result<ExitCode> {
    let map = crate::sandbox::IdMap::for_invoker();
    if map.is_single() {
        bail!(
            "kiln has no user namespace of its own here: as a normal user it needs `newuidmap` and \
             `newgidmap` (Debian: uidmap) and ranges for you in /etc/subuid and /etc/subgid"
        );
    }
    let mut command = args.command.clone();
    if command.is_empty() {
        command.push(std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into()));
    }
    let program = command.remove(0);
    let err = Command::new(&program).args(&command).exec();
    Err(err).with_context(|| format!("failed to run {}", program.to_string_lossy()))
}
