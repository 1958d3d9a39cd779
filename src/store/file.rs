//! File-level steps of an insert: copy into a temp file while hashing,
//! fsync, rename into place, fsync the directory. Also the tree walks that
//! count and check unpacked layer trees.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::StoreError;

const CHUNK: usize = 256 * 1024;

/// Copies `reader` into a new temp file in `tmp`, feeding every chunk to
/// `update`. Returns the temp file (deleted when dropped) and the size.
pub(crate) fn write_hashed(
    tmp: &Path,
    reader: &mut dyn Read,
    update: &mut dyn FnMut(&[u8]),
) -> Result<(NamedTempFile, u64), StoreError> {
    let mut temp = tempfile::Builder::new()
        .prefix("add-")
        .tempfile_in(tmp)
        .map_err(|source| StoreError::Write {
            path: tmp.to_path_buf(),
            source,
        })?;
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(StoreError::ReadInput {
                    path: temp.path().to_path_buf(),
                    source,
                });
            }
        };
        update(&buf[..n]);
        temp.as_file_mut()
            .write_all(&buf[..n])
            .map_err(|source| StoreError::Write {
                path: temp.path().to_path_buf(),
                source,
            })?;
        size += n as u64;
    }
    Ok((temp, size))
}

/// Makes `temp` read-only, syncs it, renames it to `dest` (replacing any
/// unrecorded file there: the new one is known complete) and syncs `dest`'s
/// directory so the rename survives a crash.
pub(crate) fn persist(temp: NamedTempFile, dest: &Path) -> Result<(), StoreError> {
    let from = temp.path().to_path_buf();
    let write_err = |source| StoreError::Write {
        path: from.clone(),
        source,
    };
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o444))
        .map_err(write_err)?;
    temp.as_file()
        .sync_all()
        .map_err(|source| StoreError::Sync {
            path: from.clone(),
            source,
        })?;
    let dir = dest.parent().expect("store paths have a parent");
    create_dir(dir)?;
    temp.persist(dest).map_err(|e| StoreError::Rename {
        from: from.clone(),
        to: dest.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir)
}

/// `mkdir -p`, syncing the parent of a directory it creates.
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsync on a directory: makes renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

/// Syncs the filesystem holding `dir` (one `syncfs(2)` rather than an fsync
/// per file of a tree).
pub(crate) fn sync_filesystem(dir: &Path) -> Result<(), StoreError> {
    let handle = File::open(dir).map_err(|source| StoreError::Sync {
        path: dir.to_path_buf(),
        source,
    })?;
    nix::unistd::syncfs(&handle).map_err(|errno| StoreError::Sync {
        path: dir.to_path_buf(),
        source: errno.into(),
    })
}

/// `(entries, bytes of regular files)` below `dir`, symlinks not followed.
pub(crate) fn tree_stats(dir: &Path) -> Result<(u64, u64), StoreError> {
    let mut files = 0;
    let mut size = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let read_err = |source| StoreError::Read {
            path: d.clone(),
            source,
        };
        for entry in fs::read_dir(&d).map_err(read_err)? {
            let entry = entry.map_err(|source| StoreError::Read {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?;
            files += 1;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                size += meta.len();
            }
        }
    }
    Ok((files, size))
}

/// Removes a directory tree without ever leaving a partial one under its
/// name: it is first renamed to a fresh name in `tmp` (atomic), then
/// deleted there (a crash mid-delete leaves a leftover gc reclaims).
pub(crate) fn remove_dir_via(dir: &Path, tmp: &Path) -> Result<(), StoreError> {
    let trash = tmp.join(format!(
        "trash-{}-{}",
        std::process::id(),
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    fs::rename(dir, &trash).map_err(|source| StoreError::Rename {
        from: dir.to_path_buf(),
        to: trash.clone(),
        source,
    })?;
    remove_any(&trash)
}

/// Removes a file or a whole directory (making read-only dirs writable
/// first, as layer trees may hold them).
pub(crate) fn remove_any(path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Remove {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(err(e)),
            _ => Ok(()),
        };
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(err)
        }
    }
}

fn make_writable(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o755));
        if let Ok(entries) = fs::read_dir(&d) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
}

/// The entries of a directory, sorted by name; a missing directory is empty.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StoreError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
    paths.sort();
    Ok(paths)
}

/// Disk usage of a file or directory tree (apparent size of regular files).
pub(crate) fn disk_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => tree_stats(path).map(|(_, s)| s).unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_hashed_feeds_every_byte_and_persist_makes_it_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; CHUNK * 2 + 5];
        let mut seen = 0usize;
        let (temp, size) =
            write_hashed(dir.path(), &mut &data[..], &mut |b| seen += b.len()).unwrap();
        assert_eq!((size, seen), (data.len() as u64, data.len()));
        let dest = dir.path().join("ab/cd");
        persist(temp, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o444
        );
    }

    #[test]
    fn tree_stats_counts_entries_and_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/f"), b"abc").unwrap();
        std::os::unix::fs::symlink("d/f", dir.path().join("l")).unwrap();
        assert_eq!(tree_stats(dir.path()).unwrap(), (3, 3));
    }

    #[test]
    fn remove_dir_via_handles_read_only_dirs() {
        let store = tempfile::tempdir().unwrap();
        let tmp = store.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let tree = store.path().join("tree");
        fs::create_dir_all(tree.join("ro")).unwrap();
        fs::write(tree.join("ro/f"), b"x").unwrap();
        fs::set_permissions(tree.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        remove_dir_via(&tree, &tmp).unwrap();
        assert!(!tree.exists());
        assert!(list_dir(&tmp).unwrap().is_empty());
    }
}
