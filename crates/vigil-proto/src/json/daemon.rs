//! The cluster and the daemon: nodes, quorum, vigild itself, a reload.

use serde::{Deserialize, Serialize};

use super::rfc3339;
use crate::msg;

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
