//! clone(CLONE_VM | CLONE_VFORK) + exec (the posix_spawn technique) with everything prepared before
//! the clone, and exec errors reported back through shared memory.
//!
//! The child shares our address space until it execs or exits (the calling thread is suspended
//! meanwhile, other threads keep running), so it runs on a stack of its own, with every signal
//! blocked until it has reset all non-default dispositions, and it only makes raw system calls
//! on data prepared in advance: no allocation, no locks, no glibc function that touches shared
//! process state (see `child_exec`).
//!
//! A child that switches uid/gid is cloned without CLONE_VM, i.e. with its own copy of our
//! memory as after fork (see `spawn`).
//!
//! `check_exec_within` does not wait for such a child in clone: its path lookups run as a user
//! who may make them block forever (a FUSE mount that never answers), so it is cloned without
//! CLONE_VFORK, reports through the MAP_SHARED `ChildMem` as before (it never execs, so it
//! always exits), and is waited for through a pidfd with a deadline, then killed.

use std::ffi::{c_int, c_void, CStr, CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

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
    /// Where stdout and stderr both go. stdin is always /dev/null.
    pub output: Output<'a>,
    /// Call setsid() in the child so it leads a new session and process group.
    pub new_session: bool,
    /// An environment variable to set to the new process's own pid, which only the child knows
    /// (systemd's `WATCHDOG_PID`); added after `env`, which should not hold it.
    pub pid_env: Option<&'a str>,
    /// A PATH value: a `program` without '/' is then looked for in it by the child, after the uid
    /// switch and chdir, as execvp(3) does. So the new user's own permissions decide what is found,
    /// and the caller (root) never looks where that user may not.
    pub search_path: Option<&'a std::ffi::OsStr>,
    /// If `cwd` cannot be entered (by the new user), start in / instead: for a default such as the
    /// user's home, which may be missing.
    pub cwd_or_root: bool,
    /// Supplementary groups set with `gid` (a named user's, as initgroups(3) gives them); `None`: `gid`
    /// alone. Only with `gid`.
    pub groups: Option<&'a [u32]>,
    /// Resource limits, set after the uid switch: as the new user, the kernel refuses to raise a hard
    /// limit (EPERM), so a user's tag gets no more than that user may give itself.
    pub limits: &'a [ChildLimit],
    /// The nice value, set after the uid switch (a user may not lower it below 0).
    pub nice: Option<i32>,
    /// The file mode creation mask, 0 to 0o777.
    pub umask: Option<u32>,
    /// stderr to this file (absolute) rather than with stdout: opened for appending, and created 0640
    /// if missing, by the child after the uid switch (so as the new user, never through a symlink).
    pub stderr: Option<&'a Path>,
}

/// A resource limit for a child: `resource` is a `RLIMIT_*` number; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLimit {
    /// `RLIMIT_*`.
    pub resource: u32,
    /// The soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// The hard limit (`u64::MAX`: unlimited).
    pub hard: u64,
}

impl ChildLimit {
    /// The `RLIMIT_*` number of a limit named as `ulimit` and systemd name it (`nofile`, `core`...).
    // The RLIMIT_ constants are u32 on glibc but c_int on musl: the cast is a no-op only here.
    #[allow(clippy::unnecessary_cast)]
    pub fn resource_by_name(name: &str) -> Option<u32> {
        Some(match name {
            "as" => libc::RLIMIT_AS,
            "core" => libc::RLIMIT_CORE,
            "cpu" => libc::RLIMIT_CPU,
            "data" => libc::RLIMIT_DATA,
            "fsize" => libc::RLIMIT_FSIZE,
            "locks" => libc::RLIMIT_LOCKS,
            "memlock" => libc::RLIMIT_MEMLOCK,
            "msgqueue" => libc::RLIMIT_MSGQUEUE,
            "nice" => libc::RLIMIT_NICE,
            "nofile" => libc::RLIMIT_NOFILE,
            "nproc" => libc::RLIMIT_NPROC,
            "rss" => libc::RLIMIT_RSS,
            "rtprio" => libc::RLIMIT_RTPRIO,
            "rttime" => libc::RLIMIT_RTTIME,
            "sigpending" => libc::RLIMIT_SIGPENDING,
            "stack" => libc::RLIMIT_STACK,
            _ => return None,
        } as u32)
    }

    /// This process's own (soft, hard) limit of `resource`, which a child inherits.
    pub fn current(resource: u32) -> Option<(u64, u64)> {
        let mut cur = [0u64; 2];
        // SAFETY: prlimit64 on ourselves (pid 0), no new limit, writing the old one into a local
        // array laid out as `struct rlimit64` (two u64).
        let r = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                resource as libc::c_long,
                std::ptr::null::<u64>(),
                cur.as_mut_ptr(),
            )
        };
        (r == 0).then_some((cur[0], cur[1]))
    }
}

impl<'a> SpawnSpec<'a> {
    /// A spec with the usual rest: our working directory and user, no new session, no pid variable.
    pub fn new(program: &'a Path, argv: &'a [OsString], env: &'a [(OsString, OsString)], output: Output<'a>) -> Self {
        SpawnSpec {
            program,
            argv,
            env,
            cwd: None,
            uid: None,
            gid: None,
            output,
            new_session: false,
            pid_env: None,
            search_path: None,
            cwd_or_root: false,
            groups: None,
            limits: &[],
            nice: None,
            umask: None,
            stderr: None,
        }
    }
}

/// Where a spawned process's stdout and stderr go.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// /dev/null.
    Null,
    /// An existing file the child opens for appending, before any uid switch. It is neither created
    /// nor reached through a symlink: the caller prepares it (owner, mode) and the child, still root,
    /// must not open whatever a user may have put in its place.
    Append(&'a Path),
    /// An open descriptor (a pipe...). The child then starts with a copy of this process's whole
    /// descriptor table, which takes time in proportion to its size; the other two variants share the
    /// table and keep a private copy of fds 0–2 only, so that a daemon holding thousands of descriptors
    /// (a pidfd per watched process) spawns as fast as one holding ten.
    Fd(BorrowedFd<'a>),
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

/// The child-side steps, reported back so the parent can say what failed.
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
    OpenOutput,
    Unshare,
    Setpriority,
    OpenStderr,
}

/// A failed setrlimit reports this plus the index of its limit as its step.
const LIMIT_STEP: u32 = 1000;

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
            9 => Step::OpenOutput,
            10 => Step::Unshare,
            11 => Step::Setpriority,
            12 => Step::OpenStderr,
            _ => Step::Execve,
        }
    }
}

/// An OS error from a pre-exec step, naming the step (and its argument).
#[derive(Debug)]
pub(crate) struct StepError {
    what: String,
    pub(crate) source: io::Error,
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

/// Everything the child needs, built before the clone so the child never allocates.
struct Prepared {
    /// The paths to try in order (the program, or one per directory of `search_path`), pointing into
    /// `_programs`.
    program_ptrs: Vec<*const libc::c_char>,
    _programs: Vec<CString>,
    /// Check that a program could be executed, and exit: never exec.
    check_only: bool,
    cwd_or_root: bool,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
    output: PreparedOutput,
    new_session: bool,
    nofile: Option<libc::rlimit>,
    /// Supplementary groups for `setgroups` (with `gid`).
    groups: Vec<libc::gid_t>,
    limits: Vec<ChildLimit>,
    nice: Option<i32>,
    /// The spawner's own nice value, set in the child before the uid switch when the spawner runs
    /// under SCHED_RESET_ON_FORK (the kernel starts its children at 0, not at its nice).
    inherit_nice: Option<i32>,
    umask: Option<u32>,
    stderr: Option<CString>,
    /// `NAME=` followed by room for the pid's digits and the NUL, which the child fills in.
    pid_slot: Option<PidSlot>,
    /// Keeps the strings `argv_ptrs`/`envp_ptrs` point into alive.
    _strings: (Vec<CString>, Vec<CString>),
}

/// `Output`, ready for the child.
enum PreparedOutput {
    Null,
    Append(CString),
    Fd(RawFd),
}

impl PreparedOutput {
    /// Whether the child may share our descriptor table until it unshares fds 0–2 (it needs no other).
    fn shares_files(&self) -> bool {
        !matches!(self, PreparedOutput::Fd(_))
    }
}

/// A heap buffer `NAME=\0\0...` that `envp_ptrs` points to, written by the child before its exec.
/// Owned through a raw pointer (from `Box::into_raw`) because the child writes into it while only a
/// shared reference to `Prepared` is around.
struct PidSlot {
    buf: *mut u8,
    len: usize,
    /// Where the digits go.
    at: usize,
}

/// Digits of the largest pid (pid_max is at most 2^22) and then some, plus the NUL.
const PID_DIGITS: usize = 11;

impl PidSlot {
    fn new(name: &str) -> PidSlot {
        let mut v = Vec::with_capacity(name.len() + 1 + PID_DIGITS + 1);
        v.extend_from_slice(name.as_bytes());
        v.push(b'=');
        let at = v.len();
        v.resize(at + PID_DIGITS + 1, 0);
        let len = v.len();
        let buf = Box::into_raw(v.into_boxed_slice()).cast::<u8>();
        PidSlot { buf, len, at }
    }

    /// Writes `pid` in decimal and a NUL after `NAME=`; async-signal-safe (no allocation, no call).
    ///
    /// # Safety
    /// Only in the child of `spawn`, while the parent's thread is suspended (CLONE_VFORK).
    unsafe fn fill(&self, pid: u32) {
        let mut digits = [0u8; PID_DIGITS];
        let mut n = pid;
        let mut i = PID_DIGITS;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        let count = PID_DIGITS - i;
        // SAFETY: `at + count + 1 <= len` (count <= PID_DIGITS), inside the buffer we own; nothing
        // else reads or writes it while the parent is suspended.
        unsafe {
            std::ptr::copy_nonoverlapping(digits.as_ptr().add(i), self.buf.add(self.at), count);
            *self.buf.add(self.at + count) = 0;
        }
    }
}

impl Drop for PidSlot {
    fn drop(&mut self) {
        // SAFETY: `buf` and `len` come from `Box::into_raw` of a boxed slice of `len` bytes, freed once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.buf, self.len)) });
    }
}

const DEV_NULL: &CStr = c"/dev/null";

/// The most PATH entries a child searches: each costs path lookups as the new user (a symlink loop
/// costs 40 of them), and a search is done for every start of a tag.
pub const MAX_PATH_ENTRIES: usize = 256;

/// sizeof(kernel sigset_t), the last argument of rt_sigaction (_NSIG / 8).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_SIZE: usize = 16;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_SIZE: usize = 8;

/// A kernel sigset_t, for the raw rt_sigprocmask syscall.
type KernelSigset = [u64; KERNEL_SIGSET_SIZE / 8];

/// Room for a kernel `struct sigaction` on every architecture (it is 32 bytes or less).
type KernelSigaction = [u64; 8];

/// The raw credential syscalls: the 32-bit-id variants where the plain ones take 16-bit ids.
#[cfg(any(target_arch = "x86", target_arch = "arm", target_arch = "sparc"))]
const SYS_SETGROUPS_SETGID_SETUID: [libc::c_long; 3] = [libc::SYS_setgroups32, libc::SYS_setgid32, libc::SYS_setuid32];
#[cfg(not(any(target_arch = "x86", target_arch = "arm", target_arch = "sparc")))]
const SYS_SETGROUPS_SETGID_SETUID: [libc::c_long; 3] = [libc::SYS_setgroups, libc::SYS_setgid, libc::SYS_setuid];

/// Usable stack of the cloned child. It only runs `child_exec`, a fixed and shallow call chain
/// of syscall wrappers (well under 4 KiB), and never a signal handler (all signals stay blocked
/// until every handler is reset to SIG_DFL); a guard page below catches any overflow.
const CHILD_STACK_SIZE: usize = 64 * 1024;

/// Room for the `Report` at the top of `ChildMem`, above the stack (keeps the stack top aligned).
const REPORT_ROOM: usize = 16;

/// Memory for the cloned child: a PROT_NONE guard page, its stack (stacks grow down on every
/// Linux architecture Rust supports, except the unsupported hppa) and, at the very top, the
/// `Report`. Private if the child shares our memory anyway (cheaper: no shmem object), else
/// (no CLONE_VM) MAP_SHARED so that the report reaches us. Unmapped on drop, or kept by its thread
/// for the next spawn (`take`, `give_back`), either only after `clone` returned, i.e. after the
/// child has exec'd (it then has a new address space) or exited.
struct ChildMem {
    base: *mut c_void,
    len: usize,
    /// MAP_PRIVATE, for a child that shares our memory (else MAP_SHARED).
    shared: bool,
    /// The process that mapped it: a process forked since shares a MAP_SHARED mapping with it, and must
    /// not reuse it (its spawns and ours would write into the same stack).
    owner: u32,
}

thread_local! {
    /// The last `ChildMem` of each kind (index: `shared_vm`) used by a finished spawn of this thread, for
    /// the next one: an mmap, an mprotect and an munmap per spawn otherwise, and the munmap of a
    /// multi-threaded process interrupts every CPU that runs one of its threads (a TLB shootdown).
    static SPARE: std::cell::RefCell<[Option<ChildMem>; 2]> = const { std::cell::RefCell::new([None, None]) };
}

impl ChildMem {
    /// A `ChildMem` kept by this thread from an earlier spawn, its report cleared, or a new one. Only for
    /// a child waited for in clone (CLONE_VFORK): give it back with [`ChildMem::give_back`] once clone
    /// has returned.
    fn take(shared_vm: bool) -> Result<ChildMem, SysError> {
        let spare = SPARE
            .try_with(|s| {
                s.try_borrow_mut()
                    .ok()
                    .and_then(|mut s| s[usize::from(shared_vm)].take())
            })
            .ok()
            .flatten();
        match spare {
            Some(m) if m.owner == std::process::id() => {
                let r = m.report();
                r.step.store(0, Ordering::Relaxed);
                r.errno.store(0, Ordering::Relaxed);
                Ok(m)
            }
            // Unmapped (for this process only) on drop.
            _ => ChildMem::new(shared_vm),
        }
    }

    /// Keeps this memory for the next spawn of this thread: its child has exec'd or exited (clone with
    /// CLONE_VFORK returned), and neither that child nor anything else uses it any more.
    fn give_back(self) {
        let kind = usize::from(self.shared);
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                s[kind].get_or_insert(self);
            }
        });
    }

    fn new(shared_vm: bool) -> Result<ChildMem, SysError> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = page + CHILD_STACK_SIZE;
        let sharing = if shared_vm { libc::MAP_PRIVATE } else { libc::MAP_SHARED };
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                sharing | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(SysError::last_os("mmap (child stack)", None));
        }
        let mem = ChildMem {
            base,
            len,
            shared: shared_vm,
            owner: std::process::id(),
        };
        // SAFETY: the first page of the mapping we own, which nothing references yet.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } < 0 {
            return Err(SysError::last_os("mprotect (child stack guard)", None));
        }
        Ok(mem)
    }

    /// The initial stack pointer: right below the report, 16-byte aligned (the mapping starts
    /// on a page boundary and its length is a page plus 64 KiB).
    fn stack_top(&self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len - REPORT_ROOM)
    }

    /// The child's report, in the top `REPORT_ROOM` bytes (zero-filled by mmap, cleared by `take`: no
    /// report).
    fn report(&self) -> &Report {
        const { assert!(std::mem::size_of::<Report>() <= REPORT_ROOM && std::mem::align_of::<Report>() <= 16) };
        // SAFETY: the address is inside our read-write mapping, 16-byte aligned and followed
        // by enough room; all-zero bytes are a valid `Report` (two atomic integers), and the
        // borrow ends before the mapping is unmapped.
        unsafe { &*self.stack_top().cast::<Report>() }
    }
}

impl Drop for ChildMem {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which the child no longer uses (see the type's doc).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Blocks every signal (glibc's internal ones included) in the calling thread while alive,
/// and restores the previous mask on drop.
struct AllSignalsBlocked {
    old: KernelSigset,
}

impl AllSignalsBlocked {
    fn new() -> Result<AllSignalsBlocked, SysError> {
        // The raw syscall rather than pthread_sigmask, which silently leaves glibc's SIGCANCEL
        // and SIGSETXID unblocked; the kernel itself ignores SIGKILL and SIGSTOP here.
        let all: KernelSigset = [!0; KERNEL_SIGSET_SIZE / 8];
        let mut old: KernelSigset = [0; KERNEL_SIGSET_SIZE / 8];
        // SAFETY: rt_sigprocmask reads and writes kernel sigsets of KERNEL_SIGSET_SIZE bytes
        // through valid pointers to locals of that size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                all.as_ptr(),
                old.as_mut_ptr(),
                KERNEL_SIGSET_SIZE,
            )
        };
        if r < 0 {
            return Err(SysError::last_os("rt_sigprocmask", None));
        }
        Ok(AllSignalsBlocked { old })
    }
}

impl Drop for AllSignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: as in `new`, with a valid pointer to the saved mask.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                self.old.as_ptr(),
                std::ptr::null_mut::<u64>(),
                KERNEL_SIGSET_SIZE,
            )
        };
    }
}

/// Where the child reports a failed step before it _exits (in `ChildMem`, shared with it); with
/// CLONE_VFORK clone returns only after the child exec'd (then nothing was written) or exited.
struct Report {
    /// The failed `Step`, or 0 if none.
    step: AtomicU32,
    /// Its errno.
    errno: AtomicI32,
}

/// What `child_main` gets through clone's argument.
struct ChildArgs<'a> {
    prep: &'a Prepared,
    report: &'a Report,
}

/// The entry point of the cloned child; never returns.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` points to the `ChildArgs` in `spawn`'s frame (or to our copy of it), which
    // stays alive and untouched while the calling thread is suspended by CLONE_VFORK; we are
    // the cloned child, with every signal blocked, on our own stack.
    unsafe {
        let args = &*arg.cast::<ChildArgs>();
        child_exec(args.prep, args.report)
    }
}

fn invalid(program: &str, what: &str) -> SysError {
    SysError::Exec {
        program: program.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte")),
    }
}

/// The calling thread's nice value, when a child of it would not inherit it (it runs with
/// SCHED_RESET_ON_FORK, vigild's real-time loop) and the spec sets none: a tag without `nice` runs at
/// vigild's, as it always did.
fn inherited_nice(spec: &SpawnSpec) -> Option<i32> {
    // One system call on every spawn, not two: only the flag is needed.
    // SAFETY: sched_getscheduler takes a plain tid (0: the calling thread) and touches no memory of ours.
    if spec.nice.is_some() || unsafe { libc::sched_getscheduler(0) } & libc::SCHED_RESET_ON_FORK == 0 {
        return None;
    }
    // SAFETY: getpriority takes plain integers; -1 is a valid answer, so errno is cleared first.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    // SAFETY: errno is thread-local and readable.
    let failed = nice == -1 && unsafe { *libc::__errno_location() } != 0;
    (!failed && nice != 0).then_some(nice)
}

fn prepare(spec: &SpawnSpec, program_name: &str) -> Result<Prepared, SysError> {
    let program =
        CString::new(spec.program.as_os_str().as_bytes()).map_err(|_| invalid(program_name, "program path"))?;
    let programs = match spec.search_path {
        Some(_) if program.as_bytes().is_empty() => {
            return Err(SysError::ProgramNotFound {
                program: program_name.to_owned(),
            })
        }
        Some(search)
            if !program.as_bytes().contains(&b'/')
                && search.as_bytes().split(|&b| b == b':').count() > MAX_PATH_ENTRIES =>
        {
            return Err(SysError::Exec {
                program: program_name.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "PATH has {} entries; at most {MAX_PATH_ENTRIES} are searched",
                        search.as_bytes().split(|&b| b == b':').count()
                    ),
                ),
            })
        }
        Some(search) if !program.as_bytes().contains(&b'/') => search
            .as_bytes()
            .split(|&b| b == b':')
            .map(|dir| {
                // An empty PATH entry means the current directory.
                let mut p = if dir.is_empty() { b".".to_vec() } else { dir.to_vec() };
                p.push(b'/');
                p.extend_from_slice(program.as_bytes());
                CString::new(p).map_err(|_| invalid(program_name, "PATH"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => vec![program.clone()],
    };
    let program_ptrs = programs.iter().map(|p| p.as_ptr()).collect();
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
    let output = match spec.output {
        Output::Null => PreparedOutput::Null,
        Output::Append(path) => PreparedOutput::Append(
            CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid(program_name, "output path"))?,
        ),
        Output::Fd(fd) => PreparedOutput::Fd(fd.as_raw_fd()),
    };
    let cwd = match spec.cwd {
        Some(c) => Some(CString::new(c.as_os_str().as_bytes()).map_err(|_| invalid(program_name, "cwd"))?),
        None => None,
    };
    let argv_ptrs = argv
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    if let Some(name) = spec.pid_env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(SysError::Exec {
                program: program_name.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid environment variable name {name:?}"),
                ),
            });
        }
    }
    let pid_slot = spec.pid_env.map(PidSlot::new);
    let envp_ptrs = env
        .iter()
        .map(|s| s.as_ptr())
        .chain(pid_slot.as_ref().map(|p| p.buf.cast_const().cast::<libc::c_char>()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();

    let stderr = match spec.stderr {
        Some(p) => Some(CString::new(p.as_os_str().as_bytes()).map_err(|_| invalid(program_name, "stderr path"))?),
        None => None,
    };
    Ok(Prepared {
        _programs: programs,
        program_ptrs,
        check_only: false,
        cwd_or_root: spec.cwd_or_root,
        argv_ptrs,
        envp_ptrs,
        cwd,
        uid: spec.uid,
        gid: spec.gid,
        output,
        new_session: spec.new_session,
        nofile: misc::original_nofile_limit(),
        groups: match (spec.groups, spec.gid) {
            (Some(g), Some(_)) if !g.is_empty() => g.to_vec(),
            (_, Some(gid)) => vec![gid],
            _ => vec![],
        },
        limits: spec.limits.to_vec(),
        nice: spec.nice,
        inherit_nice: inherited_nice(spec),
        umask: spec.umask,
        stderr,
        pid_slot,
        _strings: (argv, env),
    })
}

/// Starts `spec`: clone(CLONE_VM | CLONE_VFORK) (without CLONE_VM if it switches uid/gid), then
/// execve; returns once the child has exec'd. Exec failures are reported as `SysError::Exec`
/// with the OS error, and the failed child is reaped before returning.
///
/// For a failing execve the error's `source` is the bare OS error (so `raw_os_error()` works);
/// for earlier steps (setsid, setgroups, setgid, setuid, chdir, /dev/null, dup2) the source keeps
/// the OS error's kind and names the step, e.g. `chdir to "/nope": No such file or directory`.
/// The child gets an empty signal mask, default signal dispositions and, if
/// `raise_nofile_limit` was called, the original soft RLIMIT_NOFILE.
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SysError> {
    let (pid, pidfd) = start_child(spec, false)?;
    // The child is ours and not reaped, so its pid names it still: one read of /proc/PID/stat.
    let start_time = match procfs::start_time(pid) {
        Ok(t) => t,
        Err(e) => {
            pidfd.send_signal(libc::SIGKILL).ok();
            return Err(e);
        }
    };
    Ok(Spawned { pid, start_time, pidfd })
}

/// Everything `spawn` would do up to the exec (uid switch, chdir, the PATH search), ending with a check
/// that the program could be executed, without executing it: so a request can be refused now, with the
/// answer the new user would get, rather than fail at its first start. The child is reaped.
pub fn check_exec(spec: &SpawnSpec) -> Result<(), SysError> {
    let (pid, _pidfd) = start_child(spec, true)?;
    wait_for(pid);
    Ok(())
}

/// `check_exec` that gives up after `timeout`: a child that switches uid/gid is not waited for in
/// clone (no CLONE_VFORK) but through a pidfd, and killed when the time is up, so a lookup that
/// the new user made block forever (a FUSE mount that never answers) costs the caller `timeout` at
/// most. The caller need not reap the child: it is left to whoever reaps this process's children
/// (`reap_any`); a child killed while stuck in an uninterruptible wait exits when that wait ends.
/// Without a uid/gid switch this is `check_exec` (the lookups are then the caller's own).
pub fn check_exec_within(spec: &SpawnSpec, timeout: std::time::Duration) -> Result<(), SysError> {
    let (Some(uid), Some(_)) = (spec.uid, spec.gid) else {
        return check_exec(spec);
    };
    let program_name = spec.program.to_string_lossy().into_owned();
    let mut prep = prepare(spec, &program_name)?;
    prep.check_only = true;
    let mem = ChildMem::new(false)?;
    let args = ChildArgs {
        prep: &prep,
        report: mem.report(),
    };
    let mut raw_pidfd: c_int = -1;
    let pid = {
        let _blocked = AllSignalsBlocked::new()?;
        // SAFETY: without CLONE_VM the child runs `child_main` on its own copy of our memory, taken
        // at clone (so `args`, `prep` and its stack in `mem` stay valid for it whatever we do next),
        // with every signal blocked; its only writes that reach us are into the MAP_SHARED `mem`,
        // which we keep mapped until it has exited or we stop reading it. With CLONE_FILES it shares
        // our descriptor table only until its first step, as in `start_child`. CLONE_PIDFD stores a
        // new pidfd into `raw_pidfd`, a valid local int.
        unsafe {
            libc::clone(
                child_main,
                mem.stack_top(),
                libc::CLONE_FILES | libc::CLONE_PIDFD | libc::SIGCHLD,
                std::ptr::addr_of!(args).cast_mut().cast::<c_void>(),
                &mut raw_pidfd as *mut c_int,
            )
        }
    };
    if pid < 0 {
        return Err(SysError::last_os("clone", None));
    }
    // SAFETY: CLONE_PIDFD gave us this new descriptor, which nothing else owns.
    let pidfd = PidFd::from_owned(
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw_pidfd) },
        pid,
    );
    if !pidfd.wait_exited(Some(timeout)) {
        pidfd.send_signal(libc::SIGKILL).ok();
        return Err(SysError::Exec {
            program: program_name,
            source: io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "program lookup timed out as uid {uid} (after {} s)",
                    timeout.as_secs_f64()
                ),
            ),
        });
    }
    // The child's stores happened before its exit, which the pidfd reported.
    let step = args.report.step.load(Ordering::Acquire);
    let errno = args.report.errno.load(Ordering::Relaxed);
    drop(mem);
    if step != 0 {
        return Err(exec_error(&program_name, spec, step, errno));
    }
    Ok(())
}

/// Clones the child of `spawn` (or of `check_exec`), and returns its pid and a pidfd on it once it has
/// exec'd (or, checking only, exited); a failed child is reaped and its error returned.
///
/// The pidfd comes from clone itself (CLONE_PIDFD): it names the new process from its birth, so no
/// `pidfd_open` afterwards (a syscall, and a moment in which only the pid named it).
fn start_child(spec: &SpawnSpec, check_only: bool) -> Result<(Pid, PidFd), SysError> {
    let program_name = spec.program.to_string_lossy().into_owned();
    let mut prep = prepare(spec, &program_name)?;
    prep.check_only = check_only;

    // A uid/gid switch in a child sharing our memory would change our memory's dumpability
    // too (commit_creds sets mm->dumpable to fs.suid_dumpable, making us non-dumpable by
    // default), and with suid_dumpable=1 would let the target user ptrace that child, hence
    // our memory, until its exec. So such a child gets its own copy of our memory, as after
    // fork, at fork's cost; the rest is the same.
    let shared_vm = prep.uid.is_none() && prep.gid.is_none();
    let mem = ChildMem::take(shared_vm)?;
    let args = ChildArgs {
        prep: &prep,
        report: mem.report(),
    };
    let mut raw_pidfd: c_int = -1;
    let pid = {
        // No handler of ours may run in the child while it shares our memory: it starts with
        // everything blocked and unblocks only after resetting all dispositions.
        let _blocked = AllSignalsBlocked::new()?;
        // SAFETY: the child runs `child_main` on its own, 16-byte aligned stack in `mem`,
        // which stays mapped until clone returns; with CLONE_VFORK clone returns only once the
        // child has exec'd or exited, so `args`, `prep` and `mem` outlive its use of them. The
        // child touches no heap, lock or runtime state (see `child_exec`) and never returns
        // into our code (it ends in execve or _exit). CLONE_PIDFD stores a new pidfd into
        // `raw_pidfd`, a valid local int of this (the parent's) frame, before the child runs.
        let pid = unsafe {
            libc::clone(
                child_main,
                mem.stack_top(),
                if shared_vm { libc::CLONE_VM } else { 0 }
                    | if prep.output.shares_files() {
                        libc::CLONE_FILES
                    } else {
                        0
                    }
                    | libc::CLONE_VFORK
                    | libc::CLONE_PIDFD
                    | libc::SIGCHLD,
                std::ptr::addr_of!(args).cast_mut().cast::<c_void>(),
                &mut raw_pidfd as *mut c_int,
            )
        };
        if pid < 0 {
            return Err(SysError::last_os("clone", None));
        }
        pid
    };
    // SAFETY: CLONE_PIDFD gave us this new descriptor (close-on-exec), which nothing else owns.
    let pidfd = PidFd::from_owned(
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw_pidfd) },
        pid,
    );

    // The child's stores happened before its exit, which clone waited for (and an exec'd
    // child stored nothing).
    let step = args.report.step.load(Ordering::Acquire);
    let errno = args.report.errno.load(Ordering::Relaxed);
    // The child is done with its stack: kept for the next spawn of this thread.
    mem.give_back();
    if step != 0 {
        wait_for(pid);
        return Err(exec_error(&program_name, spec, step, errno));
    }
    Ok((pid, pidfd))
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
    if let Some(l) = step.checked_sub(LIMIT_STEP).and_then(|i| spec.limits.get(i as usize)) {
        let v = |n: u64| {
            if n == u64::MAX {
                "unlimited".to_owned()
            } else {
                n.to_string()
            }
        };
        let mut what = format!("setrlimit(resource {}, {}:{})", l.resource, v(l.soft), v(l.hard));
        if errno == libc::EPERM {
            what.push_str(" (only root may raise a hard limit above the one the tag inherits)");
        }
        return SysError::Exec {
            program: program.to_owned(),
            source: io::Error::new(os.kind(), StepError { what, source: os }),
        };
    }
    // As another user, a path that is missing and one behind a directory that user may not search
    // get one answer: telling them apart would tell that user what exists where only others may look.
    if let Some(uid) = spec.uid {
        let unreachable = matches!(
            errno,
            libc::ENOENT | libc::EACCES | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG | libc::EPERM
        );
        match Step::from_u32(step) {
            Step::Execve if unreachable => {
                return SysError::NotAccessible {
                    what: "program",
                    path: program.to_owned(),
                    uid,
                }
            }
            Step::Chdir if unreachable => {
                return SysError::NotAccessible {
                    what: "working directory",
                    path: spec.cwd.unwrap_or(Path::new("")).to_string_lossy().into_owned(),
                    uid,
                }
            }
            _ => {}
        }
    }
    let what = match Step::from_u32(step) {
        Step::Execve => {
            return SysError::Exec {
                program: program.to_owned(),
                source: os,
            }
        }
        Step::Setsid => "setsid".to_owned(),
        Step::Setgroups => match spec.groups {
            Some(g) if !g.is_empty() => format!("setgroups({g:?})"),
            _ => format!("setgroups([{}])", spec.gid.unwrap_or_default()),
        },
        Step::Setgid => format!("setgid({})", spec.gid.unwrap_or_default()),
        Step::Setuid => format!("setuid({})", spec.uid.unwrap_or_default()),
        Step::Chdir => format!("chdir to {:?}", spec.cwd.unwrap_or(Path::new(""))),
        Step::OpenDevNull => "open /dev/null".to_owned(),
        Step::Dup2 => "dup2 of the output fd".to_owned(),
        Step::OpenOutput => match spec.output {
            Output::Append(p) => format!("open {p:?} for output"),
            _ => "open the output".to_owned(),
        },
        Step::Unshare => "unshare the descriptor table".to_owned(),
        Step::Setpriority => format!("setpriority({})", spec.nice.unwrap_or_default()),
        Step::OpenStderr => format!("open {:?} for stderr", spec.stderr.unwrap_or(Path::new(""))),
    };
    SysError::Exec {
        program: program.to_owned(),
        source: io::Error::new(os.kind(), StepError { what, source: os }),
    }
}

/// The command name (`comm`) of a child of `spawn` that has not exec'd yet.
pub const SPAWNING_COMM: &str = "vigil-spawning";
const SPAWNING_COMM_C: &[u8] = b"vigil-spawning\0";

/// The child side: set up and execve, or report (step, errno) and _exit(127).
///
/// # Safety
/// Must only be called in the child of `clone(CLONE_VFORK [| CLONE_VM])`, on its own stack,
/// with every signal blocked. The child may share the parent's memory (and thread pointer)
/// until execve, so it must not allocate, take locks or touch any Rust runtime or libc state:
/// only raw syscalls, and glibc wrappers that are nothing more, on data prepared before the
/// clone. In particular not glibc's setuid/setgid/setgroups, which in a multi-threaded process
/// take a lock and signal every thread of the parent (SIGSETXID); we use the per-task
/// syscalls. The only shared memory written is `report` and the calling thread's errno.
unsafe fn child_exec(p: &Prepared, report: &Report) -> ! {
    // SAFETY (whole function): every call below is a plain syscall (wrapper) on valid pointers
    // to data prepared before the clone or to locals on this stack; nothing allocates, takes
    // locks or can panic.
    unsafe {
        let fail_at = |step: u32| -> ! {
            // Plain (lock-free) atomic stores into the `Report` shared with the parent.
            report.errno.store(*libc::__errno_location(), Ordering::Relaxed);
            report.step.store(step, Ordering::Release);
            libc::_exit(127)
        };
        let fail = |step: Step| -> ! { fail_at(step as u32) };

        // Until execve this child's environment is still vigild's. Named so, a child whose vigild was
        // killed mid-spawn is known to the next vigild, which waits for its exec (and its start
        // marker) rather than missing it. The name is per task: the parent's is untouched.
        libc::prctl(libc::PR_SET_NAME, SPAWNING_COMM_C.as_ptr() as libc::c_ulong, 0, 0, 0);

        // Cloned with CLONE_FILES, we share the parent's descriptor table, which its other threads
        // keep using: before touching any descriptor, take a private copy of fds 0-2 only (every
        // other one would be closed before exec anyway). Copying the whole table, as a plain clone
        // does, costs time in proportion to its size, and so would its closing at exec.
        if p.output.shares_files()
            && libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_UNSHARE) < 0
            // Kernels before 5.9: a private copy of the whole table, as without CLONE_FILES.
            && libc::syscall(libc::SYS_unshare, libc::CLONE_FILES) < 0
        {
            fail(Step::Unshare);
        }
        // The output file is opened before the uid switch (the new user may not reach the
        // directory) and before chdir (the path may be relative), above the std fds so that the
        // dup2s below cannot clobber it.
        let mut log = -1;
        if let PreparedOutput::Append(path) = &p.output {
            log = libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::O_WRONLY | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC,
                0 as libc::c_uint,
            ) as c_int;
            if log < 0 {
                fail(Step::OpenOutput);
            }
            if log < 3 {
                log = libc::fcntl(log, libc::F_DUPFD_CLOEXEC, 3);
                if log < 0 {
                    fail(Step::OpenOutput);
                }
            }
        }
        let mut err_log = -1;

        // Every disposition that is not SIG_DFL goes back to SIG_DFL: ignored ones because
        // they would survive the exec, handlers because they are our code (on our memory)
        // until then. Queried here rather than in the parent because our table is a private
        // snapshot taken by clone, which another thread of the parent cannot change under us.
        // The raw syscall, because glibc's sigaction refuses its internal signals 32 and 33,
        // which may well have been inherited as ignored. An all-zero kernel sigaction is
        // SIG_DFL with no flags and an empty mask on every architecture (and anything else,
        // e.g. SIG_DFL with SA_RESTORER set by glibc, is merely reset once more).
        let default_action: KernelSigaction = [0; 8];
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut cur: KernelSigaction = [0; 8];
            let r = libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<u64>(),
                cur.as_mut_ptr(),
                KERNEL_SIGSET_SIZE,
            );
            if r == 0 && cur != default_action {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    KERNEL_SIGSET_SIZE,
                );
            }
        }
        // Only now, with no handler left, unblock everything.
        let empty_mask: KernelSigset = [0; KERNEL_SIGSET_SIZE / 8];
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            empty_mask.as_ptr(),
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET_SIZE,
        );

        if p.new_session && libc::setsid() < 0 {
            fail(Step::Setsid);
        }
        if let Some(slot) = &p.pid_slot {
            // The raw syscall: glibc's getpid may answer from a cache of the parent's pid.
            slot.fill(libc::syscall(libc::SYS_getpid) as u32);
        }
        if let Some(n) = p.inherit_nice {
            // Still as the spawner's user, who had this value: what inheritance would have given.
            libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, 0, n as libc::c_long);
        }
        let [sys_setgroups, sys_setgid, sys_setuid] = SYS_SETGROUPS_SETGID_SETUID;
        if let Some(gid) = p.gid {
            let ngroups = p.groups.len() as libc::c_long;
            if libc::syscall(sys_setgroups, ngroups, p.groups.as_ptr()) < 0 {
                fail(Step::Setgroups);
            }
            // The kernel takes the low 32 bits of the register as the id.
            if libc::syscall(sys_setgid, gid as libc::c_long) < 0 {
                fail(Step::Setgid);
            }
        }
        if let Some(uid) = p.uid {
            if libc::syscall(sys_setuid, uid as libc::c_long) < 0 {
                fail(Step::Setuid);
            }
        }
        // As the new user: what it may not do for itself (raise a hard limit, lower its nice value)
        // is refused here by the kernel, and reported.
        if let Some(n) = p.nice {
            if libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, 0, n as libc::c_long) < 0 {
                fail(Step::Setpriority);
            }
        }
        if let Some(m) = p.umask {
            libc::syscall(libc::SYS_umask, m as libc::c_long);
        }
        // A separate stderr file is the user's choice of path: opened (and created) as the new user,
        // so that it can name nothing that user could not write itself.
        if let Some(path) = &p.stderr {
            err_log = libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC,
                0o640 as libc::c_uint,
            ) as c_int;
            if err_log < 0 {
                fail(Step::OpenStderr);
            }
            if err_log < 3 {
                err_log = libc::fcntl(err_log, libc::F_DUPFD_CLOEXEC, 3);
                if err_log < 0 {
                    fail(Step::OpenStderr);
                }
            }
        }
        if let Some(cwd) = &p.cwd {
            if libc::chdir(cwd.as_ptr()) < 0 && !(p.cwd_or_root && libc::chdir(c"/".as_ptr()) == 0) {
                fail(Step::Chdir);
            }
        }

        // Raw openat and close: glibc's open and close are cancellation points, which
        // in a multi-threaded process flip cancellation bits in the (shared) thread descriptor.
        let mut null = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, DEV_NULL.as_ptr(), libc::O_RDWR) as c_int;
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
        let out = match p.output {
            PreparedOutput::Null => null,
            PreparedOutput::Append(_) => log,
            PreparedOutput::Fd(fd) => fd,
        };
        for target in [1, 2] {
            let out = if target == 2 && err_log >= 0 { err_log } else { out };
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
        libc::syscall(libc::SYS_close, null);
        if log >= 0 {
            libc::syscall(libc::SYS_close, log);
        }
        if err_log >= 0 {
            libc::syscall(libc::SYS_close, err_log);
        }

        if let Some(lim) = &p.nofile {
            libc::setrlimit(libc::RLIMIT_NOFILE, lim);
        }
        // The tag's own limits come after vigild's soft RLIMIT_NOFILE is given back, which they
        // override; the raw syscall, as everything here.
        for (i, l) in p.limits.iter().enumerate() {
            let new = [l.soft, l.hard];
            if libc::syscall(
                libc::SYS_prlimit64,
                0,
                l.resource as libc::c_long,
                new.as_ptr(),
                std::ptr::null_mut::<u64>(),
            ) < 0
            {
                fail_at(LIMIT_STEP + i as u32);
            }
        }
        // Belt and braces: nothing above fd 2 is meant to be inherited.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);

        // execvp's search: a missing candidate (ENOENT, ENOTDIR) passes to the next; one we may not
        // execute (EACCES) too, but is the answer if none is found; any other error is the answer.
        let mut denied = false;
        for &program in &p.program_ptrs {
            if p.check_only {
                // After the switch the real ids are the new user's: access(2) answers for them.
                let mut st: libc::stat = std::mem::zeroed();
                if libc::access(program, libc::X_OK) == 0 && libc::stat(program, &mut st) == 0 {
                    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                        libc::_exit(0);
                    }
                    *libc::__errno_location() = libc::EACCES;
                }
            } else {
                libc::execve(program, p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
            }
            match *libc::__errno_location() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                _ => fail(Step::Execve),
            }
        }
        *libc::__errno_location() = if denied { libc::EACCES } else { libc::ENOENT };
        fail(Step::Execve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::WaitStatus;

    #[test]
    fn appends_to_a_file_and_inherits_no_other_descriptor() {
        let _g = child_lock();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        std::fs::write(&log, "before\n").unwrap();
        // Descriptors of ours that a plain clone would copy into the child (and exec would close).
        let held: Vec<std::fs::File> = (0..64).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
        let argv: Vec<OsString> = ["sh", "-c", "echo out; echo err >&2; ls /proc/self/fd | tr '\\n' ' '"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let spec = SpawnSpec::new(Path::new("/bin/sh"), &argv, &env, Output::Append(&log));
        let s = spawn(&spec).unwrap();
        assert_eq!(wait_child(&s), WaitStatus::Exited(0));
        drop(held);
        // ls sees 0-2 and its own directory descriptor, nothing of ours.
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "before\nout\nerr\n0 1 2 3 ");
    }

    #[test]
    fn an_output_file_that_cannot_be_opened_is_a_spawn_error() {
        let _g = child_lock();
        let argv: Vec<OsString> = vec!["true".into()];
        let spec = SpawnSpec::new(
            Path::new("/bin/true"),
            &argv,
            &[],
            Output::Append(Path::new("/nonexistent-dir/out.log")),
        );
        let e = spawn(&spec).unwrap_err().to_string();
        assert!(e.contains("/nonexistent-dir/out.log"), "{e}");
    }

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
        let spec = SpawnSpec::new(Path::new("/bin/sh"), &argv, &[], Output::Null);
        let s = spawn(&spec).unwrap();
        assert_eq!(wait_child(&s), WaitStatus::Exited(3));
    }

    #[test]
    fn exec_failure_is_reported_and_reaped() {
        let _g = child_lock();
        let argv = [OsString::from("x")];
        let mut spec = SpawnSpec::new(Path::new("/nonexistent/program"), &argv, &[], Output::Null);
        match spawn(&spec) {
            Err(e @ SysError::Exec { .. }) if e.os_errno() == Some(libc::ENOENT) => {
                assert!(!e.is_resource_shortage());
                let SysError::Exec { program, source } = e else {
                    unreachable!()
                };
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
        // The step's errno is still there to tell a permanent failure from a shortage.
        assert_eq!(err.os_errno(), Some(libc::ENOENT));
        assert!(!err.is_resource_shortage());
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

    /// The child's memory is kept from one spawn to the next: a failed spawn's report must not make the
    /// next one fail, and each spawn's pidfd (from clone) names its own child.
    #[test]
    fn a_failed_spawn_leaves_nothing_to_the_next() {
        let _g = child_lock();
        let argv = [OsString::from("x")];
        let bad = SpawnSpec::new(Path::new("/nonexistent/program"), &argv, &[], Output::Null);
        let bad_cwd = SpawnSpec {
            cwd: Some(Path::new("/nonexistent/dir")),
            ..SpawnSpec::new(Path::new("/bin/true"), &argv, &[], Output::Null)
        };
        let sleep_argv = [OsString::from("sleep"), OsString::from("5")];
        let good = SpawnSpec::new(Path::new("/bin/sleep"), &sleep_argv, &[], Output::Null);
        for failing in [&bad, &bad_cwd, &bad] {
            assert!(spawn(failing).is_err());
            let s = spawn(&good).unwrap();
            assert_eq!(s.pidfd.pid(), s.pid);
            assert_eq!(crate::start_time(s.pid).unwrap(), s.start_time);
            assert!(!s.pidfd.has_exited());
            s.pidfd.send_signal(libc::SIGKILL).unwrap();
            assert_killed(&s);
        }
        assert!(crate::reap_any().unwrap().is_none());
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
            cwd: Some(Path::new("/")),
            uid: Some(65534),
            gid: Some(65533),
            ..SpawnSpec::new(
                Path::new("/bin/sh"),
                &argv,
                &env,
                Output::Fd(std::os::fd::AsFd::as_fd(&w)),
            )
        };
        let s = spawn(&spec).unwrap();
        drop(w);
        assert_eq!(wait_child(&s), WaitStatus::Exited(0));
        assert_eq!(read_to_end(r), "65534\n65533\n65533\n");
    }

    /// The child's own pid reaches its environment, with and without a memory of its own.
    #[test]
    fn pid_env_is_the_childs_own_pid() {
        let _g = child_lock();
        let root = crate::getuid() == 0;
        for switch in [false, true] {
            if switch && !root {
                continue;
            }
            let (r, w) = crate::pipe_cloexec().unwrap();
            let argv: Vec<OsString> = ["sh", "-c", "echo $$ $WATCHDOG_PID $A"]
                .iter()
                .map(OsString::from)
                .collect();
            let env = [(OsString::from("A"), OsString::from("a"))];
            let spec = SpawnSpec {
                cwd: Some(Path::new("/")),
                uid: switch.then_some(65534),
                gid: switch.then_some(65534),
                new_session: true,
                pid_env: Some("WATCHDOG_PID"),
                ..SpawnSpec::new(
                    Path::new("/bin/sh"),
                    &argv,
                    &env,
                    Output::Fd(std::os::fd::AsFd::as_fd(&w)),
                )
            };
            let s = spawn(&spec).unwrap();
            drop(w);
            assert_eq!(wait_child(&s), WaitStatus::Exited(0));
            assert_eq!(read_to_end(r), format!("{0} {0} a\n", s.pid), "uid switch: {switch}");
        }
    }

    #[test]
    fn uid_switch_leaves_us_alone_and_reports_failures() {
        if crate::getuid() != 0 {
            return;
        }
        let _g = child_lock();
        // SAFETY: prctl with integer arguments only.
        let dumpable = || unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
        let before = dumpable();
        let argv = [OsString::from("true")];
        let mut spec = SpawnSpec {
            uid: Some(65534),
            gid: Some(65534),
            ..SpawnSpec::new(Path::new("/bin/true"), &argv, &[], Output::Null)
        };
        let s = spawn(&spec).unwrap();
        assert_eq!(wait_child(&s), WaitStatus::Exited(0));
        // Had the child shared our memory, its setuid would have made us non-dumpable.
        assert_eq!(dumpable(), before);
        // The report of a child with its own memory still reaches us, and it is reaped.
        spec.cwd = Some(Path::new("/nonexistent/dir"));
        let msg = spawn(&spec).unwrap_err().to_string();
        // As another user, missing and unreachable are one answer.
        assert_eq!(
            msg,
            "working directory \"/nonexistent/dir\" not found or not accessible as uid 65534"
        );
        assert!(crate::reap_any().unwrap().is_none());
    }

    /// The PATH search and the check happen as the new user: a root-only directory hides what is in it.
    #[test]
    fn search_and_check_as_the_new_user() {
        if crate::getuid() != 0 {
            return;
        }
        let _g = child_lock();
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("exe");
        std::fs::write(&exe, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let search = format!("/nonexistent:{}:/usr/bin:/bin", dir.path().display());
        let check = |program: &str, dir_mode: u32, uid: Option<u32>| {
            std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(dir_mode)).unwrap();
            check_exec(&SpawnSpec {
                uid,
                gid: uid,
                cwd: Some(Path::new("/")),
                search_path: Some(std::ffi::OsStr::new(&search)),
                ..SpawnSpec::new(Path::new(program), &[], &[], Output::Null)
            })
            .map_err(|e| e.to_string())
        };
        assert_eq!(check("exe", 0o755, Some(65534)), Ok(()));
        assert_eq!(check("sh", 0o755, Some(65534)), Ok(()));
        let hidden = check("exe", 0o700, Some(65534));
        assert_eq!(
            hidden.clone().map_err(|e| e.replace("exe", "X")),
            check("absent", 0o700, Some(65534)).map_err(|e| e.replace("absent", "X"))
        );
        assert_eq!(
            hidden,
            Err("program \"exe\" not found or not accessible as uid 65534".to_string())
        );
        // Root itself still finds it.
        assert_eq!(check("exe", 0o700, None), Ok(()));
        assert!(crate::reap_any().unwrap().is_none());
    }

    /// `check_exec_within` answers as `check_exec` does, without waiting in clone, and caps PATH.
    #[test]
    fn check_within_answers_as_check() {
        if crate::getuid() != 0 {
            return;
        }
        let _g = child_lock();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let search = format!("/nonexistent:{}:/usr/bin:/bin", dir.path().display());
        let long = vec!["/nonexistent"; MAX_PATH_ENTRIES + 1].join(":");
        for (program, cwd, path) in [
            ("sh", "/", search.as_str()),
            ("absent", "/", search.as_str()),
            ("sh", "/nonexistent", search.as_str()),
            ("d", "/", dir.path().to_str().unwrap()),
            ("sh", "/", long.as_str()),
        ] {
            let spec = SpawnSpec {
                uid: Some(65534),
                gid: Some(65534),
                cwd: Some(Path::new(cwd)),
                search_path: Some(std::ffi::OsStr::new(path)),
                ..SpawnSpec::new(Path::new(program), &[], &[], Output::Null)
            };
            let plain = check_exec(&spec).map_err(|e| e.to_string());
            let within = check_exec_within(&spec, std::time::Duration::from_secs(5)).map_err(|e| e.to_string());
            assert_eq!(plain, within, "{program} in {cwd}");
            assert_eq!(
                within.is_ok(),
                program == "sh" && cwd == "/" && path == search,
                "{within:?}"
            );
        }
        let e = check_exec_within(
            &SpawnSpec {
                uid: Some(65534),
                gid: Some(65534),
                search_path: Some(std::ffi::OsStr::new(&long)),
                ..SpawnSpec::new(Path::new("sh"), &[], &[], Output::Null)
            },
            std::time::Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("PATH has 257 entries; at most 256 are searched"), "{e}");
        // Its children are left to `reap_any`.
        while crate::reap_any().unwrap().is_some() {}
    }

    #[test]
    fn new_session_and_identity() {
        let _g = child_lock();
        let argv = [OsString::from("sleep"), OsString::from("5")];
        let spec = SpawnSpec {
            new_session: true,
            ..SpawnSpec::new(Path::new("/bin/sleep"), &argv, &[], Output::Null)
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
        assert_killed(&s);
    }
}

#[cfg(test)]
mod resource_tests {
    use super::*;
    use crate::testutil::*;
    use crate::WaitStatus;

    #[test]
    fn limits_nice_umask_and_a_separate_stderr_reach_the_child() {
        let _g = child_lock();
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("out.log"), dir.path().join("err.log"));
        std::fs::write(&out, "").unwrap();
        std::fs::write(&err, "").unwrap();
        let argv: Vec<OsString> = [
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn; umask; cut -d' ' -f19 /proc/self/stat; echo oops >&2",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let nofile = ChildLimit::resource_by_name("nofile").unwrap();
        let limits = [ChildLimit {
            resource: nofile,
            soft: 100,
            hard: 200,
        }];
        let spec = SpawnSpec {
            limits: &limits,
            nice: Some(7),
            umask: Some(0o027),
            stderr: Some(&err),
            ..SpawnSpec::new(Path::new("/bin/sh"), &argv, &env, Output::Append(&out))
        };
        let s = spawn(&spec).unwrap();
        assert_eq!(wait_child(&s), WaitStatus::Exited(0));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "100\n200\n0027\n7\n");
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "oops\n");
    }

    #[test]
    fn a_real_time_spawner_s_children_start_at_the_normal_policy_and_its_nice_value() {
        if crate::getuid() != 0 {
            println!("not root: SCHED_RR needs CAP_SYS_NICE");
            return;
        }
        let _g = child_lock();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.log");
        std::fs::write(&out, "").unwrap();
        let argv: Vec<OsString> = ["sh", "-c", "cut -d' ' -f19,41 /proc/self/stat"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let spec = SpawnSpec::new(Path::new("/bin/sh"), &argv, &env, Output::Append(&out));
        let run = |spec: &SpawnSpec| {
            std::fs::write(&out, "").unwrap();
            let s = spawn(spec).unwrap();
            assert_eq!(wait_child(&s), WaitStatus::Exited(0));
            std::fs::read_to_string(&out).unwrap()
        };
        std::thread::scope(|t| {
            t.spawn(|| {
                // SAFETY: plain integers; the calling thread's own nice value.
                assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) }, 0);
                if let Err(e) = crate::set_realtime(2) {
                    println!("SCHED_RR refused here ({e}): nothing to check");
                    return;
                }
                // Nice 3 and SCHED_OTHER (0), where the kernel alone would give 0 and 0.
                assert_eq!(run(&spec), "3 0\n");
                // A spec's own value wins.
                assert_eq!(run(&SpawnSpec { nice: Some(7), ..spec }), "7 0\n");
            });
        });
    }

    #[test]
    fn a_limit_the_kernel_refuses_is_named() {
        let _g = child_lock();
        let argv = [OsString::from("true")];
        // Soft above hard: EINVAL from the kernel, for root too.
        let limits = [ChildLimit {
            resource: ChildLimit::resource_by_name("core").unwrap(),
            soft: 10,
            hard: 5,
        }];
        let spec = SpawnSpec {
            limits: &limits,
            ..SpawnSpec::new(Path::new("/bin/true"), &argv, &[], Output::Null)
        };
        let msg = spawn(&spec).unwrap_err().to_string();
        assert!(msg.contains("setrlimit(resource 4, 10:5)"), "{msg}");
    }
}
