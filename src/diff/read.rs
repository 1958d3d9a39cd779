//! Reads the layers of two images once, at the same time, and builds
//! their filesystems as metadata ([`Tree`]s), comparing file contents as
//! they stream past.
//!
//! Each image is read by its own thread (decompression, tar parsing and
//! per-file sha256 happen there, so two images use two cores); the threads
//! send headers and content chunks over bounded channels to the
//! comparing thread, so memory never holds more than a few chunks of
//! content per image, whatever the image's size.
//!
//! Layers are read top first, so the first version of a path that an
//! image sends is its final one; entries a higher layer replaced, deleted
//! or hid are recognised from their header and their content skipped
//! ([`Tree::place`]). Only final versions are ever compared.
//!
//! Alignment: the comparing thread advances the image whose next entry
//! comes first in path order (within the same layer position when both
//! images have as many layers, else across layers), so two builds of one
//! Dockerfile meet at every path: their two versions of a file are
//! compared byte by byte as they arrive, which gives the exact first
//! differing offset and, for text files up to [`TEXT_CAP`], a unified diff,
//! without keeping or rereading either.
//!
//! An entry that arrives without a partner (the other image has no such
//! path yet, e.g. when the layers are split differently) is spooled: its
//! first [`Limits::spool_file`] bytes go to an unlinked spool file in the
//! caller's directory (the store's `tmp/`), within [`Limits::spool_total`]
//! per image, so that the other image's version, when it comes, can be
//! compared against it. Identical contents are spooled once. When the
//! other image has finished, nothing is spooled. A comparison that could
//! only cover a spooled prefix says so (`compared`); when the spool limit
//! was reached, digests and sizes are all that is reported.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::DiffError;
use super::content::{self, ContentDiff, TEXT_CAP};
use super::tree::{Kind, PathDiff, Placement, Tree};
use crate::digest::Sha256Digest;
use crate::image::ImageError;
use crate::image::blob::{BlobSource, open_verified};
use crate::image::compress::{self, Compression};
use crate::image::digest::unwrap_io;
use crate::image::oci::Descriptor;
use crate::image::tarball::{Stream, TarHeader, TarReader, typeflag};

/// Bytes per content chunk sent between threads.
pub const CHUNK: usize = 128 * 1024;
/// Messages in flight per image (so at most `CHANNEL * CHUNK` bytes).
const CHANNEL: usize = 32;

/// Bounds on what is kept for later comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one unpartnered file spooled.
    pub spool_file: u64,
    /// Bytes spooled per image in all.
    pub spool_total: u64,
    /// Bytes of unified diffs kept in all.
    pub text_total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            spool_file: 1 << 20,
            spool_total: 128 << 20,
            text_total: 2 << 20,
        }
    }
}

/// One image to read.
pub struct Input<'a> {
    /// The image as the user named it (for errors).
    pub image: String,
    /// Where its blobs are.
    pub source: &'a (dyn BlobSource + Sync),
    /// Its layers, base first.
    pub layers: Vec<Descriptor>,
    /// The config's diff_ids, checked against the uncompressed layers
    /// (empty: not checked).
    pub diff_ids: Vec<Sha256Digest>,
    /// Keep whiteouts as entries instead of applying them (one layer
    /// compared with another build of it).
    pub raw: bool,
}

/// What reading one layer found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerRead {
    /// The blob.
    pub digest: Sha256Digest,
    /// `gzip`, `zstd` or `none`, from its magic bytes.
    pub compression: &'static str,
    /// The blob's size.
    pub size: u64,
    /// The uncompressed tar's sha256.
    pub diff_id: Sha256Digest,
    /// The uncompressed tar's size.
    pub uncompressed_size: u64,
    /// Entries in the tar.
    pub entries: u64,
}

/// One image, read.
#[derive(Debug)]
pub struct Side {
    /// Its filesystem.
    pub tree: Tree,
    /// Its layers as read.
    pub layers: Vec<LayerRead>,
    spool: Spool,
}

/// Both images, read, with what was learnt about differing contents.
#[derive(Debug)]
pub struct Outcome {
    /// A.
    pub a: Side,
    /// B.
    pub b: Side,
    details: BTreeMap<([u8; 32], [u8; 32]), ContentDiff>,
    text_left: usize,
}

enum Msg {
    Entry { layer: usize, header: TarHeader },
    Chunk(Vec<u8>),
    End([u8; 32]),
    Layer(LayerRead),
    Failed(DiffError),
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "none",
    }
}

/// The reading thread of one image.
fn read_layers(input: &Input<'_>, tx: &SyncSender<Msg>) -> Result<(), DiffError> {
    // Top layer first: the first version of a path met is its final one
    // (see [`Tree`]).
    for (index, desc) in input.layers.iter().enumerate().rev() {
        let layer_err = |source: ImageError| DiffError::Layer {
            image: input.image.clone(),
            digest: desc.digest,
            source: Box::new(source),
        };
        let raw = open_verified(input.source, desc).map_err(layer_err)?;
        let mut buffered = io::BufReader::with_capacity(CHUNK, raw);
        let head = buffered
            .fill_buf()
            .map_err(|e| layer_err(unwrap_io("read the layer", e)))?;
        let compression = compress::detect(head);
        let decompressed = compress::decompress(buffered).map_err(layer_err)?;
        let mut tar = TarReader::new(Stream(Hashing {
            inner: decompressed,
            hasher: Sha256::new(),
            len: 0,
        }));
        let mut entries = 0;
        while let Some(header) = tar.next_header().map_err(layer_err)? {
            entries += 1;
            let size = if header.typeflag == typeflag::FILE {
                Some(header.size)
            } else {
                None
            };
            if tx
                .send(Msg::Entry {
                    layer: index,
                    header,
                })
                .is_err()
            {
                return Ok(());
            }
            let mut digest = [0u8; 32];
            if let Some(size) = size {
                let mut hasher = Sha256::new();
                let mut left = size;
                let mut reader = tar.content();
                while left > 0 {
                    let want = left.min(CHUNK as u64) as usize;
                    let mut buf = vec![0u8; want];
                    reader
                        .read_exact(&mut buf)
                        .map_err(|e| layer_err(unwrap_io("read a layer entry", e)))?;
                    hasher.update(&buf);
                    left -= want as u64;
                    if tx.send(Msg::Chunk(buf)).is_err() {
                        return Ok(());
                    }
                }
                digest = hasher.finalize().into();
            }
            if tx.send(Msg::End(digest)).is_err() {
                return Ok(());
            }
        }
        // What follows the end-of-archive blocks is part of the blob and
        // the diff_id too: read it, so both digests are checked.
        let stream = &mut tar.get_mut().0;
        io::copy(stream, &mut io::sink())
            .map_err(|e| layer_err(unwrap_io("read the end of the layer", e)))?;
        let diff_id = Sha256Digest::from_bytes(stream.hasher.clone().finalize().into());
        if let Some(expected) = input.diff_ids.get(index)
            && *expected != diff_id
        {
            return Err(layer_err(ImageError::DigestMismatch {
                what: format!("uncompressed layer {} (the config's diff_id)", desc.digest),
                expected: *expected,
                found: diff_id,
            }));
        }
        let read = LayerRead {
            digest: desc.digest,
            compression: compression_name(compression),
            size: desc.size,
            diff_id,
            uncompressed_size: stream.len,
            entries,
        };
        if tx.send(Msg::Layer(read)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// File prefixes kept on disk for a later comparison, by content digest.
#[derive(Debug)]
struct Spool {
    file: File,
    dir: std::path::PathBuf,
    end: u64,
    entries: BTreeMap<[u8; 32], SpoolRef>,
}

#[derive(Debug, Clone, Copy)]
struct SpoolRef {
    offset: u64,
    len: u64,
    complete: bool,
}

impl Spool {
    fn new(dir: &Path) -> Result<Self, DiffError> {
        let file = tempfile::tempfile_in(dir).map_err(|source| DiffError::Spool {
            op: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Spool {
            file,
            dir: dir.to_path_buf(),
            end: 0,
            entries: BTreeMap::new(),
        })
    }

    fn write(&mut self, at: u64, bytes: &[u8]) -> Result<(), DiffError> {
        self.file
            .write_all_at(bytes, at)
            .map_err(|source| DiffError::Spool {
                op: "write",
                path: self.dir.clone(),
                source,
            })
    }

    fn read(&self, r: &SpoolRef, pos: u64, len: usize) -> Result<Vec<u8>, DiffError> {
        let len = len.min((r.len.saturating_sub(pos)) as usize);
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, r.offset + pos)
            .map_err(|source| DiffError::Spool {
                op: "read",
                path: self.dir.clone(),
                source,
            })?;
        Ok(buf)
    }
}

struct Current {
    layer: usize,
    header: TarHeader,
    /// Its final path (see [`Tree::place`]).
    path: Vec<u8>,
}

struct Cursor<'a> {
    image: &'a str,
    layer_digests: Vec<Sha256Digest>,
    rx: Receiver<Msg>,
    tree: Tree,
    layers: Vec<LayerRead>,
    current: Option<Current>,
    done: bool,
    spool: Spool,
    spooled: u64,
}

impl Cursor<'_> {
    /// Moves to the next entry (or to the end).
    fn advance(&mut self) -> Result<(), DiffError> {
        while !self.done && self.current.is_none() {
            match self.rx.recv() {
                Ok(Msg::Entry { layer, header }) => {
                    let placed = self
                        .tree
                        .place(&header, layer)
                        .map_err(|reason| self.entry_error(layer, &header, reason))?;
                    match placed {
                        Placement::Final(path) => {
                            self.current = Some(Current {
                                layer,
                                header,
                                path,
                            });
                        }
                        // Shadowed by a higher layer (or a marker): its
                        // content is not part of the filesystem.
                        Placement::Skip => while self.chunk()?.is_ok() {},
                    }
                }
                // Layers arrive top first.
                Ok(Msg::Layer(read)) => self.layers.insert(0, read),
                Ok(Msg::Failed(e)) => return Err(e),
                Ok(Msg::Chunk(_) | Msg::End(_)) => {
                    return Err(DiffError::Reader {
                        image: self.image.to_owned(),
                    });
                }
                Err(_) => {
                    self.done = true;
                    if self.layers.len() != self.layer_digests.len() {
                        return Err(DiffError::Reader {
                            image: self.image.to_owned(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The next content chunk of the current entry, or `Err(digest)` at
    /// its end (as `Ok(Err(..))`).
    fn chunk(&mut self) -> Result<Result<Vec<u8>, [u8; 32]>, DiffError> {
        match self.rx.recv() {
            Ok(Msg::Chunk(c)) => Ok(Ok(c)),
            Ok(Msg::End(d)) => Ok(Err(d)),
            Ok(Msg::Failed(e)) => Err(e),
            _ => Err(DiffError::Reader {
                image: self.image.to_owned(),
            }),
        }
    }

    fn entry_error(&self, layer: usize, header: &TarHeader, reason: String) -> DiffError {
        DiffError::Entry {
            image: self.image.to_owned(),
            digest: self
                .layer_digests
                .get(layer)
                .copied()
                .unwrap_or_else(|| Sha256Digest::from_bytes([0; 32])),
            entry: String::from_utf8_lossy(&header.name).into_owned(),
            reason,
        }
    }

    /// Applies the current entry with its content digest.
    fn apply(&mut self, digest: [u8; 32]) -> Result<(), DiffError> {
        let cur = self.current.take().expect("an entry is current");
        self.tree
            .insert(cur.path, &cur.header, cur.layer, digest)
            .map_err(|reason| self.entry_error(cur.layer, &cur.header, reason))?;
        Ok(())
    }
}

fn cursor<'a>(
    input: &'a Input<'_>,
    rx: Receiver<Msg>,
    spool_dir: &Path,
) -> Result<Cursor<'a>, DiffError> {
    Ok(Cursor {
        image: &input.image,
        layer_digests: input.layers.iter().map(|d| d.digest).collect(),
        rx,
        tree: Tree::new(input.raw),
        layers: Vec::new(),
        current: None,
        done: false,
        spool: Spool::new(spool_dir)?,
        spooled: 0,
    })
}

/// Reads both images and returns their trees and what was found about
/// differing contents. `spool_dir` holds the (unlinked) spool files.
pub fn read_pair(
    a: &Input<'_>,
    b: &Input<'_>,
    spool_dir: &Path,
    limits: Limits,
) -> Result<Outcome, DiffError> {
    let aligned = a.layers.len() == b.layers.len();
    std::thread::scope(|scope| {
        let (tx_a, rx_a) = sync_channel(CHANNEL);
        let (tx_b, rx_b) = sync_channel(CHANNEL);
        for (input, tx) in [(a, tx_a), (b, tx_b)] {
            scope.spawn(move || {
                if let Err(e) = read_layers(input, &tx) {
                    let _ = tx.send(Msg::Failed(e));
                }
            });
        }
        let mut ca = cursor(a, rx_a, spool_dir)?;
        let mut cb = cursor(b, rx_b, spool_dir)?;
        let mut state = State {
            details: BTreeMap::new(),
            text_left: limits.text_total,
            limits,
        };
        loop {
            ca.advance()?;
            cb.advance()?;
            let order = match (&ca.current, &cb.current) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                // Layers go top first: a higher layer comes earlier.
                (Some(x), Some(y)) if aligned => (y.layer, &x.path).cmp(&(x.layer, &y.path)),
                (Some(x), Some(y)) => x.path.cmp(&y.path),
            };
            match order {
                std::cmp::Ordering::Less => state.unpaired(&mut ca, &cb, true)?,
                std::cmp::Ordering::Greater => state.unpaired(&mut cb, &ca, false)?,
                std::cmp::Ordering::Equal => {
                    let files = [&ca, &cb].iter().all(|c| {
                        c.current
                            .as_ref()
                            .is_some_and(|e| e.header.typeflag == typeflag::FILE)
                    });
                    if files {
                        state.live(&mut ca, &mut cb)?;
                    } else {
                        state.unpaired(&mut ca, &cb, true)?;
                        state.unpaired(&mut cb, &ca, false)?;
                    }
                }
            }
        }
        Ok(Outcome {
            a: Side {
                tree: std::mem::take(&mut ca.tree),
                layers: std::mem::take(&mut ca.layers),
                spool: ca.spool,
            },
            b: Side {
                tree: std::mem::take(&mut cb.tree),
                layers: std::mem::take(&mut cb.layers),
                spool: cb.spool,
            },
            details: state.details,
            text_left: state.text_left,
        })
    })
}

struct State {
    details: BTreeMap<([u8; 32], [u8; 32]), ContentDiff>,
    text_left: usize,
    limits: Limits,
}

/// Text kept while comparing, when both sides may get a unified diff.
struct TextPair {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl State {
    /// Both images are at the same regular file: compare as it streams.
    fn live(&mut self, ca: &mut Cursor<'_>, cb: &mut Cursor<'_>) -> Result<(), DiffError> {
        let (size_a, size_b) = (
            ca.current.as_ref().map_or(0, |c| c.header.size),
            cb.current.as_ref().map_or(0, |c| c.header.size),
        );
        let path = ca
            .current
            .as_ref()
            .map(|c| String::from_utf8_lossy(&c.path).into_owned())
            .unwrap_or_default();
        let mut text = (size_a <= TEXT_CAP && size_b <= TEXT_CAP).then(|| TextPair {
            a: Vec::new(),
            b: Vec::new(),
        });
        let (mut buf_a, mut pos_a, mut end_a) = (Vec::new(), 0usize, None);
        let (mut buf_b, mut pos_b, mut end_b) = (Vec::new(), 0usize, None);
        let mut offset: u64 = 0;
        let mut first: Option<u64> = None;
        loop {
            if pos_a == buf_a.len() && end_a.is_none() {
                match ca.chunk()? {
                    Ok(c) => {
                        if let Some(t) = &mut text {
                            t.a.extend_from_slice(&c);
                        }
                        (buf_a, pos_a) = (c, 0);
                    }
                    Err(d) => end_a = Some(d),
                }
                continue;
            }
            if pos_b == buf_b.len() && end_b.is_none() {
                match cb.chunk()? {
                    Ok(c) => {
                        if let Some(t) = &mut text {
                            t.b.extend_from_slice(&c);
                        }
                        (buf_b, pos_b) = (c, 0);
                    }
                    Err(d) => end_b = Some(d),
                }
                continue;
            }
            let (ra, rb) = (buf_a.len() - pos_a, buf_b.len() - pos_b);
            if ra > 0 && rb > 0 {
                let n = ra.min(rb);
                if first.is_none()
                    && let Some(i) = content::first_difference(
                        &buf_a[pos_a..pos_a + n],
                        &buf_b[pos_b..pos_b + n],
                    )
                {
                    first = Some(offset + i as u64);
                }
                offset += n as u64;
                pos_a += n;
                pos_b += n;
                continue;
            }
            match (end_a, end_b) {
                (Some(_), Some(_)) => break,
                // One side ended: the rest of the other is not compared.
                (Some(_), None) => pos_b = buf_b.len(),
                (None, Some(_)) => pos_a = buf_a.len(),
                (None, None) => unreachable!("a side with no bytes left fetches or ends"),
            }
        }
        let (da, db) = (end_a.expect("ended"), end_b.expect("ended"));
        if da != db && !self.details.contains_key(&(da, db)) {
            if first.is_none() && size_a != size_b {
                first = Some(size_a.min(size_b));
            }
            let diff = self.detail(&path, da, db, first, None, text.as_ref());
            self.details.insert((da, db), diff);
        }
        ca.apply(da)?;
        cb.apply(db)?;
        Ok(())
    }

    fn detail(
        &mut self,
        path: &str,
        da: [u8; 32],
        db: [u8; 32],
        first: Option<u64>,
        compared: Option<u64>,
        text: Option<&TextPair>,
    ) -> ContentDiff {
        let mut diff = ContentDiff {
            digest_a: hex::encode(da),
            digest_b: hex::encode(db),
            first_difference: first,
            compared,
            ..ContentDiff::default()
        };
        if let Some(t) = text
            && content::is_text(&t.a)
            && content::is_text(&t.b)
        {
            diff.text = true;
            if self.text_left == 0 {
                diff.note =
                    Some("unified diff left out: the report's diff limit is reached".into());
            } else {
                let u = content::unified(
                    path,
                    &String::from_utf8_lossy(&t.a),
                    &String::from_utf8_lossy(&t.b),
                );
                self.text_left = self.text_left.saturating_sub(u.len());
                diff.unified = Some(u);
            }
        }
        diff
    }

    /// `x` is at an entry `y` has no partner for right now: compare its
    /// content against `y`'s spooled version of the path, if any, spool it
    /// for a later partner if `y` may still bring one, and apply it.
    fn unpaired(
        &mut self,
        x: &mut Cursor<'_>,
        y: &Cursor<'_>,
        x_is_a: bool,
    ) -> Result<(), DiffError> {
        let cur = x.current.as_ref().expect("an entry is current");
        if cur.header.typeflag != typeflag::FILE {
            // No content: just the End marker.
            return match x.chunk()? {
                Err(d) => x.apply(d),
                Ok(_) => Err(DiffError::Reader {
                    image: x.image.to_owned(),
                }),
            };
        }
        let size = cur.header.size;
        let path = String::from_utf8_lossy(&cur.path).into_owned();
        // The other image's version, if it kept a prefix of it.
        let other = match y.tree.get(&cur.path).map(|n| &n.kind) {
            Some(Kind::File { size, digest }) => {
                y.spool.entries.get(digest).map(|r| (*size, *digest, *r))
            }
            _ => None,
        };
        let budget = self.limits.spool_total.saturating_sub(x.spooled);
        let spool_cap = if y.done {
            0
        } else {
            size.min(self.limits.spool_file).min(budget)
        };
        let start = x.spool.end;
        let keep_text =
            size <= TEXT_CAP && other.is_some_and(|(s, _, r)| s <= TEXT_CAP && r.complete);
        let mut mine: Vec<u8> = Vec::new();
        let mut offset: u64 = 0;
        let mut first: Option<u64> = None;
        let digest = loop {
            match x.chunk()? {
                Ok(c) => {
                    if offset < spool_cap {
                        let n = (spool_cap - offset).min(c.len() as u64) as usize;
                        x.spool.write(start + offset, &c[..n])?;
                    }
                    if let Some((_, _, r)) = &other
                        && first.is_none()
                        && offset < r.len
                    {
                        let theirs = y.spool.read(r, offset, c.len())?;
                        let n = theirs.len();
                        if let Some(i) = content::first_difference(&c[..n], &theirs) {
                            first = Some(offset + i as u64);
                        }
                    }
                    if keep_text {
                        mine.extend_from_slice(&c);
                    }
                    offset += c.len() as u64;
                }
                Err(d) => break d,
            }
        };
        if spool_cap > 0 && !x.spool.entries.contains_key(&digest) {
            x.spool.entries.insert(
                digest,
                SpoolRef {
                    offset: start,
                    len: spool_cap,
                    complete: spool_cap == size,
                },
            );
            x.spool.end = start + spool_cap;
            x.spooled += spool_cap;
        }
        if let Some((their_size, their_digest, r)) = other
            && their_digest != digest
        {
            let key = if x_is_a {
                (digest, their_digest)
            } else {
                (their_digest, digest)
            };
            if !self.details.contains_key(&key) {
                let covered = r.len.min(size);
                let mut compared = None;
                if first.is_none() {
                    if r.complete && covered == size.min(their_size) && size != their_size {
                        first = Some(covered);
                    } else {
                        compared = Some(covered);
                    }
                }
                let text = if keep_text {
                    let theirs = y.spool.read(&r, 0, r.len as usize)?;
                    Some(if x_is_a {
                        TextPair { a: mine, b: theirs }
                    } else {
                        TextPair { a: theirs, b: mine }
                    })
                } else {
                    None
                };
                let diff = self.detail(&path, key.0, key.1, first, compared, text.as_ref());
                self.details.insert(key, diff);
            }
        }
        x.apply(digest)
    }
}

impl Outcome {
    /// Fills in how contents differ for the content changes among `diffs`
    /// (from the comparisons made while reading, else from the spools).
    pub fn fill(&mut self, diffs: &mut [PathDiff]) -> Result<(), DiffError> {
        for d in diffs.iter_mut() {
            let Some((da, db)) = d.digests else {
                continue;
            };
            if let Some(found) = self.details.get(&(da, db)) {
                d.content = Some(found.clone());
                continue;
            }
            let path = d.path.trim_start_matches('/').to_owned();
            let (ra, rb) = (
                self.a.spool.entries.get(&da).copied(),
                self.b.spool.entries.get(&db).copied(),
            );
            let diff = match (ra, rb) {
                (Some(ra), Some(rb)) => {
                    let x = self.a.spool.read(&ra, 0, ra.len as usize)?;
                    let y = self.b.spool.read(&rb, 0, rb.len as usize)?;
                    let size_a = d.a.as_ref().and_then(|s| s.size).unwrap_or(0);
                    let size_b = d.b.as_ref().and_then(|s| s.size).unwrap_or(0);
                    let mut first = content::first_difference(&x, &y).map(|i| i as u64);
                    let covered = ra.len.min(rb.len);
                    let mut compared = None;
                    if first.is_none() {
                        if ra.complete || rb.complete {
                            first = Some(covered);
                        } else {
                            compared = Some(covered);
                        }
                    }
                    let text = (ra.complete
                        && rb.complete
                        && size_a <= TEXT_CAP
                        && size_b <= TEXT_CAP)
                        .then_some(TextPair { a: x, b: y });
                    let mut state = State {
                        details: BTreeMap::new(),
                        text_left: self.text_left,
                        limits: Limits::default(),
                    };
                    let diff = state.detail(&path, da, db, first, compared, text.as_ref());
                    self.text_left = state.text_left;
                    diff
                }
                _ => ContentDiff {
                    digest_a: hex::encode(da),
                    digest_b: hex::encode(db),
                    note: Some(
                        "the two versions did not meet while the images were read and the spool limit was reached: digests and sizes only"
                            .into(),
                    ),
                    ..ContentDiff::default()
                },
            };
            d.content = Some(diff);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::tree::{self, CompareOptions, Status};
    use crate::image::layer::{Content, Entry, EntryKind, LayerOptions, write_layer};
    use crate::image::{BlobSink, OciLayout};

    fn file(path: &str, content: &str) -> Entry {
        Entry::new(
            path,
            EntryKind::File {
                size: content.len() as u64,
                content: Content::Bytes(content.as_bytes().to_vec()),
            },
        )
    }

    fn layer(layout: &OciLayout, mut entries: Vec<Entry>) -> (Descriptor, Sha256Digest) {
        let w = layout.begin_blob().unwrap();
        let (info, w) = write_layer(&mut entries, LayerOptions::default(), w).unwrap();
        w.commit().unwrap();
        (info.descriptor(), info.diff_id)
    }

    fn input<'a>(
        layout: &'a OciLayout,
        name: &str,
        layers: &[(Descriptor, Sha256Digest)],
    ) -> Input<'a> {
        Input {
            image: name.into(),
            source: layout,
            layers: layers.iter().map(|l| l.0.clone()).collect(),
            diff_ids: layers.iter().map(|l| l.1).collect(),
            raw: false,
        }
    }

    #[test]
    fn differently_split_layers_still_give_the_offset_and_text_diff_through_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(&dir.path().join("l")).unwrap();
        // A: the file in the base layer, another layer above it, and a
        // deletion; B: everything in one layer.
        let a = [
            layer(
                &layout,
                vec![
                    file("a", "1\n"),
                    file("b", "x\ny\nz\n"),
                    file("gone", "g\n"),
                ],
            ),
            layer(
                &layout,
                vec![file("c", "3\n"), Entry::new("gone", EntryKind::Whiteout)],
            ),
        ];
        let b = [layer(
            &layout,
            vec![file("a", "1\n"), file("b", "x\nY\nz\n"), file("c", "3\n")],
        )];
        let (ia, ib) = (input(&layout, "A", &a), input(&layout, "B", &b));
        let mut outcome = read_pair(&ia, &ib, dir.path(), Limits::default()).unwrap();
        assert_eq!(outcome.a.layers.len(), 2);
        assert_eq!(outcome.a.layers[1].diff_id, a[1].1);
        let mut paths = tree::compare(&outcome.a.tree, &outcome.b.tree, CompareOptions::default());
        outcome.fill(&mut paths).unwrap();
        let names: Vec<&str> = paths.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(names, ["/b"]);
        assert_eq!(paths[0].status, Status::Changed);
        let content = paths[0].content.as_ref().unwrap();
        assert_eq!(content.first_difference, Some(2));
        assert_eq!(
            content.unified.as_deref(),
            Some("--- a/b\n+++ b/b\n@@ -1,3 +1,3 @@\n x\n-y\n+Y\n z\n")
        );
    }

    #[test]
    fn a_wrong_diff_id_is_an_error_naming_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(&dir.path().join("l")).unwrap();
        let a = [layer(&layout, vec![file("a", "1\n")])];
        let mut ia = input(&layout, "A", &a);
        ia.diff_ids = vec![Sha256Digest::of(b"not it")];
        let ib = input(&layout, "B", &a);
        let err = read_pair(&ia, &ib, dir.path(), Limits::default()).unwrap_err();
        assert!(
            matches!(&err, DiffError::Layer { image, digest, .. } if image == "A" && *digest == a[0].0.digest),
            "{err:?}"
        );
    }
}
