//! What happened to a tag, as the rules report it; the daemon numbers and stores these.

use std::time::Duration;

use crate::health::HealthFailure;
use crate::tree::{Exit, ProcId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagEvent {
    /// The tag's command was started for the first time (or again by `start`).
    Start { pid: i32 },
    /// The last watched process is gone; `exit` is how the last one ended.
    Exit { pid: i32, exit: Exit },
    /// The command was started again; `counted` says whether it used the retry budget.
    Restart { pid: i32, counted: bool },
    /// The tag is stopped for good: the budget is spent, or the command could not be started.
    Failed { reason: String },
    /// The action program was started because the budget is spent.
    Action { program: String },
    /// The action program ended; 0 restarts the tag, anything else removes it.
    ActionExit { exit: Exit },
    /// Every process of the tag is gone after a stop.
    Stop,
    /// The tag no longer exists.
    Remove,
    /// A process that was being watched was found dead after a restart of vigild.
    Lost { proc: ProcId },
    /// The program said `READY=1` (once per instance).
    Ready { pid: i32 },
    /// A health check failed: the instance is stopped, then treated as a crash.
    Unhealthy(HealthFailure),
    /// The tag's log could not be opened for a process being started; its output is discarded.
    LogFailed { reason: String },
    /// The tag died within its storm threshold of its start `quick_deaths` times in a row: its next
    /// start waits `delay`.
    Throttled { quick_deaths: u32, delay: Duration },
    /// The command could not be started for want of a resource (EMFILE, ENFILE, EAGAIN, ENOMEM): the
    /// start is tried again after `delay`, `attempt` counting the failures in a row.
    SpawnRetry {
        reason: String,
        attempt: u32,
        delay: Duration,
    },
    /// The instance lived its `start_secs`: it counts as running (tags without notify only; with
    /// notify, `Ready` says it).
    Up { pid: i32 },
}

impl TagEvent {
    /// The event name in the `sys.vigil.pmf.tag.*` family.
    pub fn name(&self) -> &'static str {
        match self {
            TagEvent::Start { .. } => "sys.vigil.pmf.tag.start",
            TagEvent::Exit { .. } => "sys.vigil.pmf.tag.exit",
            TagEvent::Restart { .. } => "sys.vigil.pmf.tag.restart",
            TagEvent::Failed { .. } => "sys.vigil.pmf.tag.failed",
            TagEvent::Action { .. } => "sys.vigil.pmf.tag.action",
            TagEvent::ActionExit { .. } => "sys.vigil.pmf.tag.action_exit",
            TagEvent::Stop => "sys.vigil.pmf.tag.stop",
            TagEvent::Remove => "sys.vigil.pmf.tag.remove",
            TagEvent::Lost { .. } => "sys.vigil.pmf.tag.lost",
            TagEvent::Ready { .. } => "sys.vigil.pmf.tag.ready",
            TagEvent::Unhealthy(_) => "sys.vigil.pmf.tag.unhealthy",
            TagEvent::LogFailed { .. } => "sys.vigil.pmf.tag.log_failed",
            TagEvent::Throttled { .. } => "sys.vigil.pmf.tag.throttled",
            TagEvent::SpawnRetry { .. } => "sys.vigil.pmf.tag.spawn_retry",
            TagEvent::Up { .. } => "sys.vigil.pmf.tag.up",
        }
    }
}
