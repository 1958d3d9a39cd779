//! Registry credentials and authentication challenges.
//!
//! Credentials come from the files skopeo and podman read, in their order
//! (containers-auth.json(5)): `$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`; then
//! `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/...`); then docker's
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. The first
//! file with an entry for the registry wins; within a file the most specific
//! key wins (`host/namespace/repo` before `host`), as containers/image does.
//! Credential helpers (`credHelpers`, `credsStore`) are programs, and the
//! image module never runs code: entries kept only by a helper are not
//! found, and the error says so.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::RegistryError;

/// A user name and password for one registry, and the file they came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub username: String,
    /// The password (or token).
    pub password: String,
    /// The auth file that held them.
    pub file: PathBuf,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("file", &self.file)
            .finish()
    }
}

impl Credential {
    /// The `Authorization` header value for HTTP Basic.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The auth files to search, most important first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFiles {
    /// The files, in precedence order; missing ones are skipped.
    pub paths: Vec<PathBuf>,
}

impl AuthFiles {
    /// The files skopeo and podman (then docker) read, from the environment
    /// `var` gives (pass `std::env::var_os`).
    pub fn from_env(var: impl Fn(&str) -> Option<OsString>) -> AuthFiles {
        let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = set("HOME");
        let mut paths = Vec::new();
        if let Some(file) = set("REGISTRY_AUTH_FILE") {
            paths.push(file);
        } else if let Some(run) = set("XDG_RUNTIME_DIR") {
            paths.push(run.join("containers/auth.json"));
        }
        if let Some(config) =
            set("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
        {
            paths.push(config.join("containers/auth.json"));
        }
        if let Some(docker) =
            set("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker")))
        {
            paths.push(docker.join("config.json"));
        }
        AuthFiles { paths }
    }

    /// The credential for `repository` on `registry`, if a file has one.
    pub fn find(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        for path in &self.paths {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(RegistryError::AuthFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                }
            };
            if let Some(c) = lookup(path, &bytes, registry, repository)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// Turns an `auths` key into `host[/path]`: no scheme, no trailing slash,
/// Docker Hub's historic names as `docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    // docker writes `https://index.docker.io/v1/` for Docker Hub; a URL
    // key's path beyond the host is an API version, not a namespace.
    let k = if key.contains("://") {
        k.split('/').next().unwrap_or(k)
    } else {
        k
    };
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

fn lookup(
    path: &Path,
    bytes: &[u8],
    registry: &str,
    repository: &str,
) -> Result<Option<Credential>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: std::collections::BTreeMap<String, Entry>,
    }
    let bad = |reason: String| RegistryError::AuthFile {
        path: path.to_path_buf(),
        reason,
    };
    let file: File = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let full = format!("{registry}/{repository}");
    let mut best: Option<(usize, &String, &Entry)> = None;
    for (key, entry) in &file.auths {
        let k = normalize_key(key);
        let matches = k == registry || full == k || full.starts_with(&format!("{k}/"));
        if matches && best.is_none_or(|(len, _, _)| k.len() > len) {
            best = Some((k.len(), key, entry));
        }
    }
    let Some((_, key, entry)) = best else {
        return Ok(None);
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| bad(format!("the `auth` of `{key}` is not base64: {e}")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("the `auth` of `{key}` is not UTF-8")))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("the `auth` of `{key}` is not `user:password`")))?;
            (u.to_owned(), p.to_owned())
        }
        (_, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => return Ok(None),
    };
    Ok(Some(Credential {
        username,
        password,
        file: path.to_path_buf(),
    }))
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic.
    Basic,
    /// A token from `realm` (the registry token protocol).
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass back.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (RFC 7235: a scheme, then
/// `key=value` or `key="quoted"` parameters separated by commas).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        match key.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer service=reg, realm="http://a/\"t\"""#),
            Some(Challenge::Bearer {
                realm: "http://a/\"t\"".into(),
                service: Some("reg".into()),
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn auth_files_follow_containers_precedence_and_specific_keys() {
        let dir = tempfile::tempdir().unwrap();
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &podman,
            format!(
                r#"{{"auths":{{"reg:5000":{{"auth":"{}"}},"reg:5000/team":{{"auth":"{}"}}}}}}"#,
                enc("all:pw1"),
                enc("team:pw2")
            ),
        )
        .unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"reg:5000":{{"auth":"{}"}}}},"credsStore":"desktop"}}"#,
                enc("hub:pw3"),
                enc("docker:pw4")
            ),
        )
        .unwrap();
        let files = AuthFiles {
            paths: vec![
                dir.path().join("missing.json"),
                podman.clone(),
                docker.clone(),
            ],
        };
        let user = |reg: &str, repo: &str| {
            files
                .find(reg, repo)
                .unwrap()
                .map(|c| (c.username, c.password, c.file))
        };
        assert_eq!(
            user("reg:5000", "app"),
            Some(("all".into(), "pw1".into(), podman.clone()))
        );
        assert_eq!(
            user("reg:5000", "team/app"),
            Some(("team".into(), "pw2".into(), podman))
        );
        assert_eq!(
            user("docker.io", "library/busybox"),
            Some(("hub".into(), "pw3".into(), docker))
        );
        assert_eq!(user("other:1", "app"), None);
        std::fs::write(
            dir.path().join("auth.json"),
            r#"{"auths":{"reg:5000":{"auth":"bm9jb2xvbg=="}}}"#,
        )
        .unwrap();
        let e = files.find("reg:5000", "app").unwrap_err().to_string();
        assert!(e.contains("user:password"), "{e}");
    }

    #[test]
    fn auth_file_paths_come_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let files = AuthFiles::from_env(env(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/u")]));
        assert_eq!(
            files.paths,
            [
                PathBuf::from("/run/u/containers/auth.json"),
                PathBuf::from("/h/.config/containers/auth.json"),
                PathBuf::from("/h/.docker/config.json"),
            ]
        );
        let files = AuthFiles::from_env(env(&[
            ("HOME", "/h"),
            ("REGISTRY_AUTH_FILE", "/a.json"),
            ("XDG_RUNTIME_DIR", "/run/u"),
            ("DOCKER_CONFIG", "/d"),
        ]));
        assert_eq!(files.paths[0], PathBuf::from("/a.json"));
        assert_eq!(files.paths[2], PathBuf::from("/d/config.json"));
    }
}
