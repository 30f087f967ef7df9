//! The bytes a client sends to vigild: length-prefixed frames of `ClientMsg`, the first of which must be
//! Hello (vigild closes the connection otherwise). Any input: an error for the connection, never a panic,
//! an abort or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_proto::ClientMsg;

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::read_connection::<ClientMsg>(data, |m| matches!(m, ClientMsg::Hello { .. }));
});
