//! A signal number the kernel has, checked once where it enters vigil.
//!
//! Linux numbers its signals 1 to 64 (SIGRTMAX). A number from a request, a config file or the store is
//! made a [`Signal`] at that edge, with an error naming the bad value; past it, the rules and vigild
//! carry the checked type and never test the range again.

/// A signal number from 1 to 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// The number is not a signal the kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a signal number (1-64)")]
pub struct BadSignal(pub i32);

impl Signal {
    /// The highest signal number (SIGRTMAX on Linux).
    pub const MAX: i32 = 64;
    pub const KILL: Signal = Signal(9);
    pub const TERM: Signal = Signal(15);

    pub fn new(number: i32) -> Result<Signal, BadSignal> {
        if (1..=Self::MAX).contains(&number) {
            Ok(Signal(number))
        } else {
            Err(BadSignal(number))
        }
    }

    /// The number, for the kernel and the wire.
    pub fn number(self) -> i32 {
        self.0
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<i32> for Signal {
    type Error = BadSignal;

    fn try_from(number: i32) -> Result<Signal, BadSignal> {
        Signal::new(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_signal_is_one_and_nothing_else_is() {
        assert_eq!(Signal::new(1).map(Signal::number), Ok(1));
        assert_eq!(Signal::new(64).map(Signal::number), Ok(64));
        assert_eq!(Signal::new(15), Ok(Signal::TERM));
        assert_eq!(Signal::new(9), Ok(Signal::KILL));
        for bad in [0, 65, -1, -15, i32::MIN, i32::MAX] {
            assert_eq!(Signal::new(bad), Err(BadSignal(bad)));
        }
    }

    #[test]
    fn the_error_names_the_bad_value_and_the_range() {
        assert_eq!(
            Signal::new(0).unwrap_err().to_string(),
            "0 is not a signal number (1-64)"
        );
        assert_eq!(
            Signal::new(99).unwrap_err().to_string(),
            "99 is not a signal number (1-64)"
        );
    }
}
