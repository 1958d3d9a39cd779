//! How `kiln build` shows its progress on stderr: a live view with one
//! spinner per running stage on a terminal (indicatif), plain lines
//! otherwise, or one JSON object per event (`--progress=json`). Every mode
//! ends with the same summary: steps built and cached, the time, and the
//! image's size.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::build::Event;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live view (a terminal).
    Live,
    /// One line per event.
    Plain,
    /// One JSON object per line.
    Json,
}

impl Mode {
    /// `auto` is live on a terminal, plain otherwise.
    pub fn from_flag(flag: &str) -> Mode {
        match flag {
            "json" => Mode::Json,
            "plain" => Mode::Plain,
            _ if std::io::stderr().is_terminal() => Mode::Live,
            _ => Mode::Plain,
        }
    }
}

/// One finished step, for the summary.
#[derive(Debug, Clone)]
struct Done {
    name: String,
    cached: bool,
    seconds: f64,
}

#[derive(Default)]
struct State {
    /// The live view's spinner per running stage.
    bars: BTreeMap<String, ProgressBar>,
    /// Output not yet ended by a newline, per (stage, line).
    partial: BTreeMap<(String, usize), Vec<u8>>,
    /// The human name of each running step, per (stage, line).
    running: BTreeMap<(String, usize), String>,
    done: Vec<Done>,
}

/// The progress renderer; `event` may be called from any thread.
pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    started: Instant,
    state: Mutex<State>,
}

/// What the summary reports of the image.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The manifest digest.
    pub manifest: String,
    /// Compressed size of the layers.
    pub compressed: u64,
    /// Number of layers.
    pub layers: usize,
}

const SPINNER: &str = "{spinner} {prefix:.bold} {wide_msg} {elapsed:>4}";

impl Progress {
    /// A renderer in `mode`.
    pub fn new(mode: Mode) -> Progress {
        let multi = (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Progress {
            mode,
            multi,
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while rendering must not hide the build's own result.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Prints a line above the live view, or plainly.
    #[expect(clippy::print_stderr, reason = "cli prints")]
    fn line(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Shows one build event.
    pub fn event(&self, event: &Event) {
        if self.mode == Mode::Json {
            self.json(event);
            return;
        }
        let mut state = self.state();
        match event {
            Event::Stage { stage } => {
                if let Some(multi) = &self.multi {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template(SPINNER)
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(stage.clone());
                    bar.set_message("checking the cache");
                    bar.enable_steady_tick(Duration::from_millis(100));
                    state.bars.insert(stage.clone(), bar);
                } else {
                    drop(state);
                    self.line(&format!("stage {stage}"));
                }
            }
            Event::StageDone { stage } => {
                if let Some(bar) = state.bars.remove(stage) {
                    bar.finish_and_clear();
                }
            }
            Event::StepStarted { stage, line, name } => {
                state.running.insert((stage.clone(), *line), name.clone());
                if let Some(bar) = state.bars.get(stage) {
                    bar.reset_elapsed();
                    bar.set_message(format!("line {line} {}", step_text(name)));
                } else {
                    drop(state);
                    self.line(&format!("  {stage} line {line} {} ...", step_text(name)));
                }
            }
            Event::Output {
                stage, line, bytes, ..
            } => {
                let key = (stage.clone(), *line);
                let buf = state.partial.entry(key.clone()).or_default();
                buf.extend_from_slice(bytes);
                let mut lines = Vec::new();
                while let Some(end) = buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                    let text: Vec<u8> = buf.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&text[..text.len() - 1]).into_owned();
                    if !text.trim().is_empty() {
                        lines.push(text);
                    }
                }
                if let Some(bar) = state.bars.get(stage) {
                    if let Some(last) = lines.last() {
                        let name = state.running.get(&key).map_or("", |n| step_text(n));
                        bar.set_message(format!("line {line} {name} │ {}", last.trim()));
                    }
                } else {
                    drop(state);
                    for text in lines {
                        self.line(&format!("  {stage} line {line} │ {text}"));
                    }
                }
            }
            Event::Step {
                stage,
                line,
                keyword,
                derivation,
                cached,
                seconds,
            } => {
                let key = (stage.clone(), *line);
                let rest = state.partial.remove(&key).unwrap_or_default();
                let name = state
                    .running
                    .remove(&key)
                    .unwrap_or_else(|| format!("{stage}: {keyword}"));
                state.done.push(Done {
                    name: name.clone(),
                    cached: *cached,
                    seconds: *seconds,
                });
                let live = state.bars.get(stage).cloned();
                drop(state);
                let rest = String::from_utf8_lossy(&rest);
                if !rest.trim().is_empty() && live.is_none() {
                    self.line(&format!("  {stage} line {line} │ {}", rest.trim_end()));
                }
                let what = if *cached { "cached" } else { "built" };
                self.line(&format!(
                    "  {stage} line {line} {keyword} {what} {seconds:.2}s {derivation}"
                ));
                if let Some(bar) = live {
                    bar.set_message("checking the cache");
                }
            }
        }
    }

    #[expect(clippy::print_stderr, reason = "cli prints")]
    fn json(&self, event: &Event) {
        let value = match event {
            Event::Stage { stage } => serde_json::json!({"event": "stage", "stage": stage}),
            Event::StageDone { stage } => {
                serde_json::json!({"event": "stage-done", "stage": stage})
            }
            Event::StepStarted { stage, line, name } => serde_json::json!({
                "event": "step-started", "stage": stage, "line": line, "name": name}),
            Event::Output {
                stage,
                line,
                stderr,
                bytes,
            } => serde_json::json!({
                "event": "output", "stage": stage, "line": line,
                "stream": if *stderr { "stderr" } else { "stdout" },
                "text": String::from_utf8_lossy(bytes)}),
            Event::Step {
                stage,
                line,
                keyword,
                derivation,
                cached,
                seconds,
            } => {
                self.state().done.push(Done {
                    name: format!("{stage}: {keyword}"),
                    cached: *cached,
                    seconds: *seconds,
                });
                serde_json::json!({"event": "step", "stage": stage, "line": line,
                    "instruction": keyword, "derivation": derivation.to_string(),
                    "cached": cached, "seconds": seconds})
            }
        };
        eprintln!("{value}");
    }

    /// Clears the live view and prints the summary.
    #[expect(clippy::print_stderr, reason = "cli prints")]
    pub fn finish(&self, summary: Option<&Summary>) {
        let state = self.state();
        for bar in state.bars.values() {
            bar.finish_and_clear();
        }
        let built = state.done.iter().filter(|d| !d.cached).count();
        let cached = state.done.len() - built;
        let seconds = self.started.elapsed().as_secs_f64();
        if self.mode == Mode::Json {
            let image = summary.map(|s| {
                serde_json::json!({"manifest": s.manifest, "compressed": s.compressed,
                    "layers": s.layers})
            });
            eprintln!(
                "{}",
                serde_json::json!({"event": "summary", "steps": state.done.len(),
                    "built": built, "cached": cached, "seconds": seconds, "image": image})
            );
            return;
        }
        let mut text = format!(
            "{} steps: {built} built, {cached} cached, in {seconds:.2}s",
            state.done.len()
        );
        let mut slowest: Vec<&Done> = state.done.iter().filter(|d| !d.cached).collect();
        slowest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        for d in slowest.iter().take(3) {
            text.push_str(&format!("\n  {:>7.2}s {}", d.seconds, d.name));
        }
        if let Some(s) = summary {
            text.push_str(&format!(
                "\nimage {} ({} compressed, {} layer{})",
                s.manifest,
                super::human_bytes(s.compressed),
                s.layers,
                if s.layers == 1 { "" } else { "s" }
            ));
        }
        drop(state);
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }
}

/// The step part of a derivation name (`build: RUN go build` → `RUN go
/// build`).
fn step_text(name: &str) -> &str {
    name.split_once(": ").map_or(name, |(_, step)| step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_text_drops_the_stage() {
        assert_eq!(step_text("build: RUN go build"), "RUN go build");
        assert_eq!(step_text("RUN x"), "RUN x");
    }
}
