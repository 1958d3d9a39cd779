//! `kiln.lock`: the pins a build uses, beside the Dockerfile, in TOML.
//!
//! ```toml
//! version = 1
//!
//! [[image]]
//! reference = "debian-node"
//! digest = "sha256:…"
//!
//! [[fetch]]
//! stage = "builder"
//! instruction = "RUN --mount=type=cache,target=/root/.npm --network=default npm ci"
//! inputs = "blake3:…"
//! diff_id = "sha256:…"
//! ```
//!
//! - `[[image]]`: a FROM (or `COPY --from`) reference as written after
//!   expansion, pinned to the manifest digest it resolved to. When that is
//!   an index, `platform` and `manifest` name the platform's manifest, which
//!   is what the build uses.
//! - `[[fetch]]`: a fetch step by stage and instruction (`occurrence` when
//!   the same instruction appears more than once in a stage), the inputs
//!   hash it was pinned for, and its output: the layer's `diff_id`, and for
//!   ADD the downloaded `content`'s sha256 (see [`crate::plan::fetch`]).
//!
//! Written in one fixed form so that diffs show only what changed: images
//! sorted by reference, fetch steps by stage, instruction and occurrence,
//! keys in a fixed order, no timestamps. A file with a newer `version` is
//! refused (never rewritten); unknown keys are errors, so a typo does not
//! silently drop a pin.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::FetchError;
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::plan::fetch::{FetchKey, LockedFetch};

/// The lock file format version this kiln writes and reads.
pub const VERSION: i64 = 1;

/// A FROM reference's pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePin {
    /// The reference as written after expansion.
    pub reference: String,
    /// The manifest (or index) digest it resolved to.
    pub digest: Sha256Digest,
    /// When `digest` is an index: the platform and its manifest.
    pub platform: Option<PlatformPin>,
}

/// The platform manifest chosen from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformPin {
    /// `os/architecture[/variant]`.
    pub platform: String,
    /// Its manifest digest.
    pub manifest: Sha256Digest,
}

impl ImagePin {
    /// The manifest the build uses: the platform's, for an index.
    pub fn manifest(&self) -> Sha256Digest {
        self.platform.as_ref().map_or(self.digest, |p| p.manifest)
    }
}

/// A parsed kiln.lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    /// Image pins, sorted by reference.
    pub images: Vec<ImagePin>,
    /// Fetch step pins, sorted by key.
    pub fetches: Vec<LockedFetch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[expect(dead_code, reason = "checked before deserializing")]
    version: i64,
    #[serde(default)]
    image: Vec<Spanned<RawImage>>,
    #[serde(default)]
    fetch: Vec<Spanned<RawFetch>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    reference: String,
    digest: Spanned<String>,
    platform: Option<String>,
    manifest: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    stage: String,
    instruction: String,
    occurrence: Option<Spanned<u32>>,
    inputs: Spanned<String>,
    diff_id: Spanned<String>,
    content: Option<Spanned<String>>,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Lockfile {
    /// Where the lock file of `dockerfile` lives: `kiln.lock` beside a file
    /// named `Dockerfile`, else `<file name>.kiln.lock` beside it (as
    /// BuildKit's `<name>.dockerignore`), so two Dockerfiles in one folder
    /// keep apart.
    pub fn path_for(dockerfile: &Path) -> PathBuf {
        let dir = dockerfile.parent().unwrap_or(Path::new("."));
        match dockerfile.file_name().and_then(|n| n.to_str()) {
            Some("Dockerfile") | None => dir.join("kiln.lock"),
            Some(name) => dir.join(format!("{name}.kiln.lock")),
        }
    }

    /// Reads `path`; `None` if there is no such file.
    pub fn load(path: &Path) -> Result<Option<Lockfile>, FetchError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Lockfile::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FetchError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses a lock file's text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Lockfile, FetchError> {
        let malformed = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            FetchError::Malformed {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let de_error = |e: toml::de::Error| {
            malformed(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_owned(),
            )
        };
        // The version first, so a newer file is refused as such rather than
        // for keys this kiln does not know.
        let table: toml::Table = toml::from_str(text).map_err(de_error)?;
        match table.get("version") {
            Some(toml::Value::Integer(v)) if *v > VERSION => {
                return Err(FetchError::TooNew {
                    path: path.to_path_buf(),
                    found: *v,
                    supported: VERSION,
                });
            }
            Some(toml::Value::Integer(v)) if *v >= 1 => {}
            Some(_) => {
                return Err(malformed(
                    0,
                    format!("`version` must be an integer from 1 to {VERSION}"),
                ));
            }
            None => return Err(malformed(0, "missing `version = 1`".to_owned())),
        }
        let raw: RawFile = toml::from_str(text).map_err(de_error)?;

        fn digest<D: std::str::FromStr>(
            value: &Spanned<String>,
            what: &str,
            malformed: &dyn Fn(usize, String) -> FetchError,
        ) -> Result<D, FetchError>
        where
            D::Err: std::fmt::Display,
        {
            value.get_ref().parse::<D>().map_err(|e| {
                malformed(value.span().start, format!("`{what}` is not a digest: {e}"))
            })
        }

        let mut lock = Lockfile::default();
        let mut seen = BTreeSet::new();
        for entry in &raw.image {
            let img = entry.get_ref();
            if !seen.insert(img.reference.clone()) {
                return Err(malformed(
                    entry.span().start,
                    format!("image `{}` is pinned twice", img.reference),
                ));
            }
            let platform = match (&img.platform, &img.manifest) {
                (Some(platform), Some(m)) => Some(PlatformPin {
                    platform: platform.clone(),
                    manifest: digest(m, "manifest", &malformed)?,
                }),
                (None, None) => None,
                _ => {
                    return Err(malformed(
                        entry.span().start,
                        "`platform` and `manifest` go together".to_owned(),
                    ));
                }
            };
            lock.images.push(ImagePin {
                reference: img.reference.clone(),
                digest: digest(&img.digest, "digest", &malformed)?,
                platform,
            });
        }
        let mut keys = BTreeSet::new();
        for entry in &raw.fetch {
            let f = entry.get_ref();
            let occurrence = match &f.occurrence {
                Some(n) if *n.get_ref() == 0 => {
                    return Err(malformed(
                        n.span().start,
                        "`occurrence` counts from 1".to_owned(),
                    ));
                }
                Some(n) => *n.get_ref(),
                None => 1,
            };
            let key = FetchKey {
                stage: f.stage.clone(),
                instruction: f.instruction.clone(),
                occurrence,
            };
            if !keys.insert(key.clone()) {
                return Err(malformed(
                    entry.span().start,
                    format!("fetch step {key} is pinned twice"),
                ));
            }
            lock.fetches.push(LockedFetch {
                key,
                inputs: digest::<Blake3Digest>(&f.inputs, "inputs", &malformed)?,
                diff_id: digest(&f.diff_id, "diff_id", &malformed)?,
                content: match &f.content {
                    Some(c) => Some(digest(c, "content", &malformed)?),
                    None => None,
                },
            });
        }
        lock.sort();
        Ok(lock)
    }

    /// Puts the entries in their written order.
    pub fn sort(&mut self) {
        self.images.sort_by(|a, b| a.reference.cmp(&b.reference));
        self.fetches.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// The file's text, in its one fixed form.
    pub fn to_text(&self) -> String {
        let mut lock = self.clone();
        lock.sort();
        let mut out = String::from(
            "# kiln.lock: the base image digests and fetch step outputs `kiln build` uses.\n\
             # Written by `kiln lock`; `kiln lock --update STAGE|REF` refreshes entries.\n\
             # Keep it under version control beside the Dockerfile.\n\
             version = 1\n",
        );
        for img in &lock.images {
            out.push_str("\n[[image]]\n");
            out.push_str(&format!("reference = {}\n", quote(&img.reference)));
            out.push_str(&format!("digest = {}\n", quote(&img.digest.to_string())));
            if let Some(p) = &img.platform {
                out.push_str(&format!("platform = {}\n", quote(&p.platform)));
                out.push_str(&format!("manifest = {}\n", quote(&p.manifest.to_string())));
            }
        }
        for f in &lock.fetches {
            out.push_str("\n[[fetch]]\n");
            out.push_str(&format!("stage = {}\n", quote(&f.key.stage)));
            out.push_str(&format!("instruction = {}\n", quote(&f.key.instruction)));
            if f.key.occurrence > 1 {
                out.push_str(&format!("occurrence = {}\n", f.key.occurrence));
            }
            out.push_str(&format!("inputs = {}\n", quote(&f.inputs.to_string())));
            out.push_str(&format!("diff_id = {}\n", quote(&f.diff_id.to_string())));
            if let Some(c) = &f.content {
                out.push_str(&format!("content = {}\n", quote(&c.to_string())));
            }
        }
        out
    }

    /// Writes the file atomically (a temp file beside it, then a rename).
    pub fn save(&self, path: &Path) -> Result<(), FetchError> {
        let write_err = |source| FetchError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".kiln.lock.")
            .tempfile_in(dir)
            .map_err(write_err)?;
        std::io::Write::write_all(&mut tmp, self.to_text().as_bytes()).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        // A lock file is meant to be read by everyone who builds.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(write_err)?;
        tmp.persist(path).map_err(|e| write_err(e.error))?;
        Ok(())
    }

    /// The pin of an image reference.
    pub fn image(&self, reference: &str) -> Option<&ImagePin> {
        self.images.iter().find(|i| i.reference == reference)
    }

    /// Fails if a fetch entry names a stage the Dockerfile does not have
    /// (`stages`: every stage's name, or `#index` for one without).
    pub fn check_stages(&self, path: &Path, stages: &[String]) -> Result<(), FetchError> {
        for f in &self.fetches {
            if !stages.contains(&f.key.stage) {
                return Err(FetchError::UnknownStage {
                    path: path.to_path_buf(),
                    stage: f.key.stage.clone(),
                    known: stages.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lockfile {
        Lockfile {
            images: vec![
                ImagePin {
                    reference: "zeta".into(),
                    digest: Sha256Digest::of(b"z"),
                    platform: None,
                },
                ImagePin {
                    reference: "alpha:1".into(),
                    digest: Sha256Digest::of(b"index"),
                    platform: Some(PlatformPin {
                        platform: "linux/amd64".into(),
                        manifest: Sha256Digest::of(b"m"),
                    }),
                },
            ],
            fetches: vec![
                LockedFetch {
                    key: FetchKey {
                        stage: "web".into(),
                        instruction: "RUN --network=default echo \"hi\"\\\n".into(),
                        occurrence: 2,
                    },
                    inputs: Blake3Digest::of(b"i"),
                    diff_id: Sha256Digest::of(b"d"),
                    content: None,
                },
                LockedFetch {
                    key: FetchKey {
                        stage: "build".into(),
                        instruction: "ADD https://example.com/a /a".into(),
                        occurrence: 1,
                    },
                    inputs: Blake3Digest::of(b"j"),
                    diff_id: Sha256Digest::of(b"e"),
                    content: Some(Sha256Digest::of(b"c")),
                },
            ],
        }
    }

    #[test]
    fn round_trips_in_one_sorted_form() {
        let text = sample().to_text();
        let back = Lockfile::parse(&text, Path::new("kiln.lock")).unwrap();
        let mut sorted = sample();
        sorted.sort();
        assert_eq!(back, sorted);
        assert_eq!(back.to_text(), text);
        assert!(text.find("alpha:1").unwrap() < text.find("zeta").unwrap());
        assert!(text.find("stage = \"build\"").unwrap() < text.find("stage = \"web\"").unwrap());
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let p = Path::new("/x/kiln.lock");
        let err = |t: &str| Lockfile::parse(t, p).unwrap_err().to_string();
        assert!(
            err("version = 2\n").contains("version 2"),
            "{}",
            err("version = 2\n")
        );
        assert!(err("[[image]]\n").contains("missing `version"));
        let bad = "version = 1\n\n[[image]]\nreference = \"a\"\ndigest = \"sha256:nothex\"\n";
        assert!(
            err(bad).starts_with("/x/kiln.lock:5:10: `digest` is not a digest"),
            "{}",
            err(bad)
        );
        let unknown = "version = 1\n[[image]]\nreference = \"a\"\ndigets = \"x\"\n";
        assert!(err(unknown).contains("/x/kiln.lock:4:"), "{}", err(unknown));
        assert!(err("version = 1\nthis is not toml\n").contains(":2:"));
    }

    #[test]
    fn a_stage_the_dockerfile_lost_is_an_error() {
        let lock = sample();
        let e = lock
            .check_stages(Path::new("kiln.lock"), &["build".into(), "#1".into()])
            .unwrap_err();
        assert!(e.to_string().contains("`web`"), "{e}");
        lock.check_stages(Path::new("kiln.lock"), &["build".into(), "web".into()])
            .unwrap();
    }

    #[test]
    fn lock_file_lives_beside_the_dockerfile() {
        assert_eq!(
            Lockfile::path_for(Path::new("app/Dockerfile")),
            Path::new("app/kiln.lock")
        );
        assert_eq!(
            Lockfile::path_for(Path::new("app/prod.Dockerfile")),
            Path::new("app/prod.Dockerfile.kiln.lock")
        );
    }
}
