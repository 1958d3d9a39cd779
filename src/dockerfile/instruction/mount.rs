//! `RUN --mount=...` and `RUN --device=...` values: the CSV reading, keys,
//! defaults and checks of BuildKit's `commands_runmount.go` and
//! `commands_rundevice.go`.
//!
//! BuildKit reads a mount twice: when the Dockerfile is parsed (only the CSV
//! syntax and `from=` are checked, since values may hold `$VARS`), and again
//! when the RUN is dispatched, with each value expanded, where every check
//! runs. [`parse_mount_with`] is that second reading, given the evaluator's
//! expander; [`parse_mount`] is the same with values taken literally.
//!
//! Must never: expand variables itself, or look at the filesystem (relative
//! targets and the default ids that depend on WORKDIR are the evaluator's).
//!
//! Invariants: field order matters exactly as in BuildKit (`required` before
//! `type=secret` is an error); keys are case-insensitive, values are not
//! (except `type` and `sharing`); no input makes these functions panic.

use serde::Serialize;

use super::suggest;
use super::value::{go_bool, go_uint32};

/// The kinds of mount `RUN --mount=type=...` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A read-only (by default) bind of the context or of `from=`.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A build secret, as a file or an environment variable.
    Secret,
    /// The forwarded SSH agent socket.
    Ssh,
}

impl MountKind {
    /// BuildKit's names, in the order its error messages list them.
    const ALL: [MountKind; 5] = [
        MountKind::Bind,
        MountKind::Cache,
        MountKind::Tmpfs,
        MountKind::Secret,
        MountKind::Ssh,
    ];

    /// The `type=` word.
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Cache => "cache",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Secret => "secret",
            MountKind::Ssh => "ssh",
        }
    }
}

impl std::fmt::Display for MountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Concurrent builds use the same directory (the default).
    Shared,
    /// A busy cache is copied for the second user.
    Private,
    /// The second user waits.
    Locked,
}

impl Sharing {
    const ALL: [Sharing; 3] = [Sharing::Shared, Sharing::Private, Sharing::Locked];

    /// The `sharing=` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        }
    }
}

/// One `--mount`, read and checked. Empty values (`target=`) count as not
/// given, as in BuildKit, except `env=`, whose empty value asks for the
/// default variable name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// `type=`, default `bind`.
    pub kind: MountKind,
    /// `from=`: a stage, image or named context (bind, cache).
    pub from: Option<String>,
    /// `source=` / `src=`: path inside `from` (or the secret's id).
    pub source: Option<String>,
    /// `target=` / `dst=` / `destination=`: where it appears. May be relative
    /// (to WORKDIR); BuildKit refuses a target that resolves to `/`.
    pub target: Option<String>,
    /// Read-only: the default for bind, secret and ssh; `ro`/`rw` override.
    pub readonly: bool,
    /// `id=`: cache id, secret id or ssh id.
    pub id: Option<String>,
    /// `sharing=` (cache only); `None` means shared.
    pub sharing: Option<Sharing>,
    /// `required` (secret and ssh): fail when it is not provided.
    pub required: bool,
    /// `size=` (tmpfs), in bytes; `None` or 0 means no limit.
    pub size: Option<u64>,
    /// `env=` (secret): expose it as this environment variable.
    pub env: Option<String>,
    /// `mode=` (cache, secret, ssh), octal.
    pub mode: Option<u32>,
    /// `uid=` (cache, secret, ssh).
    pub uid: Option<u32>,
    /// `gid=` (cache, secret, ssh).
    pub gid: Option<u32>,
}

impl Mount {
    fn new() -> Self {
        Mount {
            kind: MountKind::Bind,
            from: None,
            source: None,
            target: None,
            readonly: false,
            id: None,
            sharing: None,
            required: false,
            size: None,
            env: None,
            mode: None,
            uid: None,
            gid: None,
        }
    }

    /// The cache id BuildKit uses: `id=`, else the target cleaned with Go's
    /// `path.Clean` (not resolved against WORKDIR).
    pub fn cache_id(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => go_path_clean(self.target.as_deref().unwrap_or("")),
        }
    }

    /// The sharing mode in effect (`shared` unless given).
    pub fn sharing_or_default(&self) -> Sharing {
        self.sharing.unwrap_or(Sharing::Shared)
    }

    /// A secret's id: `source=`, else `id=`, else the target's base name.
    pub fn secret_id(&self) -> Option<String> {
        self.source
            .clone()
            .or_else(|| self.id.clone())
            .or_else(|| self.target.as_deref().map(go_path_base))
    }

    /// Where a secret file appears: the target, else `/run/secrets/<id>`
    /// unless the secret only goes to an environment variable.
    pub fn secret_target(&self) -> Option<String> {
        if self.target.is_some() {
            return self.target.clone();
        }
        if self.env.is_some() {
            return None;
        }
        self.secret_id()
            .map(|id| format!("/run/secrets/{}", go_path_base(&id)))
    }

    /// An ssh mount's id (`default` unless given).
    pub fn ssh_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| "default".into())
    }

    /// The file mode in effect: `mode=`, else 0755 (cache), 0400 (secret),
    /// 0600 (ssh); `None` for bind and tmpfs.
    pub fn mode_or_default(&self) -> Option<u32> {
        let default = match self.kind {
            MountKind::Cache => 0o755,
            MountKind::Secret => 0o400,
            MountKind::Ssh => 0o600,
            MountKind::Bind | MountKind::Tmpfs => return None,
        };
        Some(self.mode.unwrap_or(default))
    }
}

/// Why a `--mount` value was refused. Messages are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// The value is not one CSV record.
    #[error("failed to parse csv mounts: {reason}")]
    Csv {
        /// encoding/csv's description (`EOF` for an empty value).
        reason: String,
    },
    /// A field without `=` that is not a flag word (`ro`, `rw`, `required`).
    #[error("invalid field '{field}' must be a key=value pair")]
    NotKeyValue {
        /// The field.
        field: String,
    },
    /// A key that exists, but not for this type (at the point it is read).
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForKind {
        /// The key, lower-cased.
        key: String,
        /// The mount type so far.
        kind: MountKind,
    },
    /// A key BuildKit does not know.
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownKey {
        /// The key, lower-cased.
        key: String,
        /// The whole field.
        field: String,
        /// A known key within edit distance 2.
        suggestion: Option<String>,
    },
    /// `type=` with an unknown type.
    #[error("unsupported mount type {quoted}", quoted = crate::dockerfile::ast::go_quote(value))]
    UnknownKind {
        /// The value as given.
        value: String,
        /// A known type within edit distance 2.
        suggestion: Option<String>,
    },
    /// `sharing=` with an unknown mode.
    #[error("unsupported sharing value {quoted}", quoted = crate::dockerfile::ast::go_quote(value))]
    UnknownSharing {
        /// The value as given.
        value: String,
        /// A known mode within edit distance 2.
        suggestion: Option<String>,
    },
    /// A boolean or size that does not parse.
    #[error("invalid value for {key}: {value}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `mode`, `uid` or `gid` that does not parse.
    #[error("invalid value {value} for {key}")]
    InvalidNumber {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `mode`, `uid` or `gid` on a bind or tmpfs mount.
    #[error("{key} not allowed for \"{kind}\" type mounts")]
    FileInfoNotAllowed {
        /// `mode`, `uid` or `gid`.
        key: &'static str,
        /// The mount type.
        kind: MountKind,
    },
    /// `from=` on a secret.
    #[error("secret mount should not have a from")]
    SecretWithFrom,
    /// `sharing=` on a secret.
    #[error("secret mount should not define sharing")]
    SecretWithSharing,
    /// A secret with none of `source`, `target`, `id`.
    #[error("invalid secret mount. one of source, target required")]
    SecretWithoutId,
    /// A secret with both `source` and `id`.
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    /// `sharing=` on something other than a cache.
    #[error("invalid cache sharing set for {kind} mount")]
    SharingNotCache {
        /// The mount type.
        kind: MountKind,
    },
    /// `from=` holding a variable.
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
}

impl MountError {
    /// The "did you mean" candidate BuildKit appends to some errors.
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            MountError::UnknownKey { suggestion, .. }
            | MountError::UnknownKind { suggestion, .. }
            | MountError::UnknownSharing { suggestion, .. } => suggestion.as_deref(),
            _ => None,
        }
    }
}

/// Keys BuildKit lists when suggesting a fix for an unknown one, in its order.
const MOUNT_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Reads a mount whose values are final (already expanded, or literal).
pub fn parse_mount(value: &str) -> Result<Mount, MountError> {
    match read_mount(value, &mut |v: &str| {
        Ok::<_, std::convert::Infallible>(v.to_string())
    }) {
        Ok(mount) => Ok(mount),
        Err(Failure::Invalid(e)) => Err(e),
        Err(Failure::Expand(never)) => match never {},
    }
}

/// Reads a mount as BuildKit does at dispatch: the CSV fields are split
/// first, then each value (never a key, never a bare word) goes through
/// `expand`. The outer `Err` is the expander's own error; the inner one is
/// the mount's.
pub fn parse_mount_with<E>(
    value: &str,
    mut expand: impl FnMut(&str) -> Result<String, E>,
) -> Result<Result<Mount, MountError>, E> {
    match read_mount(value, &mut expand) {
        Ok(mount) => Ok(Ok(mount)),
        Err(Failure::Invalid(e)) => Ok(Err(e)),
        Err(Failure::Expand(e)) => Err(e),
    }
}

/// The parse-time reading BuildKit does before any expansion: the CSV syntax,
/// and no variable in `from=` (a `$` anywhere but last).
pub(crate) fn precheck_mount(value: &str) -> Result<Vec<String>, MountError> {
    let fields = csv_fields(value).map_err(|reason| MountError::Csv { reason })?;
    for field in &fields {
        if let Some((key, value)) = field.split_once('=')
            && key.eq_ignore_ascii_case("from")
            && value.find('$').is_some_and(|at| at + 1 != value.len())
        {
            return Err(MountError::FromVariable);
        }
    }
    Ok(fields)
}

enum Failure<E> {
    Invalid(MountError),
    Expand(E),
}

impl<E> From<MountError> for Failure<E> {
    fn from(e: MountError) -> Self {
        Failure::Invalid(e)
    }
}

fn read_mount<E>(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<Mount, Failure<E>> {
    let fields = csv_fields(value).map_err(|reason| MountError::Csv { reason })?;
    let mut m = Mount::new();
    let mut readonly_auto = true;
    let secret_or_ssh = |m: &Mount| matches!(m.kind, MountKind::Secret | MountKind::Ssh);

    for field in &fields {
        let Some((key, raw)) = field.split_once('=') else {
            match field.to_lowercase().as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    readonly_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    readonly_auto = false;
                }
                "required" if secret_or_ssh(&m) => m.required = true,
                "required" => {
                    return Err(MountError::KeyNotForKind {
                        key: "required".into(),
                        kind: m.kind,
                    }
                    .into());
                }
                _ => {
                    return Err(MountError::NotKeyValue {
                        field: field.clone(),
                    }
                    .into());
                }
            }
            continue;
        };
        let key = key.to_lowercase();
        let value = expand(raw).map_err(Failure::Expand)?;
        let not_empty = |v: String| (!v.is_empty()).then_some(v);
        let bool_value = |value: &str| {
            go_bool(value).ok_or_else(|| MountError::InvalidValue {
                key: key.clone(),
                value: value.to_string(),
            })
        };
        match key.as_str() {
            "type" => {
                let lower = value.to_lowercase();
                let Some(kind) = MountKind::ALL.into_iter().find(|k| k.as_str() == lower) else {
                    let names = MountKind::ALL.map(MountKind::as_str);
                    return Err(MountError::UnknownKind {
                        suggestion: suggest(&value, &names, true),
                        value,
                    }
                    .into());
                };
                m.kind = kind;
            }
            "from" => m.from = not_empty(value),
            "source" | "src" => m.source = not_empty(value),
            "target" | "dst" | "destination" => m.target = not_empty(value),
            "readonly" | "ro" => {
                m.readonly = bool_value(&value)?;
                readonly_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !bool_value(&value)?;
                readonly_auto = false;
            }
            "required" => {
                if !secret_or_ssh(&m) {
                    return Err(MountError::KeyNotForKind { key, kind: m.kind }.into());
                }
                m.required = bool_value(&value)?;
            }
            "size" => {
                if m.kind != MountKind::Tmpfs {
                    return Err(MountError::KeyNotForKind { key, kind: m.kind }.into());
                }
                let size = ram_in_bytes(&value).ok_or_else(|| MountError::InvalidValue {
                    key: key.clone(),
                    value: value.clone(),
                })?;
                m.size = Some(size);
            }
            "id" => m.id = not_empty(value),
            "sharing" => {
                let lower = value.to_lowercase();
                let Some(sharing) = Sharing::ALL.into_iter().find(|s| s.as_str() == lower) else {
                    let names = Sharing::ALL.map(Sharing::as_str);
                    return Err(MountError::UnknownSharing {
                        suggestion: suggest(&value, &names, true),
                        value,
                    }
                    .into());
                };
                m.sharing = Some(sharing);
            }
            "mode" | "uid" | "gid" => {
                let base = if key == "mode" { 8 } else { 10 };
                let Some(n) = go_uint32(&value, base) else {
                    return Err(MountError::InvalidNumber { key, value }.into());
                };
                match key.as_str() {
                    "mode" => m.mode = Some(n),
                    "uid" => m.uid = Some(n),
                    _ => m.gid = Some(n),
                }
            }
            "env" => m.env = Some(value),
            _ => {
                return Err(MountError::UnknownKey {
                    suggestion: suggest(&key, &MOUNT_KEYS, true),
                    key,
                    field: field.clone(),
                }
                .into());
            }
        }
    }

    if !matches!(
        m.kind,
        MountKind::Secret | MountKind::Ssh | MountKind::Cache
    ) {
        for (key, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::FileInfoNotAllowed { key, kind: m.kind }.into());
            }
        }
    }
    if readonly_auto {
        m.readonly = !matches!(m.kind, MountKind::Cache | MountKind::Tmpfs);
    }
    if m.kind == MountKind::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretWithFrom.into());
        }
        if m.sharing.is_some() {
            return Err(MountError::SecretWithSharing.into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::SecretWithoutId.into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SecretSourceAndId.into());
        }
    }
    if m.sharing.is_some() && m.kind != MountKind::Cache {
        return Err(MountError::SharingNotCache { kind: m.kind }.into());
    }
    Ok(m)
}

/// A `--device` value: a CDI device name, optionally `required`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The CDI name (`vendor.com/class=name`, or a bare first field).
    pub name: String,
    /// Fail when the device is not available.
    pub required: bool,
}

/// Reads `--device=name[,required]` as BuildKit's `ParseDevice` does.
pub fn parse_device(value: &str) -> Result<Device, String> {
    let fields = csv_fields(value).map_err(|e| format!("failed to parse csv devices: {e}"))?;
    let mut device = Device {
        name: String::new(),
        required: false,
    };
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.to_lowercase(), Some(value)),
            None => (field.to_lowercase(), None),
        };
        match (key.as_str(), value) {
            ("required", None) => device.required = true,
            ("required", Some(v)) => {
                device.required =
                    go_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"))?;
            }
            ("name", Some(v)) => {
                if !device.name.is_empty() {
                    return Err(format!("device name already set to {}", device.name));
                }
                device.name = v.to_string();
            }
            _ if device.name.is_empty() => device.name = field.clone(),
            (_, None) => {
                return Err(format!("invalid field '{field}' must be a key=value pair"));
            }
            (_, Some(_)) => {
                let hint = suggest(&key, &["name", "required"], true)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                return Err(format!("unexpected key '{key}' in '{field}'{hint}"));
            }
        }
    }
    Ok(device)
}

/// One CSV record, as `tonistiigi/go-csvvalue.Fields` reads it (the rules
/// of Go's `encoding/csv`: `"` quotes a whole field, `""` inside is a quote,
/// a bare `"` elsewhere is an error; one trailing newline is allowed).
pub(crate) fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let line = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    if line.is_empty() {
        return Err("EOF".into());
    }
    let err = |pos: usize, what: &str| format!("parse error on line 1, column {}: {what}", pos + 1);
    let bare = "bare \" in non-quoted-field";
    let quote = "extraneous or missing \" in quoted-field";
    let mut fields = Vec::new();
    let mut rest = line;
    let mut pos = 0;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            rest = quoted;
            pos += 1;
            let mut field = String::new();
            loop {
                let Some(at) = rest.find('"') else {
                    return Err(err(pos, quote));
                };
                field.push_str(&rest[..at]);
                rest = &rest[at + 1..];
                pos += at + 1;
                if let Some(after) = rest.strip_prefix('"') {
                    field.push('"');
                    rest = after;
                    pos += 1;
                } else if let Some(after) = rest.strip_prefix(',') {
                    fields.push(field);
                    rest = after;
                    pos += 1;
                    break;
                } else if rest.is_empty() {
                    fields.push(field);
                    return Ok(fields);
                } else {
                    return Err(err(pos - 1, quote));
                }
            }
            continue;
        }
        let (field, next) = match rest.find(',') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        if let Some(at) = field.find('"') {
            return Err(err(pos + at, bare));
        }
        fields.push(field.to_string());
        match next {
            Some(next) => {
                pos += field.len() + 1;
                rest = next;
            }
            None => return Ok(fields),
        }
    }
}

/// `docker/go-units.RAMInBytes`: a number (fractions allowed) with an
/// optional binary suffix `k`, `m`, `g`, `t`, `p` (any case), optionally
/// followed by `b` or `ib`; a single space may separate them.
fn ram_in_bytes(s: &str) -> Option<u64> {
    let sep = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (number, suffix) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let valid_number = !number.is_empty()
        && number
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !valid_number {
        return None;
    }
    let mut size: f64 = number.parse().ok()?;
    if size < 0.0 {
        return None;
    }
    let suffix = suffix.to_ascii_lowercase();
    let multiplier: f64 = match suffix.as_bytes() {
        [] | [b'b'] => 1.0,
        [unit, rest @ ..] => {
            let power = match unit {
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return None,
            };
            if !matches!(rest, [] | [b'b'] | [b'i', b'b']) {
                return None;
            }
            1024f64.powi(power)
        }
    };
    size *= multiplier;
    // Go's int64(float64) conversion; saturate instead of wrapping.
    Some(size as u64)
}

/// Go's `path.Clean`.
pub(crate) fn go_path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `path.Base`.
pub(crate) fn go_path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(value: &str) -> MountError {
        parse_mount(value).unwrap_err()
    }

    #[test]
    fn bind_is_the_default_type_and_read_only() {
        let m = parse_mount("target=/src").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert!(m.readonly);
        assert_eq!(m.target.as_deref(), Some("/src"));
        let m = parse_mount("type=bind,source=sub,from=builder,dst=/x,rw").unwrap();
        assert!(!m.readonly);
        assert_eq!(m.source.as_deref(), Some("sub"));
        assert_eq!(m.from.as_deref(), Some("builder"));
        assert_eq!(m.target.as_deref(), Some("/x"));
        assert_eq!(m.mode_or_default(), None);
    }

    #[test]
    fn cache_defaults() {
        let m = parse_mount("type=cache,target=/root/.cache/").unwrap();
        assert_eq!(m.kind, MountKind::Cache);
        assert!(!m.readonly);
        assert_eq!(m.cache_id(), "/root/.cache");
        assert_eq!(m.sharing_or_default(), Sharing::Shared);
        assert_eq!(m.mode_or_default(), Some(0o755));
        let m = parse_mount(
            "type=cache,id=go,target=/go,sharing=LOCKED,mode=0700,uid=1000,gid=1000,ro",
        )
        .unwrap();
        assert_eq!(m.cache_id(), "go");
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!(
            (m.mode, m.uid, m.gid),
            (Some(0o700), Some(1000), Some(1000))
        );
        assert!(m.readonly);
    }

    #[test]
    fn tmpfs_size_uses_binary_units() {
        let m = parse_mount("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        assert!(!m.readonly);
        assert_eq!(
            parse_mount("type=tmpfs,dst=/t,size=1.5KiB").unwrap().size,
            Some(1536)
        );
        assert_eq!(
            parse_mount("type=tmpfs,dst=/t,size=100").unwrap().size,
            Some(100)
        );
        assert_eq!(
            parse_mount("type=tmpfs,dst=/t,size=2 GB").unwrap().size,
            Some(2 << 30)
        );
        assert_eq!(
            err("type=tmpfs,target=/t,size=lots"),
            MountError::InvalidValue {
                key: "size".into(),
                value: "lots".into()
            }
        );
        assert!(parse_mount("type=tmpfs,target=/t,size=1x").is_err());
        assert!(parse_mount("type=tmpfs,target=/t,size=1kbb").is_err());
        assert_eq!(
            err("type=cache,target=/t,size=1m"),
            MountError::KeyNotForKind {
                key: "size".into(),
                kind: MountKind::Cache
            }
        );
    }

    #[test]
    fn secret_defaults_and_rules() {
        let m = parse_mount("type=secret,id=aws").unwrap();
        assert!(m.readonly && !m.required);
        assert_eq!(m.secret_id().as_deref(), Some("aws"));
        assert_eq!(m.secret_target().as_deref(), Some("/run/secrets/aws"));
        assert_eq!(m.mode_or_default(), Some(0o400));
        let m = parse_mount("type=secret,target=/etc/creds/token,required").unwrap();
        assert!(m.required);
        assert_eq!(m.secret_id().as_deref(), Some("token"));
        let m = parse_mount("type=secret,id=tok,env=TOKEN,required=false").unwrap();
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        assert_eq!(m.secret_target(), None);
        assert_eq!(err("type=secret"), MountError::SecretWithoutId);
        assert_eq!(
            err("type=secret,id=a,source=b"),
            MountError::SecretSourceAndId
        );
        assert_eq!(err("type=secret,id=a,from=x"), MountError::SecretWithFrom);
        assert_eq!(
            err("type=secret,id=a,sharing=shared"),
            MountError::SecretWithSharing
        );
    }

    #[test]
    fn ssh_defaults() {
        let m = parse_mount("type=ssh").unwrap();
        assert_eq!(m.ssh_id(), "default");
        assert_eq!(m.target, None);
        assert!(m.readonly);
        assert_eq!(m.mode_or_default(), Some(0o600));
        let m = parse_mount("type=ssh,id=github,required=true,uid=1000").unwrap();
        assert_eq!(m.ssh_id(), "github");
        assert!(m.required);
    }

    #[test]
    fn field_order_matters_for_required() {
        assert_eq!(
            err("required,type=secret,id=x"),
            MountError::KeyNotForKind {
                key: "required".into(),
                kind: MountKind::Bind
            }
        );
        assert!(parse_mount("type=secret,id=x,required").is_ok());
    }

    #[test]
    fn unknown_type_key_and_sharing_suggest() {
        let e = err("type=bnd,target=/x");
        assert_eq!(e.to_string(), r#"unsupported mount type "bnd""#);
        assert_eq!(e.suggestion(), Some("bind"));
        let e = err("type=cache,target=/x,sharing=share");
        assert_eq!(e.to_string(), r#"unsupported sharing value "share""#);
        assert_eq!(e.suggestion(), Some("shared"));
        let e = err("targte=/x");
        assert_eq!(e.to_string(), "unexpected key 'targte' in 'targte=/x'");
        assert_eq!(e.suggestion(), Some("target"));
        assert_eq!(
            err("bogus"),
            MountError::NotKeyValue {
                field: "bogus".into()
            }
        );
        assert_eq!(
            parse_mount("TYPE=CACHE,Target=/x").unwrap().kind,
            MountKind::Cache
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert_eq!(
            err("target=/x,ro=maybe"),
            MountError::InvalidValue {
                key: "ro".into(),
                value: "maybe".into()
            }
        );
        assert_eq!(
            err("type=cache,target=/x,mode=0999"),
            MountError::InvalidNumber {
                key: "mode".into(),
                value: "0999".into()
            }
        );
        assert_eq!(
            err("type=cache,target=/x,uid=-1"),
            MountError::InvalidNumber {
                key: "uid".into(),
                value: "-1".into()
            }
        );
        assert_eq!(
            err("target=/x,mode=0700"),
            MountError::FileInfoNotAllowed {
                key: "mode",
                kind: MountKind::Bind
            }
        );
        assert_eq!(
            err("target=/x,sharing=locked"),
            MountError::SharingNotCache {
                kind: MountKind::Bind
            }
        );
    }

    #[test]
    fn csv_quoting_follows_encoding_csv() {
        assert_eq!(csv_fields("a,b"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(csv_fields("a,"), Ok(vec!["a".into(), String::new()]));
        assert_eq!(
            csv_fields(r#""a,b"",c",d"#),
            Ok(vec![r#"a,b",c"#.into(), "d".into()])
        );
        assert_eq!(csv_fields(""), Err("EOF".into()));
        assert_eq!(
            csv_fields(r#"target="/a b""#),
            Err(r#"parse error on line 1, column 8: bare " in non-quoted-field"#.into())
        );
        assert_eq!(
            csv_fields(r#""abc"x"#),
            Err(
                r#"parse error on line 1, column 5: extraneous or missing " in quoted-field"#
                    .into()
            )
        );
        assert!(csv_fields(r#""abc"#).is_err());
        let m = parse_mount(r#"type=bind,"target=/a,b""#).unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
        assert_eq!(
            err(""),
            MountError::Csv {
                reason: "EOF".into()
            }
        );
    }

    #[test]
    fn expansion_applies_to_values_only() {
        let mut seen = Vec::new();
        let m = parse_mount_with("type=cache,target=$HOME/.cache,ro", |v| {
            seen.push(v.to_string());
            Ok::<_, String>(v.replace("$HOME", "/root"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen, vec!["cache", "$HOME/.cache"]);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        let failed = parse_mount_with("target=${X:?unset}", |_| Err::<String, _>("unset"));
        assert_eq!(failed, Err("unset"));
    }

    #[test]
    fn precheck_refuses_variables_in_from_only() {
        assert_eq!(
            precheck_mount("from=$STAGE,target=/x"),
            Err(MountError::FromVariable)
        );
        assert_eq!(
            precheck_mount("FROM=${STAGE}"),
            Err(MountError::FromVariable)
        );
        assert!(precheck_mount("from=stage$,target=/x").is_ok());
        assert!(precheck_mount("type=$T,target=$X").is_ok());
        assert!(precheck_mount("").is_err());
    }

    #[test]
    fn devices() {
        assert_eq!(
            parse_device("vendor.com/gpu=all,required"),
            Ok(Device {
                name: "vendor.com/gpu=all".into(),
                required: true
            })
        );
        assert_eq!(
            parse_device("name=nvidia.com/gpu=0,required=false"),
            Ok(Device {
                name: "nvidia.com/gpu=0".into(),
                required: false
            })
        );
        assert!(
            parse_device("a,name=b")
                .unwrap_err()
                .contains("already set")
        );
        assert!(parse_device("a,b").unwrap_err().contains("key=value"));
        assert!(parse_device("").is_err());
    }

    #[test]
    fn go_paths() {
        assert_eq!(go_path_clean(""), ".");
        assert_eq!(go_path_clean("/a/./b/../c/"), "/a/c");
        assert_eq!(go_path_clean("../a/.."), "..");
        assert_eq!(go_path_clean("/.."), "/");
        assert_eq!(go_path_base("/a/b/"), "b");
        assert_eq!(go_path_base("///"), "/");
        assert_eq!(go_path_base("x"), "x");
    }
}
