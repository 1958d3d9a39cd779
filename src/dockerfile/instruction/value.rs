//! Parsers for the values BuildKit checks with Go library code: durations
//! (Go's `time.ParseDuration`), `--chmod` modes (octal, or symbolic through
//! `tonistiigi/dchapes-mode`, a port of BSD `setmode(3)`), stop signals
//! (`moby/sys/signal.ParseSignal` with the Linux table) and booleans
//! (`strconv.ParseBool`).
//!
//! Must never: expand variables (callers pass text that is already
//! expanded, or literal text), touch the host (the umask for symbolic modes
//! is a fixed value, not the process's), or panic on any input.
//!
//! Invariants: every function is pure and total; results are what the Go
//! code returns for the same text, except that inputs on which Go panics
//! (a symbolic mode ending in `u`, or in a `,`) are errors here.

use crate::dockerfile::ast::go_quote;

/// Go's `1<<63`: the bound the duration parser checks against.
const DURATION_LIMIT: u64 = 1 << 63;

/// Units of `time.ParseDuration`, in nanoseconds. Both micro signs are
/// accepted, as in Go: U+00B5 and U+03BC.
const DURATION_UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a duration the way Go's `time.ParseDuration` does and returns
/// nanoseconds. Negative durations are refused: kiln only needs
/// non-negative ones (use the HEALTHCHECK code path for Go's full range).
///
/// Accepts `0`, `300ms`, `1h2m3.5s`, `1.5us`, `2µs`; a bare number other
/// than `0` lacks a unit and is an error, as in Go.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let nanos = go_duration(s)?;
    u64::try_from(nanos).map_err(|_| format!("duration {} is negative", go_quote(s)))
}

/// Go's `time.ParseDuration`, signed, with Go's error messages.
pub(crate) fn go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        // [0-9]*
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut value: u64 = 0;
        for digit in s[..int_len].bytes() {
            if value > DURATION_LIMIT / 10 {
                return Err(invalid());
            }
            value = value * 10 + u64::from(digit - b'0');
            if value > DURATION_LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        // (\.[0-9]*)?  Digits past what fits are read and ignored, as in Go.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut fraction_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            fraction_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for digit in s[..fraction_len].bytes() {
                if overflow {
                    continue;
                }
                if fraction > (DURATION_LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(digit - b'0');
                if next > DURATION_LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[fraction_len..];
        }
        if int_len == 0 && fraction_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let name = &s[..unit_len];
        s = &s[unit_len..];
        let Some(&(_, unit)) = DURATION_UNITS.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                go_quote(name),
                go_quote(orig)
            ));
        };
        if value > DURATION_LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            // Go computes the fractional part in float64 and truncates.
            let part = fraction as f64 * (unit as f64 / scale);
            value = value.saturating_add(part as u64);
            if value > DURATION_LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > DURATION_LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // total <= 2^63, so this is at least i64::MIN.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Go's `strconv.ParseBool`.
pub(crate) fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, base, 32)` for base 8 or 10: digits only, no
/// sign, no underscores, at least one digit.
pub(crate) fn go_uint32(s: &str, base: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    u32::from_str_radix(s, base).ok()
}

/// Why a `--chmod` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// Starts with a digit but is not an octal number up to `07777`.
    #[error(
        "invalid chmod parameter: '{value}'. it should be octal string and between 0 and 07777"
    )]
    NotOctal {
        /// The value as given.
        value: String,
    },
    /// Not a symbolic mode chmod(1) understands.
    #[error("invalid chmod parameter: '{value}': invalid syntax")]
    Syntax {
        /// The value as given.
        value: String,
    },
}

/// A parsed `--chmod` value: an octal mode, or a symbolic one that depends on
/// each file's own mode and kind (`u=rwX,go=rX`, `+x`, `g=u`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chmod {
    text: String,
    kind: ChmodKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChmodKind {
    Octal(u32),
    Symbolic(Vec<BitCommand>),
}

/// Parses a `--chmod` value as BuildKit's `dispatchCopy` does: an octal
/// number up to `07777` (any number of leading zeros), else a chmod(1)
/// symbolic mode.
///
/// Symbolic clauses without a `who` (`+w`, `=r`) are masked by a umask of 0,
/// the umask standalone `buildkitd` runs with, so `+w` adds write for all.
pub fn parse_chmod(s: &str) -> Result<Chmod, ChmodError> {
    if let Some(octal) = go_uint32(s, 8) {
        if octal > 0o7777 {
            return Err(ChmodError::NotOctal { value: s.into() });
        }
        return Ok(Chmod {
            text: s.into(),
            kind: ChmodKind::Octal(octal),
        });
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        // dchapes-mode reads a leading digit as octal; any failure there is
        // reported as the octal error "for compatibility".
        return Err(ChmodError::NotOctal { value: s.into() });
    }
    match parse_symbolic(s.as_bytes(), 0) {
        Some(commands) => Ok(Chmod {
            text: s.into(),
            kind: ChmodKind::Symbolic(commands),
        }),
        None => Err(ChmodError::Syntax { value: s.into() }),
    }
}

impl Chmod {
    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The mode, when the value is octal (same for every file).
    pub fn octal(&self) -> Option<u32> {
        match self.kind {
            ChmodKind::Octal(mode) => Some(mode),
            ChmodKind::Symbolic(_) => None,
        }
    }

    /// The new mode of a file whose current mode is `mode` (the file-type
    /// bits above `07777` are kept). `is_dir` matters for `X`, which adds
    /// execute to directories and to files that already had some.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let perm = match &self.kind {
            ChmodKind::Octal(octal) => *octal,
            ChmodKind::Symbolic(commands) => apply_symbolic(commands, mode & 0o7777, is_dir),
        };
        (mode & !0o7777) | (perm & 0o7777)
    }
}

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISTXT: u32 = 0o1000;
const IRWXU: u32 = 0o700;
const IRUSR: u32 = 0o400;
const IWUSR: u32 = 0o200;
const IXUSR: u32 = 0o100;
const IRWXG: u32 = 0o070;
const IRGRP: u32 = 0o040;
const IWGRP: u32 = 0o020;
const IXGRP: u32 = 0o010;
const IRWXO: u32 = 0o007;
const IROTH: u32 = 0o004;
const IWOTH: u32 = 0o002;
const IXOTH: u32 = 0o001;
const STANDARD_BITS: u32 = S_ISUID | S_ISGID | IRWXU | IRWXG | IRWXO;
const ALL_X: u32 = IXUSR | IXGRP | IXOTH;

/// Flags of a copy command (`g=u`): clear, set, and which classes.
const COPY_CLEAR: u8 = 1;
const COPY_SET: u8 = 2;
const COPY_GROUP: u8 = 4;
const COPY_OTHER: u8 = 8;
const COPY_USER: u8 = 16;

/// One step of a compiled symbolic mode (setmode(3)'s `BITCMD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BitCommand {
    /// `+`, `-`, `X`, or the class copied from: `u`, `g`, `o`.
    op: u8,
    /// For copies: `COPY_*` flags.
    copy: u8,
    bits: u32,
}

/// Compiles a symbolic mode; `None` where setmode(3) reports a syntax error
/// (and where the Go port would index past the end of the string).
fn parse_symbolic(s: &[u8], umask: u32) -> Option<Vec<BitCommand>> {
    if s.is_empty() {
        return None;
    }
    let mask = !umask;
    let mut commands = Vec::new();
    let mut i = 0;
    let mut equal_done = false;
    loop {
        // who: [ugoa]*
        let mut who = 0;
        while let Some(&c) = s.get(i) {
            who |= match c {
                b'a' => STANDARD_BITS,
                b'u' => S_ISUID | IRWXU,
                b'g' => S_ISGID | IRWXG,
                b'o' => IRWXO,
                _ => break,
            };
            i += 1;
        }
        // One or more op + perms groups: `u+r-w`.
        loop {
            let op = *s.get(i)?;
            i += 1;
            match op {
                b'+' | b'-' => {}
                b'=' => equal_done = false,
                _ => return None,
            }
            who &= !S_ISTXT;
            let mut perm = 0;
            let mut perm_x = 0;
            loop {
                let c = s.get(i).copied().unwrap_or(0);
                match c {
                    b'r' => perm |= IRUSR | IRGRP | IROTH,
                    b's' => {
                        // Set-id bits are ignored when only "other" is named.
                        if who == 0 || who & !IRWXO != 0 {
                            perm |= S_ISUID | S_ISGID;
                        }
                    }
                    b't' => {
                        if who == 0 || who & !IRWXO != 0 {
                            who |= S_ISTXT;
                            perm |= S_ISTXT;
                        }
                    }
                    b'w' => perm |= IWUSR | IWGRP | IWOTH,
                    b'X' => {
                        if op == b'+' {
                            perm_x = ALL_X;
                        }
                    }
                    b'x' => perm |= ALL_X,
                    b'u' | b'g' | b'o' => {
                        if perm != 0 {
                            add_command(&mut commands, op, who, perm, mask);
                            perm = 0;
                        }
                        if op == b'=' {
                            equal_done = true;
                        }
                        if perm_x != 0 {
                            add_command(&mut commands, b'X', who, perm_x, mask);
                            perm_x = 0;
                        }
                        add_command(&mut commands, c, who, u32::from(op), mask);
                    }
                    _ => {
                        if perm != 0 || (op == b'=' && !equal_done) {
                            if op == b'=' {
                                equal_done = true;
                            }
                            add_command(&mut commands, op, who, perm, mask);
                        }
                        if perm_x != 0 {
                            add_command(&mut commands, b'X', who, perm_x, mask);
                        }
                        break;
                    }
                }
                i += 1;
            }
            match s.get(i) {
                None => return Some(compress(commands)),
                Some(b',') => {
                    i += 1;
                    break;
                }
                Some(_) => {}
            }
        }
        if i >= s.len() {
            return None;
        }
    }
}

fn add_command(commands: &mut Vec<BitCommand>, op: u8, who: u32, arg: u32, mask: u32) {
    let masked = |bits: u32| if who != 0 { who & bits } else { mask & bits };
    match op {
        b'=' => {
            commands.push(BitCommand {
                op: b'-',
                copy: 0,
                bits: if who != 0 { who } else { STANDARD_BITS },
            });
            commands.push(BitCommand {
                op: b'+',
                copy: 0,
                bits: masked(arg),
            });
        }
        b'+' | b'-' | b'X' => commands.push(BitCommand {
            op,
            copy: 0,
            bits: masked(arg),
        }),
        _ => {
            let (mut copy, bits) = if who != 0 {
                let mut copy = 0;
                if who & IRUSR != 0 {
                    copy |= COPY_USER;
                }
                if who & IRGRP != 0 {
                    copy |= COPY_GROUP;
                }
                if who & IROTH != 0 {
                    copy |= COPY_OTHER;
                }
                (copy, !0)
            } else {
                (COPY_USER | COPY_GROUP | COPY_OTHER, mask)
            };
            copy |= match u8::try_from(arg).unwrap_or(0) {
                b'+' => COPY_SET,
                b'-' => COPY_CLEAR,
                b'=' => COPY_SET | COPY_CLEAR,
                _ => 0,
            };
            commands.push(BitCommand { op, copy, bits });
        }
    }
}

/// Folds each run of `+`, `-` and `X` commands into at most one of each,
/// in that order (`-`, `+`, `X`), exactly as setmode(3) does: the order
/// changes results, so it is part of the semantics.
fn compress(commands: Vec<BitCommand>) -> Vec<BitCommand> {
    let mut out = Vec::with_capacity(commands.len());
    let mut i = 0;
    while i < commands.len() {
        if !matches!(commands[i].op, b'+' | b'-' | b'X') {
            out.push(commands[i]);
            i += 1;
            continue;
        }
        let (mut set, mut clear, mut x) = (0, 0, 0);
        while let Some(c) = commands.get(i) {
            match c.op {
                b'-' => {
                    clear |= c.bits;
                    set &= !c.bits;
                    x &= !c.bits;
                }
                b'+' => {
                    set |= c.bits;
                    clear &= !c.bits;
                    x &= !c.bits;
                }
                b'X' => x |= c.bits & !set,
                _ => break,
            }
            i += 1;
        }
        for (op, bits) in [(b'-', clear), (b'+', set), (b'X', x)] {
            if bits != 0 {
                out.push(BitCommand { op, copy: 0, bits });
            }
        }
    }
    out
}

fn apply_symbolic(commands: &[BitCommand], old: u32, is_dir: bool) -> u32 {
    let mut mode = old;
    for c in commands {
        match c.op {
            b'u' | b'g' | b'o' => {
                let value = match c.op {
                    b'u' => (mode & IRWXU) >> 6,
                    b'g' => (mode & IRWXG) >> 3,
                    _ => mode & IRWXO,
                };
                if c.copy & COPY_CLEAR != 0 {
                    let clear = if c.copy & COPY_SET != 0 { IRWXO } else { value };
                    if c.copy & COPY_USER != 0 {
                        mode &= !((clear << 6) & c.bits);
                    }
                    if c.copy & COPY_GROUP != 0 {
                        mode &= !((clear << 3) & c.bits);
                    }
                    if c.copy & COPY_OTHER != 0 {
                        mode &= !(clear & c.bits);
                    }
                }
                if c.copy & COPY_SET != 0 {
                    if c.copy & COPY_USER != 0 {
                        mode |= (value << 6) & c.bits;
                    }
                    if c.copy & COPY_GROUP != 0 {
                        mode |= (value << 3) & c.bits;
                    }
                    if c.copy & COPY_OTHER != 0 {
                        mode |= value & c.bits;
                    }
                }
            }
            b'+' => mode |= c.bits,
            b'-' => mode &= !c.bits,
            // `X` looks at the mode before any change, as setmode(3) does.
            _ => {
                if old & ALL_X != 0 || is_dir {
                    mode |= c.bits;
                }
            }
        }
    }
    mode
}

/// Linux signal names (without `SIG`) and numbers, as in
/// `moby/sys/signal`'s `SignalMap`.
const SIGNALS: [(&str, i64); 34] = [
    ("ABRT", 6),
    ("ALRM", 14),
    ("BUS", 7),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("FPE", 8),
    ("HUP", 1),
    ("ILL", 4),
    ("INT", 2),
    ("IO", 29),
    ("IOT", 6),
    ("KILL", 9),
    ("PIPE", 13),
    ("POLL", 29),
    ("PROF", 27),
    ("PWR", 30),
    ("QUIT", 3),
    ("SEGV", 11),
    ("STKFLT", 16),
    ("STOP", 19),
    ("SYS", 31),
    ("TERM", 15),
    ("TRAP", 5),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("USR1", 10),
    ("USR2", 12),
    ("VTALRM", 26),
    ("WINCH", 28),
    ("XCPU", 24),
    ("XFSZ", 25),
];
const SIGRTMIN: i64 = 34;
const SIGRTMAX: i64 = 64;

/// Checks a STOPSIGNAL value as `moby/sys/signal.ParseSignal` does on Linux
/// and returns the signal number: a non-zero decimal number (any sign, as Go's
/// `Atoi` reads it), or a name with or without `SIG` in any case (`KILL`,
/// `sigterm`, `RTMIN+3`, `SIGRTMAX-2`).
pub fn parse_signal(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid signal: {s}");
    if let Some(number) = go_atoi(s) {
        return if number == 0 {
            Err(invalid())
        } else {
            Ok(number)
        };
    }
    // Go's strings.ToUpper maps rune by rune.
    let upper: String = s
        .chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, number)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(number);
    }
    let realtime = if name == "RTMIN" {
        Some(SIGRTMIN)
    } else if name == "RTMAX" {
        Some(SIGRTMAX)
    } else if let Some(n) = name.strip_prefix("RTMIN+") {
        small_offset(n).map(|n| SIGRTMIN + n)
    } else if let Some(n) = name.strip_prefix("RTMAX-") {
        small_offset(n).map(|n| SIGRTMAX - n)
    } else {
        None
    };
    realtime.ok_or_else(invalid)
}

/// `1` to `15` written without leading zeros (the map's `RTMIN+n` keys).
fn small_offset(s: &str) -> Option<i64> {
    if s.starts_with('0') {
        return None;
    }
    let n = go_uint32(s, 10)?;
    (1..=15).contains(&n).then_some(i64::from(n))
}

/// Go's `strconv.Atoi` on 64-bit: optional sign, decimal digits, no
/// underscores, fits in `i64`.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_accepts_go_forms() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(parse_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_duration("1.5us"), Ok(1_500));
        assert_eq!(parse_duration("2µs"), Ok(2_000));
        assert_eq!(parse_duration("2\u{3bc}s"), Ok(2_000));
        assert_eq!(parse_duration("7ns"), Ok(7));
        assert_eq!(parse_duration("+5s"), Ok(5_000_000_000));
        assert_eq!(parse_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_duration("1.s"), Ok(1_000_000_000));
        assert_eq!(parse_duration("1.5ns"), Ok(1));
        assert_eq!(parse_duration("0.0000000001s"), Ok(0));
        assert_eq!(parse_duration("-0s"), Ok(0));
        assert_eq!(
            parse_duration("2562047h47m16.854775807s"),
            Ok(i64::MAX as u64)
        );
    }

    #[test]
    fn duration_errors_match_go() {
        assert_eq!(
            parse_duration(""),
            Err(r#"time: invalid duration """#.into())
        );
        assert_eq!(
            parse_duration("1"),
            Err(r#"time: missing unit in duration "1""#.into())
        );
        assert_eq!(
            parse_duration("1x"),
            Err(r#"time: unknown unit "x" in duration "1x""#.into())
        );
        assert_eq!(
            parse_duration("."),
            Err(r#"time: invalid duration ".""#.into())
        );
        assert_eq!(
            parse_duration("-.s"),
            Err(r#"time: invalid duration "-.s""#.into())
        );
        assert_eq!(
            parse_duration("s"),
            Err(r#"time: invalid duration "s""#.into())
        );
        assert!(parse_duration("2562047h47m16.854775808s").is_err());
        assert!(parse_duration("9999999999999999999h").is_err());
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert_eq!(go_duration("-1s"), Ok(-1_000_000_000));
        assert_eq!(go_duration("-2562047h47m16.854775808s"), Ok(i64::MIN));
    }

    #[test]
    fn chmod_octal_up_to_07777() {
        assert_eq!(parse_chmod("755").unwrap().octal(), Some(0o755));
        assert_eq!(parse_chmod("0644").unwrap().octal(), Some(0o644));
        assert_eq!(parse_chmod("00007777").unwrap().octal(), Some(0o7777));
        assert_eq!(parse_chmod("0").unwrap().apply(0o100_755, false), 0o100_000);
        for bad in ["10000", "64a", "8", "99999999999999"] {
            assert_eq!(
                parse_chmod(bad),
                Err(ChmodError::NotOctal { value: bad.into() }),
                "{bad}"
            );
        }
        assert_eq!(
            parse_chmod("64a").unwrap_err().to_string(),
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
        );
    }

    #[test]
    fn chmod_symbolic_applies_per_file() {
        let m = parse_chmod("u=rwX,go=rX").unwrap();
        assert_eq!(m.octal(), None);
        assert_eq!(m.as_str(), "u=rwX,go=rX");
        assert_eq!(m.apply(0o100_600, false), 0o100_644);
        // dchapes-mode honours `X` only after `+`, so `=rwX` gives no x bit.
        assert_eq!(m.apply(0o700, false), 0o644);
        let m = parse_chmod("a=rw,a+X").unwrap();
        assert_eq!(m.apply(0o700, false), 0o777);
        assert_eq!(m.apply(0o600, false), 0o666);
        assert_eq!(m.apply(0o040_000, true), 0o040_777);
        assert_eq!(parse_chmod("+x").unwrap().apply(0o644, false), 0o755);
        let g_u = parse_chmod("g=u").unwrap();
        assert_eq!(g_u.apply(0o640, false), 0o660);
        assert_eq!(g_u.apply(0o705, false), 0o775);
        assert_eq!(parse_chmod("u+r-w").unwrap().apply(0o200, false), 0o400);
        assert_eq!(parse_chmod("a=").unwrap().apply(0o5777, false), 0o1000);
        assert_eq!(parse_chmod("+w").unwrap().apply(0o444, false), 0o666);
    }

    /// dchapes-mode's `TestApply` table (setuid 04000, setgid 02000, sticky
    /// 01000; `dir` stands for `os.ModeDir`).
    #[test]
    fn chmod_matches_the_dchapes_mode_table() {
        const DIR: u32 = 0o040_000;
        let table: &[(u32, u32, u32, &str)] = &[
            (0o777, 0o000, 0, "="),
            (0o777, 0o777, 0, "+"),
            (0o421, 0o421, 0, "+"),
            (0o777, 0o777, 0, "-"),
            (0o421, 0o421, 0, "-"),
            (0o421, 0o1421, 0, "+t"),
            (0o1421, 0o421, 0, "-t"),
            (0o000, 0o400, 0, "u+r"),
            (0o000, 0o200, 0, "u+w"),
            (0o000, 0o100, 0, "u+x"),
            (0o000, 0o000, 0, "u+X"),
            (0o001, 0o101, 0, "u+X"),
            (DIR, DIR | 0o100, 0, "u+X"),
            (0o000, 0o4000, 0, "u+s"),
            (0o000, 0o040, 0, "g+r"),
            (0o000, 0o020, 0, "g+w"),
            (0o000, 0o010, 0, "g+x"),
            (0o000, 0o000, 0, "g+X"),
            (0o100, 0o110, 0, "g+X"),
            (DIR, DIR | 0o010, 0, "g+X"),
            (0o000, 0o2000, 0, "g+s"),
            (0o000, 0o004, 0, "o+r"),
            (0o000, 0o002, 0, "o+w"),
            (0o000, 0o001, 0, "o+x"),
            (0o000, 0o000, 0, "o+X"),
            (0o100, 0o101, 0, "o+X"),
            (DIR, DIR | 0o001, 0, "o+X"),
            (0o000, 0o000, 0, "o+s"),
            (0o000, 0o421, 0, "0421"),
            (0o000, 0o7421, 0, "07421"),
            (0o000, 0o444, 0, "+r"),
            (0o000, 0o222, 0, "+w"),
            (0o000, 0o111, 0, "+x"),
            (0o000, 0o000, 0, "+X"),
            (0o010, 0o111, 0, "+X"),
            (DIR, DIR | 0o111, 0, "+X"),
            (0o000, 0o6000, 0, "+s"),
            (0o000, 0o440, 0o034, "+r"),
            (0o000, 0o220, 0o052, "+w"),
            (0o000, 0o110, 0o061, "+x"),
            (0o777, 0o333, 0, "-r"),
            (0o777, 0o555, 0, "-w"),
            (0o777, 0o666, 0, "-x"),
            (0o777, 0o777, 0, "-X"),
            (DIR | 0o777, DIR | 0o777, 0, "-X"),
            (0o6777, 0o777, 0, "-s"),
            (0o777, 0o337, 0o037, "-r"),
            (0o777, 0o557, 0o057, "-w"),
            (0o777, 0o667, 0o067, "-x"),
            (0o777, 0o377, 0, "u-r"),
            (0o777, 0o577, 0, "u-w"),
            (0o777, 0o677, 0, "u-x"),
            (0o777, 0o777, 0, "u-X"),
            (DIR | 0o777, DIR | 0o777, 0, "u-X"),
            (0o4777, 0o777, 0, "u-s"),
            (0o000, 0o600, 0, "u=rw"),
            (0o777, 0o677, 0, "u=rw"),
            (0o777, 0o077, 0, "u="),
            (0o000, 0o666, 0, "=rw"),
            (0o777, 0o666, 0, "=rw"),
            (0o042, 0o442, 0, "u=g"),
            (0o742, 0o442, 0, "u=g"),
            (0o722, 0o022, 0, "u=g-w"),
            (0o742, 0o442, 0, "u=g-w"),
            (0o762, 0o462, 0, "u=g-w"),
            (0o772, 0o572, 0, "u=g-w"),
            (0o021, 0o121, 0, "u+o"),
            (0o021, 0o221, 0, "u+g"),
            (0o021, 0o321, 0, "u+go"),
            (0o011, 0o111, 0o037, "u+uo"),
            (0o111, 0o011, 0o037, "-u"),
            (0o111, 0o011, 0o037, "-Xu"),
            (0o111, 0o011, 0o037, "-uX"),
            (0o000, 0o764, 0, "a=r,ug=rw,u+x"),
            (0o777, 0o764, 0, "a=r,ug=rw,u+x"),
            (0o000, 0o1624, 0, "o+r,g+w,a+t,g-s,u+og"),
            (0o2100, 0o1724, 0, "o+r,g+w,a+t,g-s,u+og"),
            (DIR | 0o6000, DIR | 0o5624, 0, "o+r,g+w,a+t,g-s,u+og"),
            (0o777, 0o644, 0, "644"),
            (0o777, 0o755, 0, "go-w"),
            (0o666, 0o664, 0o002, "=rw,+X"),
            (0o766, 0o775, 0o002, "=rw,+X"),
            (0o766, 0o765, 0o012, "=rw,+X"),
            (0o000, 0o755, 0, "u=rwx,go=rx"),
            (0o000, 0o755, 0, "u=rwx,go=u-w"),
            (0o777, 0o700, 0, "go="),
            (0o770, 0o755, 0, "go=u-w"),
            (0o670, 0o644, 0, "go=u-w"),
            (0o570, 0o555, 0, "go=u-w"),
            (0o370, 0o311, 0, "go=u-w"),
        ];
        for &(old, new, umask, text) in table {
            let is_dir = old & DIR != 0;
            let got = if text.starts_with(|c: char| c.is_ascii_digit()) {
                parse_chmod(text).unwrap().apply(old, is_dir)
            } else {
                let commands = parse_symbolic(text.as_bytes(), umask)
                    .unwrap_or_else(|| panic!("{text:?} should parse"));
                (old & !0o7777) | apply_symbolic(&commands, old & 0o7777, is_dir)
            };
            assert_eq!(got, new, "{text:?} with umask {umask:o} on {old:o}");
        }
    }

    #[test]
    fn chmod_symbolic_syntax_errors() {
        for bad in [
            "",
            ",",
            "q+r",
            "z",
            "u",
            "g",
            "o",
            "go",
            "9",
            "017777",
            "01000000000000000007777",
            "u+r,",
            "x",
            "u+rz",
            "+755",
            "ug",
            "a+r,,",
        ] {
            assert!(parse_chmod(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_chmod("u").unwrap_err(),
            ChmodError::Syntax { value: "u".into() }
        );
    }

    #[test]
    fn signals_by_name_number_and_realtime() {
        assert_eq!(parse_signal("SIGKILL"), Ok(9));
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("sigterm"), Ok(15));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("+9"), Ok(9));
        assert_eq!(parse_signal("-9"), Ok(-9));
        assert_eq!(parse_signal("200"), Ok(200));
        assert_eq!(parse_signal("RTMIN"), Ok(34));
        assert_eq!(parse_signal("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse_signal("rtmax-2"), Ok(62));
        assert_eq!(parse_signal("RTMAX"), Ok(64));
        for bad in [
            "0",
            "",
            "SIG",
            "SIGSIGKILL",
            "RTMIN+16",
            "RTMIN+0",
            "RTMIN+01",
            "FOO",
            "9x",
        ] {
            assert_eq!(
                parse_signal(bad),
                Err(format!("invalid signal: {bad}")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn go_bool_and_uint() {
        assert_eq!(go_bool("True"), Some(true));
        assert_eq!(go_bool("F"), Some(false));
        assert_eq!(go_bool("yes"), None);
        assert_eq!(go_uint32("0755", 8), Some(0o755));
        assert_eq!(go_uint32("8", 8), None);
        assert_eq!(go_uint32("+1", 10), None);
        assert_eq!(go_uint32("4294967296", 10), None);
    }
}
