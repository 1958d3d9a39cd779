//! The command line: clap types, one file per subcommand, and the only code
//! that prints. Stdout carries data only; messages go to stderr.

mod build;
mod bundle;
mod check;
mod diff;
mod image;
mod lock;
mod parse;
pub mod plan;
mod progress;
pub mod pull;
mod push;
mod run;
mod show;
mod store;
mod unshare;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::dockerfile::ParseError;

/// kiln: reproducible OCI images from ordinary Dockerfiles.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
pub struct Cli {
    /// The store directory (else `$KILN_STORE`, else `$XDG_DATA_HOME/kiln`,
    /// else `~/.local/share/kiln`).
    #[arg(long, global = true, value_name = "DIR", env = "KILN_STORE")]
    pub store: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse a Dockerfile and print its instructions as kiln reads them.
    Parse(parse::ParseArgs),
    /// Print the derivation graph of a build: every stage and step with its
    /// hash and inputs.
    Plan(plan::PlanArgs),
    /// Print one derivation's canonical form, as recorded by `kiln plan`.
    ShowDerivation(show::ShowArgs),
    /// Look after the store: path, info, add, verify, gc.
    Store(store::StoreArgs),
    /// Build an image from a Dockerfile; the last line on stdout is its
    /// manifest digest.
    Build(build::BuildArgs),
    /// Pin base images and fetch steps in kiln.lock (beside the
    /// Dockerfile), running the fetch steps that have no pin.
    Lock(lock::LockArgs),
    /// Local images: import, load, ls, export, rm.
    Image(image::ImageArgs),
    /// Pull an image from a registry into the store and tag it; prints its
    /// manifest digest.
    Pull(pull::PullArgs),
    /// Push a local image to a registry; prints its manifest digest.
    Push(push::PushArgs),
    /// Print a step's stored build log.
    Log(build::LogArgs),
    /// Run a command in the sandbox over a root filesystem directory.
    Run(run::RunArgs),
    /// Compare two images (or, with `--plan`, two derivation graphs);
    /// exit 0 if the same, 1 if different, 2 on error.
    Diff(diff::DiffArgs),
    /// Run a command as root of kiln's own user namespace (a normal user
    /// with subordinate ids): where store files have the owners images give
    /// them, to look at or remove them, or to run kiln's tests.
    Unshare(unshare::UnshareArgs),
    /// The sandbox's child side (internal: spawned by kiln itself).
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit,
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::SandboxInit) {
        enter_user_namespace()?;
    }
    match cli.command {
        Command::Parse(args) => parse::run(&args),
        Command::Plan(args) => plan::run(cli.store.as_deref(), &args),
        Command::ShowDerivation(args) => show::run(cli.store.as_deref(), &args),
        Command::Store(args) => store::run(cli.store.as_deref(), &args),
        Command::Build(args) => build::run(cli.store.as_deref(), &args),
        Command::Lock(args) => lock::run(cli.store.as_deref(), &args),
        Command::Image(args) => image::run(cli.store.as_deref(), &args),
        Command::Pull(args) => pull::run(cli.store.as_deref(), &args),
        Command::Push(args) => push::run(cli.store.as_deref(), &args),
        Command::Log(args) => build::log(cli.store.as_deref(), &args),
        Command::Run(args) => run::run(cli.store.as_deref(), &args),
        Command::Diff(args) => Ok(diff::run(cli.store.as_deref(), &args)),
        Command::Unshare(args) => unshare::run(&args),
        Command::SandboxInit => Ok(ExitCode::from(
            u8::try_from(crate::sandbox::init::main()).unwrap_or(1),
        )),
    }
}

/// Unprivileged, with subordinate ids: run as root of kiln's own user
/// namespace, where store files can have the owners images give them (see
/// [`crate::sandbox::enter_own_user_namespace`]). `KILN_USERNS=0` keeps
/// kiln in the caller's namespace with the caller's uid alone.
#[expect(clippy::print_stderr, reason = "cli prints")]
fn enter_user_namespace() -> anyhow::Result<()> {
    use crate::sandbox::SandboxError;
    if std::env::var_os("KILN_USERNS").is_some_and(|v| v == "0") {
        return Ok(());
    }
    match crate::sandbox::enter_own_user_namespace() {
        Ok(_) => Ok(()),
        // Before or at unshare(2): nothing changed, go on with one id.
        Err(e @ SandboxError::Host { .. }) => {
            let why = crate::one_line(&e);
            eprintln!(
                "warning: kiln could not make its own user namespace ({why}); it runs with your uid alone, so RUN steps cannot give files other owners or run as another USER"
            );
            Ok(())
        }
        // Unshared, but the maps were refused: no file can be made here.
        Err(e) => Err(anyhow::Error::new(e).context(
            "kiln could not map the ids of its own user namespace (check your ranges in /etc/subuid and /etc/subgid, or set KILN_USERNS=0 to run with your uid alone)",
        )),
    }
}

/// A front-end error together with the file it was found in; renders as
/// `FILE:LINE:COL: message`.
#[derive(Debug, thiserror::Error)]
#[error("{}:{}:{}: {source}", file.display(), source.location().0, source.location().1)]
pub struct FileError {
    /// The file that was being read.
    pub file: PathBuf,
    /// What was wrong in it.
    pub source: ParseError,
}

impl FileError {
    /// Attaches `file` to `source`.
    pub fn new(file: &Path, source: ParseError) -> Self {
        FileError {
            file: file.to_path_buf(),
            source,
        }
    }
}

/// Reads `--build-arg` values: `KEY=VALUE`, or `KEY` alone to take the value
/// from kiln's environment (as docker build does; skipped when unset).
pub fn build_args(raw: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for item in raw {
        match item.split_once('=') {
            Some(("", _)) => {
                anyhow::bail!("invalid --build-arg `{item}`: the name is empty")
            }
            Some((key, value)) => {
                out.insert(key.to_string(), value.to_string());
            }
            None => {
                if let Ok(value) = std::env::var(item) {
                    out.insert(item.clone(), value);
                }
            }
        }
    }
    Ok(out)
}

/// A size for people: `1536` as `1.5 KiB` (powers of 1024).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints an error the way uv does: `error: ...`, one `caused by: ...` per
/// source, then `hint: ...`.
#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
pub fn report(err: &anyhow::Error) {
    eprintln!("error: {err}");
    let mut source = std::error::Error::source(err.as_ref() as &dyn std::error::Error);
    // FileError's own source is already in its message.
    if err.downcast_ref::<FileError>().is_some() {
        source = source.and_then(std::error::Error::source);
    }
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = err
        .downcast_ref::<FileError>()
        .and_then(|e| e.source.hint())
    {
        eprintln!("hint: {hint}");
    }
    if let Some(hint) = err
        .chain()
        .find_map(|e| e.downcast_ref::<crate::store::StoreError>())
        .and_then(crate::store::StoreError::hint)
    {
        eprintln!("hint: {hint}");
    }
    if let Some(hint) = err
        .chain()
        .find_map(|e| e.downcast_ref::<crate::image::registry::RegistryError>())
        .and_then(crate::image::registry::RegistryError::hint)
    {
        eprintln!("hint: {hint}");
    }
    if let Some(hint) = err
        .chain()
        .find_map(|e| e.downcast_ref::<crate::fetch::FetchError>())
        .and_then(crate::fetch::FetchError::hint)
    {
        eprintln!("hint: {hint}");
    }
    if err
        .chain()
        .any(|e| e.downcast_ref::<lock::OfflineMissing>().is_some())
    {
        eprintln!(
            "hint: carry them over with `kiln store export --plan ... -o BUNDLE` where they are, then `kiln store import BUNDLE`"
        );
    }
    if let Some(hint) = err
        .chain()
        .find_map(|e| e.downcast_ref::<crate::sandbox::SandboxError>())
        .and_then(crate::sandbox::SandboxError::hint)
    {
        eprintln!("hint: {hint}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(super::human_bytes(0), "0 B");
        assert_eq!(super::human_bytes(1023), "1023 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
