//! Telling the service manager that started vigild that it is ready: systemd's `Type=notify` protocol,
//! one datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`.
//!
//! vigild is ready once its socket accepts connections: a unit ordered after vigild (or a script run
//! after `systemctl start vigild`) can then talk to it at once. Without `$NOTIFY_SOCKET` nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// The variable naming the service manager's socket.
pub const VAR: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to `$NOTIFY_SOCKET`. `Ok(false)`: the variable is unset,
/// vigild was not started by a manager that waits for it.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(VAR).filter(|a| !a.is_empty()) {
        Some(addr) => send(&addr, state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to `addr`, a value of `$NOTIFY_SOCKET`.
pub fn send(addr: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = addr.as_bytes();
    match bytes.first() {
        // `@name`: an abstract address, as systemd's own documentation allows.
        Some(b'@') => {
            let a = SocketAddr::from_abstract_name(&bytes[1..])?;
            sock.send_to_addr(state.as_bytes(), &a)?;
        }
        Some(b'/') => {
            sock.send_to(state.as_bytes(), Path::new(addr))?;
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{VAR}={addr:?}: expected an absolute path or @abstract-name"),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_or_an_abstract_name_and_refuses_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("vigild-sd-notify-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        send(OsStr::new(&format!("@{name}")), "READY=1\nSTATUS=x").unwrap();
        let n = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=x");

        let e = send(OsStr::new("relative.sock"), "READY=1").unwrap_err();
        assert!(e.to_string().contains("expected an absolute path"), "{e}");
    }
}
