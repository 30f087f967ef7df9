//! The bytes a client sends to vigild: length-prefixed frames of `ClientMsg`, the first of which must be
//! Hello (vigild closes the connection otherwise). Any input: an error for the connection, never a panic,
//! an abort or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_proto::ClientMsg;

fuzz_target!(|data: &[u8]| {
    // vigild's own first read: a frame of at most MAX_HELLO_LEN, decoded as a Hello and nothing else.
    if let Some(header) = data.get(..vigil_proto::HEADER_LEN) {
        let header: [u8; vigil_proto::HEADER_LEN] = header.try_into().expect("a header's length");
        if let Ok(len) = vigil_proto::frame_payload_len_max(header, vigil_proto::MAX_HELLO_LEN) {
            if let Some(payload) = data.get(vigil_proto::HEADER_LEN..vigil_proto::HEADER_LEN + len) {
                let _ = vigil_proto::decode_hello(payload);
            }
        }
    }
    // And the whole decoder, from the first frame on: every message type, however it arrives.
    vigil_fuzz::read_connection::<ClientMsg>(data, |m| matches!(m, ClientMsg::Hello { .. }));
});
