//! Stand-ins for the cluster task in a build without the `cluster` feature (no etcd client): vigild's
//! main refuses `--cluster` before either could be reached.

use std::path::Path;

use super::cmd::Cmd;
use super::records::{ClusterOptions, NodeRecord};
use crate::msg::Msg;

/// Why `--cluster` cannot work in this build.
pub const DISABLED: &str = "cluster mode is not in this build of vigild (built without the `cluster` feature)";

pub async fn node_id(_: &ClusterOptions, _: &str, _: &Path) -> anyhow::Result<u32> {
    anyhow::bail!(DISABLED)
}

pub async fn run(
    _: ClusterOptions,
    _: NodeRecord,
    _: tokio::sync::mpsc::UnboundedSender<Msg>,
    _: tokio::sync::mpsc::UnboundedReceiver<Cmd>,
) {
    tracing::error!("{DISABLED}");
}
