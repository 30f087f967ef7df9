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
    pub const fn new(max: Duration) -> BusyPoll {
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

/// How many polls in a row that a peer at its last pace would have answered must find nothing to show
/// that the poller crowds its peer out (see [`Crowding`]).
pub const CROWDED_TIMES: u32 = 2;
/// The least time between two moves: a wrong guess costs at most one move in this time.
pub const MOVE_EVERY: Duration = Duration::from_millis(10);

/// Whether a real-time poller keeps its peer from running by polling on the peer's own CPU.
///
/// A real-time thread that polls on the CPU where its peer (a normal process) is runnable holds that
/// CPU until the poll gives up: the peer's message comes only after, however long the poll. And such a
/// thread, once woken, stays on the CPU where it last ran (the kernel puts it back there rather than
/// beside its waker, as it would a normal one), so nothing parts the two. A peer on a CPU of its own
/// sends while the poll runs: a poll as long as the time the last message took to come (from the start
/// of the poll that missed it) finds the next, unless the peer slowed down. When [`CROWDED_TIMES`] such
/// polls in a row find nothing, the poller should move to another CPU (at most once per
/// [`MOVE_EVERY`]); there it stays, and its polls find the peer's messages again.
#[derive(Debug, Default)]
pub struct Crowding {
    /// When the last poll that found nothing began.
    missed: Option<Instant>,
    /// How long after the start of the last poll that found nothing its message came.
    reach: Option<Duration>,
    count: u32,
    moved: Option<Instant>,
}

impl Crowding {
    /// A poll that began at `began` ended at `now`, having found its message or not: true when the
    /// caller should move to another CPU now. Not called when there was no poll (a budget of zero),
    /// which says nothing either way.
    pub fn polled(&mut self, found: bool, began: Instant, now: Instant) -> bool {
        if found {
            self.count = 0;
            self.missed = None;
            self.reach = None;
            return false;
        }
        self.missed = Some(began);
        let long_enough = self
            .reach
            .take()
            .is_some_and(|r| now.saturating_duration_since(began) >= r);
        if !long_enough {
            return false;
        }
        self.count += 1;
        if self.count < CROWDED_TIMES
            || self
                .moved
                .is_some_and(|m| now.saturating_duration_since(m) < MOVE_EVERY)
        {
            return false;
        }
        self.count = 0;
        self.moved = Some(now);
        true
    }

    /// The message came at `now`, while the caller slept for it.
    pub fn woken(&mut self, now: Instant) {
        if let Some(began) = self.missed.take() {
            self.reach = Some(now.saturating_duration_since(began));
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

    /// A poll of `len` from `t` that found nothing, then the message `gap` after its end.
    fn miss(c: &mut Crowding, t: Instant, len: u64, gap: u64) -> (bool, Instant) {
        let end = t + Duration::from_micros(len);
        let mv = c.polled(false, t, end);
        let next = end + Duration::from_micros(gap);
        c.woken(next);
        (mv, next)
    }

    #[test]
    fn polls_long_enough_for_the_last_message_that_miss_twice_in_a_row_say_move_once_per_period() {
        let mut c = Crowding::default();
        let t = Instant::now();
        // A peer that sends 10 µs after each poll ends, however long: behind the poll, on its CPU.
        let (mv, t) = miss(&mut c, t, 50, 10);
        assert!(!mv, "the first miss says nothing: there was no pace to go by");
        // Shorter than the last message's 60 µs: it could not have found it.
        let (mv, t) = miss(&mut c, t, 25, 10);
        assert!(!mv);
        let (mv, t) = miss(&mut c, t, 50, 10);
        assert!(!mv, "one poll of 50 µs missed a peer that took 35");
        let (mv, t) = miss(&mut c, t, 25, 10);
        assert!(!mv);
        let (mv, t) = miss(&mut c, t, 50, 10);
        assert!(mv, "a second one: move");
        // Still crowded, but not again before MOVE_EVERY.
        let mut t = t;
        for _ in 0..4 {
            let (a, n) = miss(&mut c, t, 25, 10);
            let (b, n) = miss(&mut c, n, 50, 10);
            assert!(!a && !b);
            t = n;
        }
        let t = t + MOVE_EVERY;
        let (_, t) = miss(&mut c, t, 25, 10);
        let (mv, _) = miss(&mut c, t, 50, 10);
        assert!(mv, "once the period is over");
    }

    #[test]
    fn a_peer_that_slowed_down_or_a_poll_that_found_its_message_says_nothing() {
        let mut c = Crowding::default();
        let t = Instant::now();
        // A peer on its own CPU that took 70 µs, then 90, then 120: every poll of 50 misses.
        let (_, t) = miss(&mut c, t, 50, 20);
        let (_, t) = miss(&mut c, t, 50, 40);
        let (mv, t) = miss(&mut c, t, 50, 70);
        assert!(!mv, "polls shorter than the peer's last pace prove nothing");
        // Long enough once, then a poll that finds: the count starts again.
        let (mv, t) = miss(&mut c, t, 200, 10);
        assert!(!mv);
        assert!(!c.polled(true, t, t + Duration::from_micros(5)));
        let t = t + Duration::from_micros(5);
        let (mv, t) = miss(&mut c, t, 200, 10);
        assert!(!mv, "no pace since the poll that found its message");
        let (mv, t) = miss(&mut c, t, 250, 10);
        assert!(!mv, "one");
        let (mv, _) = miss(&mut c, t, 300, 10);
        assert!(mv, "two");
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
