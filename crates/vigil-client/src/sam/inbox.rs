//! The supervisor's side of the link, read ahead: one `recv` takes every command the application sent
//! since the last one (a burst of `hc_send` is then one wake-up and one read, not one of each per
//! heartbeat, which is what kept the application waiting for room in the socket).

use std::io;
use std::os::fd::OwnedFd;

use rustix::net::RecvFlags;

/// Bytes taken from the link in one read. A larger payload (a data store) goes straight to its buffer.
const CHUNK: usize = 4096;

/// Commands read from the link and not yet handled.
#[derive(Default)]
pub(super) struct Inbox {
    buf: Vec<u8>,
    pos: usize,
}

impl Inbox {
    /// Nothing read ahead: only the socket can have more.
    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn recv(link: &OwnedFd, into: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::net::recv(link, &mut *into, RecvFlags::empty()) {
                Ok((0, _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Fills `out` from what was read ahead, then from the link (blocking): an error at the end of the
    /// link or when it fails.
    pub(super) fn read_exact(&mut self, link: &OwnedFd, out: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < out.len() {
            if self.is_empty() {
                if out.len() - got >= CHUNK {
                    got += Self::recv(link, &mut out[got..])?;
                    continue;
                }
                self.buf.resize(CHUNK, 0);
                self.pos = 0;
                match Self::recv(link, &mut self.buf) {
                    Ok(n) => self.buf.truncate(n),
                    Err(e) => {
                        self.buf.clear();
                        return Err(e);
                    }
                }
            }
            let n = (out.len() - got).min(self.buf.len() - self.pos);
            out[got..got + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            got += n;
        }
        Ok(())
    }

    /// Reads and drops `len` bytes (a payload refused for its size).
    pub(super) fn skip(&mut self, link: &OwnedFd, mut len: u64) -> io::Result<()> {
        let mut sink = [0u8; CHUNK];
        while len > 0 {
            let n = len.min(CHUNK as u64) as usize;
            self.read_exact(link, &mut sink[..n])?;
            len -= n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap()
    }

    #[test]
    fn commands_sent_together_are_read_in_one_go_and_in_order() {
        let (a, b) = pair();
        rustix::net::send(&a, &[1, 1, 1, 7, 8, 9], rustix::net::SendFlags::empty()).unwrap();
        let mut inbox = Inbox::default();
        let mut one = [0u8; 1];
        for _ in 0..3 {
            inbox.read_exact(&b, &mut one).unwrap();
            assert_eq!(one, [1]);
        }
        // The rest came with the first read: nothing is left in the socket, all of it is here.
        assert!(!inbox.is_empty());
        let mut three = [0u8; 3];
        inbox.read_exact(&b, &mut three).unwrap();
        assert_eq!(three, [7, 8, 9]);
        assert!(inbox.is_empty());
        drop(a);
        assert_eq!(
            inbox.read_exact(&b, &mut one).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_large_payload_is_read_whole_across_what_was_read_ahead() {
        let (a, b) = pair();
        let payload: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let mut msg = vec![5u8];
        msg.extend_from_slice(&payload);
        msg.push(2);
        let writer = std::thread::spawn(move || {
            let mut rest = &msg[..];
            while !rest.is_empty() {
                let n = rustix::net::send(&a, rest, rustix::net::SendFlags::empty()).unwrap();
                rest = &rest[n..];
            }
        });
        let mut inbox = Inbox::default();
        let mut one = [0u8; 1];
        inbox.read_exact(&b, &mut one).unwrap();
        assert_eq!(one, [5]);
        let mut got = vec![0u8; payload.len()];
        inbox.read_exact(&b, &mut got).unwrap();
        assert_eq!(got, payload);
        inbox.read_exact(&b, &mut one).unwrap();
        assert_eq!(one, [2]);
        writer.join().unwrap();
    }
}
