//! Schema 6: tags gain their resources (user and group names, supplementary groups, limits, nice,
//! umask, stderr log, log timestamps, tag group). Tags of schema 5 are rewritten with none
//! (`ResRecord::default`), which is how they ran before: as vigild's default user, with its limits.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::records::{ExitRecord, ProbeRecord, ProcRecord, ResRecord, StateRecord, SupervisionRecord, TagRecord};
use crate::{StoreError, TAGS};

/// A tag as schema 5 stored it: without resources. Read only, by the migration (and written by the step
/// from schema 4, so that each step reads what the one before wrote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecordV5 {
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
    /// The supervision settings and whether the instance counts as running (schema 5).
    pub supervision: SupervisionRecord,
}

impl From<TagRecordV5> for TagRecord {
    fn from(v: TagRecordV5) -> TagRecord {
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
            supervision: v.supervision,
            res: ResRecord::default(),
        }
    }
}

/// Rewrites every tag of schema 5 at schema 6.
pub(crate) fn migrate_5_to_6(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut tags = tx.open_table(TAGS)?;
    let mut rewritten = Vec::new();
    for row in tags.iter()? {
        let (k, v) = row?;
        let old: TagRecordV5 = postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
            what: format!("tag {} (schema 5)", k.value()),
            source,
        })?;
        rewritten.push(TagRecord::from(old));
    }
    for t in rewritten {
        let bytes = postcard::to_allocvec(&t).map_err(|source| StoreError::Record {
            what: format!("tag {}", t.name),
            source,
        })?;
        tags.insert(t.name.as_str(), bytes.as_slice())?;
    }
    Ok(())
}
