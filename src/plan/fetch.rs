//! Fetch steps in the plan: which steps may use the network, how kiln.lock
//! names them, and what their derivations cover.
//!
//! A fetch step is a `RUN` with `--network=default` or `--network=host`
//! written out (a RUN without the flag, or with `--network=none`, has no
//! network in kiln, whatever BuildKit does), or an `ADD` with an `http://`
//! or `https://` source. It is kiln's version of a Nix fixed-output
//! derivation: its result is pinned before it runs, by `ADD --checksum` in
//! the Dockerfile or by an entry in `kiln.lock`.
//!
//! # What a fetch step's hashes cover
//! - Its **inputs**: the ordinary step encoding (the parent it runs on, the
//!   instruction, the variables it sees without proxy settings, SHELL,
//!   WORKDIR, USER, the context files it reads, SOURCE_DATE_EPOCH).
//!   kiln.lock records it beside the pin, so a pin made for other inputs
//!   (a `package-lock.json` edited, a base image moved) is reported stale
//!   before anything runs instead of being reused: Nix's fixed-output
//!   footgun (a new URL with the old hash quietly keeps the old output) is
//!   closed here.
//! - Its **derivation**, which names its output in the store and is what
//!   the next step builds on: the parent and the pinned layer diff_id
//!   (`fixed-output`), nothing else. As Nix's `hashDerivationModulo`
//!   replaces a fixed-output derivation by its output hash, the steps after
//!   a fetch step hash over the pinned layer (and what is below it), never
//!   over the command, the URL, the environment or the proxy. So the
//!   output's name is its pin: realizing it gives the pinned layer or
//!   fails, and nothing else is ever stored under that name.
//! - `ADD --checksum=sha256:…` pins the downloaded content in the
//!   Dockerfile; the layer made from it is then a plain function of its
//!   inputs, so such a step keeps its ordinary derivation and needs no
//!   kiln.lock entry.
//!
//! Pure: pins come in as values.

use serde::Serialize;

use crate::derivation::{Derivation, Encoder, Kind};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::dockerfile::instruction::{CommandForm, Instruction, Network, RunScript};

/// How kiln.lock names a fetch step: its stage and its instruction, not its
/// line, so edits elsewhere in the Dockerfile leave the entry alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FetchKey {
    /// The stage's name, or `#index` for a stage without one.
    pub stage: String,
    /// The instruction after expansion, as [`describe`] writes it.
    pub instruction: String,
    /// 1 for the first fetch step of the stage with this text, 2 for the
    /// second, ...
    pub occurrence: u32,
}

impl std::fmt::Display for FetchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage `{}`: `{}`", self.stage, self.instruction)?;
        if self.occurrence > 1 {
            write!(f, " (occurrence {})", self.occurrence)?;
        }
        Ok(())
    }
}

/// One kiln.lock entry for a fetch step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedFetch {
    /// Which step.
    pub key: FetchKey,
    /// The step's inputs hash when it was pinned.
    pub inputs: Blake3Digest,
    /// The layer it produced (the diff_id: sha256 of the uncompressed tar).
    pub diff_id: Sha256Digest,
    /// For ADD: the sha256 of the downloaded content.
    pub content: Option<Sha256Digest>,
}

/// What pins a fetch step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    /// The layer (kiln.lock).
    pub diff_id: Option<Sha256Digest>,
    /// The downloaded content (ADD: kiln.lock or `--checksum`).
    pub content: Option<Sha256Digest>,
}

/// Whether and how a fetch step is pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FetchState {
    /// Pinned by kiln.lock for these inputs, or by `ADD --checksum`.
    Pinned(Pin),
    /// No pin: `kiln build` refuses to start, `kiln lock` runs it.
    Unpinned,
    /// kiln.lock pins it for other inputs.
    Stale {
        /// The inputs hash kiln.lock has.
        locked: Blake3Digest,
    },
}

/// A fetch step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchStep {
    /// How kiln.lock names it.
    pub key: FetchKey,
    /// Its inputs hash (the ordinary step derivation's).
    pub inputs: Blake3Digest,
    /// The `parent` its derivation builds on (a derivation, an image
    /// digest, `scratch`, `link`).
    pub parent: String,
    /// For ADD: the `http(s)://` sources, in order.
    pub urls: Vec<String>,
    /// Its pin.
    #[serde(flatten)]
    pub state: FetchState,
}

impl FetchStep {
    /// The pin, when pinned.
    pub fn pin(&self) -> Option<&Pin> {
        match &self.state {
            FetchState::Pinned(p) => Some(p),
            _ => None,
        }
    }
}

/// `http://` and `https://` sources are downloaded by ADD.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Whether `inst` is a fetch step.
pub fn is_fetch(inst: &Instruction) -> bool {
    match inst {
        Instruction::Run(r) => r.network_given && r.network != Network::None,
        Instruction::Add(a) => a.sources.iter().any(|s| is_url(s)),
        _ => false,
    }
}

/// The instruction as kiln.lock writes it: the keyword, the flags that
/// change what it does, and its arguments, after expansion, one space
/// apart (heredoc bodies follow their line, as the shell reads them).
pub fn describe(inst: &Instruction) -> String {
    let mut words: Vec<String> = vec![inst.keyword().to_owned()];
    match inst {
        Instruction::Run(r) => {
            for m in &r.mounts {
                words.push(format!("--mount={}", m.text));
            }
            if r.network_given {
                words.push(format!(
                    "--network={}",
                    match r.network {
                        Network::Default => "default",
                        Network::None => "none",
                        Network::Host => "host",
                    }
                ));
            }
            if r.security == crate::dockerfile::instruction::Security::Insecure {
                words.push("--security=insecure".to_owned());
            }
            words.push(match r.script() {
                RunScript::Command(CommandForm::Shell(s)) => s,
                RunScript::Command(CommandForm::Exec(argv)) => {
                    serde_json::to_string(&argv).expect("strings serialize")
                }
                RunScript::Shebang { .. } | RunScript::Script(_) | RunScript::Combined(_) => {
                    let CommandForm::Shell(line) = &r.command else {
                        unreachable!("heredocs come with the shell form")
                    };
                    let mut full = line.clone();
                    for doc in &r.heredocs {
                        full.push('\n');
                        full.push_str(&doc.content);
                        full.push_str(&doc.name);
                    }
                    full
                }
            });
        }
        Instruction::Add(a) => {
            for (flag, value) in [
                ("chown", &a.chown),
                ("chmod", &a.chmod),
                ("checksum", &a.checksum),
            ] {
                if let Some(v) = value {
                    words.push(format!("--{flag}={v}"));
                }
            }
            if a.link {
                words.push("--link".to_owned());
            }
            for e in &a.excludes {
                words.push(format!("--exclude={e}"));
            }
            if let Some(u) = a.unpack {
                words.push(format!("--unpack={u}"));
            }
            if let Some(k) = a.keep_git_dir {
                words.push(format!("--keep-git-dir={k}"));
            }
            words.extend(a.sources.iter().cloned());
            words.push(a.dest.clone());
        }
        _ => {}
    }
    words.join(" ")
}

/// The derivation of a pinned fetch step: its parent and its pinned layer,
/// nothing else (see the module docs).
///
/// ```
/// use kiln::digest::Sha256Digest;
/// let diff_id = Sha256Digest::of(b"a layer");
/// let a = kiln::plan::fetch::fixed_output("blake3:parent", &diff_id, "one");
/// let b = kiln::plan::fetch::fixed_output("blake3:parent", &diff_id, "another name");
/// assert_eq!(a.hash, b.hash);
/// assert!(a.text().contains("fixed-output 71:sha256:"));
/// ```
pub fn fixed_output(parent: &str, diff_id: &Sha256Digest, name: &str) -> Derivation {
    let mut enc = Encoder::new(Kind::Step);
    enc.text("parent", parent)
        .text("fixed-output", &diff_id.to_string());
    enc.finish(name)
}

/// A stand-in derivation for a fetch step with no usable pin: never built
/// (`kiln build` stops first, `kiln lock` pins the step and plans again),
/// distinct per inputs so the plan stays a function of its inputs.
pub(crate) fn unpinned(parent: &str, inputs: &Blake3Digest, name: &str) -> Derivation {
    let mut enc = Encoder::new(Kind::Step);
    enc.text("parent", parent)
        .text("fixed-output", &format!("unpinned:{inputs}"));
    enc.finish(name)
}

/// `ADD --checksum=sha256:<hex>`, parsed.
pub(crate) fn checksum(inst: &Instruction) -> Option<Result<Sha256Digest, String>> {
    let Instruction::Add(a) = inst else {
        return None;
    };
    let value = a.checksum.as_deref()?;
    Some(
        value.parse::<Sha256Digest>().map_err(|e| {
            format!("`--checksum={value}` is not a `sha256:<64 hex digits>` digest: {e}")
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(line: &str) -> Instruction {
        crate::dockerfile::parse(format!("FROM scratch\n{line}\n").as_bytes())
            .unwrap()
            .instructions
            .remove(1)
    }

    #[test]
    fn only_declared_network_runs_and_url_adds_are_fetch_steps() {
        assert!(is_fetch(&inst("RUN --network=default npm ci")));
        assert!(is_fetch(&inst("RUN --network=host npm ci")));
        assert!(!is_fetch(&inst("RUN npm ci")));
        assert!(!is_fetch(&inst("RUN --network=none npm ci")));
        assert!(is_fetch(&inst("ADD https://example.com/a.tgz /a.tgz")));
        assert!(is_fetch(&inst("ADD http://example.com/a /a")));
        assert!(!is_fetch(&inst("ADD a.tgz /a")));
        assert!(!is_fetch(&inst("COPY https://example.com/a /a")));
    }

    #[test]
    fn describe_keeps_what_changes_the_step() {
        assert_eq!(
            describe(&inst(
                "RUN   --network=default --mount=type=cache,target=/root/.npm npm ci"
            )),
            "RUN --mount=type=cache,target=/root/.npm --network=default npm ci"
        );
        assert_eq!(
            describe(&inst(r#"RUN --network=host ["npm", "ci"]"#)),
            r#"RUN --network=host ["npm","ci"]"#
        );
        assert_eq!(
            describe(&inst("ADD --chmod=644 https://example.com/a.tgz /srv/")),
            "ADD --chmod=644 https://example.com/a.tgz /srv/"
        );
    }

    #[test]
    fn fixed_output_covers_parent_and_pin_only() {
        let d1 = Sha256Digest::of(b"1");
        let d2 = Sha256Digest::of(b"2");
        assert_ne!(
            fixed_output("p", &d1, "x").hash,
            fixed_output("p", &d2, "x").hash
        );
        assert_ne!(
            fixed_output("p", &d1, "x").hash,
            fixed_output("q", &d1, "x").hash
        );
        let inputs = Blake3Digest::of(b"i");
        assert_ne!(
            unpinned("p", &inputs, "x").hash,
            fixed_output("p", &d1, "x").hash
        );
    }
}
