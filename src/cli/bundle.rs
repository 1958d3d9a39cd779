//! `kiln store export` and `kiln store import`: store bundles for machines
//! without network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::plan::{BuildFlags, make_plan, record, split_tag};
use crate::build::bundle::{self, Contents};
use crate::digest::Sha256Digest;
use crate::dockerfile::stage::Base;
use crate::store::Store;

/// Arguments of `kiln store export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A local image to carry, `NAME[:TAG]` or a manifest digest
    /// (repeatable).
    #[arg(long = "image", value_name = "NAME[:TAG]")]
    pub images: Vec<String>,
    /// Carry what the build given by the build flags needs: its base images
    /// (as kiln.lock pins them) and its fetch step outputs.
    #[arg(long)]
    pub plan: bool,
    /// With `--plan`: also every output of the build already in the store,
    /// so the other store rebuilds nothing.
    #[arg(long, requires = "plan")]
    pub with_outputs: bool,
    /// The bundle to write.
    #[arg(short = 'o', long = "output", value_name = "BUNDLE")]
    pub output: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The build (with `--plan`).
    #[command(flatten)]
    pub build: BuildFlags,
}

/// What `--plan` carries.
fn plan_contents(store: &Store, args: &ExportArgs, contents: &mut Contents) -> anyhow::Result<()> {
    let planned = make_plan(&args.build, store)?;
    let file = args.build.dockerfile();
    super::lock::require_pins(&planned, &args.build, &file)?;
    let missing = crate::build::fetch::missing_inputs(store, &planned.evaluation, &planned.plan)?;
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|m| format!("  {}:{}: {}", file.display(), m.line, m.what))
            .collect();
        anyhow::bail!(
            "this store lacks what the build needs, so it cannot carry it:\n{}",
            list.join("\n")
        );
    }
    record(store, &planned.plan)?;
    for pstage in &planned.plan.stages {
        let estage = planned
            .evaluation
            .stages
            .iter()
            .find(|s| s.index == pstage.index)
            .expect("the plan's stages come from the evaluation");
        let mut images: Vec<(String, String)> = Vec::new();
        if let Base::Image(reference) = &estage.base
            && let Some((_, d)) = pstage.base.rsplit_once('@')
        {
            images.push((reference.clone(), d.to_owned()));
        }
        for step in &pstage.steps {
            images.extend(step.images.iter().cloned());
            if let (Some(_), Some(drv)) = (&step.fetch, &step.derivation) {
                contents.outputs.push(drv.hash);
            }
        }
        for (reference, digest) in images {
            let digest: Sha256Digest = digest
                .parse()
                .with_context(|| format!("`{reference}` resolved to `{digest}`"))?;
            contents.manifests.push(digest);
            if let Some(pin) = planned.lock.as_ref().and_then(|l| l.image(&reference))
                && store.blob_path(&pin.digest)?.is_some()
            {
                contents.manifests.push(pin.digest);
            }
            // A local name goes along, so the other store resolves it
            // without kiln.lock too.
            if !reference.contains('@') {
                let (name, tag) = split_tag(&reference);
                if store
                    .image(name, tag)?
                    .is_some_and(|i| i.manifest == digest)
                {
                    contents
                        .tags
                        .push((name.to_owned(), tag.to_owned(), digest));
                }
            }
        }
    }
    contents.source_date_epoch = i64::try_from(args.build.source_date_epoch.unwrap_or(0))
        .context("--source-date-epoch is too large")?;
    contents
        .derivations
        .extend(planned.plan.derivations().map(|d| d.hash));
    if args.with_outputs {
        for d in planned.plan.derivations() {
            if store.output(&d.hash)?.is_some() {
                contents.outputs.push(d.hash);
            }
        }
    }
    Ok(())
}

#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
pub(super) fn export(root: &Path, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    if args.images.is_empty() && !args.plan {
        anyhow::bail!("say what to export: `--image NAME` (repeatable) or `--plan [build flags]`");
    }
    let store = Store::open(root)?;
    let mut contents = Contents::default();
    for name in &args.images {
        let manifest = super::image::resolve(&store, name)?;
        contents.manifests.push(manifest);
        if !name.starts_with("sha256:") {
            let (n, t) = split_tag(name);
            contents.tags.push((n.to_owned(), t.to_owned(), manifest));
        }
    }
    if args.plan {
        plan_contents(&store, args, &mut contents)?;
    }
    contents.tags.sort();
    contents.tags.dedup();
    let dir = args.output.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-bundle.")
        .tempfile_in(dir.unwrap_or(Path::new(".")))
        .with_context(|| format!("failed to create a file beside {}", args.output.display()))?;
    let summary = bundle::export(&store, &contents, &mut tmp)?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("failed to write {}", args.output.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("failed to write {}", args.output.display()))?;
    }
    tmp.persist(&args.output)
        .with_context(|| format!("failed to write {}", args.output.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", args.output.display())?;
    }
    eprintln!(
        "kiln: wrote {}: {}",
        args.output.display(),
        describe(&summary)
    );
    Ok(ExitCode::SUCCESS)
}

#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
pub(super) fn import(root: &Path, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = Store::open(root)?;
    let summary = bundle::import(&store, path)?;
    if json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    }
    eprintln!(
        "kiln: imported {}: {}, all verified",
        path.display(),
        describe(&summary)
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(s: &bundle::Summary) -> String {
    format!(
        "{} blobs ({} bytes), {} derivations, {} outputs, {} tags",
        s.blobs, s.bytes, s.derivations, s.outputs, s.images
    )
}
