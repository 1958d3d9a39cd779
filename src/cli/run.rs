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
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    pub rootfs: Option<PathBuf>,
    /// A stored image (`NAME[:TAG]` or `sha256:...`): its layers are the
    /// lower dirs, its config gives the defaults (Env, WorkingDir, User,
    /// Entrypoint, Cmd).
    #[arg(value_name = "IMAGE", required_unless_present = "rootfs")]
    pub image: Option<String>,
    /// `host` gives the command the host's network (default: `none`, loopback only).
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = ["none", "host"])]
    pub network: String,
    /// The user: `name[:group]` or `uid[:gid]`, resolved in the rootfs.
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,
    /// Set an environment variable (`K=V`); the environment is otherwise only
    /// Docker's default `PATH` (and `HOME` for the user).
    #[arg(long, short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// The working directory inside (created if missing).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Kill the command and everything it started after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// The command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs `kiln run`.
pub fn run(store_flag: Option<&std::path::Path>, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let helper = std::env::current_exe().context("failed to find the kiln executable")?;
    let mut env = vec![("PATH".to_owned(), sandbox::DEFAULT_PATH.to_owned())];
    let mut lower = Vec::new();
    let mut command = args.command.clone();
    let mut workdir = PathBuf::from("/");
    let mut user = String::new();
    if let Some(rootfs) = &args.rootfs {
        lower.push(rootfs.clone());
    }
    if let Some(name) = &args.image {
        let store = crate::store::Store::open(&super::store::root(store_flag)?)?;
        let digest = super::image::resolve(&store, name)?;
        let image = crate::build::read_stored_image(&store, &digest)?;
        lower = crate::build::image_trees(&store, &image)?;
        let c = &image.config.config;
        if !c.env.is_empty() {
            env = c
                .env
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        }
        if let Some(w) = &c.working_dir
            && !w.is_empty()
        {
            workdir = PathBuf::from(w);
        }
        user = c.user.clone().unwrap_or_default();
        let mut argv = c.entrypoint.clone().unwrap_or_default();
        if command.is_empty() {
            argv.extend(c.cmd.clone().unwrap_or_default());
        } else {
            argv.extend(command);
        }
        command = argv;
    }
    if command.is_empty() {
        anyhow::bail!("no command: give one after `--` or use an image with Cmd/Entrypoint");
    }
    if let Some(w) = &args.workdir {
        workdir = w.clone();
    }
    if let Some(u) = &args.user {
        user = u.clone();
    }
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("`--env {kv}` is not `K=V`"))?;
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v.to_owned()));
    }
    // The command's writes go to a tmpfs inside the sandbox and die with it.
    let mut spec = Spec::new(helper, Upper::Ephemeral, command);
    spec.lower = lower;
    spec.env = env;
    spec.cwd = workdir;
    spec.user = user;
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
