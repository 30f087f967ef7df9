//! libcmap's C entry points called as a hostile or careless C program would: any handle, NULL or not,
//! keys of any bytes and length (up to the NUL the C string ends with), any type code and any length
//! within the buffer it passes, with no vigild to reach; and the conversions between C's `(type, bytes)`
//! and CMAP values. Every call answers a `cs_error_t` and never panics, aborts or writes past what it was
//! given.
#![no_main]

use std::ffi::{c_char, c_int, c_void};
use std::sync::Once;

use cmap::value::{from_c, to_bytes, type_code};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const CS_OK: c_int = 1;

fn no_daemon() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // No vigild: no handle can be opened, so every call must refuse its arguments or the handle.
        std::env::set_var("VIGIL_SOCKET", "/nonexistent/vigil-fuzz/vigild.sock");
    });
}

unsafe extern "C" fn notify(
    _: u64,
    _: u64,
    _: i32,
    _: *const c_char,
    _: cmap::NotifyValue,
    _: cmap::NotifyValue,
    _: *mut c_void,
) {
    panic!("a notification without a connection");
}

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::catch_segv();
    no_daemon();
    let _ = run(&mut Unstructured::new(data));
});

/// A C string from the input (NUL-terminated at its first NUL), or NULL.
fn c_key(u: &mut Unstructured) -> Result<Option<Vec<u8>>> {
    if u.ratio(1, 8)? {
        return Ok(None);
    }
    let mut k: Vec<u8> = if u.ratio(1, 8)? {
        // Around corosync's name limit (CS_MAX_NAME_LENGTH 256).
        vec![b'k'; u.int_in_range(250..=260)?]
    } else {
        u.arbitrary()?
    };
    k.push(0);
    Ok(Some(k))
}

fn ptr(k: &Option<Vec<u8>>) -> *const c_char {
    k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr().cast())
}

fn handle(u: &mut Unstructured) -> Result<u64> {
    let pid = u64::from(std::process::id());
    Ok(match u.int_in_range(0..=3u8)? {
        0 => 0,
        1 => (pid << 32) | u64::from(u.int_in_range(0..=4u8)?),
        2 => u64::MAX,
        _ => u.arbitrary()?,
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    // The conversions first: from C's bytes to a value and back.
    let ty: u32 = if u.arbitrary()? {
        u.int_in_range(0..=13)?
    } else {
        u.arbitrary()?
    };
    let bytes: &[u8] = u.arbitrary()?;
    if let Ok(v) = from_c(ty, bytes) {
        assert_eq!(type_code(&v), ty);
        let out = to_bytes(&v);
        let back = from_c(ty, &out).expect("a value's own bytes convert back");
        assert_eq!(to_bytes(&back), out);
    }

    let mut buf = [0u8; 512];
    for _ in 0..u.int_in_range(0..=12u32)? {
        let h = handle(u)?;
        let key = c_key(u)?;
        let k = ptr(&key);
        let null: bool = u.arbitrary()?;
        // SAFETY (every call below): each pointer is NULL or points to what the function's contract asks
        // for: a NUL-terminated key, `len` bytes of `buf`, or a local of the right type.
        let rc = unsafe {
            match u.int_in_range(0..=17u8)? {
                0 => {
                    let mut out = 0u64;
                    let p: *mut u64 = if null { std::ptr::null_mut() } else { &mut out };
                    let rc = cmap::cmap_initialize_map(p, u.arbitrary()?);
                    assert_ne!(rc, CS_OK, "a handle without vigild");
                    rc
                }
                1 => cmap::cmap_finalize(h),
                2 => {
                    let mut fd = -1;
                    cmap::cmap_fd_get(h, if null { std::ptr::null_mut() } else { &mut fd })
                }
                3 => cmap::cmap_dispatch(h, u.arbitrary()?),
                4 => {
                    let mut c: *const c_void = std::ptr::null();
                    cmap::cmap_context_get(h, if null { std::ptr::null_mut() } else { &mut c })
                }
                5 => cmap::cmap_context_set(h, buf.as_ptr().cast()),
                6 => {
                    let len = u.int_in_range(0..=buf.len())?;
                    let v = if null { std::ptr::null() } else { buf.as_ptr().cast() };
                    cmap::cmap_set(h, k, v, len, u.arbitrary()?)
                }
                7 => cmap::cmap_set_int8(h, k, u.arbitrary()?),
                8 => cmap::cmap_set_uint64(h, k, u.arbitrary()?),
                9 => cmap::cmap_set_double(h, k, u.arbitrary()?),
                10 => {
                    let v = c_key(u)?;
                    cmap::cmap_set_string(h, k, ptr(&v))
                }
                11 => match u.int_in_range(0..=2u8)? {
                    0 => cmap::cmap_delete(h, k),
                    1 => cmap::cmap_inc(h, k),
                    _ => cmap::cmap_dec(h, k),
                },
                12 => {
                    let mut len = u.int_in_range(0..=buf.len())?;
                    let mut t = 0u32;
                    let v = if null {
                        std::ptr::null_mut()
                    } else {
                        buf.as_mut_ptr().cast()
                    };
                    let lp: *mut usize = if u.arbitrary()? { std::ptr::null_mut() } else { &mut len };
                    let tp: *mut u32 = if u.arbitrary()? { std::ptr::null_mut() } else { &mut t };
                    cmap::cmap_get(h, k, v, lp, tp)
                }
                13 => {
                    let mut x = 0u32;
                    cmap::cmap_get_uint32(h, k, if null { std::ptr::null_mut() } else { &mut x })
                }
                14 => {
                    let mut s: *mut c_char = std::ptr::null_mut();
                    let rc = cmap::cmap_get_string(h, k, if null { std::ptr::null_mut() } else { &mut s });
                    assert!(s.is_null(), "a string without a connection");
                    rc
                }
                15 => {
                    let mut it = 0u64;
                    cmap::cmap_iter_init(h, k, if null { std::ptr::null_mut() } else { &mut it })
                }
                16 => {
                    let mut name = [0 as c_char; 256];
                    let mut len = 0usize;
                    let mut t = 0u32;
                    let n = if null { std::ptr::null_mut() } else { name.as_mut_ptr() };
                    match u.int_in_range(0..=1u8)? {
                        0 => cmap::cmap_iter_next(h, u.arbitrary()?, n, &mut len, &mut t),
                        _ => cmap::cmap_iter_finalize(h, u.arbitrary()?),
                    }
                }
                _ => {
                    let mut th = 0u64;
                    let f: Option<cmap::NotifyFn> = if u.arbitrary()? { Some(notify) } else { None };
                    match u.int_in_range(0..=1u8)? {
                        0 => cmap::cmap_track_add(
                            h,
                            k,
                            u.arbitrary()?,
                            f,
                            std::ptr::null_mut(),
                            if null { std::ptr::null_mut() } else { &mut th },
                        ),
                        _ => cmap::cmap_track_delete(h, u.arbitrary()?),
                    }
                }
            }
        };
        // Without vigild no call can succeed: each refuses an argument or the handle.
        assert_ne!(rc, CS_OK, "a call succeeded without vigild");
        assert!((2..=31).contains(&rc), "not a cs_error_t: {rc}");
    }
    Ok(())
}
