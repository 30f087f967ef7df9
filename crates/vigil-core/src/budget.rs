//! The restart budget (at most N restarts within a period) and the optional backoff between restarts.

use std::time::Duration;

use crate::time::Timestamp;

/// How many restarts a tag may have within its period: `None` means no limit (`-1` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries(pub Option<u32>);

impl Retries {
    /// From the pmfadm convention: -1 is unlimited, 0 never restarts, N restarts N times.
    pub fn from_i64(n: i64) -> Option<Retries> {
        match n {
            -1 => Some(Retries(None)),
            0..=1_000_000_000 => Some(Retries(Some(n as u32))),
            _ => None,
        }
    }

    pub fn to_i64(self) -> i64 {
        self.0.map_or(-1, i64::from)
    }
}

/// The sliding window over which restarts are counted: `None` means forever (`-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Option<Duration>);

impl Period {
    /// -1 means no limit; otherwise a number of seconds, at least 1.
    pub fn from_secs_i64(n: i64) -> Option<Period> {
        match n {
            -1 => Some(Period(None)),
            1..=31_536_000_000 => Some(Period(Some(Duration::from_secs(n as u64)))),
            _ => None,
        }
    }

    pub fn to_secs_i64(self) -> i64 {
        self.0.map_or(-1, |d| d.as_secs() as i64)
    }
}

/// The record of restarts that counted against the budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartBudget {
    /// When each counted restart happened, oldest first.
    pub history: Vec<Timestamp>,
}

impl RestartBudget {
    /// Restarts counted within the period that ends now.
    pub fn used(&self, period: Period, now: Timestamp) -> u32 {
        self.history.iter().filter(|t| in_window(**t, period, now)).count() as u32
    }

    /// Takes one restart from the budget if any is left, and says whether it did.
    pub fn try_consume(&mut self, retries: Retries, period: Period, now: Timestamp) -> bool {
        self.history.retain(|t| in_window(*t, period, now));
        let allowed = match retries.0 {
            None => true,
            Some(max) => (self.history.len() as u32) < max,
        };
        if allowed {
            self.history.push(now);
            // An unlimited budget must not grow without bound: only the count within the window matters,
            // and with no window only the count is shown, so keep a bounded tail.
            if self.history.len() > 10_000 {
                self.history.drain(..self.history.len() - 10_000);
            }
        }
        allowed
    }

    pub fn reset(&mut self) {
        self.history.clear();
    }
}

fn in_window(t: Timestamp, period: Period, now: Timestamp) -> bool {
    match period.0 {
        None => true,
        Some(p) => now.since(t) < p,
    }
}

/// Exponential backoff between automatic restarts: `min`, `2*min`, `4*min`, ... capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Parses `MIN:MAX` in seconds (fractions allowed), with 0 <= MIN <= MAX <= one day.
    pub fn parse(s: &str) -> Result<Backoff, String> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("backoff {s:?} is not MIN:MAX in seconds"))?;
        let secs = |v: &str| -> Result<Duration, String> {
            let f: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("backoff {s:?}: {v:?} is not a number of seconds"))?;
            if !(0.0..=86_400.0).contains(&f) {
                return Err(format!("backoff {s:?}: {v} is outside 0..=86400 seconds"));
            }
            Ok(Duration::from_secs_f64(f))
        };
        let (min, max) = (secs(a)?, secs(b)?);
        if min > max {
            return Err(format!("backoff {s:?}: MIN is larger than MAX"));
        }
        Ok(Backoff { min, max })
    }

    /// The delay before the `n`th consecutive quick restart (n >= 1).
    pub fn delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(30);
        self.min.saturating_mul(1u32 << shift).min(self.max)
    }

    /// A run that lasted at least `max` is not a quick failure: the backoff starts again from `min`.
    pub fn resets_after(&self, ran_for: Duration) -> bool {
        ran_for >= self.max.max(Duration::from_secs(1))
    }
}

/// Restart-storm throttling: a tag whose instances keep dying within `quick` of their start is restarted
/// at once the first times (restart latency matters), then with a growing delay, so that a command that
/// cannot stay up costs neither the CPU nor the event history. A run that lasts `quick` or longer ends
/// the streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storm {
    /// The quick death (counted from 1) whose restart is the first to wait `min`.
    pub after: u32,
    pub min: Duration,
    pub max: Duration,
    /// A run shorter than this is a quick death.
    pub quick: Duration,
}

impl Default for Storm {
    fn default() -> Storm {
        Storm {
            after: 5,
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
            quick: Duration::from_secs(1),
        }
    }
}

impl Storm {
    /// Parses `off`, or `AFTER:MIN:MAX[:QUICK]` (a count, then seconds with fractions allowed):
    /// `5:0.1:30:1` is the default.
    pub fn parse(s: &str) -> Result<Option<Storm>, String> {
        if s.trim() == "off" {
            return Ok(None);
        }
        let parts: Vec<&str> = s.split(':').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(format!(
                "storm {s:?} is neither off nor AFTER:MIN:MAX[:QUICK] (a count, then seconds)"
            ));
        }
        let after: u32 = parts[0]
            .trim()
            .parse()
            .map_err(|_| format!("storm {s:?}: AFTER {:?} is not a count", parts[0]))?;
        if !(1..=1_000_000).contains(&after) {
            return Err(format!("storm {s:?}: AFTER {after} is outside 1..=1000000"));
        }
        let secs = |what: &str, v: &str| -> Result<Duration, String> {
            let f: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("storm {s:?}: {what} {v:?} is not a number of seconds"))?;
            if !(0.001..=86_400.0).contains(&f) {
                return Err(format!("storm {s:?}: {what} {v} is outside 0.001..=86400 seconds"));
            }
            Ok(Duration::from_secs_f64(f))
        };
        let (min, max) = (secs("MIN", parts[1])?, secs("MAX", parts[2])?);
        if min > max {
            return Err(format!("storm {s:?}: MIN is larger than MAX"));
        }
        let quick = match parts.get(3) {
            Some(q) => secs("QUICK", q)?,
            None => Storm::default().quick,
        };
        Ok(Some(Storm { after, min, max, quick }))
    }

    /// The delay before the restart that follows the `n`th quick death in a row (n >= 1): none before
    /// `after`, then `min`, `2*min`, ... capped at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        if n < self.after {
            return Duration::ZERO;
        }
        let shift = (n - self.after).min(30);
        self.min.saturating_mul(1u32 << shift).min(self.max)
    }

    /// Whether a run of this length counts as a quick death.
    pub fn is_quick(&self, ran_for: Duration) -> bool {
        ran_for < self.quick
    }

    /// The delay before the `n`th retry in a row of a start that failed for want of a resource (EMFILE,
    /// ENOMEM...): `min`, `2*min`, ... capped at `max`, from the first.
    pub fn retry_delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(30);
        self.min.saturating_mul(1u32 << shift).min(self.max)
    }
}

impl std::fmt::Display for Storm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.after,
            self.min.as_secs_f64(),
            self.max.as_secs_f64(),
            self.quick.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    #[test]
    fn budget_within_period() {
        let (r, p) = (Retries(Some(2)), Period::from_secs_i64(10).unwrap());
        let mut b = RestartBudget::default();
        assert!(b.try_consume(r, p, t(0)));
        assert!(b.try_consume(r, p, t(1)));
        assert!(!b.try_consume(r, p, t(2)), "third restart within 10 s is over budget");
        assert_eq!(b.used(p, t(2)), 2);
        assert_eq!(b.used(p, t(10)), 1, "the first restart has left the window");
        assert!(b.try_consume(r, p, t(10)));
        assert!(!b.try_consume(r, p, t(10)));
    }

    #[test]
    fn budget_edges() {
        let mut b = RestartBudget::default();
        assert!(
            !b.try_consume(Retries(Some(0)), Period(None), t(0)),
            "0 retries never restarts"
        );
        for i in 0..100 {
            assert!(b.try_consume(Retries(None), Period(None), t(i)), "-1 is unlimited");
        }
        assert_eq!(Retries::from_i64(-2), None);
        assert_eq!(Period::from_secs_i64(0), None);
        assert_eq!(Period::from_secs_i64(-1), Some(Period(None)));
    }

    #[test]
    fn backoff() {
        let b = Backoff::parse("0.5:4").unwrap();
        let delays: Vec<u128> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
        assert!(Backoff::parse("5:1").is_err());
        assert!(Backoff::parse("x:1").is_err());
        assert!(Backoff::parse("1").is_err());
    }

    #[test]
    fn storm_delays_grow_after_the_first_quick_deaths() {
        let s = Storm::default();
        let delays: Vec<u128> = (1..=17).map(|n| s.delay(n).as_millis()).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000, 30000]
        );
        assert_eq!(s.delay(u32::MAX), Duration::from_secs(30), "no overflow");
        assert!(s.is_quick(Duration::from_millis(999)) && !s.is_quick(Duration::from_secs(1)));
        assert_eq!(s.retry_delay(1), Duration::from_millis(100));
        assert_eq!(s.retry_delay(3), Duration::from_millis(400));
        assert_eq!(s.retry_delay(100), Duration::from_secs(30));
    }

    #[test]
    fn storm_parse() {
        assert_eq!(Storm::parse("off"), Ok(None));
        assert_eq!(Storm::parse("5:0.1:30:1"), Ok(Some(Storm::default())));
        assert_eq!(Storm::parse("5:0.1:30"), Ok(Some(Storm::default())));
        assert_eq!(Storm::parse(&Storm::default().to_string()), Ok(Some(Storm::default())));
        for bad in [
            "",
            "5",
            "5:1",
            "0:1:2",
            "x:1:2",
            "5:2:1",
            "5:0:1",
            "5:1:100000",
            "5:1:2:3:4",
        ] {
            let e = Storm::parse(bad).unwrap_err();
            assert!(e.contains("storm"), "{bad}: {e}");
        }
    }
}
