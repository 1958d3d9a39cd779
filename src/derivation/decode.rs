//! Reading an encoding back into its fields, for `kiln diff --plan`: the
//! inverse of [`super::Encoder`], for any `kiln-drv-v1` derivation.
//! Pure: bytes in, fields out.

/// A field's value: a text, or a list of items (each item one or more
/// texts: a list entry, a pair, a record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `name LEN:text`.
    Text(String),
    /// `name [N]` followed by N `- LEN:a LEN:b ...` lines.
    Items(Vec<Vec<String>>),
}

/// A decoded derivation: its kind and fields in encoding order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// `step` or `stage`.
    pub kind: String,
    /// The fields after `kind`.
    pub fields: Vec<(String, Value)>,
}

impl Decoded {
    /// A text field.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.iter().find_map(|(n, v)| match v {
            Value::Text(t) if n == name => Some(t.as_str()),
            _ => None,
        })
    }

    /// A list field (empty when absent).
    pub fn items(&self, name: &str) -> &[Vec<String>] {
        self.fields
            .iter()
            .find_map(|(n, v)| match v {
                Value::Items(i) if n == name => Some(i.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.bytes.get(self.pos) == Some(&b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", b.escape_ascii())))
        }
    }

    fn until(&mut self, stop: u8) -> Result<&str, String> {
        let start = self.pos;
        let len = self.bytes[start..]
            .iter()
            .position(|&b| b == stop)
            .ok_or_else(|| self.error(&format!("missing `{}`", stop.escape_ascii())))?;
        self.pos = start + len + 1;
        std::str::from_utf8(&self.bytes[start..start + len])
            .map_err(|_| self.error("invalid UTF-8"))
    }

    fn netstring(&mut self) -> Result<String, String> {
        let len: usize = self
            .until(b':')?
            .parse()
            .map_err(|_| self.error("bad length"))?;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.error("length past the end"))?;
        let text = std::str::from_utf8(&self.bytes[self.pos..end])
            .map_err(|_| self.error("invalid UTF-8"))?
            .to_owned();
        self.pos = end;
        Ok(text)
    }
}

/// Decodes a `kiln-drv-v1` encoding.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.until(b'\n')?;
    if version != super::VERSION {
        return Err(format!(
            "version tag `{version}`, expected `{}`",
            super::VERSION
        ));
    }
    let mut kind = None;
    let mut fields = Vec::new();
    while r.pos < bytes.len() {
        let name = r.until(b' ')?.to_owned();
        if bytes.get(r.pos) == Some(&b'[') {
            r.pos += 1;
            let n: usize = r.until(b']')?.parse().map_err(|_| r.error("bad count"))?;
            r.expect(b'\n')?;
            let mut items = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                r.expect(b'-')?;
                let mut item = Vec::new();
                while bytes.get(r.pos) == Some(&b' ') {
                    r.pos += 1;
                    item.push(r.netstring()?);
                }
                r.expect(b'\n')?;
                items.push(item);
            }
            fields.push((name, Value::Items(items)));
        } else {
            let text = r.netstring()?;
            r.expect(b'\n')?;
            if name == "kind" && kind.is_none() {
                kind = Some(text);
            } else {
                fields.push((name, Value::Text(text)));
            }
        }
    }
    Ok(Decoded {
        kind: kind.ok_or("no `kind` field")?,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derivation::{Encoder, Kind};

    #[test]
    fn decode_inverts_the_encoder_even_with_newlines_in_values() {
        let mut enc = Encoder::new(Kind::Step);
        enc.text("parent", "sha256:abc")
            .text("instruction", "RUN a\nb")
            .pairs("env", &[("A", "1 2:x\n")])
            .list("shell", &["/bin/sh", "-c"])
            .records("inputs", &[vec!["context", "a b", "644"]]);
        let drv = enc.finish("t");
        let d = decode(&drv.bytes).unwrap();
        assert_eq!(d.kind, "step");
        assert_eq!(d.text("instruction"), Some("RUN a\nb"));
        assert_eq!(d.items("env"), [vec!["A".to_owned(), "1 2:x\n".to_owned()]]);
        assert_eq!(d.items("shell").len(), 2);
        assert_eq!(d.items("inputs")[0][1], "a b");
        assert!(decode(b"kiln-drv-v0\nkind 4:step\n").is_err());
        assert!(decode(b"kiln-drv-v1\nkind 40:step\n").is_err());
    }
}
