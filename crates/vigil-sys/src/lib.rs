//! Linux process plumbing for vigil: the only crate with raw syscalls.
//!
//! It takes plain pids, signal numbers and spawn specs, and knows nothing of tags, categories or the wire.
//! Invariant: no serde, no knowledge of vigil's domain types, and no tokio but the one registration of a
//! descriptor with its reactor (`reactor`, feature `tokio`).

// Unsafe code lives in this crate and in the C library crates only; every unsafe block carries a
// `// SAFETY:` line.
#![allow(unsafe_code)]
#![warn(missing_docs)]

pub mod busy_poll;
mod connector;
mod handlers;
mod inotify;
mod misc;
mod notify;
mod pidfd;
mod procfs;
#[cfg(feature = "tokio")]
pub mod reactor;
mod resolve;
mod sched;
mod spawn;
#[cfg(test)]
mod testutil;
mod users;

pub use connector::{ProcConnector, ProcEvent};
pub use handlers::{block_all_signals, park_signal_handlers, ParkedHandlers, SignalMask};
pub use inotify::Inotify;
pub use misc::{
    data_extents, default_sigpipe, exit_now, fork, fork_single_threaded, getgid, getuid, kill_process_group,
    pipe_cloexec, raise_nofile_limit, reap_child, send_signal, set_child_subreaper, set_nonblocking,
    set_stop_signals_blocked, signal_self, user_by_uid, yield_cpu, Forked,
};
pub use notify::{Datagram, NotifySocket, NOTIFY_MAX};
pub use pidfd::{reap_any, try_reap_child, PidFd};
pub use procfs::{
    boot_time_ticks_per_sec, boottime_now_ns, children, cmdline, environ_var, monotonic_now_ns, proc_stat, start_time,
    start_time_to_boot_ns, uids, uptime_ticks, ProcStat, ProcTable,
};
pub use resolve::resolve_program;
pub use sched::{move_off_cpu, scheduling, set_realtime, thread_cpu_time, Scheduling};
pub use spawn::{
    check_exec, check_exec_within, spawn, ChildLimit, Output, SpawnSpec, Spawned, MAX_PATH_ENTRIES, SPAWNING_COMM,
};
pub use users::{group_by_name, group_list, group_name, user_by_name};

/// A process id (or process group id), as the kernel's `pid_t`.
pub type Pid = i32;

/// What went wrong in a system call, and on what.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The process (or process group) does not exist (ESRCH / no /proc entry).
    #[error("no such process: pid {0}")]
    NoSuchProcess(Pid),
    /// `resolve_program` found no such executable.
    #[error("cannot find executable {program:?} in PATH")]
    ProgramNotFound {
        /// The program name or path as given.
        program: String,
    },
    /// The program could not be started; `source` carries the OS error (and the failed step).
    #[error("cannot execute {program:?}: {source}")]
    Exec {
        /// The program path as given to `spawn`/`resolve_program`.
        program: String,
        /// The OS error; for steps other than execve itself its message names the step.
        #[source]
        source: std::io::Error,
    },
    /// Any other failed system call: `op` names it, `pid` the process concerned, if any.
    #[error("{op} failed{}: {source}", pid.map(|p| format!(" for pid {p}")).unwrap_or_default())]
    Io {
        /// The operation that failed, e.g. "pidfd_open".
        op: &'static str,
        /// The process concerned, if any.
        pid: Option<Pid>,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The process connector's socket buffer overflowed; events were lost, so rescan /proc.
    #[error("process connector overrun: events were lost")]
    Overrun,
    /// A program or working directory that the user a process runs as cannot reach: missing, or
    /// behind a directory that user may not search, which is one answer so that nobody learns through
    /// a root process what exists where only others may look.
    #[error("{what} {path:?} not found or not accessible as uid {uid}")]
    NotAccessible {
        /// "program" or "working directory".
        what: &'static str,
        /// The path as given (a program's name, for a PATH search).
        path: String,
        /// The user the process would have run as.
        uid: u32,
    },
}

/// Whether `errno` says the system, or a limit of the caller, ran short of something that others may
/// give back: descriptors (EMFILE, ENFILE), processes (EAGAIN) or memory (ENOMEM). Such a failure is
/// worth trying again later, unlike one that names the request itself (ENOENT, EACCES, ENOEXEC...).
pub fn is_resource_shortage(errno: i32) -> bool {
    matches!(errno, libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
}

impl SysError {
    /// The OS error number behind this error, if it came from the OS (a pre-exec step's included).
    pub fn os_errno(&self) -> Option<i32> {
        match self {
            SysError::Exec { source, .. } | SysError::Io { source, .. } => source.raw_os_error().or_else(|| {
                source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<spawn::StepError>())
                    .and_then(|step| step.source.raw_os_error())
            }),
            SysError::NoSuchProcess(_)
            | SysError::ProgramNotFound { .. }
            | SysError::NotAccessible { .. }
            | SysError::Overrun => None,
        }
    }

    /// Whether the failure was a shortage of a resource ([`is_resource_shortage`]).
    pub fn is_resource_shortage(&self) -> bool {
        self.os_errno().is_some_and(is_resource_shortage)
    }

    /// Builds `SysError::Io` from the current `errno`.
    pub(crate) fn last_os(op: &'static str, pid: Option<Pid>) -> SysError {
        SysError::Io {
            op,
            pid,
            source: std::io::Error::last_os_error(),
        }
    }

    /// Builds `SysError::Io` from an io::Error.
    pub(crate) fn io(op: &'static str, pid: Option<Pid>, source: std::io::Error) -> SysError {
        SysError::Io { op, pid, source }
    }

    /// Builds `SysError::Io` from a rustix errno.
    pub(crate) fn errno(op: &'static str, pid: Option<Pid>, e: rustix::io::Errno) -> SysError {
        SysError::Io {
            op,
            pid,
            source: e.into(),
        }
    }
}

/// How a process ended, decoded from wait(2) status. `raw` keeps the wait(2) encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Normal exit with this exit code (0..=255).
    Exited(i32),
    /// Killed by `signal`; `core_dumped` when a core file was written.
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether a core dump was produced.
        core_dumped: bool,
    },
}

impl WaitStatus {
    /// Decodes a wait(2)-encoded status word.
    ///
    /// Stop/continue statuses are not expected here (nothing waits with WUNTRACED) and decode as
    /// `Signaled` with the low 7 bits.
    pub fn from_raw(raw: i32) -> WaitStatus {
        let sig = raw & 0x7f;
        if sig == 0 {
            WaitStatus::Exited((raw >> 8) & 0xff)
        } else {
            WaitStatus::Signaled {
                signal: sig,
                core_dumped: raw & 0x80 != 0,
            }
        }
    }

    /// Encodes back into wait(2) form so WIFEXITED/WEXITSTATUS work on it.
    pub fn to_raw(self) -> i32 {
        match self {
            WaitStatus::Exited(code) => (code & 0xff) << 8,
            WaitStatus::Signaled { signal, core_dumped } => (signal & 0x7f) | if core_dumped { 0x80 } else { 0 },
        }
    }
}

impl std::fmt::Display for WaitStatus {
    /// "exited with code N" or "killed by signal N (core dumped)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            WaitStatus::Exited(code) => write!(f, "exited with code {code}"),
            WaitStatus::Signaled { signal, core_dumped } => {
                write!(f, "killed by signal {signal}")?;
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_roundtrip() {
        assert_eq!(WaitStatus::from_raw(0), WaitStatus::Exited(0));
        assert_eq!(WaitStatus::from_raw(0x700), WaitStatus::Exited(7));
        assert_eq!(WaitStatus::from_raw(0xff00), WaitStatus::Exited(255));
        assert_eq!(
            WaitStatus::from_raw(15),
            WaitStatus::Signaled {
                signal: 15,
                core_dumped: false
            }
        );
        assert_eq!(
            WaitStatus::from_raw(0x86),
            WaitStatus::Signaled {
                signal: 6,
                core_dumped: true
            }
        );
        for raw in [0, 0x100, 0x700, 0xff00, 9, 15, 0x86, 0x8b] {
            assert_eq!(WaitStatus::from_raw(raw).to_raw(), raw);
        }
        // Agree with libc's macros.
        let st = WaitStatus::Exited(42).to_raw();
        assert!(libc::WIFEXITED(st));
        assert_eq!(libc::WEXITSTATUS(st), 42);
        let st = WaitStatus::Signaled {
            signal: 11,
            core_dumped: true,
        }
        .to_raw();
        assert!(libc::WIFSIGNALED(st));
        assert_eq!(libc::WTERMSIG(st), 11);
        assert!(libc::WCOREDUMP(st));
        assert_eq!(WaitStatus::Exited(3).to_string(), "exited with code 3");
        assert_eq!(
            WaitStatus::Signaled {
                signal: 6,
                core_dumped: true
            }
            .to_string(),
            "killed by signal 6 (core dumped)"
        );
    }

    #[test]
    fn error_messages_name_the_subject() {
        let e = SysError::io("pidfd_open", Some(42), std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(e.to_string().starts_with("pidfd_open failed for pid 42: "), "{e}");
        assert_eq!(SysError::NoSuchProcess(7).to_string(), "no such process: pid 7");
    }
}
