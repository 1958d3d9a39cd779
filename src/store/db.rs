//! All of the store's SQL: opening and migrating `kiln.sqlite`, and one
//! function per query. Values are always bound parameters, never formatted
//! into SQL text. The schema itself is `store-schema/*.sql`, embedded here.
//!
//! Every function returns [`StoreError::Database`] naming the database file
//! and what was being done; checks that a referenced item is recorded run
//! inside the same transaction as the insert that depends on them.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{
    BuildId, BuildRecord, Derivation, DerivationKind, Image, Info, ItemCount, Layer, Output,
    RootTarget, StoreError, TreeKey,
};
use crate::digest::{Blake3Digest, Sha256Digest};

/// The migrations, in order: `(version, file name, SQL)`. Applying file N
/// sets `PRAGMA user_version = N`. Never edit or remove a released one.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../store-schema/0001_init.sql"),
    ),
    (
        2,
        "0002_context_cache.sql",
        include_str!("../../store-schema/0002_context_cache.sql"),
    ),
    (
        3,
        "0003_lazy_layer_blobs.sql",
        include_str!("../../store-schema/0003_lazy_layer_blobs.sql"),
    ),
];

/// The schema version this binary writes: the last migration's number.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// How long a writer waits for another process's transaction to end.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The open database and its path (for error messages).
pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
}

/// Everything gc needs to decide what is reachable, read in one snapshot.
#[derive(Default)]
pub(crate) struct Graph {
    pub objects: BTreeMap<Blake3Digest, u64>,
    pub blobs: BTreeMap<Sha256Digest, u64>,
    pub trees: BTreeMap<TreeKey, u64>,
    pub derivations: BTreeMap<Blake3Digest, u64>,
    pub refs: Vec<(Blake3Digest, Blake3Digest)>,
    pub blob_refs: Vec<(Sha256Digest, Sha256Digest)>,
    pub output_configs: Vec<(Blake3Digest, Sha256Digest)>,
    pub output_layers: Vec<(Blake3Digest, Option<Sha256Digest>, Option<TreeKey>)>,
    pub images: Vec<(Sha256Digest, Option<Blake3Digest>)>,
    pub roots: Vec<RootTarget>,
    pub build_logs: Vec<(Blake3Digest, Blake3Digest)>,
}

/// What gc deletes from the database, in one transaction.
#[derive(Default)]
pub(crate) struct Deletion {
    pub derivations: Vec<Blake3Digest>,
    pub objects: Vec<Blake3Digest>,
    pub blobs: Vec<Sha256Digest>,
    pub trees: Vec<TreeKey>,
}

impl Db {
    /// Opens `path` (creating it if needed), refuses a schema newer than
    /// [`SCHEMA_VERSION`] before writing anything, switches to WAL and
    /// applies the missing migrations.
    pub(crate) fn open(path: &Path) -> Result<Db, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Database {
            path: path.to_path_buf(),
            action: "open the database",
            source,
        })?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(db.err("set the busy timeout"))?;
        // Read-only check first: a newer store is left exactly as it is.
        check_version(&db.path, db.user_version()?)?;
        db.enable_wal()?;
        db.conn
            .pragma_update(None, "foreign_keys", true)
            .map_err(db.err("enable foreign keys"))?;
        db.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(db.err("set synchronous = FULL"))?;
        db.migrate()?;
        Ok(db)
    }

    /// An in-memory database with the schema applied (tests).
    #[cfg(test)]
    pub(crate) fn open_in_memory() -> Db {
        let conn = Connection::open_in_memory().expect("an in-memory database always opens");
        let mut db = Db {
            conn,
            path: PathBuf::from(":memory:"),
        };
        db.conn
            .pragma_update(None, "foreign_keys", true)
            .expect("pragma on an in-memory database");
        db.migrate().expect("the embedded migrations apply");
        db
    }

    /// The raw connection (tests).
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    fn err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + use<> {
        let path = self.path.clone();
        move |source| StoreError::Database {
            path,
            action,
            source,
        }
    }

    fn user_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.err("read the schema version"))
    }

    /// Switches to WAL (persistent: a no-op once the store has it). Changing
    /// the journal mode needs a moment alone with the file; the busy handler
    /// does not always cover it, so retry while another process holds it.
    fn enable_wal(&self) -> Result<(), StoreError> {
        let mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(self.err("read the journal mode"))?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self
                .conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && attempt < 600 =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(self.err("switch to WAL")(e)),
            }
        }
    }

    /// Applies the migrations newer than `PRAGMA user_version`, all in one
    /// EXCLUSIVE transaction (so two processes opening a new store at once
    /// apply them once).
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |action| {
            let path = path.clone();
            move |source| StoreError::Database {
                path,
                action,
                source,
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(err("start the schema migration"))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(err("read the schema version"))?;
        check_version(&path, version)?;
        for &(number, _name, sql) in MIGRATIONS {
            if number > version {
                tx.execute_batch(sql)
                    .map_err(err("apply a schema migration"))?;
                tx.pragma_update(None, "user_version", number)
                    .map_err(err("record the schema version"))?;
            }
        }
        tx.commit().map_err(err("commit the schema migration"))
    }

    /// The schema version of the open database.
    pub(crate) fn schema_version(&self) -> Result<i64, StoreError> {
        self.user_version()
    }

    fn tx(&mut self, action: &'static str) -> Result<Transaction<'_>, StoreError> {
        let path = self.path.clone();
        // IMMEDIATE: take the write lock up front, so the busy timeout
        // applies instead of failing on a read-to-write upgrade.
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Database {
                path,
                action,
                source,
            })
    }

    // ---- objects, blobs, trees ------------------------------------------

    /// Whether an object is recorded.
    pub(crate) fn has_object(&self, hash: &Blake3Digest) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE hash = ?1)",
                [hash],
                |row| row.get(0),
            )
            .map_err(self.err("look up an object"))
    }

    /// Records an object (no-op if it already is).
    pub(crate) fn insert_object(
        &mut self,
        hash: &Blake3Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        let err = self.err("record an object");
        self.conn
            .execute(
                "INSERT OR IGNORE INTO objects (hash, size) VALUES (?1, ?2)",
                params![hash, to_sql_int(size)],
            )
            .map(drop)
            .map_err(err)
    }

    /// Records an object and makes it the target of root `name`, in one
    /// transaction.
    pub(crate) fn insert_object_with_root(
        &mut self,
        hash: &Blake3Digest,
        size: u64,
        root: &str,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("record an object and its root")?;
        tx.execute(
            "INSERT OR IGNORE INTO objects (hash, size) VALUES (?1, ?2)",
            params![hash, to_sql_int(size)],
        )
        .map_err(db_err(&path, "record an object and its root"))?;
        upsert_root(&tx, root, &RootTarget::Object(*hash), &path)?;
        tx.commit()
            .map_err(db_err(&path, "commit an object and its root"))
    }

    /// Whether a blob is recorded.
    pub(crate) fn has_blob(&self, digest: &Sha256Digest) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM blobs WHERE digest = ?1)",
                [digest],
                |row| row.get(0),
            )
            .map_err(self.err("look up a blob"))
    }

    /// Records a blob and the blobs it references (a manifest's config and
    /// layers), in one transaction.
    pub(crate) fn insert_blob(
        &mut self,
        digest: &Sha256Digest,
        size: u64,
        media_type: &str,
        references: &BTreeSet<Sha256Digest>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("record a blob")?;
        tx.execute(
            "INSERT OR IGNORE INTO blobs (digest, size, media_type) VALUES (?1, ?2, ?3)",
            params![digest, to_sql_int(size), media_type],
        )
        .map_err(db_err(&path, "record a blob"))?;
        {
            let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO blob_refs (blob, reference) VALUES (?1, ?2)")
                .map_err(db_err(&path, "record a blob's references"))?;
            for reference in references {
                insert
                    .execute(params![digest, reference])
                    .map_err(db_err(&path, "record a blob's references"))?;
            }
        }
        tx.commit().map_err(db_err(&path, "commit a blob"))
    }

    /// A recorded blob's media type.
    pub(crate) fn blob_media_type(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT media_type FROM blobs WHERE digest = ?1",
                [digest],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.err("look up a blob"))
    }

    /// A recorded tree's `(files, size)`.
    pub(crate) fn tree(&self, key: &TreeKey) -> Result<Option<(u64, u64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT files, size FROM trees WHERE key = ?1",
                [key],
                |row| Ok((from_sql_int(row.get(0)?), from_sql_int(row.get(1)?))),
            )
            .optional()
            .map_err(self.err("look up a tree"))
    }

    /// A recorded output layer with this diff_id that has a tree, if any
    /// (layer trees are named by their derivation, not their content).
    pub(crate) fn layer_by_diff_id(
        &self,
        diff_id: &Sha256Digest,
    ) -> Result<Option<Layer>, StoreError> {
        self.conn
            .query_row(
                "SELECT diff_id, blob, tree FROM output_layers
                 WHERE diff_id = ?1 AND tree IS NOT NULL ORDER BY derivation, position LIMIT 1",
                [diff_id],
                |row| {
                    Ok(Layer {
                        diff_id: row.get(0)?,
                        blob: row.get(1)?,
                        tree: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("look up a layer by diff_id"))
    }

    /// Records a tree (no-op if it already is).
    pub(crate) fn insert_tree(
        &mut self,
        key: &TreeKey,
        files: u64,
        size: u64,
    ) -> Result<(), StoreError> {
        let err = self.err("record a tree");
        self.conn
            .execute(
                "INSERT OR IGNORE INTO trees (key, files, size) VALUES (?1, ?2, ?3)",
                params![key, to_sql_int(files), to_sql_int(size)],
            )
            .map(drop)
            .map_err(err)
    }

    // ---- derivations and outputs -----------------------------------------

    /// Records a derivation and its references, checking that each
    /// referenced derivation is recorded.
    pub(crate) fn insert_derivation(&mut self, drv: &Derivation) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("record a derivation")?;
        tx.execute(
            "INSERT OR IGNORE INTO derivations (hash, bytes, kind, stage, name)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![drv.hash, drv.bytes, drv.kind.as_str(), drv.stage, drv.name],
        )
        .map_err(db_err(&path, "record a derivation"))?;
        for reference in &drv.refs {
            require(&tx, &path, "derivation", &reference.to_string())?;
            tx.execute(
                "INSERT OR IGNORE INTO refs (derivation, reference) VALUES (?1, ?2)",
                params![drv.hash, reference],
            )
            .map_err(db_err(&path, "record a derivation's references"))?;
        }
        tx.commit().map_err(db_err(&path, "commit a derivation"))
    }

    /// A recorded derivation.
    pub(crate) fn derivation(&self, hash: &Blake3Digest) -> Result<Option<Derivation>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT bytes, kind, stage, name FROM derivations WHERE hash = ?1",
                [hash],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(self.err("look up a derivation"))?;
        let Some((bytes, kind, stage, name)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT reference FROM refs WHERE derivation = ?1 ORDER BY reference")
            .map_err(self.err("look up a derivation's references"))?;
        let refs = stmt
            .query_map([hash], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(self.err("look up a derivation's references"))?;
        Ok(Some(Derivation {
            hash: *hash,
            bytes,
            kind: if kind == "stage" {
                DerivationKind::Stage
            } else {
                DerivationKind::Step
            },
            stage,
            name,
            refs,
        }))
    }

    /// Records `output` for `derivation` unless one is recorded already;
    /// returns the output that is recorded afterwards.
    pub(crate) fn insert_output(
        &mut self,
        derivation: &Blake3Digest,
        output: &Output,
    ) -> Result<Output, StoreError> {
        let path = self.path.clone();
        let tx = self.tx("record an output")?;
        require(&tx, &path, "derivation", &derivation.to_string())?;
        if let Some(existing) = select_output(&tx, &path, derivation)? {
            return Ok(existing);
        }
        if let Some(config) = &output.config {
            require(&tx, &path, "blob", &config.to_string())?;
        }
        tx.execute(
            "INSERT INTO outputs (derivation, config) VALUES (?1, ?2)",
            params![derivation, output.config],
        )
        .map_err(db_err(&path, "record an output"))?;
        for (position, layer) in output.layers.iter().enumerate() {
            if let Some(blob) = &layer.blob {
                require(&tx, &path, "blob", &blob.to_string())?;
            }
            if let Some(tree) = &layer.tree {
                require(&tx, &path, "tree", tree.as_str())?;
            }
            tx.execute(
                "INSERT INTO output_layers (derivation, position, diff_id, blob, tree)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    derivation,
                    to_sql_int(position as u64),
                    layer.diff_id,
                    layer.blob,
                    layer.tree
                ],
            )
            .map_err(db_err(&path, "record an output's layers"))?;
        }
        tx.commit().map_err(db_err(&path, "commit an output"))?;
        Ok(output.clone())
    }

    /// Records the blob written for layer `position` of `derivation`'s
    /// output (written after the output, when an image needed it).
    pub(crate) fn set_layer_blob(
        &mut self,
        derivation: &Blake3Digest,
        position: usize,
        blob: &Sha256Digest,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("record a layer blob")?;
        require(&tx, &path, "blob", &blob.to_string())?;
        tx.execute(
            "UPDATE output_layers SET blob = ?3 WHERE derivation = ?1 AND position = ?2",
            params![derivation, to_sql_int(position as u64), blob],
        )
        .map_err(db_err(&path, "record a layer blob"))?;
        tx.commit().map_err(db_err(&path, "commit a layer blob"))
    }

    /// A derivation's recorded output.
    pub(crate) fn output(&self, derivation: &Blake3Digest) -> Result<Option<Output>, StoreError> {
        select_output(&self.conn, &self.path, derivation)
    }

    // ---- images and roots ----------------------------------------------------

    /// Points `name:tag` at a manifest (moving the tag if it exists).
    pub(crate) fn upsert_image(&mut self, image: &Image) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("tag an image")?;
        require(&tx, &path, "blob", &image.manifest.to_string())?;
        if let Some(drv) = &image.derivation {
            require(&tx, &path, "derivation", &drv.to_string())?;
        }
        tx.execute(
            "INSERT INTO images (name, tag, manifest, derivation) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name, tag) DO UPDATE
             SET manifest = excluded.manifest, derivation = excluded.derivation",
            params![image.name, image.tag, image.manifest, image.derivation],
        )
        .map_err(db_err(&path, "tag an image"))?;
        tx.commit().map_err(db_err(&path, "commit an image tag"))
    }

    /// One image by name and tag.
    pub(crate) fn image(&self, name: &str, tag: &str) -> Result<Option<Image>, StoreError> {
        self.conn
            .query_row(
                "SELECT name, tag, manifest, derivation FROM images WHERE name = ?1 AND tag = ?2",
                [name, tag],
                image_from_row,
            )
            .optional()
            .map_err(self.err("look up an image"))
    }

    /// All images, sorted by name then tag.
    pub(crate) fn images(&self) -> Result<Vec<Image>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, tag, manifest, derivation FROM images ORDER BY name, tag")
            .map_err(self.err("list images"))?;
        stmt.query_map([], image_from_row)
            .and_then(Iterator::collect)
            .map_err(self.err("list images"))
    }

    /// Removes a tag; whether it existed.
    pub(crate) fn delete_image(&mut self, name: &str, tag: &str) -> Result<bool, StoreError> {
        let err = self.err("untag an image");
        self.conn
            .execute(
                "DELETE FROM images WHERE name = ?1 AND tag = ?2",
                [name, tag],
            )
            .map(|n| n > 0)
            .map_err(err)
    }

    /// Adds or moves a root, checking that its target is recorded.
    pub(crate) fn upsert_root(
        &mut self,
        name: &str,
        target: &RootTarget,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("add a root")?;
        upsert_root(&tx, name, target, &path)?;
        tx.commit().map_err(db_err(&path, "commit a root"))
    }

    /// Removes a root; whether it existed.
    pub(crate) fn delete_root(&mut self, name: &str) -> Result<bool, StoreError> {
        let err = self.err("remove a root");
        self.conn
            .execute("DELETE FROM roots WHERE name = ?1", [name])
            .map(|n| n > 0)
            .map_err(err)
    }

    /// All roots, sorted by name.
    pub(crate) fn roots(&self) -> Result<Vec<(String, RootTarget)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, kind, target FROM roots ORDER BY name")
            .map_err(self.err("list roots"))?;
        stmt.query_map([], |row| {
            let name: String = row.get(0)?;
            let kind: String = row.get(1)?;
            let target = root_target(&kind, row.get_ref(2)?).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
            Ok((name, target))
        })
        .and_then(Iterator::collect)
        .map_err(self.err("list roots"))
    }

    // ---- builds ---------------------------------------------------------------

    /// Records the start of a build.
    pub(crate) fn insert_build(
        &mut self,
        derivation: &Blake3Digest,
        started_at_ms: i64,
    ) -> Result<BuildId, StoreError> {
        let path = self.path.clone();
        let tx = self.tx("record a build")?;
        require(&tx, &path, "derivation", &derivation.to_string())?;
        tx.execute(
            "INSERT INTO builds (derivation, started_at) VALUES (?1, ?2)",
            params![derivation, started_at_ms],
        )
        .map_err(db_err(&path, "record a build"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(db_err(&path, "commit a build"))?;
        Ok(BuildId(id))
    }

    /// Records the end of a build.
    pub(crate) fn finish_build(
        &mut self,
        id: BuildId,
        ended_at_ms: i64,
        exit_status: i32,
        log: Option<&Blake3Digest>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("finish a build")?;
        if let Some(log) = log {
            require(&tx, &path, "object", &log.to_string())?;
        }
        tx.execute(
            "UPDATE builds SET ended_at = ?2, exit_status = ?3, log = ?4 WHERE id = ?1",
            params![id.0, ended_at_ms, exit_status, log],
        )
        .map_err(db_err(&path, "finish a build"))?;
        tx.commit().map_err(db_err(&path, "commit a build"))
    }

    /// A derivation's builds, oldest first.
    pub(crate) fn builds(&self, derivation: &Blake3Digest) -> Result<Vec<BuildRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, derivation, started_at, ended_at, exit_status, log
                 FROM builds WHERE derivation = ?1 ORDER BY id",
            )
            .map_err(self.err("list builds"))?;
        stmt.query_map([derivation], |row| {
            Ok(BuildRecord {
                id: BuildId(row.get(0)?),
                derivation: row.get(1)?,
                started_at_ms: row.get(2)?,
                ended_at_ms: row.get(3)?,
                exit_status: row.get(4)?,
                log: row.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(self.err("list builds"))
    }

    // ---- stat cache -------------------------------------------------------------

    /// Looks up many paths in one transaction.
    /// Every stat-cache entry whose path starts with `dir` + `/`, in one
    /// range scan of the primary key (far cheaper than a lookup per path
    /// for a whole build context).
    /// The stat cache of the context rooted at `root`, as stored.
    pub(crate) fn context_cache(&mut self, root: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        use std::os::unix::ffi::OsStrExt;
        let path = self.path.clone();
        // The blob is read straight into one buffer of its size
        // (incremental I/O): a large context's cache is megabytes, and a
        // query would copy it twice.
        let tx = self
            .conn
            .transaction()
            .map_err(db_err(&path, "read the stat cache"))?;
        let row: Option<(i64, i64)> = tx
            .prepare_cached("SELECT rowid, length(entries) FROM context_cache WHERE root = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([root.as_os_str().as_bytes()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
            })
            .map_err(db_err(&path, "read the stat cache"))?;
        let Some((rowid, len)) = row else {
            return Ok(None);
        };
        let mut bytes = vec![0; usize::try_from(len).unwrap_or(0)];
        tx.blob_open(rusqlite::MAIN_DB, "context_cache", "entries", rowid, true)
            .and_then(|blob| blob.read_at_exact(&mut bytes, 0))
            .map_err(db_err(&path, "read the stat cache"))?;
        Ok(Some(bytes))
    }

    /// Replaces the stat cache of the context rooted at `root`.
    pub(crate) fn put_context_cache(
        &mut self,
        root: &Path,
        entries: &[u8],
        files: u64,
    ) -> Result<(), StoreError> {
        use std::os::unix::ffi::OsStrExt;
        let path = self.path.clone();
        let tx = self.tx("update the stat cache")?;
        tx.execute(
            "INSERT OR REPLACE INTO context_cache (root, entries, files) VALUES (?1, ?2, ?3)",
            params![root.as_os_str().as_bytes(), entries, to_sql_int(files)],
        )
        .map_err(db_err(&path, "update the stat cache"))?;
        tx.commit().map_err(db_err(&path, "commit the stat cache"))
    }

    /// The context roots that have a stat cache.
    pub(crate) fn context_cache_roots(&mut self) -> Result<Vec<PathBuf>, StoreError> {
        use std::os::unix::ffi::OsStringExt;
        let path = self.path.clone();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT root FROM context_cache ORDER BY root")
            .map_err(db_err(&path, "read the stat cache"))?;
        let rows = stmt
            .query_map([], |row| {
                let bytes: Vec<u8> = row.get(0)?;
                Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
            })
            .map_err(db_err(&path, "read the stat cache"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db_err(&path, "read the stat cache"))
    }

    /// Forgets the stat caches of `roots`.
    pub(crate) fn forget_context_caches(&mut self, roots: &[PathBuf]) -> Result<(), StoreError> {
        use std::os::unix::ffi::OsStrExt;
        let path = self.path.clone();
        let tx = self.tx("update the stat cache")?;
        for root in roots {
            tx.execute(
                "DELETE FROM context_cache WHERE root = ?1",
                [root.as_os_str().as_bytes()],
            )
            .map_err(db_err(&path, "update the stat cache"))?;
        }
        tx.commit().map_err(db_err(&path, "commit the stat cache"))
    }

    // ---- info, verify, gc ---------------------------------------------------------

    /// Counts and sizes of everything recorded.
    pub(crate) fn info(&mut self) -> Result<Info, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(db_err(&path, "read store counts"))?;
        let sized = |sql: &str| -> Result<ItemCount, StoreError> {
            tx.query_row(sql, [], |row| {
                Ok(ItemCount {
                    count: from_sql_int(row.get(0)?),
                    bytes: from_sql_int(row.get(1)?),
                })
            })
            .map_err(db_err(&path, "read store counts"))
        };
        let count = |sql: &str| -> Result<u64, StoreError> {
            tx.query_row(sql, [], |row| row.get(0).map(from_sql_int))
                .map_err(db_err(&path, "read store counts"))
        };
        let info = Info {
            root: PathBuf::new(),
            schema_version: 0,
            objects: sized("SELECT count(*), coalesce(sum(size), 0) FROM objects")?,
            blobs: sized("SELECT count(*), coalesce(sum(size), 0) FROM blobs")?,
            trees: sized("SELECT count(*), coalesce(sum(size), 0) FROM trees")?,
            derivations: sized(
                "SELECT count(*), coalesce(sum(length(bytes)), 0) FROM derivations",
            )?,
            outputs: count("SELECT count(*) FROM outputs")?,
            images: count("SELECT count(*) FROM images")?,
            roots: count("SELECT count(*) FROM roots")?,
            builds: count("SELECT count(*) FROM builds")?,
            stat_cache: count("SELECT coalesce(sum(files), 0) FROM context_cache")?,
            database_bytes: 0,
        };
        drop(tx);
        Ok(info)
    }

    /// The whole reference graph, read in one transaction.
    pub(crate) fn graph(&mut self, edges: bool) -> Result<Graph, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(db_err(&path, "read the store index"))?;
        let e = || db_err(&path, "read the store index");
        let mut g = Graph::default();
        fn rows<T, F>(tx: &Transaction<'_>, sql: &str, f: F) -> rusqlite::Result<Vec<T>>
        where
            F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        {
            tx.prepare(sql)?.query_map([], f)?.collect()
        }
        g.objects = rows(&tx, "SELECT hash, size FROM objects", pair)
            .map_err(e())?
            .into_iter()
            .collect();
        g.blobs = rows(&tx, "SELECT digest, size FROM blobs", pair)
            .map_err(e())?
            .into_iter()
            .collect();
        g.trees = rows(&tx, "SELECT key, size FROM trees", pair)
            .map_err(e())?
            .into_iter()
            .collect();
        g.derivations = rows(&tx, "SELECT hash, length(bytes) FROM derivations", pair)
            .map_err(e())?
            .into_iter()
            .collect();
        if edges {
            g.refs = rows(&tx, "SELECT derivation, reference FROM refs", two).map_err(e())?;
            // blob_refs.reference need not be recorded; unparsable ones
            // cannot name a stored blob and are skipped.
            g.blob_refs = rows(&tx, "SELECT blob, reference FROM blob_refs", |row| {
                Ok((row.get(0)?, row.get::<_, String>(1)?.parse().ok()))
            })
            .map_err(e())?
            .into_iter()
            .filter_map(|(b, r): (Sha256Digest, Option<Sha256Digest>)| Some((b, r?)))
            .collect();
            g.output_configs = rows(
                &tx,
                "SELECT derivation, config FROM outputs WHERE config IS NOT NULL",
                two,
            )
            .map_err(e())?;
            g.output_layers = rows(
                &tx,
                "SELECT derivation, blob, tree FROM output_layers",
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(e())?;
            g.images = rows(&tx, "SELECT manifest, derivation FROM images", two).map_err(e())?;
            g.roots = rows(&tx, "SELECT kind, target FROM roots", |row| {
                let kind: String = row.get(0)?;
                root_target(&kind, row.get_ref(1)?).map_err(|err| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        Box::new(err),
                    )
                })
            })
            .map_err(e())?;
            g.build_logs = rows(
                &tx,
                "SELECT derivation, log FROM builds WHERE log IS NOT NULL",
                two,
            )
            .map_err(e())?;
        }
        drop(tx);
        Ok(g)
    }

    /// Every derivation's hash and bytes (for verify).
    pub(crate) fn derivation_bytes(&self) -> Result<Vec<(Blake3Digest, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash, bytes FROM derivations ORDER BY hash")
            .map_err(self.err("read derivations"))?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(self.err("read derivations"))
    }

    /// Deletes what gc found unreachable, in one transaction. Rows go
    /// before files: a crash after this commit leaves unrecorded files,
    /// which the next gc removes.
    pub(crate) fn delete(&mut self, del: &Deletion) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("delete unreachable items")?;
        let e = || db_err(&path, "delete unreachable items");
        for hash in &del.derivations {
            // outputs, output_layers, refs from it and builds cascade.
            tx.execute("DELETE FROM derivations WHERE hash = ?1", [hash])
                .map_err(e())?;
        }
        for key in &del.trees {
            tx.execute("DELETE FROM trees WHERE key = ?1", [key])
                .map_err(e())?;
        }
        for digest in &del.blobs {
            tx.execute("DELETE FROM blobs WHERE digest = ?1", [digest])
                .map_err(e())?;
        }
        for hash in &del.objects {
            tx.execute("DELETE FROM objects WHERE hash = ?1", [hash])
                .map_err(e())?;
        }
        tx.commit().map_err(e())
    }

    /// `verify --repair`: forgets a broken object and what needs it (roots
    /// on it; build logs become NULL).
    pub(crate) fn forget_object(&mut self, hash: &Blake3Digest) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("forget a broken object")?;
        let e = || db_err(&path, "forget a broken object");
        tx.execute(
            "DELETE FROM roots WHERE kind = 'object' AND target = ?1",
            [hash],
        )
        .map_err(e())?;
        tx.execute("DELETE FROM objects WHERE hash = ?1", [hash])
            .map_err(e())?;
        tx.commit().map_err(e())
    }

    /// `verify --repair`: forgets a broken blob and what needs it: the
    /// outputs using it (their derivations will be rebuilt), the images
    /// tagging it, the roots on it.
    pub(crate) fn forget_blob(&mut self, digest: &Sha256Digest) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("forget a broken blob")?;
        let e = || db_err(&path, "forget a broken blob");
        tx.execute(
            "DELETE FROM outputs WHERE config = ?1
             OR derivation IN (SELECT derivation FROM output_layers WHERE blob = ?1)",
            [digest],
        )
        .map_err(e())?;
        tx.execute("DELETE FROM images WHERE manifest = ?1", [digest])
            .map_err(e())?;
        tx.execute(
            "DELETE FROM roots WHERE kind = 'blob' AND target = ?1",
            [digest],
        )
        .map_err(e())?;
        tx.execute("DELETE FROM blobs WHERE digest = ?1", [digest])
            .map_err(e())?;
        tx.commit().map_err(e())
    }

    /// `verify --repair`: forgets a broken tree (layers keep their blob and
    /// lose the unpacked copy; roots on it go).
    pub(crate) fn forget_tree(&mut self, key: &TreeKey) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("forget a broken tree")?;
        let e = || db_err(&path, "forget a broken tree");
        // A layer held only as this tree is lost: its output goes (the
        // derivation will be rebuilt); the others keep their blob.
        tx.execute(
            "DELETE FROM outputs WHERE derivation IN
             (SELECT derivation FROM output_layers WHERE tree = ?1 AND blob IS NULL)",
            [key],
        )
        .map_err(e())?;
        tx.execute(
            "UPDATE output_layers SET tree = NULL WHERE tree = ?1",
            [key],
        )
        .map_err(e())?;
        tx.execute(
            "DELETE FROM roots WHERE kind = 'tree' AND target = ?1",
            [key],
        )
        .map_err(e())?;
        tx.execute("DELETE FROM trees WHERE key = ?1", [key])
            .map_err(e())?;
        tx.commit().map_err(e())
    }

    /// `verify --repair`: forgets a derivation whose bytes do not hash to
    /// its name, with everything that references it.
    pub(crate) fn forget_derivation(&mut self, hash: &Blake3Digest) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.tx("forget a broken derivation")?;
        let e = || db_err(&path, "forget a broken derivation");
        tx.execute("DELETE FROM refs WHERE reference = ?1", [hash])
            .map_err(e())?;
        tx.execute(
            "UPDATE images SET derivation = NULL WHERE derivation = ?1",
            [hash],
        )
        .map_err(e())?;
        tx.execute(
            "DELETE FROM roots WHERE kind = 'derivation' AND target = ?1",
            [hash],
        )
        .map_err(e())?;
        tx.execute("DELETE FROM derivations WHERE hash = ?1", [hash])
            .map_err(e())?;
        tx.commit().map_err(e())
    }

    /// Roots whose target is not recorded (verify).
    pub(crate) fn dangling_roots(&self) -> Result<Vec<(String, RootTarget)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, kind, target FROM roots r WHERE NOT CASE kind
                   WHEN 'object' THEN EXISTS (SELECT 1 FROM objects WHERE hash = r.target)
                   WHEN 'blob' THEN EXISTS (SELECT 1 FROM blobs WHERE digest = r.target)
                   WHEN 'tree' THEN EXISTS (SELECT 1 FROM trees WHERE key = r.target)
                   WHEN 'derivation' THEN EXISTS (SELECT 1 FROM derivations WHERE hash = r.target)
                 END
                 ORDER BY name",
            )
            .map_err(self.err("check roots"))?;
        stmt.query_map([], |row| {
            let kind: String = row.get(1)?;
            let target = root_target(&kind, row.get_ref(2)?).map_err(|err| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    Box::new(err),
                )
            })?;
            Ok((row.get(0)?, target))
        })
        .and_then(Iterator::collect)
        .map_err(self.err("check roots"))
    }

    /// Deletes a root by name (repair of a dangling one).
    pub(crate) fn forget_root(&mut self, name: &str) -> Result<(), StoreError> {
        self.delete_root(name).map(drop)
    }

    /// `PRAGMA integrity_check` and `foreign_key_check`: the problems they
    /// report, as text (empty when the database is sound).
    pub(crate) fn integrity(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(self.err("check the database"))?;
        let rows: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(self.err("check the database"))?;
        problems.extend(rows.into_iter().filter(|r| r != "ok"));
        let mut stmt = self
            .conn
            .prepare("PRAGMA foreign_key_check")
            .map_err(self.err("check foreign keys"))?;
        let rows: Vec<String> = stmt
            .query_map([], |row| {
                Ok(format!(
                    "table {} row {} violates a foreign key to {}",
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?.unwrap_or(-1),
                    row.get::<_, String>(2)?
                ))
            })
            .and_then(Iterator::collect)
            .map_err(self.err("check foreign keys"))?;
        problems.extend(rows);
        Ok(problems)
    }
}

fn pair<T: FromSql>(row: &rusqlite::Row<'_>) -> rusqlite::Result<(T, u64)> {
    Ok((row.get(0)?, from_sql_int(row.get(1)?)))
}

fn two<A: FromSql, B: FromSql>(row: &rusqlite::Row<'_>) -> rusqlite::Result<(A, B)> {
    Ok((row.get(0)?, row.get(1)?))
}

fn check_version(path: &Path, found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn db_err(path: &Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Database {
        path,
        action,
        source,
    }
}

/// Fails with [`StoreError::Missing`] unless `id` is recorded as `kind`.
fn require(conn: &Connection, path: &Path, kind: &'static str, id: &str) -> Result<(), StoreError> {
    let sql = match kind {
        "object" => "SELECT EXISTS (SELECT 1 FROM objects WHERE hash = ?1)",
        "blob" => "SELECT EXISTS (SELECT 1 FROM blobs WHERE digest = ?1)",
        "tree" => "SELECT EXISTS (SELECT 1 FROM trees WHERE key = ?1)",
        _ => "SELECT EXISTS (SELECT 1 FROM derivations WHERE hash = ?1)",
    };
    let found: bool = conn
        .query_row(sql, [id], |row| row.get(0))
        .map_err(db_err(path, "look up a referenced item"))?;
    if found {
        Ok(())
    } else {
        Err(StoreError::Missing {
            kind,
            id: id.to_string(),
        })
    }
}

fn upsert_root(
    tx: &Transaction<'_>,
    name: &str,
    target: &RootTarget,
    path: &Path,
) -> Result<(), StoreError> {
    let (kind, id) = target.kind_and_id();
    require(tx, path, kind, &id)?;
    tx.execute(
        "INSERT INTO roots (name, kind, target) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, target = excluded.target",
        params![name, kind, id],
    )
    .map(drop)
    .map_err(db_err(path, "add a root"))
}

fn select_output(
    conn: &Connection,
    path: &Path,
    derivation: &Blake3Digest,
) -> Result<Option<Output>, StoreError> {
    let config: Option<Option<Sha256Digest>> = conn
        .query_row(
            "SELECT config FROM outputs WHERE derivation = ?1",
            [derivation],
            |row| row.get(0),
        )
        .optional()
        .map_err(db_err(path, "look up an output"))?;
    let Some(config) = config else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT diff_id, blob, tree FROM output_layers
             WHERE derivation = ?1 ORDER BY position",
        )
        .map_err(db_err(path, "look up an output's layers"))?;
    let layers = stmt
        .query_map([derivation], |row| {
            Ok(Layer {
                diff_id: row.get(0)?,
                blob: row.get(1)?,
                tree: row.get(2)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(db_err(path, "look up an output's layers"))?;
    Ok(Some(Output { layers, config }))
}

fn image_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        name: row.get(0)?,
        tag: row.get(1)?,
        manifest: row.get(2)?,
        derivation: row.get(3)?,
    })
}

fn root_target(kind: &str, value: ValueRef<'_>) -> Result<RootTarget, FromSqlError> {
    Ok(match kind {
        "object" => RootTarget::Object(Blake3Digest::column_result(value)?),
        "blob" => RootTarget::Blob(Sha256Digest::column_result(value)?),
        "tree" => RootTarget::Tree(TreeKey::column_result(value)?),
        "derivation" => RootTarget::Derivation(Blake3Digest::column_result(value)?),
        other => {
            return Err(FromSqlError::Other(
                format!("unknown root kind `{other}`").into(),
            ));
        }
    })
}

/// SQLite integers are i64; sizes, counts, inodes and devices are u64 far
/// below 2^63. Values above it are stored as their bit pattern.
pub(crate) fn to_sql_int(n: u64) -> i64 {
    n as i64
}

/// The inverse of [`to_sql_int`].
pub(crate) fn from_sql_int(n: i64) -> u64 {
    n as u64
}

// Digests and tree keys are stored as the text kiln prints.

impl ToSql for Blake3Digest {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

impl FromSql for Blake3Digest {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for Sha256Digest {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

impl FromSql for Sha256Digest {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for TreeKey {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for TreeKey {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        TreeKey::new(value.as_str()?).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema as SQLite holds it after every migration: a reviewed
    /// snapshot, so a schema change shows up in review.
    #[test]
    fn migrated_schema_snapshot() {
        let db = Db::open_in_memory();
        let mut stmt = db
            .conn()
            .prepare("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY type, name")
            .unwrap();
        let schema: Vec<String> = stmt
            .query_map([], |row| {
                Ok(format!(
                    "-- {} {}\n{};",
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let version: i64 = db
            .conn()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        insta::assert_snapshot!(format!(
            "-- user_version {version}\n\n{}",
            schema.join("\n\n")
        ));
    }

    #[test]
    fn migrations_are_numbered_in_order_and_match_their_files() {
        for (i, (number, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*number, i as i64 + 1);
            assert!(name.starts_with(&format!("{number:04}_")), "{name}");
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("store-schema")
                .join(name);
            assert!(file.is_file(), "{} is missing", file.display());
        }
    }

    #[test]
    fn reopening_a_migrated_database_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.sqlite");
        drop(Db::open(&path).unwrap());
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = db
            .conn()
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Db::open(&path).err().unwrap();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn schema_checks_reject_malformed_digests_and_keys() {
        let db = Db::open_in_memory();
        let c = db.conn();
        assert!(
            c.execute(
                "INSERT INTO objects (hash, size) VALUES ('blake3:00', 1)",
                []
            )
            .is_err()
        );
        assert!(
            c.execute(
                "INSERT INTO blobs (digest, size, media_type) VALUES (?1, 1, 'x')",
                [Blake3Digest::of(b"").to_string()],
            )
            .is_err()
        );
        assert!(
            c.execute(
                "INSERT INTO trees (key, files, size) VALUES ('a:b', 0, 0)",
                []
            )
            .is_err()
        );
        assert!(
            c.execute(
                "INSERT INTO trees (key, files, size) VALUES ('..', 0, 0)",
                []
            )
            .is_err()
        );
        c.execute(
            "INSERT INTO trees (key, files, size) VALUES ('ab.c-d_1', 0, 0)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn foreign_keys_are_enforced() {
        let db = Db::open_in_memory();
        let err = db.conn().execute(
            "INSERT INTO images (name, tag, manifest) VALUES ('a', 'b', ?1)",
            [Sha256Digest::of(b"").to_string()],
        );
        assert!(err.is_err());
    }
}
