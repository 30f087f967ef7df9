//! libsam's C entry points called as a hostile or careless C program would: any integer, NULL or not,
//! any size within the buffer it passes, in any order, with no vigild to reach. Every call answers a
//! `cs_error_t` and never panics, aborts or writes past what it was given.
//!
//! `sam_register` forks a supervisor and `sam_finalize` ends SAM for the life of the process, so neither
//! is called: the SAM state (one per process, as in corosync's library) goes from not initialized to
//! initialized at the first accepted `sam_initialize` and stays there, and each input's calls meet the
//! state the earlier ones left.
#![no_main]

use std::ffi::{c_int, c_uint, c_void};
use std::sync::Once;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

// The versioned entry points are symbol aliases (sam.map), not Rust items: link them by name. Using
// `sam` (the library's Rust crate) below links its objects, which define them.
extern "C" {
    fn sam_start() -> c_int;
    fn sam_stop() -> c_int;
    fn sam_hc_send() -> c_int;
    fn sam_hc_callback_register(cb: Option<extern "C" fn() -> c_int>) -> c_int;
}

const CS_OK: c_int = 1;

extern "C" fn healthy() -> c_int {
    0
}

fn no_daemon() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // No vigild: the calls that need one must say so (CS_ERR_LIBRARY), not hang or crash.
        std::env::set_var("VIGIL_SOCKET", "/nonexistent/vigil-fuzz/vigild.sock");
    });
}

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::catch_segv();
    no_daemon();
    let _ = run(&mut Unstructured::new(data));
});

fn run(u: &mut Unstructured) -> Result<()> {
    let mut buf = vec![0u8; 4096];
    for _ in 0..u.int_in_range(0..=16u32)? {
        let rc = match u.int_in_range(0..=10u8)? {
            0 => sam::sam_initialize(u.arbitrary::<c_int>()?, u.arbitrary::<c_uint>()?),
            1 => sam::sam_warn_signal_set(u.arbitrary()?),
            2 => {
                let len = u.int_in_range(0..=buf.len())?;
                u.fill_buffer(&mut buf[..len])?;
                let p = if u.arbitrary()? {
                    std::ptr::null()
                } else {
                    buf.as_ptr().cast::<c_void>()
                };
                // SAFETY: NULL, or `len` readable bytes of `buf`.
                unsafe { sam::sam_data_store(p, len) }
            }
            3 => {
                let mut size = usize::MAX;
                let p: *mut usize = if u.arbitrary()? {
                    std::ptr::null_mut()
                } else {
                    &mut size
                };
                // SAFETY: NULL or a writable size_t.
                let rc = unsafe { sam::sam_data_getsize(p) };
                if rc == CS_OK {
                    assert!(size <= vigil_proto::SAM_DATA_MAX, "getsize answered {size}");
                }
                rc
            }
            4 => {
                let len = u.int_in_range(0..=buf.len())?;
                let (mine, guard) = buf.split_at_mut(len);
                let canary = guard.first().copied();
                let p = if u.arbitrary()? {
                    std::ptr::null_mut()
                } else {
                    mine.as_mut_ptr().cast::<c_void>()
                };
                // SAFETY: NULL, or `len` writable bytes of `buf`.
                let rc = unsafe { sam::sam_data_restore(p, len) };
                assert_eq!(guard.first().copied(), canary, "sam_data_restore wrote past its buffer");
                rc
            }
            5 => sam::sam_mark_failed(),
            // SAFETY (6 to 9): no arguments but a function pointer of the right type.
            6 => unsafe { sam_start() },
            7 => unsafe { sam_stop() },
            8 => unsafe { sam_hc_send() },
            9 => unsafe { sam_hc_callback_register(if u.arbitrary()? { Some(healthy) } else { None }) },
            _ => sam::sam_warn_signal_set(u.int_in_range(-2..=66)?),
        };
        assert!((1..=31).contains(&rc), "not a cs_error_t: {rc}");
    }
    Ok(())
}
