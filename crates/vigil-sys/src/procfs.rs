//! Process identity from /proc, and clocks.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::sync::OnceLock;

use crate::{Pid, SysError};

/// The fields of /proc/PID/stat that vigil uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The process's pid (field 1).
    pub pid: Pid,
    /// The command name (field 2, without the parentheses; may contain spaces or ')').
    pub comm: String,
    /// State letter (field 3): R, S, D, Z, T, t, X, I...
    pub state: char,
    /// Parent pid (field 4).
    pub ppid: Pid,
    /// Process group id (field 5).
    pub pgrp: Pid,
    /// Session id (field 6).
    pub session: Pid,
    /// Start time in clock ticks after boot (field 22); with the pid, identifies a process.
    pub start_time: u64,
}

/// Reads /proc/PID/<name>, mapping a vanished process to `NoSuchProcess`.
fn read_proc(pid: Pid, name: &str, op: &'static str) -> Result<Vec<u8>, SysError> {
    if pid <= 0 {
        return Err(SysError::NoSuchProcess(pid));
    }
    std::fs::read(format!("/proc/{pid}/{name}")).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => SysError::NoSuchProcess(pid),
        _ => SysError::io(op, Some(pid), e),
    })
}

/// Parses the contents of a /proc/PID/stat file.
pub(crate) fn parse_stat(buf: &[u8]) -> Option<ProcStat> {
    let open = buf.iter().position(|&b| b == b'(')?;
    // comm may contain ')' itself, so the last one ends it.
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&buf[..open]).ok()?.trim().parse().ok()?;
    let comm = String::from_utf8_lossy(&buf[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&buf[close + 1..]).ok()?;
    // rest[0] is field 3, so field N is rest[N - 3].
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    if f.len() < 20 {
        return None;
    }
    Some(ProcStat {
        pid,
        comm,
        state: f[0].chars().next()?,
        ppid: f[1].parse().ok()?,
        pgrp: f[2].parse().ok()?,
        session: f[3].parse().ok()?,
        start_time: f[19].parse().ok()?,
    })
}

/// Reads and parses /proc/PID/stat.
pub fn proc_stat(pid: Pid) -> Result<ProcStat, SysError> {
    let buf = read_proc(pid, "stat", "read /proc/PID/stat")?;
    parse_stat(&buf).ok_or_else(|| {
        SysError::io(
            "parse /proc/PID/stat",
            Some(pid),
            io::Error::new(io::ErrorKind::InvalidData, String::from_utf8_lossy(&buf).into_owned()),
        )
    })
}

/// Room for a whole /proc/PID/stat line: 52 fields of at most 20 digits and a command name of at most
/// 64 bytes fit in about 1.2 KiB.
const STAT_BUF: usize = 2048;

/// Field 22 of /proc/PID/stat.
///
/// On every start of a tag's process, and for each check of a watched pid: one open, one read into a
/// buffer on the stack and one close, and no allocation (`std::fs::read` would add a statx, a second
/// read to see the end of the file, and the path's and the contents' allocations).
pub fn start_time(pid: Pid) -> Result<u64, SysError> {
    if pid <= 0 {
        return Err(SysError::NoSuchProcess(pid));
    }
    let mut path = [0u8; 32];
    let len = stat_path(pid, &mut path);
    debug_assert!(len < path.len());
    // SAFETY: `path` is NUL-terminated (zero-filled, `len` < its length) and the flags take no mode.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => SysError::NoSuchProcess(pid),
            _ => SysError::io("read /proc/PID/stat", Some(pid), e),
        });
    }
    let mut buf = [0u8; STAT_BUF];
    let n = loop {
        // SAFETY: `buf` is a writable buffer of the length passed; `fd` is ours, open.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break n;
        }
    };
    let err = (n < 0).then(io::Error::last_os_error);
    // SAFETY: closing the descriptor opened above, used by nothing else.
    unsafe { libc::close(fd) };
    if let Some(e) = err {
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => SysError::NoSuchProcess(pid),
            _ => SysError::io("read /proc/PID/stat", Some(pid), e),
        });
    }
    let n = n as usize;
    if n == buf.len() {
        // Not the whole line (the kernel gives it in one read when there is room): the general path.
        return proc_stat(pid).map(|s| s.start_time);
    }
    parse_start_time(&buf[..n]).ok_or_else(|| {
        SysError::io(
            "parse /proc/PID/stat",
            Some(pid),
            io::Error::new(
                io::ErrorKind::InvalidData,
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ),
        )
    })
}

/// Writes `/proc/PID/stat` into `out` (left NUL-terminated by its zeroes); returns its length.
fn stat_path(pid: Pid, out: &mut [u8; 32]) -> usize {
    const PREFIX: &[u8] = b"/proc/";
    out[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut v = pid.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut at = PREFIX.len();
    for &d in &digits[i..] {
        out[at] = d;
        at += 1;
    }
    for &b in b"/stat" {
        out[at] = b;
        at += 1;
    }
    at
}

/// Field 22 of a /proc/PID/stat line, as `parse_stat` reads it, without allocating.
pub(crate) fn parse_start_time(buf: &[u8]) -> Option<u64> {
    // comm may contain ')' itself, so the last one ends it.
    let close = buf.iter().rposition(|&b| b == b')')?;
    if !buf[..close].contains(&b'(') {
        return None;
    }
    // After ')' comes field 3: field 22 is the 20th word.
    let word = buf[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .nth(19)?;
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The argv of `pid` from /proc/PID/cmdline (empty for zombies and kernel threads).
pub fn cmdline(pid: Pid) -> Result<Vec<OsString>, SysError> {
    let buf = read_proc(pid, "cmdline", "read /proc/PID/cmdline")?;
    let mut args: Vec<OsString> = buf.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    // The buffer ends with a NUL, which leaves one empty piece at the end.
    if args.last().is_some_and(|a| a.is_empty()) {
        args.pop();
    }
    Ok(args)
}

/// The value of one variable in the environment `pid` was started with (/proc/PID/environ), or None
/// when it has none of that name. Only the process's own user and root may read it.
pub fn environ_var(pid: Pid, name: &str) -> Result<Option<Vec<u8>>, SysError> {
    let buf = read_proc(pid, "environ", "read /proc/PID/environ")?;
    Ok(buf.split(|&b| b == 0).find_map(|kv| {
        kv.strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .map(<[u8]>::to_vec)
    }))
}

/// The real, effective, saved and file-system uids of `pid` (the `Uid:` line of /proc/PID/status).
pub fn uids(pid: Pid) -> Result<[u32; 4], SysError> {
    let buf = read_proc(pid, "status", "read /proc/PID/status")?;
    let bad = || {
        SysError::io(
            "parse /proc/PID/status",
            Some(pid),
            io::Error::new(io::ErrorKind::InvalidData, "no Uid: line with four uids"),
        )
    };
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:")).ok_or_else(bad)?;
    let ids: Vec<u32> = line.split_whitespace().filter_map(|u| u.parse().ok()).collect();
    ids.try_into().map_err(|_| bad())
}

/// Whether this kernel has /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN).
fn have_children_files() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        std::path::Path::new(&format!("/proc/self/task/{tid}/children")).exists()
    })
}

/// The direct children of `pid`, sorted; empty on error (e.g. the process is gone).
///
/// Uses /proc/PID/task/*/children where the kernel has it, else scans every /proc/N/stat for
/// ppid == pid (CONFIG_PROC_CHILDREN is off on some kernels, including the one this was
/// written on).
pub fn children(pid: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    if pid <= 0 {
        return out;
    }
    if have_children_files() {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                    out.extend(s.split_ascii_whitespace().filter_map(|p| p.parse::<Pid>().ok()));
                }
            }
        }
    } else if let Ok(procs) = std::fs::read_dir("/proc") {
        for e in procs.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<Pid>().ok()) else {
                continue;
            };
            if let Ok(buf) = std::fs::read(e.path().join("stat")) {
                if parse_stat(&buf).is_some_and(|s| s.ppid == pid) {
                    out.push(child);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Clock ticks per second (sysconf(_SC_CLK_TCK)), the unit of `start_time`.
pub fn boot_time_ticks_per_sec() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 {
            hz as u64
        } else {
            100
        }
    })
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid pointer to a local timespec.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(r, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in nanoseconds: for timeouts and intervals (does not count suspend).
pub fn monotonic_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_BOOTTIME in nanoseconds: time since boot including suspend, the clock behind `start_time`.
pub fn boottime_now_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Time since boot in clock ticks, comparable with `start_time` (age = uptime_ticks() - start_time).
pub fn uptime_ticks() -> u64 {
    (boottime_now_ns() as u128 * boot_time_ticks_per_sec() as u128 / 1_000_000_000) as u64
}

/// Converts a `start_time` (ticks after boot) to nanoseconds after boot (CLOCK_BOOTTIME).
pub fn start_time_to_boot_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / boot_time_ticks_per_sec() as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weird_comm() {
        let line = b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 rest";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(
            (s.state, s.ppid, s.pgrp, s.session, s.start_time),
            ('S', 1, 1234, 1234, 987654)
        );
        assert!(parse_stat(b"12 (x) S 1 2").is_none());
        assert!(parse_stat(b"garbage").is_none());
        // The allocation-free reader of field 22 agrees.
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time(b"12 (x) S 1 2"), None);
        assert_eq!(parse_start_time(b"garbage"), None);
        assert_eq!(
            parse_start_time(b"1 x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0"),
            None
        );
    }

    #[test]
    fn start_time_of_live_processes_and_of_none() {
        let me = std::process::id() as Pid;
        assert_eq!(start_time(me).unwrap(), proc_stat(me).unwrap().start_time);
        assert_eq!(start_time(1).unwrap(), proc_stat(1).unwrap().start_time);
        for pid in [0, -3, 1 << 23, i32::MAX] {
            assert!(
                matches!(start_time(pid), Err(SysError::NoSuchProcess(p)) if p == pid),
                "{pid}"
            );
        }
        let mut path = [0u8; 32];
        let n = stat_path(i32::MAX, &mut path);
        assert_eq!(&path[..n], b"/proc/2147483647/stat");
        assert_eq!(path[n], 0);
    }

    #[test]
    fn reads_ourselves() {
        let me = std::process::id() as Pid;
        let s = proc_stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!("RS".contains(s.state), "{s:?}");
        // SAFETY: getppid/getsid have no preconditions.
        let (ppid, sid) = unsafe { (libc::getppid(), libc::getsid(0)) };
        assert_eq!((s.ppid, s.session), (ppid, sid));
        assert_eq!(start_time(me).unwrap(), s.start_time);
        assert!(s.start_time <= uptime_ticks());
        assert!(start_time_to_boot_ns(s.start_time) <= boottime_now_ns());
        let argv: Vec<OsString> = std::env::args_os().collect();
        assert_eq!(cmdline(me).unwrap(), argv);
        assert!(matches!(proc_stat(1 << 23), Err(SysError::NoSuchProcess(_))));
        assert!(matches!(cmdline(-5), Err(SysError::NoSuchProcess(-5))));
        let a = monotonic_now_ns();
        assert!(monotonic_now_ns() >= a);
        assert!(boot_time_ticks_per_sec() >= 1);
    }

    #[test]
    fn children_of_our_parent_include_us() {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() };
        assert!(children(ppid).contains(&(std::process::id() as Pid)));
        assert!(children(1 << 23).is_empty());
        assert!(children(0).is_empty());
    }

    #[test]
    fn reads_own_environment_and_uids() {
        let me = std::process::id() as Pid;
        // The test runner's environment always has PATH; "PAT" must not match it by prefix.
        assert!(environ_var(me, "PATH").unwrap().is_some());
        assert_eq!(environ_var(me, "PAT").unwrap(), None);
        assert!(matches!(environ_var(1 << 23, "PATH"), Err(SysError::NoSuchProcess(_))));
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert_eq!(uids(me).unwrap()[0], uid);
    }
}

/// A snapshot of every process's /proc/N/stat, read in one pass, so that walking many trees costs one
/// scan of /proc instead of one per process.
#[derive(Debug, Default)]
pub struct ProcTable {
    stats: std::collections::HashMap<Pid, ProcStat>,
    children: std::collections::HashMap<Pid, Vec<Pid>>,
}

impl ProcTable {
    /// Reads every process now.
    pub fn snapshot() -> ProcTable {
        let mut t = ProcTable::default();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return t;
        };
        for e in procs.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<Pid>().ok()) else {
                continue;
            };
            if let Some(s) = std::fs::read(e.path().join("stat")).ok().and_then(|b| parse_stat(&b)) {
                t.children.entry(s.ppid).or_default().push(pid);
                t.stats.insert(pid, s);
            }
        }
        for c in t.children.values_mut() {
            c.sort_unstable();
        }
        t
    }

    /// The direct children of `pid` at the time of the snapshot.
    pub fn children(&self, pid: Pid) -> &[Pid] {
        self.children.get(&pid).map_or(&[], |c| c.as_slice())
    }

    /// The stat line of `pid` at the time of the snapshot.
    pub fn stat(&self, pid: Pid) -> Option<&ProcStat> {
        self.stats.get(&pid)
    }

    /// Every process of the snapshot, in no particular order.
    pub fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.stats.keys().copied()
    }
}
