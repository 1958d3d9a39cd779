//! The scheduler: walks a plan stage by stage, asks the store for each step
//! derivation's output, builds what is missing (RUN in the sandbox, COPY/ADD
//! and WORKDIR directly) and assembles the image config and manifest.
//!
//! Owns no printing: progress goes out as [`Event`]s. Time comes in as
//! `source_date_epoch`; the only clock read is for step durations.
//!
//! Invariants: every layer tree in the store is owned by shifted ids (inside
//! id + the sandbox's offset) and is an overlay upper dir (whiteouts are
//! 0/0 character devices); a layer's blob is written from that tree by the
//! deterministic layer writer, so the same tree gives the same bytes.

pub mod blobs;
pub mod bundle;
pub mod check;
mod config;
mod copy;
pub mod fetch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::digest::{Blake3Digest, Sha256Digest};
use crate::dockerfile::instruction::{CommandForm, Instruction, RunScript};
use crate::dockerfile::stage::{Evaluation, Stage, Step};
use crate::image::layer::{LayerOptions, WalkOptions};
use crate::image::oci::{Descriptor, ImageConfig, Platform};
use crate::image::{self, Compression, ImageError};
use crate::plan::{ContextFile, Plan, PlannedStage, PlannedStep};
use crate::sandbox::{self, IdMap, SandboxError};
use crate::store::{Layer, Output, Store, StoreError, TreeKey};

pub use blobs::StoreBlobs;
pub use check::{Reach, StepCheck};

/// Everything that can go wrong in a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store failed.
    #[error("store operation failed")]
    Store(#[from] StoreError),
    /// Writing or reading an image failed.
    #[error("image operation failed")]
    Image(#[from] ImageError),
    /// The sandbox failed to run a step.
    #[error("sandbox failed")]
    Sandbox(#[from] SandboxError),
    /// A step failed: its Dockerfile line and what went wrong.
    #[error("line {line}: {message}")]
    Step {
        /// The Dockerfile line.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// A fetch step's output is not the one it is pinned to.
    #[error("{0}")]
    FetchMismatch(Box<fetch::Mismatch>),
    /// `kiln lock` only: a fetch step ran and is pinned now. The build
    /// stops there: the steps after it are planned over the new pin.
    #[error("line {line}: the fetch step was pinned")]
    Pinned {
        /// The Dockerfile line.
        line: usize,
        /// The new kiln.lock entry.
        pin: Box<crate::plan::fetch::LockedFetch>,
    },
    /// A store bundle is not what kiln writes, or not whole.
    #[error("bundle {} is unusable: {reason}", path.display())]
    Bundle {
        /// The bundle.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("failed to {op} {}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io { op, path, source }
}

/// What the build did with one step.
#[derive(Debug, Clone)]
pub enum Event {
    /// A stage starts.
    Stage {
        /// Its name or `#index`.
        stage: String,
    },
    /// A stage is done.
    StageDone {
        /// Its name or `#index`.
        stage: String,
    },
    /// A filesystem step whose output is not stored starts building.
    StepStarted {
        /// The stage's name or `#index`.
        stage: String,
        /// The Dockerfile line.
        line: usize,
        /// The step derivation's human name (`build: RUN go build …`).
        name: String,
    },
    /// A chunk of a running step's output (RUN's stdout or stderr).
    Output {
        /// The stage's name or `#index`.
        stage: String,
        /// The Dockerfile line.
        line: usize,
        /// Standard error rather than standard output.
        stderr: bool,
        /// The bytes, as the command wrote them.
        bytes: Vec<u8>,
    },
    /// A filesystem step is done.
    Step {
        /// The stage's name or `#index`.
        stage: String,
        /// The Dockerfile line.
        line: usize,
        /// `RUN`, `COPY`, ...
        keyword: &'static str,
        /// The step derivation.
        derivation: Blake3Digest,
        /// Whether its output was already stored.
        cached: bool,
        /// Seconds it took.
        seconds: f64,
    },
}

/// The inputs of a build besides the plan.
pub struct Options {
    /// The kiln executable (the sandbox helper).
    pub helper: PathBuf,
    /// The build context root.
    pub context: PathBuf,
    /// The context listing the plan was made from.
    pub context_files: Vec<ContextFile>,
    /// SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
    /// `--secret id=ID,src=PATH`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// Rebuild every step even if stored (the new output is not recorded
    /// over an existing one).
    pub no_cache: bool,
    /// `--label K=V`, applied to the target image.
    pub labels: Vec<(String, String)>,
    /// How fetch steps run (`kiln build`, `kiln lock`, `--offline`).
    pub fetch: fetch::FetchOptions,
    /// `--check`: run every step whose output is stored again, in a
    /// temporary directory, and compare its layer with the stored one
    /// (see [`check`]); nothing is written to the store.
    pub check: bool,
}

/// One layer of a stage's filesystem.
#[derive(Debug, Clone)]
struct StageLayer {
    diff_id: Sha256Digest,
    /// The compressed blob, once written; a step's layer gets one only when
    /// an image holding it is written.
    blob: Option<Descriptor>,
    tree: PathBuf,
    /// The step derivation whose output this layer is (none for a base
    /// image's layers), to record the blob once it is written.
    step: Option<Blake3Digest>,
}

/// A stage's state: its layers (bottom first) and config.
#[derive(Debug, Clone)]
struct StageState {
    layers: Vec<StageLayer>,
    config: ImageConfig,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The target image.
    pub image: image::Image,
    /// Its manifest digest.
    pub manifest: Sha256Digest,
    /// The target stage derivation.
    pub derivation: Blake3Digest,
    /// With [`Options::check`]: every step rebuilt and compared, in plan
    /// order.
    pub checks: Vec<StepCheck>,
}

struct Builder<'a> {
    store: &'a Store,
    options: &'a Options,
    progress: &'a (dyn Fn(Event) + Sync),
    ids: IdMap,
    offset: u32,
    /// `AS name` → stage index, for `--mount from=`.
    stage_names: Vec<(String, usize)>,
    /// With `--check`: the steps rebuilt so far.
    checks: std::sync::Mutex<Vec<StepCheck>>,
}

fn stage_label(s: &PlannedStage) -> String {
    s.name.clone().unwrap_or_else(|| format!("#{}", s.index))
}

/// Builds the target of `plan` and stores its image (config, manifest and
/// layers as blobs, the target stage's output recorded).
pub fn build(
    store: &Store,
    evaluation: &Evaluation,
    plan: &Plan,
    options: &Options,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Built, BuildError> {
    let ids = IdMap::for_invoker();
    let offset = ids.host_uid(0).unwrap_or(0);
    let b = Builder {
        store,
        options,
        progress,
        ids,
        offset,
        stage_names: evaluation
            .stages
            .iter()
            .filter_map(|s| s.name.clone().map(|n| (n, s.index)))
            .collect(),
        checks: std::sync::Mutex::new(Vec::new()),
    };
    let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
    // Stages in dependency order: a stage runs once its base stage and
    // the stages it copies from are done.
    while done.len() < plan.stages.len() {
        let mut ready = Vec::new();
        for pstage in &plan.stages {
            if done.contains_key(&pstage.index) {
                continue;
            }
            let estage = evaluation
                .stages
                .iter()
                .find(|s| s.index == pstage.index)
                .expect("the plan's stages come from the evaluation");
            let mut needs: Vec<usize> = estage
                .steps
                .iter()
                .flat_map(|s| s.from_stages.iter().copied())
                .collect();
            if let crate::dockerfile::stage::Base::Stage(i) = estage.base {
                needs.push(i);
            }
            if needs.iter().all(|i| done.contains_key(i)) {
                ready.push((pstage, estage));
            }
        }
        if ready.is_empty() {
            return Err(BuildError::Step {
                line: 0,
                message: "the stages depend on each other in a cycle".into(),
            });
        }
        // Independent stages build in parallel.
        use rayon::prelude::*;
        let results: Vec<Result<(usize, StageState), BuildError>> = ready
            .par_iter()
            .map(|(p, e)| b.stage(p, e, &done).map(|s| (p.index, s)))
            .collect();
        for r in results {
            let (index, state) = r?;
            done.insert(index, state);
        }
    }
    let target = plan.target_stage();
    let mut state = done.remove(&target.index).expect("the target was built");
    for (k, v) in &options.labels {
        state.config.config.labels.insert(k.clone(), v.clone());
    }
    let sink = StoreBlobs { store };
    let mut layers: Vec<Descriptor> = Vec::with_capacity(state.layers.len());
    for layer in &mut state.layers {
        let desc = match &layer.blob {
            Some(desc) => desc.clone(),
            None => {
                let desc = write_layer_blob(store, layer, options.source_date_epoch)?;
                layer.blob = Some(desc.clone());
                desc
            }
        };
        layers.push(desc);
    }
    let image = image::blob::put_image(&sink, &state.config, layers)?;
    let manifest = image.descriptor.digest;
    let output = Output {
        layers: state
            .layers
            .iter()
            .map(|l| Layer {
                diff_id: l.diff_id,
                blob: l.blob.as_ref().map(|d| d.digest),
                tree: tree_key_of(&l.tree),
            })
            .collect(),
        config: Some(image.manifest.config.digest),
    };
    if store.output(&target.derivation.hash)?.is_none() {
        store.record_output(&target.derivation.hash, &output)?;
    }
    let mut checks = b
        .checks
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Plan order, each named by its stage.
    let place = |c: &StepCheck| {
        plan.stages.iter().enumerate().find_map(|(i, s)| {
            s.steps
                .iter()
                .position(|st| {
                    st.derivation
                        .as_ref()
                        .is_some_and(|d| d.hash == c.derivation)
                })
                .map(|j| (i, j, stage_label(s)))
        })
    };
    for c in &mut checks {
        if let Some((_, _, label)) = place(c) {
            c.stage = label;
        }
    }
    checks.sort_by_key(|c| place(c).map(|(i, j, _)| (i, j)));
    Ok(Built {
        image,
        manifest,
        derivation: target.derivation.hash,
        checks,
    })
}

/// Writes the compressed blob of a step's layer from its tree (the first
/// time an image holds it) and records it on the step's output. The tree
/// packs to the bytes it would have packed to when it was built, and must
/// give the diff_id recorded then.
fn write_layer_blob(
    store: &Store,
    layer: &StageLayer,
    source_date_epoch: i64,
) -> Result<Descriptor, BuildError> {
    write_tree_blob(
        store,
        &layer.tree,
        &layer.diff_id,
        layer.step.as_ref(),
        source_date_epoch,
    )
}

/// The blob of layer 0 of `derivation`'s stored output, written from its
/// tree if it has none yet (a bundle carries blobs). `source_date_epoch`
/// must be the one the derivation was planned with.
pub fn ensure_layer_blob(
    store: &Store,
    derivation: &Blake3Digest,
    layer: &Layer,
    source_date_epoch: i64,
) -> Result<Sha256Digest, BuildError> {
    if let Some(blob) = layer.blob {
        return Ok(blob);
    }
    let tree = step_layer_tree(store, layer)?.ok_or_else(|| BuildError::Step {
        line: 0,
        message: format!("the layer of {derivation} is missing from the store"),
    })?;
    let desc = write_tree_blob(
        store,
        &tree,
        &layer.diff_id,
        Some(derivation),
        source_date_epoch,
    )?;
    Ok(desc.digest)
}

/// Packs `tree` into a gzip layer blob in the store, checks it against
/// `diff_id`, and records it on `step`'s output when given.
fn write_tree_blob(
    store: &Store,
    tree: &Path,
    diff_id: &Sha256Digest,
    step: Option<&Blake3Digest>,
    source_date_epoch: i64,
) -> Result<Descriptor, BuildError> {
    let sink = StoreBlobs { store };
    let mut w = image::blob::BlobSink::begin_blob(&sink)?;
    let (info, _) = image::layer::write_dir_layer(
        tree,
        &tree_walk_options(),
        LayerOptions {
            compression: Compression::Gzip,
            source_date_epoch,
        },
        &mut w,
    )?;
    std::io::Write::flush(&mut w).map_err(io_err("write", tree))?;
    let (digest, size) = w.commit()?;
    if info.diff_id != *diff_id {
        return Err(BuildError::Step {
            line: 0,
            message: format!(
                "layer tree {} packs to diff_id {}, not the {diff_id} recorded when it was built (run `kiln store verify`)",
                tree.display(),
                info.diff_id,
            ),
        });
    }
    if let Some(step) = step {
        store.set_layer_blob(step, 0, &digest)?;
    }
    Ok(Descriptor::new(
        Compression::Gzip.layer_media_type(),
        digest,
        size,
    ))
}

/// How the layer writer reads a layer tree of the store: owned by shifted
/// ids when kiln runs as root (see the module invariants), whiteouts in
/// overlay form.
fn tree_walk_options() -> WalkOptions {
    WalkOptions {
        id_offset: if nix::unistd::geteuid().is_root() {
            IdMap::for_invoker().host_uid(0).unwrap_or(0)
        } else {
            0
        },
        overlay: true,
    }
}

/// Gives a layer tree's root the shifted root owner and mode 0755, as the
/// sandbox expects of every lower dir (the root is never part of a layer).
fn own_root(dir: &Path, offset: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err("chmod", dir))?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(dir, Some(offset), Some(offset)).map_err(io_err("chown", dir))?;
    }
    Ok(())
}

fn tree_key_of(path: &Path) -> Option<TreeKey> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| TreeKey::new(n).ok())
}

/// Reads a stored image by manifest digest.
pub fn read_stored_image(
    store: &Store,
    manifest: &Sha256Digest,
) -> Result<image::Image, BuildError> {
    let path = store.blob_path(manifest)?.ok_or_else(|| BuildError::Step {
        line: 0,
        message: format!("image manifest {manifest} is not in the store"),
    })?;
    let size = std::fs::metadata(&path)
        .map_err(io_err("read", &path))?
        .len();
    let media = store
        .blob_media_type(manifest)?
        .unwrap_or_else(|| image::oci::media_type::MANIFEST.to_owned());
    let desc = Descriptor::new(&media, *manifest, size);
    Ok(image::blob::read_image(&StoreBlobs { store }, &desc)?)
}

/// The layer trees of a stored image, extracted into the store on first
/// use (keyed by diff_id), bottom first.
pub fn image_trees(store: &Store, image: &image::Image) -> Result<Vec<PathBuf>, BuildError> {
    image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
        .map(|(desc, diff_id)| layer_tree(store, desc, diff_id))
        .collect()
}

/// A layer's tree in the store, extracted from its blob `desc` on first use
/// (keyed by `diff_id`, under a lock so that two builds extract it once).
pub fn layer_tree(
    store: &Store,
    desc: &Descriptor,
    diff_id: &Sha256Digest,
) -> Result<PathBuf, BuildError> {
    let offset = IdMap::for_invoker().host_uid(0).unwrap_or(0);
    let key = TreeKey::new(&diff_id.to_hex())?;
    if let Some(p) = store.tree_path(&key)? {
        return Ok(p);
    }
    let _lock = store.lock_derivation(&Blake3Digest::of(diff_id.to_hex().as_bytes()))?;
    if let Some(p) = store.tree_path(&key)? {
        return Ok(p);
    }
    let tmp = store.tmp_dir()?;
    let source = StoreBlobs { store };
    let reader = image::blob::open_verified(&source, desc)?;
    let id_offset = (nix::unistd::geteuid().is_root()).then_some(offset);
    image::extract::apply_layer(
        reader,
        tmp.path(),
        &image::extract::ExtractOptions {
            id_offset,
            xattrs: false,
            overlay_whiteouts: true,
        },
    )?;
    own_root(tmp.path(), offset)?;
    Ok(store.add_tree(tmp.path(), &key)?)
}

/// Where a stored step layer can be read: its tree if the store still has
/// it, else a tree extracted from its blob; `None` if it has neither (the
/// output must then be built again).
fn step_layer_tree(store: &Store, layer: &Layer) -> Result<Option<PathBuf>, BuildError> {
    if let Some(key) = &layer.tree
        && let Some(path) = store.tree_path(key)?
    {
        return Ok(Some(path));
    }
    let Some(blob) = &layer.blob else {
        return Ok(None);
    };
    let Some(path) = store.blob_path(blob)? else {
        return Ok(None);
    };
    let size = std::fs::metadata(&path)
        .map_err(io_err("read", &path))?
        .len();
    let desc = Descriptor::new(Compression::Gzip.layer_media_type(), *blob, size);
    layer_tree(store, &desc, &layer.diff_id).map(Some)
}

impl Builder<'_> {
    fn stage(
        &self,
        pstage: &PlannedStage,
        estage: &Stage,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<StageState, BuildError> {
        let label = stage_label(pstage);
        (self.progress)(Event::Stage {
            stage: label.clone(),
        });
        let sde = self.options.source_date_epoch;
        let mut state = match &estage.base {
            crate::dockerfile::stage::Base::Scratch => StageState {
                layers: Vec::new(),
                config: ImageConfig::new(&Platform::linux_amd64(), sde),
            },
            crate::dockerfile::stage::Base::Stage(i) => {
                let mut s = done.get(i).expect("base stage done first").clone();
                s.config.created = Some(image::oci::rfc3339(sde));
                s
            }
            crate::dockerfile::stage::Base::Image(_) => {
                let digest = pstage
                    .base
                    .rsplit_once('@')
                    .map_or(pstage.base.as_str(), |(_, d)| d)
                    .parse::<Sha256Digest>()
                    .map_err(|e| BuildError::Step {
                        line: estage.span.start,
                        message: format!("bad base image digest `{}`: {e}", pstage.base),
                    })?;
                let img = read_stored_image(self.store, &digest).map_err(|e| BuildError::Step {
                    line: estage.span.start,
                    message: format!("base image {}: {e}", pstage.base),
                })?;
                let trees = image_trees(self.store, &img)?;
                let layers = img
                    .manifest
                    .layers
                    .iter()
                    .zip(&img.config.rootfs.diff_ids)
                    .zip(trees)
                    .map(|((d, diff), tree)| StageLayer {
                        diff_id: *diff,
                        blob: Some(d.clone()),
                        tree,
                        step: None,
                    })
                    .collect();
                let mut config = img.config.clone();
                config.created = Some(image::oci::rfc3339(sde));
                config.config.on_build.clear();
                StageState { layers, config }
            }
        };
        let mut cmd_set = false;
        for (pstep, estep) in pstage.steps.iter().zip(&estage.steps) {
            match &pstep.derivation {
                Some(drv) => {
                    let started = Instant::now();
                    let (out, cached) = self.step(&label, &state, pstep, estep, drv, done)?;
                    (self.progress)(Event::Step {
                        stage: label.clone(),
                        line: pstep.span.start,
                        keyword: pstep.keyword,
                        derivation: drv.hash,
                        cached,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    let created_by = config::created_by(&estep.instruction, &estep.scope);
                    match out.layers.first() {
                        Some(layer) => {
                            let tree = step_layer_tree(self.store, layer)?.ok_or_else(|| {
                                BuildError::Step {
                                    line: pstep.span.start,
                                    message: format!(
                                        "the layer of {} is missing from the store",
                                        drv.hash
                                    ),
                                }
                            })?;
                            let blob = match &layer.blob {
                                Some(digest) => {
                                    let path = self.store.blob_path(digest)?.ok_or_else(|| {
                                        BuildError::Step {
                                            line: pstep.span.start,
                                            message: format!("layer blob {digest} is missing"),
                                        }
                                    })?;
                                    let size = std::fs::metadata(&path)
                                        .map_err(io_err("read", &path))?
                                        .len();
                                    Some(Descriptor::new(
                                        Compression::Gzip.layer_media_type(),
                                        *digest,
                                        size,
                                    ))
                                }
                                None => None,
                            };
                            state.layers.push(StageLayer {
                                diff_id: layer.diff_id,
                                blob,
                                tree,
                                step: Some(drv.hash),
                            });
                            state.config.push_layer(layer.diff_id, &created_by, sde);
                        }
                        None => state.config.push_empty_layer(&created_by, sde),
                    }
                }
                None => {
                    config::apply(
                        &mut state.config,
                        &estep.instruction,
                        &estep.scope,
                        sde,
                        &mut cmd_set,
                    );
                }
            }
        }
        config::finish(&mut state.config, &estage.end);
        (self.progress)(Event::StageDone { stage: label });
        Ok(state)
    }

    /// A step's output: stored, or built now under its lock.
    fn step(
        &self,
        label: &str,
        state: &StageState,
        pstep: &PlannedStep,
        estep: &Step,
        drv: &crate::derivation::Derivation,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<(Output, bool), BuildError> {
        let hash = &drv.hash;
        if !self.options.no_cache
            && let Some(out) = self.usable_output(hash)?
        {
            // A fetch step's output is fixed by its pin and checked against
            // it whenever it runs; `--check` does not fetch again.
            if self.options.check && pstep.fetch.is_none() {
                return check::rebuild(self, label, state, pstep, estep, hash, done, out);
            }
            return Ok((out, true));
        }
        let _lock = self.store.lock_derivation(hash)?;
        if !self.options.no_cache
            && let Some(out) = self.usable_output(hash)?
        {
            return Ok((out, true));
        }
        if let Some(f) = &pstep.fetch {
            return fetch::step(self, label, state, pstep, estep, f, hash, done);
        }
        let line = pstep.span.start;
        (self.progress)(Event::StepStarted {
            stage: label.to_owned(),
            line,
            name: drv.name.clone(),
        });
        let started_ms = now_ms();
        let build = self.store.start_build(hash, started_ms)?;
        let upper = self.store.tmp_dir()?;
        let mut log = Vec::new();
        let result = self.produce(label, state, pstep, estep, upper.path(), &mut log, done);
        let log_obj = self.store.add_object(&mut log.as_slice()).ok();
        if let Err(e) = result {
            let _ = self
                .store
                .finish_build(build, now_ms(), 1, log_obj.as_ref());
            return Err(match e {
                BuildError::Step { .. } => e,
                other => BuildError::Step {
                    line,
                    message: error_chain(&other),
                },
            });
        }
        let output = self.ingest(upper.path(), hash)?;
        let output = if self.store.output(hash)?.is_some() {
            output
        } else {
            self.store.record_output(hash, &output)?
        };
        self.store
            .finish_build(build, now_ms(), 0, log_obj.as_ref())?;
        Ok((output, false))
    }

    /// Runs a step's instruction, writing its changes into `upper`.
    #[expect(clippy::too_many_arguments, reason = "the step's whole context")]
    fn produce(
        &self,
        label: &str,
        state: &StageState,
        pstep: &PlannedStep,
        estep: &Step,
        upper: &Path,
        log: &mut Vec<u8>,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<(), BuildError> {
        match &estep.instruction {
            Instruction::Run(_) => self.run(label, state, pstep, estep, upper, log, done),
            Instruction::Copy(_) | Instruction::Add(_) => {
                copy::copy(self, state, pstep, estep, upper, done)
            }
            Instruction::Workdir(_) => self.workdir(state, estep, upper),
            other => Err(BuildError::Step {
                line: pstep.span.start,
                message: format!("`{}` has no filesystem effect to build", other.keyword()),
            }),
        }
    }

    /// A step's stored output, if every layer of it can still be read (from
    /// its tree or its blob).
    fn usable_output(&self, hash: &Blake3Digest) -> Result<Option<Output>, BuildError> {
        let Some(out) = self.store.output(hash)? else {
            return Ok(None);
        };
        for layer in &out.layers {
            let tree = match &layer.tree {
                Some(key) => self.store.tree_path(key)?,
                None => None,
            };
            let blob = match &layer.blob {
                Some(digest) => self.store.blob_path(digest)?,
                None => None,
            };
            if tree.is_none() && blob.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }

    /// Turns a finished layer dir into a store tree and its diff_id; the
    /// compressed blob waits until an image needs it.
    fn ingest(&self, dir: &Path, hash: &Blake3Digest) -> Result<Output, BuildError> {
        let layer = self.write_layer(dir)?;
        self.keep_layer(dir, hash, layer)
    }

    /// Hashes a finished layer dir as its layer tar (the diff_id; the
    /// compressed blob waits until an image needs it); `None` for an empty
    /// dir (no layer).
    pub(crate) fn write_layer(
        &self,
        dir: &Path,
    ) -> Result<Option<image::layer::LayerInfo>, BuildError> {
        let empty = std::fs::read_dir(dir)
            .map_err(io_err("read", dir))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let mut hashing = image::digest::HashingWriter::new(std::io::sink());
        let (info, _) = image::layer::write_dir_layer(
            dir,
            &tree_walk_options(),
            LayerOptions {
                compression: Compression::None,
                source_date_epoch: self.options.source_date_epoch,
            },
            &mut hashing,
        )?;
        Ok(Some(info))
    }

    /// Moves a finished layer dir into the store as the tree of `hash`'s
    /// output (its blob waits until an image needs it), and returns that
    /// output.
    fn keep_layer(
        &self,
        dir: &Path,
        hash: &Blake3Digest,
        layer: Option<image::layer::LayerInfo>,
    ) -> Result<Output, BuildError> {
        let Some(info) = layer else {
            return Ok(Output {
                layers: Vec::new(),
                config: None,
            });
        };
        let key = TreeKey::new(&hash.to_hex())?;
        // The tree is the directory itself: move it out of its TempDir.
        let keep = self.store.tmp_dir()?.keep();
        std::fs::remove_dir(&keep).map_err(io_err("remove", &keep))?;
        std::fs::rename(dir, &keep).map_err(io_err("rename", dir))?;
        std::fs::create_dir(dir).map_err(io_err("create", dir))?;
        own_root(&keep, self.offset)?;
        self.store.add_tree(&keep, &key)?;
        Ok(Output {
            layers: vec![Layer {
                diff_id: info.diff_id,
                blob: None,
                tree: Some(key),
            }],
            config: None,
        })
    }

    #[expect(clippy::too_many_arguments, reason = "one RUN's whole context")]
    fn run(
        &self,
        label: &str,
        state: &StageState,
        pstep: &PlannedStep,
        estep: &Step,
        upper: &Path,
        log: &mut Vec<u8>,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<(), BuildError> {
        let Instruction::Run(run) = &estep.instruction else {
            unreachable!("called for RUN only")
        };
        let line = run.span.start;
        let scope = &estep.scope;
        // Heredocs (F35, F36): a lone `#!` body runs as a file from a
        // read-only mount, any other body or combined line through the shell.
        let mut pipes = None;
        let argv = match run.script() {
            RunScript::Command(CommandForm::Exec(a)) => a,
            RunScript::Command(form @ CommandForm::Shell(_)) => form.to_argv(&scope.shell),
            RunScript::Script(text) | RunScript::Combined(text) => {
                CommandForm::Shell(text).to_argv(&scope.shell)
            }
            RunScript::Shebang { name, body } => {
                use std::os::unix::fs::PermissionsExt;
                let dir = self.store.tmp_dir()?;
                let file = dir.path().join(&name);
                std::fs::write(&file, body).map_err(io_err("write", &file))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &file))?;
                own_root(dir.path(), self.offset_if_root())?;
                if nix::unistd::geteuid().is_root() {
                    let id = self.offset_if_root();
                    std::os::unix::fs::chown(&file, Some(id), Some(id))
                        .map_err(io_err("chown", &file))?;
                }
                pipes = Some(dir);
                CommandForm::Shell(format!("/dev/pipes/{name}")).to_argv(&scope.shell)
            }
        };
        let work = self.store.tmp_dir()?;
        let mut spec = sandbox::Spec::new(
            self.options.helper.clone(),
            sandbox::Upper::Dir {
                upper: upper.to_path_buf(),
                work: work.path().to_path_buf(),
            },
            argv,
        );
        spec.lower = state.layers.iter().map(|l| l.tree.clone()).collect();
        spec.env = scope.vars.clone();
        if !spec.env.iter().any(|(k, _)| k == "PATH") {
            spec.env
                .insert(0, ("PATH".into(), sandbox::DEFAULT_PATH.to_owned()));
        }
        spec.cwd = PathBuf::from(&scope.workdir);
        spec.user = scope.user.clone();
        let (mut mounts, _keep) = self.mounts(run, pstep, estep, done)?;
        if let Some(dir) = &pipes {
            mounts.push(sandbox::Mount {
                target: PathBuf::from("/dev/pipes"),
                kind: sandbox::MountKind::Bind {
                    source: dir.path().to_path_buf(),
                    readonly: true,
                },
            });
        }
        spec.mounts = mounts;
        if pstep.fetch.is_some() {
            fetch::open_network(&mut spec, &self.options.fetch);
        }
        // Output goes to the step's log as it comes (both streams
        // interleaved, as a terminal shows them) and out as progress.
        let mut stderr_tail = Vec::new();
        let outcome = sandbox::run_streaming(&spec, &mut |stream, bytes| {
            log.extend_from_slice(bytes);
            let stderr = stream == sandbox::Stream::Stderr;
            if stderr {
                stderr_tail.extend_from_slice(bytes);
                if stderr_tail.len() > 64 * 1024 {
                    stderr_tail.drain(..stderr_tail.len() - 16 * 1024);
                }
            }
            (self.progress)(Event::Output {
                stage: label.to_owned(),
                line,
                stderr,
                bytes: bytes.to_vec(),
            });
        })?;
        if !outcome.status.success() {
            let tail = String::from_utf8_lossy(&stderr_tail);
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(BuildError::Step {
                line,
                message: format!(
                    "RUN failed with exit code {}{}",
                    outcome.status.code(),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", tail.join(" | "))
                    }
                ),
            });
        }
        Ok(())
    }

    fn mounts(
        &self,
        run: &crate::dockerfile::instruction::RunInstruction,
        pstep: &PlannedStep,
        estep: &Step,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<(Vec<sandbox::Mount>, Vec<tempfile::TempDir>), BuildError> {
        use crate::dockerfile::instruction::MountKind as K;
        let line = run.span.start;
        let workdir = estep.scope.workdir.as_str();
        let mut out = Vec::new();
        let mut keep = Vec::new();
        for spec in &run.mounts {
            let Some(m) = &spec.mount else {
                return Err(BuildError::Step {
                    line,
                    message: format!("unsupported mount `{}`", spec.text),
                });
            };
            let default_target = match (m.kind, &m.id) {
                (K::Secret, Some(id)) => format!("/run/secrets/{id}"),
                _ => String::new(),
            };
            let target_str = m.target.clone().unwrap_or(default_target);
            let target = PathBuf::from(format!("/{}", resolve_dest(workdir, &target_str)));
            let kind = match m.kind {
                K::Tmpfs => sandbox::MountKind::Tmpfs {
                    size: m.size.filter(|&n| n > 0),
                },
                K::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target_str.clone());
                    let key = Blake3Digest::of(id.as_bytes()).to_hex();
                    let dir = self.store.root().join("cache").join(key);
                    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                    sandbox::MountKind::Cache { source: dir }
                }
                K::Secret => {
                    let id = m.id.clone().unwrap_or_default();
                    match self.options.secrets.get(&id) {
                        Some(src) => sandbox::MountKind::Secret {
                            source: src.clone(),
                        },
                        None if m.required => {
                            return Err(BuildError::Step {
                                line,
                                message: format!(
                                    "secret `{id}` is required: pass `--secret id={id},src=PATH`"
                                ),
                            });
                        }
                        None => continue,
                    }
                }
                K::Bind => {
                    let dir = self.store.tmp_dir()?;
                    let source = m.source.clone().unwrap_or_default();
                    copy::bind_source(
                        self,
                        estep,
                        pstep,
                        m.from.as_deref(),
                        &source,
                        dir.path(),
                        done,
                    )
                    .map_err(|e| match e {
                        BuildError::Step { message, .. } => BuildError::Step { line, message },
                        other => other,
                    })?;
                    let rel = crate::plan::select::clean_source(&source);
                    let host = dir.path().join(&rel);
                    keep.push(dir);
                    sandbox::MountKind::Bind {
                        source: host,
                        readonly: m.readonly,
                    }
                }
                K::Ssh => {
                    return Err(BuildError::Step {
                        line,
                        message: format!("mount `{}` is not supported yet", spec.text),
                    });
                }
            };
            out.push(sandbox::Mount { target, kind });
        }
        Ok((out, keep))
    }

    fn workdir(&self, state: &StageState, estep: &Step, upper: &Path) -> Result<(), BuildError> {
        let Instruction::Workdir(w) = &estep.instruction else {
            unreachable!("called for WORKDIR only")
        };
        let path = resolve_dest(&estep.scope.workdir, &w.path);
        let trees: Vec<PathBuf> = state.layers.iter().map(|l| l.tree.clone()).collect();
        if copy::exists_in(&trees, &path) {
            return Ok(());
        }
        // BuildKit creates the missing directories as the stage's USER.
        let user = estep.scope.user.as_str();
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            copy::parse_chown(user, &trees).map_err(|message| BuildError::Step {
                line: w.span.start,
                message,
            })?
        };
        copy::make_parents(upper, &trees, &path, self.offset_if_root(), owner, true)?;
        Ok(())
    }

    fn offset_if_root(&self) -> u32 {
        if nix::unistd::geteuid().is_root() {
            self.offset
        } else {
            let _ = &self.ids;
            0
        }
    }
}

/// `dest` made absolute against `workdir`, cleaned, without a leading `/`.
pub(crate) fn resolve_dest(workdir: &str, dest: &str) -> String {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{workdir}/{dest}")
    };
    crate::plan::select::clean_source(&joined)
}

/// An error and its sources on one line ([`crate::one_line`]), then the
/// sandbox's hint (if it has one) on the next: the message of a failed step.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = crate::one_line(e);
    let mut link = Some(e);
    while let Some(cause) = link {
        if let Some(hint) = cause
            .downcast_ref::<SandboxError>()
            .and_then(SandboxError::hint)
        {
            text.push_str("\nhint: ");
            text.push_str(&hint);
            break;
        }
        link = cause.source();
    }
    text
}

#[expect(
    clippy::disallowed_methods,
    reason = "wall-clock time only for build records, never hashed"
)]
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}
