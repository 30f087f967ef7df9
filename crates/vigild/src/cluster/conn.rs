//! Reaching etcd through one member at a time (docs/cluster.md, "When an etcd member is lost").
//!
//! A client balanced over every member keeps sending a share of its calls to a member that is gone, and
//! every such call fails after its timeout; a session with etcd that ends at its first failed call then
//! never lasts. So each client here talks to one member, probed first; a failure moves on to the next
//! member, and the member that last answered is tried first by everyone in this vigild (readers too), so
//! that a dead member costs at most one failed call, not one per call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions};
use tokio::time::{timeout, Instant};

use super::etcd::{call, connect, Keys};
use super::records::ClusterOptions;

/// The member that last answered, by its index in `--cluster`: where the next connection starts. One
/// per process, as vigild is a member of one cluster.
static PREFERRED: AtomicUsize = AtomicUsize::new(0);

/// How long a member may take to accept a TCP connection before the next one is tried.
const TCP_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a retried write waits between two tries.
const WRITE_RETRY: Duration = Duration::from_millis(100);

/// `host:port` of an etcd client URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// A client of member `i` that answers: a TCP connection first (a stopped member refuses it at once,
/// where a gRPC call to it would wait out its timeout), then a read through the client: linearizable
/// with `require_leader` (the member has a leader and its quorum), serializable without.
async fn connect_member(opts: &ClusterOptions, i: usize, require_leader: bool, root: &str) -> anyhow::Result<Client> {
    let url = &opts.endpoints[i];
    match timeout(TCP_TIMEOUT, tokio::net::TcpStream::connect(authority(url))).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => anyhow::bail!("etcd member {url}: {e}"),
        Err(_) => anyhow::bail!("etcd member {url}: no connection within {TCP_TIMEOUT:?}"),
    }
    let one = ClusterOptions {
        endpoints: vec![url.clone()],
        ..opts.clone()
    };
    let mut c = connect(&one, require_leader).await?;
    let mut probe = GetOptions::new().with_count_only();
    if !require_leader {
        probe = probe.with_serializable();
    }
    call("probe", c.get(root, Some(probe)))
        .await
        .map_err(|e| e.context(format!("etcd member {url}")))?;
    Ok(c)
}

/// A client of the first member that answers, with its index: the members in turn, from the one after
/// `failed` (the member a failed call just went to) or else from the one that last answered.
pub(crate) async fn connect_any(
    opts: &ClusterOptions,
    failed: Option<usize>,
    require_leader: bool,
    root: &str,
) -> anyhow::Result<(Client, usize)> {
    let n = opts.endpoints.len();
    anyhow::ensure!(n > 0, "no etcd endpoint");
    let start = match failed {
        Some(f) => (f + 1) % n,
        None => PREFERRED.load(Ordering::Relaxed) % n,
    };
    let mut errors = Vec::new();
    for k in 0..n {
        let i = (start + k) % n;
        match connect_member(opts, i, require_leader, root).await {
            Ok(c) => {
                PREFERRED.store(i, Ordering::Relaxed);
                return Ok((c, i));
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    anyhow::bail!("no etcd member answers: {}", errors.join("; "))
}

/// A write that outlives the loss of the member it was sent to: tried through `client`, then through a
/// client of another member, every [`WRITE_RETRY`], until `deadline` (etcd electing a new leader refuses
/// writes for a moment). Returns the last error at the deadline.
pub(crate) async fn put_retrying(
    opts: &ClusterOptions,
    root: &str,
    mut client: Client,
    key: String,
    value: Vec<u8>,
    options: Option<PutOptions>,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let tried = timeout(
            left,
            call("put", client.put(key.clone(), value.clone(), options.clone())),
        )
        .await;
        let err = match tried {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("etcd: put: no answer before the deadline"),
        };
        if Instant::now() + WRITE_RETRY >= deadline {
            return Err(err);
        }
        tokio::time::sleep(WRITE_RETRY).await;
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok((c, _))) = timeout(left, connect_any(opts, None, true, root)).await {
            client = c;
        }
    }
}

/// A client of one etcd member that answers, for reads that need no leader (serializable reads,
/// watches): the members are tried in turn, since a client balanced over all of them may pick one that is
/// down, and a member that lost its quorum still answers from what it has.
pub(crate) async fn reader(opts: &ClusterOptions, keys: &Keys) -> anyhow::Result<Client> {
    Ok(connect_any(opts, None, false, &keys.root).await?.0)
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn the_authority_of_a_url_is_its_host_and_port() {
        assert_eq!(authority("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(authority("https://etcd.example:2379/"), "etcd.example:2379");
        assert_eq!(authority("10.0.0.1:2379"), "10.0.0.1:2379");
    }
}
