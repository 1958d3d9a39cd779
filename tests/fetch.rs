//! Fetch steps, kiln.lock, `kiln lock`, `--offline` and store bundles, end
//! to end over a busybox base image and a small HTTP server on 127.0.0.1
//! (in this process, files changeable mid-test).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{kiln, stderr, stdout};

/// A tiny HTTP/1.0 file server on 127.0.0.1 (a port from the kernel). It
/// stops when dropped, and by itself after two minutes.
struct Server {
    port: u16,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (files.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut reader = BufReader::new(conn);
                        let mut request = String::new();
                        if reader.read_line(&mut request).is_err() {
                            continue;
                        }
                        loop {
                            let mut header = String::new();
                            match reader.read_line(&mut header) {
                                Ok(0) | Err(_) => break,
                                Ok(_) if header.trim().is_empty() => break,
                                Ok(_) => {}
                            }
                        }
                        let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                        let body = f.lock().unwrap().get(&path).cloned();
                        let mut conn = reader.into_inner();
                        let _ = match body {
                            Some(b) => conn
                                .write_all(
                                    format!(
                                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n",
                                        b.len()
                                    )
                                    .as_bytes(),
                                )
                                .and_then(|()| conn.write_all(&b)),
                            None => conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                        };
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server {
            port,
            files,
            stop,
            thread: Some(thread),
        }
    }

    fn put(&self, path: &str, body: &str) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_owned(), body.as_bytes().to_vec());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A temp dir with a busybox image tar and stores made on demand.
struct Ctx {
    dir: tempfile::TempDir,
    tar: PathBuf,
}

impl Ctx {
    fn new() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        let tar = common::busybox_tar(dir.path());
        Ctx { dir, tar }
    }

    /// A store named `name` with `busybox` imported.
    fn store(&self, name: &str) -> PathBuf {
        let store = self.dir.path().join(name);
        let out = self.kiln(
            &store,
            &[
                "image",
                "import",
                self.tar.to_str().unwrap(),
                "--tag",
                "busybox",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        store
    }

    fn kiln(&self, store: &Path, args: &[&str]) -> Output {
        kiln()
            .arg("--store")
            .arg(store)
            .args(args)
            .output()
            .unwrap()
    }

    /// Writes the context `name` with a Dockerfile.
    fn context(&self, name: &str, dockerfile: &str) -> PathBuf {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("Dockerfile"), dockerfile).unwrap();
        root
    }

    fn ok(&self, store: &Path, args: &[&str]) -> String {
        let out = self.kiln(store, args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed: {}",
            stderr(&out)
        );
        stdout(&out).lines().last().unwrap_or_default().to_owned()
    }

    fn fails(&self, store: &Path, args: &[&str]) -> String {
        let out = self.kiln(store, args);
        assert!(
            !out.status.success(),
            "kiln {args:?} succeeded: {}",
            stderr(&out)
        );
        stderr(&out)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256(text: &str) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

/// A server with `/data.txt` and `/file.txt`, and a busybox context.
fn served() -> (Server, Ctx) {
    let server = Server::start();
    server.put("/data.txt", "data\n");
    server.put("/file.txt", "file\n");
    (server, Ctx::new())
}

fn fetch_dockerfile(server: &Server) -> String {
    format!(
        "FROM busybox AS web\n\
         RUN --network=default wget -q -O /data.txt {}\n\
         ADD {} /added/\n\
         RUN cat /data.txt /added/file.txt > /both\n",
        server.url("/data.txt"),
        server.url("/file.txt")
    )
}

#[test]
fn an_unpinned_fetch_step_fails_before_anything_runs_naming_its_line_and_kiln_lock() {
    common::require_sandbox!();
    let (server, c) = served();
    let store = c.store("store");
    let ctx = c.context(
        "ctx",
        &fetch_dockerfile(&server).replace("AS web\n", "AS web\nRUN echo first > /f\n"),
    );
    let err = c.fails(&store, &["build", s(&ctx)]);
    assert!(err.contains("Dockerfile:3:1: fetch step"), "{err}");
    assert!(err.contains("has no pin: run `kiln lock`"), "{err}");
    assert!(
        err.contains(&format!(
            "hint: `kiln lock {}` runs the fetch steps",
            ctx.display()
        )),
        "{err}"
    );
    // The hint repeats the build's flags.
    let err = c.fails(
        &store,
        &["build", s(&ctx), "--build-arg", "X=1", "--target", "web"],
    );
    assert!(
        err.contains(&format!(
            "`kiln lock {} --target web --build-arg X=1`",
            ctx.display()
        )),
        "{err}"
    );
    // Nothing ran, not even the step before it.
    assert!(!err.contains(" built "), "{err}");
}

#[test]
fn a_run_without_network_cannot_reach_the_network_and_the_error_names_the_line() {
    common::require_sandbox!();
    let (server, c) = served();
    let store = c.store("store");
    let ctx = c.context(
        "ctx",
        &format!(
            "FROM busybox\nWORKDIR /w\nRUN wget -q -O /data.txt {}\n",
            server.url("/data.txt")
        ),
    );
    let err = c.fails(&store, &["build", s(&ctx)]);
    assert!(
        err.contains("Dockerfile:3:1: RUN failed with exit code"),
        "{err}"
    );
    assert!(
        err.contains("Connection refused") || err.contains("can't connect"),
        "{err}"
    );
    // `--network=none` is no fetch step either.
    let none = c.context(
        "none",
        &format!(
            "FROM busybox\nRUN --network=none wget -q -O /data.txt {}\n",
            server.url("/data.txt")
        ),
    );
    let err = c.fails(&store, &["build", s(&none)]);
    assert!(err.contains("Dockerfile:2:1: RUN failed"), "{err}");
}

#[test]
fn lock_then_builds_in_fresh_stores_give_the_same_digest_and_a_moved_tag_does_not_move_them() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context("ctx", &fetch_dockerfile(&server));
    let printed = c.ok(&a, &["lock", s(&ctx)]);
    assert_eq!(printed, ctx.join("kiln.lock").display().to_string());
    let lock = std::fs::read_to_string(ctx.join("kiln.lock")).unwrap();
    assert!(lock.contains("version = 1"), "{lock}");
    assert!(
        lock.contains("[[image]]\nreference = \"busybox\""),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("content = \"{}\"", sha256("file\n"))),
        "{lock}"
    );
    assert_eq!(lock.matches("[[fetch]]").count(), 2, "{lock}");
    let one = c.ok(&a, &["build", s(&ctx)]);
    let b = c.store("b");
    let two = c.ok(&b, &["build", s(&ctx)]);
    assert_eq!(one, two);

    // Moving the tag does not move the build: the pin holds.
    let other = c.dir.path().join("other.tar");
    let rootfs = c.dir.path().join("rootfs");
    std::fs::write(rootfs.join("etc/motd"), "moved\n").unwrap();
    let st = std::process::Command::new("tar")
        .args(["--sort=name", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&other)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    c.ok(&b, &["image", "import", s(&other), "--tag", "busybox"]);
    assert_eq!(c.ok(&b, &["build", s(&ctx)]), one);
    // `--update busybox` follows the tag (and re-runs the fetch steps on it).
    c.ok(&b, &["lock", s(&ctx), "--update", "busybox"]);
    let moved = std::fs::read_to_string(ctx.join("kiln.lock")).unwrap();
    assert_ne!(moved, lock);
    assert_ne!(c.ok(&b, &["build", s(&ctx)]), one);
}

#[test]
fn a_pinned_add_whose_upstream_changes_fails_with_expected_and_found_digests() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context(
        "ctx",
        &format!(
            "FROM busybox AS get\nADD {} /srv/\n",
            server.url("/file.txt")
        ),
    );
    c.ok(&a, &["lock", s(&ctx)]);
    let first = c.ok(&a, &["build", s(&ctx)]);
    server.put("/file.txt", "changed upstream\n");
    // The store has the output: nothing is fetched, nothing changes.
    assert_eq!(c.ok(&a, &["build", s(&ctx)]), first);
    // A fresh store fetches, and the content does not match.
    let b = c.store("b");
    let err = c.fails(&b, &["build", s(&ctx)]);
    assert!(
        err.contains(&format!(
            "Dockerfile:2:1: the fetch step's downloaded content differs from its pin: expected {}, found {}",
            sha256("file\n"),
            sha256("changed upstream\n")
        )),
        "{err}"
    );
    assert!(err.contains("kiln lock --update get"), "{err}");
    // Nothing was stored under the step's name: after a fix upstream it builds.
    server.put("/file.txt", "file\n");
    assert_eq!(c.ok(&b, &["build", s(&ctx)]), first);
}

#[test]
fn a_refetch_that_differs_from_the_pin_lists_the_files_and_stores_nothing() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context("ctx", &fetch_dockerfile(&server));
    c.ok(&a, &["lock", s(&ctx)]);
    let lock = std::fs::read_to_string(ctx.join("kiln.lock")).unwrap();
    server.put("/data.txt", "other data\n");
    let err = c.fails(&a, &["build", s(&ctx), "--no-cache"]);
    assert!(
        err.contains(
            "Dockerfile:2:1: the fetch step's layer differs from its pin: expected sha256:"
        ),
        "{err}"
    );
    assert!(err.contains("files that differ"), "{err}");
    assert!(err.contains("\n  ~ /data.txt\n"), "{err}");
    assert_eq!(
        std::fs::read_to_string(ctx.join("kiln.lock")).unwrap(),
        lock
    );
    let verify = c.kiln(&a, &["store", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    // Pinning the new output is one command.
    c.ok(&a, &["lock", s(&ctx), "--update", "web"]);
    let updated = std::fs::read_to_string(ctx.join("kiln.lock")).unwrap();
    assert_ne!(updated, lock);
    c.ok(&a, &["build", s(&ctx), "--no-cache"]);
}

#[test]
fn add_checksum_pins_in_the_dockerfile_without_kiln_lock() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let good = c.context(
        "good",
        &format!(
            "FROM busybox\nADD --checksum={} {} /f\n",
            sha256("file\n"),
            server.url("/file.txt")
        ),
    );
    c.ok(&a, &["build", s(&good)]);
    assert!(!good.join("kiln.lock").exists());
    let bad = c.context(
        "bad",
        &format!(
            "FROM busybox\nADD --checksum={} {} /f\n",
            sha256("other\n"),
            server.url("/file.txt")
        ),
    );
    let err = c.fails(&a, &["build", s(&bad)]);
    assert!(
        err.contains(&format!(
            "expected {}, found {}",
            sha256("other\n"),
            sha256("file\n")
        )),
        "{err}"
    );
}

#[test]
fn a_malformed_newer_or_stale_lock_file_gives_a_clear_error() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context("ctx", &fetch_dockerfile(&server));
    let lock = ctx.join("kiln.lock");

    std::fs::write(
        &lock,
        "version = 1\n[[image]]\nreference = \"busybox\"\ndigest = \"sha256:12\"\n",
    )
    .unwrap();
    let err = c.fails(&a, &["build", s(&ctx)]);
    assert!(
        err.contains(&format!(
            "{}:4:10: `digest` is not a digest",
            lock.display()
        )),
        "{err}"
    );
    // kiln lock refuses to rewrite what it cannot read.
    let err = c.fails(&a, &["lock", s(&ctx)]);
    assert!(err.contains("is not a digest"), "{err}");

    std::fs::write(&lock, "version = 7\n[[sbom]]\n").unwrap();
    let err = c.fails(&a, &["build", s(&ctx)]);
    assert!(
        err.contains("is lock file version 7, newer than this kiln reads (up to 1)"),
        "{err}"
    );
    assert!(err.contains("hint: upgrade kiln"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        "version = 7\n[[sbom]]\n"
    );

    std::fs::remove_file(&lock).unwrap();
    c.ok(&a, &["lock", s(&ctx)]);
    let good = std::fs::read_to_string(&lock).unwrap();
    // The stage is renamed: its pins name a stage that is gone.
    std::fs::write(
        ctx.join("Dockerfile"),
        fetch_dockerfile(&server).replace("AS web", "AS site"),
    )
    .unwrap();
    let err = c.fails(&a, &["build", s(&ctx)]);
    assert!(err.contains("pins a fetch step of stage `web`, which the Dockerfile no longer has (its stages: site)"), "{err}");
    // kiln lock repairs it.
    c.ok(&a, &["lock", s(&ctx)]);
    let repaired = std::fs::read_to_string(&lock).unwrap();
    assert!(
        repaired.contains("stage = \"site\"") && !repaired.contains("stage = \"web\""),
        "{repaired}"
    );
    assert_eq!(
        repaired
            .replace("\"site\"", "\"web\"")
            .lines()
            .filter(|l| !l.starts_with("inputs"))
            .collect::<Vec<_>>(),
        good.lines()
            .filter(|l| !l.starts_with("inputs"))
            .collect::<Vec<_>>()
    );

    // Something the fetch step runs on changed: the pin is stale.
    std::fs::write(
        ctx.join("Dockerfile"),
        fetch_dockerfile(&server)
            .replace("AS web\n", "AS web\nRUN echo new > /before\n")
            .replace("AS web", "AS site"),
    )
    .unwrap();
    let err = c.fails(&a, &["build", s(&ctx)]);
    assert!(
        err.contains("Dockerfile:3:1: kiln.lock pins this fetch step"),
        "{err}"
    );
    assert!(err.contains("for other inputs"), "{err}");
}

#[test]
fn kiln_lock_is_unchanged_by_unrelated_edits() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let original = fetch_dockerfile(&server);
    let ctx = c.context("ctx", &original);
    c.ok(&a, &["lock", s(&ctx)]);
    let lock = std::fs::read_to_string(ctx.join("kiln.lock")).unwrap();
    let digest = c.ok(&a, &["build", s(&ctx)]);
    let edited = format!(
        "# syntax=docker/dockerfile:1\n# a comment, and a stage before the others\nFROM busybox AS tools\nRUN echo tools > /t\n\n{}LABEL org.example.edited=yes\nRUN echo after > /after\nCMD [\"cat\", \"/both\"]\n",
        original.replace("RUN --network=default", "RUN   --network=default")
    );
    std::fs::write(ctx.join("Dockerfile"), &edited).unwrap();
    // The pins still hold: the build needs no new lock.
    let rebuilt = c.ok(&a, &["build", s(&ctx)]);
    assert_ne!(rebuilt, digest);
    c.ok(&a, &["lock", s(&ctx)]);
    assert_eq!(
        std::fs::read_to_string(ctx.join("kiln.lock")).unwrap(),
        lock
    );
}

#[test]
fn lock_pins_are_gc_roots_until_the_lock_file_goes() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context("ctx", &fetch_dockerfile(&server));
    c.ok(&a, &["lock", s(&ctx)]);
    c.ok(&a, &["image", "rm", "busybox"]);
    c.ok(&a, &["store", "gc"]);
    // Base image and fetch outputs survived: an offline build works.
    c.ok(&a, &["build", s(&ctx), "--offline"]);
    std::fs::remove_file(ctx.join("kiln.lock")).unwrap();
    c.ok(&a, &["store", "gc"]);
    let out = c.kiln(&a, &["store", "info", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blobs"]["count"], 0, "{v}");
    assert_eq!(v["roots"], 0, "{v}");
}

#[test]
fn offline_lists_every_missing_input_and_builds_nothing() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context("ctx", &fetch_dockerfile(&server));
    c.ok(&a, &["lock", s(&ctx)]);
    // A store with nothing in it: the base image and both fetch outputs.
    let empty = c.dir.path().join("empty");
    let err = c.fails(&empty, &["build", s(&ctx), "--offline"]);
    assert!(
        err.contains("`--offline`: 3 inputs of this build are missing from the store:"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:1: image busybox@sha256:"), "{err}");
    assert!(
        err.contains("Dockerfile:2: the output of fetch step"),
        "{err}"
    );
    assert!(
        err.contains("Dockerfile:3: the output of fetch step"),
        "{err}"
    );
    assert!(
        err.contains("hint: carry them over with `kiln store export --plan"),
        "{err}"
    );
    // Base present, fetch outputs missing: just those.
    let b = c.store("b");
    let err = c.fails(&b, &["build", s(&ctx), "--offline"]);
    assert!(err.contains("2 inputs"), "{err}");
    assert!(!err.contains(" built "), "{err}");
}

/// `unshare --net` gives kiln a network namespace with no interface up:
/// a build that tried to open a connection would fail.
fn offline_build(store: &Path, ctx: &Path) -> Output {
    std::process::Command::new("unshare")
        .arg("--net")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--store")
        .arg(store)
        .args(["build", s(ctx), "--offline"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap()
}

#[test]
fn a_bundle_carries_a_build_to_an_offline_store_with_the_same_digest() {
    common::require_sandbox!();
    if !common::is_root() {
        common::print_skip("`unshare --net` needs root");
        return;
    }
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context("ctx", &fetch_dockerfile(&server));
    c.ok(&a, &["lock", s(&ctx)]);
    let digest = c.ok(&a, &["build", s(&ctx)]);
    let bundle = c.dir.path().join("bundle.tar");
    c.ok(
        &a,
        &["store", "export", "--plan", s(&ctx), "-o", s(&bundle)],
    );
    drop(server);

    // A second machine: a fresh store, no network at all.
    let b = c.dir.path().join("b");
    c.ok(&b, &["store", "import", s(&bundle)]);
    let out = offline_build(&b, &ctx);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().last().unwrap(), digest);
    let verify = c.kiln(&b, &["store", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));

    // `--with-outputs` carries the built steps too: nothing is rebuilt.
    let full = c.dir.path().join("full.tar");
    c.ok(
        &a,
        &[
            "store",
            "export",
            "--plan",
            s(&ctx),
            "--with-outputs",
            "-o",
            s(&full),
        ],
    );
    let d = c.dir.path().join("d");
    c.ok(&d, &["store", "import", s(&full)]);
    let out = offline_build(&d, &ctx);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().last().unwrap(), digest);
    assert!(!stderr(&out).contains(" built "), "{}", stderr(&out));
    // Local images travel with `--image`, tag and all.
    let images = c.dir.path().join("images.tar");
    c.ok(
        &a,
        &["store", "export", "--image", "busybox", "-o", s(&images)],
    );
    let e = c.dir.path().join("e");
    c.ok(&e, &["store", "import", s(&images)]);
    let listed = c.kiln(&e, &["image", "ls"]);
    assert!(stdout(&listed).contains("busybox"), "{}", stdout(&listed));
}

#[test]
fn a_bad_bundle_adds_nothing() {
    common::require_sandbox!();
    let (server, c) = served();
    let a = c.store("a");
    let ctx = c.context("ctx", &fetch_dockerfile(&server));
    c.ok(&a, &["lock", s(&ctx)]);
    let bundle = c.dir.path().join("bundle.tar");
    c.ok(
        &a,
        &["store", "export", "--plan", s(&ctx), "-o", s(&bundle)],
    );
    // Flip one byte in the middle of the largest blob (a layer).
    let mut bytes = std::fs::read(&bundle).unwrap();
    let (mut at, mut best, mut pos) = (0, 0, 0);
    while pos + 512 <= bytes.len() && bytes[pos] != 0 {
        let size_field = String::from_utf8_lossy(&bytes[pos + 124..pos + 135]).to_string();
        let size = usize::from_str_radix(size_field.trim_matches(char::from(0)).trim(), 8).unwrap();
        if size > best {
            (best, at) = (size, pos + 512 + size / 2);
        }
        pos += 512 + size.div_ceil(512) * 512;
    }
    assert!(best > 1000, "no layer in the bundle");
    bytes[at] ^= 0xff;
    let bad = c.dir.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let b = c.dir.path().join("b");
    let err = c.fails(&b, &["store", "import", s(&bad)]);
    assert!(err.contains("is unusable: blob sha256:"), "{err}");
    assert!(
        err.contains("hashed to sha256:") && err.contains("it is damaged"),
        "{err}"
    );
    let out = c.kiln(&b, &["store", "info", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blobs"]["count"], 0, "{v}");
    assert_eq!(v["derivations"]["count"], 0, "{v}");
}

#[test]
fn proxy_variables_reach_fetch_steps_only_and_enter_no_hash() {
    common::require_sandbox!();
    let c = Ctx::new();
    let a = c.store("a");
    let ctx = c.context(
        "ctx",
        "FROM busybox AS web\n\
         RUN --network=default sh -c 'echo \"fetch: $HTTP_PROXY $no_proxy\" > /fetch'\n\
         RUN sh -c 'echo \"plain: $HTTP_PROXY\" > /plain'\n",
    );
    let plan = |proxy: bool| {
        let mut cmd = kiln();
        cmd.arg("--store").arg(&a).args(["plan", s(&ctx), "--json"]);
        if proxy {
            cmd.env("HTTP_PROXY", "http://proxy.invalid:3128")
                .env("no_proxy", "localhost");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(plan(false), plan(true));
    let out = kiln()
        .arg("--store")
        .arg(&a)
        .args(["lock", s(&ctx)])
        .env("HTTP_PROXY", "http://proxy.invalid:3128")
        .env("no_proxy", "localhost")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    c.ok(&a, &["build", s(&ctx), "-t", "proxied"]);
    let out = c.kiln(&a, &["run", "proxied", "--", "cat", "/fetch", "/plain"]);
    assert_eq!(
        stdout(&out),
        "fetch: http://proxy.invalid:3128 localhost\nplain: \n"
    );
}
