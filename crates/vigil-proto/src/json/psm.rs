//! The process set manager and SAM: categories, members, supervised applications.

use serde::{Deserialize, Serialize};

use super::{rfc3339, when, Exit};
use crate::{msg, signal_name};

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
