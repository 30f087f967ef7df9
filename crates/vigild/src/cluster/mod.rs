//! Cluster mode: vigild as a client of etcd, for membership and quorum (docs/cluster.md).
//!
//! All etcd I/O happens in one tokio task, [`run`], which never touches the daemon's state: it tells the
//! loop what it learned through `Msg::Cluster` (the lease alive or not, the list of nodes), and the loop
//! never waits for etcd. Every etcd call carries a timeout, since with etcd's quorum lost a write blocks
//! until the client's deadline. The keys (under `/vigil/<cluster>/`):
//!
//! - `nodes/<name>`: bound to the node's lease, JSON [`NodeRecord`]; present while the node is up;
//! - `known/<name>`: no lease, JSON [`NodeRecord`]; every node that ever joined, with since when it is up
//!   or down, so that a down node stays listed;
//! - `ids/<name>` and `next_id`: node ids, assigned once by a transaction at the first join;
//! - `psm/<name>`: no lease, the node's PSM members (postcard), rewritten on every change, so that a down
//!   node's members can be shown as unreachable with their last known state;
//! - `inbox/<name>/<from>-<n>` and `reply/<from>/<n>`: remote operations (modules `remote` and `remote_ops`), bound to the
//!   writer's lease so that abandoned ones vanish;
//! - `events/n/<name>` and `events/m`: the cluster event stream (module `stream`).

// Built without the `cluster` feature, vigild has no etcd client: the loop's side of cluster mode (the
// view, remote routing, the records) stays, never fed, and `--cluster` is refused at the door.
#![cfg_attr(not(feature = "cluster"), allow(dead_code, unused_imports))]

pub mod cmd;
#[cfg(feature = "cluster")]
pub mod conn;
#[cfg(feature = "cluster")]
pub mod etcd;
#[cfg(feature = "cluster")]
pub mod life;
#[cfg(feature = "cluster")]
pub mod membership;
pub mod nodes;
pub mod quorum_lease;
pub mod records;
pub mod remote;
#[cfg(feature = "cluster")]
pub mod remote_ops;
pub mod stream;
#[cfg(feature = "cluster")]
pub mod task;
pub mod view;

pub use cmd::{Cmd, REMOTE_TIMEOUT};
#[cfg(feature = "cluster")]
pub use membership::{node_id, ID_FILE};
pub use records::{ClusterOptions, NodeRecord, NodeState};
#[cfg(feature = "cluster")]
pub use task::run;
#[cfg(not(feature = "cluster"))]
pub mod without;
#[cfg(not(feature = "cluster"))]
pub use without::{node_id, run};
