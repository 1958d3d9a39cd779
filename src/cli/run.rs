//! `kiln run`: a command in the sandbox over a root filesystem directory (an
//! overlay with a throwaway upper dir in a tmpfs), output streamed, exiting with the
//! command's status. `kiln run IMAGE` comes with the image store: IMAGE will be
//! the positional argument, `--rootfs` its alternative.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::sandbox::{self, Network, Output, Spec, Upper};

/// Arguments of `kiln run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The root filesystem: a directory, read-only lower layer of the overlay.
    /// As root its files must be owned by the shifted ids (uid + 1879048192),
    /// as a layer tree in the store is.
    #[arg(long, value_name = "DIR", required = true)]
    pub rootfs: PathBuf,
    /// `host` gives the command the host's network (default: `none`, loopback only).
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = ["none", "host"])]
    pub network: String,
    /// The user: `name[:group]` or `uid[:gid]`, resolved in the rootfs.
    #[arg(long, short = 'u', value_name = "USER", default_value = "")]
    pub user: String,
    /// Set an environment variable (`K=V`); the environment is otherwise only
    /// Docker's default `PATH` (and `HOME` for the user).
    #[arg(long, short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// The working directory inside (created if missing).
    #[arg(long, short = 'w', value_name = "DIR", default_value = "/")]
    pub workdir: PathBuf,
    /// Kill the command and everything it started after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs `kiln run`.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let helper = std::env::current_exe().context("failed to find the kiln executable")?;
    let mut env = vec![("PATH".to_owned(), sandbox::DEFAULT_PATH.to_owned())];
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("`--env {kv}` is not `K=V`"))?;
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v.to_owned()));
    }
    // The command's writes go to a tmpfs inside the sandbox and die with it.
    let mut spec = Spec::new(helper, Upper::Ephemeral, args.command.clone());
    spec.lower = vec![args.rootfs.clone()];
    spec.env = env;
    spec.cwd = args.workdir.clone();
    spec.user = args.user.clone();
    spec.network = if args.network == "host" {
        Network::Host
    } else {
        Network::Off
    };
    spec.time_limit = args.timeout.map(Duration::from_secs_f64);
    spec.output = Output::Inherit;

    let outcome = sandbox::run(&spec)?;
    let code = outcome.status.code();
    Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
}
