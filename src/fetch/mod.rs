//! Fetch steps and kiln.lock (DESIGN.md, Vocabulary: fetch step).
//!
//! What it owns: the lock file ([`lock`]), the one HTTP client of fetch
//! steps ([`http`]), base image resolution with lock pins first
//! ([`LockedResolver`]), and the GC roots that keep what a lock file pins
//! ([`sync_roots`]). Which steps are fetch steps, and what their
//! derivations cover, is the plan's (pure) business: [`crate::plan::fetch`].
//! Running them is the build's: `build::fetch`.
//!
//! Invariants: nothing here opens a socket except [`http::Client`], and
//! only when a build realizes an `ADD <url>` step that is not in the store
//! (never under `--offline`); a lock file is only written by `kiln lock`,
//! whole, atomically.

pub mod http;
pub mod lock;

use std::path::{Path, PathBuf};

pub use lock::{ImagePin, Lockfile, PlatformPin};

use crate::plan::Resolver;
use crate::store::{RootTarget, Store, StoreError};

/// Everything that can go wrong with lock files and downloads.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The lock file could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock file is not what kiln writes.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The lock file comes from a newer kiln.
    #[error(
        "{} is lock file version {found}, newer than this kiln reads (up to {supported})",
        path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// What this kiln reads.
        supported: i64,
    },
    /// The lock file pins a fetch step of a stage the Dockerfile lost.
    #[error("{} pins a fetch step of stage `{stage}`, which the Dockerfile no longer has (its stages: {known})", path.display())]
    UnknownStage {
        /// The file.
        path: PathBuf,
        /// The stage it names.
        stage: String,
        /// The Dockerfile's stages.
        known: String,
    },
    /// A download failed.
    #[error("failed to download {url}: {message}")]
    Download {
        /// What was fetched.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// The store failed while adding roots.
    #[error("failed to record the lock file's GC roots")]
    Store(#[from] StoreError),
}

impl FetchError {
    /// A `hint:` line for the CLI, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            FetchError::TooNew { .. } => {
                Some("upgrade kiln, or delete the file and run `kiln lock`".to_owned())
            }
            FetchError::UnknownStage { .. } | FetchError::Malformed { .. } => {
                Some("run `kiln lock` to rewrite it from the Dockerfile".to_owned())
            }
            _ => None,
        }
    }
}

/// Resolves image references with the lock file's pins first, then
/// `inner` (local images, digests, and registries when the build may use
/// the network). A pinned reference never reaches `inner`, so a tag that
/// moved does not move the build.
pub struct LockedResolver<'a> {
    /// The lock file, if there is one.
    pub lock: Option<&'a Lockfile>,
    /// What resolves the rest.
    pub inner: &'a dyn Resolver,
    /// `--offline`: a pinned image the store lacks still resolves to its
    /// pin, so that the build can list everything it lacks at once.
    pub offline: bool,
}

impl Resolver for LockedResolver<'_> {
    fn resolve(&self, reference: &str) -> Result<String, String> {
        if let Some(pin) = self.lock.and_then(|l| l.image(reference)) {
            // The pinned manifest, through the inner resolver so that a
            // store without it pulls it by digest (or, offline, says so).
            let name = reference.split_once('@').map_or(reference, |(n, _)| n);
            let slash = name.rfind('/').map_or(0, |i| i + 1);
            let name = match name[slash..].rfind(':') {
                Some(i) => &name[..slash + i],
                None => name,
            };
            return match self.inner.resolve(&format!("{name}@{}", pin.manifest())) {
                Err(_) if self.offline => Ok(pin.manifest().to_string()),
                other => other,
            };
        }
        self.inner.resolve(reference)
    }
}

/// The prefix of the GC roots that keep what the lock file at `path`
/// pins (its canonical path, so two checkouts keep their own).
pub fn root_prefix(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("kiln.lock:{}#", canonical.display())
}

/// Adds the GC roots of the lock file at `path` for `targets` (named
/// `<prefix><what>`, each if recorded in the store); with `exact`, removes
/// the prefix's others too (when `targets` cover the whole lock file). gc
/// then keeps every pinned base image and fetch output, as Nix keeps a
/// `result` link's closure.
pub fn sync_roots(
    store: &Store,
    path: &Path,
    targets: &[(String, RootTarget)],
    exact: bool,
) -> Result<(), FetchError> {
    let prefix = root_prefix(path);
    let wanted: Vec<String> = targets
        .iter()
        .map(|(what, _)| format!("{prefix}{what}"))
        .collect();
    if exact {
        for root in store.roots()? {
            if root.name.starts_with(&prefix) && !wanted.contains(&root.name) {
                store.remove_root(&root.name)?;
            }
        }
    }
    for ((_, target), name) in targets.iter().zip(&wanted) {
        let recorded = match target {
            RootTarget::Blob(d) => store.blob_path(d)?.is_some(),
            RootTarget::Derivation(h) => store.output(h)?.is_some(),
            RootTarget::Object(h) => store.object_path(h)?.is_some(),
            RootTarget::Tree(k) => store.tree_path(k)?.is_some(),
        };
        if recorded {
            store.add_root(name, target)?;
        }
    }
    Ok(())
}

/// Removes the roots of lock files that no longer exist (what `kiln store
/// gc` does first, as Nix drops indirect roots whose link is gone).
/// Returns the lock files whose roots went.
pub fn prune_roots(store: &Store) -> Result<Vec<PathBuf>, FetchError> {
    let mut gone = Vec::new();
    for root in store.roots()? {
        let Some(rest) = root.name.strip_prefix("kiln.lock:") else {
            continue;
        };
        let Some(end) = ["#image:", "#fetch:"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
        else {
            continue;
        };
        let path = PathBuf::from(&rest[..end]);
        if !path.exists() {
            store.remove_root(&root.name)?;
            if !gone.contains(&path) {
                gone.push(path);
            }
        }
    }
    Ok(gone)
}
