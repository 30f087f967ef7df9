//! Signal handlers set aside in a process that must not run them yet.
//!
//! A SAM supervisor forks the next instance of its application ahead of need (a standby, see
//! vigil-client's `sam/standby.rs`). Until it is released the standby is not the application: a signal
//! sent to the whole process group (a terminal's ^C, a service manager's SIGTERM to every process of the
//! service) must not run the application's handler in it, and should end it as it would end any process
//! that handles nothing. [`park_signal_handlers`] gives every handled signal its default action and keeps
//! the handlers; [`ParkedHandlers::restore`] puts them back. Ignored signals stay ignored.

/// The handlers set aside, and the signal mask to go back to.
pub struct ParkedHandlers {
    saved: Vec<(i32, libc::sigaction)>,
    mask: libc::sigset_t,
}

/// Every signal the process handles gets its default action; the handlers are kept for
/// [`ParkedHandlers::restore`]. Every signal is blocked while the table changes, so that none comes to a
/// handler half set aside. glibc's own signals (which its `sigaction` refuses) are left as they are.
pub fn park_signal_handlers() -> ParkedHandlers {
    let mask = block_all();
    let mut saved = Vec::new();
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction reads a zeroed struct we own (null: no change) and writes the current
        // action into `cur`, also ours.
        let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut cur) } != 0 {
            continue;
        }
        if cur.sa_sigaction == libc::SIG_DFL || cur.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: as above; the all-zero action is SIG_DFL with no flags and an empty mask.
        let default: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, &default, std::ptr::null_mut()) } == 0 {
            saved.push((sig, cur));
        }
    }
    set_mask(&mask);
    ParkedHandlers { saved, mask }
}

impl ParkedHandlers {
    /// The signals that have handlers set aside.
    pub fn signals(&self) -> Vec<i32> {
        self.saved.iter().map(|(s, _)| *s).collect()
    }

    /// Puts the handlers back, with every signal blocked meanwhile; one that came before is pending
    /// until then and goes to its handler.
    pub fn restore(self) {
        block_all();
        for (sig, act) in &self.saved {
            // SAFETY: `act` is the action sigaction gave for this signal.
            unsafe { libc::sigaction(*sig, act, std::ptr::null_mut()) };
        }
        set_mask(&self.mask);
    }
}

/// Blocks every signal in the calling thread; answers the mask it had.
fn block_all() -> libc::sigset_t {
    // SAFETY: sigfillset fills a sigset_t we own; pthread_sigmask reads it and writes the old mask
    // into another we own.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: pthread_sigmask reads a sigset_t we own and writes no old set (null).
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_handler_is_the_default_action_until_it_is_put_back() {
        // In a child of its own: the test harness's threads must not see signal tables change.
        // SAFETY: the child only makes system calls and exits with _exit.
        match unsafe { crate::fork() }.unwrap() {
            crate::Forked::Child => {
                extern "C" fn on_usr1(_: libc::c_int) {}
                // SAFETY: plain sigaction/signal calls on our own process; _exit ends it.
                unsafe {
                    libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
                    libc::signal(libc::SIGUSR2, libc::SIG_IGN);
                    let parked = park_signal_handlers();
                    // (The test harness's runtime handles SIGSEGV and SIGBUS: parked too.)
                    let ok_parked = parked.signals().contains(&libc::SIGUSR1)
                        && !parked.signals().contains(&libc::SIGUSR2)
                        && libc::signal(libc::SIGUSR1, libc::SIG_DFL) == libc::SIG_DFL
                        && libc::signal(libc::SIGUSR2, libc::SIG_IGN) == libc::SIG_IGN;
                    parked.restore();
                    let ok_restored = libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t)
                        == on_usr1 as *const () as libc::sighandler_t;
                    libc::_exit(if !ok_parked {
                        1
                    } else if !ok_restored {
                        2
                    } else {
                        0
                    });
                }
            }
            crate::Forked::Parent(pid) => {
                assert_eq!(crate::reap_child(pid).unwrap(), crate::WaitStatus::Exited(0));
            }
        }
    }
}
