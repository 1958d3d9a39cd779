//! `kiln image import`: a root filesystem made by another tool (a tarball
//! from mmdebstrap or debootstrap, or a directory) becomes a single-layer
//! image, rewritten into kiln's deterministic layer form.
//!
//! From a tarball: names are cleaned (`./` and `/` prefixes stripped, `..`
//! rejected), the root entry is dropped, as are the contents of `dev/`
//! (device nodes need privileges and a runtime supplies `/dev`) and any
//! device node elsewhere (listed in the report); a later entry for the same
//! path replaces an earlier one, as on extraction. Regular-file content is
//! spooled to one temporary file so entries can be sorted, then the layer is
//! written with [`super::layer::write_layer`]; hard links are re-pointed so the
//! first path in sorted order carries the content.
//!
//! The config gets docker's default `PATH` and one history entry.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;

use super::blob::{self, BlobSink, Image};
use super::compress::{self, Compression};
use super::digest::unwrap_io;
use super::error::ImageError;
use super::extract::Skipped;
use super::layer::{self, Content, Entry, EntryKind, LayerOptions, WalkOptions};
use super::oci::{ImageConfig, Platform};
use super::tarball::{Stream, TarReader, typeflag};

/// docker's default `PATH` for images without one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Layer compression.
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: `created`, history, and the mtime clamp.
    pub source_date_epoch: i64,
    /// The platform the config names.
    pub platform: Platform,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// For directories: subtracted from on-disk owners.
    pub id_offset: u32,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            compression: Compression::Gzip,
            source_date_epoch: 0,
            platform: Platform::linux_amd64(),
            created_by: "kiln image import".into(),
            id_offset: 0,
        }
    }
}

/// What an import dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries not imported, with why.
    pub skipped: Vec<Skipped>,
}

fn finish_image(
    sink: &dyn BlobSink,
    entries: &mut [Entry],
    options: &ImportOptions,
) -> Result<Image, ImageError> {
    let mut w = sink.begin_blob()?;
    let (info, _) = layer::write_layer(
        entries,
        LayerOptions {
            compression: options.compression,
            source_date_epoch: options.source_date_epoch,
        },
        &mut w,
    )?;
    w.flush()
        .map_err(|e| unwrap_io("flush the layer blob", e))?;
    let (digest, size) = w.commit()?;
    if digest != info.digest || size != info.size {
        return Err(ImageError::DigestMismatch {
            what: "stored layer blob".into(),
            expected: info.digest,
            found: digest,
        });
    }
    let mut config = ImageConfig::new(&options.platform, options.source_date_epoch);
    config.config.env = vec![DEFAULT_PATH.to_owned()];
    config.push_layer(info.diff_id, &options.created_by, options.source_date_epoch);
    config.history[0].comment = None;
    blob::put_image(sink, &config, vec![info.descriptor()])
}

/// Imports the tree under `dir` as a single-layer image into `sink`.
pub fn import_dir(
    dir: &Path,
    sink: &dyn BlobSink,
    options: &ImportOptions,
) -> Result<Image, ImageError> {
    let mut entries = layer::walk_dir(
        dir,
        &WalkOptions {
            id_offset: options.id_offset,
            overlay: false,
        },
    )?;
    // Device nodes do not belong in an image (see the module docs).
    entries.retain(|e| {
        !matches!(
            e.kind,
            EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. }
        )
    });
    finish_image(sink, &mut entries, options)
}

/// Imports a rootfs tarball (gzip, zstd or plain) read from `reader` as a
/// single-layer image into `sink`; file content is spooled in `spool_dir`.
pub fn import_tar(
    reader: impl Read,
    spool_dir: &Path,
    sink: &dyn BlobSink,
    options: &ImportOptions,
) -> Result<(Image, ImportReport), ImageError> {
    let mut spool = tempfile::Builder::new()
        .prefix(".kiln-import-")
        .tempfile_in(spool_dir)
        .map_err(|e| ImageError::write(spool_dir, e))?;
    let spool_path = spool.path().to_path_buf();
    let mut spool_w = io::BufWriter::with_capacity(256 * 1024, spool.as_file_mut());
    let mut offset: u64 = 0;
    let mut report = ImportReport::default();
    let mut by_path: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    let mut tar = TarReader::new(Stream(compress::decompress(reader)?));
    while let Some(h) = tar.next_header()? {
        let label = String::from_utf8_lossy(&h.name).into_owned();
        let path = clean(&h.name, &label)?;
        if path.is_empty() {
            continue;
        }
        let skip = |reason: &str, report: &mut ImportReport| {
            report.skipped.push(Skipped {
                path: label.clone(),
                reason: reason.to_owned(),
            });
        };
        if path.starts_with(b"dev/") {
            skip("under /dev", &mut report);
            continue;
        }
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
        if base.starts_with(b".wh.") {
            skip("whiteout in a root filesystem", &mut report);
            continue;
        }
        let kind = match h.typeflag {
            typeflag::FILE => {
                let copied = io::copy(&mut tar.content(), &mut spool_w)
                    .map_err(|e| unwrap_io(format!("spool `{label}`"), e))?;
                let kind = EntryKind::File {
                    size: copied,
                    content: Content::Range {
                        path: spool_path.clone(),
                        offset,
                    },
                };
                offset += copied;
                kind
            }
            typeflag::DIR => EntryKind::Dir,
            typeflag::SYMLINK => EntryKind::Symlink {
                target: h.linkname.clone(),
            },
            typeflag::HARDLINK => EntryKind::Hardlink {
                target: clean(&h.linkname, &label)?,
            },
            typeflag::FIFO => EntryKind::Fifo,
            typeflag::CHAR | typeflag::BLOCK => {
                skip("device node", &mut report);
                continue;
            }
            other => {
                return Err(ImageError::InvalidTar {
                    entry: label,
                    reason: format!("unsupported entry type `{}`", other.escape_ascii()),
                });
            }
        };
        let entry = Entry {
            path: path.clone(),
            kind,
            mode: h.mode & 0o7777,
            uid: h.uid,
            gid: h.gid,
            mtime: i64::try_from(h.mtime).unwrap_or(i64::MAX),
            xattrs: h.xattrs.clone(),
        };
        // A later directory entry for an existing directory only updates it;
        // anything else replaces.
        by_path.insert(path, entry);
    }
    spool_w
        .flush()
        .map_err(|e| ImageError::write(&spool_path, e))?;
    drop(spool_w);
    let mut entries = repoint_hardlinks(by_path)?;
    let image = finish_image(sink, &mut entries, options)?;
    drop(spool);
    Ok((image, report))
}

fn clean(name: &[u8], label: &str) -> Result<Vec<u8>, ImageError> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(ImageError::PathEscape {
                    entry: label.to_owned(),
                    reason: "`..` component".into(),
                });
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join(&b'/'))
}

/// Makes every hard-link group point at its first path in sorted order,
/// which takes the content (and the file's metadata).
fn repoint_hardlinks(by_path: BTreeMap<Vec<u8>, Entry>) -> Result<Vec<Entry>, ImageError> {
    // Each link's file (following link-to-link chains).
    let mut file_of: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (path, e) in &by_path {
        if let EntryKind::Hardlink { target } = &e.kind {
            let mut t = target.clone();
            for _ in 0..16 {
                match by_path.get(&t).map(|e| &e.kind) {
                    Some(EntryKind::Hardlink { target }) => t = target.clone(),
                    _ => break,
                }
            }
            match by_path.get(&t).map(|e| &e.kind) {
                Some(EntryKind::File { .. }) => {
                    file_of.insert(path.clone(), t);
                }
                _ => {
                    return Err(ImageError::InvalidEntry {
                        path: String::from_utf8_lossy(path).into_owned(),
                        reason: "hard link to a missing file".into(),
                    });
                }
            }
        }
    }
    // The group leader is the smallest of the file and its links in layer
    // order (entries are sorted the same way `write_layer` sorts them).
    let mut entries: Vec<Entry> = by_path.values().cloned().collect();
    layer::sort_entries_unchecked(&mut entries);
    let mut leader: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new(); // file path -> leader
    for e in &entries {
        let file = match &e.kind {
            EntryKind::File { .. } => e.path.clone(),
            EntryKind::Hardlink { .. } => file_of[&e.path].clone(),
            _ => continue,
        };
        leader.entry(file).or_insert_with(|| e.path.clone());
    }
    for e in entries.iter_mut() {
        let file = match &e.kind {
            EntryKind::File { .. } => e.path.clone(),
            EntryKind::Hardlink { .. } => file_of[&e.path].clone(),
            _ => continue,
        };
        let lead = &leader[&file];
        if *lead == e.path {
            if file != e.path {
                let f = &by_path[&file];
                e.kind = f.kind.clone();
                e.mode = f.mode;
                e.uid = f.uid;
                e.gid = f.gid;
                e.mtime = f.mtime;
                e.xattrs = f.xattrs.clone();
            }
        } else {
            e.kind = EntryKind::Hardlink {
                target: lead.clone(),
            };
        }
    }
    Ok(entries)
}
