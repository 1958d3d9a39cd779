//! A filesystem as metadata: layers applied entry by entry (whiteouts and
//! opaque directories included), and the path-by-path comparison of two.
//!
//! A node keeps what an entry says about a path (kind, mode, owner, mtime,
//! xattrs, link target, device numbers, and for regular files the size and
//! sha256 of the content), never the content. Merging follows the OCI
//! image spec's layer rules: `DIR/.wh.NAME` deletes `NAME` (and what is
//! below it) from lower layers; `DIR/.wh..wh..opq` hides every lower-layer
//! entry below `DIR`; other `.wh..wh.` names are aufs metadata and ignored.
//! The root directory's own entry is ignored (runtimes make the root).
//! A raw tree keeps the entries of one layer as they are, whiteouts
//! included, for comparing two builds of one step.
//!
//! Pure: headers in, values out.

use std::collections::BTreeMap;

use serde::Serialize;

use super::content::ContentDiff;
use crate::image::tarball::{TarHeader, typeflag};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File {
        /// Its size.
        size: u64,
        /// sha256 of its content.
        digest: [u8; 32],
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink {
        /// Its target.
        target: Vec<u8>,
    },
    /// A hard link to another path.
    Hardlink {
        /// The path it links to (normalised).
        target: Vec<u8>,
    },
    /// A character device.
    Char {
        /// Major, minor.
        device: (u32, u32),
    },
    /// A block device.
    Block {
        /// Major, minor.
        device: (u32, u32),
    },
    /// A FIFO.
    Fifo,
    /// A whiteout marker (raw trees only).
    Whiteout,
    /// An opaque-directory marker (raw trees only).
    Opaque,
}

impl Kind {
    /// The kind's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::File { .. } => "file",
            Kind::Dir => "dir",
            Kind::Symlink { .. } => "symlink",
            Kind::Hardlink { .. } => "hardlink",
            Kind::Char { .. } => "char",
            Kind::Block { .. } => "block",
            Kind::Fifo => "fifo",
            Kind::Whiteout => "whiteout",
            Kind::Opaque => "opaque",
        }
    }
}

/// One path's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Permission bits with setuid, setgid, sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Extended attributes.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The layer (0 = base) that set it.
    pub layer: usize,
}

/// A filesystem built from layers, keyed by normalised path bytes
/// (no leading `/`, no trailing `/`).
///
/// Layers are applied top first ([`Tree::place`], then [`Tree::insert`]):
/// the first version of a path met is its final one, and an entry that a
/// higher layer replaced, deleted (whiteout), or hid (opaque directory,
/// or a non-directory over a directory) is recognised as shadowed before
/// its content is read, so only final contents are ever compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The paths.
    pub nodes: BTreeMap<Vec<u8>, Node>,
    /// Deletions and opaque directories from the layers applied so far.
    hidden: BTreeMap<Vec<u8>, Hide>,
    raw: bool,
}

/// What higher layers hid at a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Hide {
    /// A whiteout in this layer deleted the path (and what is below it)
    /// from the layers below.
    deleted: Option<usize>,
    /// An opaque marker in this layer hid the directory's contents in the
    /// layers below.
    opaque: Option<usize>,
}

/// What an entry is to the tree, before its content is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The final version of this path.
    Final(Vec<u8>),
    /// Replaced, deleted or hidden by a higher layer (or the root itself,
    /// or a marker, which [`Tree::place`] has recorded).
    Skip,
}

/// Cleans an entry name: strips leading `/` and `./`, `.` components and
/// a trailing `/`; refuses `..`.
pub fn normalize(name: &[u8]) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("`..` component".into()),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// Where a marker entry points, if `path` is one.
enum Marker<'a> {
    /// `.wh.NAME`: deletes `parent/NAME`.
    Whiteout(Vec<u8>),
    /// `.wh..wh..opq`: hides the lower contents of `parent`.
    Opaque(&'a [u8]),
    /// Other `.wh..wh.*`: ignored.
    Meta,
}

fn marker(path: &[u8]) -> Option<Marker<'_>> {
    let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let hidden = base.strip_prefix(b".wh.")?;
    if hidden == b".wh..opq" {
        return Some(Marker::Opaque(parent));
    }
    if hidden.starts_with(b".wh.") {
        return Some(Marker::Meta);
    }
    let mut victim = parent.to_vec();
    if !victim.is_empty() {
        victim.push(b'/');
    }
    victim.extend_from_slice(hidden);
    Some(Marker::Whiteout(victim))
}

impl Tree {
    /// An empty tree; `raw` keeps whiteout markers as entries instead of
    /// applying them.
    pub fn new(raw: bool) -> Self {
        Tree {
            nodes: BTreeMap::new(),
            hidden: BTreeMap::new(),
            raw,
        }
    }

    /// The node at `path` (normalised).
    pub fn get(&self, path: &[u8]) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Decides what an entry of `layer` is, layers being applied from the
    /// top down (and entries within a layer in order). Whiteouts and
    /// opaque markers are recorded here.
    pub fn place(&mut self, h: &TarHeader, layer: usize) -> Result<Placement, String> {
        let path = normalize(&h.name)?;
        if path.is_empty() {
            return Ok(Placement::Skip);
        }
        if self.raw {
            return Ok(Placement::Final(path));
        }
        if let Some(m) = marker(&path) {
            match m {
                Marker::Whiteout(victim) => {
                    if !self.hidden_at(&victim, layer) {
                        let e = self.hidden.entry(victim).or_default();
                        e.deleted.get_or_insert(layer);
                    }
                }
                Marker::Opaque(dir) => {
                    let dir = dir.to_vec();
                    if !self.hidden_at(&dir, layer) {
                        let e = self.hidden.entry(dir).or_default();
                        e.opaque.get_or_insert(layer);
                    }
                }
                Marker::Meta => {}
            }
            return Ok(Placement::Skip);
        }
        if self.nodes.get(&path).is_some_and(|n| n.layer > layer) {
            // A higher layer has its final version.
            return Ok(Placement::Skip);
        }
        if self.hidden_at(&path, layer) {
            return Ok(Placement::Skip);
        }
        Ok(Placement::Final(path))
    }

    /// Whether a layer above `layer` deleted `path` or hid it below an
    /// opaque directory or a non-directory.
    fn hidden_at(&self, path: &[u8], layer: usize) -> bool {
        let above = |l: Option<usize>| l.is_some_and(|l| l > layer);
        if self.hidden.get(path).is_some_and(|h| above(h.deleted)) {
            return true;
        }
        let mut end = path.len();
        while let Some(i) = path[..end].iter().rposition(|&b| b == b'/') {
            let ancestor = &path[..i];
            if let Some(h) = self.hidden.get(ancestor)
                && (above(h.deleted) || above(h.opaque))
            {
                return true;
            }
            if let Some(n) = self.nodes.get(ancestor)
                && n.layer > layer
                && n.kind != Kind::Dir
            {
                return true;
            }
            end = i;
        }
        false
    }

    /// Records the final version of `path` (from [`Tree::place`]);
    /// `digest` is the sha256 of a regular file's content.
    pub fn insert(
        &mut self,
        path: Vec<u8>,
        h: &TarHeader,
        layer: usize,
        digest: [u8; 32],
    ) -> Result<(), String> {
        let mut node = Node {
            kind: Kind::Fifo,
            mode: h.mode & 0o7777,
            uid: h.uid,
            gid: h.gid,
            mtime: h.mtime,
            xattrs: h.xattrs.clone(),
            layer,
        };
        if self.raw
            && let Some(m) = marker(&path)
        {
            node.kind = match m {
                Marker::Opaque(_) => Kind::Opaque,
                _ => Kind::Whiteout,
            };
            // One fixed form for markers, as kiln writes them.
            (node.mode, node.uid, node.gid) = (0, 0, 0);
            node.xattrs.clear();
            self.nodes.insert(path, node);
            return Ok(());
        }
        node.kind = match h.typeflag {
            typeflag::FILE => Kind::File {
                size: h.size,
                digest,
            },
            typeflag::DIR => Kind::Dir,
            typeflag::SYMLINK => Kind::Symlink {
                target: h.linkname.clone(),
            },
            typeflag::HARDLINK => Kind::Hardlink {
                target: normalize(&h.linkname).map_err(|e| format!("hard link target: {e}"))?,
            },
            typeflag::CHAR => Kind::Char {
                device: (h.devmajor, h.devminor),
            },
            typeflag::BLOCK => Kind::Block {
                device: (h.devmajor, h.devminor),
            },
            typeflag::FIFO => Kind::Fifo,
            other => return Err(format!("unsupported entry type `{}`", other.escape_ascii())),
        };
        // Within one layer a later entry for a path wins, and a
        // non-directory drops what the same layer put below it.
        if node.kind != Kind::Dir {
            let mut lo = path.clone();
            lo.push(b'/');
            let doomed: Vec<Vec<u8>> = self
                .nodes
                .range(lo.clone()..)
                .take_while(|(k, _)| k.starts_with(&lo))
                .filter(|(_, n)| n.layer == layer)
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                self.nodes.remove(&k);
            }
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// [`Tree::place`] and [`Tree::insert`] at once, for an entry whose
    /// digest is known.
    pub fn apply(&mut self, h: &TarHeader, layer: usize, digest: [u8; 32]) -> Result<(), String> {
        if let Placement::Final(path) = self.place(h, layer)? {
            self.insert(path, h, layer, digest)?;
        }
        Ok(())
    }

    /// The node a path stands for when hard links are followed (a hard
    /// link is its target's inode).
    fn resolved<'a>(&'a self, node: &'a Node) -> &'a Node {
        match &node.kind {
            Kind::Hardlink { target } => self.nodes.get(target).unwrap_or(node),
            _ => node,
        }
    }
}

/// How [`compare`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompareOptions {
    /// Skip mtimes.
    pub ignore_mtime: bool,
    /// Compare a hard link as the file it links to, not by its target path.
    pub follow_hardlinks: bool,
}

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, different.
    Changed,
}

/// A path's state on one side, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `file`, `dir`, `symlink`, ...
    pub kind: &'static str,
    /// Size of a regular file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// sha256 of a regular file's content (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Permission bits in octal (`0755`).
    pub mode: String,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// mtime, seconds.
    pub mtime: u64,
    /// Symlink or hard-link target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The layer that set it (0 = base).
    pub layer: usize,
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// `kind`, `content`, `size`, `mode`, `uid`, `gid`, `mtime`,
    /// `symlink target`, `hard-link target`, `xattr NAME`, `device`.
    pub field: String,
    /// Its value in A.
    pub a: String,
    /// Its value in B.
    pub b: String,
}

/// One path that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathDiff {
    /// The path, with a leading `/`.
    pub path: String,
    /// Added, removed, changed.
    pub status: Status,
    /// Its state in A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<Summary>,
    /// Its state in B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<Summary>,
    /// What changed (for `changed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// How the content differs, for regular files whose content changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentDiff>,
    /// The two content digests, for the caller to fill `content`.
    #[serde(skip)]
    pub digests: Option<([u8; 32], [u8; 32])>,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn summary(node: &Node) -> Summary {
    let (size, digest, target) = match &node.kind {
        Kind::File { size, digest } => (Some(*size), Some(hex::encode(digest)), None),
        Kind::Symlink { target } => (None, None, Some(lossy(target))),
        Kind::Hardlink { target } => (None, None, Some(format!("/{}", lossy(target)))),
        _ => (None, None, None),
    };
    Summary {
        kind: node.kind.name(),
        size,
        digest,
        mode: format!("{:04o}", node.mode),
        uid: node.uid,
        gid: node.gid,
        mtime: node.mtime,
        target,
        layer: node.layer,
    }
}

fn xattr_value(v: Option<&Vec<u8>>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) if super::content::is_text(v) => format!("{:?}", lossy(v)),
        Some(v) => format!("0x{}", hex::encode(v)),
    }
}

/// Compares `a` with `b` path by path, in path order.
pub fn compare(a: &Tree, b: &Tree, options: CompareOptions) -> Vec<PathDiff> {
    let mut out = Vec::new();
    let mut ia = a.nodes.iter().peekable();
    let mut ib = b.nodes.iter().peekable();
    loop {
        let order = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
        };
        match order {
            std::cmp::Ordering::Less => {
                let (p, n) = ia.next().expect("peeked");
                out.push(PathDiff {
                    path: format!("/{}", lossy(p)),
                    status: Status::Removed,
                    a: Some(summary(n)),
                    b: None,
                    changes: Vec::new(),
                    content: None,
                    digests: None,
                });
            }
            std::cmp::Ordering::Greater => {
                let (p, n) = ib.next().expect("peeked");
                out.push(PathDiff {
                    path: format!("/{}", lossy(p)),
                    status: Status::Added,
                    a: None,
                    b: Some(summary(n)),
                    changes: Vec::new(),
                    content: None,
                    digests: None,
                });
            }
            std::cmp::Ordering::Equal => {
                let (p, na) = ia.next().expect("peeked");
                let (_, nb) = ib.next().expect("peeked");
                let (ra, rb) = if options.follow_hardlinks {
                    (a.resolved(na), b.resolved(nb))
                } else {
                    (na, nb)
                };
                let (changes, digests) = node_changes(ra, rb, options);
                if !changes.is_empty() {
                    out.push(PathDiff {
                        path: format!("/{}", lossy(p)),
                        status: Status::Changed,
                        a: Some(summary(na)),
                        b: Some(summary(nb)),
                        changes,
                        content: None,
                        digests,
                    });
                }
            }
        }
    }
    out
}

type Digests = Option<([u8; 32], [u8; 32])>;

fn node_changes(a: &Node, b: &Node, options: CompareOptions) -> (Vec<FieldChange>, Digests) {
    let mut out = Vec::new();
    let mut digests = None;
    let mut push = |field: &str, x: String, y: String| {
        out.push(FieldChange {
            field: field.to_owned(),
            a: x,
            b: y,
        });
    };
    if a.kind.name() != b.kind.name() {
        push("kind", a.kind.name().into(), b.kind.name().into());
        return (out, None);
    }
    match (&a.kind, &b.kind) {
        (
            Kind::File {
                size: sa,
                digest: da,
            },
            Kind::File {
                size: sb,
                digest: db,
            },
        ) => {
            if da != db {
                push("content", hex::encode(da), hex::encode(db));
                digests = Some((*da, *db));
            }
            if sa != sb {
                push("size", sa.to_string(), sb.to_string());
            }
        }
        (Kind::Symlink { target: ta }, Kind::Symlink { target: tb }) if ta != tb => {
            push("symlink target", lossy(ta), lossy(tb));
        }
        (Kind::Hardlink { target: ta }, Kind::Hardlink { target: tb }) if ta != tb => {
            push(
                "hard-link target",
                format!("/{}", lossy(ta)),
                format!("/{}", lossy(tb)),
            );
        }
        (Kind::Char { device: x }, Kind::Char { device: y })
        | (Kind::Block { device: x }, Kind::Block { device: y })
            if x != y =>
        {
            push(
                "device",
                format!("{}:{}", x.0, x.1),
                format!("{}:{}", y.0, y.1),
            );
        }
        _ => {}
    }
    if a.mode != b.mode {
        push("mode", format!("{:04o}", a.mode), format!("{:04o}", b.mode));
    }
    if a.uid != b.uid {
        push("uid", a.uid.to_string(), b.uid.to_string());
    }
    if a.gid != b.gid {
        push("gid", a.gid.to_string(), b.gid.to_string());
    }
    if !options.ignore_mtime && a.mtime != b.mtime {
        let show = |t: u64| {
            let secs = i64::try_from(t).unwrap_or(i64::MAX);
            format!("{t} ({})", crate::image::oci::rfc3339(secs))
        };
        push("mtime", show(a.mtime), show(b.mtime));
    }
    let names: std::collections::BTreeSet<&String> =
        a.xattrs.keys().chain(b.xattrs.keys()).collect();
    for name in names {
        let (x, y) = (a.xattrs.get(name), b.xattrs.get(name));
        if x != y {
            push(&format!("xattr {name}"), xattr_value(x), xattr_value(y));
        }
    }
    (out, digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, typeflag: u8) -> TarHeader {
        TarHeader {
            name: name.as_bytes().to_vec(),
            typeflag,
            mode: 0o644,
            ..TarHeader::default()
        }
    }

    fn paths(t: &Tree) -> Vec<String> {
        t.nodes.keys().map(|k| lossy(k)).collect()
    }

    /// Applies `layers` (base first) the way the reader does: top first.
    fn merged(layers: &[&[(&str, u8)]]) -> Tree {
        let mut t = Tree::new(false);
        for (i, layer) in layers.iter().enumerate().rev() {
            for (name, flag) in *layer {
                t.apply(&h(name, *flag), i, [i as u8; 32]).unwrap();
            }
        }
        t
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers_only() {
        let (d, f) = (typeflag::DIR, typeflag::FILE);
        let t = merged(&[
            &[
                ("./", d),
                ("a/", d),
                ("a/x", f),
                ("a/y", f),
                ("b/", d),
                ("b/z", f),
                ("c", f),
            ],
            &[
                ("a/new", f),
                ("a/.wh..wh..opq", f),
                ("b/.wh.z", f),
                (".wh.c", f),
                ("a/.wh..wh.plnk", f),
            ],
        ]);
        assert_eq!(paths(&t), ["a", "a/new", "b"]);
        // `a` comes from the base layer, `a/new` from the top.
        assert_eq!(t.get(b"a/new").unwrap().layer, 1);
    }

    #[test]
    fn the_top_version_wins_and_a_deleted_dir_stays_empty_below_a_new_one() {
        let (d, f) = (typeflag::DIR, typeflag::FILE);
        let t = merged(&[
            &[("v/", d), ("v/x", f), ("keep", f)],
            &[(".wh.v", f), ("keep", f)],
            &[("v/", d), ("v/y", f)],
        ]);
        assert_eq!(paths(&t), ["keep", "v", "v/y"]);
        assert_eq!(t.get(b"keep").unwrap().layer, 1);
    }

    #[test]
    fn a_file_replaces_a_directory_and_its_contents() {
        let (d, f) = (typeflag::DIR, typeflag::FILE);
        let t = merged(&[&[("d/", d), ("d/f", f)], &[("d", f)]]);
        assert_eq!(paths(&t), ["d"]);
    }

    #[test]
    fn raw_trees_keep_markers() {
        let mut t = Tree::new(true);
        t.apply(&h("a/.wh.x", typeflag::FILE), 0, [0; 32]).unwrap();
        assert_eq!(t.get(b"a/.wh.x").unwrap().kind, Kind::Whiteout);
    }

    #[test]
    fn compare_reports_each_field_and_follows_hard_links_on_request() {
        let mut a = Tree::new(false);
        let mut b = Tree::new(false);
        let mut f = h("f", typeflag::FILE);
        f.size = 3;
        a.apply(&f, 0, [1; 32]).unwrap();
        f.mode = 0o755;
        f.mtime = 5;
        f.size = 4;
        b.apply(&f, 0, [2; 32]).unwrap();
        let mut link = h("l", typeflag::HARDLINK);
        link.linkname = b"f".to_vec();
        a.apply(&link, 0, [0; 32]).unwrap();
        link.linkname = b"g".to_vec();
        b.apply(&link, 0, [0; 32]).unwrap();
        b.apply(&h("g", typeflag::FILE), 0, [2; 32]).unwrap();
        let diffs = compare(&a, &b, CompareOptions::default());
        let fields: Vec<Vec<&str>> = diffs
            .iter()
            .map(|d| d.changes.iter().map(|c| c.field.as_str()).collect())
            .collect();
        assert_eq!(
            fields,
            [
                vec!["content", "size", "mode", "mtime"],
                vec![],
                vec!["hard-link target"]
            ]
        );
        assert_eq!(diffs[1].status, Status::Added);
        assert_eq!(diffs[0].digests, Some(([1; 32], [2; 32])));
        let semantic = compare(
            &a,
            &b,
            CompareOptions {
                ignore_mtime: true,
                follow_hardlinks: true,
            },
        );
        // The link now stands for its target's inode: content, size and mode.
        assert_eq!(semantic.len(), 3);
        assert_eq!(semantic[2].changes[0].field, "content");
    }
}
