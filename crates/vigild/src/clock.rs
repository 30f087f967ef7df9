//! The clock. The rules of vigil-core take the time as an argument; vigild reads it here, in one place.

use std::time::{SystemTime, UNIX_EPOCH};

use vigil_core::Timestamp;

/// The wall clock in ms since the epoch (0 before it).
pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}
