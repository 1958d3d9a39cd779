//! COPY and ADD without a sandbox: the layer dir is written directly from
//! the selected context files (or another stage's merged filesystem), with
//! owners shifted as every store tree's are.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{BuildError, Builder, StageState, io_err, resolve_dest};
use crate::dockerfile::instruction::Instruction;
use crate::dockerfile::stage::Step;
use crate::plan::FileKind;
use crate::plan::select::{self, clean_source};

struct Request<'a> {
    sources: &'a [String],
    heredocs: &'a [crate::dockerfile::instruction::HeredocSource],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    excludes: &'a [String],
    from: Option<&'a str>,
    add: bool,
}

/// Whether `rel` exists in the merged view of `trees` (top-down, whiteouts
/// honoured for the last component).
pub(super) fn exists_in(trees: &[PathBuf], rel: &str) -> bool {
    if rel.is_empty() {
        return true;
    }
    for tree in trees.iter().rev() {
        let p = tree.join(rel);
        if let Ok(m) = fs::symlink_metadata(&p) {
            return !is_whiteout(&m);
        }
    }
    false
}

/// Whether `rel` is a directory in the merged view of `trees`.
fn is_dir_in(trees: &[PathBuf], rel: &str) -> bool {
    for tree in trees.iter().rev() {
        if let Ok(m) = fs::symlink_metadata(tree.join(rel)) {
            return m.is_dir();
        }
    }
    false
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Creates `rel`'s parent directories (and `rel` itself if `last`) in the
/// layer dir, root-owned, 0755.
pub(super) fn make_parents(
    upper: &Path,
    rel: &str,
    offset: u32,
    last: bool,
) -> Result<(), BuildError> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let n = if last {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    let mut cur = upper.to_path_buf();
    for part in &parts[..n] {
        cur.push(part);
        if fs::symlink_metadata(&cur).is_err() {
            fs::create_dir(&cur).map_err(io_err("create", &cur))?;
            fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &cur))?;
            chown(&cur, 0, 0, offset)?;
        }
    }
    Ok(())
}

fn chown(path: &Path, uid: u32, gid: u32, offset: u32) -> Result<(), BuildError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid + offset), Some(gid + offset))
        .map_err(io_err("chown", path))
}

/// Looks `name` up in `/etc/passwd` or `/etc/group` of the stage.
fn lookup(trees: &[PathBuf], file: &str, name: &str) -> Option<u32> {
    let text = trees
        .iter()
        .rev()
        .find_map(|t| fs::read_to_string(t.join(file)).ok())?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

fn parse_chown(spec: &str, trees: &[PathBuf]) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(trees, "etc/passwd", user)
            .ok_or_else(|| format!("unknown user `{user}` in the stage's /etc/passwd"))?,
    };
    let gid = match group {
        None => match user.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let text = trees
                    .iter()
                    .rev()
                    .find_map(|t| fs::read_to_string(t.join("etc/passwd")).ok())
                    .unwrap_or_default();
                text.lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() > 3 && f[0] == user)
                            .then(|| f[3].parse().ok())
                            .flatten()
                    })
                    .unwrap_or(uid)
            }
        },
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(trees, "etc/group", g)
                .ok_or_else(|| format!("unknown group `{g}` in the stage's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// Copies one host file, dir or symlink to `dest` in the layer dir.
struct Writer {
    offset: u32,
    owner: (u32, u32),
    chmod: Option<u32>,
}

impl Writer {
    fn file(&self, src: &Path, dest: &Path, mode: u32) -> Result<(), BuildError> {
        if let Ok(m) = fs::symlink_metadata(dest)
            && m.is_dir()
        {
            fs::remove_dir_all(dest).map_err(io_err("replace", dest))?;
        }
        fs::copy(src, dest).map_err(io_err("copy", src))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(self.chmod.unwrap_or(mode)))
            .map_err(io_err("chmod", dest))?;
        chown(dest, self.owner.0, self.owner.1, self.offset)
    }

    fn bytes(&self, content: &[u8], dest: &Path, mode: u32) -> Result<(), BuildError> {
        fs::write(dest, content).map_err(io_err("write", dest))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(self.chmod.unwrap_or(mode)))
            .map_err(io_err("chmod", dest))?;
        chown(dest, self.owner.0, self.owner.1, self.offset)
    }

    fn dir(&self, dest: &Path, mode: u32) -> Result<(), BuildError> {
        if fs::symlink_metadata(dest).is_err() {
            fs::create_dir(dest).map_err(io_err("create", dest))?;
        }
        fs::set_permissions(dest, fs::Permissions::from_mode(self.chmod.unwrap_or(mode)))
            .map_err(io_err("chmod", dest))?;
        chown(dest, self.owner.0, self.owner.1, self.offset)
    }

    fn symlink(&self, target: &Path, dest: &Path) -> Result<(), BuildError> {
        let _ = fs::remove_file(dest);
        std::os::unix::fs::symlink(target, dest).map_err(io_err("symlink", dest))?;
        chown(dest, self.owner.0, self.owner.1, self.offset)
    }

    /// Copies a tree (one layer of a stage) under `dest`, recursively,
    /// applying whiteouts found in it.
    fn tree(&self, src: &Path, dest: &Path) -> Result<(), BuildError> {
        let m = fs::symlink_metadata(src).map_err(io_err("read", src))?;
        if is_whiteout(&m) {
            if let Ok(dm) = fs::symlink_metadata(dest) {
                if dm.is_dir() {
                    fs::remove_dir_all(dest).map_err(io_err("remove", dest))?;
                } else {
                    fs::remove_file(dest).map_err(io_err("remove", dest))?;
                }
            }
            return Ok(());
        }
        let mode = m.mode() & 0o7777;
        if m.is_dir() {
            self.dir(dest, mode)?;
            let mut names: Vec<_> = fs::read_dir(src)
                .map_err(io_err("read", src))?
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                self.tree(&src.join(&n), &dest.join(&n))?;
            }
            Ok(())
        } else if m.file_type().is_symlink() {
            let t = fs::read_link(src).map_err(io_err("read", src))?;
            self.symlink(&t, dest)
        } else if m.is_file() {
            self.file(src, dest, mode)
        } else {
            Ok(())
        }
    }
}

/// Runs a COPY or ADD step into `upper`.
pub(super) fn copy(
    b: &Builder<'_>,
    state: &StageState,
    estep: &Step,
    upper: &Path,
    done: &BTreeMap<usize, StageState>,
) -> Result<(), BuildError> {
    let req = match &estep.instruction {
        Instruction::Copy(c) => Request {
            sources: &c.sources,
            heredocs: &c.heredocs,
            dest: &c.dest,
            chown: c.chown.as_deref(),
            chmod: c.chmod.as_deref(),
            excludes: &c.excludes,
            from: c.from.as_deref(),
            add: false,
        },
        Instruction::Add(c) => Request {
            sources: &c.sources,
            heredocs: &c.heredocs,
            dest: &c.dest,
            chown: c.chown.as_deref(),
            chmod: c.chmod.as_deref(),
            excludes: &c.excludes,
            from: None,
            add: true,
        },
        _ => unreachable!("called for COPY and ADD only"),
    };
    let line = estep.instruction.span().start;
    let fail = |message: String| BuildError::Step { line, message };
    let trees: Vec<PathBuf> = state.layers.iter().map(|l| l.tree.clone()).collect();
    let owner = match req.chown {
        Some(spec) => parse_chown(spec, &trees).map_err(fail)?,
        None => (0, 0),
    };
    let chmod = match req.chmod {
        Some(s) => Some(
            u32::from_str_radix(s, 8)
                .map_err(|_| fail(format!("`--chmod={s}` is not an octal mode")))?,
        ),
        None => None,
    };
    let w = Writer {
        offset: b.offset_if_root(),
        owner,
        chmod,
    };
    let dest = resolve_dest(&estep.scope.workdir, req.dest);
    let many = req.sources.len() + req.heredocs.len() > 1;
    // A destination is a directory when written with a trailing `/` (or
    // as `.`), when there are several sources, or when it already is one.
    let dest_is_dir = req.dest.ends_with('/')
        || req.dest == "."
        || req.dest.ends_with("/.")
        || many
        || dest.is_empty()
        || is_dir_in(&trees, &dest);
    // Parents of the destination (or the destination dir itself).
    make_parents(upper, &dest, w.offset, dest_is_dir)?;
    let dest_path = upper.join(&dest);

    for h in req.heredocs {
        let target = if dest_is_dir {
            dest_path.join(&h.name)
        } else {
            dest_path.clone()
        };
        w.bytes(h.content.as_bytes(), &target, 0o644)?;
    }

    if let Some(from) = req.from {
        let index = estep
            .from_refs
            .iter()
            .find(|(name, _)| name == from)
            .and_then(|(_, i)| *i)
            .ok_or_else(|| fail(format!("`--from={from}`: only stages are supported yet")))?;
        let source = done
            .get(&index)
            .ok_or_else(|| fail(format!("stage `{from}` was not built")))?;
        let src_trees: Vec<PathBuf> = source.layers.iter().map(|l| l.tree.clone()).collect();
        for s in req.sources {
            let rel = clean_source(s);
            if !exists_in(&src_trees, &rel) {
                return Err(fail(format!("`{s}` not found in stage `{from}`")));
            }
            // Is it a directory (in the topmost tree holding it)?
            let top = src_trees
                .iter()
                .rev()
                .find(|t| fs::symlink_metadata(t.join(&rel)).is_ok())
                .expect("exists_in found it");
            let is_dir = rel.is_empty() || fs::metadata(top.join(&rel)).is_ok_and(|m| m.is_dir());
            let target = if is_dir {
                make_parents(upper, &dest, w.offset, true)?;
                dest_path.clone()
            } else if dest_is_dir {
                dest_path.join(Path::new(&rel).file_name().unwrap_or_default())
            } else {
                dest_path.clone()
            };
            for t in &src_trees {
                let p = t.join(&rel);
                if fs::symlink_metadata(&p).is_ok() {
                    if is_dir {
                        // Contents only, never the dir itself.
                        let mut names: Vec<_> = fs::read_dir(&p)
                            .map_err(io_err("read", &p))?
                            .filter_map(Result::ok)
                            .map(|e| e.file_name())
                            .collect();
                        names.sort();
                        for n in names {
                            w.tree(&p.join(&n), &target.join(&n))?;
                        }
                    } else {
                        w.tree(&p, &target)?;
                    }
                }
            }
        }
        return Ok(());
    }

    let ctx = &b.options.context_files;
    for s in req.sources {
        let picked = select::select(ctx, std::slice::from_ref(s), req.excludes)
            .map_err(|e| fail(e.to_string()))?;
        let clean = clean_source(s);
        let wildcard = crate::dockerfile::glob::has_meta(&clean);
        let depth = clean.split('/').count();
        // The roots: the source itself, or each wildcard match.
        let roots: Vec<&crate::plan::ContextFile> = if wildcard {
            picked
                .iter()
                .map(|&i| &ctx[i])
                .filter(|f| f.path.split('/').count() == depth)
                .collect()
        } else if clean.is_empty() {
            Vec::new()
        } else {
            ctx.iter().filter(|f| f.path == clean).collect()
        };
        let dir_of_root = |root: &str| -> bool {
            root.is_empty()
                || ctx
                    .iter()
                    .any(|f| f.path == root && f.kind == FileKind::Dir)
        };
        let root_names: Vec<String> = if clean.is_empty() {
            vec![String::new()]
        } else {
            roots.iter().map(|f| f.path.clone()).collect()
        };
        let into_dir = dest_is_dir || wildcard;
        if into_dir {
            make_parents(upper, &dest, w.offset, true)?;
        }
        for root in &root_names {
            let is_dir = dir_of_root(root);
            let base = if is_dir {
                make_parents(upper, &dest, w.offset, true)?;
                dest_path.clone()
            } else if into_dir {
                dest_path.join(Path::new(root).file_name().unwrap_or_default())
            } else {
                dest_path.clone()
            };
            for &i in &picked {
                let f = &ctx[i];
                let rel = if root.is_empty() {
                    f.path.as_str()
                } else if f.path == *root {
                    ""
                } else if let Some(r) = f.path.strip_prefix(&format!("{root}/")) {
                    r
                } else {
                    continue;
                };
                let target = if rel.is_empty() {
                    base.clone()
                } else {
                    base.join(rel)
                };
                let host = b.options.context.join(&f.path);
                match f.kind {
                    FileKind::Dir => {
                        if !rel.is_empty() {
                            w.dir(&target, f.mode)?;
                        }
                    }
                    FileKind::File => {
                        if req.add && is_tar(&host) {
                            // A local tar archive is unpacked where the file
                            // would have gone (its directory).
                            let dir = if rel.is_empty() {
                                dest_path.clone()
                            } else {
                                target.parent().unwrap_or(&dest_path).to_path_buf()
                            };
                            let inner = dir.strip_prefix(upper).unwrap_or(Path::new(""));
                            make_parents(upper, &inner.to_string_lossy(), w.offset, true)?;
                            extract_tar(&host, &dir, w.offset)?;
                        } else {
                            if let Some(parent) = target.parent() {
                                fs::create_dir_all(parent).map_err(io_err("create", parent))?;
                            }
                            w.file(&host, &target, f.mode)?;
                        }
                    }
                    FileKind::Symlink => {
                        let t = fs::read_link(&host).map_err(io_err("read", &host))?;
                        w.symlink(&t, &target)?;
                    }
                    FileKind::Other => {}
                }
            }
        }
    }
    Ok(())
}

fn is_tar(path: &Path) -> bool {
    let name = path.to_string_lossy();
    [".tar", ".tar.gz", ".tgz", ".tar.zst"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn extract_tar(src: &Path, dest: &Path, offset: u32) -> Result<(), BuildError> {
    fs::create_dir_all(dest).map_err(io_err("create", dest))?;
    let f = fs::File::open(src).map_err(io_err("open", src))?;
    crate::image::extract::apply_layer(
        f,
        dest,
        &crate::image::extract::ExtractOptions {
            id_offset: nix::unistd::geteuid().is_root().then_some(offset),
            xattrs: false,
        },
    )?;
    Ok(())
}

/// Fills `dir` with what a `RUN --mount=type=bind` shows: the context
/// files (under `source`) or, with `from`, a stage's merged filesystem.
pub(super) fn bind_source(
    b: &Builder<'_>,
    from: Option<&str>,
    source: &str,
    dir: &Path,
    done: &BTreeMap<usize, StageState>,
) -> Result<(), BuildError> {
    let w = Writer {
        offset: b.offset_if_root(),
        owner: (0, 0),
        chmod: None,
    };
    let rel = clean_source(source);
    match from {
        Some(from) => {
            let state = from
                .parse::<usize>()
                .ok()
                .and_then(|i| done.get(&i))
                .or_else(|| {
                    b.stage_names
                        .iter()
                        .find(|(n, _)| n == from)
                        .and_then(|(_, i)| done.get(i))
                })
                .ok_or_else(|| BuildError::Step {
                    line: 0,
                    message: format!("`from={from}`: only stages are supported yet"),
                })?;
            make_parents(dir, &rel, w.offset, true)?;
            for t in state.layers.iter().map(|l| &l.tree) {
                let p = t.join(&rel);
                if fs::symlink_metadata(&p).is_ok() {
                    w.tree(&p, &dir.join(&rel))?;
                }
            }
        }
        None => {
            make_parents(dir, &rel, w.offset, true)?;
            for f in &b.options.context_files {
                let under =
                    rel.is_empty() || f.path == rel || f.path.starts_with(&format!("{rel}/"));
                if !under {
                    continue;
                }
                let host = b.options.context.join(&f.path);
                let target = dir.join(&f.path);
                match f.kind {
                    FileKind::Dir => w.dir(&target, f.mode)?,
                    FileKind::File => {
                        if let Some(parent) = target.parent() {
                            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
                        }
                        w.file(&host, &target, f.mode)?;
                    }
                    FileKind::Symlink => {
                        let t = fs::read_link(&host).map_err(io_err("read", &host))?;
                        w.symlink(&t, &target)?;
                    }
                    FileKind::Other => {}
                }
            }
        }
    }
    Ok(())
}
