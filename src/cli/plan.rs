//! `kiln plan`: the derivation graph for a build, without building.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use std::collections::BTreeMap;

use serde::Serialize;

use super::FileError;
use crate::context::{self, hash as context_hash};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::dockerfile::{self, ParseError, stage};
use crate::fetch::{LockedResolver, Lockfile};
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
    /// Registry access, for base images the store lacks.
    #[command(flatten)]
    pub registry: super::pull::RegistryFlags,
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

/// Splits `name[:tag]` (a `:` after the last `/` starts the tag).
pub fn split_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

/// Why an image reference could not be resolved to a manifest digest.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The reference is not in the store and the network is off.
    #[error("no local image `{reference}`, and the network is off")]
    Offline {
        /// The reference as written.
        reference: String,
    },
    /// The reference is not in the store and could not be pulled.
    #[error("no local image `{reference}`, and pulling it failed")]
    Pull {
        /// The reference as written.
        reference: String,
        /// Why the pull failed.
        #[source]
        source: Box<super::pull::PullError>,
    },
    /// The reference is neither a local name nor a valid registry reference.
    #[error("no local image `{reference}`")]
    Invalid {
        /// The reference as written.
        reference: String,
        /// Why it is no registry reference either.
        #[source]
        source: Box<crate::image::registry::RegistryError>,
    },
    /// A stored index could not be read.
    #[error("failed to read the stored index {digest}")]
    Index {
        /// The index.
        digest: Sha256Digest,
        /// Why.
        #[source]
        source: Box<crate::image::ImageError>,
    },
    /// The store failed.
    #[error("failed to read the store")]
    Store(#[from] crate::store::StoreError),
}

impl ResolveError {
    /// A `hint:` line, from the registry error when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            ResolveError::Offline { .. } => Some(
                "bring the image into the store first (`kiln pull`, `kiln image load`, `kiln image import`)".into(),
            ),
            ResolveError::Pull { source, .. } => match source.as_ref() {
                super::pull::PullError::Registry(e) => e.hint(),
                super::pull::PullError::Store(_) => None,
            },
            _ => None,
        }
    }
}

/// The one place base images (`FROM`) and `COPY --from=<image>` images
/// become manifest digests. A reference in, a digest or an error out:
/// - `name@sha256:<hex>`: that manifest if the store has it (an index in
///   the store is followed to its linux/amd64 manifest), else pulled by
///   digest;
/// - `name[:tag]`: the local image of that name (tag `latest` by default,
///   also under docker's short name: `docker.io/library/x` is `x`), else
///   pulled from its registry and tagged locally.
///
/// With no client (offline), nothing is pulled: what the store lacks is an
/// error. Answers are remembered, so a build asks the registry at most once
/// per reference.
pub struct StoreResolver<'a> {
    store: &'a Store,
    client: Option<crate::image::registry::Client>,
    answers: std::cell::RefCell<BTreeMap<String, Result<Sha256Digest, std::rc::Rc<ResolveError>>>>,
    /// References that named an image index, with its digest (the answer
    /// is the index's manifest for the platform).
    indexes: std::cell::RefCell<BTreeMap<String, Sha256Digest>>,
}

impl<'a> StoreResolver<'a> {
    /// A resolver that pulls what the store lacks with `client`, or never
    /// touches the network when `client` is `None`.
    pub fn new(store: &'a Store, client: Option<crate::image::registry::Client>) -> Self {
        StoreResolver {
            store,
            client,
            answers: std::cell::RefCell::new(BTreeMap::new()),
            indexes: std::cell::RefCell::new(BTreeMap::new()),
        }
    }

    /// A resolver that never touches the network.
    pub fn offline(store: &'a Store) -> Self {
        Self::new(store, None)
    }

    /// The manifest digest `reference` names (see the type's docs).
    pub fn resolve_image(
        &self,
        reference: &str,
    ) -> Result<Sha256Digest, std::rc::Rc<ResolveError>> {
        if let Some(answer) = self.answers.borrow().get(reference) {
            return answer.clone();
        }
        let answer = self.lookup(reference).map_err(std::rc::Rc::new);
        self.answers
            .borrow_mut()
            .insert(reference.to_owned(), answer.clone());
        answer
    }

    /// The references resolved so far that named an image index, with the
    /// index's digest.
    pub fn indexes(&self) -> BTreeMap<String, Sha256Digest> {
        self.indexes.borrow().clone()
    }

    /// The hint for a reference that failed to resolve, if any.
    pub fn hint(&self, reference: &str) -> Option<String> {
        match self.answers.borrow().get(reference) {
            Some(Err(e)) => e.hint(),
            _ => None,
        }
    }

    fn lookup(&self, reference: &str) -> Result<Sha256Digest, ResolveError> {
        use crate::image::registry::Reference;
        if let Some((_, digest)) = reference.rsplit_once('@')
            && let Ok(digest) = digest.parse::<Sha256Digest>()
            && let Some(found) = self.stored_manifest(&digest)?
        {
            if found != digest {
                self.indexes
                    .borrow_mut()
                    .insert(reference.to_owned(), digest);
            }
            return Ok(found);
        }
        if !reference.contains('@') {
            let (name, tag) = split_tag(reference);
            if let Some(image) = self.store.image(name, tag)? {
                return Ok(image.manifest);
            }
        }
        let parsed: Reference = reference.parse().map_err(|source| ResolveError::Invalid {
            reference: reference.to_owned(),
            source: Box::new(source),
        })?;
        if parsed.digest.is_none()
            && let Some(tag) = parsed.tag_or_latest()
            && let Some(image) = self.store.image(&parsed.familiar_name(), tag)?
        {
            return Ok(image.manifest);
        }
        let Some(client) = &self.client else {
            return Err(ResolveError::Offline {
                reference: reference.to_owned(),
            });
        };
        let pulled = super::pull::pull_to_store(self.store, client, &parsed).map_err(|source| {
            ResolveError::Pull {
                reference: reference.to_owned(),
                source: Box::new(source),
            }
        })?;
        if let Some(index) = &pulled.index {
            self.indexes
                .borrow_mut()
                .insert(reference.to_owned(), index.digest);
        }
        Ok(pulled.image.descriptor.digest)
    }

    /// `digest` as a manifest in the store: itself, or for a stored index
    /// its stored linux/amd64 manifest.
    fn stored_manifest(&self, digest: &Sha256Digest) -> Result<Option<Sha256Digest>, ResolveError> {
        use crate::image::oci::{Index, media_type};
        let Some(path) = self.store.blob_path(digest)? else {
            return Ok(None);
        };
        let media = self.store.blob_media_type(digest)?.unwrap_or_default();
        if media != media_type::INDEX && media != media_type::DOCKER_MANIFEST_LIST {
            return Ok(Some(*digest));
        }
        let index_error = |source| ResolveError::Index {
            digest: *digest,
            source: Box::new(source),
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            index_error(crate::image::ImageError::Read {
                path: path.clone(),
                source: e,
            })
        })?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            index_error(crate::image::ImageError::Json {
                what: format!("index {digest}"),
                source: e,
            })
        })?;
        let chosen = crate::image::layout::select_platform(
            &index.manifests,
            &crate::image::Platform::linux_amd64(),
        )
        .map_err(index_error)?;
        Ok(self.store.blob_path(&chosen.digest)?.map(|_| chosen.digest))
    }
}

/// Renders an error and its sources as one line.
impl Resolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str) -> Result<String, String> {
        self.resolve_image(reference)
            .map(|d| d.to_string())
            .map_err(|e| crate::one_line(e.as_ref()))
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
    /// The kiln.lock the plan used, if there is one.
    pub lock: Option<Lockfile>,
    /// Where kiln.lock is (or would be).
    pub lock_path: PathBuf,
    /// Image references that named an index, with its digest (the plan
    /// holds the platform's manifest): kiln.lock pins both.
    pub indexes: BTreeMap<String, Sha256Digest>,
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

/// Base image configs read from the store: the image's manifest, then its
/// config (`Env`, `WorkingDir`, `User`, `Shell`, `OnBuild`).
pub struct StoreBases<'a> {
    /// The store holding local images.
    pub store: &'a Store,
    /// What names the manifest of a reference (kiln.lock pins first, then
    /// the store, then the registry).
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

#[expect(
    clippy::disallowed_methods,
    reason = "the stat cache trusts only files changed well before now; never hashed"
)]
fn unix_now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0))
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
/// stage the Dockerfile lost. Base images resolve through the lock's pins,
/// then the store, then (unless `--offline`) their registry.
pub fn make_plan_with(
    flags: &BuildFlags,
    store: &Store,
    lock: Option<Lockfile>,
    check_stages: bool,
) -> anyhow::Result<Planned> {
    let file = flags.dockerfile();
    let lock_path = Lockfile::path_for(&file);
    let client =
        (!flags.offline).then(|| flags.registry.client(crate::image::Platform::linux_amd64()));
    let store_resolver = StoreResolver::new(store, client);
    let resolver = LockedResolver {
        lock: lock.as_ref(),
        inner: &store_resolver,
        offline: flags.offline,
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
            PlanError::Image { reference, .. } => store_resolver.hint(reference),
            PlanError::Source { .. } => {
                Some("check the path against the context and .dockerignore".to_owned())
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
        lock,
        lock_path,
        indexes: store_resolver.indexes(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offline_resolver_finds_local_images_and_never_pulls() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
        let (digest, _) = store
            .add_blob(
                &mut &manifest[..],
                crate::image::oci::media_type::MANIFEST,
                None,
            )
            .unwrap();
        store.tag_image("busybox", "1", &digest, None).unwrap();
        let resolver = StoreResolver::offline(&store);
        // Local names, also in docker's long form, and stored digests.
        assert_eq!(resolver.resolve_image("busybox:1").unwrap(), digest);
        assert_eq!(
            resolver
                .resolve_image("docker.io/library/busybox:1")
                .unwrap(),
            digest
        );
        assert_eq!(
            resolver
                .resolve_image(&format!("anything@{digest}"))
                .unwrap(),
            digest
        );
        // What the store lacks is an error that says the network is off.
        for missing in [
            "127.0.0.1:1/x:1".to_owned(),
            format!("busybox@sha256:{}", "1".repeat(64)),
        ] {
            let e = resolver.resolve_image(&missing).unwrap_err();
            assert!(matches!(*e, ResolveError::Offline { .. }), "{e}");
            assert!(e.hint().unwrap().contains("kiln pull"));
        }
        let e = resolver.resolve("Not A Reference").unwrap_err();
        assert!(e.contains("invalid image reference"), "{e}");
    }
}
