//! The loop's side of cluster mode: the view of the nodes the cluster task reports, the
//! `sys.vigil.node.up|down` events, the lease's part in quorum, and the `Nodes` request.

use std::collections::BTreeMap;

use vigil_proto::{ErrorCode, EventFilter, NodeInfo, Response, WireError};
use vigil_store::EventRecord;

use super::cmd::Cmd;
use super::stream::{cluster_wide, Selection};
use crate::conn::ConnTx;
use crate::events::attr::attr_i;
use crate::msg::ClusterMsg;
use crate::state::Daemon;

impl Daemon {
    pub fn on_cluster(&mut self, msg: ClusterMsg) {
        let Some(view) = &mut self.cluster.view else { return };
        match msg {
            ClusterMsg::Lease(alive) => {
                view.lease_alive = alive;
                // Without its lease this node is down for the cluster (etcd deletes its key when the
                // lease runs out), and it says so of itself: the next list after it joins again shows
                // it up, and that is its `node.up`.
                let me = view.nodes.get_mut(&self.node.name).filter(|n| n.up && !alive);
                if let Some(n) = me {
                    n.up = false;
                    n.since_ms = crate::clock::now().as_millis();
                    let id = n.record.id;
                    let name = self.node.name.clone();
                    self.emit(&name, "sys.vigil.node.down", vec![attr_i("node_id", i64::from(id))]);
                }
            }
            ClusterMsg::Renewed(until) => {
                self.quorum_lease_renewed(until);
                return;
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
                self.on_inbox(key, from, uid, gid, *req);
                return;
            }
            ClusterMsg::Resync { epoch, after } => {
                let after = after.unwrap_or(view.first_seq);
                self.resync_cluster_events(epoch, after);
                return;
            }
        }
        self.quorum_update(false);
    }

    pub fn nodes(&self) -> Result<Response, WireError> {
        let Some(view) = &self.cluster.view else {
            // Not in cluster mode: the node is its own cluster.
            return Ok(Response::Nodes(vec![NodeInfo {
                name: self.node.name.clone(),
                id: self.node.id,
                up: true,
                since_ms: self.node.started.as_millis(),
                address: self.node.paths.socket.display().to_string(),
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
                this_node: n.record.name == self.node.name,
            })
            .collect();
        if !list.iter().any(|n| n.this_node) {
            // etcd has not answered since this vigild started: this node is all it knows.
            list.insert(
                0,
                NodeInfo {
                    name: self.node.name.clone(),
                    id: self.node.id,
                    up: view.lease_alive,
                    since_ms: self.node.started.as_millis(),
                    address: self.node.paths.socket.display().to_string(),
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    this_node: true,
                },
            );
        }
        Ok(Response::Nodes(list))
    }
}

/// The most events one `ClusterEvents` answer holds (whole revisions: a little more at times).
const CLUSTER_EVENTS_MAX: u32 = 10_000;

impl Daemon {
    /// Hands newly stored events to the cluster task for the cluster stream.
    pub fn publish(&self, events: &[EventRecord]) {
        let Some(cmds) = &self.cluster.cmds else { return };
        let wide: Vec<_> = events
            .iter()
            .filter(|e| cluster_wide(&e.name))
            .map(|e| self.event_to_wire(e))
            .collect();
        if !wide.is_empty() {
            let _ = cmds.send(Cmd::Publish(wide));
        }
    }

    /// A session of the cluster task starts: every stored cluster-wide event after `after`, which the
    /// cluster stream has not got yet (a node that was away from etcd, or was restarted).
    fn resync_cluster_events(&self, epoch: u64, after: u64) {
        let Some(cmds) = &self.cluster.cmds else { return };
        let events = match self.store.db.events_after(after, usize::MAX) {
            Ok(all) => all
                .iter()
                .filter(|e| cluster_wide(&e.name))
                .map(|e| self.event_to_wire(e))
                .collect(),
            Err(e) => {
                tracing::error!("cluster events: cannot read stored events: {e}");
                Vec::new()
            }
        };
        let _ = cmds.send(Cmd::Resynced { epoch, events });
    }

    /// What a cluster stream reader asks for: the nodes must be known to the cluster (none: every node).
    fn selection(&self, filter: EventFilter, nodes: Vec<String>) -> Result<Selection, WireError> {
        let Some(view) = &self.cluster.view else {
            return Err(WireError::new(
                ErrorCode::Unsupported,
                format!(
                    "the cluster event stream needs cluster mode (vigild --cluster); this vigild serves {} alone",
                    self.node.name
                ),
            ));
        };
        let mut names = Vec::new();
        for n in nodes.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if n == "all" {
                return Ok(Selection {
                    filter,
                    nodes: Vec::new(),
                });
            }
            let n = if self.is_this_node(n) {
                self.node.name.as_str()
            } else {
                n
            };
            if n != self.node.name && !view.nodes.contains_key(n) {
                return Err(crate::cluster::remote::unknown_node(n));
            }
            names.push(n.to_string());
        }
        Ok(Selection { filter, nodes: names })
    }

    /// `ClusterEvents`: answered by a task of the cluster task's, from etcd.
    pub fn cluster_events(
        &self,
        after: u64,
        limit: u32,
        filter: EventFilter,
        nodes: Vec<String>,
        id: u64,
        out: &ConnTx,
    ) -> Option<Result<Response, WireError>> {
        let sel = match self.selection(filter, nodes) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let limit = limit.clamp(1, CLUSTER_EVENTS_MAX) as usize;
        let cmds = self.cluster.cmds.as_ref()?;
        let cmd = Cmd::History {
            after,
            limit,
            sel,
            id,
            out: out.clone(),
        };
        if cmds.send(cmd).is_err() {
            return Some(Err(WireError::new(ErrorCode::Internal, "the cluster task is gone")));
        }
        None
    }

    /// `ClusterSubscribe`: the answer, then the stream through a bounded queue fed by a task of the
    /// cluster task's.
    pub fn cluster_subscribe(
        &mut self,
        after: Option<u64>,
        filter: EventFilter,
        nodes: Vec<String>,
        id: u64,
        out: &ConnTx,
    ) -> Result<(), WireError> {
        let sel = self.selection(filter, nodes)?;
        let Some(cmds) = self.cluster.cmds.clone().filter(|c| !c.is_closed()) else {
            return Err(WireError::new(ErrorCode::Internal, "the cluster task is not running"));
        };
        let tx = self.open_stream(id, out);
        // Should the task end now, the stream's sender is dropped and the stream ends.
        let _ = cmds.send(Cmd::Follow { after, sel, tx });
        Ok(())
    }
}
