//! SAM on the wire: what a supervisor reports about its application, and what vigild shows of it.
//!
//! A SAM supervisor is the parent process that `register` leaves behind; it owns the timer and the policy
//! and reports every change of its application to vigild, which keeps the record (persisted, so a restart
//! of vigild loses nothing), the CMAP keys `resources.process.<pid>.*` and the `sys.vigil.sam.*` events.
//! vigild knows the supervisor by the pid of the connection (SO_PEERCRED): a process only ever reports
//! about itself.

use serde::{Deserialize, Serialize};

/// `SAM_RECOVERY_POLICY_QUIT`: the supervisor exits when the application fails.
pub const SAM_POLICY_QUIT: u32 = 1;
/// `SAM_RECOVERY_POLICY_RESTART`: a new instance replaces a failed one.
pub const SAM_POLICY_RESTART: u32 = 2;
/// `SAM_RECOVERY_POLICY_QUORUM`: `start` waits for quorum, and losing quorum is a failure.
pub const SAM_POLICY_QUORUM: u32 = 0x08;
/// `SAM_RECOVERY_POLICY_CMAP`: the state is kept in CMAP under `resources.process.<pid>.`.
pub const SAM_POLICY_CMAP: u32 = 0x10;

/// The largest SAM data blob: what fits in one frame with room to spare.
pub const SAM_DATA_MAX: usize = crate::MAX_FRAME_LEN - 64 * 1024;

/// The state of a SAM application, with corosync's CMAP strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SamState {
    /// Registered, health checking not started (CMAP "stopped").
    Stopped,
    /// Health checking started (CMAP "running").
    Running,
    /// `start` waits for the node to be quorate (CMAP "waiting for quorum").
    WaitingForQuorum,
    /// Marked failed, or quit after a failure (CMAP "failed").
    Failed,
}

impl SamState {
    /// The value of `resources.process.<pid>.state`.
    pub fn cmap_str(self) -> &'static str {
        match self {
            SamState::Stopped => "stopped",
            SamState::Running => "running",
            SamState::WaitingForQuorum => "waiting for quorum",
            SamState::Failed => "failed",
        }
    }
}

/// What the supervisor knows, sent with every report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamInfo {
    /// The application's current instance: 1 for the first, one more per recovery.
    pub instance: u32,
    /// The pid of the current instance (0 between instances).
    pub child: i32,
    /// Health-check interval in milliseconds; 0: no time limit.
    pub interval_ms: u64,
    /// `sam_recovery_policy_t` bits.
    pub policy: u32,
    pub warn_signal: i32,
    pub state: SamState,
}

/// What changed. Each is one `sys.vigil.sam.<name>` event (heartbeats only refresh `last_updated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SamChange {
    /// A new instance returned from `register` (instance 1: the application registered; later: a recovery).
    Instance,
    /// `start`: health checking began.
    Start,
    /// `stop`: health checking paused.
    Stop,
    /// `start` waits for quorum.
    WaitQuorum,
    /// A heartbeat (or any command) arrived; refreshes `last_updated`, no event.
    Heartbeat,
    /// The warn signal was sent, with the reason ("heartbeat missed", "quorum lost", "callback failed").
    Warn { signal: i32, reason: String },
    /// SIGKILL was sent to the instance.
    Kill { reason: String },
    /// The instance ended, with its wait(2) status.
    Exit { status: i32 },
    /// `mark_failed`.
    MarkFailed,
    /// `warn_signal_set`.
    WarnSignal,
    /// `data_store`: the blob (None deletes it).
    Data(Option<Vec<u8>>),
    /// The supervisor exits with `code`; `failed` when it quits because its application failed.
    Quit { code: i32, failed: bool },
    /// The supervisor reconnected after losing vigild (e.g. vigild restarted): the info is current.
    Reattach,
}

/// A SAM application as vigild shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamProcess {
    /// The supervisor's pid (the key of its CMAP entries).
    pub pid: i32,
    pub uid: u32,
    /// The supervisor's command name.
    pub name: String,
    pub info: SamInfo,
    pub data_size: u64,
    /// When the last heartbeat (any command) arrived, ms since the epoch; 0: none yet.
    pub last_updated_ms: u64,
    pub registered_ms: u64,
    /// Whether the supervisor is connected to this vigild now.
    pub connected: bool,
}
