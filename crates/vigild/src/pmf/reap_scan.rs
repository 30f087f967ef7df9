//! How often vigild looks for zombies among all its children (`waitpid(-1)`).
//!
//! That call walks the whole list of the caller's children in the kernel, and the last call of a
//! round, the one that finds nothing, walks all of them: with 10,000 watched processes, one SIGCHLD
//! costs a walk of 10,000 whatever exited. Most exits need no walk: a tag's process is reaped through
//! its pidfd when the process connector or the pidfd reports it, and action programs and probes by
//! their pid. The walk is left for what nothing reported, orphans that came back to vigild (a
//! subreaper) unwatched: with few children at every SIGCHLD, with many at most once a period that
//! grows with their number ([`ReapScan::period`]), the last one put off to a deadline of the loop so
//! that no zombie is left behind.

use std::time::{Duration, Instant};

/// Below this many children a walk costs less than keeping track of when the last one was.
pub const SCAN_ALWAYS_BELOW: usize = 512;

/// With more children, at most one walk in this time...
pub const SCAN_EVERY: Duration = Duration::from_millis(100);

/// ...or in this much per child, whichever is longer, up to [`SCAN_EVERY_MAX`]: a walk costs about
/// 0.2 µs per child (a profile of a mass kill of 1,000 of 10,000 tags: 2 ms a walk, 7% of vigild's
/// CPU with one walk every 100 ms), so walks keep to about 1% of a busy vigild's time however many
/// children it has.
pub const SCAN_EVERY_PER_CHILD: Duration = Duration::from_micros(20);

/// The longest an unwatched orphan may stay a zombie.
pub const SCAN_EVERY_MAX: Duration = Duration::from_secs(1);

/// When the last walk was, and whether one was put off.
#[derive(Debug, Default)]
pub struct ReapScan {
    last: Option<Instant>,
    pending: Option<Instant>,
}

impl ReapScan {
    /// A child may have exited (a SIGCHLD, or the deadline of a walk put off): whether to walk now.
    /// When not, a walk is pending at [`ReapScan::due`].
    pub fn ask(&mut self, children: usize, now: Instant) -> bool {
        let period = ReapScan::period(children);
        match self.last {
            Some(last) if children >= SCAN_ALWAYS_BELOW && now < last + period => {
                self.pending = Some(last + period);
                false
            }
            _ => {
                self.last = Some(now);
                self.pending = None;
                true
            }
        }
    }

    /// The shortest time between two walks with `children` children (at or above
    /// [`SCAN_ALWAYS_BELOW`]).
    pub fn period(children: usize) -> Duration {
        (SCAN_EVERY_PER_CHILD * children.min(1 << 20) as u32).clamp(SCAN_EVERY, SCAN_EVERY_MAX)
    }

    /// When a walk that was put off is to be made.
    pub fn due(&self) -> Option<Instant> {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_children_are_walked_at_every_signal() {
        let mut r = ReapScan::default();
        let t = Instant::now();
        assert!(r.ask(SCAN_ALWAYS_BELOW - 1, t));
        assert!(r.ask(SCAN_ALWAYS_BELOW - 1, t));
        assert_eq!(r.due(), None);
    }

    #[test]
    fn the_period_grows_with_the_children_within_its_bounds() {
        assert_eq!(ReapScan::period(SCAN_ALWAYS_BELOW), SCAN_EVERY);
        assert_eq!(ReapScan::period(10_000), Duration::from_millis(200));
        assert_eq!(ReapScan::period(100_000), SCAN_EVERY_MAX);
        assert_eq!(ReapScan::period(usize::MAX), SCAN_EVERY_MAX);
    }

    #[test]
    fn many_children_are_walked_at_most_once_a_period_and_the_last_signal_is_not_lost() {
        let mut r = ReapScan::default();
        let t = Instant::now();
        let n = 5_000;
        // The first signal is always answered at once.
        assert!(r.ask(n, t));
        assert_eq!(r.due(), None);
        // Signals within the period are put off to its end, not dropped.
        assert!(!r.ask(n, t + Duration::from_millis(1)));
        assert!(!r.ask(n, t + Duration::from_millis(99)));
        assert_eq!(r.due(), Some(t + SCAN_EVERY));
        // At the deadline, the walk is made and nothing is pending any more.
        assert!(r.ask(n, t + SCAN_EVERY));
        assert_eq!(r.due(), None);
        assert!(!r.ask(n, t + SCAN_EVERY + Duration::from_millis(5)));
        assert_eq!(r.due(), Some(t + SCAN_EVERY * 2));
    }
}
