//! The JSON shapes of answers and bodies. Answers are the protocol's types as the CLI's `--json` prints
//! them (serde's plain objects), and CMAP values as `{"type": "u16", "value": 8080}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use vigil_proto::{Backoff, CmapEntry, CmapNotification, CmapValue, Response, RunSpec};

/// A CMAP value's type name and text, as `vigil cmap` shows them.
pub fn cmap_text(v: &CmapValue) -> (&'static str, String) {
    match v {
        CmapValue::I8(x) => ("i8", x.to_string()),
        CmapValue::U8(x) => ("u8", x.to_string()),
        CmapValue::I16(x) => ("i16", x.to_string()),
        CmapValue::U16(x) => ("u16", x.to_string()),
        CmapValue::I32(x) => ("i32", x.to_string()),
        CmapValue::U32(x) => ("u32", x.to_string()),
        CmapValue::I64(x) => ("i64", x.to_string()),
        CmapValue::U64(x) => ("u64", x.to_string()),
        CmapValue::Float(x) => ("flt", x.to_string()),
        CmapValue::Double(x) => ("dbl", x.to_string()),
        CmapValue::Str(x) => ("str", x.clone()),
        CmapValue::StrBytes(x) => ("str", String::from_utf8_lossy(x).into_owned()),
        CmapValue::Binary(x) => ("bin", x.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// `{"type": ..., "value": ...}`: numbers as JSON numbers (64-bit ones too; a reader that needs them
/// exact reads them as such), text and binary (hex) as strings, a float that is not finite as text.
pub fn cmap_json(v: &CmapValue) -> Value {
    let (ty, text) = cmap_text(v);
    let value = match v {
        CmapValue::Str(_) | CmapValue::StrBytes(_) | CmapValue::Binary(_) => Value::String(text),
        CmapValue::Float(x) if x.is_finite() => json!(x),
        CmapValue::Double(x) if x.is_finite() => json!(x),
        CmapValue::Float(_) | CmapValue::Double(_) => Value::String(text),
        _ => serde_json::from_str(&text).unwrap_or(Value::String(text)),
    };
    json!({ "type": ty, "value": value })
}

pub fn cmap_entry(e: &CmapEntry) -> Value {
    let mut j = cmap_json(&e.value);
    j["key"] = Value::String(e.key.clone());
    j
}

pub fn cmap_note(n: &CmapNotification) -> Value {
    let event = match n.event {
        4 => "add",
        1 => "delete",
        _ => "modify",
    };
    json!({
        "event": event,
        "key": n.key,
        "new": n.new.as_ref().map(cmap_json),
        "old": n.old.as_ref().map(cmap_json),
    })
}

fn plain<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A successful answer as JSON.
pub fn response(r: &Response) -> Value {
    match r {
        Response::Ok => json!({ "ok": true }),
        Response::Exists(b) => json!({ "exists": b }),
        Response::Tag(t) => plain(t),
        Response::Tags(t) => plain(t),
        Response::List(l) => plain(l),
        Response::Events(e) => plain(e),
        Response::Reload(r) => plain(r),
        Response::Daemon(d) => plain(d),
        Response::PsmMembers(m) => plain(m),
        Response::PsmCategories(c) => plain(c),
        Response::CmapValue(v) => cmap_json(v),
        Response::CmapEntries(e) => Value::Array(e.iter().map(cmap_entry).collect()),
        Response::CmapTrack(t) => json!({ "track": t }),
        Response::SamProcesses(p) => plain(p),
        Response::Quorate(q) => json!({ "quorate": q }),
        Response::Nodes(n) => plain(n),
        Response::ClusterEvents(c) => plain(c),
    }
}

fn minus_one() -> i64 {
    -1
}

/// `POST /api/tags`: `vigil run`'s options, with its defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    pub tag: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    #[serde(default = "minus_one")]
    pub level: i64,
    #[serde(default)]
    pub retries: i64,
    #[serde(default = "minus_one")]
    pub period: i64,
    pub action: Option<String>,
    pub backoff: Option<BackoffBody>,
    #[serde(default)]
    pub after: Vec<String>,
    pub stop_signal: Option<i32>,
    pub stop_timeout_ms: Option<u64>,
    pub watchdog_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffBody {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl RunBody {
    pub fn spec(self) -> RunSpec {
        let mut s = RunSpec::new(self.tag, self.command);
        s.env = self.env.into_iter().collect();
        s.cwd = self.cwd;
        s.level = self.level;
        s.retries = self.retries;
        s.period = self.period;
        s.action = self.action;
        s.backoff = self.backoff.map(|b| Backoff {
            min_ms: b.min_ms,
            max_ms: b.max_ms,
        });
        s.after = self.after;
        s.stop_signal = self.stop_signal;
        s.stop_timeout_ms = self.stop_timeout_ms;
        s.watchdog_ms = self.watchdog_ms;
        s
    }
}

/// `POST /api/tags/{tag}/stop`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    pub signal: Option<i32>,
    pub wait_ms: Option<u64>,
}

/// `POST /api/tags/{tag}/kill`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    pub signal: i32,
    pub wait_ms: Option<u64>,
}

/// `PATCH /api/tags/{tag}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifyBody {
    pub retries: Option<i64>,
    pub period: Option<i64>,
}

/// A body that must be empty or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `POST /api/psm/categories`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryBody {
    pub category: String,
}

/// `POST /api/psm/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub category: String,
    pub pid: i32,
}

/// `PUT /api/psm/members/{pid}/state`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    pub state: String,
    pub category: Option<String>,
}

/// `PUT /api/cmap/keys/{key}`: a type name (i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin) and a value,
/// a number or a string (binary in hex), parsed by vigild as `vigil cmap set` is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmapBody {
    #[serde(rename = "type")]
    pub ty: String,
    pub value: Value,
    #[serde(default)]
    pub persist: bool,
}

impl CmapBody {
    /// The value as text, as a person would type it.
    pub fn text(&self) -> Result<String, String> {
        match &self.value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!("a CMAP value is a number or a string, not {other}")),
        }
    }
}
