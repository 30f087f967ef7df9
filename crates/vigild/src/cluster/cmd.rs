//! What the loop asks of the cluster task, and the envelope of a request to another node.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use vigil_proto::{Event, PsmMember, Request, Response, ServerMsg, WireError};

use super::stream::Selection;
use crate::conn::{ConnTx, Outgoing};

/// A request in another node's inbox (postcard in etcd).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) from: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Where the answer goes: a `Result<Response, WireError>` (postcard).
    pub(crate) reply: String,
    pub(crate) req: Request,
}

/// How long a remote operation may take, all of it (the inbox write, the other node's work, the answer).
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the loop asks of the cluster task.
pub enum Cmd {
    /// A clean stop: mark this node down and revoke its lease; the sender is told when done.
    Leave(oneshot::Sender<()>),
    /// Carry `req` out on the node `node` as `uid`/`gid`; the answer goes to `out` as response `id`.
    Remote {
        node: String,
        uid: u32,
        gid: u32,
        req: Request,
        id: u64,
        out: ConnTx,
    },
    /// The answer to an inbox request, for the key its sender watches.
    Reply {
        key: String,
        result: Result<Response, WireError>,
    },
    /// This node's PSM members changed: mirror them in `psm/<name>`.
    Mirror(Vec<PsmMember>),
    /// A down node's members as last mirrored, marked unreachable, answered to `out` as response `id`.
    ReadMirror {
        node: String,
        category: Option<String>,
        pid: Option<i32>,
        id: u64,
        out: ConnTx,
    },
    /// Events the loop just stored, for the cluster stream (only cluster-wide ones).
    Publish(Vec<Event>),
    /// The loop's answer to `ClusterMsg::Resync`: every cluster-wide stored event after the asked one.
    Resynced { epoch: u64, events: Vec<Event> },
    /// `ClusterEvents`: the stream's history, answered to `out` as response `id`.
    History {
        after: u64,
        limit: usize,
        sel: Selection,
        id: u64,
        out: ConnTx,
    },
    /// `ClusterSubscribe`: the stream, pushed into `tx` until its receiver goes.
    Follow {
        after: Option<u64>,
        sel: Selection,
        tx: mpsc::Sender<ServerMsg>,
    },
}

/// An error answer to a connection.
pub(crate) fn answer(out: &ConnTx, id: u64, result: Result<Response, WireError>) {
    let _ = out.send(Outgoing::msg(ServerMsg::Response { id, result }));
}
