//! `kiln store ...`: look after the store (path, info, add, verify, gc).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::store::{self, GcReport, Issue, Store, VerifyReport};

/// Arguments of `kiln store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// What to do with the store.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The `kiln store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print the store directory.
    Path,
    /// Show counts and sizes of what the store holds.
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add files as objects, each kept by a GC root named by its path;
    /// print each object's hash (like `nix-store --add`).
    Add {
        /// The files to add.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash everything and report each missing or corrupt item
    /// (exit status 1 if there is any).
    Verify {
        /// Forget broken items and what needs them, and delete their files.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete what no root reaches (tagged images, roots) and leftovers of
    /// interrupted writes; print what was freed.
    Gc {
        /// Only print what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Resolves the store root from `--store`/`KILN_STORE` and the environment.
pub(super) fn root(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(store::resolve_root(
        flag,
        std::env::var_os("XDG_DATA_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )?)
}

#[derive(Serialize)]
struct Added {
    path: PathBuf,
    hash: crate::digest::Blake3Digest,
    size: u64,
}

#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
pub(super) fn run(store_flag: Option<&Path>, args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let root = root(store_flag)?;
    let mut out = std::io::stdout().lock();
    match &args.command {
        StoreCommand::Path => {
            writeln!(out, "{}", root.display())?;
        }
        StoreCommand::Info { json } => {
            let info = Store::open(&root)?.info()?;
            if *json {
                serde_json::to_writer_pretty(&mut out, &info)?;
                writeln!(out)?;
            } else {
                writeln!(out, "store:        {}", info.root.display())?;
                writeln!(out, "schema:       {}", info.schema_version)?;
                for (what, c) in [
                    ("objects", info.objects),
                    ("blobs", info.blobs),
                    ("trees", info.trees),
                    ("derivations", info.derivations),
                ] {
                    writeln!(
                        out,
                        "{:<13} {} ({})",
                        format!("{what}:"),
                        c.count,
                        super::human_bytes(c.bytes)
                    )?;
                }
                for (what, n) in [
                    ("outputs", info.outputs),
                    ("images", info.images),
                    ("roots", info.roots),
                    ("builds", info.builds),
                    ("stat cache", info.stat_cache),
                ] {
                    writeln!(out, "{:<13} {n}", format!("{what}:"))?;
                }
                writeln!(
                    out,
                    "database:     {}",
                    super::human_bytes(info.database_bytes)
                )?;
            }
        }
        StoreCommand::Add { paths, json } => {
            let store = Store::open(&root)?;
            let mut added = Vec::new();
            for path in paths {
                let abs = std::path::absolute(path)
                    .with_context(|| format!("failed to resolve {}", path.display()))?;
                let mut file = std::fs::File::open(&abs)
                    .with_context(|| format!("failed to open {}", path.display()))?;
                if file.metadata().is_ok_and(|m| m.is_dir()) {
                    anyhow::bail!(
                        "{} is a directory: `kiln store add` adds files",
                        path.display()
                    );
                }
                let name = abs.to_string_lossy();
                let (hash, size) = store
                    .add_object_rooted(&mut file, &name)
                    .with_context(|| format!("failed to add {}", path.display()))?;
                if !*json {
                    writeln!(out, "{hash}")?;
                }
                added.push(Added {
                    path: abs,
                    hash,
                    size,
                });
            }
            if *json {
                serde_json::to_writer_pretty(&mut out, &added)?;
                writeln!(out)?;
            }
        }
        StoreCommand::Verify { repair, json } => {
            let report = Store::open(&root)?.verify(*repair)?;
            print_verify(&mut out, &report, *json)?;
            if !report.is_clean() {
                let what = if report.repaired {
                    "problems found and repaired (their records forgotten)"
                } else {
                    "problems found"
                };
                eprintln!(
                    "kiln: checked {} items: {} {what}",
                    report.checked,
                    report.problems.len()
                );
                if !report.repaired {
                    eprintln!("hint: `kiln store verify --repair` forgets the broken items");
                }
                return Ok(ExitCode::from(1));
            }
            eprintln!("kiln: checked {} items: all good", report.checked);
        }
        StoreCommand::Gc { dry_run, json } => {
            let report = Store::open(&root)?.gc(*dry_run)?;
            print_gc(&mut out, &report, *json)?;
            eprintln!(
                "kiln: {} {} items, {}",
                if report.dry_run {
                    "would delete"
                } else {
                    "deleted"
                },
                report.deleted.len(),
                super::human_bytes(report.freed_bytes)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_verify(out: &mut dyn Write, report: &VerifyReport, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    for p in &report.problems {
        let at = p
            .path
            .as_ref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        match &p.issue {
            Issue::Missing => writeln!(out, "missing {} {}{at}", p.kind, p.id)?,
            Issue::Corrupt { expected, found } => writeln!(
                out,
                "corrupt {} {}{at}: expected {expected}, found {found}",
                p.kind, p.id
            )?,
            Issue::Unreadable { error } => {
                writeln!(out, "unreadable {} {}{at}: {error}", p.kind, p.id)?
            }
            Issue::Dangling => writeln!(out, "dangling root {}: its target is not stored", p.id)?,
            Issue::Database { message } => writeln!(out, "database problem{at}: {message}")?,
        }
    }
    Ok(())
}

fn print_gc(out: &mut dyn Write, report: &GcReport, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for item in &report.deleted {
        writeln!(
            out,
            "{verb} {} {} ({})",
            item.kind,
            item.id,
            super::human_bytes(item.bytes)
        )?;
    }
    Ok(())
}
