//! Events, their attributes, and the loss markers of a stream.

use serde::{Deserialize, Serialize};

use super::{rfc3339, Pairs};
use crate::msg;

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
