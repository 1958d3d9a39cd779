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

/// The indices into `context` (sorted by path) that `sources` select, minus
/// `excludes`, sorted and without duplicates.
pub fn select(
    context: &[ContextFile],
    sources: &[String],
    excludes: &[String],
) -> Result<Vec<usize>, SelectError> {
    let exclude = if excludes.is_empty() {
        None
    } else {
        let matcher =
            Matcher::from_patterns(excludes.iter()).map_err(|_| SelectError::BadPattern {
                pattern: excludes.join(" "),
            })?;
        Some(matcher)
    };
    let mut picked = Vec::new();
    for source in sources {
        let clean = clean_source(source);
        let roots: Vec<String> = if glob::has_meta(&clean) {
            let pattern: Vec<&str> = clean.split('/').collect();
            let mut out = Vec::new();
            for file in context {
                let parts: Vec<&str> = file.path.split('/').collect();
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
                                pattern: source.clone(),
                            });
                        }
                    }
                }
                if all {
                    out.push(file.path.clone());
                }
            }
            out
        } else if clean.is_empty() {
            vec![String::new()]
        } else {
            if context
                .binary_search_by(|f| f.path.as_str().cmp(&clean))
                .is_err()
            {
                return Err(SelectError::NotFound {
                    pattern: source.clone(),
                });
            }
            vec![clean]
        };
        for root in roots {
            for (i, file) in context.iter().enumerate() {
                let under = root.is_empty()
                    || file.path == root
                    || (file.path.len() > root.len()
                        && file.path.starts_with(&root)
                        && file.path.as_bytes()[root.len()] == b'/');
                if under && !exclude.as_ref().is_some_and(|m| m.matches(&file.path)) {
                    picked.push(i);
                }
            }
        }
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
        let got = select(&c, &["./srcdir/".into()], &[]).unwrap();
        assert_eq!(
            names(&c, &got),
            vec!["srcdir", "srcdir/x.go", "srcdir/y/z.go"]
        );
    }

    #[test]
    fn wildcards_match_per_element() {
        let c = ctx(&["a.go", "b.txt", "srcdir", "srcdir/x.go"]);
        let got = select(&c, &["*.go".into()], &[]).unwrap();
        assert_eq!(names(&c, &got), vec!["a.go"]);
        let got = select(&c, &["*/*.go".into()], &[]).unwrap();
        assert_eq!(names(&c, &got), vec!["srcdir/x.go"]);
        assert!(select(&c, &["*.rs".into()], &[]).unwrap().is_empty());
    }

    #[test]
    fn missing_plain_source_is_an_error() {
        let c = ctx(&["a.go"]);
        assert_eq!(
            select(&c, &["nope.go".into()], &[]),
            Err(SelectError::NotFound {
                pattern: "nope.go".into()
            })
        );
    }

    #[test]
    fn dot_and_leading_slash_and_dotdot_stay_in_the_context() {
        let c = ctx(&["a.go", "b"]);
        assert_eq!(select(&c, &[".".into()], &[]).unwrap().len(), 2);
        assert_eq!(
            names(&c, &select(&c, &["/../a.go".into()], &[]).unwrap()),
            vec!["a.go"]
        );
    }

    #[test]
    fn excludes_drop_matches() {
        let c = ctx(&["a.go", "a_test.go", "b.go"]);
        let got = select(&c, &[".".into()], &["*_test.go".into()]).unwrap();
        assert_eq!(names(&c, &got), vec!["a.go", "b.go"]);
    }
}
