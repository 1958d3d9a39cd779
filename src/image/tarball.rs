//! The tar format, by hand: a header writer that emits exactly one fixed form,
//! and a bounded reader for untrusted streams.
//!
//! Written form (POSIX ustar + pax, what Go's `archive/tar` and BuildKit
//! emit for the common case): magic `ustar\0`, version `00`; numeric fields
//! zero-padded octal ending in NUL; `uname`/`gname` empty; `prefix` never
//! used. A pax `x` record (named `././@PaxHeader`, mode 0644, uid/gid/mtime 0)
//! precedes an entry only when a value does not fit ustar: a name or link
//! over 100 bytes, ids over 0o7777777, size or mtime over 0o77777777777, or
//! any xattr (`SCHILY.xattr.NAME`). Its records are sorted by key bytes. The
//! archive ends with two zero blocks and no record padding.
//!
//! The reader accepts ustar, pax (`x`; global `g` records are ignored) and
//! GNU long names (`L`/`K`), octal and base-256 numbers; metadata records are
//! capped at [`MAX_META`] bytes so a hostile archive cannot make it allocate
//! without bound.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::error::ImageError;

/// Largest pax or GNU long-name record the reader accepts.
pub const MAX_META: u64 = 1 << 20;
/// Longest path the reader accepts (Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

const BLOCK: usize = 512;
const OCTAL7_MAX: u64 = 0o7777777;
const OCTAL11_MAX: u64 = 0o77777777777;

/// Tar type flags.
pub mod typeflag {
    /// Regular file.
    pub const FILE: u8 = b'0';
    /// Hard link.
    pub const HARDLINK: u8 = b'1';
    /// Symbolic link.
    pub const SYMLINK: u8 = b'2';
    /// Character device.
    pub const CHAR: u8 = b'3';
    /// Block device.
    pub const BLOCK: u8 = b'4';
    /// Directory.
    pub const DIR: u8 = b'5';
    /// FIFO.
    pub const FIFO: u8 = b'6';
}

/// The metadata of one entry, as written or as read (after pax and GNU
/// long-name records are applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarHeader {
    /// The path as stored (directories end with `/` when written by kiln).
    pub name: Vec<u8>,
    /// The type flag (see [`typeflag`]).
    pub typeflag: u8,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Content size (0 for everything but regular files).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Symlink target or hard-link target path.
    pub linkname: Vec<u8>,
    /// Device major number.
    pub devmajor: u32,
    /// Device minor number.
    pub devminor: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "%d %s=%s\n" where %d counts the whole record, itself included.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len += 1;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn ustar_block(h: &TarHeader) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put_bytes(&mut b[0..100], &h.name);
    put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    put_octal(&mut b[108..116], h.uid.min(OCTAL7_MAX));
    put_octal(&mut b[116..124], h.gid.min(OCTAL7_MAX));
    put_octal(&mut b[124..136], h.size.min(OCTAL11_MAX));
    put_octal(&mut b[136..148], h.mtime.min(OCTAL11_MAX));
    b[156] = h.typeflag;
    put_bytes(&mut b[157..257], &h.linkname);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    put_octal(&mut b[329..337], u64::from(h.devmajor).min(OCTAL7_MAX));
    put_octal(&mut b[337..345], u64::from(h.devminor).min(OCTAL7_MAX));
    // The checksum is computed with its own field as eight spaces, then
    // stored as six octal digits, NUL, space (the historical form).
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let text = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(text.as_bytes());
    b
}

/// Writes `h` (preceded by a pax record when needed). The caller writes
/// `h.size` content bytes and then [`write_padding`].
pub fn write_header(w: &mut impl Write, h: &TarHeader) -> io::Result<()> {
    let mut pax: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    if h.name.len() > 100 {
        pax.insert("path", h.name.clone());
    }
    if h.linkname.len() > 100 {
        pax.insert("linkpath", h.linkname.clone());
    }
    if h.uid > OCTAL7_MAX {
        pax.insert("uid", h.uid.to_string().into_bytes());
    }
    if h.gid > OCTAL7_MAX {
        pax.insert("gid", h.gid.to_string().into_bytes());
    }
    if h.size > OCTAL11_MAX {
        pax.insert("size", h.size.to_string().into_bytes());
    }
    if h.mtime > OCTAL11_MAX {
        pax.insert("mtime", h.mtime.to_string().into_bytes());
    }
    let xattr_keys: Vec<String> = h
        .xattrs
        .keys()
        .map(|k| format!("SCHILY.xattr.{k}"))
        .collect();
    let mut records = Vec::new();
    // Merge the two sorted sources so all keys come out in byte order.
    let mut all: Vec<(&str, &[u8])> = pax.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    for (key, value) in xattr_keys.iter().zip(h.xattrs.values()) {
        all.push((key.as_str(), value.as_slice()));
    }
    all.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (k, v) in &all {
        pax_record(&mut records, k, v);
    }
    if !records.is_empty() {
        let block = ustar_block(&pax_header(records.len() as u64));
        w.write_all(&block)?;
        w.write_all(&records)?;
        write_padding(w, records.len() as u64)?;
    }
    w.write_all(&ustar_block(h))
}

fn pax_header(size: u64) -> TarHeader {
    TarHeader {
        name: b"././@PaxHeader".to_vec(),
        typeflag: b'x',
        mode: 0o644,
        size,
        ..TarHeader::default()
    }
}

/// Pads content of `size` bytes to the next 512-byte boundary.
pub fn write_padding(w: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// Writes the end-of-archive marker: two zero blocks.
pub fn write_end(w: &mut impl Write) -> io::Result<()> {
    w.write_all(&[0u8; 2 * BLOCK])
}

/// A byte source the reader can skip over: seeking for files, reading and
/// discarding for streams.
pub trait Skip: Read {
    /// Skips `n` bytes.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

/// Wraps any reader; skipping reads and discards.
pub struct Stream<R>(pub R);

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Skip for Stream<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if copied != n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Wraps a seekable reader; skipping seeks.
pub struct Seekable<R>(pub R);

impl<R: Read> Read for Seekable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read + Seek> Skip for Seekable<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.0.seek(SeekFrom::Current(n)).map(|_| ())
    }
}

impl<R: Seek> Seekable<R> {
    /// The current offset.
    pub fn position(&mut self) -> io::Result<u64> {
        self.0.stream_position()
    }
}

/// Reads a tar stream entry by entry.
pub struct TarReader<R> {
    inner: R,
    /// Content bytes of the current entry not yet consumed, then its padding.
    remaining: u64,
    padding: u64,
    index: u64,
    done: bool,
}

fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // base-256: two's complement big-endian; we accept only non-negative
        // values that fit u64.
        if field[0] & 0x40 != 0 {
            return None;
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&text).ok()?;
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn display(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl<R: Skip> TarReader<R> {
    /// Reads from `inner`.
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            index: 0,
            done: false,
        }
    }

    /// The inner reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn skip_rest(&mut self) -> Result<(), ImageError> {
        let n = self.remaining + self.padding;
        if n > 0 {
            self.inner
                .skip(n)
                .map_err(|e| ImageError::stream("skip tar content", e))?;
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, ImageError> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(ImageError::InvalidTar {
                        entry: format!("#{}", self.index),
                        reason: "archive ends inside a header".into(),
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(super::digest::unwrap_io("read the tar stream", e)),
            }
        }
        Ok(true)
    }

    fn read_meta(&mut self, size: u64, entry: &str) -> Result<Vec<u8>, ImageError> {
        if size > MAX_META {
            return Err(ImageError::HeaderTooLarge {
                entry: entry.to_owned(),
                size,
                limit: MAX_META,
            });
        }
        let mut data = vec![0u8; size as usize];
        self.inner
            .read_exact(&mut data)
            .map_err(|e| super::digest::unwrap_io("read a tar metadata record", e))?;
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.inner
            .skip(pad)
            .map_err(|e| ImageError::stream("skip tar padding", e))?;
        Ok(data)
    }

    /// The next entry's header, or `None` at the end of the archive. Any
    /// unread content of the previous entry is skipped.
    pub fn next_header(&mut self) -> Result<Option<TarHeader>, ImageError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let entry_id = format!("#{}", self.index);
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? || block.iter().all(|&b| b == 0) {
                // A zero block (or a clean EOF) ends the archive; we do not
                // require the second zero block.
                self.done = true;
                return Ok(None);
            }
            let stored: u64 =
                parse_number(&block[148..156]).ok_or_else(|| ImageError::InvalidTar {
                    entry: entry_id.clone(),
                    reason: "unreadable checksum".into(),
                })?;
            let mut sum: u64 = 0;
            for (i, &b) in block.iter().enumerate() {
                sum += if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                };
            }
            if sum != stored {
                return Err(ImageError::InvalidTar {
                    entry: entry_id,
                    reason: "header checksum mismatch".into(),
                });
            }
            let mut name = cstr(&block[0..100]).to_vec();
            let is_ustar = &block[257..263] == b"ustar\0";
            if is_ustar {
                let prefix = cstr(&block[345..500]);
                if !prefix.is_empty() {
                    let mut full = prefix.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(&name);
                    name = full;
                }
            }
            let label = display(long_name.as_deref().unwrap_or(&name));
            let number = |range: std::ops::Range<usize>, what: &str| {
                parse_number(&block[range]).ok_or_else(|| ImageError::InvalidTar {
                    entry: label.clone(),
                    reason: format!("unreadable {what} field"),
                })
            };
            let size = number(124..136, "size")?;
            let typeflag = block[156];
            match typeflag {
                b'x' => {
                    let data = self.read_meta(size, &label)?;
                    parse_pax(&data, &mut pax, &label)?;
                    self.index += 1;
                    continue;
                }
                b'g' => {
                    // Global pax records: read (bounded) and ignored.
                    self.read_meta(size, &label)?;
                    self.index += 1;
                    continue;
                }
                b'L' | b'K' => {
                    let data = self.read_meta(size, &label)?;
                    let value = cstr(&data).to_vec();
                    if typeflag == b'L' {
                        long_name = Some(value);
                    } else {
                        long_link = Some(value);
                    }
                    self.index += 1;
                    continue;
                }
                _ => {}
            }
            let mut h = TarHeader {
                name,
                typeflag: if typeflag == 0 || typeflag == b'7' {
                    typeflag::FILE
                } else {
                    typeflag
                },
                mode: (number(100..108, "mode")? & 0o7777) as u32,
                uid: number(108..116, "uid")?,
                gid: number(116..124, "gid")?,
                size,
                mtime: number(136..148, "mtime")?,
                linkname: cstr(&block[157..257]).to_vec(),
                devmajor: number(329..337, "devmajor")? as u32,
                devminor: number(337..345, "devminor")? as u32,
                xattrs: BTreeMap::new(),
            };
            if let Some(n) = long_name.take() {
                h.name = n;
            }
            if let Some(l) = long_link.take() {
                h.linkname = l;
            }
            for (key, value) in pax {
                let num = |v: &[u8]| -> Result<u64, ImageError> {
                    let text = String::from_utf8_lossy(v);
                    // mtime may carry a fraction; keep whole seconds.
                    let whole = text.split('.').next().unwrap_or("");
                    whole.parse().map_err(|_| ImageError::InvalidTar {
                        entry: display(&h.name),
                        reason: format!("invalid pax value for {key}"),
                    })
                };
                match key.as_str() {
                    "path" => h.name = value,
                    "linkpath" => h.linkname = value,
                    "size" => h.size = num(&value)?,
                    "uid" => h.uid = num(&value)?,
                    "gid" => h.gid = num(&value)?,
                    "mtime" => {
                        h.mtime = if value.starts_with(b"-") {
                            0
                        } else {
                            num(&value)?
                        }
                    }
                    k if k.starts_with("SCHILY.xattr.") => {
                        h.xattrs
                            .insert(k["SCHILY.xattr.".len()..].to_owned(), value);
                    }
                    k if k.starts_with("GNU.sparse") => {
                        return Err(ImageError::InvalidTar {
                            entry: display(&h.name),
                            reason: "sparse files are not supported".into(),
                        });
                    }
                    _ => {}
                }
            }
            if h.name.len() > MAX_PATH || h.linkname.len() > MAX_PATH {
                return Err(ImageError::HeaderTooLarge {
                    entry: display(&h.name[..h.name.len().min(200)]),
                    size: h.name.len().max(h.linkname.len()) as u64,
                    limit: MAX_PATH as u64,
                });
            }
            match h.typeflag {
                typeflag::FILE => {}
                typeflag::HARDLINK
                | typeflag::SYMLINK
                | typeflag::CHAR
                | typeflag::BLOCK
                | typeflag::DIR
                | typeflag::FIFO => {
                    // These carry no content we use; a size on them (some
                    // writers give hard links one) is skipped.
                }
                b'S' => {
                    return Err(ImageError::InvalidTar {
                        entry: display(&h.name),
                        reason: "sparse files are not supported".into(),
                    });
                }
                other => {
                    return Err(ImageError::InvalidTar {
                        entry: display(&h.name),
                        reason: format!("unsupported entry type `{}`", other.escape_ascii()),
                    });
                }
            }
            self.remaining = h.size;
            self.padding = (BLOCK as u64 - h.size % BLOCK as u64) % BLOCK as u64;
            self.index += 1;
            return Ok(Some(h));
        }
    }

    /// Reads the current entry's content (up to its size).
    pub fn content(&mut self) -> ContentReader<'_, R> {
        ContentReader { tar: self }
    }
}

/// The content of the current entry; reading past its end returns 0.
pub struct ContentReader<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Skip> Read for ContentReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tar.remaining == 0 {
            return Ok(0);
        }
        let max = (buf.len() as u64).min(self.tar.remaining) as usize;
        let n = self.tar.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

fn parse_pax(
    data: &[u8],
    out: &mut BTreeMap<String, Vec<u8>>,
    entry: &str,
) -> Result<(), ImageError> {
    let bad = |why: &str| ImageError::InvalidTar {
        entry: entry.to_owned(),
        reason: format!("malformed pax record: {why}"),
    };
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad length"))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("length out of range"));
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no `=`"))?;
        let key = String::from_utf8(record[..eq].to_vec()).map_err(|_| bad("key is not UTF-8"))?;
        out.insert(key, record[eq + 1..].to_vec());
        rest = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, "path", &[b'a'; 93]);
        assert!(out.starts_with(b"103 path="));
        assert_eq!(out.len(), 103);
        let mut out = Vec::new();
        pax_record(&mut out, "uid", b"1");
        assert_eq!(out, b"8 uid=1\n");
    }

    #[test]
    fn headers_round_trip_including_pax() {
        let mut xattrs = BTreeMap::new();
        xattrs.insert("security.capability".to_owned(), vec![1, 0, 2]);
        xattrs.insert("user.a".to_owned(), b"x".to_vec());
        let long = [b'd'; 150].to_vec();
        let h = TarHeader {
            name: long.clone(),
            typeflag: typeflag::FILE,
            mode: 0o4755,
            uid: 5_000_000,
            gid: 7,
            size: 3,
            mtime: 42,
            linkname: Vec::new(),
            devmajor: 0,
            devminor: 0,
            xattrs,
        };
        let mut buf = Vec::new();
        write_header(&mut buf, &h).unwrap();
        buf.extend_from_slice(b"abc");
        write_padding(&mut buf, 3).unwrap();
        write_end(&mut buf).unwrap();
        let mut r = TarReader::new(Stream(&buf[..]));
        let got = r.next_header().unwrap().unwrap();
        assert_eq!(got, h);
        let mut content = Vec::new();
        r.content().read_to_end(&mut content).unwrap();
        assert_eq!(content, b"abc");
        assert!(r.next_header().unwrap().is_none());
        // The same input reads the same with the tar crate.
        let mut ar = tar::Archive::new(&buf[..]);
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), &long[..]);
        assert_eq!(e.header().mode().unwrap(), 0o4755);
    }

    #[test]
    fn oversized_pax_header_is_rejected() {
        let block = ustar_block(&pax_header(1 << 30));
        let mut buf = block.to_vec();
        buf.extend_from_slice(&[0u8; 4096]);
        let mut r = TarReader::new(Stream(&buf[..]));
        assert!(matches!(
            r.next_header(),
            Err(ImageError::HeaderTooLarge { .. })
        ));
    }
}
