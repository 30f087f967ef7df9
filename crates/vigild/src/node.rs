//! What this vigild is: where it keeps things, its settings, its name in a cluster, its user, and
//! whether it is on its way out (a shutdown or a re-exec).

use std::path::PathBuf;

use tokio::sync::mpsc;
use vigil_core::Timestamp;

use crate::config::Settings;
use crate::msg::Msg;

/// Where vigild keeps things, and what it was started with.
#[derive(Debug, Clone)]
pub struct Paths {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub config: Option<PathBuf>,
}

pub struct Node {
    pub paths: Paths,
    pub settings: Settings,
    /// This node's name and id (PSM unique names are `<id>-<pid>`).
    pub name: String,
    pub id: u32,
    /// vigild's own user and group.
    pub uid: u32,
    pub gid: u32,
    pub started: Timestamp,
    /// The loop's own queue, for work done off the loop that reports back.
    pub tx: mpsc::UnboundedSender<Msg>,
    pub shutting_down: bool,
    /// Set when a re-exec was asked for; carried out once the reply is on its way.
    pub reexec: Option<tokio::sync::oneshot::Receiver<()>>,
    pub reexec_now: bool,
}
