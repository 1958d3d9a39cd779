-- The stat cache, one row per build context instead of one per file.
--
-- Planning a context reads the whole cache for its root in one go, and
-- 100,000 rows cost more to step through than the walk they save; one
-- blob per context root reads in a few milliseconds (git's index is the
-- model). `entries` is kiln's own versioned binary list (`kiln-stat-v1`,
-- see src/context/hash.rs): for each regular file below `root`, sorted by
-- path bytes, its path below the root, st_dev, st_ino, st_size,
-- st_mtime and st_ctime in nanoseconds, st_mode and the blake3 of its
-- content. A file whose stat fields are unchanged keeps its hash without
-- being read. It is a cache: a row that does not decode is ignored and
-- rewritten, and `kiln store gc` drops the rows of roots that are gone.
CREATE TABLE context_cache (
    root BLOB PRIMARY KEY,                   -- the context root's absolute, canonical path bytes
    entries BLOB NOT NULL,
    files INTEGER NOT NULL                   -- how many files `entries` lists
) STRICT;

DROP TABLE stat_cache;
