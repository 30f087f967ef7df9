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
    /// A health check failed: restart under the budget once the tree is empty (schema 4).
    Recover,
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
    /// Ended in a success its restart policy does not restart (appended in schema 5: records written
    /// before it read unchanged).
    Exited,
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
    /// User and group names, limits, nice, umask, stderr log, tag group (schema 6).
    pub res: ResRecord,
}

/// A tag's supervision settings (schema 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisionRecord {
    /// 0 always, 1 on-failure, 2 never.
    pub restart: u8,
    pub success_exit_codes: Vec<u8>,
    pub success_signals: Vec<i32>,
    pub start_secs_ms: u64,
    pub notify: bool,
    /// The current instance counts as running.
    pub up: bool,
}

impl Default for SupervisionRecord {
    /// What a tag of schema 4 or older had: every exit restarts, exit 0 the success, and a running
    /// instance counts as running.
    fn default() -> SupervisionRecord {
        SupervisionRecord {
            restart: 0,
            success_exit_codes: vec![0],
            success_signals: vec![],
            start_secs_ms: 0,
            notify: false,
            up: true,
        }
    }
}

/// What a probe checks (schema 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeCheckRecord {
    Exec { command: Vec<String> },
    Tcp { host: String, port: u16 },
    Http { host: String, port: u16, path: String },
}

/// A probe of a tag (schema 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub check: ProbeCheckRecord,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub threshold: u32,
}

/// A tag as schemas 1 to 3 stored it: without health checks. Read only, by the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecordV3 {
    pub name: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub instance: u32,
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
    pub pending: Option<u8>,
}

impl From<TagRecordV3> for crate::schema5::TagRecordV4 {
    fn from(v: TagRecordV3) -> crate::schema5::TagRecordV4 {
        crate::schema5::TagRecordV4 {
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
            watchdog_ms: None,
            probes: Vec::new(),
            ready: false,
            status_text: None,
        }
    }
}

/// An event as schema 1 stored it (attributes as text, no node). Read only, by the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecordV1 {
    pub seq: u64,
    pub time_ms: u64,
    pub name: String,
    pub subject: String,
    pub data: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrRecord {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// An event (schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub time_ms: u64,
    pub name: String,
    /// Empty for events migrated from schema 1, which did not record it: the local node.
    pub node: String,
    pub subject: String,
    pub attrs: Vec<(String, AttrRecord)>,
}

impl From<EventRecordV1> for EventRecord {
    fn from(v: EventRecordV1) -> EventRecord {
        let attrs = v
            .data
            .into_iter()
            .map(|(k, val)| {
                let a = match val.parse::<i64>() {
                    Ok(i) if k == "pid" || k == "code" || k == "signal" => AttrRecord::Int(i),
                    _ => match val.as_str() {
                        "true" => AttrRecord::Bool(true),
                        "false" => AttrRecord::Bool(false),
                        _ => AttrRecord::Str(val),
                    },
                };
                (k, a)
            })
            .collect();
        EventRecord {
            seq: v.seq,
            time_ms: v.time_ms,
            name: v.name,
            node: String::new(),
            subject: v.subject,
            attrs,
        }
    }
}

/// A persisted CMAP value (schema 3), with its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CmapRecord {
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Float(f32),
    Double(f64),
    Str(String),
    Binary(Vec<u8>),
    /// A string whose bytes are not UTF-8 (appended: records written before it read unchanged).
    StrBytes(Vec<u8>),
}

/// A PSM member (schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub pid: i32,
    pub start_time: u64,
    pub category: String,
    pub name: String,
    pub state: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub exit: Option<ExitRecord>,
    pub uid: u32,
    pub added_ms: u64,
}

/// A SAM application, by its supervisor's pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamRecord {
    pub pid: i32,
    pub start_time: u64,
    pub uid: u32,
    pub name: String,
    pub instance: u32,
    pub child: i32,
    pub interval_ms: u64,
    pub policy: u32,
    pub warn_signal: i32,
    /// 0 stopped, 1 running, 2 waiting for quorum, 3 failed.
    pub state: u8,
    pub last_updated_ms: u64,
    pub registered_ms: u64,
}

/// One resource limit of a tag (schema 6): `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRecord {
    pub name: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// A tag's resources (schema 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResRecord {
    pub user: Option<String>,
    pub group: Option<String>,
    pub groups: Vec<u32>,
    pub limits: Vec<LimitRecord>,
    pub nice: Option<i32>,
    pub umask: Option<u32>,
    pub stderr_log: Option<String>,
    pub log_timestamps: bool,
    pub tag_group: Option<String>,
}
