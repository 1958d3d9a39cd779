//! The store's blobs seen through the image module's [`BlobSink`] and
//! [`BlobSource`] traits.

use std::io::{Read, Seek, Write};

use crate::image::blob::{BlobSink, BlobSource, BlobWriter};
use crate::image::oci::media_type;
use crate::image::{self, ImageError};
use crate::store::Store;

/// The store as a blob sink and source.
pub struct StoreBlobs<'a> {
    /// The store.
    pub store: &'a Store,
}

struct Writer<'a> {
    store: &'a Store,
    file: tempfile::NamedTempFile,
}

fn store_error(e: crate::store::StoreError) -> ImageError {
    ImageError::write(std::path::Path::new("store"), std::io::Error::other(e))
}

/// The media type a blob is recorded under: manifests and indexes by their
/// `mediaType`, configs by their `rootfs`, layers by their compression.
fn sniff(head: &[u8], whole: impl FnOnce() -> Vec<u8>) -> String {
    if head.first() == Some(&b'{') {
        let bytes = whole();
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            if let Some(mt) = value.get("mediaType").and_then(|v| v.as_str())
                && crate::store::MANIFEST_MEDIA_TYPES.contains(&mt)
            {
                return mt.to_owned();
            }
            if value.get("rootfs").is_some() {
                return media_type::CONFIG.to_owned();
            }
            if value.get("layers").is_some() {
                return media_type::MANIFEST.to_owned();
            }
        }
        return "application/octet-stream".to_owned();
    }
    image::compress::detect(head).layer_media_type().to_owned()
}

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter for Writer<'_> {
    fn commit(mut self: Box<Self>) -> Result<(image::Sha256Digest, u64), ImageError> {
        let path = self.file.path().to_path_buf();
        let f = self.file.as_file_mut();
        f.flush().map_err(|e| ImageError::write(&path, e))?;
        f.rewind().map_err(|e| ImageError::write(&path, e))?;
        let mut head = [0u8; 512];
        let n = f.read(&mut head).map_err(|e| ImageError::write(&path, e))?;
        let media = sniff(&head[..n], || std::fs::read(&path).unwrap_or_default());
        f.rewind().map_err(|e| ImageError::write(&path, e))?;
        let (digest, size) = self.store.add_blob(f, &media, None).map_err(store_error)?;
        Ok((digest, size))
    }
}

impl BlobSink for StoreBlobs<'_> {
    fn begin_blob(&self) -> Result<Box<dyn BlobWriter + '_>, ImageError> {
        let tmp = self.store.root().join("tmp");
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp)
            .map_err(|e| ImageError::write(&tmp, e))?;
        Ok(Box::new(Writer {
            store: self.store,
            file,
        }))
    }

    fn has_blob(&self, digest: &image::Sha256Digest) -> bool {
        matches!(self.store.blob_path(digest), Ok(Some(_)))
    }
}

impl BlobSource for StoreBlobs<'_> {
    fn open_blob(&self, digest: &image::Sha256Digest) -> Result<Box<dyn Read + '_>, ImageError> {
        let path = self
            .store
            .blob_path(digest)
            .map_err(store_error)?
            .ok_or(ImageError::MissingBlob { digest: *digest })?;
        let f = std::fs::File::open(&path).map_err(|e| ImageError::write(&path, e))?;
        Ok(Box::new(std::io::BufReader::new(f)))
    }
}
