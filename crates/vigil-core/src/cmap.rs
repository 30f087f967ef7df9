//! corosync's CMAP: a map of typed values under dotted keys, with change tracking.
//!
//! Rules, from corosync's cmap.h, corotypes.h and the icmap layer under them:
//! - a key is 3 to 255 bytes (`CMAP_KEYNAME_MINLEN`, `CMAP_KEYNAME_MAXLEN`) of `a-z A-Z 0-9 . _ - / :`;
//! - a value has one of twelve types (`cmap_value_types_t`); it takes its width in bytes for the numbers,
//!   the text plus a NUL for a string, its length for binary data;
//! - reading with a type is never a conversion: a key stored with another type answers an error
//!   (corosync: `CS_ERR_INVALID_PARAM`);
//! - a set may change the type of an existing key; a set to the same type and the same bytes changes
//!   nothing and tells nobody;
//! - increment and decrement work on the eight integer types only and wrap around, as
//!   `icmap_adjust_int` does; on a float, a double, a string or binary data they are refused;
//! - keys under a read-only prefix refuse the writes of clients (`CS_ERR_ACCESS`) but not vigild's own;
//! - a track names a key, or with `CMAP_TRACK_PREFIX` every key that starts with it, and the events it
//!   wants (`CMAP_TRACK_ADD`, `CMAP_TRACK_DELETE`, `CMAP_TRACK_MODIFY`); each change of a key yields one
//!   notification per matching track, in the order the tracks were created, with the new value (none
//!   for a delete) and the old one (none for an add).
//!
//! Compare-and-set is vigil's own: corosync has none.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

/// cmap.h: `CMAP_TRACK_ADD`.
pub const TRACK_ADD: u32 = 4;
/// cmap.h: `CMAP_TRACK_DELETE`.
pub const TRACK_DELETE: u32 = 1;
/// cmap.h: `CMAP_TRACK_MODIFY`.
pub const TRACK_MODIFY: u32 = 2;
/// cmap.h: `CMAP_TRACK_PREFIX`. Only ever a flag of a track, never the event of a notification.
pub const TRACK_PREFIX: u32 = 8;
/// The three events a track may ask for.
pub const TRACK_EVENTS: u32 = TRACK_ADD | TRACK_DELETE | TRACK_MODIFY;

/// cmap.h: `CMAP_KEYNAME_MINLEN`.
pub const KEYNAME_MINLEN: usize = 3;
/// cmap.h: `CMAP_KEYNAME_MAXLEN`.
pub const KEYNAME_MAXLEN: usize = 255;

/// The punctuation icmap allows in a key besides ASCII letters and digits (`icmap_is_valid_name_char`).
pub const KEY_PUNCTUATION: &str = "._-/:";

/// The type of a value; the discriminants are cmap.h's `cmap_value_types_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum CmapType {
    /// `CMAP_VALUETYPE_INT8`
    I8 = 1,
    /// `CMAP_VALUETYPE_UINT8`
    U8 = 2,
    /// `CMAP_VALUETYPE_INT16`
    I16 = 3,
    /// `CMAP_VALUETYPE_UINT16`
    U16 = 4,
    /// `CMAP_VALUETYPE_INT32`
    I32 = 5,
    /// `CMAP_VALUETYPE_UINT32`
    U32 = 6,
    /// `CMAP_VALUETYPE_INT64`
    I64 = 7,
    /// `CMAP_VALUETYPE_UINT64`
    U64 = 8,
    /// `CMAP_VALUETYPE_FLOAT`
    Float = 9,
    /// `CMAP_VALUETYPE_DOUBLE`
    Double = 10,
    /// `CMAP_VALUETYPE_STRING`
    Str = 11,
    /// `CMAP_VALUETYPE_BINARY`
    Binary = 12,
}

impl CmapType {
    /// Every type, in code order.
    pub const ALL: [CmapType; 12] = [
        CmapType::I8,
        CmapType::U8,
        CmapType::I16,
        CmapType::U16,
        CmapType::I32,
        CmapType::U32,
        CmapType::I64,
        CmapType::U64,
        CmapType::Float,
        CmapType::Double,
        CmapType::Str,
        CmapType::Binary,
    ];

    /// The `cmap_value_types_t` value.
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<CmapType> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The name corosync-cmapctl prints and takes.
    pub fn short_name(self) -> &'static str {
        match self {
            CmapType::I8 => "i8",
            CmapType::U8 => "u8",
            CmapType::I16 => "i16",
            CmapType::U16 => "u16",
            CmapType::I32 => "i32",
            CmapType::U32 => "u32",
            CmapType::I64 => "i64",
            CmapType::U64 => "u64",
            CmapType::Float => "flt",
            CmapType::Double => "dbl",
            CmapType::Str => "str",
            CmapType::Binary => "bin",
        }
    }

    fn long_name(self) -> &'static str {
        match self {
            CmapType::I8 => "int8",
            CmapType::U8 => "uint8",
            CmapType::I16 => "int16",
            CmapType::U16 => "uint16",
            CmapType::I32 => "int32",
            CmapType::U32 => "uint32",
            CmapType::I64 => "int64",
            CmapType::U64 => "uint64",
            CmapType::Float => "float",
            CmapType::Double => "double",
            CmapType::Str => "string",
            CmapType::Binary => "binary",
        }
    }

    /// A short name (`u8`, `flt`, ...) or a long one (`uint8`, `float`, `string`, ...), in any case.
    pub fn parse_name(name: &str) -> Option<CmapType> {
        Self::ALL
            .into_iter()
            .find(|t| name.eq_ignore_ascii_case(t.short_name()) || name.eq_ignore_ascii_case(t.long_name()))
    }

    /// The bounds of an integer type, `None` for the others.
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            CmapType::I8 => (i8::MIN.into(), i8::MAX.into()),
            CmapType::U8 => (0, u8::MAX.into()),
            CmapType::I16 => (i16::MIN.into(), i16::MAX.into()),
            CmapType::U16 => (0, u16::MAX.into()),
            CmapType::I32 => (i32::MIN.into(), i32::MAX.into()),
            CmapType::U32 => (0, u32::MAX.into()),
            CmapType::I64 => (i64::MIN.into(), i64::MAX.into()),
            CmapType::U64 => (0, u64::MAX.into()),
            CmapType::Float | CmapType::Double | CmapType::Str | CmapType::Binary => return None,
        })
    }
}

impl fmt::Display for CmapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// A typed value. Equality is [`CmapValue::same_as`]: same type and same bits, so a NaN equals itself
/// and `0.0` differs from `-0.0`, as corosync's byte comparison has it.
#[derive(Debug, Clone)]
pub enum CmapValue {
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Float(f32),
    Double(f64),
    Str(String),
    Binary(Vec<u8>),
    /// A string whose bytes are not UTF-8 (corosync's strings are bytes, without a NUL). Never valid
    /// UTF-8: [`CmapValue::string`] builds `Str` for that, so one string has one form.
    StrBytes(Vec<u8>),
}

impl CmapValue {
    /// A string value from its bytes (without a NUL): `Str` when they are UTF-8, else `StrBytes`.
    pub fn string(bytes: Vec<u8>) -> CmapValue {
        match String::from_utf8(bytes) {
            Ok(s) => CmapValue::Str(s),
            Err(e) => CmapValue::StrBytes(e.into_bytes()),
        }
    }

    pub fn ty(&self) -> CmapType {
        match self {
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
        }
    }

    /// Same type and same bits: what corosync compares before it stores, to skip a set that changes nothing.
    pub fn same_as(&self, other: &CmapValue) -> bool {
        use CmapValue as V;
        match (self, other) {
            (V::I8(a), V::I8(b)) => a == b,
            (V::U8(a), V::U8(b)) => a == b,
            (V::I16(a), V::I16(b)) => a == b,
            (V::U16(a), V::U16(b)) => a == b,
            (V::I32(a), V::I32(b)) => a == b,
            (V::U32(a), V::U32(b)) => a == b,
            (V::I64(a), V::I64(b)) => a == b,
            (V::U64(a), V::U64(b)) => a == b,
            (V::Float(a), V::Float(b)) => a.to_bits() == b.to_bits(),
            (V::Double(a), V::Double(b)) => a.to_bits() == b.to_bits(),
            (V::Str(a), V::Str(b)) => a == b,
            (V::Binary(a), V::Binary(b)) => a == b,
            (V::StrBytes(a), V::StrBytes(b)) => a == b,
            _ => false,
        }
    }

    /// The bytes corosync stores: the width of a number, a string's bytes and its NUL, binary's length.
    pub fn byte_len(&self) -> usize {
        match self {
            CmapValue::I8(_) | CmapValue::U8(_) => 1,
            CmapValue::I16(_) | CmapValue::U16(_) => 2,
            CmapValue::I32(_) | CmapValue::U32(_) | CmapValue::Float(_) => 4,
            CmapValue::I64(_) | CmapValue::U64(_) | CmapValue::Double(_) => 8,
            CmapValue::Str(s) => s.len() + 1,
            CmapValue::StrBytes(s) => s.len() + 1,
            CmapValue::Binary(b) => b.len(),
        }
    }

    /// Reads a value as given on a command line: a decimal integer within the type's range; a float
    /// (`nan`, `inf`, `-inf` included; a finite text too large for the type is refused); a string as is,
    /// without NUL; binary data as pairs of hex digits, `""` being empty data.
    pub fn parse(ty: CmapType, text: &str) -> Result<CmapValue, CmapError> {
        let bad = |why: String| Err(CmapError::InvalidParam(why));
        if let Some((min, max)) = ty.int_range() {
            let n = match text.parse::<i128>() {
                Ok(n) => n,
                Err(e) => match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        return bad(format!("{text} is out of range for {ty} ({min}..={max})"));
                    }
                    _ => return bad(format!("{text:?} is not a decimal integer (type {ty})")),
                },
            };
            if n < min || n > max {
                return bad(format!("{n} is out of range for {ty} ({min}..={max})"));
            }
            // The range check above makes every conversion exact.
            return Ok(match ty {
                CmapType::I8 => CmapValue::I8(n as i8),
                CmapType::U8 => CmapValue::U8(n as u8),
                CmapType::I16 => CmapValue::I16(n as i16),
                CmapType::U16 => CmapValue::U16(n as u16),
                CmapType::I32 => CmapValue::I32(n as i32),
                CmapType::U32 => CmapValue::U32(n as u32),
                CmapType::I64 => CmapValue::I64(n as i64),
                _ => CmapValue::U64(n as u64),
            });
        }
        match ty {
            CmapType::Float | CmapType::Double => {
                let not_a_number = || bad(format!("{text:?} is not a number (type {ty})"));
                let (v, infinite) = if ty == CmapType::Float {
                    match text.parse::<f32>() {
                        Ok(f) => (CmapValue::Float(f), f.is_infinite()),
                        Err(_) => return not_a_number(),
                    }
                } else {
                    match text.parse::<f64>() {
                        Ok(f) => (CmapValue::Double(f), f.is_infinite()),
                        Err(_) => return not_a_number(),
                    }
                };
                let unsigned = text.trim_start_matches(['+', '-']);
                if infinite && !unsigned.get(..3).is_some_and(|s| s.eq_ignore_ascii_case("inf")) {
                    return bad(format!("{text} is out of range for {ty}"));
                }
                Ok(v)
            }
            CmapType::Str => {
                if text.contains('\0') {
                    return bad(format!("{text:?} contains a NUL byte, which a str value cannot hold"));
                }
                Ok(CmapValue::Str(text.to_string()))
            }
            _ => {
                if !text.len().is_multiple_of(2) {
                    return bad(format!(
                        "{text:?} has an odd number of hex digits ({}); bin takes pairs",
                        text.len()
                    ));
                }
                if let Some(c) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
                    return bad(format!("{text:?}: {c:?} is not a hex digit (type bin)"));
                }
                let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                let out = text
                    .as_bytes()
                    .chunks_exact(2)
                    .map(|pair| (digit(pair[0]) << 4) | digit(pair[1]))
                    .collect();
                Ok(CmapValue::Binary(out))
            }
        }
    }

    /// The value as corosync-cmapctl prints it: integers in decimal, floats in their shortest exact form
    /// (`NaN`, `inf`, `-inf` included), a string raw, binary data in lowercase hex.
    /// [`CmapValue::parse`] reads it back to the same value.
    pub fn display(&self) -> String {
        match self {
            CmapValue::I8(v) => v.to_string(),
            CmapValue::U8(v) => v.to_string(),
            CmapValue::I16(v) => v.to_string(),
            CmapValue::U16(v) => v.to_string(),
            CmapValue::I32(v) => v.to_string(),
            CmapValue::U32(v) => v.to_string(),
            CmapValue::I64(v) => v.to_string(),
            CmapValue::U64(v) => v.to_string(),
            CmapValue::Float(v) => v.to_string(),
            CmapValue::Double(v) => v.to_string(),
            CmapValue::Str(s) => s.clone(),
            CmapValue::StrBytes(s) => String::from_utf8_lossy(s).into_owned(),
            CmapValue::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        }
    }

    /// The value plus or minus one, wrapping, for the integer types; `None` for the others.
    fn stepped(&self, up: bool) -> Option<CmapValue> {
        macro_rules! step {
            ($x:expr) => {
                if up {
                    $x.wrapping_add(1)
                } else {
                    $x.wrapping_sub(1)
                }
            };
        }
        Some(match self {
            CmapValue::I8(x) => CmapValue::I8(step!(x)),
            CmapValue::U8(x) => CmapValue::U8(step!(x)),
            CmapValue::I16(x) => CmapValue::I16(step!(x)),
            CmapValue::U16(x) => CmapValue::U16(step!(x)),
            CmapValue::I32(x) => CmapValue::I32(step!(x)),
            CmapValue::U32(x) => CmapValue::U32(step!(x)),
            CmapValue::I64(x) => CmapValue::I64(step!(x)),
            CmapValue::U64(x) => CmapValue::U64(step!(x)),
            CmapValue::Float(_)
            | CmapValue::Double(_)
            | CmapValue::Str(_)
            | CmapValue::StrBytes(_)
            | CmapValue::Binary(_) => return None,
        })
    }
}

impl PartialEq for CmapValue {
    fn eq(&self, other: &CmapValue) -> bool {
        self.same_as(other)
    }
}

/// Bit equality is reflexive, NaN included.
impl Eq for CmapValue {}

/// A value for an error message: its type and at most 64 characters of its text.
fn describe(v: &CmapValue) -> String {
    const MAX: usize = 64;
    let text = v.display();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{} {:?}... ({} bytes)", v.ty(), &text[..cut], v.byte_len()),
        None => format!("{} {text:?}", v.ty()),
    }
}

fn describe_current(current: &Option<CmapValue>) -> String {
    match current {
        Some(v) => format!("it holds {}", describe(v)),
        None => "it does not exist".to_string(),
    }
}

/// Why a CMAP request was refused; each maps to the `cs_error_t` corosync would answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmapError {
    /// `CS_ERR_NAME_TOO_LONG` (corosync's answer to any bad key name)
    #[error("invalid key {key:?}: {why}")]
    InvalidKey { key: String, why: String },
    /// `CS_ERR_INVALID_PARAM`
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// `CS_ERR_NOT_EXIST`; the text names what is missing (`key "a.b"`, `track 7 of connection 3`).
    #[error("{0} does not exist")]
    NotExist(String),
    /// `CS_ERR_INVALID_PARAM` in corosync (`ICMAP_MAX_VALUE_LEN`); vigil's limit is [`Limits`].
    #[error("value for key {key:?} is {len} bytes; the limit is {max}")]
    TooLarge { key: String, len: usize, max: usize },
    /// `CS_ERR_ACCESS`; the text names the key and the read-only prefix it falls under.
    #[error("access denied: {0}")]
    Access(String),
    /// `CS_ERR_INVALID_PARAM`
    #[error("key {key:?} holds a {stored} value, not a {requested} one")]
    TypeMismatch {
        key: String,
        stored: CmapType,
        requested: CmapType,
    },
    /// vigil's own (compare-and-set); `current` is what the key holds now.
    #[error("key {key:?} does not hold the expected value: {}", describe_current(.current))]
    CasMismatch { key: String, current: Option<CmapValue> },
}

fn valid_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || KEY_PUNCTUATION.contains(c)
}

/// The characters of a key or a tracked prefix, and its length: `min` to `KEYNAME_MAXLEN` bytes.
fn check_key_text(key: &str, min: usize) -> Result<(), CmapError> {
    let bad = |why: String| {
        Err(CmapError::InvalidKey {
            key: key.to_string(),
            why,
        })
    };
    if key.len() < min || key.len() > KEYNAME_MAXLEN {
        return bad(format!(
            "it is {} bytes long; a key is {min} to {KEYNAME_MAXLEN} bytes",
            key.len()
        ));
    }
    if let Some(c) = key.chars().find(|c| !valid_key_char(*c)) {
        return bad(format!("{c:?} is not an ASCII letter, a digit or one of . _ - / :"));
    }
    Ok(())
}

/// A key as icmap takes it: 3 to 255 bytes of `a-z A-Z 0-9 . _ - / :`.
pub fn validate_key(key: &str) -> Result<(), CmapError> {
    check_key_text(key, KEYNAME_MINLEN)
}

/// A name (a tag, a PSM category) as one segment of a key: characters a key may not hold, and `/`, become
/// `/XX` for each of their UTF-8 bytes, so that distinct names give distinct keys (`a,b` → `a/2cb`).
pub fn key_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c != '/' && valid_key_char(c) {
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("/{b:02x}"));
            }
        }
    }
    out
}

/// A track, as its owner's handle to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u64);

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One change of one key, for one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub track: TrackId,
    /// The connection that owns the track.
    pub owner: u64,
    /// What the owner passed when it added the track (cmap's `user_data`).
    pub context: u64,
    /// [`TRACK_ADD`], [`TRACK_DELETE`] or [`TRACK_MODIFY`].
    pub event: u32,
    pub key: String,
    /// `None` for a delete.
    pub new: Option<CmapValue>,
    /// `None` for an add.
    pub old: Option<CmapValue>,
}

/// Bounds on what clients may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest [`CmapValue::byte_len`] a client may set.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_value_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Track {
    owner: u64,
    key: String,
    flags: u32,
    context: u64,
}

impl Track {
    fn matches(&self, key: &str, event: u32) -> bool {
        self.flags & event != 0
            && if self.flags & TRACK_PREFIX != 0 {
                key.starts_with(self.key.as_str())
            } else {
                key == self.key
            }
    }
}

/// The map, its tracks and its read-only prefixes.
#[derive(Debug, Clone, Default)]
pub struct CmapMap {
    values: BTreeMap<String, CmapValue>,
    /// By id, which is creation order.
    tracks: BTreeMap<TrackId, Track>,
    /// The last id handed out; ids start at 1.
    last_track: u64,
    readonly: Vec<String>,
}

impl CmapMap {
    /// An empty map whose keys under any of `readonly_prefixes` only vigild may change.
    pub fn new(readonly_prefixes: Vec<String>) -> CmapMap {
        CmapMap {
            readonly: readonly_prefixes,
            ..CmapMap::default()
        }
    }

    pub fn get(&self, key: &str) -> Result<&CmapValue, CmapError> {
        self.values.get(key).ok_or_else(|| not_exist(key))
    }

    /// The value if it has type `ty`; never a conversion.
    pub fn get_typed(&self, key: &str, ty: CmapType) -> Result<&CmapValue, CmapError> {
        let v = self.get(key)?;
        if v.ty() != ty {
            return Err(CmapError::TypeMismatch {
                key: key.to_string(),
                stored: v.ty(),
                requested: ty,
            });
        }
        Ok(v)
    }

    /// A client's set: the key must be valid and writable, the value within `limits`.
    pub fn set(&mut self, key: &str, value: CmapValue, limits: &Limits) -> Result<Vec<Notification>, CmapError> {
        self.check_user_write(key, &value, limits)?;
        Ok(self.store(key, value))
    }

    /// vigild's own set: read-only prefixes and limits do not apply.
    pub fn set_internal(&mut self, key: &str, value: CmapValue) -> Vec<Notification> {
        debug_assert!(validate_key(key).is_ok(), "invalid internal key {key:?}");
        self.store(key, value)
    }

    /// A client's delete.
    pub fn delete(&mut self, key: &str) -> Result<Vec<Notification>, CmapError> {
        self.check_writable(key)?;
        if !self.values.contains_key(key) {
            return Err(not_exist(key));
        }
        Ok(self.delete_internal(key))
    }

    /// vigild's own delete; a missing key is no change.
    pub fn delete_internal(&mut self, key: &str) -> Vec<Notification> {
        match self.values.remove(key) {
            Some(old) => self.notify(TRACK_DELETE, key, None, Some(&old)),
            None => vec![],
        }
    }

    /// Deletes every key that starts with `prefix`, in key order.
    pub fn delete_prefix_internal(&mut self, prefix: &str) -> Vec<Notification> {
        let keys: Vec<String> = self.iter_prefix(prefix).map(|(k, _)| k.to_string()).collect();
        keys.iter().flat_map(|k| self.delete_internal(k)).collect()
    }

    /// Adds one to an integer, wrapping.
    pub fn inc(&mut self, key: &str) -> Result<Vec<Notification>, CmapError> {
        self.adjust(key, true)
    }

    /// Takes one from an integer, wrapping.
    pub fn dec(&mut self, key: &str) -> Result<Vec<Notification>, CmapError> {
        self.adjust(key, false)
    }

    fn adjust(&mut self, key: &str, up: bool) -> Result<Vec<Notification>, CmapError> {
        self.check_writable(key)?;
        let v = self.get(key)?;
        let new = v.stepped(up).ok_or_else(|| {
            CmapError::InvalidParam(format!(
                "key {key:?} holds a {} value; only integers can be {}",
                v.ty(),
                if up { "incremented" } else { "decremented" }
            ))
        })?;
        Ok(self.store(key, new))
    }

    /// Sets `key` to `new` if it holds `expected` (`None`: if it does not exist). The key, the access
    /// and the new value are checked first, as for [`CmapMap::set`].
    pub fn compare_and_set(
        &mut self,
        key: &str,
        expected: Option<&CmapValue>,
        new: CmapValue,
        limits: &Limits,
    ) -> Result<Vec<Notification>, CmapError> {
        self.check_user_write(key, &new, limits)?;
        let current = self.values.get(key);
        let matches = match (current, expected) {
            (None, None) => true,
            (Some(c), Some(e)) => c.same_as(e),
            _ => false,
        };
        if !matches {
            return Err(CmapError::CasMismatch {
                key: key.to_string(),
                current: current.cloned(),
            });
        }
        Ok(self.store(key, new))
    }

    /// The keys that start with `prefix` (`""`: all), sorted.
    pub fn iter_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a CmapValue)> {
        self.values
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether clients may not change `key`.
    pub fn is_readonly(&self, key: &str) -> bool {
        self.readonly_prefix(key).is_some()
    }

    /// Adds a track for `owner`: `flags` are any of [`TRACK_ADD`], [`TRACK_DELETE`], [`TRACK_MODIFY`]
    /// and [`TRACK_PREFIX`]. None of the three events (0, or `TRACK_PREFIX` alone) is a track that
    /// delivers nothing, which corosync accepts too (exec/icmap.c, icmap_track_add refuses only unknown
    /// bits). An exact key must be a valid key; a prefix may be
    /// any start of one (`""`: every key).
    pub fn track_add(&mut self, owner: u64, key: &str, flags: u32, context: u64) -> Result<TrackId, CmapError> {
        let unknown = flags & !(TRACK_EVENTS | TRACK_PREFIX);
        if unknown != 0 {
            return Err(CmapError::InvalidParam(format!(
                "track_type {flags:#x} has unknown bits {unknown:#x}; the known ones are ADD {TRACK_ADD}, \
                 DELETE {TRACK_DELETE}, MODIFY {TRACK_MODIFY}, PREFIX {TRACK_PREFIX}"
            )));
        }
        if flags & TRACK_PREFIX != 0 {
            check_key_text(key, 0)?;
        } else {
            validate_key(key)?;
        }
        self.last_track += 1;
        let id = TrackId(self.last_track);
        self.tracks.insert(
            id,
            Track {
                owner,
                key: key.to_string(),
                flags,
                context,
            },
        );
        Ok(id)
    }

    /// Removes a track of `owner`; another owner's track is as good as missing.
    pub fn track_delete(&mut self, owner: u64, id: TrackId) -> Result<(), CmapError> {
        match self.tracks.get(&id) {
            Some(t) if t.owner == owner => {
                self.tracks.remove(&id);
                Ok(())
            }
            _ => Err(CmapError::NotExist(format!("track {id} of connection {owner}"))),
        }
    }

    /// Removes every track of a closed connection; returns how many there were.
    pub fn drop_owner(&mut self, owner: u64) -> usize {
        let before = self.tracks.len();
        self.tracks.retain(|_, t| t.owner != owner);
        before - self.tracks.len()
    }

    /// How many tracks `owner` has.
    pub fn tracks_of(&self, owner: u64) -> usize {
        self.tracks.values().filter(|t| t.owner == owner).count()
    }

    fn readonly_prefix(&self, key: &str) -> Option<&str> {
        self.readonly
            .iter()
            .find(|p| key.starts_with(p.as_str()))
            .map(String::as_str)
    }

    fn check_writable(&self, key: &str) -> Result<(), CmapError> {
        match self.readonly_prefix(key) {
            Some(p) => Err(CmapError::Access(format!("key {key:?} is read-only (under {p:?})"))),
            None => Ok(()),
        }
    }

    fn check_user_write(&self, key: &str, value: &CmapValue, limits: &Limits) -> Result<(), CmapError> {
        validate_key(key)?;
        self.check_writable(key)?;
        if value.byte_len() > limits.max_value_bytes {
            return Err(CmapError::TooLarge {
                key: key.to_string(),
                len: value.byte_len(),
                max: limits.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Stores a value and tells the tracks: an add, a modify, or nothing when it is the same.
    fn store(&mut self, key: &str, value: CmapValue) -> Vec<Notification> {
        if self.values.get(key).is_some_and(|old| old.same_as(&value)) {
            return vec![];
        }
        match self.values.insert(key.to_string(), value.clone()) {
            Some(old) => self.notify(TRACK_MODIFY, key, Some(&value), Some(&old)),
            None => self.notify(TRACK_ADD, key, Some(&value), None),
        }
    }

    fn notify(&self, event: u32, key: &str, new: Option<&CmapValue>, old: Option<&CmapValue>) -> Vec<Notification> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.matches(key, event))
            .map(|(id, t)| Notification {
                track: *id,
                owner: t.owner,
                context: t.context,
                event,
                key: key.to_string(),
                new: new.cloned(),
                old: old.cloned(),
            })
            .collect()
    }
}

fn not_exist(key: &str) -> CmapError {
    CmapError::NotExist(format!("key {key:?}"))
}

#[cfg(test)]
mod tests;
