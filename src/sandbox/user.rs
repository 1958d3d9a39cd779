//! Resolving `USER` (`name[:group]` or `uid[:gid]`) against a root
//! filesystem's `/etc/passwd` and `/etc/group`, as runc's `GetExecUser` does
//! for Docker. Pure: text in, ids out.

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// Uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids (from /etc/group membership by name), sorted, deduplicated.
    pub groups: Vec<u32>,
    /// Home directory (`/` when the user has no passwd entry).
    pub home: String,
}

/// Why a USER did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// A user name with no passwd entry.
    UnknownUser(String),
    /// A group name with no group entry.
    UnknownGroup(String),
}

/// Resolves `spec` (empty: root). A numeric uid need not exist in passwd
/// (then gid 0 and home `/`, as Docker); a name must. Supplementary groups
/// are the groups listing the user's name.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let numeric = user_part.parse::<u32>().ok();
    let entry = entries.iter().find(|f| match numeric {
        Some(uid) => f[2].parse::<u32>().ok() == Some(uid),
        None => f[0] == user_part,
    });
    let (uid, mut gid, home, name) = match (entry, numeric) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| UserError::UnknownUser(user_part.to_owned()))?,
            f[3].parse::<u32>().unwrap_or(0),
            f[5].to_owned(),
            Some(f[0]),
        ),
        (None, Some(uid)) => (uid, 0, "/".to_owned(), None),
        (None, None) => return Err(UserError::UnknownUser(user_part.to_owned())),
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::UnknownGroup(g.to_owned()))?,
        };
    }
    let mut supplementary: Vec<u32> = match name {
        Some(name) => groups
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        None => Vec::new(),
    };
    supplementary.push(gid);
    supplementary.sort_unstable();
    supplementary.dedup();
    Ok(ExecUser {
        uid,
        gid,
        groups: supplementary,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nuser:x:1000:\nwheel:x:10:user,other\nstaff:x:50:\n";

    #[test]
    fn empty_is_root() {
        let u = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn name_gives_uid_gid_home_and_supplementary_groups() {
        let u = resolve("user", PASSWD, GROUP).unwrap();
        assert_eq!(
            u,
            ExecUser {
                uid: 1000,
                gid: 1000,
                groups: vec![10, 1000],
                home: "/home/user".into()
            }
        );
    }

    #[test]
    fn uid_and_group_name() {
        let u = resolve("1000:staff", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
    }

    #[test]
    fn unknown_numeric_uid_is_allowed_with_gid_0_and_home_slash() {
        let u = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!(
            u,
            ExecUser {
                uid: 4242,
                gid: 0,
                groups: vec![0],
                home: "/".into()
            }
        );
        assert_eq!(resolve("4242:77", PASSWD, GROUP).unwrap().gid, 77);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve("nobody", PASSWD, GROUP),
            Err(UserError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            resolve("user:nogroup", PASSWD, GROUP),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
    }
}
