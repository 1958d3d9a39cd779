//! Two images compared: index, manifest and config field by field, the
//! layers (only compression? only layering?), and the merged filesystems
//! path by path.
//!
//! An image comes as a [`Side`]: a [`BlobSource`] and the descriptor to
//! start from (an OCI layout's `index.json` entry, a stored manifest, a
//! docker-archive's synthesized manifest; a registry's resolved tag
//! plugs in the same way). Image indexes are followed to the manifest of
//! [`Options::platform`]. The layer blobs are read once ([`super::read`]);
//! when both images have the very same layer blobs, they are not read at
//! all.

use serde::Serialize;
use serde_json::Value;

use super::json::{self, Change};
use super::read::{self, Input, LayerRead, Limits};
use super::tree::{self, CompareOptions, PathDiff, Status};
use super::{DiffError, Options};
use crate::digest::Sha256Digest;
use crate::image::ImageError;
use crate::image::blob::{self, BlobSource};
use crate::image::layout::select_platform;
use crate::image::oci::{
    Descriptor, ImageConfig, Index, Manifest, REF_NAME_ANNOTATION, media_type,
};

/// One image to compare.
pub struct Side<'a> {
    /// How the user named it (`oci:DIR:REF`, `busybox:latest`, ...).
    pub label: String,
    /// Where its blobs are.
    pub source: &'a (dyn BlobSource + Sync),
    /// Where to start: an index or a manifest.
    pub top: Descriptor,
    /// Something to say about where it came from (e.g. a docker-archive's
    /// manifest is synthesized).
    pub note: Option<String>,
}

/// One layer as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSummary {
    /// The blob.
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// The config's diff_id for it.
    pub diff_id: Option<Sha256Digest>,
    /// The history entry that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// What reading it found (absent when the layers were not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<LayerRead>,
}

/// One image as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    /// How the user named it.
    pub label: String,
    /// The manifest digest (the image digest).
    pub manifest: Sha256Digest,
    /// The config digest.
    pub config: Sha256Digest,
    /// The index the manifest was picked from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<Sha256Digest>,
    /// Its layers.
    pub layers: Vec<LayerSummary>,
    /// Where it came from, when that matters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How the layer lists relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerVerdict {
    /// The same blobs.
    Identical,
    /// The same uncompressed layers (diff_ids), compressed differently.
    CompressionOnly,
    /// Different layers, the same merged filesystem.
    LayeringOnly,
    /// Different layers whose filesystems differ only in what the
    /// options ignore (timestamps, which path of a hard-link group holds
    /// the content).
    IgnoredOnly,
    /// Different filesystems.
    Different,
}

/// The layers compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    /// The verdict.
    pub verdict: LayerVerdict,
    /// One line per layer position that differs, for people.
    pub changes: Vec<String>,
}

/// The filesystems compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsReport {
    /// Paths only in B.
    pub added: usize,
    /// Paths only in A.
    pub removed: usize,
    /// Paths in both that differ.
    pub changed: usize,
    /// Whether the layers were read (not when both have the same blobs).
    pub read: bool,
    /// Every path that differs, in path order.
    pub paths: Vec<PathDiff>,
}

/// Everything that differs between two images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReport {
    /// A.
    pub a: ImageSummary,
    /// B.
    pub b: ImageSummary,
    /// Whether nothing differs (after what the options ignore).
    pub same: bool,
    /// Index differences (the descriptor each started from, the index
    /// the manifest was picked from).
    pub index: Vec<Change>,
    /// Manifest differences, besides its layers and config digest.
    pub manifest: Vec<Change>,
    /// Config differences.
    pub config: Vec<Change>,
    /// The layers.
    pub layers: LayerReport,
    /// The filesystems.
    pub filesystem: FsReport,
    /// Remarks, e.g. documents equal field by field but serialized
    /// differently.
    pub notes: Vec<String>,
}

struct Resolved {
    index: Option<(Descriptor, Value)>,
    entry: Value,
    manifest_desc: Descriptor,
    manifest: Manifest,
    manifest_json: Value,
    config: ImageConfig,
    config_json: Value,
}

fn resolve(side: &Side<'_>, options: &Options) -> Result<Resolved, DiffError> {
    let err = |source: ImageError| DiffError::Image {
        image: side.label.clone(),
        source: Box::new(source),
    };
    let mut desc = side.top.clone();
    let mut index = None;
    for _ in 0..4 {
        match desc.media_type.as_str() {
            media_type::INDEX | media_type::DOCKER_MANIFEST_LIST => {
                let bytes = blob::read_verified(side.source, &desc).map_err(err)?;
                let parsed: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| err(ImageError::json(format!("index {}", desc.digest), e)))?;
                let value: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| err(ImageError::json(format!("index {}", desc.digest), e)))?;
                let chosen = select_platform(&parsed.manifests, &options.platform).map_err(err)?;
                index = Some((desc, value));
                desc = chosen;
            }
            _ => break,
        }
    }
    let image = blob::read_image(side.source, &desc).map_err(err)?;
    let manifest_bytes = blob::read_verified(side.source, &desc).map_err(err)?;
    let manifest_json: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| err(ImageError::json(format!("manifest {}", desc.digest), e)))?;
    let config_bytes = blob::read_verified(side.source, &image.manifest.config).map_err(err)?;
    let config_json: Value = serde_json::from_slice(&config_bytes).map_err(|e| {
        err(ImageError::json(
            format!("config {}", image.manifest.config.digest),
            e,
        ))
    })?;
    let mut entry = serde_json::to_value(&side.top).unwrap_or(Value::Null);
    // The layout's name for the image is how the user picked it, not part
    // of it; digest and size are the manifest's or index's, shown apart.
    if let Some(map) = entry.as_object_mut() {
        map.remove("digest");
        map.remove("size");
        if let Some(Value::Object(ann)) = map.get_mut("annotations") {
            ann.remove(REF_NAME_ANNOTATION);
            if ann.is_empty() {
                map.remove("annotations");
            }
        }
    }
    Ok(Resolved {
        index,
        entry,
        manifest_desc: desc,
        manifest: image.manifest,
        manifest_json,
        config: image.config,
        config_json,
    })
}

fn layer_summaries(r: &Resolved) -> Vec<LayerSummary> {
    let mut made_by = r
        .config
        .history
        .iter()
        .filter(|h| !h.empty_layer)
        .map(|h| h.created_by.clone());
    r.manifest
        .layers
        .iter()
        .enumerate()
        .map(|(i, d)| LayerSummary {
            digest: d.digest,
            media_type: d.media_type.clone(),
            size: d.size,
            diff_id: r.config.rootfs.diff_ids.get(i).copied(),
            created_by: made_by.next().flatten(),
            read: None,
        })
        .collect()
}

const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// Top-level config fields `--semantic` ignores: the layer digests, and
/// build records that do not change how the image runs.
const SEMANTIC_IGNORED: &[&str] = &[
    "rootfs",
    "container",
    "container_config",
    "docker_version",
    "moby.buildkit.buildinfo.v1",
];

fn strip_created_annotation(v: &mut Value) {
    if let Some(Value::Object(ann)) = v.get_mut("annotations") {
        ann.remove(CREATED_ANNOTATION);
    }
}

/// Compares two images. `spool_dir` takes the spool files of the
/// filesystem comparison (unlinked, gone when this returns).
pub fn diff(
    a: &Side<'_>,
    b: &Side<'_>,
    options: &Options,
    spool_dir: &std::path::Path,
    limits: Limits,
) -> Result<ImageReport, DiffError> {
    let ra = resolve(a, options)?;
    let rb = resolve(b, options)?;
    let mut notes = Vec::new();

    // Index.
    let mut index = Vec::new();
    if !options.semantic {
        let (mut ea, mut eb) = (ra.entry.clone(), rb.entry.clone());
        if options.no_timestamps() {
            strip_created_annotation(&mut ea);
            strip_created_annotation(&mut eb);
        }
        json::diff(&ea, &eb, "index.entry", &[], &mut index);
        if let (Some((_, ia)), Some((_, ib))) = (&ra.index, &rb.index) {
            let (mut ia, mut ib) = (ia.clone(), ib.clone());
            if options.no_timestamps() {
                strip_created_annotation(&mut ia);
                strip_created_annotation(&mut ib);
            }
            json::diff(&ia, &ib, "index", &[], &mut index);
        } else if ra.index.is_some() != rb.index.is_some() {
            let show = |r: &Resolved| {
                r.index
                    .as_ref()
                    .map(|(d, _)| Value::String(d.digest.to_string()))
            };
            index.push(Change {
                path: "index".into(),
                a: show(&ra),
                b: show(&rb),
            });
        }
    }

    // Manifest, besides layers and the config digest.
    let mut manifest = Vec::new();
    if !options.semantic {
        let prune = |v: &Value| {
            let mut v = v.clone();
            json::remove(&mut v, "layers");
            json::remove(&mut v, "config.digest");
            json::remove(&mut v, "config.size");
            if options.no_timestamps() {
                strip_created_annotation(&mut v);
            }
            v
        };
        json::diff(
            &prune(&ra.manifest_json),
            &prune(&rb.manifest_json),
            "manifest",
            &[],
            &mut manifest,
        );
    }

    // Config.
    let mut config = Vec::new();
    {
        let prune = |v: &Value| {
            let mut v = v.clone();
            if options.no_timestamps() {
                json::remove(&mut v, "created");
                json::remove(&mut v, "history.*.created");
            }
            if options.no_history() {
                json::remove(&mut v, "history");
            }
            if options.semantic
                && let Some(map) = v.as_object_mut()
            {
                // Layer digests, and what docker and BuildKit record about
                // the build rather than the image.
                for key in SEMANTIC_IGNORED {
                    map.remove(*key);
                }
            }
            v
        };
        json::diff(
            &prune(&ra.config_json),
            &prune(&rb.config_json),
            "",
            &["config.Env"],
            &mut config,
        );
    }

    let mut sa = ImageSummary {
        label: a.label.clone(),
        manifest: ra.manifest_desc.digest,
        config: ra.manifest.config.digest,
        index: ra.index.as_ref().map(|(d, _)| d.digest),
        layers: layer_summaries(&ra),
        note: a.note.clone(),
    };
    let mut sb = ImageSummary {
        label: b.label.clone(),
        manifest: rb.manifest_desc.digest,
        config: rb.manifest.config.digest,
        index: rb.index.as_ref().map(|(d, _)| d.digest),
        layers: layer_summaries(&rb),
        note: b.note.clone(),
    };

    // Filesystems.
    let blobs = |r: &Resolved| -> Vec<Sha256Digest> {
        r.manifest.layers.iter().map(|d| d.digest).collect()
    };
    let same_blobs = blobs(&ra) == blobs(&rb);
    let mut strict_same = true;
    let mut filesystem = FsReport {
        added: 0,
        removed: 0,
        changed: 0,
        read: false,
        paths: Vec::new(),
    };
    if !same_blobs {
        let (ia, ib) = (input(a, &ra), input(b, &rb));
        let mut outcome = read::read_pair(&ia, &ib, spool_dir, limits)?;
        let chosen = CompareOptions {
            ignore_mtime: options.no_timestamps(),
            follow_hardlinks: options.semantic,
        };
        let mut paths = tree::compare(&outcome.a.tree, &outcome.b.tree, chosen);
        strict_same = if chosen == CompareOptions::default() {
            paths.is_empty()
        } else {
            tree::compare(&outcome.a.tree, &outcome.b.tree, CompareOptions::default()).is_empty()
        };
        outcome.fill(&mut paths)?;
        for (summary, side) in [(&mut sa, &outcome.a), (&mut sb, &outcome.b)] {
            for (layer, read) in summary.layers.iter_mut().zip(&side.layers) {
                layer.read = Some(read.clone());
            }
        }
        filesystem = fs_report(paths, true);
    }

    // Layers.
    let diff_ids = |r: &Resolved| r.config.rootfs.diff_ids.clone();
    let verdict = if same_blobs {
        LayerVerdict::Identical
    } else if diff_ids(&ra) == diff_ids(&rb) {
        LayerVerdict::CompressionOnly
    } else if filesystem.paths.is_empty() && strict_same {
        LayerVerdict::LayeringOnly
    } else if filesystem.paths.is_empty() {
        LayerVerdict::IgnoredOnly
    } else {
        LayerVerdict::Different
    };
    let layers = LayerReport {
        verdict,
        changes: layer_changes(&sa.layers, &sb.layers, verdict),
    };

    // Same fields, other bytes.
    if !options.semantic {
        if ra.manifest_desc.digest != rb.manifest_desc.digest
            && manifest.is_empty()
            && verdict == LayerVerdict::Identical
            && ra.manifest.config.digest == rb.manifest.config.digest
        {
            notes.push("the manifests have equal fields but are serialized differently".into());
        }
        if ra.manifest.config.digest != rb.manifest.config.digest
            && config.is_empty()
            && !options.no_timestamps()
            && !options.no_history()
        {
            notes.push("the configs have equal fields but are serialized differently".into());
        }
    }

    // Layers that differ only in what is ignored make the diff_ids differ
    // for the same reason: that is not a difference either.
    if verdict == LayerVerdict::IgnoredOnly {
        config.retain(|c| !c.path.starts_with("rootfs.diff_ids"));
    }
    let layers_same =
        options.semantic || matches!(verdict, LayerVerdict::Identical | LayerVerdict::IgnoredOnly);
    let same = index.is_empty()
        && manifest.is_empty()
        && config.is_empty()
        && filesystem.paths.is_empty()
        && layers_same
        && notes.is_empty();
    Ok(ImageReport {
        a: sa,
        b: sb,
        same,
        index,
        manifest,
        config,
        layers,
        filesystem,
        notes,
    })
}

fn input<'a>(side: &Side<'a>, r: &Resolved) -> Input<'a> {
    Input {
        image: side.label.clone(),
        source: side.source,
        layers: r.manifest.layers.clone(),
        diff_ids: r.config.rootfs.diff_ids.clone(),
        raw: false,
    }
}

/// Counts the paths by status.
pub fn fs_report(paths: Vec<PathDiff>, read: bool) -> FsReport {
    let count = |s: Status| paths.iter().filter(|p| p.status == s).count();
    FsReport {
        added: count(Status::Added),
        removed: count(Status::Removed),
        changed: count(Status::Changed),
        read,
        paths,
    }
}

fn layer_changes(a: &[LayerSummary], b: &[LayerSummary], verdict: LayerVerdict) -> Vec<String> {
    let short = |d: &Sha256Digest| d.to_hex()[..12].to_owned();
    let compression = |l: &LayerSummary| {
        l.read.as_ref().map_or_else(
            || {
                crate::image::Compression::from_media_type(&l.media_type).map_or("?", |c| match c {
                    crate::image::Compression::Gzip => "gzip",
                    crate::image::Compression::Zstd => "zstd",
                    crate::image::Compression::None => "none",
                })
            },
            |r| r.compression,
        )
    };
    let mut out = Vec::new();
    match verdict {
        LayerVerdict::Identical => {}
        LayerVerdict::CompressionOnly => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if x.digest != y.digest {
                    out.push(format!(
                        "layer {i}: same content (diff_id {}), compression {} {} bytes -> {} {} bytes (blob {} -> {})",
                        x.diff_id.as_ref().map_or_else(|| "?".into(), short),
                        compression(x),
                        x.size,
                        compression(y),
                        y.size,
                        short(&x.digest),
                        short(&y.digest),
                    ));
                }
            }
        }
        LayerVerdict::LayeringOnly | LayerVerdict::IgnoredOnly | LayerVerdict::Different => {
            if verdict == LayerVerdict::LayeringOnly && a.len() != b.len() {
                out.push(format!(
                    "the same filesystem, split into {} layer{} in A and {} layer{} in B",
                    a.len(),
                    if a.len() == 1 { "" } else { "s" },
                    b.len(),
                    if b.len() == 1 { "" } else { "s" },
                ));
            } else if verdict == LayerVerdict::LayeringOnly {
                out.push(
                    "the same filesystem in as many layers, split or written differently (entry order, tar form)"
                        .into(),
                );
            }
            for i in 0..a.len().max(b.len()) {
                let line = match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) if x.diff_id == y.diff_id && x.digest == y.digest => {
                        continue;
                    }
                    (Some(x), Some(y)) if x.diff_id == y.diff_id => format!(
                        "layer {i}: same content, compression {} -> {}",
                        compression(x),
                        compression(y)
                    ),
                    (Some(x), Some(y)) => format!(
                        "layer {i}: diff_id {} -> {}{}",
                        x.diff_id.as_ref().map_or_else(|| "?".into(), short),
                        y.diff_id.as_ref().map_or_else(|| "?".into(), short),
                        y.created_by
                            .as_ref()
                            .map_or_else(String::new, |c| format!(" ({c})")),
                    ),
                    (Some(x), None) => format!(
                        "layer {i}: only in A, diff_id {}",
                        x.diff_id.as_ref().map_or_else(|| "?".into(), short)
                    ),
                    (None, Some(y)) => format!(
                        "layer {i}: only in B, diff_id {}",
                        y.diff_id.as_ref().map_or_else(|| "?".into(), short)
                    ),
                    (None, None) => continue,
                };
                out.push(line);
            }
        }
    }
    out
}
