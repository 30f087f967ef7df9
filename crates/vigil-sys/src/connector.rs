//! The netlink process connector (linux/connector.h, linux/cn_proc.h): fork/exec/exit events for
//! every process on the system, so vigil can track descendants that escape their parents.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::{Pid, SysError, WaitStatus};

/// One process event, reduced to what vigil needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// Process `parent` (a tgid) created the new process `child` (threads are not reported).
    Fork {
        /// The creating process.
        parent: Pid,
        /// The new process.
        child: Pid,
    },
    /// Process `pid` called execve.
    Exec {
        /// The process (tgid).
        pid: Pid,
    },
    /// Process `pid` exited (its last/leader thread; thread exits are not reported).
    Exit {
        /// The process (tgid).
        pid: Pid,
        /// How it ended.
        status: WaitStatus,
    },
}

/// CN_IDX_PROC / CN_VAL_PROC: the connector id of process events (also the multicast group).
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;

const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// sizeof(struct nlmsghdr): u32 len, u16 type, u16 flags, u32 seq, u32 pid.
const NLMSG_HDRLEN: usize = 16;
/// sizeof(struct cn_msg) without data: cb_id {u32 idx, u32 val}, u32 seq, u32 ack, u16 len, u16 flags.
const CN_MSG_HDRLEN: usize = 20;
/// Offset of proc_event.event_data: u32 what, u32 cpu, u64 timestamp_ns (8-aligned, at 8).
const EVENT_DATA: usize = 16;

/// Datagrams taken by one recvmmsg, and the room for each: the kernel sends one event per datagram,
/// 76 bytes (nlmsghdr, cn_msg and a 40-byte proc_event).
const BATCH: usize = 64;
const SLOT: usize = 512;

/// Receive buffer asked for, so bursts of forks do not overrun the socket.
const RCVBUF: libc::c_int = 8 << 20;

/// A subscription to the kernel's process events (needs CAP_NET_ADMIN in the initial namespaces).
#[derive(Debug)]
pub struct ProcConnector {
    fd: OwnedFd,
}

impl ProcConnector {
    /// Opens a non-blocking, close-on-exec NETLINK_CONNECTOR socket and subscribes to process events.
    pub fn open() -> Result<ProcConnector, SysError> {
        // SAFETY: socket takes integers only.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(SysError::last_os("socket(AF_NETLINK, NETLINK_CONNECTOR)", None));
        }
        // SAFETY: socket succeeded, so `raw` is a fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // A big receive buffer; SO_RCVBUFFORCE ignores rmem_max but needs CAP_NET_ADMIN.
        if setsockopt_int(&fd, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            setsockopt_int(&fd, libc::SO_RCVBUF, RCVBUF).ok();
        }

        // SAFETY: sockaddr_nl is a plain C struct; all-zero is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = 0; // let the kernel pick our port id
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: addr is a valid sockaddr_nl and the length is its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(SysError::last_os("bind(NETLINK_CONNECTOR, CN_IDX_PROC)", None));
        }

        let msg = listen_message();
        loop {
            // SAFETY: msg is a valid buffer of msg.len() bytes; unconnected netlink sends go to the kernel.
            let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
            if n >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(SysError::io("send(PROC_CN_MCAST_LISTEN)", None, e));
            }
        }
        Ok(ProcConnector { fd })
    }

    /// Appends every event currently queued to `out`, without blocking.
    ///
    /// `Err(SysError::Overrun)` means the kernel dropped events (ENOBUFS): the caller must rescan
    /// /proc. Events decoded before the overrun are still appended; the socket stays usable.
    pub fn read_events(&self, out: &mut Vec<ProcEvent>) -> Result<(), SysError> {
        self.read_some(out, usize::MAX).map(|_| ())
    }

    /// As `read_events`, but reads at most `max_messages` datagrams (the kernel sends one event in
    /// each), so that a caller can bound its work under a storm of forks. Returns true when it stopped
    /// at the bound: more may be queued, and the socket stays readable.
    pub fn read_some(&self, out: &mut Vec<ProcEvent>, max_messages: usize) -> Result<bool, SysError> {
        // Datagrams are taken BATCH at a time with recvmmsg: one syscall for a burst of events (a mass
        // restart is a fork, an exec and an exit per process) where recvfrom took one each.
        let mut bufs = [[0u8; SLOT]; BATCH];
        // SAFETY: sockaddr_nl, iovec and mmsghdr are plain C structs; all-zero is valid for each.
        let mut from: [libc::sockaddr_nl; BATCH] = unsafe { std::mem::zeroed() };
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut left = max_messages;
        while left > 0 {
            let want = left.min(BATCH);
            for i in 0..want {
                iov[i] = libc::iovec {
                    iov_base: bufs[i].as_mut_ptr().cast(),
                    iov_len: SLOT,
                };
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&mut from[i] as *mut libc::sockaddr_nl).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
                h.msg_iov = &mut iov[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                msgs[i].msg_len = 0;
            }
            // SAFETY: `want` headers, each pointing to its own valid buffer, iovec and address of the
            // sizes given; no timeout.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    want as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => Ok(false),
                    Some(libc::ENOBUFS) => Err(SysError::Overrun),
                    _ => Err(SysError::io("recv(NETLINK_CONNECTOR)", None, e)),
                };
            }
            let n = n as usize;
            for i in 0..n {
                // Only the kernel (port 0) speaks for the process connector; a datagram cut short (no
                // event is near SLOT bytes) is not decoded.
                if from[i].nl_pid == 0 && msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC == 0 {
                    decode(&bufs[i][..(msgs[i].msg_len as usize).min(SLOT)], out);
                }
            }
            left -= n;
            if n < want {
                // The queue is empty (an error met after some datagrams is reported by the next call).
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl AsFd for ProcConnector {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for ProcConnector {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn setsockopt_int(fd: &OwnedFd, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// nlmsghdr + cn_msg{CN_IDX_PROC, CN_VAL_PROC} + u32 PROC_CN_MCAST_LISTEN.
fn listen_message() -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_HDRLEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes()); // id.idx
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes()); // id.val
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    debug_assert_eq!(m.len(), total);
    m
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// Decodes every netlink message in one datagram, appending the events vigil cares about.
fn decode(buf: &[u8], out: &mut Vec<ProcEvent>) {
    let mut off = 0;
    while let Some(len) = u32_at(buf, off).map(|l| l as usize) {
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return;
        }
        let ty = u16_at(buf, off + 4).unwrap_or(0);
        let is_data = !matches!(
            i32::from(ty),
            libc::NLMSG_NOOP | libc::NLMSG_ERROR | libc::NLMSG_OVERRUN
        );
        if is_data {
            if let Some(ev) = decode_cn_msg(&buf[off + NLMSG_HDRLEN..off + len]) {
                out.push(ev);
            }
        }
        off += (len + 3) & !3;
    }
}

/// Decodes one cn_msg carrying a struct proc_event.
fn decode_cn_msg(m: &[u8]) -> Option<ProcEvent> {
    if u32_at(m, 0)? != CN_IDX_PROC || u32_at(m, 4)? != CN_VAL_PROC {
        return None;
    }
    let dlen = u16_at(m, 16)? as usize;
    let ev = m.get(CN_MSG_HDRLEN..CN_MSG_HDRLEN + dlen)?;
    let what = u32_at(ev, 0)?;
    let d = EVENT_DATA;
    let pid = |i: usize| u32_at(ev, d + 4 * i).map(|v| v as Pid);
    match what {
        PROC_EVENT_FORK => {
            // parent_pid, parent_tgid, child_pid, child_tgid
            let (parent_tgid, child_pid, child_tgid) = (pid(1)?, pid(2)?, pid(3)?);
            (child_pid == child_tgid).then_some(ProcEvent::Fork {
                parent: parent_tgid,
                child: child_tgid,
            })
        }
        PROC_EVENT_EXEC => Some(ProcEvent::Exec { pid: pid(1)? }),
        PROC_EVENT_EXIT => {
            // process_pid, process_tgid, exit_code, exit_signal, parent_pid, parent_tgid
            let (p, tgid, code) = (pid(0)?, pid(1)?, u32_at(ev, d + 8)?);
            (p == tgid).then_some(ProcEvent::Exit {
                pid: tgid,
                status: WaitStatus::from_raw(code as i32),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::{spawn, SpawnSpec};
    use std::ffi::OsString;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// Builds a datagram like the kernel's: nlmsghdr + cn_msg + proc_event with `data` words.
    fn datagram(what: u32, data: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&3u32.to_ne_bytes()); // cpu
        ev.extend_from_slice(&123u64.to_ne_bytes()); // timestamp_ns
        for w in data {
            ev.extend_from_slice(&w.to_ne_bytes());
        }
        let mut m = listen_message();
        m.truncate(NLMSG_HDRLEN + CN_MSG_HDRLEN);
        m[NLMSG_HDRLEN + 16..NLMSG_HDRLEN + 18].copy_from_slice(&(ev.len() as u16).to_ne_bytes());
        m.extend_from_slice(&ev);
        let total = m.len() as u32;
        m[..4].copy_from_slice(&total.to_ne_bytes());
        m
    }

    #[test]
    fn decodes_kernel_layout() {
        let mut out = Vec::new();
        decode(&datagram(PROC_EVENT_FORK, &[10, 10, 20, 20]), &mut out);
        decode(&datagram(PROC_EVENT_FORK, &[10, 10, 21, 20]), &mut out); // a thread: ignored
        decode(&datagram(PROC_EVENT_EXEC, &[20, 20]), &mut out);
        decode(&datagram(PROC_EVENT_EXIT, &[21, 20, 0, 17, 10, 10]), &mut out); // thread exit
        decode(&datagram(PROC_EVENT_EXIT, &[20, 20, 0x300, 17, 10, 10]), &mut out);
        decode(&datagram(PROC_EVENT_EXIT, &[22, 22, 0x89, 17, 10, 10]), &mut out);
        decode(&datagram(0x4, &[20, 20, 0, 0]), &mut out); // uid change: ignored
        decode(&datagram(PROC_EVENT_EXIT, &[20]), &mut out); // truncated: ignored
                                                             // Two messages in one datagram.
        let mut two = datagram(PROC_EVENT_EXEC, &[30, 30]);
        two.extend(datagram(PROC_EVENT_EXEC, &[31, 31]));
        decode(&two, &mut out);
        assert_eq!(
            out,
            [
                ProcEvent::Fork { parent: 10, child: 20 },
                ProcEvent::Exec { pid: 20 },
                ProcEvent::Exit {
                    pid: 20,
                    status: WaitStatus::Exited(3)
                },
                ProcEvent::Exit {
                    pid: 22,
                    status: WaitStatus::Signaled {
                        signal: 9,
                        core_dumped: true
                    }
                },
                ProcEvent::Exec { pid: 30 },
                ProcEvent::Exec { pid: 31 },
            ]
        );
        decode(&[1, 2, 3], &mut out);
        assert_eq!(out.len(), 6);
    }

    /// More datagrams queued than one recvmmsg takes: `read_some` stops at its bound and says more may be
    /// queued, and the rest is read after.
    #[test]
    fn reads_in_batches_up_to_the_bound() {
        let conn = ProcConnector::open().expect("the process connector (root, or a kernel that allows it)");
        let mut events = Vec::new();
        conn.read_events(&mut events).ok();
        let _g = child_lock();
        let argv = [OsString::from("true")];
        let spec = SpawnSpec::new(Path::new("/bin/true"), &argv, &[], crate::Output::Null);
        let mut pids = Vec::new();
        // Each is a fork, an exec and an exit: well over two batches.
        for _ in 0..(BATCH * 2 / 3 + 1) {
            let s = spawn(&spec).unwrap();
            assert_eq!(wait_child(&s), WaitStatus::Exited(0));
            pids.push(s.pid);
        }
        let mut first = Vec::new();
        match conn.read_some(&mut first, 5) {
            Ok(more) => assert!(more, "5 datagrams read, and more are queued"),
            Err(SysError::Overrun) => return,
            Err(e) => panic!("{e}"),
        }
        assert!(first.len() <= 5, "{first:?}");
        let mut rest = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left: std::collections::BTreeSet<Pid> = pids.iter().copied().collect();
        while !left.is_empty() {
            assert!(Instant::now() < deadline, "no exit event for {left:?}");
            match conn.read_some(&mut rest, usize::MAX) {
                Ok(more) => assert!(!more, "an unbounded read stops only at an empty queue"),
                Err(SysError::Overrun) => return,
                Err(e) => panic!("{e}"),
            }
            for e in first.iter().chain(&rest) {
                if let ProcEvent::Exit { pid, status } = e {
                    if left.remove(pid) {
                        assert_eq!(*status, WaitStatus::Exited(0));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn sees_fork_exec_exit_of_real_processes() {
        // Runs as root in CI; a failure to open here is a failure, never a silent skip.
        let conn = ProcConnector::open().expect("the process connector (root, or a kernel that allows it)");
        let mut events = Vec::new();
        conn.read_events(&mut events).ok();

        let _g = child_lock();
        let argv: Vec<OsString> = ["sh", "-c", "sleep 0.1 & wait"].iter().map(OsString::from).collect();
        let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let spec = SpawnSpec::new(Path::new("/bin/sh"), &argv, &env, crate::Output::Null);
        let s = spawn(&spec).unwrap();
        let sh = s.pid;
        let me = std::process::id() as Pid;

        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        let mut sleeper = None;
        let done = |events: &[ProcEvent], sleeper: Option<Pid>| {
            let Some(c) = sleeper else { return false };
            events.contains(&ProcEvent::Exit {
                pid: c,
                status: WaitStatus::Exited(0),
            }) && events.contains(&ProcEvent::Exit {
                pid: sh,
                status: WaitStatus::Exited(0),
            })
        };
        while !done(&events, sleeper) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "missing events for sh {sh} (sleeper {sleeper:?})");
            let mut pfd = libc::pollfd {
                fd: conn.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(500) as i32) };
            match conn.read_events(&mut events) {
                Ok(()) | Err(SysError::Overrun) => {}
                Err(e) => panic!("{e}"),
            }
            sleeper = events.iter().find_map(|e| match *e {
                ProcEvent::Fork { parent, child } if parent == sh => Some(child),
                _ => None,
            });
        }
        assert!(
            events.contains(&ProcEvent::Fork { parent: me, child: sh }),
            "{events:?}"
        );
        assert!(events.contains(&ProcEvent::Exec { pid: sh }), "{events:?}");
        assert_eq!(wait_child(&s), WaitStatus::Exited(0));
    }
}
