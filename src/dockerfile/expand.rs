//! Dockerfile word expansion: quotes, escapes and `$VAR` / `${VAR...}`
//! substitution, behaving exactly as BuildKit's shell lexer
//! (`frontend/dockerfile/shell/lex.go`: `ProcessWord`, `ProcessWords`,
//! `ProcessWordWithMatches`).
//!
//! # What this module owns
//!
//! Turning one Dockerfile word (an instruction argument such as a `COPY`
//! source, an `ENV` value or a `--chown` flag value) into its expanded text,
//! or into a list of words split on unquoted whitespace. It also reports which
//! variable names the word used, set or unset, for BuildKit's `UndefinedVar`
//! check. Which variables are in scope, and which instructions expand at all,
//! is the caller's business (`dockerfile::stage`).
//!
//! # What it must never do
//!
//! Read the process environment, the filesystem or the clock; panic on any
//! input; depend on hash-map order (the name sets are `BTreeSet`s).
//!
//! # Invariants
//!
//! - Pure and deterministic: the same word, options and variables give the
//!   same result.
//! - Errors carry the byte offset, in the word, of the `$` or quote that
//!   starts the failing construct.
//! - [`Lexer::process_word`] and [`Lexer::process_words`] parse identically:
//!   one fails exactly when the other does.
//! - [`Lexer::process_words`] never returns an empty word.
//!
//! # Behaviour taken from BuildKit's code
//!
//! Where BuildKit's code and its documentation differ, the code wins. The
//! points that surprise:
//!
//! - A name is Unicode letters, digits and `_` (Go's `unicode.IsLetter` and
//!   `unicode.IsDigit`, Unicode 15.0.0, reproduced by the tables at the end
//!   of this file). A name that starts with a digit is all its digits (`$10`
//!   is the variable `10`); `@ * # ? - $ ! 0` are one-character names. None
//!   of these is normally set, so they expand to nothing. `$` followed by
//!   anything else is literal, and so is a `$` at the end of the word.
//! - An unset variable expands to the empty string (the reference's `WORKDIR`
//!   example that keeps `$DIRNAME` literal is wrong); with
//!   [`Lexer::skip_unset_env`] the reference is written back instead, with its
//!   modifier word already expanded and unquoted (`${X:-"$Y"}` gives
//!   `${X:-y}` when `Y=y`), and `${v//p/r}` written back as `${v/p/r}`. An unset
//!   variable is then no error, even with `?` or an unknown modifier.
//! - An escape before any character makes it literal (`\a` is `a`); an escape
//!   at the very end of the word is dropped. Inside `"..."` the escape only
//!   escapes `"`, `$` and itself; `"a\b"` stays `a\b` (and becomes `a\\b`
//!   with [`Lexer::raw_escapes`]: the kept escape, then the escape again as
//!   the ordinary character it turned out to be).
//! - Modifier words are read with escapes applied even under
//!   [`Lexer::raw_escapes`]; only pattern words keep them.
//! - In `${v#p}`, `${v%p}` and `${v/p/r}` the pattern and the replacement keep
//!   their escape characters ("raw escapes"), and the pattern language always
//!   uses `\` (whatever the escape directive says): `\*`, `\?` and `\\` are
//!   literal, `\}` and `\/` stand for `}` and `/`, any other `\x` is an error.
//!   `?` is one character and `*` any run; neither matches a newline (they
//!   are Go regular expressions, `.` and `.*`). Quotes do not make them
//!   literal (`${v#"*"}` still has a wildcard). `:#` and `:%` are errors, and
//!   `##` / `%%` are recognised after expansion (`${v#$H}` with `H=#` is
//!   `${v##}`).
//! - `${v//p/r}` substitutes through Go's `Regexp.ReplaceAllString`, so in the
//!   replacement `$0` / `${0}` is the matched text, `$$` is `$`, and any other
//!   `$name` is empty; `${v/p/r}` inserts the replacement as it is.
//! - `<<` followed by spaces, tabs or carriage returns is kept in one word by
//!   [`Lexer::process_words`] (`cat << EOF` gives `cat`, `<< EOF`), for
//!   heredoc detection.
//! - [`Lexer::process_words`] shares one in-progress word buffer with the
//!   nested words of `${v:-w}`-style modifiers, as BuildKit does: the part of
//!   the current word written before such a modifier is lost
//!   (`a${X:-b}` gives the word `b`; [`Lexer::process_word`] gives `ab`).
//! - A U+FEFF (byte order mark) at the very start of the word, or of a
//!   pattern, is dropped (Go's `text/scanner` does this).
//!
//! Which words fail is BuildKit's choice; the error messages are kiln's own
//! wording (BuildKit calls `${name` at the end of a word an "unsupported
//! modifier", kiln a missing `}`). One deliberate difference: modifier words
//! may nest at most [`MAX_NESTING`] deep (BuildKit has no limit, but a Rust
//! stack is not a Go stack); deeper input is an
//! [`ExpandError::NestingTooDeep`] error.

use std::collections::{BTreeMap, BTreeSet};

/// How deeply `${v:-${w:-...}}` modifier words may nest before expansion
/// gives up with [`ExpandError::NestingTooDeep`].
pub const MAX_NESTING: usize = 128;

/// The variables a word is expanded against.
///
/// Names are compared exactly (case-sensitive, as BuildKit does on Linux).
/// Implemented for `BTreeMap<String, String>`, for slices of
/// `(name, value)` pairs and for slices of `NAME=value` strings; in the
/// slices the last entry for a name wins, and a string without `=` sets that
/// name to the empty string (BuildKit's `EnvsFromSlice`).
///
/// There is deliberately no implementation for `Vec`: with `Env` in scope,
/// `Env::get` would then shadow `Vec::get(index)`. Pass a `Vec` as
/// `&v.as_slice()`:
///
/// ```text
/// let vars = vec!["A=1".to_owned()];
/// let expanded = Lexer::default().process_word("$A", &vars.as_slice())?;
/// ```
pub trait Env {
    /// The value of `name`, or `None` if it is not set.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Env for [String] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find_map(|entry| {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            (key == name).then_some(value)
        })
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// An environment with no variables set (what BuildKit's parser uses when it
/// splits a line into words to find heredocs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Options mirroring the fields of BuildKit's `shell.Lex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` by default, `` ` `` after `# escape=``.
    pub escape: char,
    /// Keep quote characters in the output (BuildKit's `RawQuotes`; used for
    /// heredoc bodies and heredoc detection).
    pub raw_quotes: bool,
    /// Keep escape characters in the output, still treating the character
    /// after one as literal (BuildKit's `RawEscapes`).
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding
    /// them to the empty string (BuildKit's `SkipUnsetEnv`).
    pub skip_unset_env: bool,
    /// Treat `'` and `"` as ordinary characters (BuildKit's
    /// `SkipProcessQuotes`).
    pub skip_process_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

/// The result of [`Lexer::process_word`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded {
    /// The word with quotes removed, escapes applied and variables expanded;
    /// whitespace is kept.
    pub value: String,
    /// Names the word referred to that were set.
    pub matched: BTreeSet<String>,
    /// Names the word referred to that were not set (BuildKit's
    /// `UndefinedVar` check warns about these).
    pub unmatched: BTreeSet<String>,
}

/// Why a word could not be expanded. Each variant carries `offset`, the byte
/// offset in the word of the `$` or quote that starts the failing construct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A `'` was not closed.
    #[error("unexpected end of word while looking for the closing `'`")]
    UnterminatedSingleQuote {
        /// Byte offset of the opening quote.
        offset: usize,
    },
    /// A `"` was not closed.
    #[error("unexpected end of word while looking for the closing `\"`")]
    UnterminatedDoubleQuote {
        /// Byte offset of the opening quote.
        offset: usize,
    },
    /// A `${` was not closed.
    #[error("syntax error: missing `}}` in variable substitution")]
    MissingBrace {
        /// Byte offset of the `$`.
        offset: usize,
    },
    /// A `${v/pattern` ended before the `/` that ends the pattern.
    #[error("syntax error: missing `/` in `${{}}` pattern substitution")]
    MissingSlash {
        /// Byte offset of the `$`.
        offset: usize,
    },
    /// `${}`, `${{...}` or `${:...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution {
        /// Byte offset of the `$`.
        offset: usize,
    },
    /// A modifier BuildKit does not support, such as `${v:=w}`, `${v:#p}` or
    /// `${v.}`.
    #[error("unsupported modifier `{modifier}` in variable substitution")]
    UnsupportedModifier {
        /// The modifier as written (`=`, `:#`, `.`).
        modifier: String,
        /// Byte offset of the `$`.
        offset: usize,
    },
    /// `${v?message}` with `v` unset, or `${v:?message}` with `v` unset or
    /// empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The expanded message, or BuildKit's default (`is not allowed to
        /// be unset` / `is not allowed to be empty`) when it is empty.
        message: String,
        /// Byte offset of the `$`.
        offset: usize,
    },
    /// A pattern of `${v#p}`, `${v%p}` or `${v/p/r}` has a `\` followed by
    /// something other than `*`, `?`, `\`, `}` or `/`.
    #[error(
        "invalid pattern `{pattern}` in variable substitution: {}",
        describe_escape(*.found)
    )]
    InvalidPattern {
        /// The pattern, after expansion.
        pattern: String,
        /// The character after the `\`, or `None` if the pattern ends with it.
        found: Option<char>,
        /// Byte offset of the `$`.
        offset: usize,
    },
    /// Modifier words nested deeper than [`MAX_NESTING`].
    #[error("variable substitutions nested deeper than {limit} levels")]
    NestingTooDeep {
        /// The limit, [`MAX_NESTING`].
        limit: usize,
        /// Byte offset of the `$` that went one level too deep.
        offset: usize,
    },
}

fn describe_escape(found: Option<char>) -> String {
    match found {
        Some(c) => format!("invalid escape `\\{c}`"),
        None => "trailing `\\`".to_owned(),
    }
}

impl Lexer {
    /// A lexer with escape character `escape` (`\` or `` ` ``) and every
    /// option off.
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Expand one word: quotes removed, escapes applied, variables expanded,
    /// whitespace kept. Also reports the names used, set and unset (BuildKit's
    /// `ProcessWord` and `ProcessWordWithMatches`).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<Expanded, ExpandError> {
        let mut expander = Expander::new(self, word, env);
        let (value, _) = expander.run()?;
        Ok(Expanded {
            value,
            matched: expander.matched,
            unmatched: expander.unmatched,
        })
    }

    /// Expand `word` and split it on whitespace that is neither quoted nor
    /// escaped; whitespace inside the value of an unquoted `$v` splits too
    /// (BuildKit's `ProcessWords`). Empty words are dropped, so `""` alone
    /// gives no word at all.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        let mut expander = Expander::new(self, word, env);
        let (_, words) = expander.run()?;
        Ok(words)
    }
}

/// One expansion in progress: a cursor over the word plus what has been
/// learned so far.
struct Expander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    src: &'a str,
    /// Byte offset of the next character; always on a character boundary.
    pos: usize,
    depth: usize,
    /// The word being built by `process_words`. BuildKit keeps a single
    /// buffer for this and clears it each time it starts reading a (possibly
    /// nested) word; sharing it here reproduces that.
    pending: String,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// The finished words of one (possibly nested) word being read.
#[derive(Default)]
struct Split {
    words: Vec<String>,
    in_word: bool,
}

impl Split {
    /// An unquoted, unescaped character: whitespace ends the current word.
    fn push_char(&mut self, pending: &mut String, ch: char) {
        if is_space(ch) {
            if self.in_word && !pending.is_empty() {
                self.words.push(std::mem::take(pending));
                self.in_word = false;
            }
        } else {
            self.push_raw_char(pending, ch);
        }
    }

    fn push_raw_char(&mut self, pending: &mut String, ch: char) {
        pending.push(ch);
        self.in_word = true;
    }

    /// The value of a `$` expansion: split like unquoted text.
    fn push_expanded(&mut self, pending: &mut String, value: &str) {
        for ch in value.chars() {
            self.push_char(pending, ch);
        }
    }

    /// Quoted text (or a heredoc marker): kept whole.
    fn push_raw_str(&mut self, pending: &mut String, text: &str) {
        pending.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self, pending: &mut String) -> Vec<String> {
        if !pending.is_empty() {
            self.words.push(std::mem::take(pending));
        }
        self.words
    }
}

impl<'a> Expander<'a> {
    fn new(lexer: &'a Lexer, src: &'a str, env: &'a dyn Env) -> Self {
        Self {
            lexer,
            env,
            src,
            // Go's text/scanner skips a byte order mark that opens its input.
            pos: if src.starts_with('\u{feff}') { 3 } else { 0 },
            depth: 0,
            pending: String::new(),
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn run(&mut self) -> Result<(String, Vec<String>), ExpandError> {
        self.read_until(None, self.lexer.raw_escapes)
    }

    /// Read up to (and consume) `stop`, or to the end of the word when `stop`
    /// is `None`. Gives the expanded text and its words. Running out of input
    /// before `stop` is an error, which `nested` reports for its `$`.
    fn read_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut out = String::new();
        let mut split = Split::default();
        self.pending.clear();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.bump();
                let words = split.finish(&mut self.pending);
                return Ok((out, words));
            }
            let quotes = !self.lexer.skip_process_quotes;
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                    split.push_expanded(&mut self.pending, &value);
                }
                '\'' if quotes => {
                    let text = self.single_quoted()?;
                    out.push_str(&text);
                    split.push_raw_str(&mut self.pending, &text);
                }
                '"' if quotes => {
                    let text = self.double_quoted(raw_escapes)?;
                    out.push_str(&text);
                    split.push_raw_str(&mut self.pending, &text);
                }
                '<' => {
                    let text = self.heredoc_marker();
                    out.push_str(&text);
                    split.push_raw_str(&mut self.pending, &text);
                }
                _ => {
                    self.bump();
                    if ch == self.lexer.escape {
                        if raw_escapes {
                            split.push_raw_char(&mut self.pending, ch);
                            out.push(ch);
                        }
                        // An escape at the very end of the word is dropped.
                        let Some(escaped) = self.bump() else { break };
                        split.push_raw_char(&mut self.pending, escaped);
                        out.push(escaped);
                    } else {
                        split.push_char(&mut self.pending, ch);
                        out.push(ch);
                    }
                }
            }
        }
        match stop {
            None => Ok((out, split.finish(&mut self.pending))),
            Some('/') => Err(ExpandError::MissingSlash { offset: self.pos }),
            Some(_) => Err(ExpandError::MissingBrace { offset: self.pos }),
        }
    }

    /// `'...'`: everything up to the next `'` is literal.
    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let offset = self.pos;
        self.bump();
        let mut out = String::new();
        if self.lexer.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.bump() {
                None => return Err(ExpandError::UnterminatedSingleQuote { offset }),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character escapes only `"`, `$` and
    /// itself and is otherwise kept.
    fn double_quoted(&mut self, raw_escapes: bool) -> Result<String, ExpandError> {
        let offset = self.pos;
        self.bump();
        let mut out = String::new();
        if self.lexer.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote { offset }),
                Some('"') => {
                    self.bump();
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(mut ch) => {
                    self.bump();
                    if ch == self.lexer.escape {
                        if raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // Dropped; the missing `"` is reported next.
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                ch = next;
                                self.bump();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `<`, or `<<` and the blanks after it, kept as one piece of a word.
    fn heredoc_marker(&mut self) -> String {
        self.bump();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.bump();
        let mut out = "<<".to_owned();
        while let Some(ch @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(ch);
            self.bump();
        }
        out
    }

    /// Read a variable name: a run of digits, one special parameter
    /// character, or letters, digits and `_`. Empty if none of these follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_go_digit(ch) {
                while let Some(digit) = self.peek().filter(|&c| is_go_digit(c)) {
                    name.push(digit);
                    self.bump();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.bump();
                return ch.to_string();
            }
            if !(is_go_letter(ch) || is_go_digit(ch) || ch == '_') {
                break;
            }
            name.push(ch);
            self.bump();
        }
        name
    }

    fn lookup(&mut self, name: &str) -> Option<&'a str> {
        let env = self.env;
        let value = env.get(name);
        let names = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !names.contains(name) {
            names.insert(name.to_owned());
        }
        value
    }

    /// `$name`, `${name}` or `${name<modifier>...}`, at the `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        let offset = self.pos;
        self.bump();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.bump();
        match self.peek() {
            None => return Err(ExpandError::MissingBrace { offset }),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution { offset }),
            Some(_) => {}
        }
        let name = self.name();
        match self.bump() {
            // BuildKit reports `unsupported modifier (\u{fffd})` here.
            None => Err(ExpandError::MissingBrace { offset }),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(first @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                self.modifier(offset, &name, first)
            }
            Some('/') => self.substitute(offset, &name),
            Some(other) => Err(ExpandError::UnsupportedModifier {
                modifier: other.to_string(),
                offset,
            }),
        }
    }

    /// The nested word of a modifier, read up to `stop`. Any failure that
    /// leaves the input exhausted is reported as the missing `stop` of the
    /// substitution at `offset`, as BuildKit does.
    fn nested(
        &mut self,
        offset: usize,
        stop: char,
        raw_escapes: bool,
    ) -> Result<String, ExpandError> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::NestingTooDeep {
                limit: MAX_NESTING,
                offset,
            });
        }
        self.depth += 1;
        let read = self.read_until(Some(stop), raw_escapes);
        self.depth -= 1;
        match read {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() && stop == '/' => {
                Err(ExpandError::MissingSlash { offset })
            }
            Err(_) if self.peek().is_none() => Err(ExpandError::MissingBrace { offset }),
            Err(err) => Err(err),
        }
    }

    /// `${name:-w}`, `${name-w}`, `+`, `?`, `#`, `##`, `%`, `%%`, after the
    /// first modifier character `first`.
    fn modifier(&mut self, offset: usize, name: &str, first: char) -> Result<String, ExpandError> {
        let colon = first == ':';
        let op = if colon {
            // `${name:` at the end of the word.
            self.bump().ok_or(ExpandError::MissingBrace { offset })?
        } else {
            first
        };
        let spelled = if colon {
            format!(":{op}")
        } else {
            op.to_string()
        };
        let is_pattern = op == '#' || op == '%';
        if colon && is_pattern {
            return Err(ExpandError::UnsupportedModifier {
                modifier: spelled,
                offset,
            });
        }
        let word = self.nested(offset, '}', is_pattern)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}{spelled}{word}}}"));
        }
        // "Null" counts as unset only with the colon.
        let null = value.is_none_or(|v| colon && v.is_empty());
        match op {
            '-' => Ok(if null {
                word
            } else {
                value.unwrap_or_default().to_owned()
            }),
            '+' => Ok(if null { String::new() } else { word }),
            '?' => match value {
                Some(value) if !null => Ok(value.to_owned()),
                _ => {
                    let message = if !word.is_empty() {
                        word
                    } else if value.is_none() {
                        "is not allowed to be unset".to_owned()
                    } else {
                        "is not allowed to be empty".to_owned()
                    };
                    Err(ExpandError::Required {
                        name: name.to_owned(),
                        message,
                        offset,
                    })
                }
            },
            '#' | '%' => {
                // `##` and `%%` are greedy. The doubled character is looked
                // for after expansion, as in BuildKit.
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let trimmed = if op == '#' {
                    trim_prefix(pattern, value, greedy)
                } else {
                    trim_suffix(pattern, value, greedy)
                };
                trimmed.map_err(|found| ExpandError::InvalidPattern {
                    pattern: pattern.to_owned(),
                    found,
                    offset,
                })
            }
            _ => Err(ExpandError::UnsupportedModifier {
                modifier: spelled,
                offset,
            }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`,
    /// after the first `/`.
    fn substitute(&mut self, offset: usize, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.bump();
        }
        let pattern = self.nested(offset, '/', true)?;
        let replacement = self.nested(offset, '}', true)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            // BuildKit writes `${name/...}` back for `//` too.
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let items = compile_pattern(&pattern).map_err(|found| ExpandError::InvalidPattern {
            pattern: pattern.clone(),
            found,
            offset,
        })?;
        let matcher = Matcher::new(&items, true);
        if all {
            return Ok(replace_all(&matcher, value, &replacement));
        }
        Ok(match matcher.find(value, 0, false) {
            Some((start, end)) => format!("{}{replacement}{}", &value[..start], &value[end..]),
            None => value.to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------
// Patterns
//
// BuildKit turns a shell pattern into a Go regular expression: `?` is `.`,
// `*` is `.*` (greedy) or `.*?` (lazy), everything else literal, and runs it
// with Go's leftmost-first semantics. `.` matches any character but `\n`.
// The matcher below is a small Pike VM over exactly that language, so it
// picks the same match as Go's `regexp`, in time linear in the value.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Literal(char),
    /// `?`: one character other than `\n`.
    Any,
    /// `*`: a run of characters other than `\n`.
    Star,
}

/// Compile a pattern; `Err` holds the character after an invalid `\` (`None`
/// when the pattern ends with it).
fn compile_pattern(pattern: &str) -> Result<Vec<Item>, Option<char>> {
    let pattern = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
    let mut items = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        let item = match ch {
            '*' => Item::Star,
            '?' => Item::Any,
            '\\' => {
                // `\}` and `\/` only protect the delimiter of `${...}`; the
                // character itself is taken by the next turn of the loop.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => Item::Literal(escaped),
                    other => return Err(other),
                }
            }
            other => Item::Literal(other),
        };
        // `**` matches what `*` matches, and all stars of one pattern are
        // equally greedy, so merging them picks the same match. It also keeps
        // `Matcher::add` from recursing more than two levels.
        if !(item == Item::Star && items.last() == Some(&Item::Star)) {
            items.push(item);
        }
    }
    Ok(items)
}

/// Reverse a pattern but keep each `\x` pair in order (`a\*c` gives `c\*a`),
/// so that a suffix search becomes a prefix search. A lone `\` at the end
/// stays a lone character.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        pieces.push(&chars[i..i + len]);
        i += len;
    }
    pieces.iter().rev().flat_map(|piece| piece.iter()).collect()
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, Option<char>> {
    let items = compile_pattern(pattern)?;
    Ok(match Matcher::new(&items, greedy).find(value, 0, true) {
        Some((_, end)) => value[end..].to_owned(),
        None => value.to_owned(),
    })
}

/// Go's regular expressions cannot find the shortest match that ends at the
/// end, so BuildKit reverses both pattern and value and trims a prefix.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, Option<char>> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// A Pike VM for a compiled pattern. States are pattern positions; state
/// `items.len()` is the match.
struct Matcher<'p> {
    items: &'p [Item],
    greedy: bool,
}

impl<'p> Matcher<'p> {
    fn new(items: &'p [Item], greedy: bool) -> Self {
        Self { items, greedy }
    }

    /// Add the thread at state `pc` (started at `start`) and the states it
    /// reaches without reading, in priority order, unless already present.
    fn add(
        &self,
        list: &mut Vec<(usize, usize)>,
        marks: &mut [u64],
        stamp: u64,
        pc: usize,
        start: usize,
    ) {
        if marks[pc] == stamp {
            return;
        }
        marks[pc] = stamp;
        if self.items.get(pc) == Some(&Item::Star) {
            // Greedy prefers another character; lazy prefers to move on.
            if self.greedy {
                list.push((pc, start));
                self.add(list, marks, stamp, pc + 1, start);
            } else {
                self.add(list, marks, stamp, pc + 1, start);
                list.push((pc, start));
            }
        } else {
            list.push((pc, start));
        }
    }

    /// The leftmost-first match in `text` starting at or after `from` (only
    /// at `from` when `anchored`), as `(start, end)` byte offsets.
    fn find(&self, text: &str, from: usize, anchored: bool) -> Option<(usize, usize)> {
        let done = self.items.len();
        let mut marks = vec![0_u64; done + 1];
        let mut stamp = 1_u64;
        let mut current: Vec<(usize, usize)> = Vec::new();
        let mut next: Vec<(usize, usize)> = Vec::new();
        let mut found = None;
        let mut pos = from;
        loop {
            // A new thread starting here has the lowest priority.
            if found.is_none() && (!anchored || pos == from) {
                self.add(&mut current, &mut marks, stamp, 0, pos);
            }
            if current.is_empty() {
                break;
            }
            let ch = text.get(pos..).and_then(|rest| rest.chars().next());
            let readable = ch.filter(|&c| c != '\n');
            stamp += 1;
            for &(pc, start) in &current {
                match self.items.get(pc) {
                    None => {
                        // A match: threads of lower priority are dropped.
                        found = Some((start, pos));
                        break;
                    }
                    Some(Item::Literal(want)) if ch == Some(*want) => {
                        self.add(&mut next, &mut marks, stamp, pc + 1, start);
                    }
                    Some(Item::Any) if readable.is_some() => {
                        self.add(&mut next, &mut marks, stamp, pc + 1, start);
                    }
                    Some(Item::Star) if readable.is_some() => {
                        self.add(&mut next, &mut marks, stamp, pc, start);
                    }
                    Some(_) => {}
                }
            }
            let Some(ch) = ch else { break };
            pos += ch.len_utf8();
            std::mem::swap(&mut current, &mut next);
            next.clear();
        }
        found
    }
}

/// Go's `Regexp.ReplaceAllString`: every non-overlapping match, an empty
/// match right after a previous match is not replaced, and the replacement
/// is a template (see `expand_template`).
fn replace_all(matcher: &Matcher<'_>, value: &str, template: &str) -> String {
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((start, end)) = matcher.find(value, search, false) else {
            break;
        };
        out.push_str(&value[last_end..start]);
        if end > last_end || start == 0 {
            expand_template(&mut out, template, &value[start..end]);
        }
        last_end = end;
        // Always advance by at least one character.
        let width = value[search..].chars().next().map_or(0, char::len_utf8);
        if search + width > end {
            search += width;
        } else if search + 1 > end {
            search += 1;
        } else {
            search = end;
        }
    }
    out.push_str(&value[last_end..]);
    out
}

/// Go's `Regexp.Expand` for a regular expression whose only group is the
/// whole match: `$0` and `${0}` are `whole`, `$$` is `$`, another `$name` or
/// `${name}` is empty, and a `$` not followed by a name is literal.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_group(rest) {
            Some((name, after)) => {
                rest = after;
                // Only group 0 exists; "00" is not 0 (leading zeros are a name).
                if name == "0" {
                    out.push_str(whole);
                }
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// The group name at the start of `text` (after a `$`): `name` or `{name}`,
/// with the rest of the template.
fn template_group(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(is_go_letter(c) || is_go_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, rest) = body.split_at(len);
    let rest = if braced {
        rest.strip_prefix('}')?
    } else {
        rest
    };
    Some((name, rest))
}

// ---------------------------------------------------------------------------
// Go's character classes
// ---------------------------------------------------------------------------

/// Go's `unicode.IsSpace`: the White_Space property, which is what Rust's
/// `char::is_whitespace` tests too.
fn is_space(ch: char) -> bool {
    ch.is_whitespace()
}

/// Go's `unicode.IsLetter`: general category L (not Rust's wider
/// `is_alphabetic`, which also takes letter numbers such as `Ⅻ` and many
/// combining marks).
fn is_go_letter(ch: char) -> bool {
    if ch.is_ascii() {
        return ch.is_ascii_alphabetic();
    }
    in_ranges(&LETTER_RANGES, ch)
}

/// Go's `unicode.IsDigit`: general category Nd (not Rust's wider
/// `is_numeric`, which also takes `²` and `½`).
fn is_go_digit(ch: char) -> bool {
    if ch.is_ascii() {
        return ch.is_ascii_digit();
    }
    in_ranges(&DIGIT_RANGES, ch)
}

/// Whether `ch` is in a table of sorted, disjoint inclusive ranges stored as
/// `[lo0, hi0, lo1, hi1, ...]`.
fn in_ranges(table: &[u32], ch: char) -> bool {
    let c = u32::from(ch);
    let (mut lo, mut hi) = (0, table.len() / 2);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if table[2 * mid + 1] < c {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo < table.len() / 2 && table[2 * lo] <= c
}

// Generated from the Unicode Character Database 15.0.0 (the version of Go's
// `unicode` package since Go 1.21): ranges of general category L
// (Lu, Ll, Lt, Lm, Lo) and Nd, as `[lo, hi]` pairs.
static LETTER_RANGES: [u32; 1318] = [
    0x41, 0x5A, 0x61, 0x7A, 0xAA, 0xAA, 0xB5, 0xB5, 0xBA, 0xBA, 0xC0, 0xD6, 0xD8, 0xF6, 0xF8,
    0x2C1, 0x2C6, 0x2D1, 0x2E0, 0x2E4, 0x2EC, 0x2EC, 0x2EE, 0x2EE, 0x370, 0x374, 0x376, 0x377,
    0x37A, 0x37D, 0x37F, 0x37F, 0x386, 0x386, 0x388, 0x38A, 0x38C, 0x38C, 0x38E, 0x3A1, 0x3A3,
    0x3F5, 0x3F7, 0x481, 0x48A, 0x52F, 0x531, 0x556, 0x559, 0x559, 0x560, 0x588, 0x5D0, 0x5EA,
    0x5EF, 0x5F2, 0x620, 0x64A, 0x66E, 0x66F, 0x671, 0x6D3, 0x6D5, 0x6D5, 0x6E5, 0x6E6, 0x6EE,
    0x6EF, 0x6FA, 0x6FC, 0x6FF, 0x6FF, 0x710, 0x710, 0x712, 0x72F, 0x74D, 0x7A5, 0x7B1, 0x7B1,
    0x7CA, 0x7EA, 0x7F4, 0x7F5, 0x7FA, 0x7FA, 0x800, 0x815, 0x81A, 0x81A, 0x824, 0x824, 0x828,
    0x828, 0x840, 0x858, 0x860, 0x86A, 0x870, 0x887, 0x889, 0x88E, 0x8A0, 0x8C9, 0x904, 0x939,
    0x93D, 0x93D, 0x950, 0x950, 0x958, 0x961, 0x971, 0x980, 0x985, 0x98C, 0x98F, 0x990, 0x993,
    0x9A8, 0x9AA, 0x9B0, 0x9B2, 0x9B2, 0x9B6, 0x9B9, 0x9BD, 0x9BD, 0x9CE, 0x9CE, 0x9DC, 0x9DD,
    0x9DF, 0x9E1, 0x9F0, 0x9F1, 0x9FC, 0x9FC, 0xA05, 0xA0A, 0xA0F, 0xA10, 0xA13, 0xA28, 0xA2A,
    0xA30, 0xA32, 0xA33, 0xA35, 0xA36, 0xA38, 0xA39, 0xA59, 0xA5C, 0xA5E, 0xA5E, 0xA72, 0xA74,
    0xA85, 0xA8D, 0xA8F, 0xA91, 0xA93, 0xAA8, 0xAAA, 0xAB0, 0xAB2, 0xAB3, 0xAB5, 0xAB9, 0xABD,
    0xABD, 0xAD0, 0xAD0, 0xAE0, 0xAE1, 0xAF9, 0xAF9, 0xB05, 0xB0C, 0xB0F, 0xB10, 0xB13, 0xB28,
    0xB2A, 0xB30, 0xB32, 0xB33, 0xB35, 0xB39, 0xB3D, 0xB3D, 0xB5C, 0xB5D, 0xB5F, 0xB61, 0xB71,
    0xB71, 0xB83, 0xB83, 0xB85, 0xB8A, 0xB8E, 0xB90, 0xB92, 0xB95, 0xB99, 0xB9A, 0xB9C, 0xB9C,
    0xB9E, 0xB9F, 0xBA3, 0xBA4, 0xBA8, 0xBAA, 0xBAE, 0xBB9, 0xBD0, 0xBD0, 0xC05, 0xC0C, 0xC0E,
    0xC10, 0xC12, 0xC28, 0xC2A, 0xC39, 0xC3D, 0xC3D, 0xC58, 0xC5A, 0xC5D, 0xC5D, 0xC60, 0xC61,
    0xC80, 0xC80, 0xC85, 0xC8C, 0xC8E, 0xC90, 0xC92, 0xCA8, 0xCAA, 0xCB3, 0xCB5, 0xCB9, 0xCBD,
    0xCBD, 0xCDD, 0xCDE, 0xCE0, 0xCE1, 0xCF1, 0xCF2, 0xD04, 0xD0C, 0xD0E, 0xD10, 0xD12, 0xD3A,
    0xD3D, 0xD3D, 0xD4E, 0xD4E, 0xD54, 0xD56, 0xD5F, 0xD61, 0xD7A, 0xD7F, 0xD85, 0xD96, 0xD9A,
    0xDB1, 0xDB3, 0xDBB, 0xDBD, 0xDBD, 0xDC0, 0xDC6, 0xE01, 0xE30, 0xE32, 0xE33, 0xE40, 0xE46,
    0xE81, 0xE82, 0xE84, 0xE84, 0xE86, 0xE8A, 0xE8C, 0xEA3, 0xEA5, 0xEA5, 0xEA7, 0xEB0, 0xEB2,
    0xEB3, 0xEBD, 0xEBD, 0xEC0, 0xEC4, 0xEC6, 0xEC6, 0xEDC, 0xEDF, 0xF00, 0xF00, 0xF40, 0xF47,
    0xF49, 0xF6C, 0xF88, 0xF8C, 0x1000, 0x102A, 0x103F, 0x103F, 0x1050, 0x1055, 0x105A, 0x105D,
    0x1061, 0x1061, 0x1065, 0x1066, 0x106E, 0x1070, 0x1075, 0x1081, 0x108E, 0x108E, 0x10A0, 0x10C5,
    0x10C7, 0x10C7, 0x10CD, 0x10CD, 0x10D0, 0x10FA, 0x10FC, 0x1248, 0x124A, 0x124D, 0x1250, 0x1256,
    0x1258, 0x1258, 0x125A, 0x125D, 0x1260, 0x1288, 0x128A, 0x128D, 0x1290, 0x12B0, 0x12B2, 0x12B5,
    0x12B8, 0x12BE, 0x12C0, 0x12C0, 0x12C2, 0x12C5, 0x12C8, 0x12D6, 0x12D8, 0x1310, 0x1312, 0x1315,
    0x1318, 0x135A, 0x1380, 0x138F, 0x13A0, 0x13F5, 0x13F8, 0x13FD, 0x1401, 0x166C, 0x166F, 0x167F,
    0x1681, 0x169A, 0x16A0, 0x16EA, 0x16F1, 0x16F8, 0x1700, 0x1711, 0x171F, 0x1731, 0x1740, 0x1751,
    0x1760, 0x176C, 0x176E, 0x1770, 0x1780, 0x17B3, 0x17D7, 0x17D7, 0x17DC, 0x17DC, 0x1820, 0x1878,
    0x1880, 0x1884, 0x1887, 0x18A8, 0x18AA, 0x18AA, 0x18B0, 0x18F5, 0x1900, 0x191E, 0x1950, 0x196D,
    0x1970, 0x1974, 0x1980, 0x19AB, 0x19B0, 0x19C9, 0x1A00, 0x1A16, 0x1A20, 0x1A54, 0x1AA7, 0x1AA7,
    0x1B05, 0x1B33, 0x1B45, 0x1B4C, 0x1B83, 0x1BA0, 0x1BAE, 0x1BAF, 0x1BBA, 0x1BE5, 0x1C00, 0x1C23,
    0x1C4D, 0x1C4F, 0x1C5A, 0x1C7D, 0x1C80, 0x1C88, 0x1C90, 0x1CBA, 0x1CBD, 0x1CBF, 0x1CE9, 0x1CEC,
    0x1CEE, 0x1CF3, 0x1CF5, 0x1CF6, 0x1CFA, 0x1CFA, 0x1D00, 0x1DBF, 0x1E00, 0x1F15, 0x1F18, 0x1F1D,
    0x1F20, 0x1F45, 0x1F48, 0x1F4D, 0x1F50, 0x1F57, 0x1F59, 0x1F59, 0x1F5B, 0x1F5B, 0x1F5D, 0x1F5D,
    0x1F5F, 0x1F7D, 0x1F80, 0x1FB4, 0x1FB6, 0x1FBC, 0x1FBE, 0x1FBE, 0x1FC2, 0x1FC4, 0x1FC6, 0x1FCC,
    0x1FD0, 0x1FD3, 0x1FD6, 0x1FDB, 0x1FE0, 0x1FEC, 0x1FF2, 0x1FF4, 0x1FF6, 0x1FFC, 0x2071, 0x2071,
    0x207F, 0x207F, 0x2090, 0x209C, 0x2102, 0x2102, 0x2107, 0x2107, 0x210A, 0x2113, 0x2115, 0x2115,
    0x2119, 0x211D, 0x2124, 0x2124, 0x2126, 0x2126, 0x2128, 0x2128, 0x212A, 0x212D, 0x212F, 0x2139,
    0x213C, 0x213F, 0x2145, 0x2149, 0x214E, 0x214E, 0x2183, 0x2184, 0x2C00, 0x2CE4, 0x2CEB, 0x2CEE,
    0x2CF2, 0x2CF3, 0x2D00, 0x2D25, 0x2D27, 0x2D27, 0x2D2D, 0x2D2D, 0x2D30, 0x2D67, 0x2D6F, 0x2D6F,
    0x2D80, 0x2D96, 0x2DA0, 0x2DA6, 0x2DA8, 0x2DAE, 0x2DB0, 0x2DB6, 0x2DB8, 0x2DBE, 0x2DC0, 0x2DC6,
    0x2DC8, 0x2DCE, 0x2DD0, 0x2DD6, 0x2DD8, 0x2DDE, 0x2E2F, 0x2E2F, 0x3005, 0x3006, 0x3031, 0x3035,
    0x303B, 0x303C, 0x3041, 0x3096, 0x309D, 0x309F, 0x30A1, 0x30FA, 0x30FC, 0x30FF, 0x3105, 0x312F,
    0x3131, 0x318E, 0x31A0, 0x31BF, 0x31F0, 0x31FF, 0x3400, 0x4DBF, 0x4E00, 0xA48C, 0xA4D0, 0xA4FD,
    0xA500, 0xA60C, 0xA610, 0xA61F, 0xA62A, 0xA62B, 0xA640, 0xA66E, 0xA67F, 0xA69D, 0xA6A0, 0xA6E5,
    0xA717, 0xA71F, 0xA722, 0xA788, 0xA78B, 0xA7CA, 0xA7D0, 0xA7D1, 0xA7D3, 0xA7D3, 0xA7D5, 0xA7D9,
    0xA7F2, 0xA801, 0xA803, 0xA805, 0xA807, 0xA80A, 0xA80C, 0xA822, 0xA840, 0xA873, 0xA882, 0xA8B3,
    0xA8F2, 0xA8F7, 0xA8FB, 0xA8FB, 0xA8FD, 0xA8FE, 0xA90A, 0xA925, 0xA930, 0xA946, 0xA960, 0xA97C,
    0xA984, 0xA9B2, 0xA9CF, 0xA9CF, 0xA9E0, 0xA9E4, 0xA9E6, 0xA9EF, 0xA9FA, 0xA9FE, 0xAA00, 0xAA28,
    0xAA40, 0xAA42, 0xAA44, 0xAA4B, 0xAA60, 0xAA76, 0xAA7A, 0xAA7A, 0xAA7E, 0xAAAF, 0xAAB1, 0xAAB1,
    0xAAB5, 0xAAB6, 0xAAB9, 0xAABD, 0xAAC0, 0xAAC0, 0xAAC2, 0xAAC2, 0xAADB, 0xAADD, 0xAAE0, 0xAAEA,
    0xAAF2, 0xAAF4, 0xAB01, 0xAB06, 0xAB09, 0xAB0E, 0xAB11, 0xAB16, 0xAB20, 0xAB26, 0xAB28, 0xAB2E,
    0xAB30, 0xAB5A, 0xAB5C, 0xAB69, 0xAB70, 0xABE2, 0xAC00, 0xD7A3, 0xD7B0, 0xD7C6, 0xD7CB, 0xD7FB,
    0xF900, 0xFA6D, 0xFA70, 0xFAD9, 0xFB00, 0xFB06, 0xFB13, 0xFB17, 0xFB1D, 0xFB1D, 0xFB1F, 0xFB28,
    0xFB2A, 0xFB36, 0xFB38, 0xFB3C, 0xFB3E, 0xFB3E, 0xFB40, 0xFB41, 0xFB43, 0xFB44, 0xFB46, 0xFBB1,
    0xFBD3, 0xFD3D, 0xFD50, 0xFD8F, 0xFD92, 0xFDC7, 0xFDF0, 0xFDFB, 0xFE70, 0xFE74, 0xFE76, 0xFEFC,
    0xFF21, 0xFF3A, 0xFF41, 0xFF5A, 0xFF66, 0xFFBE, 0xFFC2, 0xFFC7, 0xFFCA, 0xFFCF, 0xFFD2, 0xFFD7,
    0xFFDA, 0xFFDC, 0x10000, 0x1000B, 0x1000D, 0x10026, 0x10028, 0x1003A, 0x1003C, 0x1003D,
    0x1003F, 0x1004D, 0x10050, 0x1005D, 0x10080, 0x100FA, 0x10280, 0x1029C, 0x102A0, 0x102D0,
    0x10300, 0x1031F, 0x1032D, 0x10340, 0x10342, 0x10349, 0x10350, 0x10375, 0x10380, 0x1039D,
    0x103A0, 0x103C3, 0x103C8, 0x103CF, 0x10400, 0x1049D, 0x104B0, 0x104D3, 0x104D8, 0x104FB,
    0x10500, 0x10527, 0x10530, 0x10563, 0x10570, 0x1057A, 0x1057C, 0x1058A, 0x1058C, 0x10592,
    0x10594, 0x10595, 0x10597, 0x105A1, 0x105A3, 0x105B1, 0x105B3, 0x105B9, 0x105BB, 0x105BC,
    0x10600, 0x10736, 0x10740, 0x10755, 0x10760, 0x10767, 0x10780, 0x10785, 0x10787, 0x107B0,
    0x107B2, 0x107BA, 0x10800, 0x10805, 0x10808, 0x10808, 0x1080A, 0x10835, 0x10837, 0x10838,
    0x1083C, 0x1083C, 0x1083F, 0x10855, 0x10860, 0x10876, 0x10880, 0x1089E, 0x108E0, 0x108F2,
    0x108F4, 0x108F5, 0x10900, 0x10915, 0x10920, 0x10939, 0x10980, 0x109B7, 0x109BE, 0x109BF,
    0x10A00, 0x10A00, 0x10A10, 0x10A13, 0x10A15, 0x10A17, 0x10A19, 0x10A35, 0x10A60, 0x10A7C,
    0x10A80, 0x10A9C, 0x10AC0, 0x10AC7, 0x10AC9, 0x10AE4, 0x10B00, 0x10B35, 0x10B40, 0x10B55,
    0x10B60, 0x10B72, 0x10B80, 0x10B91, 0x10C00, 0x10C48, 0x10C80, 0x10CB2, 0x10CC0, 0x10CF2,
    0x10D00, 0x10D23, 0x10E80, 0x10EA9, 0x10EB0, 0x10EB1, 0x10F00, 0x10F1C, 0x10F27, 0x10F27,
    0x10F30, 0x10F45, 0x10F70, 0x10F81, 0x10FB0, 0x10FC4, 0x10FE0, 0x10FF6, 0x11003, 0x11037,
    0x11071, 0x11072, 0x11075, 0x11075, 0x11083, 0x110AF, 0x110D0, 0x110E8, 0x11103, 0x11126,
    0x11144, 0x11144, 0x11147, 0x11147, 0x11150, 0x11172, 0x11176, 0x11176, 0x11183, 0x111B2,
    0x111C1, 0x111C4, 0x111DA, 0x111DA, 0x111DC, 0x111DC, 0x11200, 0x11211, 0x11213, 0x1122B,
    0x1123F, 0x11240, 0x11280, 0x11286, 0x11288, 0x11288, 0x1128A, 0x1128D, 0x1128F, 0x1129D,
    0x1129F, 0x112A8, 0x112B0, 0x112DE, 0x11305, 0x1130C, 0x1130F, 0x11310, 0x11313, 0x11328,
    0x1132A, 0x11330, 0x11332, 0x11333, 0x11335, 0x11339, 0x1133D, 0x1133D, 0x11350, 0x11350,
    0x1135D, 0x11361, 0x11400, 0x11434, 0x11447, 0x1144A, 0x1145F, 0x11461, 0x11480, 0x114AF,
    0x114C4, 0x114C5, 0x114C7, 0x114C7, 0x11580, 0x115AE, 0x115D8, 0x115DB, 0x11600, 0x1162F,
    0x11644, 0x11644, 0x11680, 0x116AA, 0x116B8, 0x116B8, 0x11700, 0x1171A, 0x11740, 0x11746,
    0x11800, 0x1182B, 0x118A0, 0x118DF, 0x118FF, 0x11906, 0x11909, 0x11909, 0x1190C, 0x11913,
    0x11915, 0x11916, 0x11918, 0x1192F, 0x1193F, 0x1193F, 0x11941, 0x11941, 0x119A0, 0x119A7,
    0x119AA, 0x119D0, 0x119E1, 0x119E1, 0x119E3, 0x119E3, 0x11A00, 0x11A00, 0x11A0B, 0x11A32,
    0x11A3A, 0x11A3A, 0x11A50, 0x11A50, 0x11A5C, 0x11A89, 0x11A9D, 0x11A9D, 0x11AB0, 0x11AF8,
    0x11C00, 0x11C08, 0x11C0A, 0x11C2E, 0x11C40, 0x11C40, 0x11C72, 0x11C8F, 0x11D00, 0x11D06,
    0x11D08, 0x11D09, 0x11D0B, 0x11D30, 0x11D46, 0x11D46, 0x11D60, 0x11D65, 0x11D67, 0x11D68,
    0x11D6A, 0x11D89, 0x11D98, 0x11D98, 0x11EE0, 0x11EF2, 0x11F02, 0x11F02, 0x11F04, 0x11F10,
    0x11F12, 0x11F33, 0x11FB0, 0x11FB0, 0x12000, 0x12399, 0x12480, 0x12543, 0x12F90, 0x12FF0,
    0x13000, 0x1342F, 0x13441, 0x13446, 0x14400, 0x14646, 0x16800, 0x16A38, 0x16A40, 0x16A5E,
    0x16A70, 0x16ABE, 0x16AD0, 0x16AED, 0x16B00, 0x16B2F, 0x16B40, 0x16B43, 0x16B63, 0x16B77,
    0x16B7D, 0x16B8F, 0x16E40, 0x16E7F, 0x16F00, 0x16F4A, 0x16F50, 0x16F50, 0x16F93, 0x16F9F,
    0x16FE0, 0x16FE1, 0x16FE3, 0x16FE3, 0x17000, 0x187F7, 0x18800, 0x18CD5, 0x18D00, 0x18D08,
    0x1AFF0, 0x1AFF3, 0x1AFF5, 0x1AFFB, 0x1AFFD, 0x1AFFE, 0x1B000, 0x1B122, 0x1B132, 0x1B132,
    0x1B150, 0x1B152, 0x1B155, 0x1B155, 0x1B164, 0x1B167, 0x1B170, 0x1B2FB, 0x1BC00, 0x1BC6A,
    0x1BC70, 0x1BC7C, 0x1BC80, 0x1BC88, 0x1BC90, 0x1BC99, 0x1D400, 0x1D454, 0x1D456, 0x1D49C,
    0x1D49E, 0x1D49F, 0x1D4A2, 0x1D4A2, 0x1D4A5, 0x1D4A6, 0x1D4A9, 0x1D4AC, 0x1D4AE, 0x1D4B9,
    0x1D4BB, 0x1D4BB, 0x1D4BD, 0x1D4C3, 0x1D4C5, 0x1D505, 0x1D507, 0x1D50A, 0x1D50D, 0x1D514,
    0x1D516, 0x1D51C, 0x1D51E, 0x1D539, 0x1D53B, 0x1D53E, 0x1D540, 0x1D544, 0x1D546, 0x1D546,
    0x1D54A, 0x1D550, 0x1D552, 0x1D6A5, 0x1D6A8, 0x1D6C0, 0x1D6C2, 0x1D6DA, 0x1D6DC, 0x1D6FA,
    0x1D6FC, 0x1D714, 0x1D716, 0x1D734, 0x1D736, 0x1D74E, 0x1D750, 0x1D76E, 0x1D770, 0x1D788,
    0x1D78A, 0x1D7A8, 0x1D7AA, 0x1D7C2, 0x1D7C4, 0x1D7CB, 0x1DF00, 0x1DF1E, 0x1DF25, 0x1DF2A,
    0x1E030, 0x1E06D, 0x1E100, 0x1E12C, 0x1E137, 0x1E13D, 0x1E14E, 0x1E14E, 0x1E290, 0x1E2AD,
    0x1E2C0, 0x1E2EB, 0x1E4D0, 0x1E4EB, 0x1E7E0, 0x1E7E6, 0x1E7E8, 0x1E7EB, 0x1E7ED, 0x1E7EE,
    0x1E7F0, 0x1E7FE, 0x1E800, 0x1E8C4, 0x1E900, 0x1E943, 0x1E94B, 0x1E94B, 0x1EE00, 0x1EE03,
    0x1EE05, 0x1EE1F, 0x1EE21, 0x1EE22, 0x1EE24, 0x1EE24, 0x1EE27, 0x1EE27, 0x1EE29, 0x1EE32,
    0x1EE34, 0x1EE37, 0x1EE39, 0x1EE39, 0x1EE3B, 0x1EE3B, 0x1EE42, 0x1EE42, 0x1EE47, 0x1EE47,
    0x1EE49, 0x1EE49, 0x1EE4B, 0x1EE4B, 0x1EE4D, 0x1EE4F, 0x1EE51, 0x1EE52, 0x1EE54, 0x1EE54,
    0x1EE57, 0x1EE57, 0x1EE59, 0x1EE59, 0x1EE5B, 0x1EE5B, 0x1EE5D, 0x1EE5D, 0x1EE5F, 0x1EE5F,
    0x1EE61, 0x1EE62, 0x1EE64, 0x1EE64, 0x1EE67, 0x1EE6A, 0x1EE6C, 0x1EE72, 0x1EE74, 0x1EE77,
    0x1EE79, 0x1EE7C, 0x1EE7E, 0x1EE7E, 0x1EE80, 0x1EE89, 0x1EE8B, 0x1EE9B, 0x1EEA1, 0x1EEA3,
    0x1EEA5, 0x1EEA9, 0x1EEAB, 0x1EEBB, 0x20000, 0x2A6DF, 0x2A700, 0x2B739, 0x2B740, 0x2B81D,
    0x2B820, 0x2CEA1, 0x2CEB0, 0x2EBE0, 0x2F800, 0x2FA1D, 0x30000, 0x3134A, 0x31350, 0x323AF,
];
static DIGIT_RANGES: [u32; 128] = [
    0x30, 0x39, 0x660, 0x669, 0x6F0, 0x6F9, 0x7C0, 0x7C9, 0x966, 0x96F, 0x9E6, 0x9EF, 0xA66, 0xA6F,
    0xAE6, 0xAEF, 0xB66, 0xB6F, 0xBE6, 0xBEF, 0xC66, 0xC6F, 0xCE6, 0xCEF, 0xD66, 0xD6F, 0xDE6,
    0xDEF, 0xE50, 0xE59, 0xED0, 0xED9, 0xF20, 0xF29, 0x1040, 0x1049, 0x1090, 0x1099, 0x17E0,
    0x17E9, 0x1810, 0x1819, 0x1946, 0x194F, 0x19D0, 0x19D9, 0x1A80, 0x1A89, 0x1A90, 0x1A99, 0x1B50,
    0x1B59, 0x1BB0, 0x1BB9, 0x1C40, 0x1C49, 0x1C50, 0x1C59, 0xA620, 0xA629, 0xA8D0, 0xA8D9, 0xA900,
    0xA909, 0xA9D0, 0xA9D9, 0xA9F0, 0xA9F9, 0xAA50, 0xAA59, 0xABF0, 0xABF9, 0xFF10, 0xFF19,
    0x104A0, 0x104A9, 0x10D30, 0x10D39, 0x11066, 0x1106F, 0x110F0, 0x110F9, 0x11136, 0x1113F,
    0x111D0, 0x111D9, 0x112F0, 0x112F9, 0x11450, 0x11459, 0x114D0, 0x114D9, 0x11650, 0x11659,
    0x116C0, 0x116C9, 0x11730, 0x11739, 0x118E0, 0x118E9, 0x11950, 0x11959, 0x11C50, 0x11C59,
    0x11D50, 0x11D59, 0x11DA0, 0x11DA9, 0x11F50, 0x11F59, 0x16A60, 0x16A69, 0x16AC0, 0x16AC9,
    0x16B50, 0x16B59, 0x1D7CE, 0x1D7FF, 0x1E140, 0x1E149, 0x1E2F0, 0x1E2F9, 0x1E4F0, 0x1E4F9,
    0x1E950, 0x1E959, 0x1FBF0, 0x1FBF9,
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// Run a table of `(input, expected)` through `process_word`; `None`
    /// expects an error.
    #[track_caller]
    fn check_words(lexer: &Lexer, vars: &dyn Env, cases: &[(&str, Option<&str>)]) {
        for (input, expected) in cases {
            let got = lexer.process_word(input, vars).map(|e| e.value);
            match expected {
                Some(want) => assert_eq!(got.as_deref(), Ok(*want), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    /// Run a table through `process_words`; `None` expects an error.
    #[track_caller]
    fn check_split(lexer: &Lexer, vars: &dyn Env, cases: &[(&str, Option<&[&str]>)]) {
        for (input, expected) in cases {
            let got = lexer.process_words(input, vars);
            match expected {
                Some(want) => {
                    let want: Vec<String> = want.iter().map(|w| (*w).to_owned()).collect();
                    assert_eq!(got, Ok(want), "input {input:?}");
                }
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    // -----------------------------------------------------------------------
    // BuildKit's own test data
    // -----------------------------------------------------------------------

    /// `frontend/dockerfile/shell/envVarTest` from moby/buildkit (Apache-2.0),
    /// as vendored in moby/moby (`vendor/github.com/moby/buildkit/...`),
    /// unmodified. Columns: platform (A all, U unix, W windows) | input |
    /// expected (`error` for an error). Run by BuildKit's
    /// `TestShellParser4EnvVars` with `PWD=/home SHELL=bash KOREAN=한국어 NULL=`.
    const ENV_VAR_TEST: &str = r##"
A|hello                    |     hello
A|he'll'o                  |     hello
A|he'llo                   |     error
A|he\'llo                  |     he'llo
A|he\\'llo                 |     error
A|abc\tdef                 |     abctdef
A|"abc\tdef"               |     abc\tdef
A|"abc\\tdef"              |     abc\tdef
A|'abc\tdef'               |     abc\tdef
A|hello\                   |     hello
A|hello\\                  |     hello\
A|"hello                   |     error
A|"hello\"                 |     error
A|"hel'lo"                 |     hel'lo
A|'hello                   |     error
A|'hello\'                 |     hello\
A|'hello\there'            |     hello\there
A|'hello\\there'           |     hello\\there
A|"''"                     |     ''
A|$.                       |     $.
A|he$1x                    |     hex
A|he$.x                    |     he$.x
# Next one is different on Windows as $pwd==$PWD
U|he$pwd.                  |     he.
W|he$pwd.                  |     he/home.
A|he$PWD                   |     he/home
A|he\$PWD                  |     he$PWD
A|he\\$PWD                 |     he\/home
A|"he\$PWD"                |     he$PWD
A|"he\\$PWD"               |     he\/home
A|\${}                     |     ${}
A|\${}aaa                  |     ${}aaa
A|he\${}                   |     he${}
A|he\${}xx                 |     he${}xx
A|${}                      |     error
A|${}aaa                   |     error
A|he${}                    |     error
A|he${}xx                  |     error
A|he${hi}                  |     he
A|he${hi}xx                |     hexx
A|he${PWD}                 |     he/home
A|he${.}                   |     error
A|he${XXX:-000}xx          |     he000xx
A|he${PWD:-000}xx          |     he/homexx
A|he${XXX:-$PWD}xx         |     he/homexx
A|he${XXX:-${PWD:-yyy}}xx  |     he/homexx
A|he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
A|he${XXX:YYY}             |     error
A|he${XXX?}                |     error
A|he${XXX:?}               |     error
A|he${PWD?}                |     he/home
A|he${PWD:?}               |     he/home
A|he${NULL?}               |     he
A|he${NULL:?}              |     error
A|he${XXX:+${PWD}}xx       |     hexx
A|he${PWD:+${XXX}}xx       |     hexx
A|he${PWD:+${SHELL}}xx     |     hebashxx
A|he${XXX:+000}xx          |     hexx
A|he${PWD:+000}xx          |     he000xx
A|'he${XX}'                |     he${XX}
A|"he${PWD}"               |     he/home
A|"he'$PWD'"               |     he'/home'
A|"$PWD"                   |     /home
A|'$PWD'                   |     $PWD
A|'\$PWD'                  |     \$PWD
A|'"hello"'                |     "hello"
A|he\$PWD                  |     he$PWD
A|"he\$PWD"                |     he$PWD
A|'he\$PWD'                |     he\$PWD
A|he${PWD                  |     error
A|he${PWD:=000}xx          |     error
A|he${PWD:+${PWD}:}xx      |     he/home:xx
A|he${XXX:-\$PWD:}xx       |     he$PWD:xx
A|he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
A|안녕하세요                 |     안녕하세요
A|안'녕'하세요               |     안녕하세요
A|안'녕하세요                |     error
A|안녕\'하세요               |     안녕'하세요
A|안\\'녕하세요              |     error
A|안녕\t하세요               |     안녕t하세요
A|"안녕\t하세요"             |     안녕\t하세요
A|'안녕\t하세요              |     error
A|안녕하세요\                |     안녕하세요
A|안녕하세요\\               |     안녕하세요\
A|"안녕하세요                |     error
A|"안녕하세요\"              |     error
A|"안녕'하세요"              |     안녕'하세요
A|'안녕하세요                |     error
A|'안녕하세요\'              |     안녕하세요\
A|안녕$1x                    |     안녕x
A|안녕$.x                    |     안녕$.x
# Next one is different on Windows as $pwd==$PWD
U|안녕$pwd.                  |     안녕.
W|안녕$pwd.                  |     안녕/home.
A|안녕$PWD                   |     안녕/home
A|안녕\$PWD                  |     안녕$PWD
A|안녕\\$PWD                 |     안녕\/home
A|안녕\${}                   |     안녕${}
A|안녕\${}xx                 |     안녕${}xx
A|안녕${}                    |     error
A|안녕${}xx                  |     error
A|안녕${hi}                  |     안녕
A|안녕${hi}xx                |     안녕xx
A|안녕${PWD}                 |     안녕/home
A|안녕${.}                   |     error
A|안녕${XXX:-000}xx          |     안녕000xx
A|안녕${PWD:-000}xx          |     안녕/homexx
A|안녕${XXX:-$PWD}xx         |     안녕/homexx
A|안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
A|안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
A|안녕${XXX:YYY}             |     error
A|안녕${XXX:+${PWD}}xx       |     안녕xx
A|안녕${PWD:+${XXX}}xx       |     안녕xx
A|안녕${PWD:+${SHELL}}xx     |     안녕bashxx
A|안녕${XXX:+000}xx          |     안녕xx
A|안녕${PWD:+000}xx          |     안녕000xx
A|'안녕${XX}'                |     안녕${XX}
A|"안녕${PWD}"               |     안녕/home
A|"안녕'$PWD'"               |     안녕'/home'
A|'"안녕"'                   |     "안녕"
A|안녕\$PWD                  |     안녕$PWD
A|"안녕\$PWD"                |     안녕$PWD
A|'안녕\$PWD'                |     안녕\$PWD
A|안녕${PWD                  |     error
A|안녕${PWD:=000}xx          |     error
A|안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
A|안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
A|안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
A|$KOREAN                    |     한국어
A|안녕$KOREAN                |     안녕한국어
A|${{aaa}                   |     error
A|${aaa}}                   |     }
A|${aaa                     |     error
A|${{aaa:-bbb}              |     error
A|${aaa:-bbb}}              |     bbb}
A|${aaa:-bbb                |     error
A|${aaa:-bbb}               |     bbb
A|${aaa:-${bbb:-ccc}}       |     ccc
A|${aaa:-bbb ${foo}         |     error
A|${aaa:-bbb {foo}          |     bbb {foo
A|${:}                      |     error
A|${:-bbb}                  |     error
A|${:+bbb}                  |     error

# Positional parameters won't be set:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_01
A|$1                        |
A|${1}                      |
A|${1:+bbb}                 |
A|${1:-bbb}                 |     bbb
A|$2                        |
A|${2}                      |
A|${2:+bbb}                 |
A|${2:-bbb}                 |     bbb
A|$3                        |
A|${3}                      |
A|${3:+bbb}                 |
A|${3:-bbb}                 |     bbb
A|$4                        |
A|${4}                      |
A|${4:+bbb}                 |
A|${4:-bbb}                 |     bbb
A|$5                        |
A|${5}                      |
A|${5:+bbb}                 |
A|${5:-bbb}                 |     bbb
A|$6                        |
A|${6}                      |
A|${6:+bbb}                 |
A|${6:-bbb}                 |     bbb
A|$7                        |
A|${7}                      |
A|${7:+bbb}                 |
A|${7:-bbb}                 |     bbb
A|$8                        |
A|${8}                      |
A|${8:+bbb}                 |
A|${8:-bbb}                 |     bbb
A|$9                        |
A|${9}                      |
A|${9:+bbb}                 |
A|${9:-bbb}                 |     bbb
A|$999                      |
A|${999}                    |
A|${999:+bbb}               |
A|${999:-bbb}               |     bbb
A|$999aaa                   |     aaa
A|${999}aaa                 |     aaa
A|${999:+bbb}aaa            |     aaa
A|${999:-bbb}aaa            |     bbbaaa
A|$001                      |
A|${001}                    |
A|${001:+bbb}               |
A|${001:-bbb}               |     bbb
A|$001aaa                   |     aaa
A|${001}aaa                 |     aaa
A|${001:+bbb}aaa            |     aaa
A|${001:-bbb}aaa            |     bbbaaa

# Special parameters won't be set in the Dockerfile:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_02
A|$@                        |
A|${@}                      |
A|${@:+bbb}                 |
A|${@:-bbb}                 |     bbb
A|$@@@                      |     @@
A|$@aaa                     |     aaa
A|${@}aaa                   |     aaa
A|${@:+bbb}aaa              |     aaa
A|${@:-bbb}aaa              |     bbbaaa
A|$*                        |
A|${*}                      |
A|${*:+bbb}                 |
A|${*:-bbb}                 |     bbb
A|$#                        |
A|${#}                      |
A|${#:+bbb}                 |
A|${#:-bbb}                 |     bbb
A|$?                        |
A|${?}                      |
A|${?:+bbb}                 |
A|${?:-bbb}                 |     bbb
A|$-                        |
A|${-}                      |
A|${-:+bbb}                 |
A|${-:-bbb}                 |     bbb
A|$$                        |
A|${$}                      |
A|${$:+bbb}                 |
A|${$:-bbb}                 |     bbb
A|$!                        |
A|${!}                      |
A|${!:+bbb}                 |
A|${!:-bbb}                 |     bbb
A|$0                        |
A|${0}                      |
A|${0:+bbb}                 |
A|${0:-bbb}                 |     bbb
"##;

    fn env_var_test_env() -> Vec<String> {
        ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// The non-Windows lines of `ENV_VAR_TEST`, with `map` applied to input
    /// and expected value.
    fn env_var_test_cases(map: impl Fn(&str) -> String) -> Vec<(String, Option<String>)> {
        let mut cases = Vec::new();
        for line in ENV_VAR_TEST.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.trim().split('|').collect();
            assert_eq!(fields.len(), 3, "bad line {line:?}");
            let platform = fields[0].trim();
            assert!(
                matches!(platform, "A" | "U" | "W"),
                "bad platform in {line:?}"
            );
            if platform == "W" {
                continue;
            }
            let expected = fields[2].trim();
            let expected = (expected != "error").then(|| map(expected));
            cases.push((map(fields[1].trim()), expected));
        }
        cases
    }

    #[test]
    fn buildkit_env_var_test_file() {
        let vars = env_var_test_env();
        let cases = env_var_test_cases(str::to_owned);
        assert_eq!(cases.len(), 228);
        let lexer = Lexer::new('\\');
        for (input, expected) in &cases {
            let got = lexer.process_word(input, &vars.as_slice()).map(|e| e.value);
            match expected {
                Some(want) => assert_eq!(got.as_ref(), Ok(want), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
            // ProcessWords parses the same way: it fails exactly when
            // ProcessWord does.
            assert_eq!(
                lexer.process_words(input, &vars.as_slice()).is_err(),
                expected.is_none(),
                "input {input:?}"
            );
        }
    }

    /// The same file with the escape character swapped for `` ` `` in both
    /// columns (no line uses a backtick): every escape rule must follow the
    /// escape directive.
    #[test]
    fn buildkit_env_var_test_file_with_backtick_escape() {
        let vars = env_var_test_env();
        let cases = env_var_test_cases(|s| s.replace('\\', "`"));
        let lexer = Lexer::new('`');
        for (input, expected) in &cases {
            let got = lexer.process_word(input, &vars.as_slice()).map(|e| e.value);
            match expected {
                Some(want) => assert_eq!(got.as_ref(), Ok(want), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    enum WordsStep {
        Env(&'static str),
        Case(&'static str, &'static [&'static str]),
    }

    /// `frontend/dockerfile/shell/wordsTest` (BuildKit's
    /// `TestShellParser4Words`): `ENV` lines add to the environment, other
    /// lines are `input | words` (comma separated, `error` for an error).
    /// Taken from moby/moby's `builder/dockerfile/wordsTest`, with the line
    /// `hello" there` expecting `error` as BuildKit's current lexer (and its
    /// copy of the file) does; the file's "MUST have 3 trailing spaces"
    /// lines are written out with their spaces.
    const WORDS_TEST: &[WordsStep] = &[
        WordsStep::Case("hello", &["hello"]),
        WordsStep::Case("hello${hi}bye", &["hellobye"]),
        WordsStep::Env("hi=hi"),
        WordsStep::Case("hello${hi}bye", &["hellohibye"]),
        WordsStep::Env("space=abc  def"),
        WordsStep::Case("hello${space}bye", &["helloabc", "defbye"]),
        WordsStep::Case("hello\"${space}\"bye", &["helloabc  defbye"]),
        WordsStep::Case("hello \"${space}\"bye", &["hello", "abc  defbye"]),
        WordsStep::Env("leading=  ab c"),
        WordsStep::Case("hello${leading}def", &["hello", "ab", "cdef"]),
        WordsStep::Case("hello\"${leading}\" def", &["hello  ab c", "def"]),
        WordsStep::Case("hello\"${leading}\"", &["hello  ab c"]),
        WordsStep::Case("hello${leading}", &["hello", "ab", "c"]),
        WordsStep::Env("trailing=ab c   "),
        WordsStep::Case("hello${trailing}", &["helloab", "c"]),
        WordsStep::Case("hello${trailing}d", &["helloab", "c", "d"]),
        WordsStep::Case("hello\"${trailing}\"d", &["helloab c   d"]),
        WordsStep::Case("hel\"lo${trailing}\"", &["helloab c   "]),
        WordsStep::Case("hello\" there  \"", &["hello there  "]),
        WordsStep::Case("hello there     ", &["hello", "there"]),
        WordsStep::Case("hello\\ there", &["hello there"]),
        WordsStep::Case("hello\" there", &["error"]),
        WordsStep::Case("hello\\\" there", &["hello\"", "there"]),
    ];

    #[test]
    fn buildkit_words_test_file() {
        let lexer = Lexer::new('\\');
        let mut vars: Vec<String> = Vec::new();
        for step in WORDS_TEST {
            match step {
                WordsStep::Env(entry) => vars.push((*entry).to_owned()),
                WordsStep::Case(input, expected) => {
                    let got = lexer
                        .process_words(input, &vars.as_slice())
                        .unwrap_or_else(|_| vec!["error".to_owned()]);
                    assert_eq!(got, *expected, "input {input:?}");
                }
            }
        }
    }

    struct MatchCase {
        input: &'static str,
        env: &'static [(&'static str, &'static str)],
        /// `None`: an error is expected (BuildKit then checks nothing else).
        expected: Option<&'static str>,
        matched: &'static [&'static str],
        unmatched: &'static [&'static str],
    }

    const fn ok(
        input: &'static str,
        env: &'static [(&'static str, &'static str)],
        expected: &'static str,
        matched: &'static [&'static str],
        unmatched: &'static [&'static str],
    ) -> MatchCase {
        MatchCase {
            input,
            env,
            expected: Some(expected),
            matched,
            unmatched,
        }
    }

    const fn fails(input: &'static str, env: &'static [(&'static str, &'static str)]) -> MatchCase {
        MatchCase {
            input,
            env,
            expected: None,
            matched: &[],
            unmatched: &[],
        }
    }

    const FOO_BAR: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];

    /// BuildKit's `TestProcessWithMatches` (`lex_test.go`), case for case.
    const PROCESS_WITH_MATCHES: &[MatchCase] = &[
        ok("x", &[("DUMMY", "dummy")], "x", &[], &[]),
        ok("x ${UNUSED}", &[("DUMMY", "dummy")], "x ", &[], &["UNUSED"]),
        ok("x ${FOO}", &[("FOO", "y")], "x y", &["FOO"], &[]),
        ok(
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            FOO_BAR,
            "xxx  ccc",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ok(
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            FOO_BAR,
            "xxx bbb ccc",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ok("${FOO:-}", FOO_BAR, "xxx", &["FOO"], &[]),
        ok("${FOO:-}", &[], "", &[], &["FOO"]),
        ok(
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            FOO_BAR,
            "aaa bbb ",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ok(
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            FOO_BAR,
            "aaa  ",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ok("${FOO?aaa}", FOO_BAR, "xxx", &["FOO"], &[]),
        ok("${BAR?bbb}", FOO_BAR, "", &["BAR"], &[]),
        fails("${BAZ?ccc}", FOO_BAR),
        ok("${FOO:?aaa}", FOO_BAR, "xxx", &["FOO"], &[]),
        fails("${BAR:?bbb}", FOO_BAR),
        fails("${BAZ:?ccc}", FOO_BAR),
        fails("${BAZ:?}", FOO_BAR),
        fails("${FOO=aaa}", FOO_BAR),
        fails("${FOO=:aaa}", FOO_BAR),
        fails("${FOO=}", &[]),
        // Regular-expression characters in patterns; `}` must be escaped so
        // that it does not close the `${`.
        ok(
            r"${FOO#()[]{\}^$.\*\?|\\}",
            &[("FOO", r"()[]{}^$.*?|\x")],
            "x",
            &["FOO"],
            &[],
        ),
        ok(r"${FOO%%\**}", &[("FOO", "xx**")], "xx", &["FOO"], &[]),
        ok("${FOO#*x*y}", &[("FOO", "xxyy")], "y", &["FOO"], &[]),
        ok("${FOO#*}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ok(
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "x")],
            "xyy",
            &["FOO", "BAR"],
            &[],
        ),
        ok(
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            "xxyy",
            &["FOO", "BAR"],
            &[],
        ),
        ok("${FOO#}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ok("${FOO##*x}", &[("FOO", "xxyy")], "yy", &["FOO"], &[]),
        ok("${FOO##}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ok(r"${FOO#?\?}", &[("FOO", "???y")], "?y", &["FOO"], &[]),
        ok(
            "${ABC:-.}${FOO%x}${ABC:-.}",
            &[("FOO", "xxyy")],
            ".xxyy.",
            &["FOO"],
            &["ABC"],
        ),
        ok(r"${FOO%%\**\*}", &[("FOO", "a***yy*")], "a", &["FOO"], &[]),
        ok("${FOO%}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ok(
            "${FOO%%$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            "xxyy",
            &["FOO", "BAR"],
            &[],
        ),
        fails("${FOO:#}", &[]),
        fails("${FOO:##}", &[]),
        fails("${FOO:%}", &[]),
        fails("${FOO:%%}", &[]),
        // Wildcards.
        ok(
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
            "/foo.*/*.txt - /foo..*.txt",
            &["FOO", "NEEDLE"],
            &[],
        ),
        // `/` in patterns.
        ok(
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "/tmp/bar.txt - /bar.txt",
            &["FOO", "NEEDLE"],
            &[],
        ),
        ok(
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "/a/foo/b/c.txt"),
                ("NEEDLE", "/?/"),
                ("REPLACEMENT", "/"),
            ],
            "/foo/b/c.txt - /foo/c.txt",
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        ok(
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("REPLACEMENT", "https://"),
            ],
            "https://google.de",
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        // Escaped separator characters.
        ok(
            r"${FOO//\//\/}",
            &[("FOO", "/tmp/foo.txt")],
            r"\/tmp\/foo.txt",
            &["FOO"],
            &[],
        ),
        // "Not guaranteed behaviour" in BuildKit, tested there so that partial
        // input cannot crash.
        ok(
            "${FOO/$BAR/ww}",
            &[("FOO", "xxyy"), ("BAR", "")],
            "wwxxyy",
            &["FOO", "BAR"],
            &[],
        ),
        fails("${FOO//ww}", &[("FOO", "xxyy")]),
        fails("${FOO//}", &[("FOO", "xxyy")]),
        ok("${FOO///}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ok("${FOO///}", &[], "", &[], &["FOO"]),
    ];

    #[test]
    fn buildkit_process_with_matches() {
        let lexer = Lexer::new('\\');
        for case in PROCESS_WITH_MATCHES {
            let vars = env(case.env);
            let got = lexer.process_word(case.input, &vars);
            match case.expected {
                None => assert!(got.is_err(), "input {:?} gave {got:?}", case.input),
                Some(want) => {
                    let got = got.unwrap_or_else(|e| panic!("input {:?}: {e}", case.input));
                    assert_eq!(got.value, want, "input {:?}", case.input);
                    assert_eq!(got.matched, set(case.matched), "input {:?}", case.input);
                    assert_eq!(got.unmatched, set(case.unmatched), "input {:?}", case.input);
                }
            }
        }
    }

    /// BuildKit's `TestProcessWithMatchesPlatform`: the release file name
    /// pattern with and without a variant.
    #[test]
    fn buildkit_process_with_matches_platform() {
        let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let lexer = Lexer::new('\\');
        let cases: [(&[(&str, &str)], &str); 3] = [
            (
                &[
                    ("VERSION", "v1.2.3"),
                    ("TARGETOS", "linux"),
                    ("TARGETARCH", "arm"),
                    ("TARGETVARIANT", "v7"),
                ],
                "something-v1.2.3.linux-arm-v7.tar.gz",
            ),
            (
                &[
                    ("VERSION", "v1.2.3"),
                    ("TARGETOS", "linux"),
                    ("TARGETARCH", "arm64"),
                    ("TARGETVARIANT", ""),
                ],
                "something-v1.2.3.linux-arm64.tar.gz",
            ),
            (
                &[
                    ("VERSION", "v1.2.3"),
                    ("TARGETOS", "linux"),
                    ("TARGETARCH", "arm64"),
                ],
                "something-v1.2.3.linux-arm64.tar.gz",
            ),
        ];
        for (vars, want) in cases {
            let got = lexer.process_word(release, &env(vars)).map(|e| e.value);
            assert_eq!(got.as_deref(), Ok(want));
        }
    }

    /// BuildKit's `TestShellParserMandatoryEnvVars`.
    #[test]
    fn buildkit_mandatory_env_vars() {
        let lexer = Lexer::new('\\');
        let strings = |s: &[&str]| s.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>();
        let set_envs = strings(&["VAR=plain", "ARG=x"]);
        let empty_envs = strings(&["VAR=", "ARG=x"]);
        let unset_envs = strings(&["ARG=x"]);
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        let required = |offset| ExpandError::Required {
            name: "VAR".to_owned(),
            message: "message herex".to_owned(),
            offset,
        };

        let value =
            |word, vars: &Vec<String>| lexer.process_word(word, &vars.as_slice()).map(|e| e.value);
        assert_eq!(value(no_empty, &set_envs), Ok("plain".to_owned()));
        assert_eq!(value(no_empty, &empty_envs), Err(required(0)));
        assert_eq!(value(no_empty, &unset_envs), Err(required(0)));
        assert_eq!(value(no_unset, &set_envs), Ok("plain".to_owned()));
        assert_eq!(value(no_unset, &empty_envs), Ok(String::new()));
        assert_eq!(value(no_unset, &unset_envs), Err(required(0)));
        assert!(
            value(no_empty, &unset_envs)
                .unwrap_err()
                .to_string()
                .contains("message herex")
        );
    }

    /// BuildKit's `TestGetEnv`: a `NAME=value` list, last entry wins, no `=`
    /// means empty.
    #[test]
    fn buildkit_get_env() {
        let list = |s: &[&str]| s.iter().map(|e| (*e).to_owned()).collect::<Vec<String>>();
        assert_eq!(Env::get(list(&[]).as_slice(), "foo"), None);
        assert_eq!(Env::get(list(&["foo"]).as_slice(), "foo"), Some(""));
        assert_eq!(Env::get(list(&["foo="]).as_slice(), "foo"), Some(""));
        assert_eq!(Env::get(list(&["foo=bar"]).as_slice(), "foo"), Some("bar"));
        let two = list(&["foo=bar", "car=hat"]);
        assert_eq!(Env::get(two.as_slice(), "foo"), Some("bar"));
        assert_eq!(Env::get(two.as_slice(), "car"), Some("hat"));
        assert_eq!(
            Env::get(list(&["foo=bar", "car=hat", "car=bike"]).as_slice(), "car"),
            Some("bike")
        );
        assert_eq!(Env::get(list(&["a=b=c"]).as_slice(), "a"), Some("b=c"));
        assert_eq!(Env::get(list(&["FOO=x"]).as_slice(), "foo"), None);
    }

    /// With `Env` in scope (as here), `Vec::get(index)` and
    /// `BTreeMap::get(key)` must still be the inherent methods.
    #[test]
    fn env_trait_does_not_shadow_collection_get() {
        let words: Vec<String> = ["a", "b"].iter().map(|w| (*w).to_owned()).collect();
        assert_eq!(words.get(1).map(String::as_str), Some("b"));
        let pairs: Vec<(String, String)> = words.iter().map(|w| (w.clone(), w.clone())).collect();
        assert_eq!(pairs.get(1).map(|(k, _)| k.as_str()), Some("b"));
        let map = env(&[("k", "v")]);
        assert_eq!(map.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn env_pairs_map_and_slices_agree() {
        let pairs: Vec<(String, String)> = vec![
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "2".to_owned()),
            ("A".to_owned(), "3".to_owned()),
        ];
        assert_eq!(Env::get(pairs.as_slice(), "A"), Some("3"));
        assert_eq!(Env::get(pairs.as_slice(), "B"), Some("2"));
        assert_eq!(Env::get(pairs.as_slice(), "C"), None);
        let slice: &[(String, String)] = &pairs;
        let lexer = Lexer::default();
        assert_eq!(
            lexer.process_word("$A$B", &slice).map(|e| e.value),
            Ok("32".to_owned())
        );
        let map = env(&[("A", "3"), ("B", "2")]);
        assert_eq!(
            lexer.process_word("$A$B", &map).map(|e| e.value),
            Ok("32".to_owned())
        );
        let strings = vec!["A=1".to_owned(), "A=3".to_owned(), "B=2".to_owned()];
        let strings_slice: &[String] = &strings;
        assert_eq!(
            lexer.process_word("$A$B", &strings_slice).map(|e| e.value),
            Ok("32".to_owned())
        );
        assert_eq!(
            lexer.process_word("$A$B", &NoEnv).map(|e| e.value),
            Ok(String::new())
        );
    }

    /// BuildKit's `TestReversePattern`.
    #[test]
    fn buildkit_reverse_pattern() {
        let cases = [
            (r"a\*c", r"c\*a"),
            (r"\\\ab", r"b\a\\"),
            (r"ab\", r"\ba"),
            (r"👽\🚀🖖", r"🖖\🚀👽"),
            (r"\\b", r"b\\"),
        ];
        for (pattern, want) in cases {
            assert_eq!(reverse_pattern(pattern), want, "pattern {pattern:?}");
        }
    }

    /// BuildKit's `TestConvertShellPatternToRegex`, restated for the compiled
    /// items instead of the regular-expression text.
    #[test]
    fn buildkit_convert_shell_pattern() {
        use Item::{Any, Literal, Star};
        assert_eq!(compile_pattern("*"), Ok(vec![Star]));
        assert_eq!(compile_pattern("?"), Ok(vec![Any]));
        assert_eq!(compile_pattern(r"\*"), Ok(vec![Literal('*')]));
        let specials: Vec<Item> = r"(()[]{}^$.*?|\".chars().map(Literal).collect();
        assert_eq!(compile_pattern(r"(()[]{\}^$.\*\?|\\"), Ok(specials));
        // Invalid escapes.
        assert_eq!(compile_pattern(r"\"), Err(None));
        assert_eq!(compile_pattern(r"\x"), Err(Some('x')));
        assert_eq!(compile_pattern(r"\\\"), Err(None));
        // `\/` drops the backslash; runs of stars merge; a leading byte
        // order mark is dropped.
        assert_eq!(
            compile_pattern(r"a\/b"),
            Ok(vec![Literal('a'), Literal('/'), Literal('b')])
        );
        assert_eq!(compile_pattern("***a"), Ok(vec![Star, Literal('a')]));
        assert_eq!(compile_pattern("\u{feff}a"), Ok(vec![Literal('a')]));
    }

    /// BuildKit's `TestReverseString`, on the suffix trimming that uses it.
    #[test]
    fn buildkit_reverse_string() {
        assert_eq!(trim_suffix("", "54321", false), Ok("54321".to_owned()));
        assert_eq!(trim_suffix("👽", "🖖🚀👽", false), Ok("🖖🚀".to_owned()));
    }

    // -----------------------------------------------------------------------
    // One table per form. Cases marked "reference" come from the Dockerfile
    // reference (frontend/dockerfile/docs/reference.md, "Environment
    // replacement"); the rest work out BuildKit's code by hand.
    // -----------------------------------------------------------------------

    fn common_env() -> BTreeMap<String, String> {
        env(&[
            ("FOO", "/bar"),
            ("EMPTY", ""),
            ("SPACE", "a b"),
            ("STR", "foobarbaz"),
            ("B", "b"),
            ("V", "/usr/local/bin/bash"),
            ("FILE", "backup.tar.gz"),
            ("STAR", "a*b?c"),
            ("NL", "ab\ncd"),
            ("BR", "}x"),
            ("U", "héllo wörld"),
            ("SLASH", "/"),
            ("AB", "ab"),
            ("안녕", "hi"),
        ])
    }

    #[test]
    fn plain_references() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("$FOO", Some("/bar")),
                ("${FOO}", Some("/bar")),
                // reference: braces delimit the name.
                ("${FOO}_bar", Some("/bar_bar")),
                ("$FOO_bar", Some("")),
                ("$FOO/x", Some("/bar/x")),
                ("$FOO$FOO", Some("/bar/bar")),
                ("$UNSET", Some("")),
                ("a${UNSET}b", Some("ab")),
                ("$EMPTY", Some("")),
                ("$안녕", Some("hi")),
                // `$` followed by no name is literal.
                ("$", Some("$")),
                ("a$", Some("a$")),
                ("$ x", Some("$ x")),
                ("$/", Some("$/")),
                ("$%", Some("$%")),
                (r"$\FOO", Some("$FOO")),
                // Positional and special parameters are names, never set.
                ("$1", Some("")),
                ("$10x", Some("x")),
                ("${10}x", Some("x")),
                ("$@x", Some("x")),
                ("$#x", Some("x")),
                ("$$", Some("")),
                ("$$$", Some("$")),
                ("$0abc", Some("abc")),
                ("${#FOO}", None),
                // Go's letter and digit classes, not Rust's wider ones:
                // superscript two is not a digit, a Roman numeral is not a
                // letter, Arabic-Indic digits are digits.
                ("$FOO²", Some("/bar²")),
                ("$Ⅻ", Some("$Ⅻ")),
                ("$٣x", Some("x")),
                ("$_", Some("")),
                ("$ª", Some("")),
                // A byte order mark opening the word is dropped.
                ("\u{feff}$FOO", Some("/bar")),
                ("a\u{feff}", Some("a\u{feff}")),
            ],
        );
    }

    #[test]
    fn reference_examples() {
        let vars = env(&[("FOO", "/bar"), ("foo", "/bar"), ("variable", "value")]);
        check_words(
            &Lexer::new('\\'),
            &vars,
            &[
                // ENV FOO=/bar; WORKDIR ${FOO}; ADD . $FOO; COPY \$FOO /quux
                ("${FOO}", Some("/bar")),
                ("$FOO", Some("/bar")),
                (r"\$FOO", Some("$FOO")),
                (r"\${foo}", Some("${foo}")),
                ("${variable:-word}", Some("value")),
                ("${unset:-word}", Some("word")),
                ("${variable:+word}", Some("word")),
                ("${unset:+word}", Some("")),
                // The reference claims `$DIRNAME` stays literal in WORKDIR;
                // BuildKit expands it to nothing.
                ("$DIRNAME", Some("")),
            ],
        );
        // The pre-release modifiers, with `str=foobarbaz`.
        let vars = env(&[("str", "foobarbaz")]);
        check_words(
            &Lexer::new('\\'),
            &vars,
            &[
                ("${str#f*b}", Some("arbaz")),
                ("${str##f*b}", Some("az")),
                ("${str%b*}", Some("foobar")),
                ("${str%%b*}", Some("foo")),
                ("${str/ba/fo}", Some("fooforbaz")),
                ("${str//ba/fo}", Some("fooforfoz")),
            ],
        );
    }

    #[test]
    fn default_value_forms() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("${FOO:-x}", Some("/bar")),
                ("${EMPTY:-x}", Some("x")),
                ("${UNSET:-x}", Some("x")),
                ("${FOO-x}", Some("/bar")),
                ("${EMPTY-x}", Some("")),
                ("${UNSET-x}", Some("x")),
                ("${UNSET:-}", Some("")),
                ("${UNSET-a b}", Some("a b")),
                ("${UNSET:-'a  b'}", Some("a  b")),
                (r"${UNSET:-\}}", Some("}")),
                (r"${UNSET:-a\b}", Some("ab")),
                ("${UNSET:-\"}\"}", Some("}")),
                ("${UNSET:-x}}", Some("x}")),
                ("${UNSET:-{x}", Some("{x")),
                ("${UNSET:-$}", Some("$")),
                ("${UNSET:-x", None),
                ("${UNSET:-", None),
                ("${UNSET:", None),
                ("${UNSET", None),
            ],
        );
    }

    #[test]
    fn alternative_value_forms() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("${FOO:+x}", Some("x")),
                ("${EMPTY:+x}", Some("")),
                ("${UNSET:+x}", Some("")),
                ("${FOO+x}", Some("x")),
                ("${EMPTY+x}", Some("x")),
                ("${UNSET+x}", Some("")),
                ("${FOO:+}", Some("")),
                ("${FOO:+$FOO$FOO}", Some("/bar/bar")),
                ("-${FOO:+--flag=$FOO}", Some("---flag=/bar")),
            ],
        );
    }

    #[test]
    fn required_value_forms() {
        let vars = common_env();
        let lexer = Lexer::new('\\');
        check_words(
            &lexer,
            &vars,
            &[
                ("${FOO:?msg}", Some("/bar")),
                ("${FOO?msg}", Some("/bar")),
                ("${EMPTY?msg}", Some("")),
                ("${EMPTY:?msg}", None),
                ("${UNSET?msg}", None),
                ("${UNSET:?msg}", None),
            ],
        );
        let err = |word: &str| lexer.process_word(word, &vars).unwrap_err();
        let required = |name: &str, message: &str, offset| ExpandError::Required {
            name: name.to_owned(),
            message: message.to_owned(),
            offset,
        };
        assert_eq!(
            err("ab${UNSET?}"),
            required("UNSET", "is not allowed to be unset", 2)
        );
        assert_eq!(
            err("${UNSET:?}"),
            required("UNSET", "is not allowed to be unset", 0)
        );
        assert_eq!(
            err("${EMPTY:?}"),
            required("EMPTY", "is not allowed to be empty", 0)
        );
        assert_eq!(
            err("${UNSET?must be set, see $FOO}"),
            required("UNSET", "must be set, see /bar", 0)
        );
        assert_eq!(
            err("${UNSET:?'quoted  msg'}"),
            required("UNSET", "quoted  msg", 0)
        );
        assert_eq!(
            err("x ${UNSET?}").to_string(),
            "UNSET: is not allowed to be unset"
        );
    }

    #[test]
    fn prefix_removal_forms() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("${V#/}", Some("usr/local/bin/bash")),
                ("${V#*/}", Some("usr/local/bin/bash")),
                ("${V##*/}", Some("bash")),
                ("${V#/*/}", Some("local/bin/bash")),
                ("${V##/*/}", Some("bash")),
                ("${V#x}", Some("/usr/local/bin/bash")),
                ("${V#usr}", Some("/usr/local/bin/bash")),
                ("${V#}", Some("/usr/local/bin/bash")),
                ("${V##}", Some("/usr/local/bin/bash")),
                ("${V#?}", Some("usr/local/bin/bash")),
                ("${V#??}", Some("sr/local/bin/bash")),
                ("${V#$SLASH}", Some("usr/local/bin/bash")),
                ("${V#'/usr'}", Some("/local/bin/bash")),
                // Quotes do not make `*` literal (they do in a shell).
                ("${V#\"*\"/}", Some("usr/local/bin/bash")),
                (r"${STAR#a\*}", Some("b?c")),
                ("${STAR#a*}", Some("*b?c")),
                ("${STAR##a*}", Some("")),
                (r"${STAR#*\?}", Some("c")),
                (r"${BR#\}}", Some("x")),
                ("${U#h?}", Some("llo wörld")),
                ("${U#*ö}", Some("rld")),
                // `?` and `*` never match a newline.
                ("${NL#*}", Some("ab\ncd")),
                ("${NL##*}", Some("\ncd")),
                ("${NL#ab?}", Some("ab\ncd")),
                ("${NL##*d}", Some("ab\ncd")),
                ("${NL#ab\n}", Some("cd")),
                ("${UNSET#x}", Some("")),
                // The doubled `#` is looked for after expansion.
                ("${STR#$HASH}", Some("foobarbaz")),
                (r"${V#\x}", None),
                ("${V:#x}", None),
                ("${V:##x}", None),
                ("${V#x", None),
            ],
        );
        let vars = env(&[("V", "##ab"), ("HASH", "#")]);
        check_words(
            &Lexer::new('\\'),
            &vars,
            &[
                // The expanded word `#` counts as `##` with an empty pattern.
                ("${V#$HASH}", Some("##ab")),
                ("${V#$HASH$HASH}", Some("#ab")),
                ("${V##$HASH}", Some("#ab")),
                // Pattern words keep their escapes, and `\$` is not a pattern
                // escape.
                ("${V#\\$HASH}", None),
            ],
        );
    }

    #[test]
    fn suffix_removal_forms() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("${FILE%.*}", Some("backup.tar")),
                ("${FILE%%.*}", Some("backup")),
                ("${FILE%gz}", Some("backup.tar.")),
                ("${FILE%.tar}", Some("backup.tar.gz")),
                ("${FILE%?}", Some("backup.tar.g")),
                ("${FILE%??}", Some("backup.tar.")),
                ("${FILE%}", Some("backup.tar.gz")),
                ("${FILE%%}", Some("backup.tar.gz")),
                ("${V%/*}", Some("/usr/local/bin")),
                ("${V%%/*}", Some("")),
                ("${V%b*h}", Some("/usr/local/bin/")),
                ("${V%%b*h}", Some("/usr/local/")),
                (r"${STAR%\?c}", Some("a*b")),
                (r"${STAR%%\**}", Some("a")),
                ("${STAR%%*}", Some("")),
                ("${NL%%*}", Some("ab\n")),
                ("${NL%*}", Some("ab\ncd")),
                ("${U%ö*}", Some("héllo w")),
                ("${U%%l*}", Some("hé")),
                ("${UNSET%x}", Some("")),
                (r"${FILE%\x}", None),
                ("${FILE:%x}", None),
                ("${FILE:%%x}", None),
            ],
        );
    }

    #[test]
    fn replacement_forms() {
        let mut vars = common_env();
        for (name, value) in [
            ("R", "[$0]"),
            ("R2", "$$"),
            ("R3", "${0}"),
            ("R4", "$1x"),
            ("R5", "$"),
            ("R6", "${0"),
            ("R7", "$00"),
            ("NEEDLE", "ba"),
            ("REP", "-"),
            ("TMP", "/tmp/foo.txt"),
        ] {
            vars.insert(name.to_owned(), value.to_owned());
        }
        check_words(
            &Lexer::new('\\'),
            &vars,
            &[
                ("${STR/ba/fo}", Some("fooforbaz")),
                ("${STR//ba/fo}", Some("fooforfoz")),
                ("${STR/a*/X}", Some("foobX")),
                ("${STR//o/0}", Some("f00barbaz")),
                ("${STR/x/y}", Some("foobarbaz")),
                ("${STR//?/.}", Some(".........")),
                ("${STR/ba}", None),
                ("${STR/ba/}", Some("foorbaz")),
                ("${STR/$NEEDLE/$REP}", Some("foo-rbaz")),
                ("${STR//$NEEDLE/$REP}", Some("foo-r-z")),
                // No `/#` or `/%` anchors: `#` is a literal character.
                ("${STR/#foo/X}", Some("foobarbaz")),
                ("${STR/%baz/X}", Some("foobarbaz")),
                // `$$` in the word is the (unset) special parameter `$`.
                ("${STR//a/$$}", Some("foobrbz")),
                // `//` runs the replacement through Go's Regexp.Expand...
                ("${STR//a/$R}", Some("foob[a]rb[a]z")),
                ("${STR//a/$R2}", Some("foob$rb$z")),
                ("${STR//a/$R3}", Some("foobarbaz")),
                ("${STR//a/$R4}", Some("foobrbz")),
                ("${STR//a/$R5}", Some("foob$rb$z")),
                ("${STR//a/$R6}", Some("foob${0rb${0z")),
                ("${STR//a/$R7}", Some("foobrbz")),
                // ...while `/` inserts it as it is.
                ("${STR/a/$R}", Some("foob[$0]rbaz")),
                // Empty matches: Go replaces at each position, but not right
                // after a previous match.
                ("${AB///-}", Some("-a-b-")),
                ("${AB//*/-}", Some("-")),
                ("${AB//x*/-}", Some("ab")),
                ("${EMPTY///-}", Some("-")),
                ("${AB//?/-}", Some("--")),
                ("${U//ö/o}", Some("héllo world")),
                ("${U//?/.}", Some("...........")),
                // The replacement keeps its escapes, the pattern drops the one
                // before `/`.
                (r"${TMP//\//\/}", Some(r"\/tmp\/foo.txt")),
                (r"${TMP/\/tmp/}", Some("/foo.txt")),
                ("${NL//*/x}", Some("x\nx")),
                ("${UNSET/a/b}", Some("")),
                (r"${STR/\q/x}", None),
                ("${STR/a", None),
                ("${STR//a", None),
                ("${STR/a/b", None),
            ],
        );
    }

    #[test]
    fn nested_words() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("${A:-${B}-x}", Some("b-x")),
                ("${A:-${A:-${B:-c}}}", Some("b")),
                ("${A:-${A:-${A:-c}}}", Some("c")),
                ("${A:+${B}/${B}}", Some("")),
                ("${B:+${B}/${B}}", Some("b/b")),
                ("${STR#${B:-x}}", Some("foobarbaz")),
                ("${STR#foo${B}}", Some("arbaz")),
                ("${STR/${B}/${B}${B}}", Some("foobbarbaz")),
                ("${A:-\"${B} ${B}\"}", Some("b b")),
                ("${A:-'${B}'}", Some("${B}")),
                ("\"${A:-${C:-\"x y\"}}\"", Some("x y")),
                ("${A:-${B}", None),
                ("${A:-${B:-x}", None),
            ],
        );
    }

    #[test]
    fn single_quotes() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("'a b'", Some("a b")),
                ("'$FOO'", Some("$FOO")),
                ("'${FOO'", Some("${FOO")),
                (r"'\'", Some(r"\")),
                (r"'a\nb'", Some(r"a\nb")),
                ("'a\"b'", Some("a\"b")),
                ("''", Some("")),
                ("'a\nb'", Some("a\nb")),
                ("'abc", None),
                ("abc'", None),
            ],
        );
    }

    #[test]
    fn double_quotes() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                ("\"a b\"", Some("a b")),
                ("\"$FOO\"", Some("/bar")),
                ("\"${FOO}x\"", Some("/barx")),
                ("\"$SPACE\"", Some("a b")),
                (r#""a\b""#, Some(r"a\b")),
                (r#""a\"b""#, Some("a\"b")),
                (r#""a\\b""#, Some(r"a\b")),
                (r#""a\$FOO""#, Some("a$FOO")),
                (r#""a\`b""#, Some(r"a\`b")),
                ("\"a'b'\"", Some("a'b'")),
                ("\"\"", Some("")),
                ("\"a<<  b\"", Some("a<<  b")),
                ("\"abc", None),
                (r#""abc\"#, None),
                (r#""abc\""#, None),
                ("\"${UNSET:?}\"", None),
            ],
        );
    }

    #[test]
    fn adjacent_quoted_parts_join() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                // reference (quotes): `'it''s'` is `its`.
                ("'it''s'", Some("its")),
                ("a'b'\"c\"d", Some("abcd")),
                ("\"a\"'b'", Some("ab")),
                ("\"$FOO\"'$FOO'$FOO", Some("/bar$FOO/bar")),
                ("\"\"''x", Some("x")),
            ],
        );
    }

    #[test]
    fn escapes_outside_quotes() {
        check_words(
            &Lexer::new('\\'),
            &common_env(),
            &[
                (r"\$FOO", Some("$FOO")),
                (r"\${FOO}", Some("${FOO}")),
                (r"$\{FOO}", Some("${FOO}")),
                (r"a\ b", Some("a b")),
                (r"\a", Some("a")),
                (r"\\", Some(r"\")),
                (r"\'", Some("'")),
                (r#"\""#, Some("\"")),
                (r"C:\\path", Some(r"C:\path")),
                (r"C:\path", Some("C:path")),
                // A trailing escape is dropped.
                (r"abc\", Some("abc")),
                (r"\", Some("")),
                (r"abc\\\", Some(r"abc\")),
                ("\\\n", Some("\n")),
            ],
        );
    }

    #[test]
    fn backtick_escape() {
        let lexer = Lexer::new('`');
        check_words(
            &lexer,
            &common_env(),
            &[
                ("`$FOO", Some("$FOO")),
                ("`${FOO}", Some("${FOO}")),
                (r"C:\path\$FOO", Some(r"C:\path\/bar")),
                (r"c:\", Some(r"c:\")),
                ("a` b", Some("a b")),
                ("abc`", Some("abc")),
                ("``", Some("`")),
                (r#""a\b""#, Some(r"a\b")),
                ("\"a`\"b\"", Some("a\"b")),
                ("\"a``b\"", Some("a`b")),
                ("\"a`b\"", Some("a`b")),
                ("\"`$FOO\"", Some("$FOO")),
                (r#""\$FOO""#, Some(r"\/bar")),
                (r#""a\"b""#, None),
                ("${UNSET:-`}}", Some("}")),
                // Patterns always use `\`, whatever the escape directive.
                (r"${STAR#a\*}", Some("b?c")),
                ("${STAR#a`*}", Some("a*b?c")),
                // `\` is an ordinary character here, so `}` closes the `${`
                // and the pattern is a lone `\`.
                (r"${BR#\}}", None),
                ("${BR#`}}", Some("}x")),
            ],
        );
    }

    #[test]
    fn raw_quotes_mode() {
        let lexer = Lexer {
            raw_quotes: true,
            ..Lexer::new('\\')
        };
        check_words(
            &lexer,
            &common_env(),
            &[
                ("'a b'", Some("'a b'")),
                ("\"a $FOO\"", Some("\"a /bar\"")),
                ("a\"b\"'c'", Some("a\"b\"'c'")),
                (r#""a\"b""#, Some("\"a\"b\"")),
                (r"\$FOO", Some("$FOO")),
                ("${UNSET:-'x'}", Some("'x'")),
                ("'abc", None),
            ],
        );
    }

    #[test]
    fn raw_escapes_mode() {
        let lexer = Lexer {
            raw_escapes: true,
            ..Lexer::new('\\')
        };
        check_words(
            &lexer,
            &common_env(),
            &[
                (r"a\ b", Some(r"a\ b")),
                (r"\$FOO", Some(r"\$FOO")),
                (r#""a\"b""#, Some(r#"a\"b"#)),
                // BuildKit writes the kept escape, then the escape again as
                // the ordinary character it turned out to be.
                (r#""a\b""#, Some(r"a\\b")),
                (r#""a\\b""#, Some(r"a\\b")),
                (r"abc\", Some(r"abc\")),
                // Modifier words other than patterns are read without raw
                // escapes, whatever the option says.
                (r"${UNSET:-\$Y}", Some("$Y")),
                (r"${STAR#a\*}", Some("b?c")),
            ],
        );
    }

    /// RawQuotes and RawEscapes together, as BuildKit's parser reads heredoc
    /// bodies and lines.
    #[test]
    fn raw_quotes_and_escapes_together() {
        let lexer = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            ..Lexer::new('\\')
        };
        check_words(
            &lexer,
            &common_env(),
            &[
                (r#""$FOO" '$FOO' \$FOO"#, Some(r#""/bar" '$FOO' \$FOO"#)),
                (r#"echo "a\"b""#, Some(r#"echo "a\"b""#)),
            ],
        );
    }

    #[test]
    fn skip_unset_env_mode() {
        let lexer = Lexer {
            skip_unset_env: true,
            ..Lexer::new('\\')
        };
        check_words(
            &lexer,
            &common_env(),
            &[
                ("$UNSET", Some("$UNSET")),
                ("${UNSET}", Some("${UNSET}")),
                ("$FOO", Some("/bar")),
                ("$EMPTY", Some("")),
                ("${UNSET:-x}", Some("${UNSET:-x}")),
                ("${UNSET-\"a b\"}", Some("${UNSET-a b}")),
                ("${UNSET:+$FOO}", Some("${UNSET:+/bar}")),
                ("${UNSET:-$OTHER}", Some("${UNSET:-$OTHER}")),
                ("${UNSET#p}", Some("${UNSET#p}")),
                ("${UNSET##p}", Some("${UNSET##p}")),
                ("${UNSET%%p}", Some("${UNSET%%p}")),
                ("${UNSET/a/b}", Some("${UNSET/a/b}")),
                // BuildKit writes `//` back as `/`.
                ("${UNSET//a/b}", Some("${UNSET/a/b}")),
                // No error for an unset required variable, nor for a bad
                // modifier on an unset one.
                ("${UNSET?msg}", Some("${UNSET?msg}")),
                ("${UNSET:x}", Some("${UNSET:x}")),
                ("${UNSET:#x}", None),
                ("${FOO:-x}", Some("/bar")),
                ("${EMPTY:-x}", Some("x")),
                ("${FOO:x}", None),
                ("$1", Some("$1")),
                ("$@", Some("$@")),
                ("'$UNSET'", Some("$UNSET")),
            ],
        );
        let got = lexer.process_word("$UNSET ${FOO}", &common_env());
        assert_eq!(
            got,
            Ok(Expanded {
                value: "$UNSET /bar".to_owned(),
                matched: set(&["FOO"]),
                unmatched: set(&["UNSET"]),
            })
        );
    }

    #[test]
    fn skip_process_quotes_mode() {
        let lexer = Lexer {
            skip_process_quotes: true,
            ..Lexer::new('\\')
        };
        check_words(
            &lexer,
            &common_env(),
            &[
                ("'a b'", Some("'a b'")),
                ("\"$FOO\"", Some("\"/bar\"")),
                (r"\'", Some("'")),
                ("'abc", Some("'abc")),
            ],
        );
        check_split(&lexer, &common_env(), &[("'a b'", Some(&["'a", "b'"]))]);
    }

    #[test]
    fn word_splitting() {
        let vars = common_env();
        check_split(
            &Lexer::new('\\'),
            &vars,
            &[
                ("", Some(&[])),
                ("\"\"", Some(&[])),
                ("a \"\" b", Some(&["a", "b"])),
                ("'a b' c", Some(&["a b", "c"])),
                ("  a   b  ", Some(&["a", "b"])),
                (r"a\ b", Some(&["a b"])),
                ("$SPACE", Some(&["a", "b"])),
                ("x$SPACE", Some(&["xa", "b"])),
                ("\"$SPACE\"", Some(&["a b"])),
                ("x$EMPTY y", Some(&["x", "y"])),
                ("$EMPTY", Some(&[])),
                ("a\tb\nc\u{a0}d\u{3000}e", Some(&["a", "b", "c", "d", "e"])),
                ("$FOO $FOO", Some(&["/bar", "/bar"])),
                ("a${FOO}b", Some(&["a/barb"])),
                ("'a", None),
            ],
        );
    }

    /// `<<` keeps the blanks after it in the same word (BuildKit 0.22,
    /// moby/buildkit#5817), so a heredoc marker written `<< EOF` stays one
    /// word.
    #[test]
    fn word_splitting_keeps_heredoc_markers_whole() {
        check_split(
            &Lexer::new('\\'),
            &NoEnv,
            &[
                ("cat <<EOF", Some(&["cat", "<<EOF"])),
                ("cat << EOF", Some(&["cat", "<< EOF"])),
                ("cat <<\t \rEOF >out", Some(&["cat", "<<\t \rEOF", ">out"])),
                ("cat <<-EOF", Some(&["cat", "<<-EOF"])),
                ("a<b", Some(&["a<b"])),
                ("a < b", Some(&["a", "<", "b"])),
                ("<<", Some(&["<<"])),
                ("<< ", Some(&["<< "])),
                ("a <<\nb", Some(&["a", "<<", "b"])),
            ],
        );
        let heredoc_lexer = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            ..Lexer::new('\\')
        };
        check_split(
            &heredoc_lexer,
            &NoEnv,
            &[
                ("cat <<\"EOF\" | x", Some(&["cat", "<<\"EOF\"", "|", "x"])),
                (r"cat <<\EOF", Some(&["cat", r"<<\EOF"])),
            ],
        );
        assert_eq!(
            Lexer::default()
                .process_word("cat <<  EOF", &NoEnv)
                .map(|e| e.value),
            Ok("cat <<  EOF".to_owned())
        );
    }

    /// BuildKit clears its single in-progress word buffer whenever it starts
    /// reading a nested modifier word, so `ProcessWords` loses the part of
    /// the current word written before `${X:-...}`. kiln matches it.
    #[test]
    fn word_splitting_loses_text_before_a_modifier_word_as_buildkit_does() {
        let vars = common_env();
        check_split(
            &Lexer::new('\\'),
            &vars,
            &[
                ("a${X:-b}", Some(&["b"])),
                ("a${X:-b}c", Some(&["bc"])),
                ("x a${X:-b}", Some(&["x", "b"])),
                ("pre\"a${X:-y}\"", Some(&["ay"])),
                ("a${X:+b}", Some(&[])),
                ("a${STR#foo}", Some(&["barbaz"])),
                // Plain references do not read a nested word.
                ("a${FOO}", Some(&["a/bar"])),
            ],
        );
        assert_eq!(
            Lexer::default()
                .process_word("a${X:-b}", &vars)
                .map(|e| e.value),
            Ok("ab".to_owned())
        );
    }

    #[test]
    fn names_used_are_reported() {
        let vars = common_env();
        let lexer = Lexer::default();
        let got = lexer
            .process_word("$1 $@ ${FOO:-$BAR} '$NOPE' \"$EMPTY\"", &vars)
            .unwrap();
        assert_eq!(got.matched, set(&["EMPTY", "FOO"]));
        // The nested word is expanded (and its names recorded) even when the
        // variable is set.
        assert_eq!(got.unmatched, set(&["1", "@", "BAR"]));
        let got = lexer.process_word(r"\$FOO ${A-${B}}", &vars).unwrap();
        assert_eq!(got.matched, set(&["B"]));
        assert_eq!(got.unmatched, set(&["A"]));
    }

    #[test]
    fn errors_carry_kind_and_offset() {
        let vars = common_env();
        let lexer = Lexer::default();
        let err = |word: &str| lexer.process_word(word, &vars).unwrap_err();
        use ExpandError as E;
        let unsupported = |modifier: &str| E::UnsupportedModifier {
            modifier: modifier.to_owned(),
            offset: 0,
        };
        assert_eq!(err("'abc"), E::UnterminatedSingleQuote { offset: 0 });
        assert_eq!(err("ab\"cd"), E::UnterminatedDoubleQuote { offset: 2 });
        assert_eq!(err("한\"cd"), E::UnterminatedDoubleQuote { offset: 3 });
        assert_eq!(err("x${"), E::MissingBrace { offset: 1 });
        assert_eq!(err("x${}"), E::BadSubstitution { offset: 1 });
        assert_eq!(err("${:-a}"), E::BadSubstitution { offset: 0 });
        assert_eq!(err("${{a}"), E::BadSubstitution { offset: 0 });
        assert_eq!(err("${a"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a:"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a:-b"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a:-${b}"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a:-'b}"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a:-\"b}"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a:-b\\"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a/b"), E::MissingSlash { offset: 0 });
        assert_eq!(err("${a//b}"), E::MissingSlash { offset: 0 });
        assert_eq!(err("${a/b/c"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${a:=b}"), unsupported(":="));
        assert_eq!(err("${a=b}"), unsupported("="));
        assert_eq!(err("${a.}"), unsupported("."));
        assert_eq!(err("${a:#b}"), unsupported(":#"));
        assert_eq!(err("${a:%%b}"), unsupported(":%"));
        assert_eq!(err("${a:}b}"), unsupported(":}"));
        assert_eq!(
            err(r"${FOO#\x}"),
            E::InvalidPattern {
                pattern: r"\x".to_owned(),
                found: Some('x'),
                offset: 0
            }
        );
        let vars_bs = env(&[("BS", r"\")]);
        assert_eq!(
            lexer.process_word("${FOO%$BS}", &vars_bs),
            Err(E::InvalidPattern {
                pattern: r"\".to_owned(),
                found: None,
                offset: 0
            })
        );
        // An error inside a nested word keeps its own offset, unless the
        // input ended inside the outer `${`.
        assert_eq!(
            err("${A:-${X?}}"),
            E::Required {
                name: "X".to_owned(),
                message: "is not allowed to be unset".to_owned(),
                offset: 5
            }
        );
        assert_eq!(err("${A:-${X?}"), E::MissingBrace { offset: 0 });
        assert_eq!(err("${A:-'x}'"), E::MissingBrace { offset: 0 });
        // process_words reports the same errors.
        assert_eq!(
            lexer.process_words("a 'b", &vars),
            Err(E::UnterminatedSingleQuote { offset: 2 })
        );
    }

    #[test]
    fn error_messages() {
        let vars = common_env();
        let lexer = Lexer::default();
        let msg = |word: &str| lexer.process_word(word, &vars).unwrap_err().to_string();
        assert_eq!(
            msg("'a"),
            "unexpected end of word while looking for the closing `'`"
        );
        assert_eq!(
            msg("\"a"),
            "unexpected end of word while looking for the closing `\"`"
        );
        assert_eq!(
            msg("${a"),
            "syntax error: missing `}` in variable substitution"
        );
        assert_eq!(
            msg("${a/b"),
            "syntax error: missing `/` in `${}` pattern substitution"
        );
        assert_eq!(msg("${}"), "syntax error: bad substitution");
        assert_eq!(
            msg("${a:=b}"),
            "unsupported modifier `:=` in variable substitution"
        );
        assert_eq!(msg("${a:?oops}"), "a: oops");
        assert_eq!(
            msg(r"${a#\x}"),
            r"invalid pattern `\x` in variable substitution: invalid escape `\x`"
        );
        assert_eq!(
            lexer
                .process_word("${a#$BS}", &env(&[("BS", r"\")]))
                .unwrap_err()
                .to_string(),
            r"invalid pattern `\` in variable substitution: trailing `\`"
        );
    }

    #[test]
    fn nesting_is_limited_without_overflowing_the_stack() {
        let lexer = Lexer::default();
        let nested = |depth: usize| format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        assert_eq!(
            lexer
                .process_word(&nested(MAX_NESTING), &NoEnv)
                .map(|e| e.value),
            Ok("x".to_owned())
        );
        let deep = nested(MAX_NESTING + 1);
        assert!(matches!(
            lexer.process_word(&deep, &NoEnv),
            Err(ExpandError::NestingTooDeep {
                limit: MAX_NESTING,
                ..
            })
        ));
        let quoted = format!("{}x{}", "\"${A:-".repeat(100_000), "}\"".repeat(100_000));
        assert!(lexer.process_word(&quoted, &NoEnv).is_err());
        assert!(
            lexer
                .process_words(&"${A:-".repeat(100_000), &NoEnv)
                .is_err()
        );
    }

    #[test]
    fn long_values_match_in_linear_time() {
        let value = "ab".repeat(50_000);
        let vars = env(&[("V", &value)]);
        let lexer = Lexer::default();
        let got = lexer
            .process_word("${V%%*a*a*a*a*a*c}", &vars)
            .map(|e| e.value);
        assert_eq!(got.as_deref(), Ok(value.as_str()));
        let got = lexer.process_word("${V//a/}", &vars).map(|e| e.value);
        assert_eq!(got, Ok("b".repeat(50_000)));
    }

    /// The letter and digit tables are Go's classes: inside Rust's wider
    /// ones, and different from them where Go and Rust differ.
    #[test]
    fn go_character_classes() {
        for pair in LETTER_RANGES.chunks_exact(2) {
            assert!(pair[0] <= pair[1]);
            for c in (pair[0]..=pair[1]).filter_map(char::from_u32) {
                assert!(c.is_alphabetic(), "{c:?}");
            }
        }
        for pair in DIGIT_RANGES.chunks_exact(2) {
            for c in (pair[0]..=pair[1]).filter_map(char::from_u32) {
                assert!(c.is_numeric(), "{c:?}");
            }
        }
        for table in [&LETTER_RANGES[..], &DIGIT_RANGES[..]] {
            assert!(table.windows(2).all(|w| w[0] <= w[1]), "tables are sorted");
        }
        for c in ['a', 'Z', 'ª', 'µ', 'é', 'ß', 'ǅ', 'ʰ', '한', 'ㄱ', '𐐀'] {
            assert!(is_go_letter(c), "{c:?}");
        }
        for c in ['_', '1', 'Ⅻ', '\u{301}', '\u{93e}', 'Ⓐ', ' ', '\u{10ffff}'] {
            assert!(!is_go_letter(c), "{c:?}");
        }
        for c in ['0', '9', '٣', '१', '９', '𝟎'] {
            assert!(is_go_digit(c), "{c:?}");
        }
        for c in ['²', '½', 'Ⅻ', 'a', '〇'] {
            assert!(!is_go_digit(c), "{c:?}");
        }
    }

    fn word_chars() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "$", "{", "}", "'", "\"", "\\", "`", ":", "-", "+", "?", "#", "%", "/", "*", "<", " ",
            "\t", "\n", "a", "B", "_", "1", "0", "@", "é", "한", "\u{feff}", "\u{a0}", "${", "${A",
            "${B:-", "${E#", "${A//", "$A", "$E", "$S", "}}",
        ]);
        proptest::collection::vec(pieces, 0..48).prop_map(|parts| parts.concat())
    }

    fn prop_env() -> BTreeMap<String, String> {
        env(&[("A", "x y"), ("B", ""), ("E", "*?\\}"), ("S", "a*b/c\nd")])
    }

    fn all_lexers() -> Vec<Lexer> {
        let mut lexers = Vec::new();
        for escape in ['\\', '`'] {
            for flags in 0..16_u8 {
                lexers.push(Lexer {
                    escape,
                    raw_quotes: flags & 1 != 0,
                    raw_escapes: flags & 2 != 0,
                    skip_unset_env: flags & 4 != 0,
                    skip_process_quotes: flags & 8 != 0,
                });
            }
        }
        lexers
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_shell_like_input(word in word_chars()) {
            let vars = prop_env();
            for lexer in all_lexers() {
                let single = lexer.process_word(&word, &vars);
                let split = lexer.process_words(&word, &vars);
                prop_assert_eq!(single.is_ok(), split.is_ok());
                if let Ok(words) = split {
                    prop_assert!(words.iter().all(|w| !w.is_empty()));
                }
            }
        }

        #[test]
        fn never_panics_on_arbitrary_input(word in any::<String>()) {
            let vars = prop_env();
            for escape in ['\\', '`'] {
                let lexer = Lexer::new(escape);
                let _ = lexer.process_word(&word, &vars);
                let _ = lexer.process_words(&word, &vars);
            }
        }

        #[test]
        fn never_panics_on_arbitrary_values(value in any::<String>(), word in word_chars()) {
            let vars = env(&[("A", &value), ("B", &value), ("E", &value), ("S", &value)]);
            for escape in ['\\', '`'] {
                let _ = Lexer::new(escape).process_word(&word, &vars);
            }
        }

        #[test]
        fn text_without_special_characters_is_unchanged(word in "[a-zA-Z0-9_./:=,@ -]{0,32}") {
            let got = Lexer::default().process_word(&word, &prop_env()).map(|e| e.value);
            prop_assert_eq!(got, Ok(word));
        }
    }
}
