//! Remote operations on etcd: a request written into another node's inbox and its answer read back.

use etcd_client::{Client, PutOptions};
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};
use vigil_proto::{ErrorCode, PsmMember, Response, WireError};

use super::cmd::*;
use super::conn::put_retrying;
use super::etcd::*;
use super::records::ClusterOptions;
use crate::conn::ConnTx;

/// What a remote operation needs of its session: a client (the session's), and how to reach another
/// member when that one fails.
pub(crate) struct Ctx {
    pub(crate) opts: ClusterOptions,
    pub(crate) root: String,
    pub(crate) client: Client,
    pub(crate) lease: i64,
    pub(crate) deadline: Instant,
}

/// A refusal of a remote operation when this node has no session with etcd and no lease.
pub(crate) fn unreachable_from_here(node: &str) -> WireError {
    WireError::new(
        ErrorCode::NodeDown,
        format!("node {node}: etcd cannot be reached from this node"),
    )
}

/// A remote operation: the request goes into the node's inbox (bound to this node's lease, so it vanishes
/// if this node dies), and its answer comes into a reply key, which the session's replies watch hands over
/// through `answered`; all of it within [`REMOTE_TIMEOUT`]. Both keys are deleted after.
pub(crate) async fn remote(
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
pub(crate) fn unreachable_members(
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
