//! `kiln show-derivation`: one derivation's canonical form, as stored.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::digest::Blake3Digest;
use crate::store::Store;

/// Arguments of `kiln show-derivation`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The derivation, `blake3:<hex>` (as `kiln plan` prints it).
    #[arg(value_name = "HASH")]
    pub hash: String,
    /// Print the record as JSON (hash, kind, stage, name, references, text).
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(store_flag: Option<&Path>, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let hash: Blake3Digest = args.hash.parse().with_context(|| {
        format!(
            "`{}` is not a derivation hash (`blake3:<64 hex digits>`)",
            args.hash
        )
    })?;
    let store = Store::open(&super::store::root(store_flag)?)?;
    let Some(drv) = store.derivation(&hash)? else {
        anyhow::bail!(
            "derivation {hash} is not in the store {}\nhint: `kiln plan` records the derivations of a build",
            store.root().display()
        );
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = String::from_utf8_lossy(&drv.bytes);
        let doc = serde_json::json!({
            "hash": drv.hash,
            "kind": drv.kind.as_str(),
            "stage": drv.stage,
            "name": drv.name,
            "references": drv.refs,
            "text": text,
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        out.write_all(&drv.bytes)?;
    }
    Ok(ExitCode::SUCCESS)
}
