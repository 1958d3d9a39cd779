-- A step's layer is kept as its unpacked tree, with its diff_id; the
-- compressed blob is written only when an image that holds the layer is
-- written (the target of a build, an export). A builder stage's layers are
-- never part of the image it helps build, and compressing them cost more
-- than running most steps. The same tree always packs to the same bytes
-- (the layer writer is deterministic), so writing the blob later gives the
-- blob that writing it at once would have.
--
-- `blob` may therefore be NULL, but then `tree` is not: a layer is always
-- held one way or the other. (SQLite cannot change a column's constraints
-- in place: the table is copied.)
CREATE TABLE output_layers_lazy (
    derivation TEXT NOT NULL REFERENCES outputs (derivation) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    diff_id TEXT NOT NULL                              -- sha256 of the uncompressed layer tar
        CHECK (length(diff_id) = 71 AND diff_id GLOB 'sha256:*'),
    blob TEXT REFERENCES blobs (digest),               -- the compressed layer, once written
    tree TEXT REFERENCES trees (key),                  -- the layer unpacked, when kept
    PRIMARY KEY (derivation, position),
    CHECK (blob IS NOT NULL OR tree IS NOT NULL)
) STRICT, WITHOUT ROWID;
INSERT INTO output_layers_lazy (derivation, position, diff_id, blob, tree)
    SELECT derivation, position, diff_id, blob, tree FROM output_layers;
DROP TABLE output_layers;
ALTER TABLE output_layers_lazy RENAME TO output_layers;
CREATE INDEX output_layers_by_blob ON output_layers (blob);
CREATE INDEX output_layers_by_tree ON output_layers (tree);
