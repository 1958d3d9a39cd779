//! Content digests: [`Blake3Digest`] names store objects and derivations,
//! [`Sha256Digest`] names OCI blobs (what registries and runtimes speak).
//!
//! Both are validated newtypes over 32 bytes. `Display` prints the algorithm
//! prefix and lowercase hex (`blake3:<hex>`, `sha256:<hex>`), `FromStr`
//! parses exactly that form, and serde uses the same string, so a digest
//! reads the same in JSON, in SQLite and on the terminal.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The algorithm prefix is missing or names another algorithm.
    #[error("digest `{input}` does not start with `{algorithm}:`")]
    Prefix {
        /// The text that was parsed.
        input: String,
        /// The algorithm that was expected.
        algorithm: &'static str,
    },
    /// The part after the prefix is not 64 lowercase hex digits.
    #[error("digest `{input}` is not `{algorithm}:` followed by 64 lowercase hex digits")]
    Hex {
        /// The text that was parsed.
        input: String,
        /// The algorithm that was expected.
        algorithm: &'static str,
    },
}

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident, $algorithm:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The algorithm prefix, without the colon.
            pub const ALGORITHM: &'static str = $algorithm;

            /// Wraps 32 raw digest bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(bytes)
            }

            /// The raw digest bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The digest as 64 lowercase hex digits, without the prefix
            /// (the file name in the store).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 64 lowercase hex digits without the prefix.
            pub fn from_hex(hex_digits: &str) -> Result<Self, DigestError> {
                let lower = hex_digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                let mut bytes = [0u8; 32];
                if !lower || hex::decode_to_slice(hex_digits, &mut bytes).is_err() {
                    return Err(DigestError::Hex {
                        input: hex_digits.to_string(),
                        algorithm: $algorithm,
                    });
                }
                Ok($name(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}:{}", $algorithm, self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = DigestError;

            fn from_str(s: &str) -> Result<Self, DigestError> {
                let hex_digits = s
                    .strip_prefix($algorithm)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .ok_or_else(|| DigestError::Prefix {
                        input: s.to_string(),
                        algorithm: $algorithm,
                    })?;
                $name::from_hex(hex_digits).map_err(|_| DigestError::Hex {
                    input: s.to_string(),
                    algorithm: $algorithm,
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_type!(
    /// A blake3 digest: the name of a store object or a derivation
    /// (`blake3:<64 hex digits>`).
    ///
    /// ```
    /// use kiln::digest::Blake3Digest;
    /// let digest = Blake3Digest::of(b"hello");
    /// let text = digest.to_string();
    /// assert!(text.starts_with("blake3:"));
    /// assert_eq!(text.parse::<Blake3Digest>().unwrap(), digest);
    /// ```
    Blake3Digest,
    "blake3"
);

digest_type!(
    /// A sha256 digest: the name of an OCI blob (`sha256:<64 hex digits>`).
    ///
    /// ```
    /// use kiln::digest::Sha256Digest;
    /// let empty = Sha256Digest::of(b"");
    /// assert_eq!(
    ///     empty.to_string(),
    ///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// );
    /// ```
    Sha256Digest,
    "sha256"
);

impl Blake3Digest {
    /// The blake3 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Blake3Digest(*blake3::hash(bytes).as_bytes())
    }
}

impl From<blake3::Hash> for Blake3Digest {
    fn from(hash: blake3::Hash) -> Self {
        Blake3Digest(*hash.as_bytes())
    }
}

impl Sha256Digest {
    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Sha256Digest(sha2::Sha256::digest(bytes).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let b = Blake3Digest::of(b"x");
        assert_eq!(b.to_string().parse::<Blake3Digest>(), Ok(b));
        let s = Sha256Digest::of(b"x");
        assert_eq!(s.to_string().parse::<Sha256Digest>(), Ok(s));
        assert_eq!(
            Blake3Digest::of(b"").to_string(),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn parse_rejects_wrong_prefix_case_and_length() {
        let hex = "a".repeat(64);
        assert!(matches!(
            format!("sha256:{hex}").parse::<Blake3Digest>(),
            Err(DigestError::Prefix { .. })
        ));
        assert!(matches!(
            hex.parse::<Sha256Digest>(),
            Err(DigestError::Prefix { .. })
        ));
        assert!(matches!(
            format!("sha256:{}", "A".repeat(64)).parse::<Sha256Digest>(),
            Err(DigestError::Hex { .. })
        ));
        assert!(matches!(
            format!("sha256:{}", "a".repeat(63)).parse::<Sha256Digest>(),
            Err(DigestError::Hex { .. })
        ));
    }

    #[test]
    fn serde_uses_the_prefixed_string() {
        let s = Sha256Digest::of(b"");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Sha256Digest>("\"sha256:zz\"").is_err());
    }
}
