//! Image references as docker writes them: `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`,
//! normalized the way docker and containers/image normalize them.
//!
//! The grammar is distribution's `reference` package: path components are
//! lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`; a tag is
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the first component names a registry
//! when it contains `.` or `:`, is `localhost`, or has an uppercase letter
//! (docker's `splitDockerDomain`); otherwise the registry is `docker.io` and
//! a one-component path gets docker's `library/` prefix.

use std::fmt;
use std::str::FromStr;

use super::RegistryError;
use crate::digest::Sha256Digest;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// `host[:port]` (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// The tag, if one was written.
    pub tag: Option<String>,
    /// The manifest digest, if one was written.
    pub digest: Option<Sha256Digest>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.into(),
    }
}

/// Whether `c` is one path component: `[a-z0-9]+` runs joined by `.`, `_`,
/// `__` or `-`+.
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !t.is_empty()
        && t.len() <= 128
        && word(t.as_bytes()[0])
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        // `[::1]:5000`
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => ("x", Some(p)),
            None if after.is_empty() => ("x", None),
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for Reference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, RegistryError> {
        if s.is_empty() {
            return Err(invalid(s, "it is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Sha256Digest>().map_err(|_| {
                    invalid(s, format!("`{d}` is not a `sha256:<64 hex digits>` digest"))
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(invalid(s, format!("`{t}` is not a valid tag")));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_host(first) {
                    return Err(invalid(
                        s,
                        format!("`{first}` is not a valid registry host"),
                    ));
                }
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
            let reason = if bad.bytes().any(|b| b.is_ascii_uppercase()) {
                format!("repository names must be lowercase (`{bad}`)")
            } else {
                format!("`{bad}` is not a valid repository path component")
            };
            return Err(invalid(s, reason));
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid(s, "the name is longer than 255 characters"));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl Reference {
    /// The tag, `latest` when neither tag nor digest was written (a
    /// reference with only a digest has no tag).
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// What the registry's manifest endpoint is asked for: the digest when
    /// one was written (it pins the content), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, self.tag_or_latest()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => unreachable!("a reference without digest has a tag"),
        }
    }

    /// The name in docker's short form: `busybox` for
    /// `docker.io/library/busybox`, `user/app` for `docker.io/user/app`,
    /// `host:5000/app` elsewhere. Local images are tagged with it.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The host the distribution API is served from (`registry-1.docker.io`
    /// for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The same repository with another tag or digest.
    pub fn with(&self, tag: Option<String>, digest: Option<Sha256Digest>) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag,
            digest,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        let r = parse("busybox");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag_or_latest(), Some("latest"));
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(parse("docker.io/library/busybox:1"), parse("busybox:1"));
        assert_eq!(
            parse("index.docker.io/user/app").familiar_name(),
            "user/app"
        );
    }

    #[test]
    fn registries_ports_tags_and_digests_are_split() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("127.0.0.1:5000/team/app:v1.2@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.digest.unwrap().to_string(), d);
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.familiar_name(), "127.0.0.1:5000/team/app");
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/team/app:v1.2@{d}"));
        let r = parse(&format!("localhost/app@{d}"));
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag_or_latest(), None);
        let r = parse("[::1]:5000/app");
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(parse("a.b/c/d-e__f.g:x").repository, "c/d-e__f.g");
    }

    #[test]
    fn bad_references_are_rejected_with_a_reason() {
        for (s, why) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("app:", "tag"),
            ("app@sha256:12", "digest"),
            ("host:99999/app", "registry host"),
            ("a//b", "component"),
            ("a/-b", "component"),
        ] {
            let e = s.parse::<Reference>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
