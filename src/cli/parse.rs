//! `kiln parse`: the instruction list as kiln reads it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::FileError;
use crate::dockerfile::ast::{Directives, Heredoc, Warning};
use crate::dockerfile::stage::{self, Base, Evaluation};
use crate::dockerfile::{self, Instruction, Span, parser};

/// Arguments of `kiln parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile (`-` reads standard input).
    #[arg(
        short = 'f',
        long = "file",
        default_value = "Dockerfile",
        value_name = "FILE"
    )]
    pub file: PathBuf,
    /// Print directives and instructions (keyword, flags, arguments,
    /// heredocs, source lines, typed form) as JSON.
    #[arg(long, conflicts_with = "dump")]
    pub json: bool,
    /// Evaluate the stages for a target: ARG/ENV scoping and expansion, the
    /// stage graph, and the stages `--target` needs (others are left out).
    #[arg(long, conflicts_with = "dump")]
    pub stages: bool,
    /// With `--stages`: the stage to build (default: the last).
    #[arg(long, value_name = "STAGE", requires = "stages")]
    pub target: Option<String>,
    /// With `--stages`: a build argument, `KEY=VALUE` (or `KEY` to take it
    /// from the environment, as docker build does).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "stages")]
    pub build_args: Vec<String>,
    /// Print BuildKit's s-expression dump of the syntax tree (the parser
    /// alone: instruction-level checks are skipped, as in BuildKit's tests).
    #[arg(long)]
    pub dump: bool,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    directives: &'a Directives,
    instructions: Vec<JsonInstruction<'a>>,
    warnings: &'a [Warning],
}

#[derive(Serialize)]
struct JsonInstruction<'a> {
    keyword: &'a str,
    flags: &'a [String],
    args: &'a [String],
    json: bool,
    heredocs: &'a [Heredoc],
    lines: Span,
    instruction: &'a Instruction,
}

pub(super) fn run(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    let bytes = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("failed to read the Dockerfile from standard input")?;
        buf
    } else {
        std::fs::read(&args.file)
            .with_context(|| format!("failed to read {}", args.file.display()))?
    };
    if args.dump {
        // The dump is the syntax tree alone, as BuildKit's parser tests see
        // it: instruction-level checks (flags, arity) do not apply.
        let ast = parser::parse(&bytes).map_err(|e| FileError::new(&args.file, e))?;
        warn(&args.file, &ast.warnings)?;
        std::io::stdout().lock().write_all(ast.dump().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let parsed = dockerfile::parse(&bytes).map_err(|e| FileError::new(&args.file, e))?;
    warn(&args.file, &parsed.ast.warnings)?;
    let mut out = std::io::stdout().lock();
    if args.stages {
        let options = stage::Options {
            build_args: super::build_args(&args.build_args)?,
            target: args.target.clone(),
            ..stage::Options::default()
        };
        let evaluation = stage::evaluate(&parsed, &options, &stage::UnknownBases)
            .map_err(|e| FileError::new(&args.file, e))?;
        warn(&args.file, &evaluation.warnings)?;
        if args.json {
            serde_json::to_writer_pretty(&mut out, &evaluation)?;
            writeln!(out)?;
        } else {
            print_stages(&mut out, &evaluation)?;
        }
        if !evaluation.unused_build_args.is_empty() {
            writeln!(
                std::io::stderr(),
                "warning: build arguments not consumed by any stage: {}",
                evaluation.unused_build_args.join(", ")
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        let doc = JsonOutput {
            directives: &parsed.ast.directives,
            instructions: parsed
                .ast
                .nodes
                .iter()
                .zip(&parsed.instructions)
                .map(|(node, instruction)| JsonInstruction {
                    keyword: &node.keyword,
                    flags: &node.flags,
                    args: &node.args,
                    json: node.json,
                    heredocs: &node.heredocs,
                    lines: node.span,
                    instruction,
                })
                .collect(),
            warnings: &parsed.ast.warnings,
        };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        for node in &parsed.ast.nodes {
            let lines = if node.span.start == node.span.end {
                node.span.start.to_string()
            } else {
                format!("{}-{}", node.span.start, node.span.end)
            };
            writeln!(out, "{lines:>7}  {}", node.original.trim())?;
            for doc in &node.heredocs {
                writeln!(
                    out,
                    "{:>7}  <<{} ({} lines)",
                    "",
                    doc.name,
                    doc.content.lines().count()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints parser warnings as `FILE:LINE: warning: message (Rule)`.
fn warn(file: &std::path::Path, warnings: &[Warning]) -> std::io::Result<()> {
    let mut stderr = std::io::stderr().lock();
    for warning in warnings {
        writeln!(
            stderr,
            "{}:{}: warning: {} ({})",
            file.display(),
            warning.span.start,
            warning.message,
            warning.rule
        )?;
    }
    Ok(())
}

/// One block per stage: its base, then each step with its line and the
/// instruction as expanded.
fn print_stages(out: &mut impl Write, evaluation: &Evaluation) -> std::io::Result<()> {
    for stage in &evaluation.stages {
        let name = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", stage.index));
        let base = match &stage.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(reference) => reference.clone(),
            Base::Stage(i) => {
                let parent = evaluation.stages.iter().find(|s| s.index == *i);
                format!(
                    "stage {}",
                    parent
                        .and_then(|s| s.name.clone())
                        .unwrap_or_else(|| format!("#{i}"))
                )
            }
        };
        let target = if stage.index == evaluation.target {
            " (target)"
        } else {
            ""
        };
        writeln!(
            out,
            "stage {name}{target}: FROM {base}  [line {}]",
            stage.span.start
        )?;
        for step in &stage.steps {
            let origin = if step.trigger {
                " (ONBUILD trigger)"
            } else {
                ""
            };
            let text = serde_json::to_string(&step.instruction).unwrap_or_default();
            writeln!(
                out,
                "{:>7}  {}{origin}",
                step.instruction.span().start,
                text
            )?;
        }
    }
    Ok(())
}
