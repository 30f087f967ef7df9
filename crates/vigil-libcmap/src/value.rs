//! Values between C's `(type, bytes)` and the wire's typed `CmapValue`, with icmap's checks.

use std::ffi::c_int;

use vigil_client::proto::CmapValue;
use vigil_core::cmap::CmapType;

use crate::errors::CS_ERR_INVALID_PARAM;

/// The `cmap_value_types_t` of a value.
pub fn type_code(v: &CmapValue) -> u32 {
    let t = match v {
        CmapValue::I8(_) => CmapType::I8,
        CmapValue::U8(_) => CmapType::U8,
        CmapValue::I16(_) => CmapType::I16,
        CmapValue::U16(_) => CmapType::U16,
        CmapValue::I32(_) => CmapType::I32,
        CmapValue::U32(_) => CmapType::U32,
        CmapValue::I64(_) => CmapType::I64,
        CmapValue::U64(_) => CmapType::U64,
        CmapValue::Float(_) => CmapType::Float,
        CmapValue::Double(_) => CmapType::Double,
        CmapValue::Str(_) | CmapValue::StrBytes(_) => CmapType::Str,
        CmapValue::Binary(_) => CmapType::Binary,
    };
    t.code()
}

/// The bytes corosync hands out: a number in the machine's byte order, a string with its NUL (so
/// `cmap_get` of "abc" answers 4 bytes), binary data as it is.
pub fn to_bytes(v: &CmapValue) -> Vec<u8> {
    match v {
        CmapValue::I8(x) => x.to_ne_bytes().to_vec(),
        CmapValue::U8(x) => x.to_ne_bytes().to_vec(),
        CmapValue::I16(x) => x.to_ne_bytes().to_vec(),
        CmapValue::U16(x) => x.to_ne_bytes().to_vec(),
        CmapValue::I32(x) => x.to_ne_bytes().to_vec(),
        CmapValue::U32(x) => x.to_ne_bytes().to_vec(),
        CmapValue::I64(x) => x.to_ne_bytes().to_vec(),
        CmapValue::U64(x) => x.to_ne_bytes().to_vec(),
        CmapValue::Float(x) => x.to_ne_bytes().to_vec(),
        CmapValue::Double(x) => x.to_ne_bytes().to_vec(),
        CmapValue::Str(s) => with_nul(s.as_bytes()),
        CmapValue::StrBytes(s) => with_nul(s),
        CmapValue::Binary(b) => b.clone(),
    }
}

fn with_nul(s: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(s.len() + 1);
    b.extend_from_slice(s);
    b.push(0);
    b
}

/// The string bytes of a string value, without the NUL; None for another type.
pub fn string_bytes(v: &CmapValue) -> Option<&[u8]> {
    match v {
        CmapValue::Str(s) => Some(s.as_bytes()),
        CmapValue::StrBytes(s) => Some(s),
        _ => None,
    }
}

/// `ICMAP_MAX_VALUE_LEN` (corosync's exec/icmap.c): icmap_check_value_len refuses a `value_len` above it
/// with `CS_ERR_INVALID_PARAM`, whatever the type. vigild's own limit (`cmap.max_value_bytes`) is for its
/// own clients; through libcmap a value is never larger than corosync would take.
pub const ICMAP_MAX_VALUE_LEN: usize = 16 * 1024;

/// A value from `cmap_set`'s `(type, value, value_len)`, checked as icmap does: a number must be exactly
/// its width; a string is its bytes up to the first NUL (`cmap_set_string` passes `strlen`, without the
/// NUL, and corosync adds it back), and `value_len` may not run past that NUL. A string's bytes need not
/// be UTF-8: corosync stores bytes. `value_len` above [`ICMAP_MAX_VALUE_LEN`] is refused first, as icmap
/// does.
pub fn from_c(ty: u32, bytes: &[u8]) -> Result<CmapValue, c_int> {
    let bad = Err(CS_ERR_INVALID_PARAM);
    if bytes.len() > ICMAP_MAX_VALUE_LEN {
        return bad;
    }
    let Some(t) = CmapType::from_code(ty) else {
        return bad;
    };
    macro_rules! num {
        ($variant:ident, $t:ty) => {
            match <[u8; std::mem::size_of::<$t>()]>::try_from(bytes) {
                Ok(a) => Ok(CmapValue::$variant(<$t>::from_ne_bytes(a))),
                Err(_) => bad,
            }
        };
    }
    match t {
        CmapType::I8 => num!(I8, i8),
        CmapType::U8 => num!(U8, u8),
        CmapType::I16 => num!(I16, i16),
        CmapType::U16 => num!(U16, u16),
        CmapType::I32 => num!(I32, i32),
        CmapType::U32 => num!(U32, u32),
        CmapType::I64 => num!(I64, i64),
        CmapType::U64 => num!(U64, u64),
        CmapType::Float => num!(Float, f32),
        CmapType::Double => num!(Double, f64),
        CmapType::Str => {
            let text = match bytes.iter().position(|&b| b == 0) {
                Some(nul) if bytes.len() > nul + 1 => return bad,
                Some(nul) => &bytes[..nul],
                None => bytes,
            };
            Ok(match std::str::from_utf8(text) {
                Ok(s) => CmapValue::Str(s.to_string()),
                Err(_) => CmapValue::StrBytes(text.to_vec()),
            })
        }
        CmapType::Binary => Ok(CmapValue::Binary(bytes.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_stored_with_their_nul() {
        assert_eq!(from_c(11, b"abc"), Ok(CmapValue::Str("abc".into())));
        assert_eq!(from_c(11, b"abc\0"), Ok(CmapValue::Str("abc".into())));
        assert_eq!(from_c(11, b"abc\0x"), Err(CS_ERR_INVALID_PARAM));
        assert_eq!(from_c(11, b""), Ok(CmapValue::Str(String::new())));
        assert_eq!(from_c(11, b"\xff"), Ok(CmapValue::StrBytes(vec![0xff])));
        assert_eq!(to_bytes(&CmapValue::StrBytes(vec![0xff])), b"\xff\0");
        assert_eq!(to_bytes(&CmapValue::Str("abc".into())), b"abc\0");
    }

    #[test]
    fn values_above_icmaps_limit_are_refused() {
        let max = vec![b'a'; ICMAP_MAX_VALUE_LEN];
        assert_eq!(from_c(12, &max), Ok(CmapValue::Binary(max.clone())));
        let over = vec![b'a'; ICMAP_MAX_VALUE_LEN + 1];
        assert_eq!(from_c(12, &over), Err(CS_ERR_INVALID_PARAM));
        assert_eq!(from_c(11, &over), Err(CS_ERR_INVALID_PARAM));
    }

    #[test]
    fn numbers_take_exactly_their_width() {
        assert_eq!(from_c(6, &7u32.to_ne_bytes()), Ok(CmapValue::U32(7)));
        assert_eq!(from_c(6, &7u64.to_ne_bytes()), Err(CS_ERR_INVALID_PARAM));
        assert_eq!(from_c(10, &1.5f64.to_ne_bytes()), Ok(CmapValue::Double(1.5)));
        assert_eq!(from_c(0, b"x"), Err(CS_ERR_INVALID_PARAM));
        assert_eq!(from_c(13, b"x"), Err(CS_ERR_INVALID_PARAM));
        for v in [
            CmapValue::I16(-2),
            CmapValue::U64(u64::MAX),
            CmapValue::Binary(vec![0, 1]),
        ] {
            assert_eq!(from_c(type_code(&v), &to_bytes(&v)), Ok(v));
        }
    }
}
