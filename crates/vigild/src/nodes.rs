//! The loop's side of cluster mode: the view of the nodes the cluster task reports, the
//! `sys.vigil.node.up|down` events, the lease's part in quorum, and the `Nodes` request.

use std::collections::BTreeMap;

use vigil_proto::{NodeInfo, Response, WireError};

use crate::cluster::{ClusterMsg, NodeState};
use crate::events::attr_i;
use crate::state::Daemon;

/// What the loop knows of the cluster: only what the cluster task told it.
#[derive(Default)]
pub struct ClusterView {
    /// This node's lease is alive in a quorate etcd.
    pub lease_alive: bool,
    /// Every known node, by name, as last reported; empty until the first report.
    pub nodes: BTreeMap<String, NodeState>,
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

impl Daemon {
    pub fn on_cluster(&mut self, msg: ClusterMsg) {
        let Some(view) = &mut self.cluster else { return };
        match msg {
            ClusterMsg::Lease(alive) => {
                view.lease_alive = alive;
            }
            ClusterMsg::Nodes(list) => {
                let mut changes = Vec::new();
                let mut next = BTreeMap::new();
                for n in list {
                    let was_up = view.nodes.get(&n.record.name).map(|o| o.up);
                    // A node seen for the first time is news only when it is up: one that was down
                    // before this vigild started did not go down now.
                    if was_up != Some(n.up) && (n.up || was_up.is_some()) {
                        changes.push((n.record.name.clone(), n.record.id, n.up));
                    }
                    next.insert(n.record.name.clone(), n);
                }
                view.nodes = next;
                for (name, id, up) in changes {
                    let event = if up { "sys.vigil.node.up" } else { "sys.vigil.node.down" };
                    self.emit(&name, event, vec![attr_i("node_id", i64::from(id))]);
                }
            }
            ClusterMsg::Inbox {
                key,
                from,
                uid,
                gid,
                req,
            } => {
                self.on_inbox(key, from, uid, gid, req);
                return;
            }
        }
        self.quorum_update(false);
    }

    pub fn nodes(&self) -> Result<Response, WireError> {
        let Some(view) = &self.cluster else {
            // Not in cluster mode: the node is its own cluster.
            return Ok(Response::Nodes(vec![NodeInfo {
                name: self.node.clone(),
                id: self.node_id,
                up: true,
                since_ms: self.started.as_millis(),
                address: self.paths.socket.display().to_string(),
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").into(),
                this_node: true,
            }]));
        };
        let mut list: Vec<NodeInfo> = view
            .nodes
            .values()
            .map(|n| NodeInfo {
                name: n.record.name.clone(),
                id: n.record.id,
                up: n.up,
                since_ms: n.since_ms,
                address: n.record.address.clone(),
                pid: n.record.pid,
                version: n.record.version.clone(),
                this_node: n.record.name == self.node,
            })
            .collect();
        if !list.iter().any(|n| n.this_node) {
            // etcd has not answered since this vigild started: this node is all it knows.
            list.insert(
                0,
                NodeInfo {
                    name: self.node.clone(),
                    id: self.node_id,
                    up: view.lease_alive,
                    since_ms: self.started.as_millis(),
                    address: self.paths.socket.display().to_string(),
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    this_node: true,
                },
            );
        }
        Ok(Response::Nodes(list))
    }
}
