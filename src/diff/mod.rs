//! Differences between two images and between two derivations, from the
//! input that moved to the byte that changed.
//!
//! - [`image`]: two OCI images, read through [`crate::image::BlobSource`]s:
//!   index, manifest and config field by field ([`json`]), the layers
//!   (compression only? layering only?) and the merged filesystems path by
//!   path ([`tree`]), with a unified diff for changed text files and the
//!   first differing offset of binary ones ([`content`]).
//! - [`read`]: the streaming reader behind the filesystem comparison. Both
//!   images are read once, at the same time, in path order; memory holds
//!   per-file metadata and a few bounded chunks, never whole files.
//! - [`drv`]: two derivation graphs, like nix-diff: the first derivations
//!   whose own inputs differ, and which input.
//!
//! Everything here returns values; only `cli` prints. Nothing here knows
//! the store: images come as blob sources, derivations through a lookup
//! function.

pub mod content;
pub mod drv;
pub mod image;
pub mod json;
pub mod read;
pub mod tree;

use std::path::PathBuf;

use crate::digest::{Blake3Digest, Sha256Digest};
use crate::image::{ImageError, Platform};

/// What a comparison ignores, in the spirit of diffoci's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Ignore `created` (config and history), the
    /// `org.opencontainers.image.created` annotation and file mtimes.
    pub ignore_timestamps: bool,
    /// Ignore the config's `history`.
    pub ignore_history: bool,
    /// Ignore what cannot change how the image runs: layer boundaries,
    /// compression, digests of manifest and config, annotations,
    /// timestamps, history, and which path of a hard-link group holds the
    /// content.
    pub semantic: bool,
    /// The platform to pick from an image index.
    pub platform: Platform,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ignore_timestamps: false,
            ignore_history: false,
            semantic: false,
            platform: Platform::linux_amd64(),
        }
    }
}

impl Options {
    /// Whether timestamps are ignored (`--ignore-timestamps` or `--semantic`).
    pub fn no_timestamps(&self) -> bool {
        self.ignore_timestamps || self.semantic
    }

    /// Whether history is ignored (`--ignore-history` or `--semantic`).
    pub fn no_history(&self) -> bool {
        self.ignore_history || self.semantic
    }
}

/// Everything that can go wrong while comparing.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// An image's index, manifest or config could not be read.
    #[error("failed to read image {image}")]
    Image {
        /// The image as the user named it.
        image: String,
        /// Why.
        #[source]
        source: Box<ImageError>,
    },
    /// A layer could not be read or did not verify.
    #[error("failed to read layer {digest} of image {image}")]
    Layer {
        /// The image as the user named it.
        image: String,
        /// The layer blob.
        digest: Sha256Digest,
        /// Why.
        #[source]
        source: Box<ImageError>,
    },
    /// A layer holds an entry kiln cannot place in a filesystem.
    #[error("invalid entry `{entry}` in layer {digest} of image {image}: {reason}")]
    Entry {
        /// The image as the user named it.
        image: String,
        /// The layer blob.
        digest: Sha256Digest,
        /// The entry's name.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The spool file (file prefixes kept for later comparison) failed.
    #[error("failed to {op} the spool file {}", path.display())]
    Spool {
        /// `write`, `read`, `create`.
        op: &'static str,
        /// The spool file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A layer reader thread died without saying why.
    #[error("the layer reader of image {image} stopped unexpectedly")]
    Reader {
        /// The image.
        image: String,
    },
    /// A derivation is not known.
    #[error("derivation {hash} is not in the store")]
    MissingDerivation {
        /// The derivation.
        hash: Blake3Digest,
    },
    /// A derivation's encoding cannot be read.
    #[error("derivation {hash} is not a `kiln-drv-v1` encoding: {reason}")]
    BadDerivation {
        /// The derivation.
        hash: Blake3Digest,
        /// What is wrong.
        reason: String,
    },
}
