//! Two derivations compared like nix-diff compares two `.drv` files:
//! starting from the two roots, follow the references that differ down to
//! the derivations whose *own* inputs differ, and name those inputs (base
//! image digest, a context file by path and hash, an environment variable
//! or build arg as the step sees it, the instruction, a stage or image
//! read with `--from`, SOURCE_DATE_EPOCH, ...).
//!
//! Pure: derivations come through a lookup function; a pair already
//! explained is not explained twice.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::DiffError;
use super::json::{self, Change};
use crate::derivation::decode::{self, Decoded};
use crate::digest::Blake3Digest;

/// A derivation as the lookup gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drv {
    /// Its hash.
    pub hash: Blake3Digest,
    /// Its canonical encoding.
    pub bytes: Vec<u8>,
    /// A name for people (`build: RUN make`).
    pub name: String,
}

/// One input that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum InputChange {
    /// The base image (`FROM`), by digest.
    BaseImage {
        /// In A.
        a: String,
        /// In B.
        b: String,
    },
    /// The instruction after expansion (its fields that differ).
    Instruction {
        /// The instruction in A (canonical JSON).
        a: String,
        /// In B.
        b: String,
        /// Field by field.
        fields: Vec<Change>,
    },
    /// A variable the step sees (ENV, or an ARG / `--build-arg`).
    Env {
        /// Its name.
        name: String,
        /// In A (absent: not set).
        a: Option<String>,
        /// In B.
        b: Option<String>,
    },
    /// A context file the step reads.
    ContextFile {
        /// Its path in the context.
        path: String,
        /// `KIND MODE HASH` in A (absent: not read).
        a: Option<String>,
        /// In B.
        b: Option<String>,
    },
    /// An image read with `--from`, by digest.
    Image {
        /// The reference as written.
        reference: String,
        /// In A.
        a: Option<String>,
        /// In B.
        b: Option<String>,
    },
    /// A stage read with `--from`, added or removed.
    Stage {
        /// The reference as written.
        reference: String,
        /// In A.
        a: Option<String>,
        /// In B.
        b: Option<String>,
    },
    /// A stage's instruction list: an instruction added, removed or
    /// replaced (metadata instructions have no derivation of their own).
    Step {
        /// Its position in the stage.
        index: usize,
        /// In A (`KEYWORD json`).
        a: Option<String>,
        /// In B.
        b: Option<String>,
    },
    /// Another kind of input record (e.g. a fetch pin), by kind and name.
    Other {
        /// The record's kind (its first field).
        kind: String,
        /// Its name (its second field).
        name: String,
        /// The rest of it in A (absent: not an input).
        a: Option<String>,
        /// In B.
        b: Option<String>,
    },
    /// Another field (`shell`, `workdir`, `user`, `platform`,
    /// `source-date-epoch`, `kind`).
    Field {
        /// Its name.
        name: String,
        /// In A.
        a: String,
        /// In B.
        b: String,
    },
}

/// Two derivations that differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrvDiff {
    /// In A.
    pub a: Blake3Digest,
    /// In B.
    pub b: Blake3Digest,
    /// `step` or `stage`.
    pub kind: String,
    /// A's name.
    pub name_a: String,
    /// B's name.
    pub name_b: String,
    /// Its own inputs that differ (empty: it differs only through the
    /// derivations below).
    pub inputs: Vec<InputChange>,
    /// The derivations it reads from that differ.
    pub children: Vec<DrvDiff>,
    /// Already explained elsewhere in the report.
    pub seen: bool,
}

/// The comparison of two derivation graphs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrvReport {
    /// Whether the two roots are the same derivation.
    pub same: bool,
    /// How they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<DrvDiff>,
}

struct Walk<'a> {
    lookup: &'a dyn Fn(&Blake3Digest) -> Option<Drv>,
    seen: BTreeSet<(Blake3Digest, Blake3Digest)>,
}

/// Compares the derivations `a` and `b`.
pub fn diff(
    a: &Blake3Digest,
    b: &Blake3Digest,
    lookup: &dyn Fn(&Blake3Digest) -> Option<Drv>,
) -> Result<DrvReport, DiffError> {
    if a == b {
        return Ok(DrvReport {
            same: true,
            root: None,
        });
    }
    let mut walk = Walk {
        lookup,
        seen: BTreeSet::new(),
    };
    Ok(DrvReport {
        same: false,
        root: Some(walk.pair(a, b)?),
    })
}

fn as_drv(text: &str) -> Option<Blake3Digest> {
    text.parse().ok()
}

impl Walk<'_> {
    fn load(&self, hash: &Blake3Digest) -> Result<(Drv, Decoded), DiffError> {
        let drv = (self.lookup)(hash).ok_or(DiffError::MissingDerivation { hash: *hash })?;
        let decoded = decode::decode(&drv.bytes).map_err(|reason| DiffError::BadDerivation {
            hash: *hash,
            reason,
        })?;
        Ok((drv, decoded))
    }

    fn pair(&mut self, a: &Blake3Digest, b: &Blake3Digest) -> Result<DrvDiff, DiffError> {
        let (da, xa) = self.load(a)?;
        let (db, xb) = self.load(b)?;
        let mut out = DrvDiff {
            a: *a,
            b: *b,
            kind: xa.kind.clone(),
            name_a: da.name,
            name_b: db.name,
            inputs: Vec::new(),
            children: Vec::new(),
            seen: false,
        };
        if !self.seen.insert((*a, *b)) {
            out.seen = true;
            return Ok(out);
        }
        if xa.kind != xb.kind {
            out.inputs.push(InputChange::Field {
                name: "kind".into(),
                a: xa.kind,
                b: xb.kind,
            });
            return Ok(out);
        }
        match xa.kind.as_str() {
            "stage" => self.stage(&xa, &xb, &mut out)?,
            _ => self.step(&xa, &xb, &mut out)?,
        }
        Ok(out)
    }

    fn child(
        &mut self,
        a: Blake3Digest,
        b: Blake3Digest,
        out: &mut DrvDiff,
    ) -> Result<(), DiffError> {
        if a != b {
            let d = self.pair(&a, &b)?;
            out.children.push(d);
        }
        Ok(())
    }

    /// A base or parent: a derivation (followed), `a+b` (a `--link` step
    /// over its parent: both followed), or an image reference.
    fn base(&mut self, a: &str, b: &str, out: &mut DrvDiff) -> Result<(), DiffError> {
        if a == b {
            return Ok(());
        }
        let split = |s: &str| -> Option<Vec<Blake3Digest>> {
            s.split('+').map(as_drv).collect::<Option<Vec<_>>>()
        };
        match (split(a), split(b)) {
            (Some(x), Some(y)) if x.len() == y.len() => {
                for (p, q) in x.into_iter().zip(y) {
                    self.child(p, q, out)?;
                }
            }
            _ => out.inputs.push(InputChange::BaseImage {
                a: a.to_owned(),
                b: b.to_owned(),
            }),
        }
        Ok(())
    }

    fn fields(&self, xa: &Decoded, xb: &Decoded, names: &[&str], out: &mut DrvDiff) {
        for name in names {
            let (a, b) = (xa.text(name), xb.text(name));
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                (a, b) if a == b => continue,
                (a, b) => (a.unwrap_or("").to_owned(), b.unwrap_or("").to_owned()),
            };
            if a != b {
                out.inputs.push(InputChange::Field {
                    name: (*name).to_owned(),
                    a,
                    b,
                });
            }
        }
    }

    fn stage(&mut self, xa: &Decoded, xb: &Decoded, out: &mut DrvDiff) -> Result<(), DiffError> {
        self.base(
            xa.text("base").unwrap_or(""),
            xb.text("base").unwrap_or(""),
            out,
        )?;
        self.fields(xa, xb, &["platform", "source-date-epoch"], out);
        let (sa, sb) = (xa.items("steps"), xb.items("steps"));
        let show = |r: &Vec<String>| {
            format!(
                "{} {}",
                r.first().map_or("", String::as_str),
                r.get(1).map_or("", String::as_str)
            )
        };
        for i in 0..sa.len().max(sb.len()) {
            match (sa.get(i), sb.get(i)) {
                (Some(ra), Some(rb)) if ra == rb => {}
                (Some(ra), Some(rb)) => {
                    let (ha, hb) = (
                        ra.get(2).and_then(|h| as_drv(h)),
                        rb.get(2).and_then(|h| as_drv(h)),
                    );
                    match (ha, hb) {
                        // The step derivations say what differs.
                        (Some(ha), Some(hb)) if ra.first() == rb.first() => {
                            self.child(ha, hb, out)?
                        }
                        _ => out.inputs.push(InputChange::Step {
                            index: i,
                            a: Some(show(ra)),
                            b: Some(show(rb)),
                        }),
                    }
                }
                (ra, rb) => out.inputs.push(InputChange::Step {
                    index: i,
                    a: ra.map(show),
                    b: rb.map(show),
                }),
            }
        }
        Ok(())
    }

    fn step(&mut self, xa: &Decoded, xb: &Decoded, out: &mut DrvDiff) -> Result<(), DiffError> {
        self.base(
            xa.text("parent").unwrap_or(""),
            xb.text("parent").unwrap_or(""),
            out,
        )?;
        let (ia, ib) = (
            xa.text("instruction").unwrap_or(""),
            xb.text("instruction").unwrap_or(""),
        );
        if ia != ib {
            let mut fields = Vec::new();
            if let (Ok(va), Ok(vb)) = (serde_json::from_str(ia), serde_json::from_str(ib)) {
                json::diff(&va, &vb, "", &[], &mut fields);
            }
            out.inputs.push(InputChange::Instruction {
                a: ia.to_owned(),
                b: ib.to_owned(),
                fields,
            });
        }
        // Environment, as a map.
        let env = |x: &Decoded| -> BTreeMap<String, String> {
            x.items("env")
                .iter()
                .filter_map(|p| Some((p.first()?.clone(), p.get(1).cloned().unwrap_or_default())))
                .collect()
        };
        let (ea, eb) = (env(xa), env(xb));
        let names: BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
        for name in names {
            let (a, b) = (ea.get(name), eb.get(name));
            if a != b {
                out.inputs.push(InputChange::Env {
                    name: name.clone(),
                    a: a.cloned(),
                    b: b.cloned(),
                });
            }
        }
        let (sa, sb) = (xa.items("shell"), xb.items("shell"));
        if sa != sb {
            let join =
                |s: &[Vec<String>]| s.iter().map(|i| i.join(" ")).collect::<Vec<_>>().join(" ");
            out.inputs.push(InputChange::Field {
                name: "shell".into(),
                a: join(sa),
                b: join(sb),
            });
        }
        self.fields(xa, xb, &["workdir", "user", "source-date-epoch"], out);
        // Inputs, keyed by kind and path or reference.
        let inputs = |x: &Decoded| -> BTreeMap<(String, String), Vec<String>> {
            x.items("inputs")
                .iter()
                .filter_map(|r| Some(((r.first()?.clone(), r.get(1)?.clone()), r[2..].to_vec())))
                .collect()
        };
        let (na, nb) = (inputs(xa), inputs(xb));
        let keys: BTreeSet<&(String, String)> = na.keys().chain(nb.keys()).collect();
        for key in keys {
            let (a, b) = (na.get(key), nb.get(key));
            if a == b {
                continue;
            }
            let (kind, name) = key;
            match kind.as_str() {
                "stage" => match (a.and_then(|v| v.first()), b.and_then(|v| v.first())) {
                    (Some(ha), Some(hb)) => match (as_drv(ha), as_drv(hb)) {
                        (Some(ha), Some(hb)) => self.child(ha, hb, out)?,
                        _ => out.inputs.push(InputChange::Stage {
                            reference: name.clone(),
                            a: Some(ha.clone()),
                            b: Some(hb.clone()),
                        }),
                    },
                    (ha, hb) => out.inputs.push(InputChange::Stage {
                        reference: name.clone(),
                        a: ha.cloned(),
                        b: hb.cloned(),
                    }),
                },
                "image" => out.inputs.push(InputChange::Image {
                    reference: name.clone(),
                    a: a.and_then(|v| v.first().cloned()),
                    b: b.and_then(|v| v.first().cloned()),
                }),
                "context" => out.inputs.push(InputChange::ContextFile {
                    path: name.clone(),
                    a: a.map(|v| v.join(" ")),
                    b: b.map(|v| v.join(" ")),
                }),
                other => out.inputs.push(InputChange::Other {
                    kind: other.to_owned(),
                    name: name.clone(),
                    a: a.map(|v| v.join(" ")),
                    b: b.map(|v| v.join(" ")),
                }),
            }
        }
        Ok(())
    }
}
