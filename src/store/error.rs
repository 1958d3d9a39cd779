//! [`StoreError`]: everything the store can fail with. Each variant names
//! the operation and the path or digest it failed on; the underlying error
//! is a `#[source]`, never repeated in the message (STYLE.md §3).

use std::path::PathBuf;

use crate::digest::{Blake3Digest, Sha256Digest};

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No `--store`, `$KILN_STORE`, `$XDG_DATA_HOME` or `$HOME` to put the
    /// store in.
    #[error(
        "cannot find a place for the store: none of `--store`, `KILN_STORE`, `XDG_DATA_HOME` and `HOME` is set"
    )]
    NoRoot,
    /// The store directory (or one of its parts) cannot be written.
    #[error("the store {root} is not writable")]
    ReadOnly {
        /// The store root.
        root: PathBuf,
        /// What refused the write.
        #[source]
        source: std::io::Error,
    },
    /// A directory of the store could not be created.
    #[error("failed to create the directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A lock file could not be opened or locked.
    #[error("failed to lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store was made by a newer kiln.
    #[error(
        "the store {path} has schema version {found}, newer than the {supported} this kiln knows"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        found: i64,
        /// The newest version this binary can read.
        supported: i64,
    },
    /// An SQLite operation failed.
    #[error("failed to {action} in {path}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What kiln was doing (`record an object`, ...).
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Reading the bytes to add failed.
    #[error("failed to read the input for {path}")]
    ReadInput {
        /// The temporary file it was being copied to.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading a file of the store failed.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file of the store failed (a full disk shows up here).
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// fsync failed.
    #[error("failed to sync {path} to disk")]
    Sync {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rename into place failed.
    #[error("failed to rename {from} to {to}")]
    Rename {
        /// The temporary path.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Deleting a file or directory failed.
    #[error("failed to remove {path}")]
    Remove {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blob's bytes do not hash to the digest the caller expected.
    #[error("blob expected to be {expected} hashed to {found}")]
    BlobMismatch {
        /// The digest the caller gave.
        expected: Sha256Digest,
        /// The digest of the bytes.
        found: Sha256Digest,
    },
    /// Derivation bytes do not hash to the hash given for them.
    #[error("derivation {expected} hashed to {found}")]
    DerivationMismatch {
        /// The hash the caller gave.
        expected: Blake3Digest,
        /// The blake3 of the bytes.
        found: Blake3Digest,
    },
    /// A blob added as a manifest or index is not valid JSON of that shape.
    #[error("blob {digest} has media type {media_type} but is not a valid manifest or index")]
    InvalidManifest {
        /// The blob.
        digest: Sha256Digest,
        /// Its declared media type.
        media_type: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A tree key is not a single path component of `[A-Za-z0-9._-]`.
    #[error("invalid tree key `{key}`: use letters, digits, `.`, `_` and `-` (not `.` or `..`)")]
    InvalidTreeKey {
        /// The rejected key.
        key: String,
    },
    /// `add_tree` was given a directory outside the store's `tmp/`.
    #[error("{path} is not a directory directly inside the store's tmp dir {tmp}")]
    TreeNotInTmp {
        /// The directory given.
        path: PathBuf,
        /// The store's tmp dir.
        tmp: PathBuf,
    },
    /// A record names something the store does not hold.
    #[error("{kind} {id} is not in the store")]
    Missing {
        /// `object`, `blob`, `tree` or `derivation`.
        kind: &'static str,
        /// Its digest or key.
        id: String,
    },
}

impl StoreError {
    /// A `hint:` line for people, when there is something to suggest.
    pub fn hint(&self) -> Option<String> {
        let io = match self {
            StoreError::SchemaTooNew { .. } => {
                return Some("upgrade kiln, or point `--store` at another directory".to_string());
            }
            StoreError::ReadOnly { .. } => {
                return Some(
                    "make the store writable, or point `--store` (or `KILN_STORE`) at a writable directory"
                        .to_string(),
                );
            }
            StoreError::NoRoot => return Some("pass `--store DIR`".to_string()),
            StoreError::Write { source, .. }
            | StoreError::Sync { source, .. }
            | StoreError::CreateDir { source, .. }
            | StoreError::Rename { source, .. } => source,
            StoreError::Database { source, .. } => {
                return match source.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::DiskFull) => Some(DISK_FULL.to_string()),
                    Some(rusqlite::ErrorCode::ReadOnly) => {
                        Some("the store's database is read-only".to_string())
                    }
                    _ => None,
                };
            }
            _ => return None,
        };
        use std::io::ErrorKind;
        match (io.kind(), io.raw_os_error()) {
            (ErrorKind::StorageFull | ErrorKind::QuotaExceeded, _)
            | (_, Some(libc::ENOSPC) | Some(libc::EDQUOT)) => Some(DISK_FULL.to_string()),
            (_, _) if StoreError::is_not_writable(io) => {
                Some("the store is not writable: point `--store` at a writable directory".into())
            }
            _ => None,
        }
    }

    /// Whether the error means the store's filesystem refused a write
    /// because it is read-only or not ours.
    pub(crate) fn is_not_writable(err: &std::io::Error) -> bool {
        use std::io::ErrorKind;
        matches!(
            err.kind(),
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
        ) || matches!(
            err.raw_os_error(),
            Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
        )
    }
}

const DISK_FULL: &str = "the filesystem holding the store is full: free some space, or run `kiln store gc`; nothing already stored was lost";
