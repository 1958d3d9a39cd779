//! The build context as COPY sees it: a walk of the context directory that
//! applies `.dockerignore` the way BuildKit's file sync does
//! (tonistiigi/fsutil's filter walker), and the lookup of the ignore file.
//!
//! This module reads the filesystem and never writes it. It does not follow
//! symlinks below the root. [`walk`] does not open regular files; [`hash`]
//! hashes their content, in parallel, with a stat cache.
//!
//! Invariants of [`walk`]:
//! - Every entry is below the root, relative, `/`-separated, and the list is
//!   sorted by path bytes (so a directory comes before its contents). The
//!   root itself is not listed.
//! - A path is listed iff it is not excluded, or it is an excluded directory
//!   holding a listed path (F183). A directory that is not excluded is
//!   listed even if everything inside it is excluded (F186).
//! - An excluded directory is read only if
//!   [`Matcher::must_enter_excluded_dir`] says an exception could reach
//!   inside; failing to read it for lack of permission is then not an error,
//!   as in fsutil. A path that vanishes during the walk is left out.
//! - Directory entries are visited in byte order, never readdir order.

use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::dockerfile::dockerignore::{self, IgnoreError, MatchInfo, Matcher, Pruning};

pub mod hash;

/// A failure to read the build context or its ignore file.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context root cannot be examined.
    #[error("failed to open build context {path}")]
    OpenRoot {
        /// The context root.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The context root is not a directory.
    #[error("build context {path} is not a directory")]
    NotADirectory {
        /// The context root.
        path: PathBuf,
    },
    /// A directory that is part of the context cannot be listed.
    #[error("failed to read directory {path}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An entry cannot be `lstat`ed.
    #[error("failed to stat {path}")]
    Stat {
        /// The entry.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A symlink's target cannot be read.
    #[error("failed to read symlink {path}")]
    ReadLink {
        /// The symlink.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The ignore file exists but cannot be read.
    #[error("failed to read ignore file {path}")]
    ReadIgnore {
        /// The ignore file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The ignore file is not UTF-8.
    #[error("ignore file {path} is not valid UTF-8 at line {line}")]
    IgnoreNotUtf8 {
        /// The ignore file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// The ignore file has an unusable line.
    #[error("failed to parse ignore file {path}")]
    ParseIgnore {
        /// The ignore file.
        path: PathBuf,
        /// The line and what is wrong with it.
        #[source]
        source: IgnoreError,
    },
}

/// What kind of file an [`Entry`] is (from `lstat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, not followed.
    Symlink {
        /// The link's target as stored, possibly relative or dangling.
        target: PathBuf,
    },
    /// A FIFO, socket or device node; `mode` tells which.
    Other,
}

/// A time from `stat`, as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds (negative before 1970).
    pub seconds: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

/// One path of the build context with its `lstat` data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root, `/`-separated, never empty.
    pub path: PathBuf,
    /// File, directory, symlink or other.
    pub kind: EntryKind,
    /// `st_mode`: file type and permission bits (setuid, setgid, sticky
    /// included).
    pub mode: u32,
    /// `st_size` in bytes.
    pub size: u64,
    /// `st_uid`.
    pub uid: u32,
    /// `st_gid`.
    pub gid: u32,
    /// `st_dev`, the device holding the entry.
    pub dev: u64,
    /// `st_ino`.
    pub inode: u64,
    /// `st_nlink`, for hard-link detection.
    pub nlink: u64,
    /// `st_rdev`, the device number of a device node.
    pub rdev: u64,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
}

impl Entry {
    /// The relative path as bytes, the order [`walk`] sorts by.
    pub fn path_bytes(&self) -> &[u8] {
        self.path.as_os_str().as_bytes()
    }
}

/// Lists every path below `root` that COPY may see, BuildKit's way
/// ([`Pruning::BuildKit`]). See the module invariants.
pub fn walk(root: &Path, matcher: &Matcher) -> Result<Vec<Entry>, ContextError> {
    walk_with(root, matcher, Pruning::BuildKit)
}

/// [`walk`] with an explicit rule for entering excluded directories.
///
/// The walk goes level by level (no recursion, so depth is bounded by the
/// tree, not by a stack): every directory of a level is listed in parallel
/// (rayon), and within a directory the listed names are `lstat`ed in
/// parallel relative to the open directory (`statx(dirfd, name)`, no
/// absolute path lookups). Which names are listed is decided from the
/// directory entries' types (`d_type`) and the ignore patterns.
///
/// Each directory's listing is sorted on its own, its subdirectories'
/// contents placed as one block under the key `name/` (so `a-c` and `a.d`
/// come between `a` and `a/b`, as `-` and `.` sort before `/`); the listings
/// are then stitched together in one pass, which gives path-byte order
/// without sorting the whole context.
pub fn walk_with(
    root: &Path,
    matcher: &Matcher,
    pruning: Pruning,
) -> Result<Vec<Entry>, ContextError> {
    use rayon::prelude::*;
    // Like fsutil, the root may be a symlink to a directory.
    let meta = fs::metadata(root).map_err(|source| ContextError::OpenRoot {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ContextError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    // Every directory's sorted items, by id: the root is 0, and a level's
    // subdirectories get the ids after every directory listed before them.
    let mut listings: Vec<Vec<Item>> = Vec::new();
    let mut level = vec![Dir {
        abs: root.to_path_buf(),
        rel: Vec::new(),
        info: MatchInfo::default(),
        excluded: false,
    }];
    while !level.is_empty() {
        let listed: Vec<Result<Listing, ContextError>> = level
            .par_iter()
            .map(|dir| list_dir(dir, matcher, pruning, dir.rel.is_empty()))
            .collect();
        let mut next = Vec::new();
        let next_id = listings.len() + level.len();
        for listing in listed {
            let Listing { mut items, dirs } = listing?;
            // Local subdirectory numbers become ids.
            let base = next_id + next.len();
            for item in &mut items {
                if let Item::Held { dir, .. } | Item::Subtree { dir, .. } = item {
                    *dir += base;
                }
            }
            listings.push(items);
            next.extend(dirs);
        }
        level = next;
    }
    // An excluded directory entered for exceptions is listed only if
    // something below it is (F183); children have larger ids than parents.
    let mut holds = vec![false; listings.len()];
    for id in (0..listings.len()).rev() {
        holds[id] = listings[id].iter().any(|item| match item {
            Item::Entry(_) => true,
            Item::Held { dir, .. } | Item::Subtree { dir, .. } => holds[*dir],
        });
    }
    let total = listings.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    let mut items: Vec<std::vec::IntoIter<Item>> =
        listings.into_iter().map(Vec::into_iter).collect();
    let mut stack = vec![0];
    while let Some(&id) = stack.last() {
        match items[id].next() {
            None => {
                stack.pop();
            }
            Some(Item::Entry(entry)) => out.push(entry),
            Some(Item::Held { entry, dir }) => {
                if holds[dir] {
                    out.push(entry);
                }
            }
            Some(Item::Subtree { dir, .. }) => stack.push(dir),
        }
    }
    Ok(out)
}

/// A directory to list.
struct Dir {
    abs: PathBuf,
    rel: Vec<u8>,
    /// This directory's pattern results, for its children.
    info: MatchInfo,
    /// Excluded, entered only because an exception may reach inside.
    excluded: bool,
}

/// One place in a directory's sorted listing.
enum Item {
    /// A listed entry.
    Entry(Entry),
    /// An excluded directory entered for exceptions: listed only if the
    /// contents of directory `dir` list something.
    Held {
        /// The directory's own entry.
        entry: Entry,
        /// Its contents' listing.
        dir: usize,
    },
    /// The contents of directory `dir`, sorted under `key` (its path and
    /// a `/`).
    Subtree {
        /// The subdirectory's path followed by `/`.
        key: Vec<u8>,
        /// Its listing (local number in [`Listing::dirs`], then id).
        dir: usize,
    },
}

impl Item {
    fn key(&self) -> &[u8] {
        match self {
            Item::Entry(entry) | Item::Held { entry, .. } => entry.path_bytes(),
            Item::Subtree { key, .. } => key,
        }
    }
}

/// What listing one directory found.
struct Listing {
    /// Its items, sorted by key.
    items: Vec<Item>,
    /// Directories to list next, numbered as in `items`.
    dirs: Vec<Dir>,
}

/// A kept name after `lstat`: its entry, its pattern results (for a
/// directory) and whether it is excluded.
struct Stated {
    entry: Entry,
    info: Option<MatchInfo>,
    excluded: bool,
}

/// Appends `item` to a directory's sorted `items`, after the waiting
/// subdirectory blocks whose keys sort before it.
fn place(items: &mut Vec<Item>, item: Item, subtrees: &mut std::collections::VecDeque<Item>) {
    while subtrees.front().is_some_and(|s| s.key() < item.key()) {
        items.extend(subtrees.pop_front());
    }
    items.push(item);
}

/// Lists one directory: matches each name, `lstat`s those kept (in
/// parallel, relative to the directory's descriptor).
fn list_dir(
    dir: &Dir,
    matcher: &Matcher,
    pruning: Pruning,
    is_root: bool,
) -> Result<Listing, ContextError> {
    use nix::fcntl::{AtFlags, OFlag};
    use rayon::prelude::*;
    let mut listing = Listing {
        items: Vec::new(),
        dirs: Vec::new(),
    };
    let read_err = |errno: nix::errno::Errno| ContextError::ReadDir {
        path: dir.abs.clone(),
        source: io::Error::from(errno),
    };
    let opened = nix::fcntl::open(
        &dir.abs,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .and_then(|fd| Ok((nix::unistd::dup(&fd)?, fd)));
    let (stream_fd, fd) = match opened {
        Ok(fds) => fds,
        // fsutil tolerates an unreadable directory it only entered to
        // look for exceptions.
        Err(errno)
            if !is_root
                && (vanished(&io::Error::from(errno))
                    || (dir.excluded && errno == nix::errno::Errno::EACCES)) =>
        {
            return Ok(listing);
        }
        Err(errno) => return Err(read_err(errno)),
    };
    let mut stream = nix::dir::Dir::from_fd(stream_fd).map_err(read_err)?;
    // Which names are kept, and how: (path, offset of the name in it,
    // the directory's pattern results, excluded).
    let mut kept: Vec<(Vec<u8>, usize, Option<MatchInfo>, bool)> = Vec::new();
    for item in stream.iter() {
        let item = item.map_err(read_err)?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match item.file_type() {
            Some(t) => t == nix::dir::Type::Directory,
            // No d_type from this filesystem: ask.
            None => match nix::sys::stat::fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st.st_mode & libc::S_IFMT == libc::S_IFDIR,
                Err(errno) if vanished(&io::Error::from(errno)) => continue,
                Err(errno) => {
                    return Err(ContextError::Stat {
                        path: dir.abs.join(std::ffi::OsStr::from_bytes(name)),
                        source: io::Error::from(errno),
                    });
                }
            },
        };
        let mut rel = Vec::with_capacity(dir.rel.len() + 1 + name.len());
        rel.extend_from_slice(&dir.rel);
        if !rel.is_empty() {
            rel.push(b'/');
        }
        let start = rel.len();
        rel.extend_from_slice(name);
        let (excluded, info) = matcher.matches_with_parent(&rel, &dir.info);
        if excluded && !(is_dir && matcher.must_enter_excluded_dir(&rel, pruning)) {
            continue;
        }
        kept.push((rel, start, is_dir.then_some(info), excluded));
    }
    drop(stream);
    // In name order (every path here has the same parent), so the items
    // come out sorted and only the subdirectories' blocks need merging in.
    kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let stated: Vec<Result<Option<Stated>, ContextError>> = kept
        .into_par_iter()
        .with_min_len(128)
        .map(|(rel, start, info, excluded)| {
            let name = &rel[start..];
            let host = || dir.abs.join(std::ffi::OsStr::from_bytes(name));
            let st = match nix::sys::stat::fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(errno) if vanished(&io::Error::from(errno)) => return Ok(None),
                Err(errno) => {
                    return Err(ContextError::Stat {
                        path: host(),
                        source: io::Error::from(errno),
                    });
                }
            };
            let kind = match st.st_mode & libc::S_IFMT {
                libc::S_IFREG => EntryKind::File,
                libc::S_IFDIR => EntryKind::Dir,
                libc::S_IFLNK => {
                    let target = nix::fcntl::readlinkat(&fd, name).map_err(|errno| {
                        ContextError::ReadLink {
                            path: host(),
                            source: io::Error::from(errno),
                        }
                    })?;
                    EntryKind::Symlink {
                        target: PathBuf::from(target),
                    }
                }
                _ => EntryKind::Other,
            };
            let entry = Entry {
                path: PathBuf::from(std::ffi::OsString::from_vec(rel)),
                kind,
                mode: st.st_mode,
                size: u64::try_from(st.st_size).unwrap_or(0),
                uid: st.st_uid,
                gid: st.st_gid,
                dev: st.st_dev,
                inode: st.st_ino,
                nlink: st.st_nlink,
                rdev: st.st_rdev,
                mtime: timestamp(st.st_mtime, st.st_mtime_nsec),
                ctime: timestamp(st.st_ctime, st.st_ctime_nsec),
            };
            Ok(Some(Stated {
                entry,
                info,
                excluded,
            }))
        })
        .collect();
    // Entries come in name order; a subdirectory's block (key `name/`)
    // waits in `subtrees` (sorted) until the first entry whose key is
    // greater. Every key has this directory's path as its prefix and a name
    // has no `/`, so comparing keys compares the paths below them.
    listing.items.reserve(stated.len());
    let mut subtrees = std::collections::VecDeque::new();
    for item in stated {
        let Some(Stated {
            entry,
            info,
            excluded,
        }) = item?
        else {
            continue;
        };
        // The type from lstat decides: a name replaced by a directory
        // since it was read is entered, one no longer a directory is not.
        if entry.kind == EntryKind::Dir {
            let rel = entry.path_bytes().to_vec();
            let mut key = rel.clone();
            key.push(b'/');
            let local = listing.dirs.len();
            listing.dirs.push(Dir {
                abs: dir.abs.join(entry.path.file_name().unwrap_or_default()),
                rel,
                info: info.unwrap_or_default(),
                excluded,
            });
            let item = if excluded {
                Item::Held { entry, dir: local }
            } else {
                Item::Entry(entry)
            };
            place(&mut listing.items, item, &mut subtrees);
            // `x!/` sorts before a waiting `x/`: keep the queue sorted.
            let at = subtrees.partition_point(|s| s.key() < key.as_slice());
            subtrees.insert(at, Item::Subtree { key, dir: local });
        } else if !excluded {
            place(&mut listing.items, Item::Entry(entry), &mut subtrees);
        }
    }
    listing.items.extend(subtrees);
    Ok(listing)
}

/// Reads the ignore file for a build (F176): `<Dockerfile>.dockerignore`
/// beside the Dockerfile if it exists, else `<context>/.dockerignore`, else
/// none (an empty matcher). A candidate that is missing or is a directory
/// is skipped, as BuildKit ignores its read error.
pub fn load_ignore(context: &Path, dockerfile: &Path) -> Result<Matcher, ContextError> {
    for path in dockerignore::ignore_file_candidates(context, dockerfile) {
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if vanished(&err) || err.kind() == io::ErrorKind::IsADirectory => continue,
            Err(source) => return Err(ContextError::ReadIgnore { path, source }),
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(err) => {
                let before = &bytes[..err.valid_up_to()];
                let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
                return Err(ContextError::IgnoreNotUtf8 { path, line });
            }
        };
        return match dockerignore::parse(text) {
            Ok(patterns) => Ok(Matcher::new(patterns)),
            Err(source) => Err(ContextError::ParseIgnore { path, source }),
        };
    }
    Ok(Matcher::default())
}

/// Whether an error means the path is gone (fsutil's `isNotExist`:
/// `ENOENT` or `ENOTDIR`).
fn vanished(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn timestamp(seconds: i64, nanos: i64) -> Timestamp {
    Timestamp {
        seconds,
        nanos: u32::try_from(nanos).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    struct Ctx {
        dir: tempfile::TempDir,
    }

    impl Ctx {
        fn new() -> Ctx {
            Ctx {
                dir: tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}")),
            }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn file(&self, rel: &str, contents: &str) -> &Ctx {
            let path = self.root().join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap_or_else(|err| panic!("mkdir {rel}: {err}"));
            }
            fs::write(&path, contents).unwrap_or_else(|err| panic!("write {rel}: {err}"));
            self
        }

        fn dir(&self, rel: &str) -> &Ctx {
            fs::create_dir_all(self.root().join(rel))
                .unwrap_or_else(|err| panic!("mkdir {rel}: {err}"));
            self
        }

        fn link(&self, rel: &str, target: &str) -> &Ctx {
            symlink(target, self.root().join(rel))
                .unwrap_or_else(|err| panic!("symlink {rel}: {err}"));
            self
        }

        fn walk(&self, ignore: &str) -> Vec<String> {
            self.walk_with(ignore, Pruning::BuildKit)
        }

        fn walk_with(&self, ignore: &str, pruning: Pruning) -> Vec<String> {
            let matcher = Matcher::new(
                dockerignore::parse(ignore).unwrap_or_else(|err| panic!("{ignore:?}: {err}")),
            );
            let entries = walk_with(self.root(), &matcher, pruning)
                .unwrap_or_else(|err| panic!("walk: {err}"));
            entries.iter().map(describe).collect()
        }
    }

    fn describe(entry: &Entry) -> String {
        let path = entry.path.to_string_lossy();
        match &entry.kind {
            EntryKind::File => format!("file {path}"),
            EntryKind::Dir => format!("dir {path}"),
            EntryKind::Symlink { target } => format!("symlink {path} -> {}", target.display()),
            EntryKind::Other => format!("other {path}"),
        }
    }

    /// Root ignores permission bits, so permission tests cannot fail there.
    fn permissions_enforced(dir: &Path) -> bool {
        fs::read_dir(dir).is_err()
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|err| panic!("chmod {}: {err}", path.display()));
    }

    #[test]
    fn no_ignore_file_lists_everything() {
        let ctx = Ctx::new();
        ctx.file("Dockerfile", "FROM scratch\n")
            .file("src/main.rs", "fn main() {}\n")
            .file(".dockerignore", "");
        assert_eq!(
            ctx.walk(""),
            [
                "file .dockerignore",
                "file Dockerfile",
                "dir src",
                "file src/main.rs"
            ]
        );
    }

    #[test]
    fn excluded_directory_is_skipped() {
        let ctx = Ctx::new();
        ctx.file("keep.txt", "").file("node_modules/a/b.js", "");
        assert_eq!(ctx.walk("node_modules"), ["file keep.txt"]);
    }

    #[test]
    fn excluded_directory_is_not_read() {
        let ctx = Ctx::new();
        ctx.file("keep.txt", "").file("locked/secret", "");
        let locked = ctx.root().join("locked");
        chmod(&locked, 0o000);
        let listed = ctx.walk("locked");
        chmod(&locked, 0o755);
        assert_eq!(listed, ["file keep.txt"]);
    }

    #[test]
    fn file_reincluded_inside_excluded_directory() {
        let ctx = Ctx::new();
        ctx.file("secret/public.txt", "")
            .file("secret/private.txt", "")
            .file("secret/sub/x", "")
            .file("other", "");
        assert_eq!(
            ctx.walk("secret/\n!secret/public.txt"),
            ["file other", "dir secret", "file secret/public.txt"]
        );
    }

    #[test]
    fn reinclusion_brings_every_excluded_parent() {
        let ctx = Ctx::new();
        ctx.file("a/b/c/keep", "")
            .file("a/b/c/drop", "")
            .file("a/x", "");
        assert_eq!(
            ctx.walk("a\n!a/b/c/keep"),
            ["dir a", "dir a/b", "dir a/b/c", "file a/b/c/keep"]
        );
    }

    #[test]
    fn excluded_directory_without_reincluded_paths_is_left_out() {
        let ctx = Ctx::new();
        ctx.file("secret/private.txt", "").file("other", "");
        assert_eq!(
            ctx.walk("secret\n!secret/public.txt"),
            ["file other"],
            "entered for the exception, but nothing came back"
        );
    }

    #[test]
    fn wildcard_exception_reaches_excluded_directories() {
        let ctx = Ctx::new();
        ctx.file("top.py", "")
            .file("top.txt", "")
            .file("sub/nested.py", "")
            .file("sub/nested.txt", "")
            .file("sub/deeper/x.py", "");
        assert_eq!(
            ctx.walk_with("*\n!**/*.py", Pruning::BuildKit),
            [
                "dir sub",
                "dir sub/deeper",
                "file sub/deeper/x.py",
                "file sub/nested.py",
                "file top.py"
            ]
        );
        // docker/cli#2919, the legacy builder: `sub` is never entered.
        assert_eq!(
            ctx.walk_with("*\n!**/*.py", Pruning::Classic),
            ["file top.py"]
        );
    }

    #[test]
    fn fsutil_walker_exclude_cases() {
        // tonistiigi/fsutil TestWalkerExclude and TestFSWalkNested.
        let ctx = Ctx::new();
        ctx.file("bar", "").file("foo2", "").file("foo/bar2", "");
        assert_eq!(
            ctx.walk("foo*\n!foo/bar2"),
            ["file bar", "dir foo", "file foo/bar2"]
        );
        let ctx = Ctx::new();
        ctx.file("foo/bar", "");
        assert_eq!(ctx.walk("foo\n!foo/bar"), ["dir foo", "file foo/bar"]);
    }

    #[test]
    fn parent_results_decide_like_fsutil() {
        // `!d` is skipped while visiting `d` (nothing matched yet), so it
        // is not a parent match for `d/f`, which stays excluded.
        let ctx = Ctx::new();
        ctx.file("d/f", "").file("d/g", "");
        assert_eq!(ctx.walk("d/f\n!d"), ["dir d", "file d/g"]);
    }

    #[test]
    fn empty_directories_are_kept() {
        let ctx = Ctx::new();
        ctx.dir("empty")
            .file("logs/a.log", "")
            .file("logs/b.log", "");
        assert_eq!(ctx.walk("**/*.log"), ["dir empty", "dir logs"]);
    }

    #[test]
    fn symlinks_are_listed_not_followed() {
        let ctx = Ctx::new();
        ctx.file("real/inner.txt", "")
            .link("to-dir", "real")
            .link("dangling", "nowhere/at/all")
            .link("abs", "/etc");
        assert_eq!(
            ctx.walk(""),
            [
                "symlink abs -> /etc",
                "symlink dangling -> nowhere/at/all",
                "dir real",
                "file real/inner.txt",
                "symlink to-dir -> real"
            ]
        );
        // Patterns see the link itself, never paths through it.
        assert_eq!(
            ctx.walk("to-dir/inner.txt\nreal"),
            [
                "symlink abs -> /etc",
                "symlink dangling -> nowhere/at/all",
                "symlink to-dir -> real"
            ]
        );
    }

    #[test]
    fn entries_are_sorted_by_path_bytes() {
        let ctx = Ctx::new();
        // Depth first would give `a`, `a/b`, `a-c`: `-` and `.` sort before `/`.
        ctx.file("a/b", "")
            .file("a-c", "")
            .file("a.d", "")
            .file("B", "")
            .file("é", "")
            .file("z", "");
        assert_eq!(
            ctx.walk(""),
            [
                "file B", "dir a", "file a-c", "file a.d", "file a/b", "file z", "file é"
            ]
        );
    }

    #[test]
    fn nested_listings_are_stitched_in_path_byte_order() {
        let ctx = Ctx::new();
        // Names that sort between `x` and `x/` at several depths, an empty
        // directory, and an excluded directory entered for an exception.
        for path in [
            "x/y/z",
            "x/y-1",
            "x/y.2",
            "x/y/a b",
            "x-",
            "x.",
            "x!/k",
            "x/y/",
            "w/v/u/t",
            "skip/keep/me",
            "skip/drop",
            "skip-not",
        ] {
            if let Some(dir) = path.strip_suffix('/') {
                ctx.dir(dir);
            } else {
                ctx.file(path, "");
            }
        }
        ctx.dir("empty");
        let listed = ctx.walk("skip\n!skip/keep/me\n");
        let mut sorted = listed.clone();
        sorted.sort_by(|a, b| {
            let path = |s: &str| {
                s.split_once(' ')
                    .map(|p| p.1.to_owned())
                    .unwrap_or_default()
            };
            path(a).cmp(&path(b))
        });
        assert_eq!(listed, sorted);
        assert_eq!(
            listed,
            [
                "dir empty",
                "dir skip",
                "file skip-not",
                "dir skip/keep",
                "file skip/keep/me",
                "dir w",
                "dir w/v",
                "dir w/v/u",
                "file w/v/u/t",
                "dir x",
                "dir x!",
                "file x!/k",
                "file x-",
                "file x.",
                "dir x/y",
                "file x/y-1",
                "file x/y.2",
                "file x/y/a b",
                "file x/y/z",
            ]
        );
    }

    #[test]
    fn non_utf8_names_are_listed_and_matched() {
        let ctx = Ctx::new();
        let name = OsString::from_vec(b"bad\xffname".to_vec());
        fs::write(ctx.root().join(&name), "").unwrap_or_else(|err| panic!("{err}"));
        ctx.file("good", "");
        let matcher = Matcher::default();
        let entries = walk(ctx.root(), &matcher).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(entries[0].path_bytes(), b"bad\xffname");
        let matcher = Matcher::from_patterns(["bad?name"]).unwrap_or_else(|err| panic!("{err}"));
        let entries = walk(ctx.root(), &matcher).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].path, Path::new("good"));
    }

    #[test]
    fn metadata_is_recorded() {
        let ctx = Ctx::new();
        ctx.file("tool", "#!/bin/sh\n");
        let path = ctx.root().join("tool");
        chmod(&path, 0o4751);
        let entries = walk(ctx.root(), &Matcher::default()).unwrap_or_else(|err| panic!("{err}"));
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|err| panic!("{err}"));
        let entry = &entries[0];
        assert_eq!(entry.kind, EntryKind::File);
        assert_eq!(entry.mode & 0o7777, 0o4751);
        assert_eq!(entry.mode & 0o170000, 0o100000);
        assert_eq!(entry.size, 10);
        assert_eq!(entry.uid, meta.uid());
        assert_eq!(entry.gid, meta.gid());
        assert_eq!(entry.dev, meta.dev());
        assert_eq!(entry.inode, meta.ino());
        assert_eq!(entry.nlink, 1);
        assert_eq!(
            entry.mtime,
            Timestamp {
                seconds: meta.mtime(),
                nanos: u32::try_from(meta.mtime_nsec()).unwrap_or(u32::MAX)
            }
        );
        assert_eq!(entry.ctime.seconds, meta.ctime());
    }

    #[test]
    fn fifo_is_listed_as_other() {
        let ctx = Ctx::new();
        let fifo = ctx.root().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|status| status.success()) {
            return; // no mkfifo on this machine
        }
        assert_eq!(ctx.walk(""), ["other pipe"]);
    }

    #[test]
    fn dockerignore_is_an_ordinary_context_file() {
        let ctx = Ctx::new();
        ctx.file(".dockerignore", "x\n")
            .file("Dockerfile", "")
            .file("x", "");
        assert_eq!(ctx.walk("x"), ["file .dockerignore", "file Dockerfile"]);
        // Excluding the build files is allowed (F185).
        assert_eq!(
            ctx.walk("x\n.dockerignore\nDockerfile"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unreadable_directory_in_the_context_is_an_error() {
        let ctx = Ctx::new();
        ctx.file("foo/bar/baz", "");
        let bar = ctx.root().join("foo/bar");
        chmod(&bar, 0o000);
        let enforced = permissions_enforced(&bar);
        let result = walk(ctx.root(), &Matcher::default());
        let excluded = Matcher::from_patterns(["**/bar"]).unwrap_or_else(|err| panic!("{err}"));
        let skipped = walk(ctx.root(), &excluded);
        let entered = Matcher::from_patterns(["**/bar", "!foo/bar/baz"])
            .unwrap_or_else(|err| panic!("{err}"));
        let entered = walk(ctx.root(), &entered);
        let reincluded =
            Matcher::from_patterns(["**/bar", "!foo/bar"]).unwrap_or_else(|err| panic!("{err}"));
        let reincluded = walk(ctx.root(), &reincluded);
        chmod(&bar, 0o755);
        if !enforced {
            return; // running as root
        }
        // tonistiigi/fsutil TestWalkerPermissionDenied.
        assert!(
            matches!(&result, Err(ContextError::ReadDir { path, source })
                if path == &bar && source.kind() == io::ErrorKind::PermissionDenied),
            "{result:?}"
        );
        let names = |r: Result<Vec<Entry>, ContextError>| {
            r.map(|es| es.iter().map(describe).collect::<Vec<_>>())
                .unwrap_or_else(|err| panic!("{err}"))
        };
        assert_eq!(names(skipped), ["dir foo"]);
        assert_eq!(
            names(entered),
            ["dir foo"],
            "entered for an exception, unreadable"
        );
        assert!(matches!(reincluded, Err(ContextError::ReadDir { .. })));
    }

    #[test]
    fn missing_or_file_root_is_an_error() {
        let ctx = Ctx::new();
        ctx.file("plain", "");
        let missing = walk(&ctx.root().join("nope"), &Matcher::default());
        assert!(matches!(missing, Err(ContextError::OpenRoot { .. })));
        let plain = walk(&ctx.root().join("plain"), &Matcher::default());
        assert!(matches!(plain, Err(ContextError::NotADirectory { .. })));
    }

    #[test]
    fn symlinked_root_is_followed() {
        let ctx = Ctx::new();
        ctx.file("real/a", "").link("ctx", "real");
        let entries = walk(&ctx.root().join("ctx"), &Matcher::default())
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(entries.iter().map(describe).collect::<Vec<_>>(), ["file a"]);
    }

    // F176: which ignore file is read.

    fn listed(ctx: &Ctx, dockerfile: &Path) -> Vec<String> {
        let matcher = load_ignore(ctx.root(), dockerfile).unwrap_or_else(|err| panic!("{err}"));
        walk(ctx.root(), &matcher)
            .unwrap_or_else(|err| panic!("{err}"))
            .iter()
            .map(describe)
            .collect()
    }

    #[test]
    fn dockerfile_specific_ignore_file_takes_precedence() {
        let ctx = Ctx::new();
        ctx.file(".dockerignore", "a\n")
            .file("build.Dockerfile", "")
            .file("build.Dockerfile.dockerignore", "b\n*.dockerignore\n")
            .file("a", "")
            .file("b", "");
        assert_eq!(
            listed(&ctx, &ctx.root().join("build.Dockerfile")),
            ["file a", "file build.Dockerfile"]
        );
        // Another Dockerfile falls back to the context's `.dockerignore`.
        assert_eq!(
            listed(&ctx, &ctx.root().join("Dockerfile")),
            [
                "file .dockerignore",
                "file b",
                "file build.Dockerfile",
                "file build.Dockerfile.dockerignore"
            ]
        );
    }

    #[test]
    fn dockerfile_specific_ignore_file_beside_a_dockerfile_elsewhere() {
        let ctx = Ctx::new();
        ctx.file("a", "").file("b", "");
        let elsewhere = Ctx::new();
        elsewhere
            .file("app.Dockerfile", "")
            .file("app.Dockerfile.dockerignore", "a\n");
        let matcher = load_ignore(ctx.root(), &elsewhere.root().join("app.Dockerfile"))
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(matcher.matches("a"));
        assert!(!matcher.matches("b"));
    }

    #[test]
    fn empty_specific_ignore_file_still_wins() {
        let ctx = Ctx::new();
        ctx.file(".dockerignore", "a\n")
            .file("Dockerfile.dockerignore", "")
            .file("a", "");
        let matcher = load_ignore(ctx.root(), &ctx.root().join("Dockerfile"))
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(matcher.is_empty());
    }

    #[test]
    fn missing_ignore_files_give_an_empty_matcher() {
        let ctx = Ctx::new();
        ctx.dir(".dockerignore"); // a directory is skipped, as BuildKit does
        let matcher = load_ignore(ctx.root(), &ctx.root().join("Dockerfile"))
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(matcher.is_empty());
    }

    #[test]
    fn ignore_file_errors_name_the_file_and_line() {
        let ctx = Ctx::new();
        ctx.file(".dockerignore", "ok\n\n[oops\n");
        let err = load_ignore(ctx.root(), &ctx.root().join("Dockerfile")).err();
        let expected = ctx.root().join(".dockerignore");
        assert!(
            matches!(&err, Some(ContextError::ParseIgnore { path, source: IgnoreError::BadGlob { line: 3, .. } }) if path == &expected),
            "{err:?}"
        );
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!(
                "failed to parse ignore file {}",
                expected.display()
            ))
        );

        fs::write(&expected, b"a\nb\xff\n").unwrap_or_else(|err| panic!("{err}"));
        let err = load_ignore(ctx.root(), &ctx.root().join("Dockerfile")).err();
        assert!(
            matches!(&err, Some(ContextError::IgnoreNotUtf8 { line: 2, .. })),
            "{err:?}"
        );
    }
}
