//! Which context files a COPY or ADD source selects (F153-F157, F160):
//! sources are relative to the context root (a leading `/` and `..` that
//! would leave it are dropped, a trailing `/` is ignored); wildcards match
//! per path element with Go's `filepath.Match`; a matched directory brings
//! everything below it; a plain source that does not exist is an error, a
//! wildcard that matches nothing selects nothing. Files `.dockerignore`
//! excludes are not in the context list at all, so they cannot be selected.
//! Pure: works on the context listing.

use crate::dockerfile::dockerignore::Matcher;
use crate::dockerfile::glob;

use super::ContextFile;

/// Why a source selected nothing it should have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// A source without wildcards names no context path.
    #[error("`{pattern}` not found in the build context")]
    NotFound {
        /// The source as written.
        pattern: String,
    },
    /// A wildcard pattern is malformed.
    #[error("bad pattern `{pattern}`")]
    BadPattern {
        /// The source as written.
        pattern: String,
    },
}

/// Cleans a source into a context-relative path (`""` is the root).
pub fn clean_source(source: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// A listing COPY can select from: the build context, or a stage's or an
/// image's merged filesystem. Sorted by path.
pub trait Listed {
    /// Relative to the listing's root, `/`-separated, never empty.
    fn path(&self) -> &str;
    /// Whether it is a directory.
    fn is_dir(&self) -> bool;
}

impl Listed for ContextFile {
    fn path(&self) -> &str {
        &self.path
    }
    fn is_dir(&self) -> bool {
        self.kind == super::FileKind::Dir
    }
}

/// How a source is read (the COPY flags that change what it selects).
#[derive(Debug, Clone, Copy, Default)]
pub struct How<'a> {
    /// `--exclude` patterns: matched against each path relative to the
    /// directory being copied (or, for a file, relative to where its
    /// wildcard starts), with `.dockerignore` rules, so a directory that
    /// matches takes everything below it.
    pub excludes: &'a [String],
    /// `--parents`: keep each path's parents below the pivot (`/./`, else
    /// the root); the source is an include pattern with `**` allowed.
    pub parents: bool,
}

/// One listed entry a source brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// Index into the listing.
    pub index: usize,
    /// Where it goes, relative to the destination: `None` for a copied
    /// directory itself (only its contents are copied, F169); `Some("")`
    /// for a file that becomes the destination; else a relative path.
    pub target: Option<String>,
}

fn matcher(patterns: &[String], source: &str) -> Result<Option<Matcher>, SelectError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    Matcher::from_patterns(patterns.iter())
        .map(Some)
        .map_err(|_| SelectError::BadPattern {
            pattern: source.to_owned(),
        })
}

/// `path` relative to `root` (`""` is the listing's root), if below it.
fn below<'p>(path: &'p str, root: &str) -> Option<&'p str> {
    if root.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(root)?;
    rest.strip_prefix('/')
}

fn find<F: Listed>(list: &[F], path: &str) -> Option<usize> {
    list.binary_search_by(|f| f.path().cmp(path)).ok()
}

/// What one COPY source brings from `list`, with each entry's place under
/// the destination (`into_dir`: the destination is a directory).
pub fn picks<F: Listed>(
    list: &[F],
    source: &str,
    how: How<'_>,
    into_dir: bool,
) -> Result<Vec<Pick>, SelectError> {
    let exclude = matcher(how.excludes, source)?;
    let excluded = |rel: &str| exclude.as_ref().is_some_and(|m| m.matches(rel));
    let mut out = Vec::new();
    if how.parents {
        // BuildKit: the part before `/./` is the source directory, the rest
        // an include pattern relative to it.
        let (base, pattern) = match source.split_once("/./") {
            Some((b, p)) => (clean_source(b), clean_source(p)),
            None => (String::new(), clean_source(source)),
        };
        let include = matcher(std::slice::from_ref(&pattern), source)?;
        let mut keep = std::collections::BTreeSet::new();
        for (i, f) in list.iter().enumerate() {
            let Some(rel) = below(f.path(), &base) else {
                continue;
            };
            let hit = pattern.is_empty() || include.as_ref().is_some_and(|m| m.matches(rel));
            if hit && !excluded(rel) {
                keep.insert(i);
                // The kept parents between the pivot and the entry.
                let mut parent = rel;
                while let Some((p, _)) = parent.rsplit_once('/') {
                    let full = if base.is_empty() {
                        p.to_owned()
                    } else {
                        format!("{base}/{p}")
                    };
                    if let Some(j) = find(list, &full) {
                        keep.insert(j);
                    }
                    parent = p;
                }
            }
        }
        if keep.is_empty() && !glob::has_meta(&pattern) && !pattern.is_empty() {
            return Err(SelectError::NotFound {
                pattern: source.to_owned(),
            });
        }
        for i in keep {
            let rel = below(list[i].path(), &base).unwrap_or_default().to_owned();
            out.push(Pick {
                index: i,
                target: Some(rel),
            });
        }
        return Ok(out);
    }
    let clean = clean_source(source);
    let wildcard = glob::has_meta(&clean);
    // Where the wildcard starts: a matched file is excluded by its path
    // relative to that directory.
    let fixed = clean
        .split('/')
        .take_while(|p| !glob::has_meta(p))
        .collect::<Vec<_>>()
        .join("/");
    let roots: Vec<String> = if wildcard {
        let pattern: Vec<&str> = clean.split('/').collect();
        let mut roots = Vec::new();
        for f in list {
            let parts: Vec<&str> = f.path().split('/').collect();
            if parts.len() != pattern.len() {
                continue;
            }
            let mut all = true;
            for (p, n) in pattern.iter().zip(&parts) {
                match glob::matches(p, n) {
                    Ok(true) => {}
                    Ok(false) => {
                        all = false;
                        break;
                    }
                    Err(_) => {
                        return Err(SelectError::BadPattern {
                            pattern: source.to_owned(),
                        });
                    }
                }
            }
            if all {
                roots.push(f.path().to_owned());
            }
        }
        roots
    } else if clean.is_empty() {
        vec![String::new()]
    } else {
        if find(list, &clean).is_none() {
            return Err(SelectError::NotFound {
                pattern: source.to_owned(),
            });
        }
        vec![clean.clone()]
    };
    let into_dir = into_dir || wildcard;
    for root in roots {
        let root_index = find(list, &root);
        let root_is_dir = root.is_empty() || root_index.is_some_and(|i| list[i].is_dir());
        if !root_is_dir {
            let rel = below(&root, &fixed).unwrap_or(&root);
            if wildcard && excluded(rel) {
                continue;
            }
            let name = root.rsplit('/').next().unwrap_or(&root);
            out.push(Pick {
                index: root_index.expect("a file root is listed"),
                target: Some(if into_dir {
                    name.to_owned()
                } else {
                    String::new()
                }),
            });
            continue;
        }
        if let Some(i) = root_index {
            out.push(Pick {
                index: i,
                target: None,
            });
        }
        // A directory's contents (not contiguous in byte order: `d-x`
        // sorts between `d` and `d/x`).
        for (i, f) in list.iter().enumerate() {
            let Some(rel) = below(f.path(), &root) else {
                continue;
            };
            if !excluded(rel) {
                out.push(Pick {
                    index: i,
                    target: Some(rel.to_owned()),
                });
            }
        }
    }
    Ok(out)
}

/// The indices into `list` (sorted by path) that `sources` select, read
/// as `how` says, sorted and without duplicates: what a step's hash must
/// cover.
pub fn select<F: Listed>(
    list: &[F],
    sources: &[String],
    how: How<'_>,
) -> Result<Vec<usize>, SelectError> {
    let mut picked = Vec::new();
    for source in sources {
        picked.extend(picks(list, source, how, true)?.into_iter().map(|p| p.index));
    }
    picked.sort_unstable();
    picked.dedup();
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FileKind;

    fn ctx(paths: &[&str]) -> Vec<ContextFile> {
        let mut v: Vec<ContextFile> = paths
            .iter()
            .map(|p| ContextFile {
                path: p.to_string(),
                kind: if p.ends_with("dir") {
                    FileKind::Dir
                } else {
                    FileKind::File
                },
                mode: 0o644,
                hash: format!("h-{p}"),
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    fn names(c: &[ContextFile], idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| c[i].path.clone()).collect()
    }

    #[test]
    fn directory_source_brings_its_contents() {
        let c = ctx(&["a.go", "srcdir", "srcdir/x.go", "srcdir/y/z.go", "srcdirx"]);
        let got = select(&c, &["./srcdir/".into()], How::default()).unwrap();
        assert_eq!(
            names(&c, &got),
            vec!["srcdir", "srcdir/x.go", "srcdir/y/z.go"]
        );
    }

    #[test]
    fn wildcards_match_per_element() {
        let c = ctx(&["a.go", "b.txt", "srcdir", "srcdir/x.go"]);
        let got = select(&c, &["*.go".into()], How::default()).unwrap();
        assert_eq!(names(&c, &got), vec!["a.go"]);
        let got = select(&c, &["*/*.go".into()], How::default()).unwrap();
        assert_eq!(names(&c, &got), vec!["srcdir/x.go"]);
        assert!(
            select(&c, &["*.rs".into()], How::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn missing_plain_source_is_an_error() {
        let c = ctx(&["a.go"]);
        assert_eq!(
            select(&c, &["nope.go".into()], How::default()),
            Err(SelectError::NotFound {
                pattern: "nope.go".into()
            })
        );
    }

    #[test]
    fn dot_and_leading_slash_and_dotdot_stay_in_the_context() {
        let c = ctx(&["a.go", "b"]);
        assert_eq!(select(&c, &[".".into()], How::default()).unwrap().len(), 2);
        assert_eq!(
            names(
                &c,
                &select(&c, &["/../a.go".into()], How::default()).unwrap()
            ),
            vec!["a.go"]
        );
    }

    #[test]
    fn excludes_match_below_the_copied_directory() {
        let c = ctx(&[
            "ddir",
            "ddir/a.md",
            "ddir/b.txt",
            "ddir/subdir",
            "ddir/subdir/c.md",
            "x.md",
        ]);
        let how = How {
            excludes: &["*.md".into()],
            parents: false,
        };
        let got = picks(&c, "ddir", how, false).unwrap();
        let targets: Vec<_> = got.iter().filter_map(|p| p.target.clone()).collect();
        assert_eq!(targets, vec!["b.txt", "subdir", "subdir/c.md"]);
        let got = select(&c, &["*.md".into()], how).unwrap();
        assert!(got.is_empty(), "{:?}", names(&c, &got));
    }

    #[test]
    fn parents_keep_paths_below_the_pivot() {
        let c = ctx(&[
            "xdir",
            "xdir/ydir",
            "xdir/ydir/a.txt",
            "xdir/ydir/b.md",
            "xdir/z.txt",
            "w.txt",
        ]);
        let how = How {
            excludes: &[],
            parents: true,
        };
        let t = |src: &str| -> Vec<String> {
            picks(&c, src, how, true)
                .unwrap()
                .into_iter()
                .filter_map(|p| p.target)
                .collect()
        };
        assert_eq!(
            t("xdir/ydir/a.txt"),
            vec!["xdir", "xdir/ydir", "xdir/ydir/a.txt"]
        );
        assert_eq!(t("./xdir/./ydir/*.txt"), vec!["ydir", "ydir/a.txt"]);
        assert_eq!(
            t("**/*.txt"),
            vec![
                "w.txt",
                "xdir",
                "xdir/ydir",
                "xdir/ydir/a.txt",
                "xdir/z.txt"
            ]
        );
        assert_eq!(
            t("xdir/ydir"),
            vec!["xdir", "xdir/ydir", "xdir/ydir/a.txt", "xdir/ydir/b.md"]
        );
        assert!(matches!(
            picks(&c, "xdir/nope", how, true),
            Err(SelectError::NotFound { .. })
        ));
    }

    #[test]
    fn excludes_drop_matches() {
        let c = ctx(&["a.go", "a_test.go", "b.go"]);
        let got = select(
            &c,
            &[".".into()],
            How {
                excludes: &["*_test.go".into()],
                parents: false,
            },
        )
        .unwrap();
        assert_eq!(names(&c, &got), vec!["a.go", "b.go"]);
    }
}
