//! `kiln store verify`: re-hash every recorded object, blob and derivation,
//! recount every tree, check roots and the database itself, and report
//! each item that is missing or does not match its name.
//!
//! With repair, a broken item is forgotten along with the records that
//! need it (an output using a corrupt layer blob goes, so its derivation
//! is rebuilt next time; an image tagging a corrupt manifest goes), and its
//! file is deleted. kiln cannot re-create content it has lost, just as
//! `nix-store --verify --repair` needs a substitute to do so.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use super::{Store, StoreError, TreeKey, file};
use crate::digest::{Blake3Digest, Sha256Digest};

/// What is wrong with an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "issue", rename_all = "snake_case")]
pub enum Issue {
    /// Its file or directory is gone.
    Missing,
    /// Its content does not hash to its name (or a tree's counts differ).
    Corrupt {
        /// What the store records.
        expected: String,
        /// What is there now.
        found: String,
    },
    /// It could not be read.
    Unreadable {
        /// The error.
        error: String,
    },
    /// A root names an item the store does not record.
    Dangling,
    /// SQLite's own integrity or foreign-key check failed.
    Database {
        /// What SQLite reported.
        message: String,
    },
}

/// One broken item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `object`, `blob`, `tree`, `derivation`, `root` or `database`.
    pub kind: &'static str,
    /// Its digest, key or name.
    pub id: String,
    /// Its file, if it has one.
    pub path: Option<PathBuf>,
    /// What is wrong.
    #[serde(flatten)]
    pub issue: Issue,
}

/// What verify found (and, with repair, forgot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// How many items were checked.
    pub checked: u64,
    /// What is broken, sorted by kind and id.
    pub problems: Vec<Problem>,
    /// Whether the problems were repaired (forgotten and deleted).
    pub repaired: bool,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

enum Item {
    Object(Blake3Digest),
    Blob(Sha256Digest),
    Tree(TreeKey),
}

impl Store {
    /// Re-hashes everything the store records and reports what is missing
    /// or corrupt. With `repair`, forgets each broken item and what depends
    /// on it, and deletes its file (waiting, like gc, until no other
    /// process has the store open).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut store = kiln::store::Store::open(dir.path())?;
    /// let hash = store.add_object(&mut &b"x"[..])?;
    /// assert!(store.verify(false)?.is_clean());
    /// std::fs::remove_file(store.object_path(&hash)?.unwrap())?;
    /// let report = store.verify(false)?;
    /// assert_eq!(report.problems[0].id, hash.to_string());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&mut self, repair: bool) -> Result<VerifyReport, StoreError> {
        if repair {
            self.exclusively(|store| {
                let mut report = store.check()?;
                store.repair(&report)?;
                report.repaired = true;
                Ok(report)
            })?
        } else {
            self.check()
        }
    }

    fn check(&self) -> Result<VerifyReport, StoreError> {
        let (graph, derivations, roots, db_problems) = {
            let mut db = self.db();
            let graph = db.graph(false)?;
            (
                graph,
                db.derivation_bytes()?,
                db.dangling_roots()?,
                db.integrity()?,
            )
        };
        let mut items = Vec::new();
        items.extend(graph.objects.keys().map(|h| Item::Object(*h)));
        items.extend(graph.blobs.keys().map(|d| Item::Blob(*d)));
        items.extend(graph.trees.keys().map(|k| Item::Tree(k.clone())));
        let checked = (items.len() + derivations.len()) as u64;
        let mut problems: Vec<Problem> = items
            .par_iter()
            .filter_map(|item| self.check_item(item))
            .collect();
        for (hash, bytes) in &derivations {
            let found = Blake3Digest::of(bytes);
            if found != *hash {
                problems.push(Problem {
                    kind: "derivation",
                    id: hash.to_string(),
                    path: None,
                    issue: Issue::Corrupt {
                        expected: hash.to_string(),
                        found: found.to_string(),
                    },
                });
            }
        }
        for (name, _) in roots {
            problems.push(Problem {
                kind: "root",
                id: name,
                path: None,
                issue: Issue::Dangling,
            });
        }
        for message in db_problems {
            problems.push(Problem {
                kind: "database",
                id: "kiln.sqlite".to_string(),
                path: Some(self.root.join("kiln.sqlite")),
                issue: Issue::Database { message },
            });
        }
        problems.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        Ok(VerifyReport {
            checked,
            problems,
            repaired: false,
        })
    }

    fn check_item(&self, item: &Item) -> Option<Problem> {
        let (kind, id, path) = match item {
            Item::Object(h) => ("object", h.to_string(), self.object_file(h)),
            Item::Blob(d) => ("blob", d.to_string(), self.blob_file(d)),
            Item::Tree(k) => ("tree", k.to_string(), self.tree_dir(k)),
        };
        let problem = |issue| {
            Some(Problem {
                kind,
                id: id.clone(),
                path: Some(path.clone()),
                issue,
            })
        };
        if let Item::Tree(key) = item {
            if !path.is_dir() {
                return problem(Issue::Missing);
            }
            let expected = self.db().tree(key).ok().flatten()?;
            return match file::tree_stats(&path) {
                Ok(found) if found == expected => None,
                Ok(found) => problem(Issue::Corrupt {
                    expected: format!("{} entries, {} bytes", expected.0, expected.1),
                    found: format!("{} entries, {} bytes", found.0, found.1),
                }),
                Err(e) => problem(Issue::Unreadable {
                    error: crate::one_line(&e),
                }),
            };
        }
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return problem(Issue::Missing),
            Err(e) => {
                return problem(Issue::Unreadable {
                    error: e.to_string(),
                });
            }
        };
        let found = match item {
            Item::Object(_) => hash_reader(&mut f, blake3::Hasher::new(), |h, b| {
                h.update(b);
            })
            .map(|h| Blake3Digest::from(h.finalize()).to_string()),
            _ => {
                use sha2::Digest as _;
                hash_reader(&mut f, sha2::Sha256::new(), |h, b| h.update(b))
                    .map(|h| Sha256Digest::from_bytes(h.finalize().into()).to_string())
            }
        };
        match found {
            Ok(found) if found == id => None,
            Ok(found) => problem(Issue::Corrupt {
                expected: id.clone(),
                found,
            }),
            Err(e) => problem(Issue::Unreadable {
                error: e.to_string(),
            }),
        }
    }

    fn repair(&mut self, report: &VerifyReport) -> Result<(), StoreError> {
        for p in &report.problems {
            match p.kind {
                "object" => {
                    let hash: Blake3Digest = p.id.parse().expect("verify printed this digest");
                    self.db().forget_object(&hash)?;
                    file::remove_any(&self.object_file(&hash))?;
                }
                "blob" => {
                    let digest: Sha256Digest = p.id.parse().expect("verify printed this digest");
                    self.db().forget_blob(&digest)?;
                    file::remove_any(&self.blob_file(&digest))?;
                }
                "tree" => {
                    let key = TreeKey::new(&p.id).expect("verify printed this key");
                    self.db().forget_tree(&key)?;
                    let dir = self.tree_dir(&key);
                    if dir.exists() {
                        file::remove_dir_via(&dir, &self.tmp)?;
                    }
                }
                "derivation" => {
                    let hash: Blake3Digest = p.id.parse().expect("verify printed this digest");
                    self.db().forget_derivation(&hash)?;
                }
                "root" => self.db().forget_root(&p.id)?,
                // SQLite's own damage is beyond what kiln can mend.
                _ => {}
            }
        }
        Ok(())
    }
}

fn hash_reader<H>(
    reader: &mut dyn Read,
    mut hasher: H,
    mut update: impl FnMut(&mut H, &[u8]),
) -> std::io::Result<H> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher),
            Ok(n) => update(&mut hasher, &buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
