//! The syntax tree the parser produces: one [`Node`] per instruction, exactly
//! as BuildKit's `parser.Node` carries it, before any variable expansion.
//!
//! Invariants: `keyword` is lower case; `args` holds what BuildKit's `Next`
//! chain holds (for ENV and LABEL the flattened key, value, separator
//! triples); an ONBUILD node carries its trigger in `trigger` and no args.
//! Nothing here touches the filesystem.

use serde::Serialize;

/// A 1-based, inclusive range of physical source lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// First line of the instruction (its keyword).
    pub start: usize,
    /// Last line, including continuation and heredoc lines.
    pub end: usize,
}

/// A parsed Dockerfile: its parser directives and its instructions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ast {
    /// Directives found at the top of the file.
    pub directives: Directives,
    /// The instructions in file order.
    pub nodes: Vec<Node>,
    /// Things BuildKit accepts with a warning (for example empty lines
    /// inside a continuation).
    pub warnings: Vec<Warning>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Directives {
    /// `# syntax=`: recorded, never fetched (kiln bundles one front end).
    pub syntax: Option<String>,
    /// The escape character, `\` unless `# escape=` says `` ` ``.
    pub escape: char,
    /// `# check=` as written.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A warning BuildKit would print; the build goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// BuildKit's rule name, e.g. `NoEmptyContinuation`.
    pub rule: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Where it applies.
    pub span: Span,
}

/// One instruction as the parser sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The keyword, lower-cased (`run`, `copy`, ...).
    pub keyword: String,
    /// `--flag[=value]` words before the arguments, as written.
    pub flags: Vec<String>,
    /// The arguments (see the module docs for what they are per keyword).
    pub args: Vec<String>,
    /// True when the arguments came from a JSON array (exec form).
    pub json: bool,
    /// The logical line after joining continuations, keyword included.
    pub original: String,
    /// Heredoc bodies that follow the line, in the order they were opened.
    pub heredocs: Vec<Heredoc>,
    /// The instruction inside `ONBUILD`.
    pub trigger: Option<Box<Node>>,
    /// The source lines this instruction covers.
    pub span: Span,
}

/// A here-document attached to a RUN, COPY or ADD line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF`).
    pub name: String,
    /// The body exactly as read: every line with its newline, tabs kept even
    /// for `<<-` (see [`Heredoc::body`]).
    pub content: String,
    /// False when any part of the delimiter was quoted: no expansion.
    pub expand: bool,
    /// `<<-`: strip leading tabs from the body lines.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 if none.
    pub fd: u32,
}

impl Heredoc {
    /// The body as the instruction uses it: leading tabs removed from each
    /// line when the heredoc was opened with `<<-`.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

impl Node {
    /// BuildKit's s-expression dump of this node (the `result` files of its
    /// parser tests), without a trailing newline.
    pub fn dump(&self) -> String {
        let mut out = self.keyword.clone();
        if !self.flags.is_empty() {
            out.push_str(" [");
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            out.push_str(&quoted.join(" "));
            out.push(']');
        }
        if let Some(trigger) = &self.trigger {
            out.push_str(" (");
            out.push_str(&trigger.dump());
            out.push(')');
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        out.trim().to_string()
    }
}

impl Ast {
    /// The whole tree in BuildKit's dump format, one `(...)` line per
    /// instruction, ending in a newline.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push('(');
            out.push_str(&node.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// Quotes a string the way Go's `strconv.Quote` does, so that dumps compare
/// byte for byte with BuildKit's.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `strconv.IsPrint` without Unicode tables: ASCII
/// space and graphic characters are printable; controls, non-ASCII spaces,
/// the common format characters and private-use code points are not.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb);
    let private = matches!(u, 0xe000..=0xf8ff | 0xf0000..=0x10ffff);
    let nonchar = (u & 0xfffe) == 0xfffe || (0xfdd0..=0xfdef).contains(&u);
    !(format || private || nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{8}\u{c}\n\r\t"), r#""\x00\b\f\n\r\t""#);
        assert_eq!(go_quote("♥☃"), "\"♥☃\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
    }

    #[test]
    fn chomped_heredoc_body_loses_leading_tabs_only() {
        let doc = Heredoc {
            name: "EOF".into(),
            content: "\t\tone\n  two\n\tthree\n".into(),
            expand: true,
            chomp: true,
            fd: 0,
        };
        assert_eq!(doc.body(), "one\n  two\nthree\n");
    }
}
