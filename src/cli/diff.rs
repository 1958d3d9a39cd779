//! `kiln diff`: two images (or, with `--plan`, two derivation graphs), the
//! report on stdout as text (colour only on a terminal) or `--json`.
//! Exit status like diff(1) and diffoci: 0 same, 1 different, 2 error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::plan::{BuildFlags, make_plan, record, split_tag};
use crate::build::StoreBlobs;
use crate::diff::drv::{self, DrvDiff, DrvReport, InputChange};
use crate::diff::image::{self as image_diff, ImageReport, LayerVerdict, Side};
use crate::diff::json;
use crate::diff::read::Limits;
use crate::diff::tree::{PathDiff, Status, Summary};
use crate::diff::{Options, content::ContentDiff};
use crate::digest::Blake3Digest;
use crate::image::docker_archive::DockerArchive;
use crate::image::oci::Platform;
use crate::image::{BlobSource, OciLayout};
use crate::store::Store;

/// Arguments of `kiln diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first image: `oci:DIR[:REF]`, `docker-archive:FILE[:TAG]`, a
    /// local image `NAME[:TAG]` or `sha256:...`, or `registry:REF` /
    /// `docker://REF` (pulled into the store first). With `--plan`: a build
    /// context directory, a derivation `blake3:...`, or a local image kiln
    /// built.
    #[arg(value_name = "A")]
    pub a: String,
    /// The second, in the same forms.
    #[arg(value_name = "B")]
    pub b: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Ignore timestamps: `created`, history times, the
    /// `org.opencontainers.image.created` annotation, file mtimes.
    #[arg(long)]
    pub ignore_timestamps: bool,
    /// Ignore the config's history.
    #[arg(long)]
    pub ignore_history: bool,
    /// Ignore what cannot change how the image runs: layer boundaries,
    /// compression, manifest and annotations, timestamps, history, which
    /// path of a hard-link group holds the content.
    #[arg(long)]
    pub semantic: bool,
    /// The platform to pick from an image index (default linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Colour: `auto` (on a terminal, unless `NO_COLOR` is set), `always`,
    /// `never`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    /// Compare derivations (the build inputs) instead of images: the first
    /// derivations whose inputs differ, and which input.
    #[arg(long)]
    pub plan: bool,
    /// With `--plan`: the Dockerfile for both sides (default
    /// `CONTEXT/Dockerfile`).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// With `--plan`: A's Dockerfile.
    #[arg(long = "file-a", value_name = "FILE")]
    pub file_a: Option<PathBuf>,
    /// With `--plan`: B's Dockerfile.
    #[arg(long = "file-b", value_name = "FILE")]
    pub file_b: Option<PathBuf>,
    /// With `--plan`: a build argument for both sides, `KEY=VALUE`.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// With `--plan`: a build argument for A only (overrides `--build-arg`).
    #[arg(long = "build-arg-a", value_name = "KEY=VALUE")]
    pub build_args_a: Vec<String>,
    /// With `--plan`: a build argument for B only.
    #[arg(long = "build-arg-b", value_name = "KEY=VALUE")]
    pub build_args_b: Vec<String>,
    /// With `--plan`: the stage to compare (default: the last).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// With `--plan`: SOURCE_DATE_EPOCH for both sides.
    #[arg(long, value_name = "N", env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<u64>,
    /// Registry access, for `docker://REF` or `registry:REF` sides (and
    /// base images the store lacks, with `--plan`).
    #[command(flatten)]
    pub registry: super::pull::RegistryFlags,
}

/// Runs `kiln diff`; errors exit 2 (diff(1)'s "trouble").
pub(super) fn run(store_flag: Option<&Path>, args: &DiffArgs) -> ExitCode {
    match run_inner(store_flag, args) {
        Ok(code) => code,
        Err(e) => {
            super::report(&e);
            ExitCode::from(2)
        }
    }
}

fn run_inner(store_flag: Option<&Path>, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let paint = Paint::new(&args.color);
    if args.plan {
        return plan_diff(&store, args, &paint);
    }
    let options = Options {
        ignore_timestamps: args.ignore_timestamps,
        ignore_history: args.ignore_history,
        semantic: args.semantic,
        platform: match &args.platform {
            Some(p) => parse_platform(p)?,
            None => Platform::linux_amd64(),
        },
    };
    let spool = store.tmp_dir()?;
    let registry = &args.registry;
    let report = with_side(&store, registry, &args.a, &options.platform, &mut |a| {
        with_side(&store, registry, &args.b, &options.platform, &mut |b| {
            Ok(image_diff::diff(
                &a,
                &b,
                &options,
                spool.path(),
                Limits::default(),
            )?)
        })
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        render_image(&mut out, &report, &options, &paint)?;
    }
    Ok(ExitCode::from(u8::from(!report.same)))
}

fn parse_platform(text: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: (*os).to_owned(),
            architecture: (*arch).to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
            os_version: None,
        }),
        _ => anyhow::bail!("invalid --platform `{text}`: expected `OS/ARCH[/VARIANT]`"),
    }
}

/// Splits `PATH[:SUFFIX]` where `PATH` must satisfy `exists`: the whole
/// text if it does, else the longest prefix before a `:` that does.
fn split_path<'a>(text: &'a str, exists: &dyn Fn(&Path) -> bool) -> (&'a str, Option<&'a str>) {
    if exists(Path::new(text)) {
        return (text, None);
    }
    for (i, _) in text
        .match_indices(':')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        if exists(Path::new(&text[..i])) {
            return (&text[..i], Some(&text[i + 1..]));
        }
    }
    (text, None)
}

/// Opens one side and runs `f` on it. Every source is a [`BlobSource`]
/// and a starting descriptor.
fn with_side<R>(
    store: &Store,
    registry: &super::pull::RegistryFlags,
    spec: &str,
    platform: &Platform,
    f: &mut dyn FnMut(Side<'_>) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    if let Some(rest) = spec.strip_prefix("oci:") {
        let (dir, reference) = split_path(rest, &|p| p.join("oci-layout").is_file());
        let layout = OciLayout::open(Path::new(dir))
            .with_context(|| format!("failed to open the OCI layout of image `{spec}`"))?;
        let top = layout
            .entry(reference, platform)
            .with_context(|| format!("failed to find image `{spec}`"))?;
        return f(Side {
            label: spec.to_owned(),
            source: &layout,
            top,
            note: None,
        });
    }
    if let Some(rest) = spec.strip_prefix("docker-archive:") {
        let (file, tag) = split_path(rest, &|p| p.is_file());
        let archive = DockerArchive::open(Path::new(file))
            .with_context(|| format!("failed to open the docker-archive of image `{spec}`"))?;
        let image = archive
            .image_source(tag)
            .with_context(|| format!("failed to read image `{spec}`"))?;
        let top = image.image.descriptor.clone();
        return f(Side {
            label: spec.to_owned(),
            source: &image,
            top,
            note: Some("docker-archive: the manifest is synthesized by kiln".into()),
        });
    }
    if let Some(text) = spec
        .strip_prefix("docker://")
        .or_else(|| spec.strip_prefix("registry:"))
    {
        // Pulled into the store first (blobs it has already are not
        // fetched), then read from there like a local image.
        let reference: crate::image::registry::Reference = text
            .parse()
            .with_context(|| format!("`{spec}` is not an image reference"))?;
        let client = registry.client(platform.clone());
        let pulled = super::pull::pull_to_store(store, &client, &reference)
            .with_context(|| format!("failed to pull image `{spec}`"))?;
        let blobs = StoreBlobs { store };
        return f(Side {
            label: spec.to_owned(),
            source: &blobs,
            top: pulled.index.unwrap_or(pulled.image.descriptor),
            note: None,
        });
    }
    let digest = super::image::resolve(store, spec).with_context(|| {
        format!("`{spec}` is not `oci:DIR`, `docker-archive:FILE` or a local image")
    })?;
    let image = crate::build::read_stored_image(store, &digest)
        .with_context(|| format!("failed to read image `{spec}`"))?;
    let blobs = StoreBlobs { store };
    let source: &(dyn BlobSource + Sync) = &blobs;
    f(Side {
        label: spec.to_owned(),
        source,
        top: image.descriptor,
        note: None,
    })
}

/// Terminal colours, or none.
pub(super) struct Paint {
    on: bool,
}

impl Paint {
    pub(super) fn new(mode: &str) -> Paint {
        use std::io::IsTerminal;
        let on = match mode {
            "always" => true,
            "never" => false,
            _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Paint { on }
    }

    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }

    fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }

    fn yellow(&self, t: &str) -> String {
        self.wrap("33", t)
    }

    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }

    fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

fn describe(s: &Summary) -> String {
    let mut out = s.kind.to_owned();
    if let Some(size) = s.size {
        out.push_str(&format!(" {size} bytes"));
    }
    if let Some(t) = &s.target {
        out.push_str(&format!(" -> {t}"));
    }
    out.push_str(&format!(" {} {}:{}", s.mode, s.uid, s.gid));
    out
}

fn layer_label(report: &ImageReport, side_a: bool, layer: usize) -> String {
    let side = if side_a { &report.a } else { &report.b };
    match side.layers.get(layer).and_then(|l| l.created_by.as_deref()) {
        Some(by) => {
            let mut short: String = by.chars().take(60).collect();
            if by.chars().count() > 60 {
                short.push('…');
            }
            format!("layer {layer}: {short}")
        }
        None => format!("layer {layer}"),
    }
}

/// `(A layer 0: ...)`-style provenance; empty labels give nothing.
fn provenance(a: Option<String>, b: Option<String>) -> String {
    let text = match (a, b) {
        (Some(x), Some(y)) if x == y => x,
        (Some(x), Some(y)) => format!("A {x}; B {y}"),
        (Some(x), None) => format!("A {x}"),
        (None, Some(y)) => format!("B {y}"),
        (None, None) => String::new(),
    };
    if text.trim().is_empty() || text == "A " || text == "B " {
        String::new()
    } else {
        format!("  ({text})")
    }
}

fn render_content(out: &mut dyn Write, c: &ContentDiff, paint: &Paint) -> std::io::Result<()> {
    match (c.first_difference, c.compared) {
        (Some(at), _) => writeln!(out, "      first difference at byte {at}")?,
        (None, Some(n)) => writeln!(
            out,
            "      no difference in the first {n} bytes that could be compared"
        )?,
        (None, None) => {}
    }
    if let Some(note) = &c.note {
        writeln!(out, "      {}", paint.dim(note))?;
    }
    if !c.text && c.note.is_none() {
        writeln!(out, "      {}", paint.dim("binary content: no text diff"))?;
    }
    if let Some(u) = &c.unified {
        for line in u.lines() {
            let styled = if line.starts_with("+++") || line.starts_with("---") {
                paint.bold(line)
            } else if line.starts_with('+') {
                paint.green(line)
            } else if line.starts_with('-') {
                paint.red(line)
            } else if line.starts_with("@@") {
                paint.wrap("36", line)
            } else {
                line.to_owned()
            };
            writeln!(out, "      {styled}")?;
        }
    }
    Ok(())
}

/// Prints the paths that differ (shared with `kiln build --check`);
/// `label(side_a, layer)` names a layer (empty: say nothing).
pub(super) fn render_paths(
    out: &mut dyn Write,
    paths: &[PathDiff],
    label: &dyn Fn(bool, usize) -> String,
    paint: &Paint,
) -> std::io::Result<()> {
    for p in paths {
        match p.status {
            Status::Added => {
                let b = p.b.as_ref().expect("added paths have B");
                writeln!(
                    out,
                    "  {} {}  {}{}",
                    paint.green("added  "),
                    p.path,
                    describe(b),
                    paint.dim(&provenance(None, Some(label(false, b.layer))))
                )?;
            }
            Status::Removed => {
                let a = p.a.as_ref().expect("removed paths have A");
                writeln!(
                    out,
                    "  {} {}  {}{}",
                    paint.red("removed"),
                    p.path,
                    describe(a),
                    paint.dim(&provenance(Some(label(true, a.layer)), None))
                )?;
            }
            Status::Changed => {
                let (a, b) = (
                    p.a.as_ref().expect("changed paths have A"),
                    p.b.as_ref().expect("changed paths have B"),
                );
                writeln!(
                    out,
                    "  {} {}{}",
                    paint.yellow("changed"),
                    p.path,
                    paint.dim(&provenance(
                        Some(label(true, a.layer)),
                        Some(label(false, b.layer))
                    ))
                )?;
                for c in &p.changes {
                    let (x, y) = if c.field == "content" {
                        (
                            format!("sha256:{}", short(&c.a)),
                            format!("sha256:{}", short(&c.b)),
                        )
                    } else {
                        (c.a.clone(), c.b.clone())
                    };
                    writeln!(
                        out,
                        "      {}: {} -> {}",
                        c.field,
                        paint.red(&x),
                        paint.green(&y)
                    )?;
                }
                if let Some(c) = &p.content {
                    render_content(out, c, paint)?;
                }
            }
        }
    }
    Ok(())
}

fn render_changes(
    out: &mut dyn Write,
    title: &str,
    changes: &[json::Change],
    paint: &Paint,
) -> std::io::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    writeln!(out, "{}", paint.bold(&format!("{title}:")))?;
    for c in changes {
        writeln!(
            out,
            "  {}: {} -> {}",
            c.path,
            paint.red(&json::show(c.a.as_ref())),
            paint.green(&json::show(c.b.as_ref()))
        )?;
    }
    Ok(())
}

fn render_image(
    out: &mut dyn Write,
    r: &ImageReport,
    options: &Options,
    paint: &Paint,
) -> std::io::Result<()> {
    for (name, s) in [("A", &r.a), ("B", &r.b)] {
        writeln!(
            out,
            "{} {}  manifest {}  config {}",
            paint.bold(&format!("{name}:")),
            s.label,
            s.manifest,
            s.config
        )?;
        if let Some(note) = &s.note {
            writeln!(out, "   {}", paint.dim(note))?;
        }
    }
    let mut ignored = Vec::new();
    if options.semantic {
        ignored.push("layering, compression, manifests, annotations, timestamps, history");
    } else {
        if options.ignore_timestamps {
            ignored.push("timestamps");
        }
        if options.ignore_history {
            ignored.push("history");
        }
    }
    if !ignored.is_empty() {
        writeln!(
            out,
            "{}",
            paint.dim(&format!("ignoring: {}", ignored.join(", ")))
        )?;
    }
    render_changes(out, "index", &r.index, paint)?;
    render_changes(out, "manifest", &r.manifest, paint)?;
    render_changes(out, "config", &r.config, paint)?;
    if !options.semantic {
        let verdict = match r.layers.verdict {
            LayerVerdict::Identical => None,
            LayerVerdict::CompressionOnly => {
                Some("only compression differs (same uncompressed layers)")
            }
            LayerVerdict::LayeringOnly => Some("only layering differs (same merged filesystem)"),
            LayerVerdict::IgnoredOnly => None,
            LayerVerdict::Different => Some("different"),
        };
        if let Some(v) = verdict {
            writeln!(out, "{} {v}", paint.bold("layers:"))?;
            for line in &r.layers.changes {
                writeln!(out, "  {line}")?;
            }
        }
    }
    let fs = &r.filesystem;
    if !fs.paths.is_empty() {
        writeln!(
            out,
            "{} {} changed, {} added, {} removed",
            paint.bold("filesystem:"),
            fs.changed,
            fs.added,
            fs.removed
        )?;
        render_paths(out, &fs.paths, &|a, l| layer_label(r, a, l), paint)?;
    }
    for note in &r.notes {
        writeln!(out, "{} {note}", paint.bold("note:"))?;
    }
    if r.same {
        let how = if r.a.manifest == r.b.manifest {
            "identical".to_owned()
        } else if ignored.is_empty() {
            "the same".to_owned()
        } else {
            format!("the same, ignoring {}", ignored.join(", "))
        };
        writeln!(out, "{}", paint.green(&format!("images are {how}")))?;
    } else {
        let mut what = Vec::new();
        if !r.index.is_empty() {
            what.push("index".to_owned());
        }
        if !r.manifest.is_empty() {
            what.push("manifest".to_owned());
        }
        if !r.config.is_empty() {
            what.push(format!("config ({} fields)", r.config.len()));
        }
        if !options.semantic
            && !matches!(
                r.layers.verdict,
                LayerVerdict::Identical | LayerVerdict::IgnoredOnly
            )
        {
            what.push("layers".to_owned());
        }
        if !fs.paths.is_empty() {
            what.push(format!("filesystem ({} paths)", fs.paths.len()));
        }
        if !r.notes.is_empty() {
            what.push("serialization".to_owned());
        }
        writeln!(
            out,
            "{}",
            paint.red(&format!("images differ: {}", what.join(", ")))
        )?;
    }
    Ok(())
}

// ------------------------------------------------------------- --plan

/// One side of `--plan`: a derivation hash (stored), a local image kiln
/// built (its stage derivation), or a build context (planned now and
/// recorded, as `kiln plan` does).
fn plan_side(
    store: &Store,
    args: &DiffArgs,
    spec: &str,
    side_a: bool,
) -> anyhow::Result<Blake3Digest> {
    if let Ok(hash) = spec.parse::<Blake3Digest>() {
        return Ok(hash);
    }
    if Path::new(spec).is_dir() {
        let file = if side_a { &args.file_a } else { &args.file_b };
        let mut build_args = args.build_args.clone();
        build_args.extend(if side_a {
            args.build_args_a.iter().cloned()
        } else {
            args.build_args_b.iter().cloned()
        });
        let flags = BuildFlags {
            context: PathBuf::from(spec),
            file: file.clone().or_else(|| args.file.clone()),
            target: args.target.clone(),
            build_args,
            source_date_epoch: args.source_date_epoch,
            exact_modes: false,
            registry: args.registry.clone(),
            offline: false,
        };
        let planned = make_plan(&flags, store)?;
        record(store, &planned.plan)?;
        return Ok(planned.plan.target_stage().derivation.hash);
    }
    let (n, t) = split_tag(spec);
    match store.image(n, t)? {
        Some(image) => image.derivation.with_context(|| {
            format!("image `{n}:{t}` was not built by kiln: it has no derivation")
        }),
        None => anyhow::bail!(
            "`{spec}` is neither a build context directory, a derivation `blake3:...`, nor a local image"
        ),
    }
}

fn plan_diff(store: &Store, args: &DiffArgs, paint: &Paint) -> anyhow::Result<ExitCode> {
    let a = plan_side(store, args, &args.a, true)?;
    let b = plan_side(store, args, &args.b, false)?;
    let lookup = |h: &Blake3Digest| {
        store.derivation(h).ok().flatten().map(|d| drv::Drv {
            hash: d.hash,
            bytes: d.bytes,
            name: d.name,
        })
    };
    let report = drv::diff(&a, &b, &lookup)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        render_plan(&mut out, &report, &a, &b, paint)?;
    }
    Ok(ExitCode::from(u8::from(!report.same)))
}

fn render_plan(
    out: &mut dyn Write,
    r: &DrvReport,
    a: &Blake3Digest,
    b: &Blake3Digest,
    paint: &Paint,
) -> std::io::Result<()> {
    writeln!(out, "{} {a}", paint.bold("A:"))?;
    writeln!(out, "{} {b}", paint.bold("B:"))?;
    match &r.root {
        None => writeln!(out, "{}", paint.green("derivations are the same")),
        Some(root) => {
            render_drv(out, root, 0, paint)?;
            writeln!(out, "{}", paint.red("derivations differ"))
        }
    }
}

fn opt(v: Option<&String>) -> String {
    v.map_or_else(|| "(absent)".to_owned(), Clone::clone)
}

fn render_drv(
    out: &mut dyn Write,
    d: &DrvDiff,
    depth: usize,
    paint: &Paint,
) -> std::io::Result<()> {
    let pad = "  ".repeat(depth);
    let name = if d.name_a == d.name_b {
        d.name_b.clone()
    } else {
        format!("{} / {}", d.name_a, d.name_b)
    };
    // Stage names already say `stage`.
    let name = if name.starts_with(&d.kind) {
        name
    } else {
        format!("{} {name}", d.kind)
    };
    let hashes = paint.dim(&format!(
        "{} -> {}",
        short(&d.a.to_hex()),
        short(&d.b.to_hex())
    ));
    if d.seen {
        writeln!(out, "{pad}- {name} {hashes} {}", paint.dim("(shown above)"))?;
        return Ok(());
    }
    let why = if d.inputs.is_empty() {
        paint.dim("(differs only through what it builds on)")
    } else {
        String::new()
    };
    writeln!(out, "{pad}- {} {hashes} {why}", paint.bold(&name))?;
    for input in &d.inputs {
        let (what, x, y) = match input {
            InputChange::BaseImage { a, b } => ("base image".to_owned(), a.clone(), b.clone()),
            InputChange::Instruction { a, b, fields } => {
                if fields.is_empty() {
                    ("instruction".to_owned(), a.clone(), b.clone())
                } else {
                    for f in fields {
                        writeln!(
                            out,
                            "{pad}    instruction {}: {} -> {}",
                            f.path,
                            paint.red(&json::show(f.a.as_ref())),
                            paint.green(&json::show(f.b.as_ref()))
                        )?;
                    }
                    continue;
                }
            }
            InputChange::Env { name, a, b } => (
                format!("env {name} (ENV or build arg)"),
                opt(a.as_ref()),
                opt(b.as_ref()),
            ),
            InputChange::ContextFile { path, a, b } => (
                format!("context file {path}"),
                opt(a.as_ref()),
                opt(b.as_ref()),
            ),
            InputChange::Image { reference, a, b } => (
                format!("image {reference}"),
                opt(a.as_ref()),
                opt(b.as_ref()),
            ),
            InputChange::Stage { reference, a, b } => (
                format!("stage {reference}"),
                opt(a.as_ref()),
                opt(b.as_ref()),
            ),
            InputChange::Step { index, a, b } => (
                format!("instruction #{index}"),
                opt(a.as_ref()),
                opt(b.as_ref()),
            ),
            InputChange::Other { kind, name, a, b } => {
                (format!("{kind} {name}"), opt(a.as_ref()), opt(b.as_ref()))
            }
            InputChange::Field { name, a, b } => (name.clone(), a.clone(), b.clone()),
        };
        writeln!(
            out,
            "{pad}    {what}: {} -> {}",
            paint.red(&x),
            paint.green(&y)
        )?;
    }
    for c in &d.children {
        render_drv(out, c, depth + 1, paint)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_at_the_colon_after_an_existing_path() {
        let exists = |p: &Path| p == Path::new("/x/a:b") || p == Path::new("/y");
        assert_eq!(split_path("/x/a:b", &exists), ("/x/a:b", None));
        assert_eq!(split_path("/x/a:b:tag", &exists), ("/x/a:b", Some("tag")));
        assert_eq!(
            split_path("/y:img:latest", &exists),
            ("/y", Some("img:latest"))
        );
        assert_eq!(split_path("/z:t", &exists), ("/z:t", None));
    }
}
