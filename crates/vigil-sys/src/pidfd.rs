//! pidfds (stable process handles) and reaping.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::{Pid, SysError, WaitStatus};

/// `struct pidfd_info` from linux/pidfd.h, in its first published 64-byte layout
/// (PIDFD_INFO_SIZE_VER0, which already holds exit_code at offset 60). Newer kernels append
/// `u32 coredump_mask, u32 __spare1` (72 bytes) but accept any size >= VER0 and copy only what
/// fits, while 6.15 kernels match the ioctl number exactly, so VER0 works everywhere.
#[repr(C)]
#[derive(Debug, Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// PIDFD_INFO_EXIT: request/report the exit status (filled in once the process is reaped).
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// PIDFD_GET_INFO = _IOWR(0xFF, 11, struct pidfd_info): dir 3 << 30 | size 64 << 16 | 0xFF << 8 | 11.
const PIDFD_GET_INFO: libc::Ioctl = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

/// A pidfd: a handle on one process that cannot be confused with a later process of the same pid.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: Pid,
}

impl PidFd {
    /// Opens a (close-on-exec) pidfd on `pid`; a zombie still works, a reaped pid gives
    /// `NoSuchProcess`.
    pub fn open(pid: Pid) -> Result<PidFd, SysError> {
        if pid <= 0 {
            return Err(SysError::NoSuchProcess(pid));
        }
        // SAFETY: pidfd_open takes a pid and flags by value; no pointers involved.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => SysError::NoSuchProcess(pid),
                _ => SysError::io("pidfd_open", Some(pid), e),
            });
        }
        // SAFETY: the syscall succeeded, so `r` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
        Ok(PidFd { fd, pid })
    }

    /// Wraps an existing pidfd (e.g. one received from elsewhere) for process `pid`.
    pub fn from_owned(fd: OwnedFd, pid: Pid) -> PidFd {
        PidFd { fd, pid }
    }

    /// The pid this pidfd was opened on (only meaningful while the process is not reaped).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `signal` to exactly this process; `NoSuchProcess` once it has been reaped.
    pub fn send_signal(&self, signal: i32) -> Result<(), SysError> {
        // SAFETY: valid pidfd, plain signal number, null siginfo (kernel fills a default), flags 0.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => SysError::NoSuchProcess(self.pid),
                _ => SysError::io("pidfd_send_signal", Some(self.pid), e),
            });
        }
        Ok(())
    }

    /// Exit status through PIDFD_GET_INFO/PIDFD_INFO_EXIT; Ok(None) while not yet known.
    ///
    /// The kernel records it only once the process has been reaped by its parent (for our own
    /// children: after `reap_any`), so a zombie still reads None. Kernels without the ioctl
    /// (before 6.15) always give None.
    pub fn exit_status(&self) -> Result<Option<WaitStatus>, SysError> {
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_EXIT,
            ..Default::default()
        };
        // SAFETY: `info` is a writable 64-byte struct matching the size encoded in the request.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), PIDFD_GET_INFO, &mut info as *mut PidfdInfo) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) => Ok(None),
                Some(libc::ESRCH) => Err(SysError::NoSuchProcess(self.pid)),
                _ => Err(SysError::io("ioctl(PIDFD_GET_INFO)", Some(self.pid), e)),
            };
        }
        if info.mask & PIDFD_INFO_EXIT == 0 {
            return Ok(None);
        }
        Ok(Some(WaitStatus::from_raw(info.exit_code)))
    }

    /// Reaps this process if it is a child of the caller and has exited: `waitid(P_PIDFD, WEXITED |
    /// WNOHANG)`. The kernel looks at this one process, where `waitpid(-1)` walks every child of the
    /// caller (thousands for a supervisor), and a pidfd cannot name a later process that reused the pid.
    /// Ok(None) while it runs, or when it is not the caller's child or was reaped already.
    pub fn try_reap(&self) -> Result<Option<WaitStatus>, SysError> {
        loop {
            // SAFETY: siginfo_t is a plain C struct; all-zero is valid (and is how WNOHANG says "none").
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: a valid pidfd, a writable siginfo_t, plain flags.
            let r = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    self.fd.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG,
                )
            };
            if r == 0 {
                return Ok(decode_siginfo(&info));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(SysError::io("waitid(P_PIDFD)", Some(self.pid), e)),
            }
        }
    }

    /// True once the process has exited (pidfd readable).
    pub fn has_exited(&self) -> bool {
        self.wait_exited(Some(Duration::ZERO))
    }

    /// Blocks until the process has exited or `timeout` passes (None: no limit); true if exited.
    /// For shutdown paths and tests; the daemon proper polls the fd from its event loop.
    pub fn wait_exited(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32,
            };
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r > 0 {
                return pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0;
            }
            if r == 0 {
                return false;
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return false;
            }
        }
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<PidFd> for OwnedFd {
    /// Gives up the handle's fd.
    fn from(p: PidFd) -> OwnedFd {
        p.fd
    }
}

/// The wait status in a `waitid` answer; None when it names no process (WNOHANG, nothing exited).
fn decode_siginfo(info: &libc::siginfo_t) -> Option<WaitStatus> {
    // SAFETY: waitid filled the SIGCHLD layout of the union (or left it zeroed).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return None;
    }
    Some(match info.si_code {
        libc::CLD_EXITED => WaitStatus::Exited(status & 0xff),
        code => WaitStatus::Signaled {
            signal: status,
            core_dumped: code == libc::CLD_DUMPED,
        },
    })
}

/// Reaps our child `pid` if it has exited, without blocking: the kernel looks at that one process (see
/// [`PidFd::try_reap`]). Ok(None) while it runs, or when it is not our child (or was reaped already).
/// Only for a pid not reaped yet, which therefore still names the same child.
pub fn try_reap_child(pid: Pid) -> Result<Option<WaitStatus>, SysError> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to a local int; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(Some(WaitStatus::from_raw(status)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(SysError::io("waitpid", Some(pid), e)),
        }
    }
}

/// Reaps one exited child; Ok(None) when none is waiting (or there are no children at all).
pub fn reap_any() -> Result<Option<(Pid, WaitStatus)>, SysError> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to a local int; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 {
            return Ok(Some((r, WaitStatus::from_raw(status))));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(SysError::io("waitpid", None, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::{spawn, SpawnSpec};
    use std::ffi::OsString;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    #[test]
    fn ioctl_number_matches_libc() {
        assert_eq!(PIDFD_GET_INFO, 0xC040_FF0B);
        assert_eq!(PIDFD_GET_INFO, libc::PIDFD_GET_INFO);
        assert_eq!(PIDFD_INFO_EXIT, libc::PIDFD_INFO_EXIT as u64);
    }

    #[test]
    fn open_missing_process() {
        assert!(matches!(PidFd::open(0), Err(SysError::NoSuchProcess(0))));
        // pid_max is at most 2^22, so this pid cannot exist.
        assert!(matches!(PidFd::open(1 << 23), Err(SysError::NoSuchProcess(_))));
    }

    #[test]
    fn exit_status_of_a_grandchild_after_its_parent_reaps_it() {
        let _g = child_lock();
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
        let script = format!("sh -c 'read x < {}; exit 7' & echo $!; wait $!", fifo.display());
        let (outer, _out, line) = start_sh(&script);
        let gpid: Pid = line.trim().parse().unwrap();
        let g = PidFd::open(gpid).unwrap();
        assert_eq!(g.pid(), gpid);
        assert_eq!(g.exit_status().unwrap(), None);
        assert!(!g.has_exited());

        // Release the grandchild: open the fifo for writing once it has a reader.
        let deadline = Instant::now() + Duration::from_secs(10);
        let w = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
            {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("open fifo: {e}"),
            }
        };
        std::io::Write::write_all(&mut &w, b"go\n").unwrap();
        drop(w);

        // The outer sh reaps the grandchild (wait $!) and exits with its status.
        assert_eq!(wait_child(&outer), WaitStatus::Exited(7));
        assert!(g.has_exited());
        assert_eq!(g.exit_status().unwrap(), Some(WaitStatus::Exited(7)));
        assert!(matches!(g.send_signal(libc::SIGTERM), Err(SysError::NoSuchProcess(p)) if p == gpid));
    }

    #[test]
    fn signal_death_through_pidfd() {
        let _g = child_lock();
        let (outer, _out, line) = start_sh("sleep 10 & echo $!; wait $!");
        let g = PidFd::open(line.trim().parse().unwrap()).unwrap();
        g.send_signal(libc::SIGTERM).unwrap();
        assert_eq!(wait_child(&outer), WaitStatus::Exited(128 + libc::SIGTERM));
        assert_eq!(
            g.exit_status().unwrap(),
            Some(WaitStatus::Signaled {
                signal: libc::SIGTERM,
                core_dumped: false
            })
        );
    }

    #[test]
    fn try_reap_takes_exactly_this_child_with_its_status() {
        let _g = child_lock();
        let sh = |script: &str| {
            let argv = [OsString::from("sh"), OsString::from("-c"), OsString::from(script)];
            spawn(&SpawnSpec::new(Path::new("/bin/sh"), &argv, &[], crate::Output::Null)).unwrap()
        };
        let (a, b, c) = (sh("exit 3"), sh("kill -9 $$"), sh("exec sleep 10"));
        // Still running: nothing reaped, and it stays reapable.
        assert_eq!(c.pidfd.try_reap().unwrap(), None);
        assert!(a.pidfd.wait_exited(Some(Duration::from_secs(10))));
        assert!(b.pidfd.wait_exited(Some(Duration::from_secs(10))));
        assert_eq!(
            b.pidfd.try_reap().unwrap(),
            Some(WaitStatus::Signaled {
                signal: 9,
                core_dumped: false
            })
        );
        // Reaped once: the second time finds no child.
        assert_eq!(b.pidfd.try_reap().unwrap(), None);
        assert_eq!(try_reap_child(a.pid).unwrap(), Some(WaitStatus::Exited(3)));
        assert_eq!(try_reap_child(a.pid).unwrap(), None);
        assert_eq!(try_reap_child(c.pid).unwrap(), None);
        c.pidfd.send_signal(libc::SIGTERM).unwrap();
        assert!(c.pidfd.wait_exited(Some(Duration::from_secs(10))));
        assert_eq!(
            c.pidfd.try_reap().unwrap(),
            Some(WaitStatus::Signaled {
                signal: libc::SIGTERM,
                core_dumped: false
            })
        );
        assert_eq!(reap_any().unwrap(), None);
    }

    #[test]
    fn try_reap_leaves_another_parents_child() {
        let _g = child_lock();
        let (outer, _out, line) = start_sh("sleep 10 & echo $!; wait $!");
        let g = PidFd::open(line.trim().parse().unwrap()).unwrap();
        g.send_signal(libc::SIGKILL).unwrap();
        assert!(g.wait_exited(Some(Duration::from_secs(10))));
        // Not ours to reap: sh gets its status.
        assert_eq!(g.try_reap().unwrap(), None);
        assert_eq!(wait_child(&outer), WaitStatus::Exited(128 + libc::SIGKILL));
    }

    #[test]
    fn reap_any_collects_our_child() {
        let _g = child_lock();
        let argv = [OsString::from("sh"), OsString::from("-c"), OsString::from("exit 3")];
        let spec = SpawnSpec::new(Path::new("/bin/sh"), &argv, &[], crate::Output::Null);
        let s = spawn(&spec).unwrap();
        assert!(s.pidfd.wait_exited(Some(Duration::from_secs(10))));
        // A zombie: exited, but the exit status is only published at reap time.
        assert_eq!(s.pidfd.exit_status().unwrap(), None);
        assert_eq!(reap_any().unwrap(), Some((s.pid, WaitStatus::Exited(3))));
        assert_eq!(s.pidfd.exit_status().unwrap(), Some(WaitStatus::Exited(3)));
        assert_eq!(reap_any().unwrap(), None);
    }
}
