//! Text to [`Ast`]: parser directives, comments, line continuations,
//! heredocs, flags, and the per-keyword argument shapes, as BuildKit's
//! `frontend/dockerfile/parser` does it (the conformance files in
//! `shared/conformance/buildkit-parser` pin the behaviour).
//!
//! This layer knows which keywords exist only to pick an argument shape; it
//! accepts unknown keywords and unknown flags, which the instruction layer
//! ([`super::instruction`]) rejects with the line they are on. It never
//! panics, whatever bytes come in.

use super::ast::{Ast, Directives, Heredoc, Node, Span, Warning};
use super::error::ParseError;
use super::expand::{Lexer, NoEnv};

/// BuildKit refuses physical lines this long or longer (bufio's limit).
const MAX_LINE: usize = 64 * 1024;

/// Parses a whole Dockerfile.
pub fn parse(input: &[u8]) -> Result<Ast, ParseError> {
    let text = decode(input)?;
    let lines = split_lines(text);
    let mut directives = DirectiveScanner::default();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;

    while i < lines.len() {
        let line_no = i + 1;
        let raw = lines[i];
        if raw.len() > MAX_LINE {
            return Err(ParseError::at(
                line_no,
                format!(
                    "dockerfile line greater than max allowed size of {}",
                    MAX_LINE - 1
                ),
            ));
        }
        i += 1;
        let stripped = trim_newline(raw).trim_start_matches(is_go_space);
        directives.scan(stripped, line_no)?;
        let content = if is_comment(stripped) { "" } else { stripped };
        let (first, mut ended) = trim_continuation(content, directives.escape);
        if ended && first.is_empty() {
            continue;
        }

        let start = line_no;
        let mut logical = first.to_string();
        let mut empty_continuation = false;
        while !ended && i < lines.len() {
            let raw = lines[i];
            if raw.len() > MAX_LINE {
                return Err(ParseError::at(
                    i + 1,
                    format!(
                        "dockerfile line greater than max allowed size of {}",
                        MAX_LINE - 1
                    ),
                ));
            }
            i += 1;
            let line = trim_newline(raw);
            if is_comment(line) {
                continue;
            }
            if line.trim_start_matches(is_go_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (joined, end) = trim_continuation(line, directives.escape);
            logical.push_str(joined);
            ended = end;
        }
        let mut end = i;
        if empty_continuation {
            warnings.push(Warning {
                rule: "NoEmptyContinuation",
                message: "empty continuation lines will become errors in a future release".into(),
                span: Span { start, end },
            });
        }

        let mut node = node_from_line(&logical, directives.escape, start)?;
        if can_contain_heredoc(&node) && logical.contains("<<") {
            for mut doc in heredocs_in_line(&logical, start)? {
                let mut terminated = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::at(
                        start,
                        format!("unterminated heredoc `{}`", doc.name),
                    )
                    .with_hint(format!(
                        "end the here-document with a line that is exactly `{}`",
                        doc.name
                    )));
                }
                node.heredocs.push(doc);
            }
            end = i;
        }
        node.span = Span { start, end };
        if let Some(trigger) = &mut node.trigger {
            trigger.span = node.span;
        }
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(
            ParseError::at(lines.len().max(1), "file with no instructions")
                .with_hint("a Dockerfile needs at least a `FROM` instruction"),
        );
    }
    Ok(Ast {
        directives: directives.into_directives(),
        nodes,
        warnings,
    })
}

/// Checks the input is UTF-8 and drops a byte-order mark.
fn decode(input: &[u8]) -> Result<&str, ParseError> {
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    std::str::from_utf8(input).map_err(|e| {
        let before = &input[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        ParseError::Syntax {
            line,
            col,
            message: "the Dockerfile is not valid UTF-8".into(),
            hint: Some("kiln reads Dockerfiles as UTF-8 text; re-encode the file".into()),
        }
    })
}

/// Physical lines, each with its `\n` (the last one may lack it).
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Removes trailing `\r` and `\n` characters (Go's `bytes.TrimRight(s, "\r\n")`).
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Go's `unicode.IsSpace`, which agrees with Rust's White_Space property.
fn is_go_space(c: char) -> bool {
    c.is_whitespace()
}

/// The whitespace BuildKit's `reWhitespace` splits on: `[\t\v\f\r ]+`.
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn is_comment(line: &str) -> bool {
    trim_newline(line)
        .trim_start_matches(is_go_space)
        .starts_with('#')
}

/// BuildKit's continuation rule: the escape character at the end of the line,
/// optionally followed by spaces and tabs, and not itself escaped (a line that
/// is only the escape character also continues). Returns the line without it
/// and whether the logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() || !before.ends_with(escape) {
        (before, false)
    } else {
        (line, true)
    }
}

/// Recognises parser directives while they may still appear.
#[derive(Default)]
struct DirectiveScanner {
    done: bool,
    syntax: Option<String>,
    escape: char,
    escape_seen: bool,
    check: Option<String>,
}

impl DirectiveScanner {
    /// Looks at one physical line (leading whitespace already removed).
    fn scan(&mut self, line: &str, line_no: usize) -> Result<(), ParseError> {
        if self.escape == '\0' {
            self.escape = '\\';
        }
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive_of(trim_newline(line)) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        let slot_seen = match key.as_str() {
            "syntax" => self.syntax.is_some(),
            "escape" => self.escape_seen,
            "check" => self.check.is_some(),
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if slot_seen {
            return Err(ParseError::at(
                line_no,
                format!("only one {key} parser directive can be used"),
            ));
        }
        match key.as_str() {
            "syntax" => self.syntax = Some(value.to_string()),
            "check" => self.check = Some(value.to_string()),
            _ => {
                if value != "\\" && value != "`" {
                    return Err(ParseError::at(
                        line_no,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ));
                }
                self.escape_seen = true;
                self.escape = value.chars().next().unwrap_or('\\');
            }
        }
        Ok(())
    }

    fn into_directives(self) -> Directives {
        Directives {
            syntax: self.syntax,
            escape: if self.escape == '\0' {
                '\\'
            } else {
                self.escape
            },
            check: self.check,
        }
    }
}

/// Matches `^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$`.
fn directive_of(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = rest.trim_matches([' ', '\t']);
    if value.is_empty() || value.contains('\n') {
        return None;
    }
    Some((key, value))
}

/// Builds the node for one logical line.
fn node_from_line(line: &str, escape: char, line_no: usize) -> Result<Node, ParseError> {
    let trimmed = line.trim_matches(is_go_space);
    let (keyword, rest) = match trimmed.find(is_split_space) {
        Some(at) => (
            &trimmed[..at],
            trimmed[at..].trim_start_matches(is_split_space),
        ),
        None => (trimmed, ""),
    };
    let (rest, flags) = extract_flags(rest);
    let rest = rest.trim_matches(is_go_space);
    let keyword_lower = keyword.to_ascii_lowercase();
    let mut node = Node {
        keyword: keyword_lower.clone(),
        flags,
        args: Vec::new(),
        json: false,
        original: line.to_string(),
        heredocs: Vec::new(),
        trigger: None,
        span: Span {
            start: line_no,
            end: line_no,
        },
    };
    match keyword_lower.as_str() {
        "add" | "copy" | "volume" => {
            (node.args, node.json) = maybe_json_list(rest, line_no)?;
        }
        "cmd" | "entrypoint" | "run" | "shell" => {
            (node.args, node.json) = maybe_json(rest, line_no)?;
        }
        "arg" => node.args = words(rest, escape),
        "env" => node.args = name_values(rest, "ENV", escape, line_no)?,
        "label" => node.args = name_values(rest, "LABEL", escape, line_no)?,
        "expose" | "from" => node.args = whitespace_words(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest.to_string()];
        }
        "healthcheck" => {
            let sep = rest.find(is_go_space).unwrap_or(rest.len());
            if sep > 0 {
                let cmd = rest[sep..].trim_start_matches(is_go_space);
                let (args, json) = maybe_json(cmd, line_no)?;
                node.args.push(rest[..sep].to_string());
                node.args.extend(args);
                node.json = json;
            }
        }
        "onbuild" if !rest.is_empty() => {
            node.trigger = Some(Box::new(node_from_line(rest, escape, line_no)?));
        }
        _ => {}
    }
    Ok(node)
}

/// Splits `--flag` words off the front of the arguments, as BuildKit's
/// `extractBuilderFlags` does (quotes and backslashes inside flags are
/// processed; a lone `--` ends the flags and is dropped).
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(u8),
    }
    let bytes = line.as_bytes();
    let mut flags = Vec::new();
    let mut word: Vec<u8> = Vec::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut pos = 0;
    let finish = |word: &mut Vec<u8>| String::from_utf8_lossy(&std::mem::take(word)).into_owned();
    loop {
        if phase == Phase::Spaces {
            if pos == bytes.len() {
                break;
            }
            let ch = bytes[pos];
            if ch.is_ascii_whitespace() || ch == b'\x0b' {
                pos += 1;
                continue;
            }
            if ch != b'-' || bytes.get(pos + 1) != Some(&b'-') {
                return (&line[pos..], flags);
            }
            phase = Phase::Word;
        }
        if pos == bytes.len() {
            if word != b"--" && (blank_ok || !word.is_empty()) {
                flags.push(finish(&mut word));
            }
            break;
        }
        let ch = bytes[pos];
        match phase {
            Phase::Word => {
                if ch.is_ascii_whitespace() || ch == b'\x0b' {
                    phase = Phase::Spaces;
                    if word == b"--" {
                        return (&line[pos..], flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(finish(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == b'\'' || ch == b'"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == b'\\' {
                    if pos + 1 < bytes.len() {
                        pos += 1;
                        word.push(bytes[pos]);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == b'\\' {
                    if pos + 1 == bytes.len() {
                        phase = Phase::Word;
                    } else {
                        pos += 1;
                        word.push(bytes[pos]);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        pos += 1;
    }
    ("", flags)
}

/// `parseJSON`: `Ok(Some)` for a JSON array of strings, `Ok(None)` when the
/// text is not JSON (the caller falls back), an error for valid JSON that is
/// not an array of strings.
fn json_strings(rest: &str, line_no: usize) -> Result<Option<Vec<String>>, ParseError> {
    let rest = rest.trim_start_matches(is_go_space);
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                ParseError::at(line_no, "dockerfile JSON array must contain only strings")
                    .with_hint(
                        "write each element as a double-quoted string, e.g. `[\"echo\", \"hi\"]`",
                    ),
            ),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn maybe_json(rest: &str, line_no: usize) -> Result<(Vec<String>, bool), ParseError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match json_strings(rest, line_no)? {
        Some(list) => (list, true),
        None => (vec![rest.to_string()], false),
    })
}

fn maybe_json_list(rest: &str, line_no: usize) -> Result<(Vec<String>, bool), ParseError> {
    Ok(match json_strings(rest, line_no)? {
        Some(list) => (list, true),
        None => (whitespace_words(rest), false),
    })
}

fn whitespace_words(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_split_space)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// BuildKit's `parseWords`: splits on whitespace, keeping quotes and escape
/// characters in the words (they are removed later, at expansion).
fn words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut pos = 0;
    loop {
        if phase == Phase::Spaces {
            if pos == chars.len() {
                break;
            }
            if is_go_space(chars[pos]) {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if pos == chars.len() {
            if blank_ok || !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            break;
        }
        let mut ch = chars[pos];
        match phase {
            Phase::Word => {
                if is_go_space(ch) {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    pos += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if pos + 1 == chars.len() {
                        pos += 1;
                        continue;
                    }
                    word.push(ch);
                    pos += 1;
                    ch = chars[pos];
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    if pos + 1 == chars.len() {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    word.push(ch);
                    pos += 1;
                    ch = chars[pos];
                }
                word.push(ch);
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        pos += 1;
    }
    out
}

/// ENV and LABEL: `k=v k2=v2` or the legacy `k rest of line`, flattened into
/// (key, value, separator) triples.
fn name_values(
    rest: &str,
    keyword: &str,
    escape: char,
    line_no: usize,
) -> Result<Vec<String>, ParseError> {
    let all = words(rest, escape);
    let Some(first) = all.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(at) = rest.find(is_split_space) else {
            return Err(
                ParseError::at(line_no, format!("{keyword} must have two arguments"))
                    .with_hint(format!("write `{keyword} {rest}=value`")),
            );
        };
        let value = rest[at..].trim_start_matches(is_split_space);
        return Ok(vec![
            rest[..at].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::with_capacity(all.len() * 3);
    for word in all {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ParseError::at(
                line_no,
                format!(
                    "syntax error - can't find = in \"{word}\". Must be of the form: name=value"
                ),
            ));
        };
        out.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(out)
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = match &node.trigger {
        Some(trigger) if node.keyword == "onbuild" => trigger,
        _ => node,
    };
    matches!(node.keyword.as_str(), "add" | "copy" | "run") && !node.json
}

/// The heredocs a line opens, in order (BuildKit's `heredocsFromLine`).
fn heredocs_in_line(line: &str, line_no: usize) -> Result<Vec<Heredoc>, ParseError> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    // BuildKit ignores lexing errors here: such a line just has no heredocs.
    let words = lexer.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in &words {
        let Some((fd, chomp, rest)) = heredoc_word(word) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        if let Some(doc) = heredoc_from(fd, chomp, rest, line_no)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Matches `^(\d*)<<(-?)\s*([^<]*)$` (the lexer keeps `<< EOF` as one
/// word, as BuildKit does since v0.22).
fn heredoc_word(word: &str) -> Option<(u32, bool, &str)> {
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    let (fd, rest) = word.split_at(digits);
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_go_space);
    if rest.contains('<') {
        return None;
    }
    let fd = if fd.is_empty() {
        0
    } else {
        fd.parse().unwrap_or(u32::MAX)
    };
    Some((fd, chomp, rest))
}

fn heredoc_from(
    fd: u32,
    chomp: bool,
    rest: &str,
    line_no: usize,
) -> Result<Option<Heredoc>, ParseError> {
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let expand_err = |source| ParseError::Expand {
        line: line_no,
        col: 1,
        word: rest.to_string(),
        source,
    };
    let plain = lexer.process_words(rest, &NoEnv).map_err(expand_err)?;
    if plain.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &NoEnv).map_err(expand_err)?;
    if raw.len() != 1 {
        return Ok(None);
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: plain[0].clone(),
        content: String::new(),
        expand: quotes(&plain[0]) == quotes(&raw[0]),
        chomp,
        fd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(src: &str) -> String {
        parse(src.as_bytes()).expect("parses").dump()
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            dump("from alpine\nRuN echo hi\n"),
            "(from \"alpine\")\n(run \"echo hi\")\n"
        );
    }

    #[test]
    fn comment_inside_continuation_is_skipped() {
        assert_eq!(
            dump("FROM a\nRUN echo hello \\\n# comment\nworld\n"),
            "(from \"a\")\n(run \"echo hello world\")\n"
        );
    }

    #[test]
    fn comment_lines_do_not_continue() {
        assert_eq!(dump("# a \\\nFROM a\n"), "(from \"a\")\n");
    }

    #[test]
    fn escaped_escape_is_not_a_continuation() {
        assert_eq!(
            dump("FROM a\nRUN foo\\\\\nRUN bar\n"),
            "(from \"a\")\n(run \"foo\\\\\\\\\")\n(run \"bar\")\n"
        );
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        assert_eq!(
            dump("\u{feff}FROM a\r\nRUN x \\\r\n  y\r\n"),
            "(from \"a\")\n(run \"x   y\")\n"
        );
    }

    #[test]
    fn empty_continuation_line_warns() {
        let ast = parse(b"FROM a\nRUN x \\\n\ny\n").unwrap();
        assert_eq!(ast.nodes[1].args, vec!["x y"]);
        assert_eq!(ast.warnings[0].rule, "NoEmptyContinuation");
    }

    #[test]
    fn directives_only_at_the_top() {
        let ast = parse(b"# syntax=docker/dockerfile:1\n#ESCAPE = `\nFROM a\n").unwrap();
        assert_eq!(ast.directives.escape, '`');
        assert_eq!(
            ast.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        let ast = parse(b"# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(ast.directives.escape, '\\');
        let ast = parse(b"\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(ast.directives.escape, '\\');
    }

    #[test]
    fn repeated_or_invalid_directive_is_rejected() {
        let err = parse(b"# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
        assert_eq!(err.location(), (2, 1));
        assert!(err.to_string().contains("only one escape"));
        let err = parse(b"# escape=x\nFROM a\n").unwrap_err();
        assert!(err.to_string().contains("invalid escape token"));
    }

    #[test]
    fn heredocs_are_read_in_order() {
        let src = "FROM a\nRUN <<A cat > a && <<-\"B\" cat > b\nline a\nA\n\tline b\n\tB\nRUN echo done\n";
        let ast = parse(src.as_bytes()).unwrap();
        let docs = &ast.nodes[1].heredocs;
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (
                docs[0].name.as_str(),
                docs[0].content.as_str(),
                docs[0].expand
            ),
            ("A", "line a\n", true)
        );
        assert_eq!(
            (
                docs[1].name.as_str(),
                docs[1].body().as_str(),
                docs[1].expand,
                docs[1].chomp
            ),
            ("B", "line b\n", false, true)
        );
        assert_eq!(ast.nodes[1].span, Span { start: 2, end: 6 });
        assert_eq!(ast.nodes[2].args, vec!["echo done"]);
    }

    #[test]
    fn heredoc_with_space_and_fd() {
        let ast = parse(b"FROM a\nCOPY << EOF /x\nhi\nEOF\nRUN 3<<X cat <&3\nz\nX\n").unwrap();
        assert_eq!(ast.nodes[1].heredocs[0].name, "EOF");
        assert_eq!(ast.nodes[2].heredocs[0].fd, 3);
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        let err = parse(b"FROM a\nRUN <<EOF\nhello\n").unwrap_err();
        assert_eq!(err.location(), (2, 1));
        assert!(err.to_string().contains("unterminated heredoc"));
    }

    #[test]
    fn heredoc_not_in_exec_form_or_other_instructions() {
        let ast = parse(b"FROM a\nRUN [\"<<EOF\"]\nENV A=<<EOF\n").unwrap();
        assert!(ast.nodes.iter().all(|n| n.heredocs.is_empty()));
    }

    #[test]
    fn onbuild_heredoc_belongs_to_the_onbuild_node() {
        let ast = parse(b"FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n").unwrap();
        assert_eq!(ast.nodes[1].heredocs[0].content, "echo hi\n");
        assert_eq!(ast.dump(), "(from \"a\")\n(onbuild (run \"<<EOF\"))\n");
    }

    #[test]
    fn invalid_utf8_is_an_error_with_location() {
        let err = parse(b"FROM a\nRUN \xff\n").unwrap_err();
        assert_eq!(err.location(), (2, 5));
    }

    #[test]
    fn too_long_line_is_rejected() {
        let src = format!("FROM a\nRUN {}\n", "x".repeat(70_000));
        assert!(
            parse(src.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("max allowed size")
        );
    }

    #[test]
    fn nested_json_is_an_error_but_bad_json_falls_back() {
        assert!(parse(b"FROM a\nCMD [\"a\", [\"b\"]]\n").is_err());
        assert_eq!(dump("CMD ['a']\n"), "(cmd \"['a']\")\n");
    }
}
