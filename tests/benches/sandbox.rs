#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

//! Sandbox start-to-exit overhead as a build step pays it (issue #4):
//! `kiln::sandbox::run` of `/bin/true` over a busybox layer, from a running
//! process, with a fresh overlay upper dir on disk each time (as for a RUN
//! step), against spawning `unshare --user --map-root-user --mount --net
//! --pid --fork true` from the same process. The two alternate, run by run.
//! Goal: kiln within 2x of unshare.
//!
//! `tests/bench-sandbox.sh` measures the same through the CLI (`kiln run
//! --rootfs`), which adds one start of the kiln binary. Run with
//! `cargo bench --bench sandbox [-- RUNS]` (root, or unprivileged user
//! namespaces, and /bin/busybox).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln::sandbox::{self, Output, Spec, Upper};

fn busybox_layer(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("layer");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    sandbox::IdMap::for_invoker().shift_tree(&root).unwrap();
    root
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let layer = busybox_layer(dir.path());
    let helper = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    let step = |i: usize| {
        let upper = dir.path().join(format!("upper{i}"));
        let work = dir.path().join(format!("work{i}"));
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&work).unwrap();
        let mut spec = Spec::new(
            helper.clone(),
            Upper::Dir {
                upper: upper.clone(),
                work: work.clone(),
            },
            vec!["/bin/true".into()],
        );
        spec.lower = vec![layer.clone()];
        spec.output = Output::Null;
        let start = Instant::now();
        let outcome = sandbox::run(&spec).expect("the sandbox runs");
        let took = start.elapsed().as_secs_f64();
        assert!(outcome.status.success());
        let _ = std::fs::remove_dir_all(&upper);
        let _ = std::fs::remove_dir_all(&work);
        took
    };
    let unshare = || {
        let start = Instant::now();
        let status = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--net",
                "--pid",
                "--fork",
                "true",
            ])
            .status()
            .expect("unshare runs");
        let took = start.elapsed().as_secs_f64();
        assert!(status.success());
        took
    };
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let measure = |what: &str, offset: usize| {
        for i in 0..10 {
            step(offset + i);
            unshare();
        }
        let (mut kiln, mut peer) = (Vec::new(), Vec::new());
        for i in 0..runs {
            kiln.push(step(offset + 10 + i));
            peer.push(unshare());
        }
        let (k, u) = (median(kiln.clone()), median(peer.clone()));
        println!("{what}:");
        println!(
            "  sandbox::run /bin/true (overlay upper on disk): median {:.2} ms, min {:.2} ms ({runs} runs)",
            k * 1e3,
            min(&kiln) * 1e3
        );
        println!(
            "  unshare --user --map-root-user --mount --net --pid --fork true: median {:.2} ms, min {:.2} ms",
            u * 1e3,
            min(&peer) * 1e3
        );
        println!("  ratio (medians): {:.2}x (goal <= 2x)", k / u);
    };
    // A single-threaded caller (`kiln run`) forks the helper.
    measure("single-threaded caller (kiln run): the helper is forked", 0);
    // A build runs rayon threads: the helper is exec'd.
    let (park, parked) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || parked.recv());
    measure(
        "multi-threaded caller (kiln build): the helper is exec'd",
        runs + 10,
    );
    drop(park);
    let _ = thread.join();
}
