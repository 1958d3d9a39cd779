//! `kiln push NAME REF`: a local image to a registry, by tag, or by digest
//! when REF is `NAME@sha256:...` (a digest in REF must be the image's). The
//! manifest digest goes to stdout. `kiln build --output registry:REF` pushes
//! through here too.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::pull::RegistryFlags;
use crate::build::{self, StoreBlobs};
use crate::digest::Sha256Digest;
use crate::image::Platform;
use crate::image::registry::{Progress, Reference};
use crate::store::Store;

/// Arguments of `kiln push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The local image: `NAME[:TAG]` or a manifest digest.
    pub name: String,
    /// Where to: `HOST[:PORT]/NAME[:TAG][@sha256:...]`.
    pub reference: String,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
fn render(event: Progress) {
    if let Progress::Blob {
        digest,
        size,
        transferred,
    } = event
    {
        let what = if transferred { "pushed" } else { "exists" };
        eprintln!("  blob {digest} {size} bytes {what}");
    }
}

/// Pushes the stored image `manifest` to `reference`; returns its digest.
pub fn push_image(
    store: &Store,
    manifest: &Sha256Digest,
    reference: &str,
    flags: &RegistryFlags,
) -> anyhow::Result<Sha256Digest> {
    let target: Reference = reference.parse()?;
    let image = build::read_stored_image(store, manifest)?;
    let client = flags.client(Platform::linux_amd64());
    #[expect(clippy::print_stderr, reason = "cli prints")]
    {
        eprintln!("pushing {manifest} to {target}");
    }
    let digest = client
        .push(&StoreBlobs { store }, &image, &target, &mut render)
        .with_context(|| format!("failed to push {manifest} to {target}"))?;
    Ok(digest)
}

pub(super) fn run(store_flag: Option<&Path>, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let manifest = super::image::resolve(&store, &args.name)?;
    let digest = push_image(&store, &manifest, &args.reference, &args.registry)?;
    writeln!(std::io::stdout().lock(), "{digest}")?;
    Ok(ExitCode::SUCCESS)
}
