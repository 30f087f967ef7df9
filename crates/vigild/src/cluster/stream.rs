//! The cluster event stream (docs/cluster.md): every node publishes its cluster-wide events into etcd,
//! and readers watch them back, every node's in one order: etcd's revisions.
//!
//! - `events/n/<node>`: no lease; the node's latest batch of events (postcard `Vec<Event>`), overwritten
//!   by each publication. etcd keeps every earlier value as history (until it is compacted), and a watch
//!   from an old revision replays them: the history is etcd's, vigil keeps no copy.
//! - `events/m`: the membership events `sys.vigil.node.up|down`, written by the transactions that change
//!   membership, once per change, rather than by each node that sees it.
//!
//! Publication survives outages and restarts: at each session's start the cluster task reads its last
//! batch back, and the loop hands it every stored event after that batch's last sequence number.

use std::collections::VecDeque;
use std::time::Duration;

#[cfg(feature = "cluster")]
use anyhow::Context;
#[cfg(feature = "cluster")]
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
#[cfg(feature = "cluster")]
use tokio::sync::mpsc;
#[cfg(feature = "cluster")]
use tokio::time::timeout;
use tracing::debug;
use vigil_proto::{ClusterEvent, ClusterEvents, ErrorCode, Event, EventFilter, ServerMsg, Value, WireError};

#[cfg(feature = "cluster")]
use super::conn::reader;
#[cfg(feature = "cluster")]
use super::etcd::{call, Keys, RETRY};
use super::records::{ClusterOptions, NodeRecord};
use crate::clock::now;
use crate::events::subscription::Subscription;

/// At most this many bytes of events in one etcd write (etcd refuses requests above 1.5 MiB).
const BATCH_BYTES: usize = 1 << 20;
#[cfg(feature = "cluster")]
/// How long a `ClusterEvents` request may take, all of it.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an event belongs to the cluster stream. Category and set events stay on their node, as
/// Tru64's PSM has them; node events come from the membership transactions (`events/m`), not from each
/// node's own view of them.
pub fn cluster_wide(name: &str) -> bool {
    !(name.starts_with("sys.unix.psm.category.")
        || name.starts_with("sys.unix.psm.set.")
        || name.starts_with("sys.vigil.node."))
}

/// A membership event, as `events/m` holds it: `node` went up or down, and `how`.
pub fn membership(node: &NodeRecord, up: bool, how: &str) -> Vec<u8> {
    let name = if up { "sys.vigil.node.up" } else { "sys.vigil.node.down" };
    let e = Event {
        seq: 0,
        time_ms: now().as_millis(),
        name: name.into(),
        node: node.name.clone(),
        subject: node.name.clone(),
        attrs: vec![
            ("node_id".into(), Value::Int(i64::from(node.id))),
            ("how".into(), Value::Str(how.into())),
        ],
    };
    postcard::to_allocvec(&vec![e]).expect("plain data serializes")
}

/// This node's side of publication: the events waiting for etcd, and where the last session left off.
#[derive(Default)]
pub struct Publisher {
    pending: VecDeque<Event>,
    /// The highest sequence number known to be in etcd.
    published: u64,
    /// The resync this session waits for: until the loop answers it, events it sends are dropped (the
    /// answer holds them).
    awaiting: Option<u64>,
    epoch: u64,
}

impl Publisher {
    /// A session starts: `last` is the last sequence number found in etcd (None: this node never
    /// published). Returns the resync to ask of the loop: its epoch, and the events after which it wants.
    pub fn restart(&mut self, last: Option<u64>) -> (u64, Option<u64>) {
        self.pending.clear();
        self.epoch += 1;
        self.awaiting = Some(self.epoch);
        self.published = last.unwrap_or(0);
        (self.epoch, last)
    }

    /// The loop's answer to a resync: every event after the asked sequence number.
    pub fn resynced(&mut self, epoch: u64, events: Vec<Event>) {
        if self.awaiting == Some(epoch) {
            self.awaiting = None;
            self.pending = events.into();
        }
    }

    /// Events the loop just stored, during a session. While a resync is asked they are dropped: its
    /// answer brings them from the store (as the next session's does for those between sessions).
    pub fn offer(&mut self, events: Vec<Event>) {
        if self.awaiting.is_none() {
            self.pending.extend(events);
        }
    }

    /// Outside a session nothing is pending: the next session asks the loop again.
    pub fn pause(&mut self) {
        self.pending.clear();
        self.awaiting = None;
    }

    pub fn has_pending(&self) -> bool {
        self.awaiting.is_none() && !self.pending.is_empty()
    }

    /// The next batch to write, at most [`BATCH_BYTES`], without what etcd already has.
    pub fn batch(&mut self) -> Option<(Vec<u8>, u64)> {
        while self.pending.front().is_some_and(|e| e.seq <= self.published) {
            self.pending.pop_front();
        }
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(e) = self.pending.front() {
            let len = postcard::experimental::serialized_size(e).unwrap_or(0);
            if !batch.is_empty() && size + len > BATCH_BYTES {
                break;
            }
            size += len;
            batch.push(self.pending.pop_front().expect("front exists"));
        }
        let last = batch.last()?.seq;
        Some((postcard::to_allocvec(&batch).expect("plain data serializes"), last))
    }

    /// A batch is in etcd.
    pub fn written(&mut self, last: u64) {
        self.published = last;
    }
}

#[cfg(feature = "cluster")]
/// The last sequence number of this node's last batch in etcd, if it ever published one.
pub(crate) async fn last_published(client: &mut Client, keys: &Keys, me: &str) -> anyhow::Result<Option<u64>> {
    let got = call("read last events", client.get(keys.events_of(me), None)).await?;
    Ok(got
        .kvs()
        .first()
        .and_then(|kv| postcard::from_bytes::<Vec<Event>>(kv.value()).ok())
        .map(|b| b.iter().map(|e| e.seq).max().unwrap_or(0)))
}

/// What a reader wants of the stream.
pub struct Selection {
    pub filter: EventFilter,
    /// Empty: every node.
    pub nodes: Vec<String>,
}

impl Selection {
    fn takes(&self, e: &Event) -> bool {
        (self.nodes.is_empty() || self.nodes.contains(&e.node)) && self.filter.matches(e)
    }

    /// The events of one etcd value that the reader wants, with their revision.
    fn decode(&self, key: &str, rev: i64, value: &[u8]) -> Vec<ClusterEvent> {
        match postcard::from_bytes::<Vec<Event>>(value) {
            Ok(batch) => batch
                .into_iter()
                .filter(|e| self.takes(e))
                .map(|event| ClusterEvent { rev: rev as u64, event })
                .collect(),
            Err(e) => {
                debug!("cluster events: ignoring {key}: {e}");
                Vec::new()
            }
        }
    }
}

#[cfg(feature = "cluster")]
fn unavailable(e: impl std::fmt::Display) -> WireError {
    WireError::new(
        ErrorCode::Timeout,
        format!("the cluster event stream cannot be read: {e}"),
    )
}

#[cfg(feature = "cluster")]
/// `ClusterEvents`: the kept history above `after`, whole revisions up to about `limit` events.
pub(crate) async fn history(
    opts: ClusterOptions,
    keys: Keys,
    after: u64,
    limit: usize,
    sel: Selection,
) -> Result<ClusterEvents, WireError> {
    match timeout(HISTORY_TIMEOUT, read_history(&opts, &keys, after, limit, &sel)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(unavailable(format_args!("{e:#}"))),
        Err(_) => Err(unavailable(format_args!(
            "etcd did not answer within {}s",
            HISTORY_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(feature = "cluster")]
/// The newest revision of any event key (0 if there are none): the history ends there.
async fn newest(client: &mut Client, keys: &Keys) -> anyhow::Result<i64> {
    let got = call(
        "list event keys",
        client.get(
            keys.events(),
            Some(GetOptions::new().with_prefix().with_keys_only().with_serializable()),
        ),
    )
    .await?;
    Ok(got.kvs().iter().map(|kv| kv.mod_revision()).max().unwrap_or(0))
}

#[cfg(feature = "cluster")]
async fn read_history(
    opts: &ClusterOptions,
    keys: &Keys,
    after: u64,
    limit: usize,
    sel: &Selection,
) -> anyhow::Result<ClusterEvents> {
    let mut client = reader(opts, keys).await?;
    let end = newest(&mut client, keys).await?;
    let mut out = ClusterEvents {
        events: Vec::new(),
        lost: None,
        upto: after.max(end as u64),
    };
    let mut from = after as i64 + 1;
    'watch: while from <= end {
        let mut stream = client
            .watch(
                keys.events(),
                Some(WatchOptions::new().with_prefix().with_start_revision(from)),
            )
            .await
            .context("etcd: watch events")?;
        let mut last = from - 1;
        loop {
            let msg = stream.message().await?.context("etcd: the watch ended")?;
            if msg.compact_revision() > 0 {
                // etcd no longer keeps these revisions: say so, and go on from the oldest it has.
                out.lost = Some((from as u64, msg.compact_revision() as u64 - 1));
                from = msg.compact_revision();
                continue 'watch;
            }
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                let rev = kv.mod_revision();
                if rev > end {
                    return Ok(out);
                }
                // Whole revisions only, so that asking again from `upto` misses nothing.
                if rev > last && out.events.len() >= limit {
                    out.upto = last as u64;
                    return Ok(out);
                }
                last = rev;
                if ev.event_type() == EventType::Put {
                    out.events
                        .extend(sel.decode(kv.key_str().unwrap_or_default(), rev, kv.value()));
                }
            }
            if last >= end {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(feature = "cluster")]
/// `ClusterSubscribe`: the events above `after` (or only new ones), then live ones, into the
/// subscriber's bounded queue until it goes away. A subscriber that falls behind gets a loss marker of
/// revisions, as the local stream's; so does one whose history etcd compacted. Outages of etcd are
/// waited out: the watch starts again after the last revision delivered.
pub(crate) async fn follow(
    opts: ClusterOptions,
    keys: Keys,
    after: Option<u64>,
    sel: Selection,
    tx: mpsc::Sender<ServerMsg>,
) {
    let mut sub = Subscription {
        conn: 0,
        filter: sel.filter.clone(),
        tx,
        lost: None,
        replay: None,
    };
    let mut next = after.map(|a| a as i64 + 1);
    loop {
        let closed = sub.tx.clone();
        let mut watched = false;
        tokio::select! {
            r = watch_events(&opts, &keys, &mut next, &sel, &mut sub, &mut watched) => match r {
                Ok(()) => return,
                Err(e) => debug!("cluster events: {e:#}"),
            },
            _ = closed.closed() => return,
        }
        // A watch that worked lost its member: the next member is tried at once, so that the stream
        // is late by no more than a reconnection. Otherwise etcd is away: wait a little.
        if !watched {
            tokio::time::sleep(RETRY).await;
        }
    }
}

#[cfg(feature = "cluster")]
/// One watch of the stream; returns Ok when the subscriber is gone.
async fn watch_events(
    opts: &ClusterOptions,
    keys: &Keys,
    next: &mut Option<i64>,
    sel: &Selection,
    sub: &mut Subscription,
    watched: &mut bool,
) -> anyhow::Result<()> {
    sub.flush_lost();
    let mut client = reader(opts, keys).await?;
    // Only new events: etcd starts the watch after its current revision, which the answer to its creation
    // tells. (A watch from a given revision is behind as soon as any write came first, and etcd feeds
    // those only on its catch-up tick, every 100 ms: right for a replay, a needless wait for new events.)
    let options = WatchOptions::new().with_prefix();
    let options = match *next {
        Some(n) => options.with_start_revision(n),
        None => options,
    };
    let mut stream = call("watch events", client.watch(keys.events(), Some(options))).await?;
    loop {
        let msg = stream.message().await?.context("etcd: the watch ended")?;
        *watched |= msg.created();
        if msg.created() && next.is_none() {
            *next = msg.header().map(|h| h.revision() + 1);
        }
        if msg.compact_revision() > 0 {
            let to = msg.compact_revision() as u64 - 1;
            let start = next.unwrap_or(1) as u64;
            sub.lost = Some(match sub.lost {
                Some((from, _)) => (from, to),
                None => (start, to),
            });
            *next = Some(msg.compact_revision());
            anyhow::bail!("etcd compacted revisions up to {to}");
        }
        if msg.canceled() {
            anyhow::bail!("etcd: watch cancelled: {}", msg.cancel_reason());
        }
        for ev in msg.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            *next = Some(rev + 1);
            if ev.event_type() != EventType::Put {
                continue;
            }
            for ce in sel.decode(kv.key_str().unwrap_or_default(), rev, kv.value()) {
                if let crate::events::subscription::Delivery::Gone = sub.offer(ce.rev, ServerMsg::ClusterEvent(ce)) {
                    return Ok(());
                }
            }
        }
        if sub.tx.is_closed() {
            return Ok(());
        }
    }
}
