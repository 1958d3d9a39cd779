//! Metadata instructions → the image config, as docker build writes it.

use crate::dockerfile::instruction::{CommandForm, Healthcheck, Instruction};
use crate::dockerfile::stage::Scope;
use crate::image::oci::{self, Empty, ImageConfig};

fn shell_argv(form: &CommandForm, scope: &Scope) -> (Vec<String>, bool) {
    match form {
        CommandForm::Exec(a) => (a.clone(), false),
        CommandForm::Shell(_) => (form.to_argv(&scope.shell), true),
    }
}

/// The history `created_by` BuildKit writes for an instruction.
pub fn created_by(inst: &Instruction, scope: &Scope) -> String {
    match inst {
        Instruction::Run(run) => {
            let argv = match &run.command {
                CommandForm::Exec(a) => a.clone(),
                CommandForm::Shell(_) => run.command.to_argv(&scope.shell),
            };
            format!("RUN {} # buildkit", argv.join(" "))
        }
        Instruction::Copy(c) => format!(
            "COPY {} # buildkit",
            copy_args(
                &[("from", &c.from), ("chown", &c.chown), ("chmod", &c.chmod)],
                &c.sources,
                &c.heredocs,
                &c.dest
            )
        ),
        Instruction::Add(c) => format!(
            "ADD {} # buildkit",
            copy_args(
                &[("chown", &c.chown), ("chmod", &c.chmod)],
                &c.sources,
                &c.heredocs,
                &c.dest
            )
        ),
        Instruction::Workdir(w) => format!("WORKDIR {}", w.path),
        Instruction::Env(e) => format!(
            "ENV {}",
            e.pairs
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Label(l) => format!(
            "LABEL {}",
            l.pairs
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::User(u) => format!("USER {}", u.user),
        Instruction::Cmd(c) => format!("CMD {}", json_argv(&shell_argv(&c.command, scope).0)),
        Instruction::Entrypoint(c) => {
            format!("ENTRYPOINT {}", json_argv(&shell_argv(&c.command, scope).0))
        }
        Instruction::Shell(s) => format!("SHELL {}", json_argv(&s.shell)),
        Instruction::Expose(e) => format!(
            "EXPOSE map[{}]",
            e.ports
                .iter()
                .map(|p| format!("{}:{{}}", port_key(p)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Volume(v) => format!("VOLUME {}", json_argv(&v.paths)),
        Instruction::StopSignal(s) => format!("STOPSIGNAL {}", s.signal),
        Instruction::Healthcheck(_) => "HEALTHCHECK".to_owned(),
        Instruction::Onbuild(o) => format!("ONBUILD {}", o.expression),
        Instruction::Maintainer(m) => format!("MAINTAINER {}", m.name),
        Instruction::Arg(a) => format!(
            "ARG {}",
            a.args
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::From(_) => String::new(),
    }
}

fn json_argv(a: &[String]) -> String {
    serde_json::to_string(a).unwrap_or_default()
}

fn port_key(p: &str) -> String {
    if p.contains('/') {
        p.to_ascii_lowercase()
    } else {
        format!("{p}/tcp")
    }
}

/// Applies a metadata instruction (no filesystem change) to `config`, with
/// its history entry.
/// `cmd_set` tells whether this stage set CMD already.
pub fn apply(
    config: &mut ImageConfig,
    inst: &Instruction,
    scope: &Scope,
    sde: i64,
    cmd_set: &mut bool,
) {
    let c = &mut config.config;
    match inst {
        Instruction::Cmd(cmd) => {
            let (argv, shell) = shell_argv(&cmd.command, scope);
            c.cmd = Some(argv);
            c.args_escaped = shell;
            *cmd_set = true;
        }
        Instruction::Entrypoint(e) => {
            let (argv, shell) = shell_argv(&e.command, scope);
            c.entrypoint = Some(argv);
            c.args_escaped = shell;
            // "If CMD is defined from the base image, setting ENTRYPOINT
            // will reset CMD to an empty value." A CMD of this stage stays.
            if !*cmd_set {
                c.cmd = None;
            }
        }
        Instruction::Expose(e) => {
            for p in &e.ports {
                c.exposed_ports.insert(port_key(p), Empty {});
            }
        }
        Instruction::Volume(v) => {
            for p in &v.paths {
                c.volumes.insert(p.clone(), Empty {});
            }
        }
        Instruction::Label(l) => {
            for p in &l.pairs {
                c.labels.insert(p.key.clone(), p.value.clone());
            }
        }
        Instruction::StopSignal(s) => c.stop_signal = Some(s.signal.clone()),
        Instruction::Healthcheck(h) => {
            c.healthcheck = Some(match &h.check {
                Healthcheck::None => oci::Healthcheck {
                    test: vec!["NONE".into()],
                    ..oci::Healthcheck::default()
                },
                Healthcheck::Cmd(cmd) => {
                    let test = match &cmd.command {
                        CommandForm::Exec(a) => {
                            let mut t = vec!["CMD".to_owned()];
                            t.extend(a.iter().cloned());
                            t
                        }
                        CommandForm::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                    };
                    oci::Healthcheck {
                        test,
                        interval: cmd.interval,
                        timeout: cmd.timeout,
                        start_period: cmd.start_period,
                        start_interval: cmd.start_interval,
                        retries: u64::from(cmd.retries),
                    }
                }
            });
        }
        Instruction::Onbuild(o) => c.on_build.push(o.expression.clone()),
        Instruction::Maintainer(m) => config.author = Some(m.name.clone()),
        _ => {}
    }
    // ARG adds no history entry in BuildKit's image config.
    if !matches!(inst, Instruction::Arg(_) | Instruction::From(_)) {
        config.push_empty_layer(&created_by(inst, scope), sde);
    }
}

/// Sets what the stage's end scope decides: Env, WorkingDir, User, Shell.
pub fn finish(config: &mut ImageConfig, end: &Scope) {
    let c = &mut config.config;
    c.env = end
        .config_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if end.workdir != "/" || c.working_dir.is_some() {
        c.working_dir = Some(end.workdir.clone());
    }
    if !end.user.is_empty() {
        c.user = Some(end.user.clone());
    }
    let default = ["/bin/sh".to_owned(), "-c".to_owned()];
    if end.shell != default {
        c.shell = end.shell.clone();
    }
}

/// The arguments of a COPY or ADD as its history entry shows them: the flags
/// given, the sources, heredoc names, the destination.
fn copy_args(
    flags: &[(&str, &Option<String>)],
    sources: &[String],
    heredocs: &[crate::dockerfile::instruction::HeredocSource],
    dest: &str,
) -> String {
    let mut parts: Vec<String> = flags
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("--{name}={v}")))
        .collect();
    parts.extend(sources.iter().cloned());
    parts.extend(heredocs.iter().map(|h| format!("<<{}", h.name)));
    parts.push(dest.to_string());
    parts.join(" ")
}
