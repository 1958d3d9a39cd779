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

use super::{HOST_CA_BUNDLE, MountKind, Network, Spec};

/// One step of setting up the sandbox's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountOp {
    /// `mount(NULL, "/", NULL, MS_REC|MS_SLAVE)`: nothing we mount propagates
    /// back to the host, host mounts still propagate in (runc, bubblewrap).
    MakeRootSlave,
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

/// The device nodes bound from the host into the sandbox's /dev (Docker's set
/// minus console; `tty` opens with `ENXIO` without a controlling terminal).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The mount plan for `spec`: `root` is the host mount point of the new root,
/// `etc` the host dir holding the generated `hosts`, `hostname` and
/// `resolv.conf`, `empty` an empty dir (the lower dir when there are none),
/// `ca_bundle` whether the host has [`HOST_CA_BUNDLE`].
pub fn plan(spec: &Spec, root: &Path, etc: &Path, empty: &Path, ca_bundle: bool) -> Vec<MountOp> {
    let p = PathBuf::from;
    let mut lower: Vec<PathBuf> = spec.lower.iter().rev().cloned().collect();
    if lower.is_empty() {
        lower.push(empty.to_path_buf());
    }
    let mut ops = vec![
        MountOp::MakeRootSlave,
        MountOp::Overlay {
            lower,
            upper: spec.upper.clone(),
            work: spec.work.clone(),
            root: root.to_path_buf(),
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
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        let mut s = Spec::new(
            "/kiln".into(),
            "/s/upper".into(),
            "/s/work".into(),
            vec!["true".into()],
        );
        s.lower = vec!["/l/base".into(), "/l/top".into()];
        s
    }

    fn plan_of(s: &Spec) -> Vec<MountOp> {
        plan(
            s,
            Path::new("/x/root"),
            Path::new("/x/etc"),
            Path::new("/x/empty"),
            true,
        )
    }

    #[test]
    fn overlay_takes_lower_dirs_top_first() {
        let ops = plan_of(&spec());
        assert_eq!(ops[0], MountOp::MakeRootSlave);
        assert_eq!(
            ops[1],
            MountOp::Overlay {
                lower: vec!["/l/top".into(), "/l/base".into()],
                upper: "/s/upper".into(),
                work: "/s/work".into(),
                root: "/x/root".into(),
            }
        );
        assert_eq!(ops.last(), Some(&MountOp::PivotRoot));
    }

    #[test]
    fn no_lower_dirs_mounts_an_empty_one() {
        let mut s = spec();
        s.lower.clear();
        let MountOp::Overlay { lower, .. } = &plan_of(&s)[1] else {
            panic!("no overlay")
        };
        assert_eq!(lower, &[PathBuf::from("/x/empty")]);
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
            source: "/x/etc/resolv.conf".into(),
            target: "/etc/resolv.conf".into(),
            readonly: false
        }));
        assert!(
            !ops.iter()
                .any(|op| matches!(op, MountOp::Bind { source, .. } if source.starts_with("/etc")))
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
