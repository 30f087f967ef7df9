//! Small wrappers: pipes, signals, limits, credentials, users.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::{Pid, SysError};

/// Makes a pipe whose both ends are close-on-exec: (read end, write end).
pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), SysError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| SysError::errno("pipe2", None, e))
}

/// Sets O_NONBLOCK on `fd` (e.g. the read end of an output pipe polled by the event loop).
pub fn set_nonblocking<F: AsFd>(fd: F) -> Result<(), SysError> {
    let fd = fd.as_fd();
    let flags = rustix::fs::fcntl_getfl(fd).map_err(|e| SysError::errno("fcntl(F_GETFL)", None, e))?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| SysError::errno("fcntl(F_SETFL)", None, e))
}

/// Gives SIGPIPE back its default action (end the process), as a command-line filter expects: the Rust
/// runtime ignores it, so a write to a closed pipe (`vigil status | head -1`) would fail and panic instead.
pub fn default_sigpipe() {
    // SAFETY: signal() with a valid signal number and SIG_DFL; no handler runs Rust code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Makes this process adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so daemonizing
/// services stay our children and their exits reach `reap_any`.
pub fn set_child_subreaper() -> Result<(), SysError> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(SysError::last_os("prctl(PR_SET_CHILD_SUBREAPER)", None));
    }
    Ok(())
}

/// The RLIMIT_NOFILE in force before `raise_nofile_limit`, restored in spawned children.
static ORIGINAL_NOFILE: Mutex<Option<libc::rlimit>> = Mutex::new(None);

/// What `spawn` should reset RLIMIT_NOFILE to in the child, if it was raised.
pub(crate) fn original_nofile_limit() -> Option<libc::rlimit> {
    *ORIGINAL_NOFILE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the new soft limit.
///
/// Only the daemon gets the raised limit: `spawn` gives children the original soft limit back
/// (as systemd does), since programs using select(2) break above 1024.
pub fn raise_nofile_limit() -> Result<u64, SysError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid resource and a valid pointer to a local rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(SysError::last_os("getrlimit(RLIMIT_NOFILE)", None));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid resource and a valid pointer to a local rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } < 0 {
            return Err(SysError::last_os("setrlimit(RLIMIT_NOFILE)", None));
        }
        ORIGINAL_NOFILE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(lim);
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u32 on some targets
    Ok(lim.rlim_max as u64)
}

fn kill(target: Pid, reported: Pid, sig: i32, op: &'static str) -> Result<(), SysError> {
    // SAFETY: kill takes integers only; callers have excluded the broadcast targets 0 and -1.
    if unsafe { libc::kill(target, sig) } < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => SysError::NoSuchProcess(reported),
            _ => SysError::io(op, Some(reported), e),
        });
    }
    Ok(())
}

fn refuse(op: &'static str, pid: Pid) -> SysError {
    SysError::io(op, Some(pid), io::Error::from_raw_os_error(libc::EINVAL))
}

/// Sends `sig` to every process in group `pgid` (kill(-pgid)). Refuses pgid <= 1, which would
/// mean our own group or every process on the system.
pub fn kill_process_group(pgid: Pid, sig: i32) -> Result<(), SysError> {
    if pgid <= 1 {
        return Err(refuse("kill(process group)", pgid));
    }
    kill(-pgid, pgid, sig, "kill(process group)")
}

/// Sends `sig` to `pid` with plain kill(2), for when no pidfd is at hand. Refuses pid <= 0,
/// which kill(2) would treat as a process group or broadcast.
pub fn send_signal(pid: Pid, sig: i32) -> Result<(), SysError> {
    if pid <= 0 {
        return Err(refuse("kill", pid));
    }
    kill(pid, pid, sig, "kill")
}

/// Our real uid.
pub fn getuid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Our real gid.
pub fn getgid() -> u32 {
    rustix::process::getgid().as_raw()
}

/// Looks `uid` up in the user database: (user name, primary gid, home directory).
pub fn user_by_uid(uid: u32) -> Option<(String, u32, PathBuf)> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is a plain C struct; all-zero is a valid (empty) value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: all pointers are valid; buf.len() is the true size of buf.
        let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if r == libc::ERANGE && buf.len() < (1 << 20) {
            let n = buf.len() * 4;
            buf.resize(n, 0);
            continue;
        }
        if r != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success pw_name and pw_dir point to NUL-terminated strings inside buf,
        // which outlives these borrows.
        let (name, dir) = unsafe { (CStr::from_ptr(pw.pw_name), CStr::from_ptr(pw.pw_dir)) };
        return Some((
            name.to_string_lossy().into_owned(),
            pw.pw_gid,
            PathBuf::from(OsStr::from_bytes(dir.to_bytes())),
        ));
    }
}

/// Gives the CPU to another runnable task (sched_yield), e.g. a process just started on this CPU.
pub fn yield_cpu() {
    rustix::thread::sched_yield();
}

#[cfg(test)]
mod tests {
    #[test]
    fn fork_single_threaded_refuses_beside_another_thread() {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = wait.recv();
        });
        let r = super::fork_single_threaded();
        if let Ok(super::Forked::Child) = r {
            // SAFETY: _exit is async-signal-safe; the child must not run the test harness on.
            unsafe { libc::_exit(0) };
        }
        if let Ok(super::Forked::Parent(pid)) = r {
            let _ = super::reap_child(pid);
        }
        drop(done);
        other.join().unwrap();
        match r {
            Err(crate::SysError::Io { op, source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EBUSY), "{op}");
            }
            other => panic!("forked beside another thread: {other:?}"),
        }
    }

    use super::*;
    use crate::testutil::*;
    use crate::WaitStatus;
    use std::path::Path;

    #[test]
    fn pipes_are_cloexec_and_nonblocking_works() {
        let (r, w) = pipe_cloexec().unwrap();
        for fd in [&r, &w] {
            let fl = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(fl.contains(rustix::io::FdFlags::CLOEXEC));
        }
        set_nonblocking(&r).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(rustix::io::read(&r, &mut b), Err(rustix::io::Errno::AGAIN));
        drop(w);
        assert_eq!(rustix::io::read(&r, &mut b), Ok(0));
    }

    #[test]
    fn refuses_broadcast_kills() {
        for p in [-1, 0, 1] {
            assert!(matches!(kill_process_group(p, 0), Err(SysError::Io { .. })));
        }
        assert!(matches!(send_signal(0, 0), Err(SysError::Io { .. })));
        assert!(matches!(send_signal(-1, 0), Err(SysError::Io { .. })));
        send_signal(std::process::id() as Pid, 0).unwrap();
        assert!(matches!(send_signal(1 << 23, 0), Err(SysError::NoSuchProcess(_))));
        assert!(matches!(
            kill_process_group(1 << 23, 0),
            Err(SysError::NoSuchProcess(_))
        ));
    }

    #[test]
    fn users() {
        let (name, gid, home) = user_by_uid(0).unwrap();
        assert_eq!((name.as_str(), gid), ("root", 0));
        assert!(home.is_absolute());
        assert!(user_by_uid(0xdead_beef).is_none());
        assert_eq!(getuid(), rustix::process::getuid().as_raw());
        let _ = getgid();
    }

    #[test]
    fn subreaper_adopts_orphans() {
        // Harmless for a test process; all tests that create children hold `child_lock`.
        set_child_subreaper().unwrap();
        let mut v: libc::c_int = 0;
        // SAFETY: PR_GET_CHILD_SUBREAPER writes an int through the valid pointer.
        let r = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut v as *mut libc::c_int) };
        assert_eq!((r, v), (0, 1));

        let _g = child_lock();
        // The background sleep outlives sh, so it is orphaned and must be reparented to us.
        let (s, _out, line) = start_sh("sleep 10 & echo $!");
        let orphan: Pid = line.trim().parse().unwrap();
        let orphan_fd = crate::PidFd::open(orphan).unwrap();
        assert_eq!(wait_child(&s), WaitStatus::Exited(0));
        assert_eq!(crate::proc_stat(orphan).unwrap().ppid, std::process::id() as Pid);
        orphan_fd.send_signal(libc::SIGKILL).unwrap();
        assert!(orphan_fd.wait_exited(Some(std::time::Duration::from_secs(10))));
        assert_eq!(
            crate::reap_any().unwrap(),
            Some((
                orphan,
                WaitStatus::Signaled {
                    signal: libc::SIGKILL,
                    core_dumped: false
                }
            ))
        );
    }

    #[test]
    fn nofile_raise_is_not_inherited() {
        let _g = child_lock();
        let before = {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: valid resource and pointer to a local.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
            l
        };
        let soft = raise_nofile_limit().unwrap();
        #[allow(clippy::unnecessary_cast)]
        let hard = before.rlim_max as u64;
        assert_eq!(soft, hard);
        let orig = original_nofile_limit().map(|l| l.rlim_cur).unwrap_or(before.rlim_cur);
        let (out, st) = run_capture(Path::new("/bin/sh"), &["sh", "-c", "ulimit -n"], &[], None);
        assert_eq!(st, WaitStatus::Exited(0));
        assert_eq!(out.trim(), orig.to_string());
    }
}

/// Which side of a [`fork`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The calling process, with the child's pid.
    Parent(Pid),
}

/// fork(2): SAM's model, where `register` returns in a new process while the caller stays behind.
///
/// # Safety
///
/// Only the calling thread exists in the child. If the process has other threads, the child, until it
/// exits or execs, must not take a lock that another thread may have held at the fork, nor read state that
/// another thread may have been changing: such a lock stays taken forever in the child, and such state may
/// be half-written. (glibc keeps `malloc` usable in the child; a `std::sync::Mutex` gets no such care.)
/// A process with one thread meets this by itself: see [`fork_single_threaded`].
pub unsafe fn fork() -> Result<Forked, SysError> {
    // SAFETY: fork has no memory-safety preconditions in the parent; what the child may do is the
    // caller's contract above.
    let r = unsafe { libc::fork() };
    match r {
        -1 => Err(SysError::last_os("fork", None)),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// [`fork`] for a process that has one thread: the child then inherits no lock another thread held and no
/// change another thread left half-done, so nothing is asked of the caller. With other threads alive
/// (still, after up to 2 s for threads that are just ending) it forks nothing and fails with `EBUSY`
/// (`op` "fork (other threads are running)").
///
/// No thread can appear between the count and the fork: the calling thread is the only one that could
/// make it.
pub fn fork_single_threaded() -> Result<Forked, SysError> {
    // A thread just joined may still be counted for a moment (the kernel wakes its joiner before it drops
    // the thread from the count): count again for a while before refusing. The while is long because a
    // SAM supervisor joins its report thread before each recovery fork, and a refusal there leaves the
    // instance unrestarted: in a CPU-throttled cgroup (`cpu.max`) or on a loaded host the ending thread may
    // wait several scheduling periods to run. Only a caller that really has other threads pays it.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while thread_count()? != 1 {
        if std::time::Instant::now() >= give_up {
            return Err(SysError::io(
                "fork (other threads are running)",
                None,
                io::Error::from_raw_os_error(libc::EBUSY),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: the process has one thread (counted just above, and only this thread could have made
    // another since), so the child inherits no other thread's locks or half-done changes.
    unsafe { fork() }
}

/// The number of threads of this process (`Threads:` in /proc/self/status).
fn thread_count() -> Result<usize, SysError> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| SysError::io("read /proc/self/status", None, e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| {
            SysError::io(
                "read /proc/self/status",
                None,
                io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"),
            )
        })
}

/// Waits for our child `pid` to end and reaps it (retrying on EINTR).
pub fn reap_child(pid: Pid) -> Result<crate::WaitStatus, SysError> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to a local int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(crate::WaitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(SysError::io("waitpid", Some(pid), e));
        }
    }
}

/// The data extents of `fd` in `[from, to)`, as (start, end) pairs in order, holes left out (a sparse
/// file's unwritten ranges). A file system without SEEK_DATA reports the whole range as data.
pub fn data_extents<F: AsFd>(fd: F, from: u64, to: u64) -> Result<Vec<(u64, u64)>, SysError> {
    use rustix::fs::{seek, SeekFrom};
    let fd = fd.as_fd();
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let start = match seek(fd, SeekFrom::Data(pos)) {
            Ok(s) => s,
            // No data at or after `pos`.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(SysError::errno("lseek(SEEK_DATA)", None, e)),
        };
        if start >= to {
            break;
        }
        let end = match seek(fd, SeekFrom::Hole(start)) {
            Ok(e) => e.min(to),
            Err(e) => return Err(SysError::errno("lseek(SEEK_HOLE)", None, e)),
        };
        if end <= start {
            break;
        }
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

/// Ends the process now with `code`, running nothing of the program's: no atexit handler, no flush of
/// stdio buffers (which a forked process shares with its parent's past), no destructor.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// The signals that stop vigild (TERM, INT) or re-execute it (HUP).
const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Blocks (or unblocks) the signals that stop or re-execute vigild in the calling thread. Blocked
/// across a re-exec, one that comes meanwhile stays pending for the new image (pending signals and the
/// mask are kept by execve) instead of being caught by a handler the exec throws away.
pub fn set_stop_signals_blocked(blocked: bool) -> Result<(), SysError> {
    // SAFETY: sigemptyset/sigaddset fill a sigset_t on our stack; pthread_sigmask reads it and
    // writes no old set (null).
    let r = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        let how = if blocked { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(SysError::io(
            "pthread_sigmask",
            None,
            std::io::Error::from_raw_os_error(r),
        ));
    }
    Ok(())
}

/// Sends `sig` to this process as a whole (pending until a thread takes it).
pub fn signal_self(sig: i32) -> Result<(), SysError> {
    send_signal(std::process::id() as Pid, sig)
}
