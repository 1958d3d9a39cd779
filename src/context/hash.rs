//! Content hashes of the context files a build may read, in parallel
//! (rayon), with a stat cache: a file whose (device, inode, size, mtime,
//! ctime, mode) are unchanged since it was last hashed keeps its hash
//! without being read again (the stat cache lives in the store).
//!
//! Modes enter the plan masked with 022 (DESIGN.md decision 2) unless exact
//! modes are asked for, so a checkout made under umask 002 plans the same as
//! one made under 022.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Entry, EntryKind};
use crate::plan::{ContextFile, FileKind};

/// What identifies a file's state for the stat cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub inode: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds.
    pub mtime_ns: i128,
    /// `st_ctime` in nanoseconds.
    pub ctime_ns: i128,
    /// `st_mode`.
    pub mode: u32,
}

impl StatKey {
    /// The key of a walked entry.
    pub fn of(entry: &Entry) -> Self {
        let ns = |t: super::Timestamp| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
        StatKey {
            dev: entry.dev,
            inode: entry.inode,
            size: entry.size,
            mtime_ns: ns(entry.mtime),
            ctime_ns: ns(entry.ctime),
            mode: entry.mode,
        }
    }
}

/// A previously computed hash for a path, if its stat key still matches.
pub trait StatCache: Sync {
    /// The cached `blake3:<hex>` of `path` (absolute) in state `key`.
    fn lookup(&self, path: &Path, key: &StatKey) -> Option<String>;
}

/// No cache: every file is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl StatCache for NoCache {
    fn lookup(&self, _path: &Path, _key: &StatKey) -> Option<String> {
        None
    }
}

/// A file that had to be read, for the caller to put into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// Absolute path.
    pub path: PathBuf,
    /// Its state when hashed.
    pub key: StatKey,
    /// `blake3:<hex>`.
    pub hash: String,
}

/// A context file could not be read or is not representable.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Reading the file failed.
    #[error("failed to read context file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// kiln keeps context paths as UTF-8 text.
    #[error("context path {path} is not valid UTF-8")]
    NotUtf8 {
        /// The path.
        path: PathBuf,
    },
}

/// How modes enter the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Modes {
    /// Permission bits masked with 022 (the default).
    #[default]
    Masked,
    /// Permission bits exactly as on disk.
    Exact,
}

/// Hashes every regular file of `entries` (a walk of `root`) and returns the
/// plan's view of the context, sorted by path, plus the files that had to be
/// read.
pub fn hash(
    root: &Path,
    entries: &[Entry],
    cache: &dyn StatCache,
    modes: Modes,
) -> Result<(Vec<ContextFile>, Vec<Fresh>), HashError> {
    let results: Vec<Result<(ContextFile, Option<Fresh>), HashError>> = entries
        .par_iter()
        .map(|entry| {
            let path = entry
                .path
                .to_str()
                .ok_or_else(|| HashError::NotUtf8 {
                    path: entry.path.clone(),
                })?
                .to_string();
            let perm = entry.mode & 0o7777;
            let mode = match modes {
                Modes::Masked => perm & !0o022,
                Modes::Exact => perm,
            };
            let (kind, hash, fresh) = match &entry.kind {
                EntryKind::Dir => (FileKind::Dir, String::new(), None),
                EntryKind::Other => (FileKind::Other, String::new(), None),
                EntryKind::Symlink { target } => {
                    let target = target.to_str().ok_or_else(|| HashError::NotUtf8 {
                        path: entry.path.clone(),
                    })?;
                    (FileKind::Symlink, target.to_string(), None)
                }
                EntryKind::File => {
                    let full = root.join(&entry.path);
                    let key = StatKey::of(entry);
                    match cache.lookup(&full, &key) {
                        Some(hash) => (FileKind::File, hash, None),
                        None => {
                            let hash = hash_file(&full)?;
                            let fresh = Fresh {
                                path: full,
                                key,
                                hash: hash.clone(),
                            };
                            (FileKind::File, hash, Some(fresh))
                        }
                    }
                }
            };
            Ok((
                ContextFile {
                    path,
                    kind,
                    mode,
                    hash,
                },
                fresh,
            ))
        })
        .collect();
    let mut files = Vec::with_capacity(results.len());
    let mut fresh = Vec::new();
    for result in results {
        let (file, new) = result?;
        files.push(file);
        fresh.extend(new);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, fresh))
}

/// `blake3:<hex>` of a file's content, read in large blocks.
pub fn hash_file(path: &Path) -> Result<String, HashError> {
    let read_err = |source| HashError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = blake3::Hasher::new();
    let len = file.metadata().map_err(read_err)?.len();
    if len >= 1 << 20 {
        // Large files: memory-mapped and hashed on all cores.
        hasher.update_mmap_rayon(path).map_err(read_err)?;
    } else {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::walk;
    use crate::dockerfile::dockerignore::Matcher;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hashes_files_and_masks_modes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o664))
            .unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("l")).unwrap();
        let entries = walk(dir.path(), &Matcher::new(Vec::new())).unwrap();
        let (files, fresh) = hash(dir.path(), &entries, &NoCache, Modes::Masked).unwrap();
        assert_eq!(files[0].path, "a");
        assert_eq!(
            files[0].hash,
            format!("blake3:{}", blake3::hash(b"hello").to_hex())
        );
        assert_eq!(files[0].mode, 0o644);
        assert_eq!(files[1].kind, FileKind::Dir);
        assert_eq!(
            (files[2].kind, files[2].hash.as_str()),
            (FileKind::Symlink, "a")
        );
        assert_eq!(fresh.len(), 1);
        let (exact, _) = hash(dir.path(), &entries, &NoCache, Modes::Exact).unwrap();
        assert_eq!(exact[0].mode, 0o664);
    }

    #[test]
    fn cached_hash_is_used_without_reading() {
        struct Always;
        impl StatCache for Always {
            fn lookup(&self, _p: &Path, _k: &StatKey) -> Option<String> {
                Some("blake3:cached".into())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        let entries = walk(dir.path(), &Matcher::new(Vec::new())).unwrap();
        let (files, fresh) = hash(dir.path(), &entries, &Always, Modes::Masked).unwrap();
        assert_eq!(files[0].hash, "blake3:cached");
        assert!(fresh.is_empty());
    }
}
