//! PMF's state in vigild: every tag, every watched process, and what runs beside them (actions, exec
//! probes, timers, waiting requests), with how descendants are found.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use vigil_core::{ProcId, Tag, TagName, Timestamp};
use vigil_sys::{PidFd, ProcConnector};

use super::lineage::Lineage;
use super::logs::Logs;
use super::marks::Marks;
use crate::conn::ConnTx;

pub struct Pmf {
    pub tags: BTreeMap<TagName, Entry>,
    pub procs: HashMap<i32, Watched>,
    /// Running action programs.
    pub actions: HashMap<i32, TagName>,
    /// Running exec probes: the reaper hands each one's exit to the task that waits for it.
    pub probe_children: HashMap<i32, tokio::sync::oneshot::Sender<vigil_core::Exit>>,
    /// The socket of systemd's notify protocol, shared by every tag.
    pub notify: Option<Arc<vigil_sys::NotifySocket>>,
    /// When a notify datagram from an unknown pid last caused a /proc scan (without the connector).
    pub notify_rescan: Option<std::time::Instant>,
    pub connector: Option<Arc<ProcConnector>>,
    /// Processes of tags that were gone before they could be watched, so that their forks are still
    /// attributed (process connector only).
    pub lineage: Lineage,
    pub timers: BTreeSet<(Timestamp, TagName)>,
    pub waiters: Vec<Waiter>,
    /// Exited members whose status is not available yet, with the attempt number and the next try.
    pub exit_retries: Vec<(ProcId, usize, Timestamp)>,
    /// Users by uid (name, gid, home), read once: cleared on reload.
    pub users: HashMap<u32, Option<(String, u32, PathBuf)>>,
    /// Tags changed in this step: stored (and their CMAP keys written) at its end.
    pub dirty: BTreeSet<TagName>,
    /// Look for waiting tags whose dependencies run at the next step even if no tag changed (the first
    /// step after a start).
    pub rescan_waiting: bool,
    /// When vigild last looked for zombies among all its children (`reap_scan.rs`).
    pub reap_scan: crate::pmf::reap_scan::ReapScan,
    pub logs: Logs,
    /// Signs the start marker in each command's environment (`marks.rs`).
    pub marks: Marks,
}

impl Pmf {
    pub fn new(
        notify: Option<Arc<vigil_sys::NotifySocket>>,
        connector: Option<Arc<ProcConnector>>,
        logs: Logs,
        marks: Marks,
    ) -> Pmf {
        Pmf {
            tags: BTreeMap::new(),
            procs: HashMap::new(),
            actions: HashMap::new(),
            probe_children: HashMap::new(),
            notify,
            notify_rescan: None,
            connector,
            lineage: Default::default(),
            timers: BTreeSet::new(),
            waiters: Vec::new(),
            exit_retries: Vec::new(),
            users: HashMap::new(),
            dirty: BTreeSet::new(),
            rescan_waiting: true,
            reap_scan: Default::default(),
            logs,
            marks,
        }
    }
}

/// A tag with what the daemon keeps beside the rules.
pub struct Entry {
    pub tag: Tag,
    pub from_config: bool,
    /// The session of the latest instance, to attribute orphans when the process connector is absent.
    pub session: Option<i32>,
    /// Health-probe runs that failed since vigild started (of every instance), for `/metrics`.
    pub probe_failures: u64,
}

/// A process being watched through its pidfd.
pub struct Watched {
    pub id: ProcId,
    /// The tag whose tree holds it, if any.
    pub tag: Option<TagName>,
    /// Whether it is a PSM member (a process can be both).
    pub member: bool,
    pub pidfd: Arc<PidFd>,
    pub task: JoinHandle<()>,
}

/// A request answered later, when its condition holds or its deadline passes.
pub struct Waiter {
    pub until: WaitFor,
    pub deadline: Option<Timestamp>,
    pub out: ConnTx,
    pub id: u64,
}

/// What a user who is neither a tag's owner nor root sees in place of each of its environment values.
pub const HIDDEN: &str = "<hidden>";

pub enum WaitFor {
    /// The tag has no process and will not get one (stopped, failed or gone); the answer is the tag's
    /// status when `with_status` (as `viewer` may see it, see [`Daemon::status_for`]), else `Ok`.
    TagIdle {
        tag: TagName,
        with_status: bool,
        viewer: u32,
    },
    /// None of these processes is alive.
    ProcsGone(TagName, Vec<ProcId>),
    /// `WaitFor`: the tag reaches `until`; with `instance`, that start of it (see
    /// `Daemon::wait_for`). The answer is the tag's status as `viewer` may see it.
    Reaches {
        tag: TagName,
        until: vigil_proto::WaitUntil,
        instance: Option<u64>,
        viewer: u32,
    },
}
