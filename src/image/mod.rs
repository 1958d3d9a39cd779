//! OCI images: deterministic layers, config/manifest/index, OCI layout
//! directories and docker-archives in and out, safe layer extraction, and
//! rootfs import. Never runs code and knows no store: blobs go through the
//! [`blob::BlobSink`] and [`blob::BlobSource`] traits (an
//! [`layout::OciLayout`] implements both).
//!
//! Every hashed or shipped JSON document goes through [`json::canonical`];
//! every tar header is written by [`tarball`].

pub mod blob;
pub mod compress;
pub mod digest;
pub mod docker_archive;
pub mod error;
pub mod extract;
pub mod import;
pub mod json;
pub mod layer;
pub mod layout;
pub mod oci;
pub mod registry;
pub mod tarball;

pub use blob::{BlobSink, BlobSource, Image};
pub use compress::Compression;
pub use digest::Sha256Digest;
pub use error::ImageError;
pub use layer::{Content, Entry, EntryKind, LayerInfo, LayerOptions, WalkOptions};
pub use layout::OciLayout;
pub use oci::{ImageConfig, Platform};
