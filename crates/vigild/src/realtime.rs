//! The scheduling of the loop's thread (`daemon.realtime_priority`, docs/vigild.md): SCHED_RR while it
//! waits for work, the normal policy while work keeps it busy.
//!
//! A real-time loop answers at once and keeps to its CPU; a real-time loop kept busy takes that CPU from
//! every normal process, whoever sends the work (a flood of requests from any user, a mass restart). So
//! the loop measures its own work (its CPU time, less its polls for the next request) over windows of
//! [`WINDOW`]: one that was busy more than [`DEMOTE_ABOVE`] of a window runs under the normal policy
//! from then on, until a window with less than [`PROMOTE_BELOW`].

use std::cell::Cell;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// How long a window of the loop's work is.
pub const WINDOW: Duration = Duration::from_millis(100);
/// A window busier than this (the share of its time spent working) ends the real-time policy.
pub const DEMOTE_ABOVE: f64 = 0.75;
/// A window quieter than this brings it back.
pub const PROMOTE_BELOW: f64 = 0.25;

thread_local! {
    /// Whether this thread is the one `run_daemon` made for the loop: only that one's scheduling is
    /// vigild's to set (a caller of `run` keeps its threads as they are).
    static OWN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as the loop's own (`run_daemon`).
pub fn own_this_thread() {
    OWN_THREAD.with(|t| t.set(true));
}

/// What to do after a window, given how busy it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Demote,
    Promote,
}

/// The rule, apart from the clocks: `busy` is the window's share of work, `realtime` whether the loop
/// runs real-time now, `demoted` whether it was taken off it for being busy.
pub fn judge(busy: f64, realtime: bool, demoted: bool) -> Verdict {
    if realtime && busy > DEMOTE_ABOVE {
        Verdict::Demote
    } else if demoted && busy < PROMOTE_BELOW {
        Verdict::Promote
    } else {
        Verdict::Keep
    }
}

/// The loop thread's scheduling: the priority set, whether it runs real-time now, and the window.
pub struct Loop {
    /// `daemon.realtime_priority` as last applied.
    priority: u8,
    /// Whether the thread runs real-time now.
    realtime: bool,
    /// Taken off the real-time policy for being busy (not by the setting).
    demoted: bool,
    window_start: Instant,
    cpu_start: Duration,
    /// Time spent polling for requests in this window: waiting, not working.
    polled: Duration,
}

impl Loop {
    /// Applies `priority` to the calling thread.
    pub fn new(priority: u8) -> Loop {
        Loop {
            priority,
            realtime: set(priority),
            demoted: false,
            window_start: Instant::now(),
            cpu_start: vigil_sys::thread_cpu_time(),
            polled: Duration::ZERO,
        }
    }

    /// Whether the thread runs real-time now.
    pub fn realtime(&self) -> bool {
        self.realtime
    }

    /// A poll for the next request took `d`.
    pub fn polled(&mut self, d: Duration) {
        self.polled += d;
    }

    /// After each turn of the loop: applies a new setting (a reload), and judges a window that is over.
    pub fn turn(&mut self, priority: u8) {
        if priority != self.priority {
            self.priority = priority;
            self.demoted = false;
            self.realtime = set(priority);
        }
        let now = Instant::now();
        let wall = now.saturating_duration_since(self.window_start);
        if wall < WINDOW {
            return;
        }
        let cpu = vigil_sys::thread_cpu_time();
        let work = cpu.saturating_sub(self.cpu_start).saturating_sub(self.polled);
        let busy = work.as_secs_f64() / wall.as_secs_f64();
        (self.window_start, self.cpu_start, self.polled) = (now, cpu, Duration::ZERO);
        match judge(busy, self.realtime, self.demoted) {
            Verdict::Keep => {}
            Verdict::Demote => {
                if vigil_sys::set_realtime(0).is_ok() {
                    info!(
                        "vigild's loop worked {:.0}% of the last {} ms: under the normal policy until it is quieter",
                        busy * 100.0,
                        wall.as_millis()
                    );
                    self.realtime = false;
                    self.demoted = true;
                }
            }
            Verdict::Promote => {
                self.demoted = false;
                self.realtime = set(self.priority);
            }
        }
    }
}

/// Runs the calling thread (the loop's) under `SCHED_RR` at `priority`, or the normal policy for 0;
/// true when it now runs real-time. A refusal (no CAP_SYS_NICE, a cgroup without real-time time) is
/// logged and leaves the thread as it was.
fn set(priority: u8) -> bool {
    if !OWN_THREAD.with(Cell::get) {
        return false;
    }
    match vigil_sys::set_realtime(priority) {
        Ok(()) => {
            if priority > 0 {
                info!("vigild's loop runs under SCHED_RR priority {priority}");
            }
            priority > 0
        }
        Err(e) => {
            let why = format!("daemon.realtime_priority = {priority}: {e}; the loop's scheduling is unchanged");
            // Not root: not allowed, as expected.
            if vigil_sys::getuid() == 0 {
                warn!("{why}");
            } else {
                info!("{why}");
            }
            vigil_sys::scheduling(0).is_ok_and(|s| s.priority > 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_window_demotes_and_only_a_quiet_one_promotes_again() {
        assert_eq!(judge(0.9, true, false), Verdict::Demote);
        assert_eq!(judge(0.5, true, false), Verdict::Keep);
        // Demoted: a window between the two bounds keeps it so.
        assert_eq!(judge(0.5, false, true), Verdict::Keep);
        assert_eq!(judge(0.9, false, true), Verdict::Keep);
        assert_eq!(judge(0.1, false, true), Verdict::Promote);
        // Off by the setting (not demoted): a quiet window does not turn it on.
        assert_eq!(judge(0.0, false, false), Verdict::Keep);
    }
}
