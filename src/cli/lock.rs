//! `kiln lock`: pin base images and fetch steps in kiln.lock; and the
//! pieces of `kiln build` that read it (pins required before anything
//! runs, `--offline`'s missing-input list, GC roots for what it pins).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::FileError;
use super::plan::{BuildFlags, Planned, make_plan_with, record, stage_labels};
use crate::build::fetch::{FetchMode, FetchOptions};
use crate::build::{self, BuildError};
use crate::digest::Sha256Digest;
use crate::dockerfile::{self, ParseError};
use crate::fetch::{ImagePin, Lockfile, PlatformPin};
use crate::plan::fetch::FetchState;
use crate::store::{RootTarget, Store};

/// Arguments of `kiln lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// What to lock (the same flags as `kiln build`).
    #[command(flatten)]
    pub build: BuildFlags,
    /// Refresh this entry even if its pin is still good: a stage (every
    /// fetch step in it runs again) or an image reference as written after
    /// expansion (resolved again). Repeatable.
    #[arg(long, value_name = "STAGE|REF")]
    pub update: Vec<String>,
    /// A secret for `RUN --mount=type=secret` in fetch steps:
    /// `id=ID,src=PATH` (never hashed, never in the layer).
    #[arg(long, value_name = "id=ID,src=PATH")]
    pub secret: Vec<String>,
}

/// The proxy variables fetch steps get: the `--build-arg` ones, else the
/// caller's environment (as docker's CLI passes its proxy settings).
fn proxy_env(planned: &Planned) -> Vec<(String, String)> {
    let mut env = planned.evaluation.proxy_env.clone();
    for name in crate::dockerfile::stage::PROXY_ARGS {
        if env.iter().any(|(k, _)| k == name) {
            continue;
        }
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    env
}

/// The fetch options of a build of `planned`.
pub(super) fn fetch_options(
    flags: &BuildFlags,
    planned: &Planned,
    mode: FetchMode,
) -> FetchOptions {
    FetchOptions {
        mode: if flags.offline {
            FetchMode::Offline
        } else {
            mode
        },
        proxy_env: proxy_env(planned),
    }
}

/// Fails, before anything runs, on the first fetch step without a usable
/// pin, naming its line and the command that pins it.
pub(super) fn require_pins(
    planned: &Planned,
    flags: &BuildFlags,
    file: &Path,
) -> anyhow::Result<()> {
    for stage in &planned.plan.stages {
        for step in &stage.steps {
            let Some(f) = &step.fetch else { continue };
            if matches!(f.state, FetchState::Pinned(_)) {
                continue;
            }
            let err = ParseError::at(step.span.start, build::fetch::unpinned_message(f)).with_hint(
                format!(
                    "`{}` runs the fetch steps and writes {}",
                    lock_command(flags),
                    planned.lock_path.display()
                ),
            );
            return Err(FileError::new(file, err).into());
        }
    }
    Ok(())
}

/// The `kiln lock` command line for the build `flags` describe.
fn lock_command(flags: &BuildFlags) -> String {
    let mut cmd = format!("kiln lock {}", flags.context.display());
    if let Some(f) = &flags.file {
        cmd.push_str(&format!(" -f {}", f.display()));
    }
    if let Some(t) = &flags.target {
        cmd.push_str(&format!(" --target {t}"));
    }
    for a in &flags.build_args {
        cmd.push_str(&format!(" --build-arg {a}"));
    }
    cmd
}

/// `--offline`: fails listing every input the store lacks.
pub(super) fn require_offline_inputs(
    store: &Store,
    planned: &Planned,
    file: &Path,
) -> anyhow::Result<()> {
    let missing = build::fetch::missing_inputs(store, &planned.evaluation, &planned.plan)?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(OfflineMissing {
        message: msg_for(&missing, file),
    }
    .into())
}

fn msg_for(missing: &[build::fetch::MissingInput], file: &Path) -> String {
    let mut msg = format!(
        "`--offline`: {} input{} of this build {} missing from the store:",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        if missing.len() == 1 { "is" } else { "are" }
    );
    for m in missing {
        msg.push_str(&format!("\n  {}:{}: {}", file.display(), m.line, m.what));
    }
    msg
}

/// The `--offline` error: every missing input, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OfflineMissing {
    /// The list.
    pub message: String,
}

/// A build error, located in the Dockerfile when it names a line.
pub(super) fn build_error(file: &Path, e: BuildError) -> anyhow::Error {
    match e {
        BuildError::Step { line, message } if line > 0 => {
            let mut err = ParseError::at(line, message.clone());
            if message.starts_with("RUN failed") && looks_like_network(&message) {
                err = err.with_hint(
                    "only fetch steps have network: write `RUN --network=default ...` and pin it with `kiln lock`",
                );
            }
            anyhow::Error::new(FileError::new(file, err))
        }
        BuildError::FetchMismatch(m) => {
            let hint = format!(
                "if the new output is the one you want, `kiln lock --update {}` pins it; if not, something changed upstream",
                m.stage
            );
            let message = m.to_string();
            let message = message
                .strip_prefix(&format!("line {}: ", m.line))
                .unwrap_or(&message)
                .to_owned();
            anyhow::Error::new(FileError::new(
                file,
                ParseError::at(m.line, message).with_hint(hint),
            ))
        }
        other => anyhow::Error::new(other),
    }
}

/// Whether a failed RUN's output reads like it tried the network.
fn looks_like_network(message: &str) -> bool {
    [
        "Connection refused",
        "Network is unreachable",
        "Temporary failure in name resolution",
        "Could not resolve",
        "could not resolve",
        "getaddrinfo",
        "EAI_AGAIN",
        "ENOTFOUND",
        "ENETUNREACH",
        "ECONNREFUSED",
        "bad address",
        "can't connect",
    ]
    .iter()
    .any(|w| message.contains(w))
}

/// The GC roots that keep what kiln.lock pins: each pinned image and each
/// pinned fetch step's output the plan uses. With `exact` (the plan covers
/// every stage), roots of pins no longer there go.
pub(super) fn keep_roots(store: &Store, planned: &Planned, exact: bool) -> anyhow::Result<()> {
    let Some(lock) = &planned.lock else {
        return Ok(());
    };
    let mut targets = Vec::new();
    for img in &lock.images {
        targets.push((
            format!("image:{}", img.reference),
            RootTarget::Blob(img.digest),
        ));
        if let Some(p) = &img.platform {
            targets.push((
                format!("image:{}:{}", img.reference, p.platform),
                RootTarget::Blob(p.manifest),
            ));
        }
    }
    for stage in &planned.plan.stages {
        for step in &stage.steps {
            if let (Some(f), Some(drv)) = (&step.fetch, &step.derivation)
                && matches!(f.state, FetchState::Pinned(_))
            {
                targets.push((
                    format!(
                        "fetch:{}:{}:{}",
                        f.key.stage, f.key.occurrence, f.key.instruction
                    ),
                    RootTarget::Derivation(drv.hash),
                ));
            }
        }
    }
    crate::fetch::sync_roots(store, &planned.lock_path, &targets, exact)?;
    Ok(())
}

/// The pin of a reference the plan resolved to `digest`: an index gets its
/// platform's manifest too. `index`: the index the reference named, when
/// the plan already holds the platform's manifest.
fn image_pin(
    store: &Store,
    reference: &str,
    digest: Sha256Digest,
    index: Option<Sha256Digest>,
) -> anyhow::Result<ImagePin> {
    if let Some(index) = index {
        return Ok(ImagePin {
            reference: reference.to_owned(),
            digest: index,
            platform: Some(PlatformPin {
                platform: crate::image::oci::Platform::linux_amd64().to_string(),
                manifest: digest,
            }),
        });
    }
    let media = store.blob_media_type(&digest)?;
    let platform = match media.as_deref() {
        Some(
            crate::image::oci::media_type::INDEX
            | "application/vnd.docker.distribution.manifest.list.v2+json",
        ) => {
            let path = store
                .blob_path(&digest)?
                .with_context(|| format!("index {digest} is not in the store"))?;
            let bytes = std::fs::read(&path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            let index: crate::image::oci::Index = serde_json::from_slice(&bytes)
                .with_context(|| format!("index {digest} of `{reference}` is not valid JSON"))?;
            let want = crate::image::oci::Platform::linux_amd64();
            let chosen = crate::image::layout::select_platform(&index.manifests, &want)?;
            Some(PlatformPin {
                platform: want.to_string(),
                manifest: chosen.digest,
            })
        }
        _ => None,
    };
    Ok(ImagePin {
        reference: reference.to_owned(),
        digest,
        platform,
    })
}

/// The image references a plan resolved, with their digests.
fn resolved_images(planned: &Planned) -> Vec<(String, Sha256Digest)> {
    let mut out = Vec::new();
    for (pstage, estage) in planned.plan.stages.iter().filter_map(|p| {
        planned
            .evaluation
            .stages
            .iter()
            .find(|e| e.index == p.index)
            .map(|e| (p, e))
    }) {
        if let dockerfile::stage::Base::Image(reference) = &estage.base
            && let Some(d) = pstage
                .base
                .rsplit_once('@')
                .and_then(|(_, d)| d.parse::<Sha256Digest>().ok())
        {
            out.push((reference.clone(), d));
        }
        for step in &pstage.steps {
            for (reference, digest) in &step.images {
                if let Ok(d) = digest.parse() {
                    out.push((reference.clone(), d));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The first fetch step without a pin whose stage needs no stage that has
/// one too: `(stage label, --target value)`.
fn next_unpinned(planned: &Planned) -> Option<(String, String)> {
    let unpinned = |index: usize| {
        planned.plan.stages.iter().any(|s| {
            s.index == index
                && s.steps
                    .iter()
                    .any(|st| st.fetch.as_ref().is_some_and(|f| f.pin().is_none()))
        })
    };
    let deps = |index: usize| -> Vec<usize> {
        let Some(e) = planned.evaluation.stages.iter().find(|s| s.index == index) else {
            return Vec::new();
        };
        let mut d: Vec<usize> = e.steps.iter().flat_map(|s| s.from_stages.clone()).collect();
        if let dockerfile::stage::Base::Stage(i) = e.base {
            d.push(i);
        }
        d
    };
    // Does `index` need (transitively) another stage with an unpinned step?
    fn blocked(
        index: usize,
        deps: &dyn Fn(usize) -> Vec<usize>,
        unpinned: &dyn Fn(usize) -> bool,
        seen: &mut Vec<usize>,
    ) -> bool {
        for d in deps(index) {
            if seen.contains(&d) {
                continue;
            }
            seen.push(d);
            if unpinned(d) || blocked(d, deps, unpinned, seen) {
                return true;
            }
        }
        false
    }
    planned
        .plan
        .stages
        .iter()
        .filter(|s| unpinned(s.index))
        .find(|s| !blocked(s.index, &deps, &unpinned, &mut Vec::new()))
        .map(|s| {
            (
                s.name.clone().unwrap_or_else(|| format!("#{}", s.index)),
                s.name.clone().unwrap_or_else(|| s.index.to_string()),
            )
        })
}

#[expect(clippy::print_stderr, reason = "cli is the only module that prints")]
pub(super) fn run(store_flag: Option<&Path>, args: &LockArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store::root(store_flag)?)?;
    let file = args.build.dockerfile();
    let lock_path = Lockfile::path_for(&file);
    // A malformed or newer lock file is an error here too: never rewrite
    // what this kiln cannot read.
    let old = Lockfile::load(&lock_path)?;
    let mut lock = old.clone().unwrap_or_default();
    let bytes =
        std::fs::read(&file).with_context(|| format!("failed to read {}", file.display()))?;
    let parsed = dockerfile::parse(&bytes).map_err(|e| FileError::new(&file, e))?;
    let stages = stage_labels(&parsed);
    lock.fetches.retain(|f| stages.contains(&f.key.stage));

    // `--update`: forget those pins, so they are made again.
    let first = make_plan_with(&args.build, &store, Some(lock.clone()), false)?;
    // Indexes met by any plan of this run (a reference pulled by the first
    // plan is a local image for the next ones).
    let mut indexes = first.indexes.clone();
    let references: Vec<String> = resolved_images(&first)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for u in &args.update {
        let stage = u.to_ascii_lowercase();
        let is_stage = stages.contains(&stage) || stages.contains(u);
        if !is_stage && !references.contains(u) && lock.image(u).is_none() {
            anyhow::bail!(
                "`--update {u}` names no stage of {} and no image reference it uses (stages: {})",
                file.display(),
                stages.join(", ")
            );
        }
        lock.images.retain(|i| i.reference != *u);
        lock.fetches
            .retain(|f| f.key.stage != stage && f.key.stage != *u);
    }

    drop(first);
    let mut planned;
    let mut runs = 0usize;
    loop {
        planned = make_plan_with(&args.build, &store, Some(lock.clone()), false)?;
        indexes.extend(planned.indexes.clone());
        // Images first: every reference the build resolves gets its pin.
        let mut added = false;
        for (reference, digest) in resolved_images(&planned) {
            if lock.image(&reference).is_none() {
                let index = indexes.get(&reference).copied();
                lock.images
                    .push(image_pin(&store, &reference, digest, index)?);
                eprintln!("pinned image {reference} to {digest}");
                added = true;
            }
        }
        if added {
            continue;
        }
        let Some((label, target)) = next_unpinned(&planned) else {
            break;
        };
        runs += 1;
        if runs > 1000 {
            anyhow::bail!("kiln lock did not settle after 1000 fetch steps");
        }
        let mut flags = args.build.clone();
        flags.target = Some(target);
        let sub = make_plan_with(&flags, &store, Some(lock.clone()), false)?;
        record(&store, &sub.plan)?;
        let options = build::Options {
            helper: std::env::current_exe().context("failed to find the kiln executable")?,
            context: sub.root.clone(),
            context_files: sub.files.clone(),
            source_date_epoch: i64::try_from(flags.source_date_epoch.unwrap_or(0))
                .context("--source-date-epoch is too large")?,
            secrets: super::build::secrets(&args.secret)?,
            no_cache: false,
            labels: Vec::new(),
            fetch: fetch_options(&flags, &sub, FetchMode::Lock),
            check: false,
        };
        let progress = |e: build::Event| {
            if let build::Event::Step {
                stage,
                line,
                keyword,
                cached,
                seconds,
                ..
            } = e
            {
                let what = if cached { "cached" } else { "built" };
                eprintln!("  {stage} line {line} {keyword} {what} {seconds:.2}s");
            }
        };
        match build::build(&store, &sub.evaluation, &sub.plan, &options, &progress) {
            Err(BuildError::Pinned { line, pin }) => {
                eprintln!(
                    "pinned {}:{line} ({}) to {}",
                    file.display(),
                    pin.key,
                    pin.diff_id
                );
                lock.fetches.retain(|f| f.key != pin.key);
                lock.fetches.push(*pin);
            }
            Err(e) => return Err(build_error(&file, e)),
            Ok(_) => anyhow::bail!(
                "stage `{label}` built, but its unpinned fetch step was not run (is its output stored under a stale name?)"
            ),
        }
    }

    // Entries the build no longer has: fetch steps of the stages it plans
    // that match none of their steps, and (when it plans every stage)
    // image references it no longer uses.
    let planned_stages: Vec<String> = planned
        .plan
        .stages
        .iter()
        .map(|s| s.name.clone().unwrap_or_else(|| format!("#{}", s.index)))
        .collect();
    let keys: Vec<_> = planned
        .plan
        .stages
        .iter()
        .flat_map(|s| s.steps.iter().filter_map(|st| st.fetch.as_ref()))
        .map(|f| f.key.clone())
        .collect();
    lock.fetches
        .retain(|f| !planned_stages.contains(&f.key.stage) || keys.contains(&f.key));
    if planned.plan.stages.len() == stages.len() {
        let used: Vec<String> = resolved_images(&planned)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        lock.images.retain(|i| used.contains(&i.reference));
    }
    lock.sort();
    if old.as_ref() == Some(&lock) {
        eprintln!("{} is up to date", lock_path.display());
    } else {
        lock.save(&lock_path)?;
        eprintln!(
            "wrote {} ({} image{}, {} fetch step{})",
            lock_path.display(),
            lock.images.len(),
            if lock.images.len() == 1 { "" } else { "s" },
            lock.fetches.len(),
            if lock.fetches.len() == 1 { "" } else { "s" },
        );
    }
    planned.lock = Some(lock);
    planned.lock_path = lock_path.clone();
    keep_roots(&store, &planned, planned.plan.stages.len() == stages.len())?;
    writeln!(std::io::stdout().lock(), "{}", lock_path.display())?;
    Ok(ExitCode::SUCCESS)
}
