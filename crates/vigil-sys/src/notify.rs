//! The receiving end of systemd's notify protocol: one AF_UNIX datagram socket whose datagrams carry the
//! sender's credentials (SO_PASSCRED), so that the receiver knows which process spoke.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::{Pid, SysError};

/// The largest datagram accepted: systemd's limit too (longer ones are dropped, not cut).
pub const NOTIFY_MAX: usize = 4096;

/// A bound, non-blocking, close-on-exec datagram socket with SO_PASSCRED on.
#[derive(Debug)]
pub struct NotifySocket {
    fd: OwnedFd,
    /// What to put in `NOTIFY_SOCKET`: the path, or `@name` for an abstract address.
    address: String,
}

/// One datagram and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's pid as the kernel vouches for it (a process can only claim another pid with
    /// CAP_SYS_ADMIN); `None` when the datagram came without credentials.
    pub pid: Option<Pid>,
    /// The sender's uid.
    pub uid: Option<u32>,
    /// The payload.
    pub data: Vec<u8>,
}

impl NotifySocket {
    /// Binds `path` (a stale socket file there is replaced) with mode 0666: who may speak is decided
    /// per datagram from its credentials. A path too long for `sockaddr_un` falls back to an abstract
    /// address named after it.
    pub fn bind(path: &Path) -> Result<NotifySocket, SysError> {
        let fd = net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| SysError::errno("socket(AF_UNIX, SOCK_DGRAM)", None, e))?;
        net::sockopt::set_socket_passcred(&fd, true)
            .map_err(|e| SysError::errno("setsockopt(SO_PASSCRED)", None, e))?;
        let bytes = path.as_os_str().as_bytes();
        let address = if bytes.len() < 108 {
            let _ = std::fs::remove_file(path);
            let addr = SocketAddrUnix::new(path).map_err(|e| SysError::errno("sockaddr_un", None, e))?;
            net::bind(&fd, &addr).map_err(|e| bind_error(path, e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| SysError::io("chmod of the notify socket", None, e))?;
            path.display().to_string()
        } else {
            // Unique per path, and readable in `ss -x`.
            let name = format!("vigild-notify-{:016x}", fnv1a(bytes));
            let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())
                .map_err(|e| SysError::errno("sockaddr_un", None, e))?;
            net::bind(&fd, &addr).map_err(|e| bind_error(path, e))?;
            format!("@{name}")
        };
        Ok(NotifySocket { fd, address })
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Reads one datagram without blocking: `Ok(None)` when none is waiting. Datagrams longer than
    /// `NOTIFY_MAX` are dropped, as are any file descriptors sent along.
    pub fn recv(&self) -> Result<Option<Datagram>, SysError> {
        loop {
            let mut buf = vec![0u8; NOTIFY_MAX];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(4))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = match net::recvmsg(
                &self.fd,
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(rustix::io::Errno::AGAIN) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SysError::errno("recvmsg(notify socket)", None, e)),
            };
            let mut pid = None;
            let mut uid = None;
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmCredentials(c) = m {
                    pid = Some(c.pid.as_raw_nonzero().get());
                    uid = Some(c.uid.as_raw());
                }
                // Received fds are closed as the drained messages are dropped.
            }
            if msg.flags.contains(ReturnFlags::TRUNC) {
                continue;
            }
            buf.truncate(msg.bytes);
            return Ok(Some(Datagram { pid, uid, data: buf }));
        }
    }
}

fn bind_error(path: &Path, e: rustix::io::Errno) -> SysError {
    SysError::Io {
        op: "bind of the notify socket",
        pid: None,
        source: std::io::Error::new(
            std::io::Error::from(e).kind(),
            format!("{}: {}", path.display(), std::io::Error::from(e)),
        ),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NotifySocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn datagrams_carry_the_senders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        std::fs::write(&path, b"stale").unwrap();
        let s = NotifySocket::bind(&path).expect("bind over a stale file");
        assert_eq!(s.address(), path.display().to_string());
        assert_eq!(s.recv().unwrap(), None);
        let c = UnixDatagram::unbound().unwrap();
        c.send_to(b"READY=1\nSTATUS=up", &path).unwrap();
        c.send_to(&vec![b'x'; NOTIFY_MAX + 1], &path).unwrap();
        c.send_to(b"WATCHDOG=1", &path).unwrap();
        let d = s.recv().unwrap().unwrap();
        assert_eq!(d.data, b"READY=1\nSTATUS=up");
        assert_eq!(d.pid, Some(std::process::id() as i32));
        assert_eq!(d.uid, Some(crate::getuid()));
        assert_eq!(
            s.recv().unwrap().unwrap().data,
            b"WATCHDOG=1",
            "the oversized one is dropped"
        );
        assert_eq!(s.recv().unwrap(), None);
    }

    #[test]
    fn long_paths_fall_back_to_an_abstract_address() {
        let long = Path::new("/nonexistent").join("d".repeat(120)).join("notify.sock");
        let s = NotifySocket::bind(&long).unwrap();
        assert!(s.address().starts_with("@vigild-notify-"), "{}", s.address());
        let c = UnixDatagram::unbound().unwrap();
        let name = &s.address()[1..];
        let addr =
            <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name).unwrap();
        c.send_to_addr(b"READY=1", &addr).unwrap();
        assert_eq!(s.recv().unwrap().unwrap().data, b"READY=1");
    }
}
