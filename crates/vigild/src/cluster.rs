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
//! - `inbox/<name>/<from>-<n>` and `reply/<from>/<n>`: remote operations (module `remote`), bound to the
//!   writer's lease so that abandoned ones vanish;
//! - `events/n/<name>` and `events/m`: the cluster event stream (module `cluster_events`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tracing::{info, warn};

use vigil_proto::{ErrorCode, Event, PsmMember, Request, Response, ServerMsg, WireError};

use crate::cluster_conn::{connect_any, put_retrying};
use crate::cluster_events::{self as events, Publisher, Selection};

use crate::server::{ConnTx, Msg, Outgoing};
use crate::state::now;

/// How long one etcd call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait before trying etcd again after a failure.
pub(crate) const RETRY: Duration = Duration::from_millis(300);
/// The wait instead, for [`QUICK_FOR`] after a session was lost: etcd electing a new leader refuses
/// writes for a few hundred ms, and the node should be back as soon as it has one.
const QUICK_RETRY: Duration = Duration::from_millis(100);
const QUICK_FOR: Duration = Duration::from_secs(2);
/// A session that lasted this long ended an outage: its failure is a new one, worth a warning.
const STABLE: Duration = Duration::from_secs(10);
/// How long vigild waits for its node id from etcd at start before falling back to the cached one.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The file in the state directory that caches the node id, for a start while etcd is away.
pub const ID_FILE: &str = "cluster-node-id";

/// How to reach etcd, from vigild's options.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub endpoints: Vec<String>,
    pub cluster: String,
    /// Seconds; at least 2 (etcd's minimum).
    pub lease_ttl: u64,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// What a node publishes about itself (JSON in etcd, readable with `etcdctl get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub id: u32,
    /// The node's vigild socket.
    pub address: String,
    pub pid: u32,
    pub version: String,
    /// When the node joined with its current lease (ms since the epoch).
    pub since_ms: u64,
    /// Set in `known/<name>` when the node went down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since_ms: Option<u64>,
}

/// One node as the cluster task last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub record: NodeRecord,
    pub up: bool,
    /// Up since, or down since.
    pub since_ms: u64,
}

/// What the cluster task tells the loop.
// One per etcd event, handled at once: boxing the request would buy nothing.
#[allow(clippy::large_enum_variant)]
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
        req: Request,
    },
    /// A session started and found this node's last published event at `after` (None: it never
    /// published): the loop answers with `Cmd::Resynced { epoch, .. }`.
    Resync { epoch: u64, after: Option<u64> },
}

/// A request in another node's inbox (postcard in etcd).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    uid: u32,
    gid: u32,
    /// Where the answer goes: a `Result<Response, WireError>` (postcard).
    reply: String,
    req: Request,
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
fn answer(out: &ConnTx, id: u64, result: Result<Response, WireError>) {
    let _ = out.send(Outgoing::msg(ServerMsg::Response { id, result }));
}

#[derive(Clone)]
pub(crate) struct Keys {
    pub(crate) root: String,
}

impl Keys {
    pub(crate) fn new(cluster: &str) -> Keys {
        Keys {
            root: format!("/vigil/{cluster}/"),
        }
    }
    fn nodes(&self) -> String {
        format!("{}nodes/", self.root)
    }
    fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.root)
    }
    fn known(&self) -> String {
        format!("{}known/", self.root)
    }
    fn known_one(&self, name: &str) -> String {
        format!("{}known/{name}", self.root)
    }
    fn id(&self, name: &str) -> String {
        format!("{}ids/{name}", self.root)
    }
    fn next_id(&self) -> String {
        format!("{}next_id", self.root)
    }
    fn inbox(&self, name: &str) -> String {
        format!("{}inbox/{name}/", self.root)
    }
    fn replies(&self, from: &str) -> String {
        format!("{}reply/{from}/", self.root)
    }
    fn reply(&self, from: &str, n: u64) -> String {
        format!("{}{n}", self.replies(from))
    }
    fn psm(&self, name: &str) -> String {
        format!("{}psm/{name}", self.root)
    }
    pub(crate) fn events(&self) -> String {
        format!("{}events/", self.root)
    }
    pub(crate) fn events_of(&self, name: &str) -> String {
        format!("{}events/n/{name}", self.root)
    }
    fn membership(&self) -> String {
        format!("{}events/m", self.root)
    }
}

pub(crate) async fn call<T, F>(what: &str, f: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    match timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.with_context(|| format!("etcd: {what}")),
        Err(_) => anyhow::bail!("etcd: {what}: no answer within {CALL_TIMEOUT:?}"),
    }
}

/// A client of etcd. With `require_leader`, a request to a member without a leader is refused at once
/// rather than left to wait for one (writes, and reads that must be current); without it, a member that
/// lost its quorum still answers serializable reads and watches from what it has.
pub(crate) async fn connect(opts: &ClusterOptions, require_leader: bool) -> anyhow::Result<Client> {
    let mut co = ConnectOptions::new()
        .with_connect_timeout(CALL_TIMEOUT)
        .with_require_leader(require_leader);
    if require_leader {
        co = co.with_timeout(CALL_TIMEOUT);
    }
    if let (Some(u), Some(p)) = (&opts.user, &opts.password) {
        co = co.with_user(u.clone(), p.clone());
    }
    if opts.ca.is_some() || opts.cert.is_some() {
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &opts.ca {
            let pem = std::fs::read(ca).with_context(|| format!("--etcd-ca {}", ca.display()))?;
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&opts.cert, &opts.key) {
            let cert = std::fs::read(c).with_context(|| format!("--etcd-cert {}", c.display()))?;
            let key = std::fs::read(k).with_context(|| format!("--etcd-key {}", k.display()))?;
            tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
        }
        co = co.with_tls(tls);
    }
    call("connect", Client::connect(opts.endpoints.clone(), Some(co))).await
}

/// A client of one etcd member that answers, for reads that need no leader (serializable reads,
/// watches): the members are tried in turn, since a client balanced over all of them may pick one that is
/// down, and a member that lost its quorum still answers from what it has.
pub(crate) async fn reader(opts: &ClusterOptions, keys: &Keys) -> anyhow::Result<Client> {
    Ok(connect_any(opts, None, false, &keys.root).await?.0)
}

/// The node's id: `ids/<name>` if it exists, else the next number of the counter, both in one
/// transaction so that two nodes joining at once never get the same id.
async fn assign_id(client: &mut Client, keys: &Keys, name: &str) -> anyhow::Result<u32> {
    loop {
        let got = call("get id", client.get(keys.id(name), None)).await?;
        if let Some(kv) = got.kvs().first() {
            return parse_id(kv.value());
        }
        let counter = call("get next_id", client.get(keys.next_id(), None)).await?;
        let (next, rev) = match counter.kvs().first() {
            Some(kv) => (parse_id(kv.value())?, kv.mod_revision()),
            None => (1, 0),
        };
        let txn = Txn::new()
            .when([
                Compare::version(keys.id(name), CompareOp::Equal, 0),
                Compare::mod_revision(keys.next_id(), CompareOp::Equal, rev),
            ])
            .and_then([
                TxnOp::put(keys.id(name), next.to_string(), None),
                TxnOp::put(keys.next_id(), (next + 1).to_string(), None),
            ]);
        if call("assign id", client.txn(txn)).await?.succeeded() {
            return Ok(next);
        }
        // Another node took this number (or this name) meanwhile: read again.
    }
}

fn parse_id(v: &[u8]) -> anyhow::Result<u32> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| *n >= 1)
        .with_context(|| format!("etcd: a node id is not a number: {:?}", String::from_utf8_lossy(v)))
}

/// The node id at start: from etcd (and cached in the state dir), or from the cache when etcd cannot be
/// reached in time. A first start without etcd fails: the id is not known yet.
pub async fn node_id(opts: &ClusterOptions, name: &str, state_dir: &Path) -> anyhow::Result<u32> {
    let cache = state_dir.join(ID_FILE);
    let tag = format!("{}\t{}\t", opts.cluster, name);
    let cached = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|s| s.strip_prefix(&tag).and_then(|n| n.trim().parse::<u32>().ok()));
    let keys = Keys::new(&opts.cluster);
    let from_etcd = timeout(JOIN_TIMEOUT, async {
        let (mut client, _) = connect_any(opts, None, true, &keys.root).await?;
        assign_id(&mut client, &keys, name).await
    })
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {JOIN_TIMEOUT:?}")));
    match (from_etcd, cached) {
        (Ok(id), cached) => {
            if cached.is_some_and(|c| c != id) {
                warn!("node id {id} from etcd replaces the cached id {cached:?}");
            }
            if cached != Some(id) {
                let tmp = cache.with_extension("new");
                std::fs::write(&tmp, format!("{tag}{id}\n")).context("cannot cache the node id")?;
                std::fs::rename(&tmp, &cache).context("cannot cache the node id")?;
            }
            Ok(id)
        }
        (Err(e), Some(id)) => {
            warn!("{e:#}; using the cached node id {id}");
            Ok(id)
        }
        (Err(e), None) => Err(e.context(format!(
            "cannot get a node id for {name} from etcd at {} (none cached in {})",
            opts.endpoints.join(","),
            cache.display()
        ))),
    }
}

/// The task's view of its own lease, and what the loop was last told.
struct Life {
    tx: mpsc::UnboundedSender<Msg>,
    lease: Option<i64>,
    /// When the lease expires as far as this node knows: the last keepalive's answer plus its TTL.
    expires: Option<Instant>,
    told: Option<bool>,
    since_ms: u64,
    /// An outage is on: later failures are logged at debug level until a session lasts [`STABLE`].
    failing: bool,
    /// When the current session registered the node.
    registered: Option<Instant>,
    /// The etcd member the current session talks to, by its index in the endpoints.
    member: Option<usize>,
    /// The member the last session talked to when it failed: the next one starts with another.
    failed_member: Option<usize>,
    /// When the last session ended, and the last one that had registered the node.
    ended: Option<Instant>,
    lost: Option<Instant>,
    /// Remote operations asked between two sessions while the lease lives, with their deadlines: the
    /// next session sends them.
    queued: Vec<(Cmd, Instant)>,
    /// The operations waiting for an answer, by reply key. They outlive a session: the next one watches
    /// the replies from where the last one left off.
    waiting: HashMap<String, oneshot::Sender<Vec<u8>>>,
    /// The revision after the last answer, and after the last request in the inbox, seen: where the
    /// next session's watches start, so that a change of session loses neither.
    replies_next: Option<i64>,
    inbox_next: Option<i64>,
    /// This node's PSM members as last told by the loop, written again at each session's start.
    mirror: Option<Vec<u8>>,
    /// Numbers this node's remote operations: from the clock in microseconds, so that an answer meant for
    /// an earlier vigild of the same node cannot be taken for one of this vigild's.
    next_remote: u64,
    /// This node's part of the cluster event stream.
    publisher: Publisher,
    opts: ClusterOptions,
    keys: Keys,
}

impl Life {
    /// A reader of what etcd holds (the cluster event stream, a down node's members): a task of its own,
    /// with its own client of etcd that does not need a leader.
    fn read(&self, cmd: Cmd) {
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
    fn queue(&mut self, cmd: Cmd) {
        if self.expires.is_some_and(|t| t > Instant::now()) {
            self.queued.push((cmd, Instant::now() + REMOTE_TIMEOUT));
        } else if let Cmd::Remote { node, id, out, .. } = cmd {
            answer(&out, id, Err(unreachable_from_here(&node)));
        }
    }

    /// Fails the kept remote operations whose time ran out, or all of them once the lease is lost.
    fn expire_queued(&mut self) {
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
    fn reply(&self, client: Option<Client>, key: String, result: Result<Response, WireError>) {
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
    fn send_remote(
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

    fn tell(&mut self, alive: bool) {
        if self.told != Some(alive) {
            self.told = Some(alive);
            let _ = self.tx.send(Msg::Cluster(ClusterMsg::Lease(alive)));
        }
    }

    /// A lease whose keepalive has not succeeded within its TTL counts as lost.
    fn check(&mut self) {
        if self.expires.is_none_or(|t| Instant::now() >= t) {
            self.tell(false);
        }
    }
}

/// The cluster task: registers the node, keeps its lease alive, watches the nodes, and starts over after
/// any failure (re-using the lease while it lives), until a `Leave`.
pub async fn run(
    opts: ClusterOptions,
    me: NodeRecord,
    tx: mpsc::UnboundedSender<Msg>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let keys = Keys::new(&opts.cluster);
    let mut life = Life {
        tx,
        lease: None,
        expires: None,
        told: None,
        since_ms: now().as_millis(),
        failing: false,
        registered: None,
        member: None,
        failed_member: None,
        ended: None,
        lost: None,
        queued: Vec::new(),
        waiting: HashMap::new(),
        replies_next: None,
        inbox_next: None,
        mirror: None,
        next_remote: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64),
        publisher: Publisher::default(),
        opts: opts.clone(),
        keys: keys.clone(),
    };
    life.tell(false);
    loop {
        let result = session(&opts, &keys, &me, &mut life, &mut cmds).await;
        life.ended = Some(Instant::now());
        life.failed_member = life.member.take();
        // A session that lasted ends an outage; its member's loss is news, and is tried again at once
        // on the next member.
        let lasted = life.registered.take().map(|t| t.elapsed());
        if lasted.is_some() {
            life.lost = life.ended;
        }
        if lasted.is_some_and(|d| d >= STABLE) {
            life.failing = false;
        }
        match result {
            Ok(()) => return,
            // One warning per outage, not one per retry.
            Err(e) if life.failing => tracing::debug!("cluster: {e:#}"),
            Err(e) => {
                warn!("cluster: {e:#}; trying the other members, then again every {RETRY:?}");
                life.failing = true;
            }
        }
        life.check();
        life.expire_queued();
        if lasted.is_some_and(|d| d >= RETRY) {
            continue;
        }
        // Wait a little before trying again, still honouring a leave and the lease's deadline.
        let pause = if life.lost.is_some_and(|t| t.elapsed() < QUICK_FOR) {
            QUICK_RETRY
        } else {
            RETRY
        };
        let until = Instant::now() + pause;
        loop {
            let tick = life
                .expires
                .filter(|t| *t > Instant::now())
                .map_or(until, |t| t.min(until));
            tokio::select! {
                _ = tokio::time::sleep_until(tick) => {
                    life.check();
                    life.expire_queued();
                    if Instant::now() >= until {
                        break;
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Leave(done)) => {
                        // etcd is unreachable: the lease expires on its own.
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd @ Cmd::ReadMirror { .. }) => life.read(cmd),
                    Some(cmd @ Cmd::Remote { .. }) => life.queue(cmd),
                    Some(Cmd::Mirror(m)) => life.mirror = postcard::to_allocvec(&m).ok(),
                    Some(Cmd::Reply { key, result }) => life.reply(None, key, result),
                    // The next session asks the loop for them again.
                    Some(Cmd::Publish(_) | Cmd::Resynced { .. }) => life.publisher.pause(),
                    Some(cmd @ (Cmd::History { .. } | Cmd::Follow { .. })) => life.read(cmd),
                    None => return,
                },
            }
        }
    }
}

async fn session(
    opts: &ClusterOptions,
    keys: &Keys,
    me: &NodeRecord,
    life: &mut Life,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
) -> anyhow::Result<()> {
    let ttl = opts.lease_ttl as i64;
    let (mut client, member) = connect_any(opts, life.failed_member, true, &keys.root).await?;
    life.member = Some(member);
    // When etcd can expire the lease at the earliest (see the keepalive loop), for SAM's deadline.
    let mut renewed = None;
    // The lease of the previous session, if etcd still has it: the node stays up without a blip.
    if let Some(id) = life.lease {
        let sent = Instant::now();
        let ttl = match keep_alive(&mut client, id).await? {
            Some((mut keeper, mut answers)) => {
                call("keepalive", keeper.keep_alive()).await?;
                call("keepalive", answers.message()).await?.map_or(0, |a| a.ttl())
            }
            None => 0,
        };
        if ttl > 0 {
            life.expires = Some(Instant::now() + Duration::from_secs(ttl as u64));
            renewed = Some(sent + Duration::from_secs(ttl as u64));
        } else {
            info!("cluster: lease {id:x} expired; joining again");
            life.lease = None;
        }
    }
    if life.lease.is_none() {
        let sent = Instant::now();
        let granted = call("lease grant", client.lease_grant(ttl, None)).await?;
        renewed = Some(sent + Duration::from_secs(granted.ttl().max(1) as u64));
        life.lease = Some(granted.id());
        life.expires = Some(Instant::now() + Duration::from_secs(granted.ttl().max(1) as u64));
        life.since_ms = now().as_millis();
    }
    let lease = life.lease.expect("granted above");
    let record = NodeRecord {
        since_ms: life.since_ms,
        down_since_ms: None,
        ..me.clone()
    };
    let json = serde_json::to_string(&record)?;
    let register = [
        TxnOp::put(
            keys.node(&me.name),
            json.clone(),
            Some(PutOptions::new().with_lease(lease)),
        ),
        TxnOp::put(keys.known_one(&me.name), json, None),
    ];
    // The node's up event, once per join: not when a new session finds the node still up.
    let mut joined = register.to_vec();
    joined.push(TxnOp::put(
        keys.membership(),
        events::membership(&record, true, "joined"),
        None,
    ));
    call(
        "register",
        client.txn(
            Txn::new()
                .when([Compare::version(keys.node(&me.name), CompareOp::Equal, 0)])
                .and_then(joined)
                .or_else(register),
        ),
    )
    .await?;
    info!(
        lease = format_args!("{lease:x}"),
        "cluster: registered as {} (id {})", me.name, me.id
    );
    life.registered = Some(Instant::now());
    if let Some(until) = renewed {
        let _ = life.tx.send(Msg::Cluster(ClusterMsg::Renewed(until.into_std())));
    }
    life.tell(true);

    let (nodes, rev) = list(&mut client, keys).await?;
    let _ = life.tx.send(Msg::Cluster(ClusterMsg::Nodes(nodes)));
    let last = events::last_published(&mut client, keys, &me.name).await?;
    let (epoch, after) = life.publisher.restart(last);
    let _ = life.tx.send(Msg::Cluster(ClusterMsg::Resync { epoch, after }));
    // Every watch of the session starts right after the listing, so that nothing falls between.
    let mut watch = watch_after(&mut client, "watch", keys.nodes(), rev).await?;
    // The inbox from where the last session left off, if it ended moments ago: a request written while
    // this node changed members is carried out, one whose asker has surely given up is not.
    let recent = life.ended.is_some_and(|t| t.elapsed() < REMOTE_TIMEOUT);
    let inbox_from = life.inbox_next.filter(|_| recent).unwrap_or(rev + 1);
    life.inbox_next = Some(inbox_from);
    let mut inbox = watch_after(&mut client, "watch inbox", keys.inbox(&me.name), inbox_from - 1).await?;
    // One watch for the answers to every remote operation, from where the last session's left off:
    // operations still waiting get their answers. (A watch made per operation would race with other
    // writes: etcd then counts it as behind, and delivers to it only on its 100 ms catch-up tick.)
    let replies_from = life.replies_next.unwrap_or(rev + 1);
    life.replies_next = Some(replies_from);
    let mut replies = watch_after(&mut client, "watch replies", keys.replies(&me.name), replies_from - 1).await?;
    // Those that gave up (timed out) are forgotten here.
    life.waiting.retain(|_, to| !to.is_closed());
    if let Some(m) = &life.mirror {
        call("mirror psm", client.put(keys.psm(&me.name), m.clone(), None)).await?;
    }
    let Some((mut keeper, mut answers)) = keep_alive(&mut client, lease).await? else {
        life.lease = None;
        anyhow::bail!("lease {lease:x} expired");
    };
    let mut tick = tokio::time::interval(Duration::from_millis(opts.lease_ttl * 1000 / 3));
    // What was asked between the sessions goes now.
    for (cmd, deadline) in std::mem::take(&mut life.queued) {
        if let Cmd::Remote {
            node,
            uid,
            gid,
            req,
            id,
            out,
        } = cmd
        {
            life.send_remote(&client, me, lease, (node, uid, gid, req), (id, out), deadline);
        }
    }
    let mut publishing: Option<Publishing> = None;
    // The mirror, like the events, is written off the loop: one put at a time, the latest members.
    let mut mirroring: Option<Publishing> = None;
    let mut mirror_due = false;
    loop {
        if mirroring.is_none() && mirror_due {
            if let Some(bytes) = life.mirror.clone() {
                let (mut c, key) = (client.clone(), keys.psm(&me.name));
                mirroring = Some(Box::pin(async move {
                    call("mirror psm", c.put(key, bytes, None)).await.map(|_| 0)
                }));
            }
            mirror_due = false;
        }
        if publishing.is_none() && life.publisher.has_pending() {
            if let Some((batch, last)) = life.publisher.batch() {
                let (mut c, key) = (client.clone(), keys.events_of(&me.name));
                publishing = Some(Box::pin(async move {
                    call("publish events", c.put(key, batch, None)).await.map(|_| last)
                }));
            }
        }
        tokio::select! {
            // Publishing comes first: events reach the stream as soon as etcd takes them. A put on its
            // way does not hold up the watches: a member lost meanwhile ends the session at once.
            biased;
            last = async { publishing.as_mut().expect("checked").await }, if publishing.is_some() => {
                publishing = None;
                life.publisher.written(last?);
            }
            done = async { mirroring.as_mut().expect("checked").await }, if mirroring.is_some() => {
                mirroring = None;
                done?;
            }
            _ = tick.tick() => {
                // etcd renews the lease after it reads the keepalive, so it cannot expire the lease before
                // `sent + TTL`: the deadline SAM's QUORUM supervisors are given (docs/cluster.md).
                let sent = Instant::now();
                call("keepalive", keeper.keep_alive()).await?;
                match call("keepalive", answers.message()).await? {
                    Some(a) if a.ttl() > 0 => {
                        life.expires = Some(Instant::now() + Duration::from_secs(a.ttl() as u64));
                        // Before `Lease(true)`: a quorum regained is pushed with this deadline.
                        let until = sent + Duration::from_secs(a.ttl() as u64);
                        let _ = life.tx.send(Msg::Cluster(ClusterMsg::Renewed(until.into_std())));
                        life.tell(true);
                    }
                    _ => {
                        life.lease = None;
                        anyhow::bail!("lease {lease:x} expired");
                    }
                }
            }
            msg = watch.message() => {
                let msg = msg.context("etcd: watch")?.context("etcd: the watch ended")?;
                if msg.canceled() {
                    anyhow::bail!("etcd: watch cancelled: {}", msg.cancel_reason());
                }
                let mut changed = false;
                for ev in msg.events() {
                    changed = true;
                    let Some(kv) = ev.kv() else { continue };
                    let name = kv.key_str().unwrap_or_default().trim_start_matches(&keys.nodes()).to_string();
                    if ev.event_type() == EventType::Delete {
                        if name == me.name {
                            // Our own key went (the lease expired while etcd could not hear us).
                            life.lease = None;
                            anyhow::bail!("this node's key was deleted; joining again");
                        }
                        mark_down(&mut client, keys, &name, kv.mod_revision()).await?;
                    }
                }
                if changed {
                    let (nodes, _) = list(&mut client, keys).await?;
                    let _ = life.tx.send(Msg::Cluster(ClusterMsg::Nodes(nodes)));
                }
            }
            msg = inbox.message() => {
                let msg = msg.context("etcd: inbox watch")?.context("etcd: the inbox watch ended")?;
                if msg.canceled() {
                    // Compacted past where it started: the next session starts afresh.
                    life.inbox_next = None;
                    anyhow::bail!("etcd: inbox watch cancelled: {}", msg.cancel_reason());
                }
                for ev in msg.events() {
                    let Some(kv) = ev.kv() else { continue };
                    life.inbox_next = Some(kv.mod_revision() + 1);
                    if ev.event_type() != EventType::Put {
                        continue;
                    }
                    match postcard::from_bytes::<Envelope>(kv.value()) {
                        Ok(e) => {
                            let _ = life.tx.send(Msg::Cluster(ClusterMsg::Inbox {
                                key: e.reply,
                                from: e.from,
                                uid: e.uid,
                                gid: e.gid,
                                req: e.req,
                            }));
                        }
                        Err(e) => warn!("cluster: ignoring {:?}: not a request ({e})", kv.key_str()),
                    }
                }
            }
            msg = replies.message() => {
                let msg = msg.context("etcd: replies watch")?.context("etcd: the replies watch ended")?;
                if msg.canceled() {
                    // Compacted past where it started: what waits cannot be answered.
                    life.replies_next = None;
                    life.waiting.clear();
                    anyhow::bail!("etcd: replies watch cancelled: {}", msg.cancel_reason());
                }
                for ev in msg.events() {
                    if let Some(kv) = ev.kv() {
                        life.replies_next = Some(kv.mod_revision() + 1);
                    }
                    if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                        if let Some(to) = life.waiting.remove(kv.key_str().unwrap_or_default()) {
                            let _ = to.send(kv.value().to_vec());
                        }
                    }
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Leave(done)) => {
                    leave(&mut client, keys, &record, lease).await;
                    let _ = done.send(());
                    return Ok(());
                }
                // Without a leave (the sender dropped: vigild re-executes), the lease is left to the next
                // vigild, which keeps the node up by registering again within the TTL.
                None => return Ok(()),
                Some(Cmd::Remote { node, uid, gid, req, id, out }) => {
                    let deadline = Instant::now() + REMOTE_TIMEOUT;
                    life.send_remote(&client, me, lease, (node, uid, gid, req), (id, out), deadline);
                }
                Some(Cmd::Reply { key, result }) => life.reply(Some(client.clone()), key, result),
                Some(Cmd::Mirror(m)) => {
                    life.mirror = Some(postcard::to_allocvec(&m)?);
                    mirror_due = true;
                }
                Some(Cmd::Publish(evs)) => life.publisher.offer(evs),
                Some(Cmd::Resynced { epoch, events }) => life.publisher.resynced(epoch, events),
                Some(cmd @ (Cmd::History { .. } | Cmd::Follow { .. })) => life.read(cmd),
                Some(cmd @ Cmd::ReadMirror { .. }) => life.read(cmd),
            },
        }
        life.check();
    }
}

/// A batch of events on its way to etcd: the last sequence number it holds, once written.
type Publishing = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<u64>> + Send>>;

/// A keeper of lease `id`, or None when etcd no longer has the lease (it expired).
async fn keep_alive(
    client: &mut Client,
    id: i64,
) -> anyhow::Result<Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>> {
    match timeout(CALL_TIMEOUT, client.lease_keep_alive(id)).await {
        // etcd-client's word for an answer with no TTL.
        Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) if m == "lease not found" => Ok(None),
        Ok(r) => Ok(Some(r.context("etcd: keepalive")?)),
        Err(_) => anyhow::bail!("etcd: keepalive: no answer within {CALL_TIMEOUT:?}"),
    }
}

/// A watch of every key under `prefix`, from the revision after `rev`.
async fn watch_after(client: &mut Client, what: &str, prefix: String, rev: i64) -> anyhow::Result<WatchStream> {
    let options = WatchOptions::new().with_prefix().with_start_revision(rev + 1);
    call(what, client.watch(prefix, Some(options))).await
}

/// What a remote operation needs of its session: a client (the session's), and how to reach another
/// member when that one fails.
struct Ctx {
    opts: ClusterOptions,
    root: String,
    client: Client,
    lease: i64,
    deadline: Instant,
}

/// A refusal of a remote operation when this node has no session with etcd and no lease.
fn unreachable_from_here(node: &str) -> WireError {
    WireError::new(
        ErrorCode::NodeDown,
        format!("node {node}: etcd cannot be reached from this node"),
    )
}

/// A remote operation: the request goes into the node's inbox (bound to this node's lease, so it vanishes
/// if this node dies), and its answer comes into a reply key, which the session's replies watch hands over
/// through `answered`; all of it within [`REMOTE_TIMEOUT`]. Both keys are deleted after.
async fn remote(
    ctx: Ctx,
    node: String,
    inbox_key: String,
    env: Envelope,
    answered: oneshot::Receiver<Vec<u8>>,
    (id, out): (u64, ConnTx),
) {
    let reply_key = env.reply.clone();
    let mut client = ctx.client.clone();
    let work = async {
        let bytes = postcard::to_allocvec(&env).map_err(|e| anyhow::anyhow!("{e}"))?;
        // The request outlives the loss of the member it goes through, or a new leader's election.
        let options = Some(PutOptions::new().with_lease(ctx.lease));
        put_retrying(
            &ctx.opts,
            &ctx.root,
            ctx.client.clone(),
            inbox_key.clone(),
            bytes,
            options,
            ctx.deadline,
        )
        .await?;
        let answer = answered
            .await
            .map_err(|_| anyhow::anyhow!("the answer can no longer be watched (etcd compacted it)"))?;
        postcard::from_bytes::<Result<Response, WireError>>(&answer)
            .map_err(|e| anyhow::anyhow!("a malformed answer: {e}"))
    };
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    let result = match timeout(left, work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(WireError::new(ErrorCode::NodeDown, format!("node {node}: etcd: {e:#}"))),
        Err(_) => Err(WireError::new(
            ErrorCode::NodeDown,
            format!("node {node} did not answer within {}s", REMOTE_TIMEOUT.as_secs()),
        )),
    };
    answer(&out, id, result);
    let _ = call("delete request", client.delete(inbox_key, None)).await;
    let _ = call("delete reply", client.delete(reply_key, None)).await;
}

/// A down node's members from its mirror, filtered as PSM get filters, each with its last known state and
/// the `PSM_FL_UNREACHABLE` flag.
fn unreachable_members(
    node: &str,
    got: anyhow::Result<etcd_client::GetResponse>,
    category: Option<&str>,
    pid: Option<i32>,
) -> Result<Response, WireError> {
    let down = |why: String| Err(WireError::new(ErrorCode::NodeDown, format!("node {node} is down{why}")));
    let got = match got {
        Ok(g) => g,
        Err(e) => return down(format!(" and its members cannot be read: {e:#}")),
    };
    let Some(kv) = got.kvs().first() else {
        return down(" (no members recorded)".into());
    };
    let Ok(all) = postcard::from_bytes::<Vec<PsmMember>>(kv.value()) else {
        return down(" (its member record is malformed)".into());
    };
    let mut found: Vec<PsmMember> = all
        .into_iter()
        .filter(|m| category.is_none_or(|c| m.category == c) && pid.is_none_or(|p| m.pid == p))
        .collect();
    if found.is_empty() {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("node {node} is down and had no such member"),
        ));
    }
    let total = found.len() as u32;
    for (i, m) in found.iter_mut().enumerate() {
        m.listidx = i as u32 + 1;
        m.listcnt = total;
        m.total = total;
        m.flags |= vigil_proto::PSM_FL_UNREACHABLE;
    }
    Ok(Response::PsmMembers(found))
}

/// Records when a node went down in its `known/` key, once: only if nobody recorded it since the
/// deletion (`rev`) happened.
async fn mark_down(client: &mut Client, keys: &Keys, name: &str, rev: i64) -> anyhow::Result<()> {
    let key = keys.known_one(name);
    let got = call("get known", client.get(key.clone(), None)).await?;
    let Some(kv) = got.kvs().first() else { return Ok(()) };
    let Ok(mut r) = serde_json::from_slice::<NodeRecord>(kv.value()) else {
        return Ok(());
    };
    r.down_since_ms = Some(now().as_millis());
    let txn = Txn::new()
        .when([Compare::mod_revision(key.clone(), CompareOp::Less, rev)])
        .and_then([
            TxnOp::put(key, serde_json::to_string(&r)?, None),
            TxnOp::put(keys.membership(), events::membership(&r, false, "lease expired"), None),
        ]);
    call("mark down", client.txn(txn)).await?;
    Ok(())
}

/// A clean stop: this node is marked down and its key deleted in one transaction (so the others see
/// the time it left), then its lease revoked. Best effort: when etcd does not answer, the lease expires.
async fn leave(client: &mut Client, keys: &Keys, record: &NodeRecord, lease: i64) {
    let down = NodeRecord {
        down_since_ms: Some(now().as_millis()),
        ..record.clone()
    };
    let Ok(json) = serde_json::to_string(&down) else { return };
    let txn = Txn::new().and_then([
        TxnOp::delete(keys.node(&record.name), None),
        TxnOp::put(keys.known_one(&record.name), json, None),
        TxnOp::put(keys.membership(), events::membership(&down, false, "left"), None),
    ]);
    if let Err(e) = call("leave", client.txn(txn)).await {
        warn!("cluster: {e:#}");
    }
    if let Err(e) = call("lease revoke", client.lease_revoke(lease)).await {
        warn!("cluster: {e:#}");
    }
    info!("cluster: left");
}

/// Every known node with its state, and the revision of that view (one transaction, so both lists agree).
async fn list(client: &mut Client, keys: &Keys) -> anyhow::Result<(Vec<NodeState>, i64)> {
    let resp = call(
        "list nodes",
        client.txn(Txn::new().and_then([
            TxnOp::get(keys.known(), Some(GetOptions::new().with_prefix())),
            TxnOp::get(keys.nodes(), Some(GetOptions::new().with_prefix())),
        ])),
    )
    .await?;
    let rev = resp.header().map_or(0, |h| h.revision());
    let mut known = BTreeMap::new();
    let mut up = BTreeMap::new();
    for (i, op) in resp.op_responses().into_iter().enumerate() {
        let TxnOpResponse::Get(g) = op else { continue };
        for kv in g.kvs() {
            let Ok(r) = serde_json::from_slice::<NodeRecord>(kv.value()) else {
                warn!("cluster: ignoring {:?}: not a node record", kv.key_str());
                continue;
            };
            if i == 0 {
                known.insert(r.name.clone(), r);
            } else {
                up.insert(r.name.clone(), r);
            }
        }
    }
    Ok((merge(known, up), rev))
}

/// The list of nodes from `known/` and `nodes/`: a node is up when its lease-bound key exists.
fn merge(mut known: BTreeMap<String, NodeRecord>, up: BTreeMap<String, NodeRecord>) -> Vec<NodeState> {
    for (name, r) in &up {
        known.insert(name.clone(), r.clone());
    }
    known
        .into_values()
        .map(|r| {
            let is_up = up.contains_key(&r.name);
            let since_ms = if is_up {
                r.since_ms
            } else {
                r.down_since_ms.unwrap_or(r.since_ms)
            };
            NodeState {
                record: r,
                up: is_up,
                since_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, id: u32, since: u64, down: Option<u64>) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            id,
            address: format!("/run/{name}.sock"),
            pid: 1,
            version: "0".into(),
            since_ms: since,
            down_since_ms: down,
        }
    }

    #[test]
    fn a_node_is_up_while_its_key_exists_and_down_since_it_left() {
        let known = BTreeMap::from([
            ("a".to_string(), rec("a", 1, 10, None)),
            ("b".to_string(), rec("b", 2, 20, Some(30))),
            ("c".to_string(), rec("c", 3, 40, None)),
        ]);
        let up = BTreeMap::from([("a".to_string(), rec("a", 1, 15, None))]);
        let got: Vec<(String, bool, u64)> = merge(known, up)
            .into_iter()
            .map(|n| (n.record.name, n.up, n.since_ms))
            .collect();
        // c was killed and nobody recorded when: down since it last joined.
        assert_eq!(
            got,
            vec![("a".into(), true, 15), ("b".into(), false, 30), ("c".into(), false, 40)]
        );
    }

    #[test]
    fn ids_are_positive_numbers() {
        assert_eq!(parse_id(b"7").unwrap(), 7);
        assert!(parse_id(b"0").is_err());
        assert!(parse_id(b"x").is_err());
    }
}
