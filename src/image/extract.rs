//! Applying a layer onto a directory tree, safely against hostile archives.
//!
//! Rules (what containerd's `fs.RootPath` and docker's chrooted unpack give,
//! without a chroot):
//! - Entry names are cleaned: leading `/` and `./` are stripped (absolute
//!   names are *neutralised* to the root, as GNU tar does), a `..`
//!   component is *rejected* ([`ImageError::PathEscape`]).
//! - Parent directories are resolved one component at a time inside the
//!   root: a symlink in a parent is followed as if the root were `/`
//!   (absolute targets restart at the root, `..` stops at it), at most 40
//!   links ([`ImageError::SymlinkLoop`] beyond). Missing parents are
//!   created 0755. The entry's own last component is never followed: an
//!   existing file or symlink there is replaced.
//! - Hard-link targets are resolved the same way, must exist and must not be
//!   directories, so a link can only ever name a file inside the root.
//! - Whiteouts `.wh.NAME` remove `NAME`; `.wh..wh..opq` empties its directory
//!   of everything this layer did not itself create; other `.wh..wh.*`
//!   (aufs metadata) are ignored.
//! - Device nodes are *skipped* and listed in [`ExtractReport::skipped`]:
//!   creating them needs privileges the sandbox does not give, and a
//!   runtime supplies `/dev` anyway. Setuid/setgid bits are kept: they are
//!   data in a store tree, which is never executed from outside a sandbox.
//! - Owners: with `id_offset = Some(n)`, every entry is `lchown`ed to
//!   `uid + n`, `gid + n` (a tree for a sandbox with a shifted id range);
//!   with `None`, owners are left to the extracting user.
//!
//! Precondition: nothing else modifies the tree during extraction (store
//! trees are extracted into a private temporary directory), so checking a
//! path and then using it cannot race with an attacker.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::compress;
use super::digest::unwrap_io;
use super::error::ImageError;
use super::tarball::{Stream, TarHeader, TarReader, typeflag};

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: u32 = 40;

/// How [`apply_layer`] writes the tree.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// `Some(n)`: owners become `uid + n`/`gid + n` on disk. `None`: owners
    /// are not changed (unprivileged extraction).
    pub id_offset: Option<u32>,
    /// Whether to set the entries' extended attributes.
    pub xattrs: bool,
    /// Keep the layer's deletions as overlayfs sees them (a whiteout as a
    /// 0/0 character device, an opaque directory as the
    /// `user.overlay.opaque` xattr, which overlayfs reads when mounted with
    /// `userxattr` in a user namespace, as the sandbox mounts it) instead
    /// of only applying them, so
    /// that the tree can be a lower dir above the layers it deletes from.
    /// Needs root; ignored otherwise.
    pub overlay_whiteouts: bool,
}

/// An entry that was deliberately not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry's name in the layer.
    pub path: String,
    /// Why (e.g. `character device 1:3`).
    pub reason: String,
}

/// What [`apply_layer`] did besides writing files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Entries written.
    pub entries: u64,
    /// Entries skipped by policy.
    pub skipped: Vec<Skipped>,
}

struct Extractor<'a> {
    root: &'a Path,
    options: &'a ExtractOptions,
    /// Paths (relative to the root, as resolved) this layer created.
    created: BTreeSet<Vec<u8>>,
    /// Directories whose mode and mtime are set at the end (children would
    /// change the mtime; a read-only mode would block them).
    dirs: Vec<(PathBuf, u32, u64)>,
    report: ExtractReport,
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// The cleaned components of an entry name.
fn clean_name(name: &[u8]) -> Result<Vec<&[u8]>, ImageError> {
    let mut out = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(ImageError::PathEscape {
                    entry: lossy(name),
                    reason: "`..` component".into(),
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Applies the layer read from `reader` (gzip, zstd or plain tar, detected
/// by magic) onto `root`.
pub fn apply_layer(
    reader: impl Read,
    root: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport, ImageError> {
    let mut tar = TarReader::new(Stream(compress::decompress(reader)?));
    let mut ex = Extractor {
        root,
        options,
        created: BTreeSet::new(),
        dirs: Vec::new(),
        report: ExtractReport::default(),
    };
    while let Some(h) = tar.next_header()? {
        ex.entry(&h, &mut tar)?;
    }
    // Deepest first, so setting a parent's mtime comes after its children.
    for (path, mode, mtime) in ex.dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*mode))
            .map_err(|e| ImageError::write(path, e))?;
        let t = filetime::FileTime::from_unix_time(*mtime as i64, 0);
        filetime::set_symlink_file_times(path, t, t).map_err(|e| ImageError::write(path, e))?;
    }
    Ok(ex.report)
}

impl Extractor<'_> {
    fn entry<R: Read + super::tarball::Skip>(
        &mut self,
        h: &TarHeader,
        tar: &mut TarReader<R>,
    ) -> Result<(), ImageError> {
        let label = lossy(&h.name);
        let comps = clean_name(&h.name)?;
        let Some((base, parents)) = comps.split_last() else {
            // The root itself: its metadata is the tree owner's business.
            return Ok(());
        };
        let parent = self.resolve(parents, &label, true)?;
        if let Some(hidden) = base.strip_prefix(b".wh.") {
            let overlay = self.options.overlay_whiteouts && nix::unistd::geteuid().is_root();
            if hidden == b".wh..opq" {
                self.opaque(&parent)?;
                if overlay {
                    // The sandbox's overlay is mounted in a user namespace,
                    // with `userxattr`: it reads `user.overlay.*`, never
                    // `trusted.*` (overlayfs.rst, "User xattr").
                    xattr::set(&parent, "user.overlay.opaque", b"y")
                        .map_err(|e| ImageError::write(&parent, e))?;
                }
                return Ok(());
            }
            if hidden.starts_with(b".wh.") {
                return Ok(());
            }
            let victim = parent.join(OsStr::from_bytes(hidden));
            remove_any(&victim)?;
            if overlay {
                self.whiteout(&victim)?;
            }
            return Ok(());
        }
        let dest = parent.join(OsStr::from_bytes(base));
        let is_dir = h.typeflag == typeflag::DIR;
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() && is_dir => {}
            Ok(_) => remove_any(&dest)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::read(&dest, e)),
        }
        match h.typeflag {
            typeflag::DIR => {
                if !dest.is_dir() {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&dest)
                        .map_err(|e| ImageError::write(&dest, e))?;
                }
                self.owner_and_xattrs(&dest, h, false)?;
                self.dirs.push((dest.clone(), h.mode, h.mtime));
            }
            typeflag::FILE => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(|e| ImageError::write(&dest, e))?;
                io::copy(&mut tar.content(), &mut file)
                    .map_err(|e| unwrap_io(format!("extract `{label}`"), e))?;
                drop(file);
                self.finish(&dest, h, false)?;
            }
            typeflag::SYMLINK => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&h.linkname), &dest)
                    .map_err(|e| ImageError::write(&dest, e))?;
                self.finish(&dest, h, true)?;
            }
            typeflag::HARDLINK => {
                let target_comps = clean_name(&h.linkname).map_err(|_| ImageError::PathEscape {
                    entry: label.clone(),
                    reason: format!("hard link to `{}`", lossy(&h.linkname)),
                })?;
                let Some((tbase, tparents)) = target_comps.split_last() else {
                    return Err(ImageError::PathEscape {
                        entry: label,
                        reason: "hard link to the root".into(),
                    });
                };
                let target = self
                    .resolve(tparents, &label, false)?
                    .join(OsStr::from_bytes(tbase));
                match fs::symlink_metadata(&target) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(ImageError::InvalidTar {
                            entry: label,
                            reason: format!(
                                "hard link target `{}` is not a file in the tree",
                                lossy(&h.linkname)
                            ),
                        });
                    }
                }
                // linkat(2) without AT_SYMLINK_FOLLOW: a symlink target is
                // linked itself, never followed.
                fs::hard_link(&target, &dest).map_err(|e| ImageError::write(&dest, e))?;
            }
            typeflag::FIFO => {
                nix::unistd::mkfifo(&dest, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| ImageError::write(&dest, e.into()))?;
                self.finish(&dest, h, false)?;
            }
            typeflag::CHAR | typeflag::BLOCK => {
                let kind = if h.typeflag == typeflag::CHAR {
                    "character"
                } else {
                    "block"
                };
                self.report.skipped.push(Skipped {
                    path: label,
                    reason: format!("{kind} device {}:{}", h.devmajor, h.devminor),
                });
                return Ok(());
            }
            other => {
                return Err(ImageError::InvalidTar {
                    entry: label,
                    reason: format!("unsupported entry type `{}`", other.escape_ascii()),
                });
            }
        }
        if let Ok(rel) = dest.strip_prefix(self.root) {
            self.created.insert(rel.as_os_str().as_bytes().to_vec());
        }
        self.report.entries += 1;
        Ok(())
    }

    /// Resolves `comps` (parent directories of an entry) inside the root,
    /// following symlinks as if the root were `/`; creates missing
    /// directories when `create`.
    fn resolve(
        &mut self,
        comps: &[&[u8]],
        label: &str,
        create: bool,
    ) -> Result<PathBuf, ImageError> {
        let mut queue: VecDeque<OsString> = comps
            .iter()
            .map(|c| OsStr::from_bytes(c).to_os_string())
            .collect();
        let mut stack: Vec<OsString> = Vec::new();
        let mut links = 0;
        let here = |stack: &[OsString]| {
            let mut p = self.root.to_path_buf();
            p.extend(stack);
            p
        };
        while let Some(c) = queue.pop_front() {
            match c.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let candidate = here(&stack).join(&c);
            match fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ImageError::SymlinkLoop {
                            entry: label.to_owned(),
                        });
                    }
                    let target =
                        fs::read_link(&candidate).map_err(|e| ImageError::read(&candidate, e))?;
                    let bytes = target.as_os_str().as_bytes();
                    if bytes.starts_with(b"/") {
                        stack.clear();
                    }
                    for part in bytes.split(|&b| b == b'/').rev() {
                        queue.push_front(OsStr::from_bytes(part).to_os_string());
                    }
                }
                Ok(m) if m.is_dir() => stack.push(c),
                Ok(_) => {
                    return Err(ImageError::InvalidTar {
                        entry: label.to_owned(),
                        reason: format!("parent `{}` is not a directory", candidate.display()),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&candidate)
                        .map_err(|e| ImageError::write(&candidate, e))?;
                    // Explicit, so the extracting process's umask is not data.
                    fs::set_permissions(&candidate, fs::Permissions::from_mode(0o755))
                        .map_err(|e| ImageError::write(&candidate, e))?;
                    stack.push(c);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ImageError::InvalidTar {
                        entry: label.to_owned(),
                        reason: format!("`{}` does not exist", candidate.display()),
                    });
                }
                Err(e) => return Err(ImageError::read(&candidate, e)),
            }
        }
        Ok(here(&stack))
    }

    /// An overlayfs whiteout at `path`: a 0/0 character device, owned by
    /// the (shifted) root.
    fn whiteout(&self, path: &Path) -> Result<(), ImageError> {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| ImageError::write(path, io::Error::from(e)))?;
        if let Some(offset) = self.options.id_offset {
            std::os::unix::fs::lchown(path, Some(offset), Some(offset))
                .map_err(|e| ImageError::write(path, e))?;
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &Path) -> Result<(), ImageError> {
        let rel = dir
            .strip_prefix(self.root)
            .map(|r| r.as_os_str().as_bytes().to_vec())
            .unwrap_or_default();
        let entries = fs::read_dir(dir).map_err(|e| ImageError::read(dir, e))?;
        for child in entries {
            let child = child.map_err(|e| ImageError::read(dir, e))?;
            let name = child.file_name();
            let child_rel = if rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [&rel[..], b"/", name.as_bytes()].concat()
            };
            if !self.created.contains(&child_rel) {
                remove_any(&child.path())?;
            }
        }
        Ok(())
    }

    fn owner_and_xattrs(
        &self,
        path: &Path,
        h: &TarHeader,
        symlink: bool,
    ) -> Result<(), ImageError> {
        if let Some(offset) = self.options.id_offset {
            let shift = |id: u64| -> Result<u32, ImageError> {
                u32::try_from(id)
                    .ok()
                    .and_then(|id| id.checked_add(offset))
                    .ok_or_else(|| ImageError::InvalidTar {
                        entry: lossy(&h.name),
                        reason: format!("owner id {id} does not fit after adding {offset}"),
                    })
            };
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                path,
                Some(nix::unistd::Uid::from_raw(shift(h.uid)?)),
                Some(nix::unistd::Gid::from_raw(shift(h.gid)?)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| ImageError::write(path, e.into()))?;
        }
        if self.options.xattrs && !symlink {
            for (name, value) in &h.xattrs {
                xattr::set(path, name, value).map_err(|e| ImageError::write(path, e))?;
            }
        }
        Ok(())
    }

    /// Owner, xattrs, then mode (after chown, which clears setuid), then mtime.
    fn finish(&self, path: &Path, h: &TarHeader, symlink: bool) -> Result<(), ImageError> {
        self.owner_and_xattrs(path, h, symlink)?;
        if !symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(h.mode))
                .map_err(|e| ImageError::write(path, e))?;
        }
        let t = filetime::FileTime::from_unix_time(h.mtime as i64, 0);
        filetime::set_symlink_file_times(path, t, t).map_err(|e| ImageError::write(path, e))
    }
}

fn remove_any(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| ImageError::write(path, e)),
        Ok(_) => fs::remove_file(path).map_err(|e| ImageError::write(path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::write(path, e)),
    }
}
