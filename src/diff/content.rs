//! What two versions of one file's bytes have in common: the first
//! differing offset, whether they read as text, and a unified diff of text
//! files (capped). Pure: bytes in, values out.

use serde::Serialize;

/// Files larger than this get no text diff (only sizes, digests and the
/// first differing offset).
pub const TEXT_CAP: u64 = 256 * 1024;
/// A unified diff is cut after this many lines...
pub const DIFF_LINES: usize = 200;
/// ... or this many bytes.
pub const DIFF_BYTES: usize = 32 * 1024;

/// How two different contents of one path differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentDiff {
    /// sha256 of the content in A (hex).
    pub digest_a: String,
    /// sha256 of the content in B (hex).
    pub digest_b: String,
    /// The first byte offset where they differ (the shorter length when
    /// one is a prefix of the other); `None` when it was not found within
    /// the bytes that could be compared (see `compared`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<u64>,
    /// When the comparison covered only a prefix: its length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<u64>,
    /// Whether both sides read as text (UTF-8 without NUL bytes).
    pub text: bool,
    /// A unified diff, for text files up to [`TEXT_CAP`], cut at
    /// [`DIFF_LINES`] lines or [`DIFF_BYTES`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unified: Option<String>,
    /// Why something above is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Whether `bytes` read as text: valid UTF-8 (a cut multi-byte character
/// at the end is allowed) and no NUL byte.
pub fn is_text(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return false;
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4,
    }
}

/// The first offset where `a` and `b` differ within their common length,
/// if any.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len().min(b.len());
    // Compare in blocks first: memcmp is much faster than a byte loop.
    let mut start = 0;
    while start < n {
        let end = (start + 4096).min(n);
        if a[start..end] != b[start..end] {
            return a[start..end]
                .iter()
                .zip(&b[start..end])
                .position(|(x, y)| x != y)
                .map(|i| start + i);
        }
        start = end;
    }
    None
}

/// A unified diff of two texts (3 lines of context), headed
/// `--- a/PATH` and `+++ b/PATH`, cut at [`DIFF_LINES`] lines or
/// [`DIFF_BYTES`] bytes with a last line saying so.
pub fn unified(path: &str, a: &str, b: &str) -> String {
    let diff = similar::TextDiff::from_lines(a, b);
    let full = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    let mut out = String::new();
    for (i, line) in full.split_inclusive('\n').enumerate() {
        if i >= DIFF_LINES || out.len() + line.len() > DIFF_BYTES {
            let total = full.lines().count();
            out.push_str(&format!("... (diff cut: {total} lines in all)\n"));
            return out;
        }
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_detection_accepts_utf8_and_rejects_nul_and_binary() {
        assert!(is_text(b"hello\n"));
        assert!(is_text("héllo".as_bytes()));
        // A prefix cut inside a multi-byte character is still text.
        assert!(is_text(&"hé".as_bytes()[..2]));
        assert!(!is_text(b"a\0b"));
        assert!(!is_text(&[0xff, 0xfe, 0x41]));
    }

    #[test]
    fn first_difference_finds_the_exact_byte() {
        let a = vec![7u8; 10_000];
        let mut b = a.clone();
        b[8191] = 8;
        assert_eq!(first_difference(&a, &b), Some(8191));
        assert_eq!(first_difference(&a, &a[..5000]), None);
    }

    #[test]
    fn unified_diff_has_headers_and_hunks() {
        let d = unified("etc/motd", "one\ntwo\nthree\n", "one\n2\nthree\n");
        assert_eq!(
            d,
            "--- a/etc/motd\n+++ b/etc/motd\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
        );
    }

    #[test]
    fn long_diffs_are_cut() {
        let a: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let b: String = (0..1000).map(|i| format!("x{i}\n")).collect();
        let d = unified("f", &a, &b);
        assert!(d.lines().count() <= DIFF_LINES + 1);
        assert!(d.ends_with("lines in all)\n"), "{d}");
    }
}
