//! The cluster task: one tokio task holding the etcd session (lease, keepalive, watches) that tells the
//! loop what it learned and carries out what the loop asks ([`Cmd`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions, WatchStream};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tracing::{info, warn};

use super::cmd::*;
use super::conn::connect_any;
use super::etcd::*;
use super::life::*;
use super::membership::*;
use super::records::{ClusterOptions, NodeRecord};
use super::stream::{self as events, Publisher};
use crate::clock::now;
use crate::msg::{ClusterMsg, Msg};

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

pub(crate) async fn session(
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
                                req: Box::new(e.req),
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
                    // The PSM mirror is what the others read of this node's members once it is down: a clean
                    // stop writes the one in flight, and the latest if newer, before it leaves.
                    if let Some(put) = mirroring.take() {
                        if let Err(e) = put.await {
                            warn!("cluster: {e:#}");
                        }
                    }
                    if let (true, Some(bytes)) = (mirror_due, life.mirror.clone()) {
                        if let Err(e) = call("mirror psm", client.put(keys.psm(&me.name), bytes, None)).await {
                            warn!("cluster: {e:#}");
                        }
                    }
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
pub(crate) async fn keep_alive(
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
pub(crate) async fn watch_after(
    client: &mut Client,
    what: &str,
    prefix: String,
    rev: i64,
) -> anyhow::Result<WatchStream> {
    let options = WatchOptions::new().with_prefix().with_start_revision(rev + 1);
    call(what, client.watch(prefix, Some(options))).await
}
