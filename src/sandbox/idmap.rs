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
        }
    }

    /// The map for this process: [`IdMap::host_root`] as root, else own ids
    /// as root plus the subordinate ranges when `newuidmap` is installed.
    pub fn for_invoker() -> IdMap {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if uid == 0 {
            return IdMap::host_root();
        }
        let own = |id| {
            vec![IdRange {
                inside: 0,
                host: id,
                count: 1,
            }]
        };
        let helpers = find_in_path("newuidmap").zip(find_in_path("newgidmap"));
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let sub_u = subordinate("/etc/subuid", uid, name.as_deref());
        let sub_g = subordinate("/etc/subgid", uid, name.as_deref());
        if let (Some(tools), Some(su), Some(sg)) = (helpers, sub_u, sub_g) {
            let mut uids = own(uid);
            uids.push(IdRange {
                inside: 1,
                host: su.0,
                count: su.1,
            });
            let mut gids = own(gid);
            gids.push(IdRange {
                inside: 1,
                host: sg.0,
                count: sg.1,
            });
            return IdMap {
                uids,
                gids,
                setgroups: true,
                helpers: Some(tools),
            };
        }
        IdMap {
            uids: own(uid),
            gids: own(gid),
            setgroups: false,
            helpers: None,
        }
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

    /// Writes the maps of process `pid` (just cloned into its own user
    /// namespace; we are in the parent one): directly as root, through `newuidmap`/`newgidmap` with
    /// subordinate ranges, else the single own-id map after `setgroups` deny.
    pub(crate) fn apply(&self, pid: i32) -> Result<(), SandboxError> {
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
