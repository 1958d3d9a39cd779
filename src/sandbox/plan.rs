//! The sandbox's filesystem as data: [`plan`] turns a [`Spec`] into the list
//! of [`MountOp`]s that PID 1 runs, in order, before the command (bubblewrap's
//! `SetupOp` list). Pure: no syscalls, no filesystem access, so it is tested as
//! data.
//!
//! Targets are paths *inside* the new root (absolute); the executor
//! ([`super::init`]) resolves them under the root's mount point until the
//! root switch, and creates missing mount points (stubs, reported so they are
//! removed from the upper dir afterwards). Sources are host paths.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{HOST_CA_BUNDLE, MountKind, Network, Spec, Upper};

/// One step of setting up the sandbox's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountOp {
    /// `mount(NULL, "/", NULL, MS_REC|MS_SLAVE)`: nothing we mount propagates
    /// back to the host, host mounts still propagate in (runc, bubblewrap).
    MakeRootSlave,
    /// A small tmpfs over [`SCRATCH`] (host side, in our mount namespace
    /// only: host sources are opened as fds before) holding the new root's
    /// mount point (`root/`), an empty dir (`empty/`) and the generated files
    /// (`etc/NAME`), so that none of them costs inodes on the host's disk.
    Scratch {
        /// Generated files: name under `etc/` and contents.
        files: Vec<(String, String)>,
    },
    /// Builds the stub layer: a lower layer (in the scratch tmpfs) on top of
    /// the others holding every mount point inside the overlay, so that mount
    /// points never have to be created in the upper dir (and captured, and
    /// cleaned up) and a mount point that is a symlink in an image is
    /// shadowed instead of followed. Parent dirs take the mode, owner and
    /// mtime of the first lower dir that has them, so a copy-up of, say,
    /// `/etc` looks as if the stub layer were not there.
    Stubs {
        /// Where the layer is built (host side, in the scratch tmpfs).
        layer: PathBuf,
        /// The image's lower dirs, top first, to copy parent attributes from.
        lower: Vec<PathBuf>,
        /// The mount points.
        stubs: Vec<Stub>,
    },
    /// The overlay that becomes `/`: `lower` top first (overlayfs order),
    /// mounted at `root` (a host directory).
    Overlay {
        /// Read-only layer trees, top first.
        lower: Vec<PathBuf>,
        /// The step's upper dir.
        upper: PathBuf,
        /// The overlay work dir.
        work: PathBuf,
        /// The host mount point of the new root.
        root: PathBuf,
    },
    /// A fresh procfs for the new pid namespace (nosuid, nodev, noexec).
    Proc {
        /// Inside path.
        target: PathBuf,
    },
    /// A tmpfs.
    Tmpfs {
        /// Inside path.
        target: PathBuf,
        /// Root directory mode.
        mode: u32,
        /// Size limit in bytes.
        size: Option<u64>,
        /// Also `MS_NODEV` (everything but /dev, whose device nodes are binds).
        nodev: bool,
    },
    /// A fresh devpts instance (`newinstance,ptmxmode=0666,mode=0620`).
    Devpts {
        /// Inside path.
        target: PathBuf,
    },
    /// A bind mount of a host path (file or directory, as the source is).
    Bind {
        /// Host path.
        source: PathBuf,
        /// Inside path.
        target: PathBuf,
        /// Remounted read-only afterwards.
        readonly: bool,
    },
    /// A symlink inside (in a tmpfs, never in the overlay).
    Symlink {
        /// What the link points to.
        link: PathBuf,
        /// Inside path of the link.
        target: PathBuf,
    },
    /// The root switch (STYLE §4): rslave done, bind the root onto itself,
    /// `pivot_root(".", ".")`, detach the old root, `chdir("/")`.
    PivotRoot,
}

/// A mount point in the stub layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stub {
    /// Inside path.
    pub path: PathBuf,
    /// A host path whose type (file or directory) the stub takes; a
    /// directory when `None`.
    pub like: Option<PathBuf>,
}

/// The device nodes bound from the host into the sandbox's /dev (Docker's set
/// minus console; `tty` opens with `ENXIO` without a controlling terminal).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the helper mounts its scratch tmpfs, in its own mount namespace (it
/// hides the host's dir of that name there; host paths the plan uses are
/// opened before, except those under [`SCRATCH`]).
pub const SCRATCH: &str = "/tmp/.kiln-sandbox";

/// The generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`: fixed
/// text, so a step cannot see the host's.
pub fn generated_files(spec: &Spec) -> Vec<(String, String)> {
    let h = &spec.hostname;
    vec![
        (
            "hosts".into(),
            format!("127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n"),
        ),
        ("hostname".into(), format!("{h}\n")),
        // Network off: no name servers at all, so nothing resolves.
        ("resolv.conf".into(), String::new()),
    ]
}

/// The mount plan for `spec`; `ca_bundle`: whether the host has [`HOST_CA_BUNDLE`].
pub fn plan(spec: &Spec, ca_bundle: bool) -> Vec<MountOp> {
    let p = PathBuf::from;
    let scratch = Path::new(SCRATCH);
    let (root, etc) = (scratch.join("root"), scratch.join("etc"));
    let mut lower: Vec<PathBuf> = spec.lower.iter().rev().cloned().collect();
    if lower.is_empty() {
        lower.push(scratch.join("empty"));
    }
    let (upper, work) = match &spec.upper {
        Upper::Dir { upper, work } => (upper.clone(), work.clone()),
        Upper::Ephemeral => (scratch.join("upper"), scratch.join("work")),
    };
    let mut files = generated_files(spec);
    if spec.network == Network::Host {
        files.retain(|(name, _)| name != "resolv.conf");
    }
    let mut ops = vec![
        MountOp::MakeRootSlave,
        MountOp::Scratch { files },
        MountOp::Overlay {
            lower,
            upper,
            work,
            root,
        },
        MountOp::Proc { target: p("/proc") },
        MountOp::Tmpfs {
            target: p("/dev"),
            mode: 0o755,
            size: Some(64 << 10),
            nodev: false,
        },
    ];
    for dev in DEVICES {
        ops.push(MountOp::Bind {
            source: Path::new("/dev").join(dev),
            target: Path::new("/dev").join(dev),
            readonly: false,
        });
    }
    ops.push(MountOp::Devpts {
        target: p("/dev/pts"),
    });
    ops.push(MountOp::Tmpfs {
        target: p("/dev/shm"),
        mode: 0o1777,
        size: Some(64 << 20),
        nodev: true,
    });
    for (link, target) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ] {
        ops.push(MountOp::Symlink {
            link: p(link),
            target: p(target),
        });
    }
    ops.push(MountOp::Bind {
        source: etc.join("hosts"),
        target: p("/etc/hosts"),
        readonly: false,
    });
    ops.push(MountOp::Bind {
        source: etc.join("hostname"),
        target: p("/etc/hostname"),
        readonly: false,
    });
    match spec.network {
        Network::Off => ops.push(MountOp::Bind {
            source: etc.join("resolv.conf"),
            target: p("/etc/resolv.conf"),
            readonly: false,
        }),
        Network::Host => {
            ops.push(MountOp::Bind {
                source: p("/etc/resolv.conf"),
                target: p("/etc/resolv.conf"),
                readonly: true,
            });
            if ca_bundle {
                ops.push(MountOp::Bind {
                    source: p(HOST_CA_BUNDLE),
                    target: p(HOST_CA_BUNDLE),
                    readonly: true,
                });
            }
        }
    }
    for m in &spec.mounts {
        let target = m.target.clone();
        ops.push(match &m.kind {
            MountKind::Bind { source, readonly } => MountOp::Bind {
                source: source.clone(),
                target,
                readonly: *readonly,
            },
            MountKind::Tmpfs { size } => MountOp::Tmpfs {
                target,
                mode: 0o1777,
                size: *size,
                nodev: true,
            },
            MountKind::Cache { source } => MountOp::Bind {
                source: source.clone(),
                target,
                readonly: false,
            },
            MountKind::Secret { source } => MountOp::Bind {
                source: source.clone(),
                target,
                readonly: true,
            },
        });
    }
    ops.push(MountOp::PivotRoot);

    // Every mount point inside the overlay (not those in our /dev tmpfs) goes
    // into the stub layer, the top lower dir.
    let stubs: Vec<Stub> = ops
        .iter()
        .filter_map(|op| match op {
            MountOp::Proc { target }
            | MountOp::Tmpfs { target, .. }
            | MountOp::Devpts { target } => Some(Stub {
                path: target.clone(),
                like: None,
            }),
            MountOp::Bind { source, target, .. } => Some(Stub {
                path: target.clone(),
                like: Some(source.clone()),
            }),
            _ => None,
        })
        .filter(|s| s.path == Path::new("/dev") || !s.path.starts_with("/dev"))
        .collect();
    let layer = scratch.join("stubs");
    if let Some(MountOp::Overlay { lower, .. }) = ops.get_mut(2) {
        let image_lower = std::mem::replace(lower, vec![layer.clone()]);
        let image_lower: Vec<PathBuf> = image_lower
            .into_iter()
            .filter(|l| !l.starts_with(scratch))
            .collect();
        lower.extend(image_lower.iter().cloned());
        if lower.len() == 1 {
            lower.push(scratch.join("empty"));
        }
        ops.insert(
            2,
            MountOp::Stubs {
                layer,
                lower: image_lower,
                stubs,
            },
        );
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        let mut s = Spec::new(
            "/kiln".into(),
            Upper::Dir {
                upper: "/s/upper".into(),
                work: "/s/work".into(),
            },
            vec!["true".into()],
        );
        s.lower = vec!["/l/base".into(), "/l/top".into()];
        s
    }

    fn plan_of(s: &Spec) -> Vec<MountOp> {
        plan(s, true)
    }

    #[test]
    fn overlay_takes_lower_dirs_top_first() {
        let ops = plan_of(&spec());
        assert_eq!(ops[0], MountOp::MakeRootSlave);
        assert!(matches!(&ops[1], MountOp::Scratch { files } if files.len() == 3));
        assert!(matches!(&ops[2], MountOp::Stubs { lower, .. } if lower.len() == 2));
        assert_eq!(
            ops[3],
            MountOp::Overlay {
                lower: vec![
                    "/tmp/.kiln-sandbox/stubs".into(),
                    "/l/top".into(),
                    "/l/base".into()
                ],
                upper: "/s/upper".into(),
                work: "/s/work".into(),
                root: "/tmp/.kiln-sandbox/root".into(),
            }
        );
        assert_eq!(ops.last(), Some(&MountOp::PivotRoot));
    }

    #[test]
    fn no_lower_dirs_mounts_an_empty_one() {
        let mut s = spec();
        s.lower.clear();
        let MountOp::Overlay { lower, .. } = &plan_of(&s)[3] else {
            panic!("no overlay")
        };
        assert_eq!(
            lower,
            &[
                PathBuf::from("/tmp/.kiln-sandbox/stubs"),
                PathBuf::from("/tmp/.kiln-sandbox/empty")
            ]
        );
    }

    #[test]
    fn dev_has_the_standard_nodes_and_proc_is_fresh() {
        let ops = plan_of(&spec());
        assert!(ops.contains(&MountOp::Proc {
            target: "/proc".into()
        }));
        for dev in DEVICES {
            let path = Path::new("/dev").join(dev);
            assert!(ops.contains(&MountOp::Bind {
                source: path.clone(),
                target: path,
                readonly: false
            }));
        }
        assert!(ops.contains(&MountOp::Devpts {
            target: "/dev/pts".into()
        }));
        assert!(ops.iter().any(
            |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/dev/shm"))
        ));
        // /dev is mounted before anything in it.
        let dev = ops.iter().position(
            |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/dev")),
        );
        let null = ops.iter().position(
            |op| matches!(op, MountOp::Bind { target, .. } if target == Path::new("/dev/null")),
        );
        assert!(dev < null);
    }

    #[test]
    fn network_off_gets_generated_resolv_conf_and_no_host_files() {
        let ops = plan_of(&spec());
        assert!(ops.contains(&MountOp::Bind {
            source: "/tmp/.kiln-sandbox/etc/resolv.conf".into(),
            target: "/etc/resolv.conf".into(),
            readonly: false
        }));
        assert!(
            !ops.iter()
                .any(|op| matches!(op, MountOp::Bind { source, .. } if source.starts_with("/etc")))
        );
    }

    #[test]
    fn mount_points_in_the_overlay_are_stubbed_not_those_in_dev() {
        let mut s = spec();
        s.mounts = vec![super::super::Mount {
            target: "/run/secrets/x".into(),
            kind: MountKind::Secret {
                source: "/h/x".into(),
            },
        }];
        let ops = plan_of(&s);
        let MountOp::Stubs { stubs, .. } = &ops[2] else {
            panic!("no stub layer")
        };
        let paths: Vec<_> = stubs.iter().map(|s| s.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/proc",
                "/dev",
                "/etc/hosts",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/run/secrets/x"
            ]
        );
        assert_eq!(stubs[0].like, None);
        assert_eq!(stubs[5].like, Some(PathBuf::from("/h/x")));
    }

    #[test]
    fn ephemeral_upper_lives_in_the_scratch_tmpfs() {
        let mut s = spec();
        s.upper = Upper::Ephemeral;
        let MountOp::Overlay { upper, work, .. } = &plan_of(&s)[3] else {
            panic!("no overlay")
        };
        assert_eq!(upper, Path::new("/tmp/.kiln-sandbox/upper"));
        assert_eq!(work, Path::new("/tmp/.kiln-sandbox/work"));
    }

    #[test]
    fn generated_files_are_fixed_text() {
        let files = generated_files(&spec());
        assert_eq!(
            files,
            [
                ("hosts".to_owned(), "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback buildkitsandbox\n".to_owned()),
                ("hostname".to_owned(), "buildkitsandbox\n".to_owned()),
                ("resolv.conf".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn network_host_binds_resolv_conf_and_ca_bundle_read_only() {
        let mut s = spec();
        s.network = Network::Host;
        let ops = plan_of(&s);
        for f in ["/etc/resolv.conf", HOST_CA_BUNDLE] {
            assert!(
                ops.contains(&MountOp::Bind {
                    source: f.into(),
                    target: f.into(),
                    readonly: true
                }),
                "{f}"
            );
        }
    }

    #[test]
    fn extra_mounts_come_after_the_standard_ones_in_order() {
        let mut s = spec();
        s.mounts = vec![
            super::super::Mount {
                target: "/cache".into(),
                kind: MountKind::Cache {
                    source: "/h/cache".into(),
                },
            },
            super::super::Mount {
                target: "/run/secrets/x".into(),
                kind: MountKind::Secret {
                    source: "/h/x".into(),
                },
            },
            super::super::Mount {
                target: "/scratch".into(),
                kind: MountKind::Tmpfs {
                    size: Some(1 << 20),
                },
            },
        ];
        let ops = plan_of(&s);
        let n = ops.len();
        assert_eq!(
            &ops[n - 4..n - 1],
            &[
                MountOp::Bind {
                    source: "/h/cache".into(),
                    target: "/cache".into(),
                    readonly: false
                },
                MountOp::Bind {
                    source: "/h/x".into(),
                    target: "/run/secrets/x".into(),
                    readonly: true
                },
                MountOp::Tmpfs {
                    target: "/scratch".into(),
                    mode: 0o1777,
                    size: Some(1 << 20),
                    nodev: true
                },
            ]
        );
    }
}
