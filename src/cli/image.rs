//! `kiln image import|load|ls|export|rm`: local images in the store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::plan::split_tag;
use crate::build::{self, StoreBlobs};
use crate::image::import::{self, ImportOptions};
use crate::store::Store;

/// Arguments of `kiln image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `kiln image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make a one-layer image from a root filesystem tar (plain, gzip or
    /// zstd) or directory, like `docker import`.
    Import {
        /// The tar file (`-` for stdin) or directory.
        source: PathBuf,
        /// The name to tag it with, `NAME[:TAG]`.
        #[arg(long, short = 't')]
        tag: String,
        /// The timestamp for the image (default: `SOURCE_DATE_EPOCH`, else 0).
        #[arg(long, value_name = "N", env = "SOURCE_DATE_EPOCH")]
        source_date_epoch: Option<i64>,
    },
    /// Load an image from `oci:DIR[:REF]` or `docker-archive:FILE[:REF]`
    /// into the store, every blob verified; prints its manifest digest.
    Load {
        /// `oci:DIR[:REF]` or `docker-archive:FILE[:REF]` (REF picks one
        /// image of several).
        source: String,
        /// The local name, `NAME[:TAG]` (default: the archive's tags, or
        /// the layout's REF when it is a full name).
        #[arg(long, short = 't')]
        tag: Option<String>,
        /// The platform to pick from an image index, `OS/ARCH[/VARIANT]`.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]", default_value = "linux/amd64")]
        platform: String,
    },
    /// List local images.
    Ls,
    /// Write a local image as `oci:DIR` or `docker-archive:FILE`.
    Export {
        /// `NAME[:TAG]` or a manifest digest.
        name: String,
        /// `oci:DIR` or `docker-archive:FILE`.
        dest: String,
    },
    /// Remove a tag (blobs stay until `kiln store gc`).
    Rm {
        /// `NAME[:TAG]`.
        name: String,
    },
}

/// Resolves `NAME[:TAG]` or `sha256:...` to a manifest digest.
pub fn resolve(store: &Store, name: &str) -> anyhow::Result<crate::digest::Sha256Digest> {
    if let Ok(d) = name.parse::<crate::digest::Sha256Digest>() {
        return Ok(d);
    }
    let (n, t) = split_tag(name);
    Ok(store
        .image(n, t)?
        .with_context(|| format!("no local image `{n}:{t}`"))?
        .manifest)
}

/// Writes a stored image to `dest` (`oci:DIR` or `docker-archive:FILE`).
pub fn export(
    store: &Store,
    manifest: &crate::digest::Sha256Digest,
    name: &str,
    dest: &str,
) -> anyhow::Result<()> {
    let image = build::read_stored_image(store, manifest)?;
    let source = StoreBlobs { store };
    if let Some(dir) = dest.strip_prefix("oci:") {
        let (dir, reference) = match dir.rsplit_once(':') {
            Some((d, r)) if !r.contains('/') => (d, r.to_owned()),
            _ => (dir, split_tag(name).1.to_owned()),
        };
        let layout = if Path::new(dir).join("oci-layout").is_file() {
            crate::image::OciLayout::open(Path::new(dir))?
        } else {
            crate::image::OciLayout::create(Path::new(dir))?
        };
        layout.write_image(&source, &image, &reference)?;
    } else if let Some(file) = dest.strip_prefix("docker-archive:") {
        let (n, t) = split_tag(name);
        let tags = if n.starts_with("sha256:") {
            Vec::new()
        } else {
            vec![format!("{n}:{t}")]
        };
        let out =
            std::fs::File::create(file).with_context(|| format!("failed to create {file}"))?;
        crate::image::docker_archive::write(&source, &image, &tags, out)?;
    } else {
        anyhow::bail!("unknown destination `{dest}`: use `oci:DIR` or `docker-archive:FILE`");
    }
    Ok(())
}

/// Splits `PATH[:REF]` like skopeo: the whole text when it names an
/// existing file or directory, else at the first `:`.
fn split_source(rest: &str) -> (&str, Option<&str>) {
    if Path::new(rest).exists() {
        return (rest, None);
    }
    match rest.split_once(':') {
        Some((path, reference)) if !reference.is_empty() => (path, Some(reference)),
        _ => (rest, None),
    }
}

/// `kiln image load`: the image and the local names to give it.
fn load(
    store: &Store,
    source: &str,
    tag: Option<&str>,
    platform: &str,
) -> anyhow::Result<crate::digest::Sha256Digest> {
    let sink = StoreBlobs { store };
    let (image, names) = if let Some(rest) = source.strip_prefix("oci:") {
        let (dir, reference) = split_source(rest);
        let layout = crate::image::OciLayout::open(Path::new(dir))?;
        let platform = super::pull::parse_platform(platform)?;
        let image = layout.read_image(reference, &platform)?;
        crate::image::blob::copy_image(&layout, &sink, &image)?;
        // A layout's REF is often a bare tag; only a full name names it.
        let names = reference
            .filter(|r| r.contains(':') || r.contains('/'))
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default();
        (image, names)
    } else if let Some(rest) = source.strip_prefix("docker-archive:") {
        let (file, reference) = split_source(rest);
        let archive = crate::image::docker_archive::DockerArchive::open(Path::new(file))?;
        let image = archive.load(reference, &sink)?;
        let names = match reference {
            Some(r) => vec![r.to_owned()],
            None => archive
                .manifest()
                .iter()
                .flat_map(|m| m.repo_tags.iter().flatten().cloned())
                .collect(),
        };
        (image, names)
    } else {
        anyhow::bail!(
            "unknown image source `{source}`: use `oci:DIR[:REF]` or `docker-archive:FILE[:REF]`"
        );
    };
    let names = match tag {
        Some(t) => vec![t.to_owned()],
        None => names,
    };
    if names.is_empty() {
        anyhow::bail!(
            "`{source}` names no image name to tag the loaded image {} with; give `--tag NAME[:TAG]`",
            image.descriptor.digest
        );
    }
    for name in &names {
        let (n, t) = split_tag(name);
        store.tag_image(n, t, &image.descriptor.digest, None)?;
    }
    Ok(image.descriptor.digest)
}

pub(super) fn run(store_flag: Option<&Path>, args: &ImageArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let mut out = std::io::stdout().lock();
    match &args.command {
        ImageCommand::Import {
            source,
            tag,
            source_date_epoch,
        } => {
            let options = ImportOptions {
                source_date_epoch: source_date_epoch.unwrap_or(0),
                created_by: format!("kiln image import {}", tag),
                ..ImportOptions::default()
            };
            let sink = StoreBlobs { store: &store };
            let image = if source.is_dir() {
                // The directory holds the real owners (offset 0).
                import::import_dir(source, &sink, &options)?
            } else {
                let tmp = store.tmp_dir()?;
                let (image, report) = if source.as_os_str() == "-" {
                    import::import_tar(std::io::stdin().lock(), tmp.path(), &sink, &options)?
                } else {
                    let f = std::fs::File::open(source)
                        .with_context(|| format!("failed to open {}", source.display()))?;
                    import::import_tar(std::io::BufReader::new(f), tmp.path(), &sink, &options)?
                };
                #[expect(clippy::print_stderr, reason = "cli prints")]
                for s in &report.skipped {
                    eprintln!("skipped {}: {}", s.path, s.reason);
                }
                image
            };
            let digest = image.descriptor.digest;
            let (n, t) = split_tag(tag);
            store.tag_image(n, t, &digest, None)?;
            writeln!(out, "{digest}")?;
        }
        ImageCommand::Load {
            source,
            tag,
            platform,
        } => {
            let digest = load(&store, source, tag.as_deref(), platform)?;
            writeln!(out, "{digest}")?;
        }
        ImageCommand::Ls => {
            for image in store.images()? {
                let size: u64 = build::read_stored_image(&store, &image.manifest)
                    .map(|i| i.manifest.layers.iter().map(|l| l.size).sum())
                    .unwrap_or(0);
                writeln!(
                    out,
                    "{}:{}\t{}\t{}",
                    image.name, image.tag, image.manifest, size
                )?;
            }
        }
        ImageCommand::Export { name, dest } => {
            let digest = resolve(&store, name)?;
            export(&store, &digest, name, dest)?;
            writeln!(out, "{digest}")?;
        }
        ImageCommand::Rm { name } => {
            let (n, t) = split_tag(name);
            if !store.untag_image(n, t)? {
                anyhow::bail!("no local image `{n}:{t}`");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
