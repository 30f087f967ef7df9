//! The JSON shapes of answers and bodies. Answers are `vigil_proto::json`'s documented views
//! (docs/json.md), the same contract as `vigil --json`: plain objects, lower-case names, RFC 3339 beside
//! epoch milliseconds, CMAP values as `{"type": "u16", "value": 8080}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use vigil_proto::json as j;
use vigil_proto::{Backoff, CmapNotification, CmapValue, Response, RunSpec};

fn plain<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn all<'a, W: 'a, V: serde::Serialize + From<&'a W>>(items: &'a [W]) -> Value {
    plain(&items.iter().map(V::from).collect::<Vec<V>>())
}

pub fn cmap_json(v: &CmapValue) -> Value {
    plain(&j::CmapTyped::from(v))
}

pub fn cmap_note(n: &CmapNotification) -> Value {
    plain(&j::CmapChange::from(n))
}

pub fn event(e: &vigil_proto::Event) -> Value {
    plain(&j::Event::from(e))
}

pub fn tag(t: &vigil_proto::TagStatus) -> Value {
    plain(&j::Tag::from(t))
}

/// A successful answer as JSON.
pub fn response(r: &Response) -> Value {
    match r {
        Response::Ok => json!({ "ok": true }),
        Response::Exists(b) => json!({ "exists": b }),
        Response::Tag(t) => tag(t),
        Response::Tags(t) => all::<_, j::Tag>(t),
        Response::List(l) => plain(l),
        Response::Events(e) => all::<_, j::Event>(e),
        Response::Reload(r) => plain(&j::Reload::from(r)),
        Response::Daemon(d) => plain(&j::Daemon::from(&**d)),
        Response::PsmMembers(m) => all::<_, j::PsmMember>(m),
        Response::PsmCategories(c) => all::<_, j::PsmCategory>(c),
        Response::CmapValue(v) => cmap_json(v),
        Response::CmapEntries(e) => all::<_, j::CmapEntry>(e),
        Response::CmapTrack(t) => json!({ "track": t }),
        Response::SamProcesses(p) => all::<_, j::SamApp>(p),
        Response::Quorate(q) => json!({ "quorate": q }),
        Response::Nodes(n) => all::<_, j::Node>(n),
        Response::Resources(r) => all::<_, j::Resources>(r),
        Response::ClusterEvents(c) => json!({
            "events": c.events.iter().map(|e| plain(&j::Event::from(e))).collect::<Vec<_>>(),
            "lost": c.lost.map(|(from_rev, to_rev)| json!({ "from_rev": from_rev, "to_rev": to_rev })),
            "upto": c.upto,
        }),
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
