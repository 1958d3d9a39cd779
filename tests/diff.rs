#![allow(clippy::print_stderr, reason = "tests report skips on stderr")]

//! `kiln diff` and `kiln build --check` end to end: image pairs made by
//! kiln itself (`kiln image import` of generated trees, `kiln build`), by
//! umoci and by skopeo, each differing in one way, reported exactly and
//! with diff(1)'s exit status; derivation diffs with `--plan`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{busybox_rootfs, kiln, stderr, stdout};

struct Ctx {
    dir: tempfile::TempDir,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn kiln(&self, args: &[&str]) -> Output {
        kiln()
            .arg("--store")
            .arg(self.path("store"))
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap()
    }

    /// `kiln diff A B EXTRA... --json`: the exit code and the report.
    fn diff_json(&self, a: &str, b: &str, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["diff", a, b, "--json"];
        args.extend_from_slice(extra);
        let out = self.kiln(&args);
        let code = out.status.code().unwrap();
        assert!(
            code == 0 || code == 1,
            "diff failed ({code}): {}",
            stderr(&out)
        );
        (code, serde_json::from_slice(&out.stdout).unwrap())
    }

    /// `kiln diff A B` as text.
    fn diff_text(&self, a: &str, b: &str, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["diff", a, b];
        args.extend_from_slice(extra);
        let out = self.kiln(&args);
        (out.status.code().unwrap(), stdout(&out))
    }

    /// Writes the tree `name/` from `(path, content, mode, mtime)`.
    fn tree(&self, name: &str, files: &[(&str, &[u8], u32, i64)]) -> PathBuf {
        let root = self.path(name);
        for (path, content, mode, mtime) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            let t = filetime::FileTime::from_unix_time(*mtime, 0);
            filetime::set_file_mtime(&p, t).unwrap();
        }
        // Directory mtimes are data too: pin them.
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                }
            }
            filetime::set_file_mtime(&d, filetime::FileTime::from_unix_time(1000, 0)).unwrap();
        }
        root
    }

    /// Imports `dir` into a store of its own as `fixture` (the tag is in
    /// the history, so every fixture gets the same one), with
    /// SOURCE_DATE_EPOCH far enough ahead to keep the files' mtimes, and
    /// exports it to the layout `fx` as `name`; returns `oci:fx:NAME`.
    fn import(&self, dir: &Path, name: &str) -> String {
        let store = self.path(&format!("store-{name}"));
        let run = |args: &[&str]| {
            let out = kiln()
                .arg("--store")
                .arg(&store)
                .env("SOURCE_DATE_EPOCH", "2000000000")
                .current_dir(self.dir.path())
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        };
        run(&["image", "import", dir.to_str().unwrap(), "--tag", "fixture"]);
        let spec = format!("oci:fx:{name}");
        run(&["image", "export", "fixture", &spec]);
        spec
    }

    /// Builds a context of `(path, content)` files; returns the digest.
    fn build(&self, name: &str, files: &[(&str, &str)], extra: &[&str]) -> String {
        let root = self.path(name);
        for (path, content) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let mut args = vec!["build", root.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.kiln(&args);
        assert!(out.status.success(), "build: {}", stderr(&out));
        stdout(&out).lines().last().unwrap().to_owned()
    }
}

const BASE: &[(&str, &[u8], u32, i64)] = &[
    ("etc/motd", b"hello\nworld\n", 0o644, 1000),
    ("etc/conf", b"a = 1\nb = 2\nc = 3\n", 0o644, 1000),
    ("bin/tool", &TOOL, 0o755, 1000),
];

/// 70,000 bytes of a binary (with NUL bytes).
static TOOL: [u8; 70_000] = {
    let mut out = [0u8; 70_000];
    let mut i = 0;
    while i < out.len() {
        out[i] = (i % 251) as u8;
        i += 1;
    }
    out
};

fn with(changes: &[(&str, &[u8], u32, i64)]) -> Vec<(&'static str, Vec<u8>, u32, i64)> {
    let mut files: Vec<(&'static str, Vec<u8>, u32, i64)> = BASE
        .iter()
        .map(|(p, c, m, t)| (*p, c.to_vec(), *m, *t))
        .collect();
    for (p, c, m, t) in changes {
        let f = files.iter_mut().find(|f| f.0 == *p).unwrap();
        (f.1, f.2, f.3) = (c.to_vec(), *m, *t);
    }
    files
}

fn make(ctx: &Ctx, name: &str, files: &[(&'static str, Vec<u8>, u32, i64)]) -> String {
    let borrowed: Vec<(&str, &[u8], u32, i64)> = files
        .iter()
        .map(|(p, c, m, t)| (*p, c.as_slice(), *m, *t))
        .collect();
    let dir = ctx.tree(&format!("tree-{name}"), &borrowed);
    ctx.import(&dir, name)
}

/// The one changed path's field names.
fn changed_fields(report: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    report["filesystem"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let fields = p["changes"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|f| f["field"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (p["path"].as_str().unwrap().to_owned(), fields)
        })
        .collect()
}

fn config_paths(report: &serde_json::Value) -> Vec<String> {
    report["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn identical_images_give_0_and_a_changed_mtime_is_the_only_difference() {
    let ctx = Ctx::new();
    let a = make(&ctx, "a", &with(&[]));
    let same = make(&ctx, "same", &with(&[]));
    let mtime = make(
        &ctx,
        "mtime",
        &with(&[("etc/motd", b"hello\nworld\n", 0o644, 5000)]),
    );

    let (code, text) = ctx.diff_text(&a, &same, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("images are identical"), "{text}");

    let (code, r) = ctx.diff_json(&a, &mtime, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        changed_fields(&r),
        [("/etc/motd".to_owned(), vec!["mtime".to_owned()])]
    );
    let change = &r["filesystem"]["paths"][0]["changes"][0];
    assert_eq!(change["a"], "1000 (1970-01-01T00:16:40Z)");
    assert_eq!(change["b"], "5000 (1970-01-01T01:23:20Z)");
    // The layer differs, so its diff_id does; nothing else in the config.
    assert_eq!(config_paths(&r), ["rootfs.diff_ids[0]"]);
    assert_eq!(r["layers"]["verdict"], "different");
    assert!(r["filesystem"]["paths"][0].get("content").is_none());

    // Timestamps ignored: nothing else differs (the diff_ids differ only
    // because of the mtime).
    let (code, r) = ctx.diff_json(&a, &mtime, &["--ignore-timestamps"]);
    assert_eq!(code, 0, "{r}");
    assert!(r["filesystem"]["paths"].as_array().unwrap().is_empty());
    assert!(r["config"].as_array().unwrap().is_empty());
    assert_eq!(r["layers"]["verdict"], "ignored_only");
    let (code, text) = ctx.diff_text(&a, &mtime, &["--semantic"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("images are the same, ignoring"), "{text}");
}

#[test]
fn changed_text_content_gets_a_unified_diff_and_binary_content_the_first_offset() {
    let ctx = Ctx::new();
    let a = make(&ctx, "a", &with(&[]));
    let text = make(
        &ctx,
        "text",
        &with(&[("etc/conf", b"a = 1\nb = 20\nc = 3\n", 0o644, 1000)]),
    );
    let mut tool = TOOL.to_vec();
    tool[65_537] ^= 0xff;
    let binary = make(&ctx, "binary", &with(&[("bin/tool", &tool, 0o755, 1000)]));

    let (code, r) = ctx.diff_json(&a, &text, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        changed_fields(&r),
        [(
            "/etc/conf".to_owned(),
            vec!["content".to_owned(), "size".to_owned()]
        )]
    );
    let content = &r["filesystem"]["paths"][0]["content"];
    assert_eq!(content["first_difference"], 11);
    assert_eq!(content["text"], true);
    assert_eq!(
        content["unified"],
        "--- a/etc/conf\n+++ b/etc/conf\n@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n+b = 20\n c = 3\n"
    );
    let (code, out) = ctx.diff_text(&a, &text, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("changed /etc/conf"), "{out}");
    assert!(
        out.contains("-b = 2\n") && out.contains("+b = 20\n"),
        "{out}"
    );
    assert!(out.contains("first difference at byte 11"), "{out}");
    // No colour when stdout is not a terminal, unless asked for.
    assert!(!out.contains('\x1b'), "{out}");
    let (_, coloured) = ctx.diff_text(&a, &text, &["--color", "always"]);
    assert!(coloured.contains("\x1b[32m+b = 20\x1b[0m"), "{coloured}");

    let (code, r) = ctx.diff_json(&a, &binary, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        changed_fields(&r),
        [("/bin/tool".to_owned(), vec!["content".to_owned()])]
    );
    let content = &r["filesystem"]["paths"][0]["content"];
    assert_eq!(content["first_difference"], 65_537);
    assert_eq!(content["text"], false);
    assert!(content.get("unified").is_none());
    let (_, text) = ctx.diff_text(&a, &binary, &[]);
    assert!(text.contains("binary content: no text diff"), "{text}");
}

#[test]
fn a_changed_mode_is_reported_exactly() {
    let ctx = Ctx::new();
    let a = make(&ctx, "a", &with(&[]));
    let mode = make(
        &ctx,
        "mode",
        &with(&[("etc/motd", b"hello\nworld\n", 0o600, 1000)]),
    );
    let (code, r) = ctx.diff_json(&a, &mode, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        changed_fields(&r),
        [("/etc/motd".to_owned(), vec!["mode".to_owned()])]
    );
    let change = &r["filesystem"]["paths"][0]["changes"][0];
    assert_eq!(
        (change["a"].as_str(), change["b"].as_str()),
        (Some("0644"), Some("0600"))
    );
    // The other way round, semantic mode still sees it: modes change how
    // the image runs.
    let (code, _) = ctx.diff_json(&mode, &a, &["--semantic"]);
    assert_eq!(code, 1);
}

#[test]
fn one_env_var_is_one_config_change_and_the_layers_are_not_read() {
    let ctx = Ctx::new();
    let df = |v: &str| format!("FROM scratch\nCOPY f /f\nENV KEEP=1 FOO={v}\nCMD [\"/f\"]\n");
    let a = ctx.build("one", &[("Dockerfile", &df("1")), ("f", "x\n")], &[]);
    let b = ctx.build("two", &[("Dockerfile", &df("2")), ("f", "x\n")], &[]);
    let (code, r) = ctx.diff_json(&a, &b, &[]);
    assert_eq!(code, 1);
    // History names the instruction, so it differs too.
    assert_eq!(
        config_paths(&r),
        ["config.Env[FOO]", "history[1].created_by"]
    );
    assert_eq!(r["config"][0]["a"], "1");
    assert_eq!(r["config"][0]["b"], "2");
    assert_eq!(r["layers"]["verdict"], "identical");
    assert_eq!(r["filesystem"]["read"], false);
    let (code, r) = ctx.diff_json(&a, &b, &["--ignore-history"]);
    assert_eq!(code, 1);
    assert_eq!(config_paths(&r), ["config.Env[FOO]"]);
    let (code, text) = ctx.diff_text(&a, &b, &["--ignore-history"]);
    assert_eq!(code, 1);
    assert!(text.contains("config.Env[FOO]: 1 -> 2"), "{text}");
}

#[test]
fn a_layer_split_with_the_same_filesystem_is_only_layering() {
    let ctx = Ctx::new();
    let files = [("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")];
    let mut one = vec![("Dockerfile", "FROM scratch\nCOPY a.txt b.txt c.txt /\n")];
    one.extend_from_slice(&files);
    let mut split = vec![(
        "Dockerfile",
        "FROM scratch\nCOPY a.txt c.txt /\nCOPY b.txt /\n",
    )];
    split.extend_from_slice(&files);
    let a = ctx.build("one", &one, &[]);
    let b = ctx.build("split", &split, &[]);
    let (code, r) = ctx.diff_json(&a, &b, &[]);
    assert_eq!(code, 1);
    assert_eq!(r["layers"]["verdict"], "layering_only");
    assert!(r["filesystem"]["paths"].as_array().unwrap().is_empty());
    assert_eq!(r["filesystem"]["read"], true);
    let (_, text) = ctx.diff_text(&a, &b, &[]);
    assert!(
        text.contains("only layering differs (same merged filesystem)"),
        "{text}"
    );
    assert!(
        text.contains("the same filesystem, split into 1 layer in A and 2 layers in B"),
        "{text}"
    );
    let (code, text) = ctx.diff_text(&a, &b, &["--semantic"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn whiteouts_and_opaque_directories_are_applied_before_comparing() {
    // B deletes a file in a second layer: the merged filesystems differ by
    // exactly that file; C adds it back over the whiteout.
    let ctx = Ctx::new();
    let df_a = "FROM scratch\nCOPY d/ /d/\n";
    let files = [("d/keep", "k\n"), ("d/gone", "g\n")];
    let mut a_ctx = vec![("Dockerfile", df_a)];
    a_ctx.extend_from_slice(&files);
    let a = ctx.build("a", &a_ctx, &[]);
    // A whiteout layer by hand: an OCI layout with a second layer.
    let layout = ctx.path("wh");
    let out = ctx.kiln(&[
        "image",
        "export",
        &a,
        &format!("oci:{}:base", layout.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let Some(()) = umoci_whiteout(&layout) else {
        return;
    };
    let (code, r) = ctx.diff_json(
        &format!("oci:{}:base", layout.display()),
        &format!("oci:{}:deleted", layout.display()),
        &["--ignore-timestamps"],
    );
    assert_eq!(code, 1);
    let paths: Vec<String> = changed_fields(&r).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/d/gone"]);
    assert_eq!(r["filesystem"]["paths"][0]["status"], "removed");
}

/// Runs `name args`; `None` (after saying why) if the tool is missing and
/// tools are not required.
fn tool(name: &str, args: &[&str], dir: &Path) -> Option<Output> {
    match Command::new(name).args(args).current_dir(dir).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{name} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(out)
        }
        Err(e) => {
            assert!(
                std::env::var_os("KILN_TEST_REQUIRE_TOOLS").is_none(),
                "{name} is required (apt-get install {name}): {e}"
            );
            eprintln!("skipped: {name} not found ({e})");
            None
        }
    }
}

/// Makes `LAYOUT:deleted`: `LAYOUT:base` with `d/gone` deleted by umoci
/// in a second layer (a whiteout).
fn umoci_whiteout(layout: &Path) -> Option<()> {
    let dir = layout.parent().unwrap();
    let l = layout.to_str().unwrap();
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{l}:base"),
            "bundle",
        ],
        dir,
    )?;
    std::fs::remove_file(dir.join("bundle/rootfs/d/gone")).unwrap();
    tool(
        "umoci",
        &["repack", "--image", &format!("{l}:deleted"), "bundle"],
        dir,
    )?;
    Some(())
}

#[test]
fn compression_only_and_umoci_and_skopeo_layouts_are_compared_correctly() {
    let ctx = Ctx::new();
    let dir = ctx.dir.path();
    // An image made by umoci from a tree, then a second version of it with
    // one file changed (umoci adds a layer), then skopeo's zstd copy.
    let Some(_) = tool("umoci", &["init", "--layout", "u"], dir) else {
        return;
    };
    tool("umoci", &["new", "--image", "u:empty"], dir).unwrap();
    tool(
        "umoci",
        &["unpack", "--rootless", "--image", "u:empty", "bundle"],
        dir,
    )
    .unwrap();
    let rootfs = dir.join("bundle/rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/motd"), "hello\n").unwrap();
    std::fs::write(rootfs.join("etc/other"), "same\n").unwrap();
    tool("umoci", &["repack", "--image", "u:v1", "bundle"], dir).unwrap();
    // v2 = v1's layer and a second one with the change.
    tool(
        "umoci",
        &["unpack", "--rootless", "--image", "u:v1", "bundle2"],
        dir,
    )
    .unwrap();
    std::fs::write(dir.join("bundle2/rootfs/etc/motd"), "hello again\n").unwrap();
    tool("umoci", &["repack", "--image", "u:v2", "bundle2"], dir).unwrap();
    let Some(_) = tool(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            "--dest-compress",
            "oci:u:v1",
            "oci:s:v1",
        ],
        dir,
    ) else {
        return;
    };

    // Compression only.
    let (code, r) = ctx.diff_json("oci:u:v1", "oci:s:v1", &[]);
    assert_eq!(code, 1);
    assert_eq!(r["layers"]["verdict"], "compression_only");
    assert!(
        r["config"].as_array().unwrap().is_empty(),
        "{}",
        r["config"]
    );
    assert!(r["filesystem"]["paths"].as_array().unwrap().is_empty());
    let (_, text) = ctx.diff_text("oci:u:v1", "oci:s:v1", &[]);
    assert!(text.contains("only compression differs"), "{text}");
    assert!(text.contains("-> zstd"), "{text}");
    let (code, _) = ctx.diff_json("oci:u:v1", "oci:s:v1", &["--semantic"]);
    assert_eq!(code, 0);

    // umoci's second layer changes one file: exactly that is reported.
    let (code, r) = ctx.diff_json("oci:u:v1", "oci:u:v2", &["--ignore-timestamps"]);
    assert_eq!(code, 1);
    assert_eq!(
        changed_fields(&r),
        [(
            "/etc/motd".to_owned(),
            vec!["content".to_owned(), "size".to_owned()]
        )]
    );
    assert_eq!(
        r["filesystem"]["paths"][0]["content"]["first_difference"],
        5
    );
    assert_eq!(r["filesystem"]["paths"][0]["b"]["layer"], 1);
    assert_eq!(r["layers"]["verdict"], "different");
    // The zstd copy against the changed one: the same answer.
    let (_, r2) = ctx.diff_json("oci:s:v1", "oci:u:v2", &["--ignore-timestamps"]);
    assert_eq!(changed_fields(&r2), changed_fields(&r));

    // A docker-archive of the same image reads in place: only compression
    // differs (its layers are stored uncompressed).
    tool(
        "skopeo",
        &["copy", "oci:u:v1", "docker-archive:u.tar:u:v1"],
        dir,
    )
    .unwrap();
    let (code, r) = ctx.diff_json("oci:u:v1", "docker-archive:u.tar", &["--ignore-history"]);
    assert!(r["filesystem"]["paths"].as_array().unwrap().is_empty());
    let (code_s, _) = ctx.diff_json("oci:u:v1", "docker-archive:u.tar", &["--semantic"]);
    assert_eq!((code, code_s), (1, 0), "{r}");
}

#[test]
fn errors_exit_2_and_name_the_image_and_the_digest() {
    let ctx = Ctx::new();
    let a = make(&ctx, "a", &with(&[]));
    let out = ctx.kiln(&["diff", &a, "oci:missing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("oci:missing"), "{}", stderr(&out));
    let out = ctx.kiln(&["diff", &a, "nosuch:tag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nosuch:tag"), "{}", stderr(&out));

    // A corrupt layer blob: the error names the image and the blob.
    let b = make(&ctx, "b", &with(&[("etc/motd", b"other\n", 0o644, 1000)]));
    let layout = ctx.path("fx");
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap())
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "b")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(entry["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let mut bytes = std::fs::read(blob(layer)).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(blob(layer), bytes).unwrap();
    let spec = b;
    let out = ctx.kiln(&["diff", &a, &spec]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&spec) && err.contains(layer), "{err}");
}

#[test]
fn plan_diff_names_the_build_arg_and_the_context_file_that_differ() {
    let ctx = Ctx::new();
    let df = "FROM scratch AS build\nARG V=1\nCOPY src/ /src/\nRUN echo $V > /v\nFROM scratch\nCOPY --from=build /v /v\n";
    let files = [
        ("Dockerfile", df),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
    ];
    for (name, fs) in [("one", &files[..]), ("two", &files[..])] {
        for (path, content) in fs {
            let p = ctx.path(name).join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
    }
    std::fs::write(ctx.path("two/src/b.txt"), "B\n").unwrap();
    let one = ctx.path("one");
    let one = one.to_str().unwrap();
    let two = ctx.path("two");
    let two = two.to_str().unwrap();

    let out = ctx.kiln(&["diff", "--plan", one, one]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("derivations are the same"));

    // A build arg: the RUN step sees V=1 / V=2; the COPY step is the same.
    let out = ctx.kiln(&["diff", "--plan", one, one, "--build-arg-b", "V=2", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = r.to_string();
    assert!(
        text.contains(r#"{"a":"1","b":"2","input":"env","name":"V"}"#),
        "{text}"
    );
    assert!(!text.contains("context_file"), "{text}");
    let out = ctx.kiln(&["diff", "--plan", one, one, "--build-arg-b", "V=2"]);
    let text = stdout(&out);
    assert!(text.contains("env V (ENV or build arg): 1 -> 2"), "{text}");
    assert!(text.contains("RUN echo $V"), "{text}");

    // A context file: named by path, with both hashes.
    let out = ctx.kiln(&["diff", "--plan", one, two, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = r.to_string();
    assert!(
        text.contains(r#""input":"context_file","path":"src/b.txt""#),
        "{text}"
    );
    assert!(!text.contains(r#""path":"src/a.txt""#), "{text}");
    assert!(!text.contains(r#""input":"env""#), "{text}");
    // The RUN step differs only because it builds on the COPY.
    let out = ctx.kiln(&["diff", "--plan", one, two]);
    let text = stdout(&out);
    assert!(
        text.contains("context file src/b.txt: file 644 blake3:"),
        "{text}"
    );
    assert!(
        text.contains("(differs only through what it builds on)"),
        "{text}"
    );

    // Stored derivations by hash give the same answer.
    let root =
        |json: &serde_json::Value, side: &str| json["root"][side].as_str().unwrap().to_owned();
    let (a, b) = (root(&r, "a"), root(&r, "b"));
    let out = ctx.kiln(&["diff", "--plan", &a, &b, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again, r);
}

/// A context of its own per test over a busybox base (imported from
/// Debian's busybox-static, as tests/build.rs does).
fn busybox(ctx: &Ctx) {
    let rootfs = busybox_rootfs(ctx.dir.path());
    let tar = ctx.path("busybox.tar");
    let st = Command::new("tar")
        .args(["--sort=name", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let out = ctx.kiln(&["image", "import", tar.to_str().unwrap(), "--tag", "busybox"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn build_check_names_the_file_and_step_that_are_not_reproducible() {
    common::require_sandbox!();
    let ctx = Ctx::new();
    busybox(&ctx);
    let df = "FROM busybox\nCOPY app.txt /app.txt\nRUN echo fixed > /fixed\nRUN date +%s > /stamp; /bin/busybox head -c 32 /dev/urandom | /bin/busybox od -x > /noise\nRUN echo after > /after\n";
    let root = ctx.path("ctx");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("Dockerfile"), df).unwrap();
    std::fs::write(root.join("app.txt"), "app\n").unwrap();
    let out = ctx.kiln(&["build", root.to_str().unwrap(), "--check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:4 #0: RUN date +%s > /stamp"),
        "{err}"
    );
    assert!(err.contains("is not reproducible"), "{err}");
    assert!(err.contains("changed /noise"), "{err}");
    assert!(err.contains("first difference at byte"), "{err}");
    assert!(err.contains("its layer is part of the image"), "{err}");
    assert!(
        err.contains("check: not reproducible: line 4 (RUN); 3 of 4 steps reproducible"),
        "{err}"
    );
    // The image digest is still the last line on stdout, and the stored
    // output was kept: a second check compares against the same layer.
    let digest = stdout(&out).lines().last().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"));
    let again = ctx.kiln(&[
        "build",
        root.to_str().unwrap(),
        "--check",
        "--progress",
        "json",
    ]);
    assert_eq!(stdout(&again).lines().last().unwrap(), digest);
    assert_eq!(again.status.code(), Some(1));
    // With `--progress json`, one line per step checked.
    let checks: Vec<serde_json::Value> = stderr(&again)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "check")
        .collect();
    let verdicts: Vec<(u64, bool)> = checks
        .iter()
        .map(|c| {
            (
                c["line"].as_u64().unwrap(),
                c["reproducible"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(verdicts, [(2, true), (3, true), (4, false), (5, true)]);
    let noise = checks[2]["diff"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "/noise")
        .unwrap();
    assert!(noise["content"]["first_difference"].is_u64(), "{noise}");
    let verify = ctx.kiln(&["store", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let tmp: Vec<_> = std::fs::read_dir(ctx.path("store/tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "store tmp not empty: {tmp:?}");
}

#[test]
fn build_check_on_a_deterministic_build_reports_it_reproducible() {
    common::require_sandbox!();
    let ctx = Ctx::new();
    busybox(&ctx);
    let df = "FROM busybox AS build\nWORKDIR /work\nCOPY src/ ./src/\nRUN cat src/a.txt src/b.txt > out.txt && echo built >> out.txt\nFROM scratch\nCOPY --from=build /work/out.txt /out\n";
    let root = ctx.path("ctx");
    for (p, c) in [
        ("Dockerfile", df),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
    ] {
        std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
        std::fs::write(root.join(p), c).unwrap();
    }
    // Built first, then checked: the check rebuilds the stored steps.
    let first = ctx.kiln(&["build", root.to_str().unwrap()]);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = ctx.kiln(&["build", root.to_str().unwrap(), "--check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("check: all 4 steps are reproducible"), "{err}");
    assert_eq!(
        stdout(&out).lines().last(),
        stdout(&first).lines().last(),
        "{err}"
    );
}

#[test]
fn build_check_fails_only_for_differences_that_reach_the_image() {
    common::require_sandbox!();
    let ctx = Ctx::new();
    busybox(&ctx);
    // The builder stage writes noise next to a stable output.
    let df = |copied: &str| {
        format!(
            "FROM busybox AS builder\nRUN echo stable > /out; /bin/busybox head -c 32 /dev/urandom | /bin/busybox od -x > /noise\nFROM scratch\nCOPY --from=builder {copied} /copied\n"
        )
    };
    for (name, copied, code, summary) in [
        (
            "stable",
            "/out",
            0,
            "check: the image is reproducible; 1 of 2 steps reproducible; not reproducible outside the image: line 2 (RUN)",
        ),
        (
            "noisy",
            "/noise",
            1,
            "check: not reproducible: line 2 (RUN); 1 of 2 steps reproducible",
        ),
    ] {
        let root = ctx.path(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("Dockerfile"), df(copied)).unwrap();
        let out = ctx.kiln(&["build", root.to_str().unwrap(), "--check"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        assert!(err.contains("changed /noise"), "{name}: {err}");
        assert!(err.contains(summary), "{name}: {err}");
    }
}

#[test]
fn an_image_index_is_followed_to_the_platform_and_reported() {
    let ctx = Ctx::new();
    let a = make(&ctx, "a", &with(&[]));
    // Wrap image `a` in an OCI image index for linux/amd64, as `wrapped`.
    let layout = ctx.path("fx");
    let index_path = layout.join("index.json");
    let mut top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut manifest = top["manifests"][0].clone();
    manifest.as_object_mut().unwrap().remove("annotations");
    manifest["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    std::fs::write(layout.join("blobs/sha256").join(&digest), &bytes).unwrap();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{digest}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "wrapped"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&top).unwrap()).unwrap();

    let (code, r) = ctx.diff_json(&a, "oci:fx:wrapped", &[]);
    assert_eq!(code, 1);
    // The same manifest, reached through an index: only that differs.
    assert_eq!(r["a"]["manifest"], r["b"]["manifest"]);
    assert_eq!(r["b"]["index"], format!("sha256:{digest}"));
    let paths: Vec<&str> = r["index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["index.entry.mediaType", "index"]);
    assert!(r["config"].as_array().unwrap().is_empty());
    let (code, _) = ctx.diff_json(&a, "oci:fx:wrapped", &["--semantic"]);
    assert_eq!(code, 0);
    // Another platform: an error naming what the index has.
    let out = ctx.kiln(&["diff", &a, "oci:fx:wrapped", "--platform", "linux/arm64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("linux/amd64"), "{}", stderr(&out));
}

#[test]
fn plan_diff_of_two_dockerfiles_names_the_instruction_field() {
    let ctx = Ctx::new();
    let root = ctx.path("ctx");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), "f\n").unwrap();
    std::fs::write(
        root.join("one.Dockerfile"),
        "FROM scratch\nCOPY f /f\nRUN echo one\n",
    )
    .unwrap();
    std::fs::write(
        root.join("two.Dockerfile"),
        "FROM scratch\nCOPY f /f\nRUN echo two\n",
    )
    .unwrap();
    let (one, two) = (root.join("one.Dockerfile"), root.join("two.Dockerfile"));
    let out = ctx.kiln(&[
        "diff",
        "--plan",
        root.to_str().unwrap(),
        root.to_str().unwrap(),
        "--file-a",
        one.to_str().unwrap(),
        "--file-b",
        two.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("instruction command.shell: echo one -> echo two"),
        "{text}"
    );
    assert!(text.contains("- stage #0 "), "{text}");
    // The COPY step is the same in both: not mentioned.
    assert!(!text.contains("COPY"), "{text}");
}

/// A running `docker-registry serve` on a free port, stopped on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: std::process::Child,
}

impl Registry {
    fn start() -> Option<Registry> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = match Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("KILN_TEST_REQUIRE_TOOLS").is_none(),
                    "docker-registry is required (apt-get install docker-registry): {e}"
                );
                eprintln!("skipped: docker-registry not found ({e})");
                return None;
            }
        };
        let registry = Registry { dir, port, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

#[test]
fn registry_images_are_pulled_then_compared() {
    let ctx = Ctx::new();
    let df = |v: &str| format!("FROM scratch\nCOPY f /f\nENV FOO={v}\n");
    let a = ctx.build("one", &[("Dockerfile", &df("1")), ("f", "x\n")], &[]);
    let b = ctx.build("two", &[("Dockerfile", &df("2")), ("f", "x\n")], &[]);
    let Some(registry) = Registry::start() else {
        return;
    };
    let host = format!("127.0.0.1:{}", registry.port);
    for (digest, tag) in [(&a, "a"), (&b, "b")] {
        let out = ctx.kiln(&["push", digest, &format!("{host}/diff:{tag}")]);
        assert!(out.status.success(), "push: {}", stderr(&out));
    }
    // A fresh store: both sides come from the registry.
    let out = kiln()
        .arg("--store")
        .arg(ctx.path("fresh"))
        .args([
            "diff",
            &format!("registry:{host}/diff:a"),
            &format!("docker://{host}/diff:b"),
            "--json",
            "--ignore-history",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config_paths(&r), ["config.Env[FOO]"]);
    assert_eq!(r["a"]["manifest"], a.as_str());
    // The pulled image against the local one it was pushed from.
    let out = ctx.kiln(&["diff", &format!("registry:{host}/diff:a"), &a]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}
