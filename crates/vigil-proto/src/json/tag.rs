//! Tags: their whole state (`status`) and their line in `list`.

use serde::{Deserialize, Serialize};

use super::{when, LastExit, Pairs};
use crate::msg;

/// One process of a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    /// 0 for the started process, 1 for its children, ...
    pub level: u32,
    /// Whether the tag's level watches it.
    pub watched: bool,
}

impl From<&msg::ProcInfo> for Proc {
    fn from(p: &msg::ProcInfo) -> Proc {
        Proc {
            pid: p.pid,
            level: p.level,
            watched: p.watched,
        }
    }
}

/// Exponential backoff between restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub min_ms: u64,
    pub max_ms: u64,
}

/// A probe of a tag and how it fares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// `exec:COMMAND`, `tcp:HOST:PORT` or the URL.
    pub check: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub threshold: u32,
    /// Consecutive failures so far in the current instance.
    pub failures: u32,
    pub last_error: Option<String>,
}

fn program_type(t: msg::ProgramType) -> &'static str {
    match t {
        msg::ProgramType::Svc => "svc",
        msg::ProgramType::Mon => "mon",
        msg::ProgramType::Other => "other",
    }
}

/// The whole state of a tag (`vigil status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    /// waiting, running, backoff, action, stopping, stopped or failed.
    pub state: String,
    pub reason: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub command: Vec<String>,
    /// The environment as an object; values of another user's tag are hidden by vigild.
    pub env: Pairs<String>,
    pub cwd: Option<String>,
    pub instance: u32,
    /// svc, mon or other.
    pub program_type: String,
    pub level: i64,
    /// -1: no limit.
    pub retries: i64,
    /// Seconds; -1: no period.
    pub period: i64,
    pub action: Option<String>,
    pub backoff: Option<Backoff>,
    pub after: Vec<String>,
    pub restarts_used: u32,
    pub starts: u64,
    pub main_pid: Option<i32>,
    pub procs: Vec<Proc>,
    /// When the current instance started.
    pub started: Option<String>,
    pub started_ms: Option<u64>,
    pub last_exit: Option<LastExit>,
    pub log_path: String,
    pub from_config: bool,
    pub watchdog_ms: Option<u64>,
    pub probes: Vec<Probe>,
    /// The current instance sent `READY=1`.
    pub ready: bool,
    pub status_text: Option<String>,
    /// The node that answered, when several were asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<&msg::TagStatus> for Tag {
    fn from(s: &msg::TagStatus) -> Tag {
        let (started, started_ms) = s.started_ms.map(when).unzip();
        Tag {
            name: s.name.clone(),
            state: s.state.clone(),
            reason: s.reason.clone(),
            uid: s.uid,
            gid: s.gid,
            command: s.command.clone(),
            env: Pairs(s.env.clone()),
            cwd: s.cwd.clone(),
            instance: s.instance,
            program_type: program_type(s.program_type).into(),
            level: s.level,
            retries: s.retries,
            period: s.period,
            action: s.action.clone(),
            backoff: s.backoff.map(|b| Backoff {
                min_ms: b.min_ms,
                max_ms: b.max_ms,
            }),
            after: s.after.clone(),
            restarts_used: s.restarts_used,
            starts: s.starts,
            main_pid: s.main_pid,
            procs: s.procs.iter().map(Proc::from).collect(),
            started,
            started_ms,
            last_exit: s.last_exit.as_ref().map(|(pid, e)| LastExit {
                pid: *pid,
                exit: e.into(),
            }),
            log_path: s.log_path.clone(),
            from_config: s.from_config,
            watchdog_ms: s.watchdog_ms,
            probes: s
                .probes
                .iter()
                .map(|p| Probe {
                    check: p.check.clone(),
                    interval_ms: p.interval_ms,
                    timeout_ms: p.timeout_ms,
                    threshold: p.threshold,
                    failures: p.failures,
                    last_error: p.last_error.clone(),
                })
                .collect(),
            ready: s.ready,
            status_text: s.status_text.clone(),
            node: None,
        }
    }
}

/// One line of `vigil list`: the state, the processes, since when it runs, the restarts used and the
/// last exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagItem {
    pub name: String,
    pub state: String,
    pub main_pid: Option<i32>,
    pub procs: Vec<Proc>,
    pub started: Option<String>,
    pub started_ms: Option<u64>,
    pub restarts_used: u32,
    /// -1: no limit.
    pub retries: i64,
    pub starts: u64,
    pub last_exit: Option<LastExit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<&msg::TagStatus> for TagItem {
    fn from(s: &msg::TagStatus) -> TagItem {
        let t = Tag::from(s);
        TagItem {
            name: t.name,
            state: t.state,
            main_pid: t.main_pid,
            procs: t.procs,
            started: t.started,
            started_ms: t.started_ms,
            restarts_used: t.restarts_used,
            retries: t.retries,
            starts: t.starts,
            last_exit: t.last_exit,
            node: None,
        }
    }
}
