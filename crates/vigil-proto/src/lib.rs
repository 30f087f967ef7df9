//! vigil's wire protocol.
//!
//! A connection is a Unix stream. Every message is a frame: a 4-byte little-endian length, then that many
//! bytes of a postcard-encoded [`ClientMsg`] or [`ServerMsg`]. The client speaks first with
//! [`ClientMsg::Hello`]; the server answers [`ServerMsg::Welcome`] or closes the connection. Requests carry
//! an id that their response repeats, and the server may push [`ServerMsg::Event`]s at any time after a
//! subscription.
//!
//! Invariant: this crate knows nothing of vigil's rules or state; it is the shape of the bytes only.
//! New request variants are only ever appended, so older clients keep decoding.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

mod cmap;
mod error;
mod event;
mod frame;
pub mod json;
mod msg;
mod psm;
mod res;
mod sam;
mod signal;

pub use cmap::{CmapEntry, CmapMap, CmapNotification, CmapValue};
pub use error::{ErrorCode, WireError};
pub use event::name_matches;
pub use frame::{
    decode, decode_hello, encode, encode_into, payload_len as frame_payload_len,
    payload_len_max as frame_payload_len_max, read_msg, write_msg, FrameError, HEADER_LEN, MAX_FRAME_LEN,
    MAX_HELLO_LEN,
};
pub use msg::*;
pub use psm::{PSM_FL_ARGTRUNC, PSM_FL_EXIT, PSM_FL_UNREACHABLE};
pub use res::{LimitSpec, Resources, TagResources};
pub use sam::{SAM_DATA_MAX, SAM_POLICY_CMAP, SAM_POLICY_QUIT, SAM_POLICY_QUORUM, SAM_POLICY_RESTART};
pub use signal::{signal_from_str, signal_name};

/// The protocol version this crate speaks. A peer with another version is refused at the handshake.
/// 2: tags have a watchdog and probes (`RunSpec` and `TagStatus` grew fields).
/// 3: tags have supervision settings (`TagStatus` grew fields; new requests carry them).
pub const PROTOCOL_VERSION: u32 = 3;
