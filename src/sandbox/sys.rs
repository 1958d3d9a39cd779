//! Every `unsafe` block of kiln (STYLE §4): raw syscalls that `nix` does not
//! wrap safely, each behind a safe function. Nothing here decides anything;
//! callers (`init.rs`, `mod.rs`, `capture.rs`) hold the logic.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use nix::libc;

/// The fd number the helper finds its report pipe on.
pub const REPORT_FD: i32 = 3;

/// Spawns `cmd` with `report` as its fd 3 and `PR_SET_PDEATHSIG(SIGKILL)`, so
/// that the helper (and with it the sandbox's PID 1, and with that the whole
/// pid namespace) dies if the calling thread goes away.
pub fn spawn_with_report_fd(cmd: &mut Command, report: OwnedFd) -> io::Result<Child> {
    let raw = report.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (dup2, fcntl, prctl, getppid), allocates
    // nothing and touches no locks. `report` stays open in the parent until
    // spawn returns, so `raw` is valid in the child.
    unsafe {
        cmd.pre_exec(move || {
            if raw == REPORT_FD {
                // dup2 onto itself would keep FD_CLOEXEC: clear it instead.
                if libc::fcntl(raw, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, REPORT_FD) == -1 {
                return Err(io::Error::last_os_error());
            }
            // prctl(2): the signal is sent when the *thread* that forked us
            // exits; `sandbox::run` blocks that thread until we are gone.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(report);
    child
}

/// Whether this process has a single thread (it may then fork and keep
/// running Rust code in the child: no other thread can hold a lock).
pub fn single_threaded() -> bool {
    std::fs::read_dir("/proc/thread-self/..").is_ok_and(|d| d.count() == 1)
}

/// In a forked helper: stdout and stderr to `out` and `err` (or
/// `/dev/null`, or left alone for [`super::Output::Inherit`]), and
/// `SIGKILL` when the thread that forked us exits, as
/// [`spawn_with_report_fd`] arranges for an exec'd helper.
pub fn redirect_helper_stdio(
    parent: nix::unistd::Pid,
    output: super::Output,
    out: Option<std::os::fd::BorrowedFd<'_>>,
    err: Option<std::os::fd::BorrowedFd<'_>>,
) -> io::Result<()> {
    match output {
        super::Output::Inherit => {}
        super::Output::Null => {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_WRONLY,
                nix::sys::stat::Mode::empty(),
            )?;
            nix::unistd::dup2_stdout(&null)?;
            nix::unistd::dup2_stderr(&null)?;
        }
        super::Output::Collect => {
            let (Some(out), Some(err)) = (out, err) else {
                return Err(io::Error::other("collected output needs two pipes"));
            };
            nix::unistd::dup2_stdout(out)?;
            nix::unistd::dup2_stderr(err)?;
        }
    }
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The parent may have died before the line above: then nobody waits
    // for us (prctl(2) suggests this check).
    if nix::unistd::getppid() != parent {
        return Err(io::Error::other("the parent is gone"));
    }
    Ok(())
}

/// Ends a forked child at once (`_exit(2)`): no atexit handlers, no
/// flushing of buffers it shares with its parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Moves this (single-threaded) process into a new user namespace:
/// forks a child that stays behind in this one, unshares, lets the child
/// write the new namespace's maps with `write_maps(pid of this process)`
/// (`newuidmap` must run in the parent namespace), waits for it, and
/// returns. Afterwards this process is root of the new namespace, with all
/// capabilities there (user_namespaces(7)).
pub fn unshare_user_namespace(
    write_maps: impl FnOnce(i32) -> Result<(), super::SandboxError>,
) -> Result<(), super::SandboxError> {
    use nix::unistd::{read, write};
    let err = |op: &'static str| {
        move |e: nix::errno::Errno| super::SandboxError::Host {
            op,
            path: std::path::PathBuf::from("/proc/self/ns/user"),
            source: io::Error::from(e),
        }
    };
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(err("pipe2"))?;
    let (done_r, done_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(err("pipe2"))?;
    let me = nix::unistd::getpid();
    match fork().map_err(|source| super::SandboxError::Host {
        op: "fork",
        path: std::path::PathBuf::from("/proc/self"),
        source,
    })? {
        Forked::Child => {
            drop(ready_w);
            drop(done_r);
            let mut byte = [0u8; 1];
            let unshared = loop {
                match read(&ready_r, &mut byte) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r == Ok(1),
                }
            };
            let reply = if !unshared {
                "0".to_owned()
            } else {
                match write_maps(me.as_raw()) {
                    Ok(()) => "1".to_owned(),
                    Err(e) => format!("0{}", crate::one_line(&e)),
                }
            };
            let _ = write(&done_w, reply.as_bytes());
            exit_now(i32::from(!reply.starts_with('1')))
        }
        Forked::Parent(child) => {
            drop(ready_r);
            drop(done_w);
            let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            let _ = write(&ready_w, if unshared.is_ok() { b"1" } else { b"0" });
            drop(ready_w);
            let mut reply = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                match read(&done_r, &mut buf) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(n) if n > 0 => reply.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = nix::sys::wait::waitpid(child, None);
            unshared.map_err(err("unshare(CLONE_NEWUSER)"))?;
            if reply.first() != Some(&b'1') {
                let why = String::from_utf8_lossy(reply.get(1..).unwrap_or_default()).into_owned();
                return Err(super::SandboxError::IdMap {
                    what: "the maps of kiln's own user namespace".into(),
                    source: io::Error::other(if why.is_empty() {
                        "the helper that writes them died".to_owned()
                    } else {
                        why
                    }),
                });
            }
            Ok(())
        }
    }
}

/// The result of [`fork`].
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(nix::unistd::Pid),
    /// In the child.
    Child,
}

/// `fork(2)`, refused unless this process has exactly one thread (after a fork
/// in a threaded process only async-signal-safe calls are allowed, and the
/// sandbox child does far more).
pub fn fork() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/thread-self/..")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!("fork refused: {threads} threads")));
    }
    // SAFETY: the process is single-threaded (checked above), so the child
    // gets a consistent copy of every lock and allocator state.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// `clone(2)` with namespace flags and no new stack: a `fork` whose child
/// starts in new namespaces (with `CLONE_NEWPID`, as PID 1), so no second
/// fork is needed after an `unshare`. Refused unless single-threaded, as [`fork`].
pub fn clone_into(flags: nix::sched::CloneFlags) -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/thread-self/..")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "clone refused: {threads} threads"
        )));
    }
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack duplicates the
    // process like fork(2): the child continues on a copy of our stack and
    // memory. The process is single-threaded (checked above), so no other
    // thread can hold a lock (malloc's included) that the child would inherit
    // locked. glibc's fork handlers do not run; nothing of ours needs them.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(nix::unistd::Pid::from_raw(
            i32::try_from(pid).map_err(io::Error::other)?,
        ))),
    }
}

/// `pidfd_open(2)`: an fd that becomes readable when `pid` exits.
pub fn pidfd_open(pid: nix::unistd::Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: pidfd_open returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Brings the loopback interface up (`SIOCSIFFLAGS` with `IFF_UP`), as
/// bubblewrap's `loopback_setup` does (it uses netlink; the ioctl is enough
/// for `lo`, which already has 127.0.0.1/8 and ::1 once up).
pub fn set_loopback_up() -> io::Result<()> {
    // SAFETY: plain syscall; the returned fd is owned right below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `sock` is a fresh fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name, living for
    // the call; SIOCGIFFLAGS writes only ifr_flags inside it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifr_ifru is a union; SIOCGIFFLAGS just filled its ifru_flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops every capability not in `keep` from the bounding set
/// (`prctl(PR_CAPBSET_DROP)`), so that root's exec gets at most `keep`.
pub fn drop_bounding_caps(keep: &[u32]) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: integer-only prctl.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            // EINVAL: past CAP_LAST_CAP, done.
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Ok(());
            }
            return Err(e);
        }
    }
    Ok(())
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// The extended attributes of `path` (not following symlinks), names sorted.
pub fn xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cpath(path)?;
    // SAFETY: a NULL buffer with size 0 asks for the needed size only.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; usize::try_from(size).map_err(io::Error::other)? + 256];
    // SAFETY: `names` is writable for its length, which is what we pass.
    let size = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if size < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(usize::try_from(size).map_err(io::Error::other)?);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: size query, NULL buffer.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut value = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        // SAFETY: `value` is writable for its length, which is what we pass.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        value.truncate(usize::try_from(len).map_err(io::Error::other)?);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Sets the mtime of `path` (not following symlinks), leaving atime alone.
pub fn set_mtime(path: &Path, (sec, nsec): (i64, i64)) -> io::Result<()> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let omit = TimeSpec::new(0, libc::UTIME_OMIT);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &omit,
        &TimeSpec::new(sec, nsec),
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Takes fd 3, the helper's report pipe (see [`spawn_with_report_fd`]), as a
/// `File`, setting `FD_CLOEXEC` so the command never inherits it. Once only.
pub fn take_report_fd() -> io::Result<std::fs::File> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other("the report fd was already taken"));
    }
    // SAFETY: integer-only fcntl; fails with EBADF if fd 3 is not open.
    if unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd 3 is open (checked above) and, by the protocol with
    // `spawn_with_report_fd`, ours alone; TAKEN makes this the only owner.
    Ok(unsafe { std::fs::File::from_raw_fd(REPORT_FD) })
}
