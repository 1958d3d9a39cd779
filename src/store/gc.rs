//! Garbage collection: delete what no root reaches.
//!
//! Roots are tagged images, the `roots` table (files added with
//! `kiln store add`, kiln.lock pins, ...) and the derivations images were
//! built from. From them gc follows derivation refs, derivation outputs
//! (layer blobs, trees, configs), build logs and manifest references. Rows
//! of everything else are deleted in one transaction, then their files.
//! Leftovers of interrupted writes (anything in `tmp/`, files under
//! `objects/`, `blobs/` and `trees/` that no row names) go too.
//!
//! gc holds the store lock exclusively, so no other process has the store
//! open while it decides what is garbage: nothing in flight is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::db::Deletion;
use super::{RootTarget, Store, StoreError, TreeKey, file};
use crate::digest::{Blake3Digest, Sha256Digest};

/// One thing gc deleted (or would delete, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcItem {
    /// `object`, `blob`, `tree`, `derivation`, `unrecorded` (a file no row
    /// names) or `tmp` (a leftover of an interrupted write).
    pub kind: &'static str,
    /// Its digest or key, or its path for `unrecorded` and `tmp`.
    pub id: String,
    /// Bytes freed.
    pub bytes: u64,
}

/// What gc did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Whether this was a dry run (nothing deleted).
    pub dry_run: bool,
    /// What was deleted, grouped by kind.
    pub deleted: Vec<GcItem>,
    /// Total bytes freed.
    pub freed_bytes: u64,
}

impl Store {
    /// Deletes everything no root reaches, and leftovers of interrupted
    /// writes; with `dry_run`, only reports it. Waits until no other
    /// process has the store open.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut store = kiln::store::Store::open(dir.path())?;
    /// let hash = store.add_object(&mut &b"nobody keeps me"[..])?;
    /// let report = store.gc(false)?;
    /// assert_eq!(report.deleted[0].id, hash.to_string());
    /// assert_eq!(store.object_path(&hash)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gc(&mut self, dry_run: bool) -> Result<GcReport, StoreError> {
        self.exclusively(|store| store.gc_locked(dry_run))?
    }

    fn gc_locked(&mut self, dry_run: bool) -> Result<GcReport, StoreError> {
        let graph = self.db().graph(true)?;
        let live = mark(&graph);

        let mut del = Deletion::default();
        let mut items = Vec::new();
        for (hash, bytes) in &graph.derivations {
            if !live.derivations.contains(hash) {
                del.derivations.push(*hash);
                items.push(item("derivation", hash, *bytes));
            }
        }
        for (hash, bytes) in &graph.objects {
            if !live.objects.contains(hash) {
                del.objects.push(*hash);
                items.push(item("object", hash, *bytes));
            }
        }
        for (digest, bytes) in &graph.blobs {
            if !live.blobs.contains(digest) {
                del.blobs.push(*digest);
                items.push(item("blob", digest, *bytes));
            }
        }
        for (key, bytes) in &graph.trees {
            if !live.trees.contains(key) {
                del.trees.push(key.clone());
                items.push(item("tree", key, *bytes));
            }
        }

        // Stat caches of contexts that are gone.
        let gone: Vec<std::path::PathBuf> = self
            .db()
            .context_cache_roots()?
            .into_iter()
            .filter(|root| !root.is_dir())
            .collect();
        for root in &gone {
            items.push(item("stat cache", &root.display(), 0));
        }

        if !dry_run {
            self.db().forget_context_caches(&gone)?;
            // Rows first: a crash between the two leaves unrecorded files,
            // which the next gc finds below.
            self.db().delete(&del)?;
            for hash in &del.objects {
                file::remove_any(&self.object_file(hash))?;
            }
            for digest in &del.blobs {
                file::remove_any(&self.blob_file(digest))?;
            }
            for key in &del.trees {
                let dir = self.tree_dir(key);
                if dir.exists() {
                    file::remove_dir_via(&dir, &self.tmp)?;
                }
            }
        }

        // Files that no kept row names.
        let kept_objects: BTreeSet<String> =
            graph.objects.keys().map(Blake3Digest::to_hex).collect();
        let kept_blobs: BTreeSet<String> = graph.blobs.keys().map(Sha256Digest::to_hex).collect();
        let kept_trees: BTreeSet<String> = graph.trees.keys().map(|k| k.to_string()).collect();
        let mut stray = Vec::new();
        for shard in file::list_dir(&self.root.join("objects"))? {
            if !shard.is_dir() {
                stray.push(shard);
                continue;
            }
            for path in file::list_dir(&shard)? {
                if !names_one_of(&path, &kept_objects) {
                    stray.push(path);
                }
            }
        }
        for path in file::list_dir(&self.root.join("blobs/sha256"))? {
            if !names_one_of(&path, &kept_blobs) {
                stray.push(path);
            }
        }
        for path in file::list_dir(&self.root.join("trees"))? {
            if !names_one_of(&path, &kept_trees) {
                stray.push(path);
            }
        }
        for path in stray {
            items.push(GcItem {
                kind: "unrecorded",
                id: path.display().to_string(),
                bytes: file::disk_size(&path),
            });
            if !dry_run {
                if path.is_dir() {
                    file::remove_dir_via(&path, &self.tmp)?;
                } else {
                    file::remove_any(&path)?;
                }
            }
        }
        // Everything in tmp/ is a leftover: whoever wrote it is gone (we
        // hold the store lock alone).
        for path in file::list_dir(&self.tmp)? {
            items.push(GcItem {
                kind: "tmp",
                id: path.display().to_string(),
                bytes: file::disk_size(&path),
            });
            if !dry_run {
                file::remove_any(&path)?;
            }
        }
        if !dry_run {
            // Build locks: nobody else holds one while we hold the store
            // lock, so they can go.
            for path in file::list_dir(&self.root.join("locks"))? {
                file::remove_any(&path)?;
            }
        }

        let freed_bytes = items.iter().map(|i| i.bytes).sum();
        Ok(GcReport {
            dry_run,
            deleted: items,
            freed_bytes,
        })
    }
}

fn item(kind: &'static str, id: &impl ToString, bytes: u64) -> GcItem {
    GcItem {
        kind,
        id: id.to_string(),
        bytes,
    }
}

fn names_one_of(path: &Path, names: &BTreeSet<String>) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| names.contains(n))
}

/// What the roots reach.
#[derive(Default)]
struct Live {
    derivations: BTreeSet<Blake3Digest>,
    objects: BTreeSet<Blake3Digest>,
    blobs: BTreeSet<Sha256Digest>,
    trees: BTreeSet<TreeKey>,
}

fn mark(g: &super::db::Graph) -> Live {
    let mut live = Live::default();
    let mut drv_stack: Vec<Blake3Digest> = Vec::new();
    let mut blob_stack: Vec<Sha256Digest> = Vec::new();
    for root in &g.roots {
        match root {
            RootTarget::Object(h) => {
                live.objects.insert(*h);
            }
            RootTarget::Blob(d) => blob_stack.push(*d),
            RootTarget::Tree(k) => {
                live.trees.insert(k.clone());
            }
            RootTarget::Derivation(h) => drv_stack.push(*h),
        }
    }
    for (manifest, derivation) in &g.images {
        blob_stack.push(*manifest);
        drv_stack.extend(derivation);
    }

    let refs = adjacency(g.refs.iter().map(|(a, b)| (*a, *b)));
    while let Some(drv) = drv_stack.pop() {
        if live.derivations.insert(drv) {
            drv_stack.extend(refs.get(&drv).into_iter().flatten());
        }
    }
    for (drv, config) in &g.output_configs {
        if live.derivations.contains(drv) {
            blob_stack.push(*config);
        }
    }
    for (drv, blob, tree) in &g.output_layers {
        if live.derivations.contains(drv) {
            blob_stack.extend(*blob);
            live.trees.extend(tree.clone());
        }
    }
    for (drv, log) in &g.build_logs {
        if live.derivations.contains(drv) {
            live.objects.insert(*log);
        }
    }
    let blob_refs = adjacency(g.blob_refs.iter().map(|(a, b)| (*a, *b)));
    while let Some(blob) = blob_stack.pop() {
        if live.blobs.insert(blob) {
            blob_stack.extend(blob_refs.get(&blob).into_iter().flatten());
        }
    }
    live
}

fn adjacency<T: Ord + Copy>(edges: impl Iterator<Item = (T, T)>) -> BTreeMap<T, Vec<T>> {
    let mut map: BTreeMap<T, Vec<T>> = BTreeMap::new();
    for (from, to) in edges {
        map.entry(from).or_default().push(to);
    }
    map
}
