//! SAM's state in vigild: every supervised application and who tracks quorum.

use std::collections::{BTreeMap, HashMap};

use vigil_proto::SamState;
use vigil_store::SamRecord;

use crate::conn::ConnTx;

/// The key that sets the node's expected votes; the one key under `quorum.` users may write.
pub const EXPECTED_VOTES_KEY: &str = "quorum.expected_votes";

/// This node's votes.
pub const NODE_VOTES: u32 = 1;

/// One supervised application.
pub struct SamEntry {
    pub record: SamRecord,
    pub data: Option<Vec<u8>>,
    /// The supervisor's connection, while it has one.
    pub conn: Option<u64>,
}

/// SAM's state in vigild.
#[derive(Default)]
pub struct Sam {
    pub procs: BTreeMap<i32, SamEntry>,
    /// Connections that asked for quorum changes.
    pub quorum_conns: HashMap<u64, ConnTx>,
    pub quorate: bool,
    /// Connections that asked for quorum with its deadline (`QuorumLeaseTrack`).
    pub lease_conns: HashMap<u64, ConnTx>,
    /// Cluster mode: etcd cannot expire this node's lease before this instant (the last keepalive).
    pub lease_until: Option<std::time::Instant>,
    /// Heartbeat reports received since vigild started (an application's supervisor sends one for
    /// the heartbeats that came while the previous one was on its way), for `/metrics`.
    pub heartbeats: u64,
    /// Recoveries (an instance after an application's first) reported since vigild started.
    pub recoveries: u64,
}

pub fn state_code(s: SamState) -> u8 {
    match s {
        SamState::Stopped => 0,
        SamState::Running => 1,
        SamState::WaitingForQuorum => 2,
        SamState::Failed => 3,
    }
}

pub fn state_of(code: u8) -> SamState {
    match code {
        1 => SamState::Running,
        2 => SamState::WaitingForQuorum,
        3 => SamState::Failed,
        _ => SamState::Stopped,
    }
}
