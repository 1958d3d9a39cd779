#![allow(clippy::print_stderr, reason = "tests report skips on stderr")]

//! `kiln pull`, `kiln push`, `kiln image load`, registry base images and
//! `--output registry:` against Debian's real `docker-registry`, started by
//! each test on 127.0.0.1 with a free port and a temporary config and
//! storage, and stopped when the test ends (also when it fails): without
//! auth, with htpasswd (bcrypt) Basic auth, and with token auth served by a
//! small token server in the test (JWTs signed by `openssl`, trusted by the
//! registry through `rootcertbundle`). skopeo reads what kiln pushes and
//! writes what kiln pulls.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use common::{kiln, stderr, stdout};

// ---------------------------------------------------------------- tools

/// Whether `tool` is on PATH; when it is not, panics under
/// `KILN_TEST_REQUIRE_TOOLS` (tests/run.sh), else prints why the test skips.
fn have(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var_os("KILN_TEST_REQUIRE_TOOLS").is_none(),
            "{tool} is required (apt-get install {package})"
        );
        common::print_skip(&format!("{tool} not found; install {package}"));
    }
    found
}

macro_rules! require {
    ($($tool:literal from $package:literal),+) => {
        $( if !have($tool, $package) { return; } )+
    };
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- registry

enum Auth {
    None,
    /// htpasswd Basic auth for one user.
    Htpasswd {
        user: String,
        password: String,
    },
    /// Token auth: tokens from `realm`, signed by the key of `cert`.
    Token {
        realm: String,
        cert: PathBuf,
    },
}

/// A running `docker-registry serve`, stopped on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    fn start(auth: Auth) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", &user, &password])
                    .output()
                    .unwrap();
                ok(&out, "htpasswd");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    file.display()
                )
            }
            Auth::Token { realm, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: kiln-test\n    issuer: kiln-test-issuer\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = Registry {
            dir,
            port,
            child: None,
        };
        registry.serve();
        registry
    }

    /// Starts (or restarts) the registry process and waits until it listens.
    fn serve(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("failed to start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("docker-registry exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's own file for a blob.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- kiln

/// A fresh store with the environment kiln runs in.
struct Store {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Store {
    fn new() -> Store {
        Store {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    fn with_env(mut self, key: &str, value: impl AsRef<Path>) -> Store {
        self.env
            .push((key.to_owned(), value.as_ref().display().to_string()));
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self) -> Command {
        let mut cmd = kiln();
        cmd.env("KILN_STORE", self.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs kiln, asserts success and returns the last stdout line.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        ok(&out, &format!("kiln {}", args.join(" ")));
        stdout(&out).lines().last().unwrap_or("").to_owned()
    }

    /// Fails the test unless `kiln store verify` finds nothing wrong.
    fn verify_clean(&self) {
        let out = self.run(&["store", "verify"]);
        ok(&out, "kiln store verify");
    }

    fn images(&self) -> String {
        let out = self.run(&["image", "ls"]);
        ok(&out, "kiln image ls");
        stdout(&out)
    }

    /// The config digest of a stored manifest.
    fn config_of(&self, manifest: &str) -> String {
        let hex = manifest.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(self.path().join("blobs/sha256").join(hex)).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        m["config"]["digest"].as_str().unwrap().to_owned()
    }

    /// Imports a busybox root filesystem (plus `extra`, if given, as
    /// `/extra`) as `name`; returns the manifest digest.
    fn busybox(&self, name: &str, extra: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let root = common::busybox_rootfs(dir.path());
        if let Some(text) = extra {
            std::fs::write(root.join("extra"), text).unwrap();
        }
        self.ok(&["image", "import", root.to_str().unwrap(), "--tag", name])
    }
}

fn digest_of(reference_stdout: &str) -> String {
    let d = reference_stdout.trim().to_owned();
    assert!(
        d.starts_with("sha256:") && d.len() == 71,
        "not a digest: {d:?}"
    );
    d
}

// ---------------------------------------------------------------- tests

#[test]
fn push_and_pull_by_tag_and_by_digest() {
    require!("docker-registry" from "docker-registry");
    let registry = Registry::start(Auth::None);
    let host = registry.host();
    let a = Store::new();
    let local = digest_of(&a.busybox("bb", None));

    // Push by tag: the registry gets exactly the local manifest.
    let pushed = a.ok(&["push", "bb", &format!("{host}/test/bb:1")]);
    assert_eq!(pushed, local);
    // Again: every blob is skipped.
    let out = a.run(&["push", "bb", &format!("{host}/test/bb:1")]);
    ok(&out, "second push");
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("pushed"), "{}", stderr(&out));

    // Pull by tag into a fresh store: same digest, tagged as pulled.
    let b = Store::new();
    let pulled = b.ok(&["pull", &format!("{host}/test/bb:1")]);
    assert_eq!(pulled, local);
    assert!(
        b.images().contains(&format!("{host}/test/bb:1\t{local}")),
        "{}",
        b.images()
    );
    b.verify_clean();
    // The pulled image is whole: it exports and reads back.
    let layout = b.path().join("out");
    b.ok(&[
        "image",
        "export",
        &format!("{host}/test/bb:1"),
        &format!("oci:{}:bb", layout.display()),
    ]);

    // Pull by digest into another store: pinned content, kept by a root.
    let c = Store::new();
    let by_digest = c.ok(&["pull", &format!("{host}/test/bb@{local}")]);
    assert_eq!(by_digest, local);
    c.verify_clean();
    let out = c.run(&["store", "gc"]);
    ok(&out, "gc");
    c.verify_clean();
    c.ok(&[
        "image",
        "export",
        &local,
        &format!("oci:{}", c.path().join("o").display()),
    ]);

    // Push by digest; a digest that is not the image's is refused.
    let by_digest = a.ok(&["push", "bb", &format!("{host}/test/pinned@{local}")]);
    assert_eq!(by_digest, local);
    assert_eq!(
        Store::new().ok(&["pull", &format!("{host}/test/pinned@{local}")]),
        local
    );
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = a.run(&["push", "bb", &format!("{host}/test/pinned@{wrong}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "names manifest {wrong}, but the image being pushed is {local}"
        )),
        "{}",
        stderr(&out)
    );

    // A missing tag is a clear error, not retried.
    let started = Instant::now();
    let out = b.run(&["pull", &format!("{host}/test/bb:nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("manifest `nope` not found in {host}/test/bb")),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a 404 was retried"
    );
}

#[test]
fn basic_auth_uses_the_auth_files_and_names_bad_credentials() {
    require!("docker-registry" from "docker-registry", "htpasswd" from "apache2-utils");
    let registry = Registry::start(Auth::Htpasswd {
        user: "kiln".into(),
        password: "s3cret".into(),
    });
    let host = registry.host();
    let files = tempfile::tempdir().unwrap();
    let auth_file = |name: &str, key: &str, user_pass: &str| {
        let path = files.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        path
    };

    // No credentials anywhere: refused, with where kiln looked.
    let anonymous = Store::new().with_env("REGISTRY_AUTH_FILE", files.path().join("none.json"));
    anonymous.busybox("bb", None);
    let out = anonymous.run(&["push", "bb", &format!("{host}/private/bb:1")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("registry {host} requires authentication to push private/bb, and no credentials for it were found")),
        "{err}"
    );
    assert!(err.contains("hint: log in with `podman login"), "{err}");
    assert!(err.contains("none.json"), "{err}");

    // A wrong password (containers auth.json): rejected, naming user and file.
    let wrong = auth_file("wrong/auth.json", &host, "kiln:wrong");
    let bad = Store::new().with_env("REGISTRY_AUTH_FILE", &wrong);
    bad.busybox("bb", None);
    let out = bad.run(&["push", "bb", &format!("{host}/private/bb:1")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "registry {host} rejected the credentials of user `kiln` (from {}) to push private/bb",
            wrong.display()
        )),
        "{err}"
    );

    // The right password, from podman's file: push works.
    let right = auth_file("right/auth.json", &host, "kiln:s3cret");
    let good = Store::new().with_env("REGISTRY_AUTH_FILE", &right);
    let local = digest_of(&good.busybox("bb", None));
    assert_eq!(
        good.ok(&["push", "bb", &format!("{host}/private/bb:1")]),
        local
    );

    // Pull with docker's config.json (an `http://` key, as docker writes
    // for insecure registries).
    let docker_dir = files.path().join("docker");
    auth_file(
        "docker/config.json",
        &format!("http://{host}"),
        "kiln:s3cret",
    );
    let puller = Store::new().with_env("DOCKER_CONFIG", &docker_dir);
    assert_eq!(puller.ok(&["pull", &format!("{host}/private/bb:1")]), local);
    puller.verify_clean();
    // And anonymously, the pull is refused.
    let out = Store::new().run(&["pull", &format!("{host}/private/bb:1")]);
    assert!(
        stderr(&out).contains("requires authentication to pull"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------- token auth

/// base64url without padding, as JWS writes it.
fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A token server for the registry's `auth: token`: checks Basic
/// credentials and answers with a JWT granting the requested scope, signed
/// RS256 by `openssl dgst` with the key whose certificate the registry
/// trusts (sent in the `x5c` header). Stops when dropped.
struct TokenServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenServer {
    fn start(dir: &Path, user: &'static str, password: &'static str) -> (TokenServer, PathBuf) {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=kiln-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        ok(&out, "openssl req");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        ok(&der, "openssl x509");
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            );
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(e) => panic!("token server: {e}"),
                };
                requests2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                serve_token(stream, &expected, &key, &x5c);
            }
        });
        (
            TokenServer {
                port,
                stop,
                thread: Some(thread),
                requests,
            },
            cert,
        )
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_token(stream: TcpStream, expected: &str, key: &Path, x5c: &str) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_owned());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("scope", v)) => scopes.push(percent_decode(v)),
            Some(("service", v)) => service = percent_decode(v),
            _ => {}
        }
    }
    let mut out = stream;
    if authorization.as_deref() != Some(expected) {
        let body = r#"{"details":"incorrect username or password"}"#;
        write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        return;
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    #[expect(
        clippy::disallowed_methods,
        reason = "a token's validity window is wall-clock time"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "kiln-test-issuer", "sub": "kiln", "aud": service,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signed = openssl.wait_with_output().unwrap();
    ok(&signed, "openssl dgst -sign");
    let token = format!("{signing_input}.{}", b64url(&signed.stdout));
    let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

#[test]
fn token_auth_fetches_bearer_tokens_from_the_realm() {
    require!("docker-registry" from "docker-registry", "openssl" from "openssl");
    let keys = tempfile::tempdir().unwrap();
    let (tokens, cert) = TokenServer::start(keys.path(), "tok", "pw");
    let registry = Registry::start(Auth::Token {
        realm: tokens.realm(),
        cert,
    });
    let host = registry.host();
    let files = tempfile::tempdir().unwrap();
    let write_auth = |name: &str, user_pass: &str| {
        let path = files.path().join(name);
        let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        path
    };
    let good = Store::new().with_env("REGISTRY_AUTH_FILE", write_auth("good.json", "tok:pw"));
    let local = digest_of(&good.busybox("bb", None));
    assert_eq!(good.ok(&["push", "bb", &format!("{host}/tok/bb:1")]), local);
    assert!(
        tokens.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "no token was asked for"
    );
    let puller = Store::new().with_env("REGISTRY_AUTH_FILE", write_auth("pull.json", "tok:pw"));
    assert_eq!(puller.ok(&["pull", &format!("{host}/tok/bb:1")]), local);
    puller.verify_clean();

    // The token server refuses a wrong password: named, with the file.
    let wrong = write_auth("wrong.json", "tok:nope");
    let bad = Store::new().with_env("REGISTRY_AUTH_FILE", &wrong);
    let out = bad.run(&["pull", &format!("{host}/tok/bb:1")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "registry {host} rejected the credentials of user `tok` (from {}) to pull tok/bb",
            wrong.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(bad.images().is_empty());
}

#[test]
fn a_blob_corrupted_in_the_registry_is_rejected_and_nothing_is_stored() {
    require!("docker-registry" from "docker-registry");
    let registry = Registry::start(Auth::None);
    let host = registry.host();
    let a = Store::new();
    let local = digest_of(&a.busybox("bb", None));
    a.ok(&["push", "bb", &format!("{host}/bad/bb:1")]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.blob_file(&local)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    // Flip one byte in the middle of the layer, keeping its size.
    let file = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let b = Store::new();
    let out = b.run(&["pull", &format!("{host}/bad/bb:1")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "blob {layer} from {host}/bad/bb failed verification"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("expected {layer}")), "{err}");
    b.verify_clean();
    assert!(b.images().is_empty(), "{}", b.images());
    let blobs = b.path().join("blobs/sha256");
    let stored: Vec<_> = std::fs::read_dir(&blobs)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        !stored
            .iter()
            .any(|n| n.to_string_lossy() == layer.trim_start_matches("sha256:")),
        "the corrupt layer was stored: {stored:?}"
    );
    let tmp: Vec<_> = std::fs::read_dir(b.path().join("tmp"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    // As a FROM base, the same corruption fails the build and stores nothing.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {host}/bad/bb:1\n"),
    )
    .unwrap();
    let out = b.run(&["build", ctx.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("failed verification"),
        "{}",
        stderr(&out)
    );
    b.verify_clean();
}

#[test]
fn skopeo_reads_what_kiln_pushes_and_kiln_pulls_what_skopeo_pushes() {
    require!("docker-registry" from "docker-registry", "skopeo" from "skopeo");
    let registry = Registry::start(Auth::None);
    let host = registry.host();
    let a = Store::new();
    let local = digest_of(&a.busybox("bb", Some("from kiln\n")));

    // kiln -> registry -> skopeo.
    a.ok(&["push", "bb", &format!("{host}/interop/kiln:1")]);
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{host}/interop/kiln:1"))
        .output()
        .unwrap();
    ok(&out, "skopeo inspect");
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], local.as_str());
    let copied = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/interop/kiln:1"))
        .arg(format!("oci:{}:copied", copied.path().display()))
        .output()
        .unwrap();
    ok(&out, "skopeo copy docker:// -> oci:");
    let b = Store::new();
    assert_eq!(
        b.ok(&[
            "image",
            "load",
            &format!("oci:{}:copied", copied.path().display()),
            "--tag",
            "copied"
        ]),
        local
    );

    // skopeo -> registry -> kiln, as OCI and as Docker schema 2.
    let layout = tempfile::tempdir().unwrap();
    a.ok(&[
        "image",
        "export",
        "bb",
        &format!("oci:{}:bb", layout.path().display()),
    ]);
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bb", layout.path().display()))
        .arg(format!("docker://{host}/interop/skopeo:1"))
        .output()
        .unwrap();
    ok(&out, "skopeo copy oci: -> docker://");
    let c = Store::new();
    assert_eq!(c.ok(&["pull", &format!("{host}/interop/skopeo:1")]), local);
    c.verify_clean();

    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--format", "v2s2"])
        .arg(format!("oci:{}:bb", layout.path().display()))
        .arg(format!("docker://{host}/interop/v2s2:1"))
        .output()
        .unwrap();
    ok(&out, "skopeo copy --format v2s2");
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/interop/v2s2:1"))
        .output()
        .unwrap();
    ok(&out, "skopeo inspect --raw");
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let docker_digest = format!("sha256:{}", sha256_hex(&out.stdout));
    let d = Store::new();
    assert_eq!(
        d.ok(&["pull", &format!("{host}/interop/v2s2:1")]),
        docker_digest
    );
    d.verify_clean();
    // kiln pushes the Docker manifest back unchanged; skopeo reads it.
    assert_eq!(
        d.ok(&[
            "push",
            &format!("{host}/interop/v2s2:1"),
            &format!("{host}/interop/v2s2-again:1")
        ]),
        docker_digest
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{host}/interop/v2s2-again:1"))
        .output()
        .unwrap();
    ok(&out, "skopeo inspect of a re-pushed docker manifest");
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// PUTs a manifest or index with curl, as any client would.
fn put_manifest(host: &str, repo: &str, tag: &str, media_type: &str, body: &str) {
    let out = Command::new("curl")
        .args(["-sS", "-f", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {media_type}"))
        .args(["--data-binary", body])
        .arg(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .output()
        .unwrap();
    ok(&out, "curl PUT manifest");
}

#[test]
fn an_index_with_several_platforms_gives_linux_amd64() {
    require!("docker-registry" from "docker-registry", "curl" from "curl");
    let registry = Registry::start(Auth::None);
    let host = registry.host();
    let a = Store::new();
    let amd64 = digest_of(&a.busybox("amd", Some("amd64\n")));
    let arm64 = digest_of(&a.busybox("arm", Some("arm64\n")));
    a.ok(&["push", "amd", &format!("{host}/multi/app@{amd64}")]);
    a.ok(&["push", "arm", &format!("{host}/multi/app@{arm64}")]);
    let size = |d: &str| std::fs::metadata(registry.blob_file(d)).unwrap().len();
    let entry = |mt: &str, d: &str, arch: &str, variant: Option<&str>| {
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({"mediaType": mt, "digest": d, "size": size(d), "platform": platform})
    };
    let oci = "application/vnd.oci.image.manifest.v1+json";
    for (tag, index_type) in [
        ("oci", "application/vnd.oci.image.index.v1+json"),
        (
            "docker",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
    ] {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                entry(oci, &arm64, "arm64", Some("v8")),
                entry(oci, &amd64, "amd64", None),
                entry(oci, &arm64, "arm", Some("v7")),
            ],
        });
        put_manifest(&host, "multi/app", tag, index_type, &index.to_string());
        let b = Store::new();
        let out = b.run(&["pull", &format!("{host}/multi/app:{tag}")]);
        ok(&out, "pull of an index");
        assert_eq!(stdout(&out).trim(), amd64, "{tag}");
        assert!(stderr(&out).contains("index sha256:"), "{}", stderr(&out));
        assert!(
            b.images()
                .contains(&format!("{host}/multi/app:{tag}\t{amd64}")),
            "{}",
            b.images()
        );
        b.verify_clean();
        let out = b.run(&[
            "pull",
            "--platform",
            "linux/arm64",
            &format!("{host}/multi/app:{tag}"),
        ]);
        ok(&out, "pull --platform linux/arm64");
        assert_eq!(stdout(&out).trim(), arm64);
        let out = b.run(&[
            "pull",
            "--platform",
            "windows/amd64",
            &format!("{host}/multi/app:{tag}"),
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("no manifest for platform windows/amd64 (the index has: linux/arm64/v8, linux/amd64, linux/arm/v7)"),
            "{}",
            stderr(&out)
        );
    }
    // FROM pinned to the index digest resolves to the amd64 manifest.
    let index_digest = {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-H",
                "Accept: application/vnd.oci.image.index.v1+json",
            ])
            .arg(format!("http://{host}/v2/multi/app/manifests/oci"))
            .output()
            .unwrap();
        ok(&out, "curl GET index");
        format!("sha256:{}", sha256_hex(&out.stdout))
    };
    let c = Store::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {host}/multi/app@{index_digest}\n"),
    )
    .unwrap();
    let built = c.ok(&["build", ctx.path().to_str().unwrap()]);
    let out = c.run(&["plan", "--json", ctx.path().to_str().unwrap()]);
    ok(&out, "plan");
    assert!(stdout(&out).contains(&amd64), "{}", stdout(&out));
    assert!(built.starts_with("sha256:"));

    // kiln.lock pins a tag that names an index to the index and to the
    // platform's manifest, pulled fresh or found in the store.
    for (store, from) in [
        (Store::new(), format!("{host}/multi/app:oci")),
        (c, format!("{host}/multi/app@{index_digest}")),
    ] {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {from}\n")).unwrap();
        store.ok(&["lock", ctx.path().to_str().unwrap()]);
        let lock = std::fs::read_to_string(ctx.path().join("kiln.lock")).unwrap();
        assert!(lock.contains(&index_digest), "{from}: {lock}");
        assert!(lock.contains(&amd64), "{from}: {lock}");
        assert!(lock.contains("linux/amd64"), "{from}: {lock}");
        // A fresh store builds from the pin, pulling the manifest by digest.
        let fresh = Store::new();
        assert_eq!(fresh.ok(&["build", ctx.path().to_str().unwrap()]), built);
    }
}

#[test]
fn a_build_from_a_registry_base_pulls_it_and_pushes_its_output() {
    require!("docker-registry" from "docker-registry", "skopeo" from "skopeo");
    let registry = Registry::start(Auth::None);
    let host = registry.host();
    let a = Store::new();
    let base = digest_of(&a.busybox("bb", None));
    a.ok(&["push", "bb", &format!("{host}/base/bb:1")]);

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {host}/base/bb:1\nENV GREETING=hi\nCOPY hello.txt /hello.txt\n"),
    )
    .unwrap();
    let b = Store::new();
    let out = b
        .cmd()
        .args(["build", ctx.path().to_str().unwrap(), "-t", "app:1"])
        .arg("--output")
        .arg(format!("registry:{host}/built/app:1"))
        .output()
        .unwrap();
    ok(&out, "kiln build FROM a registry image");
    let built = stdout(&out).lines().last().unwrap().to_owned();
    // The base was pulled and tagged, and the output pushed.
    assert!(
        b.images().contains(&format!("{host}/base/bb:1\t{base}")),
        "{}",
        b.images()
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{host}/built/app:1"))
        .output()
        .unwrap();
    ok(&out, "skopeo inspect of the pushed build");
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], built.as_str());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    b.verify_clean();

    // Built again in a store that has the base by digest only: same image.
    let c = Store::new();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {host}/base/bb@{base}\nENV GREETING=hi\nCOPY hello.txt /hello.txt\n"),
    )
    .unwrap();
    assert_eq!(c.ok(&["build", ctx.path().to_str().unwrap()]), built);

    // A base that is nowhere names the registry and the repository.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {host}/base/missing:1\n"),
    )
    .unwrap();
    let out = c.run(&["build", ctx.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("Dockerfile:1:1: cannot resolve image `{host}/base/missing:1`: no local image `{host}/base/missing:1`, and pulling it failed: manifest `1` not found in {host}/base/missing")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn image_load_reads_docker_archives_and_oci_layouts() {
    let a = Store::new();
    let local = digest_of(&a.busybox("bb:1", None));
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bb.tar");
    a.ok(&[
        "image",
        "export",
        "bb:1",
        &format!("docker-archive:{}", archive.display()),
    ]);
    let layout = dir.path().join("layout");
    a.ok(&[
        "image",
        "export",
        "bb:1",
        &format!("oci:{}:one", layout.display()),
    ]);

    // docker-archive: tagged with the archive's RepoTags, or --tag. Its
    // layers are plain tars, so the manifest is new; the config (docker's
    // image ID) is the same.
    let b = Store::new();
    let loaded = digest_of(&b.ok(&[
        "image",
        "load",
        &format!("docker-archive:{}", archive.display()),
    ]));
    assert_eq!(b.config_of(&loaded), a.config_of(&local));
    assert!(
        b.images().contains(&format!("bb:1\t{loaded}")),
        "{}",
        b.images()
    );
    b.ok(&[
        "image",
        "load",
        &format!("docker-archive:{}", archive.display()),
        "--tag",
        "other:2",
    ]);
    assert!(
        b.images().contains(&format!("other:2\t{loaded}")),
        "{}",
        b.images()
    );
    b.verify_clean();

    // OCI layout: by REF, tagged with --tag; a bare tag names no image.
    let c = Store::new();
    let out = c.run(&["image", "load", &format!("oci:{}:one", layout.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("give `--tag NAME[:TAG]`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        c.ok(&[
            "image",
            "load",
            &format!("oci:{}:one", layout.display()),
            "--tag",
            "fromoci"
        ]),
        local
    );
    assert!(
        c.images().contains(&format!("fromoci:latest\t{local}")),
        "{}",
        c.images()
    );
    let out = c.run(&[
        "image",
        "load",
        &format!("oci:{}:two", layout.display()),
        "-t",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no image named `two`"),
        "{}",
        stderr(&out)
    );
    c.verify_clean();
    let out = c.run(&["image", "load", "tarball:x.tar"]);
    assert!(
        stderr(&out).contains("unknown image source"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn transient_connection_failures_are_retried() {
    require!("docker-registry" from "docker-registry");
    let mut registry = Registry::start(Auth::None);
    let host = registry.host();
    let a = Store::new();
    let local = digest_of(&a.busybox("bb", None));
    a.ok(&["push", "bb", &format!("{host}/retry/bb:1")]);
    registry.stop();
    // The registry is down when the pull starts and back 1.5 s later: the
    // connection errors are retried with back-off until it answers.
    let b = Store::new();
    let pull = b
        .cmd()
        .args(["pull", &format!("{host}/retry/bb:1")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    registry.serve();
    let out = pull.wait_with_output().unwrap();
    ok(&out, "pull across a registry restart");
    assert_eq!(stdout(&out).trim(), local);
    b.verify_clean();
    // With nothing listening at all, the error names the registry and URL.
    registry.stop();
    let out = b.run(&["pull", &format!("{host}/retry/other:1")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "failed to reach registry {host} for manifest `1` of retry/other (http://{host}/v2/retry/other/manifests/1), 5 attempt(s)"
        )),
        "{}",
        stderr(&out)
    );
}
