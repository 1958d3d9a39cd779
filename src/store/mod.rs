//! kiln's store: content-addressed files under one directory, indexed by
//! SQLite (`kiln.sqlite`, schema in `store-schema/`).
//!
//! ```text
//! <root>/
//!   kiln.sqlite      the index (WAL); readers trust only what it records
//!   lock             flock: every open Store holds it shared, gc exclusive
//!   locks/<hex>      per-derivation build locks (Store::lock_derivation)
//!   objects/ab/<hex> blake3-addressed files (added files, build logs)
//!   blobs/sha256/<hex>  OCI blobs: layers, configs, manifests, indexes
//!   trees/<key>/     unpacked layer trees, registered whole
//!   tmp/             work in progress, on the same filesystem
//! ```
//!
//! Invariants:
//! - An insert writes into `tmp/` while hashing, fsyncs, renames into place,
//!   fsyncs the directory, and only then records the item in one
//!   transaction. So a row never points at a missing or partial file,
//!   whenever the process dies; what a crash leaves behind (temp files,
//!   renamed but unrecorded files) is reclaimed by [`Store::gc`].
//! - Several processes may share a store: SQLite runs in WAL mode with a
//!   busy timeout, inserting the same content twice succeeds for both, and
//!   gc takes the store lock exclusively, so it never runs while another
//!   process has the store open (and so never deletes its work in
//!   progress).
//! - The store knows nothing of Dockerfiles: derivations are opaque bytes
//!   named by their blake3, written by `src/derivation`.
//! - It never prints and never reads the clock or the environment: the
//!   caller passes times and the root (see [`resolve_root`]).

mod db;
mod error;
mod file;
mod gc;
mod verify;

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

pub use db::SCHEMA_VERSION;
pub use error::StoreError;
pub use gc::{GcItem, GcReport};
pub use verify::{Issue, Problem, VerifyReport};

use crate::digest::{Blake3Digest, Sha256Digest};
use db::Db;

/// Where the store lives: `--store DIR` (clap also fills it from
/// `$KILN_STORE`), else `$XDG_DATA_HOME/kiln`, else `$HOME/.local/share/kiln`.
/// Empty or relative `XDG_DATA_HOME` values are ignored, as the XDG base
/// directory spec says.
///
/// ```
/// use std::path::Path;
/// use std::ffi::OsStr;
/// let root = kiln::store::resolve_root(None, None, Some(OsStr::new("/home/me"))).unwrap();
/// assert_eq!(root, Path::new("/home/me/.local/share/kiln"));
/// ```
pub fn resolve_root(
    flag: Option<&Path>,
    xdg_data_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Result<PathBuf, StoreError> {
    if let Some(dir) = flag.filter(|d| !d.as_os_str().is_empty()) {
        return Ok(dir.to_path_buf());
    }
    if let Some(xdg) = xdg_data_home.map(Path::new).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("kiln"));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(home).join(".local/share/kiln")),
        None => Err(StoreError::NoRoot),
    }
}

/// The OCI media types whose blobs name other blobs (config, layers,
/// manifests): their references are recorded so gc keeps them.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The name of an unpacked tree under `trees/`: one path component of
/// `[A-Za-z0-9._-]`, not `.` or `..`. No `:` (overlayfs separates lower
/// dirs with it): use a digest's hex, not its `sha256:` form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TreeKey(String);

impl TreeKey {
    /// Validates `key`.
    pub fn new(key: &str) -> Result<TreeKey, StoreError> {
        let ok = !key.is_empty()
            && key != "."
            && key != ".."
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(TreeKey(key.to_string()))
        } else {
            Err(StoreError::InvalidTreeKey {
                key: key.to_string(),
            })
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TreeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a derivation describes one step or a whole stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DerivationKind {
    /// One filesystem-changing instruction.
    Step,
    /// A `FROM ... [AS name]` block.
    Stage,
}

impl DerivationKind {
    /// `step` or `stage`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DerivationKind::Step => "step",
            DerivationKind::Stage => "stage",
        }
    }
}

/// A recorded derivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derivation {
    /// The blake3 of `bytes`.
    pub hash: Blake3Digest,
    /// The canonical encoding.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// Step or stage.
    pub kind: DerivationKind,
    /// The stage it belongs to (its name or index).
    pub stage: String,
    /// A name for people (`RUN make`).
    pub name: String,
    /// The derivations it reads from, sorted.
    pub refs: Vec<Blake3Digest>,
}

/// One layer of an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// The sha256 of the uncompressed layer tar.
    pub diff_id: Sha256Digest,
    /// The compressed layer blob (recorded with [`Store::add_blob`]), once
    /// an image needed it; until then the layer is held as its tree.
    pub blob: Option<Sha256Digest>,
    /// The unpacked tree, when kept (recorded with [`Store::add_tree`]).
    pub tree: Option<TreeKey>,
}

/// What building a derivation produced: a step, one layer (or none); a
/// stage, its layers bottom first and its image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Output {
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The image config blob (stages).
    pub config: Option<Sha256Digest>,
}

/// A local image: `name:tag` → manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// The repository name (`example.com/app`).
    pub name: String,
    /// The tag (`latest`).
    pub tag: String,
    /// The manifest blob.
    pub manifest: Sha256Digest,
    /// The stage derivation that built it, when kiln did.
    pub derivation: Option<Blake3Digest>,
}

/// What a GC root keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "target", rename_all = "lowercase")]
pub enum RootTarget {
    /// An object.
    Object(Blake3Digest),
    /// A blob (and what it references, for a manifest).
    Blob(Sha256Digest),
    /// An unpacked tree.
    Tree(TreeKey),
    /// A derivation, with its output and everything it references.
    Derivation(Blake3Digest),
}

impl RootTarget {
    fn kind_and_id(&self) -> (&'static str, String) {
        match self {
            RootTarget::Object(d) => ("object", d.to_string()),
            RootTarget::Blob(d) => ("blob", d.to_string()),
            RootTarget::Tree(k) => ("tree", k.to_string()),
            RootTarget::Derivation(d) => ("derivation", d.to_string()),
        }
    }
}

/// A named GC root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Root {
    /// Its name (unique).
    pub name: String,
    /// What it keeps.
    #[serde(flatten)]
    pub target: RootTarget,
}

/// The id of a build record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BuildId(pub i64);

/// One attempt to build a derivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildRecord {
    /// Its id.
    pub id: BuildId,
    /// What was built.
    pub derivation: Blake3Digest,
    /// Start, Unix milliseconds.
    pub started_at_ms: i64,
    /// End, Unix milliseconds (`None` while running, or if kiln died).
    pub ended_at_ms: Option<i64>,
    /// Exit status (0 = success).
    pub exit_status: Option<i32>,
    /// The object holding the build log.
    pub log: Option<Blake3Digest>,
}

/// A count and total size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ItemCount {
    /// How many.
    pub count: u64,
    /// Total bytes.
    pub bytes: u64,
}

/// What `kiln store info` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    /// The store root.
    pub root: PathBuf,
    /// The schema version.
    pub schema_version: i64,
    /// Objects.
    pub objects: ItemCount,
    /// OCI blobs.
    pub blobs: ItemCount,
    /// Unpacked trees (bytes of regular files).
    pub trees: ItemCount,
    /// Derivations (bytes of their encodings).
    pub derivations: ItemCount,
    /// Recorded outputs.
    pub outputs: u64,
    /// Tagged images.
    pub images: u64,
    /// GC roots.
    pub roots: u64,
    /// Build records.
    pub builds: u64,
    /// Stat-cache entries.
    pub stat_cache: u64,
    /// Size of `kiln.sqlite` and its WAL.
    pub database_bytes: u64,
}

/// An open store. Cheap to share between threads (`&Store`): file writes
/// run in parallel, database transactions one at a time per handle (and
/// across processes, as SQLite allows).
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    /// Shared while the store is open; exclusive during gc and repair.
    lock: Flock<File>,
    db: Mutex<Db>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

/// Holds a derivation's build lock until dropped (see
/// [`Store::lock_derivation`]).
#[derive(Debug)]
pub struct DerivationLock<'a> {
    _lock: Flock<File>,
    _store: PhantomData<&'a Store>,
}

impl Store {
    /// Opens the store at `root`, creating it if needed, and brings its
    /// schema up to date. Blocks while a gc runs on it.
    ///
    /// Fails with [`StoreError::SchemaTooNew`] (touching nothing) for a
    /// store made by a newer kiln, and [`StoreError::ReadOnly`] when the
    /// store cannot be written.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = kiln::store::Store::open(dir.path())?;
    /// let hash = store.add_object(&mut &b"hello"[..])?;
    /// let path = store.object_path(&hash)?.expect("just added");
    /// assert_eq!(std::fs::read(path)?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let mkdir = |dir: &Path| {
            std::fs::create_dir_all(dir).map_err(|source| {
                if StoreError::is_not_writable(&source) {
                    StoreError::ReadOnly {
                        root: root.to_path_buf(),
                        source,
                    }
                } else {
                    StoreError::CreateDir {
                        path: dir.to_path_buf(),
                        source,
                    }
                }
            })
        };
        mkdir(root)?;
        for sub in ["objects", "blobs/sha256", "trees", "tmp", "locks"] {
            mkdir(&root.join(sub))?;
        }
        let lock_path = root.join("lock");
        let lock = lock_file(&lock_path, FlockArg::LockShared).map_err(|e| match e {
            StoreError::Lock { source, .. } if StoreError::is_not_writable(&source) => {
                StoreError::ReadOnly {
                    root: root.to_path_buf(),
                    source,
                }
            }
            e => e,
        })?;
        let db = Db::open(&root.join("kiln.sqlite"))?;
        Ok(Store {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            lock,
            db: Mutex::new(db),
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn db(&self) -> MutexGuard<'_, Db> {
        // A panic mid-transaction rolled it back; the connection is fine.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn object_file(&self, hash: &Blake3Digest) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join("objects").join(&hex[..2]).join(hex)
    }

    fn blob_file(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.to_hex())
    }

    fn tree_dir(&self, key: &TreeKey) -> PathBuf {
        self.root.join("trees").join(key.as_str())
    }

    /// Adds the bytes of `reader` as an object, named by their blake3.
    /// Adding content already stored succeeds and changes nothing.
    pub fn add_object(&self, reader: &mut dyn Read) -> Result<Blake3Digest, StoreError> {
        self.add_object_inner(reader, None).map(|(d, _)| d)
    }

    /// Adds an object and points the GC root `root` at it, in one
    /// transaction (what `kiln store add` does). Returns its hash and size.
    pub fn add_object_rooted(
        &self,
        reader: &mut dyn Read,
        root: &str,
    ) -> Result<(Blake3Digest, u64), StoreError> {
        self.add_object_inner(reader, Some(root))
    }

    fn add_object_inner(
        &self,
        reader: &mut dyn Read,
        root: Option<&str>,
    ) -> Result<(Blake3Digest, u64), StoreError> {
        let mut hasher = blake3::Hasher::new();
        let (temp, size) = file::write_hashed(&self.tmp, reader, &mut |b| {
            hasher.update(b);
        })?;
        let hash = Blake3Digest::from(hasher.finalize());
        if !self.db().has_object(&hash)? {
            file::persist(temp, &self.object_file(&hash))?;
        }
        let mut db = self.db();
        match root {
            Some(root) => db.insert_object_with_root(&hash, size, root)?,
            None => db.insert_object(&hash, size)?,
        }
        Ok((hash, size))
    }

    /// The file holding an object, if the store records it.
    pub fn object_path(&self, hash: &Blake3Digest) -> Result<Option<PathBuf>, StoreError> {
        Ok(self.db().has_object(hash)?.then(|| self.object_file(hash)))
    }

    /// Adds an OCI blob, named by its sha256. With `expected`, bytes that
    /// hash to anything else are refused ([`StoreError::BlobMismatch`]) and
    /// nothing is stored. A manifest or index (see
    /// [`MANIFEST_MEDIA_TYPES`]) has the blobs it names recorded, so gc
    /// keeps them with it. Returns the digest and size.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = kiln::store::Store::open(dir.path())?;
    /// use kiln::digest::Sha256Digest;
    /// let config = br#"{"architecture":"amd64","os":"linux"}"#;
    /// let (digest, size) = store.add_blob(
    ///     &mut &config[..],
    ///     "application/vnd.oci.image.config.v1+json",
    ///     Some(&Sha256Digest::of(config)),
    /// )?;
    /// assert_eq!(size, config.len() as u64);
    /// assert!(store.blob_path(&digest)?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_blob(
        &self,
        reader: &mut dyn Read,
        media_type: &str,
        expected: Option<&Sha256Digest>,
    ) -> Result<(Sha256Digest, u64), StoreError> {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        let (temp, size) = file::write_hashed(&self.tmp, reader, &mut |b| hasher.update(b))?;
        let digest = Sha256Digest::from_bytes(hasher.finalize().into());
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::BlobMismatch {
                expected: *expected,
                found: digest,
            });
        }
        let references = if MANIFEST_MEDIA_TYPES.contains(&media_type) {
            let bytes = std::fs::read(temp.path()).map_err(|source| StoreError::Read {
                path: temp.path().to_path_buf(),
                source,
            })?;
            manifest_references(&bytes).map_err(|source| StoreError::InvalidManifest {
                digest,
                media_type: media_type.to_string(),
                source,
            })?
        } else {
            Default::default()
        };
        if !self.db().has_blob(&digest)? {
            file::persist(temp, &self.blob_file(&digest))?;
        }
        self.db()
            .insert_blob(&digest, size, media_type, &references)?;
        Ok((digest, size))
    }

    /// The file holding a blob, if the store records it.
    pub fn blob_path(&self, digest: &Sha256Digest) -> Result<Option<PathBuf>, StoreError> {
        Ok(self.db().has_blob(digest)?.then(|| self.blob_file(digest)))
    }

    /// A recorded blob's media type.
    pub fn blob_media_type(&self, digest: &Sha256Digest) -> Result<Option<String>, StoreError> {
        self.db().blob_media_type(digest)
    }

    /// A new empty directory in the store's `tmp/` (same filesystem as the
    /// store, so it can be renamed into place), deleted when dropped.
    pub fn tmp_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        tempfile::Builder::new()
            .prefix("dir-")
            .tempdir_in(&self.tmp)
            .map_err(|source| StoreError::Write {
                path: self.tmp.clone(),
                source,
            })
    }

    /// Registers a fully written directory as the tree `key`: syncs it,
    /// renames it from the store's `tmp/` to `trees/<key>` and records it.
    /// If the tree is already there (another process won the race), `dir`
    /// is deleted and the existing tree kept. Returns the tree's path.
    ///
    /// `dir` must sit directly in the store's tmp dir (from
    /// [`Store::tmp_dir`]; call `TempDir::keep` or pass its path and let
    /// the `TempDir` drop afterwards).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = kiln::store::Store::open(dir.path())?;
    /// use kiln::store::TreeKey;
    /// let work = store.tmp_dir()?;
    /// std::fs::write(work.path().join("hello"), "hi")?;
    /// let key = TreeKey::new("layer1")?;
    /// let path = store.add_tree(work.path(), &key)?;
    /// assert_eq!(std::fs::read(path.join("hello"))?, b"hi");
    /// assert_eq!(store.tree_path(&key)?, Some(path));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_tree(&self, dir: &Path, key: &TreeKey) -> Result<PathBuf, StoreError> {
        let in_tmp = dir.parent().and_then(|p| p.canonicalize().ok())
            == self.tmp.canonicalize().ok()
            && dir.is_dir();
        if !in_tmp {
            return Err(StoreError::TreeNotInTmp {
                path: dir.to_path_buf(),
                tmp: self.tmp.clone(),
            });
        }
        let dest = self.tree_dir(key);
        if self.db().tree(key)?.is_some() {
            file::remove_any(dir)?;
            return Ok(dest);
        }
        let (files, size) = file::tree_stats(dir)?;
        file::sync_filesystem(dir)?;
        let stats = match std::fs::rename(dir, &dest) {
            Ok(()) => {
                file::sync_dir(&self.root.join("trees"))?;
                (files, size)
            }
            // Already there but unrecorded: another process between its
            // rename and its commit, or a crash there. Either way it was
            // complete before it got that name; keep it.
            Err(e) if dest.is_dir() && e.raw_os_error().is_some() => {
                file::remove_any(dir)?;
                file::tree_stats(&dest)?
            }
            Err(source) => {
                return Err(StoreError::Rename {
                    from: dir.to_path_buf(),
                    to: dest,
                    source,
                });
            }
        };
        self.db().insert_tree(key, stats.0, stats.1)?;
        Ok(dest)
    }

    /// The directory of a tree, if the store records it.
    pub fn tree_path(&self, key: &TreeKey) -> Result<Option<PathBuf>, StoreError> {
        Ok(self.db().tree(key)?.map(|_| self.tree_dir(key)))
    }

    /// Records a derivation: `hash` must be the blake3 of `bytes`
    /// ([`StoreError::DerivationMismatch`] otherwise) and each of `refs`
    /// (the derivations it reads from) must be recorded already. Recording
    /// it again is a no-op.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = kiln::store::Store::open(dir.path())?;
    /// use kiln::digest::Blake3Digest;
    /// use kiln::store::DerivationKind;
    /// let bytes = b"kiln-drv-v1 example";
    /// let hash = Blake3Digest::of(bytes);
    /// store.record_derivation(&hash, bytes, DerivationKind::Step, "build", "RUN make", &[])?;
    /// assert_eq!(store.derivation(&hash)?.unwrap().name, "RUN make");
    /// assert_eq!(store.output(&hash)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_derivation(
        &self,
        hash: &Blake3Digest,
        bytes: &[u8],
        kind: DerivationKind,
        stage: &str,
        name: &str,
        refs: &[Blake3Digest],
    ) -> Result<(), StoreError> {
        let found = Blake3Digest::of(bytes);
        if found != *hash {
            return Err(StoreError::DerivationMismatch {
                expected: *hash,
                found,
            });
        }
        let mut refs = refs.to_vec();
        refs.sort();
        refs.dedup();
        self.db().insert_derivation(&Derivation {
            hash: *hash,
            bytes: bytes.to_vec(),
            kind,
            stage: stage.to_string(),
            name: name.to_string(),
            refs,
        })
    }

    /// A recorded derivation.
    pub fn derivation(&self, hash: &Blake3Digest) -> Result<Option<Derivation>, StoreError> {
        self.db().derivation(hash)
    }

    /// Records a derivation's output. Its blobs and trees must be recorded
    /// already. The first output recorded for a derivation stays: the
    /// returned output is the one recorded, which a racing builder should
    /// use instead of its own.
    pub fn record_output(
        &self,
        derivation: &Blake3Digest,
        output: &Output,
    ) -> Result<Output, StoreError> {
        self.db().insert_output(derivation, output)
    }

    /// Records `blob` (already added with [`Store::add_blob`]) as the
    /// compressed form of layer `position` of `derivation`'s output.
    pub fn set_layer_blob(
        &self,
        derivation: &Blake3Digest,
        position: usize,
        blob: &Sha256Digest,
    ) -> Result<(), StoreError> {
        self.db().set_layer_blob(derivation, position, blob)
    }

    /// A derivation's output, if it has been built.
    pub fn output(&self, derivation: &Blake3Digest) -> Result<Option<Output>, StoreError> {
        self.db().output(derivation)
    }

    /// Takes the build lock of a derivation, waiting while another process
    /// (or thread) holds it. A builder takes it, checks [`Store::output`]
    /// again, builds only if still missing, records the output and drops
    /// the guard; so racing builds of one derivation build it once.
    pub fn lock_derivation(&self, hash: &Blake3Digest) -> Result<DerivationLock<'_>, StoreError> {
        let path = self.root.join("locks").join(hash.to_hex());
        Ok(DerivationLock {
            _lock: lock_file(&path, FlockArg::LockExclusive)?,
            _store: PhantomData,
        })
    }

    /// Tags an image: `name:tag` → `manifest` (a recorded blob), moving the
    /// tag if it exists. `derivation` is the stage that built it, if any.
    pub fn tag_image(
        &self,
        name: &str,
        tag: &str,
        manifest: &Sha256Digest,
        derivation: Option<&Blake3Digest>,
    ) -> Result<(), StoreError> {
        self.db().upsert_image(&Image {
            name: name.to_string(),
            tag: tag.to_string(),
            manifest: *manifest,
            derivation: derivation.copied(),
        })
    }

    /// One image by name and tag.
    pub fn image(&self, name: &str, tag: &str) -> Result<Option<Image>, StoreError> {
        self.db().image(name, tag)
    }

    /// All images, by name then tag.
    pub fn images(&self) -> Result<Vec<Image>, StoreError> {
        self.db().images()
    }

    /// Removes a tag (its blobs stay until gc); whether it existed.
    pub fn untag_image(&self, name: &str, tag: &str) -> Result<bool, StoreError> {
        self.db().delete_image(name, tag)
    }

    /// Adds the GC root `name` (or moves it) to `target`, which must be
    /// recorded.
    pub fn add_root(&self, name: &str, target: &RootTarget) -> Result<(), StoreError> {
        self.db().upsert_root(name, target)
    }

    /// Removes a GC root; whether it existed.
    pub fn remove_root(&self, name: &str) -> Result<bool, StoreError> {
        self.db().delete_root(name)
    }

    /// All GC roots, by name.
    pub fn roots(&self) -> Result<Vec<Root>, StoreError> {
        Ok(self
            .db()
            .roots()?
            .into_iter()
            .map(|(name, target)| Root { name, target })
            .collect())
    }

    /// Records that a build of `derivation` started at `started_at_ms`
    /// (Unix ms, from the caller's clock).
    pub fn start_build(
        &self,
        derivation: &Blake3Digest,
        started_at_ms: i64,
    ) -> Result<BuildId, StoreError> {
        self.db().insert_build(derivation, started_at_ms)
    }

    /// Records how a build ended, with its log object (added with
    /// [`Store::add_object`]).
    pub fn finish_build(
        &self,
        id: BuildId,
        ended_at_ms: i64,
        exit_status: i32,
        log: Option<&Blake3Digest>,
    ) -> Result<(), StoreError> {
        self.db().finish_build(id, ended_at_ms, exit_status, log)
    }

    /// The builds of a derivation, oldest first.
    pub fn builds(&self, derivation: &Blake3Digest) -> Result<Vec<BuildRecord>, StoreError> {
        self.db().builds(derivation)
    }

    /// The stat cache of the context rooted at `root` (its encoded
    /// entries, see `context::hash`), if there is one.
    pub fn context_cache(&self, root: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        self.db().context_cache(root)
    }

    /// Replaces the stat cache of the context rooted at `root` with
    /// `entries` (encoded, listing `files` files).
    pub fn put_context_cache(
        &self,
        root: &Path,
        entries: &[u8],
        files: u64,
    ) -> Result<(), StoreError> {
        self.db().put_context_cache(root, entries, files)
    }

    /// Counts and sizes of what the store records.
    pub fn info(&self) -> Result<Info, StoreError> {
        let mut info = self.db().info()?;
        info.schema_version = self.db().schema_version()?;
        info.root = self.root.clone();
        info.database_bytes = ["kiln.sqlite", "kiln.sqlite-wal"]
            .iter()
            .map(|f| file::disk_size(&self.root.join(f)))
            .sum();
        Ok(info)
    }

    /// Takes the store lock exclusively for `f` (gc, repair): waits until no
    /// other process has the store open. Downgrades it afterwards.
    fn exclusively<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Result<T, StoreError> {
        relock(&self.lock, &self.root.join("lock"), FlockArg::LockExclusive)?;
        let result = f(self);
        relock(&self.lock, &self.root.join("lock"), FlockArg::LockShared)?;
        Ok(result)
    }
}

/// Opens (creating) and flocks `path`, retrying on EINTR.
fn lock_file(path: &Path, arg: FlockArg) -> Result<Flock<File>, StoreError> {
    let err = |source| StoreError::Lock {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(err)?;
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(err(errno.into())),
        }
    }
}

fn relock(lock: &Flock<File>, path: &Path, arg: FlockArg) -> Result<(), StoreError> {
    loop {
        match lock.relock(arg) {
            Ok(()) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(StoreError::Lock {
                    path: path.to_path_buf(),
                    source: errno.into(),
                });
            }
        }
    }
}

/// The sha256 blobs a manifest or index names: `config`, `layers[]`,
/// `manifests[]`, `blobs[]` and `subject` descriptors.
fn manifest_references(
    bytes: &[u8],
) -> Result<std::collections::BTreeSet<Sha256Digest>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Descriptor {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct Manifest {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        #[serde(default)]
        manifests: Vec<Descriptor>,
        #[serde(default)]
        blobs: Vec<Descriptor>,
        subject: Option<Descriptor>,
    }
    let m: Manifest = serde_json::from_slice(bytes)?;
    Ok(m.config
        .iter()
        .chain(&m.layers)
        .chain(&m.manifests)
        .chain(&m.blobs)
        .chain(&m.subject)
        // Other algorithms (sha512) cannot name a blob of this store.
        .filter_map(|d| d.digest.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn drv(store: &Store, text: &str, refs: &[Blake3Digest]) -> Blake3Digest {
        let hash = Blake3Digest::of(text.as_bytes());
        store
            .record_derivation(
                &hash,
                text.as_bytes(),
                DerivationKind::Step,
                "0",
                text,
                refs,
            )
            .unwrap();
        hash
    }

    fn blob(store: &Store, bytes: &[u8]) -> Sha256Digest {
        store
            .add_blob(&mut &bytes[..], "application/octet-stream", None)
            .unwrap()
            .0
    }

    #[test]
    fn resolve_root_prefers_flag_then_xdg_then_home() {
        let some = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            resolve_root(Some(Path::new("/s")), some("/x"), some("/h")).unwrap(),
            Path::new("/s")
        );
        assert_eq!(
            resolve_root(None, some("/x"), some("/h")).unwrap(),
            Path::new("/x/kiln")
        );
        // Relative or empty XDG_DATA_HOME is ignored (XDG base dir spec).
        assert_eq!(
            resolve_root(None, some("rel"), some("/h")).unwrap(),
            Path::new("/h/.local/share/kiln")
        );
        assert_eq!(
            resolve_root(None, some(""), some("/h")).unwrap(),
            Path::new("/h/.local/share/kiln")
        );
        assert!(matches!(
            resolve_root(None, None, None),
            Err(StoreError::NoRoot)
        ));
    }

    #[test]
    fn objects_are_content_addressed_and_deduplicated() {
        let (dir, store) = store();
        let a = store.add_object(&mut &b"same"[..]).unwrap();
        let b = store.add_object(&mut &b"same"[..]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Blake3Digest::of(b"same"));
        let path = store.object_path(&a).unwrap().unwrap();
        assert!(path.starts_with(dir.path().join("objects")));
        assert_eq!(
            store.info().unwrap().objects,
            ItemCount { count: 1, bytes: 4 }
        );
        assert_eq!(
            store.object_path(&Blake3Digest::of(b"other")).unwrap(),
            None
        );
        assert!(file::list_dir(&dir.path().join("tmp")).unwrap().is_empty());
    }

    #[test]
    fn blob_with_wrong_expected_digest_is_refused_and_not_stored() {
        let (dir, store) = store();
        let wrong = Sha256Digest::of(b"something else");
        let err = store
            .add_blob(&mut &b"data"[..], "application/octet-stream", Some(&wrong))
            .unwrap_err();
        match err {
            StoreError::BlobMismatch { expected, found } => {
                assert_eq!(expected, wrong);
                assert_eq!(found, Sha256Digest::of(b"data"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.blob_path(&Sha256Digest::of(b"data")).unwrap(), None);
        assert!(
            file::list_dir(&dir.path().join("blobs/sha256"))
                .unwrap()
                .is_empty()
        );
        assert!(file::list_dir(&dir.path().join("tmp")).unwrap().is_empty());
    }

    #[test]
    fn derivation_bytes_must_match_their_hash() {
        let (_dir, store) = store();
        let err = store
            .record_derivation(
                &Blake3Digest::of(b"a"),
                b"b",
                DerivationKind::Stage,
                "s",
                "n",
                &[],
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::DerivationMismatch { .. }));
        let unknown = Blake3Digest::of(b"unknown");
        let bytes = b"refers to unknown";
        let err = store
            .record_derivation(
                &Blake3Digest::of(bytes),
                bytes,
                DerivationKind::Step,
                "s",
                "n",
                &[unknown],
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Missing { kind: "derivation", id } if *id == unknown.to_string())
        );
    }

    #[test]
    fn outputs_round_trip_and_the_first_one_wins() {
        let (_dir, store) = store();
        let base = drv(&store, "base", &[]);
        let step = drv(&store, "step", &[base]);
        assert_eq!(store.derivation(&step).unwrap().unwrap().refs, vec![base]);
        let layer_blob = blob(&store, b"layer");
        let config = blob(&store, b"config");
        let work = store.tmp_dir().unwrap();
        std::fs::write(work.path().join("f"), b"x").unwrap();
        let key = TreeKey::new("layer").unwrap();
        store.add_tree(work.path(), &key).unwrap();
        let output = Output {
            layers: vec![Layer {
                diff_id: Sha256Digest::of(b"tar"),
                blob: Some(layer_blob),
                tree: Some(key),
            }],
            config: Some(config),
        };
        assert_eq!(store.record_output(&step, &output).unwrap(), output);
        let other = Output {
            layers: vec![],
            config: None,
        };
        assert_eq!(store.record_output(&step, &other).unwrap(), output);
        assert_eq!(store.output(&step).unwrap(), Some(output));
        // An output naming a blob the store lacks is refused.
        let missing = Output {
            layers: vec![],
            config: Some(Sha256Digest::of(b"nope")),
        };
        assert!(matches!(
            store.record_output(&base, &missing),
            Err(StoreError::Missing { kind: "blob", .. })
        ));
        assert_eq!(store.output(&base).unwrap(), None);
    }

    #[test]
    fn images_roots_and_builds() {
        let (_dir, store) = store();
        let manifest = blob(&store, b"{}");
        let step = drv(&store, "step", &[]);
        store
            .tag_image("app", "latest", &manifest, Some(&step))
            .unwrap();
        store.tag_image("app", "v1", &manifest, None).unwrap();
        assert_eq!(store.images().unwrap().len(), 2);
        assert_eq!(
            store.image("app", "latest").unwrap().unwrap().derivation,
            Some(step)
        );
        assert!(store.untag_image("app", "v1").unwrap());
        assert!(!store.untag_image("app", "v1").unwrap());

        let obj = store.add_object(&mut &b"o"[..]).unwrap();
        store.add_root("r", &RootTarget::Object(obj)).unwrap();
        store.add_root("r", &RootTarget::Derivation(step)).unwrap();
        assert_eq!(
            store.roots().unwrap(),
            vec![Root {
                name: "r".into(),
                target: RootTarget::Derivation(step)
            }]
        );
        assert!(matches!(
            store.add_root("x", &RootTarget::Blob(Sha256Digest::of(b"?"))),
            Err(StoreError::Missing { .. })
        ));
        assert!(store.remove_root("r").unwrap());

        let id = store.start_build(&step, 1000).unwrap();
        store.finish_build(id, 2000, 0, Some(&obj)).unwrap();
        let builds = store.builds(&step).unwrap();
        assert_eq!(builds.len(), 1);
        assert_eq!(builds[0].exit_status, Some(0));
        assert_eq!(builds[0].log, Some(obj));
    }

    #[test]
    fn context_cache_is_kept_per_root_and_replaced() {
        let (dir, mut store) = store();
        let root = dir.path().join("ctx");
        std::fs::create_dir(&root).unwrap();
        assert_eq!(store.context_cache(&root).unwrap(), None);
        store.put_context_cache(&root, b"one", 1).unwrap();
        store.put_context_cache(&root, b"two", 2).unwrap();
        store
            .put_context_cache(Path::new("/gone/ctx"), b"three", 3)
            .unwrap();
        assert_eq!(
            store.context_cache(&root).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(store.info().unwrap().stat_cache, 5);
        // gc drops the cache of a context that no longer exists.
        store.gc(false).unwrap();
        assert_eq!(store.context_cache(Path::new("/gone/ctx")).unwrap(), None);
        assert_eq!(
            store.context_cache(&root).unwrap().as_deref(),
            Some(&b"two"[..])
        );
    }

    #[test]
    fn manifests_keep_what_they_reference_through_gc() {
        let (_dir, mut store) = store();
        let layer = blob(&store, b"layer");
        let config = blob(&store, b"config");
        let unrelated = blob(&store, b"unrelated");
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{config}","size":6}},"layers":[{{"digest":"{layer}","size":5}}]}}"#
        );
        let (manifest, _) = store
            .add_blob(
                &mut manifest.as_bytes(),
                "application/vnd.oci.image.manifest.v1+json",
                None,
            )
            .unwrap();
        store.tag_image("app", "1", &manifest, None).unwrap();
        let report = store.gc(false).unwrap();
        let ids: Vec<_> = report.deleted.iter().map(|i| i.id.clone()).collect();
        assert_eq!(ids, vec![unrelated.to_string()]);
        for kept in [layer, config, manifest] {
            assert!(store.blob_path(&kept).unwrap().is_some());
        }
        assert!(matches!(
            store.add_blob(
                &mut &b"not json"[..],
                "application/vnd.oci.image.index.v1+json",
                None
            ),
            Err(StoreError::InvalidManifest { .. })
        ));
    }

    #[test]
    fn gc_follows_roots_refs_outputs_and_logs() {
        let (dir, mut store) = store();
        let base = drv(&store, "base", &[]);
        let step = drv(&store, "step", &[base]);
        let orphan = drv(&store, "orphan", &[]);
        let layer = blob(&store, b"layer");
        let orphan_layer = blob(&store, b"orphan layer");
        let one = |b| Output {
            layers: vec![Layer {
                diff_id: Sha256Digest::of(b"d"),
                blob: Some(b),
                tree: None,
            }],
            config: None,
        };
        store.record_output(&base, &one(layer)).unwrap();
        store.record_output(&orphan, &one(orphan_layer)).unwrap();
        let log = store.add_object(&mut &b"log"[..]).unwrap();
        let id = store.start_build(&step, 0).unwrap();
        store.finish_build(id, 1, 0, Some(&log)).unwrap();
        store
            .add_root("keep", &RootTarget::Derivation(step))
            .unwrap();
        std::fs::write(dir.path().join("tmp/leftover"), b"junk").unwrap();
        std::fs::write(dir.path().join("blobs/sha256/unrecorded"), b"junk").unwrap();

        let dry = store.gc(true).unwrap();
        assert!(dry.dry_run);
        assert!(dir.path().join("tmp/leftover").exists());
        assert!(store.blob_path(&orphan_layer).unwrap().is_some());

        let report = store.gc(false).unwrap();
        assert_eq!(report.deleted, dry.deleted);
        let kinds: Vec<_> = report
            .deleted
            .iter()
            .map(|i| (i.kind, i.id.as_str()))
            .collect();
        assert!(
            kinds.contains(&("derivation", &orphan.to_string())),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&("blob", &orphan_layer.to_string())),
            "{kinds:?}"
        );
        assert!(kinds.iter().any(|(k, _)| *k == "tmp"), "{kinds:?}");
        assert!(kinds.iter().any(|(k, _)| *k == "unrecorded"), "{kinds:?}");
        assert_eq!(report.deleted.len(), 4, "{kinds:?}");
        assert!(store.output(&base).unwrap().is_some());
        assert!(store.blob_path(&layer).unwrap().is_some());
        assert!(store.object_path(&log).unwrap().is_some());
        assert!(store.derivation(&orphan).unwrap().is_none());
        assert!(store.verify(false).unwrap().is_clean());
        assert!(store.gc(false).unwrap().deleted.is_empty());
    }

    #[test]
    fn verify_repair_forgets_corrupt_items_and_what_needs_them() {
        let (_dir, mut store) = store();
        let step = drv(&store, "step", &[]);
        let layer = blob(&store, b"layer");
        store
            .record_output(
                &step,
                &Output {
                    layers: vec![Layer {
                        diff_id: Sha256Digest::of(b"d"),
                        blob: Some(layer),
                        tree: None,
                    }],
                    config: None,
                },
            )
            .unwrap();
        let path = store.blob_path(&layer).unwrap().unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"tampered").unwrap();
        let report = store.verify(false).unwrap();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(
            report.problems[0].issue,
            Issue::Corrupt {
                expected: layer.to_string(),
                found: Sha256Digest::of(b"tampered").to_string()
            }
        );
        let repaired = store.verify(true).unwrap();
        assert!(repaired.repaired);
        assert_eq!(store.output(&step).unwrap(), None);
        assert_eq!(store.blob_path(&layer).unwrap(), None);
        assert!(!path.exists());
        assert!(store.verify(false).unwrap().is_clean());
    }

    #[test]
    fn add_tree_refuses_dirs_outside_tmp_and_keeps_the_first_tree() {
        let (dir, store) = store();
        let outside = tempfile::tempdir().unwrap();
        let key = TreeKey::new("k").unwrap();
        assert!(matches!(
            store.add_tree(outside.path(), &key),
            Err(StoreError::TreeNotInTmp { .. })
        ));
        assert!(TreeKey::new("sha256:ab").is_err());
        assert!(TreeKey::new("..").is_err());
        let first = store.tmp_dir().unwrap();
        std::fs::write(first.path().join("f"), b"1").unwrap();
        let path = store.add_tree(first.path(), &key).unwrap();
        let second = store.tmp_dir().unwrap();
        std::fs::write(second.path().join("f"), b"1").unwrap();
        assert_eq!(store.add_tree(second.path(), &key).unwrap(), path);
        assert!(!second.path().exists());
        assert_eq!(std::fs::read(path.join("f")).unwrap(), b"1");
        drop((first, second));
        assert!(file::list_dir(&dir.path().join("tmp")).unwrap().is_empty());
    }

    #[test]
    fn derivation_lock_serializes_builders() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let hash = Blake3Digest::of(b"d");
        let builds = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    // One handle per thread, as separate processes would.
                    let store = Store::open(dir.path()).unwrap();
                    let _guard = store.lock_derivation(&hash).unwrap();
                    if store.derivation(&hash).unwrap().is_none() {
                        builds.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        store
                            .record_derivation(&hash, b"d", DerivationKind::Step, "0", "d", &[])
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }
}
