//! OCI image layout directories (`oci:DIR`): `oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`.
//!
//! Blobs are written to a temporary file in the layout, hashed while
//! written, fsync'd and renamed to their address, so a crash never leaves a
//! blob under a wrong name. `index.json` is canonical JSON, its manifests
//! sorted by ref name, replaced atomically.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::blob::{self, BlobSink, BlobSource, BlobWriter, Image, MAX_JSON};
use super::digest::{HashingWriter, Sha256Digest};
use super::error::ImageError;
use super::oci::{Descriptor, Index, Platform, REF_NAME_ANNOTATION, media_type, to_canonical};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Opens `root` as a layout, creating it (and `oci-layout`) if needed.
    pub fn create(root: &Path) -> Result<Self, ImageError> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| ImageError::write(&blobs, e))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(root, &marker, OCI_LAYOUT)?;
        }
        let layout = OciLayout {
            root: root.to_path_buf(),
        };
        if !root.join("index.json").exists() {
            layout.write_index(&Index::new(Vec::new()))?;
        }
        Ok(layout)
    }

    /// Opens an existing layout, checking its `oci-layout` version.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let marker = root.join("oci-layout");
        let text = fs::read(&marker).map_err(|e| ImageError::read(&marker, e))?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| ImageError::json(marker.display().to_string(), e))?;
        if value.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(ImageError::InvalidImage {
                path: root.to_path_buf(),
                reason: "`oci-layout` does not say imageLayoutVersion 1.0.0".into(),
            });
        }
        Ok(OciLayout {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The path of a blob.
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.to_hex())
    }

    /// Reads `index.json`.
    pub fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        let file = File::open(&path).map_err(|e| ImageError::read(&path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_JSON)
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::read(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::json(path.display().to_string(), e))
    }

    /// Replaces `index.json`.
    pub fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        let (bytes, _) = to_canonical(index, "index.json")?;
        write_atomic(&self.root, &self.root.join("index.json"), &bytes)
    }

    /// Names `image` in `index.json` as `name` (annotation
    /// `org.opencontainers.image.ref.name`), replacing an image of that name.
    pub fn tag(&self, name: &str, descriptor: &Descriptor) -> Result<(), ImageError> {
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) != Some(name));
        let mut d = descriptor.clone();
        d.annotations
            .insert(REF_NAME_ANNOTATION.to_owned(), name.to_owned());
        index.manifests.push(d);
        index.manifests.sort_by(|a, b| {
            let key = |d: &Descriptor| (d.annotations.get(REF_NAME_ANNOTATION).cloned(), d.digest);
            key(a).cmp(&key(b))
        });
        self.write_index(&index)
    }

    /// Copies `image` (all blobs verified) from `source` into this layout
    /// and names it `name`.
    pub fn write_image(
        &self,
        source: &dyn BlobSource,
        image: &Image,
        name: &str,
    ) -> Result<(), ImageError> {
        blob::copy_image(source, self, image)?;
        self.tag(name, &image.descriptor)
    }

    /// Finds the image named `name` (or the only one, if `None`), following
    /// an image index to the manifest for `platform`; verifies and parses
    /// its manifest and config.
    pub fn read_image(&self, name: Option<&str>, platform: &Platform) -> Result<Image, ImageError> {
        let descriptor = self.entry(name, platform)?;
        self.resolve(&descriptor, platform, 0)
    }

    /// The `index.json` entry named `name` (by its ref-name annotation or
    /// its digest), or the only one if `None` (among several, the one for
    /// `platform`). It may be a manifest or an image index.
    pub fn entry(&self, name: Option<&str>, platform: &Platform) -> Result<Descriptor, ImageError> {
        let index = self.read_index()?;
        let names = || {
            let v: Vec<String> = index
                .manifests
                .iter()
                .map(|d| {
                    d.annotations
                        .get(REF_NAME_ANNOTATION)
                        .cloned()
                        .unwrap_or_else(|| d.digest.to_string())
                })
                .collect();
            if v.is_empty() {
                "nothing".to_owned()
            } else {
                v.join(", ")
            }
        };
        let chosen: Vec<&Descriptor> = match name {
            Some(n) => index
                .manifests
                .iter()
                .filter(|d| {
                    d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(n)
                        || d.digest.to_string() == n
                })
                .collect(),
            None => index.manifests.iter().collect(),
        };
        match chosen.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ImageError::NoSuchRef {
                name: name.unwrap_or("(any)").to_owned(),
                path: self.root.clone(),
                available: names(),
            }),
            many => {
                // Several entries: without a name, let the platform decide.
                let list: Vec<Descriptor> = many.iter().map(|d| (*d).clone()).collect();
                select_platform(&list, platform)
            }
        }
    }

    fn resolve(
        &self,
        descriptor: &Descriptor,
        platform: &Platform,
        depth: u32,
    ) -> Result<Image, ImageError> {
        match descriptor.media_type.as_str() {
            media_type::MANIFEST | media_type::DOCKER_MANIFEST => {
                blob::read_image(self, descriptor)
            }
            media_type::INDEX | media_type::DOCKER_MANIFEST_LIST if depth < 4 => {
                let bytes = blob::read_verified(self, descriptor)?;
                let index: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| ImageError::json(format!("index {}", descriptor.digest), e))?;
                let chosen = select_platform(&index.manifests, platform)?;
                self.resolve(&chosen, platform, depth + 1)
            }
            other => Err(ImageError::UnsupportedMediaType {
                media_type: other.to_owned(),
                what: format!("manifest {}", descriptor.digest),
            }),
        }
    }
}

/// Picks the manifest for `platform` from an index's descriptors (the only
/// one without a platform, if none names one).
pub fn select_platform(
    manifests: &[Descriptor],
    platform: &Platform,
) -> Result<Descriptor, ImageError> {
    if let Some(d) = manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
    {
        return Ok(d.clone());
    }
    let unnamed: Vec<&Descriptor> = manifests.iter().filter(|d| d.platform.is_none()).collect();
    if let [one] = unnamed.as_slice() {
        return Ok((*one).clone());
    }
    let available: Vec<String> = manifests
        .iter()
        .map(|d| {
            d.platform
                .as_ref()
                .map_or_else(|| "unknown".into(), ToString::to_string)
        })
        .collect();
    Err(ImageError::NoMatchingPlatform {
        platform: platform.to_string(),
        available: available.join(", "),
    })
}

impl BlobSource for OciLayout {
    fn open_blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, ImageError> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ImageError::MissingBlob { digest: *digest })
            }
            Err(e) => Err(ImageError::read(path, e)),
        }
    }
}

impl BlobSink for OciLayout {
    fn begin_blob(&self) -> Result<Box<dyn BlobWriter + '_>, ImageError> {
        let file = tempfile::Builder::new()
            .prefix(".tmp-blob-")
            .tempfile_in(&self.root)
            .map_err(|e| ImageError::write(&self.root, e))?;
        Ok(Box::new(LayoutBlobWriter {
            layout: self,
            inner: HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file)),
        }))
    }

    fn has_blob(&self, digest: &Sha256Digest) -> bool {
        self.blob_path(digest).is_file()
    }
}

struct LayoutBlobWriter<'a> {
    layout: &'a OciLayout,
    inner: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
}

impl Write for LayoutBlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter for LayoutBlobWriter<'_> {
    fn commit(self: Box<Self>) -> Result<(Sha256Digest, u64), ImageError> {
        let (buffered, digest, size) = self.inner.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| ImageError::write(&self.layout.root, e.into_error()))?;
        file.as_file()
            .sync_all()
            .map_err(|e| ImageError::write(file.path(), e))?;
        let dest = self.layout.blob_path(&digest);
        set_blob_mode(file.path())?;
        file.persist(&dest)
            .map_err(|e| ImageError::write(&dest, e.error))?;
        Ok((digest, size))
    }
}

fn set_blob_mode(path: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    // tempfile creates 0600; blobs are world-readable like other tools'.
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .map_err(|e| ImageError::write(path, e))
}

/// Writes `bytes` to `dest` through a temporary file in `dir`.
pub(crate) fn write_atomic(dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::write(dir, e))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| ImageError::write(file.path(), e))?;
    set_blob_mode(file.path())?;
    file.persist(dest)
        .map_err(|e| ImageError::write(dest, e.error))?;
    Ok(())
}
