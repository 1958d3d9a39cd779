//! Derivations: the complete, canonical description of a build step's or a
//! stage's inputs, named by the blake3 hash of its encoding.
//!
//! The encoding is hand-written (tvix's ATerm writer is the model): a version
//! tag, then fields in a fixed order, every value length-prefixed, so that
//! two different derivations can never encode to the same bytes and nothing
//! (no map order, no serializer setting) can change them. It is readable
//! text, so `kiln show-derivation` prints it as it is:
//!
//! ```text
//! kiln-drv-v1
//! kind 4:step
//! parent 71:blake3:…
//! env [2]
//! - 4:HOME 5:/root
//! - 4:PATH 4:/bin
//! ```
//!
//! Changing the encoding changes every hash: bump [`VERSION`] and the
//! snapshots in the same commit. Pure: bytes in, bytes out.

pub mod decode;

use std::fmt;

use serde::Serialize;

use crate::digest::Blake3Digest;

/// The version tag every encoding starts with.
pub const VERSION: &str = "kiln-drv-v1";

/// What a derivation builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One filesystem-changing instruction: its output is a layer.
    Step,
    /// A whole stage: its output is a list of layers plus an image config.
    Stage,
}

impl Kind {
    /// The word used in the encoding and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Stage => "stage",
        }
    }
}

/// A derivation: its canonical bytes and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derivation {
    /// Step or stage.
    pub kind: Kind,
    /// A human name (`build: RUN go build …`); not part of the hash.
    pub name: String,
    /// The canonical encoding.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// The blake3 hash of `bytes`.
    pub hash: Blake3Digest,
}

impl Derivation {
    /// The encoding as text (it is always UTF-8).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).expect("the encoder writes only UTF-8")
    }
}

impl fmt::Display for Derivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hash)
    }
}

/// Writes a derivation's fields in the order the caller gives them; the
/// caller (the planner) fixes that order per kind.
#[derive(Debug)]
pub struct Encoder {
    kind: Kind,
    buf: Vec<u8>,
}

fn netstring(buf: &mut Vec<u8>, value: &str) {
    buf.extend_from_slice(value.len().to_string().as_bytes());
    buf.push(b':');
    buf.extend_from_slice(value.as_bytes());
}

fn check_name(name: &str) {
    debug_assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
        "field names are fixed lower-case words, not input"
    );
}

impl Encoder {
    /// Starts an encoding of `kind`.
    pub fn new(kind: Kind) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(VERSION.as_bytes());
        buf.extend_from_slice(b"\nkind ");
        netstring(&mut buf, kind.as_str());
        buf.push(b'\n');
        Encoder { kind, buf }
    }

    /// A single text field.
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        check_name(name);
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(b' ');
        netstring(&mut self.buf, value);
        self.buf.push(b'\n');
        self
    }

    /// An ordered list of texts.
    pub fn list<S: AsRef<str>>(&mut self, name: &str, items: &[S]) -> &mut Self {
        self.header(name, items.len());
        for item in items {
            self.buf.extend_from_slice(b"- ");
            netstring(&mut self.buf, item.as_ref());
            self.buf.push(b'\n');
        }
        self
    }

    /// An ordered list of pairs (environment, labels, files and hashes).
    pub fn pairs<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        name: &str,
        items: &[(K, V)],
    ) -> &mut Self {
        self.header(name, items.len());
        for (key, value) in items {
            self.buf.extend_from_slice(b"- ");
            netstring(&mut self.buf, key.as_ref());
            self.buf.push(b' ');
            netstring(&mut self.buf, value.as_ref());
            self.buf.push(b'\n');
        }
        self
    }

    /// An ordered list of records with the same fields each.
    pub fn records<R: AsRef<[S]>, S: AsRef<str>>(&mut self, name: &str, items: &[R]) -> &mut Self {
        self.header(name, items.len());
        for item in items {
            self.buf.push(b'-');
            for field in item.as_ref() {
                self.buf.push(b' ');
                netstring(&mut self.buf, field.as_ref());
            }
            self.buf.push(b'\n');
        }
        self
    }

    fn header(&mut self, name: &str, len: usize) {
        check_name(name);
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(format!(" [{len}]\n").as_bytes());
    }

    /// Seals the encoding and names it.
    pub fn finish(self, name: impl Into<String>) -> Derivation {
        let hash = Blake3Digest::of(&self.buf);
        Derivation {
            kind: self.kind,
            name: name.into(),
            bytes: self.buf,
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Derivation {
        let mut enc = Encoder::new(Kind::Step);
        enc.text("parent", "sha256:abc")
            .text("instruction", "{\"instruction\":\"RUN\"}")
            .pairs("env", &[("PATH", "/bin"), ("A", "x y")])
            .list("shell", &["/bin/sh", "-c"])
            .records("inputs", &[["file", "a.txt", "644"]]);
        enc.finish("sample")
    }

    #[test]
    fn encoding_is_pinned() {
        let drv = sample();
        insta::assert_snapshot!(drv.text(), @r#"
        kiln-drv-v1
        kind 4:step
        parent 10:sha256:abc
        instruction 21:{"instruction":"RUN"}
        env [2]
        - 4:PATH 4:/bin
        - 1:A 3:x y
        shell [2]
        - 7:/bin/sh
        - 2:-c
        inputs [1]
        - 4:file 5:a.txt 3:644
        "#);
        insta::assert_snapshot!(drv.hash.to_string(), @"blake3:430c40273f276cbbb586149d62438227b0c557478d35fc1baaf18ecc610ec6b3");
    }

    #[test]
    fn values_cannot_collide_through_separators() {
        let a = Encoder::new(Kind::Step)
            .pairs("env", &[("A", "1 2:B")])
            .clone_finish();
        let b = Encoder::new(Kind::Step)
            .pairs("env", &[("A 1", "2:B")])
            .clone_finish();
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn name_is_not_hashed() {
        let mut a = Encoder::new(Kind::Stage);
        a.text("base", "scratch");
        let mut b = Encoder::new(Kind::Stage);
        b.text("base", "scratch");
        assert_eq!(a.finish("one").hash, b.finish("two").hash);
    }

    trait CloneFinish {
        fn clone_finish(&mut self) -> Derivation;
    }

    impl CloneFinish for Encoder {
        fn clone_finish(&mut self) -> Derivation {
            Encoder {
                kind: self.kind,
                buf: self.buf.clone(),
            }
            .finish("t")
        }
    }
}
