//! Deterministic layer writing: a sorted list of [`Entry`]s in, one tar
//! stream out, hashed (diff_id) and compressed (digest) in the same pass.
//!
//! Invariants of every layer kiln writes:
//! - entries sorted by their tar name's bytes (so parents come before
//!   children); directory names end in `/`; no `./` or `/` prefix, no entry
//!   for the root itself;
//! - mtime = min(max(mtime, 0), SOURCE_DATE_EPOCH) — *clamped*, like
//!   `tar --clamp-mtime` and BuildKit's `rewrite-timestamp`: files newer than
//!   the epoch (everything a build writes) get the epoch, older files (from
//!   pinned inputs) keep their time, so the result depends only on inputs;
//! - numeric uid/gid only, empty uname/gname, no atime/ctime;
//! - hard links as tar links to the first path (in sorted order) of the
//!   inode; whiteouts as empty regular files `DIR/.wh.NAME` and opaque
//!   directories as `DIR/.wh..wh..opq` (mode 0, owner 0, mtime clamped);
//! - xattrs sorted by name, in pax `SCHILY.xattr.*` records;
//! - setuid, setgid and sticky bits kept.
//!
//! Memory does not grow with the layer's byte size: content is streamed
//! from its source file through the compressor to the caller's writer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::compress::{Compression, Encoder};
use super::digest::{HashingWriter, Sha256Digest};
use super::error::ImageError;
use super::oci::Descriptor;
use super::tarball::{self, TarHeader, typeflag};

/// Where a regular file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Read from this file when the layer is written (its size must still
    /// match [`EntryKind::File::size`]).
    Path(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
    /// `size` bytes of this file from `offset` (a spool file or an
    /// uncompressed tar holding the content).
    Range {
        /// The file.
        path: PathBuf,
        /// Where the content starts.
        offset: u64,
    },
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File {
        /// Its size in bytes.
        size: u64,
        /// Its content.
        content: Content,
    },
    /// A directory.
    Dir,
    /// A symlink.
    Symlink {
        /// The target, as bytes, not interpreted.
        target: Vec<u8>,
    },
    /// A hard link to another entry of the same layer.
    Hardlink {
        /// The path of the entry it links to (which must sort earlier).
        target: Vec<u8>,
    },
    /// A deletion: the entry's path names what the layer removes.
    Whiteout,
    /// The entry's path names a directory whose lower contents are hidden.
    Opaque,
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One entry of a layer, as a directory walk or the sandbox's capture of an
/// overlay upper dir produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path in the image, `/`-separated, without leading `/` or
    /// `./`, trailing `/`, `.` or `..` components.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`0o7777`: setuid, setgid and sticky included).
    pub mode: u32,
    /// Owner as seen in the image.
    pub uid: u64,
    /// Group as seen in the image.
    pub gid: u64,
    /// Modification time in seconds (clamped when written).
    pub mtime: i64,
    /// Extended attributes.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    /// An entry with mode 0o644 (dirs 0o755), owner 0, mtime 0.
    pub fn new(path: impl Into<Vec<u8>>, kind: EntryKind) -> Self {
        let mode = if kind == EntryKind::Dir { 0o755 } else { 0o644 };
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// The name this entry has in the tar stream.
    pub fn tar_name(&self) -> Vec<u8> {
        let (parent, base) = match self.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self.path[..=i], &self.path[i + 1..]),
            None => (&b""[..], &self.path[..]),
        };
        match &self.kind {
            EntryKind::Dir => [&self.path[..], b"/"].concat(),
            EntryKind::Whiteout => [parent, b".wh.", base].concat(),
            EntryKind::Opaque => [&self.path[..], b"/.wh..wh..opq"].concat(),
            _ => self.path.clone(),
        }
    }

    fn sort_key(&self) -> Vec<u8> {
        let mut name = self.tar_name();
        if name.last() == Some(&b'/') {
            name.pop();
        }
        name
    }
}

fn validate_path(path: &[u8]) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.contains(&0) {
        return Err("NUL byte in path".into());
    }
    if path[0] == b'/' {
        return Err("absolute path".into());
    }
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" => return Err("empty path component".into()),
            b"." | b".." => return Err("`.` or `..` component".into()),
            c if c.starts_with(b".wh.") => {
                return Err("names starting with `.wh.` are reserved for whiteouts".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Options for [`write_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: the latest mtime written.
    pub source_date_epoch: i64,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip,
            source_date_epoch: 0,
        }
    }
}

/// What [`write_layer`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes into the config's `rootfs`).
    pub diff_id: Sha256Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// sha256 of the blob as written (goes into the manifest).
    pub digest: Sha256Digest,
    /// Size of the blob as written.
    pub size: u64,
    /// Its compression.
    pub compression: Compression,
}

impl LayerInfo {
    /// The manifest descriptor of this layer.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.compression.layer_media_type(), self.digest, self.size)
    }
}

/// Sorts `entries` into layer order without checking them.
pub fn sort_entries_unchecked(entries: &mut [Entry]) {
    entries.sort_by_cached_key(Entry::sort_key);
}

/// Sorts `entries` into layer order and checks them: valid paths, no
/// duplicate tar names, hard links pointing at an earlier regular file.
pub fn sort_entries(entries: &mut [Entry]) -> Result<(), ImageError> {
    sort_entries_unchecked(entries);
    let mut files: std::collections::BTreeSet<&[u8]> = std::collections::BTreeSet::new();
    let mut prev: Option<Vec<u8>> = None;
    for e in entries.iter() {
        let invalid = |reason: &str| ImageError::InvalidEntry {
            path: String::from_utf8_lossy(&e.path).into_owned(),
            reason: reason.to_owned(),
        };
        validate_path(&e.path).map_err(|r| invalid(&r))?;
        let key = e.sort_key();
        if prev.as_ref() == Some(&key) {
            return Err(invalid("duplicate entry"));
        }
        prev = Some(key);
        match &e.kind {
            EntryKind::File { .. } => {
                files.insert(&e.path);
            }
            EntryKind::Hardlink { target } if !files.contains(target.as_slice()) => {
                return Err(invalid(
                    "hard link target is not an earlier regular file of the layer",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn entry_header(e: &Entry, sde: i64) -> TarHeader {
    let mtime = e.mtime.clamp(0, sde.max(0)) as u64;
    let mut h = TarHeader {
        name: e.tar_name(),
        typeflag: typeflag::FILE,
        mode: e.mode & 0o7777,
        uid: e.uid,
        gid: e.gid,
        size: 0,
        mtime,
        linkname: Vec::new(),
        devmajor: 0,
        devminor: 0,
        xattrs: e.xattrs.clone(),
    };
    match &e.kind {
        EntryKind::File { size, .. } => h.size = *size,
        EntryKind::Dir => h.typeflag = typeflag::DIR,
        EntryKind::Symlink { target } => {
            h.typeflag = typeflag::SYMLINK;
            h.linkname = target.clone();
        }
        EntryKind::Hardlink { target } => {
            h.typeflag = typeflag::HARDLINK;
            h.linkname = target.clone();
        }
        EntryKind::Whiteout | EntryKind::Opaque => {
            // One fixed form for markers, whatever the capture saw.
            h.mode = 0;
            h.uid = 0;
            h.gid = 0;
            h.xattrs.clear();
        }
        EntryKind::CharDevice { major, minor } => {
            h.typeflag = typeflag::CHAR;
            h.devmajor = *major;
            h.devminor = *minor;
        }
        EntryKind::BlockDevice { major, minor } => {
            h.typeflag = typeflag::BLOCK;
            h.devmajor = *major;
            h.devminor = *minor;
        }
        EntryKind::Fifo => h.typeflag = typeflag::FIFO,
    }
    h
}

/// Writes the uncompressed tar stream of `entries` (which must already be in
/// [`sort_entries`] order) to `out`.
pub fn write_tar(
    entries: &[Entry],
    source_date_epoch: i64,
    out: &mut impl Write,
) -> Result<(), ImageError> {
    let op = |e: &Entry| format!("write layer entry `{}`", String::from_utf8_lossy(&e.path));
    let mut buf = vec![0u8; 256 * 1024];
    for e in entries {
        let h = entry_header(e, source_date_epoch);
        tarball::write_header(out, &h).map_err(|err| super::digest::unwrap_io(op(e), err))?;
        if let EntryKind::File { size, content } = &e.kind {
            let mismatch = |found: u64| ImageError::SizeMismatch {
                what: format!("layer entry `{}`", String::from_utf8_lossy(&e.path)),
                expected: *size,
                found,
            };
            match content {
                Content::Bytes(bytes) => {
                    if bytes.len() as u64 != *size {
                        return Err(mismatch(bytes.len() as u64));
                    }
                    out.write_all(bytes)
                        .map_err(|err| super::digest::unwrap_io(op(e), err))?;
                }
                Content::Path(path) | Content::Range { path, .. } => {
                    let mut file = File::open(path).map_err(|err| ImageError::read(path, err))?;
                    if let Content::Range { offset, .. } = content {
                        io::Seek::seek(&mut file, io::SeekFrom::Start(*offset))
                            .map_err(|err| ImageError::read(path, err))?;
                    }
                    // Copy exactly `size` bytes: a file that changed size
                    // since it was listed is an error, not a corrupt tar.
                    let mut limited = file.take(*size);
                    let mut copied: u64 = 0;
                    loop {
                        let n = match limited.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                            Err(err) => return Err(ImageError::read(path, err)),
                        };
                        out.write_all(&buf[..n])
                            .map_err(|err| super::digest::unwrap_io(op(e), err))?;
                        copied += n as u64;
                    }
                    let mut extra = [0u8; 1];
                    let more = limited
                        .into_inner()
                        .read(&mut extra)
                        .map_err(|err| ImageError::read(path, err))?;
                    let is_range = matches!(content, Content::Range { .. });
                    if copied != *size || (more != 0 && !is_range) {
                        return Err(mismatch(if more != 0 { *size + 1 } else { copied }));
                    }
                }
            }
            tarball::write_padding(out, *size)
                .map_err(|err| super::digest::unwrap_io(op(e), err))?;
        }
    }
    tarball::write_end(out).map_err(|err| ImageError::stream("write the end of the layer", err))
}

/// Sorts and checks `entries`, then writes them as a layer blob to `out`
/// with `options`, returning the diff_id and the blob digest, computed in
/// the same pass.
pub fn write_layer<W: Write>(
    entries: &mut [Entry],
    options: LayerOptions,
    out: W,
) -> Result<(LayerInfo, W), ImageError> {
    sort_entries(entries)?;
    let blob = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, out));
    let encoder = Encoder::new(blob, options.compression)
        .map_err(|e| ImageError::stream("start compressing the layer", e))?;
    let mut tar = HashingWriter::new(encoder);
    write_tar(entries, options.source_date_epoch, &mut tar)?;
    let (encoder, diff_id, uncompressed_size) = tar.finish();
    let blob = encoder
        .finish()
        .map_err(|e| super::digest::unwrap_io("finish compressing the layer", e))?;
    let (buffered, digest, size) = blob.finish();
    let out = buffered
        .into_inner()
        .map_err(|e| super::digest::unwrap_io("flush the layer blob", e.into_error()))?;
    Ok((
        LayerInfo {
            diff_id,
            uncompressed_size,
            digest,
            size,
            compression: options.compression,
        },
        out,
    ))
}

/// How [`walk_dir`] reads a tree.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Subtracted from on-disk uid/gid (a tree owned by a shifted id range,
    /// e.g. written by a sandbox with a subordinate id map). Ids below the
    /// offset are an error.
    pub id_offset: u32,
    /// Read an overlayfs upper dir: 0/0 character devices become whiteouts,
    /// directories with `trusted.overlay.opaque` or `user.overlay.opaque`
    /// set to `y` get an opaque marker. Other overlay xattrs are dropped.
    pub overlay: bool,
}

/// Whether an xattr found on disk goes into the layer: `security.capability`
/// (file capabilities, which docker keeps) and `user.*` except overlayfs'
/// own; not `security.selinux` (host labelling), `system.*` (ACLs, which no
/// runtime applies) or `trusted.*`.
pub fn keep_xattr(name: &str) -> bool {
    name == "security.capability"
        || (name.starts_with("user.") && !name.starts_with("user.overlay."))
}

/// Lists the tree under `root` (not `root` itself) as layer entries, each
/// directory read in name order, hard links detected by inode (the first path
/// in sorted order keeps the content). The result is in layer order.
pub fn walk_dir(root: &Path, options: &WalkOptions) -> Result<Vec<Entry>, ImageError> {
    let mut entries = Vec::new();
    let mut linked: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
    walk_into(root, &[], options, &mut entries, &mut linked)?;
    sort_entries(&mut entries)?;
    // Hard links are decided after sorting, so the first path in layer order
    // keeps the content whatever order readdir gave.
    let mut first: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    for e in entries.iter_mut() {
        let Some(inode) = linked.get(&e.path) else {
            continue;
        };
        match first.get(inode) {
            Some(target) => {
                e.kind = EntryKind::Hardlink {
                    target: target.clone(),
                };
                e.xattrs.clear();
            }
            None => {
                first.insert(*inode, e.path.clone());
            }
        }
    }
    Ok(entries)
}

fn walk_into(
    root: &Path,
    rel: &[u8],
    options: &WalkOptions,
    entries: &mut Vec<Entry>,
    linked: &mut BTreeMap<Vec<u8>, (u64, u64)>,
) -> Result<(), ImageError> {
    let dir = root.join(std::ffi::OsStr::from_bytes(rel));
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map_err(|e| ImageError::read(&dir, e))?
        .map(|d| {
            d.map(|d| d.file_name().as_bytes().to_vec())
                .map_err(|e| ImageError::read(&dir, e))
        })
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let rel_path = if rel.is_empty() {
            name.clone()
        } else {
            [rel, b"/", &name].concat()
        };
        let path = dir.join(std::ffi::OsStr::from_bytes(&name));
        let meta = std::fs::symlink_metadata(&path).map_err(|e| ImageError::read(&path, e))?;
        let shift = |id: u32| -> Result<u64, ImageError> {
            id.checked_sub(options.id_offset)
                .map(u64::from)
                .ok_or_else(|| ImageError::InvalidEntry {
                    path: path.display().to_string(),
                    reason: format!("owner id {id} is below the id offset {}", options.id_offset),
                })
        };
        let mut xattrs = BTreeMap::new();
        let mut opaque = false;
        let list = xattr::list(&path).map_err(|e| ImageError::read(&path, e))?;
        let mut names_x: Vec<_> = list.collect();
        names_x.sort();
        for xname in names_x {
            let Some(xname) = xname.to_str().map(str::to_owned) else {
                continue;
            };
            if options.overlay
                && (xname == "trusted.overlay.opaque" || xname == "user.overlay.opaque")
            {
                let value = xattr::get(&path, &xname).map_err(|e| ImageError::read(&path, e))?;
                opaque = value.as_deref() == Some(b"y");
                continue;
            }
            if !keep_xattr(&xname) {
                continue;
            }
            if let Some(value) =
                xattr::get(&path, &xname).map_err(|e| ImageError::read(&path, e))?
            {
                xattrs.insert(xname, value);
            }
        }
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                linked.insert(rel_path.clone(), (meta.dev(), meta.ino()));
            }
            EntryKind::File {
                size: meta.len(),
                content: Content::Path(path.clone()),
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| ImageError::read(&path, e))?;
            EntryKind::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if ft.is_char_device() {
            let rdev = meta.rdev();
            let (major, minor) = (
                nix::sys::stat::major(rdev) as u32,
                nix::sys::stat::minor(rdev) as u32,
            );
            if options.overlay && major == 0 && minor == 0 {
                EntryKind::Whiteout
            } else {
                EntryKind::CharDevice { major, minor }
            }
        } else if ft.is_block_device() {
            let rdev = meta.rdev();
            EntryKind::BlockDevice {
                major: nix::sys::stat::major(rdev) as u32,
                minor: nix::sys::stat::minor(rdev) as u32,
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            // Sockets do not belong in an image (tar cannot hold them).
            continue;
        };
        let is_dir = kind == EntryKind::Dir;
        entries.push(Entry {
            path: rel_path.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: shift(meta.uid())?,
            gid: shift(meta.gid())?,
            mtime: meta.mtime(),
            xattrs,
        });
        if is_dir {
            if opaque {
                entries.push(Entry::new(rel_path.clone(), EntryKind::Opaque));
            }
            walk_into(root, &rel_path, options, entries, linked)?;
        }
    }
    Ok(())
}

/// Writes the tree under `root` as a layer: [`walk_dir`] then [`write_layer`].
pub fn write_dir_layer<W: Write>(
    root: &Path,
    walk: &WalkOptions,
    options: LayerOptions,
    out: W,
) -> Result<(LayerInfo, W), ImageError> {
    let mut entries = walk_dir(root, walk)?;
    write_layer(&mut entries, options, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_names_of_markers() {
        assert_eq!(
            Entry::new("a/b", EntryKind::Whiteout).tar_name(),
            b"a/.wh.b"
        );
        assert_eq!(Entry::new("b", EntryKind::Whiteout).tar_name(), b".wh.b");
        assert_eq!(
            Entry::new("a", EntryKind::Opaque).tar_name(),
            b"a/.wh..wh..opq"
        );
        assert_eq!(Entry::new("a", EntryKind::Dir).tar_name(), b"a/");
    }

    #[test]
    fn entries_sort_parents_first_and_reject_bad_paths() {
        let mut v = vec![
            Entry::new("a/b", EntryKind::Dir),
            Entry::new("a-b", EntryKind::Dir),
            Entry::new("a", EntryKind::Dir),
            Entry::new("a", EntryKind::Opaque),
        ];
        sort_entries(&mut v).unwrap();
        let names: Vec<_> = v
            .iter()
            .map(|e| String::from_utf8(e.tar_name()).unwrap())
            .collect();
        assert_eq!(names, ["a/", "a-b/", "a/.wh..wh..opq", "a/b/"]);
        for bad in ["/x", "a/../b", "a//b", "./a", "a/.wh.x"] {
            let mut v = vec![Entry::new(bad, EntryKind::Dir)];
            assert!(sort_entries(&mut v).is_err(), "{bad}");
        }
        let mut v = vec![
            Entry::new("a", EntryKind::Dir),
            Entry::new("a", EntryKind::Dir),
        ];
        assert!(sort_entries(&mut v).is_err());
    }

    #[test]
    fn hardlink_must_follow_its_target() {
        let file = EntryKind::File {
            size: 1,
            content: Content::Bytes(b"x".to_vec()),
        };
        let mut v = vec![
            Entry::new(
                "a",
                EntryKind::Hardlink {
                    target: b"b".to_vec(),
                },
            ),
            Entry::new("b", file),
        ];
        assert!(sort_entries(&mut v).is_err());
    }
}
