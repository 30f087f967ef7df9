//! Schema 5: a tag's resources (user and group names, limits, nice, umask, stderr log, tag group), and
//! the frozen layout of schema 4's tag record that the migration reads.

use serde::{Deserialize, Serialize};

use crate::records::{ExitRecord, ProbeRecord, ProcRecord, ResRecord, StateRecord, TagRecord};

/// A tag as schema 4 stored it: without resources. Read only, by the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecordV4 {
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
    /// The watchdog interval (schema 4).
    pub watchdog_ms: Option<u64>,
    /// The probes (schema 4).
    pub probes: Vec<ProbeRecord>,
    /// The current instance sent READY=1 (schema 4).
    pub ready: bool,
    /// The current instance's last STATUS= text (schema 4).
    pub status_text: Option<String>,
}

impl From<TagRecordV4> for TagRecord {
    fn from(v: TagRecordV4) -> TagRecord {
        TagRecord {
            name: v.name,
            command: v.command,
            env: v.env,
            cwd: v.cwd,
            instance: v.instance,
            program_type: v.program_type,
            level: v.level,
            retries: v.retries,
            period: v.period,
            action: v.action,
            backoff_ms: v.backoff_ms,
            after: v.after,
            stop_signal: v.stop_signal,
            stop_timeout_ms: v.stop_timeout_ms,
            uid: v.uid,
            gid: v.gid,
            from_config: v.from_config,
            state: v.state,
            enabled: v.enabled,
            procs: v.procs,
            main: v.main,
            budget_ms: v.budget_ms,
            started_ms: v.started_ms,
            last_exit: v.last_exit,
            starts: v.starts,
            quick_failures: v.quick_failures,
            pending: v.pending,
            watchdog_ms: v.watchdog_ms,
            probes: v.probes,
            ready: v.ready,
            status_text: v.status_text,
            res: ResRecord::default(),
        }
    }
}
