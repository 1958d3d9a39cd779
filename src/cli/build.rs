//! `kiln build`: plan, build what is missing, tag and export the image.
//! The last line on stdout is the manifest digest; progress goes to stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::plan::{BuildFlags, make_plan, record, split_tag};
use super::progress::{Mode, Progress, Summary};
use crate::build;
use crate::store::Store;

/// Arguments of `kiln build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// What to build.
    #[command(flatten)]
    pub build: BuildFlags,
    /// Tag the image `NAME[:TAG]` (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Also write the image to `oci:DIR` or `docker-archive:FILE`, or push
    /// it to `registry:REF`.
    #[arg(long, value_name = "DEST")]
    pub output: Option<String>,
    /// Build every step again even if its output is stored.
    #[arg(long)]
    pub no_cache: bool,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=PATH`.
    #[arg(long, value_name = "id=ID,src=PATH")]
    pub secret: Vec<String>,
    /// A label for the image, `K=V`.
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    /// Write the image's manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Then build every step again over its stored inputs, in a temporary
    /// directory, and compare with the stored result, like `nix build
    /// --check`; exit 1 if a step is not reproducible.
    #[arg(long)]
    pub check: bool,
    /// `auto` (a live view on a terminal, else `plain`), `plain` or `json`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "json"])]
    pub progress: String,
    /// Write what the build made (image digests, tags, derivation) as JSON
    /// to this file, as `docker buildx build --metadata-file` does.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
}

/// Reads `--secret id=ID,src=PATH` values.
pub(super) fn secrets(raw: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for s in raw {
        let mut id = None;
        let mut src = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                _ => anyhow::bail!("invalid `--secret {s}`: expected `id=ID,src=PATH`"),
            }
        }
        let id = id.with_context(|| format!("`--secret {s}` has no `id=`"))?;
        let src = src.with_context(|| format!("`--secret {s}` has no `src=`"))?;
        out.insert(id, src);
    }
    Ok(out)
}

pub(super) fn run(store_flag: Option<&Path>, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let planned = make_plan(&args.build, &store)?;
    let file = args.build.dockerfile();
    super::lock::require_pins(&planned, &args.build, &file)?;
    if args.build.offline {
        super::lock::require_offline_inputs(&store, &planned, &file)?;
    }
    record(&store, &planned.plan)?;
    let mut labels = Vec::new();
    for l in &args.label {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("`--label {l}` is not `K=V`"))?;
        labels.push((k.to_owned(), v.to_owned()));
    }
    let mut options = build::Options {
        helper: std::env::current_exe().context("failed to find the kiln executable")?,
        context: planned.root.clone(),
        context_files: planned.files.clone(),
        source_date_epoch: i64::try_from(args.build.source_date_epoch.unwrap_or(0))
            .context("--source-date-epoch is too large")?,
        secrets: secrets(&args.secret)?,
        no_cache: args.no_cache,
        labels,
        fetch: super::lock::fetch_options(&args.build, &planned, build::fetch::FetchMode::Build),
        check: false,
    };
    let progress = Progress::new(Mode::from_flag(&args.progress));
    let result = build::build(&store, &planned.evaluation, &planned.plan, &options, &|e| {
        progress.event(&e);
    });
    let summary = result.as_ref().ok().map(|built| Summary {
        manifest: built.manifest.to_string(),
        compressed: built.image.manifest.layers.iter().map(|l| l.size).sum(),
        layers: built.image.manifest.layers.len(),
    });
    progress.finish(summary.as_ref());
    let built = result.map_err(|e| super::lock::build_error(&file, e))?;
    super::lock::keep_roots(&store, &planned, false)?;
    for tag in &args.tags {
        let (n, t) = split_tag(tag);
        store.tag_image(n, t, &built.manifest, Some(&built.derivation))?;
    }
    if let Some(dest) = &args.output {
        if let Some(reference) = dest.strip_prefix("registry:") {
            super::push::push_image(&store, &built.manifest, reference, &args.build.registry)?;
        } else {
            let name = args.tags.first().map_or("latest", String::as_str);
            super::image::export(&store, &built.manifest, name, dest)?;
        }
    }
    if let Some(f) = &args.iidfile {
        std::fs::write(f, built.manifest.to_string())
            .with_context(|| format!("failed to write {}", f.display()))?;
    }
    if let Some(f) = &args.metadata_file {
        std::fs::write(f, metadata(&built, &args.tags, &options)?)
            .with_context(|| format!("failed to write {}", f.display()))?;
    }
    if args.check {
        options.check = true;
        let json = args.progress == "json";
        return super::check::run(&store, &planned, &options, &file, &built, json);
    }
    writeln!(std::io::stdout().lock(), "{}", built.manifest)?;
    Ok(ExitCode::SUCCESS)
}

/// The `--metadata-file` document: BuildKit's keys for the image, plus
/// kiln's own (the target derivation and the timestamp everything was
/// written with).
fn metadata(
    built: &build::Built,
    tags: &[String],
    options: &build::Options,
) -> anyhow::Result<Vec<u8>> {
    let descriptor = &built.image.descriptor;
    let value = serde_json::json!({
        "containerimage.digest": built.manifest.to_string(),
        "containerimage.config.digest": built.image.manifest.config.digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": descriptor.media_type,
            "digest": descriptor.digest.to_string(),
            "size": descriptor.size,
        },
        "image.name": tags.join(","),
        "kiln.derivation": built.derivation.to_string(),
        "kiln.source-date-epoch": options.source_date_epoch,
    });
    let mut out = serde_json::to_vec_pretty(&value)?;
    out.push(b'\n');
    Ok(out)
}

/// Arguments of `kiln log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The step derivation (`blake3:...`).
    pub derivation: String,
}

/// Prints a step's latest stored build log.
pub(super) fn log(store_flag: Option<&Path>, args: &LogArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let hash: crate::digest::Blake3Digest = args
        .derivation
        .parse()
        .with_context(|| format!("`{}` is not a derivation hash", args.derivation))?;
    let builds = store.builds(&hash)?;
    let log = builds
        .iter()
        .rev()
        .find_map(|b| b.log)
        .with_context(|| format!("no build log for {hash}"))?;
    let path = store
        .object_path(&log)?
        .with_context(|| format!("log object {log} is missing"))?;
    let bytes =
        std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}
