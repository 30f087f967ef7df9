//! CMAP: typed values out and in, entries, track changes.

use serde::{Deserialize, Serialize};

use crate::msg;

/// CMAP's value types, by the names `vigil cmap set` and corosync-cmapctl use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CmapType {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Flt,
    Dbl,
    Str,
    Bin,
}

/// The JSON value of a CMAP value: a number for the numeric types, a string for `str`, lower-case hex for
/// `bin`; a float that is not finite is the string `inf`, `-inf` or `NaN`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CmapScalar {
    Uint(u64),
    Int(i64),
    Float(f64),
    Text(String),
}

/// A typed CMAP value: `{"type": "u32", "value": 3}`. A string whose bytes are not UTF-8 (stored by a C
/// program) has its value with U+FFFD where a byte is not, and its exact bytes in `hex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmapTyped {
    #[serde(rename = "type")]
    pub ty: CmapType,
    pub value: CmapScalar,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn float(x: f64) -> CmapScalar {
    if x.is_finite() {
        CmapScalar::Float(x)
    } else {
        CmapScalar::Text(x.to_string())
    }
}

impl From<&msg::CmapValue> for CmapTyped {
    fn from(v: &msg::CmapValue) -> CmapTyped {
        use msg::CmapValue as V;
        use CmapScalar::{Int, Text, Uint};
        let (ty, value) = match v {
            V::I8(x) => (CmapType::I8, Int((*x).into())),
            V::U8(x) => (CmapType::U8, Uint((*x).into())),
            V::I16(x) => (CmapType::I16, Int((*x).into())),
            V::U16(x) => (CmapType::U16, Uint((*x).into())),
            V::I32(x) => (CmapType::I32, Int((*x).into())),
            V::U32(x) => (CmapType::U32, Uint((*x).into())),
            V::I64(x) => (CmapType::I64, Int(*x)),
            V::U64(x) => (CmapType::U64, Uint(*x)),
            // Through the decimal text, so that 0.1f32 reads 0.1 and not 0.10000000149011612.
            V::Float(x) => (CmapType::Flt, float(x.to_string().parse().unwrap_or(f64::from(*x)))),
            V::Double(x) => (CmapType::Dbl, float(*x)),
            V::Str(s) => (CmapType::Str, Text(s.clone())),
            V::StrBytes(b) => {
                return CmapTyped {
                    ty: CmapType::Str,
                    value: Text(String::from_utf8_lossy(b).into_owned()),
                    hex: Some(hex(b)),
                }
            }
            V::Binary(b) => (CmapType::Bin, Text(hex(b))),
        };
        CmapTyped { ty, value, hex: None }
    }
}

/// A typed CMAP value that does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CMAP value of type {ty}: {problem}")]
pub struct CmapValueError {
    pub ty: &'static str,
    pub problem: String,
}

impl CmapType {
    pub fn name(self) -> &'static str {
        match self {
            CmapType::I8 => "i8",
            CmapType::U8 => "u8",
            CmapType::I16 => "i16",
            CmapType::U16 => "u16",
            CmapType::I32 => "i32",
            CmapType::U32 => "u32",
            CmapType::I64 => "i64",
            CmapType::U64 => "u64",
            CmapType::Flt => "flt",
            CmapType::Dbl => "dbl",
            CmapType::Str => "str",
            CmapType::Bin => "bin",
        }
    }
}

impl TryFrom<&CmapTyped> for msg::CmapValue {
    type Error = CmapValueError;

    fn try_from(t: &CmapTyped) -> Result<msg::CmapValue, CmapValueError> {
        use msg::CmapValue as V;
        let err = |problem: String| CmapValueError {
            ty: t.ty.name(),
            problem,
        };
        let int = || -> Result<i128, CmapValueError> {
            match &t.value {
                CmapScalar::Uint(u) => Ok(i128::from(*u)),
                CmapScalar::Int(i) => Ok(i128::from(*i)),
                other => Err(err(format!("{} is not an integer", show(other)))),
            }
        };
        fn fit<T: TryFrom<i128>>(n: i128, err: impl Fn(String) -> CmapValueError) -> Result<T, CmapValueError> {
            T::try_from(n).map_err(|_| err(format!("{n} is out of range")))
        }
        let real = || -> Result<f64, CmapValueError> {
            match &t.value {
                CmapScalar::Uint(u) => Ok(*u as f64),
                CmapScalar::Int(i) => Ok(*i as f64),
                CmapScalar::Float(f) => Ok(*f),
                CmapScalar::Text(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|f| !f.is_finite())
                    .ok_or_else(|| err(format!("{s:?} is not a number"))),
            }
        };
        let text = || -> Result<&str, CmapValueError> {
            match &t.value {
                CmapScalar::Text(s) => Ok(s),
                other => Err(err(format!("{} is not a string", show(other)))),
            }
        };
        Ok(match t.ty {
            CmapType::I8 => V::I8(fit(int()?, err)?),
            CmapType::U8 => V::U8(fit(int()?, err)?),
            CmapType::I16 => V::I16(fit(int()?, err)?),
            CmapType::U16 => V::U16(fit(int()?, err)?),
            CmapType::I32 => V::I32(fit(int()?, err)?),
            CmapType::U32 => V::U32(fit(int()?, err)?),
            CmapType::I64 => V::I64(fit(int()?, err)?),
            CmapType::U64 => V::U64(fit(int()?, err)?),
            CmapType::Flt => {
                let f = real()?;
                if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                    return Err(err(format!("{f:e} is out of range")));
                }
                V::Float(f as f32)
            }
            CmapType::Dbl => V::Double(real()?),
            CmapType::Str => match &t.hex {
                Some(h) => {
                    let b = unhex(h).ok_or_else(|| err(format!("hex {h:?} is not pairs of hex digits")))?;
                    match String::from_utf8(b) {
                        Ok(s) => V::Str(s),
                        Err(e) => V::StrBytes(e.into_bytes()),
                    }
                }
                None => V::Str(text()?.to_string()),
            },
            CmapType::Bin => {
                let h = text()?;
                V::Binary(unhex(h).ok_or_else(|| err(format!("{h:?} is not pairs of hex digits")))?)
            }
        })
    }
}

fn show(v: &CmapScalar) -> String {
    match v {
        CmapScalar::Uint(u) => u.to_string(),
        CmapScalar::Int(i) => i.to_string(),
        CmapScalar::Float(f) => f.to_string(),
        CmapScalar::Text(s) => format!("{s:?}"),
    }
}

/// A CMAP key and its typed value: `{"key": "a.b", "type": "u32", "value": 3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmapEntry {
    pub key: String,
    #[serde(flatten)]
    pub value: CmapTyped,
}

impl From<&msg::CmapEntry> for CmapEntry {
    fn from(e: &msg::CmapEntry) -> CmapEntry {
        CmapEntry {
            key: e.key.clone(),
            value: (&e.value).into(),
        }
    }
}

/// A change seen by a CMAP track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmapChange {
    /// add, delete or modify.
    pub event: String,
    pub key: String,
    pub track: u64,
    /// None for a deletion.
    pub new: Option<CmapTyped>,
    /// None for an addition.
    pub old: Option<CmapTyped>,
}

impl From<&msg::CmapNotification> for CmapChange {
    fn from(n: &msg::CmapNotification) -> CmapChange {
        CmapChange {
            event: match n.event {
                4 => "add",
                1 => "delete",
                2 => "modify",
                _ => "unknown",
            }
            .into(),
            key: n.key.clone(),
            track: n.track,
            new: n.new.as_ref().map(CmapTyped::from),
            old: n.old.as_ref().map(CmapTyped::from),
        }
    }
}
