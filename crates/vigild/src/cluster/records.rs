//! What a node publishes about itself and how vigild reaches etcd: plain data, shared by the cluster
//! task and the loop.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
