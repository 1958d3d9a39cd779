//! docker-archive tars (`docker save` / `docker load`, `podman load`,
//! `skopeo ... docker-archive:FILE`).
//!
//! Written form: `<config hex>.json` (the config's exact bytes, so the image
//! ID is the config digest), one uncompressed `<diff_id hex>.tar` per distinct
//! layer, and `manifest.json` =
//! `[{"Config":..,"Layers":[..],"RepoTags":[..]}]` in canonical JSON. Entries
//! are sorted by name, mode 0644, owner 0, mtime 0, written with kiln's own
//! tar headers. The legacy `repositories` file and per-layer v1 directories
//! are not written: `docker load`, `podman load` and skopeo use
//! `manifest.json` whenever it exists.
//!
//! Reading accepts any archive whose `manifest.json` names the config and
//! layers (classic `docker save`, skopeo, docker 25+'s OCI-in-tar), verifies
//! the config's digest against its file name when that is a digest, and
//! every layer's diff_id against the config.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::blob::{self, BlobSink, BlobSource, Image, MAX_JSON};
use super::compress::{self, Compression};
use super::digest::{Sha256Digest, VerifyingReader, unwrap_io};
use super::error::ImageError;
use super::oci::{Descriptor, ImageConfig, Manifest, media_type, to_canonical};
use super::tarball::{self, Seekable, TarHeader, TarReader, typeflag};

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveManifest {
    /// Path of the config file in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// `name:tag` references.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars, base first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn file_header(name: &str, size: u64) -> TarHeader {
    TarHeader {
        name: name.as_bytes().to_vec(),
        typeflag: typeflag::FILE,
        mode: 0o644,
        size,
        ..TarHeader::default()
    }
}

/// Writes `image` (blobs from `source`, each verified) as a docker-archive
/// to `out`, tagged `repo_tags` (e.g. `localhost/busybox:latest`).
pub fn write<W: Write>(
    source: &dyn BlobSource,
    image: &Image,
    repo_tags: &[String],
    out: W,
) -> Result<W, ImageError> {
    let config_bytes = blob::read_verified(source, &image.manifest.config)?;
    let config_name = format!("{}.json", image.manifest.config.digest.to_hex());
    // Distinct layers by diff_id; the first descriptor carrying one is used.
    let mut layers: BTreeMap<String, (Descriptor, Sha256Digest)> = BTreeMap::new();
    let mut layer_names = Vec::new();
    for (desc, diff_id) in image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
    {
        let name = format!("{}.tar", diff_id.to_hex());
        layers
            .entry(name.clone())
            .or_insert_with(|| (desc.clone(), *diff_id));
        layer_names.push(name);
    }
    let manifest = vec![ArchiveManifest {
        config: config_name.clone(),
        repo_tags: Some(repo_tags.to_vec()),
        layers: layer_names,
    }];
    let (manifest_bytes, _) = to_canonical(&manifest, "manifest.json")?;

    enum Item<'a> {
        Bytes(&'a [u8]),
        Layer(&'a Descriptor, Sha256Digest),
    }
    let mut items: BTreeMap<String, Item<'_>> = BTreeMap::new();
    items.insert(config_name, Item::Bytes(&config_bytes));
    items.insert("manifest.json".into(), Item::Bytes(&manifest_bytes));
    for (name, (desc, diff_id)) in &layers {
        items.insert(name.clone(), Item::Layer(desc, *diff_id));
    }

    let mut out = io::BufWriter::with_capacity(256 * 1024, out);
    let op = |name: &str| format!("write `{name}` to the docker-archive");
    for (name, item) in &items {
        match item {
            Item::Bytes(bytes) => {
                tarball::write_header(&mut out, &file_header(name, bytes.len() as u64))
                    .and_then(|()| out.write_all(bytes))
                    .and_then(|()| tarball::write_padding(&mut out, bytes.len() as u64))
                    .map_err(|e| unwrap_io(op(name), e))?;
            }
            Item::Layer(desc, diff_id) => {
                // Pass 1: the uncompressed size (and both digests checked).
                let size = uncompressed_size(source, desc, diff_id)?;
                tarball::write_header(&mut out, &file_header(name, size))
                    .map_err(|e| unwrap_io(op(name), e))?;
                // Pass 2: the bytes.
                let mut reader = compress::decompress(blob::open_verified(source, desc)?)?;
                let copied = io::copy(&mut reader, &mut out).map_err(|e| unwrap_io(op(name), e))?;
                if copied != size {
                    return Err(ImageError::SizeMismatch {
                        what: format!("layer {} on second read", desc.digest),
                        expected: size,
                        found: copied,
                    });
                }
                tarball::write_padding(&mut out, size).map_err(|e| unwrap_io(op(name), e))?;
            }
        }
    }
    tarball::write_end(&mut out).map_err(|e| unwrap_io("end the docker-archive", e))?;
    out.into_inner()
        .map_err(|e| unwrap_io("flush the docker-archive", e.into_error()))
}

/// Reads the layer blob `desc`, checks its digest and that it decompresses to
/// `diff_id`, and returns the uncompressed size.
pub fn uncompressed_size(
    source: &dyn BlobSource,
    desc: &Descriptor,
    diff_id: &Sha256Digest,
) -> Result<u64, ImageError> {
    let reader = compress::decompress(blob::open_verified(source, desc)?)?;
    let mut hashing = VerifyingReader::new(
        reader,
        *diff_id,
        None,
        format!("diff_id of layer {}", desc.digest),
    );
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| unwrap_io(format!("read layer {}", desc.digest), e))
}

/// An opened docker-archive: its file index and `manifest.json`.
pub struct DockerArchive {
    path: PathBuf,
    file: File,
    files: BTreeMap<String, (u64, u64)>,
    links: BTreeMap<String, String>,
    manifest: Vec<ArchiveManifest>,
}

fn normalize(name: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(name).into_owned();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest.to_owned();
    }
    s.trim_start_matches('/').to_owned()
}

impl DockerArchive {
    /// Indexes the archive at `path` and parses its `manifest.json`.
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let file = File::open(path).map_err(|e| ImageError::read(path, e))?;
        let mut tar = TarReader::new(Seekable(
            file.try_clone().map_err(|e| ImageError::read(path, e))?,
        ));
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        while let Some(h) = tar.next_header()? {
            if h.typeflag != typeflag::FILE {
                // Symlinks (legacy `<id>/layer.tar -> ../x.tar`) are followed
                // one level below.
                if h.typeflag == typeflag::SYMLINK {
                    let name = normalize(&h.name);
                    let mut parts: Vec<&str> = name.split('/').collect();
                    parts.pop();
                    let target = String::from_utf8_lossy(&h.linkname).into_owned();
                    for c in target.split('/') {
                        match c {
                            ".." => {
                                parts.pop();
                            }
                            "" | "." => {}
                            c => parts.push(c),
                        }
                    }
                    let resolved = parts.join("/");
                    links.insert(name, resolved);
                }
                continue;
            }
            let offset = tar
                .get_mut()
                .position()
                .map_err(|e| ImageError::read(path, e))?;
            files.insert(normalize(&h.name), (offset, h.size));
        }
        let mut archive = DockerArchive {
            path: path.to_path_buf(),
            file,
            files,
            links,
            manifest: Vec::new(),
        };
        let bytes = archive.read_small("manifest.json")?;
        archive.manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::json(format!("manifest.json of {}", path.display()), e))?;
        Ok(archive)
    }

    /// The archive's `manifest.json` entries.
    pub fn manifest(&self) -> &[ArchiveManifest] {
        &self.manifest
    }

    fn locate(&self, name: &str) -> Result<(u64, u64), ImageError> {
        let name = normalize(name.as_bytes());
        match self.files.get(&name) {
            Some(&(offset, size)) => Ok((offset, size)),
            _ => Err(ImageError::InvalidImage {
                path: self.path.clone(),
                reason: format!("`{name}` is not a regular file in the archive"),
            }),
        }
    }

    fn open_file(&self, name: &str) -> Result<(impl Read + '_, u64), ImageError> {
        let (offset, size) = self.locate(name)?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| ImageError::read(&self.path, e))?;
        Ok((io::BufReader::with_capacity(256 * 1024, f.take(size)), size))
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let (reader, size) = self.open_file(name)?;
        if size > MAX_JSON {
            return Err(ImageError::InvalidImage {
                path: self.path.clone(),
                reason: format!("`{name}` is {size} bytes, larger than kiln reads"),
            });
        }
        let mut out = Vec::new();
        let mut reader = reader;
        reader
            .read_to_end(&mut out)
            .map_err(|e| ImageError::read(&self.path, e))?;
        Ok(out)
    }

    /// The `manifest.json` entry tagged `tag` (or the only one).
    fn entry(&self, tag: Option<&str>) -> Result<&ArchiveManifest, ImageError> {
        let entry = match tag {
            Some(t) => self
                .manifest
                .iter()
                .find(|m| m.repo_tags.iter().flatten().any(|r| r == t)),
            None if self.manifest.len() == 1 => self.manifest.first(),
            None => None,
        };
        entry.ok_or_else(|| {
            let tags: Vec<String> = self
                .manifest
                .iter()
                .flat_map(|m| m.repo_tags.iter().flatten().cloned())
                .collect();
            ImageError::NoSuchRef {
                name: tag.unwrap_or("(the only image)").to_owned(),
                path: self.path.clone(),
                available: if tags.is_empty() {
                    "nothing".into()
                } else {
                    tags.join(", ")
                },
            }
        })
    }

    /// An entry's config: its bytes, digest (checked against the file name
    /// when that is a digest) and parsed form, its diff_ids checked to be
    /// as many as the entry's layers.
    fn read_config(
        &self,
        entry: &ArchiveManifest,
    ) -> Result<(Vec<u8>, Sha256Digest, ImageConfig), ImageError> {
        let config_bytes = self.read_small(&entry.config)?;
        let config_digest = Sha256Digest::of(&config_bytes);
        let stem = entry
            .config
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if let Ok(named) = Sha256Digest::from_hex(stem)
            && named != config_digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("config `{}`", entry.config),
                expected: named,
                found: config_digest,
            });
        }
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::json(format!("config `{}`", entry.config), e))?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ImageError::SizeMismatch {
                what: format!("layer list of {} against its config", self.path.display()),
                expected: config.rootfs.diff_ids.len() as u64,
                found: entry.layers.len() as u64,
            });
        }
        Ok((config_bytes, config_digest, config))
    }

    /// The image tagged `tag` (or the only one) as a [`BlobSource`], read
    /// in place: its config and layer files by digest, and an OCI manifest
    /// kiln synthesizes for them (an archive has none). A layer's digest
    /// is its diff_id when it is stored uncompressed (as `docker save` and
    /// skopeo write it), else the digest in its `blobs/sha256/` name, else
    /// computed by reading it.
    pub fn image_source(&self, tag: Option<&str>) -> Result<ArchiveImage<'_>, ImageError> {
        let entry = self.entry(tag)?;
        let (config_bytes, config_digest, config) = self.read_config(entry)?;
        let mut files = BTreeMap::new();
        let mut layers = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let name = self.resolve_link(name);
            let (offset, size) = self.locate(&name)?;
            let mut head = [0u8; 4];
            let n = read_at(&self.file, &mut head[..(size.min(4) as usize)], offset)
                .map_err(|e| ImageError::read(&self.path, e))?;
            let compression = compress::detect(&head[..n]);
            let named = name
                .strip_prefix("blobs/sha256/")
                .and_then(|h| Sha256Digest::from_hex(h).ok());
            let digest = match (compression, named) {
                (Compression::None, _) => *diff_id,
                (_, Some(d)) => d,
                _ => {
                    let mut r = VerifyingReader::hashing(ArchiveReader {
                        file: &self.file,
                        pos: offset,
                        end: offset + size,
                    });
                    io::copy(&mut r, &mut io::sink())
                        .map_err(|e| ImageError::read(&self.path, e))?;
                    r.finish().0
                }
            };
            files.insert(digest, (offset, size));
            layers.push(Descriptor::new(
                compression.layer_media_type(),
                digest,
                size,
            ));
        }
        let manifest = Manifest::new(
            Descriptor::new(media_type::CONFIG, config_digest, config_bytes.len() as u64),
            layers,
        );
        let (manifest_bytes, manifest_digest) = to_canonical(&manifest, "image manifest")?;
        Ok(ArchiveImage {
            archive: self,
            image: Image {
                descriptor: Descriptor::new(
                    media_type::MANIFEST,
                    manifest_digest,
                    manifest_bytes.len() as u64,
                ),
                manifest,
                config,
            },
            files,
            manifest_bytes,
            config_bytes,
        })
    }

    /// Loads the image tagged `tag` (or the only one) into `sink`: the
    /// config's bytes unchanged, each layer as stored (its media type from
    /// its compression), every diff_id verified; returns the image, whose
    /// manifest is a new OCI manifest.
    pub fn load(&self, tag: Option<&str>, sink: &dyn BlobSink) -> Result<Image, ImageError> {
        let entry = self.entry(tag)?;
        let (config_bytes, config_digest, config) = self.read_config(entry)?;
        let mut layers = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            layers.push(self.load_layer(name, diff_id, sink)?);
        }
        let (config_stored, config_size) = blob::put_bytes(sink, &config_bytes)?;
        debug_assert_eq!(config_stored, config_digest);
        let manifest = Manifest::new(
            Descriptor::new(media_type::CONFIG, config_digest, config_size),
            layers,
        );
        let (manifest_bytes, _) = to_canonical(&manifest, "image manifest")?;
        let (digest, size) = blob::put_bytes(sink, &manifest_bytes)?;
        Ok(Image {
            descriptor: Descriptor::new(media_type::MANIFEST, digest, size),
            manifest,
            config,
        })
    }

    fn load_layer(
        &self,
        name: &str,
        diff_id: &Sha256Digest,
        sink: &dyn BlobSink,
    ) -> Result<Descriptor, ImageError> {
        let name = self.resolve_link(name);
        // Pass 1: the diff_id, and the compression.
        let (reader, _) = self.open_file(&name)?;
        let mut head = io::BufReader::new(reader);
        let compression = {
            use io::BufRead;
            compress::detect(
                head.fill_buf()
                    .map_err(|e| ImageError::read(&self.path, e))?,
            )
        };
        let mut verifying = VerifyingReader::new(
            compress::decompress(head)?,
            *diff_id,
            None,
            format!("layer `{name}`"),
        );
        io::copy(&mut verifying, &mut io::sink())
            .map_err(|e| unwrap_io(format!("read layer `{name}`"), e))?;
        // Pass 2: store the bytes as they are.
        let (mut reader, _) = self.open_file(&name)?;
        let mut w = sink.begin_blob()?;
        io::copy(&mut reader, &mut w).map_err(|e| unwrap_io(format!("store layer `{name}`"), e))?;
        let (digest, size) = w.commit()?;
        let media = match compression {
            Compression::Gzip => media_type::LAYER_GZIP,
            Compression::Zstd => media_type::LAYER_ZSTD,
            Compression::None => media_type::LAYER,
        };
        Ok(Descriptor::new(media, digest, size))
    }

    fn resolve_link(&self, name: &str) -> String {
        // Legacy archives link `<id>/layer.tar` to the real file.
        let mut name = normalize(name.as_bytes());
        for _ in 0..8 {
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        name
    }
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A file inside the archive, read with positional reads (so several can
/// be read at once from one open archive).
struct ArchiveReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for ArchiveReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        let n = self.file.read_at(&mut buf[..n], self.pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// One image of a docker-archive read in place (see
/// [`DockerArchive::image_source`]).
pub struct ArchiveImage<'a> {
    archive: &'a DockerArchive,
    /// The image; its manifest is synthesized by kiln.
    pub image: Image,
    files: BTreeMap<Sha256Digest, (u64, u64)>,
    manifest_bytes: Vec<u8>,
    config_bytes: Vec<u8>,
}

impl BlobSource for ArchiveImage<'_> {
    fn open_blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, ImageError> {
        if *digest == self.image.descriptor.digest {
            return Ok(Box::new(&self.manifest_bytes[..]));
        }
        if *digest == self.image.manifest.config.digest {
            return Ok(Box::new(&self.config_bytes[..]));
        }
        let &(offset, size) = self
            .files
            .get(digest)
            .ok_or(ImageError::MissingBlob { digest: *digest })?;
        Ok(Box::new(io::BufReader::with_capacity(
            256 * 1024,
            ArchiveReader {
                file: &self.archive.file,
                pos: offset,
                end: offset + size,
            },
        )))
    }
}
