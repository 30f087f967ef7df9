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
pub(crate) fn when(ms: u64) -> (String, u64) {
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

mod cmap;
mod daemon;
mod event;
mod psm;
mod tag;

pub use cmap::{CmapChange, CmapEntry, CmapScalar, CmapType, CmapTyped, CmapValueError};
pub use daemon::{Daemon, Node, Quorum, Reload};
pub use event::{AttrValue, Event, Lost, LostRange};
pub use psm::{PsmCategory, PsmMember, SamApp};
pub use tag::{Backoff, Probe, Proc, Tag, TagItem};

#[cfg(test)]
mod tests;
