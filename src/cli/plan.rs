//! `kiln plan`: the derivation graph for a build, without building.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use serde::Serialize;

use super::FileError;
use crate::context::{self, hash as context_hash};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::dockerfile::{self, ParseError, stage};
use crate::plan::{self, Plan, PlanError, Resolver};
use crate::store::{DerivationKind, Store};

/// The inputs every building command shares (`plan`, later `build`, `lock`).
#[derive(Debug, Args, Clone)]
pub struct BuildFlags {
    /// The build context directory.
    #[arg(default_value = ".", value_name = "CONTEXT")]
    pub context: PathBuf,
    /// The Dockerfile (default: `CONTEXT/Dockerfile`).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// A build argument, `KEY=VALUE` (or `KEY` to take it from the
    /// environment, as docker build does).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The timestamp for everything the build writes (default: the
    /// `SOURCE_DATE_EPOCH` environment variable, else 0).
    #[arg(long, value_name = "N", env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<u64>,
    /// Hash context file modes exactly instead of masked with 022.
    #[arg(long)]
    pub exact_modes: bool,
}

impl BuildFlags {
    /// The Dockerfile path.
    pub fn dockerfile(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"))
    }
}

/// Arguments of `kiln plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// What to plan.
    #[command(flatten)]
    pub build: BuildFlags,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Resolves base images: `name@sha256:<hex>` by its digest, else a local
/// image (`name[:tag]`, tag `latest` by default) from the store. Registries
/// come with the image issue (#5).
pub struct StoreResolver<'a> {
    /// The store holding local images.
    pub store: &'a Store,
}

/// Splits `name[:tag]` (a `:` after the last `/` starts the tag).
pub fn split_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

impl Resolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str) -> Result<String, String> {
        if let Some((_, digest)) = reference.rsplit_once('@') {
            return digest
                .parse::<Sha256Digest>()
                .map(|d| d.to_string())
                .map_err(|e| format!("bad digest `{digest}`: {e}"));
        }
        let (name, tag) = split_tag(reference);
        match self.store.image(name, tag) {
            Ok(Some(image)) => Ok(image.manifest.to_string()),
            Ok(None) => Err(format!(
                "no local image `{name}:{tag}` in the store, and kiln does not pull from registries yet"
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Everything a plan is made of, for `plan` and later `build`.
pub struct Planned {
    /// The Dockerfile as parsed.
    pub dockerfile: dockerfile::Dockerfile,
    /// The evaluated stages.
    pub evaluation: stage::Evaluation,
    /// The derivations.
    pub plan: Plan,
    /// The context listing the plan was made from.
    pub files: Vec<plan::ContextFile>,
    /// The context root, canonical.
    pub root: PathBuf,
    /// What reading the context took.
    pub context: ContextStats,
}

/// What reading the build context took: printed as one line on stderr, as
/// docker build reports transferring its context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextStats {
    /// Entries in the context (after `.dockerignore`).
    pub files: usize,
    /// Files whose hash came from the stat cache.
    pub cached: usize,
    /// Files read and hashed.
    pub read: usize,
    /// Bytes read.
    pub read_bytes: u64,
    /// Walk, stat cache and hashing, in seconds.
    pub seconds: f64,
}

impl std::fmt::Display for ContextStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "context: {} entries, {} files from the stat cache, {} read ({} bytes) in {:.3}s",
            self.files, self.cached, self.read, self.read_bytes, self.seconds
        )
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "the stat cache trusts only files changed well before now; never hashed"
)]
fn unix_now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0))
}

/// Base image configs read from the store: the image's manifest, then its
/// config (`Env`, `WorkingDir`, `User`, `Shell`, `OnBuild`).
pub struct StoreBases<'a> {
    /// The store holding local images.
    pub store: &'a Store,
}

impl stage::BaseImages for StoreBases<'_> {
    fn config(&self, reference: &str) -> Option<stage::BaseConfig> {
        let digest: Sha256Digest = StoreResolver { store: self.store }
            .resolve(reference)
            .ok()?
            .parse()
            .ok()?;
        let image = crate::build::read_stored_image(self.store, &digest).ok()?;
        let c = image.config.config;
        Some(stage::BaseConfig {
            env: c.env,
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            shell: c.shell,
            onbuild: c.on_build,
        })
    }
}

fn located(file: &Path, line: usize, message: String) -> FileError {
    FileError::new(file, ParseError::at(line, message))
}

/// Reads the Dockerfile and context and plans the build; context hashes go
/// through the store's stat cache.
pub fn make_plan(flags: &BuildFlags, store: &Store) -> anyhow::Result<Planned> {
    let resolver = StoreResolver { store };
    let file = flags.dockerfile();
    let bytes =
        std::fs::read(&file).with_context(|| format!("failed to read {}", file.display()))?;
    let parsed = dockerfile::parse(&bytes).map_err(|e| FileError::new(&file, e))?;
    let options = stage::Options {
        build_args: super::build_args(&flags.build_args)?,
        target: flags.target.clone(),
        ..stage::Options::default()
    };
    let evaluation = stage::evaluate(&parsed, &options, &StoreBases { store })
        .map_err(|e| FileError::new(&file, e))?;
    let root = std::fs::canonicalize(&flags.context).with_context(|| {
        format!(
            "failed to open the build context {}",
            flags.context.display()
        )
    })?;
    let started = std::time::Instant::now();
    let walk_started_ns = unix_now_ns();
    let matcher = context::load_ignore(&root, &file)?;
    let entries = context::walk(&root, &matcher)?;
    let modes = if flags.exact_modes {
        context_hash::Modes::Exact
    } else {
        context_hash::Modes::Masked
    };
    // The stat cache for this root, merge-joined with the sorted walk:
    // unchanged files keep their hash without being read.
    let cache = store.context_cache(&root)?.unwrap_or_default();
    let known = context_hash::join_cache(&entries, &cache);
    let (files, fresh) = context_hash::hash(&root, &entries, known.hashes, modes)?;
    if !fresh.is_empty() || known.used != known.listed {
        let (bytes, count) = context_hash::encode_cache(&entries, &files, walk_started_ns);
        store.put_context_cache(&root, &bytes, count)?;
    }
    let stats = ContextStats {
        files: files.len(),
        cached: known.used,
        read: fresh.len(),
        read_bytes: fresh.iter().map(|f| f.key.size).sum(),
        seconds: started.elapsed().as_secs_f64(),
    };
    #[expect(clippy::print_stderr, reason = "cli prints")]
    {
        eprintln!("{stats}");
    }
    let plan = plan::plan(
        &evaluation,
        &files,
        &resolver,
        flags.source_date_epoch.unwrap_or(0),
    )
    .map_err(|e: PlanError| {
        let hint = match &e {
            PlanError::Image { .. } => {
                Some("pass the image by digest, e.g. `--build-arg BASE=name@sha256:...`")
            }
            PlanError::Source { .. } => {
                Some("check the path against the context and .dockerignore")
            }
        };
        let err = located(&file, e.line(), e.to_string());
        match hint {
            Some(h) => FileError::new(&file, err.source.with_hint(h)),
            None => err,
        }
    })?;
    Ok(Planned {
        dockerfile: parsed,
        evaluation,
        plan,
        files,
        root,
        context: stats,
    })
}

/// Records every derivation of the plan in the store (like
/// `nix-instantiate` writing `.drv` files), each after those it refers to,
/// so `kiln show-derivation` can print them.
pub fn record(store: &Store, plan: &Plan) -> anyhow::Result<()> {
    let hashes: Vec<Blake3Digest> = plan.stages.iter().map(|s| s.derivation.hash).collect();
    ensure_stages(store, plan, &hashes)
}

/// Records the stage derivations among `hashes`, after everything they
/// refer to (their steps, base stage, and the stages those read from).
fn ensure_stages(store: &Store, plan: &Plan, hashes: &[Blake3Digest]) -> anyhow::Result<()> {
    for hash in hashes {
        let Some(stage) = plan.stages.iter().find(|s| s.derivation.hash == *hash) else {
            continue;
        };
        if store.derivation(hash)?.is_some() {
            continue;
        }
        let label = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", stage.index));
        let mut refs: Vec<Blake3Digest> = Vec::new();
        if let Ok(base) = stage.base.parse::<Blake3Digest>() {
            ensure_stages(store, plan, &[base])?;
            refs.push(base);
        }
        let mut previous = refs.first().copied();
        for step in &stage.steps {
            ensure_stages(store, plan, &step.stage_inputs)?;
            refs.extend(step.stage_inputs.iter().copied());
            if let Some(drv) = &step.derivation {
                let mut step_refs = step.stage_inputs.clone();
                step_refs.extend(previous);
                store.record_derivation(
                    &drv.hash,
                    &drv.bytes,
                    DerivationKind::Step,
                    &label,
                    &drv.name,
                    &step_refs,
                )?;
                refs.push(drv.hash);
                previous = Some(drv.hash);
            }
        }
        let drv = &stage.derivation;
        store.record_derivation(
            &drv.hash,
            &drv.bytes,
            DerivationKind::Stage,
            &label,
            &drv.name,
            &refs,
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    /// Derivations whose output is already in the store.
    stored: Vec<Blake3Digest>,
}

pub(super) fn run(store_flag: Option<&Path>, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let planned = make_plan(&args.build, &store)?;
    record(&store, &planned.plan)?;
    let mut stored = Vec::new();
    for drv in planned.plan.derivations() {
        if store.output(&drv.hash)?.is_some() {
            stored.push(drv.hash);
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &JsonPlan {
                plan: &planned.plan,
                stored,
            },
        )?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let status = |hash: &Blake3Digest| {
        if stored.contains(hash) {
            "stored"
        } else {
            "missing"
        }
    };
    for stage in &planned.plan.stages {
        let name = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", stage.index));
        let target = if stage.index == planned.plan.target {
            " (target)"
        } else {
            ""
        };
        writeln!(
            out,
            "stage {name}{target} {} {}",
            stage.derivation.hash,
            status(&stage.derivation.hash)
        )?;
        writeln!(out, "  from {}", stage.base)?;
        for step in &stage.steps {
            let hash = step.derivation.as_ref().map_or_else(
                || "-".to_string(),
                |d| format!("{} {}", d.hash, status(&d.hash)),
            );
            writeln!(out, "  {:>5} {:<11} {hash}", step.span.start, step.keyword)?;
            if !step.context_files.is_empty() {
                writeln!(
                    out,
                    "              context: {}",
                    step.context_files.join(" ")
                )?;
            }
            for input in &step.stage_inputs {
                writeln!(out, "              stage: {input}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
