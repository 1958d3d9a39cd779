-- 0001_init.sql: the first schema of kiln's store.
--
-- The store is a directory (see README.md in this folder for its layout).
-- Files live under it, named by their digest; this database records which of
-- them are complete and what they mean. A file that no row names does not
-- exist as far as kiln is concerned: writers put the file in place first and
-- record it second, in one transaction, so a crash never leaves a row that
-- points at a missing or half-written file. `kiln store gc` deletes files no
-- row names.
--
-- kiln opens the database with `PRAGMA journal_mode = WAL`,
-- `PRAGMA foreign_keys = ON` and a busy timeout, and applies the files of this
-- folder in order, each in one EXCLUSIVE transaction that also sets
-- `PRAGMA user_version` to the file's number.
--
-- Digests are stored as text with their algorithm prefix, exactly as kiln
-- prints them: `blake3:<64 hex>` (store objects, derivations) and
-- `sha256:<64 hex>` (OCI blobs). Times are Unix milliseconds (UTC).

-- Content-addressed files: `objects/<first 2 hex>/<64 hex>`, named by the
-- blake3 of their bytes. Files added with `kiln store add`, build logs, ...
CREATE TABLE objects (
    hash TEXT PRIMARY KEY
        CHECK (length(hash) = 71 AND hash GLOB 'blake3:*' AND substr(hash, 8) NOT GLOB '*[^0-9a-f]*'),
    size INTEGER NOT NULL CHECK (size >= 0)           -- bytes
) STRICT, WITHOUT ROWID;

-- OCI blobs: `blobs/sha256/<64 hex>`, named by the sha256 of their bytes:
-- compressed layers, image configs, manifests and indexes.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY
        CHECK (length(digest) = 71 AND digest GLOB 'sha256:*' AND substr(digest, 8) NOT GLOB '*[^0-9a-f]*'),
    size INTEGER NOT NULL CHECK (size >= 0),           -- bytes
    media_type TEXT NOT NULL                           -- e.g. application/vnd.oci.image.layer.v1.tar+gzip
) STRICT, WITHOUT ROWID;

-- The blobs a manifest or index names (its config, its layers, its
-- manifests). Filled in when a manifest or index is added; `reference` need
-- not be stored (yet), so it is not a foreign key. gc keeps what a kept
-- manifest references.
CREATE TABLE blob_refs (
    blob TEXT NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
    reference TEXT NOT NULL,                           -- sha256:<hex>
    PRIMARY KEY (blob, reference)
) STRICT, WITHOUT ROWID;
CREATE INDEX blob_refs_by_reference ON blob_refs (reference);

-- Unpacked layer trees: `trees/<key>/`, directories registered whole (the
-- sandbox's overlay lower dirs). The key is chosen by the caller (a diff_id's
-- hex, say) and is a single path component of [A-Za-z0-9._-]: no `:`, which
-- overlayfs uses to separate lower dirs. `files` and `size` are what
-- `kiln store verify` checks the directory against.
CREATE TABLE trees (
    key TEXT PRIMARY KEY
        CHECK (key <> '' AND key NOT IN ('.', '..') AND key NOT GLOB '*[^A-Za-z0-9._-]*'),
    files INTEGER NOT NULL CHECK (files >= 0),         -- entries below the root (files, dirs, links)
    size INTEGER NOT NULL CHECK (size >= 0)            -- bytes of regular files
) STRICT, WITHOUT ROWID;

-- Derivations: a build step's or stage's complete, canonical description of
-- its inputs (src/derivation writes the bytes). `hash` is the blake3 of
-- `bytes`; kiln checks that before recording one.
CREATE TABLE derivations (
    hash TEXT PRIMARY KEY
        CHECK (length(hash) = 71 AND hash GLOB 'blake3:*' AND substr(hash, 8) NOT GLOB '*[^0-9a-f]*'),
    bytes BLOB NOT NULL,                               -- the canonical encoding (kiln-drv-v1 ...)
    kind TEXT NOT NULL CHECK (kind IN ('step', 'stage')),
    stage TEXT NOT NULL,                               -- the stage it belongs to (name or index)
    name TEXT NOT NULL                                 -- for people: `RUN make`, `stage build`
) STRICT, WITHOUT ROWID;

-- What a derivation reads from other derivations: the step before it, the
-- stages it copies from, a stage's steps. gc keeps everything a kept
-- derivation references, so a rebuild after gc finds its cache.
CREATE TABLE refs (
    derivation TEXT NOT NULL REFERENCES derivations (hash) ON DELETE CASCADE,
    reference TEXT NOT NULL REFERENCES derivations (hash) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (derivation, reference)
) STRICT, WITHOUT ROWID;
CREATE INDEX refs_by_reference ON refs (reference);

-- A derivation's output, once built. A step's output is one layer (or none,
-- for a step that changes nothing); a stage's output is its layers, bottom
-- first, and an image config. The first output recorded for a derivation
-- stays; a second, identical or not, is ignored.
CREATE TABLE outputs (
    derivation TEXT PRIMARY KEY REFERENCES derivations (hash) ON DELETE CASCADE,
    config TEXT REFERENCES blobs (digest)              -- stage outputs: the image config blob
) STRICT, WITHOUT ROWID;
CREATE INDEX outputs_by_config ON outputs (config);

-- The layers of an output, in order (position 0 is the bottom layer).
CREATE TABLE output_layers (
    derivation TEXT NOT NULL REFERENCES outputs (derivation) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    diff_id TEXT NOT NULL                              -- sha256 of the uncompressed layer tar
        CHECK (length(diff_id) = 71 AND diff_id GLOB 'sha256:*'),
    blob TEXT NOT NULL REFERENCES blobs (digest),      -- the compressed layer
    tree TEXT REFERENCES trees (key),                  -- the layer unpacked, when kept
    PRIMARY KEY (derivation, position)
) STRICT, WITHOUT ROWID;
CREATE INDEX output_layers_by_blob ON output_layers (blob);
CREATE INDEX output_layers_by_tree ON output_layers (tree);

-- Local images by name: `name:tag` -> manifest. `derivation` is the stage
-- that built it, when kiln built it; gc then keeps that stage's derivations
-- and outputs too (the build cache of a tagged image survives gc).
CREATE TABLE images (
    name TEXT NOT NULL CHECK (name <> ''),
    tag TEXT NOT NULL CHECK (tag <> ''),
    manifest TEXT NOT NULL REFERENCES blobs (digest),
    derivation TEXT REFERENCES derivations (hash),
    PRIMARY KEY (name, tag)
) STRICT, WITHOUT ROWID;
CREATE INDEX images_by_manifest ON images (manifest);
CREATE INDEX images_by_derivation ON images (derivation);

-- GC roots: what gc must keep besides tagged images. A root is a name (a
-- file added with `kiln store add`, a kiln.lock pin, ...) pointing at one
-- item; adding a root with an existing name moves it. `target` is an
-- objects.hash, blobs.digest, trees.key or derivations.hash, per `kind`
-- (kiln checks it is recorded when the root is added).
CREATE TABLE roots (
    name TEXT PRIMARY KEY CHECK (name <> ''),
    kind TEXT NOT NULL CHECK (kind IN ('object', 'blob', 'tree', 'derivation')),
    target TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX roots_by_target ON roots (kind, target);

-- One row per attempt to build a derivation. `ended_at` and `exit_status`
-- stay NULL while it runs (or if kiln died); `log` is the object holding the
-- build's output.
CREATE TABLE builds (
    id INTEGER PRIMARY KEY,
    derivation TEXT NOT NULL REFERENCES derivations (hash) ON DELETE CASCADE,
    started_at INTEGER NOT NULL,                       -- Unix ms
    ended_at INTEGER,                                  -- Unix ms
    exit_status INTEGER,                               -- 0 = success
    log TEXT REFERENCES objects (hash) ON DELETE SET NULL
) STRICT;
CREATE INDEX builds_by_derivation ON builds (derivation);
CREATE INDEX builds_by_log ON builds (log);

-- Stat cache for context hashing: when a file's device, inode, size, mtime
-- and ctime are unchanged, its content hash (blake3 of the bytes, whether
-- or not they are stored as an object) and mode are taken from here instead
-- of re-reading it. `path` is the absolute path's bytes (not always UTF-8).
CREATE TABLE stat_cache (
    path BLOB PRIMARY KEY,
    dev INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,                             -- st_mode: type and permission bits
    hash TEXT NOT NULL                                 -- blake3:<hex> of the content
) STRICT, WITHOUT ROWID;
