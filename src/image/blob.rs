//! Where blobs go and come from, as two small traits, so `image` needs no
//! store: an OCI layout directory implements both, and so can the store.

use std::io::{Read, Write};

use super::digest::{Sha256Digest, VerifyingReader, unwrap_io};
use super::error::ImageError;
use super::oci::{Descriptor, ImageConfig, Manifest, media_type, to_canonical};

/// Largest JSON document (manifest, index, config) kiln reads.
pub const MAX_JSON: u64 = 8 << 20;

/// A blob being written; bytes written are hashed by the sink.
pub trait BlobWriter: Write {
    /// Makes the blob durable under its content address and returns its
    /// digest and size.
    fn commit(self: Box<Self>) -> Result<(Sha256Digest, u64), ImageError>;
}

/// Somewhere blobs can be written, named by their sha256.
pub trait BlobSink {
    /// Starts a new blob.
    fn begin_blob(&self) -> Result<Box<dyn BlobWriter + '_>, ImageError>;

    /// Whether the blob is already there (so copying can skip it).
    fn has_blob(&self, digest: &Sha256Digest) -> bool;
}

/// Somewhere blobs can be read by their sha256.
pub trait BlobSource {
    /// Opens the blob's raw bytes. Callers verify (see [`open_verified`]).
    fn open_blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, ImageError>;
}

/// Opens a blob so that reading it to the end fails unless it matches
/// `desc`'s digest and size.
pub fn open_verified<'a>(
    source: &'a dyn BlobSource,
    desc: &Descriptor,
) -> Result<VerifyingReader<Box<dyn Read + 'a>>, ImageError> {
    let raw = source.open_blob(&desc.digest)?;
    Ok(VerifyingReader::new(
        raw,
        desc.digest,
        Some(desc.size),
        format!("blob {}", desc.digest),
    ))
}

/// Reads a small blob (JSON) whole, verified, refusing more than [`MAX_JSON`].
pub fn read_verified(source: &dyn BlobSource, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
    if desc.size > MAX_JSON {
        return Err(ImageError::SizeMismatch {
            what: format!("JSON blob {} (limit)", desc.digest),
            expected: MAX_JSON,
            found: desc.size,
        });
    }
    let mut out = Vec::new();
    open_verified(source, desc)?
        .take(MAX_JSON + 1)
        .read_to_end(&mut out)
        .map_err(|e| unwrap_io(format!("read blob {}", desc.digest), e))?;
    Ok(out)
}

/// Writes `bytes` as a blob.
pub fn put_bytes(sink: &dyn BlobSink, bytes: &[u8]) -> Result<(Sha256Digest, u64), ImageError> {
    let mut w = sink.begin_blob()?;
    w.write_all(bytes)
        .map_err(|e| unwrap_io("write a blob", e))?;
    w.commit()
}

/// Copies the blob `desc` from `source` to `sink`, verifying it; does
/// nothing when the sink has it already.
pub fn copy_blob(
    source: &dyn BlobSource,
    sink: &dyn BlobSink,
    desc: &Descriptor,
) -> Result<(), ImageError> {
    if sink.has_blob(&desc.digest) {
        return Ok(());
    }
    let mut reader = open_verified(source, desc)?;
    let mut w = sink.begin_blob()?;
    std::io::copy(&mut reader, &mut w)
        .map_err(|e| unwrap_io(format!("copy blob {}", desc.digest), e))?;
    let (digest, size) = w.commit()?;
    if digest != desc.digest || size != desc.size {
        return Err(ImageError::DigestMismatch {
            what: format!("copy of blob {}", desc.digest),
            expected: desc.digest,
            found: digest,
        });
    }
    Ok(())
}

/// An image as kiln holds it: the manifest (and its descriptor) and the
/// parsed config; blobs live in some [`BlobSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The manifest's descriptor (its digest is the image digest).
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
}

/// Writes `config` and a manifest for it and `layers` into `sink`, both
/// canonical JSON, and returns the image. `layers` must match
/// `config.rootfs.diff_ids` one to one.
pub fn put_image(
    sink: &dyn BlobSink,
    config: &ImageConfig,
    layers: Vec<Descriptor>,
) -> Result<Image, ImageError> {
    if layers.len() != config.rootfs.diff_ids.len() {
        return Err(ImageError::SizeMismatch {
            what: "layer list against the config's diff_ids".into(),
            expected: config.rootfs.diff_ids.len() as u64,
            found: layers.len() as u64,
        });
    }
    let (config_bytes, _) = to_canonical(config, "image config")?;
    let (config_digest, config_size) = put_bytes(sink, &config_bytes)?;
    let manifest = Manifest::new(
        Descriptor::new(media_type::CONFIG, config_digest, config_size),
        layers,
    );
    let (manifest_bytes, _) = to_canonical(&manifest, "image manifest")?;
    let (digest, size) = put_bytes(sink, &manifest_bytes)?;
    Ok(Image {
        descriptor: Descriptor::new(media_type::MANIFEST, digest, size),
        manifest,
        config: config.clone(),
    })
}

/// Reads and verifies an image's manifest and config from `source`.
pub fn read_image(source: &dyn BlobSource, descriptor: &Descriptor) -> Result<Image, ImageError> {
    let bytes = read_verified(source, descriptor)?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::json(format!("manifest {}", descriptor.digest), e))?;
    match manifest.config.media_type.as_str() {
        media_type::CONFIG | media_type::DOCKER_CONFIG => {}
        other => {
            return Err(ImageError::UnsupportedMediaType {
                media_type: other.to_owned(),
                what: format!("config of manifest {}", descriptor.digest),
            });
        }
    }
    let config_bytes = read_verified(source, &manifest.config)?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| ImageError::json(format!("config {}", manifest.config.digest), e))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::SizeMismatch {
            what: format!(
                "layer list of manifest {} against its config",
                descriptor.digest
            ),
            expected: config.rootfs.diff_ids.len() as u64,
            found: manifest.layers.len() as u64,
        });
    }
    for layer in &manifest.layers {
        if super::compress::Compression::from_media_type(&layer.media_type).is_none() {
            return Err(ImageError::UnsupportedMediaType {
                media_type: layer.media_type.clone(),
                what: format!("layer {}", layer.digest),
            });
        }
    }
    Ok(Image {
        descriptor: descriptor.clone(),
        manifest,
        config,
    })
}

/// Copies every blob of `image` from `source` into `sink`, verifying each.
pub fn copy_image(
    source: &dyn BlobSource,
    sink: &dyn BlobSink,
    image: &Image,
) -> Result<(), ImageError> {
    for layer in &image.manifest.layers {
        copy_blob(source, sink, layer)?;
    }
    copy_blob(source, sink, &image.manifest.config)?;
    copy_blob(source, sink, &image.descriptor)
}
