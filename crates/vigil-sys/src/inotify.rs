//! inotify, to notice log files growing so they can be rotated by size.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use rustix::fs::inotify;

use crate::SysError;

/// A non-blocking, close-on-exec inotify instance.
#[derive(Debug)]
pub struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    /// Creates the inotify instance (IN_NONBLOCK | IN_CLOEXEC).
    pub fn new() -> Result<Inotify, SysError> {
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .map_err(|e| SysError::errno("inotify_init1", None, e))?;
        Ok(Inotify { fd })
    }

    /// Watches `path` for IN_MODIFY and returns the watch descriptor. A symlink is not followed.
    ///
    /// The watch follows the inode: after renaming the file away (rotation), remove the watch
    /// and add one on the new file. Adding the same inode twice returns the same wd.
    pub fn add_modify_watch(&self, path: &Path) -> Result<i32, SysError> {
        inotify::add_watch(
            &self.fd,
            path,
            inotify::WatchFlags::MODIFY | inotify::WatchFlags::DONT_FOLLOW,
        )
        .map_err(|e| SysError::Io {
            op: "inotify_add_watch",
            pid: None,
            source: std::io::Error::new(
                std::io::Error::from(e).kind(),
                format!("{}: {}", path.display(), std::io::Error::from(e)),
            ),
        })
    }

    /// Stops watching `wd` (an IN_IGNORED event for it may still be read afterwards).
    pub fn remove_watch(&self, wd: i32) -> Result<(), SysError> {
        inotify::remove_watch(&self.fd, wd).map_err(|e| SysError::errno("inotify_rm_watch", None, e))
    }

    /// Appends the wd of every queued event to `out` without blocking (duplicates possible).
    ///
    /// A wd of -1 means the kernel queue overflowed: re-check every watched file.
    pub fn read_events(&self, out: &mut Vec<i32>) -> Result<(), SysError> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            match reader.next() {
                Ok(ev) => out.push(ev.wd()),
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SysError::errno("read(inotify)", None, e)),
            }
        }
    }
}

impl AsFd for Inotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sees_appends_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        let mut fa = std::fs::File::create(&a).unwrap();
        let mut fb = std::fs::File::create(&b).unwrap();
        let ino = Inotify::new().unwrap();
        let wa = ino.add_modify_watch(&a).unwrap();
        let wb = ino.add_modify_watch(&b).unwrap();
        assert_ne!(wa, wb);
        let mut out = Vec::new();
        ino.read_events(&mut out).unwrap();
        assert!(out.is_empty());

        // Writes queue events synchronously, so they are readable right away.
        fa.write_all(b"hello\n").unwrap();
        ino.read_events(&mut out).unwrap();
        assert_eq!(out, [wa]);
        out.clear();
        fb.write_all(b"x").unwrap();
        fa.write_all(b"y").unwrap();
        ino.read_events(&mut out).unwrap();
        assert_eq!(out, [wb, wa]);

        ino.remove_watch(wa).unwrap();
        out.clear();
        fa.write_all(b"z").unwrap();
        ino.read_events(&mut out).unwrap();
        assert!(!out.contains(&wa) || out == [wa], "{out:?}"); // only the IN_IGNORED for wa
        assert!(ino.remove_watch(wa).is_err());

        let err = ino.add_modify_watch(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
