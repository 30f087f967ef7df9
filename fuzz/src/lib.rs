//! What the fuzz targets share: reading a connection's bytes as the peer would, and the round-trip check
//! of every decoded message.

use std::sync::Once;

use serde::{de::DeserializeOwned, Serialize};

/// Makes a SIGSEGV (a stack overflow, above all) a crash that libFuzzer reports and saves.
///
/// Without a Rust `main` (libFuzzer's is C++) nothing gives the main thread an alternate signal stack:
/// an overflow then faults again in the signal handler and the kernel kills the fuzzer before it writes
/// the input down. This handler runs on a stack of its own, says what happened, and aborts, which
/// libFuzzer catches (the input is saved under `-artifact_prefix`). Called at the start of every target;
/// it acts once, after libFuzzer has installed its own handlers.
pub fn catch_segv() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        const SIZE: usize = 1 << 20;
        // The alternate stack lives as long as the process.
        let stack: &'static mut [u8] = Vec::leak(vec![0u8; SIZE]);
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: SIZE,
        };
        // SAFETY: `ss` describes memory that is never freed; a zeroed sigaction is a valid start, filled
        // with a handler of the SA_SIGINFO signature before it is installed.
        unsafe {
            assert_eq!(libc::sigaltstack(&ss, std::ptr::null_mut()), 0, "sigaltstack");
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_segv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()),
                0,
                "sigaction"
            );
        }
    });
}

extern "C" fn on_segv(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    const MSG: &[u8] =
        b"\n==vigil-fuzz== SIGSEGV: a stack overflow (input too deeply nested?) or a bad memory access\n";
    // SAFETY: write(2) and abort(3) are async-signal-safe; MSG is a static buffer.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::abort();
    }
}

/// Reads `data` as the bytes of one connection: frames until the first error, as the reader of a real
/// connection does (a bad frame ends the connection). `first` sees the first message and says whether the
/// connection goes on (vigild closes a connection whose first message is not Hello); every decoded
/// message is checked by [`round_trip`].
pub fn read_connection<T>(data: &[u8], first: impl FnOnce(&T) -> bool)
where
    T: Serialize + DeserializeOwned,
{
    catch_segv();
    let mut r = data;
    let Ok(msg) = vigil_proto::read_msg::<T, _>(&mut r) else {
        return;
    };
    round_trip(&msg);
    if !first(&msg) {
        return;
    }
    while let Ok(msg) = vigil_proto::read_msg::<T, _>(&mut r) {
        round_trip(&msg);
    }
}

/// A decoded message encodes to a frame that decodes to a message with the very same encoding: what one
/// side sends, the other reads back whole. Bytes are compared, not values, so that a NaN in a CMAP value
/// compares equal to itself.
pub fn round_trip<T: Serialize + DeserializeOwned>(msg: &T) {
    let frame = vigil_proto::encode(msg).expect("a decoded message encodes");
    let back: T = vigil_proto::decode(&frame[vigil_proto::HEADER_LEN..]).expect("an encoded message decodes");
    let again = vigil_proto::encode(&back).expect("a decoded message encodes");
    assert_eq!(frame, again, "the frame changed on a round trip");
}
