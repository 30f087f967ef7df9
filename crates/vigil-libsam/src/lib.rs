//! libsam.so.4: corosync's `sam.h` for C programs, on vigil's SAM (`vigil_client::sam`).
//!
//! Every function keeps corosync's signature, its argument checks in corosync's order, and its return
//! codes; the semantics (fork model, supervisor, policies, data, callbacks, CMAP and QUORUM flags) are
//! vigil-client's, shared with Rust programs. Symbol versions follow Debian's library: six functions are
//! `@COROSYNC_SAM_1.0` (defined below as aliases, see `versioned!`), the others unversioned.

// A C ABI needs raw pointers and exported symbols: this crate allows unsafe code, each block with a
// `// SAFETY:` line (ARCHITECTURE.md names the crates that may).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, c_void};
use std::sync::Arc;

use vigil_client::sam::{self, SamError};

/// `cs_error_t` values.
const CS_OK: c_int = 1;
const CS_ERR_INVALID_PARAM: c_int = 7;

fn cs(r: Result<(), SamError>) -> c_int {
    match r {
        Ok(()) => CS_OK,
        Err(e) => e.cs_error(),
    }
}

/// Exports `$name` as an alias of the Rust function `$imp`, so that the version script (`sam.map`), not
/// rustc's list of exports, decides the symbol's version.
macro_rules! versioned {
    ($name:literal, $imp:path) => {
        std::arch::global_asm!(
            concat!(".globl ", $name),
            concat!(".type ", $name, ", @function"),
            concat!(".set ", $name, ", {f}"),
            f = sym $imp,
        );
    };
}

versioned!("sam_start", start);
versioned!("sam_stop", stop);
versioned!("sam_register", register);
versioned!("sam_hc_send", hc_send);
versioned!("sam_hc_callback_register", hc_callback_register);
versioned!("sam_finalize", finalize);

// The version node's own symbol, absolute and zero, as GNU ld exports it in Debian's library: with it
// `objdump -T` lists exactly Debian's symbols (the linker rustc uses does not add it).
std::arch::global_asm!(
    ".globl \"COROSYNC_SAM_1.0\"",
    ".type \"COROSYNC_SAM_1.0\", @object",
    ".set \"COROSYNC_SAM_1.0\", 0",
);

/// `cs_error_t sam_initialize(int time_interval, sam_recovery_policy_t recovery_policy)`
#[unsafe(no_mangle)]
pub extern "C" fn sam_initialize(time_interval: c_int, recovery_policy: c_uint) -> c_int {
    cs(sam::initialize(time_interval, recovery_policy))
}

extern "C" fn finalize() -> c_int {
    cs(sam::finalize())
}

extern "C" fn start() -> c_int {
    cs(sam::start())
}

extern "C" fn stop() -> c_int {
    cs(sam::stop())
}

/// `cs_error_t sam_warn_signal_set(int warn_signal)`
#[unsafe(no_mangle)]
pub extern "C" fn sam_warn_signal_set(warn_signal: c_int) -> c_int {
    cs(sam::warn_signal_set(warn_signal))
}

/// `cs_error_t sam_register(unsigned int *instance_id)`: instance_id may be NULL.
///
/// # Safety
/// `instance_id` is NULL or points to a writable `unsigned int`.
unsafe extern "C" fn register(instance_id: *mut c_uint) -> c_int {
    // corosync's sam_register forks whatever threads the process has, and so does this one: the
    // application's other threads are the C caller's to mind, as with corosync's library.
    let forked = sam::register_forking(|| {
        // SAFETY: in the child, vigil-client's `register` takes only the SAM lock, which this thread holds
        // across the fork, and frees memory (glibc keeps malloc usable in the child) before it returns to
        // the caller; what the caller's code does in the child afterwards is its own, as with fork(2) in C.
        // The supervisor ends its reporter thread (if it needed one) before each later fork.
        unsafe { sam::fork() }
    });
    match forked {
        Ok(n) => {
            if !instance_id.is_null() {
                // SAFETY: the caller passes NULL or a pointer to an unsigned int it owns (sam.h).
                unsafe { instance_id.write(n) };
            }
            CS_OK
        }
        Err(e) => e.cs_error(),
    }
}

extern "C" fn hc_send() -> c_int {
    cs(sam::hc_send())
}

/// `cs_error_t sam_hc_callback_register(sam_hc_callback_t cb)`: NULL switches back to `sam_hc_send`.
extern "C" fn hc_callback_register(cb: Option<extern "C" fn() -> c_int>) -> c_int {
    let cb = cb.map(|f| -> sam::HcCallback { Arc::new(move || f()) });
    cs(sam::hc_callback_register(cb))
}

/// `cs_error_t sam_data_getsize(size_t *size)`: a NULL size is checked first, as corosync does.
///
/// # Safety
/// `size` is NULL or points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sam_data_getsize(size: *mut usize) -> c_int {
    if size.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    match sam::data_getsize() {
        Ok(n) => {
            // SAFETY: checked non-NULL; the caller passes a pointer to a size_t it owns.
            unsafe { size.write(n) };
            CS_OK
        }
        Err(e) => e.cs_error(),
    }
}

/// `cs_error_t sam_data_restore(void *data, size_t size)`: a NULL buffer is checked first.
///
/// # Safety
/// `data` is NULL or points to `size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sam_data_restore(data: *mut c_void, size: usize) -> c_int {
    if data.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    // SAFETY: the caller passes a buffer of at least `size` writable bytes (sam.h's contract).
    let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), size) };
    match sam::data_restore(buf) {
        Ok(_) => CS_OK,
        Err(e) => e.cs_error(),
    }
}

/// `cs_error_t sam_data_store(const void *data, size_t size)`: NULL (or size 0) deletes the data.
///
/// # Safety
/// `data` is NULL or points to `size` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sam_data_store(data: *const c_void, size: usize) -> c_int {
    let d = if data.is_null() {
        None
    } else {
        // SAFETY: the caller passes `size` readable bytes at `data` (sam.h's contract).
        Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) })
    };
    cs(sam::data_store(d))
}

/// `cs_error_t sam_mark_failed(void)`
#[unsafe(no_mangle)]
pub extern "C" fn sam_mark_failed() -> c_int {
    cs(sam::mark_failed())
}
