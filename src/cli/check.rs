//! `kiln build --check`: after the build, every step is built again over
//! its stored inputs and compared with its stored output (see
//! [`crate::build::check`]). The report goes to stderr with the progress;
//! stdout still ends with the image digest. Exit 1 when a step is not
//! reproducible and what differs can reach the image (its layer is in the
//! image, or a later step reads a changed path); a step of a stage the
//! image only copies other paths from is reported, and does not fail. With `--progress json`, each step's result is one JSON
//! line (`{"event":"check",...}`) instead.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::diff::{Paint, render_paths};
use super::plan::Planned;
use crate::build::{self, Built, Event, Reach, StepCheck};
use crate::store::Store;

#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
fn progress(json: bool, event: &Event) {
    if let Event::Step {
        stage,
        line,
        keyword,
        derivation,
        seconds,
        ..
    } = event
    {
        if json {
            eprintln!(
                "{}",
                serde_json::json!({"event": "rebuilt", "stage": stage, "line": line,
                    "instruction": keyword, "derivation": derivation.to_string(),
                    "seconds": seconds})
            );
        } else {
            eprintln!("  {stage} line {line} {keyword} rebuilt {seconds:.2}s");
        }
    }
}

fn step_name(planned: &Planned, check: &StepCheck) -> String {
    planned
        .plan
        .derivations()
        .find(|d| d.hash == check.derivation)
        .map_or_else(|| check.keyword.to_owned(), |d| d.name.clone())
}

pub(super) fn run(
    store: &Store,
    planned: &Planned,
    options: &build::Options,
    file: &Path,
    first: &Built,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let steps = planned
        .plan
        .stages
        .iter()
        .flat_map(|s| &s.steps)
        .filter(|s| s.derivation.is_some())
        .count();
    #[expect(clippy::print_stderr, reason = "cli prints")]
    if !json {
        eprintln!("check: building {steps} steps again over their stored inputs");
    }
    let checked = build::build(store, &planned.evaluation, &planned.plan, options, &|e| {
        progress(json, &e)
    })
    .map_err(|e| match e {
        build::BuildError::Step { line, message } if line > 0 => anyhow::Error::new(
            super::FileError::new(file, crate::dockerfile::ParseError::at(line, message)),
        ),
        other => anyhow::Error::new(other),
    })?;
    let paint = Paint::new("never");
    let mut err = std::io::stderr().lock();
    let bad: Vec<&StepCheck> = checked
        .checks
        .iter()
        .filter(|c| !c.reproducible())
        .collect();
    if json {
        for c in &checked.checks {
            let mut line = serde_json::to_value(c)?;
            line["event"] = "check".into();
            line["name"] = step_name(planned, c).into();
            line["reproducible"] = c.reproducible().into();
            if !c.reproducible() {
                line["reaches"] = serde_json::to_value(build::check::reach(
                    &planned.evaluation,
                    &planned.plan,
                    c,
                ))?;
            }
            writeln!(err, "{line}")?;
        }
        drop(err);
        writeln!(std::io::stdout().lock(), "{}", first.manifest)?;
        let failing = bad
            .iter()
            .any(|c| build::check::reach(&planned.evaluation, &planned.plan, c) != Reach::Unread);
        return Ok(ExitCode::from(u8::from(failing)));
    }
    let mut failing = Vec::new();
    let mut outside = Vec::new();
    for c in &bad {
        writeln!(
            err,
            "check: {}:{} {} is not reproducible (stage {}, derivation {})",
            file.display(),
            c.line,
            step_name(planned, c),
            c.stage,
            c.derivation
        )?;
        let reach = build::check::reach(&planned.evaluation, &planned.plan, c);
        let what = format!("line {} ({})", c.line, c.keyword);
        match &reach {
            Reach::Image => {
                writeln!(err, "  its layer is part of the image")?;
                failing.push(what);
            }
            Reach::Read { line, source } => {
                writeln!(
                    err,
                    "  line {line} reads `{source}` from its stage: the difference can reach the image"
                )?;
                failing.push(what);
            }
            Reach::Unread => {
                writeln!(
                    err,
                    "  the image does not contain its layer, and no step copies what differs from stage {}",
                    c.stage
                )?;
                outside.push(what);
            }
        }
        let show = |d: Option<crate::digest::Sha256Digest>| {
            d.map_or_else(|| "no layer".to_owned(), |d| d.to_string())
        };
        writeln!(
            err,
            "  stored layer {}, rebuilt layer {} (A: stored, B: rebuilt)",
            show(c.stored),
            show(c.rebuilt)
        )?;
        if let Some(diff) = &c.diff {
            if diff.paths.is_empty() {
                writeln!(err, "  the same entries, written differently")?;
            }
            let label = |_: bool, _: usize| String::new();
            render_paths(&mut err, &diff.paths, &label, &paint)?;
        }
    }
    let total = checked.checks.len();
    let counts = format!("{} of {total} steps reproducible", total - bad.len());
    if bad.is_empty() {
        writeln!(err, "check: all {total} steps are reproducible")?;
    } else if failing.is_empty() {
        writeln!(
            err,
            "check: the image is reproducible; {counts}; not reproducible outside the image: {}",
            outside.join(", ")
        )?;
    } else {
        writeln!(
            err,
            "check: not reproducible: {}; {counts}",
            failing.join(", ")
        )?;
        if !outside.is_empty() {
            writeln!(
                err,
                "check: also not reproducible, outside the image: {}",
                outside.join(", ")
            )?;
        }
    }
    drop(err);
    writeln!(std::io::stdout().lock(), "{}", first.manifest)?;
    Ok(ExitCode::from(u8::from(!failing.is_empty())))
}
