//! Time as a value: milliseconds since the Unix epoch, passed into every rule.

use std::time::Duration;

/// A wall-clock instant in milliseconds since the Unix epoch.
///
/// Wall-clock rather than monotonic because restart histories are persisted and must keep their meaning
/// across a restart of vigild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}
