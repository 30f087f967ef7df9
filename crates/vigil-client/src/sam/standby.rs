//! The next instance, forked ahead of need.
//!
//! A restart used to be a fork made once the instance was found dead, and that fork (copying the
//! supervisor's page tables, then the new process's first faults) was half of the time from the death to
//! the new instance returning from `register`. A supervisor whose policy restarts now forks the next
//! instance while the current one runs: the standby waits on a link of its own, with the application's
//! signal handlers set aside, until the supervisor releases it with what a fork at that moment would have
//! copied (the instance number, the data, the warn signal). A restart is then a wake-up.
//!
//! What the standby holds is the supervisor's memory as it was when the standby was forked, and the
//! supervisor changes nothing of it meanwhile but what the release carries: it runs no application code
//! after `register` (other threads of a C program do, and what they change after the fork is not in the
//! standby: docs/sam.md says so). A signal sent to the standby (to the whole process group, say) finds the default
//! action, and ends it unless the application ignores that signal; a standby that is gone when it is
//! needed is reaped, and the supervisor forks as before. So does a supervisor whose standby could not be
//! forked (the user's process limit, say). The supervisor's end of the link is the only other one: a
//! supervisor that dies leaves its standby an end of file, and the standby exits at once, running
//! nothing of the application's (`_exit`). `VIGIL_SAM_STANDBY=0` turns standbys off (docs/sam.md, "The
//! standby instance").

use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::{recv_exact, SAM_DATA_MAX};

/// A standby, seen from the supervisor.
pub(super) struct Standby {
    pid: i32,
    /// Signals go through it: the pid alone could name another process once the standby is reaped by
    /// someone else (an application that ignores SIGCHLD has its children reaped by the kernel).
    pidfd: Option<vigil_sys::PidFd>,
    link: OwnedFd,
}

/// How long a release may wait for the standby to take what it is sent (the data can be larger than the
/// socket's buffer): one that does not is dismissed, and the supervisor forks.
const RELEASE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a released standby is told: what a fork at the release would have copied.
pub(super) struct Release {
    pub(super) instance: u32,
    pub(super) warn_signal: i32,
    pub(super) data: Option<Vec<u8>>,
}

/// Whether this process forks standbys (`VIGIL_SAM_STANDBY=0`: no).
pub(super) fn enabled() -> bool {
    std::env::var_os("VIGIL_SAM_STANDBY").is_none_or(|v| v != "0")
}

/// Where a fork of a standby left this process.
pub(super) enum Forked {
    /// The supervisor, with its standby (None: none could be forked, and the next restart forks).
    Supervisor(Option<Standby>),
    /// The standby: its end of the link, and what it must restore once released.
    Standby(OwnedFd, vigil_sys::ParkedHandlers),
}

/// Forks a standby with `fork`.
pub(super) fn fork(fork: &mut dyn FnMut() -> std::result::Result<vigil_sys::Forked, vigil_sys::SysError>) -> Forked {
    let pair = rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None);
    let Ok((ours, theirs)) = pair else {
        return Forked::Supervisor(None);
    };
    // Forked with every signal blocked: none reaches the child before its handlers are set aside.
    let mask = vigil_sys::block_all_signals();
    let forked = fork();
    if let Ok(vigil_sys::Forked::Child) = forked {
        let parked = vigil_sys::park_signal_handlers(mask);
        drop(ours);
        return Forked::Standby(theirs, parked);
    }
    mask.restore();
    match forked {
        Ok(vigil_sys::Forked::Parent(pid)) => Forked::Supervisor(Some(Standby {
            pid,
            pidfd: vigil_sys::PidFd::open(pid).ok(),
            link: ours,
        })),
        _ => Forked::Supervisor(None),
    }
}

impl Standby {
    /// Makes the standby the next instance: its pid and the supervisor's end of its link; None when it
    /// is gone (then reaped), for the supervisor to fork one as before.
    pub(super) fn release(self, r: &Release) -> Option<(i32, OwnedFd)> {
        let data = r.data.as_deref();
        let mut head = Vec::with_capacity(17 + data.map_or(0, <[u8]>::len));
        head.extend_from_slice(&r.instance.to_le_bytes());
        head.extend_from_slice(&r.warn_signal.to_le_bytes());
        head.push(u8::from(data.is_some()));
        head.extend_from_slice(&(data.map_or(0, <[u8]>::len) as u64).to_le_bytes());
        head.extend_from_slice(data.unwrap_or_default());
        // A standby stopped meanwhile (SIGSTOP) would be a restart that never runs.
        self.signal(SIGCONT);
        if !send_within(&self.link, &head, RELEASE_DEADLINE) {
            self.dismiss();
            return None;
        }
        Some((self.pid, self.link))
    }

    fn signal(&self, sig: i32) {
        if let Some(p) = &self.pidfd {
            let _ = p.send_signal(sig);
        }
    }

    /// Ends the standby (the supervisor quits, or failed): killed and reaped.
    pub(super) fn dismiss(self) {
        self.signal(super::SIGKILL);
        if self.pidfd.is_some() {
            let _ = vigil_sys::reap_child(self.pid);
        }
    }
}

const SIGCONT: i32 = 18;

/// Sends all of `buf` unless `deadline` passes first (or the peer is gone): whether it did.
fn send_within(fd: &OwnedFd, mut buf: &[u8], deadline: std::time::Duration) -> bool {
    use rustix::event::{PollFd, PollFlags};
    use rustix::net::SendFlags;
    let until = std::time::Instant::now() + deadline;
    while !buf.is_empty() {
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return false;
                }
                let timeout = rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as _,
                };
                let mut fds = [PollFd::new(fd, PollFlags::OUT)];
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(_) => return false,
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// In the standby: waits to be released. A supervisor gone (end of file) or a release that makes no
/// sense ends the standby here, running nothing of the application's.
pub(super) fn wait(link: &OwnedFd, parked: vigil_sys::ParkedHandlers) -> Release {
    let Some(r) = read_release(link) else {
        vigil_sys::exit_now(0);
    };
    parked.restore();
    r
}

fn read_release(link: &OwnedFd) -> Option<Release> {
    let mut head = [0u8; 17];
    recv_exact(link, &mut head).ok()?;
    let instance = u32::from_le_bytes(head[0..4].try_into().ok()?);
    let warn_signal = i32::from_le_bytes(head[4..8].try_into().ok()?);
    let len = u64::from_le_bytes(head[9..17].try_into().ok()?) as usize;
    let data = match head[8] {
        0 => None,
        _ if len > SAM_DATA_MAX => return None,
        _ => {
            let mut d = vec![0u8; len];
            recv_exact(link, &mut d).ok()?;
            Some(d)
        }
    };
    Some(Release {
        instance,
        warn_signal,
        data,
    })
}
