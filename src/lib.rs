//! kiln builds OCI container images from ordinary multi-stage Dockerfiles so
//! that the same inputs give the same image, bit for bit.
//!
//! Layering (see `STYLE.md` §1): [`dockerfile`] and [`plan`] are pure (bytes
//! in, values out: no filesystem, environment, clock or network); [`context`]
//! reads the build context; only [`cli`] prints.

pub mod build;
pub mod cli;
pub mod context;
pub mod derivation;
pub mod diff;
pub mod digest;
pub mod dockerfile;
pub mod fetch;
pub mod image;
pub mod plan;
pub mod sandbox;
pub mod store;

/// An error and its sources on one line, `: `-separated: how kiln records
/// an error inside another message (a failed step, a verify report).
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
