//! `kiln build --check`, like `nix build --check`: run a step whose output
//! is stored again, over the very same inputs (the stored layers below
//! it), in a fresh temporary directory, and compare the layer it makes
//! with the stored one, file by file ([`crate::diff`]).
//!
//! Nothing is written to the store: the rebuilt layer goes to an
//! uncompressed temporary file in the store's `tmp/`, deleted afterwards,
//! and the stored output stays the step's output. Because every step is
//! rebuilt over the *stored* layers below it, a difference belongs to the
//! step that shows it, not to one below.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{BuildError, Builder, StageState, io_err};
use crate::diff::image::{FsReport, fs_report};
use crate::diff::read::{self, Input, Limits};
use crate::diff::tree::{self, CompareOptions};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::dockerfile::stage::Step;
use crate::image::blob::BlobSource;
use crate::image::layer::{LayerOptions, WalkOptions};
use crate::image::oci::{Descriptor, media_type};
use crate::image::{self, Compression, ImageError};
use crate::plan::PlannedStep;
use crate::store::Output;

/// One step rebuilt and compared with its stored output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepCheck {
    /// The stage's name or `#index`.
    pub stage: String,
    /// The Dockerfile line.
    pub line: usize,
    /// `RUN`, `COPY`, ...
    pub keyword: &'static str,
    /// The step derivation.
    pub derivation: Blake3Digest,
    /// The stored layer's diff_id (`None`: the step stored no layer).
    pub stored: Option<Sha256Digest>,
    /// The rebuilt layer's diff_id.
    pub rebuilt: Option<Sha256Digest>,
    /// How the two layers differ, file by file, when they do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<FsReport>,
}

impl StepCheck {
    /// Whether the rebuild gave the stored layer bit for bit.
    pub fn reproducible(&self) -> bool {
        self.stored == self.rebuilt
    }
}

/// Temporary layer files as a blob source (the rebuilt layer, and the
/// stored one when the store keeps only its tree).
struct Files(Vec<(Sha256Digest, PathBuf)>);

impl BlobSource for Files {
    fn open_blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, ImageError> {
        let (_, path) = self
            .0
            .iter()
            .find(|(d, _)| d == digest)
            .ok_or(ImageError::MissingBlob { digest: *digest })?;
        let f = std::fs::File::open(path).map_err(|e| ImageError::read(path, e))?;
        Ok(Box::new(std::io::BufReader::with_capacity(256 * 1024, f)))
    }
}

/// Rebuilds one stored step and records how it compares; returns the
/// stored output, on which the build goes on.
#[expect(clippy::too_many_arguments, reason = "the step's whole context")]
pub(super) fn rebuild(
    b: &Builder<'_>,
    label: &str,
    state: &StageState,
    pstep: &PlannedStep,
    estep: &Step,
    hash: &Blake3Digest,
    done: &std::collections::BTreeMap<usize, StageState>,
    stored: Output,
) -> Result<(Output, bool), BuildError> {
    let line = pstep.span.start;
    let upper = b.store.tmp_dir()?;
    let mut log = Vec::new();
    b.produce(label, state, pstep, estep, upper.path(), &mut log, done)
        .map_err(|e| match e {
            BuildError::Step { .. } => e,
            other => BuildError::Step {
                line,
                message: super::error_chain(&other),
            },
        })?;
    let empty = std::fs::read_dir(upper.path())
        .map_err(io_err("read", upper.path()))?
        .next()
        .is_none();
    let tmp = b.store.tmp_dir()?;
    let layer_file = tmp.path().join("rebuilt.tar");
    let rebuilt = if empty {
        None
    } else {
        let file = std::fs::File::create(&layer_file).map_err(io_err("create", &layer_file))?;
        let (info, _) = image::layer::write_dir_layer(
            upper.path(),
            &WalkOptions {
                id_offset: b.offset_if_root(),
                overlay: true,
            },
            LayerOptions {
                compression: Compression::None,
                source_date_epoch: b.options.source_date_epoch,
            },
            file,
        )?;
        Some(info)
    };
    let stored_layer = stored.layers.first();
    let mut check = StepCheck {
        stage: String::new(),
        line,
        keyword: pstep.keyword,
        derivation: *hash,
        stored: stored_layer.map(|l| l.diff_id),
        rebuilt: rebuilt.as_ref().map(|i| i.diff_id),
        diff: None,
    };
    if !check.reproducible() {
        check.diff = Some(compare(
            b,
            &stored,
            rebuilt.as_ref(),
            &layer_file,
            tmp.path(),
        )?);
    }
    b.checks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(check);
    Ok((stored, false))
}

/// The stored layer against the rebuilt one, entry by entry (whiteouts
/// kept as entries: both are one step's changes, not filesystems).
fn compare(
    b: &Builder<'_>,
    stored: &Output,
    rebuilt: Option<&image::LayerInfo>,
    layer_file: &Path,
    spool: &Path,
) -> Result<FsReport, BuildError> {
    let store_blobs = super::StoreBlobs { store: b.store };
    let mut files = Files(Vec::new());
    if let Some(info) = rebuilt {
        files.0.push((info.digest, layer_file.to_path_buf()));
    }
    // The stored layer: its blob, else a tar written from its tree.
    let mut stored_layers = Vec::new();
    let mut from_store = true;
    if let Some(layer) = stored.layers.first() {
        let blob = match &layer.blob {
            Some(d) => b.store.blob_path(d)?.map(|p| (*d, p)),
            None => None,
        };
        match blob {
            Some((digest, path)) => {
                let size = std::fs::metadata(&path)
                    .map_err(io_err("read", &path))?
                    .len();
                stored_layers.push(Descriptor::new(media_type::LAYER_GZIP, digest, size));
            }
            None => {
                let tree =
                    super::step_layer_tree(b.store, layer)?.ok_or_else(|| BuildError::Step {
                        line: 0,
                        message: format!("the stored layer {} is missing", layer.diff_id),
                    })?;
                let path = spool.join("stored.tar");
                let file = std::fs::File::create(&path).map_err(io_err("create", &path))?;
                let (info, _) = image::layer::write_dir_layer(
                    &tree,
                    &super::tree_walk_options(),
                    LayerOptions {
                        compression: Compression::None,
                        source_date_epoch: b.options.source_date_epoch,
                    },
                    file,
                )?;
                files.0.push((info.digest, path));
                stored_layers.push(Descriptor::new(media_type::LAYER, info.digest, info.size));
                from_store = false;
            }
        }
    }
    let stored_input = Input {
        image: "the stored output".into(),
        source: if from_store { &store_blobs } else { &files },
        layers: stored_layers,
        diff_ids: stored
            .layers
            .first()
            .map(|l| vec![l.diff_id])
            .unwrap_or_default(),
        raw: true,
    };
    let rebuilt_input = Input {
        image: "the rebuilt output".into(),
        source: &files,
        layers: rebuilt
            .map(|i| vec![Descriptor::new(media_type::LAYER, i.digest, i.size)])
            .unwrap_or_default(),
        diff_ids: rebuilt.map(|i| vec![i.diff_id]).unwrap_or_default(),
        raw: true,
    };
    let mut outcome = read::read_pair(&stored_input, &rebuilt_input, spool, Limits::default())
        .map_err(|e| BuildError::Step {
            line: 0,
            message: super::error_chain(&e),
        })?;
    let mut paths = tree::compare(&outcome.a.tree, &outcome.b.tree, CompareOptions::default());
    outcome.fill(&mut paths).map_err(|e| BuildError::Step {
        line: 0,
        message: super::error_chain(&e),
    })?;
    Ok(fs_report(paths, true))
}

/// Whether what a non-reproducible step changed can reach the target
/// image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reach", rename_all = "snake_case")]
pub enum Reach {
    /// The step's layer is one of the image's (its stage is the target or
    /// a stage the target is built `FROM`).
    Image,
    /// A later step reads what changed: a `COPY --from` whose source
    /// selects a changed path, or a `RUN --mount=from=` (taken to read
    /// everything).
    Read {
        /// That step's Dockerfile line.
        line: usize,
        /// The source it reads (`/out/server`, or `--mount`).
        source: String,
    },
    /// Nothing reads the changed paths: only the stage's own layer, which
    /// the image does not contain, differs.
    Unread,
}

/// Works out, from the plan alone, whether `check`'s changes reach the
/// target image (see [`Reach`]). Reads through more than one stage are
/// counted as reaching it.
pub fn reach(
    evaluation: &crate::dockerfile::stage::Evaluation,
    plan: &crate::plan::Plan,
    check: &StepCheck,
) -> Reach {
    use crate::dockerfile::instruction::Instruction;
    use crate::dockerfile::stage::Base;
    let stage_of = plan.stages.iter().find(|s| {
        s.steps.iter().any(|st| {
            st.derivation
                .as_ref()
                .is_some_and(|d| d.hash == check.derivation)
        })
    });
    let Some(stage) = stage_of.map(|s| s.index) else {
        return Reach::Image;
    };
    let base_of = |i: usize| {
        evaluation
            .stages
            .iter()
            .find(|s| s.index == i)
            .and_then(|s| match s.base {
                Base::Stage(b) => Some(b),
                _ => None,
            })
    };
    // The stages whose filesystem includes `i`'s layers: `i` and those
    // built FROM it, transitively.
    let chain_has = |mut top: usize, i: usize| loop {
        if top == i {
            return true;
        }
        match base_of(top) {
            Some(b) => top = b,
            None => return false,
        }
    };
    if chain_has(plan.target, stage) {
        return Reach::Image;
    }
    let changed: Vec<String> = check
        .diff
        .as_ref()
        .map(|d| {
            d.paths
                .iter()
                .map(|p| p.path.trim_start_matches('/').to_owned())
                .collect()
        })
        .unwrap_or_default();
    let selects = |source: &str| {
        let src = crate::plan::select::clean_source(source);
        changed.iter().any(|p| {
            if src.is_empty() || *p == src || p.starts_with(&format!("{src}/")) {
                return true;
            }
            // A pattern may name the path or one of its directories.
            let mut cut = p.as_str();
            loop {
                if crate::dockerfile::glob::matches(&src, cut).unwrap_or(true) {
                    return true;
                }
                match cut.rfind('/') {
                    Some(i) => cut = &cut[..i],
                    None => return false,
                }
            }
        })
    };
    for estage in &evaluation.stages {
        for step in &estage.steps {
            if !step.from_stages.iter().any(|&y| chain_has(y, stage)) {
                continue;
            }
            let line = step.instruction.span().start;
            match &step.instruction {
                Instruction::Copy(copy) => {
                    if let Some(source) = copy.sources.iter().find(|s| selects(s)) {
                        return Reach::Read {
                            line,
                            source: source.clone(),
                        };
                    }
                }
                _ => {
                    return Reach::Read {
                        line,
                        source: "--mount".into(),
                    };
                }
            }
        }
    }
    Reach::Unread
}
