//! COPY and ADD without a sandbox: the layer dir is written directly from
//! the selected context files, or from another stage's or an image's
//! merged filesystem, with owners shifted as every store tree's are.
//!
//! Both kinds of source are a sorted listing ([`select::Listed`]), so the
//! same selection rules (wildcards, directory contents, `--exclude`,
//! `--parents`) decide what the plan hashes and what the build copies.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{BuildError, Builder, StageState, io_err, resolve_dest};
use crate::dockerfile::instruction::Instruction;
use crate::dockerfile::stage::Step;
use crate::plan::select::{self, How, Listed, clean_source};
use crate::plan::{FileKind, PlannedStep};

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: u32 = 40;

/// One entry of a stage's or image's merged filesystem.
#[derive(Debug, Clone)]
struct TreeEntry {
    path: String,
    kind: FileKind,
    mode: u32,
    /// Owner inside the image.
    owner: (u32, u32),
    /// The file in the topmost layer tree that holds it.
    host: PathBuf,
}

impl Listed for TreeEntry {
    fn path(&self) -> &str {
        &self.path
    }
    fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

/// What the writer needs of a listed entry, from either kind of source.
struct Item {
    kind: FileKind,
    mode: u32,
    /// `None`: a context file, owned by 0:0 unless `--chown` (F143).
    owner: Option<(u32, u32)>,
    host: PathBuf,
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| xattr::get(path, name).ok().flatten().as_deref() == Some(b"y"))
}

fn kind_of(m: &fs::Metadata) -> FileKind {
    if m.is_dir() {
        FileKind::Dir
    } else if m.file_type().is_symlink() {
        FileKind::Symlink
    } else if m.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Where `rel` is in the merged view of `trees` (bottom first): the file in
/// the topmost tree holding it, unless a whiteout, an opaque directory or a
/// non-directory in an upper tree hides it.
pub(super) fn lookup(trees: &[PathBuf], rel: &str) -> Option<(PathBuf, fs::Metadata)> {
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() {
        let top = trees.last()?;
        return fs::symlink_metadata(top).ok().map(|m| (top.clone(), m));
    }
    'trees: for tree in trees.iter().rev() {
        let mut cur = tree.clone();
        let mut stop_below = false;
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let Ok(m) = fs::symlink_metadata(&cur) else {
                if stop_below {
                    return None;
                }
                continue 'trees;
            };
            if is_whiteout(&m) {
                return None;
            }
            if i + 1 == comps.len() {
                return Some((cur, m));
            }
            if !m.is_dir() {
                return None;
            }
            if is_opaque(&cur) {
                stop_below = true;
            }
        }
    }
    None
}

/// Whether `rel` exists in the merged view of `trees`.
pub(super) fn exists_in(trees: &[PathBuf], rel: &str) -> bool {
    rel.is_empty() || lookup(trees, rel).is_some()
}

/// `rel` with symlinks in the merged view resolved, like the kernel would
/// inside the image (absolute targets start again at the image root). The
/// last component is followed only if `follow_last`.
fn resolve_in(trees: &[PathBuf], rel: &str, follow_last: bool) -> Result<String, String> {
    let mut todo: std::collections::VecDeque<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = join(&done.join("/"), &c);
        let follow = !todo.is_empty() || follow_last;
        match lookup(trees, &here) {
            Some((host, m)) if follow && m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(format!("too many levels of symbolic links in `/{rel}`"));
                }
                let target =
                    fs::read_link(&host).map_err(|e| format!("{}: {e}", host.display()))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for (i, t) in target.split('/').filter(|t| !t.is_empty()).enumerate() {
                    todo.insert(i, t.to_owned());
                }
            }
            _ => done.push(c),
        }
    }
    Ok(done.join("/"))
}

/// The merged view of `trees` (bottom first) at and below `prefix`, sorted
/// by path; owners given as inside the image.
fn merged(trees: &[PathBuf], prefix: &str, offset: u32) -> Result<Vec<TreeEntry>, BuildError> {
    fn drop_below(map: &mut BTreeMap<String, TreeEntry>, path: &str, itself: bool) {
        if itself {
            map.remove(path);
        }
        let start = format!("{path}/");
        let end = format!("{path}0");
        let doomed: Vec<String> = if path.is_empty() {
            map.keys().cloned().collect()
        } else {
            map.range(start..end).map(|(k, _)| k.clone()).collect()
        };
        for k in doomed {
            map.remove(&k);
        }
    }
    fn walk(
        tree: &Path,
        rel: &str,
        offset: u32,
        map: &mut BTreeMap<String, TreeEntry>,
    ) -> Result<(), BuildError> {
        let host = if rel.is_empty() {
            tree.to_path_buf()
        } else {
            tree.join(rel)
        };
        let m = fs::symlink_metadata(&host).map_err(io_err("read", &host))?;
        if !rel.is_empty() {
            if !m.is_dir() || is_opaque(&host) {
                drop_below(map, rel, false);
            }
            let inside = |id: u32| id.saturating_sub(offset);
            map.insert(
                rel.to_owned(),
                TreeEntry {
                    path: rel.to_owned(),
                    kind: kind_of(&m),
                    mode: m.mode() & 0o7777,
                    owner: (inside(m.uid()), inside(m.gid())),
                    host: host.clone(),
                },
            );
        }
        if m.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&host)
                .map_err(io_err("read", &host))?
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                let Some(name) = n.to_str() else { continue };
                let child = join(rel, name);
                let cm = fs::symlink_metadata(tree.join(&child)).map_err(io_err("read", &host))?;
                if is_whiteout(&cm) {
                    drop_below(map, &child, true);
                } else {
                    walk(tree, &child, offset, map)?;
                }
            }
        }
        Ok(())
    }
    let comps: Vec<&str> = prefix.split('/').filter(|c| !c.is_empty()).collect();
    let mut map = BTreeMap::new();
    for tree in trees {
        let mut cur = String::new();
        let mut reach = true;
        for c in &comps {
            let next = join(&cur, c);
            match fs::symlink_metadata(tree.join(&next)) {
                Err(_) => {
                    reach = false;
                    break;
                }
                Ok(m) if m.is_dir() => {
                    if next != prefix && is_opaque(&tree.join(&next)) {
                        drop_below(&mut map, &next, false);
                    }
                }
                Ok(m) if next != prefix || is_whiteout(&m) => {
                    drop_below(&mut map, &next, true);
                    reach = false;
                    break;
                }
                Ok(_) => {}
            }
            cur = next;
        }
        if reach {
            walk(tree, &cur, offset, &mut map)?;
        }
    }
    Ok(map.into_values().collect())
}

fn chown(path: &Path, uid: u32, gid: u32, offset: u32) -> Result<(), BuildError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid + offset), Some(gid + offset))
        .map_err(io_err("chown", path))
}

/// Creates `rel`'s parent directories (and `rel` itself if `last`) in the
/// layer dir `upper`. A directory that exists below (in `lower`) keeps its
/// mode and owner, so the layer does not change it; a new one is 0755 and
/// owned by `owner`.
pub(super) fn make_parents(
    upper: &Path,
    lower: &[PathBuf],
    rel: &str,
    offset: u32,
    owner: (u32, u32),
    last: bool,
) -> Result<(), BuildError> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let n = if last {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    let mut cur = upper.to_path_buf();
    for i in 0..n {
        cur.push(parts[i]);
        if fs::symlink_metadata(&cur).is_ok() {
            continue;
        }
        fs::create_dir(&cur).map_err(io_err("create", &cur))?;
        match lookup(lower, &parts[..=i].join("/")) {
            Some((_, m)) if m.is_dir() => {
                fs::set_permissions(&cur, fs::Permissions::from_mode(m.mode() & 0o7777))
                    .map_err(io_err("chmod", &cur))?;
                if nix::unistd::geteuid().is_root() {
                    std::os::unix::fs::lchown(&cur, Some(m.uid()), Some(m.gid()))
                        .map_err(io_err("chown", &cur))?;
                }
            }
            _ => {
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &cur))?;
                chown(&cur, owner.0, owner.1, offset)?;
            }
        }
    }
    Ok(())
}

/// One field of the line for `name` in the stage's `/etc/passwd` or
/// `/etc/group`.
fn etc_field(trees: &[PathBuf], file: &str, name: &str, field: usize) -> Option<u32> {
    let (path, _) = lookup(trees, file)?;
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > field && f[0] == name)
            .then(|| f[field].parse().ok())
            .flatten()
    })
}

/// `user[:group]` resolved in the stage's `/etc/passwd` and `/etc/group`
/// (F142: a lone user gives the user's primary group, a lone uid the same
/// number).
pub(super) fn parse_chown(spec: &str, trees: &[PathBuf]) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => etc_field(trees, "etc/passwd", user, 2)
            .ok_or_else(|| format!("unknown user `{user}` in the stage's /etc/passwd"))?,
    };
    let gid = match group {
        None => match user.parse::<u32>() {
            Ok(n) => n,
            Err(_) => etc_field(trees, "etc/passwd", user, 3).unwrap_or(uid),
        },
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => etc_field(trees, "etc/group", g, 2)
                .ok_or_else(|| format!("unknown group `{g}` in the stage's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// Writes entries into the layer dir.
struct Writer {
    offset: u32,
    /// `--chown`.
    chown: Option<(u32, u32)>,
    /// `--chmod`.
    chmod: Option<u32>,
}

impl Writer {
    fn owner(&self, item_owner: Option<(u32, u32)>) -> (u32, u32) {
        self.chown.or(item_owner).unwrap_or((0, 0))
    }

    fn finish(&self, dest: &Path, mode: u32, owner: (u32, u32)) -> Result<(), BuildError> {
        fs::set_permissions(dest, fs::Permissions::from_mode(self.chmod.unwrap_or(mode)))
            .map_err(io_err("chmod", dest))?;
        chown(dest, owner.0, owner.1, self.offset)
    }

    /// Replaces whatever is at `dest` unless both are directories.
    fn clear(dest: &Path, dir: bool) -> Result<(), BuildError> {
        match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() && dir => Ok(()),
            Ok(m) if m.is_dir() => fs::remove_dir_all(dest).map_err(io_err("replace", dest)),
            Ok(_) => fs::remove_file(dest).map_err(io_err("replace", dest)),
            Err(_) => Ok(()),
        }
    }

    fn item(&self, item: &Item, dest: &Path) -> Result<(), BuildError> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let owner = self.owner(item.owner);
        match item.kind {
            FileKind::Dir => {
                Self::clear(dest, true)?;
                if fs::symlink_metadata(dest).is_err() {
                    fs::create_dir(dest).map_err(io_err("create", dest))?;
                }
                self.finish(dest, item.mode, owner)
            }
            FileKind::File => {
                Self::clear(dest, false)?;
                fs::copy(&item.host, dest).map_err(io_err("copy", &item.host))?;
                self.finish(dest, item.mode, owner)
            }
            FileKind::Symlink => {
                Self::clear(dest, false)?;
                let target = fs::read_link(&item.host).map_err(io_err("read", &item.host))?;
                std::os::unix::fs::symlink(&target, dest).map_err(io_err("symlink", dest))?;
                chown(dest, owner.0, owner.1, self.offset)
            }
            FileKind::Other => Ok(()),
        }
    }

    fn bytes(&self, content: &[u8], dest: &Path) -> Result<(), BuildError> {
        Self::clear(dest, false)?;
        fs::write(dest, content).map_err(io_err("write", dest))?;
        self.finish(dest, 0o644, self.owner(None))
    }
}

/// Where a COPY reads from.
enum Source<'a> {
    Context(&'a [crate::plan::ContextFile], &'a Path),
    Tree(Vec<TreeEntry>),
}

impl Source<'_> {
    fn picks(
        &self,
        source: &str,
        how: How<'_>,
        into_dir: bool,
    ) -> Result<Vec<select::Pick>, String> {
        match self {
            Source::Context(files, _) => select::picks(files, source, how, into_dir),
            Source::Tree(entries) => select::picks(entries, source, how, into_dir),
        }
        .map_err(|e| e.to_string())
    }

    fn item(&self, index: usize) -> Item {
        match self {
            Source::Context(files, root) => {
                let f = &files[index];
                Item {
                    kind: f.kind,
                    mode: f.mode,
                    owner: None,
                    host: root.join(&f.path),
                }
            }
            Source::Tree(entries) => {
                let e = &entries[index];
                Item {
                    kind: e.kind,
                    mode: e.mode,
                    owner: Some(e.owner),
                    host: e.host.clone(),
                }
            }
        }
    }
}

/// The stage state, or an image's layer trees, that `--from` / `from=`
/// names.
fn from_trees(
    b: &Builder<'_>,
    from: &str,
    refs: &[(String, Option<usize>)],
    pstep: Option<&PlannedStep>,
    done: &BTreeMap<usize, StageState>,
) -> Result<Vec<PathBuf>, String> {
    let stage = refs
        .iter()
        .find(|(name, _)| name == from)
        .and_then(|(_, i)| *i)
        .or_else(|| from.parse::<usize>().ok())
        .or_else(|| {
            b.stage_names
                .iter()
                .find(|(n, _)| n == from)
                .map(|(_, i)| *i)
        });
    if let Some(index) = stage {
        let state = done
            .get(&index)
            .ok_or_else(|| format!("stage `{from}` was not built"))?;
        return Ok(state.layers.iter().map(|l| l.tree.clone()).collect());
    }
    let digest = pstep
        .and_then(|p| p.images.iter().find(|(r, _)| r == from))
        .map(|(_, d)| d.clone())
        .ok_or_else(|| format!("`{from}` is neither a stage nor a resolved image"))?;
    let digest: crate::digest::Sha256Digest = digest
        .parse()
        .map_err(|e| format!("bad image digest `{digest}`: {e}"))?;
    let image = super::read_stored_image(b.store, &digest).map_err(|e| format!("{from}: {e}"))?;
    super::image_trees(b.store, &image).map_err(|e| format!("{from}: {e}"))
}

/// The fixed directory part of a source (before any wildcard, or the
/// `--parents` pivot): only that part of a stage needs listing.
fn listing_prefix(source: &str, parents: bool) -> String {
    let base = match source.split_once("/./") {
        Some((b, _)) if parents => b,
        _ => source,
    };
    clean_source(base)
        .split('/')
        .take_while(|p| !crate::dockerfile::glob::has_meta(p))
        .collect::<Vec<_>>()
        .join("/")
}

/// What COPY and ADD have in common.
struct Common<'a> {
    sources: &'a [String],
    heredocs: &'a [crate::dockerfile::instruction::HeredocSource],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    excludes: &'a [String],
    from: Option<&'a str>,
    parents: bool,
}

/// Runs a COPY or ADD step into `upper`.
pub(super) fn copy(
    b: &Builder<'_>,
    state: &StageState,
    pstep: &PlannedStep,
    estep: &Step,
    upper: &Path,
    done: &BTreeMap<usize, StageState>,
) -> Result<(), BuildError> {
    copy_with(b, state, pstep, estep, upper, done, &[])
}

/// [`copy`], with the files an `ADD <url>` downloaded (`(url, file)`),
/// which go where BuildKit puts them: mode 0600 (or `--chmod`), owned by
/// root (or `--chown`), named from the URL path in a directory
/// destination, unpacked only with `--unpack=true`.
pub(super) fn copy_with(
    b: &Builder<'_>,
    state: &StageState,
    pstep: &PlannedStep,
    estep: &Step,
    upper: &Path,
    done: &BTreeMap<usize, StageState>,
    downloads: &[(String, PathBuf)],
) -> Result<(), BuildError> {
    let (c, add) = match &estep.instruction {
        Instruction::Copy(c) => (
            Common {
                sources: &c.sources,
                heredocs: &c.heredocs,
                dest: &c.dest,
                chown: c.chown.as_deref(),
                chmod: c.chmod.as_deref(),
                excludes: &c.excludes,
                from: c.from.as_deref(),
                parents: c.parents,
            },
            false,
        ),
        Instruction::Add(a) => (
            Common {
                sources: &a.sources,
                heredocs: &a.heredocs,
                dest: &a.dest,
                chown: a.chown.as_deref(),
                chmod: a.chmod.as_deref(),
                excludes: &a.excludes,
                from: None,
                parents: false,
            },
            true,
        ),
        _ => unreachable!("called for COPY and ADD only"),
    };
    let line = estep.instruction.span().start;
    let fail = |message: String| BuildError::Step { line, message };
    let trees: Vec<PathBuf> = state.layers.iter().map(|l| l.tree.clone()).collect();
    // `--link` copies onto an empty layer: the destination is not looked
    // up in the stage (the plan's hash leaves the stage out too).
    let below: &[PathBuf] = if crate::plan::linked(&estep.instruction) {
        &[]
    } else {
        &trees
    };
    let chown = match c.chown {
        Some(spec) => Some(parse_chown(spec, &trees).map_err(fail)?),
        None => None,
    };
    let chmod = match c.chmod {
        Some(s) => Some(
            u32::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| fail(format!("`--chmod={s}` is not an octal mode up to 7777")))?,
        ),
        None => None,
    };
    let w = Writer {
        offset: b.offset_if_root(),
        chown,
        chmod,
    };
    let many = c.sources.len() + c.heredocs.len() > 1;
    let trailing = c.dest.ends_with('/') || c.dest == "." || c.dest.ends_with("/.");
    let dest = resolve_dest(&estep.scope.workdir, c.dest);
    // Symlinks on the way to the destination are followed inside the image.
    let dest = resolve_in(below, &dest, trailing).map_err(fail)?;
    // A destination is a directory when written with a trailing `/` (or
    // as `.`), with several sources or `--parents`, or when it already is
    // one.
    let dest_is_dir = trailing
        || many
        || c.parents
        || dest.is_empty()
        || lookup(below, &dest).is_some_and(|(_, m)| m.is_dir());
    let new_owner = chown.unwrap_or((0, 0));
    make_parents(upper, below, &dest, w.offset, new_owner, dest_is_dir)?;
    let dest_path = upper.join(&dest);

    for h in c.heredocs {
        let target = if dest_is_dir {
            dest_path.join(&h.name)
        } else {
            dest_path.clone()
        };
        w.bytes(h.content.as_bytes(), &target)?;
    }

    let how = How {
        excludes: c.excludes,
        parents: c.parents,
    };
    let tree_source;
    let mut sources = Vec::new();
    let source = match c.from {
        Some(from) => {
            let src_trees =
                from_trees(b, from, &estep.from_refs, Some(pstep), done).map_err(fail)?;
            let mut entries = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for s in c.sources {
                let prefix = listing_prefix(s, c.parents);
                let real = resolve_in(&src_trees, &prefix, true).map_err(fail)?;
                // A plain source that is a symlink is followed (F159).
                let plain = !c.parents && !crate::dockerfile::glob::has_meta(s);
                sources.push(if plain { format!("/{real}") } else { s.clone() });
                if seen.insert(real.clone()) {
                    entries.extend(merged(&src_trees, &real, w.offset)?);
                }
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            entries.dedup_by(|a, b| a.path == b.path);
            tree_source = Source::Tree(entries);
            &tree_source
        }
        None => {
            sources.extend(c.sources.iter().cloned());
            &Source::Context(&b.options.context_files, &b.options.context)
        }
    };
    let from_name = c.from.map_or_else(
        || "the build context".to_owned(),
        |f| format!("`--from={f}`"),
    );
    for s in &sources {
        if crate::plan::fetch::is_url(s) {
            let (_, file) = downloads.iter().find(|(u, _)| u == s).ok_or_else(|| {
                fail(format!(
                    "`{s}` was not downloaded (kiln fetches only http and https)"
                ))
            })?;
            let target = if dest_is_dir {
                let name = crate::fetch::http::file_name(s).ok_or_else(|| {
                    fail(format!(
                        "cannot name the file of `{s}` in a directory destination: the URL has no file name in its path"
                    ))
                })?;
                dest_path.join(name)
            } else {
                dest_path.clone()
            };
            let unpack =
                matches!(&estep.instruction, Instruction::Add(a) if a.unpack == Some(true));
            if unpack && is_tar(file)? {
                make_parents(upper, below, &dest, w.offset, new_owner, true)?;
                extract_tar(file, &dest_path, w.offset)?;
            } else {
                let item = Item {
                    kind: FileKind::File,
                    mode: 0o600,
                    owner: None,
                    host: file.clone(),
                };
                w.item(&item, &target)?;
            }
            continue;
        }
        let picks = source
            .picks(s, how, dest_is_dir)
            .map_err(|e| fail(format!("{e} ({from_name})")))?;
        for pick in picks {
            let Some(rel) = pick.target else {
                // A copied directory: its contents go into the destination.
                make_parents(upper, below, &dest, w.offset, new_owner, true)?;
                continue;
            };
            let item = source.item(pick.index);
            let target = if rel.is_empty() {
                dest_path.clone()
            } else {
                dest_path.join(&rel)
            };
            let inner = target
                .parent()
                .and_then(|p| p.strip_prefix(upper).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            make_parents(upper, below, &inner, w.offset, new_owner, true)?;
            if add && item.kind == FileKind::File && is_tar(&item.host)? {
                // A local archive is unpacked where the file would have
                // gone: into the destination directory.
                let dir = if rel.is_empty() {
                    dest_path.clone()
                } else {
                    target.parent().unwrap_or(&dest_path).to_path_buf()
                };
                make_parents(upper, below, &dest, w.offset, new_owner, true)?;
                extract_tar(&item.host, &dir, w.offset)?;
            } else {
                w.item(&item, &target)?;
            }
        }
    }
    Ok(())
}

/// Whether a file is a tar archive, by content (F172): a tar header, or
/// gzip, bzip2, xz or zstd magic.
fn is_tar(path: &Path) -> Result<bool, BuildError> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path).map_err(io_err("open", path))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(io_err("read", path))? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    let compressed = head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    Ok(compressed || (n == 512 && &head[257..262] == b"ustar"))
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
            overlay_whiteouts: false,
        },
    )?;
    Ok(())
}

/// Fills `dir` with what a `RUN --mount=type=bind` shows: the context
/// files (under `source`) or, with `from`, a stage's or an image's merged
/// filesystem.
pub(super) fn bind_source(
    b: &Builder<'_>,
    estep: &Step,
    pstep: &PlannedStep,
    from: Option<&str>,
    source: &str,
    dir: &Path,
    done: &BTreeMap<usize, StageState>,
) -> Result<(), BuildError> {
    let w = Writer {
        offset: b.offset_if_root(),
        chown: None,
        chmod: None,
    };
    let fail = |message: String| BuildError::Step { line: 0, message };
    let rel = clean_source(source);
    let tree_source;
    let mut effective = source.to_owned();
    let src = match from {
        Some(from) => {
            let trees = from_trees(b, from, &estep.from_refs, Some(pstep), done).map_err(fail)?;
            let real = resolve_in(&trees, &rel, true).map_err(fail)?;
            effective = format!("/{real}");
            tree_source = Source::Tree(merged(&trees, &real, w.offset)?);
            &tree_source
        }
        None => &Source::Context(&b.options.context_files, &b.options.context),
    };
    make_parents(dir, &[], &rel, w.offset, (0, 0), true)?;
    let root = dir.join(&rel);
    for pick in src.picks(&effective, How::default(), false).map_err(fail)? {
        let Some(target) = pick.target else { continue };
        let item = src.item(pick.index);
        let dest = if target.is_empty() {
            root.clone()
        } else {
            root.join(&target)
        };
        w.item(&item, &dest)?;
    }
    Ok(())
}
