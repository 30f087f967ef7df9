//! The one owner of state: every tag, every watched process, the store. Connections, pidfd watchers and
//! signals send it messages; it applies the rules of vigil-core and carries out their effects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use vigil_core::{Effect, ProcId, Tag, TagEvent, TagName, Timestamp};
use vigil_proto::{ServerMsg, WireError};
use vigil_store::{Batch, Store};
use vigil_sys::{PidFd, ProcConnector};

use crate::config::Settings;
use crate::logs::Logs;
use crate::server::{ConnTx, Msg, Outgoing};

pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// A tag with what the daemon keeps beside the rules.
pub struct Entry {
    pub tag: Tag,
    pub from_config: bool,
    /// The session of the latest instance, to attribute orphans when the process connector is absent.
    pub session: Option<i32>,
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

/// `AsyncFd` needs `AsRawFd` on something it owns; the pidfd itself stays shared with the loop.
pub struct SharedFd<T: AsFd>(pub Arc<T>);

impl<T: AsFd> AsRawFd for SharedFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl<T: AsFd> SharedFd<T> {
    /// Registers the fd with tokio's reactor for readability.
    ///
    /// tokio deprecated the safe constructor in favour of an `unsafe` one whose contract is that the fd
    /// stays open and the same for the life of the `AsyncFd`. `SharedFd` holds an `Arc` to the owner of
    /// the fd, so that contract holds by construction, and this crate forbids `unsafe`.
    #[allow(deprecated)]
    pub fn register(inner: Arc<T>) -> std::io::Result<tokio::io::unix::AsyncFd<SharedFd<T>>> {
        tokio::io::unix::AsyncFd::with_interest(SharedFd(inner), tokio::io::Interest::READABLE)
    }
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
}

/// Where vigild keeps things, and what it was started with.
#[derive(Debug, Clone)]
pub struct Paths {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub config: Option<PathBuf>,
}

pub struct Daemon {
    pub paths: Paths,
    pub settings: Settings,
    pub store: Store,
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
    pub lineage: crate::lineage::Lineage,
    pub timers: BTreeSet<(Timestamp, TagName)>,
    pub waiters: Vec<Waiter>,
    pub subscriptions: Vec<crate::events::Subscription>,
    /// This node's name and id (PSM unique names are `<id>-<pid>`).
    pub node: String,
    pub node_id: u32,
    /// Cluster mode's view of the nodes and of this node's lease; None for a single node.
    pub cluster: Option<crate::nodes::ClusterView>,
    /// Cluster mode: orders for the cluster task (remote operations, the PSM mirror).
    pub cluster_cmds: Option<tokio::sync::mpsc::UnboundedSender<crate::cluster::Cmd>>,
    /// PSM members changed since the mirror was last sent.
    pub psm_changed: bool,
    pub psm: vigil_core::psm::Registry,
    pub cmap: crate::cmap::Cmap,
    pub sam: crate::sam::Sam,
    /// Exited members whose status is not available yet, with the attempt number and the next try.
    pub exit_retries: Vec<(ProcId, usize, Timestamp)>,
    /// Users by uid (name, gid, home), read once: cleared on reload.
    pub users: HashMap<u32, Option<(String, u32, PathBuf)>>,
    pub psm_limits: vigil_core::psm::PsmLimits,
    pub seq: u64,
    pub batch: Batch,
    /// Changes made in memory whose commit failed, merged in order: written before anything newer as soon
    /// as the state file can be written again.
    pub unpersisted: Batch,
    /// Set while the state file cannot be written: changes are refused at the door until a write works.
    pub store_failing: Option<StoreFailure>,
    pub dirty: BTreeSet<TagName>,
    pub outbox: Vec<(ConnTx, Outgoing)>,
    pub logs: Logs,
    pub tx: mpsc::UnboundedSender<Msg>,
    pub started: Timestamp,
    pub uid: u32,
    pub gid: u32,
    pub shutting_down: bool,
    /// Look for waiting tags whose dependencies run at the next step even if no tag changed (the first
    /// step after a start).
    pub rescan_waiting: bool,
    /// When vigild last looked for zombies among all its children (`crate::reap_scan`).
    pub reap_scan: crate::reap_scan::ReapScan,
    /// Set when a re-exec was asked for; carried out once the reply is on its way.
    pub reexec: Option<tokio::sync::oneshot::Receiver<()>>,
    pub reexec_now: bool,
    /// Signs the start marker in each command's environment (`marks.rs`).
    pub marks: crate::marks::Marks,
}

/// Why the state file cannot be written, and when a write was last tried.
pub struct StoreFailure {
    pub reason: String,
    pub tried: std::time::Instant,
}

/// How often the loop tries to write again on its own while the state file cannot be written: each try
/// reopens the file (redb repairs it after a failed commit), so not at every step.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// A request that needs the store tries again sooner, so that a change made right after space came back
/// is not refused; still bounded, so that a flood of requests cannot turn into a flood of reopens.
const STORE_RETRY_ON_REQUEST: Duration = Duration::from_millis(100);

impl Daemon {
    pub fn reply(&mut self, out: &ConnTx, id: u64, result: Result<vigil_proto::Response, WireError>) {
        let msg = ServerMsg::Response { id, result };
        // Counted against the connection's bound at once: answers to a batch of its requests cannot
        // pile up in the outbox beyond it. One that does not fit closes the connection.
        if let Some(out) = out.reserve(&msg) {
            self.outbox.push((out, Outgoing::msg(msg)));
        }
    }

    /// Carries out the effects the rules asked for, in order; effects that produce more effects (a spawn
    /// reports back) are carried out in turn.
    pub fn apply(&mut self, name: &TagName, effects: Vec<Effect>) {
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(fx) = queue.pop_front() {
            if !self.tags.contains_key(name) {
                return;
            }
            self.dirty.insert(name.clone());
            match fx {
                Effect::Spawn if self.shutting_down => {
                    // Nothing starts while vigild stops: the tag comes back with the next vigild.
                    self.tags.get_mut(name).expect("checked").tag.cancel_start();
                }
                Effect::Spawn => {
                    let more = self.spawn_tag(name);
                    queue.extend(more);
                }
                Effect::Signal { signal, procs } => {
                    for id in procs {
                        if let Some(w) = self.procs.get(&id.pid).filter(|w| w.id == id) {
                            if let Err(e) = w.pidfd.send_signal(signal) {
                                warn!(tag = %name, "signal {signal} to pid {}: {e}", id.pid);
                            }
                        }
                    }
                }
                Effect::Timer(at) => {
                    self.timers.insert((at, name.clone()));
                }
                Effect::RunAction if self.shutting_down => {
                    self.tags.get_mut(name).expect("checked").tag.cancel_start();
                }
                Effect::RunAction => {
                    let more = self.run_action(name);
                    queue.extend(more);
                }
                Effect::Emit(ev) => {
                    let data = crate::convert::event_data(&ev);
                    self.emit(name.as_str(), ev.name(), data);
                }
                Effect::Remove => self.forget_tag(name),
                // A probe that would start now could only hold up the shutdown.
                Effect::RunProbe { .. } if self.shutting_down => {}
                Effect::RunProbe { index, instance } => {
                    let more = self.run_probe(name, index, instance);
                    queue.extend(more);
                }
            }
        }
    }

    fn forget_tag(&mut self, name: &TagName) {
        if let Some(entry) = self.tags.remove(name) {
            for id in entry.tag.tree.ids() {
                match self.procs.get_mut(&id.pid) {
                    // Still a PSM member: keep watching it for that.
                    Some(w) if w.member => w.tag = None,
                    Some(_) => {
                        if let Some(w) = self.procs.remove(&id.pid) {
                            w.task.abort();
                        }
                    }
                    None => {}
                }
            }
        }
        self.timers.retain(|(_, n)| n != name);
        self.logs.forget(name);
        self.cmap_internal_drop(&crate::cmap::tag_key_prefix(name.as_str()));
        self.dirty.remove(name);
        self.batch.delete_tags.push(name.to_string());
    }

    /// What every step ends with: start tags whose dependencies run, persist, then answer.
    pub fn finish_step(&mut self) {
        // A waiting tag can only become ready when some tag changed this step (its dependency started,
        // or it was created), and every change marks its tag dirty: a step that changed no tag (a PSM or
        // CMAP request, a query) skips the scan of every tag.
        let scan = !self.dirty.is_empty() || std::mem::take(&mut self.rescan_waiting);
        let candidates = if scan { self.tags.iter() } else { Default::default() };
        let ready: Vec<TagName> = candidates
            .filter(|(_, e)| e.tag.state == vigil_core::TagState::Waiting && !self.shutting_down)
            .filter(|(_, e)| {
                e.tag.spec.after.iter().all(|d| {
                    self.tags
                        .get(d)
                        .is_some_and(|de| de.tag.state == vigil_core::TagState::Running)
                })
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in ready {
            let fx = self.tags.get_mut(&n).map(|e| e.tag.deps_ready()).unwrap_or_default();
            self.apply(&n, fx);
        }

        for n in std::mem::take(&mut self.dirty) {
            self.cmap_tag_keys(&n);
            if let Some(e) = self.tags.get(&n) {
                self.batch
                    .put_tags
                    .push(crate::convert::tag_to_record(&e.tag, e.from_config));
            }
        }
        let mut batch = std::mem::take(&mut self.batch);
        let was_failing = self.store_failing.is_some();
        if let Err(reason) = self.persist(&mut batch) {
            // Nothing is acknowledged that is not on disk. While the store was already failing, the
            // requests that change state were refused at the door, so the answers of this step are
            // queries (and signals): they stand. Otherwise the requests of this step may have changed
            // something that is now only in memory: they are told so.
            if !was_failing {
                for (_, o) in &mut self.outbox {
                    if let ServerMsg::Response {
                        result: result @ Ok(_), ..
                    } = &mut o.msg
                    {
                        *result = Err(WireError::new(
                            vigil_proto::ErrorCode::Internal,
                            format!(
                                "done, but not stored: the state store cannot be written: {reason}; vigild \
                                 keeps the change in memory and stores it as soon as the store can be written \
                                 again (until then, vigild refuses changes)"
                            ),
                        ));
                    }
                }
            }
        }

        self.cmap_daemon_stats();
        self.check_waiters();
        for (out, o) in self.outbox.drain(..) {
            let _ = out.send(o);
        }
        self.publish(&batch.events);
        self.broadcast(&batch.events);
        self.flush_lost();
    }

    /// A connection ended: its waiting requests have nobody to answer.
    pub fn drop_waiters(&mut self, conn: u64) {
        self.waiters.retain(|w| w.out.conn() != conn);
    }

    /// Writes this step's changes, after any kept from steps whose commit failed. On failure the changes
    /// are kept (the events stay in `batch`, to be pushed: they happened) and the reason is returned.
    fn persist(&mut self, batch: &mut Batch) -> Result<(), String> {
        if self.store_failing.is_none() {
            if batch.is_empty() {
                return Ok(());
            }
            match self.store.commit(batch) {
                Ok(()) => return Ok(()),
                Err(e) => warn!("cannot write the state file ({e}); reopening it"),
            }
        }
        if !batch.is_empty() {
            let kept = std::mem::take(batch);
            batch.events = kept.events.clone();
            let keep = self.store.events_kept();
            self.unpersisted.append(kept, keep);
        }
        match &self.store_failing {
            Some(f) if f.tried.elapsed() < STORE_RETRY => Err(f.reason.clone()),
            _ => self.store_recover(),
        }
    }

    /// Reopens the state file (redb refuses every write after one failed I/O, even once space is back)
    /// and writes the changes kept in memory, or, with none kept, a probe.
    fn store_recover(&mut self) -> Result<(), String> {
        // A handle that failed once stays poisoned: every try starts with a new one.
        let written = self.store.reopen().and_then(|()| {
            if self.unpersisted.is_empty() {
                self.store.probe()
            } else {
                self.store.commit(&self.unpersisted)
            }
        });
        match written {
            Ok(()) => {
                self.unpersisted = Batch::default();
                if let Some(f) = self.store_failing.take() {
                    info!(
                        "the state file can be written again, and the changes kept in memory are stored; the \
                         last failure was: {}",
                        f.reason
                    );
                }
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                if self.store_failing.is_none() {
                    error!("cannot write the state file: {reason}; changes are refused until it can be written");
                }
                self.store_failing = Some(StoreFailure {
                    reason: reason.clone(),
                    tried: std::time::Instant::now(),
                });
                Err(reason)
            }
        }
    }

    /// Refuses a request that would change stored state while the state file cannot be written. Queries,
    /// signals (`Kill`: a way out for root while the disk is full) and memory-only CMAP keys go through.
    pub fn store_gate(&mut self, req: &vigil_proto::Request) -> Result<(), WireError> {
        use vigil_proto::Request as R;
        if self.store_failing.is_none() {
            return Ok(());
        }
        // The request's kind only: its arguments are the caller's own, and can be long.
        let what = match req {
            R::Run(_) | R::RunOnce(_) => "run",
            R::Start { .. } => "start",
            R::Modify { .. } => "modify",
            R::Stop { .. } => "stop",
            R::Remove { .. } => "remove",
            R::Restart { .. } => "restart",
            R::Release { .. } => "release",
            R::Reload => "reload",
            // A re-exec starts again from the state file, which lacks what is kept in memory.
            R::Reexec => "re-exec",
            R::PsmCategoryAdd { .. } => "PSM category add",
            R::PsmCategoryRemove { .. } => "PSM category remove",
            R::PsmAdd { .. } => "PSM add",
            R::PsmRemove { .. } => "PSM remove",
            R::PsmSetState { .. } => "PSM set state",
            R::CmapSet { key, persist, .. }
            | R::CmapCompareAndSet { key, persist, .. }
            | R::CmapSetText { key, persist, .. }
                if *persist || self.cmap_stored(key) =>
            {
                "set of a stored CMAP key"
            }
            R::CmapDelete { key } | R::CmapInc { key } | R::CmapDec { key } if self.cmap_stored(key) => {
                "change of a stored CMAP key"
            }
            R::SamReport { change, .. } if !matches!(change, vigil_proto::SamChange::Heartbeat) => "SAM report",
            _ => return Ok(()),
        };
        self.refuse_unstorable(what)
    }

    /// Whether a change of this CMAP key is written to the state file.
    fn cmap_stored(&self, key: &str) -> bool {
        key == crate::sam::EXPECTED_VOTES_KEY
            || self.cmap.persisted.contains(key)
            || self.cmap.persist_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// While the state file cannot be written, a change is refused before it is made, so that nothing is
    /// done that a restart would forget. A request first tries to write again (at most every 100 ms): a
    /// change right after space came back goes through.
    fn refuse_unstorable(&mut self, what: &str) -> Result<(), WireError> {
        let Some(f) = &self.store_failing else {
            return Ok(());
        };
        if f.tried.elapsed() >= STORE_RETRY_ON_REQUEST && self.store_recover().is_ok() {
            return Ok(());
        }
        let reason = self
            .store_failing
            .as_ref()
            .map_or_else(String::new, |f| f.reason.clone());
        Err(WireError::new(
            vigil_proto::ErrorCode::Internal,
            format!("the state store cannot be written: {reason}; the change was not made ({what})"),
        ))
    }

    fn check_waiters(&mut self) {
        let now = now();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.waiters) {
            let done = match &w.until {
                WaitFor::TagIdle {
                    tag,
                    with_status,
                    viewer,
                } => match self.tags.get(tag) {
                    None => Some(Ok(vigil_proto::Response::Ok)),
                    Some(e) if !e.tag.is_active() && *with_status => {
                        Some(Ok(vigil_proto::Response::Tag(self.status_for(tag, *viewer))))
                    }
                    Some(e) if !e.tag.is_active() => Some(Ok(vigil_proto::Response::Ok)),
                    Some(_) => None,
                },
                WaitFor::ProcsGone(_, ids) => ids
                    .iter()
                    .all(|id| self.procs.get(&id.pid).is_none_or(|p| p.id != *id))
                    .then_some(Ok(vigil_proto::Response::Ok)),
            };
            let result = done.or_else(|| {
                w.deadline.filter(|d| *d <= now).map(|_| {
                    Err(WireError::new(
                        vigil_proto::ErrorCode::Timeout,
                        match &w.until {
                            WaitFor::TagIdle { tag, .. } => {
                                format!("tag {tag} is still running at the end of the wait")
                            }
                            WaitFor::ProcsGone(n, ids) => {
                                let alive: Vec<String> = ids
                                    .iter()
                                    .filter(|id| self.procs.get(&id.pid).is_some_and(|p| p.id == **id))
                                    .map(|id| id.pid.to_string())
                                    .collect();
                                format!(
                                    "tag {n}: pid(s) {} still running at the end of the wait",
                                    alive.join(" ")
                                )
                            }
                        },
                    ))
                })
            });
            match result {
                Some(r) => self.outbox.push((
                    w.out.clone(),
                    Outgoing::msg(ServerMsg::Response { id: w.id, result: r }),
                )),
                None => keep.push(w),
            }
        }
        self.waiters = keep;
    }

    pub fn status_of(&self, name: &TagName) -> vigil_proto::TagStatus {
        let e = &self.tags[name];
        crate::convert::tag_status(&e.tag, e.from_config, self.logs.path(name).display().to_string(), now())
    }

    /// The status as `viewer` may see it: environment values are secrets of the tag's user (passwords,
    /// tokens), so only that user and root see them; anyone else sees the names, each value replaced by
    /// [`HIDDEN`] (a string still, so JSON readers keep one type).
    pub fn status_for(&self, name: &TagName, viewer: u32) -> vigil_proto::TagStatus {
        let mut st = self.status_of(name);
        if viewer != 0 && viewer != st.uid {
            for (_, v) in &mut st.env {
                *v = HIDDEN.to_string();
            }
        }
        st
    }

    /// The earliest time something must happen without a message: a tag timer or a waiter's deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let t = self.timers.first().map(|(t, _)| *t);
        let w = self.waiters.iter().filter_map(|w| w.deadline).min();
        // A lagging subscriber is told of its loss as soon as its queue drains; while one is owed a
        // marker, look again every 50 ms (only then: an idle vigild sleeps).
        let l = self
            .any_loss_untold()
            .then(|| now().plus(std::time::Duration::from_millis(50)));
        let r = self.exit_retries.iter().map(|(_, _, at)| *at).min();
        // Changes kept in memory are written without waiting for the next request.
        let s = self.store_failing.as_ref().map(|_| now().plus(STORE_RETRY));
        // A log rotated too recently to be rotated again.
        let g = self
            .logs
            .next_check()
            .map(|at| now().plus(at.saturating_duration_since(std::time::Instant::now())));
        // A look for zombies among all children, put off while there are thousands of them.
        let z = self
            .reap_scan
            .due()
            .map(|at| now().plus(at.saturating_duration_since(std::time::Instant::now()) + Duration::from_millis(1)));
        [t, w, l, r, s, g, z].into_iter().flatten().min()
    }

    pub fn on_timers(&mut self) {
        self.retry_exits();
        if self.reap_scan.due().is_some_and(|at| at <= std::time::Instant::now()) {
            self.reap();
        }
        self.logs.on_timer();
        let now = now();
        while let Some((at, name)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let fx = self.tags.get_mut(&name).map(|e| e.tag.timer(now)).unwrap_or_default();
            self.apply(&name, fx);
        }
    }

    /// Starts the graceful stop of every tag; the loop ends when no process is left.
    pub fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        info!("shutting down: stopping every tag");
        self.shutting_down = true;
        self.kill_probes();
        let now = now();
        let names: Vec<TagName> = self.tags.keys().cloned().collect();
        for n in names {
            let e = self.tags.get_mut(&n).expect("listed");
            let (sig, timeout) = (e.tag.spec.stop_signal, e.tag.spec.stop_timeout);
            let fx = if e.tag.tree.is_empty() && !matches!(e.tag.state, vigil_core::TagState::Running) {
                // Not running: leave its state as it is, so that it comes back as it was.
                vec![]
            } else {
                e.tag.stop(sig, timeout, vigil_core::StopMode::Shutdown, now)
            };
            self.apply(&n, fx);
        }
    }

    /// Every tag's process has ended. PSM members that belong to no tag are not vigild's to stop: they
    /// outlive it, and the next vigild watches them again.
    pub fn shutdown_done(&self) -> bool {
        self.shutting_down && self.procs.values().all(|w| w.tag.is_none())
    }

    pub fn emit_tag_event(&mut self, name: &TagName, ev: TagEvent) {
        self.apply(name, vec![Effect::Emit(ev)]);
    }

    pub fn tracking_mode(&self) -> &'static str {
        if self.connector.is_some() {
            "process connector"
        } else {
            "/proc scan"
        }
    }

    pub fn stop_grace() -> Duration {
        Duration::from_secs(5)
    }
}
