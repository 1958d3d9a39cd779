#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

//! The floor of any stat cache (issue #3): to see that no file of a context
//! changed, a cache must `lstat` every one of them. This lists every
//! directory of a tree and `fstatat`s each name relative to it, and nothing
//! else, on as many threads as there are cores, and prints the best time of
//! the rounds. `tests/bench-context.sh` runs it beside kiln's warm pass.
//!
//!     cargo bench --bench lstat -- DIR [ROUNDS]

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

/// Every directory below `root` (and `root`).
fn directories(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut i = 0;
    while let Some(dir) = dirs.get(i).cloned() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            }
        }
        i += 1;
    }
    dirs
}

/// Lists `dir` and `lstat`s each name in it; returns how many.
fn stat_all(dir: &Path) -> usize {
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let mut stream = nix::dir::Dir::from_fd(nix::unistd::dup(&fd).unwrap()).unwrap();
    let mut n = 0;
    for item in stream.iter() {
        let item = item.unwrap();
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        nix::sys::stat::fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        n += 1;
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let root = PathBuf::from(args.first().expect("usage: lstat DIR [ROUNDS]"));
    let rounds: usize = args.get(1).map_or(5, |r| r.parse().unwrap());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let dirs = directories(&root);
    let mut best = f64::MAX;
    let mut files = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        files = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let dirs = &dirs;
                    scope.spawn(move || {
                        dirs.iter()
                            .skip(t)
                            .step_by(threads)
                            .map(|d| stat_all(d))
                            .sum::<usize>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "lstat floor: {files} names in {} directories of {}, {threads} threads: best {best:.3}s",
        dirs.len(),
        String::from_utf8_lossy(root.as_os_str().as_bytes()),
    );
}
