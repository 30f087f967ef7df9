//! The cluster task's own state: its lease, what the loop was last told, and the remote operations
//! and mirror writes waiting for a session.

use std::collections::HashMap;

use etcd_client::{Client, GetOptions, PutOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tracing::warn;
use vigil_proto::{Request, Response, WireError};

use super::cmd::*;
use super::conn::{connect_any, put_retrying, reader};
use super::etcd::*;
use super::records::{ClusterOptions, NodeRecord};
use super::remote_ops::*;
use super::stream::{self as events, Publisher};
use crate::conn::ConnTx;
use crate::msg::{ClusterMsg, Msg};

/// The task's view of its own lease, and what the loop was last told.
pub(crate) struct Life {
    pub(crate) tx: mpsc::UnboundedSender<Msg>,
    pub(crate) lease: Option<i64>,
    /// When the lease expires as far as this node knows: the last keepalive's answer plus its TTL.
    pub(crate) expires: Option<Instant>,
    pub(crate) told: Option<bool>,
    pub(crate) since_ms: u64,
    /// An outage is on: later failures are logged at debug level until a session lasts [`STABLE`].
    pub(crate) failing: bool,
    /// When the current session registered the node.
    pub(crate) registered: Option<Instant>,
    /// The etcd member the current session talks to, by its index in the endpoints.
    pub(crate) member: Option<usize>,
    /// The member the last session talked to when it failed: the next one starts with another.
    pub(crate) failed_member: Option<usize>,
    /// When the last session ended, and the last one that had registered the node.
    pub(crate) ended: Option<Instant>,
    pub(crate) lost: Option<Instant>,
    /// Remote operations asked between two sessions while the lease lives, with their deadlines: the
    /// next session sends them.
    pub(crate) queued: Vec<(Cmd, Instant)>,
    /// The operations waiting for an answer, by reply key. They outlive a session: the next one watches
    /// the replies from where the last one left off.
    pub(crate) waiting: HashMap<String, oneshot::Sender<Vec<u8>>>,
    /// The revision after the last answer, and after the last request in the inbox, seen: where the
    /// next session's watches start, so that a change of session loses neither.
    pub(crate) replies_next: Option<i64>,
    pub(crate) inbox_next: Option<i64>,
    /// This node's PSM members as last told by the loop, written again at each session's start.
    pub(crate) mirror: Option<Vec<u8>>,
    /// Numbers this node's remote operations: from the clock in microseconds, so that an answer meant for
    /// an earlier vigild of the same node cannot be taken for one of this vigild's.
    pub(crate) next_remote: u64,
    /// This node's part of the cluster event stream.
    pub(crate) publisher: Publisher,
    pub(crate) opts: ClusterOptions,
    pub(crate) keys: Keys,
}

impl Life {
    /// A reader of what etcd holds (the cluster event stream, a down node's members): a task of its own,
    /// with its own client of etcd that does not need a leader.
    pub(crate) fn read(&self, cmd: Cmd) {
        let (opts, keys) = (self.opts.clone(), self.keys.clone());
        match cmd {
            Cmd::History {
                after,
                limit,
                sel,
                id,
                out,
            } => {
                tokio::spawn(async move {
                    let r = events::history(opts, keys, after, limit, sel).await;
                    answer(&out, id, r.map(Response::ClusterEvents));
                });
            }
            Cmd::Follow { after, sel, tx } => {
                tokio::spawn(events::follow(opts, keys, after, sel, tx));
            }
            // A serializable read that needs no leader: a down node's members stay readable while
            // etcd has lost its quorum or this node its lease.
            Cmd::ReadMirror {
                node,
                category,
                pid,
                id,
                out,
            } => {
                tokio::spawn(async move {
                    let got = async {
                        let mut c = reader(&opts, &keys).await?;
                        let serializable = GetOptions::new().with_serializable();
                        call("read mirror", c.get(keys.psm(&node), Some(serializable))).await
                    };
                    let got = got.await;
                    answer(&out, id, unreachable_members(&node, got, category.as_deref(), pid));
                });
            }
            _ => {}
        }
    }

    /// A remote operation between two sessions: kept for the next session while the lease lives, else
    /// refused at once.
    pub(crate) fn queue(&mut self, cmd: Cmd) {
        if self.expires.is_some_and(|t| t > Instant::now()) {
            self.queued.push((cmd, Instant::now() + REMOTE_TIMEOUT));
        } else if let Cmd::Remote { node, id, out, .. } = cmd {
            answer(&out, id, Err(unreachable_from_here(&node)));
        }
    }

    /// Fails the kept remote operations whose time ran out, or all of them once the lease is lost.
    pub(crate) fn expire_queued(&mut self) {
        let now = Instant::now();
        let lost = self.told == Some(false);
        self.queued.retain(|(cmd, deadline)| {
            if !lost && *deadline > now {
                return true;
            }
            if let Cmd::Remote { node, id, out, .. } = cmd {
                answer(out, *id, Err(unreachable_from_here(node)));
            }
            false
        });
    }

    /// Writes the answer to an inbox request, bound to this node's lease, through `client` or else any
    /// member that answers, until the asker's time is surely out.
    pub(crate) fn reply(&self, client: Option<Client>, key: String, result: Result<Response, WireError>) {
        let Some(lease) = self.lease else { return };
        let (opts, root) = (self.opts.clone(), self.keys.root.clone());
        tokio::spawn(async move {
            let Ok(bytes) = postcard::to_allocvec(&result) else {
                return;
            };
            let deadline = Instant::now() + REMOTE_TIMEOUT;
            let client = match client {
                Some(c) => c,
                None => match timeout(REMOTE_TIMEOUT, connect_any(&opts, None, true, &root)).await {
                    Ok(Ok((c, _))) => c,
                    _ => return,
                },
            };
            let options = Some(PutOptions::new().with_lease(lease));
            if let Err(e) = put_retrying(&opts, &root, client, key, bytes, options, deadline).await {
                warn!("cluster: reply: {e:#}");
            }
        });
    }

    /// Starts a remote operation (see [`remote`]), answered to `out` as response `id` by `deadline`.
    pub(crate) fn send_remote(
        &mut self,
        client: &Client,
        me: &NodeRecord,
        lease: i64,
        (node, uid, gid, req): (String, u32, u32, Request),
        (id, out): (u64, ConnTx),
        deadline: Instant,
    ) {
        let n = self.next_remote;
        self.next_remote += 1;
        let reply = self.keys.reply(&me.name, n);
        let env = Envelope {
            from: me.name.clone(),
            uid,
            gid,
            reply,
            req,
        };
        let inbox_key = format!("{}{}-{n}", self.keys.inbox(&node), me.name);
        // Those that gave up (timed out) are forgotten here.
        self.waiting.retain(|_, to| !to.is_closed());
        let (to, answered) = oneshot::channel();
        self.waiting.insert(env.reply.clone(), to);
        let ctx = Ctx {
            opts: self.opts.clone(),
            root: self.keys.root.clone(),
            client: client.clone(),
            lease,
            deadline,
        };
        tokio::spawn(remote(ctx, node, inbox_key, env, answered, (id, out)));
    }

    pub(crate) fn tell(&mut self, alive: bool) {
        if self.told != Some(alive) {
            self.told = Some(alive);
            let _ = self.tx.send(Msg::Cluster(ClusterMsg::Lease(alive)));
        }
    }

    /// A lease whose keepalive has not succeeded within its TTL counts as lost.
    pub(crate) fn check(&mut self) {
        if self.expires.is_none_or(|t| Instant::now() >= t) {
            self.tell(false);
        }
    }
}
