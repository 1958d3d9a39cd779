//! The one error type of the `image` module.

use std::path::PathBuf;

use super::digest::Sha256Digest;

/// Everything that can go wrong while writing, reading or extracting images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// What was being read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be written or created.
    #[error("failed to write {}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A stream (not a named file) failed, e.g. while compressing.
    #[error("failed to {op}")]
    Stream {
        /// The operation, e.g. `write the layer stream`.
        op: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Content did not hash to the digest it was named by.
    #[error("{what} hashed to {found}, expected {expected}")]
    DigestMismatch {
        /// What was verified (a blob, a layer's diff_id, ...).
        what: String,
        /// The digest it should have.
        expected: Sha256Digest,
        /// The digest it has.
        found: Sha256Digest,
    },
    /// Content did not have the size it was described with.
    #[error("{what} is {found} bytes, expected {expected}")]
    SizeMismatch {
        /// What was verified.
        what: String,
        /// The size it should have.
        expected: u64,
        /// The size it has.
        found: u64,
    },
    /// A string is not a `sha256:<64 hex>` digest.
    #[error("invalid digest `{value}`")]
    InvalidDigest {
        /// The text that was given.
        value: String,
    },
    /// A JSON document could not be parsed or serialized.
    #[error("invalid JSON in {what}")]
    Json {
        /// Which document.
        what: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A tar stream is malformed.
    #[error("invalid tar entry `{entry}`: {reason}")]
    InvalidTar {
        /// The entry's name as far as it was read (or `#N` for its index).
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tar header (PAX or GNU long name record) is larger than kiln accepts.
    #[error(
        "tar entry `{entry}` has a {size}-byte metadata header, more than the limit of {limit}"
    )]
    HeaderTooLarge {
        /// The entry (or `#N`).
        entry: String,
        /// The header's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An entry would be written outside the extraction root.
    #[error("tar entry `{entry}` escapes the extraction root: {reason}")]
    PathEscape {
        /// The entry.
        entry: String,
        /// How it tries to escape.
        reason: String,
    },
    /// Resolving an entry's parent directories followed too many symlinks.
    #[error("tar entry `{entry}` has a symlink loop in its parent directories")]
    SymlinkLoop {
        /// The entry.
        entry: String,
    },
    /// A layer entry given by the caller is not valid.
    #[error("invalid layer entry `{path}`: {reason}")]
    InvalidEntry {
        /// The entry's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob is not in the layout, archive or source.
    #[error("blob {digest} is missing")]
    MissingBlob {
        /// The blob.
        digest: Sha256Digest,
    },
    /// An OCI layout or docker-archive is structurally wrong.
    #[error("invalid image {}: {reason}", path.display())]
    InvalidImage {
        /// The layout directory or archive file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The requested reference is not in the layout or archive.
    #[error("no image named `{name}` in {} (it has: {available})", path.display())]
    NoSuchRef {
        /// The reference asked for.
        name: String,
        /// The layout or archive.
        path: PathBuf,
        /// The references present, comma separated.
        available: String,
    },
    /// An image index has no manifest for the requested platform.
    #[error("no manifest for platform {platform} (the index has: {available})")]
    NoMatchingPlatform {
        /// `os/arch[/variant]` that was requested.
        platform: String,
        /// The platforms present, comma separated.
        available: String,
    },
    /// A media type kiln does not handle.
    #[error("unsupported media type `{media_type}` for {what}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// Where it was found.
        what: String,
    },
}

impl ImageError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Write {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn stream(op: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Stream {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        ImageError::Json {
            what: what.into(),
            source,
        }
    }
}
