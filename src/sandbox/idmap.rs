//! The user namespace's id map: which host ids the inside ids are.
//!
//! As host root: inside `0..65536` is host `HOST_ROOT_ID_BASE..+65536`, so
//! root inside is an unprivileged nobody outside, and a file a step writes as
//! uid 1000 is host uid `HOST_ROOT_ID_BASE + 1000` in the upper dir.
//! As anyone else: the invoking uid (gid) is root inside, and, when
//! `newuidmap`/`newgidmap` exist, the /etc/subuid (/etc/subgid) ranges follow
//! from inside id 1; without them only root exists inside (chown to any other
//! id fails with `EINVAL`, and USER other than root is refused).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::SandboxError;

/// The first host id of kiln's range as host root: `0x7000_0000`
/// (1879048192). systemd's `UIDS-GIDS.md` leaves `0x70000000..0x7FFE0000`
/// unassigned: above its container range (nspawn, up to 1879048191), below the
/// "foreign" range and 2^31 (signed 32-bit trouble). Far above /etc/subuid's
/// usual 100000-based allocations.
pub const HOST_ROOT_ID_BASE: u32 = 0x7000_0000;

/// The number of ids mapped as host root (a full 16-bit range, as Docker images
/// assume: `nobody` is 65534).
pub const ID_RANGE_SIZE: u32 = 65_536;

/// One line of a `uid_map`: `count` ids from `inside` are host ids from `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First id inside.
    pub inside: u32,
    /// First id on the host.
    pub host: u32,
    /// How many.
    pub count: u32,
}

/// The uid and gid maps of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// Uid ranges.
    pub uids: Vec<IdRange>,
    /// Gid ranges.
    pub gids: Vec<IdRange>,
    /// Whether `setgroups(2)` works inside (not when an unprivileged user
    /// writes its own single-id gid map: the kernel demands `deny` first).
    pub setgroups: bool,
    /// `newuidmap` and `newgidmap`, to apply the maps with (unprivileged,
    /// with subordinate ranges).
    helpers: Option<(PathBuf, PathBuf)>,
    /// Whether the sandbox stays in this process's user namespace instead
    /// of making one: for root of a user namespace that is not the
    /// initial one (kiln's own, see [`enter_own_user_namespace`]). The
    /// kernel lets such a root map its own uid 0 into a child namespace
    /// only with `CAP_SETFCAP` over the initial namespace, which it lacks
    /// (user_namespaces(7), "capabilities: require CAP_SETFCAP to map uid
    /// 0"); rootless podman runs its containers the same way.
    #[serde(default)]
    pub(crate) shared: bool,
}

fn to_host(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.inside && id - r.inside < r.count)
        .map(|r| r.host + (id - r.inside))
}

fn to_inside(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.host && id - r.host < r.count)
        .map(|r| r.inside + (id - r.host))
}

impl IdMap {
    /// The dedicated range used as host root: inside `0..65536` at
    /// [`HOST_ROOT_ID_BASE`].
    pub fn host_root() -> IdMap {
        let range = vec![IdRange {
            inside: 0,
            host: HOST_ROOT_ID_BASE,
            count: ID_RANGE_SIZE,
        }];
        IdMap {
            uids: range.clone(),
            gids: range,
            setgroups: true,
            helpers: None,
            shared: false,
        }
    }

    /// The map for this process: as root of the host, [`IdMap::host_root`];
    /// as root of a user namespace (kiln's own, see
    /// [`enter_own_user_namespace`], or a container's), the ids that
    /// namespace has, one to one, shared with the sandbox; else the
    /// caller's own ids as root inside and nothing else (an unprivileged
    /// process cannot give files other owners; the kiln command enters its
    /// own user namespace first when subordinate ids allow).
    pub fn for_invoker() -> IdMap {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if uid == 0 {
            return match (mapped_from_zero("uid_map"), mapped_from_zero("gid_map")) {
                (Some(u), Some(g)) => IdMap::nested(u, g),
                _ => IdMap::host_root(),
            };
        }
        IdMap {
            uids: own_id(uid),
            gids: own_id(gid),
            setgroups: false,
            helpers: None,
            shared: false,
        }
    }

    /// The map of kiln's own user namespace for an unprivileged caller:
    /// its own ids as 0, its first subordinate ranges from 1, written
    /// through `newuidmap`/`newgidmap`. None without those tools or ranges.
    fn subordinate_for_invoker() -> Option<IdMap> {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let helpers = find_in_path("newuidmap").zip(find_in_path("newgidmap"))?;
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let su = subordinate("/etc/subuid", uid, name.as_deref())?;
        let sg = subordinate("/etc/subgid", uid, name.as_deref())?;
        let with_sub = |own: u32, (start, count): (u32, u32)| {
            let mut ranges = own_id(own);
            ranges.push(IdRange {
                inside: 1,
                host: start,
                count,
            });
            ranges
        };
        Some(IdMap {
            uids: with_sub(uid, su),
            gids: with_sub(gid, sg),
            setgroups: true,
            helpers: Some(helpers),
            shared: false,
        })
    }

    /// Whether only root exists inside (unprivileged, no subordinate ids):
    /// what will not work then is chown to other ids and USER other than root.
    pub fn is_single(&self) -> bool {
        self.uids.iter().map(|r| u64::from(r.count)).sum::<u64>() <= 1
    }

    /// The host uid of inside `uid`.
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        to_host(&self.uids, uid)
    }

    /// The host gid of inside `gid`.
    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        to_host(&self.gids, gid)
    }

    /// The inside uid of host `uid`.
    pub fn inside_uid(&self, uid: u32) -> Option<u32> {
        to_inside(&self.uids, uid)
    }

    /// The inside gid of host `gid`.
    pub fn inside_gid(&self, gid: u32) -> Option<u32> {
        to_inside(&self.gids, gid)
    }

    /// Rewrites the owners of every entry under `root` (itself included, not
    /// following symlinks) from inside ids, as a tree from a layer tar has
    /// them, to the host ids this map gives them: how a layer tree must be
    /// owned on disk to look right inside. Ids outside the map are an error.
    pub fn shift_tree(&self, root: &Path) -> Result<(), SandboxError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SandboxError::Host {
                op: "shift the owner of",
                path,
                source,
            }
        };
        let meta = std::fs::symlink_metadata(root).map_err(err(root))?;
        let (uid, gid) = (meta.uid(), meta.gid());
        let host_uid = self.host_uid(uid).ok_or(SandboxError::UnmappedOwner {
            path: root.into(),
            id: uid,
        })?;
        let host_gid = self.host_gid(gid).ok_or(SandboxError::UnmappedOwner {
            path: root.into(),
            id: gid,
        })?;
        // lchown clears setuid/setgid bits on files: put the mode back.
        std::os::unix::fs::lchown(root, Some(host_uid), Some(host_gid)).map_err(err(root))?;
        if !meta.file_type().is_symlink() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(err(root))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(root).map_err(err(root))? {
                let entry = entry.map_err(err(root))?;
                self.shift_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    /// One to one over the first `uids` (`gids`) ids, at most
    /// [`ID_RANGE_SIZE`]: for root of a user namespace that has no more.
    fn nested(uids: u32, gids: u32) -> IdMap {
        let range = |count: u32| {
            vec![IdRange {
                inside: 0,
                host: 0,
                count: count.min(ID_RANGE_SIZE),
            }]
        };
        IdMap {
            uids: range(uids),
            gids: range(gids),
            setgroups: true,
            helpers: None,
            shared: true,
        }
    }

    /// Writes the maps of process `pid` (just cloned into its own user
    /// namespace; we are in the parent one): directly as root, through `newuidmap`/`newgidmap` with
    /// subordinate ranges, else the single own-id map after `setgroups` deny.
    pub(crate) fn apply(&self, pid: i32) -> Result<(), SandboxError> {
        if self.shared {
            return Ok(());
        }
        let line = |r: &IdRange| format!("{} {} {}\n", r.inside, r.host, r.count);
        if let Some((newuidmap, newgidmap)) = &self.helpers {
            for (tool, ranges) in [(newuidmap, &self.uids), (newgidmap, &self.gids)] {
                let mut cmd = Command::new(tool);
                cmd.arg(pid.to_string());
                for r in ranges {
                    cmd.args([
                        r.inside.to_string(),
                        r.host.to_string(),
                        r.count.to_string(),
                    ]);
                }
                let out = cmd.output().map_err(|source| SandboxError::IdMap {
                    what: tool.display().to_string(),
                    source,
                })?;
                if !out.status.success() {
                    return Err(SandboxError::IdMap {
                        what: format!(
                            "{}: {}",
                            tool.display(),
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                        source: std::io::Error::other(out.status.to_string()),
                    });
                }
            }
            return Ok(());
        }
        let write = |file: &str, text: &str| {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, text).map_err(|source| SandboxError::IdMap {
                what: format!("write {path}"),
                source,
            })
        };
        if !self.setgroups {
            write("setgroups", "deny")?;
        }
        write("uid_map", &self.uids.iter().map(line).collect::<String>())?;
        write("gid_map", &self.gids.iter().map(line).collect::<String>())
    }
}

/// How many ids from 0 this process's user namespace maps, when it is not
/// the initial one (whose map is `0 0 4294967295`).
fn mapped_from_zero(file: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    parse_mapped_from_zero(&text)
}

fn parse_mapped_from_zero(text: &str) -> Option<u32> {
    let mut ranges: Vec<(u32, u32)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let inside: u32 = f.next()?.parse().ok()?;
            let _host: u32 = f.next()?.parse().ok()?;
            let count: u32 = f.next()?.parse().ok()?;
            Some((inside, count))
        })
        .collect();
    if ranges == [(0, u32::MAX)] {
        return None;
    }
    ranges.sort_unstable();
    let mut next = 0u32;
    for (inside, count) in ranges {
        if inside != next {
            break;
        }
        next = next.checked_add(count)?;
    }
    (next > 0).then_some(next)
}

/// Makes this process root of a new user namespace in which inside ids
/// `0..=65536` are the invoking user and its subordinate range (as
/// `podman unshare` and `buildah unshare` do), when kiln runs unprivileged
/// and `/etc/subuid`, `/etc/subgid`, `newuidmap` and `newgidmap` allow it.
///
/// kiln then works there as it does as root of the host: it can give store
/// files any owner an image has (a layer tree owned by uid 1000 is owned by
/// 1000 as kiln sees it), unpack base layers with their owners, and give
/// each sandbox its ids one to one; layers and images come out the same
/// bytes as a root build's. On the host, kiln's files belong to the user
/// and its subordinate ids.
///
/// Returns whether it entered one: not as root, not when already in a user
/// namespace, not without subordinate ids. Must be called while this
/// process has one thread: a forked child writes the maps (from the parent
/// namespace, through `newuidmap`) once this process has unshared.
pub fn enter_own_user_namespace() -> Result<bool, SandboxError> {
    if nix::unistd::geteuid().is_root()
        || mapped_from_zero("uid_map").is_some()
        || !super::sys::single_threaded()
    {
        return Ok(false);
    }
    let Some(map) = IdMap::subordinate_for_invoker() else {
        return Ok(false);
    };
    super::sys::unshare_user_namespace(|pid| map.apply(pid))?;
    Ok(true)
}

/// A map of one id: `id` on the host is 0 inside.
fn own_id(id: u32) -> Vec<IdRange> {
    vec![IdRange {
        inside: 0,
        host: id,
        count: 1,
    }]
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The first range of `user` (by name or uid) in a subordinate id file.
fn subordinate(file: &str, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_subordinate(&text, uid, name)
}

fn parse_subordinate(text: &str, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
        (Some(who) == name || who.parse::<u32>().ok() == Some(uid)).then_some((start, count))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_root_map_shifts_by_the_base() {
        let m = IdMap::host_root();
        assert_eq!(m.host_uid(0), Some(HOST_ROOT_ID_BASE));
        assert_eq!(m.host_uid(1000), Some(HOST_ROOT_ID_BASE + 1000));
        assert_eq!(m.host_uid(65_536), None);
        assert_eq!(m.inside_gid(HOST_ROOT_ID_BASE + 65_534), Some(65_534));
        assert_eq!(m.inside_uid(0), None);
        assert!(!m.is_single());
    }

    #[test]
    fn a_user_namespace_is_told_from_the_initial_one() {
        assert_eq!(parse_mapped_from_zero("0 0 4294967295\n"), None);
        assert_eq!(
            parse_mapped_from_zero("0 1001 1\n1 100000 65536\n"),
            Some(65_537)
        );
        assert_eq!(parse_mapped_from_zero("1 100000 65536\n"), None);
        let m = IdMap::nested(65_537, 65_537);
        assert_eq!(m.host_uid(1000), Some(1000));
        assert_eq!(m.host_uid(65_536), None);
    }

    #[test]
    fn subordinate_ranges_match_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:1000\n";
        assert_eq!(
            parse_subordinate(text, 1000, Some("alice")),
            Some((100_000, 65_536))
        );
        assert_eq!(
            parse_subordinate(text, 1001, Some("bob")),
            Some((200_000, 1000))
        );
        assert_eq!(parse_subordinate(text, 1002, Some("carol")), None);
    }
}
