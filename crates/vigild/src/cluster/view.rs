//! What the loop knows of the cluster: only what the cluster task told it.

use std::collections::BTreeMap;

use super::cmd::Cmd;
use super::records::NodeState;

/// What the loop knows of the cluster: only what the cluster task told it.
#[derive(Default)]
pub struct ClusterView {
    /// This node's lease is alive in a quorate etcd.
    pub lease_alive: bool,
    /// Every known node, by name, as last reported; empty until the first report.
    pub nodes: BTreeMap<String, NodeState>,
    /// The last sequence number before this run of vigild: where a node that never published to the
    /// cluster event stream starts.
    pub first_seq: u64,
}

impl ClusterView {
    /// The votes of the cluster as this node counts them: the nodes that are up (this one at least,
    /// while its lease lives), or none without the lease.
    pub fn votes(&self) -> u32 {
        if !self.lease_alive {
            return 0;
        }
        (self.nodes.values().filter(|n| n.up).count() as u32).max(1)
    }
}

/// Cluster mode as the loop holds it; both None for a single node.
#[derive(Default)]
pub struct Cluster {
    /// The view of the nodes and of this node's lease.
    pub view: Option<ClusterView>,
    /// Orders for the cluster task (remote operations, the PSM mirror).
    pub cmds: Option<tokio::sync::mpsc::UnboundedSender<Cmd>>,
}
