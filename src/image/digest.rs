//! sha256 digests (what OCI speaks) and the readers/writers that compute and
//! verify them while bytes stream through.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use super::error::ImageError;

/// A sha256 digest. `Display` prints `sha256:<hex>`; `FromStr` parses it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix (what blob
    /// file names use).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits without prefix.
    pub fn from_hex(hex_digits: &str) -> Result<Self, ImageError> {
        let invalid = || ImageError::InvalidDigest {
            value: hex_digits.to_owned(),
        };
        if hex_digits.len() != 64 || hex_digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut out).map_err(|_| invalid())?;
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256Digest {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, ImageError> {
        match s.strip_prefix("sha256:") {
            Some(h) => Sha256Digest::from_hex(h).map_err(|_| ImageError::InvalidDigest {
                value: s.to_owned(),
            }),
            None => Err(ImageError::InvalidDigest {
                value: s.to_owned(),
            }),
        }
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, mutably (bytes written there directly are not hashed).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Sha256Digest, u64) {
        (
            self.inner,
            Sha256Digest(self.hasher.finalize().into()),
            self.len,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through it, and at end of
/// stream fails with `InvalidData` if the digest or size is not the
/// expected one; so a consumer that reads to the end has read verified bytes.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
    expected: Option<(Sha256Digest, Option<u64>)>,
    what: String,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, expecting `digest` and, when known, `size`.
    pub fn new(inner: R, digest: Sha256Digest, size: Option<u64>, what: impl Into<String>) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
            expected: Some((digest, size)),
            what: what.into(),
        }
    }

    /// Wraps `inner` only to hash it (no expectation).
    pub fn hashing(inner: R) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
            expected: None,
            what: String::new(),
        }
    }

    /// The digest and size of what was read so far.
    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.hasher.finalize().into()), self.len)
    }

    fn check(&self) -> io::Result<()> {
        let Some((digest, size)) = &self.expected else {
            return Ok(());
        };
        if let Some(size) = size
            && *size != self.len
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                ImageError::SizeMismatch {
                    what: self.what.clone(),
                    expected: *size,
                    found: self.len,
                },
            ));
        }
        let found = Sha256Digest(self.hasher.clone().finalize().into());
        if found != *digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                ImageError::DigestMismatch {
                    what: self.what.clone(),
                    expected: *digest,
                    found,
                },
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check()?;
        }
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        if let Some((_, Some(size))) = &self.expected
            && self.len > *size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                ImageError::SizeMismatch {
                    what: self.what.clone(),
                    expected: *size,
                    found: self.len,
                },
            ));
        }
        Ok(n)
    }
}

/// Turns an I/O error that carries an [`ImageError`] (as the verifying
/// reader produces) back into it; else wraps it with `op`.
pub(crate) fn unwrap_io(op: impl Into<String>, e: io::Error) -> ImageError {
    if e.get_ref().is_some_and(|inner| inner.is::<ImageError>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<ImageError>().expect("checked above");
    }
    ImageError::stream(op, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_text() {
        let d = Sha256Digest::of(b"");
        let text = d.to_string();
        assert_eq!(
            text,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(text.parse::<Sha256Digest>().unwrap(), d);
        assert!("sha256:E3B0".parse::<Sha256Digest>().is_err());
        assert!("md5:00".parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn verifying_reader_rejects_wrong_content() {
        let good = Sha256Digest::of(b"hello");
        let mut r = VerifyingReader::new(&b"hellO"[..], good, Some(5), "blob");
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert!(matches!(
            unwrap_io("read", err),
            ImageError::DigestMismatch { .. }
        ));
        let mut r = VerifyingReader::new(&b"hello"[..], good, Some(5), "blob");
        r.read_to_end(&mut out).unwrap();
    }
}
