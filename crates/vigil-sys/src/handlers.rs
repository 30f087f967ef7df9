//! Signal handlers set aside in a process that must not run them yet.
//!
//! A SAM supervisor forks the next instance of its application ahead of need (a standby, see
//! vigil-client's `sam/standby.rs`). Until it is released the standby is not the application: a signal
//! sent to the whole process group (a terminal's ^C, a service manager's SIGTERM to every process of the
//! service) must not run the application's handler in it, and should end it as it would end any process
//! that handles and blocks nothing. The fork is made with every signal blocked ([`block_all_signals`]),
//! so that none comes to the child before [`park_signal_handlers`] has given every handled signal its
//! default action (the stop signals of a terminal are ignored instead: a stopped standby would be a
//! dead restart) and unblocked everything. [`ParkedHandlers::restore`] throws away what came meanwhile
//! (a process forked at the release would not have it pending) and puts the handlers and the mask back.
//! Ignored signals stay ignored.

/// A thread's signal mask as it was, to go back to.
#[derive(Clone, Copy)]
pub struct SignalMask(libc::sigset_t);

impl SignalMask {
    /// Puts the calling thread's mask back to this one.
    pub fn restore(&self) {
        set_mask(&self.0);
    }
}

/// Blocks every signal in the calling thread; answers the mask it had.
pub fn block_all_signals() -> SignalMask {
    // SAFETY: sigfillset fills a sigset_t we own; pthread_sigmask reads it and writes the old mask
    // into another we own.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        SignalMask(old)
    }
}

/// The actions set aside, and the signal mask to go back to.
pub struct ParkedHandlers {
    saved: Vec<(i32, libc::sigaction)>,
    mask: SignalMask,
}

/// The terminal's stop signals: a process that handles none of them would stop on them.
const TERMINAL_STOPS: [i32; 3] = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// Every signal the process handles gets its default action, the terminal's stop signals are ignored,
/// and then every signal is unblocked; `mask` is the mask to go back to (the one
/// [`block_all_signals`] answered before the fork). To be called with every signal blocked. glibc's own
/// signals (which its `sigaction` refuses) are left as they are.
pub fn park_signal_handlers(mask: SignalMask) -> ParkedHandlers {
    let mut saved = Vec::new();
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction reads nothing (null) and writes the current action into `cur`, ours.
        let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut cur) } != 0 {
            continue;
        }
        let stop = TERMINAL_STOPS.contains(&sig);
        let park = match cur.sa_sigaction {
            libc::SIG_IGN => false,
            // A terminal's stop would stop the standby.
            libc::SIG_DFL => stop,
            _ => true,
        };
        if !park {
            continue;
        }
        // SAFETY: as above; the all-zero action is SIG_DFL with no flags and an empty mask.
        let mut parked: libc::sigaction = unsafe { std::mem::zeroed() };
        if stop {
            parked.sa_sigaction = libc::SIG_IGN;
        }
        if unsafe { libc::sigaction(sig, &parked, std::ptr::null_mut()) } == 0 {
            saved.push((sig, cur));
        }
    }
    // SAFETY: sigemptyset fills a sigset_t we own.
    let none = unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        none
    };
    set_mask(&none);
    ParkedHandlers { saved, mask }
}

impl ParkedHandlers {
    /// The signals whose actions are set aside.
    pub fn signals(&self) -> Vec<i32> {
        self.saved.iter().map(|(s, _)| *s).collect()
    }

    /// With every signal blocked: throws away the signals pending (sent before this process was the
    /// application), puts the actions back, then the mask.
    pub fn restore(self) {
        block_all_signals();
        // SAFETY: sigfillset fills a sigset_t we own; sigtimedwait with a zero timeout takes one pending
        // signal of it (every one is blocked) or fails with EAGAIN when none is left.
        unsafe {
            let mut every: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut every);
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            while libc::sigtimedwait(&every, std::ptr::null_mut(), &zero) > 0 {}
        }
        for (sig, act) in &self.saved {
            // SAFETY: `act` is the action sigaction gave for this signal.
            unsafe { libc::sigaction(*sig, act, std::ptr::null_mut()) };
        }
        self.mask.restore();
    }
}

fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: pthread_sigmask reads a sigset_t we own and writes no old set (null).
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a child of its own (the test harness's threads must not see signal tables change);
    /// its exit code.
    fn in_child(f: fn() -> i32) -> crate::WaitStatus {
        // SAFETY: the child only makes system calls and exits with _exit.
        match unsafe { crate::fork() }.unwrap() {
            crate::Forked::Child => crate::exit_now(f()),
            crate::Forked::Parent(pid) => crate::reap_child(pid).unwrap(),
        }
    }

    extern "C" fn on_usr1(_: libc::c_int) {}

    fn usr1_handler() -> libc::sighandler_t {
        on_usr1 as *const () as libc::sighandler_t
    }

    #[test]
    fn a_parked_handler_is_the_default_action_until_it_is_put_back() {
        let st = in_child(|| {
            // SAFETY: plain signal-table calls on our own process.
            unsafe {
                libc::signal(libc::SIGUSR1, usr1_handler());
                libc::signal(libc::SIGUSR2, libc::SIG_IGN);
                let parked = park_signal_handlers(block_all_signals());
                // (The test harness's runtime handles SIGSEGV and SIGBUS: parked too.)
                if !parked.signals().contains(&libc::SIGUSR1) || parked.signals().contains(&libc::SIGUSR2) {
                    return 1;
                }
                if libc::signal(libc::SIGUSR1, libc::SIG_DFL) != libc::SIG_DFL
                    || libc::signal(libc::SIGUSR2, libc::SIG_IGN) != libc::SIG_IGN
                    || libc::signal(libc::SIGTSTP, libc::SIG_IGN) != libc::SIG_IGN
                {
                    return 2;
                }
                parked.restore();
                if libc::signal(libc::SIGUSR1, usr1_handler()) != usr1_handler()
                    || libc::signal(libc::SIGTSTP, libc::SIG_DFL) != libc::SIG_DFL
                {
                    return 3;
                }
                0
            }
        });
        assert_eq!(st, crate::WaitStatus::Exited(0));
    }

    #[test]
    fn a_blocked_signal_ends_a_parked_process_and_one_pending_at_the_restore_is_thrown_away() {
        // Blocked by the application: parked, the signal still ends the process.
        let st = in_child(|| {
            // SAFETY: plain signal calls on our own process.
            unsafe {
                libc::signal(libc::SIGUSR1, usr1_handler());
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                let _parked = park_signal_handlers(block_all_signals());
                libc::raise(libc::SIGUSR1);
            }
            0
        });
        assert_eq!(
            st,
            crate::WaitStatus::Signaled {
                signal: libc::SIGUSR1,
                core_dumped: false
            }
        );
        // Pending when the handlers come back (sent while every signal was blocked): not delivered.
        let st = in_child(|| {
            static CAUGHT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            extern "C" fn note(_: libc::c_int) {
                CAUGHT.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            // SAFETY: plain signal calls on our own process.
            unsafe {
                libc::signal(libc::SIGUSR1, note as *const () as libc::sighandler_t);
                let parked = park_signal_handlers(block_all_signals());
                let _ = block_all_signals();
                libc::raise(libc::SIGUSR1);
                parked.restore();
            }
            i32::from(CAUGHT.load(std::sync::atomic::Ordering::SeqCst))
        });
        assert_eq!(st, crate::WaitStatus::Exited(0));
    }
}
