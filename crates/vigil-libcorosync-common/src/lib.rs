//! libcorosync_common.so.4: the three functions `corotypes.h` declares, which corosync's programs link
//! from its common library (`-lcorosync_common`): `cs_strerror`, `qb_to_cs_error`, `hdb_error_to_cs`.
//! Each answers what corosync's `common_lib/error_conversion.c` answers, text for text as Debian's
//! corosync 3.1 library prints them (older corosync put a blank after some names; 3.1's has none).

// The C ABI's exported symbols (`#[no_mangle]`) count as unsafe code: this crate allows it, and has no
// unsafe block (ARCHITECTURE.md names the crates that may).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr};

// `cs_error_t` (corotypes.h).
const CS_OK: c_int = 1;
const CS_ERR_LIBRARY: c_int = 2;
const CS_ERR_VERSION: c_int = 3;
const CS_ERR_INIT: c_int = 4;
const CS_ERR_TIMEOUT: c_int = 5;
const CS_ERR_TRY_AGAIN: c_int = 6;
const CS_ERR_INVALID_PARAM: c_int = 7;
const CS_ERR_NO_MEMORY: c_int = 8;
const CS_ERR_BAD_HANDLE: c_int = 9;
const CS_ERR_BUSY: c_int = 10;
const CS_ERR_ACCESS: c_int = 11;
const CS_ERR_NOT_EXIST: c_int = 12;
const CS_ERR_NAME_TOO_LONG: c_int = 13;
const CS_ERR_EXIST: c_int = 14;
const CS_ERR_NO_SPACE: c_int = 15;
const CS_ERR_INTERRUPT: c_int = 16;
const CS_ERR_NAME_NOT_FOUND: c_int = 17;
const CS_ERR_NO_RESOURCES: c_int = 18;
const CS_ERR_NOT_SUPPORTED: c_int = 19;
const CS_ERR_BAD_OPERATION: c_int = 20;
const CS_ERR_FAILED_OPERATION: c_int = 21;
const CS_ERR_MESSAGE_ERROR: c_int = 22;
const CS_ERR_QUEUE_FULL: c_int = 23;
const CS_ERR_QUEUE_NOT_AVAILABLE: c_int = 24;
const CS_ERR_BAD_FLAGS: c_int = 25;
const CS_ERR_TOO_BIG: c_int = 26;
const CS_ERR_NO_SECTIONS: c_int = 27;
const CS_ERR_CONTEXT_NOT_FOUND: c_int = 28;
const CS_ERR_TOO_MANY_GROUPS: c_int = 30;
const CS_ERR_SECURITY: c_int = 100;

/// `cs_error_t qb_to_cs_error(int result)`: a libqb result (0 or more: success; else a negated errno)
/// as a `cs_error_t`.
#[unsafe(no_mangle)]
pub extern "C" fn qb_to_cs_error(result: c_int) -> c_int {
    if result >= 0 {
        return CS_OK;
    }
    match result.wrapping_neg() {
        libc::EBADF => CS_ERR_BAD_HANDLE,
        libc::ENOMEM => CS_ERR_NO_MEMORY,
        // ENOMSG: Debian's 3.1 library answers it so too (a test compares every errno).
        libc::ENOBUFS | libc::ETIMEDOUT | libc::EAGAIN | libc::ENOMSG => CS_ERR_TRY_AGAIN,
        libc::EBADE => CS_ERR_FAILED_OPERATION,
        libc::ETIME => CS_ERR_TIMEOUT,
        libc::EINVAL => CS_ERR_INVALID_PARAM,
        libc::EBUSY => CS_ERR_BUSY,
        libc::EACCES => CS_ERR_ACCESS,
        libc::EOVERFLOW => CS_ERR_NAME_TOO_LONG,
        libc::EEXIST => CS_ERR_EXIST,
        libc::ENOSPC => CS_ERR_NO_SPACE,
        libc::EINTR => CS_ERR_INTERRUPT,
        libc::ENOENT | libc::ENODEV => CS_ERR_NOT_EXIST,
        libc::ENOSYS | libc::ENOTSUP => CS_ERR_NOT_SUPPORTED,
        libc::EBADMSG => CS_ERR_MESSAGE_ERROR,
        libc::EMSGSIZE | libc::E2BIG => CS_ERR_TOO_BIG,
        _ => CS_ERR_LIBRARY,
    }
}

/// `cs_error_t hdb_error_to_cs(int res)`: a handle database result (0, or a negated errno) as a
/// `cs_error_t`.
#[unsafe(no_mangle)]
pub extern "C" fn hdb_error_to_cs(res: c_int) -> c_int {
    match res.wrapping_neg() {
        0 => CS_OK,
        libc::EBADF => CS_ERR_BAD_HANDLE,
        libc::ENOMEM => CS_ERR_NO_MEMORY,
        libc::EMFILE => CS_ERR_NO_RESOURCES,
        libc::EACCES => CS_ERR_ACCESS,
        _ => CS_ERR_LIBRARY,
    }
}

fn text(err: c_int) -> &'static CStr {
    match err {
        CS_OK => c"success",
        CS_ERR_LIBRARY => c"CS_ERR_LIBRARY",
        CS_ERR_VERSION => c"CS_ERR_VERSION",
        CS_ERR_INIT => c"CS_ERR_INIT",
        CS_ERR_NO_MEMORY => c"CS_ERR_NO_MEMORY",
        CS_ERR_NAME_TOO_LONG => c"CS_ERR_NAME_TOO_LONG",
        CS_ERR_TIMEOUT => c"CS_ERR_TIMEOUT",
        CS_ERR_TRY_AGAIN => c"CS_ERR_TRY_AGAIN",
        CS_ERR_INVALID_PARAM => c"CS_ERR_INVALID_PARAM",
        CS_ERR_BAD_HANDLE => c"CS_ERR_BAD_HANDLE",
        CS_ERR_BUSY => c"CS_ERR_BUSY",
        CS_ERR_ACCESS => c"CS_ERR_ACCESS",
        CS_ERR_NOT_EXIST => c"CS_ERR_NOT_EXIST",
        CS_ERR_EXIST => c"CS_ERR_EXIST",
        CS_ERR_NO_SPACE => c"CS_ERR_NO_SPACE",
        CS_ERR_INTERRUPT => c"CS_ERR_INTERRUPT",
        CS_ERR_NAME_NOT_FOUND => c"CS_ERR_NAME_NOT_FOUND",
        CS_ERR_NO_RESOURCES => c"CS_ERR_NO_RESOURCES",
        CS_ERR_NOT_SUPPORTED => c"CS_ERR_NOT_SUPPORTED",
        CS_ERR_BAD_OPERATION => c"CS_ERR_BAD_OPERATION",
        CS_ERR_FAILED_OPERATION => c"CS_ERR_FAILED_OPERATION",
        CS_ERR_MESSAGE_ERROR => c"CS_ERR_MESSAGE_ERROR",
        CS_ERR_QUEUE_FULL => c"CS_ERR_QUEUE_FULL",
        CS_ERR_QUEUE_NOT_AVAILABLE => c"CS_ERR_QUEUE_NOT_AVAILABLE",
        CS_ERR_BAD_FLAGS => c"CS_ERR_BAD_FLAGS",
        CS_ERR_TOO_BIG => c"CS_ERR_TOO_BIG",
        CS_ERR_NO_SECTIONS => c"CS_ERR_NO_SECTIONS",
        CS_ERR_CONTEXT_NOT_FOUND => c"CS_ERR_CONTEXT_NOT_FOUND",
        CS_ERR_TOO_MANY_GROUPS => c"CS_ERR_TOO_MANY_GROUPS",
        CS_ERR_SECURITY => c"CS_ERR_SECURITY",
        _ => c"unknown error",
    }
}

/// `const char *cs_strerror(cs_error_t err)`: a static string, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn cs_strerror(err: c_int) -> *const c_char {
    text(err).as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_follow_corosync() {
        assert_eq!(qb_to_cs_error(0), CS_OK);
        assert_eq!(qb_to_cs_error(5), CS_OK);
        assert_eq!(qb_to_cs_error(-libc::EAGAIN), CS_ERR_TRY_AGAIN);
        assert_eq!(qb_to_cs_error(-libc::ENOTCONN), CS_ERR_LIBRARY);
        assert_eq!(qb_to_cs_error(i32::MIN), CS_ERR_LIBRARY);
        assert_eq!(hdb_error_to_cs(0), CS_OK);
        assert_eq!(hdb_error_to_cs(-libc::EMFILE), CS_ERR_NO_RESOURCES);
        assert_eq!(hdb_error_to_cs(7), CS_ERR_LIBRARY);
        assert_eq!(text(CS_OK), c"success");
        assert_eq!(text(CS_ERR_EXIST), c"CS_ERR_EXIST");
        assert_eq!(text(29), c"unknown error");
    }
}
