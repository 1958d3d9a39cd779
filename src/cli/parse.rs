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
            writeln!(
                out,
                "{:>7}  {}{origin}",
                step.instruction.span().start,
                describe(&step.instruction)
            )?;
        }
    }
    Ok(())
}

/// An expanded instruction written back as Dockerfile text (values quoted
/// as JSON strings where they could hold spaces).
fn describe(inst: &Instruction) -> String {
    use crate::dockerfile::instruction::{CommandForm, Healthcheck, OnbuildTrigger};
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let form = |c: &CommandForm| match c {
        CommandForm::Shell(text) => text.clone(),
        CommandForm::Exec(argv) => serde_json::to_string(argv).unwrap_or_default(),
    };
    let pairs = |p: &[crate::dockerfile::instruction::KeyValue]| {
        p.iter()
            .map(|kv| format!("{}={}", kv.key, q(&kv.value)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let opt = |name: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!("--{name}={v} "))
            .unwrap_or_default()
    };
    match inst {
        Instruction::From(f) => format!("FROM {}", f.image),
        Instruction::Arg(a) => {
            let defs: Vec<String> = a
                .args
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={}", d.name, q(v)),
                    None => format!("{} (unset)", d.name),
                })
                .collect();
            format!("ARG {}", defs.join(" "))
        }
        Instruction::Env(e) => format!("ENV {}", pairs(&e.pairs)),
        Instruction::Label(l) => format!("LABEL {}", pairs(&l.pairs)),
        Instruction::Maintainer(m) => format!("MAINTAINER {}", m.name),
        Instruction::Workdir(w) => format!("WORKDIR {}", w.path),
        Instruction::User(u) => format!("USER {}", u.user),
        Instruction::Run(r) => {
            let mounts: String = r
                .mounts
                .iter()
                .map(|m| format!("--mount={} ", m.text))
                .collect();
            format!("RUN {mounts}{}", form(&r.command))
        }
        Instruction::Cmd(c) => format!("CMD {}", form(&c.command)),
        Instruction::Entrypoint(e) => format!("ENTRYPOINT {}", form(&e.command)),
        Instruction::Shell(s) => format!(
            "SHELL {}",
            serde_json::to_string(&s.shell).unwrap_or_default()
        ),
        Instruction::Expose(e) => format!("EXPOSE {}", e.ports.join(" ")),
        Instruction::Volume(v) => format!(
            "VOLUME {}",
            serde_json::to_string(&v.paths).unwrap_or_default()
        ),
        Instruction::StopSignal(s) => format!("STOPSIGNAL {}", s.signal),
        Instruction::Healthcheck(h) => match &h.check {
            Healthcheck::None => "HEALTHCHECK NONE".to_string(),
            Healthcheck::Cmd(c) => format!("HEALTHCHECK CMD {}", form(&c.command)),
        },
        Instruction::Copy(c) => format!(
            "COPY {}{}{}{}{}",
            opt("from", &c.from),
            opt("chown", &c.chown),
            opt("chmod", &c.chmod),
            c.sources
                .iter()
                .chain(c.heredocs.iter().map(|h| &h.name))
                .map(|s| format!("{s} "))
                .collect::<String>(),
            c.dest
        ),
        Instruction::Add(a) => format!(
            "ADD {}{}{}{}{}",
            opt("chown", &a.chown),
            opt("chmod", &a.chmod),
            opt("checksum", &a.checksum),
            a.sources
                .iter()
                .chain(a.heredocs.iter().map(|h| &h.name))
                .map(|s| format!("{s} "))
                .collect::<String>(),
            a.dest
        ),
        Instruction::Onbuild(o) => match &o.trigger {
            OnbuildTrigger::Parsed(_) | OnbuildTrigger::Invalid { .. } => {
                format!("ONBUILD {}", o.expression)
            }
        },
    }
}
