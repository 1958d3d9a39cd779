//! Fetch steps in the build: the only steps that reach the network, run as
//! fixed-output derivations (see [`crate::plan::fetch`] for what their
//! hashes cover).
//!
//! A `RUN --network=default|host` runs in the sandbox with the host's
//! network, the host's `/etc/resolv.conf` and CA bundle bind-mounted
//! read-only at `/etc/resolv.conf` and `/etc/ssl/certs/ca-certificates.crt`
//! (where Debian-based images, OpenSSL's default `cert.pem` link and so
//! Debian's node, curl, pip and apt look; an image that looks elsewhere
//! sets `SSL_CERT_FILE` or `NODE_EXTRA_CA_CERTS` itself), and the caller's
//! proxy variables (`HTTP_PROXY`, `https_proxy`, ... as given on the
//! command line or in kiln's environment). None of those are captured in
//! the layer or enter a hash. An `ADD <url>` is downloaded by kiln itself
//! ([`crate::fetch::http`]) and written like a COPY.
//!
//! Then the layer is checked against the pin before anything is stored:
//! for ADD the download's sha256 first, then the layer's diff_id. A
//! mismatch stores nothing under the step's name and fails with both
//! digests, and with the files that differ when the pinned layer is in the
//! store to compare with. Under `kiln lock` an unpinned step is run, its
//! layer stored under the derivation its real diff_id names, and the
//! build stops with [`BuildError::Pinned`] so the rest is planned over the
//! new pin. Under `--offline` nothing is fetched: a missing output is an
//! error (`kiln build --offline` lists all of them before it starts, with
//! [`missing_inputs`]).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{BuildError, Builder, StageState, error_chain, now_ms};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::dockerfile::instruction::Instruction;
use crate::dockerfile::stage::Step;
use crate::plan::fetch::{FetchState, FetchStep, LockedFetch, Pin};
use crate::plan::{Plan, PlannedStep};
use crate::sandbox;
use crate::store::{DerivationKind, Output, Store, StoreError};

/// What a fetch step that changes nothing pins: the sha256 of no bytes (it
/// has no layer, so no diff_id of its own).
pub const EMPTY_LAYER: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How fetch steps run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FetchMode {
    /// `kiln build`: every fetch step is pinned (checked before the build),
    /// a missing output is fetched and checked against its pin.
    #[default]
    Build,
    /// `kiln lock`: an unpinned fetch step runs and is pinned.
    Lock,
    /// `kiln build --offline`: nothing is fetched.
    Offline,
}

/// The inputs of fetch steps besides the plan.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Build, lock or offline.
    pub mode: FetchMode,
    /// Proxy variables for fetch steps (never hashed).
    pub proxy_env: Vec<(String, String)>,
}

/// Gives a fetch step's sandbox the host's network and the proxy
/// variables (the sandbox binds the host's resolv.conf and CA bundle
/// read-only when the network is on).
pub(super) fn open_network(spec: &mut sandbox::Spec, options: &FetchOptions) {
    spec.network = sandbox::Network::Host;
    for (k, v) in &options.proxy_env {
        if !spec.env.iter().any(|(name, _)| name == k) {
            spec.env.push((k.clone(), v.clone()));
        }
    }
}

/// A fetch step's output is not the one it is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The Dockerfile line.
    pub line: usize,
    /// The stage (its kiln.lock label).
    pub stage: String,
    /// `layer` or `downloaded content`.
    pub what: &'static str,
    /// The pin.
    pub expected: Sha256Digest,
    /// What the fetch gave.
    pub found: Sha256Digest,
    /// The paths that differ (`+` only now, `-` only pinned, `~`
    /// changed), when the pinned layer is in the store to compare with.
    pub files: Option<Vec<String>>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&mismatch_message(
            self.line,
            self.what,
            &self.expected,
            &self.found,
            &self.files,
        ))
    }
}

/// The message of [`BuildError::FetchMismatch`].
fn mismatch_message(
    line: usize,
    what: &str,
    expected: &Sha256Digest,
    found: &Sha256Digest,
    files: &Option<Vec<String>>,
) -> String {
    let mut msg = format!(
        "line {line}: the fetch step's {what} differs from its pin: expected {expected}, found {found}"
    );
    match files {
        Some(files) if !files.is_empty() => {
            msg.push_str(
                "\nfiles that differ (+ only now, - only in the pinned layer, ~ changed):",
            );
            for f in files.iter().take(40) {
                msg.push_str("\n  ");
                msg.push_str(f);
            }
            if files.len() > 40 {
                msg.push_str(&format!("\n  ... and {} more", files.len() - 40));
            }
        }
        Some(_) => {}
        None => msg
            .push_str("\n(the pinned layer is not in this store, so its files cannot be compared)"),
    }
    msg
}

/// Why an unpinned or stale fetch step cannot be built, with the command
/// that pins it.
pub fn unpinned_message(f: &FetchStep) -> String {
    match &f.state {
        FetchState::Stale { locked } => format!(
            "kiln.lock pins this fetch step ({}) for other inputs ({locked}, now {}): what it runs on changed; run `kiln lock` (or `kiln lock --update {}`) to fetch and pin it again",
            f.key, f.inputs, f.key.stage
        ),
        _ => format!(
            "fetch step {} has no pin: run `kiln lock` to fetch it and record its output in kiln.lock (or give an ADD `--checksum=sha256:...`)",
            f.key
        ),
    }
}

/// Realizes a fetch step whose output the store lacks (the caller holds
/// its derivation lock).
#[expect(clippy::too_many_arguments, reason = "one step's whole context")]
pub(super) fn step(
    b: &Builder<'_>,
    label: &str,
    state: &StageState,
    pstep: &PlannedStep,
    estep: &Step,
    f: &FetchStep,
    hash: &Blake3Digest,
    done: &BTreeMap<usize, StageState>,
) -> Result<(Output, bool), BuildError> {
    let line = pstep.span.start;
    let mode = b.options.fetch.mode;
    let pin = match (&f.state, mode) {
        (FetchState::Pinned(p), _) => Some(p.clone()),
        (_, FetchMode::Lock) => None,
        _ => {
            return Err(BuildError::Step {
                line,
                message: unpinned_message(f),
            });
        }
    };
    if mode == FetchMode::Offline {
        return Err(BuildError::Step {
            line,
            message: format!(
                "`--offline`: the output of this fetch step ({hash}) is not in the store"
            ),
        });
    }
    (b.progress)(super::Event::StepStarted {
        stage: label.to_owned(),
        line,
        name: format!("{}: {} (fetch)", f.key.stage, f.key.instruction),
    });
    let started = now_ms();
    let upper = b.store.tmp_dir()?;
    let mut log = Vec::new();
    let realized = realize(
        b,
        label,
        state,
        pstep,
        estep,
        f,
        pin.as_ref(),
        upper.path(),
        &mut log,
        done,
    )
    .map_err(|e| match e {
        BuildError::Step { .. } | BuildError::FetchMismatch(_) => e,
        other => BuildError::Step {
            line,
            message: error_chain(&other),
        },
    });
    let content = match realized {
        Ok(c) => c,
        Err(e) => {
            record_attempt(b.store, hash, started, 1, &log);
            return Err(e);
        }
    };
    let layer = b.write_layer(upper.path())?;
    let found = match &layer {
        Some(info) => info.diff_id,
        None => EMPTY_LAYER.parse().expect("a valid digest"),
    };
    if let Some(expected) = pin.as_ref().and_then(|p| p.diff_id)
        && expected != found
    {
        record_attempt(b.store, hash, started, 1, &log);
        let files = compare_with_pinned(b.store, &expected, upper.path())?;
        return Err(BuildError::FetchMismatch(Box::new(Mismatch {
            line,
            stage: f.key.stage.clone(),
            what: "layer",
            expected,
            found,
            files,
        })));
    }
    // Pinned: the output goes under the planned derivation. Being pinned
    // (`kiln lock`): under the derivation its real diff_id names.
    let name = match &pin {
        Some(_) => *hash,
        None => {
            let drv = crate::plan::fetch::fixed_output(
                &f.parent,
                &found,
                &format!("{}: {} (fixed output)", f.key.stage, f.key.instruction),
            );
            let refs: Vec<Blake3Digest> =
                f.parent.split('+').filter_map(|p| p.parse().ok()).collect();
            b.store.record_derivation(
                &drv.hash,
                &drv.bytes,
                DerivationKind::Step,
                &f.key.stage,
                &drv.name,
                &refs,
            )?;
            drv.hash
        }
    };
    let output = match b.store.output(&name)? {
        Some(existing) => existing,
        None => {
            let output = b.keep_layer(upper.path(), &name, layer)?;
            b.store.record_output(&name, &output)?
        }
    };
    record_attempt(b.store, &name, started, 0, &log);
    if pin.is_none() {
        return Err(BuildError::Pinned {
            line,
            pin: Box::new(LockedFetch {
                key: f.key.clone(),
                inputs: f.inputs,
                diff_id: found,
                content,
            }),
        });
    }
    Ok((output, false))
}

/// Records one build attempt with its log (best effort: the build's own
/// result matters more than its record).
fn record_attempt(store: &Store, hash: &Blake3Digest, started: i64, status: i32, log: &[u8]) {
    let Ok(id) = store.start_build(hash, started) else {
        return;
    };
    let log = store.add_object(&mut &log[..]).ok();
    let _ = store.finish_build(id, now_ms(), status, log.as_ref());
}

/// Runs the step into `upper`: RUN in the sandbox with the network on,
/// ADD by downloading (checked against a content pin) and copying. Returns
/// the downloaded content's sha256 for ADD.
#[expect(clippy::too_many_arguments, reason = "one step's whole context")]
fn realize(
    b: &Builder<'_>,
    label: &str,
    state: &StageState,
    pstep: &PlannedStep,
    estep: &Step,
    f: &FetchStep,
    pin: Option<&Pin>,
    upper: &Path,
    log: &mut Vec<u8>,
    done: &BTreeMap<usize, StageState>,
) -> Result<Option<Sha256Digest>, BuildError> {
    let line = pstep.span.start;
    match &estep.instruction {
        Instruction::Run(_) => {
            b.run(label, state, pstep, estep, upper, log, done)?;
            Ok(None)
        }
        Instruction::Add(_) => {
            if let Some(git) = f
                .urls
                .iter()
                .find(|u| u.split('#').next().is_some_and(|u| u.ends_with(".git")))
            {
                return Err(BuildError::Step {
                    line,
                    message: format!(
                        "`{git}` is a git source, which kiln does not fetch yet; use `RUN --network=default git clone ...` (pinned by `kiln lock`)"
                    ),
                });
            }
            let [url] = f.urls.as_slice() else {
                return Err(BuildError::Step {
                    line,
                    message: "kiln fetches one URL per ADD; split the ADD in one per URL"
                        .to_owned(),
                });
            };
            let client = crate::fetch::http::Client {
                proxy_env: b.options.fetch.proxy_env.clone(),
                ca_file: None,
            };
            let dir = b.store.tmp_dir()?;
            let file = dir.path().join("download");
            let (found, size) = client
                .download_to(url, &file)
                .map_err(|e| BuildError::Step {
                    line,
                    message: error_chain(&e),
                })?;
            log.extend_from_slice(format!("GET {url}: {size} bytes, {found}\n").as_bytes());
            if let Some(expected) = pin.and_then(|p| p.content)
                && expected != found
            {
                return Err(BuildError::FetchMismatch(Box::new(Mismatch {
                    line,
                    stage: f.key.stage.clone(),
                    what: "downloaded content",
                    expected,
                    found,
                    files: Some(vec![format!("~ {url}")]),
                })));
            }
            super::copy::copy_with(
                b,
                state,
                pstep,
                estep,
                upper,
                done,
                &[(url.clone(), PathBuf::from(&file))],
            )?;
            Ok(Some(found))
        }
        other => Err(BuildError::Step {
            line,
            message: format!("`{}` is not a fetch step", other.keyword()),
        }),
    }
}

/// The paths that differ between a fetch step's new layer dir and the
/// pinned layer's tree, if some output in the store has that layer.
fn compare_with_pinned(
    store: &Store,
    pinned: &Sha256Digest,
    found: &Path,
) -> Result<Option<Vec<String>>, BuildError> {
    let tree = match store.layer_by_diff_id(pinned)?.and_then(|l| l.tree) {
        Some(key) => store.tree_path(&key)?,
        None => {
            // A base image layer is unpacked under its diff_id.
            let key = crate::store::TreeKey::new(&pinned.to_hex())?;
            store.tree_path(&key)?
        }
    };
    let Some(tree) = tree else {
        return Ok(None);
    };
    Ok(Some(tree_diff(&tree, found)?))
}

/// One entry of a layer dir, as compared.
#[derive(PartialEq, Eq)]
struct Entry {
    kind: u32,
    mode: u32,
    owner: (u32, u32),
    size: u64,
    rdev: u64,
    /// blake3 of a file's bytes, a symlink's target.
    content: String,
}

fn entries(root: &Path) -> Result<BTreeMap<String, Entry>, BuildError> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Entry>) -> Result<(), BuildError> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(super::io_err("read", &dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(super::io_err("read", &dir))?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let path_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let host = root.join(&path_rel);
            let m = fs::symlink_metadata(&host).map_err(super::io_err("read", &host))?;
            let content = if m.is_file() {
                let bytes = fs::read(&host).map_err(super::io_err("read", &host))?;
                Blake3Digest::of(&bytes).to_string()
            } else if m.file_type().is_symlink() {
                fs::read_link(&host)
                    .map_err(super::io_err("read", &host))?
                    .to_string_lossy()
                    .into_owned()
            } else {
                String::new()
            };
            out.insert(
                path_rel.clone(),
                Entry {
                    kind: m.mode() & 0o170000,
                    mode: m.mode() & 0o7777,
                    owner: (m.uid(), m.gid()),
                    size: if m.is_file() { m.size() } else { 0 },
                    rdev: m.rdev(),
                    content,
                },
            );
            if m.is_dir() {
                walk(root, &path_rel, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

/// `+ /path` (only in `found`), `- /path` (only in `pinned`), `~ /path`
/// (type, mode, owner or content differ), sorted by path.
pub(super) fn tree_diff(pinned: &Path, found: &Path) -> Result<Vec<String>, BuildError> {
    let a = entries(pinned)?;
    let b = entries(found)?;
    let mut out = Vec::new();
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        match (a.get(p), b.get(p)) {
            (Some(_), None) => out.push(format!("- /{p}")),
            (None, Some(_)) => out.push(format!("+ /{p}")),
            (Some(x), Some(y)) if x != y => out.push(format!("~ /{p}")),
            _ => {}
        }
    }
    Ok(out)
}

/// One input a build needs that the store lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingInput {
    /// The Dockerfile line that needs it.
    pub line: usize,
    /// What it is, for people.
    pub what: String,
}

/// Everything `plan` needs from outside that the store lacks: base and
/// `--from` images (manifest, config, layers) and the outputs of fetch
/// steps. `--offline` builds only when this is empty.
pub fn missing_inputs(
    store: &Store,
    evaluation: &crate::dockerfile::stage::Evaluation,
    plan: &Plan,
) -> Result<Vec<MissingInput>, BuildError> {
    let mut out = Vec::new();
    for pstage in &plan.stages {
        let line = evaluation
            .stages
            .iter()
            .find(|s| s.index == pstage.index)
            .map_or(0, |s| s.span.start);
        let mut images: Vec<(usize, String)> = Vec::new();
        if let Some((_, digest)) = pstage.base.rsplit_once('@')
            && digest.starts_with("sha256:")
        {
            images.push((line, pstage.base.clone()));
        }
        for step in &pstage.steps {
            for (reference, digest) in &step.images {
                images.push((step.span.start, format!("{reference}@{digest}")));
            }
            if let (Some(f), Some(drv)) = (&step.fetch, &step.derivation)
                && store.output(&drv.hash)?.is_none()
            {
                out.push(MissingInput {
                    line: step.span.start,
                    what: format!("the output of fetch step {} ({})", f.key, drv.hash),
                });
            }
        }
        for (line, reference) in images {
            if let Some(what) = missing_image(store, &reference)? {
                out.push(MissingInput { line, what });
            }
        }
    }
    out.dedup();
    Ok(out)
}

/// What of the image `name@sha256:...` the store lacks, if anything.
fn missing_image(store: &Store, reference: &str) -> Result<Option<String>, BuildError> {
    let Some(digest) = reference
        .rsplit_once('@')
        .and_then(|(_, d)| d.parse::<Sha256Digest>().ok())
    else {
        return Ok(None);
    };
    if store.blob_path(&digest)?.is_none() {
        return Ok(Some(format!("image {reference} (its manifest)")));
    }
    let image = match super::read_stored_image(store, &digest) {
        Ok(i) => i,
        Err(BuildError::Store(StoreError::Read { .. }) | BuildError::Image(_)) => {
            return Ok(Some(format!("image {reference} (its config)")));
        }
        Err(e) => return Err(e),
    };
    let missing: Vec<String> = image
        .manifest
        .layers
        .iter()
        .filter(|l| store.blob_path(&l.digest).ok().flatten().is_none())
        .map(|l| l.digest.to_string())
        .collect();
    Ok((!missing.is_empty()).then(|| format!("image {reference} (layers {})", missing.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_diff_names_added_removed_and_changed_paths() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        fs::create_dir(a.path().join("d")).unwrap();
        fs::create_dir(b.path().join("d")).unwrap();
        fs::write(a.path().join("d/same"), "x").unwrap();
        fs::write(b.path().join("d/same"), "x").unwrap();
        fs::write(a.path().join("d/changed"), "1").unwrap();
        fs::write(b.path().join("d/changed"), "2").unwrap();
        fs::write(a.path().join("gone"), "").unwrap();
        fs::write(b.path().join("new"), "").unwrap();
        assert_eq!(
            tree_diff(a.path(), b.path()).unwrap(),
            vec!["~ /d/changed", "- /gone", "+ /new"]
        );
    }

    #[test]
    fn mismatch_lists_files_or_says_why_not() {
        let e = Sha256Digest::of(b"e");
        let f = Sha256Digest::of(b"f");
        let with = mismatch_message(3, "layer", &e, &f, &Some(vec!["~ /a".into()]));
        assert!(with.contains(&format!("expected {e}, found {f}")));
        assert!(with.ends_with("\n  ~ /a"), "{with}");
        let without = mismatch_message(3, "layer", &e, &f, &None);
        assert!(without.contains("not in this store"));
    }
}
