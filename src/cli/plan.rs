//! `kiln plan`: the derivation graph for a build, without building.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::FileError;
use crate::context::{self, hash as context_hash};
use crate::dockerfile::{self, ParseError, stage};
use crate::plan::{self, Plan, PlanError, Resolver};

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

/// Resolves images by digest only: `name@sha256:<hex>` (local image names
/// are looked up in the store once it holds images).
struct DigestResolver;

impl Resolver for DigestResolver {
    fn resolve(&self, reference: &str) -> Result<String, String> {
        match reference.rsplit_once('@') {
            Some((_, digest))
                if digest.len() == 71
                    && digest.starts_with("sha256:")
                    && digest[7..]
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
            {
                Ok(digest.to_string())
            }
            _ => Err("kiln needs the image by digest (`name@sha256:...`)".into()),
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
}

fn located(file: &Path, line: usize, message: String) -> FileError {
    FileError::new(file, ParseError::at(line, message))
}

/// Reads the Dockerfile and context and plans the build.
pub fn make_plan(flags: &BuildFlags, resolver: &dyn Resolver) -> anyhow::Result<Planned> {
    let file = flags.dockerfile();
    let bytes =
        std::fs::read(&file).with_context(|| format!("failed to read {}", file.display()))?;
    let parsed = dockerfile::parse(&bytes).map_err(|e| FileError::new(&file, e))?;
    let options = stage::Options {
        build_args: super::build_args(&flags.build_args)?,
        target: flags.target.clone(),
        ..stage::Options::default()
    };
    let evaluation = stage::evaluate(&parsed, &options, &stage::UnknownBases)
        .map_err(|e| FileError::new(&file, e))?;
    let matcher = context::load_ignore(&flags.context, &file)?;
    let entries = context::walk(&flags.context, &matcher)?;
    let modes = if flags.exact_modes {
        context_hash::Modes::Exact
    } else {
        context_hash::Modes::Masked
    };
    let (files, _fresh) =
        context_hash::hash(&flags.context, &entries, &context_hash::NoCache, modes)?;
    let plan = plan::plan(
        &evaluation,
        &files,
        resolver,
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
    })
}

pub(super) fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let planned = make_plan(&args.build, &DigestResolver)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &planned.plan)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
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
        writeln!(out, "stage {name}{target} {}", stage.derivation.hash)?;
        writeln!(out, "  from {}", stage.base)?;
        for step in &stage.steps {
            let hash = step.derivation.as_ref().map_or("-", |d| d.hash.as_str());
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
