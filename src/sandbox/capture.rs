//! The change set of a step: its overlay upper dir, walked into sorted data
//! in OCI layer terms (image-spec `layer.md`): added and changed entries,
//! deletions as `.wh.<name>` whiteouts, opaque directories as
//! `<dir>/.wh..wh..opq`, with inside owners, modes, sorted xattrs (minus
//! overlayfs's own), mtimes and hard links (later paths link to the first).
//!
//! Data only: content stays in the upper dir ([`ChangeKind::File::source`]);
//! the tar writer is the image module's (issue #5). Never called while the
//! step runs.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{IdMap, SandboxError, sys};

/// Overlayfs's own xattr prefixes (`trusted.` as root on the host, `user.`
/// with `userxattr`, which the sandbox uses): never part of a layer.
const OVERLAY_XATTRS: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// A step's filesystem changes, sorted by path bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeSet {
    /// The entries.
    pub entries: Vec<Change>,
}

/// One entry of a change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Path relative to the root, no leading `/` (`etc/passwd`, `d/.wh.x`).
    pub path: PathBuf,
    /// What it is.
    pub kind: ChangeKind,
    /// Owner uid, as seen inside.
    pub uid: u32,
    /// Owner gid, as seen inside.
    pub gid: u32,
    /// Permission bits, setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// Extended attributes, sorted by name, without overlayfs's own.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a [`Change`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A regular file; read its content from `source` (a host path).
    File {
        /// Host path in the upper dir.
        source: PathBuf,
        /// Size in bytes.
        size: u64,
    },
    /// A hard link to an earlier entry of the same change set.
    HardLink {
        /// The earlier entry's path (relative).
        target: PathBuf,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink {
        /// Its target, as stored.
        target: PathBuf,
    },
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice {
        /// Major number.
        major: u64,
        /// Minor number.
        minor: u64,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u64,
        /// Minor number.
        minor: u64,
    },
    /// A deletion: the path is `<dir>/.wh.<name>`.
    Whiteout,
    /// An opaque directory marker: the path is `<dir>/.wh..wh..opq`.
    Opaque,
}

struct Raw {
    change: Change,
    inode: Option<(u64, u64)>,
}

/// Walks `upper` into a change set, skipping `exclude` (relative paths, with
/// everything below them). Host owners are turned into inside ids through `ids`.
pub fn capture(upper: &Path, exclude: &[PathBuf], ids: &IdMap) -> Result<ChangeSet, SandboxError> {
    let mut raw = Vec::new();
    walk(upper, Path::new(""), exclude, ids, &mut raw)?;
    raw.sort_by(|a, b| {
        a.change
            .path
            .as_os_str()
            .as_bytes()
            .cmp(b.change.path.as_os_str().as_bytes())
    });
    let mut first: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let entries = raw
        .into_iter()
        .map(|r| {
            let mut change = r.change;
            if let Some(inode) = r.inode {
                match first.get(&inode) {
                    Some(target) => {
                        change.kind = ChangeKind::HardLink {
                            target: target.clone(),
                        }
                    }
                    None => {
                        first.insert(inode, change.path.clone());
                    }
                }
            }
            change
        })
        .collect();
    Ok(ChangeSet { entries })
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    OVERLAY_XATTRS.iter().any(|p| name.starts_with(p))
}

fn walk(
    dir: &Path,
    rel: &Path,
    exclude: &[PathBuf],
    ids: &IdMap,
    out: &mut Vec<Raw>,
) -> Result<(), SandboxError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SandboxError::Capture { path, source }
    };
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(err(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let host = dir.join(&name);
        let path = rel.join(&name);
        if exclude.iter().any(|e| path.starts_with(e)) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&host).map_err(err(&host))?;
        let all_xattrs = sys::xattrs(&host).map_err(err(&host))?;
        let overlay_flag = |key: &[u8]| {
            all_xattrs.iter().any(|(n, v)| {
                OVERLAY_XATTRS
                    .iter()
                    .any(|p| n.strip_prefix(*p) == Some(key))
                    && v.as_slice() == b"y"
            })
        };
        let xattrs: Vec<_> = all_xattrs
            .iter()
            .filter(|(n, _)| !is_overlay_xattr(n))
            .cloned()
            .collect();
        let uid = ids
            .inside_uid(meta.uid())
            .ok_or(SandboxError::UnmappedOwner {
                path: host.clone(),
                id: meta.uid(),
            })?;
        let gid = ids
            .inside_gid(meta.gid())
            .ok_or(SandboxError::UnmappedOwner {
                path: host.clone(),
                id: meta.gid(),
            })?;
        let ft = meta.file_type();
        let whiteout_name = || {
            let mut n = std::ffi::OsString::from(".wh.");
            n.push(&name);
            rel.join(n)
        };
        let mut change = Change {
            path: path.clone(),
            kind: ChangeKind::Dir,
            uid,
            gid,
            mode: meta.mode() & 0o7777,
            mtime: (meta.mtime(), meta.mtime_nsec()),
            xattrs,
        };
        let mut inode = None;
        if ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs whiteout: a 0/0 character device (overlayfs.rst).
            change.path = whiteout_name();
            change.kind = ChangeKind::Whiteout;
            change.xattrs.clear();
        } else if ft.is_file() && meta.len() == 0 && overlay_flag(b"whiteout") {
            // Since Linux 6.7 a whiteout may also be an empty file with the
            // `overlay.whiteout` xattr.
            change.path = whiteout_name();
            change.kind = ChangeKind::Whiteout;
            change.xattrs.clear();
        } else if ft.is_dir() {
            out.push(Raw {
                change: change.clone(),
                inode: None,
            });
            if overlay_flag(b"opaque") {
                out.push(Raw {
                    change: Change {
                        path: path.join(".wh..wh..opq"),
                        kind: ChangeKind::Opaque,
                        xattrs: Vec::new(),
                        ..change
                    },
                    inode: None,
                });
            }
            walk(&host, &path, exclude, ids, out)?;
            continue;
        } else if ft.is_symlink() {
            change.kind = ChangeKind::Symlink {
                target: std::fs::read_link(&host).map_err(err(&host))?,
            };
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                inode = Some((meta.dev(), meta.ino()));
            }
            change.kind = ChangeKind::File {
                source: host.clone(),
                size: meta.len(),
            };
        } else if ft.is_fifo() {
            change.kind = ChangeKind::Fifo;
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = (
                nix::sys::stat::major(meta.rdev()),
                nix::sys::stat::minor(meta.rdev()),
            );
            change.kind = if ft.is_char_device() {
                ChangeKind::CharDevice { major, minor }
            } else {
                ChangeKind::BlockDevice { major, minor }
            };
        } else {
            // Sockets do not go into layers (tar cannot hold them; Docker skips them).
            continue;
        }
        out.push(Raw { change, inode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_map() -> IdMap {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let mut m = IdMap::host_root();
        m.uids = vec![super::super::IdRange {
            inside: 0,
            host: uid,
            count: 1,
        }];
        m.gids = vec![super::super::IdRange {
            inside: 0,
            host: gid,
            count: 1,
        }];
        m
    }

    #[test]
    fn files_dirs_symlinks_and_hard_links_sorted_by_path_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let u = dir.path();
        std::fs::create_dir(u.join("a")).unwrap();
        std::fs::write(u.join("a/f"), "x").unwrap();
        std::fs::write(u.join("a.txt"), "yy").unwrap();
        std::fs::hard_link(u.join("a.txt"), u.join("z")).unwrap();
        std::os::unix::fs::symlink("a/f", u.join("s")).unwrap();
        let set = capture(u, &[], &own_map()).unwrap();
        let paths: Vec<_> = set
            .entries
            .iter()
            .map(|e| e.path.to_str().unwrap())
            .collect();
        assert_eq!(paths, ["a", "a.txt", "a/f", "s", "z"]);
        assert_eq!(
            set.entries[1].kind,
            ChangeKind::File {
                source: u.join("a.txt"),
                size: 2
            }
        );
        assert_eq!(
            set.entries[3].kind,
            ChangeKind::Symlink {
                target: "a/f".into()
            }
        );
        assert_eq!(
            set.entries[4].kind,
            ChangeKind::HardLink {
                target: "a.txt".into()
            }
        );
        assert!(set.entries.iter().all(|e| e.uid == 0 && e.gid == 0));
    }

    #[test]
    fn excluded_paths_and_their_subtrees_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/x")).unwrap();
        std::fs::write(dir.path().join("keep"), "").unwrap();
        let set = capture(dir.path(), &["proc".into()], &own_map()).unwrap();
        let paths: Vec<_> = set.entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(paths, [PathBuf::from("keep")]);
    }

    #[test]
    fn owners_outside_the_map_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        let err = capture(dir.path(), &[], &IdMap::host_root());
        assert!(
            nix::unistd::geteuid().as_raw() >= super::super::HOST_ROOT_ID_BASE
                || matches!(err, Err(SandboxError::UnmappedOwner { .. }))
        );
    }
}
