//! `kiln store` on real temp stores, driving the real binary: crash safety
//! (SIGKILL during writes), concurrent writers, bad stores (newer schema,
//! read-only, full disk), verify and gc.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{kiln, stderr, stdout};

/// Runs `kiln --store STORE ARGS...`.
fn store_cmd(store: &Path, args: &[&str]) -> Output {
    kiln()
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("failed to start kiln")
}

fn add(store: &Path, files: &[&Path]) -> Output {
    let mut cmd = kiln();
    cmd.arg("--store")
        .arg(store)
        .args(["store", "add"])
        .args(files);
    cmd.output().expect("failed to start kiln")
}

#[track_caller]
fn assert_verify_clean(store: &Path) {
    let out = store_cmd(store, &["store", "verify"]);
    assert!(
        out.status.success(),
        "verify is not clean:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Deterministic pseudo-random bytes (xorshift), so files do not compress
/// or deduplicate by accident.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn info(store: &Path) -> serde_json::Value {
    let out = store_cmd(store, &["store", "info", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `script` with `sh` in a private mount namespace (mounts vanish with
/// it), with `$KILN` set to the binary under test.
fn in_mount_namespace(script: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KILN", env!("CARGO_BIN_EXE_kiln"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("failed to start unshare")
}

#[test]
fn store_path_follows_flag_env_and_xdg() {
    let out = kiln()
        .args(["--store", "/x/s", "store", "path"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "/x/s\n");
    let out = kiln()
        .env("KILN_STORE", "/y/s")
        .args(["store", "path"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "/y/s\n");
    let out = kiln()
        .env("XDG_DATA_HOME", "/data")
        .env("HOME", "/home/me")
        .args(["store", "path"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "/data/kiln\n");
    let out = kiln()
        .env("HOME", "/home/me")
        .args(["store", "path"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "/home/me/.local/share/kiln\n");
}

#[test]
fn add_prints_hashes_and_roots_each_file_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = write_file(dir.path(), "a", b"hello");
    let out = add(&store, &[&a, &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = format!("blake3:{}", blake3::hash(b"hello").to_hex());
    assert_eq!(stdout(&out), format!("{expected}\n{expected}\n"));
    let info = info(&store);
    assert_eq!(info["objects"]["count"], 1);
    assert_eq!(info["roots"], 1);
    let out = store_cmd(&store, &["store", "add", "--json", a.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["hash"], expected);
    assert_eq!(json[0]["size"], 5);
    // A directory is refused with a clear message.
    let out = store_cmd(&store, &["store", "add", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

/// SIGKILL `kiln store add` at 60 points spread over its run: each time
/// verify is clean, and at the end everything that was reported added is
/// there and gc reclaims every leftover.
#[test]
fn sigkill_during_add_never_leaves_a_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let big: Vec<PathBuf> = (0..3)
        .map(|i| write_file(dir.path(), &format!("big{i}"), &bytes(i, 2 << 20)))
        .collect();
    let mut files: Vec<&Path> = big.iter().map(PathBuf::as_path).collect();
    let first = write_file(dir.path(), "first", b"first");
    files.push(&first);
    let out = add(&store, &files);
    assert!(out.status.success(), "{}", stderr(&out));
    files.pop();
    // How long an uninterrupted add of the same files into the existing
    // store takes: the kills are spread over that.
    let start = Instant::now();
    assert!(add(&store, &files).status.success());
    let full = start.elapsed().max(Duration::from_millis(10));

    // Kill until 50 runs died mid-way (a run that finished before its kill
    // counts for nothing), at points cycling through [0, 1.1 × full).
    let mut killed = 0;
    let mut round = 0u32;
    while killed < 50 {
        assert!(
            round < 200,
            "only {killed} of {round} runs were killed mid-way"
        );
        // A fresh file each round, so every round has a new row to commit.
        let unique = write_file(
            dir.path(),
            &format!("u{round}"),
            &bytes(100 + u64::from(round), 4096),
        );
        let mut cmd = kiln();
        cmd.arg("--store")
            .arg(&store)
            .args(["store", "add"])
            .args(&files)
            .arg(&unique)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(full * ((round * 7) % 33) / 30);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
            child.kill().unwrap();
        }
        child.wait().unwrap();
        assert_verify_clean(&store);
        round += 1;
    }

    // The next add succeeds, and what was added before is still there.
    let mut all = files.clone();
    all.push(&first);
    let out = add(&store, &all);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = store_cmd(&store, &["store", "gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "gc left {tmp:?} in tmp/");
    assert_verify_clean(&store);
    assert!(info(&store)["objects"]["count"].as_u64().unwrap() >= 4);
}

/// Four processes add overlapping files to one new store at once.
#[test]
fn concurrent_adds_of_overlapping_files_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let files: Vec<PathBuf> = (0..6)
        .map(|i| write_file(dir.path(), &format!("f{i}"), &bytes(i, 200_000)))
        .collect();
    let children: Vec<_> = (0..4)
        .map(|p| {
            let mut cmd = kiln();
            cmd.arg("--store")
                .arg(&store)
                .args(["store", "add"])
                .args(&files[p..p + 3])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).lines().count(), 3);
    }
    assert_verify_clean(&store);
    let info = info(&store);
    assert_eq!(info["objects"]["count"], 6);
    assert_eq!(info["roots"], 6);
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = write_file(dir.path(), "a", b"a");
    assert!(add(&store, &[&a]).status.success());
    let db = store.join("kiln.sqlite");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let b = write_file(dir.path(), "b", b"b");
    let out = add(&store, &[&b]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("schema version 99"), "{err}");
    assert!(err.contains("newer than the "), "{err}");
    assert!(err.contains("hint: upgrade kiln"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn read_only_store_gives_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = write_file(dir.path(), "a", b"kept");
    assert!(add(&store, &[&a]).status.success());
    let b = write_file(dir.path(), "b", b"new");
    let out = if is_root() {
        // Root ignores file modes: make the store a read-only bind mount
        // in a private mount namespace instead.
        in_mount_namespace(
            r#"mount --bind "$S" "$S" && mount -o remount,bind,ro "$S" && exec "$KILN" --store "$S" store add "$B""#,
            &[("S", &store), ("B", &b)],
        )
    } else {
        let chmod = |mode| {
            Command::new("chmod")
                .args(["-R", mode])
                .arg(&store)
                .status()
                .unwrap()
        };
        chmod("a-w");
        // As root of its own user namespace (`kiln unshare`) kiln would
        // ignore file modes too: keep it in ours.
        let out = kiln()
            .env("KILN_USERNS", "0")
            .arg("--store")
            .arg(&store)
            .args(["store", "add"])
            .arg(&b)
            .output()
            .unwrap();
        chmod("u+w");
        out
    };
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the store {} is not writable", store.display())),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert_verify_clean(&store);
    let info = info(&store);
    assert_eq!(info["objects"]["count"], 1);
}

#[test]
fn full_disk_gives_a_clear_error_and_loses_nothing() {
    if !is_root() {
        #[expect(clippy::print_stderr, reason = "a skipped test says why")]
        {
            eprintln!("skipped: mounting a small tmpfs needs root");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let small = write_file(dir.path(), "small", b"small");
    let big = write_file(dir.path(), "big", &bytes(7, 3 << 20));
    let after = write_file(dir.path(), "after", b"after");
    // Everything on the tmpfs happens inside the namespace.
    let out = in_mount_namespace(
        r#"set -u
mount -t tmpfs -o size=2m tmpfs "$M" || exit 99
S="$M/store"
"$KILN" --store "$S" store add "$SMALL" >/dev/null || exit 98
"$KILN" --store "$S" store add "$BIG" >/dev/null 2>"$M/err"
echo "big-exit=$?"
cat "$M/err"
"$KILN" --store "$S" store verify || exit 97
"$KILN" --store "$S" store add "$AFTER" >/dev/null || exit 96
"$KILN" --store "$S" store info --json
"#,
        &[
            ("M", &mnt),
            ("SMALL", &small),
            ("BIG", &big),
            ("AFTER", &after),
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("big-exit=1"), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(
        text.contains("hint: the filesystem holding the store is full"),
        "{text}"
    );
    let json_start = text.find('{').unwrap();
    let info: serde_json::Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(info["objects"]["count"], 2, "{text}");
}

#[test]
fn verify_names_corrupt_and_missing_objects_and_repair_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let files: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|n| write_file(dir.path(), n, n.as_bytes()))
        .collect();
    let out = add(
        &store,
        &files.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    );
    let hashes: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    let object = |h: &str| {
        let hex = h.strip_prefix("blake3:").unwrap();
        store.join("objects").join(&hex[..2]).join(hex)
    };
    let corrupt = object(&hashes[0]);
    std::fs::remove_file(&corrupt).unwrap();
    std::fs::write(&corrupt, b"tampered").unwrap();
    std::fs::remove_file(object(&hashes[1])).unwrap();

    let out = store_cmd(&store, &["store", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("corrupt object {}", hashes[0])),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "found blake3:{}",
            blake3::hash(b"tampered").to_hex()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("missing object {}", hashes[1])),
        "{text}"
    );
    assert!(!text.contains(&hashes[2]), "{text}");
    assert!(stderr(&out).contains("2 problems"), "{}", stderr(&out));

    let out = store_cmd(&store, &["store", "verify", "--repair", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["repaired"], true);
    assert_eq!(json["problems"].as_array().unwrap().len(), 2);
    assert_verify_clean(&store);
    let info = info(&store);
    assert_eq!(info["objects"]["count"], 1);
    assert_eq!(info["roots"], 1);
    // Adding the lost file again brings it back.
    assert!(add(&store, &[&files[1]]).status.success());
    assert_verify_clean(&store);
}

#[test]
fn gc_removes_unreachable_items_keeps_rooted_ones_and_dry_run_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let f = write_file(dir.path(), "f", b"version 1");
    let kept = write_file(dir.path(), "kept", b"kept");
    let out = add(&store, &[&f, &kept]);
    let old = stdout(&out).lines().next().unwrap().to_string();
    // Adding the path again with new content moves its root.
    std::fs::write(&f, b"version 2").unwrap();
    let new = stdout(&add(&store, &[&f])).trim().to_string();
    std::fs::write(store.join("tmp/leftover"), b"junk").unwrap();

    let out = store_cmd(&store, &["store", "gc", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("would delete object {old}")),
        "{text}"
    );
    assert!(text.contains("would delete tmp"), "{text}");
    assert!(
        stderr(&out).contains("would delete 2 items"),
        "{}",
        stderr(&out)
    );
    assert_eq!(info(&store)["objects"]["count"], 3);
    assert!(store.join("tmp/leftover").exists());

    let out = store_cmd(&store, &["store", "gc", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deleted = json["deleted"].as_array().unwrap();
    assert_eq!(deleted.len(), 2, "{json}");
    assert_eq!(deleted[0]["id"], old.as_str());
    assert_eq!(deleted[0]["bytes"], 9);
    assert!(!store.join("tmp/leftover").exists());
    let info = info(&store);
    assert_eq!(info["objects"]["count"], 2);
    assert!(!stdout(&store_cmd(&store, &["store", "gc"])).contains(&new));
    assert_verify_clean(&store);
}
