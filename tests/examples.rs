//! The three examples end to end, on Debian base images made by
//! `examples/bases.sh` (mmdebstrap, cached under `target/kiln-test-cache`):
//! `kiln lock` in one store; a build in a second, fresh store (the fetch
//! steps run again and must give their pinned layers); a `kiln store
//! export --plan` bundle imported into a third, fresh store and built there
//! with `--offline` inside a network namespace with no interface up (the
//! same digest); then the image serves a request under `kiln run`.
//!
//! Slow (minutes each: base images of hundreds of MB, `npm ci`, a C
//! compile), so `#[ignore]`d; `tests/run.sh` runs them.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{kiln, stderr, stdout};

/// The base image tars of `names`, made once by examples/bases.sh.
fn base_tars(names: &[&str]) -> Option<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = root.join("target/kiln-test-cache");
    if std::process::Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("KILN_TEST_REQUIRE_TOOLS").is_some() {
            panic!("mmdebstrap is required (KILN_TEST_REQUIRE_TOOLS is set)");
        }
        return None;
    }
    // One maker at a time: the tests of this file run in parallel and
    // share the cache.
    let lock = std::fs::File::create(cache.with_extension("lock")).unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let st = std::process::Command::new("bash")
        .arg(root.join("examples/bases.sh"))
        .arg(&cache)
        .args(names)
        .status()
        .unwrap();
    assert!(st.success(), "examples/bases.sh failed");
    Some(
        names
            .iter()
            .map(|n| cache.join(format!("{n}.tar")))
            .collect(),
    )
}

struct Example {
    dir: tempfile::TempDir,
    ctx: PathBuf,
    build_args: Vec<String>,
}

impl Example {
    /// A copy of `examples/<name>` (without anything npm or node-gyp leave).
    fn new(name: &str, build_args: &[&str]) -> Example {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join(name);
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(name),
            &ctx,
        );
        Example {
            dir,
            ctx,
            build_args: build_args.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn kiln(&self, store: &Path, args: &[&str]) -> Output {
        kiln()
            .arg("--store")
            .arg(store)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, store: &Path, args: &[&str]) -> String {
        let out = self.kiln(store, args);
        assert!(out.status.success(), "kiln {args:?}: {}", stderr(&out));
        stdout(&out).lines().last().unwrap_or_default().to_owned()
    }

    /// `kiln <command> CONTEXT --build-arg ... <extra>`.
    fn with_build(&self, command: &[&str], extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        args.push(self.ctx.to_str().unwrap().to_owned());
        for a in &self.build_args {
            args.push("--build-arg".into());
            args.push(a.clone());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// Lock in store `a`, build in a fresh `b`, carry the plan to a fresh
    /// `c` and build there offline; returns `c` and the digest.
    fn lock_build_carry(&self, bases: &[(&str, PathBuf)], tag: &str) -> (PathBuf, String) {
        let a = self.store("a");
        for (name, tar) in bases {
            self.ok(
                &a,
                &["image", "import", tar.to_str().unwrap(), "--tag", name],
            );
        }
        let lock_args = self.with_build(&["lock"], &[]);
        let lock_args: Vec<&str> = lock_args.iter().map(String::as_str).collect();
        self.ok(&a, &lock_args);
        let lock = std::fs::read_to_string(self.ctx.join("kiln.lock")).unwrap();
        assert_eq!(lock.matches("[[image]]").count(), bases.len(), "{lock}");

        // The base images travel as a bundle too (no second tar import).
        let b = self.store("b");
        let bases_bundle = self.dir.path().join("bases.tar");
        let mut export = vec!["store", "export", "-o", bases_bundle.to_str().unwrap()];
        for (name, _) in bases {
            export.extend(["--image", name]);
        }
        self.ok(&a, &export);
        self.ok(&b, &["store", "import", bases_bundle.to_str().unwrap()]);
        let build_args = self.with_build(&["build"], &["-t", tag]);
        let build_args: Vec<&str> = build_args.iter().map(String::as_str).collect();
        let first = self.ok(&b, &build_args);
        // kiln.lock was not touched by building.
        assert_eq!(
            std::fs::read_to_string(self.ctx.join("kiln.lock")).unwrap(),
            lock
        );

        let c = self.store("c");
        let bundle = self.dir.path().join("plan.tar");
        let export = self.with_build(
            &["store", "export", "--plan"],
            &["-o", bundle.to_str().unwrap()],
        );
        let export: Vec<&str> = export.iter().map(String::as_str).collect();
        self.ok(&b, &export);
        self.ok(&c, &["store", "import", bundle.to_str().unwrap()]);
        // In a network namespace with no interfaces: no socket can reach
        // anything.
        let offline = |extra: &[&str]| {
            std::process::Command::new("unshare")
                .arg("--net")
                .arg(env!("CARGO_BIN_EXE_kiln"))
                .arg("--store")
                .arg(&c)
                .args(self.with_build(&["build"], extra))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("SOURCE_DATE_EPOCH", "0")
                .output()
                .unwrap()
        };
        let out = offline(&["--offline", "-t", tag]);
        assert!(out.status.success(), "offline build: {}", stderr(&out));
        let second = stdout(&out).lines().last().unwrap().to_owned();
        assert_eq!(first, second, "the offline build from the bundle differs");

        // `kiln build --check`: every step built again from scratch over
        // its stored inputs (fetch steps keep their pins) gives the same
        // image.
        let out = offline(&["--offline", "--check"]);
        let err = stderr(&out);
        assert!(out.status.success(), "build --check: {err}");
        assert!(err.contains("check: the image is reproducible"), "{err}");
        (c, second)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        if ["node_modules", "dist", "build", "kiln.lock"].contains(&name.to_str().unwrap_or("")) {
            continue;
        }
        let (src, dst) = (from.join(&name), to.join(&name));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A port the kernel just handed out (and took back).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `kiln run` in the background; it is stopped (SIGTERM, then
/// SIGKILL) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GETs `path` from 127.0.0.1:`port`, retrying while nothing listens (up
/// to 60 s); returns the whole response.
fn get(port: u16, path: &str, server: &mut Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
            let mut response = String::new();
            let _ = conn.read_to_string(&mut response);
            if !response.is_empty() {
                return response;
            }
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(e) = server.0.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the server exited ({status}) before answering: {err}");
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn serve(store: &Path, args: &[&str]) -> Running {
    Running(
        kiln()
            .arg("--store")
            .arg(store)
            .args(["run", "--network", "host", "--timeout", "120"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// A JSON blob of `store`.
fn json(store: &Path, digest: &str) -> serde_json::Value {
    let path = store
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every entry of every layer of `manifest`: `path`.
fn files(store: &Path, manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    for layer in json(store, manifest)["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let list = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(store.join("blobs/sha256").join(&digest[7..]))
            .output()
            .unwrap();
        out.extend(
            String::from_utf8_lossy(&list.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    out
}

fn config(store: &Path, manifest: &str) -> serde_json::Value {
    let m = json(store, manifest);
    json(store, m["config"]["digest"].as_str().unwrap())
}

#[test]
#[ignore = "slow: Debian base images, npm ci, nginx; run by tests/run.sh"]
fn static_site_locks_builds_offline_from_a_bundle_and_serves() {
    common::require_sandbox!();
    let Some(tars) = base_tars(&["debian-node-build", "debian-nginx"]) else {
        common::print_skip("mmdebstrap is missing (apt-get install mmdebstrap)");
        return;
    };
    let ex = Example::new(
        "static-site",
        &["NODE_IMAGE=debian-node-build", "NGINX_IMAGE=debian-nginx"],
    );
    let (store, digest) = ex.lock_build_carry(
        &[
            ("debian-node-build", tars[0].clone()),
            ("debian-nginx", tars[1].clone()),
        ],
        "static-site",
    );
    let lock = std::fs::read_to_string(ex.ctx.join("kiln.lock")).unwrap();
    assert!(lock.contains("stage = \"builder\""), "{lock}");
    assert!(lock.contains("npm ci"), "{lock}");
    let files = files(&store, &digest);
    assert!(
        files.iter().any(|f| f == "usr/share/nginx/html/app.js"),
        "no app.js"
    );
    assert!(files.iter().any(|f| f == "usr/share/nginx/html/index.html"));
    assert!(
        !files.iter().any(|f| f.contains("node_modules")),
        "node_modules shipped"
    );

    let port = free_port();
    let script = format!(
        "sed 's/listen 8080;/listen 127.0.0.1:{port};/' /etc/nginx/nginx.conf > /tmp/nginx.conf && exec nginx -c /tmp/nginx.conf -g 'daemon off;'"
    );
    let mut server = serve(&store, &["static-site", "--", "sh", "-c", &script]);
    let page = get(port, "/", &mut server);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<div id=\"root\"></div>"), "{page}");
    let app = get(port, "/app.js", &mut server);
    assert!(app.starts_with("HTTP/1.1 200"), "{app}");
    assert!(app.contains("Built by kiln"), "the bundle lacks the app");
}

#[test]
#[ignore = "slow: Debian base images, npm ci, node-gyp; run by tests/run.sh"]
fn node_native_locks_builds_offline_from_a_bundle_and_serves() {
    common::require_sandbox!();
    let Some(tars) = base_tars(&["debian-node-build", "debian-node"]) else {
        common::print_skip("mmdebstrap is missing (apt-get install mmdebstrap)");
        return;
    };
    let ex = Example::new(
        "node-native",
        &["BUILD_IMAGE=debian-node-build", "NODE_IMAGE=debian-node"],
    );
    let (store, digest) = ex.lock_build_carry(
        &[
            ("debian-node-build", tars[0].clone()),
            ("debian-node", tars[1].clone()),
        ],
        "node-native",
    );
    let files = files(&store, &digest);
    assert!(
        files.iter().any(|f| f == "app/dist/checksum.node"),
        "no addon"
    );
    assert!(files.iter().any(|f| f == "app/dist/server.js"));
    assert!(files.iter().any(|f| f == "app/node_modules/ms/index.js"));
    for compiler in [
        "usr/bin/gcc",
        "usr/bin/g++",
        "usr/bin/make",
        "usr/bin/python3",
    ] {
        assert!(
            !files.iter().any(|f| f.starts_with(compiler)),
            "{compiler} shipped"
        );
    }
    let c = config(&store, &digest);
    assert_eq!(c["config"]["User"], "node");
    assert_eq!(
        c["config"]["Cmd"],
        serde_json::json!(["node", "dist/server.js"])
    );

    let port = free_port();
    let mut server = serve(&store, &["node-native", "-e", &format!("PORT={port}")]);
    let answer = get(port, "/hello", &mut server);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // FNV-1a of "/hello", computed by the C addon; uid 1000 is `node`.
    let fnv = "/hello".bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    assert!(
        answer.contains(&format!("\"fnv1a\":\"{fnv:08x}\"")),
        "{answer}"
    );
    assert!(answer.contains("\"user\":1000"), "{answer}");
}

#[test]
#[ignore = "slow: a Debian Go base image and a Go build; run by tests/run.sh"]
fn go_server_locks_and_builds_offline_from_a_bundle() {
    common::require_sandbox!();
    let Some(tars) = base_tars(&["debian-go"]) else {
        common::print_skip("mmdebstrap is missing (apt-get install mmdebstrap)");
        return;
    };
    let ex = Example::new("go-server", &["GO_IMAGE=debian-go"]);
    let (store, digest) = ex.lock_build_carry(&[("debian-go", tars[0].clone())], "go-server");
    let files = files(&store, &digest);
    assert!(files.iter().any(|f| f == "server"), "{files:?}");
}
