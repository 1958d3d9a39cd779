//! `kiln plan`: derivation hashes cover exactly the inputs that can change
//! an output (issue #3 acceptance): the same Dockerfile and context give the
//! same hashes wherever they live and whatever their mtimes; an edit changes
//! the step that reads it and everything after, nothing before and nothing
//! in unrelated stages.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{kiln, stderr};

/// Imports a tiny base image into `store` (the same bytes every time, so
/// the same digest in every store) and returns `busybox@<digest>`: a base
/// image pinned by digest must be in the store (or pullable) to plan.
fn base(store: &Path) -> String {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/os-release"), "ID=base\n").unwrap();
    std::fs::set_permissions(
        tree.path().join("etc"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        tree.path().join("etc/os-release"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = kiln()
        .env("KILN_STORE", store)
        .args([
            "image",
            "import",
            tree.path().to_str().unwrap(),
            "--tag",
            "busybox",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    format!("busybox@{}", String::from_utf8(out.stdout).unwrap().trim())
}

const DOCKERFILE: &str = "\
ARG BASE
FROM ${BASE} AS deps
WORKDIR /src
COPY go.mod ./
RUN echo deps > /deps

FROM ${BASE} AS unrelated
COPY other.txt /other

FROM deps AS build
COPY *.go ./
COPY assets/ /assets/
RUN echo build > /out

FROM scratch
COPY --from=build /out /out
LABEL version=1
";

fn make_context(dir: &Path) {
    std::fs::create_dir_all(dir.join("assets/img")).unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.join("go.mod"), "module x\n").unwrap();
    std::fs::write(dir.join("main.go"), "package main\n").unwrap();
    std::fs::write(dir.join("util.go"), "package main // util\n").unwrap();
    std::fs::write(dir.join("other.txt"), "other\n").unwrap();
    std::fs::write(dir.join("assets/a.css"), "body{}\n").unwrap();
    std::fs::write(dir.join("assets/img/logo.svg"), "<svg/>\n").unwrap();
    std::fs::write(dir.join("notes.md"), "ignored\n").unwrap();
    std::fs::write(dir.join(".dockerignore"), "*.md\n").unwrap();
}

/// Step hashes by (stage name, line) and stage hashes by name.
fn plan_hashes(dir: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let store = tempfile::tempdir().unwrap();
    plan_hashes_in(dir, store.path(), extra)
}

fn plan_hashes_in(dir: &Path, store: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = kiln();
    cmd.current_dir(dir)
        .env("KILN_STORE", store)
        .args([
            "plan",
            "--json",
            "--build-arg",
            &format!("BASE={}", base(store)),
            ".",
        ])
        .args(extra);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut hashes = BTreeMap::new();
    for stage in plan["stages"].as_array().unwrap() {
        let name = stage["name"].as_str().unwrap_or("final").to_string();
        hashes.insert(
            name.clone(),
            stage["derivation"]["hash"].as_str().unwrap().to_string(),
        );
        for step in stage["steps"].as_array().unwrap() {
            if let Some(hash) = step["derivation"]["hash"].as_str() {
                let line = step["span"]["start"].as_u64().unwrap();
                hashes.insert(format!("{name}:{line:02}"), hash.to_string());
            }
        }
    }
    hashes
}

fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.keys()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[test]
fn same_inputs_elsewhere_and_touched_give_the_same_hashes() {
    let one = tempfile::tempdir().unwrap();
    make_context(one.path());
    let before = plan_hashes(one.path(), &[]);

    // Another directory, files written in another order, every mtime moved.
    let two = tempfile::tempdir().unwrap();
    let nested = two.path().join("some/other/place");
    make_context(&nested);
    for entry in ["go.mod", "main.go", "util.go", "assets/a.css", "other.txt"] {
        let f = std::fs::File::options()
            .append(true)
            .open(nested.join(entry))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
    }
    assert_eq!(before, plan_hashes(&nested, &[]));
}

#[test]
fn same_inputs_from_a_fresh_git_clone_give_the_same_hashes() {
    let src = tempfile::tempdir().unwrap();
    make_context(src.path());
    let before = plan_hashes(src.path(), &[]);
    let git = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(src.path(), &["init", "-q"]);
    git(src.path(), &["add", "-A"]);
    git(src.path(), &["commit", "-qm", "x"]);
    let clone = tempfile::tempdir().unwrap();
    git(
        clone.path(),
        &["clone", "-q", src.path().to_str().unwrap(), "c"],
    );
    let cloned = clone.path().join("c");
    // .dockerignore'd notes.md travels too; .git is extra but unreferenced.
    assert_eq!(before, plan_hashes(&cloned, &[]));
}

#[test]
fn editing_a_copied_file_changes_that_step_and_later_only() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let before = plan_hashes(dir.path(), &[]);
    std::fs::write(dir.path().join("util.go"), "package main // changed\n").unwrap();
    let after = plan_hashes(dir.path(), &[]);
    assert_eq!(
        changed(&before, &after),
        vec![
            "build", "build:11", "build:12", "build:13", "final", "final:16"
        ]
    );
}

#[test]
fn editing_an_ignored_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let before = plan_hashes(dir.path(), &[]);
    std::fs::write(dir.path().join("notes.md"), "changed\n").unwrap();
    std::fs::write(
        dir.path().join("unused.bin"),
        "not referenced by any COPY\n",
    )
    .unwrap();
    assert_eq!(before, plan_hashes(dir.path(), &[]));
}

#[test]
fn a_mode_change_changes_the_hash_but_group_write_does_not() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let before = plan_hashes(dir.path(), &[]);
    let path = dir.path().join("go.mod");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    assert_eq!(
        before,
        plan_hashes(dir.path(), &[]),
        "umask 002 vs 022 must not matter"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let after = plan_hashes(dir.path(), &[]);
    assert!(changed(&before, &after).contains(&"deps:04".to_string()));
    assert!(!changed(&before, &after).contains(&"deps:03".to_string()));
}

#[test]
fn an_unneeded_stage_is_absent_from_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let all = plan_hashes(dir.path(), &[]);
    assert!(!all.contains_key("unrelated"));
    let only = plan_hashes(dir.path(), &["--target", "unrelated"]);
    assert_eq!(
        only.keys().cloned().collect::<Vec<_>>(),
        vec!["unrelated", "unrelated:08"]
    );
}

#[test]
fn build_args_and_source_date_epoch_enter_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let zero = plan_hashes(dir.path(), &[]);
    let one = plan_hashes(dir.path(), &["--source-date-epoch", "1"]);
    assert_eq!(changed(&zero, &one).len(), zero.len());
}

#[test]
fn a_missing_copy_source_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    std::fs::remove_file(dir.path().join("go.mod")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = kiln()
        .current_dir(dir.path())
        .env("KILN_STORE", store.path())
        .args([
            "plan",
            "--build-arg",
            &format!("BASE={}", base(store.path())),
            ".",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Dockerfile:4:1: `go.mod` not found in the build context"),
        "{}",
        stderr(&out)
    );
}

/// `(from the stat cache, read)` as the context line on stderr says.
fn context_counts(dir: &Path, store: &Path) -> (u64, u64) {
    let out = kiln()
        .current_dir(dir)
        .env("KILN_STORE", store)
        .args(["plan", "--build-arg", &format!("BASE={}", base(store)), "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("context: "))
        .unwrap_or_else(|| panic!("no context line in {err}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |after: &str| -> u64 {
        let i = words.iter().position(|w| *w == after).unwrap();
        words[i - 1].parse().unwrap()
    };
    (number("files"), number("read"))
}

#[test]
fn the_stat_cache_skips_unchanged_files_and_never_hides_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    make_context(dir.path());
    // Files changed less than a second before a walk are never trusted by
    // their stat fields (coarse file timestamps): they are read every time.
    assert_eq!(context_counts(dir.path(), store.path()), (0, 8));
    assert_eq!(context_counts(dir.path(), store.path()), (0, 8));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = plan_hashes_in(dir.path(), store.path(), &[]);
    assert_eq!(context_counts(dir.path(), store.path()), (8, 0));
    assert_eq!(first, plan_hashes_in(dir.path(), store.path(), &[]));
    // Same size, mtime put back: only ctime and content tell.
    let path = dir.path().join("main.go");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "package mainX").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(context_counts(dir.path(), store.path()), (7, 1));
    let second = plan_hashes_in(dir.path(), store.path(), &[]);
    assert!(changed(&first, &second).contains(&"build:11".to_string()));
}

#[test]
fn planned_derivations_can_be_shown() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let hashes = plan_hashes_in(dir.path(), store.path(), &[]);
    let step = &hashes["build:11"];
    let out = kiln()
        .env("KILN_STORE", store.path())
        .args(["show-derivation", step])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("kiln-drv-v1\nkind 4:step\n"), "{text}");
    assert!(text.contains("7:main.go"), "{text}");
    assert_eq!(
        &format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex()),
        step
    );

    let out = kiln()
        .env("KILN_STORE", store.path())
        .args([
            "show-derivation",
            "blake3:0000000000000000000000000000000000000000000000000000000000000000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not in the store"),
        "{}",
        stderr(&out)
    );
}
