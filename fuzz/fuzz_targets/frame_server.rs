//! The bytes a client reads from its server: frames of `ServerMsg`, the first of which must be Welcome.
//! The server may be an impostor (another user's socket): any input is an error for the client, never a
//! panic, an abort or a stack overflow in the program that links the client (vigil, pmfadm, the C
//! libraries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_proto::ServerMsg;

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::read_connection::<ServerMsg>(data, |m| matches!(m, ServerMsg::Welcome { .. }));
});
