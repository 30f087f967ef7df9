//! The JSON shapes of vigil's data: the documented, stable contract of `vigil --json` and of any other
//! JSON front of vigild (docs/json.md).
//!
//! The wire types are shaped for postcard and for the C libraries (`Option<(i32, ExitStatus)>`, flag words,
//! `Vec<(String, String)>`); serde's own encoding of them (`{"Signal": 15}`, `[["k", "v"]]`) is no contract a
//! script can lean on. These views are plain objects with lower-case enum names, times as RFC 3339 (UTC,
//! milliseconds) beside the epoch milliseconds, environments and attributes as objects, and CMAP values
//! with their type beside them. Each is built from its wire type with `From`; the ones a client may send
//! in (a typed CMAP value) also convert back with `TryFrom`.
//!
//! Fields are only ever added to these shapes; none is renamed, retyped or dropped.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{msg, signal_name};

/// `ms` since the Unix epoch as RFC 3339 in UTC, always with milliseconds: `2026-12-02T18:00:00.123Z`.
/// Times past the year 9999 (no real clock gives one) are shown as the last that RFC 3339 can hold.
pub fn rfc3339(ms: u64) -> String {
    let t = i64::try_from(ms)
        .ok()
        .and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    // Whole milliseconds: the precision of every time vigil keeps.
    let t = t.round(jiff::Unit::Millisecond).unwrap_or(t);
    format!("{t:.3}")
}

/// A time both ways: (`rfc3339`, ms).
fn when(ms: u64) -> (String, u64) {
    (rfc3339(ms), ms)
}

/// A list of `(name, value)` pairs shown as one JSON object, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs<V>(pub Vec<(String, V)>);

impl<V> Default for Pairs<V> {
    fn default() -> Self {
        Pairs(Vec::new())
    }
}

impl<V: Serialize> Serialize for Pairs<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = Pairs<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Pairs<V>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V_(std::marker::PhantomData))
    }
}

/// How a process ended: `{"code": 1}`, `{"signal": 15, "name": "SIGTERM"}`, or `{"unknown": true}` when
/// nobody could tell (never reported as code 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Exit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The signal's name (`SIGTERM`; `SIG40` for one without a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

impl From<&msg::ExitStatus> for Exit {
    fn from(e: &msg::ExitStatus) -> Exit {
        match *e {
            msg::ExitStatus::Code(c) => Exit {
                code: Some(c),
                ..Exit::default()
            },
            msg::ExitStatus::Signal(s) => Exit {
                signal: Some(s),
                name: Some(signal_name(s)),
                ..Exit::default()
            },
            msg::ExitStatus::Unknown => Exit {
                unknown: true,
                ..Exit::default()
            },
        }
    }
}

/// A tag's last exit: the pid of its last watched process and how it ended, in one object
/// (`{"pid": 42, "code": 1}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    pub pid: i32,
    #[serde(flatten)]
    pub exit: Exit,
}

/// One process of a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    /// 0 for the started process, 1 for its children, ...
    pub level: u32,
    /// Whether the tag's level watches it.
    pub watched: bool,
}

impl From<&msg::ProcInfo> for Proc {
    fn from(p: &msg::ProcInfo) -> Proc {
        Proc {
            pid: p.pid,
            level: p.level,
            watched: p.watched,
        }
    }
}

/// Exponential backoff between restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub min_ms: u64,
    pub max_ms: u64,
}

/// A probe of a tag and how it fares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// `exec:COMMAND`, `tcp:HOST:PORT` or the URL.
    pub check: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub threshold: u32,
    /// Consecutive failures so far in the current instance.
    pub failures: u32,
    pub last_error: Option<String>,
}

fn program_type(t: msg::ProgramType) -> &'static str {
    match t {
        msg::ProgramType::Svc => "svc",
        msg::ProgramType::Mon => "mon",
        msg::ProgramType::Other => "other",
    }
}

/// The whole state of a tag (`vigil status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    /// waiting, running, backoff, action, stopping, stopped or failed.
    pub state: String,
    pub reason: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub command: Vec<String>,
    /// The environment as an object; values of another user's tag are hidden by vigild.
    pub env: Pairs<String>,
    pub cwd: Option<String>,
    pub instance: u32,
    /// svc, mon or other.
    pub program_type: String,
    pub level: i64,
    /// -1: no limit.
    pub retries: i64,
    /// Seconds; -1: no period.
    pub period: i64,
    pub action: Option<String>,
    pub backoff: Option<Backoff>,
    pub after: Vec<String>,
    pub restarts_used: u32,
    pub starts: u64,
    pub main_pid: Option<i32>,
    pub procs: Vec<Proc>,
    /// When the current instance started.
    pub started: Option<String>,
    pub started_ms: Option<u64>,
    pub last_exit: Option<LastExit>,
    pub log_path: String,
    pub from_config: bool,
    pub watchdog_ms: Option<u64>,
    pub probes: Vec<Probe>,
    /// The current instance sent `READY=1`.
    pub ready: bool,
    pub status_text: Option<String>,
    /// The node that answered, when several were asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<&msg::TagStatus> for Tag {
    fn from(s: &msg::TagStatus) -> Tag {
        let (started, started_ms) = s.started_ms.map(when).unzip();
        Tag {
            name: s.name.clone(),
            state: s.state.clone(),
            reason: s.reason.clone(),
            uid: s.uid,
            gid: s.gid,
            command: s.command.clone(),
            env: Pairs(s.env.clone()),
            cwd: s.cwd.clone(),
            instance: s.instance,
            program_type: program_type(s.program_type).into(),
            level: s.level,
            retries: s.retries,
            period: s.period,
            action: s.action.clone(),
            backoff: s.backoff.map(|b| Backoff {
                min_ms: b.min_ms,
                max_ms: b.max_ms,
            }),
            after: s.after.clone(),
            restarts_used: s.restarts_used,
            starts: s.starts,
            main_pid: s.main_pid,
            procs: s.procs.iter().map(Proc::from).collect(),
            started,
            started_ms,
            last_exit: s.last_exit.as_ref().map(|(pid, e)| LastExit {
                pid: *pid,
                exit: e.into(),
            }),
            log_path: s.log_path.clone(),
            from_config: s.from_config,
            watchdog_ms: s.watchdog_ms,
            probes: s
                .probes
                .iter()
                .map(|p| Probe {
                    check: p.check.clone(),
                    interval_ms: p.interval_ms,
                    timeout_ms: p.timeout_ms,
                    threshold: p.threshold,
                    failures: p.failures,
                    last_error: p.last_error.clone(),
                })
                .collect(),
            ready: s.ready,
            status_text: s.status_text.clone(),
            node: None,
        }
    }
}

/// One line of `vigil list`: the state, the processes, since when it runs, the restarts used and the
/// last exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagItem {
    pub name: String,
    pub state: String,
    pub main_pid: Option<i32>,
    pub procs: Vec<Proc>,
    pub started: Option<String>,
    pub started_ms: Option<u64>,
    pub restarts_used: u32,
    /// -1: no limit.
    pub retries: i64,
    pub starts: u64,
    pub last_exit: Option<LastExit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<&msg::TagStatus> for TagItem {
    fn from(s: &msg::TagStatus) -> TagItem {
        let t = Tag::from(s);
        TagItem {
            name: t.name,
            state: t.state,
            main_pid: t.main_pid,
            procs: t.procs,
            started: t.started,
            started_ms: t.started_ms,
            restarts_used: t.restarts_used,
            retries: t.retries,
            starts: t.starts,
            last_exit: t.last_exit,
            node: None,
        }
    }
}

/// An event attribute: a JSON string, number or boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> AttrValue {
        AttrValue::Int(v)
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> AttrValue {
        AttrValue::Bool(v)
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> AttrValue {
        AttrValue::Str(v)
    }
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> AttrValue {
        AttrValue::Str(v.into())
    }
}

impl From<&msg::Value> for AttrValue {
    fn from(v: &msg::Value) -> AttrValue {
        match v {
            msg::Value::Str(s) => AttrValue::Str(s.clone()),
            msg::Value::Int(i) => AttrValue::Int(*i),
            msg::Value::Bool(b) => AttrValue::Bool(*b),
        }
    }
}

/// One event; from the cluster stream it also has the etcd revision `rev` that orders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub time: String,
    pub time_ms: u64,
    pub name: String,
    pub node: String,
    pub subject: String,
    pub attrs: Pairs<AttrValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<u64>,
}

impl From<&msg::Event> for Event {
    fn from(e: &msg::Event) -> Event {
        Event {
            seq: e.seq,
            time: rfc3339(e.time_ms),
            time_ms: e.time_ms,
            name: e.name.clone(),
            node: e.node.clone(),
            subject: e.subject.clone(),
            attrs: Pairs(e.attrs.iter().map(|(k, v)| (k.clone(), v.into())).collect()),
            rev: None,
        }
    }
}

impl From<&msg::ClusterEvent> for Event {
    fn from(e: &msg::ClusterEvent) -> Event {
        Event {
            rev: Some(e.rev),
            ..Event::from(&e.event)
        }
    }
}

/// A loss marker of an event stream: `{"lost": {"from": N, "to": M}}`, sequence numbers `N..=M` (or, of the
/// cluster stream, `{"lost": {"from_rev": N, "to_rev": M}}`, etcd revisions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub lost: LostRange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LostRange {
    Seq { from: u64, to: u64 },
    Rev { from_rev: u64, to_rev: u64 },
}

/// A PSM category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsmCategory {
    pub name: String,
    pub members: u32,
    pub running: u32,
    pub created: String,
    pub created_ms: u64,
}

impl From<&msg::PsmCategory> for PsmCategory {
    fn from(c: &msg::PsmCategory) -> PsmCategory {
        PsmCategory {
            name: c.name.clone(),
            members: c.members,
            running: c.running,
            created: rfc3339(c.created_ms),
            created_ms: c.created_ms,
        }
    }
}

/// A PSM member: the C API's flag word as booleans, the exit decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsmMember {
    pub category: String,
    /// `<nodeid>-<pid>`.
    pub name: String,
    pub pid: i32,
    pub node: String,
    pub state: String,
    pub argv: Vec<String>,
    /// The saved argv was cut to the limit.
    pub argv_truncated: bool,
    pub exited: bool,
    /// Cluster mode: the member's node is down and this is its last known state.
    pub unreachable: bool,
    /// How it ended, once it has.
    pub exit: Option<Exit>,
    /// The wait(2) status, once exited and known.
    pub wait_status: Option<u32>,
    pub uid: u32,
    /// The process's start time as the kernel counts it (clock ticks since boot), which tells a reused
    /// pid from the member.
    pub start_time: u64,
    pub added: String,
    pub added_ms: u64,
}

impl From<&msg::PsmMember> for PsmMember {
    fn from(m: &msg::PsmMember) -> PsmMember {
        PsmMember {
            category: m.category.clone(),
            name: m.name.clone(),
            pid: m.pid,
            node: m.node.clone(),
            state: m.state.clone(),
            argv: m.argv.clone(),
            argv_truncated: m.flags & crate::PSM_FL_ARGTRUNC != 0,
            exited: m.flags & crate::PSM_FL_EXIT != 0,
            unreachable: m.flags & crate::PSM_FL_UNREACHABLE != 0,
            exit: m.exit.as_ref().map(Exit::from),
            wait_status: m.exitcode,
            uid: m.uid,
            start_time: m.start_time,
            added: rfc3339(m.added_ms),
            added_ms: m.added_ms,
        }
    }
}

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

/// A SAM application, by its supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamApp {
    /// The supervisor's pid.
    pub pid: i32,
    pub uid: u32,
    pub name: String,
    pub instance: u32,
    /// The current instance's pid (0 between instances).
    pub child: i32,
    /// stopped, running, waiting_for_quorum or failed.
    pub state: String,
    /// restart or quit.
    pub recovery: String,
    /// The QUORUM policy bit.
    pub quorum: bool,
    /// The CMAP policy bit.
    pub cmap: bool,
    /// 0: no time limit.
    pub interval_ms: u64,
    pub warn_signal: i32,
    pub warn_signal_name: String,
    pub data_size: u64,
    /// None before the first heartbeat.
    pub last_heartbeat: Option<String>,
    pub last_heartbeat_ms: Option<u64>,
    pub registered: String,
    pub registered_ms: u64,
    pub connected: bool,
}

impl From<&msg::SamProcess> for SamApp {
    fn from(p: &msg::SamProcess) -> SamApp {
        let (last_heartbeat, last_heartbeat_ms) = Some(p.last_updated_ms).filter(|m| *m != 0).map(when).unzip();
        SamApp {
            pid: p.pid,
            uid: p.uid,
            name: p.name.clone(),
            instance: p.info.instance,
            child: p.info.child,
            state: match p.info.state {
                msg::SamState::Stopped => "stopped",
                msg::SamState::Running => "running",
                msg::SamState::WaitingForQuorum => "waiting_for_quorum",
                msg::SamState::Failed => "failed",
            }
            .into(),
            recovery: if p.info.policy & crate::SAM_POLICY_RESTART != 0 {
                "restart"
            } else {
                "quit"
            }
            .into(),
            quorum: p.info.policy & crate::SAM_POLICY_QUORUM != 0,
            cmap: p.info.policy & crate::SAM_POLICY_CMAP != 0,
            interval_ms: p.info.interval_ms,
            warn_signal: p.info.warn_signal,
            warn_signal_name: signal_name(p.info.warn_signal),
            data_size: p.data_size,
            last_heartbeat,
            last_heartbeat_ms,
            registered: rfc3339(p.registered_ms),
            registered_ms: p.registered_ms,
            connected: p.connected,
        }
    }
}

/// A node of the cluster as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub id: u32,
    /// up or down.
    pub state: String,
    /// Since when it has been up (or down).
    pub since: String,
    pub since_ms: u64,
    pub address: String,
    pub pid: u32,
    pub version: String,
    pub this_node: bool,
}

impl From<&msg::NodeInfo> for Node {
    fn from(n: &msg::NodeInfo) -> Node {
        Node {
            name: n.name.clone(),
            id: n.id,
            state: if n.up { "up" } else { "down" }.into(),
            since: rfc3339(n.since_ms),
            since_ms: n.since_ms,
            address: n.address.clone(),
            pid: n.pid,
            version: n.version.clone(),
            this_node: n.this_node,
        }
    }
}

/// Whether the node is quorate, with the numbers that decide it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    pub quorate: bool,
    /// The votes quorum is decided on.
    pub votes: Option<u64>,
    pub expected_votes: Option<u64>,
}

fn unsigned(v: &msg::CmapValue) -> Option<u64> {
    use msg::CmapValue as V;
    match *v {
        V::U8(x) => Some(x.into()),
        V::U16(x) => Some(x.into()),
        V::U32(x) => Some(x.into()),
        V::U64(x) => Some(x),
        V::I8(x) => u64::try_from(x).ok(),
        V::I16(x) => u64::try_from(x).ok(),
        V::I32(x) => u64::try_from(x).ok(),
        V::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

impl Quorum {
    /// From the quorum flag and the CMAP keys `runtime.votequorum.total_votes` (votes) and
    /// `quorum.expected_votes`.
    pub fn new(quorate: bool, votes: &msg::CmapValue, expected_votes: &msg::CmapValue) -> Quorum {
        Quorum {
            quorate,
            votes: unsigned(votes),
            expected_votes: unsigned(expected_votes),
        }
    }
}

/// Facts about the running vigild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Daemon {
    pub version: String,
    pub pid: u32,
    pub uid: u32,
    pub node: String,
    pub node_id: u32,
    pub started: String,
    pub started_ms: u64,
    pub state_dir: String,
    pub socket: String,
    pub config: Option<String>,
    pub tags: u32,
    /// "process connector" or "/proc scan".
    pub tracking: String,
    /// The oldest stored event.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Requests waiting for a condition.
    pub waiting: u32,
    /// Connections subscribed to events.
    pub subscribers: u32,
}

impl From<&msg::DaemonInfo> for Daemon {
    fn from(d: &msg::DaemonInfo) -> Daemon {
        Daemon {
            version: d.version.clone(),
            pid: d.pid,
            uid: d.uid,
            node: d.node.clone(),
            node_id: d.node_id,
            started: rfc3339(d.started_ms),
            started_ms: d.started_ms,
            state_dir: d.state_dir.clone(),
            socket: d.socket.clone(),
            config: d.config.clone(),
            tags: d.tags,
            tracking: d.tracking.clone(),
            first_seq: d.first_seq,
            last_seq: d.last_seq,
            waiting: d.waiting,
            subscribers: d.subscribers,
        }
    }
}

/// What a reload did, tag names by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reload {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

impl From<&msg::ReloadReport> for Reload {
    fn from(r: &msg::ReloadReport) -> Reload {
        Reload {
            started: r.started.clone(),
            stopped: r.stopped.clone(),
            restarted: r.restarted.clone(),
            unchanged: r.unchanged.clone(),
        }
    }
}

/// What a command that changes something did: `{"subject": "web", "done": "stopped", "state": "stopped"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The tag, category, key or pid the command was about.
    pub subject: String,
    /// What was done, a past participle: started, stopped, killed, restarted, removed, modified, set, ...
    pub done: String,
    /// The subject's state afterwards, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Details (`signal`, `pid`, `processes`, ...), as the command has them.
    #[serde(default, skip_serializing_if = "Pairs::is_empty")]
    pub details: Pairs<AttrValue>,
}

impl<V> Pairs<V> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests;
