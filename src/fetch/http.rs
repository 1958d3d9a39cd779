//! Downloads for `ADD <url>`: one GET, the body streamed to a writer while
//! it is hashed. The only HTTP client in kiln besides `image::registry`.
//!
//! TLS trusts the host's CA bundle ([`crate::sandbox::HOST_CA_BUNDLE`], or
//! `SSL_CERT_FILE` when the caller passes it), so networks that intercept
//! TLS with their own CA work as they do for curl; without a bundle, the
//! Mozilla roots. Proxies come from the variables the caller passes
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case);
//! there are no other settings, and no response header (not
//! `Last-Modified`, not `Content-Disposition`) changes what is written.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

use super::FetchError;
use crate::digest::Sha256Digest;

/// How downloads are made.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// Proxy variables, `(name, value)` (names as in the environment).
    pub proxy_env: Vec<(String, String)>,
    /// The CA bundle to trust (PEM), if not the host's.
    pub ca_file: Option<std::path::PathBuf>,
}

fn var<'a>(env: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| {
        env.iter()
            .find(|(k, v)| k == n && !v.is_empty())
            .map(|(_, v)| v.as_str())
    })
}

impl Client {
    fn agent(&self, url: &str) -> Result<ureq::Agent, FetchError> {
        let https = url.starts_with("https://");
        let proxy_url = if https {
            var(&self.proxy_env, &["https_proxy", "HTTPS_PROXY"])
        } else {
            var(&self.proxy_env, &["http_proxy", "HTTP_PROXY"])
        }
        .or_else(|| var(&self.proxy_env, &["all_proxy", "ALL_PROXY"]));
        let host = url
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .rsplit('@')
            .next()
            .unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let bypass = var(&self.proxy_env, &["no_proxy", "NO_PROXY"]).is_some_and(|list| {
            list.split(',').map(str::trim).any(|entry| {
                let entry = entry.trim_start_matches('*').trim_start_matches('.');
                entry == "*"
                    || (!entry.is_empty()
                        && (host == entry || host.ends_with(&format!(".{entry}"))))
            })
        });
        let proxy = match proxy_url {
            Some(p) if !bypass => {
                let p = if p.contains("://") {
                    p.to_owned()
                } else {
                    format!("http://{p}")
                };
                Some(ureq::Proxy::new(&p).map_err(|e| FetchError::Download {
                    url: url.to_owned(),
                    message: format!("bad proxy `{p}`: {e}"),
                })?)
            }
            _ => None,
        };
        let ca = self
            .ca_file
            .clone()
            .unwrap_or_else(|| crate::sandbox::HOST_CA_BUNDLE.into());
        let roots = match std::fs::read(&ca) {
            Ok(pem) => {
                let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    ureq::tls::RootCerts::WebPki
                } else {
                    ureq::tls::RootCerts::Specific(Arc::new(certs))
                }
            }
            Err(_) => ureq::tls::RootCerts::WebPki,
        };
        let config = ureq::Agent::config_builder()
            .proxy(proxy)
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .user_agent("kiln")
            .build();
        Ok(config.into())
    }

    /// GETs `url` into `out`; returns the body's sha256 and size.
    pub fn download(
        &self,
        url: &str,
        out: &mut dyn Write,
    ) -> Result<(Sha256Digest, u64), FetchError> {
        let fail = |message: String| FetchError::Download {
            url: url.to_owned(),
            message,
        };
        let agent = self.agent(url)?;
        let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("the server answered HTTP {status}")));
        }
        let mut body = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(format!("reading the body failed: {e}"))),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| fail(format!("writing the body failed: {e}")))?;
            size += n as u64;
        }
        Ok((Sha256Digest::from_bytes(hasher.finalize().into()), size))
    }

    /// GETs `url` into a new file at `path`.
    pub fn download_to(&self, url: &str, path: &Path) -> Result<(Sha256Digest, u64), FetchError> {
        let mut file = std::fs::File::create(path).map_err(|source| FetchError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        let result = self.download(url, &mut file)?;
        file.sync_all().map_err(|source| FetchError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(result)
    }
}

/// The file name `ADD <url> <dir>/` writes: the last segment of the URL's
/// path, percent-decoded (BuildKit takes `path.Base` of the URL path).
pub fn file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let path = path.split_once('/').map(|(_, p)| p)?;
    let last = path.rsplit('/').find(|s| !s.is_empty())?;
    let bytes = last.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    let name = String::from_utf8(out).ok()?;
    (!name.is_empty() && name != "." && name != ".." && !name.contains('/')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(
            file_name("https://example.com/a/b/app-1.0.tgz?x=1#f").as_deref(),
            Some("app-1.0.tgz")
        );
        assert_eq!(file_name("http://127.0.0.1:8/dir/").as_deref(), Some("dir"));
        assert_eq!(file_name("http://h/a%20b").as_deref(), Some("a b"));
        assert_eq!(file_name("http://example.com"), None);
        assert_eq!(file_name("http://example.com/"), None);
    }
}
