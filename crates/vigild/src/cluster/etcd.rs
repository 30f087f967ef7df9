//! etcd as the cluster task uses it: the keys, calls bounded by a timeout, connecting, the node id, the
//! list of nodes, and leaving.

use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, ConnectOptions};
use tokio::time::timeout;

use super::records::ClusterOptions;

/// How long one etcd call may take before it counts as failed.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait before trying etcd again after a failure.
pub(crate) const RETRY: Duration = Duration::from_millis(300);
/// The wait instead, for [`QUICK_FOR`] after a session was lost: etcd electing a new leader refuses
/// writes for a few hundred ms, and the node should be back as soon as it has one.
pub(crate) const QUICK_RETRY: Duration = Duration::from_millis(100);
pub(crate) const QUICK_FOR: Duration = Duration::from_secs(2);
/// A session that lasted this long ended an outage: its failure is a new one, worth a warning.
pub(crate) const STABLE: Duration = Duration::from_secs(10);
/// How long vigild waits for its node id from etcd at start before falling back to the cached one.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes/", self.root)
    }
    pub(crate) fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.root)
    }
    pub(crate) fn known(&self) -> String {
        format!("{}known/", self.root)
    }
    pub(crate) fn known_one(&self, name: &str) -> String {
        format!("{}known/{name}", self.root)
    }
    pub(crate) fn id(&self, name: &str) -> String {
        format!("{}ids/{name}", self.root)
    }
    pub(crate) fn next_id(&self) -> String {
        format!("{}next_id", self.root)
    }
    pub(crate) fn inbox(&self, name: &str) -> String {
        format!("{}inbox/{name}/", self.root)
    }
    pub(crate) fn replies(&self, from: &str) -> String {
        format!("{}reply/{from}/", self.root)
    }
    pub(crate) fn reply(&self, from: &str, n: u64) -> String {
        format!("{}{n}", self.replies(from))
    }
    pub(crate) fn psm(&self, name: &str) -> String {
        format!("{}psm/{name}", self.root)
    }
    pub(crate) fn events(&self) -> String {
        format!("{}events/", self.root)
    }
    pub(crate) fn events_of(&self, name: &str) -> String {
        format!("{}events/n/{name}", self.root)
    }
    pub(crate) fn membership(&self) -> String {
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
