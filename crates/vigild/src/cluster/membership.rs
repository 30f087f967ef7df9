//! Membership in etcd: the node id assigned at the first join, the list of nodes, marking a node down,
//! and leaving.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use tokio::time::timeout;
use tracing::{info, warn};

use super::conn::connect_any;
use super::etcd::*;
use super::records::ClusterOptions;
use super::records::{NodeRecord, NodeState};
use super::stream as events;
use crate::clock::now;

/// The file in the state directory that caches the node id, for a start while etcd is away.
pub const ID_FILE: &str = "cluster-node-id";

/// The node's id: `ids/<name>` if it exists, else the next number of the counter, both in one
/// transaction so that two nodes joining at once never get the same id.
pub(crate) async fn assign_id(client: &mut Client, keys: &Keys, name: &str) -> anyhow::Result<u32> {
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

pub(crate) fn parse_id(v: &[u8]) -> anyhow::Result<u32> {
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

/// Records when a node went down in its `known/` key, once: only if nobody recorded it since the
/// deletion (`rev`) happened.
pub(crate) async fn mark_down(client: &mut Client, keys: &Keys, name: &str, rev: i64) -> anyhow::Result<()> {
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
pub(crate) async fn leave(client: &mut Client, keys: &Keys, record: &NodeRecord, lease: i64) {
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
pub(crate) async fn list(client: &mut Client, keys: &Keys) -> anyhow::Result<(Vec<NodeState>, i64)> {
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
pub(crate) fn merge(mut known: BTreeMap<String, NodeRecord>, up: BTreeMap<String, NodeRecord>) -> Vec<NodeState> {
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
