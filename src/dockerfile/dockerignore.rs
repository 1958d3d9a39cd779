//! `.dockerignore` files: parsing (docker/cli and BuildKit's `ReadAll`) and
//! matching (moby/patternmatcher), with the directory-pruning rules of
//! tonistiigi/fsutil's walker exposed for [`crate::context`].
//!
//! This module is pure: text in, values out. It never reads the filesystem;
//! [`ignore_file_candidates`] is path arithmetic only.
//!
//! # Behaviour reproduced on purpose
//!
//! - Parsing (F177, F178, F184): a UTF-8 BOM is dropped from the first line;
//!   a line whose first byte is `#` is a comment (an indented `#` is not);
//!   each line is trimmed, a leading `!` marks an exception, the rest is
//!   trimmed again, cleaned with Go's `filepath.Clean` and loses one leading
//!   `/`. patternmatcher then trims and cleans the whole line once more, so
//!   `!/` becomes `!` and is rejected. A `.` pattern is kept but can match
//!   nothing. Lines longer than 65535 bytes fail like Go's `bufio.Scanner`.
//! - Validation: every pattern must pass Go's `filepath.Match(p, ".")`
//!   syntax check ([`super::glob`]).
//! - Matching is *not* `filepath.Match`. patternmatcher compiles each pattern
//!   to one of four forms: exact text, prefix (`dir/**`), suffix (a leading
//!   `**`, e.g. `**/foo` or `**.log`, compared as raw text) or a Go regexp
//!   in which `*` is `[^/]*`, `?` is `[^/]`, `**/` is `(.*/)?`, a trailing
//!   `**` is `.*`, `.+()$` are escaped and everything else, `\` escapes and
//!   `[...]` classes included, is passed to Go's regexp engine verbatim.
//!   This module re-implements that regexp dialect (RE2 with Perl flags) so
//!   that quirks match: `^` anchors, `|` and `{n,m}` keep their regexp meaning
//!   (patternmatcher's escape table drops them), `\d` is a digit class,
//!   `[[:alpha:]]` is a POSIX class, and `[*]` or `[?]` become the odd
//!   classes their translation spells. The regexp is searched for, not
//!   anchored, exactly as `regexp.MatchString` does.
//! - Last match wins (F182); a pattern matching any parent directory counts
//!   as matching the path (F181), see [`Matcher::matches`] and
//!   [`Matcher::matches_with_parent`].
//!
//! # Deliberate differences
//!
//! - A pattern that Go's regexp compiler rejects (`[z-a]`, `a\é`,
//!   `[Local-Only]`) makes Docker fail lazily, on the first path the pattern
//!   is tried against; here [`parse`] rejects it up front with its line.
//! - `\p{..}`/`\P{..}` Unicode classes are rejected as unsupported.
//! - Whether an excluded directory is walked for exceptions (F183) depends
//!   on the builder: BuildKit's fsutil walks every excluded directory once an
//!   exception contains a glob, the legacy builder only follows exception
//!   text (docker/cli#2919). [`Pruning`] offers both; BuildKit's is the
//!   default.
//!
//! # Invariants
//!
//! - No input panics; the regexp engine is a Thompson NFA simulation, linear
//!   in the path length, with no recursion over the input.
//! - Pattern order is kept; nothing here iterates a hash container.

use std::path::{Path, PathBuf};

use super::glob::{self, GlobError};

/// The longest line Go's `bufio.Scanner` accepts, newline excluded.
const MAX_LINE: usize = 64 * 1024 - 1;

/// Bytes that make fsutil walk every excluded directory when they appear in
/// an exception pattern (Unix flavour, with `\`).
const PATTERN_CHARS: &[u8] = b"*[]?^\\";

/// A `.dockerignore` line that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// Go's line scanner stops at 64 KiB.
    #[error("line {line} is longer than {max} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A lone `!` (also what `!/` cleans to).
    #[error("illegal exclusion pattern `!` at line {line}")]
    IllegalExclusion {
        /// 1-based line number.
        line: usize,
    },
    /// The pattern fails Go's `filepath.Match` syntax check.
    #[error("invalid pattern at line {line}")]
    BadGlob {
        /// 1-based line number.
        line: usize,
        /// The glob error, naming the pattern.
        #[source]
        source: GlobError,
    },
    /// The pattern's regexp translation is rejected by Go's regexp parser.
    #[error("pattern `{pattern}` at line {line} is not a valid regexp once translated: {reason}")]
    BadRegexp {
        /// 1-based line number.
        line: usize,
        /// The cleaned pattern, without its `!`.
        pattern: String,
        /// What Go's `regexp/syntax` would complain about.
        reason: &'static str,
    },
    /// The translation uses a regexp feature kiln does not implement.
    #[error("pattern `{pattern}` at line {line} uses `{feature}`, which kiln does not support")]
    Unsupported {
        /// 1-based line number.
        line: usize,
        /// The cleaned pattern, without its `!`.
        pattern: String,
        /// The regexp construct, e.g. `\p`.
        feature: &'static str,
    },
}

/// One usable `.dockerignore` line: cleaned text, exception flag and its
/// compiled matcher.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exclusion: bool,
    line: usize,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    /// The path equals the pattern text.
    Exact,
    /// The path starts with these bytes (pattern text minus a trailing `**`).
    Prefix(Vec<u8>),
    /// The path ends with these bytes (pattern text minus a leading `**`).
    Suffix(Vec<u8>),
    /// The translated Go regexp.
    Regexp {
        source: String,
        program: re::Program,
    },
}

impl Pattern {
    /// Builds a pattern from one line exactly as patternmatcher's `New` does:
    /// trim, `filepath.Clean`, split off a leading `!`, syntax-check with
    /// `filepath.Match` and compile. `line` (1-based) is used in errors.
    /// Returns `Ok(None)` for a blank line.
    ///
    /// This does *not* apply the `.dockerignore` reading rules (comments,
    /// leading `/`); [`parse`] does those first. Use it directly for patterns
    /// that do not come from a file, such as `COPY --exclude`.
    pub fn new(raw: &str, line: usize) -> Result<Option<Pattern>, IgnoreError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let cleaned = clean(trimmed);
        let (exclusion, text) = match cleaned.strip_prefix('!') {
            Some("") => return Err(IgnoreError::IllegalExclusion { line }),
            Some(rest) => (true, rest.to_owned()),
            None => (false, cleaned),
        };
        if let Err(source) = glob::matches(&text, ".") {
            return Err(IgnoreError::BadGlob { line, source });
        }
        let kind = compile(&text).map_err(|err| match err {
            re::Error::Syntax(reason) => IgnoreError::BadRegexp {
                line,
                pattern: text.clone(),
                reason,
            },
            re::Error::Unsupported(feature) => IgnoreError::Unsupported {
                line,
                pattern: text.clone(),
                feature,
            },
        })?;
        Ok(Some(Pattern {
            text,
            exclusion,
            line,
            kind,
        }))
    }

    /// The cleaned pattern text, without the leading `!`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` exception that re-includes paths.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// The 1-based line the pattern came from.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The Go regexp the pattern was translated to, or `None` when it is
    /// matched as exact text, a prefix (`dir/**`) or a suffix (`**/name`).
    pub fn regexp(&self) -> Option<&str> {
        match &self.kind {
            MatchKind::Regexp { source, .. } => Some(source),
            MatchKind::Exact | MatchKind::Prefix(_) | MatchKind::Suffix(_) => None,
        }
    }

    /// Whether the pattern itself matches `path` (no parent directories, no
    /// `!` handling): patternmatcher's `Pattern.match`.
    pub fn matches_path(&self, path: &[u8]) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.text.as_bytes(),
            MatchKind::Prefix(prefix) => path.starts_with(prefix),
            MatchKind::Suffix(suffix) => {
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            MatchKind::Regexp { program, .. } => program.is_match(&decode(path)),
        }
    }

    /// The text with a trailing `/**` and then a trailing `/*` removed
    /// (fsutil's `patternWithoutTrailingGlob`).
    fn text_without_trailing_glob(&self) -> &str {
        let text = self.text.strip_suffix("/**").unwrap_or(&self.text);
        text.strip_suffix("/*").unwrap_or(text)
    }
}

/// Parses a `.dockerignore` file (BuildKit's `ignorefile.ReadAll`) and
/// compiles each pattern (patternmatcher's `New`).
///
/// Errors carry the 1-based line number of the offending line.
pub fn parse(contents: &str) -> Result<Vec<Pattern>, IgnoreError> {
    let mut patterns = Vec::new();
    for (index, raw) in split_lines(contents).enumerate() {
        let line = index + 1;
        if raw.len() > MAX_LINE {
            return Err(IgnoreError::LineTooLong {
                line,
                max: MAX_LINE,
            });
        }
        // bufio.ScanLines drops one trailing carriage return.
        let mut text = raw.strip_suffix('\r').unwrap_or(raw);
        if index == 0 {
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        // Comments are recognised before trimming: only column 1 counts.
        if text.starts_with('#') {
            continue;
        }
        let mut text = text.trim();
        if text.is_empty() {
            continue;
        }
        let invert = text.starts_with('!');
        if invert {
            text = text[1..].trim();
        }
        let mut pattern = String::new();
        if !text.is_empty() {
            pattern = clean(text);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
        }
        if invert {
            pattern.insert(0, '!');
        }
        if let Some(p) = Pattern::new(&pattern, line)? {
            patterns.push(p);
        }
    }
    Ok(patterns)
}

/// The ignore files to try for a build, in order of precedence (F176): the
/// Dockerfile-specific `<Dockerfile>.dockerignore` beside the Dockerfile,
/// then `.dockerignore` at the context root. The first that exists wins,
/// even if empty. Pure path arithmetic: `dockerfile` is used as given.
pub fn ignore_file_candidates(context: &Path, dockerfile: &Path) -> Vec<PathBuf> {
    let mut candidates = Vec::with_capacity(2);
    if let Some(name) = dockerfile.file_name() {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        candidates.push(dockerfile.with_file_name(specific));
    }
    candidates.push(context.join(".dockerignore"));
    candidates
}

/// Which rule decides whether an excluded directory is still walked because
/// a `!` exception might re-include something inside it (F183).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pruning {
    /// tonistiigi/fsutil's filter, used by BuildKit (`docker build` since
    /// Docker 23, `docker buildx`): if any exception, minus a trailing `/**`
    /// or `/*`, contains one of `*[]?^\`, every excluded directory is walked
    /// (so `*` + `!**/*.py` re-includes `a/b.py`); otherwise a directory is
    /// walked only when some exception's text, minus that trailing glob,
    /// starts with the directory's path.
    #[default]
    BuildKit,
    /// The legacy builder (`DOCKER_BUILDKIT=0`, docker/cli#2919): a directory
    /// is walked only when some exception's text starts with its path, so
    /// `*` + `!**/*.py` re-includes top-level `.py` files only.
    Classic,
}

/// Per-pattern results for a directory, handed down to its children by a
/// walker (patternmatcher's `MatchInfo`). The default value means "no
/// information", as for a path at the context root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered list of patterns with Docker's exclusion semantics.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
    only_prefix_exceptions: bool,
}

impl Matcher {
    /// Builds a matcher; the order of `patterns` is significant.
    pub fn new(patterns: Vec<Pattern>) -> Matcher {
        let exclusions = patterns.iter().any(|p| p.exclusion);
        let only_prefix_exceptions = !patterns.iter().any(|p| {
            p.exclusion
                && p.text_without_trailing_glob()
                    .bytes()
                    .any(|b| PATTERN_CHARS.contains(&b))
        });
        Matcher {
            patterns,
            exclusions,
            only_prefix_exceptions,
        }
    }

    /// Builds a matcher from raw pattern strings, each processed like
    /// patternmatcher's `New` (no `.dockerignore` comment or leading-`/`
    /// handling). Blank entries are skipped; errors number entries from 1.
    pub fn from_patterns<I, S>(raw: I) -> Result<Matcher, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns = Vec::new();
        for (index, pattern) in raw.into_iter().enumerate() {
            if let Some(p) = Pattern::new(pattern.as_ref(), index + 1)? {
                patterns.push(p);
            }
        }
        Ok(Matcher::new(patterns))
    }

    /// The patterns, in file order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether there are no patterns at all (nothing is ever excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is a `!` exception (patternmatcher's
    /// `Exclusions`).
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is
    /// excluded: docker/cli's `filepathMatches`, i.e. `filepath.Clean` then
    /// patternmatcher's `MatchesOrParentMatches`. The last pattern that
    /// matches the path or any of its parent directories decides; `.` is
    /// never excluded.
    pub fn matches(&self, rel_path: &str) -> bool {
        self.matches_bytes(rel_path.as_bytes())
    }

    /// [`Matcher::matches`] for a path that may not be UTF-8.
    pub fn matches_bytes(&self, rel_path: &[u8]) -> bool {
        let file = clean_bytes(rel_path);
        if file == b"." {
            return false;
        }
        let parents = parent_prefixes(&file);
        let mut matched = false;
        for pattern in &self.patterns {
            // An exception only matters once something matched, and an
            // inclusion only until something did.
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches_path(&file)
                || parents.iter().any(|parent| pattern.matches_path(parent));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// patternmatcher's `MatchesUsingParentResults`, which fsutil's walker
    /// uses: like [`Matcher::matches`], except that once the parent's results
    /// are known a pattern counts as matching a parent only if it matched
    /// when that parent was visited. Patterns skipped for the parent (by the
    /// last-match-wins shortcut) are then tried on the path alone, so
    /// `d/f` + `!d` keeps `d/f` excluded here while `matches` re-includes
    /// it. Pass [`MatchInfo::default`] for a path at the context root.
    ///
    /// Returns whether `rel_path` is excluded and the info to hand to its
    /// children if it is a directory.
    pub fn matches_with_parent(&self, rel_path: &[u8], parent: &MatchInfo) -> (bool, MatchInfo) {
        let known = &parent.parent_matched;
        let have_parent = !known.is_empty() && known.len() == self.patterns.len();
        let mut parents: Option<Vec<Vec<u8>>> = None;
        let mut matched = false;
        let mut info = vec![false; self.patterns.len()];
        for (index, pattern) in self.patterns.iter().enumerate() {
            let mut hit = have_parent && known[index];
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = pattern.matches_path(rel_path);
                if !hit && !have_parent {
                    let parents = parents.get_or_insert_with(|| parent_prefixes(rel_path));
                    hit = parents.iter().any(|p| pattern.matches_path(p));
                }
            }
            info[index] = hit;
            if hit {
                matched = !pattern.exclusion;
            }
        }
        (
            matched,
            MatchInfo {
                parent_matched: info,
            },
        )
    }

    /// Whether a walker must still enter the excluded directory `dir`
    /// (relative, `/`-separated, no trailing slash) because an exception
    /// might re-include something below it. Only the re-included paths and
    /// their parent directories are then kept.
    pub fn must_enter_excluded_dir(&self, dir: &[u8], pruning: Pruning) -> bool {
        if pruning == Pruning::BuildKit && !self.only_prefix_exceptions {
            return true;
        }
        if !self.exclusions {
            return false;
        }
        let mut dir_slash = dir.to_vec();
        dir_slash.push(b'/');
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let text = match pruning {
                Pruning::BuildKit => p.text_without_trailing_glob(),
                Pruning::Classic => p.text.as_str(),
            };
            let mut text = text.as_bytes().to_vec();
            text.push(b'/');
            text.starts_with(&dir_slash)
        })
    }
}

/// Splits like `bufio.ScanLines`: on `\n`, with no empty token after a final
/// newline.
fn split_lines(contents: &str) -> impl Iterator<Item = &str> {
    let body = contents.strip_suffix('\n').unwrap_or(contents);
    let empty = contents.is_empty();
    body.split('\n').filter(move |_| !empty)
}

/// Go's `filepath.Clean` on a `/`-separated path.
fn clean(path: &str) -> String {
    String::from_utf8_lossy(&clean_bytes(path.as_bytes())).into_owned()
}

/// Go's `filepath.Clean` on bytes (Unix): drops empty and `.` elements,
/// resolves `..` lexically, keeps a leading `/`, gives `.` for nothing.
fn clean_bytes(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(part),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join(&b'/');
    if rooted {
        let mut out = b"/".to_vec();
        out.extend_from_slice(&joined);
        out
    } else if joined.is_empty() {
        b".".to_vec()
    } else {
        joined
    }
}

/// The parent directories patternmatcher tries for `file`: split
/// `filepath.Dir(file)` on `/` and join growing prefixes; none if the
/// parent is `.`.
fn parent_prefixes(file: &[u8]) -> Vec<Vec<u8>> {
    let head = match file.iter().rposition(|&b| b == b'/') {
        Some(i) => &file[..=i],
        None => &file[..0],
    };
    let parent = clean_bytes(head);
    if parent == b"." {
        return Vec::new();
    }
    let parts: Vec<&[u8]> = parent.split(|&b| b == b'/').collect();
    (1..=parts.len()).map(|n| parts[..n].join(&b'/')).collect()
}

/// Decodes a path into runes the way Go's regexp reads a string: each
/// invalid byte becomes one U+FFFD.
fn decode(path: &[u8]) -> Vec<u32> {
    let mut runes = Vec::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        let (rune, width) = glob::decode_rune(rest);
        runes.push(rune);
        rest = &rest[width.max(1)..];
    }
    runes
}

/// The match form patternmatcher's `compile` detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// patternmatcher's `compile`: classifies the cleaned pattern and, for the
/// regexp form, builds the Go regexp text and compiles it.
fn compile(text: &str) -> Result<MatchKind, re::Error> {
    let (detected, source) = translate(text);
    let bytes = text.as_bytes();
    Ok(match detected {
        Detected::Exact => MatchKind::Exact,
        // These slices are what Go's `p.cleanedPattern[:len-2]` and `[2:]`
        // take, bytes included; `**` is two ASCII bytes at the edge.
        Detected::Prefix => MatchKind::Prefix(bytes[..bytes.len().saturating_sub(2)].to_vec()),
        Detected::Suffix => MatchKind::Suffix(bytes.get(2..).unwrap_or_default().to_vec()),
        Detected::Regexp => {
            let program = re::Program::compile(&source)?;
            MatchKind::Regexp { source, program }
        }
    })
}

/// The regexp text patternmatcher builds for `text`, and the detected form.
fn translate(text: &str) -> (Detected, String) {
    let chars: Vec<char> = text.chars().collect();
    // text/scanner skips a byte order mark at the very start.
    let mut i = usize::from(chars.first() == Some(&'\u{feff}'));
    let mut out = String::from("^");
    let mut detected = Detected::Exact;
    let mut token = 0usize;
    while let Some(&ch) = chars.get(i) {
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is treated as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    // A trailing `**` accepts everything below, like .gitignore.
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        out.push_str(".*");
                        detected = Detected::Regexp;
                    }
                } else {
                    out.push_str("(.*/)?");
                    detected = Detected::Regexp;
                }
                if token == 0 {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                out.push_str("[^/]*");
                detected = Detected::Regexp;
            }
            '?' => {
                out.push_str("[^/]");
                detected = Detected::Regexp;
            }
            // patternmatcher's escape table is meant to hold `.+()|{}$`, but
            // its bitmap loses `|`, `{` and `}` (bit 15 of a byte), so those
            // reach the regexp raw.
            '.' | '+' | '(' | ')' | '$' => {
                out.push('\\');
                out.push(ch);
            }
            '\\' => {
                if let Some(&next) = chars.get(i) {
                    i += 1;
                    out.push('\\');
                    out.push(next);
                    detected = Detected::Regexp;
                } else {
                    out.push('\\');
                }
            }
            '[' | ']' => {
                out.push(ch);
                detected = Detected::Regexp;
            }
            _ => out.push(ch),
        }
        token += 1;
    }
    if detected == Detected::Regexp {
        out.push('$');
    }
    (detected, out)
}

/// The subset of Go's `regexp` (RE2 syntax, `regexp.Compile`'s Perl flags:
/// `^`/`$` match only at the ends of the text, `.` does not match `\n`,
/// negated classes do) that a translated pattern can spell, as a Thompson
/// NFA.
mod re {
    /// Why a regexp was rejected.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Error {
        /// Go's parser would reject it; the text names Go's error code.
        Syntax(&'static str),
        /// Valid in Go, not implemented here.
        Unsupported(&'static str),
    }

    const MAX_RUNE: u32 = 0x10_FFFF;
    const MAX_REPEAT: u32 = 1000;

    /// A compiled regexp.
    #[derive(Debug, Clone)]
    pub(super) struct Program {
        insts: Vec<Inst>,
    }

    #[derive(Debug, Clone)]
    enum Inst {
        Char(CharSet),
        Split(usize, usize),
        Jmp(usize),
        Assert(Assertion),
        Match,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum CharSet {
        Literal(u32),
        AnyNotNewline,
        Class {
            ranges: Vec<(u32, u32)>,
            negated: bool,
        },
    }

    impl CharSet {
        fn contains(&self, c: u32) -> bool {
            match self {
                CharSet::Literal(l) => *l == c,
                CharSet::AnyNotNewline => c != u32::from('\n'),
                CharSet::Class { ranges, negated } => {
                    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                }
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Assertion {
        BeginText,
        EndText,
        WordBoundary,
        NotWordBoundary,
    }

    #[derive(Debug, Clone)]
    enum Node {
        Char(CharSet),
        Assert(Assertion),
        Concat(Vec<Node>),
        Alternate(Vec<Node>),
        Repeat {
            node: Box<Node>,
            min: u32,
            max: Option<u32>,
        },
    }

    impl Program {
        /// Parses Go regexp text and compiles it.
        pub(super) fn compile(source: &str) -> Result<Program, Error> {
            let chars: Vec<char> = source.chars().collect();
            let mut parser = Parser { s: &chars, i: 0 };
            let node = parser.alternation()?;
            if parser.i < chars.len() {
                // Only an unmatched `)` stops the top-level alternation early.
                return Err(Error::Syntax("unexpected )"));
            }
            let mut insts = Vec::new();
            emit(&node, &mut insts);
            insts.push(Inst::Match);
            Ok(Program { insts })
        }

        /// Whether the regexp matches anywhere in `input` (Go's
        /// `MatchString`): a breadth-first simulation, one pass over the
        /// input.
        pub(super) fn is_match(&self, input: &[u32]) -> bool {
            let mut seen = vec![usize::MAX; self.insts.len()];
            let mut carried: Vec<usize> = Vec::new();
            let mut waiting: Vec<usize> = Vec::new();
            let mut stack: Vec<usize> = Vec::new();
            for pos in 0..=input.len() {
                // Unanchored search: a new thread may start at every position.
                stack.clear();
                stack.push(0);
                stack.extend(carried.iter().rev());
                waiting.clear();
                while let Some(pc) = stack.pop() {
                    if seen[pc] == pos {
                        continue;
                    }
                    seen[pc] = pos;
                    match &self.insts[pc] {
                        Inst::Match => return true,
                        Inst::Jmp(target) => stack.push(*target),
                        Inst::Split(first, second) => {
                            stack.push(*second);
                            stack.push(*first);
                        }
                        Inst::Assert(assertion) => {
                            if holds(*assertion, input, pos) {
                                stack.push(pc + 1);
                            }
                        }
                        Inst::Char(_) => waiting.push(pc),
                    }
                }
                let Some(&c) = input.get(pos) else {
                    break;
                };
                carried.clear();
                for &pc in &waiting {
                    if let Inst::Char(set) = &self.insts[pc]
                        && set.contains(c)
                    {
                        carried.push(pc + 1);
                    }
                }
            }
            false
        }
    }

    fn is_word(c: Option<&u32>) -> bool {
        c.and_then(|&c| char::from_u32(c))
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    fn holds(assertion: Assertion, input: &[u32], pos: usize) -> bool {
        match assertion {
            Assertion::BeginText => pos == 0,
            Assertion::EndText => pos == input.len(),
            Assertion::WordBoundary | Assertion::NotWordBoundary => {
                let before = pos.checked_sub(1).and_then(|p| input.get(p));
                let boundary = is_word(before) != is_word(input.get(pos));
                boundary == (assertion == Assertion::WordBoundary)
            }
        }
    }

    fn emit(node: &Node, insts: &mut Vec<Inst>) {
        match node {
            Node::Char(set) => insts.push(Inst::Char(set.clone())),
            Node::Assert(assertion) => insts.push(Inst::Assert(*assertion)),
            Node::Concat(nodes) => {
                for node in nodes {
                    emit(node, insts);
                }
            }
            Node::Alternate(branches) => {
                let mut jumps = Vec::new();
                for (index, branch) in branches.iter().enumerate() {
                    if index + 1 < branches.len() {
                        let split = insts.len();
                        insts.push(Inst::Split(0, 0));
                        emit(branch, insts);
                        jumps.push(insts.len());
                        insts.push(Inst::Jmp(0));
                        insts[split] = Inst::Split(split + 1, insts.len());
                    } else {
                        emit(branch, insts);
                    }
                }
                let end = insts.len();
                for jump in jumps {
                    insts[jump] = Inst::Jmp(end);
                }
            }
            Node::Repeat { node, min, max } => {
                for _ in 0..*min {
                    emit(node, insts);
                }
                match max {
                    None => {
                        let split = insts.len();
                        insts.push(Inst::Split(0, 0));
                        emit(node, insts);
                        insts.push(Inst::Jmp(split));
                        insts[split] = Inst::Split(split + 1, insts.len());
                    }
                    Some(max) => {
                        for _ in *min..*max {
                            let split = insts.len();
                            insts.push(Inst::Split(0, 0));
                            emit(node, insts);
                            insts[split] = Inst::Split(split + 1, insts.len());
                        }
                    }
                }
            }
        }
    }

    struct Parser<'a> {
        s: &'a [char],
        i: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<char> {
            self.s.get(self.i).copied()
        }

        fn peek_at(&self, offset: usize) -> Option<char> {
            self.s.get(self.i + offset).copied()
        }

        fn alternation(&mut self) -> Result<Node, Error> {
            let mut branches = vec![self.concat()?];
            while self.peek() == Some('|') {
                self.i += 1;
                branches.push(self.concat()?);
            }
            Ok(if branches.len() == 1 {
                branches.remove(0)
            } else {
                Node::Alternate(branches)
            })
        }

        fn concat(&mut self) -> Result<Node, Error> {
            let mut items: Vec<Node> = Vec::new();
            let mut after_repeat = false;
            while let Some(c) = self.peek() {
                let repeat = match c {
                    '|' | ')' => break,
                    '*' => Some((0, None, 1)),
                    '+' => Some((1, None, 1)),
                    '?' => Some((0, Some(1), 1)),
                    '{' => self.counted_repeat()?,
                    _ => None,
                };
                if let Some((min, max, len)) = repeat {
                    self.i += len;
                    // Perl flags: a trailing `?` makes it non-greedy, which
                    // does not change whether there is a match.
                    if self.peek() == Some('?') {
                        self.i += 1;
                    }
                    if after_repeat {
                        return Err(Error::Syntax("invalid nested repetition operator"));
                    }
                    let Some(node) = items.pop() else {
                        return Err(Error::Syntax("missing argument to repetition operator"));
                    };
                    items.push(Node::Repeat {
                        node: Box::new(node),
                        min,
                        max,
                    });
                    after_repeat = true;
                    continue;
                }
                after_repeat = false;
                match c {
                    '(' => {
                        if self.peek_at(1) == Some('?') {
                            return Err(Error::Unsupported("(?"));
                        }
                        self.i += 1;
                        let inner = self.alternation()?;
                        if self.peek() != Some(')') {
                            return Err(Error::Syntax("missing closing )"));
                        }
                        self.i += 1;
                        items.push(inner);
                    }
                    '[' => items.push(Node::Char(self.class()?)),
                    '.' => {
                        self.i += 1;
                        items.push(Node::Char(CharSet::AnyNotNewline));
                    }
                    '^' => {
                        self.i += 1;
                        items.push(Node::Assert(Assertion::BeginText));
                    }
                    '$' => {
                        self.i += 1;
                        items.push(Node::Assert(Assertion::EndText));
                    }
                    '\\' => self.top_level_escape(&mut items)?,
                    // `{` that does not start a valid repeat is a literal.
                    _ => {
                        self.i += 1;
                        items.push(Node::Char(CharSet::Literal(u32::from(c))));
                    }
                }
            }
            Ok(Node::Concat(items))
        }

        /// Go's `parseRepeat`: `{n}`, `{n,}` or `{n,m}` at the cursor.
        /// Returns `(min, max, length)`, or `None` if `{` is a literal.
        fn counted_repeat(&self) -> Result<Option<(u32, Option<u32>, usize)>, Error> {
            let mut j = self.i + 1;
            let Some((min, next)) = self.int_at(j) else {
                return Ok(None);
            };
            j = next;
            let max = match self.s.get(j) {
                Some(',') => {
                    j += 1;
                    match self.s.get(j) {
                        Some('}') => None,
                        _ => {
                            let Some((max, next)) = self.int_at(j) else {
                                return Ok(None);
                            };
                            j = next;
                            Some(max)
                        }
                    }
                }
                Some(_) => Some(min),
                None => return Ok(None),
            };
            if self.s.get(j) != Some(&'}') {
                return Ok(None);
            }
            let too_big = |n: Option<u32>| n.is_none_or(|n| n > MAX_REPEAT);
            if too_big(min) || max.is_some_and(|m| too_big(m) || min > m) {
                return Err(Error::Syntax("invalid repeat count"));
            }
            let max = max.map(|m| m.unwrap_or(0));
            Ok(Some((min.unwrap_or(0), max, j + 1 - self.i)))
        }

        /// Go's `parseInt`: decimal digits, no leading zero unless alone;
        /// `Some(None)` for a number too large to be a repeat count.
        fn int_at(&self, mut j: usize) -> Option<(Option<u32>, usize)> {
            let start = j;
            while self.s.get(j).is_some_and(char::is_ascii_digit) {
                j += 1;
            }
            if j == start || (j - start > 1 && self.s[start] == '0') {
                return None;
            }
            if j - start > 8 {
                return Some((None, j));
            }
            let value = self.s[start..j]
                .iter()
                .filter_map(|c| c.to_digit(10))
                .fold(0u32, |acc, d| acc * 10 + d);
            Some((Some(value), j))
        }

        fn top_level_escape(&mut self, items: &mut Vec<Node>) -> Result<(), Error> {
            match self.peek_at(1) {
                Some('A') => {
                    self.i += 2;
                    items.push(Node::Assert(Assertion::BeginText));
                    return Ok(());
                }
                Some('z') => {
                    self.i += 2;
                    items.push(Node::Assert(Assertion::EndText));
                    return Ok(());
                }
                Some('b') => {
                    self.i += 2;
                    items.push(Node::Assert(Assertion::WordBoundary));
                    return Ok(());
                }
                Some('B') => {
                    self.i += 2;
                    items.push(Node::Assert(Assertion::NotWordBoundary));
                    return Ok(());
                }
                Some('C') => return Err(Error::Syntax("invalid escape sequence")),
                Some('Q') => {
                    // `\Q...\E`: everything up to `\E` (or the end) is literal.
                    self.i += 2;
                    while let Some(c) = self.peek() {
                        if c == '\\' && self.peek_at(1) == Some('E') {
                            self.i += 2;
                            break;
                        }
                        self.i += 1;
                        items.push(Node::Char(CharSet::Literal(u32::from(c))));
                    }
                    return Ok(());
                }
                Some('p' | 'P') => return Err(Error::Unsupported("\\p")),
                _ => {}
            }
            if let Some(class) = self.perl_class() {
                items.push(Node::Char(class));
                return Ok(());
            }
            let c = self.escape()?;
            items.push(Node::Char(CharSet::Literal(c)));
            Ok(())
        }

        /// `\d \D \s \S \w \W` at the cursor.
        fn perl_class(&mut self) -> Option<CharSet> {
            if self.peek() != Some('\\') {
                return None;
            }
            let (ranges, negated): (&[(u32, u32)], bool) = match self.peek_at(1)? {
                'd' => (DIGIT, false),
                'D' => (DIGIT, true),
                's' => (PERL_SPACE, false),
                'S' => (PERL_SPACE, true),
                'w' => (WORD, false),
                'W' => (WORD, true),
                _ => return None,
            };
            self.i += 2;
            Some(CharSet::Class {
                ranges: ranges.to_vec(),
                negated,
            })
        }

        /// Go's `parseEscape` with the cursor on `\`: one rune.
        fn escape(&mut self) -> Result<u32, Error> {
            const INVALID: Error = Error::Syntax("invalid escape sequence");
            let Some(c) = self.peek_at(1) else {
                return Err(Error::Syntax("trailing backslash at end of expression"));
            };
            self.i += 2;
            if c.is_ascii() && !c.is_ascii_alphanumeric() {
                // Escaped punctuation is always itself.
                return Ok(u32::from(c));
            }
            let octal = |c: Option<char>| c.and_then(|c| c.to_digit(8));
            match c {
                '0'..='7' => {
                    // A lone non-zero digit would be a backreference.
                    if c != '0' && octal(self.peek()).is_none() {
                        return Err(INVALID);
                    }
                    let mut value = c.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match octal(self.peek()) {
                            Some(d) => {
                                value = value * 8 + d;
                                self.i += 1;
                            }
                            None => break,
                        }
                    }
                    Ok(value)
                }
                'x' => {
                    let hex = |c: Option<char>| c.and_then(|c| c.to_digit(16));
                    if self.peek() == Some('{') {
                        self.i += 1;
                        let mut value = 0u32;
                        let mut digits = 0;
                        loop {
                            match self.peek() {
                                None => return Err(INVALID),
                                Some('}') => {
                                    self.i += 1;
                                    break;
                                }
                                c => {
                                    let d = hex(c).ok_or(INVALID)?;
                                    value = value * 16 + d;
                                    if value > MAX_RUNE {
                                        return Err(INVALID);
                                    }
                                    digits += 1;
                                    self.i += 1;
                                }
                            }
                        }
                        if digits == 0 {
                            return Err(INVALID);
                        }
                        return Ok(value);
                    }
                    let hi = hex(self.peek()).ok_or(INVALID)?;
                    let lo = hex(self.peek_at(1)).ok_or(INVALID)?;
                    self.i += 2;
                    Ok(hi * 16 + lo)
                }
                'a' => Ok(7),
                'f' => Ok(12),
                'n' => Ok(10),
                'r' => Ok(13),
                't' => Ok(9),
                'v' => Ok(11),
                _ => Err(INVALID),
            }
        }

        /// Go's `parseClass` with the cursor on `[`.
        fn class(&mut self) -> Result<CharSet, Error> {
            const MISSING: Error = Error::Syntax("missing closing ]");
            self.i += 1;
            let negated = self.peek() == Some('^');
            if negated {
                self.i += 1;
            }
            let mut ranges: Vec<(u32, u32)> = Vec::new();
            // `]` (and `-`) are ordinary as the first character.
            let mut first = true;
            loop {
                match self.peek() {
                    None => return Err(MISSING),
                    Some(']') if !first => {
                        self.i += 1;
                        break;
                    }
                    _ => {}
                }
                first = false;
                // POSIX `[:alpha:]`; Go looks for `:]` anywhere further on.
                if self.peek() == Some('[')
                    && self.peek_at(1) == Some(':')
                    && self.peek_at(2).is_some()
                {
                    let rest = &self.s[self.i + 2..];
                    if let Some(end) = rest.windows(2).position(|w| w == [':', ']']) {
                        let name: String = rest[..end].iter().collect();
                        let (set, negate) = match name.strip_prefix('^') {
                            Some(inner) => (posix_class(inner), true),
                            None => (posix_class(&name), false),
                        };
                        let set = set.ok_or(Error::Syntax("invalid character class range"))?;
                        if negate {
                            ranges.extend(complement(set));
                        } else {
                            ranges.extend_from_slice(set);
                        }
                        self.i += 2 + end + 2;
                        continue;
                    }
                }
                if self.peek() == Some('\\') && matches!(self.peek_at(1), Some('p' | 'P')) {
                    return Err(Error::Unsupported("\\p"));
                }
                if let Some(CharSet::Class {
                    ranges: set,
                    negated,
                }) = self.perl_class()
                {
                    if negated {
                        ranges.extend(complement(&set));
                    } else {
                        ranges.extend(set);
                    }
                    continue;
                }
                let lo = self.class_char()?;
                let mut hi = lo;
                // `[a-]` means `a` or `-`.
                if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                    self.i += 1;
                    hi = self.class_char()?;
                    if hi < lo {
                        return Err(Error::Syntax("invalid character class range"));
                    }
                }
                ranges.push((lo, hi));
            }
            Ok(CharSet::Class { ranges, negated })
        }

        fn class_char(&mut self) -> Result<u32, Error> {
            match self.peek() {
                None => Err(Error::Syntax("missing closing ]")),
                Some('\\') => self.escape(),
                Some(c) => {
                    self.i += 1;
                    Ok(u32::from(c))
                }
            }
        }
    }

    const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
    const PERL_SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
    const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

    /// Go's `posixGroup` table.
    fn posix_class(name: &str) -> Option<&'static [(u32, u32)]> {
        Some(match name {
            "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
            "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
            "ascii" => &[(0x00, 0x7F)],
            "blank" => &[(0x09, 0x09), (0x20, 0x20)],
            "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
            "digit" => DIGIT,
            "graph" => &[(0x21, 0x7E)],
            "lower" => &[(0x61, 0x7A)],
            "print" => &[(0x20, 0x7E)],
            "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
            "space" => &[(0x09, 0x0D), (0x20, 0x20)],
            "upper" => &[(0x41, 0x5A)],
            "word" => WORD,
            "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
            _ => return None,
        })
    }

    /// The ranges not covered by `set` (sorted, disjoint), up to U+10FFFF.
    fn complement(set: &[(u32, u32)]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut next = 0u32;
        for &(lo, hi) in set {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi + 1;
        }
        if next <= MAX_RUNE {
            out.push((next, MAX_RUNE));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matcher(contents: &str) -> Matcher {
        match parse(contents) {
            Ok(patterns) => Matcher::new(patterns),
            Err(err) => panic!("{contents:?} should parse: {err}"),
        }
    }

    fn texts(contents: &str) -> Vec<String> {
        parse(contents)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let bang = if p.is_exclusion() { "!" } else { "" };
                        format!("{bang}{}", p.text())
                    })
                    .collect()
            })
            .unwrap_or_else(|err| panic!("{contents:?} should parse: {err}"))
    }

    fn single(pattern: &str) -> Pattern {
        match Pattern::new(pattern, 1) {
            Ok(Some(p)) => p,
            other => panic!("{pattern:?} should compile, got {other:?}"),
        }
    }

    fn kind_of(pattern: &str) -> (Detected, String) {
        translate(&clean(pattern))
    }

    // F177: one pattern per line, comments in column 1, trimming, Clean.

    #[test]
    fn comments_only_in_column_one() {
        assert_eq!(texts("# comment\n  # not a comment\n"), ["# not a comment"]);
    }

    #[test]
    fn lines_are_trimmed_cleaned_and_blank_ones_dropped() {
        assert_eq!(
            texts("  a/./b/../c  \n\n \t \nfoo//bar/\n\tx\n"),
            ["a/c", "foo/bar", "x"]
        );
    }

    #[test]
    fn crlf_and_bom_are_handled() {
        assert_eq!(texts("\u{feff}a\r\nb\r\n"), ["a", "b"]);
        // Only the first line loses a byte order mark.
        assert_eq!(texts("a\n\u{feff}b").len(), 2);
        assert_eq!(texts("\u{feff}# comment\nx"), ["x"]);
    }

    #[test]
    fn buildkit_readall_table() {
        // moby/patternmatcher ignorefile_test.go, then New() on top.
        let contents =
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
        assert_eq!(
            texts(contents),
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path"
            ]
        );
    }

    #[test]
    fn lone_exclamation_mark_is_an_error_with_its_line() {
        assert!(matches!(
            parse("a\n\n!\n"),
            Err(IgnoreError::IllegalExclusion { line: 3 })
        ));
        assert!(matches!(
            parse("! \n"),
            Err(IgnoreError::IllegalExclusion { line: 1 })
        ));
        // `!/` survives ReadAll but patternmatcher cleans it to `!`.
        assert!(matches!(
            parse("x\n!/"),
            Err(IgnoreError::IllegalExclusion { line: 2 })
        ));
    }

    #[test]
    fn bad_glob_is_an_error_with_its_line() {
        let err = parse("ok\n# c\nfoo[\n").err();
        assert!(
            matches!(&err, Some(IgnoreError::BadGlob { line: 3, source: GlobError::BadPattern { pattern } }) if pattern == "foo["),
            "{err:?}"
        );
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("invalid pattern at line 3")
        );
        // Go reports bad classes even where the name `.` already mismatched.
        assert!(matches!(
            parse("x[a-"),
            Err(IgnoreError::BadGlob { line: 1, .. })
        ));
    }

    #[test]
    fn regexp_rejects_what_go_match_accepts() {
        // Regression moby/moby#52203: passes filepath.Match, fails regexp.
        assert!(matches!(
            parse("[Local-Only]/"),
            Err(IgnoreError::BadRegexp { line: 1, .. })
        ));
        assert!(matches!(
            parse("a\n[z-a]*"),
            Err(IgnoreError::BadRegexp { line: 2, .. })
        ));
        assert!(matches!(parse("a\\é*"), Err(IgnoreError::BadRegexp { .. })));
        assert!(matches!(parse("a\\q"), Err(IgnoreError::BadRegexp { .. })));
        assert!(matches!(
            parse("[[:foo:]]"),
            Err(IgnoreError::BadRegexp { .. })
        ));
        assert!(matches!(
            parse("\\pL"),
            Err(IgnoreError::Unsupported { .. })
        ));
        // Nested repetition: `**/` becomes `(.*/)?`, then `{2}` repeats it.
        assert!(matches!(
            parse("a/**/{2}x"),
            Err(IgnoreError::BadRegexp { .. })
        ));
        // With the `**` first it is a plain suffix, never a regexp.
        assert!(matcher("**/{2}x").matches("d/{2}x"));
    }

    #[test]
    fn overlong_line_is_rejected() {
        let long = "a".repeat(MAX_LINE + 1);
        assert!(matches!(
            parse(&format!("x\n{long}\n")),
            Err(IgnoreError::LineTooLong { line: 2, .. })
        ));
        assert!(parse(&"a".repeat(MAX_LINE)).is_ok());
    }

    // F178: anchored at the root; leading and trailing slashes ignored.

    #[test]
    fn leading_and_trailing_slashes_are_ignored() {
        assert_eq!(
            texts("/foo/bar\nbin/\n//x//\n/\n"),
            ["foo/bar", "bin", "x", "/"]
        );
        let m = matcher("/foo/bar\nbin/");
        assert!(m.matches("foo/bar"));
        assert!(m.matches("bin"));
        assert!(m.matches("bin/x"));
    }

    #[test]
    fn patterns_are_anchored_at_the_root() {
        let m = matcher("foo\n*.md");
        assert!(m.matches("foo"));
        assert!(!m.matches("x/foo"));
        assert!(m.matches("a.md"));
        assert!(!m.matches("docs/a.md"));
    }

    // F179: Go glob syntax (the reference's examples).

    #[test]
    fn star_slash_temp_star_matches_one_level_down() {
        let m = matcher("*/temp*");
        assert!(m.matches("somedir/temporary.txt"));
        assert!(m.matches("somedir/temp"));
        assert!(!m.matches("temp"));
        assert!(!m.matches("temporary.txt"));
        assert!(!m.matches("a/b/temp"));
    }

    #[test]
    fn star_star_temp_star_matches_two_levels_down() {
        let m = matcher("*/*/temp*");
        assert!(m.matches("somedir/subdir/temporary.txt"));
        assert!(!m.matches("somedir/temporary.txt"));
    }

    #[test]
    fn question_mark_matches_one_character() {
        let m = matcher("temp?");
        assert!(m.matches("tempa"));
        assert!(m.matches("tempb"));
        assert!(!m.matches("temp"));
        assert!(!m.matches("tempab"));
        assert!(!m.matches("x/tempa"));
    }

    #[test]
    fn classes_and_escapes() {
        let m = matcher("file[0-9].txt\n[^a]x\nq\\*");
        assert!(m.matches("file1.txt"));
        assert!(!m.matches("filea.txt"));
        assert!(m.matches("bx"));
        assert!(!m.matches("ax"));
        assert!(m.matches("q*"));
        assert!(!m.matches("qq"));
    }

    // F180: `**`.

    #[test]
    fn double_star_matches_any_depth_including_none() {
        let m = matcher("**/*.go");
        assert!(m.matches("a.go"));
        assert!(m.matches("x/y/a.go"));
        assert!(!m.matches("a.goo"));
    }

    #[test]
    fn trailing_double_star_matches_everything_below() {
        let m = matcher("dir/**");
        assert!(m.matches("dir/x"));
        assert!(m.matches("dir/x/y"));
        assert!(!m.matches("dir"), "`dir/**` is the prefix `dir/`");
        assert!(!m.matches("dirt"));
        // Without the slash the prefix is plain text.
        assert!(matcher("dir**").matches("dirt"));
    }

    // F181: a match on a directory covers everything below it.

    #[test]
    fn directory_match_excludes_its_contents() {
        let m = matcher("secret\nbuild/*");
        assert!(m.matches("secret"));
        assert!(m.matches("secret/a/b"));
        assert!(m.matches("build/x/y"));
        assert!(!m.matches("build"));
    }

    // F182: the last matching line decides.

    #[test]
    fn last_matching_line_wins() {
        let m = matcher("*.md\n!README*.md\nREADME-secret.md");
        assert!(m.matches("CHANGES.md"));
        assert!(!m.matches("README.md"));
        assert!(!m.matches("README-public.md"));
        assert!(m.matches("README-secret.md"));
        assert!(m.has_exclusions());
    }

    // F183: re-including inside an excluded directory.

    #[test]
    fn exception_under_excluded_directory() {
        let m = matcher("secret/\n!secret/public.txt");
        assert!(m.matches("secret"));
        assert!(m.matches("secret/private.txt"));
        assert!(!m.matches("secret/public.txt"));
        assert!(m.must_enter_excluded_dir(b"secret", Pruning::BuildKit));
        assert!(m.must_enter_excluded_dir(b"secret", Pruning::Classic));
        assert!(!m.must_enter_excluded_dir(b"other", Pruning::BuildKit));
        assert!(!m.must_enter_excluded_dir(b"secre", Pruning::Classic));
    }

    #[test]
    fn wildcard_exception_reaches_excluded_dirs_only_under_buildkit() {
        let m = matcher("*\n!**/*.py");
        assert!(m.matches("sub"));
        assert!(!m.matches("top.py"));
        // docker/cli#2919: the text `**/*.py/` does not start with `sub/`.
        assert!(!m.must_enter_excluded_dir(b"sub", Pruning::Classic));
        // fsutil walks every excluded directory once an exception has a glob.
        assert!(m.must_enter_excluded_dir(b"sub", Pruning::BuildKit));
        // A trailing `/*` or `/**` does not count as a glob for fsutil.
        let m = matcher("*\n!keep/**");
        assert!(m.must_enter_excluded_dir(b"keep", Pruning::BuildKit));
        assert!(!m.must_enter_excluded_dir(b"other", Pruning::BuildKit));
        // Without exceptions an excluded directory is never entered.
        let m = matcher("*");
        assert!(!m.must_enter_excluded_dir(b"keep", Pruning::BuildKit));
        assert!(!m.must_enter_excluded_dir(b"keep", Pruning::Classic));
    }

    #[test]
    fn parent_results_differ_from_matches_or_parent_matches() {
        // patternmatcher's two entry points disagree here; fsutil's walker
        // uses the parent-results one.
        let m = matcher("d/f\n!d");
        assert!(!m.matches("d/f"), "the `!d` parent match re-includes it");
        let (dir_excluded, info) = m.matches_with_parent(b"d", &MatchInfo::default());
        assert!(!dir_excluded);
        let (file_excluded, _) = m.matches_with_parent(b"d/f", &info);
        assert!(
            file_excluded,
            "`!d` was skipped for `d`, so it is not a parent match"
        );
    }

    #[test]
    fn parent_results_without_info_equal_matches() {
        let m = matcher("docs\n!docs/README.md\n**/*.tmp");
        for path in ["docs", "docs/README.md", "docs/x", "a/b.tmp", "a/b", "x"] {
            let (excluded, _) = m.matches_with_parent(path.as_bytes(), &MatchInfo::default());
            assert_eq!(excluded, m.matches(path), "{path}");
        }
    }

    // F184: `.` is kept but matches nothing.

    #[test]
    fn dot_pattern_matches_nothing() {
        assert_eq!(texts(".\n./\n/."), [".", ".", "/"]);
        let m = matcher(".");
        for path in ["a", "a/b", ".hidden", "."] {
            assert!(!m.matches(path), "{path}");
        }
        // Even `*` does not exclude the context root itself.
        assert!(!matcher("*").matches("."));
        assert!(!matcher("*").matches(""));
    }

    // F185: the build files are ordinary paths to the matcher.

    #[test]
    fn dockerfile_and_dockerignore_can_be_excluded() {
        let m = matcher("Dockerfile\n.dockerignore");
        assert!(m.matches("Dockerfile"));
        assert!(m.matches(".dockerignore"));
        assert!(!matcher("*.txt").matches(".dockerignore"));
    }

    // F176: the Dockerfile-specific ignore file comes first.

    #[test]
    fn dockerfile_specific_ignore_file_comes_first() {
        let candidates =
            ignore_file_candidates(Path::new("/ctx"), Path::new("/ctx/build.Dockerfile"));
        assert_eq!(
            candidates,
            [
                PathBuf::from("/ctx/build.Dockerfile.dockerignore"),
                PathBuf::from("/ctx/.dockerignore")
            ]
        );
        let candidates =
            ignore_file_candidates(Path::new("ctx"), Path::new("other/dir/Dockerfile"));
        assert_eq!(
            candidates,
            [
                PathBuf::from("other/dir/Dockerfile.dockerignore"),
                PathBuf::from("ctx/.dockerignore")
            ]
        );
        assert_eq!(
            ignore_file_candidates(Path::new("ctx"), Path::new("..")),
            [PathBuf::from("ctx/.dockerignore")]
        );
    }

    // Translation quirks of patternmatcher's regexp compiler.

    #[test]
    fn compile_table_from_patternmatcher() {
        use Detected::*;
        let table: &[(&str, Detected, &str)] = &[
            ("*", Regexp, "^[^/]*$"),
            ("file*", Regexp, "^file[^/]*$"),
            ("*file", Regexp, "^[^/]*file$"),
            ("a*/b", Regexp, "^a[^/]*/b$"),
            ("**", Suffix, ""),
            ("**/**", Regexp, "^(.*/)?.*$"),
            ("dir/**", Prefix, ""),
            ("**/dir", Suffix, ""),
            ("**/dir2/*", Regexp, "^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Regexp, "^(.*/)?dir2/.*$"),
            ("**file", Suffix, ""),
            ("**/file*txt", Regexp, "^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", Regexp, "^(.*/)?(.*/)?[^/]*\\.txt$"),
            ("a[b-d]e", Regexp, "^a[b-d]e$"),
            (".*", Regexp, "^\\.[^/]*$"),
            ("abc.def", Exact, ""),
            ("abc?def", Regexp, "^abc[^/]def$"),
            ("**/foo/bar", Suffix, ""),
            ("a(b)c/def", Exact, ""),
            ("a.|)$(}+{bc", Exact, ""),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                Exact,
                "",
            ),
        ];
        assert_eq!(single("a*").regexp(), Some("^a[^/]*$"));
        assert_eq!(single("!a/b").regexp(), None);
        assert_eq!(single("a/**").regexp(), None);
        for &(pattern, want, regexp) in table {
            let (got, source) = kind_of(pattern);
            assert_eq!(got, want, "{pattern}");
            if want == Regexp {
                assert_eq!(source, regexp, "{pattern}");
            }
        }
    }

    /// moby/patternmatcher TestMatches: (pattern, path, exact, matches with
    /// parents).
    #[test]
    fn matches_table_from_patternmatcher() {
        const FAIL: u8 = 0;
        const EXACT: u8 = 1;
        const INEXACT: u8 = 2;
        let table: &[(&str, &str, u8)] = &[
            ("**", "file", EXACT),
            ("**", "file/", EXACT),
            ("**/", "file", EXACT),
            ("**/", "file/", EXACT),
            ("**", "/", EXACT),
            ("**/", "/", EXACT),
            ("**", "dir/file", EXACT),
            ("**/", "dir/file", EXACT),
            ("**", "dir/file/", EXACT),
            ("**/", "dir/file/", EXACT),
            ("**/**", "dir/file", EXACT),
            ("**/**", "dir/file/", EXACT),
            ("dir/**", "dir/file", EXACT),
            ("dir/**", "dir/file/", EXACT),
            ("dir/**", "dir/dir2/file", EXACT),
            ("dir/**", "dir/dir2/file/", EXACT),
            ("**/dir", "dir", EXACT),
            ("**/dir", "dir/file", INEXACT),
            ("**/dir2/*", "dir/dir2/file", EXACT),
            ("**/dir2/*", "dir/dir2/file/", INEXACT),
            ("**/dir2/**", "dir/dir2/dir3/file", EXACT),
            ("**/dir2/**", "dir/dir2/dir3/file/", EXACT),
            ("**file", "file", EXACT),
            ("**file", "dir/file", EXACT),
            ("**/file", "dir/file", EXACT),
            ("**file", "dir/dir/file", EXACT),
            ("**/file", "dir/dir/file", EXACT),
            ("**/file*", "dir/dir/file", EXACT),
            ("**/file*", "dir/dir/file.txt", EXACT),
            ("**/file*txt", "dir/dir/file.txt", EXACT),
            ("**/file*.txt", "dir/dir/file.txt", EXACT),
            ("**/file*.txt*", "dir/dir/file.txt", EXACT),
            ("**/**/*.txt", "dir/dir/file.txt", EXACT),
            ("**/**/*.txt2", "dir/dir/file.txt", FAIL),
            ("**/*.txt", "file.txt", EXACT),
            ("**/**/*.txt", "file.txt", EXACT),
            ("a**/*.txt", "a/file.txt", EXACT),
            ("a**/*.txt", "a/dir/file.txt", EXACT),
            ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
            ("a/*.txt", "a/dir/file.txt", FAIL),
            ("a/*.txt", "a/file.txt", EXACT),
            ("a/*.txt**", "a/file.txt", EXACT),
            ("a[b-d]e", "ae", FAIL),
            ("a[b-d]e", "ace", EXACT),
            ("a[b-d]e", "aae", FAIL),
            ("a[^b-d]e", "aze", EXACT),
            (".*", ".foo", EXACT),
            (".*", "foo", FAIL),
            ("abc.def", "abcdef", FAIL),
            ("abc.def", "abc.def", EXACT),
            ("abc.def", "abcZdef", FAIL),
            ("abc?def", "abcZdef", EXACT),
            ("abc?def", "abcdef", FAIL),
            ("**/foo/bar", "foo/bar", EXACT),
            ("**/foo/bar", "dir/foo/bar", EXACT),
            ("**/foo/bar", "dir/dir2/foo/bar", EXACT),
            ("abc/**", "abc", FAIL),
            ("abc/**", "abc/def", EXACT),
            ("abc/**", "abc/def/ghi", EXACT),
            ("**/.foo", ".foo", EXACT),
            ("**/.foo", "bar.foo", FAIL),
            ("a(b)c/def", "a(b)c/def", EXACT),
            ("a(b)c/def", "a(b)c/xyz", FAIL),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                EXACT,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                EXACT,
            ),
            ("a\\\\", "a\\", EXACT),
            ("a\\*b", "a*b", EXACT),
        ];
        for &(pattern, path, pass) in table {
            let p = single(pattern);
            assert_eq!(
                p.matches_path(path.as_bytes()),
                pass == EXACT,
                "exact: pattern {pattern:?} path {path:?}"
            );
            // The method form, without docker/cli's Clean of the path.
            let m = Matcher::new(vec![p]);
            let (with_parents, _) = m.matches_with_parent(path.as_bytes(), &MatchInfo::default());
            assert_eq!(
                with_parents,
                pass != FAIL,
                "with parents: pattern {pattern:?} path {path:?}"
            );
        }
    }

    #[test]
    fn multi_pattern_table_from_patternmatcher() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["*.go", "!fileutils.go"], "fileutils.go", false),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["*"], "fileutils.go", true),
        ];
        for &(patterns, path, want) in table {
            let m = Matcher::from_patterns(patterns.iter().copied())
                .unwrap_or_else(|err| panic!("{patterns:?}: {err}"));
            assert_eq!(m.matches(path), want, "{patterns:?} {path}");
        }
    }

    /// moby/patternmatcher's copy of Go's match table run through its
    /// deprecated `Matches` (single pattern, parent directories checked).
    #[test]
    fn go_table_through_patternmatcher() {
        let table: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*", "ab/c", Some(true)),
            ("a*/b", "abc/b", Some(true)),
            ("a*/b", "a/c/b", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("a[^a][^a][^a]b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[\\-x]", "x", Some(true)),
            ("[\\-x]", "-", Some(true)),
            ("[\\-x]", "a", Some(false)),
            ("[]a]", "]", None),
            ("[-]", "-", None),
            ("[x-]", "x", None),
            ("[x-]", "-", None),
            ("[x-]", "z", None),
            ("[-x]", "x", None),
            ("[-x]", "-", None),
            ("[-x]", "a", None),
            ("\\", "a", None),
            ("[a-b-c]", "a", None),
            ("[", "a", None),
            ("[^", "a", None),
            ("[^bc", "a", None),
            ("a[", "a", None),
            ("a[", "ab", None),
            ("*x", "xxx", Some(true)),
        ];
        for &(pattern, path, want) in table {
            match (Matcher::from_patterns([pattern]), want) {
                (Ok(m), Some(want)) => assert_eq!(m.matches(path), want, "{pattern:?} {path:?}"),
                (Err(IgnoreError::BadGlob { .. }), None) => {}
                (got, _) => panic!("{pattern:?} {path:?}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn pattern_matcher_edge_cases() {
        // No patterns, or the root itself, never match.
        assert!(!Matcher::default().matches("/any/path/there"));
        assert!(!matcher("*.go").matches("."));
        // Whitespace around `!` is trimmed by New as well.
        let m = Matcher::from_patterns(["docs", "  !docs/README.md  "])
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(m.has_exclusions());
        assert_eq!(m.patterns().len(), 2);
        let m =
            Matcher::from_patterns(["docs", "config", ""]).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(m.patterns().len(), 2);
        assert!(matches!(
            Matcher::from_patterns(["!"]),
            Err(IgnoreError::IllegalExclusion { line: 1 })
        ));
    }

    #[test]
    fn regexp_metacharacters_that_survive_translation() {
        // `^` is not escaped: an anchor in regexp form, literal in exact form.
        assert!(matcher("^abc").matches("^abc"));
        assert!(!matcher("^abc").matches("abc"));
        assert!(matcher("^a*").matches("abc"));
        assert!(!matcher("^a*").matches("^abc"));
        // `|` keeps its regexp meaning: `^foo|bar[^/]*$`.
        let m = matcher("foo|bar*");
        assert!(m.matches("foo"));
        assert!(m.matches("foolish"), "the first branch has no `$`");
        assert!(m.matches("x/crowbar"), "the second branch has no `^`");
        assert!(m.matches("foo|bar"), "`^foo` has no `$`");
        assert!(!m.matches("xfoo"));
        // `{n}` is a repetition.
        let m = matcher("a{2}*");
        assert!(m.matches("aa"));
        assert!(m.matches("aab"));
        assert!(!m.matches("a{2}"));
        // A `{` that is not a repetition stays literal.
        assert!(matcher("a{x*").matches("a{xy"));
        // Escapes go to the regexp engine: `\d` is a digit class.
        let m = matcher("file\\d");
        assert!(m.matches("file1"));
        assert!(!m.matches("filed"));
        // `\.` and `\*` stay literal.
        assert!(matcher("a\\.b").matches("a.b"));
        assert!(!matcher("a\\.b").matches("axb"));
    }

    #[test]
    fn classes_are_read_by_the_regexp_engine() {
        // `[[:alpha:]]` is a POSIX class for Go's regexp.
        let m = matcher("[[:alpha:]]x");
        assert!(m.matches("ax"));
        assert!(!m.matches("1x"));
        // `[*]` becomes `[[^/]*]`: the class {`[`, `^`, `/`}, repeated, then
        // a literal `]`. A file named `*` is not matched.
        let m = matcher("[*]");
        assert!(!m.matches("*"));
        assert!(m.matches("]"));
        assert!(m.matches("[[]"));
        // `[!a]` is the class of `!` and `a`, as in Go.
        let m = matcher("[!a]b");
        assert!(m.matches("!b"));
        assert!(m.matches("ab"));
        assert!(!m.matches("cb"));
        // Negated classes match a newline, `.` from `**` does not.
        assert!(matcher("a[^b]").matches("a\n"));
        assert!(!matcher("x/**/y").matches("x/a\nb/y"));
    }

    #[test]
    fn suffix_form_compares_raw_text() {
        let m = matcher("**/.example");
        assert!(m.matches(".example"));
        assert!(m.matches("a/.example"));
        assert!(!m.matches("some.example"));
        // Without the slash it is a plain text suffix (moby/moby#29014).
        let m = matcher("**.example");
        assert!(m.matches("some.example"));
        assert!(m.matches("a/b.example"));
    }

    #[test]
    fn non_utf8_paths_match_bytewise() {
        let m = matcher("a?\nb*");
        assert!(m.matches_bytes(b"a\xff"));
        assert!(!m.matches_bytes(b"a\xff\xfe"));
        assert!(m.matches_bytes(b"b\xff/x"));
        assert!(matcher("\u{fffd}x*").matches_bytes(b"\xffxy"));
    }

    #[test]
    fn clean_follows_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("a/../..", ".."),
            ("/..", "/"),
            ("/../a/", "/a"),
            ("//a", "/a"),
            ("!./a", "!./a"),
            ("!/", "!"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn regexp_engine_basics() {
        let compiled = |s: &str| re::Program::compile(s).unwrap_or_else(|e| panic!("{s}: {e:?}"));
        let run = |s: &str, input: &str| compiled(s).is_match(&decode(input.as_bytes()));
        assert!(run("b", "abc"), "unanchored search");
        assert!(!run("^b", "abc"));
        assert!(run("c$", "abc"));
        assert!(run("^(a|b)+$", "abba"));
        assert!(!run("^(a|b)+$", "abca"));
        assert!(run("^a{2,3}$", "aaa"));
        assert!(!run("^a{2,3}$", "aaaa"));
        assert!(run("^a{2,}$", "aaaaa"));
        assert!(run("\\bfoo\\b", "a foo b"));
        assert!(!run("\\bfoo\\b", "afoo"));
        assert!(run("^\\Qa.b\\E$", "a.b"));
        assert!(!run("^\\Qa.b\\E$", "axb"));
        assert!(run("^\\x41\\x{42}\\101$", "ABA"));
        assert!(run("^[\\d\\s]+$", "1 2"));
        assert!(run("^[^\\W]$", "_"));
        assert!(run("^[[:^digit:]]$", "x"));
        assert!(!run("^[[:^digit:]]$", "7"));
        assert!(run("^[]a]$", "]"));
        assert!(run("^a*?$", "aaa"));
        for bad in [
            "a**", "*a", "a{2}{3}", "(a", "a)", "[a", "\\", "\\8", "a{1001}", "[b-a]", "\\C",
        ] {
            assert!(re::Program::compile(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(contents in "\\PC{0,64}") {
            let _ = parse(&contents);
        }

        #[test]
        fn parse_never_panics_on_pattern_alphabet(
            contents in "[a-c*?\\[\\]\\\\^!/.|{}()$:+0-9#\n \r-]{0,40}",
        ) {
            let _ = parse(&contents);
        }

        #[test]
        fn matches_never_panics(
            contents in "[a-c*?\\[\\]\\\\^!/.|{}:0-9\n-]{0,30}",
            path in "[a-c*?\\[\\]\\\\^!/.|{}:0-9-]{0,20}",
            raw in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            if let Ok(patterns) = parse(&contents) {
                let m = Matcher::new(patterns);
                let _ = m.matches(&path);
                let _ = m.matches_bytes(&raw);
                let (_, info) = m.matches_with_parent(path.as_bytes(), &MatchInfo::default());
                let _ = m.matches_with_parent(raw.as_slice(), &info);
                let _ = m.must_enter_excluded_dir(path.as_bytes(), Pruning::BuildKit);
                let _ = m.must_enter_excluded_dir(&raw, Pruning::Classic);
            }
        }

        #[test]
        fn arbitrary_patterns_never_panic(pattern in "\\PC{0,24}", path in "\\PC{0,24}") {
            if let Ok(Some(p)) = Pattern::new(&pattern, 1) {
                let m = Matcher::new(vec![p]);
                let _ = m.matches(&path);
            }
        }

        #[test]
        fn regexp_engine_never_panics(source in "[a-c*?\\[\\]\\\\^!/.|{}():+0-9QEdpx,-]{0,24}",
                                      input in "\\PC{0,16}") {
            if let Ok(program) = re::Program::compile(&source) {
                let _ = program.is_match(&decode(input.as_bytes()));
            }
        }
    }
}
