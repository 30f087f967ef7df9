//! SAM in vigild: the record of every supervised application (reported by its supervisor), its CMAP keys
//! `resources.process.<pid>.*` with corosync's names and types, the `sys.vigil.sam.*` events, and the
//! node's quorum (votequorum's rule over `quorum.expected_votes`) pushed to the supervisors that track it.

use vigil_core::cmap::CmapValue as V;
use vigil_core::sam::Policy;
use vigil_proto::{ErrorCode, Response, SamChange, SamInfo, SamProcess, ServerMsg, WireError, SAM_DATA_MAX};
use vigil_store::SamRecord;

use crate::clock::now;
use crate::conn::{Caller, ConnTx, Outgoing};
use crate::events::attr::{attr_b, attr_i, attr_s};
use crate::state::Daemon;

pub mod state;

pub use state::*;

type Answer = Result<Response, WireError>;

fn bad(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, msg)
}

/// corosync's `cs_timestamp_get()`: CLOCK_MONOTONIC in ns, the clock of `last_updated`.
fn now_ns() -> u64 {
    vigil_sys::monotonic_now_ns()
}

/// Whether any of the process's uids (real, effective, saved, fs) is `uid`.
fn runs_as(pid: i32, uid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|st| {
        st.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().any(|u| u.parse() == Ok(uid)))
    })
}

/// The supervisor still runs (a zombie does not: it only waits for its parent).
fn alive(r: &SamRecord) -> bool {
    vigil_sys::proc_stat(r.pid).is_ok_and(|s| s.state != 'Z' && s.start_time == r.start_time)
}

impl Daemon {
    pub fn sam_report(&mut self, caller: Caller, change: SamChange, info: SamInfo) -> Answer {
        let pid = caller
            .pid
            .ok_or_else(|| bad("vigild cannot tell the pid of this connection, so it cannot know the supervisor"))?;
        let policy = Policy::new(info.policy).map_err(|e| bad(e.to_string()))?;
        // Any warn signal is recorded as given: corosync's sam_warn_signal_set accepts every int, and one
        // that is no signal only makes the warning a no-op in the application's supervisor.
        if let SamChange::Data(Some(d)) = &change {
            if d.len() > SAM_DATA_MAX {
                return Err(WireError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "SAM data of {} bytes is over the limit of {SAM_DATA_MAX} bytes",
                        d.len()
                    ),
                ));
            }
        }
        if let SamChange::Data(Some(d)) = &change {
            self.sam_quota(caller.uid, pid, d.len())?;
        }
        // A record belongs to the user whose supervisor made it: a connection of another uid that
        // claims the same pid (a reused one) cannot report for it, end it or overwrite its data.
        if let Some(e) = self.sam.procs.get(&pid).filter(|e| e.record.uid != caller.uid) {
            if !alive(&e.record) {
                // Left by a supervisor that is gone; its pid now names another process.
                self.sam.procs.remove(&pid);
                self.store.batch.delete_sam.push(pid);
            } else {
                return Err(WireError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "SAM process {pid} belongs to uid {}, not to uid {}",
                        e.record.uid, caller.uid
                    ),
                ));
            }
        }
        // A new record is for the process that holds the pid now, and only its own user may make one:
        // the pid was taken when the connection was made, and may name another user's process since.
        if caller.uid != 0 && !self.sam.procs.contains_key(&pid) && !runs_as(pid, caller.uid) {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "process {pid} does not run as uid {}: this connection's process is gone",
                    caller.uid
                ),
            ));
        }
        let t = now().as_millis();
        let entry = self.sam.procs.entry(pid).or_insert_with(|| SamEntry {
            record: SamRecord {
                pid,
                start_time: vigil_sys::start_time(pid).unwrap_or(0),
                uid: caller.uid,
                name: vigil_sys::proc_stat(pid).map(|s| s.comm).unwrap_or_default(),
                instance: 0,
                child: 0,
                interval_ms: 0,
                policy: 0,
                warn_signal: 15,
                state: 0,
                last_updated_ms: 0,
                registered_ms: t,
            },
            data: None,
            conn: None,
        });
        let first = entry.conn.is_none() && entry.record.instance == 0;
        entry.conn = Some(caller.conn);
        let r = &mut entry.record;
        r.instance = info.instance;
        r.child = info.child;
        r.interval_ms = info.interval_ms;
        r.policy = info.policy;
        r.warn_signal = info.warn_signal;
        r.state = state_code(info.state);
        let from_child = matches!(
            change,
            SamChange::Start
                | SamChange::Stop
                | SamChange::Heartbeat
                | SamChange::WarnSignal
                | SamChange::Data(_)
                | SamChange::MarkFailed
        );
        if from_child {
            r.last_updated_ms = t;
        }
        if let SamChange::Data(d) = &change {
            entry.data = d.clone();
            self.store.batch.put_sam_data.push((pid, d.clone()));
        }
        let record = entry.record.clone();
        let subject = format!("sam/{pid}");
        let base = vec![
            attr_i("pid", pid as i64),
            attr_i("child", info.child as i64),
            attr_i("instance", info.instance as i64),
            attr_s("state", info.state.cmap_str()),
        ];
        match &change {
            SamChange::Heartbeat => self.sam.heartbeats += 1,
            SamChange::Instance if info.instance > 1 && !first => self.sam.recoveries += 1,
            _ => {}
        }
        let event = match &change {
            SamChange::Instance if info.instance <= 1 || first => Some(("register", vec![])),
            SamChange::Instance => Some(("restart", vec![])),
            SamChange::Start => Some(("start", vec![])),
            SamChange::Stop => Some(("stop", vec![])),
            SamChange::WaitQuorum => Some(("wait_quorum", vec![])),
            SamChange::Heartbeat => None,
            SamChange::Warn { signal, reason } => Some((
                "warn",
                vec![attr_i("signal", *signal as i64), attr_s("reason", reason.clone())],
            )),
            SamChange::Kill { reason } => Some(("kill", vec![attr_s("reason", reason.clone())])),
            SamChange::Exit { status } => Some(("exit", exit_attrs(*status))),
            SamChange::MarkFailed => Some(("failed", vec![])),
            SamChange::WarnSignal => Some(("warn_signal", vec![attr_i("signal", info.warn_signal as i64)])),
            SamChange::Data(d) => Some(("data", vec![attr_i("size", d.as_ref().map_or(0, |d| d.len()) as i64)])),
            SamChange::Quit { code, failed } => {
                Some(("quit", vec![attr_i("code", *code as i64), attr_b("failed", *failed)]))
            }
            SamChange::Reattach => Some(("reattach", vec![])),
        };
        if let Some((name, extra)) = event {
            let mut attrs = base;
            attrs.extend(extra);
            self.emit(&subject, &format!("sys.vigil.sam.{name}"), attrs);
        }
        match change {
            SamChange::Quit { failed, .. } => {
                self.sam.procs.remove(&pid);
                self.store.batch.delete_sam.push(pid);
                if policy.cmap() {
                    if failed {
                        self.sam_cmap_keys(&record, policy, false);
                        self.cmap_internal(&format!("{}state", cmap_prefix(pid)), V::Str("failed".into()));
                    } else {
                        self.cmap_internal_drop(&cmap_prefix(pid));
                    }
                }
            }
            SamChange::Heartbeat => {
                if policy.cmap() {
                    self.cmap_internal(&format!("{}last_updated", cmap_prefix(pid)), V::U64(now_ns()));
                }
            }
            _ => {
                self.store.batch.put_sam.push(record.clone());
                if policy.cmap() {
                    self.sam_cmap_keys(&record, policy, from_child);
                }
            }
        }
        Ok(Response::Ok)
    }

    /// SAM data is written to the state file: one uid's applications together keep at most
    /// `daemon.sam_data_per_uid` bytes (the blob being replaced does not count).
    fn sam_quota(&self, uid: u32, pid: i32, len: usize) -> Result<(), WireError> {
        if !self.quota_applies(uid) {
            return Ok(());
        }
        let limit = self.node.settings.quotas.sam_data_per_uid;
        let held: u64 = self
            .sam
            .procs
            .iter()
            .filter(|(p, e)| **p != pid && e.record.uid == uid)
            .map(|(_, e)| e.data.as_ref().map_or(0, |d| d.len() as u64))
            .sum();
        if held.saturating_add(len as u64) > limit {
            return Err(WireError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "SAM data of {len} bytes would bring uid {uid} to {} bytes, over its limit \
                     (daemon.sam_data_per_uid = {limit}); nothing was stored",
                    held.saturating_add(len as u64)
                ),
            ));
        }
        Ok(())
    }

    /// corosync's keys for one application: recovery, poll_period, state, and last_updated when a
    /// command from the application arrived.
    fn sam_cmap_keys(&mut self, r: &SamRecord, policy: Policy, touched: bool) {
        let p = cmap_prefix(r.pid);
        self.cmap_internal(&format!("{p}recovery"), V::Str(policy.recovery_name().into()));
        self.cmap_internal(&format!("{p}poll_period"), V::U64(r.interval_ms));
        self.cmap_internal(&format!("{p}state"), V::Str(state_of(r.state).cmap_str().into()));
        if touched {
            self.cmap_internal(&format!("{p}last_updated"), V::U64(now_ns()));
        }
    }

    pub fn sam_list(&mut self) -> Answer {
        self.sam_prune();
        Ok(Response::SamProcesses(
            self.sam
                .procs
                .values()
                .map(|e| SamProcess {
                    pid: e.record.pid,
                    uid: e.record.uid,
                    name: e.record.name.clone(),
                    info: SamInfo {
                        instance: e.record.instance,
                        child: e.record.child,
                        interval_ms: e.record.interval_ms,
                        policy: e.record.policy,
                        warn_signal: e.record.warn_signal,
                        state: state_of(e.record.state),
                    },
                    data_size: e.data.as_ref().map_or(0, |d| d.len() as u64),
                    last_updated_ms: e.record.last_updated_ms,
                    registered_ms: e.record.registered_ms,
                    connected: e.conn.is_some(),
                })
                .collect(),
        ))
    }

    /// Forgets the applications whose supervisor died without saying so (killed, or gone while vigild was
    /// away): event `sys.vigil.sam.lost`, and CMAP state "failed" as a supervisor that quits after a
    /// failure leaves it.
    pub fn sam_prune(&mut self) {
        let gone: Vec<i32> = self
            .sam
            .procs
            .values()
            .filter(|e| e.conn.is_none() && !alive(&e.record))
            .map(|e| e.record.pid)
            .collect();
        for pid in gone {
            let Some(e) = self.sam.procs.remove(&pid) else { continue };
            self.store.batch.delete_sam.push(pid);
            self.emit(
                &format!("sam/{pid}"),
                "sys.vigil.sam.lost",
                vec![attr_i("pid", pid as i64), attr_i("instance", e.record.instance as i64)],
            );
            if Policy::new(e.record.policy).is_ok_and(|p| p.cmap()) {
                self.cmap_internal(&format!("{}state", cmap_prefix(pid)), V::Str("failed".into()));
            }
        }
    }

    /// Loads the records; those whose supervisor died meanwhile are reported lost.
    pub fn sam_restore(&mut self) -> anyhow::Result<()> {
        for (r, data) in self.store.db.sam()? {
            let policy = Policy::new(r.policy).ok();
            self.sam.procs.insert(
                r.pid,
                SamEntry {
                    record: r.clone(),
                    data,
                    conn: None,
                },
            );
            if let Some(p) = policy.filter(|p| p.cmap()) {
                self.sam_cmap_keys(&r, p, false);
            }
        }
        self.sam_prune();
        Ok(())
    }

    pub fn sam_on_closed(&mut self, conn: u64) {
        self.sam.quorum_conns.remove(&conn);
        self.sam.lease_conns.remove(&conn);
        let mut any = false;
        for e in self.sam.procs.values_mut().filter(|e| e.conn == Some(conn)) {
            e.conn = None;
            any = true;
        }
        if any {
            self.sam_prune();
        }
    }

    pub fn quorum_track(&mut self, caller: Caller, out: &ConnTx) -> Answer {
        self.sam.quorum_conns.insert(caller.conn, out.clone());
        Ok(Response::Quorate(self.sam.quorate))
    }

    fn expected_votes(&self) -> u32 {
        match self.cmap.main.get(EXPECTED_VOTES_KEY) {
            Ok(V::U32(n)) => *n,
            _ => 1,
        }
    }

    /// The votes this node counts: its own alone; in cluster mode, the nodes that are up while this
    /// node's lease is alive, and none without it (docs/cluster.md, "Quorum").
    fn votes(&self) -> u32 {
        match &self.cluster.view {
            None => NODE_VOTES,
            Some(view) => view.votes(),
        }
    }

    /// Recomputes quorum; a change updates `runtime.votequorum.quorate`, is an event, and is pushed to
    /// every connection that tracks quorum.
    pub fn quorum_update(&mut self, initial: bool) {
        let votes = self.votes();
        // votequorum's rule over the votes; with no votes (cluster mode without a live lease) never quorate,
        // whatever `quorum.expected_votes` says.
        let quorate = votes > 0 && vigil_core::sam::quorate(votes, self.expected_votes());
        self.cmap_internal("runtime.votequorum.quorate", V::U8(quorate as u8));
        self.cmap_internal("runtime.votequorum.this_node_votes", V::U32(NODE_VOTES));
        // What the rule counts: in cluster mode the nodes up, this one's own vote being always 1.
        self.cmap_internal("runtime.votequorum.total_votes", V::U32(votes));
        if quorate == self.sam.quorate && !initial {
            return;
        }
        self.sam.quorate = quorate;
        if initial {
            return;
        }
        let name = if quorate {
            "sys.vigil.quorum.regained"
        } else {
            "sys.vigil.quorum.lost"
        };
        self.emit(
            "quorum",
            name,
            vec![
                attr_i("expected_votes", self.expected_votes() as i64),
                attr_i("votes", votes as i64),
            ],
        );
        for out in self.sam.quorum_conns.values() {
            self.outbox
                .push((out.clone(), Outgoing::msg(ServerMsg::Quorum { quorate })));
        }
        self.push_quorum_lease();
    }

    /// `quorum.expected_votes` is vigild's key but users set it (as corosync's votequorum lets them): a u32
    /// of at least 1, persisted, and quorum follows at once.
    pub fn set_expected_votes(&mut self, value: &V) -> Answer {
        let n = match value {
            V::U32(n) if *n >= 1 => *n,
            V::U32(_) => return Err(bad(format!("{EXPECTED_VOTES_KEY} must be at least 1"))),
            other => return Err(bad(format!("{EXPECTED_VOTES_KEY} is a u32, not {}", other.ty()))),
        };
        self.cmap_internal(EXPECTED_VOTES_KEY, V::U32(n));
        self.store.batch.delete_cmap.retain(|k| k != EXPECTED_VOTES_KEY);
        self.store
            .batch
            .put_cmap
            .push((EXPECTED_VOTES_KEY.into(), crate::cmap::map::to_record(&V::U32(n))));
        self.quorum_update(false);
        Ok(Response::Ok)
    }
}

fn cmap_prefix(pid: i32) -> String {
    format!("resources.process.{pid}.")
}

fn exit_attrs(status: i32) -> Vec<(String, crate::events::attr::Attr)> {
    if status & 0x7f == 0 {
        vec![attr_i("code", ((status >> 8) & 0xff) as i64)]
    } else {
        vec![attr_i("signal", (status & 0x7f) as i64)]
    }
}
