//! fork + exec with everything prepared before the fork, and exec errors reported back through a
//! close-on-exec pipe.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{misc, procfs, Pid, PidFd, SysError};

/// What `spawn` runs, and how.
pub struct SpawnSpec<'a> {
    /// Absolute path of the executable (see `resolve_program`).
    pub program: &'a Path,
    /// argv, argv[0] included (an empty argv runs with argv = [program]).
    pub argv: &'a [OsString],
    /// The complete environment of the new process (nothing is inherited).
    pub env: &'a [(OsString, OsString)],
    /// Working directory of the new process (entered after the uid switch); None keeps ours.
    pub cwd: Option<&'a Path>,
    /// Switch to this uid/gid (and supplementary groups = [gid]) before exec; None keeps ours.
    pub uid: Option<u32>,
    /// Group to switch to (see `uid`).
    pub gid: Option<u32>,
    /// stdout and stderr both go here; None means /dev/null. stdin is always /dev/null.
    pub output: Option<BorrowedFd<'a>>,
    /// Call setsid() in the child so it leads a new session and process group.
    pub new_session: bool,
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid.
    pub pid: Pid,
    /// Field 22 of /proc/PID/stat, to tell this process from a later one with the same pid.
    pub start_time: u64,
    /// A pidfd on it (close-on-exec).
    pub pidfd: PidFd,
}

/// The child-side steps, reported through the error pipe so the parent can say what failed.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Step {
    Setsid = 1,
    Setgroups,
    Setgid,
    Setuid,
    Chdir,
    OpenDevNull,
    Dup2,
    Execve,
}

impl Step {
    fn from_u32(v: u32) -> Step {
        match v {
            1 => Step::Setsid,
            2 => Step::Setgroups,
            3 => Step::Setgid,
            4 => Step::Setuid,
            5 => Step::Chdir,
            6 => Step::OpenDevNull,
            7 => Step::Dup2,
            _ => Step::Execve,
        }
    }
}

/// An OS error from a pre-exec step, naming the step (and its argument).
#[derive(Debug)]
struct StepError {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Everything the child needs, built before fork so the child never allocates.
struct Prepared {
    program: CString,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
    output: Option<RawFd>,
    new_session: bool,
    nofile: Option<libc::rlimit>,
    empty_mask: libc::sigset_t,
    /// Keeps the strings `argv_ptrs`/`envp_ptrs` point into alive.
    _strings: (Vec<CString>, Vec<CString>),
}

const DEV_NULL: &CStr = c"/dev/null";

/// sizeof(kernel sigset_t), the last argument of rt_sigaction (_NSIG / 8).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_SIZE: usize = 16;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_SIZE: usize = 8;

fn invalid(program: &str, what: &str) -> SysError {
    SysError::Exec {
        program: program.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte")),
    }
}

fn prepare(spec: &SpawnSpec, program_name: &str) -> Result<Prepared, SysError> {
    let program =
        CString::new(spec.program.as_os_str().as_bytes()).map_err(|_| invalid(program_name, "program path"))?;
    let argv: Vec<CString> = if spec.argv.is_empty() {
        vec![program.clone()]
    } else {
        spec.argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| invalid(program_name, "an argument")))
            .collect::<Result<_, _>>()?
    };
    let mut env = Vec::with_capacity(spec.env.len());
    for (k, v) in spec.env {
        if k.is_empty() || k.as_bytes().contains(&b'=') {
            return Err(SysError::Exec {
                program: program_name.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid environment variable name {k:?}"),
                ),
            });
        }
        let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
        kv.extend_from_slice(k.as_bytes());
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        env.push(CString::new(kv).map_err(|_| invalid(program_name, "an environment variable"))?);
    }
    let cwd = match spec.cwd {
        Some(c) => Some(CString::new(c.as_os_str().as_bytes()).map_err(|_| invalid(program_name, "cwd"))?),
        None => None,
    };
    let argv_ptrs = argv
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs = env
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();

    // SAFETY: sigset_t is a plain C struct for which all-zero is a valid value.
    let mut empty_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a writable local sigset_t.
    unsafe { libc::sigemptyset(&mut empty_mask) };

    Ok(Prepared {
        program,
        argv_ptrs,
        envp_ptrs,
        cwd,
        uid: spec.uid,
        gid: spec.gid,
        output: spec.output.map(|fd| fd.as_raw_fd()),
        new_session: spec.new_session,
        nofile: misc::original_nofile_limit(),
        empty_mask,
        _strings: (argv, env),
    })
}

/// Forks and execs `spec`. Exec failures are reported as `SysError::Exec` with the OS error
/// (through a close-on-exec pipe), and the failed child is reaped before returning.
///
/// For a failing execve the error's `source` is the bare OS error (so `raw_os_error()` works);
/// for earlier steps (setsid, setgroups, setgid, setuid, chdir, /dev/null, dup2) the source keeps
/// the OS error's kind and names the step, e.g. `chdir to "/nope": No such file or directory`.
/// The child gets an empty signal mask, default signal dispositions and, if
/// `raise_nofile_limit` was called, the original soft RLIMIT_NOFILE.
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SysError> {
    let program_name = spec.program.to_string_lossy().into_owned();
    let prep = prepare(spec, &program_name)?;

    let (err_r, err_w) = misc::pipe_cloexec()?;
    // Keep the error pipe clear of 0..=2, which the child overwrites with dup2.
    let err_w = if err_w.as_raw_fd() < 3 {
        rustix::io::fcntl_dupfd_cloexec(&err_w, 3).map_err(|e| SysError::errno("fcntl(F_DUPFD_CLOEXEC)", None, e))?
    } else {
        err_w
    };

    // SAFETY: fork has no memory-safety preconditions; in the child we only call
    // async-signal-safe functions on data prepared above, then execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::last_os("fork", None));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; `prep` was fully built before the fork.
        unsafe { child_exec(&prep, err_w.as_raw_fd()) }
    }
    drop(err_w);

    let report = read_report(&err_r);
    drop(err_r);
    if let Some((step, errno)) = report {
        wait_for(pid);
        return Err(exec_error(&program_name, spec, step, errno));
    }

    let pidfd = match PidFd::open(pid) {
        Ok(p) => p,
        Err(e) => {
            // Do not leave an unsupervised child behind; reap_any will collect it.
            misc::send_signal(pid, libc::SIGKILL).ok();
            return Err(e);
        }
    };
    let start_time = match procfs::start_time(pid) {
        Ok(t) => t,
        Err(e) => {
            pidfd.send_signal(libc::SIGKILL).ok();
            return Err(e);
        }
    };
    Ok(Spawned { pid, start_time, pidfd })
}

/// Reads the child's (step, errno) report; None on EOF, i.e. a successful exec.
fn read_report(err_r: &OwnedFd) -> Option<(u32, i32)> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(err_r, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    if got < buf.len() {
        // EOF before a full report: the exec succeeded (the pipe closed on exec).
        return None;
    }
    let step = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(buf[4..].try_into().expect("4 bytes"));
    Some((step, errno))
}

/// Blocks until the failed child (which is about to _exit) is reaped.
fn wait_for(pid: Pid) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid pointer to a local int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn exec_error(program: &str, spec: &SpawnSpec, step: u32, errno: i32) -> SysError {
    let os = io::Error::from_raw_os_error(errno);
    let what = match Step::from_u32(step) {
        Step::Execve => {
            return SysError::Exec {
                program: program.to_owned(),
                source: os,
            }
        }
        Step::Setsid => "setsid".to_owned(),
        Step::Setgroups => format!("setgroups([{}])", spec.gid.unwrap_or_default()),
        Step::Setgid => format!("setgid({})", spec.gid.unwrap_or_default()),
        Step::Setuid => format!("setuid({})", spec.uid.unwrap_or_default()),
        Step::Chdir => format!("chdir to {:?}", spec.cwd.unwrap_or(Path::new(""))),
        Step::OpenDevNull => "open /dev/null".to_owned(),
        Step::Dup2 => "dup2 of the output fd".to_owned(),
    };
    SysError::Exec {
        program: program.to_owned(),
        source: io::Error::new(os.kind(), StepError { what, source: os }),
    }
}

/// The child side: set up and execve, or report (step, errno) and _exit(127).
///
/// # Safety
/// Must only be called in the child right after fork; only async-signal-safe calls are made.
unsafe fn child_exec(p: &Prepared, err_fd: RawFd) -> ! {
    // SAFETY (whole function): every call below is a plain syscall wrapper on valid pointers
    // to data prepared before fork; nothing allocates or takes locks.
    unsafe {
        let fail = |step: Step| -> ! {
            let errno = *libc::__errno_location();
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&(step as u32).to_ne_bytes());
            buf[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(err_fd, buf.as_ptr().cast(), buf.len());
            libc::_exit(127)
        };

        // Default dispositions first (so no handler of ours can run), then unblock everything.
        // The raw syscall, because glibc's sigaction refuses its internal signals 32 and 33,
        // which may well have been inherited as ignored. An all-zero kernel sigaction is
        // SIG_DFL with no flags and an empty mask on every architecture.
        let default_action = [0u64; 8];
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    KERNEL_SIGSET_SIZE,
                );
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &p.empty_mask, std::ptr::null_mut());

        if p.new_session && libc::setsid() < 0 {
            fail(Step::Setsid);
        }
        if let Some(gid) = p.gid {
            if libc::setgroups(1, &gid) < 0 {
                fail(Step::Setgroups);
            }
            if libc::setgid(gid) < 0 {
                fail(Step::Setgid);
            }
        }
        if let Some(uid) = p.uid {
            if libc::setuid(uid) < 0 {
                fail(Step::Setuid);
            }
        }
        if let Some(cwd) = &p.cwd {
            if libc::chdir(cwd.as_ptr()) < 0 {
                fail(Step::Chdir);
            }
        }

        let mut null = libc::open(DEV_NULL.as_ptr(), libc::O_RDWR);
        if null < 0 {
            fail(Step::OpenDevNull);
        }
        if null < 3 {
            // Move it above the std fds so the dup2s below cannot clobber it; the low slot
            // it occupied is overwritten by one of those dup2s.
            null = libc::fcntl(null, libc::F_DUPFD, 3);
            if null < 0 {
                fail(Step::OpenDevNull);
            }
        }
        let out = p.output.unwrap_or(null);
        for target in [1, 2] {
            if out == target {
                // dup2 onto itself would keep FD_CLOEXEC; clear it explicitly.
                if libc::fcntl(out, libc::F_SETFD, 0) < 0 {
                    fail(Step::Dup2);
                }
            } else if libc::dup2(out, target) < 0 {
                fail(Step::Dup2);
            }
        }
        if libc::dup2(null, 0) < 0 {
            fail(Step::Dup2);
        }
        libc::close(null);

        if let Some(lim) = &p.nofile {
            libc::setrlimit(libc::RLIMIT_NOFILE, lim);
        }
        // Belt and braces: nothing above fd 2 is meant to be inherited.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);

        libc::execve(p.program.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
        fail(Step::Execve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::WaitStatus;
    use std::time::Duration;

    #[test]
    fn runs_with_exact_env_and_captures_output() {
        let _g = child_lock();
        let env = [
            (OsString::from("FOO"), OsString::from("bar baz")),
            (OsString::from("X"), OsString::from("")),
        ];
        let (out, status) = run_capture(Path::new("/usr/bin/env"), &["env"], &env, None);
        assert_eq!(status, WaitStatus::Exited(0));
        assert_eq!(out, "FOO=bar baz\nX=\n");
    }

    #[test]
    fn child_has_default_signals_and_empty_mask() {
        let _g = child_lock();
        // Rust's runtime ignores SIGPIPE in this process; the child must not inherit that.
        let (out, status) = run_capture(
            Path::new("/bin/grep"),
            &["grep", "^Sig[IB]", "/proc/self/status"],
            &[],
            None,
        );
        assert_eq!(status, WaitStatus::Exited(0));
        assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    }

    #[test]
    fn stdin_is_dev_null_and_fds_do_not_leak() {
        let _g = child_lock();
        let (out, _) = run_capture(
            Path::new("/bin/sh"),
            &["sh", "-c", "readlink /proc/self/fd/0; ls /proc/self/fd | wc -l"],
            &[(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))],
            None,
        );
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("/dev/null"));
        // 0, 1, 2 and the fd ls opens on /proc/self/fd (sh + ls may keep one more at most).
        let n: usize = lines.next().unwrap().trim().parse().unwrap();
        assert!(n <= 5, "child sees {n} fds: {out}");
    }

    #[test]
    fn cwd_is_applied() {
        let _g = child_lock();
        let dir = tempfile::tempdir().unwrap();
        let (out, status) = run_capture(Path::new("/bin/pwd"), &["pwd"], &[], Some(dir.path()));
        assert_eq!(status, WaitStatus::Exited(0));
        assert_eq!(Path::new(out.trim()), dir.path().canonicalize().unwrap());
    }

    #[test]
    fn output_none_goes_to_dev_null() {
        let _g = child_lock();
        let argv = [
            OsString::from("sh"),
            OsString::from("-c"),
            OsString::from("echo hi; exit 3"),
        ];
        let spec = SpawnSpec {
            program: Path::new("/bin/sh"),
            argv: &argv,
            env: &[],
            cwd: None,
            uid: None,
            gid: None,
            output: None,
            new_session: false,
        };
        let s = spawn(&spec).unwrap();
        assert_eq!(wait_child(&s), WaitStatus::Exited(3));
    }

    #[test]
    fn exec_failure_is_reported_and_reaped() {
        let _g = child_lock();
        let argv = [OsString::from("x")];
        let mut spec = SpawnSpec {
            program: Path::new("/nonexistent/program"),
            argv: &argv,
            env: &[],
            cwd: None,
            uid: None,
            gid: None,
            output: None,
            new_session: false,
        };
        match spawn(&spec) {
            Err(SysError::Exec { program, source }) => {
                assert_eq!(program, "/nonexistent/program");
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("unexpected {other:?}"),
        }
        spec.program = Path::new("/bin/true");
        spec.cwd = Some(Path::new("/nonexistent/dir"));
        let err = spawn(&spec).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("chdir to \"/nonexistent/dir\""), "{msg}");
        match err {
            SysError::Exec { source, .. } => assert_eq!(source.kind(), io::ErrorKind::NotFound),
            other => panic!("unexpected {other:?}"),
        }
        // Both failed children were reaped: no child is left.
        assert!(crate::reap_any().unwrap().is_none());
        let nul = [OsString::from("a\0b")];
        spec.argv = &nul;
        assert!(matches!(spawn(&spec), Err(SysError::Exec { .. })));
    }

    #[test]
    fn switches_uid_and_gid() {
        if crate::getuid() != 0 {
            return;
        }
        let _g = child_lock();
        let (r, w) = crate::pipe_cloexec().unwrap();
        let argv: Vec<OsString> = ["sh", "-c", "id -u; id -g; id -G"].iter().map(OsString::from).collect();
        let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let spec = SpawnSpec {
            program: Path::new("/bin/sh"),
            argv: &argv,
            env: &env,
            cwd: Some(Path::new("/")),
            uid: Some(65534),
            gid: Some(65533),
            output: Some(std::os::fd::AsFd::as_fd(&w)),
            new_session: false,
        };
        let s = spawn(&spec).unwrap();
        drop(w);
        assert_eq!(wait_child(&s), WaitStatus::Exited(0));
        assert_eq!(read_to_end(r), "65534\n65533\n65533\n");
    }

    #[test]
    fn new_session_and_identity() {
        let _g = child_lock();
        let argv = [OsString::from("sleep"), OsString::from("5")];
        let spec = SpawnSpec {
            program: Path::new("/bin/sleep"),
            argv: &argv,
            env: &[],
            cwd: None,
            uid: None,
            gid: None,
            output: None,
            new_session: true,
        };
        let s = spawn(&spec).unwrap();
        assert_eq!(s.pidfd.pid(), s.pid);
        // setsid happens in the child before exec, so it is visible once spawn returns.
        let st = crate::proc_stat(s.pid).unwrap();
        assert_eq!(
            (st.session, st.pgrp, st.ppid),
            (s.pid, s.pid, std::process::id() as Pid)
        );
        assert_eq!(st.start_time, s.start_time);
        assert!(!s.pidfd.has_exited());
        crate::kill_process_group(s.pid, libc::SIGKILL).unwrap();
        assert!(s.pidfd.wait_exited(Some(Duration::from_secs(5))));
        assert_eq!(
            wait_child(&s),
            WaitStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
    }
}
