//! libcmap.so.4: corosync's `cmap.h` for C programs, on the CMAP vigild hosts (through vigil-client).
//!
//! Every function keeps corosync's signature, its argument checks in the order corosync's library makes
//! them (NULL pointers and over-long names before the handle, then the handle, then the server's
//! answer), and its return codes; vigild's answers become `cs_error_t` in one table (`errors.rs`).
//! Handles are process-wide and thread-safe (`handle.rs`); notifications reach a program only through
//! `cmap_dispatch`, and `cmap_fd_get`'s fd polls readable whenever one waits. Symbol versions follow
//! Debian's library: `cmap_initialize` is `@COROSYNC_CMAP_1.0` (an alias, see `versioned!`), the rest
//! unversioned.

// A C ABI needs raw pointers and exported symbols: this crate allows unsafe code, each block with a
// `// SAFETY:` line (ARCHITECTURE.md names the crates that may).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};

use vigil_client::proto::{CmapMap, CmapValue};

mod errors;
mod handle;
/// Public for the fuzz targets; C sees only the `cmap_*` functions.
pub mod value;

use errors::{
    CS_ERR_ACCESS, CS_ERR_BAD_HANDLE, CS_ERR_INVALID_PARAM, CS_ERR_NAME_TOO_LONG, CS_ERR_NOT_EXIST, CS_ERR_NO_MEMORY,
    CS_ERR_NO_SECTIONS, CS_OK,
};
use handle::{Inst, Track};
/// `cmap_notify_fn_t` and its value argument, as `cmap_track_add` takes them.
pub use handle::{NotifyFn, NotifyValue};

/// `CS_MAX_NAME_LENGTH`: corosync's library refuses a name this long or longer before it sends anything.
const CS_MAX_NAME_LENGTH: usize = 256;
/// `CMAP_KEYNAME_MAXLEN`.
const KEYNAME_MAXLEN: usize = 255;

/// `cmap_map_t`.
const CMAP_MAP_DEFAULT: c_int = 0;
const CMAP_MAP_STATS: c_int = 1;

/// Exports `$name` as an alias of the Rust function `$imp`, so that the version script (`cmap.map`), not
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

versioned!("cmap_initialize", initialize);

// The version node's own symbol, absolute and zero, as GNU ld exports it in Debian's library (see
// cmap.map): with it `objdump -T` lists exactly Debian's symbols.
std::arch::global_asm!(
    ".globl \"COROSYNC_CMAP_1.0\"",
    ".type \"COROSYNC_CMAP_1.0\", @object",
    ".set \"COROSYNC_CMAP_1.0\", 0",
);

fn result(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(CS_OK)
}

/// A key from C: NULL is `CS_ERR_INVALID_PARAM`, `CS_MAX_NAME_LENGTH` bytes or more
/// `CS_ERR_NAME_TOO_LONG`. Bytes that are not UTF-8 are replaced, which makes an invalid key name: vigild
/// then answers as icmap does for one.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string.
unsafe fn key_arg(key: *const c_char) -> Result<String, c_int> {
    if key.is_null() {
        return Err(CS_ERR_INVALID_PARAM);
    }
    // SAFETY: the caller passes a NUL-terminated string (cmap.h's contract for key names).
    let bytes = unsafe { CStr::from_ptr(key) }.to_bytes();
    if bytes.len() >= CS_MAX_NAME_LENGTH {
        return Err(CS_ERR_NAME_TOO_LONG);
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Writes through an out-pointer the caller passed.
///
/// # Safety
/// `p` is NULL or valid for a write of `T`.
unsafe fn put<T>(p: *mut T, v: T) -> Result<(), c_int> {
    if p.is_null() {
        return Err(CS_ERR_INVALID_PARAM);
    }
    // SAFETY: non-NULL, and the caller passes a pointer to a `T` it owns (cmap.h's out-parameters).
    unsafe { p.write_unaligned(v) };
    Ok(())
}

/// A write through a handle: the stats map is read-only, which corosync answers with `CS_ERR_ACCESS`.
fn writable(h: u64) -> Result<std::sync::Arc<Inst>, c_int> {
    let inst = handle::get(h)?;
    if inst.map == CmapMap::Stats {
        return Err(CS_ERR_ACCESS);
    }
    Ok(inst)
}

// ---- connections ----

/// `cs_error_t cmap_initialize(cmap_handle_t *handle)`: a connection to vigild on the main map.
///
/// # Safety
/// `handle` is NULL or points to a writable `cmap_handle_t`.
unsafe extern "C" fn initialize(handle: *mut u64) -> c_int {
    // SAFETY: forwarded under the same contract.
    unsafe { cmap_initialize_map(handle, CMAP_MAP_DEFAULT) }
}

/// `cs_error_t cmap_initialize_map(cmap_handle_t *handle, cmap_map_t map)`: `CMAP_MAP_DEFAULT` (also
/// `CMAP_MAP_ICMAP`) or `CMAP_MAP_STATS`.
///
/// # Safety
/// `handle` is NULL or points to a writable `cmap_handle_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_initialize_map(handle: *mut u64, map: c_int) -> c_int {
    if handle.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    let map = match map {
        CMAP_MAP_DEFAULT => CmapMap::Main,
        CMAP_MAP_STATS => CmapMap::Stats,
        // corosync's daemon answers a map it does not have with CS_ERR_NOT_EXIST (and the library then
        // gives up the new handle).
        _ => return CS_ERR_NOT_EXIST,
    };
    match handle::open(map) {
        // SAFETY: checked non-NULL above; the caller owns the cmap_handle_t.
        Ok(h) => result(unsafe { put(handle, h) }),
        Err(cs) => cs,
    }
}

/// `cs_error_t cmap_finalize(cmap_handle_t handle)`
#[unsafe(no_mangle)]
pub extern "C" fn cmap_finalize(handle: u64) -> c_int {
    handle::finalize(handle)
}

/// `cs_error_t cmap_fd_get(cmap_handle_t handle, int *fd)`: an fd that polls readable whenever
/// `cmap_dispatch` has something to deliver. It belongs to the handle: do not close it.
///
/// # Safety
/// `fd` is NULL or points to a writable `int`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_fd_get(handle: u64, fd: *mut c_int) -> c_int {
    let r = handle::get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; the caller owns the int.
        unsafe { put(fd, inst.fd()) }
    });
    result(r)
}

/// `cs_error_t cmap_dispatch(cmap_handle_t handle, cs_dispatch_flags_t dispatch_types)`
#[unsafe(no_mangle)]
pub extern "C" fn cmap_dispatch(handle: u64, dispatch_types: c_int) -> c_int {
    match handle::get(handle) {
        Ok(inst) => handle::dispatch(handle, &inst, dispatch_types),
        Err(cs) => cs,
    }
}

/// `cs_error_t cmap_context_get(cmap_handle_t handle, const void **context)`
///
/// # Safety
/// `context` is NULL or points to a writable `const void *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_context_get(handle: u64, context: *mut *const c_void) -> c_int {
    let r = handle::get(handle).and_then(|inst| {
        let c = inst.lock().context;
        // SAFETY: `put` checks NULL; the caller owns the pointer it passed.
        unsafe { put(context, c as *const c_void) }
    });
    result(r)
}

/// `cs_error_t cmap_context_set(cmap_handle_t handle, const void *context)`: kept, never read.
#[unsafe(no_mangle)]
pub extern "C" fn cmap_context_set(handle: u64, context: *const c_void) -> c_int {
    result(handle::get(handle).map(|inst| inst.lock().context = context as usize))
}

// ---- writes ----

/// `cs_error_t cmap_set(cmap_handle_t handle, const char *key_name, const void *value, size_t value_len,
/// cmap_value_types_t type)`
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string; `value` is NULL or points to `value_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_set(
    handle: u64,
    key_name: *const c_char,
    value: *const c_void,
    value_len: usize,
    ty: u32,
) -> c_int {
    if key_name.is_null() || value.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    // SAFETY: checked non-NULL; a NUL-terminated string by cmap.h's contract.
    let key = match unsafe { key_arg(key_name) } {
        Ok(k) => k,
        Err(cs) => return cs,
    };
    // SAFETY: non-NULL, and the caller passes `value_len` readable bytes at `value`.
    let bytes = unsafe { std::slice::from_raw_parts(value.cast::<u8>(), value_len) };
    set_value(handle, &key, || value::from_c(ty, bytes))
}

fn set_value(handle: u64, key: &str, value: impl FnOnce() -> Result<CmapValue, c_int>) -> c_int {
    let r = writable(handle).and_then(|inst| {
        let v = value()?;
        inst.request_with(|c, _| c.cmap_set(key, v, false), |e| errors::from_set(e, key))
    });
    result(r)
}

macro_rules! typed_set {
    ($name:ident, $t:ty, $variant:ident, $ctype:literal) => {
        #[doc = concat!("`cs_error_t ", stringify!($name), "(cmap_handle_t handle, const char *key_name, ", $ctype, " value)`")]
        ///
        /// # Safety
        /// `key_name` is NULL or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(handle: u64, key_name: *const c_char, value: $t) -> c_int {
            // SAFETY: the caller's contract, forwarded.
            match unsafe { key_arg(key_name) } {
                Ok(key) => set_value(handle, &key, || Ok(CmapValue::$variant(value))),
                Err(cs) => cs,
            }
        }
    };
}

typed_set!(cmap_set_int8, i8, I8, "int8_t");
typed_set!(cmap_set_uint8, u8, U8, "uint8_t");
typed_set!(cmap_set_int16, i16, I16, "int16_t");
typed_set!(cmap_set_uint16, u16, U16, "uint16_t");
typed_set!(cmap_set_int32, i32, I32, "int32_t");
typed_set!(cmap_set_uint32, u32, U32, "uint32_t");
typed_set!(cmap_set_int64, i64, I64, "int64_t");
typed_set!(cmap_set_uint64, u64, U64, "uint64_t");
typed_set!(cmap_set_float, f32, Float, "float");
typed_set!(cmap_set_double, f64, Double, "double");

/// `cs_error_t cmap_set_string(cmap_handle_t handle, const char *key_name, const char *value)`: stored
/// with its NUL, so `cmap_get` answers `strlen(value) + 1` bytes.
///
/// # Safety
/// `key_name` and `value` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_set_string(handle: u64, key_name: *const c_char, value: *const c_char) -> c_int {
    if value.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let len = unsafe { CStr::from_ptr(value) }.to_bytes().len();
    // SAFETY: as corosync does, the string's bytes without its NUL.
    unsafe { cmap_set(handle, key_name, value.cast(), len, 11) }
}

/// `cs_error_t cmap_delete(cmap_handle_t handle, const char *key_name)`
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_delete(handle: u64, key_name: *const c_char) -> c_int {
    // SAFETY: the caller's contract, forwarded.
    let r = unsafe { key_arg(key_name) }.and_then(|key| {
        let inst = writable(handle)?;
        inst.request(|c, _| c.cmap_delete(&key))
    });
    result(r)
}

/// # Safety
/// `key_name` is NULL or a NUL-terminated string.
unsafe fn adjust(handle: u64, key_name: *const c_char, up: bool) -> c_int {
    // SAFETY: the caller's contract, forwarded.
    let r = unsafe { key_arg(key_name) }.and_then(|key| {
        let inst = writable(handle)?;
        inst.request(|c, _| if up { c.cmap_inc(&key) } else { c.cmap_dec(&key) }.map(drop))
    });
    result(r)
}

/// `cs_error_t cmap_inc(cmap_handle_t handle, const char *key_name)`: integers only, wrapping.
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_inc(handle: u64, key_name: *const c_char) -> c_int {
    // SAFETY: the caller's contract, forwarded.
    unsafe { adjust(handle, key_name, true) }
}

/// `cs_error_t cmap_dec(cmap_handle_t handle, const char *key_name)`: integers only, wrapping.
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_dec(handle: u64, key_name: *const c_char) -> c_int {
    // SAFETY: the caller's contract, forwarded.
    unsafe { adjust(handle, key_name, false) }
}

// ---- reads ----

/// `cs_error_t cmap_get(cmap_handle_t handle, const char *key_name, void *value, size_t *value_len,
/// cmap_value_types_t *type)`: with `value` NULL only the length and the type; with a buffer,
/// `*value_len` must be at least the value's length (`CS_ERR_INVALID_PARAM` otherwise).
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string; `value_len` and `type` are NULL or writable; `value` is
/// NULL or points to `*value_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_get(
    handle: u64,
    key_name: *const c_char,
    value: *mut c_void,
    value_len: *mut usize,
    ty: *mut u32,
) -> c_int {
    // SAFETY: the caller's contract, forwarded.
    let key = match unsafe { key_arg(key_name) } {
        Ok(k) => k,
        Err(cs) => return cs,
    };
    if !value.is_null() && value_len.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    let r = handle::get(handle).and_then(|inst| {
        let v = inst.request(|c, _| c.cmap_get_in(inst.map, &key, None))?;
        let bytes = value::to_bytes(&v);
        if !value.is_null() {
            // SAFETY: non-NULL (checked above with `value`), the caller's size_t.
            let room = unsafe { value_len.read_unaligned() };
            if room < bytes.len() {
                return Err(CS_ERR_INVALID_PARAM);
            }
            // SAFETY: the caller's buffer holds `room` >= bytes.len() writable bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.cast::<u8>(), bytes.len()) };
        }
        if !value_len.is_null() {
            // SAFETY: non-NULL, the caller's size_t.
            unsafe { value_len.write_unaligned(bytes.len()) };
        }
        if !ty.is_null() {
            // SAFETY: non-NULL, the caller's cmap_value_types_t.
            unsafe { ty.write_unaligned(value::type_code(&v)) };
        }
        Ok(())
    });
    result(r)
}

/// A typed get: the key must hold that type (`CS_ERR_INVALID_PARAM` otherwise, never a conversion).
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string; `out` is NULL or writable.
unsafe fn get_typed<T>(
    handle: u64,
    key_name: *const c_char,
    out: *mut T,
    ty: u32,
    pick: fn(CmapValue) -> Option<T>,
) -> c_int {
    // SAFETY: the caller's contract, forwarded.
    let key = match unsafe { key_arg(key_name) } {
        Ok(k) => k,
        Err(cs) => return cs,
    };
    let r = handle::get(handle).and_then(|inst| {
        if out.is_null() {
            return Err(CS_ERR_INVALID_PARAM);
        }
        let v = inst.request(|c, _| c.cmap_get_in(inst.map, &key, Some(ty)))?;
        let v = pick(v).ok_or(CS_ERR_INVALID_PARAM)?;
        // SAFETY: `put` checks NULL; the caller owns the out-parameter.
        unsafe { put(out, v) }
    });
    result(r)
}

macro_rules! typed_get {
    ($name:ident, $t:ty, $variant:ident, $code:expr, $ctype:literal) => {
        #[doc = concat!("`cs_error_t ", stringify!($name), "(cmap_handle_t handle, const char *key_name, ", $ctype, " *value)`")]
        ///
        /// # Safety
        /// `key_name` is NULL or a NUL-terminated string; the out-pointer is NULL or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(handle: u64, key_name: *const c_char, value: *mut $t) -> c_int {
            // SAFETY: the caller's contract, forwarded.
            unsafe {
                get_typed(handle, key_name, value, $code, |v| match v {
                    CmapValue::$variant(x) => Some(x),
                    _ => None,
                })
            }
        }
    };
}

typed_get!(cmap_get_int8, i8, I8, 1, "int8_t");
typed_get!(cmap_get_uint8, u8, U8, 2, "uint8_t");
typed_get!(cmap_get_int16, i16, I16, 3, "int16_t");
typed_get!(cmap_get_uint16, u16, U16, 4, "uint16_t");
typed_get!(cmap_get_int32, i32, I32, 5, "int32_t");
typed_get!(cmap_get_uint32, u32, U32, 6, "uint32_t");
typed_get!(cmap_get_int64, i64, I64, 7, "int64_t");
typed_get!(cmap_get_uint64, u64, U64, 8, "uint64_t");
typed_get!(cmap_get_float, f32, Float, 9, "float");
typed_get!(cmap_get_double, f64, Double, 10, "double");

/// `cs_error_t cmap_get_string(cmap_handle_t handle, const char *key_name, char **str)`: a copy allocated
/// with `malloc`, which the caller frees with `free`.
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string; `str` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_get_string(handle: u64, key_name: *const c_char, str: *mut *mut c_char) -> c_int {
    // SAFETY: the caller's contract, forwarded.
    let key = match unsafe { key_arg(key_name) } {
        Ok(k) => k,
        Err(cs) => return cs,
    };
    let r = handle::get(handle).and_then(|inst| {
        if str.is_null() {
            return Err(CS_ERR_INVALID_PARAM);
        }
        let v = inst.request(|c, _| c.cmap_get_in(inst.map, &key, Some(11)))?;
        let s = value::string_bytes(&v).ok_or(CS_ERR_INVALID_PARAM)?;
        // SAFETY: malloc of a positive size; checked for NULL below.
        let p = unsafe { libc::malloc(s.len() + 1) }.cast::<u8>();
        if p.is_null() {
            return Err(CS_ERR_NO_MEMORY);
        }
        // SAFETY: `p` holds s.len() + 1 bytes: the text, then its NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            p.add(s.len()).write(0);
        }
        // SAFETY: `put` checks NULL (done above); the caller owns the char *.
        unsafe { put(str, p.cast::<c_char>()) }
    });
    result(r)
}

// ---- iteration ----

/// `cs_error_t cmap_iter_init(cmap_handle_t handle, const char *prefix, cmap_iter_handle_t *iter)`:
/// NULL or "" iterates over every key. The keys and their values are those of this moment, in key order.
///
/// # Safety
/// `prefix` is NULL or a NUL-terminated string; `cmap_iter_handle` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_iter_init(handle: u64, prefix: *const c_char, cmap_iter_handle: *mut u64) -> c_int {
    if cmap_iter_handle.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    let r = handle::get(handle).and_then(|inst| {
        let prefix = if prefix.is_null() {
            String::new()
        } else {
            // SAFETY: non-NULL, NUL-terminated by the caller's contract.
            unsafe { key_arg(prefix) }?
        };
        let id = inst.request(|c, st| {
            let entries = c.cmap_iter(inst.map, &prefix)?;
            let id = st.next_iter;
            st.next_iter += 1;
            st.iters.insert(id, entries.into());
            Ok(id)
        })?;
        // SAFETY: checked non-NULL; the caller owns the cmap_iter_handle_t.
        unsafe { put(cmap_iter_handle, id) }
    });
    result(r)
}

/// `cs_error_t cmap_iter_next(cmap_handle_t handle, cmap_iter_handle_t iter_handle, char
/// key_name[CMAP_KEYNAME_MAXLEN + 1], size_t *value_len, cmap_value_types_t *type)`: `CS_ERR_NO_SECTIONS`
/// after the last key.
///
/// # Safety
/// `key_name` is NULL or has room for `CMAP_KEYNAME_MAXLEN + 1` bytes; `value_len` and `type` are NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_iter_next(
    handle: u64,
    iter_handle: u64,
    key_name: *mut c_char,
    value_len: *mut usize,
    ty: *mut u32,
) -> c_int {
    if key_name.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    let r = handle::get(handle).and_then(|inst| {
        let entry = {
            let mut st = inst.lock();
            let iter = st.iters.get_mut(&iter_handle).ok_or(CS_ERR_BAD_HANDLE)?;
            iter.pop_front().ok_or(CS_ERR_NO_SECTIONS)?
        };
        let k = entry.key.as_bytes();
        let n = k.len().min(KEYNAME_MAXLEN);
        // SAFETY: the caller's buffer has CMAP_KEYNAME_MAXLEN + 1 bytes: at most 255 of key, then a NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(k.as_ptr(), key_name.cast::<u8>(), n);
            key_name.add(n).write(0);
        }
        if !value_len.is_null() {
            // SAFETY: non-NULL, the caller's size_t.
            unsafe { value_len.write_unaligned(value::to_bytes(&entry.value).len()) };
        }
        if !ty.is_null() {
            // SAFETY: non-NULL, the caller's cmap_value_types_t.
            unsafe { ty.write_unaligned(value::type_code(&entry.value)) };
        }
        Ok(())
    });
    result(r)
}

/// `cs_error_t cmap_iter_finalize(cmap_handle_t handle, cmap_iter_handle_t iter_handle)`
#[unsafe(no_mangle)]
pub extern "C" fn cmap_iter_finalize(handle: u64, iter_handle: u64) -> c_int {
    let r = handle::get(handle).and_then(|inst| {
        inst.lock()
            .iters
            .remove(&iter_handle)
            .map(drop)
            .ok_or(CS_ERR_BAD_HANDLE)
    });
    result(r)
}

// ---- tracking ----

/// `cs_error_t cmap_track_add(cmap_handle_t handle, const char *key_name, int32_t track_type,
/// cmap_notify_fn_t notify_fn, void *user_data, cmap_track_handle_t *cmap_track_handle)`: a key, or with
/// `CMAP_TRACK_PREFIX` every key that starts with `key_name` (NULL: every key), for `CMAP_TRACK_ADD`,
/// `CMAP_TRACK_DELETE` and `CMAP_TRACK_MODIFY`. Notifications come through `cmap_dispatch`.
///
/// # Safety
/// `key_name` is NULL or a NUL-terminated string; `cmap_track_handle` is NULL or writable; `notify_fn` is
/// NULL or a function with `cmap_notify_fn_t`'s signature.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cmap_track_add(
    handle: u64,
    key_name: *const c_char,
    track_type: i32,
    notify_fn: Option<NotifyFn>,
    user_data: *mut c_void,
    cmap_track_handle: *mut u64,
) -> c_int {
    let Some(notify) = notify_fn else {
        return CS_ERR_INVALID_PARAM;
    };
    if cmap_track_handle.is_null() {
        return CS_ERR_INVALID_PARAM;
    }
    let r = handle::get(handle).and_then(|inst| {
        let key = if key_name.is_null() {
            String::new()
        } else {
            // SAFETY: non-NULL, NUL-terminated by the caller's contract.
            unsafe { key_arg(key_name) }?
        };
        let track = Track {
            notify,
            user_data: user_data as usize,
        };
        let id = inst.request(|c, st| {
            let id = c.cmap_track_add(inst.map, &key, track_type as u32, 0)?;
            st.tracks.insert(id, track);
            Ok(id)
        })?;
        // SAFETY: checked non-NULL; the caller owns the cmap_track_handle_t.
        unsafe { put(cmap_track_handle, id) }
    });
    result(r)
}

/// `cs_error_t cmap_track_delete(cmap_handle_t handle, cmap_track_handle_t track_handle)`: a track of
/// another handle, or one deleted already, is a bad handle.
#[unsafe(no_mangle)]
pub extern "C" fn cmap_track_delete(handle: u64, track_handle: u64) -> c_int {
    let r = handle::get(handle).and_then(|inst| {
        inst.request_with(
            |c, st| {
                if !st.tracks.contains_key(&track_handle) {
                    return Ok(Err(CS_ERR_BAD_HANDLE));
                }
                c.cmap_track_delete(track_handle)?;
                st.tracks.remove(&track_handle);
                Ok(Ok(()))
            },
            errors::from_track_delete,
        )?
    });
    result(r)
}
