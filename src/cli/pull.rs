//! `kiln pull REF`: an image from a registry into the store, tagged
//! locally as REF's name and tag (like `docker pull`); the manifest digest
//! goes to stdout. Also the flags every command that talks to registries
//! shares, and the pull that base-image resolution uses.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::build::StoreBlobs;
use crate::digest::Sha256Digest;
use crate::image::Platform;
use crate::image::registry::{Client, ClientOptions, Progress, Pulled, Reference, RegistryError};
use crate::store::{RootTarget, Store, StoreError};

/// How kiln reaches registries (`pull`, `push`, `build`, `plan`).
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryFlags {
    /// A registry spoken to over plain HTTP, `HOST[:PORT]` (a bare HOST
    /// covers every port); repeatable, or comma separated in
    /// `KILN_INSECURE_REGISTRIES`. localhost, 127.0.0.0/8 and ::1 always
    /// are, as in docker.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST[:PORT]",
        env = "KILN_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
}

impl RegistryFlags {
    /// A client for these flags, with credentials and CAs from the
    /// environment, picking `platform` from indexes.
    pub fn client(&self, platform: Platform) -> Client {
        let mut options = ClientOptions::from_env(|k| std::env::var_os(k));
        options.insecure = self
            .insecure_registries
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        options.platform = platform;
        Client::new(options)
    }
}

/// Arguments of `kiln pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: `[HOST[:PORT]/]NAME[:TAG][@sha256:...]`.
    pub reference: String,
    /// The platform to pick from an image index, `OS/ARCH[/VARIANT]`.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", default_value = "linux/amd64")]
    pub platform: String,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: (*os).to_owned(),
            architecture: (*arch).to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
            os_version: None,
        }),
        _ => anyhow::bail!("invalid platform `{s}`: expected `OS/ARCH[/VARIANT]`"),
    }
}

/// Why a pull into the store failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry side.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Recording the image in the store.
    #[error("failed to record the pulled image in the store")]
    Store(#[from] StoreError),
}

#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
fn render(event: Progress) {
    match event {
        Progress::Manifest { descriptor } => {
            let kind = if descriptor.media_type.contains("index")
                || descriptor.media_type.contains("list")
            {
                "index"
            } else {
                "manifest"
            };
            eprintln!("  {kind} {} {} bytes", descriptor.digest, descriptor.size);
        }
        Progress::Blob {
            digest,
            size,
            transferred,
        } => {
            let what = if transferred { "done" } else { "present" };
            eprintln!("  blob {digest} {size} bytes {what}");
        }
    }
}

/// Pulls `reference` into the store and names it there: tagged as its
/// familiar name and tag when it has a tag (or no digest), kept by a GC
/// root `pulled:NAME@DIGEST` when it has a digest. Progress goes to stderr.
pub fn pull_to_store(
    store: &Store,
    client: &Client,
    reference: &Reference,
) -> Result<Pulled, PullError> {
    #[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
    {
        eprintln!("pulling {reference} ({})", client.options().platform);
    }
    let pulled = client.pull(reference, &StoreBlobs { store }, &mut render)?;
    let name = reference.familiar_name();
    let manifest = pulled.image.descriptor.digest;
    if let Some(tag) = reference
        .tag
        .as_deref()
        .or(reference.digest.is_none().then_some("latest"))
    {
        store.tag_image(&name, tag, &manifest, None)?;
    }
    if let Some(digest) = reference.digest {
        store.add_root(
            &format!("pulled:{name}@{digest}"),
            &RootTarget::Blob(digest),
        )?;
    }
    Ok(pulled)
}

pub(super) fn run(store_flag: Option<&Path>, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let reference: Reference = args.reference.parse()?;
    let client = args.registry.client(parse_platform(&args.platform)?);
    let pulled = pull_to_store(&store, &client, &reference)
        .with_context(|| format!("failed to pull {reference}"))?;
    let digest: Sha256Digest = pulled.image.descriptor.digest;
    #[expect(clippy::print_stderr, reason = "cli prints")]
    {
        let size: u64 = pulled.image.manifest.layers.iter().map(|l| l.size).sum();
        match &pulled.index {
            Some(index) => eprintln!(
                "pulled {} as {}: index {}, {} manifest {digest} ({size} bytes of layers)",
                reference,
                reference.familiar_name(),
                index.digest,
                client.options().platform
            ),
            None => eprintln!(
                "pulled {} as {}: manifest {digest} ({size} bytes of layers)",
                reference,
                reference.familiar_name()
            ),
        }
    }
    writeln!(std::io::stdout().lock(), "{digest}")?;
    Ok(ExitCode::SUCCESS)
}
