//! Typed errors with stable numeric codes, so C shims and scripts can map them without parsing text.

use serde::{Deserialize, Serialize};

/// The kind of failure. The numbers are part of the protocol and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
pub enum ErrorCode {
    /// A value out of range, a malformed name, an empty command.
    InvalidArgument,
    /// No such tag (or other named object).
    NotFound,
    /// The object exists and is running already.
    AlreadyExists,
    /// The caller may not do this to an object owned by someone else.
    PermissionDenied,
    /// Try again: the object is changing state.
    Busy,
    /// No such process.
    NoProcess,
    /// The command could not be executed.
    ExecFailed,
    /// A wait ran out.
    Timeout,
    /// Not supported by this daemon.
    Unsupported,
    /// A limit was reached.
    LimitExceeded,
    /// The daemon failed internally (the store, the OS); the message says what.
    Internal,
    /// The peer broke the protocol.
    Protocol,
    /// A compare-and-set found another value.
    Conflict,
    /// Cluster mode: the node a request is for is down, unknown, or did not answer in time.
    NodeDown,
    /// A code from a newer daemon that this client does not know.
    Unknown(u16),
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> ErrorCode {
        match n {
            1 => ErrorCode::InvalidArgument,
            2 => ErrorCode::NotFound,
            3 => ErrorCode::AlreadyExists,
            4 => ErrorCode::PermissionDenied,
            5 => ErrorCode::Busy,
            6 => ErrorCode::NoProcess,
            7 => ErrorCode::ExecFailed,
            8 => ErrorCode::Timeout,
            9 => ErrorCode::Unsupported,
            10 => ErrorCode::LimitExceeded,
            11 => ErrorCode::Internal,
            12 => ErrorCode::Protocol,
            13 => ErrorCode::Conflict,
            14 => ErrorCode::NodeDown,
            n => ErrorCode::Unknown(n),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        match c {
            ErrorCode::InvalidArgument => 1,
            ErrorCode::NotFound => 2,
            ErrorCode::AlreadyExists => 3,
            ErrorCode::PermissionDenied => 4,
            ErrorCode::Busy => 5,
            ErrorCode::NoProcess => 6,
            ErrorCode::ExecFailed => 7,
            ErrorCode::Timeout => 8,
            ErrorCode::Unsupported => 9,
            ErrorCode::LimitExceeded => 10,
            ErrorCode::Internal => 11,
            ErrorCode::Protocol => 12,
            ErrorCode::Conflict => 13,
            ErrorCode::NodeDown => 14,
            ErrorCode::Unknown(n) => n,
        }
    }
}

/// A failed request: what kind, and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for n in 0..20u16 {
            assert_eq!(u16::from(ErrorCode::from(n)), n);
        }
    }
}
