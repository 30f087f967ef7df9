//! Quorum with a deadline, for SAM supervisors of QUORUM applications (`Request::QuorumLeaseTrack`).
//!
//! In cluster mode a node is quorate while its etcd lease lives, and only vigild can keep the lease
//! alive: a vigild that is stopped or dead cannot tell its supervisors that quorum is gone, while the
//! other nodes already count the node down. So each renewal of the lease is pushed to the supervisors
//! with how long it holds at most, as a duration (their clock need not be vigild's); a supervisor that
//! hears nothing newer before that time has passed treats quorum as lost on its own. The bound is in
//! docs/cluster.md ("Quorum deadline of SAM applications").

use std::time::{Duration, Instant};

use vigil_proto::{Response, ServerMsg, WireError};

use crate::conn::{Caller, ConnTx, Outgoing};
use crate::state::Daemon;

/// Taken off the lease's earliest expiry: the time a renewal may spend between this loop and the
/// supervisor reading it, and the supervisor's own reaction (a poll wake-up and a signal).
pub const LEASE_MARGIN: Duration = Duration::from_millis(250);

impl Daemon {
    pub fn quorum_lease_track(&mut self, caller: Caller, out: &ConnTx) -> Result<Response, WireError> {
        self.sam.lease_conns.insert(caller.conn, out.clone());
        // The deadline of the quorum now, at once after the answer.
        let msg = self.quorum_lease_msg();
        self.outbox.push((out.clone(), Outgoing::msg(msg)));
        Ok(Response::Quorate(self.sam.quorate))
    }

    /// A keepalive of the lease succeeded: etcd cannot expire the lease before `until`.
    pub fn quorum_lease_renewed(&mut self, until: Instant) {
        self.sam.lease_until = Some(until);
        // Only a quorate node has a deadline to extend; a loss or a regain is pushed by `quorum_update`.
        if self.sam.quorate {
            self.push_quorum_lease();
        }
    }

    /// Tells every supervisor that tracks the quorum's deadline how things stand now.
    pub fn push_quorum_lease(&mut self) {
        let msg = self.quorum_lease_msg();
        for out in self.sam.lease_conns.values() {
            self.outbox.push((out.clone(), Outgoing::msg(msg.clone())));
        }
    }

    fn quorum_lease_msg(&self) -> ServerMsg {
        ServerMsg::QuorumLease {
            quorate: self.sam.quorate,
            valid_ms: self.quorum_valid_ms(),
        }
    }

    /// How long this node's quorum holds at most from now: no limit without cluster mode, where no
    /// other node can count this one down; in cluster mode, until the lease's earliest expiry less
    /// [`LEASE_MARGIN`], and 0 with no renewal known.
    fn quorum_valid_ms(&self) -> Option<u64> {
        self.cluster.view.as_ref()?;
        let left = self
            .sam
            .lease_until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(Instant::now()));
        Some(left.saturating_sub(LEASE_MARGIN).as_millis() as u64)
    }
}
