//! The scheduling class of vigild's loop thread, and where it runs.

use crate::SysError;

/// The scheduling of the calling thread: its policy (`libc::SCHED_*`, without the reset-on-fork flag),
/// its real-time priority (0 for the normal policies), and whether its children start at the normal
/// policy again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduling {
    /// `libc::SCHED_OTHER`, `libc::SCHED_RR`, ...
    pub policy: i32,
    /// 1..=99 for the real-time policies, 0 for the others.
    pub priority: i32,
    /// Whether threads and processes this thread starts begin at `SCHED_OTHER` (SCHED_RESET_ON_FORK).
    pub reset_on_fork: bool,
}

/// Runs the calling thread (only it: a policy is a thread's) under `SCHED_RR` at `priority` (1..=99),
/// with `SCHED_RESET_ON_FORK`: every thread and process it starts from now on begins at the normal
/// policy, so neither vigild's helper threads nor the processes it supervises inherit it. Priority 0
/// puts it back under the normal policy (`SCHED_OTHER`).
pub fn set_realtime(priority: u8) -> Result<(), SysError> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    let policy = if priority == 0 {
        libc::SCHED_OTHER
    } else {
        libc::SCHED_RR | libc::SCHED_RESET_ON_FORK
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that outlives the call.
    let r = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if r != 0 {
        return Err(SysError::Io {
            op: "sched_setscheduler",
            pid: None,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; this clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The scheduling of thread `tid` (0: the calling thread).
pub fn scheduling(tid: i32) -> Result<Scheduling, SysError> {
    let err = |op| SysError::Io {
        op,
        pid: (tid != 0).then_some(tid),
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: sched_getscheduler takes a plain tid and touches no memory of ours.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    if policy < 0 {
        return Err(err("sched_getscheduler"));
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable sched_param for the call's duration.
    if unsafe { libc::sched_getparam(tid, &mut param) } != 0 {
        return Err(err("sched_getparam"));
    }
    Ok(Scheduling {
        policy: policy & !libc::SCHED_RESET_ON_FORK,
        priority: param.sched_priority,
        reset_on_fork: policy & libc::SCHED_RESET_ON_FORK != 0,
    })
}

/// Moves the calling thread off the CPU it is running on, to one of the others it may use, and lets it
/// use all of them again: a real-time thread then keeps to the new one, since its wake-ups put it back
/// where it last ran. False when it may use no other CPU (nothing is changed then). A change of the
/// thread's affinity by another process between the two calls inside is undone.
pub fn move_off_cpu() -> Result<bool, SysError> {
    let err = |op| SysError::Io {
        op,
        pid: None,
        source: std::io::Error::last_os_error(),
    };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is a writable cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return Err(err("sched_getaffinity"));
    }
    // SAFETY: sched_getcpu has no arguments and touches no memory of ours.
    let here = unsafe { libc::sched_getcpu() };
    if here < 0 {
        return Err(err("sched_getcpu"));
    }
    let mut elsewhere = allowed;
    // SAFETY: `here` is a CPU number the kernel gave, below CPU_SETSIZE; `elsewhere` is a valid set.
    unsafe { libc::CPU_CLR(here as usize, &mut elsewhere) };
    // SAFETY: `elsewhere` is a valid set.
    if unsafe { libc::CPU_COUNT(&elsewhere) } == 0 {
        return Ok(false);
    }
    // SAFETY: `elsewhere` is a valid cpu_set_t of `size` bytes. The kernel moves the calling thread
    // before this returns, since its CPU is no longer allowed.
    if unsafe { libc::sched_setaffinity(0, size, &elsewhere) } != 0 {
        return Err(err("sched_setaffinity"));
    }
    // Back to the set it had. When that was every CPU online, every CPU there is (the kernel narrows
    // it to the cpuset's): the thread's own choice stays "any", and a CPU that comes online later, or
    // that the cpuset gains, is used again as it would have been.
    // SAFETY: sysconf takes a plain constant.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    // SAFETY: `allowed` is a valid set.
    let restore = if online > 0 && i64::from(unsafe { libc::CPU_COUNT(&allowed) }) >= online as i64 {
        // SAFETY: an all-ones cpu_set_t is a valid set of every CPU.
        let mut all: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for c in 0..libc::CPU_SETSIZE as usize {
            // SAFETY: `c` is below CPU_SETSIZE.
            unsafe { libc::CPU_SET(c, &mut all) };
        }
        all
    } else {
        allowed
    };
    // SAFETY: as above.
    if unsafe { libc::sched_setaffinity(0, size, &restore) } != 0 {
        return Err(err("sched_setaffinity (to put back the CPUs the thread may use)"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> i32 {
        // SAFETY: sched_getcpu has no arguments.
        unsafe { libc::sched_getcpu() }
    }

    #[test]
    fn a_real_time_thread_starts_normal_threads_and_moves_off_its_cpu() {
        if crate::getuid() != 0 {
            println!("not root: SCHED_RR needs CAP_SYS_NICE");
            return;
        }
        std::thread::spawn(|| {
            if let Err(e) = set_realtime(3) {
                println!("SCHED_RR refused here ({e}): nothing to check");
                return;
            }
            let s = scheduling(0).unwrap();
            assert_eq!((s.policy, s.priority, s.reset_on_fork), (libc::SCHED_RR, 3, true));
            let child = std::thread::spawn(|| scheduling(0).unwrap()).join().unwrap();
            assert_eq!(
                (child.policy, child.priority, child.reset_on_fork),
                (libc::SCHED_OTHER, 0, false),
                "a thread it starts begins under the normal policy"
            );
            let before = cpu();
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            assert_eq!(move_off_cpu().unwrap(), cpus > 1);
            if cpus > 1 {
                assert_ne!(cpu(), before, "moved");
            }
            let after = std::thread::available_parallelism().map_or(1, |n| n.get());
            assert_eq!(after, cpus, "free to use every CPU it could before");
            set_realtime(0).unwrap();
            assert_eq!(scheduling(0).unwrap().policy, libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
