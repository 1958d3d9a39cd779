//! Syntax tree to typed instructions: one [`Instruction`] per [`Node`], with
//! arity, flags and the values that can be checked before expansion
//! validated, as BuildKit's `frontend/dockerfile/instructions` package does
//! (`parse.go`, `bflag.go`, `commands_run*.go`).
//!
//! What this layer owns:
//! - the per-instruction argument rules and their error messages;
//! - BuildKit's flag grammar (`--name=value`, bare booleans, repeatable
//!   string lists, unknown and duplicate flags), per instruction;
//! - `RUN --mount` / `--device` / `--network` / `--security`, HEALTHCHECK
//!   options, COPY/ADD flags and heredoc sources, ONBUILD triggers;
//! - the pure value parsers the evaluator reuses after expansion
//!   ([`parse_mount_with`], [`parse_chmod`], [`parse_duration`],
//!   [`parse_signal`]).
//!
//! Must never: expand variables (the text kept here is raw; kiln's evaluator
//! expands it later with the ARG/ENV scope, as BuildKit does at dispatch),
//! read files, or panic on any node.
//!
//! Invariants:
//! - every error is a [`ParseError`] at the node's first line;
//! - strings BuildKit expands later are kept exactly as written;
//! - where BuildKit checks a value only after expansion (`--chmod`,
//!   STOPSIGNAL, mount options), a value with nothing to expand (no `$`,
//!   quote or escape character) is checked here with the same function, so
//!   it fails early; anything else is checked by the evaluator;
//! - instructions that BuildKit lets take no flags reject every flag
//!   (`unknown flag: --x`), except ARG and STOPSIGNAL, whose flags BuildKit
//!   never reads and so silently ignores; likewise `HEALTHCHECK NONE`;
//! - an ONBUILD trigger that would fail is kept as [`OnbuildTrigger::Invalid`],
//!   not rejected: BuildKit only refuses `ONBUILD`, `FROM` and `MAINTAINER`
//!   triggers here and reports the rest when a downstream build runs them.
//!
//! Left to the evaluator, because BuildKit does them at dispatch with
//! expanded values or build state: `COPY --from` holding a variable,
//! `ADD --checksum` source rules (one HTTP or git source), relative mount
//! targets (joined to WORKDIR; `/` is refused), EXPOSE port syntax.
//!
//! Submodules: `mount` (`--mount`, `--device`, Go's CSV record reading) and
//! `value` (Go durations, chmod modes, signals, booleans).

mod mount;
mod value;

use serde::Serialize;

use super::ast::{Heredoc, Node, Span, go_quote};
use super::error::ParseError;

pub use mount::{
    Device, Mount, MountError, MountKind, Sharing, parse_device, parse_mount, parse_mount_with,
};
pub use value::{Chmod, ChmodError, parse_chmod, parse_duration, parse_signal};

/// One Dockerfile instruction, typed and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    /// `FROM`: starts a stage.
    From(FromInstruction),
    /// `ARG`: declares build arguments.
    Arg(ArgInstruction),
    /// `ENV`: sets environment variables.
    Env(EnvInstruction),
    /// `LABEL`: sets image labels.
    Label(LabelInstruction),
    /// `MAINTAINER`: sets the image author (deprecated).
    Maintainer(MaintainerInstruction),
    /// `WORKDIR`: sets the working directory.
    Workdir(WorkdirInstruction),
    /// `USER`: sets the user.
    User(UserInstruction),
    /// `RUN`: runs a command.
    Run(RunInstruction),
    /// `CMD`: sets the default command.
    Cmd(CmdInstruction),
    /// `ENTRYPOINT`: sets the entrypoint.
    Entrypoint(EntrypointInstruction),
    /// `SHELL`: sets the shell for shell forms.
    Shell(ShellInstruction),
    /// `EXPOSE`: declares ports.
    Expose(ExposeInstruction),
    /// `VOLUME`: declares volumes.
    Volume(VolumeInstruction),
    /// `STOPSIGNAL`: sets the stop signal.
    StopSignal(StopSignalInstruction),
    /// `HEALTHCHECK`: sets or disables the health check.
    Healthcheck(HealthcheckInstruction),
    /// `COPY`: copies files.
    Copy(CopyInstruction),
    /// `ADD`: copies files, URLs, git repositories; unpacks archives.
    Add(AddInstruction),
    /// `ONBUILD`: records a trigger for downstream builds.
    Onbuild(OnbuildInstruction),
}

/// `CMD`, `ENTRYPOINT`, `RUN` and `HEALTHCHECK CMD` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandForm {
    /// A JSON array: run as given, no shell, no expansion.
    Exec(Vec<String>),
    /// The rest of the line (empty when nothing was written), run as
    /// `SHELL + [text]`.
    Shell(String),
}

impl CommandForm {
    /// The argv BuildKit builds: exec form as is; shell form appended to
    /// `shell` (`["/bin/sh", "-c"]` by default) as one argument.
    pub fn to_argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            CommandForm::Exec(args) => args.clone(),
            CommandForm::Shell(text) => {
                let mut argv = shell.to_vec();
                argv.push(text.clone());
                argv
            }
        }
    }
}

/// `FROM [--platform=<p>] <image> [AS <name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromInstruction {
    /// Source lines.
    pub span: Span,
    /// The base: image reference or stage name, unexpanded.
    pub image: String,
    /// `--platform`, unexpanded (global ARGs only); `None` if absent or empty.
    pub platform: Option<String>,
    /// `AS <name>`, lower-cased and checked against `^[a-z][a-z0-9-_.]*$`.
    pub stage_name: Option<String>,
}

/// One `name[=default]` of an ARG line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDefinition {
    /// The name, as written (never expanded).
    pub name: String,
    /// The default after the first `=`, unexpanded (quotes still in it);
    /// `Some("")` for `ARG X=`.
    pub default: Option<String>,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgInstruction {
    /// Source lines.
    pub span: Span,
    /// The declarations, in order.
    pub args: Vec<ArgDefinition>,
}

/// A key and its raw value, from ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, unexpanded.
    pub key: String,
    /// The value, unexpanded (quotes and escapes still in it).
    pub value: String,
}

/// `ENV k=v ...` or the legacy `ENV k rest of line`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvInstruction {
    /// Source lines.
    pub span: Span,
    /// The pairs, in order.
    pub pairs: Vec<KeyValue>,
    /// Written in the legacy `ENV key value` form (BuildKit check
    /// `LegacyKeyValueFormat`).
    pub legacy: bool,
}

/// `LABEL k=v ...` or the legacy `LABEL k rest of line`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelInstruction {
    /// Source lines.
    pub span: Span,
    /// The pairs, in order.
    pub pairs: Vec<KeyValue>,
    /// Written in the legacy `LABEL key value` form.
    pub legacy: bool,
}

/// `MAINTAINER name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintainerInstruction {
    /// Source lines.
    pub span: Span,
    /// The rest of the line (never expanded).
    pub name: String,
}

/// `WORKDIR path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkdirInstruction {
    /// Source lines.
    pub span: Span,
    /// The path, unexpanded.
    pub path: String,
}

/// `USER user[:group]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInstruction {
    /// Source lines.
    pub span: Span,
    /// The user, unexpanded.
    pub user: String,
}

/// `--network=` of RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The build's own network (same as no flag).
    Default,
    /// Loopback only.
    None,
    /// The host's network (needs the `network.host` entitlement).
    Host,
}

/// `--security=` of RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// The normal sandbox (same as no flag).
    Sandbox,
    /// Privileged (needs the `security.insecure` entitlement).
    Insecure,
}

/// One `--mount=` value of RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    /// The value as written; the evaluator expands it field by field with
    /// [`parse_mount_with`].
    pub text: String,
    /// The mount, when the value has nothing to expand and so was read in
    /// full here; `None` when it must wait for expansion.
    pub mount: Option<Mount>,
}

/// `RUN [--mount=...] [--network=...] [--security=...] [--device=...] cmd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInstruction {
    /// Source lines.
    pub span: Span,
    /// The command, never expanded by the builder.
    pub command: CommandForm,
    /// Heredocs opened on the line, in order (see [`RunInstruction::script`]).
    pub heredocs: Vec<Heredoc>,
    /// `--mount` values, in order.
    pub mounts: Vec<MountSpec>,
    /// `--network`.
    pub network: Network,
    /// Whether `--network` was written out: `RUN --network=default|host`
    /// declares a fetch step (the only RUN with network in kiln), a RUN
    /// without the flag has none. Not serialized, so the instruction as
    /// hashed and printed is BuildKit's.
    #[serde(skip)]
    pub network_given: bool,
    /// `--security`.
    pub security: Security,
    /// `--device` values, in order.
    pub devices: Vec<Device>,
}

/// What a RUN executes once its heredocs are accounted for, by BuildKit's
/// `dispatchRun` rules (F35, F36).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// No heredocs: the command as written.
    Command(CommandForm),
    /// The line is one heredoc whose body starts with `#!`: BuildKit writes
    /// the body (tabs stripped for `<<-`) to `/dev/pipes/<name>`, mode 0755,
    /// on a read-only mount, and runs that path through the shell.
    Shebang {
        /// The delimiter word: the file name.
        name: String,
        /// The file's contents.
        body: String,
    },
    /// The line is one heredoc: its body (tabs stripped for `<<-`) is the
    /// shell-form command, never expanded by the builder.
    Script(String),
    /// Heredocs inside a longer command: the line, then each body followed
    /// by its delimiter, each after a newline; the shell reads them as real
    /// here-documents.
    Combined(String),
}

impl RunInstruction {
    /// The command BuildKit actually runs (before the shell is prepended).
    pub fn script(&self) -> RunScript {
        let (CommandForm::Shell(line), Some(first)) = (&self.command, self.heredocs.first()) else {
            return RunScript::Command(self.command.clone());
        };
        if heredoc_word(line).is_some() {
            let body = if first.chomp {
                chomp(&first.content)
            } else {
                first.content.clone()
            };
            if first.content.starts_with("#!") {
                return RunScript::Shebang {
                    name: first.name.clone(),
                    body,
                };
            }
            return RunScript::Script(body);
        }
        let mut full = line.clone();
        for doc in &self.heredocs {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&doc.name);
        }
        RunScript::Combined(full)
    }
}

/// `CMD ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CmdInstruction {
    /// Source lines.
    pub span: Span,
    /// The command.
    pub command: CommandForm,
}

/// `ENTRYPOINT ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntrypointInstruction {
    /// Source lines.
    pub span: Span,
    /// The entrypoint.
    pub command: CommandForm,
}

/// `SHELL ["exe", "arg", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShellInstruction {
    /// Source lines.
    pub span: Span,
    /// The shell argv (at least one element).
    pub shell: Vec<String>,
}

/// `EXPOSE port[/proto] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExposeInstruction {
    /// Source lines.
    pub span: Span,
    /// The raw words, sorted by bytes as BuildKit sorts them (they are
    /// expanded and split again later).
    pub ports: Vec<String>,
}

/// `VOLUME path ...` or `VOLUME ["path", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInstruction {
    /// Source lines.
    pub span: Span,
    /// The paths, whitespace-trimmed, unexpanded, none empty.
    pub paths: Vec<String>,
}

/// `STOPSIGNAL signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopSignalInstruction {
    /// Source lines.
    pub span: Span,
    /// The signal, unexpanded (checked with [`parse_signal`] after expansion).
    pub signal: String,
}

/// The options and command of `HEALTHCHECK [opts] CMD ...`. Durations are
/// nanoseconds; 0 (also for an empty or absent flag) means "use the default"
/// (30s, 30s, 0s, 5s), as does `retries` 0 (3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckCmd {
    /// The probe.
    pub command: CommandForm,
    /// `--interval`.
    pub interval: u64,
    /// `--timeout`.
    pub timeout: u64,
    /// `--start-period`.
    pub start_period: u64,
    /// `--start-interval`.
    pub start_interval: u64,
    /// `--retries`.
    pub retries: u32,
}

/// What a HEALTHCHECK sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: turn off an inherited check.
    None,
    /// `HEALTHCHECK CMD ...`.
    Cmd(HealthcheckCmd),
}

impl Healthcheck {
    /// The image config's `Healthcheck.Test`: `["NONE"]`, `["CMD", args...]`
    /// (exec form) or `["CMD-SHELL", text]` (shell form).
    pub fn test(&self) -> Vec<String> {
        match self {
            Healthcheck::None => vec!["NONE".into()],
            Healthcheck::Cmd(cmd) => match &cmd.command {
                CommandForm::Exec(args) => {
                    let mut test = vec!["CMD".to_string()];
                    test.extend(args.iter().cloned());
                    test
                }
                CommandForm::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
            },
        }
    }
}

/// `HEALTHCHECK ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckInstruction {
    /// Source lines.
    pub span: Span,
    /// The check.
    pub check: Healthcheck,
}

/// A COPY/ADD source written as a heredoc (`COPY <<EOF /dest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeredocSource {
    /// The delimiter, quotes removed: the file name.
    pub name: String,
    /// The body, leading tabs already stripped for `<<-`; unexpanded.
    pub content: String,
    /// No part of the delimiter was quoted: expand `$VARS` in the body.
    pub expand: bool,
}

/// `COPY [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyInstruction {
    /// Source lines.
    pub span: Span,
    /// Source paths, unexpanded (heredoc words excluded).
    pub sources: Vec<String>,
    /// Heredoc sources, in order (BuildKit copies them after the paths).
    pub heredocs: Vec<HeredocSource>,
    /// The destination, unexpanded.
    pub dest: String,
    /// `--from`: stage name, index, image or context; never expanded here.
    pub from: Option<String>,
    /// `--chown`, unexpanded.
    pub chown: Option<String>,
    /// `--chmod`, unexpanded (see [`parse_chmod`]).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns (never expanded).
    pub excludes: Vec<String>,
    /// `--parents`.
    pub parents: bool,
}

/// `ADD [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddInstruction {
    /// Source lines.
    pub span: Span,
    /// Sources (paths, URLs, git references), unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources, in order.
    pub heredocs: Vec<HeredocSource>,
    /// The destination, unexpanded.
    pub dest: String,
    /// `--chown`, unexpanded.
    pub chown: Option<String>,
    /// `--chmod`, unexpanded.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--checksum`, unexpanded.
    pub checksum: Option<String>,
    /// `--keep-git-dir`, when given.
    pub keep_git_dir: Option<bool>,
    /// `--unpack`, when given (default: local archives yes, remote no).
    pub unpack: Option<bool>,
}

/// The instruction inside an ONBUILD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnbuildTrigger {
    /// It reads as a valid instruction.
    Parsed(Box<Instruction>),
    /// It does not. BuildKit only checks the trigger's keyword when the
    /// ONBUILD line is read and fails when a downstream build runs it, so
    /// this is not an error here.
    Invalid {
        /// Why the trigger would fail.
        message: String,
    },
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnbuildInstruction {
    /// Source lines (the trigger's heredoc bodies included).
    pub span: Span,
    /// What goes into the image config's `OnBuild`: the line without the
    /// `ONBUILD` keyword, then for each heredoc a newline, its body and its
    /// delimiter.
    pub expression: String,
    /// The trigger, typed.
    pub trigger: OnbuildTrigger,
}

macro_rules! instruction_kinds {
    ($($variant:ident($ty:ident) => $keyword:literal,)*) => {
        $(
            impl $ty {
                /// The instruction's keyword, upper-case.
                pub fn keyword(&self) -> &'static str {
                    $keyword
                }
            }
        )*

        impl Instruction {
            /// The instruction's keyword, upper-case (`RUN`, `STOPSIGNAL`).
            pub fn keyword(&self) -> &'static str {
                match self {
                    $(Instruction::$variant(i) => i.keyword(),)*
                }
            }

            /// The source lines the instruction covers.
            pub fn span(&self) -> Span {
                match self {
                    $(Instruction::$variant(i) => i.span,)*
                }
            }
        }
    };
}

instruction_kinds! {
    From(FromInstruction) => "FROM",
    Arg(ArgInstruction) => "ARG",
    Env(EnvInstruction) => "ENV",
    Label(LabelInstruction) => "LABEL",
    Maintainer(MaintainerInstruction) => "MAINTAINER",
    Workdir(WorkdirInstruction) => "WORKDIR",
    User(UserInstruction) => "USER",
    Run(RunInstruction) => "RUN",
    Cmd(CmdInstruction) => "CMD",
    Entrypoint(EntrypointInstruction) => "ENTRYPOINT",
    Shell(ShellInstruction) => "SHELL",
    Expose(ExposeInstruction) => "EXPOSE",
    Volume(VolumeInstruction) => "VOLUME",
    StopSignal(StopSignalInstruction) => "STOPSIGNAL",
    Healthcheck(HealthcheckInstruction) => "HEALTHCHECK",
    Copy(CopyInstruction) => "COPY",
    Add(AddInstruction) => "ADD",
    Onbuild(OnbuildInstruction) => "ONBUILD",
}

/// Every keyword, upper-case, sorted (the candidates for "did you mean").
const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Types one node. `escape` is the file's escape character: a value
/// containing it (or `$`, or a quote) may change at expansion, so it is not
/// checked here.
pub fn from_node(node: &Node, escape: char) -> Result<Instruction, ParseError> {
    let cx = Cx { node, escape };
    Ok(match node.keyword.to_ascii_lowercase().as_str() {
        "from" => Instruction::From(cx.parse_from()?),
        "arg" => Instruction::Arg(cx.arg()?),
        "env" => {
            cx.flags(&[])?;
            let (pairs, legacy) = cx.key_values("ENV")?;
            Instruction::Env(EnvInstruction {
                span: node.span,
                pairs,
                legacy,
            })
        }
        "label" => {
            cx.flags(&[])?;
            let (pairs, legacy) = cx.key_values("LABEL")?;
            Instruction::Label(LabelInstruction {
                span: node.span,
                pairs,
                legacy,
            })
        }
        "maintainer" => Instruction::Maintainer(MaintainerInstruction {
            span: node.span,
            name: cx.exactly_one("MAINTAINER")?,
        }),
        "workdir" => Instruction::Workdir(WorkdirInstruction {
            span: node.span,
            path: cx.exactly_one("WORKDIR")?,
        }),
        "user" => Instruction::User(UserInstruction {
            span: node.span,
            user: cx.exactly_one("USER")?,
        }),
        "run" => Instruction::Run(cx.run()?),
        "cmd" => {
            cx.flags(&[])?;
            Instruction::Cmd(CmdInstruction {
                span: node.span,
                command: cx.command_form(&node.args),
            })
        }
        "entrypoint" => {
            cx.flags(&[])?;
            Instruction::Entrypoint(EntrypointInstruction {
                span: node.span,
                command: cx.command_form(&node.args),
            })
        }
        "shell" => Instruction::Shell(cx.shell()?),
        "expose" => {
            cx.at_least_one("EXPOSE")?;
            cx.flags(&[])?;
            let mut ports = node.args.clone();
            ports.sort();
            Instruction::Expose(ExposeInstruction {
                span: node.span,
                ports,
            })
        }
        "volume" => Instruction::Volume(cx.volume()?),
        "stopsignal" => Instruction::StopSignal(cx.stopsignal()?),
        "healthcheck" => Instruction::Healthcheck(cx.healthcheck()?),
        "copy" => Instruction::Copy(cx.copy()?),
        "add" => Instruction::Add(cx.add()?),
        "onbuild" => Instruction::Onbuild(cx.onbuild()?),
        _ => return Err(cx.unknown_instruction()),
    })
}

/// The node being typed and the file's escape character.
struct Cx<'a> {
    node: &'a Node,
    escape: char,
}

impl Cx<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::at(self.node.span.start, message)
    }

    fn flags(&self, specs: &[(&'static str, FlagKind)]) -> Result<Flags, ParseError> {
        Flags::parse(&self.node.flags, specs).map_err(|(message, hint)| {
            let error = self.error(message);
            match hint {
                Some(hint) => error.with_hint(hint),
                None => error,
            }
        })
    }

    fn at_least_one(&self, keyword: &str) -> Result<(), ParseError> {
        if self.node.args.is_empty() {
            return Err(self.error(format!("{keyword} requires at least one argument")));
        }
        Ok(())
    }

    /// MAINTAINER, WORKDIR, USER: arity first, then (no) flags.
    fn exactly_one(&self, keyword: &str) -> Result<String, ParseError> {
        let [arg] = self.node.args.as_slice() else {
            return Err(self.error(format!("{keyword} requires exactly one argument")));
        };
        self.flags(&[])?;
        Ok(arg.clone())
    }

    /// Can `text` change when expanded? (`$`, quotes or the escape character.)
    fn is_literal(&self, text: &str) -> bool {
        !text.contains(['$', '\'', '"']) && !text.contains(self.escape)
    }

    /// BuildKit's `handleJSONArgs`: exec form as is, otherwise the words
    /// joined by one space.
    fn command_form(&self, args: &[String]) -> CommandForm {
        if self.node.json {
            CommandForm::Exec(args.to_vec())
        } else {
            CommandForm::Shell(args.join(" "))
        }
    }

    fn parse_from(&self) -> Result<FromInstruction, ParseError> {
        let args = &self.node.args;
        let stage_name = match args.as_slice() {
            [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                let lower = name.to_lowercase();
                if !is_valid_stage_name(&lower) {
                    return Err(self
                        .error(format!(
                            "invalid name for build stage: {}, name can't start with a number or contain symbols",
                            go_quote(name)
                        ))
                        .with_hint(
                            "stage names start with a letter and use only letters, digits, `-`, `_` and `.`",
                        ));
                }
                Some(lower)
            }
            [_] => None,
            _ => {
                return Err(self
                    .error("FROM requires either one or three arguments")
                    .with_hint("write `FROM <image>` or `FROM <image> AS <name>`"));
            }
        };
        let flags = self.flags(&[("platform", FlagKind::String)])?;
        Ok(FromInstruction {
            span: self.node.span,
            image: args[0].clone(),
            platform: flags.non_empty("platform"),
            stage_name,
        })
    }

    fn arg(&self) -> Result<ArgInstruction, ParseError> {
        self.at_least_one("ARG")?;
        // BuildKit never calls Parse() on ARG's flags: they are ignored.
        let mut args = Vec::with_capacity(self.node.args.len());
        for word in &self.node.args {
            let (name, default) = match word.split_once('=') {
                Some((name, default)) => (name, Some(default.to_string())),
                None => (word.as_str(), None),
            };
            if name.is_empty() {
                return Err(self.error("ARG names can not be blank"));
            }
            args.push(ArgDefinition {
                name: name.to_string(),
                default,
            });
        }
        Ok(ArgInstruction {
            span: self.node.span,
            args,
        })
    }

    /// ENV and LABEL: the parser's (key, value, separator) triples.
    fn key_values(&self, keyword: &str) -> Result<(Vec<KeyValue>, bool), ParseError> {
        let args = &self.node.args;
        if args.is_empty() {
            return Err(self.error(format!("{keyword} requires at least one argument")));
        }
        if !args.len().is_multiple_of(3) {
            return Err(self.error(format!("Bad input to {keyword}, too many arguments")));
        }
        let mut pairs = Vec::with_capacity(args.len() / 3);
        let mut legacy = false;
        for triple in args.chunks_exact(3) {
            if triple[0].is_empty() {
                return Err(self.error(format!("{keyword} names can not be blank")));
            }
            legacy |= triple[2].is_empty();
            pairs.push(KeyValue {
                key: triple[0].clone(),
                value: triple[1].clone(),
            });
        }
        Ok((pairs, legacy))
    }

    fn run(&self) -> Result<RunInstruction, ParseError> {
        let flags = self.flags(&[
            ("device", FlagKind::Strings),
            ("mount", FlagKind::Strings),
            ("network", FlagKind::String),
            ("security", FlagKind::String),
        ])?;
        let command = self.command_form(&self.node.args);

        let mut devices = Vec::new();
        for value in flags.strings("device") {
            devices.push(parse_device(&value).map_err(|e| self.error(e))?);
        }
        let mut mounts = Vec::new();
        for text in flags.strings("mount") {
            mounts.push(self.mount_spec(text)?);
        }
        let network_given = flags.string("network").is_some();
        let network = match flags.string("network").unwrap_or("default") {
            "default" => Network::Default,
            "none" => Network::None,
            "host" => Network::Host,
            other => {
                return Err(self
                    .error(format!("invalid network mode {}", go_quote(other)))
                    .with_hint("use `--network=default`, `none` or `host`"));
            }
        };
        let security = match flags.string("security").unwrap_or("sandbox") {
            "sandbox" => Security::Sandbox,
            "insecure" => Security::Insecure,
            other => {
                return Err(self
                    .error(format!("security {} is not valid", go_quote(other)))
                    .with_hint("use `--security=sandbox` or `insecure`"));
            }
        };
        Ok(RunInstruction {
            span: self.node.span,
            command,
            heredocs: self.node.heredocs.clone(),
            mounts,
            network,
            network_given,
            security,
            devices,
        })
    }

    fn mount_spec(&self, text: String) -> Result<MountSpec, ParseError> {
        let mount_error = |e: MountError| {
            let hint = e.suggestion().map(|s| format!("did you mean `{s}`?"));
            let error = self.error(e.to_string());
            match hint {
                Some(hint) => error.with_hint(hint),
                None => error,
            }
        };
        mount::precheck_mount(&text).map_err(mount_error)?;
        let mount = if self.is_literal(&text) {
            Some(parse_mount(&text).map_err(mount_error)?)
        } else {
            None
        };
        Ok(MountSpec { text, mount })
    }

    fn shell(&self) -> Result<ShellInstruction, ParseError> {
        self.flags(&[])?;
        let args = &self.node.args;
        if args.is_empty() {
            return Err(self.error("SHELL requires at least one argument"));
        }
        if !self.node.json {
            return Err(self
                .error("SHELL requires the arguments to be in JSON form")
                .with_hint("write `SHELL [\"/bin/bash\", \"-c\"]`"));
        }
        Ok(ShellInstruction {
            span: self.node.span,
            shell: args.clone(),
        })
    }

    fn volume(&self) -> Result<VolumeInstruction, ParseError> {
        self.at_least_one("VOLUME")?;
        self.flags(&[])?;
        let mut paths = Vec::with_capacity(self.node.args.len());
        for path in &self.node.args {
            let path = path.trim();
            if path.is_empty() {
                return Err(self.error("VOLUME specified can not be an empty string"));
            }
            paths.push(path.to_string());
        }
        Ok(VolumeInstruction {
            span: self.node.span,
            paths,
        })
    }

    fn stopsignal(&self) -> Result<StopSignalInstruction, ParseError> {
        // BuildKit never calls Parse() on STOPSIGNAL's flags: they are ignored.
        let [signal] = self.node.args.as_slice() else {
            return Err(self.error("STOPSIGNAL requires exactly one argument"));
        };
        if self.is_literal(signal) {
            parse_signal(signal).map_err(|e| {
                self.error(e)
                    .with_hint("use a signal name such as `SIGTERM` or `KILL`, or a number")
            })?;
        }
        Ok(StopSignalInstruction {
            span: self.node.span,
            signal: signal.clone(),
        })
    }

    fn healthcheck(&self) -> Result<HealthcheckInstruction, ParseError> {
        self.at_least_one("HEALTHCHECK")?;
        let args = &self.node.args;
        let kind = args[0].to_uppercase();
        let rest = &args[1..];
        if kind == "NONE" {
            // BuildKit reads no flags for NONE, so they are ignored.
            if !rest.is_empty() {
                return Err(self.error("HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(HealthcheckInstruction {
                span: self.node.span,
                check: Healthcheck::None,
            });
        }
        let flags = self.flags(&[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ])?;
        if kind != "CMD" {
            return Err(self
                .error(format!(
                    "Unknown type {} in HEALTHCHECK (try CMD)",
                    go_quote(&kind)
                ))
                .with_hint("write `HEALTHCHECK CMD <command>` or `HEALTHCHECK NONE`"));
        }
        if rest.is_empty() {
            return Err(self.error("Missing command after HEALTHCHECK CMD"));
        }
        let command = self.command_form(rest);
        let interval = |name: &str| -> Result<u64, ParseError> {
            let value = flags.string(name).unwrap_or("");
            if value.is_empty() {
                return Ok(0);
            }
            let nanos = value::go_duration(value).map_err(|e| self.error(e))?;
            if nanos == 0 {
                return Ok(0);
            }
            u64::try_from(nanos)
                .ok()
                .filter(|&n| n >= 1_000_000)
                .ok_or_else(|| {
                    self.error(format!(
                        "Interval {} cannot be less than 1ms",
                        go_quote(name)
                    ))
                })
        };
        let interval_ns = interval("interval")?;
        let timeout = interval("timeout")?;
        let start_period = interval("start-period")?;
        let start_interval = interval("start-interval")?;
        let retries = match flags.string("retries").unwrap_or("") {
            "" => 0,
            text => {
                let n = go_parse_int32(text).map_err(|e| self.error(e))?;
                u32::try_from(n)
                    .map_err(|_| self.error(format!("--retries cannot be negative ({n})")))?
            }
        };
        Ok(HealthcheckInstruction {
            span: self.node.span,
            check: Healthcheck::Cmd(HealthcheckCmd {
                command,
                interval: interval_ns,
                timeout,
                start_period,
                start_interval,
                retries,
            }),
        })
    }

    /// COPY/ADD: arity, then flags, then sources and destination.
    fn copy_like(
        &self,
        keyword: &str,
        specs: &[(&'static str, FlagKind)],
    ) -> Result<(Flags, Vec<String>, Vec<HeredocSource>, String), ParseError> {
        let args = &self.node.args;
        if args.len() < 2 {
            return Err(self
                .error(format!(
                    "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
                ))
                .with_hint(format!("write `{keyword} <source>... <destination>`")));
        }
        let flags = self.flags(specs)?;
        let (dest, sources) = args.split_last().expect("at least two arguments");
        if heredoc_word(dest).is_some() {
            return Err(self.error(format!(
                "{keyword} cannot accept a heredoc as a destination"
            )));
        }
        let mut paths = Vec::new();
        let mut docs = Vec::new();
        for source in sources {
            let Some(word) = heredoc_word(source) else {
                paths.push(source.clone());
                continue;
            };
            // The last heredoc of that name wins (BuildKit builds a map).
            let content = self
                .node
                .heredocs
                .iter()
                .rev()
                .find(|doc| doc.name == word.name)
                .map(|doc| doc.content.clone())
                .unwrap_or_default();
            docs.push(HeredocSource {
                content: if word.chomp { chomp(&content) } else { content },
                name: word.name,
                expand: word.expand,
            });
        }
        if let Some(chmod) = flags.non_empty("chmod")
            && self.is_literal(&chmod)
        {
            parse_chmod(&chmod).map_err(|e| {
                self.error(e.to_string())
                    .with_hint("use octal (`0755`) or a symbolic mode (`u=rwX,go=rX`)")
            })?;
        }
        Ok((flags, paths, docs, dest.clone()))
    }

    fn copy(&self) -> Result<CopyInstruction, ParseError> {
        let (flags, sources, heredocs, dest) = self.copy_like(
            "COPY",
            &[
                ("exclude", FlagKind::Strings),
                ("parents", FlagKind::Bool),
                ("chown", FlagKind::String),
                ("from", FlagKind::String),
                ("chmod", FlagKind::String),
                ("link", FlagKind::Bool),
            ],
        )?;
        Ok(CopyInstruction {
            span: self.node.span,
            sources,
            heredocs,
            dest,
            from: flags.non_empty("from"),
            chown: flags.non_empty("chown"),
            chmod: flags.non_empty("chmod"),
            link: flags.boolean("link").unwrap_or(false),
            excludes: flags.strings("exclude"),
            parents: flags.boolean("parents").unwrap_or(false),
        })
    }

    fn add(&self) -> Result<AddInstruction, ParseError> {
        let (flags, sources, heredocs, dest) = self.copy_like(
            "ADD",
            &[
                ("exclude", FlagKind::Strings),
                ("chown", FlagKind::String),
                ("chmod", FlagKind::String),
                ("link", FlagKind::Bool),
                ("keep-git-dir", FlagKind::Bool),
                ("checksum", FlagKind::String),
                ("unpack", FlagKind::Bool),
            ],
        )?;
        Ok(AddInstruction {
            span: self.node.span,
            sources,
            heredocs,
            dest,
            chown: flags.non_empty("chown"),
            chmod: flags.non_empty("chmod"),
            link: flags.boolean("link").unwrap_or(false),
            excludes: flags.strings("exclude"),
            checksum: flags.non_empty("checksum"),
            keep_git_dir: flags.boolean("keep-git-dir"),
            unpack: flags.boolean("unpack"),
        })
    }

    fn onbuild(&self) -> Result<OnbuildInstruction, ParseError> {
        let Some(trigger) = &self.node.trigger else {
            return Err(self.error("ONBUILD requires at least one argument"));
        };
        self.flags(&[])?;
        let keyword = trigger.keyword.trim().to_uppercase();
        match keyword.as_str() {
            "ONBUILD" => {
                return Err(self.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
            }
            "MAINTAINER" | "FROM" => {
                return Err(self.error(format!("{keyword} isn't allowed as an ONBUILD trigger")));
            }
            _ => {}
        }
        let mut expression = strip_onbuild(&self.node.original).to_string();
        for doc in &self.node.heredocs {
            expression.push('\n');
            expression.push_str(&doc.content);
            expression.push_str(&doc.name);
        }
        // The parser puts the heredocs on the ONBUILD node; they belong to
        // the trigger.
        let mut inner = (**trigger).clone();
        inner.heredocs = self.node.heredocs.clone();
        inner.span = self.node.span;
        let trigger = match from_node(&inner, self.escape) {
            Ok(parsed) => OnbuildTrigger::Parsed(Box::new(parsed)),
            Err(e) => OnbuildTrigger::Invalid {
                message: e.to_string(),
            },
        };
        Ok(OnbuildInstruction {
            span: self.node.span,
            expression,
            trigger,
        })
    }

    fn unknown_instruction(&self) -> ParseError {
        // The keyword as written (the node keeps it lower-cased).
        let written = self
            .node
            .original
            .split_whitespace()
            .next()
            .filter(|word| word.eq_ignore_ascii_case(&self.node.keyword))
            .unwrap_or(&self.node.keyword);
        let error = self.error(format!("unknown instruction: {written}"));
        match suggest(written, &KEYWORDS, false) {
            Some(keyword) => error.with_hint(format!("did you mean `{keyword}`?")),
            None => error,
        }
    }
}

/// BuildKit's stage name rule: `^[a-z][a-z0-9-_.]*$` (after lower-casing).
fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Removes `(?i)^\s*ONBUILD\s*` (Go's `\s`: ASCII space, tab, newline, form
/// feed, carriage return).
fn strip_onbuild(original: &str) -> &str {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r');
    let rest = original.trim_start_matches(is_space);
    match rest.get(..7) {
        Some(word) if word.eq_ignore_ascii_case("onbuild") => {
            rest[7..].trim_start_matches(is_space)
        }
        _ => original,
    }
}

/// Go's `strconv.ParseInt(s, 10, 32)` with its error messages.
fn go_parse_int32(s: &str) -> Result<i32, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse().map_err(|_| {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

/// `<<-` processing: leading tabs removed from every line.
fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// A word that is a heredoc reference, as BuildKit's `MustParseHeredoc`
/// reads it.
#[derive(Debug, PartialEq, Eq)]
struct HeredocWord {
    name: String,
    chomp: bool,
    expand: bool,
}

/// `^(\d*)<<(-?)\s*([^<]*)$`, whose last group must lex (escape `\`, no
/// variables) to exactly one word; `expand` is false when any part of that
/// word was quoted.
fn heredoc_word(word: &str) -> Option<HeredocWord> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\u{c}', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (words, quoted) = lex_words(rest)?;
    let [name] = <[String; 1]>::try_from(words).ok()?;
    Some(HeredocWord {
        name,
        chomp,
        expand: !quoted,
    })
}

/// Splits shell words the way BuildKit's lexer does with escape `\` and no
/// environment (variables stay as written): quotes removed, escapes applied.
/// Returns the words and whether any quoting was used; `None` for an
/// unterminated quote.
fn lex_words(text: &str) -> Option<(Vec<String>, bool)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '\'' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.peek() {
                            None => {}
                            Some(&next @ ('"' | '$' | '\\')) => {
                                chars.next();
                                word.push(next);
                            }
                            Some(_) => word.push('\\'),
                        },
                        other => word.push(other),
                    }
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some((words, quoted))
}

/// The closest option within Levenshtein distance 2 (BuildKit's
/// `suggest.WrapError`); ties go to the first option. Case-insensitive
/// matching returns the option in the case style of `value`.
pub(crate) fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let wanted = fold(value);
    let mut best: Option<(usize, String)> = None;
    for option in options {
        let option = fold(option);
        if option == wanted {
            return None;
        }
        let distance = levenshtein(&wanted, &option);
        if distance < best.as_ref().map_or(3, |(d, _)| *d) {
            best = Some((distance, option));
        }
    }
    let (_, found) = best?;
    if case_sensitive {
        return Some(found);
    }
    if value == value.to_lowercase() {
        Some(found.to_lowercase())
    } else if value == value.to_uppercase() {
        Some(found.to_uppercase())
    } else {
        Some(found)
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// How a flag takes values (BuildKit's `boolType`, `stringType`,
/// `stringsType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    /// `--x`, `--x=true`, `--x=false` (any case).
    Bool,
    /// `--x=value`, once.
    String,
    /// `--x=value`, any number of times.
    Strings,
}

#[derive(Debug)]
enum FlagValue {
    Bool(bool),
    String(String),
    Strings(Vec<String>),
}

/// The flags an instruction was given, checked against what it accepts.
#[derive(Debug, Default)]
struct Flags {
    used: std::collections::BTreeMap<&'static str, FlagValue>,
}

impl Flags {
    /// BuildKit's `BFlags.Parse`; the error is (message, hint).
    fn parse(
        words: &[String],
        specs: &[(&'static str, FlagKind)],
    ) -> Result<Flags, (String, Option<String>)> {
        let mut flags = Flags::default();
        for word in words {
            if word == "--" {
                break;
            }
            let Some(body) = word.strip_prefix("--") else {
                return Err((format!("arg should start with -- : {word}"), None));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let flag_name = format!("--{name}");
            let Some(&(name, kind)) = specs.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = specs.iter().map(|(n, _)| *n).collect();
                let hint = suggest(name, &names, true).map(|s| format!("did you mean `--{s}`?"));
                return Err((format!("unknown flag: {flag_name}"), hint));
            };
            let previous = flags.used.get_mut(name);
            if previous.is_some() && kind != FlagKind::Strings {
                return Err((format!("duplicate flag specified: {flag_name}"), None));
            }
            let missing = || (format!("missing a value on flag: {flag_name}"), None);
            match kind {
                FlagKind::Bool => {
                    let on = match value.map(str::to_lowercase).as_deref() {
                        None => true,
                        Some("") => return Err(missing()),
                        Some("true") => true,
                        Some("false") => false,
                        Some(_) => {
                            return Err((
                                format!(
                                    "expecting boolean value for flag {flag_name}, not: {}",
                                    value.unwrap_or_default()
                                ),
                                None,
                            ));
                        }
                    };
                    flags.used.insert(name, FlagValue::Bool(on));
                }
                FlagKind::String => {
                    let value = value.ok_or_else(missing)?;
                    flags
                        .used
                        .insert(name, FlagValue::String(value.to_string()));
                }
                FlagKind::Strings => {
                    let value = value.ok_or_else(missing)?.to_string();
                    match previous {
                        Some(FlagValue::Strings(values)) => values.push(value),
                        _ => {
                            flags.used.insert(name, FlagValue::Strings(vec![value]));
                        }
                    }
                }
            }
        }
        Ok(flags)
    }

    /// A string flag's value, if given (possibly empty).
    fn string(&self, name: &str) -> Option<&str> {
        match self.used.get(name) {
            Some(FlagValue::String(value)) => Some(value),
            _ => None,
        }
    }

    /// A string flag's value; empty counts as absent, as in BuildKit.
    fn non_empty(&self, name: &str) -> Option<String> {
        self.string(name)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
    }

    /// A boolean flag's value, if given.
    fn boolean(&self, name: &str) -> Option<bool> {
        match self.used.get(name) {
            Some(FlagValue::Bool(on)) => Some(*on),
            _ => None,
        }
    }

    /// A repeatable flag's values, in order.
    fn strings(&self, name: &str) -> Vec<String> {
        match self.used.get(name) {
            Some(FlagValue::Strings(values)) => values.clone(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parser::parse;

    /// Types the last instruction of `src`.
    fn parse_last(src: &str) -> Result<Instruction, ParseError> {
        let ast = parse(src.as_bytes()).unwrap_or_else(|e| panic!("{src:?} does not parse: {e}"));
        let node = ast.nodes.last().expect("at least one node");
        from_node(node, ast.directives.escape)
    }

    fn ok(src: &str) -> Instruction {
        parse_last(src).unwrap_or_else(|e| panic!("{src:?} was rejected: {e}"))
    }

    fn err(src: &str) -> ParseError {
        match parse_last(src) {
            Ok(i) => panic!("{src:?} was accepted: {i:?}"),
            Err(e) => e,
        }
    }

    fn msg(src: &str) -> String {
        err(src).to_string()
    }

    macro_rules! variant {
        ($src:expr, $variant:ident) => {
            match ok($src) {
                Instruction::$variant(i) => i,
                other => panic!("expected {}, got {other:?}", stringify!($variant)),
            }
        };
    }

    fn node(keyword: &str, args: &[&str]) -> Node {
        Node {
            keyword: keyword.into(),
            flags: Vec::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            json: false,
            original: format!("{} {}", keyword.to_uppercase(), args.join(" ")),
            heredocs: Vec::new(),
            trigger: None,
            span: Span { start: 7, end: 7 },
        }
    }

    // ---- FROM ----

    #[test]
    fn from_image_only() {
        let f = variant!("FROM alpine:3.20", From);
        assert_eq!(f.image, "alpine:3.20");
        assert_eq!(f.stage_name, None);
        assert_eq!(f.platform, None);
        assert_eq!(f.keyword(), "FROM");
    }

    #[test]
    fn from_stage_name_is_lower_cased_and_as_is_case_insensitive() {
        let f = variant!("FROM golang AS Build-Env_1.x", From);
        assert_eq!(f.stage_name.as_deref(), Some("build-env_1.x"));
        let f = variant!("from golang as b", From);
        assert_eq!(f.stage_name.as_deref(), Some("b"));
    }

    #[test]
    fn from_platform_flag_is_kept_raw() {
        let f = variant!("FROM --platform=$BUILDPLATFORM golang AS build", From);
        assert_eq!(f.platform.as_deref(), Some("$BUILDPLATFORM"));
        let f = variant!("FROM --platform= golang", From);
        assert_eq!(f.platform, None);
    }

    #[test]
    fn from_image_keeps_variables() {
        let f = variant!("FROM ${BASE:-alpine}", From);
        assert_eq!(f.image, "${BASE:-alpine}");
    }

    #[test]
    fn from_wrong_arity_is_rejected() {
        for src in [
            "FROM",
            "FROM a b",
            "FROM a AS",
            "FROM a AS b c",
            "FROM a FOR b",
        ] {
            assert_eq!(
                msg(src),
                "FROM requires either one or three arguments",
                "{src}"
            );
        }
    }

    #[test]
    fn from_invalid_stage_name_is_rejected() {
        assert_eq!(
            msg("FROM a AS 1st"),
            r#"invalid name for build stage: "1st", name can't start with a number or contain symbols"#
        );
        assert!(msg("FROM a AS Foo!").contains(r#""Foo!""#));
        assert!(msg("FROM a AS -x").contains("invalid name"));
        assert!(msg("FROM a AS é").contains("invalid name"));
    }

    #[test]
    fn from_rejects_other_flags() {
        assert_eq!(msg("FROM --pull=true alpine"), "unknown flag: --pull");
        assert_eq!(
            err("FROM --platfrom=linux/amd64 alpine").hint(),
            Some("did you mean `--platform`?")
        );
        assert_eq!(
            msg("FROM --platform=a --platform=b alpine"),
            "duplicate flag specified: --platform"
        );
        assert_eq!(
            msg("FROM --platform alpine"),
            "missing a value on flag: --platform"
        );
    }

    #[test]
    fn from_arity_is_checked_before_flags() {
        assert_eq!(
            msg("FROM --bogus a b"),
            "FROM requires either one or three arguments"
        );
    }

    // ---- ARG ----

    #[test]
    fn arg_declarations_keep_raw_defaults() {
        let a = variant!(r#"ARG A B=1 C= D="x y" E=a=b"#, Arg);
        let got: Vec<(&str, Option<&str>)> = a
            .args
            .iter()
            .map(|d| (d.name.as_str(), d.default.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A", None),
                ("B", Some("1")),
                ("C", Some("")),
                ("D", Some(r#""x y""#)),
                ("E", Some("a=b")),
            ]
        );
    }

    #[test]
    fn arg_requires_at_least_one_argument() {
        assert_eq!(msg("ARG"), "ARG requires at least one argument");
    }

    #[test]
    fn arg_blank_name_is_rejected() {
        assert_eq!(msg("ARG =x"), "ARG names can not be blank");
    }

    #[test]
    fn arg_flags_are_ignored_like_buildkit() {
        let a = variant!("ARG --whatever=1 NAME", Arg);
        assert_eq!(a.args[0].name, "NAME");
    }

    // ---- ENV / LABEL ----

    #[test]
    fn env_pairs_keep_raw_values_in_order() {
        let e = variant!(r#"ENV B=2 A="x y" C=$B"#, Env);
        assert!(!e.legacy);
        let got: Vec<(&str, &str)> = e
            .pairs
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(got, vec![("B", "2"), ("A", r#""x y""#), ("C", "$B")]);
    }

    #[test]
    fn env_legacy_form_takes_the_rest_of_the_line() {
        let e = variant!("ENV ONE TWO= THREE=world", Env);
        assert!(e.legacy);
        assert_eq!(
            e.pairs,
            vec![KeyValue {
                key: "ONE".into(),
                value: "TWO= THREE=world".into()
            }]
        );
    }

    #[test]
    fn env_requires_an_argument() {
        assert_eq!(msg("ENV"), "ENV requires at least one argument");
    }

    #[test]
    fn env_blank_name_is_rejected() {
        assert_eq!(msg("ENV =x"), "ENV names can not be blank");
    }

    #[test]
    fn env_rejects_flags() {
        assert_eq!(msg("ENV --x=1 A=b"), "unknown flag: --x");
    }

    #[test]
    fn env_with_broken_triples_is_too_many_arguments() {
        let n = node("env", &["a", "b", "=", "c"]);
        assert_eq!(
            from_node(&n, '\\').unwrap_err().to_string(),
            "Bad input to ENV, too many arguments"
        );
    }

    #[test]
    fn label_pairs_and_legacy_form() {
        let l = variant!(r#"LABEL "com.example.vendor"="ACME" version=1.0"#, Label);
        assert_eq!(l.pairs.len(), 2);
        assert_eq!(l.pairs[0].key, r#""com.example.vendor""#);
        assert_eq!(l.pairs[0].value, r#""ACME""#);
        let l = variant!("LABEL description This is text", Label);
        assert!(l.legacy);
        assert_eq!(l.pairs[0].value, "This is text");
    }

    #[test]
    fn label_requires_an_argument_and_names() {
        assert_eq!(msg("LABEL"), "LABEL requires at least one argument");
        assert_eq!(msg("LABEL =x"), "LABEL names can not be blank");
        assert_eq!(msg("LABEL --a=b k=v"), "unknown flag: --a");
    }

    // ---- MAINTAINER / WORKDIR / USER ----

    #[test]
    fn maintainer_takes_the_rest_of_the_line() {
        let m = variant!("MAINTAINER Jane Doe <jane@example.com>", Maintainer);
        assert_eq!(m.name, "Jane Doe <jane@example.com>");
    }

    #[test]
    fn single_argument_instructions_require_it() {
        for keyword in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
            assert_eq!(
                msg(keyword),
                format!("{keyword} requires exactly one argument")
            );
        }
    }

    #[test]
    fn maintainer_unknown_flag_is_rejected() {
        assert_eq!(
            msg("MAINTAINER --boo joe@example.com"),
            "unknown flag: --boo"
        );
    }

    #[test]
    fn workdir_and_user_keep_raw_text() {
        assert_eq!(
            variant!("WORKDIR $HOME/app dir", Workdir).path,
            "$HOME/app dir"
        );
        assert_eq!(variant!("USER ${UID}:${GID}", User).user, "${UID}:${GID}");
        assert_eq!(msg("WORKDIR --x=1 /a"), "unknown flag: --x");
        assert_eq!(msg("USER --x=1 me"), "unknown flag: --x");
    }

    // ---- RUN ----

    #[test]
    fn run_shell_and_exec_forms() {
        let r = variant!("RUN echo $HOME && ls", Run);
        assert_eq!(r.command, CommandForm::Shell("echo $HOME && ls".into()));
        assert_eq!(r.network, Network::Default);
        assert_eq!(r.security, Security::Sandbox);
        let r = variant!(r#"RUN ["echo", "$HOME"]"#, Run);
        assert_eq!(
            r.command,
            CommandForm::Exec(vec!["echo".into(), "$HOME".into()])
        );
        assert_eq!(r.script(), RunScript::Command(r.command.clone()));
        assert_eq!(
            r.command.to_argv(&["/bin/sh".into(), "-c".into()]),
            vec!["echo".to_string(), "$HOME".to_string()]
        );
    }

    #[test]
    fn run_without_command_is_accepted_like_buildkit() {
        let r = variant!("RUN", Run);
        assert_eq!(r.command, CommandForm::Shell(String::new()));
    }

    #[test]
    fn run_literal_mount_is_parsed_here() {
        let r = variant!("RUN --mount=type=cache,target=/root/.cache go build", Run);
        let spec = &r.mounts[0];
        assert_eq!(spec.text, "type=cache,target=/root/.cache");
        let mount = spec.mount.as_ref().expect("literal mount is parsed");
        assert_eq!(mount.kind, MountKind::Cache);
        assert_eq!(mount.target.as_deref(), Some("/root/.cache"));
    }

    #[test]
    fn run_mount_is_repeatable_and_ordered() {
        let r = variant!(
            "RUN --mount=type=secret,id=a --mount=type=ssh --mount=target=/src make",
            Run
        );
        let kinds: Vec<MountKind> = r
            .mounts
            .iter()
            .map(|m| m.mount.as_ref().unwrap().kind)
            .collect();
        assert_eq!(
            kinds,
            vec![MountKind::Secret, MountKind::Ssh, MountKind::Bind]
        );
    }

    #[test]
    fn run_mount_with_variables_waits_for_expansion() {
        let r = variant!("RUN --mount=type=$KIND,target=$DIR,sharing=bogus true", Run);
        assert_eq!(r.mounts[0].mount, None);
        assert_eq!(r.mounts[0].text, "type=$KIND,target=$DIR,sharing=bogus");
    }

    #[test]
    fn run_mount_from_variable_is_rejected() {
        assert_eq!(
            msg("RUN --mount=from=$STAGE,target=/x true"),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
    }

    #[test]
    fn run_invalid_literal_mount_is_rejected_with_hint() {
        let e = err("RUN --mount=type=cahce,target=/x true");
        assert_eq!(e.to_string(), r#"unsupported mount type "cahce""#);
        assert_eq!(e.hint(), Some("did you mean `cache`?"));
        assert_eq!(e.location(), (1, 1));
        assert_eq!(
            msg("RUN --mount=type=secret true"),
            "invalid secret mount. one of source, target required"
        );
    }

    #[test]
    fn run_mount_needs_a_value() {
        assert_eq!(msg("RUN --mount true"), "missing a value on flag: --mount");
        assert_eq!(msg("RUN --mount= true"), "failed to parse csv mounts: EOF");
    }

    #[test]
    fn run_network_values() {
        assert_eq!(
            variant!("RUN --network=none true", Run).network,
            Network::None
        );
        assert_eq!(
            variant!("RUN --network=host true", Run).network,
            Network::Host
        );
        assert_eq!(
            variant!("RUN --network=default true", Run).network,
            Network::Default
        );
        assert_eq!(
            msg("RUN --network=bridge true"),
            r#"invalid network mode "bridge""#
        );
        assert_eq!(
            msg("RUN --network=NONE true"),
            r#"invalid network mode "NONE""#
        );
        assert_eq!(
            msg("RUN --network=none --network=host true"),
            "duplicate flag specified: --network"
        );
    }

    #[test]
    fn run_security_values() {
        assert_eq!(
            variant!("RUN --security=insecure true", Run).security,
            Security::Insecure
        );
        assert_eq!(
            variant!("RUN --security=sandbox true", Run).security,
            Security::Sandbox
        );
        assert_eq!(
            msg("RUN --security=root true"),
            r#"security "root" is not valid"#
        );
    }

    #[test]
    fn run_device_is_parsed() {
        let r = variant!(
            "RUN --device=vendor.com/gpu=0,required --device=x nvidia-smi",
            Run
        );
        assert_eq!(r.devices.len(), 2);
        assert_eq!(
            r.devices[0],
            Device {
                name: "vendor.com/gpu=0".into(),
                required: true
            }
        );
        assert!(msg("RUN --device=a,b true").contains("key=value"));
    }

    #[test]
    fn run_unknown_flag_suggests_a_known_one() {
        let e = err("RUN --mout=type=cache,target=/x true");
        assert_eq!(e.to_string(), "unknown flag: --mout");
        assert_eq!(e.hint(), Some("did you mean `--mount`?"));
        assert_eq!(msg("RUN --Mount=target=/x true"), "unknown flag: --Mount");
        assert_eq!(err("RUN --chown=1 true").hint(), None);
    }

    #[test]
    fn run_heredoc_alone_is_the_script() {
        let r = variant!("FROM a\nRUN <<EOF\nls /\nwhoami\nEOF\n", Run);
        assert_eq!(r.command, CommandForm::Shell("<<EOF".into()));
        assert_eq!(r.heredocs.len(), 1);
        assert_eq!(r.script(), RunScript::Script("ls /\nwhoami\n".into()));
        assert_eq!(r.span, Span { start: 2, end: 5 });
    }

    #[test]
    fn run_heredoc_chomp_strips_tabs_for_the_script() {
        let r = variant!("FROM a\nRUN <<-EOF\n\techo test\nEOF\n", Run);
        assert_eq!(r.heredocs[0].content, "\techo test\n");
        assert_eq!(r.script(), RunScript::Script("echo test\n".into()));
    }

    #[test]
    fn run_heredoc_with_shebang_becomes_a_file() {
        let r = variant!(
            "FROM a\nRUN <<EOT\n#!/usr/bin/env python3\nprint(1)\nEOT\n",
            Run
        );
        assert_eq!(
            r.script(),
            RunScript::Shebang {
                name: "EOT".into(),
                body: "#!/usr/bin/env python3\nprint(1)\n".into()
            }
        );
    }

    #[test]
    fn run_heredoc_inside_a_command_is_recombined() {
        let r = variant!("FROM a\nRUN <<'EOF' | python\nprint(\"hello\")\nEOF\n", Run);
        assert_eq!(r.command, CommandForm::Shell("<<'EOF' | python".into()));
        assert_eq!(
            r.script(),
            RunScript::Combined("<<'EOF' | python\nprint(\"hello\")\nEOF".into())
        );
        let r = variant!("FROM a\nRUN cat <<A > a && cat <<B > b\n1\nA\n2\nB\n", Run);
        assert_eq!(
            r.script(),
            RunScript::Combined("cat <<A > a && cat <<B > b\n1\nA\n2\nB".into())
        );
    }

    // ---- CMD / ENTRYPOINT / SHELL ----

    #[test]
    fn cmd_and_entrypoint_forms() {
        assert_eq!(
            variant!(r#"CMD ["nginx", "-g", "daemon off;"]"#, Cmd).command,
            CommandForm::Exec(vec!["nginx".into(), "-g".into(), "daemon off;".into()])
        );
        assert_eq!(
            variant!("CMD echo hi # not a comment", Cmd).command,
            CommandForm::Shell("echo hi # not a comment".into())
        );
        assert_eq!(variant!("CMD []", Cmd).command, CommandForm::Exec(vec![]));
        assert_eq!(
            variant!("CMD ['a']", Cmd).command,
            CommandForm::Shell("['a']".into())
        );
        let e = variant!("ENTRYPOINT exec top -b", Entrypoint);
        assert_eq!(
            e.command.to_argv(&["/bin/sh".into(), "-c".into()]),
            vec!["/bin/sh".to_string(), "-c".into(), "exec top -b".into()]
        );
        assert_eq!(
            variant!("ENTRYPOINT", Entrypoint).command,
            CommandForm::Shell(String::new())
        );
    }

    #[test]
    fn cmd_and_entrypoint_reject_flags() {
        assert_eq!(msg("CMD --x=1 a"), "unknown flag: --x");
        assert_eq!(msg("ENTRYPOINT --x a"), "unknown flag: --x");
    }

    #[test]
    fn shell_must_be_json() {
        let s = variant!(r#"SHELL ["/bin/bash", "-o", "pipefail", "-c"]"#, Shell);
        assert_eq!(s.shell, vec!["/bin/bash", "-o", "pipefail", "-c"]);
        let e = err("SHELL /bin/bash -c");
        assert_eq!(
            e.to_string(),
            "SHELL requires the arguments to be in JSON form"
        );
        assert!(e.hint().is_some());
        assert_eq!(msg("SHELL []"), "SHELL requires at least one argument");
        assert_eq!(msg("SHELL"), "SHELL requires at least one argument");
    }

    // ---- EXPOSE / VOLUME / STOPSIGNAL ----

    #[test]
    fn expose_keeps_raw_words_sorted() {
        let e = variant!("EXPOSE 8080/udp $PORT 80 443/TCP", Expose);
        assert_eq!(e.ports, vec!["$PORT", "443/TCP", "80", "8080/udp"]);
        assert_eq!(msg("EXPOSE"), "EXPOSE requires at least one argument");
        assert_eq!(msg("EXPOSE --x=1 80"), "unknown flag: --x");
    }

    #[test]
    fn volume_words_and_json() {
        assert_eq!(variant!("VOLUME /a /b", Volume).paths, vec!["/a", "/b"]);
        assert_eq!(
            variant!(r#"VOLUME ["/my data", " /c "]"#, Volume).paths,
            vec!["/my data", "/c"]
        );
        assert_eq!(
            msg(r#"VOLUME ["/a", "  "]"#),
            "VOLUME specified can not be an empty string"
        );
        assert_eq!(msg("VOLUME []"), "VOLUME requires at least one argument");
        assert_eq!(msg("VOLUME"), "VOLUME requires at least one argument");
    }

    #[test]
    fn stopsignal_literal_is_checked() {
        assert_eq!(variant!("STOPSIGNAL SIGKILL", StopSignal).signal, "SIGKILL");
        assert_eq!(variant!("STOPSIGNAL 9", StopSignal).signal, "9");
        assert_eq!(variant!("STOPSIGNAL rtmin+3", StopSignal).signal, "rtmin+3");
        assert_eq!(msg("STOPSIGNAL SIGFOO"), "invalid signal: SIGFOO");
        assert_eq!(msg("STOPSIGNAL 0"), "invalid signal: 0");
    }

    #[test]
    fn stopsignal_with_variable_waits_for_expansion() {
        assert_eq!(variant!("STOPSIGNAL $SIG", StopSignal).signal, "$SIG");
    }

    #[test]
    fn stopsignal_flags_are_ignored_like_buildkit() {
        assert_eq!(variant!("STOPSIGNAL --x=1 TERM", StopSignal).signal, "TERM");
    }

    // ---- HEALTHCHECK ----

    #[test]
    fn healthcheck_none() {
        let h = variant!("HEALTHCHECK NONE", Healthcheck);
        assert_eq!(h.check, Healthcheck::None);
        assert_eq!(h.check.test(), vec!["NONE"]);
        assert_eq!(
            variant!("HEALTHCHECK none", Healthcheck).check,
            Healthcheck::None
        );
        assert_eq!(
            msg("HEALTHCHECK NONE extra"),
            "HEALTHCHECK NONE takes no arguments"
        );
    }

    #[test]
    fn healthcheck_none_ignores_flags_like_buildkit() {
        assert_eq!(
            variant!("HEALTHCHECK --bogus=1 NONE", Healthcheck).check,
            Healthcheck::None
        );
    }

    #[test]
    fn healthcheck_cmd_forms_and_test() {
        let h = variant!(
            "HEALTHCHECK CMD curl -f http://localhost/ || exit 1",
            Healthcheck
        );
        assert_eq!(
            h.check.test(),
            vec!["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
        );
        let h = variant!(r#"HEALTHCHECK cmd ["/bin/check", "-q"]"#, Healthcheck);
        assert_eq!(h.check.test(), vec!["CMD", "/bin/check", "-q"]);
        let Healthcheck::Cmd(cmd) = h.check else {
            panic!("cmd")
        };
        assert_eq!(
            (
                cmd.interval,
                cmd.timeout,
                cmd.start_period,
                cmd.start_interval,
                cmd.retries
            ),
            (0, 0, 0, 0, 0)
        );
    }

    #[test]
    fn healthcheck_options_are_parsed() {
        let h = variant!(
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=4 CMD true",
            Healthcheck
        );
        let Healthcheck::Cmd(cmd) = h.check else {
            panic!("cmd")
        };
        assert_eq!(cmd.interval, 300_000_000_000);
        assert_eq!(cmd.timeout, 3_000_000_000);
        assert_eq!(cmd.start_period, 90_000_000_000);
        assert_eq!(cmd.start_interval, 500_000_000);
        assert_eq!(cmd.retries, 4);
    }

    #[test]
    fn healthcheck_zero_or_empty_duration_means_default() {
        let h = variant!(
            "HEALTHCHECK --interval=0s --timeout= --retries=0 CMD true",
            Healthcheck
        );
        let Healthcheck::Cmd(cmd) = h.check else {
            panic!("cmd")
        };
        assert_eq!((cmd.interval, cmd.timeout, cmd.retries), (0, 0, 0));
    }

    #[test]
    fn healthcheck_duration_errors() {
        assert_eq!(
            msg("HEALTHCHECK --interval=50ns CMD true"),
            r#"Interval "interval" cannot be less than 1ms"#
        );
        assert_eq!(
            msg("HEALTHCHECK --timeout=-1s CMD true"),
            r#"Interval "timeout" cannot be less than 1ms"#
        );
        assert_eq!(
            msg("HEALTHCHECK --start-period=5 CMD true"),
            r#"time: missing unit in duration "5""#
        );
        assert_eq!(
            msg("HEALTHCHECK --start-interval=abc CMD true"),
            r#"time: invalid duration "abc""#
        );
        assert!(parse_last("HEALTHCHECK --interval=1ms CMD true").is_ok());
    }

    #[test]
    fn healthcheck_retries_errors() {
        assert_eq!(
            msg("HEALTHCHECK --retries=-1 CMD true"),
            "--retries cannot be negative (-1)"
        );
        assert_eq!(
            msg("HEALTHCHECK --retries=x CMD true"),
            r#"strconv.ParseInt: parsing "x": invalid syntax"#
        );
        assert_eq!(
            msg("HEALTHCHECK --retries=9999999999 CMD true"),
            r#"strconv.ParseInt: parsing "9999999999": value out of range"#
        );
    }

    #[test]
    fn healthcheck_bad_type_and_missing_command() {
        assert_eq!(
            msg("HEALTHCHECK"),
            "HEALTHCHECK requires at least one argument"
        );
        assert_eq!(
            msg("HEALTHCHECK RUN true"),
            r#"Unknown type "RUN" in HEALTHCHECK (try CMD)"#
        );
        assert_eq!(
            msg("HEALTHCHECK CMD"),
            "Missing command after HEALTHCHECK CMD"
        );
        assert_eq!(
            msg("HEALTHCHECK CMD []"),
            "Missing command after HEALTHCHECK CMD"
        );
        assert_eq!(
            msg("HEALTHCHECK --intervl=1s CMD true"),
            "unknown flag: --intervl"
        );
    }

    // ---- COPY / ADD ----

    #[test]
    fn copy_sources_and_destination() {
        let c = variant!("COPY a.txt dir/ /dest/", Copy);
        assert_eq!(c.sources, vec!["a.txt", "dir/"]);
        assert_eq!(c.dest, "/dest/");
        assert!(c.heredocs.is_empty());
        let c = variant!(r#"COPY ["my file", "/dest dir/"]"#, Copy);
        assert_eq!(c.sources, vec!["my file"]);
        assert_eq!(c.dest, "/dest dir/");
    }

    #[test]
    fn copy_and_add_require_two_arguments() {
        for keyword in ["COPY", "ADD"] {
            let e = err(&format!("{keyword} arg1"));
            assert_eq!(
                e.to_string(),
                format!(
                    "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
                )
            );
        }
        assert!(msg("COPY\t\n").starts_with("COPY requires at least two arguments"));
    }

    #[test]
    fn copy_flags() {
        let c = variant!(
            "COPY --from=build --chown=app:app --chmod=0755 --link --exclude=*.md --exclude=tmp/ --parents a /b/",
            Copy
        );
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.chown.as_deref(), Some("app:app"));
        assert_eq!(c.chmod.as_deref(), Some("0755"));
        assert!(c.link && c.parents);
        assert_eq!(c.excludes, vec!["*.md", "tmp/"]);
        let c = variant!("COPY --link=FALSE --parents=true --from= a b", Copy);
        assert!(!c.link && c.parents);
        assert_eq!(c.from, None);
    }

    #[test]
    fn boolean_flag_values() {
        assert_eq!(
            msg("COPY --link=yes a b"),
            "expecting boolean value for flag --link, not: yes"
        );
        assert_eq!(msg("COPY --link= a b"), "missing a value on flag: --link");
        assert_eq!(
            msg("COPY --link --link=false a b"),
            "duplicate flag specified: --link"
        );
    }

    #[test]
    fn string_flag_twice_or_without_value_is_rejected() {
        assert_eq!(
            msg("COPY --from=a --from=b x y"),
            "duplicate flag specified: --from"
        );
        assert_eq!(msg("COPY --chown a b"), "missing a value on flag: --chown");
        assert_eq!(
            msg("COPY --exclude a b"),
            "missing a value on flag: --exclude"
        );
    }

    #[test]
    fn copy_rejects_add_only_flags() {
        assert_eq!(
            msg("COPY --checksum=sha256:abc a b"),
            "unknown flag: --checksum"
        );
        assert_eq!(
            msg("COPY --keep-git-dir a b"),
            "unknown flag: --keep-git-dir"
        );
        assert_eq!(msg("COPY --unpack a b"), "unknown flag: --unpack");
    }

    #[test]
    fn copy_from_on_add_is_rejected() {
        let e = err("ADD --from=build a b");
        assert_eq!(e.to_string(), "unknown flag: --from");
        assert_eq!(msg("ADD --parents a b"), "unknown flag: --parents");
    }

    #[test]
    fn copy_chmod_literal_is_checked_early() {
        assert_eq!(
            msg("COPY --chmod=64a a b"),
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
        );
        assert_eq!(
            msg("COPY --chmod=u+q a b"),
            "invalid chmod parameter: 'u+q': invalid syntax"
        );
        assert_eq!(
            variant!("COPY --chmod=u=rwX,go=rX a b", Copy)
                .chmod
                .as_deref(),
            Some("u=rwX,go=rX")
        );
        assert_eq!(
            variant!("COPY --chmod=$MODE a b", Copy).chmod.as_deref(),
            Some("$MODE")
        );
        assert_eq!(
            variant!("ADD --chmod=\"755\" a b", Add).chmod.as_deref(),
            Some("755")
        );
    }

    #[test]
    fn add_flags() {
        let a = variant!(
            "ADD --checksum=sha256:24454f830c --keep-git-dir=true --unpack=false --link --chown=1 --exclude=x https://example.com/a.tar.gz /dest/",
            Add
        );
        assert_eq!(a.checksum.as_deref(), Some("sha256:24454f830c"));
        assert_eq!(a.keep_git_dir, Some(true));
        assert_eq!(a.unpack, Some(false));
        assert!(a.link);
        assert_eq!(a.chown.as_deref(), Some("1"));
        assert_eq!(a.excludes, vec!["x"]);
        let a = variant!("ADD a.tar /x/", Add);
        assert_eq!((a.keep_git_dir, a.unpack, a.checksum), (None, None, None));
    }

    #[test]
    fn copy_heredoc_sources() {
        let c = variant!("FROM a\nCOPY <<EOF /bar\nTESTING\nEOF\n", Copy);
        assert_eq!(c.dest, "/bar");
        assert!(c.sources.is_empty());
        assert_eq!(
            c.heredocs,
            vec![HeredocSource {
                name: "EOF".into(),
                content: "TESTING\n".into(),
                expand: true
            }]
        );

        let c = variant!("FROM a\nCOPY <<-EOF /bar\n\tTESTING\nEOF\n", Copy);
        assert_eq!(c.heredocs[0].content, "TESTING\n");

        let c = variant!("FROM a\nCOPY <<'EOF' /bar\nTESTING\nEOF\n", Copy);
        assert!(!c.heredocs[0].expand);

        let c = variant!(
            "FROM a\nCOPY <<EOF1 <<EOF2 /bar\nthis is the first file\nEOF1\nthis is the second file\nEOF2\n",
            Copy
        );
        let names: Vec<&str> = c.heredocs.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["EOF1", "EOF2"]);
        assert_eq!(c.heredocs[1].content, "this is the second file\n");

        let c = variant!(
            "FROM a\nCOPY <<EOF foo.txt /bar\nthis is inline\nEOF\n",
            Copy
        );
        assert_eq!(c.sources, vec!["foo.txt"]);
        assert_eq!(c.heredocs[0].content, "this is inline\n");

        let c = variant!("FROM a\nCOPY <<EOF /quotes\n\"quotes\"\nEOF\n", Copy);
        assert_eq!(c.heredocs[0].content, "\"quotes\"\n");
    }

    #[test]
    fn copy_heredoc_destination_is_rejected() {
        assert_eq!(
            msg("FROM a\nCOPY /foo <<EOF\nEOF\n"),
            "COPY cannot accept a heredoc as a destination"
        );
    }

    #[test]
    fn add_heredoc_source() {
        let a = variant!("FROM a\nADD <<EOF /x\nhi $X\nEOF\n", Add);
        assert_eq!(a.heredocs[0].content, "hi $X\n");
        assert!(a.heredocs[0].expand);
    }

    // ---- ONBUILD ----

    #[test]
    fn onbuild_keeps_trigger_text_and_parses_it() {
        let o = variant!("ONBUILD RUN echo ${X}  done", Onbuild);
        assert_eq!(o.expression, "RUN echo ${X}  done");
        let OnbuildTrigger::Parsed(inner) = &o.trigger else {
            panic!("parsed")
        };
        assert_eq!(inner.keyword(), "RUN");
        let o = variant!("onbuild copy --from=x a b", Onbuild);
        assert_eq!(o.expression, "copy --from=x a b");
        let OnbuildTrigger::Parsed(inner) = &o.trigger else {
            panic!("parsed")
        };
        let Instruction::Copy(copy) = inner.as_ref() else {
            panic!("copy")
        };
        assert_eq!(copy.from.as_deref(), Some("x"));
    }

    #[test]
    fn onbuild_heredoc_is_appended_to_the_expression() {
        let o = variant!("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n", Onbuild);
        assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
        let OnbuildTrigger::Parsed(inner) = &o.trigger else {
            panic!("parsed")
        };
        let Instruction::Run(run) = inner.as_ref() else {
            panic!("run")
        };
        assert_eq!(run.script(), RunScript::Script("echo hi\n".into()));
    }

    #[test]
    fn onbuild_forbidden_triggers() {
        assert_eq!(
            msg("ONBUILD ONBUILD RUN touch foobar"),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        assert_eq!(
            msg("ONBUILD FROM scratch"),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            msg("ONBUILD maintainer me"),
            "MAINTAINER isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(msg("ONBUILD"), "ONBUILD requires at least one argument");
        assert_eq!(msg("ONBUILD --x=1 RUN true"), "unknown flag: --x");
    }

    #[test]
    fn onbuild_invalid_trigger_is_deferred_like_buildkit() {
        let o = variant!("ONBUILD COPY onlyone", Onbuild);
        assert!(
            matches!(&o.trigger, OnbuildTrigger::Invalid { message } if message.starts_with("COPY requires at least two"))
        );
        let o = variant!("ONBUILD FOO bar", Onbuild);
        assert!(
            matches!(&o.trigger, OnbuildTrigger::Invalid { message } if message == "unknown instruction: FOO")
        );
    }

    // ---- unknown instructions, errors, serialization ----

    #[test]
    fn unknown_instruction_keeps_the_written_case() {
        assert_eq!(msg("FOO bar"), "unknown instruction: FOO");
        assert_eq!(msg("foo bar"), "unknown instruction: foo");
        assert_eq!(err("FOO bar").hint(), Some("did you mean `FROM`?"));
        assert_eq!(err("foo bar").hint(), Some("did you mean `from`?"));
        assert_eq!(err("XYZZY bar").hint(), None);
    }

    #[test]
    fn unknown_instruction_suggests_a_close_keyword() {
        assert_eq!(err("RUNN echo").hint(), Some("did you mean `RUN`?"));
        assert_eq!(err("cpoy a b").hint(), Some("did you mean `copy`?"));
        assert_eq!(
            err("Entrypiont x").hint(),
            Some("did you mean `entrypoint`?")
        );
        assert_eq!(err("EXPOSED 80").hint(), Some("did you mean `EXPOSE`?"));
    }

    #[test]
    fn errors_carry_the_node_start_line() {
        let e = err("FROM a\n\n# c\nRUN --network=x \\\n  true\n");
        assert_eq!(e.location(), (4, 1));
        let e = from_node(&node("user", &[]), '\\').unwrap_err();
        assert_eq!(e.location(), (7, 1));
    }

    #[test]
    fn keyword_and_span_for_every_instruction() {
        let src = "FROM a AS b\nARG X\nENV A=1\nLABEL a=b\nMAINTAINER m\nWORKDIR /w\nUSER u\nRUN r\nCMD c\nENTRYPOINT e\nSHELL [\"sh\"]\nEXPOSE 1\nVOLUME /v\nSTOPSIGNAL 1\nHEALTHCHECK NONE\nCOPY a b\nADD a b\nONBUILD RUN x\n";
        let ast = parse(src.as_bytes()).unwrap();
        let keywords: Vec<&str> = ast
            .nodes
            .iter()
            .map(|n| {
                let i = from_node(n, '\\').unwrap();
                assert_eq!(i.span(), n.span);
                i.keyword()
            })
            .collect();
        let expected: Vec<&str> = src.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(keywords, expected);
    }

    #[test]
    fn instructions_serialize_with_their_keyword() {
        let json = serde_json::to_value(ok("RUN --network=none --mount=type=tmpfs,target=/t echo"))
            .unwrap();
        assert_eq!(json["instruction"], "RUN");
        assert_eq!(json["network"], "none");
        assert_eq!(json["command"]["shell"], "echo");
        assert_eq!(json["mounts"][0]["mount"]["kind"], "tmpfs");
        let json = serde_json::to_value(ok("STOPSIGNAL 9")).unwrap();
        assert_eq!(json["instruction"], "STOPSIGNAL");
        let json = serde_json::to_value(ok("ONBUILD ADD a b")).unwrap();
        assert_eq!(json["trigger"]["parsed"]["instruction"], "ADD");
    }

    #[test]
    fn escape_directive_marks_values_as_not_literal() {
        // With the backtick escape, "`" may change at expansion: not checked here.
        let i = ok("# escape=`\nFROM a\nSTOPSIGNAL SIG`KILL\n");
        assert!(matches!(i, Instruction::StopSignal(_)));
        assert_eq!(
            msg("FROM a\nSTOPSIGNAL SIG`KILL\n"),
            "invalid signal: SIG`KILL"
        );
    }

    // ---- helpers ----

    #[test]
    fn heredoc_words() {
        let word = |s| heredoc_word(s);
        assert_eq!(
            word("<<EOF"),
            Some(HeredocWord {
                name: "EOF".into(),
                chomp: false,
                expand: true
            })
        );
        assert_eq!(
            word("<<-EOF"),
            Some(HeredocWord {
                name: "EOF".into(),
                chomp: true,
                expand: true
            })
        );
        assert_eq!(
            word("3<<\"E\"OF"),
            Some(HeredocWord {
                name: "EOF".into(),
                chomp: false,
                expand: false
            })
        );
        assert_eq!(
            word("<< 'x y'"),
            Some(HeredocWord {
                name: "x y".into(),
                chomp: false,
                expand: false
            })
        );
        assert_eq!(
            word("<<\\EOF"),
            Some(HeredocWord {
                name: "EOF".into(),
                chomp: false,
                expand: true
            })
        );
        assert_eq!(word("<<EOF bash"), None);
        assert_eq!(word("<<"), None);
        assert_eq!(word("<<-"), None);
        assert_eq!(word("a<<EOF"), None);
        assert_eq!(word("<<<EOF"), None);
        assert_eq!(word("<<'EOF"), None);
    }

    #[test]
    fn suggestions_follow_buildkit() {
        assert_eq!(
            suggest("mout", &["device", "mount"], true).as_deref(),
            Some("mount")
        );
        assert_eq!(suggest("xyzzy", &["mount"], true), None);
        assert_eq!(suggest("RUN", &KEYWORDS, false), None);
        assert_eq!(suggest("Rnn", &KEYWORDS, false).as_deref(), Some("run"));
        // Ties go to the first candidate (BuildKit's map order is random).
        assert_eq!(suggest("rnu", &KEYWORDS, false).as_deref(), Some("env"));
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn flag_parser_stops_at_double_dash_and_needs_dashes() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let specs = [("a", FlagKind::Bool)];
        assert!(Flags::parse(&words(&["--", "--bogus"]), &specs).is_ok());
        let (message, _) = Flags::parse(&words(&["-a"]), &specs).unwrap_err();
        assert_eq!(message, "arg should start with -- : -a");
        let (message, _) = Flags::parse(&words(&["--=x"]), &specs).unwrap_err();
        assert_eq!(message, "unknown flag: --");
    }

    /// A tiny deterministic generator, so the fuzz test needs no crate.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() as usize) % items.len()]
        }
    }

    #[test]
    fn random_nodes_never_panic() {
        let keywords = [
            "from",
            "arg",
            "env",
            "label",
            "maintainer",
            "workdir",
            "user",
            "run",
            "cmd",
            "entrypoint",
            "shell",
            "expose",
            "volume",
            "stopsignal",
            "healthcheck",
            "copy",
            "add",
            "onbuild",
            "bogus",
            "",
        ];
        let words = [
            "", " ", "=", "a", "AS", "as", "<<EOF", "<<-'E'", "\"", "'", "$X", "`", "\\", "NONE",
            "CMD", "[", "é", "a=b", "--x", "0", "-1s", "\u{0}", "<<", "3<<", "x,y",
        ];
        let flags = [
            "--",
            "--mount",
            "--mount=",
            "--mount=type=secret",
            "--mount=\"",
            "--mount=from=$a",
            "--mount=type=tmpfs,size=1e400",
            "--mount=size=,type=tmpfs",
            "--network",
            "--network=",
            "--link",
            "--link=",
            "--chmod=",
            "--chmod=u",
            "--chmod=7777777777",
            "--chmod=a+r,",
            "--interval=-0s",
            "--interval=1e",
            "--retries=+",
            "--device=",
            "--device=,",
            "-x",
            "--=",
            "--from",
            "--platform=",
            "--unpack=TRUE",
            "--exclude=",
            "--timeout=.",
        ];
        let mut rng = Lcg(0x5eed);
        for _ in 0..20_000 {
            let mut n = node(rng.pick(&keywords), &[]);
            for _ in 0..rng.next() % 4 {
                n.args.push(rng.pick(&words).to_string());
            }
            for _ in 0..rng.next() % 3 {
                n.flags.push(rng.pick(&flags).to_string());
            }
            n.json = rng.next().is_multiple_of(3);
            if rng.next().is_multiple_of(4) {
                n.heredocs.push(Heredoc {
                    name: rng.pick(&words).to_string(),
                    content: rng.pick(&words).to_string(),
                    expand: true,
                    chomp: rng.next().is_multiple_of(2),
                    fd: 0,
                });
            }
            if rng.next().is_multiple_of(5) {
                let mut inner = node(rng.pick(&keywords), &[rng.pick(&words)]);
                inner.flags.push(rng.pick(&flags).to_string());
                n.trigger = Some(Box::new(inner));
            }
            n.original = rng.pick(&words).to_string();
            let _ = from_node(
                &n,
                if rng.next().is_multiple_of(2) {
                    '\\'
                } else {
                    '`'
                },
            );
        }
        for text in words.iter().chain(flags.iter()) {
            let _ = parse_mount(text);
            let _ = parse_device(text);
            let _ = parse_chmod(text);
            let _ = parse_duration(text);
            let _ = parse_signal(text);
            let _ = heredoc_word(text);
        }
    }
}
