//! Store bundles: what a build needs, in one file, for a machine without
//! network (`kiln store export` / `kiln store import`).
//!
//! A bundle is a tar written by kiln: first `kiln-bundle.json` (canonical
//! JSON: the format version, the image tags, the derivations with their
//! encodings, the outputs with their layers, and every blob's digest, size
//! and media type), then one `blobs/sha256/<hex>` entry per blob, sorted
//! by digest. Derivations come before those that refer to them.
//!
//! Import trusts nothing in it: every blob is hashed as it is read (its
//! name and its listed size must match), every derivation's encoding is
//! hashed (blake3), every layer is decompressed and hashed against its
//! diff_id, and everything a manifest, an output or a derivation refers to
//! must be in the bundle or already in the store. Only when all of that
//! holds is anything added, so a bad bundle leaves the store as it was.
//! Outputs come back with their layer trees unpacked, ready to build on.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{BuildError, io_err};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::image::oci::{Descriptor, Index, Manifest, media_type};
use crate::image::tarball::{self, TarHeader, TarReader, typeflag};
use crate::store::{DerivationKind, Layer, Output, Store};

/// The bundle format version.
pub const VERSION: u32 = 1;

/// The index entry's name, first in the tar.
pub const INDEX_NAME: &str = "kiln-bundle.json";

/// Largest index accepted.
const MAX_INDEX: u64 = 256 << 20;

/// What to put in a bundle.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Tags to carry: `(name, tag, manifest)`.
    pub tags: Vec<(String, String, Sha256Digest)>,
    /// Manifests or indexes to carry with everything they reference.
    pub manifests: Vec<Sha256Digest>,
    /// Derivations to carry (with the derivations they refer to).
    pub derivations: Vec<Blake3Digest>,
    /// Derivations whose outputs (layers, config) to carry.
    pub outputs: Vec<Blake3Digest>,
    /// The SOURCE_DATE_EPOCH those derivations were planned with: a step
    /// layer held only as its tree is packed into its blob with it.
    pub source_date_epoch: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct BundleIndex {
    version: u32,
    images: Vec<TagEntry>,
    derivations: Vec<DerivationEntry>,
    outputs: Vec<OutputEntry>,
    blobs: Vec<BlobEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TagEntry {
    name: String,
    tag: String,
    manifest: Sha256Digest,
}

#[derive(Debug, Serialize, Deserialize)]
struct DerivationEntry {
    hash: Blake3Digest,
    kind: String,
    stage: String,
    name: String,
    refs: Vec<Blake3Digest>,
    /// The canonical encoding (always UTF-8 text).
    encoding: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OutputEntry {
    derivation: Blake3Digest,
    layers: Vec<LayerEntry>,
    config: Option<Sha256Digest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerEntry {
    diff_id: Sha256Digest,
    blob: Sha256Digest,
}

#[derive(Debug, Serialize, Deserialize)]
struct BlobEntry {
    digest: Sha256Digest,
    size: u64,
    media_type: String,
}

/// What an export or import moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Blobs (and their bytes).
    pub blobs: u64,
    /// Total blob bytes.
    pub bytes: u64,
    /// Derivations.
    pub derivations: u64,
    /// Outputs.
    pub outputs: u64,
    /// Tags.
    pub images: u64,
}

fn invalid(bundle: &Path, reason: impl Into<String>) -> BuildError {
    BuildError::Bundle {
        path: bundle.to_path_buf(),
        reason: reason.into(),
    }
}

fn missing(what: String) -> BuildError {
    BuildError::Step {
        line: 0,
        message: what,
    }
}

/// The blobs a manifest or index names, read from the store.
fn referenced(store: &Store, digest: &Sha256Digest) -> Result<Vec<Sha256Digest>, BuildError> {
    let media = store.blob_media_type(digest)?.unwrap_or_default();
    let path = store
        .blob_path(digest)?
        .ok_or_else(|| missing(format!("blob {digest} is not in the store")))?;
    let bytes = fs::read(&path).map_err(io_err("read", &path))?;
    manifest_refs(&media, &bytes).map_err(|reason| missing(format!("{digest}: {reason}")))
}

/// The blobs a manifest (config, layers) or an index (manifests) names.
fn manifest_refs(media: &str, bytes: &[u8]) -> Result<Vec<Sha256Digest>, String> {
    if media == media_type::INDEX || media.ends_with("manifest.list.v2+json") {
        let index: Index = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        return Ok(index.manifests.iter().map(|d| d.digest).collect());
    }
    if crate::store::MANIFEST_MEDIA_TYPES.contains(&media) {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut out = vec![m.config.digest];
        out.extend(m.layers.iter().map(|l| l.digest));
        return Ok(out);
    }
    Ok(Vec::new())
}

/// Writes a bundle of `contents` from `store` to `out`.
pub fn export(store: &Store, contents: &Contents, out: impl Write) -> Result<Summary, BuildError> {
    let mut blobs: BTreeSet<Sha256Digest> = BTreeSet::new();
    // Manifests and indexes with what they reference; for an index only the
    // manifests this store has (the platforms it pulled).
    let mut todo: Vec<Sha256Digest> = contents.manifests.clone();
    todo.extend(contents.tags.iter().map(|t| t.2));
    while let Some(d) = todo.pop() {
        if !blobs.insert(d) {
            continue;
        }
        let media = store.blob_media_type(&d)?.unwrap_or_default();
        let index = media == media_type::INDEX || media.ends_with("manifest.list.v2+json");
        for r in referenced(store, &d)? {
            if index && store.blob_path(&r)?.is_none() {
                continue;
            }
            todo.push(r);
        }
    }
    // Derivations, closed over their refs, refs first.
    let mut derivations: BTreeMap<Blake3Digest, crate::store::Derivation> = BTreeMap::new();
    let mut stack: Vec<Blake3Digest> = contents.derivations.clone();
    stack.extend(contents.outputs.iter().copied());
    while let Some(h) = stack.pop() {
        if derivations.contains_key(&h) {
            continue;
        }
        let drv = store
            .derivation(&h)?
            .ok_or_else(|| missing(format!("derivation {h} is not in the store")))?;
        stack.extend(drv.refs.iter().copied());
        derivations.insert(h, drv);
    }
    let mut ordered: Vec<DerivationEntry> = Vec::new();
    let mut placed: BTreeSet<Blake3Digest> = BTreeSet::new();
    while placed.len() < derivations.len() {
        let before = placed.len();
        for (h, d) in &derivations {
            if placed.contains(h) || !d.refs.iter().all(|r| placed.contains(r)) {
                continue;
            }
            placed.insert(*h);
            ordered.push(DerivationEntry {
                hash: *h,
                kind: d.kind.as_str().to_owned(),
                stage: d.stage.clone(),
                name: d.name.clone(),
                refs: d.refs.clone(),
                encoding: String::from_utf8(d.bytes.clone())
                    .map_err(|_| missing(format!("derivation {h} is not UTF-8")))?,
            });
        }
        if placed.len() == before {
            return Err(missing(
                "the derivations refer to each other in a cycle".into(),
            ));
        }
    }
    let mut outputs = Vec::new();
    for h in &contents.outputs {
        let Some(mut o) = store.output(h)? else {
            continue;
        };
        for l in &mut o.layers {
            let blob = super::ensure_layer_blob(store, h, l, contents.source_date_epoch)?;
            l.blob = Some(blob);
            blobs.insert(blob);
        }
        if let Some(c) = o.config {
            blobs.insert(c);
        }
        outputs.push(OutputEntry {
            derivation: *h,
            layers: o
                .layers
                .iter()
                .filter_map(|l| {
                    Some(LayerEntry {
                        diff_id: l.diff_id,
                        blob: l.blob?,
                    })
                })
                .collect(),
            config: o.config,
        });
    }
    let mut entries = Vec::new();
    for d in &blobs {
        let path = store
            .blob_path(d)?
            .ok_or_else(|| missing(format!("blob {d} is not in the store")))?;
        let size = fs::metadata(&path).map_err(io_err("read", &path))?.len();
        entries.push((
            BlobEntry {
                digest: *d,
                size,
                media_type: store.blob_media_type(d)?.unwrap_or_default(),
            },
            path,
        ));
    }
    let index = BundleIndex {
        version: VERSION,
        images: contents
            .tags
            .iter()
            .map(|(n, t, m)| TagEntry {
                name: n.clone(),
                tag: t.clone(),
                manifest: *m,
            })
            .collect(),
        derivations: ordered,
        outputs,
        blobs: entries
            .iter()
            .map(|(b, _)| b)
            .map(|b| BlobEntry {
                digest: b.digest,
                size: b.size,
                media_type: b.media_type.clone(),
            })
            .collect(),
    };
    let json = crate::image::json::canonical(&index).expect("the index serializes");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    let werr = |e: std::io::Error| BuildError::Io {
        op: "write",
        path: PathBuf::from("the bundle"),
        source: e,
    };
    let header = |name: String, size: u64| TarHeader {
        name: name.into_bytes(),
        typeflag: typeflag::FILE,
        mode: 0o644,
        size,
        ..TarHeader::default()
    };
    tarball::write_header(&mut w, &header(INDEX_NAME.to_owned(), json.len() as u64))
        .map_err(werr)?;
    w.write_all(&json).map_err(werr)?;
    tarball::write_padding(&mut w, json.len() as u64).map_err(werr)?;
    let mut summary = Summary {
        derivations: index.derivations.len() as u64,
        outputs: index.outputs.len() as u64,
        images: index.images.len() as u64,
        ..Summary::default()
    };
    for (b, path) in &entries {
        tarball::write_header(
            &mut w,
            &header(format!("blobs/sha256/{}", b.digest.to_hex()), b.size),
        )
        .map_err(werr)?;
        let mut f = fs::File::open(path).map_err(io_err("open", path))?;
        let n = std::io::copy(&mut (&mut f).take(b.size), &mut w).map_err(werr)?;
        if n != b.size {
            return Err(missing(format!(
                "blob {} shrank while it was exported",
                b.digest
            )));
        }
        tarball::write_padding(&mut w, b.size).map_err(werr)?;
        summary.blobs += 1;
        summary.bytes += b.size;
    }
    tarball::write_end(&mut w).map_err(werr)?;
    w.flush().map_err(werr)?;
    Ok(summary)
}

/// The sha256 of a layer blob's uncompressed bytes.
fn diff_id_of(path: &Path) -> Result<Sha256Digest, BuildError> {
    let f = fs::File::open(path).map_err(io_err("open", path))?;
    let mut r = crate::image::compress::decompress(std::io::BufReader::with_capacity(1 << 20, f))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(io_err("decompress", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
}

/// Verifies the bundle at `path` whole, then adds everything in it.
pub fn import(store: &Store, path: &Path) -> Result<Summary, BuildError> {
    let file = fs::File::open(path).map_err(io_err("open", path))?;
    let mut tar = TarReader::new(tarball::Stream(std::io::BufReader::with_capacity(
        1 << 20,
        file,
    )));
    let first = tar
        .next_header()?
        .ok_or_else(|| invalid(path, "it is empty"))?;
    if first.name != INDEX_NAME.as_bytes() || first.size > MAX_INDEX {
        return Err(invalid(
            path,
            format!("it does not start with {INDEX_NAME}"),
        ));
    }
    let mut json = Vec::new();
    tar.content()
        .read_to_end(&mut json)
        .map_err(io_err("read", path))?;
    let index: BundleIndex = serde_json::from_slice(&json)
        .map_err(|e| invalid(path, format!("{INDEX_NAME} is not valid: {e}")))?;
    if index.version != VERSION {
        return Err(invalid(
            path,
            format!(
                "it is bundle version {}, this kiln reads {VERSION}",
                index.version
            ),
        ));
    }
    let listed: BTreeMap<Sha256Digest, &BlobEntry> =
        index.blobs.iter().map(|b| (b.digest, b)).collect();

    // Every blob, hashed into the store's tmp dir.
    let staging = store.tmp_dir()?;
    let mut staged: BTreeMap<Sha256Digest, PathBuf> = BTreeMap::new();
    while let Some(h) = tar.next_header()? {
        let name = String::from_utf8_lossy(&h.name).into_owned();
        let digest = name
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Sha256Digest::from_hex(hex).ok())
            .ok_or_else(|| invalid(path, format!("unexpected entry `{name}`")))?;
        let entry = listed
            .get(&digest)
            .ok_or_else(|| invalid(path, format!("blob {digest} is not in its index")))?;
        if h.typeflag != typeflag::FILE || h.size != entry.size {
            return Err(invalid(
                path,
                format!(
                    "blob {digest} is {} bytes, its index says {}",
                    h.size, entry.size
                ),
            ));
        }
        let dest = staging.path().join(digest.to_hex());
        let mut out = fs::File::create(&dest).map_err(io_err("create", &dest))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut content = tar.content();
        loop {
            let n = content.read(&mut buf).map_err(io_err("read", path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err("write", &dest))?;
        }
        let found = Sha256Digest::from_bytes(hasher.finalize().into());
        if found != digest {
            return Err(invalid(
                path,
                format!("blob {digest} hashed to {found}: it is damaged"),
            ));
        }
        staged.insert(digest, dest);
    }
    let have = |d: &Sha256Digest| -> Result<bool, BuildError> {
        Ok(staged.contains_key(d) || store.blob_path(d)?.is_some())
    };
    for b in &index.blobs {
        if !have(&b.digest)? {
            return Err(invalid(
                path,
                format!("blob {} is listed but missing", b.digest),
            ));
        }
    }
    // Manifests: what they name is there (an index may lack platforms).
    for b in &index.blobs {
        let Some(file) = staged.get(&b.digest) else {
            continue;
        };
        if !crate::store::MANIFEST_MEDIA_TYPES.contains(&b.media_type.as_str()) {
            continue;
        }
        let bytes = fs::read(file).map_err(io_err("read", file))?;
        let refs = manifest_refs(&b.media_type, &bytes)
            .map_err(|e| invalid(path, format!("manifest {}: {e}", b.digest)))?;
        let index_type =
            b.media_type == media_type::INDEX || b.media_type.ends_with("list.v2+json");
        for r in refs {
            if !index_type && !have(&r)? {
                return Err(invalid(
                    path,
                    format!("manifest {} names {r}, which is missing", b.digest),
                ));
            }
        }
    }
    // Derivations: hashes, and refs before use.
    let mut known: BTreeSet<Blake3Digest> = BTreeSet::new();
    for d in &index.derivations {
        let found = Blake3Digest::of(d.encoding.as_bytes());
        if found != d.hash {
            return Err(invalid(
                path,
                format!("derivation {} hashed to {found}: it is damaged", d.hash),
            ));
        }
        if !matches!(d.kind.as_str(), "step" | "stage") {
            return Err(invalid(
                path,
                format!("derivation {} has kind `{}`", d.hash, d.kind),
            ));
        }
        for r in &d.refs {
            if !known.contains(r) && store.derivation(r)?.is_none() {
                return Err(invalid(
                    path,
                    format!("derivation {} refers to {r}, which is missing", d.hash),
                ));
            }
        }
        known.insert(d.hash);
    }
    // Outputs: their derivation, blobs and diff_ids.
    for o in &index.outputs {
        if !known.contains(&o.derivation) && store.derivation(&o.derivation)?.is_none() {
            return Err(invalid(
                path,
                format!("output of {} has no derivation", o.derivation),
            ));
        }
        if let Some(c) = &o.config
            && !have(c)?
        {
            return Err(invalid(path, format!("config {c} is missing")));
        }
        for l in &o.layers {
            match staged.get(&l.blob) {
                Some(file) => {
                    let found = diff_id_of(file)?;
                    if found != l.diff_id {
                        return Err(invalid(
                            path,
                            format!(
                                "layer {} unpacks to diff_id {found}, not {}",
                                l.blob, l.diff_id
                            ),
                        ));
                    }
                }
                None if store.blob_path(&l.blob)?.is_some() => {}
                None => return Err(invalid(path, format!("layer {} is missing", l.blob))),
            }
        }
    }
    for t in &index.images {
        if !have(&t.manifest)? {
            return Err(invalid(
                path,
                format!("image {}:{} has no manifest", t.name, t.tag),
            ));
        }
    }

    // Everything holds: add it. Layers and configs before the manifests
    // that name them.
    let mut summary = Summary::default();
    let mut order: Vec<&BlobEntry> = index.blobs.iter().collect();
    order.sort_by_key(|b| crate::store::MANIFEST_MEDIA_TYPES.contains(&b.media_type.as_str()));
    order.sort_by_key(|b| {
        b.media_type == media_type::INDEX || b.media_type.ends_with("list.v2+json")
    });
    for b in order {
        let Some(file) = staged.get(&b.digest) else {
            continue;
        };
        let mut f = fs::File::open(file).map_err(io_err("open", file))?;
        store.add_blob(&mut f, &b.media_type, Some(&b.digest))?;
        summary.blobs += 1;
        summary.bytes += b.size;
    }
    for d in &index.derivations {
        let kind = if d.kind == "stage" {
            DerivationKind::Stage
        } else {
            DerivationKind::Step
        };
        store.record_derivation(
            &d.hash,
            d.encoding.as_bytes(),
            kind,
            &d.stage,
            &d.name,
            &d.refs,
        )?;
        summary.derivations += 1;
    }
    for o in &index.outputs {
        if store.output(&o.derivation)?.is_some() {
            continue;
        }
        let mut layers = Vec::new();
        for l in &o.layers {
            let media = store
                .blob_media_type(&l.blob)?
                .unwrap_or_else(|| media_type::LAYER_GZIP.to_owned());
            let size = store
                .blob_path(&l.blob)?
                .map(|p| fs::metadata(&p).map(|m| m.len()))
                .transpose()
                .map_err(io_err("read", path))?
                .unwrap_or(0);
            let tree =
                super::layer_tree(store, &Descriptor::new(&media, l.blob, size), &l.diff_id)?;
            layers.push(Layer {
                diff_id: l.diff_id,
                blob: Some(l.blob),
                tree: super::tree_key_of(&tree),
            });
        }
        store.record_output(
            &o.derivation,
            &Output {
                layers,
                config: o.config,
            },
        )?;
        summary.outputs += 1;
    }
    for t in &index.images {
        store.tag_image(&t.name, &t.tag, &t.manifest, None)?;
        summary.images += 1;
    }
    Ok(summary)
}
