//! The build plan: evaluated stages in, derivations out.
//!
//! A step derivation covers exactly what can change the step's layer
//! (DESIGN.md decision 2): the derivation (or base image digest) it builds
//! on, the instruction after expansion, the scope it runs in (for RUN: the
//! variables, SHELL, WORKDIR, USER; for WORKDIR: USER), the content and
//! masked mode of the context files it selects, the derivations of the
//! stages it reads from, and SOURCE_DATE_EPOCH. Line numbers, mtimes, the
//! context's location and instructions of other stages never enter.
//! A stage derivation covers its base, every instruction (metadata too: they
//! shape the config) with its step derivation, the platform and
//! SOURCE_DATE_EPOCH.
//!
//! Pure: the context listing (with content hashes) and base image digests
//! come in as values.

pub mod graph;
pub mod select;

use std::borrow::Cow;

use serde::Serialize;

use crate::derivation::{Derivation, Encoder, Kind};
use crate::digest::Blake3Digest;
use crate::dockerfile::Span;
use crate::dockerfile::instruction::Instruction;
use crate::dockerfile::stage::{Base, Evaluation, Stage};
use crate::image::json;

/// The kind of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl FileKind {
    fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }
}

/// One path of the build context as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextFile {
    /// Relative to the context root, `/`-separated.
    pub path: String,
    /// File, directory, symlink, other.
    pub kind: FileKind,
    /// Permission bits as they enter the hash (masked with 022 by the
    /// caller unless exact modes were asked for).
    pub mode: u32,
    /// `blake3:<hex>` of a file's content, a symlink's target, empty for
    /// directories.
    pub hash: String,
}

/// Resolves image references (bases, `COPY --from=<image>`) to digests.
pub trait Resolver {
    /// `sha256:<hex>` of the manifest `reference` names.
    fn resolve(&self, reference: &str) -> Result<String, String>;
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A COPY/ADD source problem.
    #[error("{message}")]
    Source {
        /// The instruction's line.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// A base image (or `--from` image) could not be resolved.
    #[error("cannot resolve image `{reference}`: {reason}")]
    Image {
        /// The line that names it.
        line: usize,
        /// The reference as written after expansion.
        reference: String,
        /// Why.
        reason: String,
    },
}

impl PlanError {
    /// The 1-based line the error refers to.
    pub fn line(&self) -> usize {
        match self {
            PlanError::Source { line, .. } | PlanError::Image { line, .. } => *line,
        }
    }
}

/// One instruction of a planned stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    /// Source lines.
    pub span: Span,
    /// `RUN`, `COPY`, ...
    pub keyword: &'static str,
    /// The step derivation, for instructions that change the filesystem.
    pub derivation: Option<Derivation>,
    /// The context files it selects (paths).
    pub context_files: Vec<String>,
    /// Stage derivations it reads from (`COPY --from`, `--mount from`).
    pub stage_inputs: Vec<Blake3Digest>,
    /// Images it reads from (`COPY --from=<image>`, `--mount from=`), each
    /// with the manifest digest it resolved to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<(String, String)>,
}

/// A planned stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStage {
    /// Position in the file.
    pub index: usize,
    /// `AS name`.
    pub name: Option<String>,
    /// What it starts from: `scratch`, `image@digest`, or a stage derivation.
    pub base: String,
    /// The stage derivation.
    pub derivation: Derivation,
    /// Its instructions.
    pub steps: Vec<PlannedStep>,
}

/// The derivation graph for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The stages the target needs, in file order.
    pub stages: Vec<PlannedStage>,
    /// Index of the target stage.
    pub target: usize,
}

impl Plan {
    /// The target stage.
    pub fn target_stage(&self) -> &PlannedStage {
        self.stages
            .iter()
            .find(|s| s.index == self.target)
            .expect("the plan holds its target")
    }

    /// Every derivation of the plan, stages and steps.
    pub fn derivations(&self) -> impl Iterator<Item = &Derivation> {
        self.stages.iter().flat_map(|s| {
            s.steps
                .iter()
                .filter_map(|step| step.derivation.as_ref())
                .chain(std::iter::once(&s.derivation))
        })
    }
}

/// The instruction as hashed: canonical JSON without source positions.
fn instruction_json(inst: &Instruction) -> String {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("span");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(inst).expect("instructions serialize");
    strip(&mut value);
    String::from_utf8(json::canonical(&value).expect("a JSON value serializes"))
        .expect("canonical JSON is UTF-8")
}

/// Plans `evaluation` against a context listing (sorted by path).
pub fn plan(
    evaluation: &Evaluation,
    context: &[ContextFile],
    resolver: &dyn Resolver,
    source_date_epoch: u64,
) -> Result<Plan, PlanError> {
    let mut planned: Vec<Option<PlannedStage>> = vec![None; evaluation.stages.len()];
    let position = |index: usize| evaluation.stages.iter().position(|s| s.index == index);
    // Stages may read from stages later in the file; loop until all are done
    // (the graph has no cycles, so each pass completes at least one).
    loop {
        let mut progressed = false;
        for (pos, stage) in evaluation.stages.iter().enumerate() {
            if planned[pos].is_some() {
                continue;
            }
            let deps = stage_dependencies(stage);
            if deps
                .iter()
                .any(|d| position(*d).is_some_and(|p| planned[p].is_none()))
            {
                continue;
            }
            let lookup = |index: usize| -> Option<&PlannedStage> {
                position(index).and_then(|p| planned[p].as_ref())
            };
            let stage_plan = plan_stage(stage, context, resolver, source_date_epoch, &lookup)?;
            planned[pos] = Some(stage_plan);
            progressed = true;
        }
        if planned.iter().all(Option::is_some) {
            break;
        }
        assert!(progressed, "the stage graph was checked for cycles");
    }
    Ok(Plan {
        stages: planned
            .into_iter()
            .map(|s| s.expect("all planned"))
            .collect(),
        target: evaluation.target,
    })
}

/// Whether a step is a `COPY --link` / `ADD --link` whose layer is built
/// on an empty filesystem: BuildKit ignores `--link` with `--chmod`, and a
/// `--chown` by name needs the stage's `/etc/passwd`.
pub fn linked(inst: &Instruction) -> bool {
    let (link, chmod, chown) = match inst {
        Instruction::Copy(c) => (c.link, &c.chmod, &c.chown),
        Instruction::Add(a) => (a.link, &a.chmod, &a.chown),
        _ => return false,
    };
    let numeric = |s: &str| s.split(':').all(|p| p.parse::<u32>().is_ok());
    link && chmod.is_none() && chown.as_deref().is_none_or(numeric)
}

/// The stage indices a stage reads from (base and `--from`s).
fn stage_dependencies(stage: &Stage) -> Vec<usize> {
    let mut out = Vec::new();
    if let Base::Stage(i) = stage.base {
        out.push(i);
    }
    for step in &stage.steps {
        out.extend(step.from_stages.iter().copied());
    }
    out
}

fn plan_stage<'a>(
    stage: &Stage,
    context: &[ContextFile],
    resolver: &dyn Resolver,
    source_date_epoch: u64,
    lookup: &dyn Fn(usize) -> Option<&'a PlannedStage>,
) -> Result<PlannedStage, PlanError> {
    let sde = source_date_epoch.to_string();
    let base = match &stage.base {
        Base::Scratch => "scratch".to_string(),
        Base::Image(reference) => {
            let digest = resolver
                .resolve(reference)
                .map_err(|reason| PlanError::Image {
                    line: stage.span.start,
                    reference: reference.clone(),
                    reason,
                })?;
            // A digest as written stays as written; one the resolver
            // followed (an index to its platform's manifest) is replaced.
            match reference.split_once('@') {
                Some((_, written)) if *written == *digest => reference.clone(),
                Some((name, _)) => format!("{name}@{digest}"),
                None => format!("{reference}@{digest}"),
            }
        }
        Base::Stage(i) => lookup(*i)
            .expect("dependencies are planned first")
            .derivation
            .hash
            .to_string(),
    };
    let label = stage
        .name
        .clone()
        .unwrap_or_else(|| format!("#{}", stage.index));

    let mut parent = base.clone();
    let mut steps = Vec::with_capacity(stage.steps.len());
    let mut records = Vec::with_capacity(stage.steps.len());
    for step in &stage.steps {
        let inst = &step.instruction;
        let text = instruction_json(inst);
        // Borrowed where the value lives in the context listing: a COPY of
        // a large context makes one record per file.
        let mut inputs: Vec<Vec<Cow<'_, str>>> = Vec::new();
        let mut context_files = Vec::new();
        let mut stage_inputs = Vec::new();
        let mut images = Vec::new();

        // Context files a COPY/ADD selects (unless it copies from elsewhere),
        // and those a RUN --mount=type=bind without from= sees.
        let mut selections: Vec<(Vec<String>, select::How<'_>)> = Vec::new();
        match inst {
            Instruction::Copy(copy) if copy.from.is_none() => {
                selections.push((
                    copy.sources.clone(),
                    select::How {
                        excludes: &copy.excludes,
                        parents: copy.parents,
                    },
                ));
            }
            Instruction::Add(add) => {
                let local = add
                    .sources
                    .iter()
                    .filter(|s| !is_remote(s))
                    .cloned()
                    .collect();
                selections.push((
                    local,
                    select::How {
                        excludes: &add.excludes,
                        parents: false,
                    },
                ));
            }
            Instruction::Run(run) => {
                for spec in &run.mounts {
                    if let Some(mount) = &spec.mount
                        && mount.from.is_none()
                        && matches!(mount.kind, crate::dockerfile::instruction::MountKind::Bind)
                    {
                        selections.push((
                            vec![mount.source.clone().unwrap_or_default()],
                            select::How::default(),
                        ));
                    }
                }
            }
            _ => {}
        }
        for (sources, how) in selections {
            let picked = select::select(context, &sources, how).map_err(|e| PlanError::Source {
                line: inst.span().start,
                message: e.to_string(),
            })?;
            for i in picked {
                let f = &context[i];
                inputs.push(vec![
                    Cow::Borrowed("context"),
                    Cow::Borrowed(&f.path),
                    Cow::Borrowed(f.kind.as_str()),
                    Cow::Owned(format!("{:o}", f.mode)),
                    Cow::Borrowed(&f.hash),
                ]);
                context_files.push(f.path.clone());
            }
        }
        // Stages and images it reads from.
        for (text_ref, target) in &step.from_refs {
            match target {
                Some(i) => {
                    let hash = lookup(*i)
                        .expect("dependencies are planned first")
                        .derivation
                        .hash;
                    inputs.push(vec![
                        Cow::Borrowed("stage"),
                        Cow::Owned(text_ref.clone()),
                        Cow::Owned(hash.to_string()),
                    ]);
                    stage_inputs.push(hash);
                }
                None => {
                    let digest = resolver
                        .resolve(text_ref)
                        .map_err(|reason| PlanError::Image {
                            line: inst.span().start,
                            reference: text_ref.clone(),
                            reason,
                        })?;
                    inputs.push(vec![
                        Cow::Borrowed("image"),
                        Cow::Owned(text_ref.clone()),
                        Cow::Owned(digest.clone()),
                    ]);
                    images.push((text_ref.clone(), digest));
                }
            }
        }

        let changes_fs = matches!(
            inst,
            Instruction::Run(_)
                | Instruction::Copy(_)
                | Instruction::Add(_)
                | Instruction::Workdir(_)
        );
        let derivation = changes_fs.then(|| {
            let scope = &step.scope;
            let run = matches!(inst, Instruction::Run(_));
            // Proxy build args reach RUN but, as in BuildKit, not the hash.
            let env = if run { scope.vars.clone() } else { Vec::new() };
            let empty: Vec<String> = Vec::new();
            let mut enc = Encoder::new(Kind::Step);
            enc.text("parent", if linked(inst) { "link" } else { &parent })
                .text("instruction", &text)
                .pairs("env", &env)
                .list("shell", if run { &scope.shell } else { &empty })
                .text("workdir", &scope.workdir)
                .text(
                    "user",
                    if run || matches!(inst, Instruction::Workdir(_)) {
                        &scope.user
                    } else {
                        ""
                    },
                )
                .records("inputs", &inputs)
                .text("source-date-epoch", &sde);
            enc.finish(format!("{label}: {}", summary(inst, &text)))
        });
        if let Some(d) = &derivation {
            // A `--link` layer does not depend on what is below it, but the
            // steps after it depend on both.
            parent = if linked(inst) {
                format!("{parent}+{}", d.hash)
            } else {
                d.hash.to_string()
            };
        }
        records.push(vec![
            inst.keyword().to_string(),
            text,
            derivation
                .as_ref()
                .map(|d| d.hash.to_string())
                .unwrap_or_default(),
        ]);
        steps.push(PlannedStep {
            span: inst.span(),
            keyword: inst.keyword(),
            derivation,
            context_files,
            stage_inputs,
            images,
        });
    }

    let mut enc = Encoder::new(Kind::Stage);
    enc.text("base", &base)
        .text("platform", stage.platform.as_deref().unwrap_or(""))
        .records("steps", &records)
        .text("source-date-epoch", &sde);
    Ok(PlannedStage {
        index: stage.index,
        name: stage.name.clone(),
        base,
        derivation: enc.finish(format!("stage {label}")),
        steps,
    })
}

/// `http://`, `https://` and git sources are fetched, not read from the
/// context.
fn is_remote(source: &str) -> bool {
    source.starts_with("http://")
        || source.starts_with("https://")
        || source.starts_with("git@")
        || source.starts_with("git://")
}

/// A short human name: keyword and the start of its arguments.
fn summary(inst: &Instruction, _json: &str) -> String {
    let text = match inst {
        Instruction::Run(run) => match &run.command {
            crate::dockerfile::instruction::CommandForm::Shell(s) => s.clone(),
            crate::dockerfile::instruction::CommandForm::Exec(v) => v.join(" "),
        },
        Instruction::Copy(copy) => format!("{} {}", copy.sources.join(" "), copy.dest),
        Instruction::Add(add) => format!("{} {}", add.sources.join(" "), add.dest),
        Instruction::Workdir(w) => w.path.clone(),
        _ => String::new(),
    };
    let mut short: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        short.push('…');
    }
    format!("{} {short}", inst.keyword())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::stage::{self, UnknownBases};

    struct Fixed;

    impl Resolver for Fixed {
        fn resolve(&self, reference: &str) -> Result<String, String> {
            Ok(match reference {
                "busybox" => format!("sha256:{}", "b".repeat(64)),
                other => return Err(format!("unknown {other}")),
            })
        }
    }

    fn file(path: &str, kind: FileKind, mode: u32, content: &str) -> ContextFile {
        ContextFile {
            path: path.into(),
            kind,
            mode,
            hash: match kind {
                FileKind::File => Blake3Digest::of(content.as_bytes()).to_string(),
                _ => content.into(),
            },
        }
    }

    /// The derivations of a small two-stage build, pinned byte for byte: a
    /// change here changes every user's hashes, so it must be deliberate
    /// (bump `kiln-drv-v1` and review the snapshot).
    #[test]
    fn derivation_encodings_are_pinned() {
        let src = b"FROM busybox AS build\nARG V=1\nENV A=x\nWORKDIR /src\nCOPY --chmod=755 app.sh lib/ ./\nRUN --mount=type=cache,target=/c ./app.sh > /out\nFROM scratch\nCOPY --from=build /out /out\nCMD [\"/out\"]\n";
        let dockerfile = crate::dockerfile::parse(src).unwrap();
        let evaluation =
            stage::evaluate(&dockerfile, &stage::Options::default(), &UnknownBases).unwrap();
        let context = vec![
            file("app.sh", FileKind::File, 0o755, "#!/bin/sh\necho hi\n"),
            file("lib", FileKind::Dir, 0o755, ""),
            file("lib/util.sh", FileKind::File, 0o644, "util\n"),
            file("lib/link", FileKind::Symlink, 0o777, "util.sh"),
        ];
        let plan = plan(&evaluation, &context, &Fixed, 0).unwrap();
        let mut all = String::new();
        for drv in plan.derivations() {
            all.push_str(&format!("== {} {}\n{}", drv.hash, drv.name, drv.text()));
        }
        insta::assert_snapshot!(all);
    }
}
