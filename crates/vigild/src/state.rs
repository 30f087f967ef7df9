//! The one owner of state: every tag, every watched process, the store. Connections, pidfd watchers and
//! signals send it messages; it applies the rules of vigil-core and carries out their effects.

use std::time::Duration;

use tracing::{info, warn};
use vigil_core::{Effect, TagEvent, TagName, Timestamp};
use vigil_proto::{ServerMsg, WireError};

use crate::clock::now;
use crate::cluster::view::Cluster;
use crate::cmap::map::Cmap;
use crate::conn::{ConnTx, Outgoing};
use crate::events::subscription::Events;
use crate::node::Node;
use crate::pmf::state::{Pmf, WaitFor, HIDDEN};
use crate::psm::state::Psm;
use crate::sam::state::Sam;
use crate::storage::Storage;

/// A pidfd (or another of vigil-sys's descriptors) registered with tokio's reactor: the owner stays shared
/// with the loop, and vigil-sys holds the registration's `unsafe`.
pub use vigil_sys::reactor::ReadableFd as SharedFd;

/// Everything the loop owns, one part per service. Services do not call each other's state: a step
/// that touches two (a tag's CMAP keys, a member's exit) goes through the daemon.
pub struct Daemon {
    pub node: Node,
    pub store: Storage,
    pub pmf: Pmf,
    pub psm: Psm,
    pub cmap: Cmap,
    pub sam: Sam,
    pub cluster: Cluster,
    pub events: Events,
    /// Answers and pushes of this step, sent once its changes are stored.
    pub outbox: Vec<(ConnTx, Outgoing)>,
}

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
            if !self.pmf.tags.contains_key(name) {
                return;
            }
            self.pmf.dirty.insert(name.clone());
            match fx {
                Effect::Spawn if self.node.shutting_down => {
                    // Nothing starts while vigild stops: the tag comes back with the next vigild.
                    self.pmf.tags.get_mut(name).expect("checked").tag.cancel_start();
                }
                Effect::Spawn => {
                    let more = self.spawn_tag(name);
                    queue.extend(more);
                }
                Effect::Signal { signal, procs } => {
                    for id in procs {
                        if let Some(w) = self.pmf.procs.get(&id.pid).filter(|w| w.id == id) {
                            if let Err(e) = w.pidfd.send_signal(signal.number()) {
                                warn!(tag = %name, "signal {signal} to pid {}: {e}", id.pid);
                            }
                        }
                    }
                }
                Effect::Timer(at) => {
                    self.pmf.timers.insert((at, name.clone()));
                }
                Effect::RunAction if self.node.shutting_down => {
                    self.pmf.tags.get_mut(name).expect("checked").tag.cancel_start();
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
                Effect::RunProbe { .. } if self.node.shutting_down => {}
                Effect::RunProbe { index, instance } => {
                    let more = self.run_probe(name, index, instance);
                    queue.extend(more);
                }
            }
        }
    }

    fn forget_tag(&mut self, name: &TagName) {
        if let Some(entry) = self.pmf.tags.remove(name) {
            for id in entry.tag.tree().ids() {
                match self.pmf.procs.get_mut(&id.pid) {
                    // Still a PSM member: keep watching it for that.
                    Some(w) if w.member => w.tag = None,
                    Some(_) => {
                        if let Some(w) = self.pmf.procs.remove(&id.pid) {
                            w.task.abort();
                        }
                    }
                    None => {}
                }
            }
        }
        self.pmf.timers.retain(|(_, n)| n != name);
        self.pmf.logs.forget(name);
        // Still a change of this step: its CMAP keys go with the step's mirror.
        self.pmf.dirty.insert(name.clone());
        self.store.batch.delete_tags.push(name.to_string());
    }

    /// What every step ends with: start tags whose dependencies run, persist, then answer.
    pub fn finish_step(&mut self) {
        // A waiting tag can only become ready when some tag changed this step (its dependency started,
        // or it was created), and every change marks its tag dirty: a step that changed no tag (a PSM or
        // CMAP request, a query) skips the scan of every tag.
        let scan = !self.pmf.dirty.is_empty() || std::mem::take(&mut self.pmf.rescan_waiting);
        let candidates = if scan { self.pmf.tags.iter() } else { Default::default() };
        let ready: Vec<TagName> = candidates
            .filter(|(_, e)| *e.tag.state() == vigil_core::TagState::Waiting && !self.node.shutting_down)
            .filter(|(_, e)| {
                vigil_core::tag::after_ready(&e.tag.spec().after, |d| self.pmf.tags.get(d).map(|de| &de.tag))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in ready {
            let fx = self
                .pmf
                .tags
                .get_mut(&n)
                .map(|e| e.tag.deps_ready())
                .unwrap_or_default();
            self.apply(&n, fx);
        }

        self.cmap_mirror_step();
        for n in std::mem::take(&mut self.pmf.dirty) {
            if let Some(e) = self.pmf.tags.get(&n) {
                self.store
                    .batch
                    .put_tags
                    .push(crate::convert::tag_to_record(&e.tag, e.from_config));
            }
        }
        let mut batch = std::mem::take(&mut self.store.batch);
        let was_failing = self.store.failing.is_some();
        if let Err(reason) = self.store.persist(&mut batch) {
            // Nothing is acknowledged that is not on disk. While the store was already failing, the
            // requests that change state were refused at the door, so the answers of this step are
            // queries (and signals): they stand. Otherwise the requests of this step may have changed
            // something that is now only in memory: they are told so.
            if !was_failing {
                for (_, o) in &mut self.outbox {
                    if let ServerMsg::Response {
                        result: result @ Ok(_), ..
                    } = &mut *o.msg
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
        self.pmf.waiters.retain(|w| w.out.conn() != conn);
    }

    /// Refuses a request that would change stored state while the state file cannot be written. Queries,
    /// signals (`Kill`: a way out for root while the disk is full) and memory-only CMAP keys go through.
    pub fn store_gate(&mut self, req: &vigil_proto::Request) -> Result<(), WireError> {
        use vigil_proto::Request as R;
        if self.store.failing.is_none() {
            return Ok(());
        }
        // The request's kind only: its arguments are the caller's own, and can be long.
        let what = match req {
            R::Run(_) | R::RunOnce(_) | R::RunSupervised { .. } | R::RunWith { .. } => "run",
            R::Start { .. } => "start",
            R::Modify { .. } | R::ModifySupervision { .. } => "modify",
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
        self.store.refuse_unstorable(what)
    }

    /// Whether a change of this CMAP key is written to the state file.
    fn cmap_stored(&self, key: &str) -> bool {
        key == crate::sam::state::EXPECTED_VOTES_KEY
            || self.cmap.persisted.contains(key)
            || self.cmap.persist_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn check_waiters(&mut self) {
        let now = now();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.pmf.waiters) {
            let done = match &w.until {
                WaitFor::TagIdle {
                    tag,
                    with_status,
                    viewer,
                } => match self.pmf.tags.get(tag) {
                    None => Some(Ok(vigil_proto::Response::Ok)),
                    Some(e) if !e.tag.is_active() && *with_status => {
                        Some(Ok(vigil_proto::Response::Tag(Box::new(self.status_for(tag, *viewer)))))
                    }
                    Some(e) if !e.tag.is_active() => Some(Ok(vigil_proto::Response::Ok)),
                    Some(_) => None,
                },
                WaitFor::ProcsGone(_, ids) => ids
                    .iter()
                    .all(|id| self.pmf.procs.get(&id.pid).is_none_or(|p| p.id != *id))
                    .then_some(Ok(vigil_proto::Response::Ok)),
                WaitFor::Reaches {
                    tag,
                    until,
                    instance,
                    viewer,
                } => self.reaches(tag, *until, *instance, *viewer),
            };
            let result = done.or_else(|| {
                w.deadline.filter(|d| *d <= now).map(|_| {
                    Err(WireError::new(
                        vigil_proto::ErrorCode::Timeout,
                        match &w.until {
                            WaitFor::TagIdle { tag, .. } => {
                                format!("tag {tag} is still running at the end of the wait")
                            }
                            WaitFor::Reaches { tag, until, .. } => {
                                let state = self.pmf.tags.get(tag).map_or("gone", |e| e.tag.state().name());
                                format!("{tag}: not {until:?} at the end of the wait (it is {state})")
                                    .replace(&format!("{until:?}"), &format!("{until:?}").to_lowercase())
                            }
                            WaitFor::ProcsGone(n, ids) => {
                                let alive: Vec<String> = ids
                                    .iter()
                                    .filter(|id| self.pmf.procs.get(&id.pid).is_some_and(|p| p.id == **id))
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
        self.pmf.waiters = keep;
    }

    pub fn status_of(&self, name: &TagName) -> vigil_proto::TagStatus {
        let e = &self.pmf.tags[name];
        crate::convert::tag_status(
            &e.tag,
            e.from_config,
            self.pmf.logs.path(name).display().to_string(),
            now(),
        )
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
        let t = self.pmf.timers.first().map(|(t, _)| *t);
        let w = self.pmf.waiters.iter().filter_map(|w| w.deadline).min();
        // A lagging subscriber is told of its loss as soon as its queue drains; while one is owed a
        // marker, look again every 50 ms (only then: an idle vigild sleeps).
        let l = self
            .any_loss_untold()
            .then(|| now().plus(std::time::Duration::from_millis(50)));
        let r = self.pmf.exit_retries.iter().map(|(_, _, at)| *at).min();
        // Changes kept in memory are written without waiting for the next request.
        let s = self
            .store
            .failing
            .as_ref()
            .map(|_| now().plus(crate::storage::STORE_RETRY));
        // A log rotated too recently to be rotated again.
        let g = self
            .pmf
            .logs
            .next_check()
            .map(|at| now().plus(at.saturating_duration_since(std::time::Instant::now())));
        // A look for zombies among all children, put off while there are thousands of them.
        let z =
            self.pmf.reap_scan.due().map(|at| {
                now().plus(at.saturating_duration_since(std::time::Instant::now()) + Duration::from_millis(1))
            });
        [t, w, l, r, s, g, z].into_iter().flatten().min()
    }

    pub fn on_timers(&mut self) {
        self.retry_exits();
        if self
            .pmf
            .reap_scan
            .due()
            .is_some_and(|at| at <= std::time::Instant::now())
        {
            self.reap();
        }
        self.pmf.logs.on_timer();
        let now = now();
        while let Some((at, name)) = self.pmf.timers.first().cloned() {
            if at > now {
                break;
            }
            self.pmf.timers.pop_first();
            let fx = self
                .pmf
                .tags
                .get_mut(&name)
                .map(|e| e.tag.timer(now))
                .unwrap_or_default();
            self.apply(&name, fx);
        }
    }

    /// Starts the graceful stop of every tag; the loop ends when no process is left.
    pub fn begin_shutdown(&mut self) {
        if self.node.shutting_down {
            return;
        }
        info!("shutting down: stopping every tag");
        self.node.shutting_down = true;
        self.kill_probes();
        let now = now();
        let names: Vec<TagName> = self.pmf.tags.keys().cloned().collect();
        for n in names {
            let e = self.pmf.tags.get_mut(&n).expect("listed");
            let (sig, timeout) = (e.tag.spec().stop_signal, e.tag.spec().stop_timeout);
            let fx = if e.tag.tree().is_empty() && !matches!(e.tag.state(), vigil_core::TagState::Running) {
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
        self.node.shutting_down && self.pmf.procs.values().all(|w| w.tag.is_none())
    }

    pub fn emit_tag_event(&mut self, name: &TagName, ev: TagEvent) {
        self.apply(name, vec![Effect::Emit(ev)]);
    }

    pub fn tracking_mode(&self) -> &'static str {
        if self.pmf.connector.is_some() {
            "process connector"
        } else {
            "/proc scan"
        }
    }

    pub fn stop_grace() -> Duration {
        Duration::from_secs(5)
    }
}
