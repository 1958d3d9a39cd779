//! Layer compression with fixed parameters, and decompression by magic.
//!
//! gzip is written by hand around `miniz_oxide`'s raw deflate (pinned to
//! one version in `Cargo.toml`), not through flate2: flate2 picks its backend
//! by cargo feature unification, so another crate enabling `zlib` would
//! silently change our bytes. Parameters: deflate level 6, 32 KiB window,
//! default strategy; the gzip header is `1f 8b 08 00 00000000 00 ff` (no
//! flags, no name, mtime 0, no extra flags, OS 255 "unknown"), byte for byte
//! what Go's `compress/gzip` (and so docker and containerd) writes.
//! zstd: level 3, single-threaded, no checksum, no dictionary, from the
//! bundled libzstd pinned in `Cargo.toml`.

use std::io::{self, BufRead, BufReader, Read, Write};

use miniz_oxide::deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress};

use super::error::ImageError;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Compression {
    /// gzip (the default; every tool reads it).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// Plain tar.
    None,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => super::oci::media_type::LAYER_GZIP,
            Compression::Zstd => super::oci::media_type::LAYER_ZSTD,
            Compression::None => super::oci::media_type::LAYER,
        }
    }

    /// The compression a layer media type names, if kiln knows it (docker's
    /// `rootfs.diff.tar.gzip` included).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        use super::oci::media_type as m;
        match media_type {
            m::LAYER_GZIP | m::DOCKER_LAYER_GZIP | m::LAYER_NONDIST_GZIP => Some(Compression::Gzip),
            m::LAYER_ZSTD | m::LAYER_NONDIST_ZSTD => Some(Compression::Zstd),
            m::LAYER | m::LAYER_NONDIST => Some(Compression::None),
            _ => None,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "uncompressed" | "none" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression `{other}` (expected gzip, zstd or uncompressed)"
            )),
        }
    }
}

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// A streaming gzip encoder with kiln's fixed parameters.
pub struct GzipEncoder<W: Write> {
    inner: W,
    deflate: Box<CompressorOxide>,
    crc: crc32fast::Hasher,
    len: u32,
    out: Vec<u8>,
}

impl<W: Write> GzipEncoder<W> {
    /// Starts a gzip stream on `inner` (the header is written at once).
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(&GZIP_HEADER)?;
        Ok(GzipEncoder {
            inner,
            deflate: Box::new(CompressorOxide::with_format_and_level(
                miniz_oxide::DataFormat::Raw,
                miniz_oxide::deflate::CompressionLevel::DefaultLevel,
            )),
            crc: crc32fast::Hasher::new(),
            len: 0,
            out: vec![0u8; 128 * 1024],
        })
    }

    fn pump(&mut self, mut input: &[u8], flush: TDEFLFlush) -> io::Result<()> {
        loop {
            let (status, consumed, produced) =
                compress(&mut self.deflate, input, &mut self.out, flush);
            self.inner.write_all(&self.out[..produced])?;
            input = &input[consumed..];
            match status {
                TDEFLStatus::Done => return Ok(()),
                TDEFLStatus::Okay => {
                    // More to do while input remains or the output buffer
                    // was filled (the compressor may hold more output).
                    if input.is_empty() && produced < self.out.len() && flush == TDEFLFlush::None {
                        return Ok(());
                    }
                }
                TDEFLStatus::BadParam | TDEFLStatus::PutBufFailed => {
                    return Err(io::Error::other(format!("deflate failed: {status:?}")));
                }
            }
        }
    }

    /// Ends the stream (deflate end, CRC-32, length) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.pump(&[], TDEFLFlush::Finish)?;
        self.inner
            .write_all(&self.crc.clone().finalize().to_le_bytes())?;
        self.inner.write_all(&self.len.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.len = self.len.wrapping_add(buf.len() as u32);
        self.pump(buf, TDEFLFlush::None)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-stream would change the bytes; only `finish` ends it.
        self.inner.flush()
    }
}

/// A writer that compresses with the given [`Compression`].
pub enum Encoder<W: Write> {
    /// gzip.
    Gzip(GzipEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// No compression.
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Starts compressing onto `inner`.
    pub fn new(inner: W, compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(GzipEncoder::new(inner)?),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, 3)?;
                e.include_checksum(false)?;
                e.include_contentsize(false)?;
                e.include_dictid(false)?;
                Encoder::Zstd(e)
            }
            Compression::None => Encoder::None(inner),
        })
    }

    /// Ends the stream and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.get_mut().flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// Detects the compression of a stream by its magic bytes.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>, ImageError> {
    let mut buffered = BufReader::with_capacity(128 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| super::digest::unwrap_io("read the layer stream", e))?;
    Ok(match detect(head) {
        // MultiGzDecoder: some tools (pigz, concatenated layers) write
        // several members.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| ImageError::stream("start zstd decoding", e))?,
        ),
        Compression::None => Box::new(buffered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_output_is_fixed_and_decodes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut e = GzipEncoder::new(Vec::new()).unwrap();
        for chunk in data.chunks(1000) {
            e.write_all(chunk).unwrap();
        }
        let out = e.finish().unwrap();
        assert_eq!(&out[..10], &GZIP_HEADER);
        let mut back = Vec::new();
        decompress(&out[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Chunking does not change the bytes.
        let mut e = GzipEncoder::new(Vec::new()).unwrap();
        e.write_all(&data).unwrap();
        assert_eq!(e.finish().unwrap(), out);
    }

    #[test]
    fn empty_streams_decode() {
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let out = Encoder::new(Vec::new(), c).unwrap().finish().unwrap();
            let mut back = Vec::new();
            decompress(&out[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back.is_empty(), "{c:?}");
        }
    }
}
