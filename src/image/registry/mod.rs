//! An OCI distribution client: pull images into a [`BlobSink`] and push
//! them from a [`BlobSource`]. With `fetch`, the only code in kiln that
//! touches the network.
//!
//! What it does, as docker, skopeo and podman do:
//! - references are normalized like docker's ([`reference`](mod@reference)); Docker Hub's
//!   API lives at `registry-1.docker.io`;
//! - authentication answers `WWW-Authenticate` challenges: HTTP Basic, or a
//!   bearer token fetched from the challenge's realm for the scope
//!   `repository:NAME:pull` (`pull,push` to push), with the credentials of
//!   the auth files skopeo, podman and docker read ([`auth`]);
//! - image indexes and Docker manifest lists are followed to the manifest
//!   for the requested platform (linux/amd64 unless told otherwise); OCI
//!   and Docker schema 2 manifests are read, schema 1 is refused;
//! - every manifest is checked against the digest that named it, and every
//!   blob is hashed and counted as it streams into the sink: the sink's
//!   writer is committed only after the last byte matched the descriptor's
//!   digest and size, so nothing corrupt is ever recorded (for the store, a
//!   failed blob is a deleted temp file). Blobs stream through a fixed
//!   buffer in both directions: memory does not grow with layer size;
//! - connection errors, 5xx and 429 (honouring `Retry-After`) are retried
//!   with exponential back-off; other 4xx are not;
//! - plain HTTP for `localhost`, 127.0.0.0/8 and `::1` (as docker does) and
//!   for the hosts named insecure ([`ClientOptions::insecure`]); HTTPS
//!   elsewhere, trusting the CA bundle [`ClientOptions::ca_file`] (the
//!   host's, so TLS-intercepting proxies with a local CA work).
//!
//! Why not the `oci-client` crate (measured 2026-12-04 on this project's
//! 2-core machine, in scratch crates with the same toolchain): oci-client
//! 0.18 brings 134 crates (reqwest, hyper, tokio, aws-lc) against 30 for
//! `ureq` 3 with rustls, and a clean debug build of its tree takes 68 s
//! wall / 113 s CPU against 14 s / 20 s. It is async, while kiln is
//! synchronous (rayon), so every call would cross a tokio runtime, and
//! blobs would cross a `Stream` to reach the store's synchronous writer.
//! It has no retries, and its errors do not keep the HTTP status in a form
//! a retry policy can read, so every call would need wrapping anyway; what
//! it would save (the challenge flow and the upload session) is about 200
//! of the lines below. The protocol kiln needs is small (the six
//! endpoints of the distribution spec used here) and this file is tested
//! against Debian's real `docker-registry`, with Basic and token auth, and
//! against skopeo in both directions (`tests/registry.rs`).

pub mod auth;
pub mod reference;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ureq::http::Response;

pub use auth::{AuthFiles, Challenge, Credential};
pub use reference::Reference;

use super::blob::{BlobSink, BlobSource, Image, MAX_JSON, open_verified, put_bytes};
use super::digest::{VerifyingReader, unwrap_io};
use super::error::ImageError;
use super::layout::select_platform;
use super::oci::{Descriptor, ImageConfig, Index, Manifest, Platform, media_type};
use crate::digest::Sha256Digest;

/// The manifest media types kiln asks for, most preferred first.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Copy buffer for blob bodies.
const BUFFER: usize = 256 * 1024;

/// How the client connects and authenticates.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`HOST` or `HOST:PORT`) spoken to over plain HTTP, like
    /// docker's `insecure-registries`; a bare `HOST` covers every port.
    pub insecure: Vec<String>,
    /// The platform to pick from image indexes.
    pub platform: Platform,
    /// Where credentials are looked up.
    pub auth: AuthFiles,
    /// The PEM bundle of CAs trusted for HTTPS.
    pub ca_file: PathBuf,
    /// Retries after the first attempt, for transient failures.
    pub retries: u32,
    /// The first back-off; each retry doubles it.
    pub backoff: Duration,
}

impl ClientOptions {
    /// linux/amd64, the host's CA bundle (`$SSL_CERT_FILE`, else Debian's
    /// `/etc/ssl/certs/ca-certificates.crt`), the usual auth files, four
    /// retries from half a second; `var` reads the environment.
    pub fn from_env(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> ClientOptions {
        let ca_file = var("SSL_CERT_FILE").filter(|v| !v.is_empty()).map_or_else(
            || PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            PathBuf::from,
        );
        ClientOptions {
            insecure: Vec::new(),
            platform: Platform::linux_amd64(),
            auth: AuthFiles::from_env(&var),
            ca_file,
            retries: 4,
            backoff: Duration::from_millis(500),
        }
    }
}

/// What a registry operation was doing, for errors and token scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Reading.
    Pull,
    /// Writing (and reading).
    Push,
}

impl Operation {
    fn actions(self) -> &'static str {
        match self {
            Operation::Pull => "pull",
            Operation::Push => "pull,push",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Pull => "pull",
            Operation::Push => "push",
        })
    }
}

/// Everything that can go wrong talking to a registry. Each names the
/// registry and repository, and the manifest or blob when there is one.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference does not follow docker's grammar.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An auth file could not be read or parsed.
    #[error("failed to read the registry auth file {}: {reason}", path.display())]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA bundle for HTTPS could not be loaded.
    #[error("failed to load the CA bundle {} for HTTPS to {registry}: {reason}", path.display())]
    CaBundle {
        /// The registry that needed it.
        registry: String,
        /// The bundle.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The registry could not be reached (after retries, if transient).
    #[error(
        "failed to reach registry {registry} for {what} of {repository} ({url}), {attempts} attempt(s)"
    )]
    Connect {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// The manifest or blob.
        what: String,
        /// The URL.
        url: String,
        /// How many requests were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry wants credentials and none were found.
    #[error(
        "registry {registry} requires authentication to {operation} {repository}, and no credentials for it were found"
    )]
    NoCredentials {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// Pull or push.
        operation: Operation,
        /// The auth files searched.
        searched: Vec<PathBuf>,
    },
    /// The registry (or its token server) rejected the credentials.
    #[error("registry {registry} rejected the credentials of user `{username}` (from {}) to {operation} {repository}", file.display())]
    BadCredentials {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// Pull or push.
        operation: Operation,
        /// The user name sent.
        username: String,
        /// The auth file it came from.
        file: PathBuf,
    },
    /// Authenticated, but not allowed.
    #[error("registry {registry} denied {operation} of {repository}: {message}")]
    Denied {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// Pull or push.
        operation: Operation,
        /// The registry's own words.
        message: String,
    },
    /// A manifest or blob does not exist.
    #[error("{what} not found in {registry}/{repository}")]
    NotFound {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// `manifest `TAG``, `blob sha256:...`.
        what: String,
    },
    /// Any other unexpected answer.
    #[error(
        "registry {registry} answered HTTP {status} to {method} of {what} in {repository}: {message}"
    )]
    Status {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// The manifest or blob.
        what: String,
        /// `GET`, `PUT`, ...
        method: &'static str,
        /// The HTTP status.
        status: u16,
        /// The registry's own words.
        message: String,
    },
    /// Content did not match its digest or size.
    #[error("{what} from {registry}/{repository} failed verification")]
    Verify {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// The manifest or blob.
        what: String,
        /// The mismatch.
        #[source]
        source: Box<ImageError>,
    },
    /// A manifest or index is not one kiln can use.
    #[error("unusable {what} from {registry}/{repository}: {reason}")]
    Manifest {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// The manifest.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob's bytes stopped arriving (after retries).
    #[error(
        "failed to {operation} blob {digest} of {registry}/{repository}, {attempts} attempt(s)"
    )]
    Transfer {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// Pull or push.
        operation: Operation,
        /// The blob.
        digest: Sha256Digest,
        /// How many transfers were tried.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<ImageError>,
    },
    /// The local side (store, layout) failed to give or take a blob.
    #[error("failed to {op} blob {digest} for {registry}/{repository}")]
    Local {
        /// `store` or `read`.
        op: &'static str,
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: Sha256Digest,
        /// Why.
        #[source]
        source: Box<ImageError>,
    },
    /// `REF@sha256:...` names another image than the one pushed.
    #[error("{reference} names manifest {expected}, but the image being pushed is {found}")]
    PushDigest {
        /// The target reference.
        reference: String,
        /// The digest it names.
        expected: Sha256Digest,
        /// The image's digest.
        found: Sha256Digest,
    },
}

impl RegistryError {
    /// A `hint:` line for the user, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::NoCredentials {
                registry, searched, ..
            } => {
                let files: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                Some(format!(
                    "log in with `podman login {registry}` or `skopeo login {registry}`, or add an `auths` entry for `{registry}` to one of: {} (credential helpers are not run)",
                    files.join(", ")
                ))
            }
            RegistryError::BadCredentials { registry, file, .. } => Some(format!(
                "check the `auths` entry for `{registry}` in {}",
                file.display()
            )),
            RegistryError::Connect {
                url,
                registry,
                source,
                ..
            } if url.starts_with("https://") && looks_like_tls(source) => Some(format!(
                "if {registry} serves plain HTTP, name it with `--insecure-registry {registry}` (or `KILN_INSECURE_REGISTRIES`); if its certificate is from a private CA, point `SSL_CERT_FILE` at a bundle that holds it"
            )),
            _ => None,
        }
    }
}

/// One event of a pull or push, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A manifest was read (`index` for an image index).
    Manifest {
        /// Its descriptor.
        descriptor: Descriptor,
    },
    /// A blob was dealt with.
    Blob {
        /// Its digest.
        digest: Sha256Digest,
        /// Its size.
        size: u64,
        /// Whether it was transferred or already there.
        transferred: bool,
    },
}

/// An image pulled into a sink.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image for the platform (its descriptor's digest is the manifest
    /// digest, the local image's identity).
    pub image: Image,
    /// The index the reference named, when it named one.
    pub index: Option<Descriptor>,
}

#[derive(Default)]
struct State {
    challenges: std::collections::BTreeMap<String, Challenge>,
    tokens: std::collections::BTreeMap<(String, String), String>,
    credentials: std::collections::BTreeMap<(String, String), Option<Credential>>,
}

/// A registry client: connections, tokens and credentials, shared by
/// every pull and push made with it.
pub struct Client {
    options: ClientOptions,
    plain: ureq::Agent,
    tls: OnceLock<Result<ureq::Agent, String>>,
    state: Mutex<State>,
}

fn agent_config() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_per_write(Some(Duration::from_secs(120)))
        .max_redirects(10)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
}

/// Whether `registry` (`host[:port]`) is on this machine's loopback.
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a transport failure may go away by itself: connection errors
/// and timeouts, not an unknown host (a name lookup that failed for good
/// is a typo, not an outage; `EAI_AGAIN` is an outage).
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => {
            let text = io.to_string();
            !text.contains("failed to lookup address") || text.contains("Temporary failure")
        }
        ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) | ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

/// Whether a transport failure looks like TLS meeting plain HTTP or an
/// unknown CA.
fn looks_like_tls(e: &ureq::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    matches!(e, ureq::Error::Tls(_))
        || [
            "tls",
            "certificate",
            "corrupt message",
            "invalidcontenttype",
        ]
        .iter()
        .any(|w| text.contains(w))
}

/// The registry's error message from a response body: the `errors` array
/// of the distribution spec, else the text.
fn message(resp: Response<ureq::Body>) -> String {
    let mut bytes = Vec::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(64 * 1024)
        .read_to_end(&mut bytes);
    #[derive(serde::Deserialize)]
    struct One {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<One>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&bytes)
        && !e.errors.is_empty()
    {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|o| format!("{}: {}", o.code, o.message))
            .collect();
        return parts.join("; ");
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".to_owned()
    } else {
        text.chars().take(300).collect()
    }
}

fn header<'a>(resp: &'a Response<ureq::Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A response body of JSON (a token, a manifest), at most [`MAX_JSON`]
/// bytes; a failure to read it names `what` and the `url`.
fn read_json_body(
    resp: Response<ureq::Body>,
    r: &Reference,
    what: &str,
    url: &str,
    attempts: u32,
) -> Result<Vec<u8>, RegistryError> {
    resp.into_body()
        .with_config()
        .limit(MAX_JSON)
        .read_to_vec()
        .map_err(|source| RegistryError::Connect {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            what: what.to_owned(),
            url: url.to_owned(),
            attempts,
            source: Box::new(source),
        })
}

/// A reader that keeps the error of the blob source it wraps, so an upload
/// that failed because the local blob is bad (or unreadable) is told from a
/// network failure.
struct Watched<R> {
    inner: R,
    failure: Arc<Mutex<Option<ImageError>>>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let summary = e.to_string();
            if let Ok(mut slot) = self.failure.lock() {
                *slot = Some(unwrap_io("read the blob to upload", e));
            }
            std::io::Error::other(summary)
        })
    }
}

/// Makes one request, given the agent and the `Authorization` value.
type MakeRequest<'a> =
    dyn FnMut(&ureq::Agent, Option<&str>) -> Result<Response<ureq::Body>, ureq::Error> + 'a;

/// `req` with the `Authorization` header, when there is one.
fn authorized<B>(req: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    }
}

/// One request's identity, for auth and errors.
struct Call<'a> {
    reference: &'a Reference,
    operation: Operation,
    what: String,
    method: &'static str,
    url: String,
}

impl Client {
    /// A client with `options`.
    pub fn new(options: ClientOptions) -> Client {
        Client {
            options,
            plain: agent_config().build().into(),
            tls: OnceLock::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Whether `registry` is spoken to over plain HTTP.
    pub fn is_plain_http(&self, registry: &str) -> bool {
        let host = match registry.rsplit_once(':') {
            Some((h, port)) if !port.contains(']') => h,
            _ => registry,
        };
        is_loopback(registry)
            || self
                .options
                .insecure
                .iter()
                .any(|i| i == registry || (!i.contains(':') && i == host))
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.is_plain_http(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// `scheme://host/v2/repository`.
    fn base(&self, r: &Reference) -> String {
        format!(
            "{}://{}/v2/{}",
            self.scheme(&r.registry),
            r.api_host(),
            r.repository
        )
    }

    fn agent(&self, url: &str, registry: &str) -> Result<&ureq::Agent, RegistryError> {
        if !url.starts_with("https://") {
            return Ok(&self.plain);
        }
        let tls = self.tls.get_or_init(|| {
            let bytes = std::fs::read(&self.options.ca_file).map_err(|e| e.to_string())?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&bytes) {
                if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| e.to_string())? {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                return Err("it holds no certificate".to_owned());
            }
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                .build();
            Ok(agent_config().tls_config(tls).build().into())
        });
        tls.as_ref().map_err(|reason| RegistryError::CaBundle {
            registry: registry.to_owned(),
            path: self.options.ca_file.clone(),
            reason: reason.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn credential(&self, r: &Reference) -> Result<Option<Credential>, RegistryError> {
        let key = (r.registry.clone(), r.repository.clone());
        if let Some(c) = self.lock().credentials.get(&key) {
            return Ok(c.clone());
        }
        let found = self.options.auth.find(&r.registry, &r.repository)?;
        self.lock().credentials.insert(key, found.clone());
        Ok(found)
    }

    fn scope(r: &Reference, op: Operation) -> String {
        format!("repository:{}:{}", r.repository, op.actions())
    }

    /// The `Authorization` header for a request, from what earlier
    /// challenges taught.
    fn authorization(&self, r: &Reference, op: Operation) -> Result<Option<String>, RegistryError> {
        let challenge = self.lock().challenges.get(&r.registry).cloned();
        Ok(match challenge {
            Some(Challenge::Basic) => self.credential(r)?.map(|c| c.basic_header()),
            Some(Challenge::Bearer { .. }) => self
                .lock()
                .tokens
                .get(&(r.registry.clone(), Self::scope(r, op)))
                .map(|t| format!("Bearer {t}")),
            None => None,
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.options
            .backoff
            .saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(30))
    }

    /// Sends a request made by `make` (given the agent and the
    /// `Authorization` value), answering auth challenges and, when `retry`,
    /// retrying transient failures. Returns the final response, whatever
    /// its status (except 401).
    fn send(
        &self,
        call: &Call<'_>,
        retry: bool,
        make: &mut MakeRequest<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let r = call.reference;
        let agent = self.agent(&call.url, &r.registry)?;
        let retries = if retry { self.options.retries } else { 0 };
        let mut attempt = 0;
        let mut challenges = 0;
        loop {
            let authorization = self.authorization(r, call.operation)?;
            match make(agent, authorization.as_deref()) {
                Err(e) if transient(&e) && attempt < retries => {
                    std::thread::sleep(self.backoff(attempt));
                    attempt += 1;
                }
                Err(source) => {
                    return Err(RegistryError::Connect {
                        registry: r.registry.clone(),
                        repository: r.repository.clone(),
                        what: call.what.clone(),
                        url: call.url.clone(),
                        attempts: attempt + 1,
                        source: Box::new(source),
                    });
                }
                Ok(resp) if resp.status().as_u16() == 401 && challenges < 2 => {
                    // The first 401 of a request may only mean a cached token
                    // expired: answer it afresh. A second one is a refusal.
                    let sent = authorization.is_some() && challenges > 0;
                    challenges += 1;
                    self.answer(call, resp, sent)?;
                }
                Ok(resp) if resp.status().as_u16() == 401 => {
                    return Err(self.denied(call, message(resp)));
                }
                Ok(resp) if resp.status().as_u16() == 403 => {
                    return Err(self.denied(call, message(resp)));
                }
                Ok(resp)
                    if (resp.status().as_u16() == 429 || resp.status().is_server_error())
                        && attempt < retries =>
                {
                    let wait = header(&resp, "retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or_else(|| self.backoff(attempt), |s| Duration::from_secs(s.min(30)));
                    drop(resp);
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    fn denied(&self, call: &Call<'_>, message: String) -> RegistryError {
        RegistryError::Denied {
            registry: call.reference.registry.clone(),
            repository: call.reference.repository.clone(),
            operation: call.operation,
            message,
        }
    }

    fn no_credentials(&self, call: &Call<'_>) -> RegistryError {
        RegistryError::NoCredentials {
            registry: call.reference.registry.clone(),
            repository: call.reference.repository.clone(),
            operation: call.operation,
            searched: self.options.auth.paths.clone(),
        }
    }

    fn bad_credentials(&self, call: &Call<'_>, c: &Credential) -> RegistryError {
        RegistryError::BadCredentials {
            registry: call.reference.registry.clone(),
            repository: call.reference.repository.clone(),
            operation: call.operation,
            username: c.username.clone(),
            file: c.file.clone(),
        }
    }

    /// Learns from a 401: remembers the challenge and, for a token
    /// challenge, fetches a token. Fails when answering cannot help.
    fn answer(
        &self,
        call: &Call<'_>,
        resp: Response<ureq::Body>,
        sent: bool,
    ) -> Result<(), RegistryError> {
        let r = call.reference;
        let Some(challenge) = header(&resp, "www-authenticate").and_then(auth::parse_challenge)
        else {
            return Err(self.denied(call, message(resp)));
        };
        drop(resp);
        let credential = self.credential(r)?;
        match &challenge {
            Challenge::Basic => match (&credential, sent) {
                (None, _) => return Err(self.no_credentials(call)),
                (Some(c), true) => return Err(self.bad_credentials(call, c)),
                (Some(_), false) => {}
            },
            Challenge::Bearer { realm, service } => {
                if sent {
                    // A token for this scope was refused: it does not grant it.
                    return Err(match credential {
                        None => self.no_credentials(call),
                        Some(_) => self.denied(
                            call,
                            format!(
                                "the token from {realm} does not grant `{}`",
                                Self::scope(r, call.operation)
                            ),
                        ),
                    });
                }
                let token = self.token(call, realm, service.as_deref(), credential.as_ref())?;
                self.lock()
                    .tokens
                    .insert((r.registry.clone(), Self::scope(r, call.operation)), token);
            }
        }
        self.lock().challenges.insert(r.registry.clone(), challenge);
        Ok(())
    }

    /// Asks the token server `realm` for a token (the distribution token
    /// protocol: GET with `scope` and `service`, Basic credentials if any).
    fn token(
        &self,
        call: &Call<'_>,
        realm: &str,
        service: Option<&str>,
        credential: Option<&Credential>,
    ) -> Result<String, RegistryError> {
        let r = call.reference;
        let agent = self.agent(realm, &r.registry)?;
        let scope = Self::scope(r, call.operation);
        let mut attempt = 0;
        let resp = loop {
            let mut req = agent.get(realm).query("scope", &scope);
            if let Some(s) = service {
                req = req.query("service", s);
            }
            if let Some(c) = credential {
                req = req.header("Authorization", c.basic_header());
            }
            match req.call() {
                Err(e) if transient(&e) && attempt < self.options.retries => {
                    std::thread::sleep(self.backoff(attempt));
                    attempt += 1;
                }
                Err(source) => {
                    return Err(RegistryError::Connect {
                        registry: r.registry.clone(),
                        repository: r.repository.clone(),
                        what: "a token".into(),
                        url: realm.to_owned(),
                        attempts: attempt + 1,
                        source: Box::new(source),
                    });
                }
                Ok(resp)
                    if (resp.status().as_u16() == 429 || resp.status().is_server_error())
                        && attempt < self.options.retries =>
                {
                    std::thread::sleep(self.backoff(attempt));
                    attempt += 1;
                }
                Ok(resp) => break resp,
            }
        };
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(match credential {
                    Some(c) => self.bad_credentials(call, c),
                    None => self.no_credentials(call),
                });
            }
            status => {
                return Err(RegistryError::Status {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                    what: format!("a token from {realm}"),
                    method: "GET",
                    status,
                    message: message(resp),
                });
            }
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body = read_json_body(resp, r, "a token", realm, attempt + 1)?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| RegistryError::Denied {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            operation: call.operation,
            message: format!("the token server {realm} sent no token: {e}"),
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Denied {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                operation: call.operation,
                message: format!("the token server {realm} sent an empty token"),
            })
    }

    fn status_error(&self, call: &Call<'_>, resp: Response<ureq::Body>) -> RegistryError {
        let status = resp.status().as_u16();
        if status == 404 {
            return RegistryError::NotFound {
                registry: call.reference.registry.clone(),
                repository: call.reference.repository.clone(),
                what: call.what.clone(),
            };
        }
        RegistryError::Status {
            registry: call.reference.registry.clone(),
            repository: call.reference.repository.clone(),
            what: call.what.clone(),
            method: call.method,
            status,
            message: message(resp),
        }
    }

    fn unusable(&self, r: &Reference, what: &str, reason: impl Into<String>) -> RegistryError {
        RegistryError::Manifest {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            what: what.to_owned(),
            reason: reason.into(),
        }
    }

    fn verify_error(&self, r: &Reference, what: &str, source: ImageError) -> RegistryError {
        RegistryError::Verify {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            what: what.to_owned(),
            source: Box::new(source),
        }
    }

    /// Fetches the manifest or index `name` (a tag or digest), checked
    /// against the digest (and `expected`'s size) that names it.
    fn fetch_manifest(
        &self,
        r: &Reference,
        name: &str,
        expected: Option<&Descriptor>,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let what = if name.starts_with("sha256:") {
            format!("manifest {name}")
        } else {
            format!("manifest `{name}`")
        };
        let call = Call {
            reference: r,
            operation: Operation::Pull,
            what: what.clone(),
            method: "GET",
            url: format!("{}/manifests/{name}", self.base(r)),
        };
        let resp = self.send(&call, true, &mut |agent, auth| {
            authorized(agent.get(&call.url).header("Accept", ACCEPT), auth).call()
        })?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error(&call, resp));
        }
        let content_type = header(&resp, "content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let header_digest = header(&resp, "docker-content-digest").map(str::to_owned);
        let bytes = read_json_body(resp, r, &what, &call.url, 1)?;
        let digest = Sha256Digest::of(&bytes);
        let named = match (name.parse::<Sha256Digest>(), &header_digest) {
            (Ok(d), _) => Some(d),
            // By tag, the registry's digest header is all there is to check.
            (Err(_), Some(h)) => h.parse::<Sha256Digest>().ok(),
            (Err(_), None) => None,
        };
        if let Some(expected_digest) = named
            && expected_digest != digest
        {
            return Err(self.verify_error(
                r,
                &what,
                ImageError::DigestMismatch {
                    what: what.clone(),
                    expected: expected_digest,
                    found: digest,
                },
            ));
        }
        if let Some(e) = expected
            && e.size != bytes.len() as u64
        {
            return Err(self.verify_error(
                r,
                &what,
                ImageError::SizeMismatch {
                    what: what.clone(),
                    expected: e.size,
                    found: bytes.len() as u64,
                },
            ));
        }
        #[derive(serde::Deserialize)]
        struct Shape {
            #[serde(rename = "schemaVersion", default)]
            schema_version: u32,
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
            #[serde(default)]
            layers: Option<serde_json::Value>,
        }
        let shape: Shape = serde_json::from_slice(&bytes)
            .map_err(|e| self.unusable(r, &what, format!("it is not JSON: {e}")))?;
        if shape.schema_version == 1 {
            return Err(self.unusable(
                r,
                &what,
                "Docker schema 1 manifests are not supported (push the image again with a current tool)",
            ));
        }
        let known = |m: &str| {
            [
                media_type::INDEX,
                media_type::DOCKER_MANIFEST_LIST,
                media_type::MANIFEST,
                media_type::DOCKER_MANIFEST,
            ]
            .contains(&m)
        };
        let media = shape
            .media_type
            .filter(|m| known(m))
            .or(content_type.filter(|m| known(m)))
            .or_else(|| {
                if shape.manifests.is_some() {
                    Some(media_type::INDEX.to_owned())
                } else if shape.layers.is_some() {
                    Some(media_type::MANIFEST.to_owned())
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                self.unusable(r, &what, "it is neither an image manifest nor an index")
            })?;
        let mut descriptor = Descriptor::new(&media, digest, bytes.len() as u64);
        descriptor.platform = expected.and_then(|e| e.platform.clone());
        Ok((descriptor, bytes))
    }

    /// Pulls the image `reference` names (for the client's platform) into
    /// `sink`: blobs first (each verified while it streams), then the
    /// manifest, then the index. Blobs the sink has are not fetched.
    pub fn pull(
        &self,
        reference: &Reference,
        sink: &dyn BlobSink,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Pulled, RegistryError> {
        let r = reference;
        let (top, top_bytes) = self.fetch_manifest(r, &r.manifest_reference(), None)?;
        progress(Progress::Manifest {
            descriptor: top.clone(),
        });
        let is_index = |d: &Descriptor| {
            d.media_type == media_type::INDEX || d.media_type == media_type::DOCKER_MANIFEST_LIST
        };
        let (descriptor, bytes, index) = if is_index(&top) {
            let what = format!("index {}", top.digest);
            let parsed: Index = serde_json::from_slice(&top_bytes)
                .map_err(|e| self.unusable(r, &what, e.to_string()))?;
            let chosen = select_platform(&parsed.manifests, &self.options.platform)
                .map_err(|e| self.unusable(r, &what, e.to_string()))?;
            let (d, b) = self.fetch_manifest(r, &chosen.digest.to_string(), Some(&chosen))?;
            if is_index(&d) {
                return Err(self.unusable(r, &what, "it points to another index for the platform"));
            }
            progress(Progress::Manifest {
                descriptor: d.clone(),
            });
            (d, b, Some((top, top_bytes)))
        } else {
            (top, top_bytes, None)
        };
        let what = format!("manifest {}", descriptor.digest);
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| self.unusable(r, &what, e.to_string()))?;
        match manifest.config.media_type.as_str() {
            media_type::CONFIG | media_type::DOCKER_CONFIG => {}
            other => {
                return Err(self.unusable(
                    r,
                    &what,
                    format!("its config has media type `{other}`, not an image config"),
                ));
            }
        }
        for layer in &manifest.layers {
            if super::compress::Compression::from_media_type(&layer.media_type).is_none() {
                return Err(self.unusable(
                    r,
                    &what,
                    format!(
                        "layer {} has unsupported media type `{}`",
                        layer.digest, layer.media_type
                    ),
                ));
            }
        }
        let config_bytes = self.fetch_small_blob(r, &manifest.config)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
            self.unusable(
                r,
                &format!("config {}", manifest.config.digest),
                e.to_string(),
            )
        })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(self.unusable(
                r,
                &what,
                format!(
                    "it lists {} layers, its config {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        for layer in &manifest.layers {
            self.pull_blob(r, layer, sink, progress)?;
        }
        self.put_small(r, sink, &manifest.config, &config_bytes)?;
        progress(Progress::Blob {
            digest: manifest.config.digest,
            size: manifest.config.size,
            transferred: true,
        });
        self.put_small(r, sink, &descriptor, &bytes)?;
        let index = match index {
            Some((d, b)) => {
                self.put_small(r, sink, &d, &b)?;
                Some(d)
            }
            None => None,
        };
        Ok(Pulled {
            image: Image {
                descriptor,
                manifest,
                config,
            },
            index,
        })
    }

    fn put_small(
        &self,
        r: &Reference,
        sink: &dyn BlobSink,
        d: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let local = |source: ImageError| RegistryError::Local {
            op: "store",
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            digest: d.digest,
            source: Box::new(source),
        };
        let (digest, size) = put_bytes(sink, bytes).map_err(local)?;
        if digest != d.digest || size != d.size {
            return Err(local(ImageError::DigestMismatch {
                what: format!("stored copy of {}", d.digest),
                expected: d.digest,
                found: digest,
            }));
        }
        Ok(())
    }

    fn blob_call<'a>(
        &self,
        r: &'a Reference,
        d: &Descriptor,
        op: Operation,
        method: &'static str,
    ) -> Call<'a> {
        Call {
            reference: r,
            operation: op,
            what: format!("blob {}", d.digest),
            method,
            url: format!("{}/blobs/{}", self.base(r), d.digest),
        }
    }

    fn get_blob(&self, call: &Call<'_>) -> Result<Response<ureq::Body>, RegistryError> {
        let resp = self.send(call, true, &mut |agent, auth| {
            authorized(agent.get(&call.url), auth).call()
        })?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error(call, resp));
        }
        Ok(resp)
    }

    /// A small blob (a config), whole and verified.
    fn fetch_small_blob(&self, r: &Reference, d: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        let call = self.blob_call(r, d, Operation::Pull, "GET");
        if d.size > MAX_JSON {
            return Err(self.unusable(
                r,
                &call.what,
                format!("it is {} bytes, larger than kiln reads", d.size),
            ));
        }
        let resp = self.get_blob(&call)?;
        let mut reader = VerifyingReader::new(
            resp.into_body().into_reader(),
            d.digest,
            Some(d.size),
            call.what.clone(),
        );
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map_err(|e| {
            match unwrap_io(format!("read {}", call.what), e) {
                e @ (ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. }) => {
                    self.verify_error(r, &call.what, e)
                }
                e => RegistryError::Transfer {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                    operation: Operation::Pull,
                    digest: d.digest,
                    attempts: 1,
                    source: Box::new(e),
                },
            }
        })?;
        Ok(out)
    }

    /// Streams one blob into `sink`, verified; restarts the transfer on a
    /// broken connection, never on a verification failure.
    fn pull_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        sink: &dyn BlobSink,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), RegistryError> {
        if sink.has_blob(&d.digest) {
            progress(Progress::Blob {
                digest: d.digest,
                size: d.size,
                transferred: false,
            });
            return Ok(());
        }
        let call = self.blob_call(r, d, Operation::Pull, "GET");
        let local = |source: ImageError| RegistryError::Local {
            op: "store",
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            digest: d.digest,
            source: Box::new(source),
        };
        let mut attempt = 0;
        loop {
            let resp = self.get_blob(&call)?;
            let mut reader = VerifyingReader::new(
                resp.into_body().into_reader(),
                d.digest,
                Some(d.size),
                call.what.clone(),
            );
            let mut writer = sink.begin_blob().map_err(local)?;
            let mut buf = vec![0u8; BUFFER];
            let failure = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => writer.write_all(&buf[..n]).map_err(|e| {
                        local(ImageError::stream(format!("write {}", call.what), e))
                    })?,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(unwrap_io(format!("read {}", call.what), e)),
                }
            };
            match failure {
                None => {
                    let (digest, size) = writer.commit().map_err(local)?;
                    if digest != d.digest || size != d.size {
                        return Err(local(ImageError::DigestMismatch {
                            what: format!("stored copy of {}", d.digest),
                            expected: d.digest,
                            found: digest,
                        }));
                    }
                    progress(Progress::Blob {
                        digest: d.digest,
                        size: d.size,
                        transferred: true,
                    });
                    return Ok(());
                }
                // The writer is dropped uncommitted: nothing is recorded.
                Some(e @ (ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. })) => {
                    return Err(self.verify_error(r, &call.what, e));
                }
                Some(_) if attempt < self.options.retries => {
                    drop(writer);
                    std::thread::sleep(self.backoff(attempt));
                    attempt += 1;
                }
                Some(source) => {
                    return Err(RegistryError::Transfer {
                        registry: r.registry.clone(),
                        repository: r.repository.clone(),
                        operation: Operation::Pull,
                        digest: d.digest,
                        attempts: attempt + 1,
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    /// Pushes `image` (its blobs from `source`, each verified as it is
    /// read) to `target`: by tag, or by digest when `target` names only a
    /// digest. A digest in `target` must be the image's. Blobs the
    /// registry has are skipped. Returns the manifest digest.
    pub fn push(
        &self,
        source: &dyn BlobSource,
        image: &Image,
        target: &Reference,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Sha256Digest, RegistryError> {
        let r = target;
        if let Some(expected) = r.digest
            && expected != image.descriptor.digest
        {
            return Err(RegistryError::PushDigest {
                reference: r.to_string(),
                expected,
                found: image.descriptor.digest,
            });
        }
        for layer in &image.manifest.layers {
            self.push_blob(r, source, layer, progress)?;
        }
        self.push_blob(r, source, &image.manifest.config, progress)?;
        let read_local = |source: ImageError| RegistryError::Local {
            op: "read",
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            digest: image.descriptor.digest,
            source: Box::new(source),
        };
        let bytes = super::blob::read_verified(source, &image.descriptor).map_err(read_local)?;
        let name = match (r.tag.as_deref(), r.digest) {
            (Some(t), _) => t.to_owned(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_owned(),
        };
        let call = Call {
            reference: r,
            operation: Operation::Push,
            what: format!("manifest `{name}`"),
            method: "PUT",
            url: format!("{}/manifests/{name}", self.base(r)),
        };
        let resp = self.send(&call, true, &mut |agent, auth| {
            authorized(
                agent
                    .put(&call.url)
                    .header("Content-Type", image.descriptor.media_type.as_str()),
                auth,
            )
            .send(&bytes[..])
        })?;
        if !resp.status().is_success() {
            return Err(self.status_error(&call, resp));
        }
        if let Some(h) = header(&resp, "docker-content-digest")
            && let Ok(d) = h.parse::<Sha256Digest>()
            && d != image.descriptor.digest
        {
            return Err(self.verify_error(
                r,
                &call.what,
                ImageError::DigestMismatch {
                    what: format!("pushed {}", call.what),
                    expected: image.descriptor.digest,
                    found: d,
                },
            ));
        }
        Ok(image.descriptor.digest)
    }

    /// Uploads one blob unless the registry has it: POST to open an upload,
    /// then one streamed PUT with the digest (the spec's "POST then PUT").
    fn push_blob(
        &self,
        r: &Reference,
        source: &dyn BlobSource,
        d: &Descriptor,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), RegistryError> {
        let head = self.blob_call(r, d, Operation::Push, "HEAD");
        let resp = self.send(&head, true, &mut |agent, auth| {
            authorized(agent.head(&head.url), auth).call()
        })?;
        match resp.status().as_u16() {
            200 => {
                progress(Progress::Blob {
                    digest: d.digest,
                    size: d.size,
                    transferred: false,
                });
                return Ok(());
            }
            404 => {}
            _ => return Err(self.status_error(&head, resp)),
        }
        drop(resp);
        let read_local = |source: ImageError| RegistryError::Local {
            op: "read",
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            digest: d.digest,
            source: Box::new(source),
        };
        let mut attempt = 0;
        loop {
            let start = Call {
                reference: r,
                operation: Operation::Push,
                what: format!("an upload of blob {}", d.digest),
                method: "POST",
                url: format!("{}/blobs/uploads/", self.base(r)),
            };
            let resp = self.send(&start, true, &mut |agent, auth| {
                authorized(agent.post(&start.url), auth).send_empty()
            })?;
            if resp.status().as_u16() != 202 {
                return Err(self.status_error(&start, resp));
            }
            let location = header(&resp, "location")
                .map(str::to_owned)
                .ok_or_else(|| {
                    self.unusable(r, &start.what, "the registry gave no upload location")
                })?;
            drop(resp);
            let location = if location.starts_with("http://") || location.starts_with("https://") {
                location
            } else {
                format!("{}://{}{location}", self.scheme(&r.registry), r.api_host())
            };
            let separator = if location.contains('?') { '&' } else { '?' };
            let put = Call {
                reference: r,
                operation: Operation::Push,
                what: format!("blob {}", d.digest),
                method: "PUT",
                url: format!("{location}{separator}digest={}", d.digest),
            };
            let failure = Arc::new(Mutex::new(None));
            let result = self.send(&put, false, &mut |agent, auth| {
                let verified = match open_verified(source, d) {
                    Ok(v) => v,
                    Err(e) => {
                        let summary = e.to_string();
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return Err(ureq::Error::Io(std::io::Error::other(summary)));
                    }
                };
                let mut body = Watched {
                    inner: verified,
                    failure: Arc::clone(&failure),
                };
                authorized(
                    agent
                        .put(&put.url)
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Length", d.size.to_string()),
                    auth,
                )
                .send(ureq::SendBody::from_reader(&mut body))
            });
            let local_failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(e) = local_failure {
                return Err(read_local(e));
            }
            match result {
                Ok(resp) if resp.status().as_u16() == 201 || resp.status().as_u16() == 204 => {
                    progress(Progress::Blob {
                        digest: d.digest,
                        size: d.size,
                        transferred: true,
                    });
                    return Ok(());
                }
                Ok(resp)
                    if (resp.status().is_server_error() || resp.status().as_u16() == 429)
                        && attempt < self.options.retries =>
                {
                    drop(resp);
                }
                Ok(resp) => return Err(self.status_error(&put, resp)),
                Err(RegistryError::Connect { source, .. })
                    if transient(&source) && attempt < self.options.retries => {}
                Err(RegistryError::Connect { source, .. }) => {
                    return Err(RegistryError::Transfer {
                        registry: r.registry.clone(),
                        repository: r.repository.clone(),
                        operation: Operation::Push,
                        digest: d.digest,
                        attempts: attempt + 1,
                        source: Box::new(ImageError::stream(
                            format!("upload blob {}", d.digest),
                            std::io::Error::other(source.to_string()),
                        )),
                    });
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(self.backoff(attempt));
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(insecure: &[&str]) -> Client {
        let mut options = ClientOptions::from_env(|_| None);
        options.insecure = insecure.iter().map(|s| (*s).to_owned()).collect();
        Client::new(options)
    }

    #[test]
    fn loopback_and_insecure_registries_use_plain_http() {
        let c = client(&["reg.test", "other.test:8443"]);
        for plain in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "reg.test",
            "reg.test:5000",
            "other.test:8443",
        ] {
            assert!(c.is_plain_http(plain), "{plain}");
        }
        for tls in [
            "docker.io",
            "other.test",
            "other.test:443",
            "10.0.0.1:5000",
            "[::2]:5000",
        ] {
            assert!(!c.is_plain_http(tls), "{tls}");
        }
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(
            c.base(&r),
            "https://registry-1.docker.io/v2/library/busybox"
        );
    }

    #[test]
    fn only_failures_that_can_pass_are_transient() {
        let io = |kind, text: &str| ureq::Error::Io(std::io::Error::new(kind, text.to_owned()));
        assert!(transient(&io(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused"
        )));
        assert!(transient(&io(
            std::io::ErrorKind::ConnectionReset,
            "reset by peer"
        )));
        assert!(transient(&ureq::Error::ConnectionFailed));
        assert!(!transient(&io(
            std::io::ErrorKind::Other,
            "failed to lookup address information: Name or service not known"
        )));
        assert!(transient(&io(
            std::io::ErrorKind::Other,
            "failed to lookup address information: Temporary failure in name resolution"
        )));
        assert!(!transient(&ureq::Error::HostNotFound));
        assert!(!transient(&ureq::Error::Tls("bad certificate")));
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let c = client(&[]);
        assert_eq!(c.backoff(0), Duration::from_millis(500));
        assert_eq!(c.backoff(2), Duration::from_secs(2));
        assert_eq!(c.backoff(20), Duration::from_secs(30));
    }

    #[test]
    fn a_missing_ca_bundle_is_a_clear_error() {
        let mut options = ClientOptions::from_env(|_| None);
        options.ca_file = PathBuf::from("/nonexistent/ca.pem");
        let c = Client::new(options);
        let e = c.agent("https://x/v2/", "x").err().unwrap().to_string();
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("HTTPS to x"),
            "{e}"
        );
    }
}
