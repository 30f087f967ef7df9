//! What the loop receives: every input of a step arrives as one [`Msg`] (requests, process exits, probe
//! results, what the cluster task learned). The types sit at the bottom of the crate so that whoever
//! sends them (the socket, the watchers, the cluster task) and the loop that handles them meet here.

use tokio::sync::OwnedSemaphorePermit;
use vigil_proto::Request;

use crate::cluster::records::NodeState;
use crate::conn::{Caller, ConnTx};
use crate::scrape::Scrape;

/// A run request: the pmfadm spec, the supervision settings and the resources (the defaults for `Run` and
/// `RunOnce`).
pub type RunArgs = (vigil_proto::RunSpec, vigil_proto::Supervision, vigil_proto::Resources);

/// What the loop receives. Kept small (the request and any answer are boxed): a message is moved from
/// the connection to the channel, to the loop's batch and to its handler, and a large enum is copied
/// whole at every move (a tenth of a pipelined request's time when they were inline).
pub enum Msg {
    Request {
        caller: Caller,
        id: u64,
        req: Box<Request>,
        out: ConnTx,
        /// The request's bytes in its uid's budget, given back when the loop drops the message, once
        /// it has handled the request (None for root and vigild's own uid).
        held: Option<OwnedSemaphorePermit>,
    },
    /// A watched process's pidfd became readable.
    Exited { pid: i32, start_time: u64 },
    /// A connection ended: what it held (CMAP tracks, waiting requests) goes with it.
    Closed { conn: u64 },
    /// A probe run of a tag's instance ended; `pid` is an exec probe's process.
    ProbeDone {
        tag: vigil_core::TagName,
        instance: u64,
        index: usize,
        pid: Option<i32>,
        result: Result<(), String>,
    },
    /// `GET /metrics`: the figures `caller` may see, taken in one step.
    Scrape {
        caller: Caller,
        reply: tokio::sync::oneshot::Sender<Box<Scrape>>,
    },
    /// What the cluster task learned from etcd.
    Cluster(ClusterMsg),
    /// The programs of a `Run` were checked as the tag's user, off the loop.
    RunChecked {
        caller: Caller,
        id: u64,
        run: Box<RunArgs>,
        /// A `RunOnce`: an active tag with the same spec is the answer.
        once: bool,
        out: ConnTx,
        result: Box<Result<vigil_proto::Response, vigil_proto::WireError>>,
    },
}

/// What the cluster task tells the loop.
#[derive(Debug)]
pub enum ClusterMsg {
    /// The node's lease is alive (a keepalive succeeded within its TTL) or not.
    Lease(bool),
    /// A keepalive succeeded: etcd cannot expire the lease before this instant.
    Renewed(std::time::Instant),
    /// Every known node, after the list changed.
    Nodes(Vec<NodeState>),
    /// A request another node sent to this one, to be carried out as `uid`/`gid` and answered with
    /// `Cmd::Reply { key, .. }`.
    Inbox {
        key: String,
        from: String,
        uid: u32,
        gid: u32,
        req: Box<Request>,
    },
    /// A session started and found this node's last published event at `after` (None: it never
    /// published): the loop answers with `Cmd::Resynced { epoch, .. }`.
    Resync { epoch: u64, after: Option<u64> },
}
