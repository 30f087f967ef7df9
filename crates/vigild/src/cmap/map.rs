//! CMAP's state in vigild (the two maps, who may write and read, tracks, what is persisted), the
//! conversions between the wire's, the rules' and the store's values, and the names of vigild's own keys.

use std::collections::{BTreeSet, HashMap};

use vigil_core::cmap::{CmapError, CmapMap as Map, CmapValue as V, Limits, TrackId};
use vigil_proto::{CmapMap, CmapValue, ErrorCode, WireError};
use vigil_store::CmapRecord;

use crate::config::Settings;
use crate::conn::{Caller, ConnTx};

/// Keys under these prefixes are vigild's own: users read and track them, never write them.
pub const READONLY_PREFIXES: [&str; 3] = ["runtime.", "vigil.", "quorum."];

/// CMAP's state in vigild, beside the maps' own rules.
pub struct Cmap {
    pub main: Map,
    pub stats: Map,
    pub limits: Limits,
    /// Keys written with the persist flag or under a persistent prefix.
    pub persisted: BTreeSet<String>,
    pub persist_prefixes: Vec<String>,
    /// Who may write (besides root and vigild's user), and who may read (None: everyone).
    pub write_gid: Option<u32>,
    pub read_gid: Option<u32>,
    /// Track handles as the wire knows them: (map, the map's own id, owning connection, its uid).
    pub tracks: HashMap<u64, (CmapMap, TrackId, u64, u32)>,
    /// The handle of each (map is stats, the map's own id): a notification finds its handle at once,
    /// however many tracks there are.
    pub handles: HashMap<(bool, TrackId), u64>,
    /// Tracks held by each uid other than root's, bounded by [`TRACKS_PER_UID`].
    pub tracks_per_uid: HashMap<u32, usize>,
    pub next_track: u64,
    /// Where each tracking connection's notifications go.
    pub conns: HashMap<u64, ConnTx>,
    /// Each connection's `stats.ipcs.<conn>.requests`: counted per request, written once per step.
    pub ipcs: HashMap<u64, Ipcs>,
    /// The connections with requests this step not yet written.
    pub ipcs_due: Vec<u64>,
    /// `stats.vigild.*` as last written: a step that changed none of them writes none.
    pub daemon_stats: Option<[u64; 6]>,
    /// Requests carried out since vigild started, by kind (the index in [`OPS`]), for `/metrics`.
    pub ops: [u64; OPS.len()],
    /// Track notifications sent since vigild started (those a slow reader lost included).
    pub notified: u64,
}

/// The kinds of CMAP request `/metrics` counts, by the name of its `op` label.
pub const OPS: [&str; 10] = [
    "get",
    "set",
    "delete",
    "inc",
    "dec",
    "compare_and_set",
    "set_text",
    "iter",
    "track_add",
    "track_delete",
];

/// The index in [`OPS`] of a CMAP request, None for any other request.
pub fn op_of(req: &vigil_proto::Request) -> Option<usize> {
    use vigil_proto::Request as R;
    Some(match req {
        R::CmapGet { .. } => 0,
        R::CmapSet { .. } => 1,
        R::CmapDelete { .. } => 2,
        R::CmapInc { .. } => 3,
        R::CmapDec { .. } => 4,
        R::CmapCompareAndSet { .. } => 5,
        R::CmapSetText { .. } => 6,
        R::CmapIter { .. } => 7,
        R::CmapTrackAdd { .. } => 8,
        R::CmapTrackDelete { .. } => 9,
        _ => return None,
    })
}

/// CMAP tracks one uid other than root (and vigild's own) may hold over all its connections.
pub const TRACKS_PER_UID: usize = 1024;

impl Cmap {
    pub fn new() -> Cmap {
        Cmap {
            main: Map::new(READONLY_PREFIXES.iter().map(|p| p.to_string()).collect()),
            stats: Map::new(vec![String::new()]),
            limits: Limits::default(),
            persisted: BTreeSet::new(),
            persist_prefixes: Vec::new(),
            write_gid: None,
            read_gid: None,
            tracks: HashMap::new(),
            handles: HashMap::new(),
            tracks_per_uid: HashMap::new(),
            next_track: 1,
            conns: HashMap::new(),
            ipcs: HashMap::new(),
            ipcs_due: Vec::new(),
            daemon_stats: None,
            ops: [0; OPS.len()],
            notified: 0,
        }
    }
}

/// One connection's request count in the stats map, and the key it goes under (made once, not at
/// every step).
pub struct Ipcs {
    pub caller: Caller,
    pub key: String,
    /// The count in the map.
    pub written: u64,
    /// Requests since, not yet in the map.
    pub new: u64,
}

impl Ipcs {
    pub fn new(caller: Caller) -> Ipcs {
        Ipcs {
            caller,
            key: format!("stats.ipcs.{}.requests", caller.conn),
            written: 0,
            new: 0,
        }
    }
}

impl Default for Cmap {
    fn default() -> Cmap {
        Cmap::new()
    }
}

pub fn to_core(v: CmapValue) -> V {
    match v {
        CmapValue::I8(x) => V::I8(x),
        CmapValue::U8(x) => V::U8(x),
        CmapValue::I16(x) => V::I16(x),
        CmapValue::U16(x) => V::U16(x),
        CmapValue::I32(x) => V::I32(x),
        CmapValue::U32(x) => V::U32(x),
        CmapValue::I64(x) => V::I64(x),
        CmapValue::U64(x) => V::U64(x),
        CmapValue::Float(x) => V::Float(x),
        CmapValue::Double(x) => V::Double(x),
        CmapValue::Str(x) => V::Str(x),
        CmapValue::Binary(x) => V::Binary(x),
        // Normalised: bytes that are UTF-8 after all become the one form of that string.
        CmapValue::StrBytes(x) => V::string(x),
    }
}

pub fn to_wire(v: &V) -> CmapValue {
    match v {
        V::I8(x) => CmapValue::I8(*x),
        V::U8(x) => CmapValue::U8(*x),
        V::I16(x) => CmapValue::I16(*x),
        V::U16(x) => CmapValue::U16(*x),
        V::I32(x) => CmapValue::I32(*x),
        V::U32(x) => CmapValue::U32(*x),
        V::I64(x) => CmapValue::I64(*x),
        V::U64(x) => CmapValue::U64(*x),
        V::Float(x) => CmapValue::Float(*x),
        V::Double(x) => CmapValue::Double(*x),
        V::Str(x) => CmapValue::Str(x.clone()),
        V::Binary(x) => CmapValue::Binary(x.clone()),
        V::StrBytes(x) => CmapValue::StrBytes(x.clone()),
    }
}

pub fn to_record(v: &V) -> CmapRecord {
    match v {
        V::I8(x) => CmapRecord::I8(*x),
        V::U8(x) => CmapRecord::U8(*x),
        V::I16(x) => CmapRecord::I16(*x),
        V::U16(x) => CmapRecord::U16(*x),
        V::I32(x) => CmapRecord::I32(*x),
        V::U32(x) => CmapRecord::U32(*x),
        V::I64(x) => CmapRecord::I64(*x),
        V::U64(x) => CmapRecord::U64(*x),
        V::Float(x) => CmapRecord::Float(*x),
        V::Double(x) => CmapRecord::Double(*x),
        V::Str(x) => CmapRecord::Str(x.clone()),
        V::Binary(x) => CmapRecord::Binary(x.clone()),
        V::StrBytes(x) => CmapRecord::StrBytes(x.clone()),
    }
}

pub fn from_record(r: &CmapRecord) -> V {
    match r {
        CmapRecord::I8(x) => V::I8(*x),
        CmapRecord::U8(x) => V::U8(*x),
        CmapRecord::I16(x) => V::I16(*x),
        CmapRecord::U16(x) => V::U16(*x),
        CmapRecord::I32(x) => V::I32(*x),
        CmapRecord::U32(x) => V::U32(*x),
        CmapRecord::I64(x) => V::I64(*x),
        CmapRecord::U64(x) => V::U64(*x),
        CmapRecord::Float(x) => V::Float(*x),
        CmapRecord::Double(x) => V::Double(*x),
        CmapRecord::Str(x) => V::Str(x.clone()),
        CmapRecord::Binary(x) => V::Binary(x.clone()),
        CmapRecord::StrBytes(x) => V::string(x.clone()),
    }
}

/// corosync's answers, as wire codes: the C library maps them back to cs_error_t.
pub fn cmap_error(e: CmapError) -> WireError {
    let code = match &e {
        CmapError::InvalidKey { .. } | CmapError::InvalidParam(_) | CmapError::TypeMismatch { .. } => {
            ErrorCode::InvalidArgument
        }
        CmapError::NotExist(_) => ErrorCode::NotFound,
        CmapError::TooLarge { .. } => ErrorCode::LimitExceeded,
        CmapError::Access(_) => ErrorCode::PermissionDenied,
        CmapError::CasMismatch { .. } => ErrorCode::Conflict,
    };
    WireError::new(code, e.to_string())
}

impl Cmap {
    pub fn from_settings(s: &Settings) -> Cmap {
        let mut c = Cmap::new();
        c.apply_settings(s);
        c
    }

    pub fn apply_settings(&mut self, s: &Settings) {
        self.persist_prefixes = s.cmap_persist_prefixes.clone();
        self.write_gid = s.cmap_write_gid;
        self.read_gid = s.cmap_read_gid;
        self.limits = Limits {
            max_value_bytes: s.cmap_max_value_bytes,
        };
    }
}

/// The prefix of a tag's keys. Tag names may hold characters keys may not (`,` `@` `+`, letters beyond
/// ASCII): those are escaped (`vigil_core::cmap::key_segment`).
pub fn tag_key_prefix(tag: &str) -> String {
    format!("vigil.pmf.{}.", vigil_core::cmap::key_segment(tag))
}

/// The prefix of a PSM member's keys, escaped as a tag's.
pub fn member_key_prefix(category: &str, pid: i32) -> String {
    format!("vigil.psm.{}.{pid}.", vigil_core::cmap::key_segment(category))
}

/// Whether every key under `prefix` stays within CMAP's 255 bytes; a longer name has no keys.
pub fn fits(prefix: &str) -> bool {
    vigil_core::cmap::validate_key(&format!("{prefix}restarts")).is_ok()
}
