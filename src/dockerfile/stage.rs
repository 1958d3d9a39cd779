//! Stages and scope: splits a Dockerfile into stages, applies ARG/ENV
//! scoping exactly as BuildKit's dispatcher does, and expands every
//! argument BuildKit expands, giving each step the environment, WORKDIR,
//! USER and SHELL in force when it runs.
//!
//! The rules (dockerfile-features.md F62-F65, F74-F86):
//! - ARGs before the first FROM are global: visible only in FROM lines (and
//!   `--platform`), plus the automatic platform ARGs.
//! - Inside a stage, `ARG NAME` takes the `--build-arg` value, else its own
//!   default (expanded with the stage's variables), else the global value.
//! - ARG and ENV write into one ordered variable list: the last write wins,
//!   so `ARG X` after `ENV X` overrides X for later expansion and RUN (but
//!   the image's Env keeps the ENV value).
//! - Every substitution in one instruction sees the values from before it.
//! - A stage `FROM <stage>` inherits that stage's variables, WORKDIR, USER,
//!   SHELL, and runs its ONBUILD triggers first.
//!
//! Pure: base image configs come in through [`BaseImages`], build args and
//! platforms as values.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ast::Warning;
use super::error::ParseError;
use super::expand::{Env, Lexer};
use super::instruction::{
    self, ArgDefinition, FromInstruction, Instruction, KeyValue, OnbuildTrigger,
};
use super::{Dockerfile, Span};
use crate::plan::graph::{self, Reference, StageNode, Target};

/// Docker's default PATH, set for `scratch` and added to bases without one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The default shell for shell-form RUN, CMD and ENTRYPOINT on Linux.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string()]
}

/// Build arguments BuildKit passes to RUN without an ARG line, and leaves out
/// of cache keys (F83).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An OCI platform, `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... when there is one.
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, kiln's default target.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|s| !s.is_empty())?;
        let architecture = parts.next().filter(|s| !s.is_empty())?;
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() || variant.as_deref() == Some("") {
            return None;
        }
        Some(Platform {
            os: os.to_ascii_lowercase(),
            architecture: architecture.to_ascii_lowercase(),
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// What a base image's config contributes to a stage that starts from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseConfig {
    /// `Env` as `KEY=value` strings, in order.
    pub env: Vec<String>,
    /// `WorkingDir` (empty means `/`).
    pub working_dir: String,
    /// `User`.
    pub user: String,
    /// `Shell` (empty means the default shell).
    pub shell: Vec<String>,
    /// `OnBuild` triggers, as text.
    pub onbuild: Vec<String>,
}

/// Looks up base image configs. The front end is pure, so the caller (the
/// planner, with the store and registries) supplies them.
pub trait BaseImages {
    /// The config of `reference` (as written after expansion), if known.
    fn config(&self, reference: &str) -> Option<BaseConfig>;
}

/// No base image is known: stages start as from `scratch`, with the
/// default PATH.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnknownBases;

impl BaseImages for UnknownBases {
    fn config(&self, _reference: &str) -> Option<BaseConfig> {
        None
    }
}

/// The inputs of an evaluation besides the Dockerfile.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--build-arg K=V` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// The platform images are built for.
    pub target_platform: Platform,
    /// The platform the build runs on.
    pub build_platform: Platform,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::linux_amd64(),
            build_platform: Platform::linux_amd64(),
        }
    }
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Base {
    /// The empty filesystem.
    Scratch,
    /// An image, by reference as written after expansion.
    Image(String),
    /// Another stage of this Dockerfile, by index.
    Stage(usize),
}

/// The variables and settings in force at one point of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// ENV and ARG values in the order they were written; the last write of
    /// a name wins, and a rewrite keeps the name's first position. This is
    /// what expansion and RUN see.
    pub vars: Vec<(String, String)>,
    /// The image config's `Env`: base image env and ENV only, no ARGs.
    pub config_env: Vec<(String, String)>,
    /// The ARGs declared so far in the stage (for hashing: the ARGs a step
    /// can see), with their values (`None`: declared but unset).
    pub args: Vec<(String, Option<String>)>,
    /// The working directory.
    pub workdir: String,
    /// `USER` as written (after expansion); empty means root.
    pub user: String,
    /// The shell for shell-form commands.
    pub shell: Vec<String>,
    /// ONBUILD triggers this stage passes on to stages built from it.
    #[serde(skip)]
    pub onbuild: Vec<Instruction>,
}

impl Scope {
    fn empty() -> Self {
        Scope {
            vars: Vec::new(),
            config_env: Vec::new(),
            args: Vec::new(),
            workdir: "/".into(),
            user: String::new(),
            shell: default_shell(),
            onbuild: Vec::new(),
        }
    }

    /// The value of a variable as expansion sees it.
    pub fn var(&self, name: &str) -> Option<&str> {
        Env::get(self.vars.as_slice(), name)
    }
}

/// Sets `key` in an ordered list: replaced where it is, else appended.
fn set_var(list: &mut Vec<(String, String)>, key: &str, value: String) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => list.push((key.to_string(), value)),
    }
}

/// One instruction of a stage after FROM, expanded, with its scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The instruction with every argument BuildKit expands replaced by its
    /// expansion (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD stay as
    /// written; RUN `--mount` values are expanded).
    pub instruction: Instruction,
    /// The scope in force when the instruction runs (before its own effect).
    pub scope: Scope,
    /// True when the step is an ONBUILD trigger inherited from the base.
    pub trigger: bool,
    /// What its `COPY --from` / `RUN --mount from=` name, each with the
    /// stage index it resolves to (`None`: an image reference).
    pub from_refs: Vec<(String, Option<usize>)>,
    /// The stage indices among `from_refs`.
    pub from_stages: Vec<usize>,
}

/// A stage after evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// Position in the file, from 0.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The FROM line.
    pub span: Span,
    /// What it starts from.
    pub base: Base,
    /// `--platform` after expansion, if given.
    pub platform: Option<String>,
    /// Its instructions after FROM, ONBUILD triggers of the base first.
    pub steps: Vec<Step>,
    /// The scope at the end of the stage.
    pub end: Scope,
}

/// A Dockerfile evaluated for one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Every stage the target needs, in ascending index order; stages the
    /// target does not need are absent.
    pub stages: Vec<Stage>,
    /// Index of the target stage.
    pub target: usize,
    /// The global ARGs (before the first FROM) and their values.
    pub global_args: Vec<(String, String)>,
    /// Proxy build args passed to RUN steps without an ARG line.
    pub proxy_env: Vec<(String, String)>,
    /// `--build-arg`s no stage declared (BuildKit warns about them).
    pub unused_build_args: Vec<String>,
    /// Non-fatal findings (undefined variables and the like).
    pub warnings: Vec<Warning>,
}

/// The automatic platform ARGs (F84), global scope only.
fn platform_args(options: &Options) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, platform) in [
        ("TARGET", &options.target_platform),
        ("BUILD", &options.build_platform),
    ] {
        out.push((format!("{prefix}PLATFORM"), platform.to_string()));
        out.push((format!("{prefix}OS"), platform.os.clone()));
        out.push((format!("{prefix}ARCH"), platform.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

/// Expands words for one Dockerfile (its escape character) and records
/// undefined variables as warnings.
struct Expander {
    lexer: Lexer,
    warnings: Vec<Warning>,
}

impl Expander {
    fn word(&mut self, word: &str, env: &dyn Env, span: Span) -> Result<String, ParseError> {
        let expanded = self
            .lexer
            .process_word(word, env)
            .map_err(|source| ParseError::Expand {
                line: span.start,
                col: 1,
                word: word.to_string(),
                source,
            })?;
        self.note_undefined(&expanded.unmatched, span);
        Ok(expanded.value)
    }

    fn words(&mut self, word: &str, env: &dyn Env, span: Span) -> Result<Vec<String>, ParseError> {
        self.lexer
            .process_words(word, env)
            .map_err(|source| ParseError::Expand {
                line: span.start,
                col: 1,
                word: word.to_string(),
                source,
            })
    }

    fn note_undefined(&mut self, names: &std::collections::BTreeSet<String>, span: Span) {
        for name in names {
            self.warnings.push(Warning {
                rule: "UndefinedVar",
                message: format!("usage of undefined variable `${name}`"),
                span,
            });
        }
    }
}

/// A FROM line and the instructions after it, before evaluation.
struct RawStage<'a> {
    from: &'a FromInstruction,
    body: Vec<&'a Instruction>,
}

/// Splits the instruction list at FROM lines. Only ARG may come first.
/// Checks that only ARG precedes the first FROM and that there is one.
pub fn check_structure(dockerfile: &Dockerfile) -> Result<(), ParseError> {
    split_stages(dockerfile).map(|_| ())
}

fn split_stages(
    dockerfile: &Dockerfile,
) -> Result<(Vec<&ArgDefinition>, Vec<RawStage<'_>>), ParseError> {
    let mut globals = Vec::new();
    let mut stages: Vec<RawStage<'_>> = Vec::new();
    for inst in &dockerfile.instructions {
        match (inst, stages.last_mut()) {
            (Instruction::From(from), _) => stages.push(RawStage {
                from,
                body: Vec::new(),
            }),
            (_, Some(stage)) => stage.body.push(inst),
            (Instruction::Arg(arg), None) => globals.extend(arg.args.iter()),
            (other, None) => {
                return Err(ParseError::at(
                    other.span().start,
                    format!(
                        "{} before the first FROM: only ARG may come before FROM",
                        other.keyword()
                    ),
                )
                .with_hint(
                    "start the Dockerfile with `FROM <image>` (global ARGs may precede it)",
                ));
            }
        }
    }
    if stages.is_empty() {
        let line = dockerfile.ast.nodes.last().map_or(1, |n| n.span.start);
        return Err(
            ParseError::at(line, "the Dockerfile has no FROM instruction")
                .with_hint("add `FROM <image>` (or `FROM scratch`)"),
        );
    }
    Ok((globals, stages))
}

/// What one instruction reads from by name: `COPY --from` and
/// `RUN --mount from=`.
fn instruction_references(inst: &Instruction) -> Vec<Reference> {
    let mut out = Vec::new();
    match inst {
        Instruction::Copy(copy) => {
            if let Some(from) = &copy.from {
                out.push(Reference {
                    text: from.clone(),
                    via: "COPY --from",
                    span: copy.span,
                });
            }
        }
        Instruction::Run(run) => {
            for spec in &run.mounts {
                if let Some(from) = spec.mount.as_ref().and_then(|m| m.from.clone()) {
                    out.push(Reference {
                        text: from,
                        via: "RUN --mount from",
                        span: run.span,
                    });
                }
            }
        }
        _ => {}
    }
    out
}

/// Every reference a stage makes, FROM first, including those of the ONBUILD
/// triggers it inherits from a base stage (F190).
fn references(stage: &RawStage<'_>, base: &str, parent: Option<&RawStage<'_>>) -> Vec<Reference> {
    let mut out = vec![Reference {
        text: base.to_string(),
        via: "FROM",
        span: stage.from.span,
    }];
    if let Some(parent) = parent {
        for inst in &parent.body {
            if let Instruction::Onbuild(onbuild) = inst
                && let OnbuildTrigger::Parsed(trigger) = &onbuild.trigger
            {
                for mut r in instruction_references(trigger) {
                    r.span = stage.from.span;
                    out.push(r);
                }
            }
        }
    }
    for inst in &stage.body {
        out.extend(instruction_references(inst));
    }
    out
}

/// Evaluates `dockerfile` for `options.target`: global ARGs, stage graph,
/// then each needed stage in dependency order.
pub fn evaluate(
    dockerfile: &Dockerfile,
    options: &Options,
    bases: &dyn BaseImages,
) -> Result<Evaluation, ParseError> {
    let mut expander = Expander {
        lexer: Lexer::new(dockerfile.ast.directives.escape),
        warnings: Vec::new(),
    };
    let (global_defs, raw) = split_stages(dockerfile)?;
    let mut used_args = std::collections::BTreeSet::new();

    // Global scope: automatic platform ARGs, then the ARGs before FROM.
    let mut globals = platform_args(options);
    let mut global_args = Vec::new();
    for def in &global_defs {
        let value = match options.build_args.get(&def.name) {
            Some(v) => {
                used_args.insert(def.name.clone());
                Some(v.clone())
            }
            None => match &def.default {
                Some(d) => {
                    Some(expander.word(d, &globals.as_slice(), dockerfile_span(dockerfile, def))?)
                }
                None => None,
            },
        };
        if let Some(value) = value {
            set_var(&mut globals, &def.name, value.clone());
            global_args.push((def.name.clone(), value));
        }
    }

    // Resolve each FROM with the global scope, then the graph.
    let mut bases_text = Vec::with_capacity(raw.len());
    let mut platforms = Vec::with_capacity(raw.len());
    for stage in &raw {
        let span = stage.from.span;
        let image = expander.word(&stage.from.image, &globals.as_slice(), span)?;
        if image.is_empty() {
            return Err(ParseError::at(
                span.start,
                format!("base name ({}) should not be blank", stage.from.image),
            )
            .with_hint(
                "the FROM line expands to nothing: give the ARG a default or pass `--build-arg`",
            ));
        }
        bases_text.push(image);
        platforms.push(match &stage.from.platform {
            Some(p) => Some(expander.word(p, &globals.as_slice(), span)?),
            None => None,
        });
    }
    let bare: Vec<StageNode> = raw
        .iter()
        .map(|stage| StageNode {
            name: stage.from.stage_name.clone(),
            span: stage.from.span,
            references: Vec::new(),
        })
        .collect();
    let nodes: Vec<StageNode> = raw
        .iter()
        .zip(&bases_text)
        .map(|(stage, base)| {
            let parent = graph::find_stage(&bare, base).map(|i| &raw[i]);
            StageNode {
                name: stage.from.stage_name.clone(),
                span: stage.from.span,
                references: references(stage, base, parent),
            }
        })
        .collect();
    let graph = graph::resolve(&nodes)?;
    let target = graph::select_target(&nodes, options.target.as_deref())?;
    let needed = graph.closure(target);

    // Evaluate needed stages so that a base stage comes before its children.
    let mut done: BTreeMap<usize, Stage> = BTreeMap::new();
    let order = dependency_order(&graph, &needed);
    for index in order {
        let stage = &raw[index];
        let base = match &graph.edges[index][0] {
            Target::Stage(i) => Base::Stage(*i),
            Target::Image(text) if text.eq_ignore_ascii_case("scratch") => Base::Scratch,
            Target::Image(text) => Base::Image(text.clone()),
        };
        let mut scope = Scope::empty();
        let mut steps = Vec::new();
        let mut triggers: Vec<Instruction> = Vec::new();
        match &base {
            Base::Scratch => {
                scope.vars.push(("PATH".into(), DEFAULT_PATH.into()));
                scope.config_env = scope.vars.clone();
            }
            Base::Image(reference) => {
                let config = bases.config(reference).unwrap_or_default();
                for entry in &config.env {
                    let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
                    set_var(&mut scope.vars, k, v.to_string());
                }
                if scope.var("PATH").is_none() {
                    scope.vars.push(("PATH".into(), DEFAULT_PATH.into()));
                }
                scope.config_env = scope.vars.clone();
                if !config.working_dir.is_empty() {
                    scope.workdir = config.working_dir.clone();
                }
                scope.user = config.user.clone();
                if !config.shell.is_empty() {
                    scope.shell = config.shell.clone();
                }
                for text in &config.onbuild {
                    triggers.push(parse_trigger(text, stage.from.span)?);
                }
            }
            Base::Stage(parent) => {
                let parent = done
                    .get(parent)
                    .expect("dependency order puts a base stage before its children");
                scope = parent.end.clone();
                triggers = std::mem::take(&mut scope.onbuild);
            }
        }

        let body = triggers
            .iter()
            .map(|t| (t, true))
            .chain(stage.body.iter().map(|i| (*i, false)));
        for (inst, trigger) in body {
            let before = scope.clone();
            let expanded = apply(
                inst,
                &mut scope,
                &mut expander,
                &globals,
                options,
                &mut used_args,
            )?;
            let from_refs: Vec<(String, Option<usize>)> = instruction_references(&expanded)
                .into_iter()
                .map(|r| {
                    let target = graph::find_stage(&nodes, &r.text);
                    (r.text, target)
                })
                .collect();
            let from_stages = from_refs.iter().filter_map(|(_, t)| *t).collect();
            steps.push(Step {
                instruction: expanded,
                scope: before,
                trigger,
                from_refs,
                from_stages,
            });
        }
        done.insert(
            index,
            Stage {
                index,
                name: stage.from.stage_name.clone(),
                span: stage.from.span,
                base,
                platform: platforms[index].clone(),
                steps,
                end: scope,
            },
        );
    }

    let proxy_env = PROXY_ARGS
        .iter()
        .filter_map(|name| {
            options.build_args.get(*name).map(|v| {
                used_args.insert((*name).to_string());
                ((*name).to_string(), v.clone())
            })
        })
        .collect();
    let unused_build_args = options
        .build_args
        .keys()
        .filter(|k| !used_args.contains(*k))
        .cloned()
        .collect();
    Ok(Evaluation {
        stages: done.into_values().collect(),
        target,
        global_args,
        proxy_env,
        unused_build_args,
        warnings: expander.warnings,
    })
}

/// The span of the global ARG instruction that declares `def`.
fn dockerfile_span(dockerfile: &Dockerfile, def: &ArgDefinition) -> Span {
    dockerfile
        .instructions
        .iter()
        .find_map(|inst| match inst {
            Instruction::Arg(arg) if arg.args.iter().any(|d| std::ptr::eq(d, def)) => {
                Some(arg.span)
            }
            _ => None,
        })
        .unwrap_or(Span { start: 1, end: 1 })
}

/// Post-order over the needed stages: every stage after the stages it
/// depends on; ties in index order.
fn dependency_order(graph: &graph::Graph, needed: &[usize]) -> Vec<usize> {
    let mut order = Vec::with_capacity(needed.len());
    let mut visited = std::collections::BTreeSet::new();
    fn visit(
        i: usize,
        graph: &graph::Graph,
        visited: &mut std::collections::BTreeSet<usize>,
        order: &mut Vec<usize>,
    ) {
        if !visited.insert(i) {
            return;
        }
        for edge in &graph.edges[i] {
            if let Target::Stage(j) = edge {
                visit(*j, graph, visited, order);
            }
        }
        order.push(i);
    }
    for &i in needed {
        visit(i, graph, &mut visited, &mut order);
    }
    order
}

/// Parses an ONBUILD trigger stored in a base image's config.
fn parse_trigger(text: &str, from: Span) -> Result<Instruction, ParseError> {
    let relocate = |e: ParseError| {
        ParseError::at(
            from.start,
            format!("ONBUILD trigger `{text}` of the base image: {e}"),
        )
    };
    // Parsed as the body of a stage, since only ARG may precede a FROM.
    let parsed = super::parse(format!("FROM scratch\n{text}\n").as_bytes()).map_err(relocate)?;
    let mut inst = parsed
        .instructions
        .into_iter()
        .nth(1)
        .ok_or_else(|| ParseError::at(from.start, "empty ONBUILD trigger in the base image"))?;
    relocate_span(&mut inst, from);
    Ok(inst)
}

/// Points a trigger's span at the FROM line that runs it.
fn relocate_span(inst: &mut Instruction, span: Span) {
    macro_rules! set {
        ($($v:ident),*) => {
            match inst { $(Instruction::$v(i) => i.span = span,)* }
        };
    }
    set!(
        From,
        Arg,
        Env,
        Label,
        Maintainer,
        Workdir,
        User,
        Run,
        Cmd,
        Entrypoint,
        Shell,
        Expose,
        Volume,
        StopSignal,
        Healthcheck,
        Copy,
        Add,
        Onbuild
    );
}

/// Applies one instruction to the scope and returns it expanded.
fn apply(
    inst: &Instruction,
    scope: &mut Scope,
    expander: &mut Expander,
    globals: &[(String, String)],
    options: &Options,
    used_args: &mut std::collections::BTreeSet<String>,
) -> Result<Instruction, ParseError> {
    let span = inst.span();
    // Every substitution sees the variables from before the instruction.
    let env = scope.vars.clone();
    let env = env.as_slice();
    let mut out = inst.clone();
    match &mut out {
        Instruction::From(_) => unreachable!("FROM starts a stage"),
        Instruction::Arg(arg) => {
            for def in &mut arg.args {
                let build_arg = options.build_args.get(&def.name);
                let value = if let Some(v) = build_arg {
                    used_args.insert(def.name.clone());
                    Some(v.clone())
                } else if let Some(default) = &def.default {
                    // Each ARG of the line sees the ones before it.
                    let current = scope.vars.clone();
                    Some(expander.word(default, &current.as_slice(), span)?)
                } else {
                    Env::get(globals, &def.name).map(str::to_string)
                };
                if let Some(value) = &value {
                    set_var(&mut scope.vars, &def.name, value.clone());
                }
                match scope.args.iter_mut().find(|(k, _)| *k == def.name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => scope.args.push((def.name.clone(), value.clone())),
                }
                def.default = value;
            }
        }
        Instruction::Env(envs) => {
            expand_pairs(&mut envs.pairs, expander, &env, span)?;
            for KeyValue { key, value } in &envs.pairs {
                set_var(&mut scope.vars, key, value.clone());
                set_var(&mut scope.config_env, key, value.clone());
            }
        }
        Instruction::Label(label) => expand_pairs(&mut label.pairs, expander, &env, span)?,
        Instruction::Workdir(workdir) => {
            let path = expander.word(&workdir.path, &env, span)?;
            let joined = if path.starts_with('/') {
                path
            } else {
                format!("{}/{}", scope.workdir, path)
            };
            workdir.path = clean_path(&joined);
            scope.workdir = workdir.path.clone();
        }
        Instruction::User(user) => {
            user.user = expander.word(&user.user, &env, span)?;
            scope.user = user.user.clone();
        }
        Instruction::Expose(expose) => {
            let mut ports = Vec::new();
            for word in &expose.ports {
                ports.extend(expander.words(word, &env, span)?);
            }
            expose.ports = ports;
        }
        Instruction::Volume(volume) => {
            for path in &mut volume.paths {
                *path = expander.word(path, &env, span)?;
                if path.is_empty() {
                    return Err(ParseError::at(
                        span.start,
                        "VOLUME specified can not be an empty string",
                    ));
                }
            }
        }
        Instruction::StopSignal(signal) => {
            signal.signal = expander.word(&signal.signal, &env, span)?;
            instruction::parse_signal(&signal.signal)
                .map_err(|e| ParseError::at(span.start, format!("invalid STOPSIGNAL: {e}")))?;
        }
        Instruction::Shell(shell) => scope.shell = shell.shell.clone(),
        Instruction::Onbuild(onbuild) => {
            if let OnbuildTrigger::Parsed(trigger) = &onbuild.trigger {
                let mut trigger = (**trigger).clone();
                relocate_span(&mut trigger, span);
                scope.onbuild.push(trigger);
            }
        }
        Instruction::Copy(copy) => {
            if copy.from.as_deref().is_some_and(|f| f.contains('$')) {
                return Err(ParseError::at(
                    span.start,
                    "variable expansion is not supported for --from",
                )
                .with_hint(
                    "define a stage `FROM ${X} AS src` with a global ARG and use `COPY --from=src`",
                ));
            }
            expand_all(&mut copy.sources, expander, &env, span)?;
            copy.dest = expander.word(&copy.dest, &env, span)?;
            expand_opt(&mut copy.chown, expander, &env, span)?;
            expand_opt(&mut copy.chmod, expander, &env, span)?;
            expand_all(&mut copy.excludes, expander, &env, span)?;
            for doc in &mut copy.heredocs {
                if doc.expand {
                    doc.content = expand_heredoc(&doc.content, expander, &env, span)?;
                }
            }
        }
        Instruction::Add(add) => {
            expand_all(&mut add.sources, expander, &env, span)?;
            add.dest = expander.word(&add.dest, &env, span)?;
            expand_opt(&mut add.chown, expander, &env, span)?;
            expand_opt(&mut add.chmod, expander, &env, span)?;
            expand_opt(&mut add.checksum, expander, &env, span)?;
            expand_all(&mut add.excludes, expander, &env, span)?;
            for doc in &mut add.heredocs {
                if doc.expand {
                    doc.content = expand_heredoc(&doc.content, expander, &env, span)?;
                }
            }
        }
        Instruction::Run(run) => {
            for spec in &mut run.mounts {
                let lexer = expander.lexer;
                let parsed = instruction::parse_mount_with(&spec.text, |value| {
                    lexer.process_word(value, &env).map(|e| e.value)
                })
                .map_err(|source| ParseError::Expand {
                    line: span.start,
                    col: 1,
                    word: spec.text.clone(),
                    source,
                })?
                .map_err(|e| {
                    ParseError::at(span.start, format!("invalid --mount `{}`: {e}", spec.text))
                })?;
                spec.mount = Some(parsed);
            }
        }
        Instruction::Maintainer(_)
        | Instruction::Cmd(_)
        | Instruction::Entrypoint(_)
        | Instruction::Healthcheck(_) => {}
    }
    Ok(out)
}

fn expand_pairs(
    pairs: &mut [KeyValue],
    expander: &mut Expander,
    env: &dyn Env,
    span: Span,
) -> Result<(), ParseError> {
    for pair in pairs {
        pair.key = expander.word(&pair.key, env, span)?;
        pair.value = expander.word(&pair.value, env, span)?;
    }
    Ok(())
}

fn expand_all(
    words: &mut [String],
    expander: &mut Expander,
    env: &dyn Env,
    span: Span,
) -> Result<(), ParseError> {
    for word in words {
        *word = expander.word(word, env, span)?;
    }
    Ok(())
}

fn expand_opt(
    word: &mut Option<String>,
    expander: &mut Expander,
    env: &dyn Env,
    span: Span,
) -> Result<(), ParseError> {
    if let Some(w) = word {
        *w = expander.word(w, env, span)?;
    }
    Ok(())
}

/// COPY/ADD heredoc bodies: quotes are ordinary characters, unknown names
/// become empty, a backslash escapes (F38).
fn expand_heredoc(
    content: &str,
    expander: &mut Expander,
    env: &dyn Env,
    span: Span,
) -> Result<String, ParseError> {
    let mut lexer = Lexer::new('\\');
    lexer.skip_process_quotes = true;
    let saved = std::mem::replace(&mut expander.lexer, lexer);
    let result = expander.word(content, env, span);
    expander.lexer = saved;
    result
}

/// Go's `path.Clean` for absolute paths.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_with(
        src: &str,
        args: &[(&str, &str)],
        target: Option<&str>,
    ) -> Result<Evaluation, ParseError> {
        let dockerfile = super::super::parse(src.as_bytes())?;
        let options = Options {
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: target.map(str::to_string),
            ..Options::default()
        };
        evaluate(&dockerfile, &options, &UnknownBases)
    }

    fn eval(src: &str, args: &[(&str, &str)]) -> Evaluation {
        eval_with(src, args, None).expect("evaluates")
    }

    /// The value of `name` as the last step of the target stage sees it
    /// after running (the stage's end scope).
    fn var(ev: &Evaluation, name: &str) -> Option<String> {
        let stage = ev.stages.iter().find(|s| s.index == ev.target).unwrap();
        stage.end.var(name).map(str::to_string)
    }

    fn label(ev: &Evaluation, key: &str) -> String {
        let stage = ev.stages.iter().find(|s| s.index == ev.target).unwrap();
        stage
            .steps
            .iter()
            .rev()
            .find_map(|s| match &s.instruction {
                Instruction::Label(l) => l
                    .pairs
                    .iter()
                    .find(|p| p.key == key)
                    .map(|p| p.value.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no label {key}"))
    }

    #[test]
    fn global_arg_is_usable_in_from_only() {
        let ev = eval("ARG IMG=alpine\nFROM ${IMG}:3\nLABEL v=\"[${IMG}]\"\n", &[]);
        assert_eq!(ev.stages[0].base, Base::Image("alpine:3".into()));
        assert_eq!(label(&ev, "v"), "[]");
    }

    #[test]
    fn redeclared_global_arg_takes_the_global_value() {
        let ev = eval("ARG V=1\nFROM scratch\nARG V\nLABEL v=$V\n", &[]);
        assert_eq!(label(&ev, "v"), "1");
        let ev = eval("ARG V=1\nFROM scratch\nARG V\nLABEL v=$V\n", &[("V", "2")]);
        assert_eq!(label(&ev, "v"), "2");
    }

    #[test]
    fn build_arg_overrides_default() {
        let ev = eval(
            "FROM scratch\nARG V=default\nLABEL v=$V\n",
            &[("V", "given")],
        );
        assert_eq!(label(&ev, "v"), "given");
        assert!(ev.unused_build_args.is_empty());
    }

    #[test]
    fn arg_scope_starts_at_declaration() {
        let ev = eval(
            "FROM scratch\nLABEL before=${V:-fallback}\nARG V=x\nLABEL after=${V:-fallback}\n",
            &[],
        );
        assert_eq!(label(&ev, "before"), "fallback");
        assert_eq!(label(&ev, "after"), "x");
    }

    #[test]
    fn empty_default_is_set_but_empty() {
        let ev = eval("FROM scratch\nARG X=\nLABEL a=${X-d} b=${X:-d}\n", &[]);
        assert_eq!(label(&ev, "a"), "");
        assert_eq!(label(&ev, "b"), "d");
    }

    #[test]
    fn arg_without_default_or_build_arg_stays_unset() {
        let ev = eval("FROM scratch\nARG X\nLABEL a=${X-unset}\n", &[]);
        assert_eq!(label(&ev, "a"), "unset");
        assert_eq!(ev.stages[0].end.args, vec![("X".to_string(), None)]);
    }

    #[test]
    fn env_overrides_earlier_arg_and_later_arg_overrides_env() {
        let ev = eval(
            "FROM scratch\nARG V=arg\nENV V=env\nLABEL a=$V\n",
            &[("V", "cli")],
        );
        assert_eq!(label(&ev, "a"), "env");
        // BuildKit: ARG after ENV wins for expansion, config Env keeps ENV.
        let ev = eval("FROM scratch\nENV V=env\nARG V=arg\nLABEL a=$V\n", &[]);
        assert_eq!(label(&ev, "a"), "arg");
        let end = &ev.stages[0].end;
        assert!(
            end.config_env
                .contains(&("V".to_string(), "env".to_string()))
        );
    }

    #[test]
    fn one_instruction_sees_values_from_before_it() {
        let ev = eval("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\n", &[]);
        assert_eq!(var(&ev, "def").as_deref(), Some("hello"));
        assert_eq!(var(&ev, "abc").as_deref(), Some("bye"));
    }

    #[test]
    fn env_order_replaces_in_place() {
        let ev = eval("FROM scratch\nENV A=1 B=2\nENV A=3\n", &[]);
        let keys: Vec<&str> = ev.stages[0]
            .end
            .config_env
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, vec!["PATH", "A", "B"]);
        assert_eq!(var(&ev, "A").as_deref(), Some("3"));
    }

    #[test]
    fn scratch_has_default_path_and_root_workdir() {
        let ev = eval("FROM scratch\nENV P=$PATH\n", &[]);
        assert_eq!(var(&ev, "P").as_deref(), Some(DEFAULT_PATH));
        assert_eq!(ev.stages[0].end.workdir, "/");
    }

    #[test]
    fn child_stage_inherits_args_env_and_workdir() {
        let ev = eval(
            "FROM scratch AS base\nARG A=1\nENV E=2\nWORKDIR /app\nFROM base\nLABEL a=$A e=$E\nWORKDIR sub\n",
            &[],
        );
        assert_eq!(label(&ev, "a"), "1");
        assert_eq!(label(&ev, "e"), "2");
        assert_eq!(ev.stages[1].end.workdir, "/app/sub");
    }

    #[test]
    fn unrelated_stage_does_not_inherit() {
        let ev = eval(
            "FROM scratch AS a\nARG A=1\nFROM scratch\nCOPY --from=a / /\nLABEL a=${A:-none}\n",
            &[],
        );
        assert_eq!(label(&ev, "a"), "none");
    }

    #[test]
    fn platform_args_are_global_only() {
        let ev = eval(
            "FROM --platform=$BUILDPLATFORM scratch\nLABEL a=${TARGETARCH:-none}\nARG TARGETARCH\nLABEL b=$TARGETARCH\n",
            &[],
        );
        assert_eq!(ev.stages[0].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(label(&ev, "a"), "none");
        assert_eq!(label(&ev, "b"), "amd64");
    }

    #[test]
    fn relative_workdirs_chain_and_undefined_expands_empty() {
        let ev = eval(
            "FROM scratch\nWORKDIR /a\nWORKDIR b\nWORKDIR c/../d/$NOPE\n",
            &[],
        );
        assert_eq!(ev.stages[0].end.workdir, "/a/b/d");
        assert!(ev.warnings.iter().any(|w| w.rule == "UndefinedVar"));
    }

    #[test]
    fn blank_from_is_an_error() {
        let err = eval_with("ARG IMG\nFROM $IMG\n", &[], None).unwrap_err();
        assert!(err.to_string().contains("should not be blank"), "{err}");
        assert_eq!(err.location(), (2, 1));
    }

    #[test]
    fn instruction_before_from_is_an_error() {
        let err = eval_with("RUN echo\nFROM scratch\n", &[], None).unwrap_err();
        assert_eq!(err.location(), (1, 1));
    }

    #[test]
    fn target_prunes_unneeded_stages() {
        let src = "FROM scratch AS a\nFROM scratch AS b\nLABEL x=$UNDEF\nFROM a AS c\n";
        let ev = eval_with(src, &[], Some("c")).unwrap();
        let names: Vec<_> = ev.stages.iter().map(|s| s.name.clone().unwrap()).collect();
        assert_eq!(names, vec!["a", "c"]);
        assert!(ev.warnings.is_empty(), "stage b was not evaluated");
        assert!(eval_with(src, &[], Some("zzz")).is_err());
    }

    #[test]
    fn onbuild_triggers_run_in_child_stage_first() {
        let ev = eval(
            "FROM scratch AS base\nONBUILD ENV T=fired\nFROM base\nLABEL t=$T\n",
            &[],
        );
        let child = &ev.stages[1];
        assert!(child.steps[0].trigger);
        assert_eq!(label(&ev, "t"), "fired");
        assert!(child.end.onbuild.is_empty());
    }

    #[test]
    fn copy_heredoc_expands_unless_quoted() {
        let ev = eval(
            "FROM scratch\nARG N=kiln\nCOPY <<A <<'B' /dir/\nhello '$N' \\$x\nA\nraw $N\nB\n",
            &[],
        );
        let Instruction::Copy(copy) = &ev.stages[0].steps[1].instruction else {
            panic!()
        };
        assert_eq!(copy.heredocs[0].content, "hello 'kiln' $x\n");
        assert_eq!(copy.heredocs[1].content, "raw $N\n");
    }

    #[test]
    fn mounts_are_expanded_with_the_scope() {
        let ev = eval(
            "FROM scratch\nARG C=/cache\nRUN --mount=type=cache,target=$C true\n",
            &[],
        );
        let Instruction::Run(run) = &ev.stages[0].steps[1].instruction else {
            panic!()
        };
        assert_eq!(
            run.mounts[0].mount.as_ref().unwrap().target.as_deref(),
            Some("/cache")
        );
    }

    #[test]
    fn expose_splits_expanded_words() {
        let ev = eval("FROM scratch\nARG P=\"80 443/udp\"\nEXPOSE $P\n", &[]);
        let Instruction::Expose(expose) = &ev.stages[0].steps[1].instruction else {
            panic!()
        };
        assert_eq!(expose.ports, vec!["80", "443/udp"]);
    }

    #[test]
    fn base_image_env_feeds_expansion() {
        struct One;
        impl BaseImages for One {
            fn config(&self, _r: &str) -> Option<BaseConfig> {
                Some(BaseConfig {
                    env: vec!["PATH=/img/bin".into(), "GOPATH=/go".into()],
                    working_dir: "/work".into(),
                    ..BaseConfig::default()
                })
            }
        }
        let dockerfile =
            super::super::parse(b"FROM golang\nENV PATH=$GOPATH/bin:$PATH\nWORKDIR x\n").unwrap();
        let ev = evaluate(&dockerfile, &Options::default(), &One).unwrap();
        assert_eq!(ev.stages[0].end.var("PATH"), Some("/go/bin:/img/bin"));
        assert_eq!(ev.stages[0].end.workdir, "/work/x");
    }

    #[test]
    fn unused_build_args_and_proxies_are_reported() {
        let ev = eval(
            "FROM scratch\n",
            &[("NOPE", "1"), ("HTTP_PROXY", "http://p")],
        );
        assert_eq!(ev.unused_build_args, vec!["NOPE".to_string()]);
        assert_eq!(
            ev.proxy_env,
            vec![("HTTP_PROXY".to_string(), "http://p".to_string())]
        );
    }

    #[test]
    fn copy_from_with_a_variable_is_rejected() {
        let err = eval_with(
            "ARG X=a\nFROM scratch AS a\nFROM scratch\nCOPY --from=$X / /\n",
            &[],
            None,
        )
        .unwrap_err();
        assert_eq!(err.location(), (4, 1));
        assert!(err.to_string().contains("not supported for --from"));
    }

    #[test]
    fn stopsignal_is_checked_after_expansion() {
        assert!(eval_with("FROM scratch\nARG S=NOTASIG\nSTOPSIGNAL $S\n", &[], None).is_err());
        eval("FROM scratch\nARG S=SIGKILL\nSTOPSIGNAL $S\n", &[]);
    }
}
