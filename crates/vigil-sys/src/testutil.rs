//! Helpers shared by the unit tests.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{spawn, SpawnSpec, Spawned, WaitStatus};

static CHILDREN: Mutex<()> = Mutex::new(());

/// Serialises tests that create child processes: `reap_any` in one test would otherwise steal
/// another test's children.
pub fn child_lock() -> MutexGuard<'static, ()> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits (at most 10 s) for a spawned child to exit and reaps it.
pub fn wait_child(s: &Spawned) -> WaitStatus {
    assert!(
        s.pidfd.wait_exited(Some(Duration::from_secs(10))),
        "pid {} did not exit in time",
        s.pid
    );
    let mut status = 0;
    // SAFETY: waitpid on our own, already exited child with a valid pointer to a local.
    let r = unsafe { libc::waitpid(s.pid, &mut status, 0) };
    assert_eq!(r, s.pid, "waitpid: {}", std::io::Error::last_os_error());
    WaitStatus::from_raw(status)
}

/// Waits (at most 5 s) for a child the caller sent SIGKILL to end, reaps it, and checks that SIGKILL
/// ended it.
pub fn assert_killed(s: &Spawned) {
    assert!(s.pidfd.wait_exited(Some(Duration::from_secs(5))));
    assert_eq!(
        wait_child(s),
        WaitStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false
        }
    );
}

/// Reads a pipe until EOF, failing the test if that takes more than 10 s.
pub fn read_to_end(r: OwnedFd) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    crate::set_nonblocking(&r).unwrap();
    let mut f = std::fs::File::from(r);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "pipe not closed in time; got {:?}",
                    String::from_utf8_lossy(&out)
                );
                let mut pfd = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, count 1.
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8(out).unwrap()
}

/// Runs a program to completion with stdout/stderr captured.
pub fn run_capture(
    program: &Path,
    argv: &[&str],
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
) -> (String, WaitStatus) {
    let (r, w) = crate::pipe_cloexec().unwrap();
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let spec = SpawnSpec {
        cwd,
        ..SpawnSpec::new(program, &argv, env, crate::Output::Fd(w.as_fd()))
    };
    let s = spawn(&spec).unwrap();
    drop(w);
    let out = read_to_end(r);
    (out, wait_child(&s))
}

/// Starts `sh -c script` with stdout on a pipe and returns it with the first line it prints.
pub fn start_sh(script: &str) -> (crate::Spawned, std::fs::File, String) {
    let (r, w) = crate::pipe_cloexec().unwrap();
    let argv: Vec<OsString> = ["sh", "-c", script].iter().map(OsString::from).collect();
    let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
    let spec = SpawnSpec::new(Path::new("/bin/sh"), &argv, &env, crate::Output::Fd(w.as_fd()));
    let s = spawn(&spec).unwrap();
    drop(w);
    // The line arrives promptly; a blocking read is bounded by the script's own lifetime.
    let mut f = std::fs::File::from(r);
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while f.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    (s, f, String::from_utf8(line).unwrap())
}
