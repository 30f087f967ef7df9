//! The persisted records. Their serialized layout is part of the schema: change it only with a migration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    pub pid: i32,
    pub start_time: u64,
    pub depth: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitRecord {
    Code(u8),
    Signal(i32),
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopModeRecord {
    Stay,
    Restart,
    Remove,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateRecord {
    Waiting,
    Running,
    Backoff {
        until_ms: u64,
    },
    Action,
    Stopping {
        deadline_ms: u64,
        then: StopModeRecord,
        killed: bool,
    },
    Stopped,
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    pub name: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub instance: u32,
    /// 0 svc, 1 mon, 2 other.
    pub program_type: u8,
    pub level: i64,
    pub retries: i64,
    pub period: i64,
    pub action: Option<String>,
    pub backoff_ms: Option<(u64, u64)>,
    pub after: Vec<String>,
    pub stop_signal: i32,
    pub stop_timeout_ms: u64,
    pub uid: u32,
    pub gid: u32,
    pub from_config: bool,
    pub state: StateRecord,
    pub enabled: bool,
    pub procs: Vec<ProcRecord>,
    pub main: Option<ProcRecord>,
    pub budget_ms: Vec<u64>,
    pub started_ms: Option<u64>,
    pub last_exit: Option<(i32, ExitRecord)>,
    pub starts: u64,
    pub quick_failures: u32,
    /// A start that was decided but not yet carried out: 0 first, 1 counted restart, 2 uncounted.
    pub pending: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub time_ms: u64,
    pub name: String,
    pub subject: String,
    pub data: Vec<(String, String)>,
}
