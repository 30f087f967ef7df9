//! The process set manager on the wire: members as Tru64's `psm_memrsp_t` holds them, so the C library is a
//! thin layer.

use serde::{Deserialize, Serialize};

use crate::msg::ExitStatus;

/// Set in `flags` once the process has exited (`PSM_FL_EXIT`).
pub const PSM_FL_EXIT: u32 = 0x1;
/// Set in `flags` when the saved argv was cut to the limit (`PSM_FL_ARGTRUNC`).
pub const PSM_FL_ARGTRUNC: u32 = 0x2;
/// Cluster mode (vigil's own flag): the member's node is down; the record is its last known state.
pub const PSM_FL_UNREACHABLE: u32 = 0x4;

/// Which node a PSM request is for: the local one (by name, by `local`, or empty), another, all, or a
/// list. Only the local node is served without cluster mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsmNode(pub String);

impl PsmNode {
    pub fn local() -> PsmNode {
        PsmNode(String::new())
    }
}

/// One member record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsmMember {
    /// Index of this record in the answer, from 1.
    pub listidx: u32,
    /// Records in the answer.
    pub listcnt: u32,
    /// Members that matched.
    pub total: u32,
    pub pid: i32,
    /// The termination status in wait(2) encoding, once exited and known; None otherwise.
    pub exitcode: Option<u32>,
    /// `PSM_FL_*`.
    pub flags: u32,
    /// `<nodeid>-<pid>`.
    pub name: String,
    pub state: String,
    pub argv: Vec<String>,
    pub category: String,
    pub node: String,
    /// The exit, decoded (Unknown when it could not be learnt); None while running.
    pub exit: Option<ExitStatus>,
    pub uid: u32,
    pub start_time: u64,
    pub added_ms: u64,
}

/// One category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsmCategory {
    pub name: String,
    pub members: u32,
    pub running: u32,
    pub created_ms: u64,
}
