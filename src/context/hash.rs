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

/// The first bytes of an encoded stat cache ([`encode_cache`]).
pub const CACHE_VERSION: &[u8] = b"kiln-stat-v1\n";

/// Bytes per cached file besides its path: path length (u32), dev, inode,
/// size, mtime, ctime (u64 or i64 each), mode (u32), blake3 (32).
const RECORD: usize = 4 + 5 * 8 + 4 + 32;

/// What a stat cache (as [`encode_cache`] wrote it) knows of a walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// `hashes[i]`: the cached blake3 of `entries[i]`, when its stat key is
    /// unchanged.
    pub hashes: Vec<Option<[u8; 32]>>,
    /// How many files the cache listed (0 if it did not decode).
    pub listed: usize,
    /// How many of those were used.
    pub used: usize,
}

/// Joins an encoded stat cache with a walk's entries. Both are sorted by
/// path bytes below the context root, so one merge pass pairs them: an
/// entry whose cached [`StatKey`] is unchanged keeps the cached hash. A
/// cache that does not decode is ignored (it is only a cache).
pub fn join_cache(entries: &[Entry], cache: &[u8]) -> Known {
    let nothing = || Known {
        hashes: vec![None; entries.len()],
        ..Known::default()
    };
    let mut known = nothing();
    let Some(records) = cache.strip_prefix(CACHE_VERSION) else {
        return known;
    };
    let mut rest = records;
    let mut next = 0;
    let mut listed = 0;
    let mut used = 0;
    while !rest.is_empty() {
        let Some((rel, key, hash, tail)) = decode_record(rest) else {
            return nothing();
        };
        rest = tail;
        listed += 1;
        while let Some(entry) = entries.get(next) {
            match entry.path_bytes().cmp(rel) {
                std::cmp::Ordering::Less => next += 1,
                std::cmp::Ordering::Greater => break,
                std::cmp::Ordering::Equal => {
                    if entry.kind == EntryKind::File && StatKey::of(entry) == key {
                        known.hashes[next] = Some(*hash);
                        used += 1;
                    }
                    next += 1;
                    break;
                }
            }
        }
    }
    known.listed = listed;
    known.used = used;
    known
}

/// `blake3:<hex>` without intermediate allocations (a warm plan of a large
/// context makes one per file).
fn hash_text(hash: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(7 + 64);
    text.push_str("blake3:");
    for byte in hash {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 15)]));
    }
    text
}

/// One decoded cache record: path, stat key, hash, and the bytes after it.
type Record<'a> = (&'a [u8], StatKey, &'a [u8; 32], &'a [u8]);

fn decode_record(bytes: &[u8]) -> Option<Record<'_>> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rel = bytes.get(4..4 + len)?;
    let fixed = bytes.get(4 + len..len + RECORD)?;
    let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
    let key = StatKey {
        dev: u64_at(0),
        inode: u64_at(8),
        size: u64_at(16),
        mtime_ns: i128::from(u64_at(24).cast_signed()),
        ctime_ns: i128::from(u64_at(32).cast_signed()),
        mode: u32::from_le_bytes(fixed[40..44].try_into().expect("4 bytes")),
    };
    let hash = fixed[44..76].try_into().expect("32 bytes");
    Some((rel, key, hash, &bytes[len + RECORD..]))
}

/// Encodes the stat cache of a hashed walk: every regular file of
/// `entries` with its hash from `files` (both as [`hash`] gave them).
/// Returns the bytes and how many files they list.
///
/// A file changed less than a second before `walk_started_ns` (Unix
/// nanoseconds, read before the walk) is left out. File timestamps come
/// from a coarse clock (one tick is up to 10 ms), so a file changed again
/// within the tick in which kiln read it keeps its ctime; only a file whose
/// last change is well before the walk can be trusted by its stat fields
/// (git's "racily clean" entries, the same problem).
pub fn encode_cache(
    entries: &[Entry],
    files: &[ContextFile],
    walk_started_ns: i128,
) -> (Vec<u8>, u64) {
    let cutoff = walk_started_ns - 1_000_000_000;
    let mut out = Vec::with_capacity(CACHE_VERSION.len() + entries.len() * (RECORD + 24));
    out.extend_from_slice(CACHE_VERSION);
    let mut count = 0;
    for (entry, file) in entries.iter().zip(files) {
        let key = StatKey::of(entry);
        if entry.kind != EntryKind::File || key.ctime_ns >= cutoff || key.mtime_ns >= cutoff {
            continue;
        }
        let Some(hash) = file
            .hash
            .strip_prefix("blake3:")
            .and_then(|h| <[u8; 32]>::try_from(hex::decode(h).ok()?).ok())
        else {
            continue;
        };
        let (Ok(len), Ok(mtime), Ok(ctime)) = (
            u32::try_from(entry.path_bytes().len()),
            i64::try_from(key.mtime_ns),
            i64::try_from(key.ctime_ns),
        ) else {
            continue;
        };
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(entry.path_bytes());
        for v in [
            key.dev,
            key.inode,
            key.size,
            mtime.cast_unsigned(),
            ctime.cast_unsigned(),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&key.mode.to_le_bytes());
        out.extend_from_slice(&hash);
        count += 1;
    }
    (out, count)
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
/// read. `known[i]`, when present, is the hash of `entries[i]` vouched for
/// by the stat cache (see [`join_cache`]); such a file is not read.
pub fn hash(
    root: &Path,
    entries: &[Entry],
    mut known: Vec<Option<[u8; 32]>>,
    modes: Modes,
) -> Result<(Vec<ContextFile>, Vec<Fresh>), HashError> {
    known.resize(entries.len(), None);
    let mut files: Vec<ContextFile> = entries
        .par_iter()
        .zip(&known)
        .with_min_len(256)
        .map(|(entry, known)| {
            let path = entry
                .path
                .to_str()
                .ok_or_else(|| HashError::NotUtf8 {
                    path: entry.path.clone(),
                })?
                .to_owned();
            let perm = entry.mode & 0o7777;
            let mode = match modes {
                Modes::Masked => perm & !0o022,
                Modes::Exact => perm,
            };
            let (kind, hash) = match &entry.kind {
                EntryKind::Dir => (FileKind::Dir, String::new()),
                EntryKind::Other => (FileKind::Other, String::new()),
                EntryKind::Symlink { target } => {
                    let target = target.to_str().ok_or_else(|| HashError::NotUtf8 {
                        path: entry.path.clone(),
                    })?;
                    (FileKind::Symlink, target.to_owned())
                }
                EntryKind::File => match known {
                    Some(hash) => (FileKind::File, hash_text(hash)),
                    None => (FileKind::File, hash_file(&root.join(&entry.path))?),
                },
            };
            Ok(ContextFile {
                path,
                kind,
                mode,
                hash,
            })
        })
        .collect::<Result<_, HashError>>()?;
    // The files read: regular files the cache did not vouch for.
    let fresh = entries
        .iter()
        .zip(&known)
        .zip(&files)
        .filter(|((entry, known), _)| entry.kind == EntryKind::File && known.is_none())
        .map(|((entry, _), file)| Fresh {
            path: root.join(&entry.path),
            key: StatKey::of(entry),
            hash: file.hash.clone(),
        })
        .collect();
    // A walk is already in this order (path bytes): the sort only checks.
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
        let (files, fresh) = hash(dir.path(), &entries, Vec::new(), Modes::Masked).unwrap();
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
        let (exact, _) = hash(dir.path(), &entries, Vec::new(), Modes::Exact).unwrap();
        assert_eq!(exact[0].mode, 0o664);
    }

    #[test]
    fn cached_hash_is_used_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [("a", "x"), ("b", "y"), ("c", "z")] {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let entries = walk(dir.path(), &Matcher::new(Vec::new())).unwrap();
        let (files, _) = hash(dir.path(), &entries, Vec::new(), Modes::Masked).unwrap();
        // Written "two seconds after" the walk started: all three trusted.
        let now = StatKey::of(&entries[2]).ctime_ns + 2_000_000_000;
        let (mut cache, count) = encode_cache(&entries, &files, now);
        assert_eq!(count, 3);
        // A cache from another kiln version, or cut short, is ignored.
        assert_eq!(join_cache(&entries, b"kiln-stat-v0\n").used, 0);
        assert_eq!(join_cache(&entries, &cache[..cache.len() - 1]).used, 0);
        let mut changed = entries.clone();
        changed[1].mtime.nanos ^= 1;
        let known = join_cache(&changed, &cache);
        assert_eq!((known.listed, known.used), (3, 2));
        assert!(known.hashes[1].is_none(), "b's stat key changed");
        // Lie in the cache about a's content: the lie is used unread.
        let at = cache.len() - 2 * (RECORD + 1) - 32;
        cache[at..at + 32].copy_from_slice(&[7; 32]);
        let known = join_cache(&changed, &cache);
        let (files, fresh) = hash(dir.path(), &changed, known.hashes, Modes::Masked).unwrap();
        assert_eq!(files[0].hash, format!("blake3:{}", hex::encode([7; 32])));
        assert_eq!(
            files[2].hash,
            format!("blake3:{}", blake3::hash(b"z").to_hex())
        );
        assert_eq!(fresh.len(), 1, "only b is read");
    }

    #[test]
    fn recently_changed_files_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        let entries = walk(dir.path(), &Matcher::new(Vec::new())).unwrap();
        let (files, _) = hash(dir.path(), &entries, Vec::new(), Modes::Masked).unwrap();
        let changed = StatKey::of(&entries[0]).ctime_ns;
        assert_eq!(encode_cache(&entries, &files, changed + 500_000_000).1, 0);
        assert_eq!(encode_cache(&entries, &files, changed + 1_500_000_000).1, 1);
    }
}
