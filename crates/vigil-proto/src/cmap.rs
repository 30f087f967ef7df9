//! CMAP on the wire: typed values, map selection, and the track notification pushed to a connection.

use serde::{Deserialize, Serialize};

/// Which map: the main one (read-write) or the stats map (read-only counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CmapMap {
    #[default]
    Main,
    Stats,
}

/// A typed value, as cmap.h's types: the type travels with the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A string (`CMAP_VALUETYPE_STRING`) whose bytes are not UTF-8: corosync's strings are bytes, and a
    /// C program gets back exactly what it stored. Valid UTF-8 always travels as `Str`, so older peers
    /// see this variant only for a value they could never have held.
    StrBytes(Vec<u8>),
}

/// One key and its value, for iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmapEntry {
    pub key: String,
    pub value: CmapValue,
}

/// A change seen by a track: pushed as `ServerMsg::CmapNotify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmapNotification {
    /// The handle `CmapTrackAdd` returned.
    pub track: u64,
    /// `CMAP_TRACK_ADD` (4), `CMAP_TRACK_DELETE` (1) or `CMAP_TRACK_MODIFY` (2).
    pub event: u32,
    pub key: String,
    /// None for a deletion.
    pub new: Option<CmapValue>,
    /// None for an addition.
    pub old: Option<CmapValue>,
    /// The caller's context, given back unchanged.
    pub context: u64,
}
