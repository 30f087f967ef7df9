//! The loop's side of remote operations (docs/cluster.md): which node a request is for, sending it to the
//! cluster task when that is another node, carrying out the requests other nodes put in this node's
//! inbox, and mirroring this node's PSM members. The loop never waits for etcd: the cluster task answers
//! the connection itself when the other node's answer comes.

use vigil_proto::{ErrorCode, PsmNode, Request, Response, ServerMsg, WireError};

use super::cmd::Cmd;
use crate::conn::{Caller, ConnTx};
use crate::state::Daemon;

type Answer = Result<Response, WireError>;

/// The connection number of requests from other nodes (no local connection has it).
const REMOTE_CONN: u64 = u64::MAX;

/// A node that never joined the cluster, as far as this node knows.
pub fn unknown_node(node: &str) -> WireError {
    WireError::new(ErrorCode::NodeDown, format!("node {node} is unknown to the cluster"))
}

/// What to do with a request: carry it out here, or send it to a node.
pub enum Route {
    Here(Request),
    There { node: String, req: Request },
}

/// The node a PSM request names, if it has one.
fn psm_node(req: &Request) -> Option<&PsmNode> {
    match req {
        Request::PsmCategoryAdd { node, .. }
        | Request::PsmCategoryRemove { node, .. }
        | Request::PsmCategoryList { node }
        | Request::PsmAdd { node, .. }
        | Request::PsmRemove { node, .. }
        | Request::PsmGet { node, .. }
        | Request::PsmSetState { node, .. } => Some(node),
        _ => None,
    }
}

/// Requests bound to the caller's connection or machine, which no other node can carry out.
fn local_only(req: &Request) -> Option<&'static str> {
    Some(match req {
        Request::Subscribe { .. } | Request::ClusterSubscribe { .. } => "an event subscription",
        Request::Reexec => "a re-exec of vigild",
        Request::SamReport { .. } => "a SAM report",
        Request::CmapTrackAdd { .. } | Request::CmapTrackDelete { .. } => "a CMAP track",
        Request::QuorumTrack | Request::QuorumLeaseTrack => "a quorum track",
        _ => return None,
    })
}

impl Daemon {
    /// This node, by any of its names.
    pub fn is_this_node(&self, n: &str) -> bool {
        let n = n.trim();
        n.is_empty() || n == "local" || n == self.node.name
    }

    /// Whether [`Daemon::route`] may send `req` elsewhere or unwrap it; most requests stay here as they
    /// are, and need not be moved through it.
    pub fn may_route(req: &Request) -> bool {
        matches!(req, Request::OnNode { .. }) || psm_node(req).is_some()
    }

    /// Where a request goes: `OnNode` for this node is unwrapped, a PSM request naming one other node
    /// goes there (where that name is local). Lists and `all` stay here, where PSM refuses them: clients
    /// ask the nodes of a list one at a time.
    pub fn route(&self, mut req: Request) -> Result<Route, WireError> {
        loop {
            match req {
                Request::OnNode { node, body } => {
                    if self.is_this_node(&node) {
                        req = *body;
                        continue;
                    }
                    if node.contains(',') || node.trim() == "all" {
                        return Err(WireError::new(
                            ErrorCode::InvalidArgument,
                            format!("node {node:?}: a request goes to one node; ask the nodes of a list one at a time"),
                        ));
                    }
                    return Ok(Route::There {
                        node: node.trim().to_string(),
                        req: *body,
                    });
                }
                other => {
                    if let Some(n) = psm_node(&other) {
                        let name = n.0.trim();
                        if !self.is_this_node(name)
                            && name != "all"
                            && !name.contains(',')
                            && self.cluster.view.is_some()
                        {
                            let node = name.to_string();
                            return Ok(Route::There { node, req: other });
                        }
                    }
                    return Ok(Route::Here(other));
                }
            }
        }
    }

    /// Sends `req` to the node `node` through the cluster task; the answer comes later, from that task.
    pub fn forward(&self, caller: Caller, id: u64, node: String, req: Request, out: &ConnTx) -> Option<Answer> {
        let (Some(view), Some(cmds)) = (&self.cluster.view, &self.cluster.cmds) else {
            return Some(Err(WireError::new(
                ErrorCode::Unsupported,
                format!(
                    "node {node:?}: other nodes need cluster mode; this vigild serves {} alone",
                    self.node.name
                ),
            )));
        };
        if let Some(what) = local_only(&req) {
            return Some(Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!("node {node}: {what} only makes sense on the caller's own node"),
            )));
        }
        let Some(state) = view.nodes.get(&node) else {
            return Some(Err(unknown_node(&node)));
        };
        let cmd = if state.up {
            Cmd::Remote {
                node,
                uid: caller.uid,
                gid: caller.gid,
                req,
                id,
                out: out.clone(),
            }
        } else if let Request::PsmGet { category, pid, .. } = req {
            // A down node's members are shown as they were last known, marked unreachable.
            Cmd::ReadMirror {
                node,
                category,
                pid,
                id,
                out: out.clone(),
            }
        } else {
            let for_s = crate::clock::now().as_millis().saturating_sub(state.since_ms) / 1000;
            return Some(Err(WireError::new(
                ErrorCode::NodeDown,
                format!("node {node} is down (for {for_s}s)"),
            )));
        };
        if cmds.send(cmd).is_err() {
            return Some(Err(WireError::new(ErrorCode::Internal, "the cluster task is gone")));
        }
        None
    }

    /// A request from another node's inbox: carried out as its caller's uid/gid. Its answer leaves like a
    /// local one, through the step's outbox once the step's changes are stored (an answer whose change
    /// could not be stored says so), and goes back through the cluster task; a deferred answer (a stop
    /// with a wait) takes the same way when it comes.
    pub fn on_inbox(&mut self, key: String, from: String, uid: u32, gid: u32, req: Request) {
        let Some(cmds) = self.cluster.cmds.clone() else { return };
        tracing::debug!(from, uid, "remote request");
        let caller = Caller {
            uid,
            gid,
            pid: None,
            conn: REMOTE_CONN,
        };
        let (tx, mut rx) = ConnTx::detached(REMOTE_CONN);
        if let Some(result) = self.handle(caller, 0, Box::new(req), &tx) {
            self.reply(&tx, 0, result);
        }
        tokio::spawn(async move {
            while let Some((o, _)) = rx.recv().await {
                if let ServerMsg::Response { result, .. } = *o.msg {
                    let _ = cmds.send(Cmd::Reply { key, result });
                    break;
                }
            }
        });
    }

    /// Sends this node's PSM members to the cluster task for its mirror, if they changed.
    pub fn psm_mirror(&mut self) {
        if !self.psm.changed {
            return;
        }
        self.psm.changed = false;
        let Some(cmds) = &self.cluster.cmds else { return };
        if let Ok(Response::PsmMembers(list)) = self.psm_get(&PsmNode::local(), &None, None) {
            let _ = cmds.send(Cmd::Mirror(list));
        } else {
            let _ = cmds.send(Cmd::Mirror(vec![]));
        }
    }
}
