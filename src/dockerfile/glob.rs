//! Go's `path.Match` / `filepath.Match` (Unix flavour), byte for byte.
//!
//! Owns the shell-glob dialect that Docker inherits from Go: COPY/ADD source
//! wildcards (F154) and the syntax check that `.dockerignore` patterns must
//! pass (F179). It never touches the filesystem.
//!
//! Grammar (Go's doc comment, `path/match.go`):
//!
//! ```text
//! pattern:   { term }
//! term:      '*'         any sequence of non-'/' characters
//!            '?'         any single non-'/' character
//!            '[' [ '^' ] { character-range } ']'   (class, must be non-empty)
//!            c           matches character c (c != '*', '?', '\\', '[')
//!            '\\' c      matches character c
//! character-range:
//!            c           matches character c (c != '\\', '-', ']')
//!            '\\' c      matches character c
//!            lo '-' hi   matches character c for lo <= c <= hi
//! ```
//!
//! Invariants, all inherited from Go and kept on purpose:
//! - Only `^` negates a class; `[!a]` is the class of `!` and `a`.
//! - Matching works on bytes. `?` and classes decode one UTF-8 rune, and an
//!   invalid byte decodes as U+FFFD of width 1. A `*` retries its chunk at every
//!   *byte* offset, so it may start inside a multi-byte character (Go's
//!   `Match("*??", "☺")` is `true`).
//! - A malformed pattern is reported even when the name already failed to
//!   match: the rest of the pattern is still parsed (current `path/match.go`).
//!   A pattern that matched before reaching its malformed part cannot exist,
//!   because a match consumes the whole pattern.
//! - No input panics; recursion is not used.

/// A malformed glob pattern, Go's `filepath.ErrBadPattern`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern breaks the grammar (unclosed or empty class, trailing
    /// backslash, a range missing an end, ...).
    #[error("syntax error in pattern `{pattern}`")]
    BadPattern {
        /// The pattern as given (invalid UTF-8 replaced by U+FFFD).
        pattern: String,
    },
}

/// Reports whether `name` matches the shell pattern `pattern`, exactly as Go's
/// `filepath.Match` does on Unix.
///
/// The whole of `name` must match. The only error is
/// [`GlobError::BadPattern`].
pub fn matches(pattern: &str, name: &str) -> Result<bool, GlobError> {
    matches_bytes(pattern.as_bytes(), name.as_bytes())
}

/// [`matches()`] on raw bytes (Go strings may hold any bytes, and so may Unix
/// file names).
pub fn matches_bytes(pattern: &[u8], name: &[u8]) -> Result<bool, GlobError> {
    go_match(pattern, name).map_err(|BadPattern| GlobError::BadPattern {
        pattern: String::from_utf8_lossy(pattern).into_owned(),
    })
}

/// Reports whether `s` contains any character that [`matches()`] treats
/// specially: `*`, `?`, `[` or `\` (Go's unexported `hasMeta`, Unix flavour).
pub fn has_meta(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// The Unicode replacement character, what Go decodes an invalid byte to.
pub(crate) const RUNE_ERROR: u32 = 0xFFFD;

/// Go's `utf8.DecodeRune`: the first rune of `s` and its width in bytes.
/// Invalid or truncated sequences give `(U+FFFD, 1)`; an empty slice gives
/// `(U+FFFD, 0)`.
pub(crate) fn decode_rune(s: &[u8]) -> (u32, usize) {
    let Some(&lead) = s.first() else {
        return (RUNE_ERROR, 0);
    };
    let width = match lead {
        0x00..=0x7F => return (u32::from(lead), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (RUNE_ERROR, 1),
    };
    // Rust's UTF-8 validation rejects the same sequences as Go's decoder
    // (overlong forms, surrogates, values above U+10FFFF).
    match s.get(..width).map(std::str::from_utf8) {
        Some(Ok(text)) => match text.chars().next() {
            Some(c) => (u32::from(c), width),
            None => (RUNE_ERROR, 1),
        },
        _ => (RUNE_ERROR, 1),
    }
}

/// Internal marker for `ErrBadPattern`; the public error adds the pattern.
struct BadPattern;

/// Go's `Match`, ported statement for statement.
fn go_match(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, BadPattern> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // Trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&b'/'));
        }
        // Look for a match at the current position. If this is the last
        // chunk it must use up the name, or the star below may still match.
        if let Some(t) = match_chunk(chunk, name)?
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        if star {
            // Retry after skipping i+1 bytes; a star cannot skip a `/`.
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                // The last chunk must use up the name.
                if let Some(t) = match_chunk(chunk, &name[i + 1..])?
                    && (t.is_empty() || !pattern.is_empty())
                {
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        // Before answering "no match", check that the rest of the pattern is
        // well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off the next chunk: leading stars, then everything up to the next
/// star outside a class. Returns `(had_star, chunk, rest)`.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // Skip the escaped byte; a trailing `\` is reported by match_chunk.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => return (star, &pattern[..i], &pattern[i..]),
            _ => {}
        }
        i += 1;
    }
    (star, pattern, &[])
}

/// Matches `chunk` (no stars) against the start of `s`. Returns the rest of
/// `s` on a match. After a mismatch it keeps parsing `chunk` without reading
/// `s`, so that a malformed chunk is always reported.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<Option<&'s [u8]>, BadPattern> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = 0;
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0usize;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    // get_esc never returns an empty rest.
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let literal = if c == b'\\' {
                    chunk = &chunk[1..];
                    match chunk.first() {
                        Some(&escaped) => escaped,
                        None => return Err(BadPattern),
                    }
                } else {
                    c
                };
                if !failed {
                    if literal != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed { Ok(None) } else { Ok(Some(s)) }
}

/// Reads one possibly escaped character of a class. The rest must not be
/// empty: a class always needs its closing `]`.
fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    let mut chunk = match chunk.first() {
        None | Some(b'-' | b']') => return Err(BadPattern),
        Some(_) => chunk,
    };
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(BadPattern);
        }
    }
    let (r, n) = decode_rune(chunk);
    if r == RUNE_ERROR && n == 1 {
        return Err(BadPattern);
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Go's `path/filepath/match_test.go` table: (pattern, name, match, bad).
    const GO_MATCH_TESTS: &[(&str, &str, bool, bool)] = &[
        ("abc", "abc", true, false),
        ("*", "abc", true, false),
        ("*c", "abc", true, false),
        ("a*", "a", true, false),
        ("a*", "abc", true, false),
        ("a*", "ab/c", false, false),
        ("a*/b", "abc/b", true, false),
        ("a*/b", "a/c/b", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true, false),
        ("a*b?c*x", "abxbbxdbxebxczzy", false, false),
        ("ab[c]", "abc", true, false),
        ("ab[b-d]", "abc", true, false),
        ("ab[e-g]", "abc", false, false),
        ("ab[^c]", "abc", false, false),
        ("ab[^b-d]", "abc", false, false),
        ("ab[^e-g]", "abc", true, false),
        ("a\\*b", "a*b", true, false),
        ("a\\*b", "ab", false, false),
        ("a?b", "a☺b", true, false),
        ("a[^a]b", "a☺b", true, false),
        ("a???b", "a☺b", false, false),
        ("a[^a][^a][^a]b", "a☺b", false, false),
        ("[a-ζ]*", "α", true, false),
        ("*[a-ζ]", "A", false, false),
        ("a?b", "a/b", false, false),
        ("a*b", "a/b", false, false),
        ("[\\]a]", "]", true, false),
        ("[\\-]", "-", true, false),
        ("[x\\-]", "x", true, false),
        ("[x\\-]", "-", true, false),
        ("[x\\-]", "z", false, false),
        ("[\\-x]", "x", true, false),
        ("[\\-x]", "-", true, false),
        ("[\\-x]", "a", false, false),
        ("[]a]", "]", false, true),
        ("[-]", "-", false, true),
        ("[x-]", "x", false, true),
        ("[x-]", "-", false, true),
        ("[x-]", "z", false, true),
        ("[-x]", "x", false, true),
        ("[-x]", "-", false, true),
        ("[-x]", "a", false, true),
        ("\\", "a", false, true),
        ("[a-b-c]", "a", false, true),
        ("[", "a", false, true),
        ("[^", "a", false, true),
        ("[^bc", "a", false, true),
        ("a[", "a", false, true),
        ("a[", "ab", false, true),
        ("a[", "x", false, true),
        ("a/b[", "x", false, true),
        ("*x", "xxx", true, false),
    ];

    #[test]
    fn go_match_table() {
        for &(pattern, name, want, bad) in GO_MATCH_TESTS {
            let got = matches(pattern, name);
            if bad {
                assert_eq!(
                    got,
                    Err(GlobError::BadPattern {
                        pattern: pattern.to_owned()
                    }),
                    "Match({pattern:?}, {name:?})"
                );
            } else {
                assert_eq!(got, Ok(want), "Match({pattern:?}, {name:?})");
            }
        }
    }

    #[test]
    fn bad_pattern_is_reported_after_a_mismatch() {
        // The name fails at the first byte; the class later on is still parsed.
        assert!(matches("x[", "abc").is_err());
        assert!(matches("x*[", "abc").is_err());
        assert!(matches("x*y*\\", "abc").is_err());
        assert!(matches("[z][", "a").is_err());
        // The same shapes with a well-formed tail just do not match.
        assert_eq!(matches("x[a]", "abc"), Ok(false));
        assert_eq!(matches("x*[a]", "abc"), Ok(false));
    }

    #[test]
    fn bad_pattern_is_reported_even_when_the_prefix_matches() {
        assert!(matches("abc[", "abc").is_err());
        assert!(matches("a*[", "abc").is_err());
        assert!(matches("*\\", "abc").is_err());
    }

    #[test]
    fn only_caret_negates_a_class() {
        assert_eq!(matches("[!a]", "!"), Ok(true));
        assert_eq!(matches("[!a]", "a"), Ok(true));
        assert_eq!(matches("[!a]", "b"), Ok(false));
        assert_eq!(matches("[^a]", "b"), Ok(true));
    }

    #[test]
    fn star_and_question_mark_never_cross_a_slash() {
        assert_eq!(matches("*", "a/b"), Ok(false));
        assert_eq!(matches("a?b", "a/b"), Ok(false));
        assert_eq!(matches("*/*", "a/b"), Ok(true));
        assert_eq!(matches("[^x]", "/"), Ok(true), "a class may match `/`");
    }

    #[test]
    fn escapes_and_literal_brackets() {
        assert_eq!(matches("[[]", "["), Ok(true));
        assert_eq!(matches("\\[", "["), Ok(true));
        assert_eq!(matches("\\?", "?"), Ok(true));
        assert_eq!(matches("\\?", "x"), Ok(false));
        assert_eq!(matches("]", "]"), Ok(true));
        assert_eq!(matches("a\\b", "ab"), Ok(true));
    }

    #[test]
    fn star_may_resume_inside_a_multibyte_character() {
        // Go retries a star's chunk at every byte offset; from the middle of
        // U+263A the two continuation bytes decode as two U+FFFD runes.
        assert_eq!(matches("*??", "☺"), Ok(true));
        assert_eq!(matches("??", "☺"), Ok(false));
        assert_eq!(matches("?", "☺"), Ok(true));
    }

    #[test]
    fn invalid_utf8_names_decode_bytewise() {
        assert_eq!(matches_bytes(b"?", b"\xff"), Ok(true));
        assert_eq!(matches_bytes(b"??", b"\xff\xfe"), Ok(true));
        assert_eq!(matches_bytes("[\u{fffd}]".as_bytes(), b"\xff"), Ok(true));
        assert_eq!(matches_bytes(b"a*", b"a\xff"), Ok(true));
    }

    #[test]
    fn empty_pattern_matches_only_the_empty_name() {
        assert_eq!(matches("", ""), Ok(true));
        assert_eq!(matches("", "a"), Ok(false));
        assert_eq!(matches("*", ""), Ok(true));
        assert_eq!(matches("**", ""), Ok(true));
    }

    #[test]
    fn has_meta_finds_the_four_magic_characters() {
        for s in ["*", "a?", "[x]", "a\\b"] {
            assert!(has_meta(s), "{s}");
        }
        for s in ["", "abc", "a/b.c", "]", "!x", "^"] {
            assert!(!has_meta(s), "{s}");
        }
    }

    #[test]
    fn decode_rune_follows_go() {
        assert_eq!(decode_rune(b""), (RUNE_ERROR, 0));
        assert_eq!(decode_rune(b"a"), (u32::from('a'), 1));
        assert_eq!(decode_rune("é".as_bytes()), (u32::from('é'), 2));
        assert_eq!(decode_rune(b"\xe2\x98"), (RUNE_ERROR, 1));
        assert_eq!(decode_rune(b"\xc0\x80"), (RUNE_ERROR, 1));
        assert_eq!(decode_rune(b"\xed\xa0\x80"), (RUNE_ERROR, 1));
        assert_eq!(decode_rune(b"\x98"), (RUNE_ERROR, 1));
    }

    proptest! {
        #[test]
        fn matches_never_panics(pattern in "\\PC{0,24}", name in "\\PC{0,24}") {
            let _ = matches(&pattern, &name);
        }

        #[test]
        fn matches_never_panics_on_glob_alphabet(
            pattern in "[a-c*?\\[\\]\\\\^!/-]{0,16}",
            name in "[a-c*?\\[\\]\\\\^!/-]{0,16}",
        ) {
            let _ = matches(&pattern, &name);
        }

        #[test]
        fn matches_bytes_never_panics(
            pattern in proptest::collection::vec(any::<u8>(), 0..24),
            name in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let _ = matches_bytes(&pattern, &name);
        }

        #[test]
        fn a_literal_pattern_matches_itself(name in "[a-z0-9._/-]{0,20}") {
            prop_assert_eq!(matches(&name, &name), Ok(true));
        }
    }
}
