//! `kiln plan`: the derivation graph for a build, without building.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;

use serde::Serialize;

use super::FileError;
use crate::context::hash::{StatCache, StatKey};
use crate::context::{self, hash as context_hash};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::dockerfile::{self, ParseError, stage};
use crate::fetch::{LockedResolver, Lockfile};
use crate::plan::{self, Plan, PlanError, Resolver};
use crate::store::{DerivationKind, StatEntry, Store};

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
    /// Use no network at all: base images come from kiln.lock pins and the
    /// store, fetch steps from the store; anything missing is listed and
    /// nothing is built.
    #[arg(long)]
    pub offline: bool,
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

/// The store's stat cache, loaded for the paths of one context walk.
struct LoadedCache {
    /// Keyed by path bytes: comparing bytes is much cheaper than comparing
    /// `Path` components, and this map is probed once per context file.
    entries: BTreeMap<Vec<u8>, StatEntry>,
}

impl StatCache for LoadedCache {
    fn lookup(&self, path: &Path, key: &StatKey) -> Option<String> {
        let e = self.entries.get(path.as_os_str().as_bytes())?;
        let same = e.dev == key.dev
            && e.inode == key.inode
            && e.size == key.size
            && i128::from(e.mtime_ns) == key.mtime_ns
            && i128::from(e.ctime_ns) == key.ctime_ns
            && e.mode == key.mode;
        same.then(|| e.hash.to_string())
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
    /// The kiln.lock the plan used, if there is one.
    pub lock: Option<Lockfile>,
    /// Where kiln.lock is (or would be).
    pub lock_path: PathBuf,
}

/// Base image configs read from the store: the image's manifest, then its
/// config (`Env`, `WorkingDir`, `User`, `Shell`, `OnBuild`).
pub struct StoreBases<'a> {
    /// The store holding local images.
    pub store: &'a Store,
    /// What names the manifest of a reference (kiln.lock pins first).
    pub resolver: &'a dyn Resolver,
}

impl stage::BaseImages for StoreBases<'_> {
    fn config(&self, reference: &str) -> Option<stage::BaseConfig> {
        let digest: Sha256Digest = self.resolver.resolve(reference).ok()?.parse().ok()?;
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

/// Reads the Dockerfile, its kiln.lock and the context and plans the
/// build; context hashes go through the store's stat cache.
pub fn make_plan(flags: &BuildFlags, store: &Store) -> anyhow::Result<Planned> {
    let lock_path = Lockfile::path_for(&flags.dockerfile());
    let lock = Lockfile::load(&lock_path)?;
    make_plan_with(flags, store, lock, true)
}

/// [`make_plan`] with the lock file given (`kiln lock` plans with the
/// entries it is refreshing left out); `check_stages`: fail if it pins a
/// stage the Dockerfile lost.
pub fn make_plan_with(
    flags: &BuildFlags,
    store: &Store,
    lock: Option<Lockfile>,
    check_stages: bool,
) -> anyhow::Result<Planned> {
    let file = flags.dockerfile();
    let lock_path = Lockfile::path_for(&file);
    let store_resolver = StoreResolver { store };
    let resolver = LockedResolver {
        lock: lock.as_ref(),
        inner: &store_resolver,
    };
    let bytes =
        std::fs::read(&file).with_context(|| format!("failed to read {}", file.display()))?;
    let parsed = dockerfile::parse(&bytes).map_err(|e| FileError::new(&file, e))?;
    if let Some(lock) = &lock
        && check_stages
    {
        lock.check_stages(&lock_path, &stage_labels(&parsed))?;
    }
    let options = stage::Options {
        build_args: super::build_args(&flags.build_args)?,
        target: flags.target.clone(),
        ..stage::Options::default()
    };
    let bases = StoreBases {
        store,
        resolver: &resolver,
    };
    let evaluation =
        stage::evaluate(&parsed, &options, &bases).map_err(|e| FileError::new(&file, e))?;
    let matcher = context::load_ignore(&flags.context, &file)?;
    let entries = context::walk(&flags.context, &matcher)?;
    let modes = if flags.exact_modes {
        context_hash::Modes::Exact
    } else {
        context_hash::Modes::Masked
    };
    let root = std::fs::canonicalize(&flags.context).with_context(|| {
        format!(
            "failed to open the build context {}",
            flags.context.display()
        )
    })?;
    let cache = LoadedCache {
        entries: store
            .stat_cache_under(&root)?
            .into_iter()
            .map(|e| (e.path.as_os_str().as_bytes().to_vec(), e))
            .collect(),
    };
    let (files, fresh) = context_hash::hash(&root, &entries, &cache, modes)?;
    let fresh: Vec<StatEntry> = fresh
        .into_iter()
        .filter_map(|f| {
            Some(StatEntry {
                path: f.path,
                dev: f.key.dev,
                inode: f.key.inode,
                size: f.key.size,
                mtime_ns: i64::try_from(f.key.mtime_ns).ok()?,
                ctime_ns: i64::try_from(f.key.ctime_ns).ok()?,
                mode: f.key.mode,
                hash: f.hash.parse().ok()?,
            })
        })
        .collect();
    store.stat_cache_put(&fresh)?;
    let pins = lock.as_ref().map_or(&[][..], |l| l.fetches.as_slice());
    let plan = plan::plan_with_pins(
        &evaluation,
        &files,
        &resolver,
        flags.source_date_epoch.unwrap_or(0),
        pins,
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
        lock,
        lock_path,
    })
}

/// Every stage's label as kiln.lock writes it: its name, or `#index`.
pub fn stage_labels(parsed: &dockerfile::Dockerfile) -> Vec<String> {
    parsed
        .instructions
        .iter()
        .filter_map(|i| match i {
            dockerfile::Instruction::From(f) => Some(f.stage_name.clone()),
            _ => None,
        })
        .enumerate()
        .map(|(i, name)| name.unwrap_or_else(|| format!("#{i}")))
        .collect()
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
            if let Some(f) = &step.fetch {
                let state = match &f.state {
                    crate::plan::fetch::FetchState::Pinned(p) => match (&p.diff_id, &p.content) {
                        (Some(d), _) => format!("pinned by kiln.lock to layer {d}"),
                        (None, Some(c)) => format!("pinned by --checksum to {c}"),
                        (None, None) => "pinned".to_owned(),
                    },
                    crate::plan::fetch::FetchState::Unpinned => {
                        "unpinned: run `kiln lock`".to_owned()
                    }
                    crate::plan::fetch::FetchState::Stale { .. } => {
                        "stale pin (its inputs changed): run `kiln lock`".to_owned()
                    }
                };
                writeln!(out, "              fetch step, {state}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
