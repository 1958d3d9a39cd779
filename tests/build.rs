//! `kiln build` end to end over a busybox base image made by `kiln image
//! import` (Debian's busybox-static): reproducibility, caching, errors that
//! leave the store clean, and one fixture per instruction checked against
//! the image config and the files in the layers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{kiln, stderr, stdout};

struct Ctx {
    dir: tempfile::TempDir,
}

impl Ctx {
    /// A fresh store with `busybox:latest` imported.
    fn new() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        let tar = common::busybox_tar(dir.path());
        let ctx = Ctx { dir };
        let out = ctx.kiln(&["image", "import", tar.to_str().unwrap(), "--tag", "busybox"]);
        assert!(out.status.success(), "{}", stderr(&out));
        ctx
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn kiln(&self, args: &[&str]) -> Output {
        kiln()
            .arg("--store")
            .arg(self.store())
            .args(args)
            .output()
            .unwrap()
    }

    /// Writes a context from `(path, content)` pairs; returns its dir.
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.dir.path().join(name);
        for (path, content) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        root
    }

    /// Builds `context`; returns the manifest digest.
    fn build(&self, context: &Path, extra: &[&str]) -> String {
        let out = self.build_output(context, extra);
        assert!(out.status.success(), "build failed: {}", stderr(&out));
        stdout(&out).lines().last().unwrap().to_string()
    }

    fn build_output(&self, context: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["build", context.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.kiln(&args)
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(self.store().join("blobs/sha256").join(hex)).unwrap()
    }

    fn json(&self, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&self.blob(digest)).unwrap()
    }

    /// The image config of a manifest.
    fn config(&self, manifest: &str) -> serde_json::Value {
        let m = self.json(manifest);
        self.json(m["config"]["digest"].as_str().unwrap())
    }

    /// Every entry of every layer: `path type mode uid gid size`.
    fn files(&self, manifest: &str) -> Vec<String> {
        let m = self.json(manifest);
        let mut out = Vec::new();
        for (i, layer) in m["layers"].as_array().unwrap().iter().enumerate() {
            let digest = layer["digest"].as_str().unwrap();
            let hex = digest.strip_prefix("sha256:").unwrap();
            let path = self.store().join("blobs/sha256").join(hex);
            let list = std::process::Command::new("tar")
                .arg("--numeric-owner")
                .arg("-tvzf")
                .arg(&path)
                .output()
                .unwrap();
            for line in String::from_utf8_lossy(&list.stdout).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                // mode owner size date time name [-> target]
                out.push(format!(
                    "{i} {} {} {} {}",
                    f[0],
                    f[1],
                    f[2],
                    f[5..].join(" ")
                ));
            }
        }
        out
    }

    fn verify_clean(&self) {
        let out = self.kiln(&["store", "verify"]);
        assert!(out.status.success(), "store verify: {}", stderr(&out));
        let tmp: Vec<_> = std::fs::read_dir(self.store().join("tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "store tmp not empty: {tmp:?}");
    }
}

const APP: &str = "FROM busybox AS build
WORKDIR /work
COPY src/ ./src/
COPY main.txt .
RUN cat src/a.txt main.txt > out.txt
ENV GREETING=hi

FROM scratch
COPY --from=build /work/out.txt /app/out
COPY --from=build /bin/busybox /bin/busybox
EXPOSE 8080
ENTRYPOINT [\"/bin/busybox\"]
CMD [\"cat\", \"/app/out\"]
";

fn app_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Dockerfile", APP),
        ("src/a.txt", "a\n"),
        ("src/sub/b.txt", "b\n"),
        ("main.txt", "main\n"),
    ]
}

#[test]
fn two_fresh_stores_different_dirs_tz_umask_give_the_same_digest() {
    common::require_sandbox!();
    let a = Ctx::new();
    let ctx_a = a.context("ctx-a", &app_files());
    let first = a.build(&ctx_a, &[]);

    let b = Ctx::new();
    let ctx_b = b.context("some/other/place", &app_files());
    // Different mtimes on the context copy.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(ctx_b.join("main.txt"), "main\n").unwrap();
    // Through a shell, to build under another umask.
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 077; exec \"$0\" --store \"$1\" build \"$2\"")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg(b.store())
        .arg(&ctx_b)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SOURCE_DATE_EPOCH", "0")
        .env("TZ", "Pacific/Kiritimati")
        .env("LANG", "de_DE.UTF-8")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let second = stdout(&out).lines().last().unwrap().to_string();
    assert_eq!(first, second);
    assert!(first.starts_with("sha256:"));
}

#[test]
fn no_op_rebuild_builds_nothing_and_an_edit_reruns_only_later_steps() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context("ctx", &app_files());
    let first = c.build(&ctx, &[]);
    let again = c.build_output(&ctx, &[]);
    assert!(again.status.success());
    let err = stderr(&again);
    assert!(!err.contains(" built "), "{err}");
    assert_eq!(stdout(&again).lines().last().unwrap(), first);

    std::fs::write(ctx.join("main.txt"), "changed\n").unwrap();
    let out = c.build_output(&ctx, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("line 2 WORKDIR cached"), "{err}");
    assert!(err.contains("line 3 COPY cached"), "{err}");
    assert!(err.contains("line 4 COPY built"), "{err}");
    assert!(err.contains("line 5 RUN built"), "{err}");
    assert_ne!(stdout(&out).lines().last().unwrap(), first);
}

#[test]
fn builds_racing_on_one_store_build_each_step_once_and_agree() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context("ctx", &app_files());
    // A slow step, so that the four builds really meet at it.
    std::fs::write(
        ctx.join("Dockerfile"),
        APP.replace("RUN cat src/a.txt", "RUN sleep 1; cat src/a.txt"),
    )
    .unwrap();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            kiln()
                .arg("--store")
                .arg(c.store())
                .args(["build", ctx.to_str().unwrap(), "--progress", "plain"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = racers
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert!(out.status.success(), "{}", stderr(out));
    }
    let digests: Vec<String> = outs
        .iter()
        .map(|o| stdout(o).lines().last().unwrap().to_string())
        .collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    // The RUN step ran once: one build waited on its lock and the others
    // found its output.
    let built = outs
        .iter()
        .filter(|o| stderr(o).contains("line 5 RUN built"))
        .count();
    assert_eq!(built, 1, "the RUN step was built {built} times");
    c.verify_clean();
}

#[test]
fn an_opaque_directory_of_a_loaded_base_image_hides_the_layers_below_it() {
    common::require_sandbox!();
    let c = Ctx::new();
    // Two layers: /d/old, then /d emptied and made again (an opaque dir).
    let base = c.context(
        "base",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mkdir /d && touch /d/old\nRUN rm -rf /d && mkdir /d && touch /d/new\n",
        )],
    );
    let digest = c.build(&base, &[]);
    let layout = c.dir.path().join("layout");
    let out = c.kiln(&[
        "image",
        "export",
        &digest,
        &format!("oci:{}:base", layout.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A fresh store unpacks the base from its blobs.
    let fresh = Ctx::new();
    let out = fresh.kiln(&[
        "image",
        "load",
        &format!("oci:{}:base", layout.display()),
        "--tag",
        "base:1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let app = fresh.context(
        "app",
        &[("Dockerfile", "FROM base:1\nRUN ls /d > /listing\n")],
    );
    let built = fresh.build(&app, &[]);
    let files = fresh.files(&built);
    assert!(files.iter().any(|f| f.ends_with("listing")), "{files:?}");
    let out = fresh.kiln(&["run", "base:1", "--", "ls", "/d"]);
    assert_eq!(stdout(&out), "new\n", "{}", stderr(&out));
}

#[test]
fn app_image_config_and_files_match_docker() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context("ctx", &app_files());
    let m = c.build(&ctx, &["-t", "app:1"]);
    let config = c.config(&m);
    let cc = &config["config"];
    assert_eq!(cc["Entrypoint"], serde_json::json!(["/bin/busybox"]));
    assert_eq!(cc["Cmd"], serde_json::json!(["cat", "/app/out"]));
    assert_eq!(cc["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[2]["empty_layer"], true);
    let files = c.files(&m);
    assert!(
        files.contains(&"0 -rw-r--r-- 0/0 7 app/out".to_string()),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("1 -rwxr-xr-x 0/0 ") && f.ends_with(" bin/busybox")),
        "{files:?}"
    );
    // kiln run over the stored image uses its Entrypoint and Cmd.
    let run = c.kiln(&["run", "app:1"]);
    assert_eq!(stdout(&run), "a\nmain\n", "{}", stderr(&run));
    // The image is listed and exports as an OCI layout skopeo accepts.
    let ls = c.kiln(&["image", "ls"]);
    assert!(stdout(&ls).contains(&format!("app:1\t{m}")));
    let dir = c.dir.path().join("oci");
    let out = c.kiln(&[
        "image",
        "export",
        "app:1",
        &format!("oci:{}", dir.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    if let Ok(s) = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:1", dir.display()))
        .output()
    {
        assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    }
    let rm = c.kiln(&["image", "rm", "app:1"]);
    assert!(rm.status.success());
}

#[test]
fn copy_chown_chmod_wildcard_and_dir_contents() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox
COPY --chown=user:user a.txt /owned/
COPY --chown=1234:55 a.txt /numeric
COPY --chmod=0700 a.txt /private
COPY *.md /docs/
COPY dir /contents
USER user
WORKDIR /home/user
ENV A=1 B=two
",
            ),
            ("a.txt", "a\n"),
            ("x.md", "x\n"),
            ("y.md", "yy\n"),
            ("dir/inner/f", "f\n"),
        ],
    );
    let m = c.build(&ctx, &[]);
    let files = c.files(&m);
    let has = |s: &str| files.iter().any(|f| f.ends_with(s));
    assert!(
        files.contains(&"1 -rw-r--r-- 1000/1000 2 owned/a.txt".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"2 -rw-r--r-- 1234/55 2 numeric".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"3 -rwx------ 0/0 2 private".to_string()),
        "{files:?}"
    );
    assert!(has(" docs/x.md") && has(" docs/y.md"), "{files:?}");
    assert!(
        has(" contents/inner/f") && !has(" contents/dir/inner/f"),
        "{files:?}"
    );
    assert!(has(" home/user/"), "{files:?}");
    let config = c.config(&m);
    assert_eq!(config["config"]["User"], "user");
    assert_eq!(config["config"]["WorkingDir"], "/home/user");
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.contains(&serde_json::json!("A=1")) && env.contains(&serde_json::json!("B=two")));
}

#[test]
fn run_shell_form_honours_shell_env_and_user() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
ENV WHO=world
RUN echo \"hello $WHO\" > /hello
SHELL [\"/bin/sh\", \"-c\", \"-e\"]
RUN [\"/bin/sh\", \"-c\", \"id -u > /uid\"]
USER user
RUN id -u > /tmp/uid2
CMD echo hi
",
        )],
    );
    let m = c.build(&ctx, &[]);
    let config = c.config(&m);
    assert_eq!(
        config["config"]["Shell"],
        serde_json::json!(["/bin/sh", "-c", "-e"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "-e", "echo hi"])
    );
    assert_eq!(config["config"]["ArgsEscaped"], true);
    let run = c.kiln(&["run", &m, "--", "cat", "/hello", "/uid", "/tmp/uid2"]);
    assert_eq!(stdout(&run), "hello world\n0\n1000\n", "{}", stderr(&run));
}

#[test]
fn entrypoint_resets_an_inherited_cmd_but_keeps_its_own_stage_cmd() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS base
CMD [\"inherited\"]

FROM base AS reset
ENTRYPOINT [\"/bin/echo\"]

FROM base
CMD [\"own\"]
ENTRYPOINT /bin/echo
LABEL a=b
STOPSIGNAL SIGINT
VOLUME /data
HEALTHCHECK --interval=5s CMD true
",
        )],
    );
    let reset = c.build(&ctx, &["--target", "reset"]);
    let config = c.config(&reset);
    assert!(config["config"].get("Cmd").is_none(), "{config}");
    let last = c.build(&ctx, &[]);
    let cc = &c.config(&last)["config"];
    assert_eq!(cc["Cmd"], serde_json::json!(["own"]));
    assert_eq!(
        cc["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "/bin/echo"])
    );
    assert_eq!(cc["Labels"], serde_json::json!({"a": "b"}));
    assert_eq!(cc["StopSignal"], "SIGINT");
    assert_eq!(cc["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(
        cc["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(cc["Healthcheck"]["Interval"], 5_000_000_000u64);
}

#[test]
fn add_unpacks_a_local_tar_copy_from_index_heredoc_label_iidfile_and_docker_archive() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
ADD arch.tar.gz /x/
FROM scratch
COPY --from=0 /x/inner.txt /out/
COPY <<EOF /greeting
hello heredoc
EOF
",
        )],
    );
    let t = c.dir.path().join("t");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("inner.txt"), "inner\n").unwrap();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&t)
        .args(["--owner=0", "--group=0", "--numeric-owner", "-czf"])
        .arg(ctx.join("arch.tar.gz"))
        .arg("inner.txt")
        .status()
        .unwrap();
    assert!(st.success());
    let iid = c.dir.path().join("iid");
    let archive = c.dir.path().join("a.tar");
    let m = c.build(
        &ctx,
        &[
            "--label",
            "org.example=1",
            "--iidfile",
            iid.to_str().unwrap(),
            "--output",
            &format!("docker-archive:{}", archive.display()),
        ],
    );
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), m);
    let files = c.files(&m);
    assert!(
        files.contains(&"0 -rw-r--r-- 0/0 6 out/inner.txt".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"1 -rw-r--r-- 0/0 14 greeting".to_string()),
        "{files:?}"
    );
    assert_eq!(
        c.config(&m)["config"]["Labels"],
        serde_json::json!({"org.example": "1"})
    );
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("manifest.json"));
}

#[test]
fn failing_run_missing_source_and_unknown_stage_name_the_line_and_leave_the_store_clean() {
    common::require_sandbox!();
    let c = Ctx::new();
    for (name, dockerfile, line) in [
        ("run", "FROM busybox\nRUN echo ok\nRUN exit 3\n", ":3:"),
        ("missing", "FROM busybox\nCOPY nope /x\n", ":2:"),
        ("stage", "FROM busybox\nCOPY --from=nostage /x /y\n", ":2:"),
    ] {
        let ctx = c.context(name, &[("Dockerfile", dockerfile)]);
        let out = c.build_output(&ctx, &[]);
        assert!(!out.status.success(), "{name} should fail");
        let err = stderr(&out);
        assert!(err.contains(&format!("Dockerfile{line}")), "{name}: {err}");
        assert!(stdout(&out).is_empty(), "{name}: {}", stdout(&out));
        c.verify_clean();
    }
}

#[test]
fn build_log_is_kept_per_step() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo from-the-step\n")],
    );
    let out = c.build_output(&ctx, &["--progress", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let drv = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["instruction"] == "RUN")
        .unwrap()["derivation"]
        .as_str()
        .unwrap()
        .to_string();
    let log = c.kiln(&["log", &drv]);
    assert_eq!(stdout(&log), "from-the-step\n", "{}", stderr(&log));
}

/// How many step layers of the store are held only as trees (no blob).
fn layers_without_blob(store: &Path) -> i64 {
    let db = rusqlite::Connection::open(store.join("kiln.sqlite")).unwrap();
    db.query_row(
        "SELECT count(*) FROM output_layers WHERE blob IS NULL",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

#[test]
fn builder_layers_are_compressed_only_when_an_image_holds_them() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context("app", &app_files());
    c.build(&ctx, &[]);
    // The build stage's WORKDIR, COPY, COPY and RUN layers are not in the
    // FROM scratch image: no blob was written for them.
    assert_eq!(layers_without_blob(&c.store()), 4);
    c.verify_clean();
    // Asking for the build stage as the image writes them now, and they
    // are the bytes a store that wrote them at once has.
    let late = c.build(&ctx, &["--target", "build"]);
    assert_eq!(layers_without_blob(&c.store()), 0);
    let fresh = Ctx::new();
    let at_once = fresh.build(&fresh.context("app", &app_files()), &["--target", "build"]);
    assert_eq!(late, at_once);
    c.verify_clean();
}

#[test]
fn progress_streams_step_output_and_ends_with_a_summary_and_metadata() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS a\nRUN echo one; echo two >&2\nFROM busybox\nCOPY --from=a /bin/busybox /x\n",
        )],
    );
    let meta = c.dir.path().join("meta.json");
    let out = c.build_output(
        &ctx,
        &[
            "--progress",
            "json",
            "-t",
            "app:1",
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = stdout(&out).trim().to_string();
    let events: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in [
        "stage",
        "step-started",
        "output",
        "step",
        "stage-done",
        "summary",
    ] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    let text: String = events
        .iter()
        .filter(|e| e["event"] == "output" && e["line"] == 2)
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(text.contains("one") && text.contains("two"), "{text}");
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(summary["built"], 2, "{summary}");
    assert_eq!(summary["image"]["manifest"], digest.as_str());
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    assert_eq!(meta["image.name"], "app:1");
    let config = c.json(&digest)["config"]["digest"].clone();
    assert_eq!(meta["containerimage.config.digest"], config);

    // Plain progress (not a terminal): the step's output lines, the
    // cached steps, and a summary naming the image and its size.
    let out = c.build_output(&ctx, &["--progress", "plain", "--no-cache"]);
    let err = stderr(&out);
    assert!(err.contains("a line 2 │ one"), "{err}");
    assert!(err.contains("2 steps: 2 built, 0 cached"), "{err}");
    assert!(err.contains(&format!("image {digest} (")), "{err}");
    let out = c.build_output(&ctx, &["--progress", "plain"]);
    assert!(
        stderr(&out).contains("2 steps: 0 built, 2 cached"),
        "{}",
        stderr(&out)
    );
}

/// The Debian + golang-go + ca-certificates root filesystem tar, made once
/// with mmdebstrap (SOURCE_DATE_EPOCH set, `/dev` dropped, no resolv.conf
/// or hostname) and cached under `target/`.
fn go_base_tar() -> Option<PathBuf> {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kiln-test-cache");
    let tar = cache.join("debian-go.tar");
    if tar.is_file() {
        return Some(tar);
    }
    if std::process::Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        return None;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let partial = cache.join("debian-go.tar.partial");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "mmdebstrap --variant=minbase --include=golang-go,ca-certificates --format=tar \
             --customize-hook='rm -f \"$1\"/etc/resolv.conf \"$1\"/etc/hostname' bookworm - \
             | mmtarfilter --path-exclude='/dev/*' > \"$0\"",
        )
        .arg(&partial)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .status()
        .unwrap();
    assert!(st.success(), "mmdebstrap failed");
    std::fs::rename(&partial, &tar).unwrap();
    Some(tar)
}

/// examples/go-server end to end: slow (mmdebstrap once, about 2 min; the
/// import and the Go build, minutes in a debug build), so `--ignored`;
/// tests/run.sh runs it.
#[test]
#[ignore = "slow: builds a Debian Go base image; run by tests/run.sh"]
fn go_server_example_builds_reproducibly_small_and_serves() {
    common::require_sandbox!();
    let Some(tar) = go_base_tar() else {
        common::print_skip("mmdebstrap is missing (apt-get install mmdebstrap)");
        return;
    };
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/go-server");
    let mut digests = Vec::new();
    for name in ["one", "two/nested"] {
        let dir = tempfile::tempdir().unwrap();
        let c = Ctx { dir };
        let out = c.kiln(&[
            "image",
            "import",
            tar.to_str().unwrap(),
            "--tag",
            "debian-go",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let ctx = c.dir.path().join(name);
        std::fs::create_dir_all(&ctx).unwrap();
        for f in ["Dockerfile", "go.mod", "main.go"] {
            std::fs::copy(example.join(f), ctx.join(f)).unwrap();
        }
        let m = c.build(
            &ctx,
            &["--build-arg", "GO_IMAGE=debian-go", "-t", "go-server"],
        );
        // Only the binary and the CA bundle, under 10 MB.
        let files = c.files(&m);
        let regular: Vec<&String> = files.iter().filter(|f| f.contains(" -r")).collect();
        assert_eq!(regular.len(), 2, "{files:?}");
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(" etc/ssl/certs/ca-certificates.crt"))
        );
        assert!(files.iter().any(|f| f.ends_with(" server")));
        let manifest = c.json(&m);
        let size: u64 = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum();
        assert!(size < 10 << 20, "image is {size} bytes");
        // A no-op rebuild builds nothing.
        let again = c.build_output(&ctx, &["--build-arg", "GO_IMAGE=debian-go"]);
        assert!(!stderr(&again).contains(" built "), "{}", stderr(&again));
        digests.push(m);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn copy_from_stage_keeps_owners_and_honours_wildcards_excludes_symlinks_and_parents() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox AS src
RUN mkdir -p /out/sub && echo a > /out/a.txt && echo bb > /out/b.md \\
 && echo ccc > /out/sub/c.txt && chown -R 1234:99 /out && ln -s /out/a.txt /link
FROM busybox
COPY --from=src /out/*.txt /wild/
COPY --from=src --exclude=*.md /out /nomd
COPY --from=src /link /followed
COPY --parents x/./y/*.txt /par/
COPY --parents x/y/k.txt /keep/
",
            ),
            ("x/y/k.txt", "k\n"),
            ("x/y/skip.md", "s\n"),
        ],
    );
    let m = c.build(&ctx, &[]);
    let files = c.files(&m);
    let has = |s: &str| files.iter().any(|f| f.ends_with(s));
    // The base image is layer 0; then one layer per COPY.
    assert!(
        files.contains(&"1 -rw-r--r-- 1234/99 2 wild/a.txt".to_string()),
        "{files:?}"
    );
    assert!(!has(" wild/b.md") && !has(" wild/sub/c.txt"), "{files:?}");
    assert!(
        files.contains(&"2 -rw-r--r-- 1234/99 4 nomd/sub/c.txt".to_string()),
        "{files:?}"
    );
    assert!(has(" nomd/a.txt") && !has(" nomd/b.md"), "{files:?}");
    assert!(
        files.contains(&"3 -rw-r--r-- 1234/99 2 followed".to_string()),
        "{files:?}"
    );
    assert!(
        has(" par/y/k.txt") && !has(" par/y/skip.md") && !has(" par/x/"),
        "{files:?}"
    );
    assert!(has(" keep/x/y/k.txt"), "{files:?}");
}

#[test]
fn copy_from_an_image_and_run_heredocs() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN <<EOF
echo hello > /h1
EOF
RUN <<EOF
#!/bin/sh
echo \"$0\" > /h2
EOF
RUN cat <<A > /h3 && cat <<B >> /h3
one
A
two
B
FROM scratch
COPY --from=busybox /bin/busybox /bin/busybox
COPY --from=0 /h1 /h2 /h3 /out/
",
        )],
    );
    let m = c.build(&ctx, &["-t", "heredocs"]);
    let files = c.files(&m);
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("0 -rwxr-xr-x 0/0 ") && f.ends_with(" bin/busybox")),
        "{files:?}"
    );
    // The heredoc outputs, read back through the image's own busybox.
    let run = c.kiln(&[
        "run",
        "heredocs",
        "--",
        "/bin/busybox",
        "cat",
        "/out/h1",
        "/out/h2",
        "/out/h3",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run), "hello\n/dev/pipes/EOF\none\ntwo\n");
}

#[test]
fn copy_keeps_existing_parents_follows_destination_symlinks_and_workdir_belongs_to_user() {
    common::require_sandbox!();
    let c = Ctx::new();
    let ctx = c.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox
RUN mkdir -p /home/user/app && chown 1000:1000 /home/user/app && chmod 700 /home/user/app \\
 && mkdir /srv && ln -s /srv /app
COPY a.txt /home/user/app/
COPY a.txt /app/
USER user
WORKDIR /data/w
",
            ),
            ("a.txt", "a\n"),
        ],
    );
    let m = c.build(&ctx, &[]);
    let files = c.files(&m);
    assert!(
        files.contains(&"2 drwx------ 1000/1000 0 home/user/app/".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"2 -rw-r--r-- 0/0 2 home/user/app/a.txt".to_string()),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("3 ") && f.ends_with(" srv/a.txt")),
        "{files:?}"
    );
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("3 ") && f.contains(" app/")),
        "{files:?}"
    );
    assert!(
        files.contains(&"4 drwxr-xr-x 1000/1000 0 data/w/".to_string()),
        "{files:?}"
    );
}

#[test]
fn copy_link_layer_does_not_depend_on_the_steps_below_it() {
    let c = Ctx::new();
    let step_hashes = |dockerfile: &str| -> Vec<String> {
        let ctx = c.context("link", &[("Dockerfile", dockerfile), ("a.txt", "a\n")]);
        let out = c.kiln(&["plan", ctx.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["stages"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["derivation"]["hash"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let a = step_hashes("FROM busybox\nRUN echo 1 > /x\nCOPY --link a.txt /a\nRUN cat /a\n");
    let b = step_hashes("FROM busybox\nRUN echo 2 > /x\nCOPY --link a.txt /a\nRUN cat /a\n");
    let plain = step_hashes("FROM busybox\nRUN echo 2 > /x\nCOPY a.txt /a\nRUN cat /a\n");
    assert_ne!(a[0], b[0]);
    assert_eq!(a[1], b[1], "the --link layer is shared");
    assert_ne!(a[2], b[2], "the steps after it still see the change below");
    assert_ne!(b[1], plain[1]);
}

#[test]
fn run_mounts_cache_bind_tmpfs_and_secret_leave_nothing_in_the_image() {
    common::require_sandbox!();
    let c = Ctx::new();
    let secret = c.dir.path().join("token");
    std::fs::write(&secret, "s3cr3t-value\n").unwrap();
    let ctx = c.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox AS files
RUN mkdir /data && echo from-stage > /data/f
FROM busybox
ARG N=1
RUN --mount=type=cache,target=/cache echo run-$N >> /cache/log && cp /cache/log /seen
RUN --mount=type=bind,source=conf,target=/conf cat /conf/c.txt > /bound
RUN --mount=type=bind,from=files,source=/data,target=/d cat /d/f > /from-stage
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/x && ls /scratch > /listed
RUN --mount=type=secret,id=token,required=true wc -c < /run/secrets/token > /secret-len
",
            ),
            ("conf/c.txt", "conf\n"),
        ],
    );
    let src = format!("id=token,src={}", secret.display());
    let m = c.build(&ctx, &["--secret", &src, "-t", "mounts"]);
    let files = c.files(&m);
    let has = |s: &str| files.iter().any(|f| f.ends_with(s));
    assert!(
        !has(" cache/log") && !has(" conf/c.txt") && !has(" d/f"),
        "{files:?}"
    );
    assert!(
        !has(" scratch/x") && !has(" run/secrets/token"),
        "{files:?}"
    );
    let cat = |path: &str| {
        let out = c.kiln(&["run", "mounts", "--", "cat", path]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(cat("/seen"), "run-1\n");
    assert_eq!(cat("/bound"), "conf\n");
    assert_eq!(cat("/from-stage"), "from-stage\n");
    assert_eq!(cat("/listed"), "x\n");
    assert_eq!(cat("/secret-len").trim(), "13");
    // The cache persists into the next build that re-runs the step.
    let m2 = c.build(
        &ctx,
        &["--secret", &src, "--build-arg", "N=2", "-t", "mounts"],
    );
    assert_ne!(m, m2);
    assert_eq!(cat("/seen"), "run-1\nrun-2\n");
    // The secret's value is nowhere in the store's blobs, objects or logs.
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "-a", "s3cr3t-value"])
        .arg(c.store())
        .output()
        .unwrap();
    assert!(grep.stdout.is_empty(), "{}", stdout(&grep));
    // A missing required secret names it.
    let out = c.build_output(&ctx, &["--build-arg", "N=3"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("secret `token` is required"),
        "{}",
        stderr(&out)
    );
    c.verify_clean();
}

#[test]
fn onbuild_triggers_run_when_the_image_is_used_as_a_base() {
    common::require_sandbox!();
    let c = Ctx::new();
    let base = c.context(
        "base",
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD COPY hello.txt /hello.txt\nONBUILD RUN echo triggered > /t\n",
        )],
    );
    let b = c.build(&base, &["-t", "withtriggers"]);
    let config = c.config(&b);
    assert_eq!(
        config["config"]["OnBuild"],
        serde_json::json!(["COPY hello.txt /hello.txt", "RUN echo triggered > /t"])
    );
    let child = c.context(
        "child",
        &[
            (
                "Dockerfile",
                "FROM withtriggers\nRUN cat /hello.txt /t > /both\n",
            ),
            ("hello.txt", "hi\n"),
        ],
    );
    let m = c.build(&child, &["-t", "child"]);
    let config = c.config(&m);
    assert!(config["config"]["OnBuild"].is_null(), "{config}");
    let out = c.kiln(&["run", "child", "--", "cat", "/both"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\ntriggered\n");
}
