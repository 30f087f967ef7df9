//! How long to poll for a message expected within microseconds before going to sleep for it.
//!
//! A process that sleeps until a socket is readable pays for a scheduler wake-up when the message comes:
//! 4 µs on a quiet machine, 20 µs and more on a virtual machine whose idle CPU has to be woken by its
//! host, more than the work of a small request. vigild polls for the next request after answering
//! (`daemon.busy_poll_us`), and vigil's client polls for its answer (`VIGIL_SPIN_US`). How long adapts
//! as Linux's `haltpoll` governor does for a virtual CPU:
//!
//! - a poll that found the message doubles the next one's length, up to the maximum;
//! - a poll that found nothing halves it, and below [`MIN`] there is no poll: a peer that does not come
//!   back within the maximum does not get this CPU for nothing, message after message;
//! - a message that arrives, after the poll gave up, within the maximum of the poll's start shows that a
//!   whole poll would have found it: polling starts again at the maximum.

use std::time::{Duration, Instant};

/// Below this a poll is not worth its first system call.
pub const MIN: Duration = Duration::from_micros(5);

/// The length of the next poll, and when the last one that gave up began.
#[derive(Debug)]
pub struct BusyPoll {
    budget: Duration,
    gave_up: Option<Instant>,
}

impl BusyPoll {
    /// Starts with polls of the whole maximum.
    pub fn new(max: Duration) -> BusyPoll {
        BusyPoll {
            budget: max,
            gave_up: None,
        }
    }

    /// How long to poll now (zero: do not), with the maximum of now (a setting that may change).
    pub fn budget(&mut self, max: Duration) -> Duration {
        self.budget = self.budget.min(max);
        self.budget
    }

    /// The poll that began at `began` ended, having found the message or not (then the caller sleeps
    /// for it). A poll of zero length is one that found nothing.
    pub fn polled(&mut self, found: bool, began: Instant, max: Duration) {
        if found {
            self.budget = (self.budget * 2).clamp(MIN, max.max(MIN)).min(max);
            self.gave_up = None;
        } else {
            self.budget /= 2;
            if self.budget < MIN {
                self.budget = Duration::ZERO;
            }
            self.gave_up = Some(began);
        }
    }

    /// The message came at `now`, while the caller slept for it.
    pub fn woken(&mut self, max: Duration, now: Instant) {
        if let Some(began) = self.gave_up.take() {
            if now.saturating_duration_since(began) <= max {
                self.budget = max;
            }
        }
    }
}

/// Polls for up to `budget` for `ready` to answer Some; None if it did not within it.
pub fn spin<T>(budget: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    if budget.is_zero() {
        return None;
    }
    let until = Instant::now() + budget;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(50);

    #[test]
    fn a_peer_that_comes_back_at_once_keeps_the_whole_budget() {
        let mut p = BusyPoll::new(MAX);
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(p.budget(MAX), MAX);
            p.polled(true, t, MAX);
        }
    }

    #[test]
    fn polls_that_find_nothing_shrink_to_none_then_a_quick_message_brings_them_back() {
        let mut p = BusyPoll::new(MAX);
        let t = Instant::now();
        let mut lengths = Vec::new();
        while !p.budget(MAX).is_zero() {
            lengths.push(p.budget(MAX));
            p.polled(false, t, MAX);
            p.woken(MAX, t + Duration::from_millis(5));
        }
        // 50, 25, 12.5, 6.25 µs, then none: at most about twice the maximum spent in vain.
        assert_eq!(lengths.len(), 4, "{lengths:?}");
        assert!(lengths.iter().sum::<Duration>() < MAX * 2);
        // A message long after: still no poll.
        p.polled(false, t, MAX);
        p.woken(MAX, t + Duration::from_millis(5));
        assert!(p.budget(MAX).is_zero());
        // One within the maximum of the (empty) poll's start: a whole poll would have found it.
        p.polled(false, t, MAX);
        p.woken(MAX, t + Duration::from_micros(40));
        assert_eq!(p.budget(MAX), MAX);
    }

    #[test]
    fn a_message_just_after_a_short_poll_that_a_whole_one_would_not_have_found_does_not_restore_it() {
        let mut p = BusyPoll::new(MAX);
        let t = Instant::now();
        p.polled(false, t, MAX);
        assert_eq!(p.budget(MAX), MAX / 2);
        // 60 µs after the poll began: beyond the maximum, so the poll keeps shrinking.
        p.woken(MAX, t + Duration::from_micros(60));
        assert_eq!(p.budget(MAX), MAX / 2);
    }

    #[test]
    fn a_found_message_doubles_a_shrunk_poll_and_a_lower_maximum_caps_it() {
        let mut p = BusyPoll::new(MAX);
        let t = Instant::now();
        p.polled(false, t, MAX);
        p.polled(false, t, MAX);
        assert_eq!(p.budget(MAX), MAX / 4);
        p.polled(true, t, MAX);
        assert_eq!(p.budget(MAX), MAX / 2);
        let lower = Duration::from_micros(10);
        assert_eq!(p.budget(lower), lower);
        p.polled(true, t, lower);
        assert_eq!(p.budget(lower), lower);
        // Off: nothing brings it back.
        assert!(p.budget(Duration::ZERO).is_zero());
        p.polled(true, t, Duration::ZERO);
        p.woken(Duration::ZERO, t);
        assert!(p.budget(Duration::ZERO).is_zero());
    }

    #[test]
    fn spin_stops_at_the_answer_or_the_budget() {
        let mut n = 0;
        assert_eq!(
            spin(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(spin(Duration::from_micros(100), || None::<()>), None);
        assert_eq!(spin(Duration::ZERO, || Some(())), None);
    }
}
