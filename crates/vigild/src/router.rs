//! The loop's conductor: every message of a step comes in here and goes to the service that owns it.
//! The checks every request passes first (routing to another node, the store gate, bounded filters)
//! are here too; what a request does is its service's.

use std::collections::BTreeMap;

use vigil_core::{Exit, StopMode, TagState};
use vigil_proto::{DaemonInfo, Request, Response, WireError};

use crate::cluster::remote::Route;
use crate::conn::{Caller, ConnTx, Outgoing};
use crate::msg::Msg;
use crate::scrape::{CmapFigures, Scrape, TagFigures};
use crate::state::Daemon;

type Answer = Result<Response, WireError>;

impl Daemon {
    /// Handles one message of the loop.
    pub fn on_msg(&mut self, msg: Msg) {
        match msg {
            // A connection closed for reading too slowly gets no more work done for it.
            Msg::Request { out, .. } if out.is_killed() => {}
            Msg::Request {
                caller,
                id,
                req,
                out,
                held,
            } => {
                if let Some(answer) = self.handle(caller, id, req, &out) {
                    self.reply(&out, id, answer);
                }
                // Handled: its bytes leave the uid's budget of requests waiting for the loop.
                drop(held);
            }
            Msg::Exited { pid, start_time } => self.on_exited(pid, start_time),
            Msg::Closed { conn } => {
                self.on_closed(conn);
                self.sam_on_closed(conn);
                self.drop_waiters(conn);
            }
            Msg::ProbeDone {
                tag,
                instance,
                index,
                pid,
                result,
            } => self.on_probe_done(&tag, instance, index, pid, result),
            Msg::Scrape { caller, reply } => {
                // Nobody waits any more when the scrape's client went away.
                let _ = reply.send(Box::new(self.scrape(caller)));
            }
            Msg::Cluster(m) => self.on_cluster(m),
            Msg::RunChecked {
                caller,
                id,
                run,
                once,
                out,
                result,
            } => self.on_run_checked(caller, id, *run, once, &out, *result),
        }
    }

    /// Handles one request. `None` means the answer comes later (a waiter was registered).
    /// The request stays in its box until its fields are taken (a request is hundreds of bytes).
    pub fn handle(&mut self, caller: Caller, id: u64, req: Box<Request>, out: &ConnTx) -> Option<Answer> {
        let _span = tracing::info_span!("req", conn = caller.conn, req = id).entered();
        self.cmap_count_request(caller);
        let req = if Daemon::may_route(&req) {
            match self.route(*req) {
                Ok(Route::Here(req)) => Box::new(req),
                Ok(Route::There { node, req }) => return self.forward(caller, id, node, req, out),
                Err(e) => return Some(Err(e)),
            }
        } else {
            req
        };
        if let Err(e) = self.store_gate(&req) {
            return Some(Err(e));
        }
        if let Err(e) = crate::spec::bounded_filters(&req) {
            return Some(Err(e));
        }
        let cmap_op = crate::cmap::map::op_of(&req);
        let answer = match *req {
            Request::Run(spec) => {
                return self.run_request(caller, id, (*spec, Default::default(), Default::default()), out, false)
            }
            Request::RunOnce(spec) => {
                return self.run_request(caller, id, (*spec, Default::default(), Default::default()), out, true)
            }
            Request::RunSupervised {
                spec,
                supervision,
                once,
            } => return self.run_request(caller, id, (*spec, supervision, Default::default()), out, once),
            Request::WaitFor {
                tag,
                until,
                timeout_ms,
                this_start,
            } => return self.wait_for(caller, &tag, until, timeout_ms, this_start, id, out),
            Request::ModifySupervision {
                tag,
                restart,
                success_exit_codes,
                success_signals,
                start_secs_ms,
            } => self.modify_supervision(
                caller,
                &tag,
                crate::pmf::policy::Change {
                    restart,
                    success_exit_codes,
                    success_signals,
                    start_secs_ms,
                },
            ),
            Request::RunWith {
                spec,
                resources,
                once,
                supervision,
            } => return self.run_request(caller, id, (*spec, supervision, *resources), out, once),
            Request::Resources { tag } => self.resources(tag),
            Request::Start { tag } => self.start(caller, &tag),
            Request::Modify { tag, retries, period } => self.modify(caller, &tag, retries, period),
            Request::Stop { tag, signal, wait_ms } => {
                return self.stop(caller, &tag, signal, wait_ms, StopMode::Stay, id, out)
            }
            Request::Remove { tag, wait_ms } => {
                return self.stop(caller, &tag, None, wait_ms, StopMode::Remove, id, out)
            }
            Request::Kill { tag, signal, wait_ms } => return self.kill(caller, &tag, signal, wait_ms, id, out),
            Request::Release { tag, signal, wait_ms } => return self.release(caller, &tag, signal, wait_ms, id, out),
            Request::Restart { tag } => self.restart(caller, &tag),
            Request::Query { tag } => Ok(self.query(&tag)),
            Request::List => Ok(self.list()),
            Request::Status { tag } => self.status(caller, tag),
            Request::Wait { tag, timeout_ms } => return self.wait(caller, &tag, timeout_ms, id, out),
            Request::Events { after, limit, filter } => self.events(after, limit, &filter),
            Request::Subscribe { after, filter } => {
                return self.subscribe(caller.conn, after, filter, id, out).err().map(Err);
            }
            Request::ClusterEvents {
                after,
                limit,
                filter,
                nodes,
            } => return self.cluster_events(after, limit, filter, nodes, id, out),
            Request::ClusterSubscribe { after, filter, nodes } => {
                return self.cluster_subscribe(after, filter, nodes, id, out).err().map(Err);
            }
            Request::Reload => self.admin(caller, "reload").and_then(|_| self.reload()),
            Request::Reexec => return self.reexec(caller, id, out),
            Request::PsmCategoryAdd { node, category } => self.psm_category_add(caller, &node, &category),
            Request::PsmCategoryRemove { node, category } => self.psm_category_remove(caller, &node, &category),
            Request::PsmCategoryList { node } => self.psm_category_list(&node),
            Request::PsmAdd { node, category, pid } => self.psm_add(caller, &node, &category, pid),
            Request::PsmRemove { node, category, pid } => self.psm_remove(caller, &node, &category, pid),
            Request::PsmGet { node, category, pid } => self.psm_get(&node, &category, pid),
            Request::PsmSetState {
                node,
                category,
                pid,
                state,
            } => self.psm_set_state(caller, &node, &category, pid, &state),
            Request::CmapGet { map, key, ty } => self.cmap_get(caller, map, &key, ty),
            Request::CmapSet { key, value, persist } => self.cmap_set(caller, &key, value, persist),
            Request::CmapDelete { key } => self.cmap_delete(caller, &key),
            Request::CmapInc { key } => self.cmap_adjust(caller, &key, true),
            Request::CmapDec { key } => self.cmap_adjust(caller, &key, false),
            Request::CmapCompareAndSet {
                key,
                expected,
                value,
                persist,
            } => self.cmap_cas(caller, &key, expected, value, persist),
            Request::CmapIter { map, prefix } => self.cmap_iter(caller, map, &prefix),
            Request::CmapTrackAdd {
                map,
                key,
                flags,
                context,
            } => self.cmap_track_add(caller, map, &key, flags, context, out),
            Request::CmapTrackDelete { track } => self.cmap_track_delete(caller, track),
            Request::CmapSetText { key, ty, text, persist } => self.cmap_set_text(caller, &key, &ty, &text, persist),
            Request::SamReport { change, info } => self.sam_report(caller, change, info),
            Request::SamList => self.sam_list(),
            Request::QuorumTrack => self.quorum_track(caller, out),
            Request::QuorumLeaseTrack => self.quorum_lease_track(caller, out),
            Request::Nodes => self.nodes(),
            Request::OnNode { .. } => unreachable!("route() unwraps OnNode"),
            Request::DaemonStatus => Ok(self.daemon_status()),
        };
        // Counted once carried out (`/metrics`): a refused request changed and read nothing.
        if let (Some(op), Ok(_)) = (cmap_op, &answer) {
            self.cmap.ops[op] += 1;
        }
        Some(answer)
    }

    /// Whether a new image would start as this one did: the config file loads, and the files it names
    /// that are read at start only (the HTTP API's token file, TLS certificate and key) do too. A re-exec is refused
    /// while not, so that this image keeps serving as it does.
    pub fn check_new_image(&self) -> Result<(), WireError> {
        let Some(config) = self.check_config()? else {
            return Ok(());
        };
        let http = &config.settings.http;
        // The new image refuses to start on a token file it cannot use: its owner (maybe not root) could
        // otherwise take vigild down at the next re-exec by changing the file's mode.
        let token = http
            .token_file
            .as_deref()
            .map_or(Ok(()), |p| crate::http::tls::read_token_file(p).map(drop));
        token
            .and_then(|()| crate::http::tls::check(http))
            .map_err(|e| WireError::new(vigil_proto::ErrorCode::InvalidArgument, format!("{e:#}; fix it first")))
    }

    /// `Reexec`: answered before vigild executes itself again, once the answer is written.
    fn reexec(&mut self, caller: Caller, id: u64, out: &ConnTx) -> Option<Answer> {
        if let Err(e) = self
            .admin(caller, "re-exec vigild")
            .and_then(|_| self.check_new_image())
        {
            return Some(Err(e));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = vigil_proto::ServerMsg::Response {
            id,
            result: Ok(Response::Ok),
        };
        self.outbox.push((
            out.clone(),
            Outgoing {
                msg: Box::new(msg),
                written: Some(tx),
                events: None,
            },
        ));
        self.node.reexec = Some(rx);
        None
    }

    /// What `GET /metrics` shows to `caller`: the counters as they stand and a few facts of each tag,
    /// nothing built that the exposition does not print.
    fn scrape(&self, caller: Caller) -> Scrape {
        let now = crate::clock::now().as_millis();
        let tags = self
            .pmf
            .tags
            .iter()
            .map(|(name, e)| {
                let t = &e.tag;
                let running = *t.state() == TagState::Running;
                let procs = t.tree().all().count() as u64;
                TagFigures {
                    name: name.to_string(),
                    state: t.state().name(),
                    restarts: t.starts().saturating_sub(1),
                    last_exit_code: t.last_exit().and_then(|(_, x)| match x {
                        Exit::Code(c) => Some(i64::from(c)),
                        // As a shell reports a death by signal.
                        Exit::Signal(n) => Some(128 + i64::from(n)),
                        Exit::Unknown => None,
                    }),
                    uptime_ms: match t.started_at() {
                        Some(at) if running && procs > 0 => now.saturating_sub(at.as_millis()),
                        _ => 0,
                    },
                    processes: procs,
                    probe_failing: t.health().probes.iter().map(|p| u64::from(p.failures)).sum(),
                    probe_failures: e.probe_failures,
                }
            })
            .collect();
        let mut psm: BTreeMap<&str, (u64, u64)> = self
            .psm
            .registry
            .categories
            .keys()
            .map(|c| (c.as_str(), (0, 0)))
            .collect();
        for m in self.psm.registry.members.values() {
            let n = psm.entry(m.category.as_str()).or_default();
            if m.exited() {
                n.1 += 1;
            } else {
                n.0 += 1;
            }
        }
        let cmap = self.cmap_may_read(caller).ok().map(|()| CmapFigures {
            keys: self.cmap.main.len() as u64,
            ops: crate::cmap::map::OPS.iter().copied().zip(self.cmap.ops).collect(),
            notifications: self.cmap.notified,
        });
        let (nodes_up, nodes_down) = match self.nodes() {
            Ok(Response::Nodes(n)) => {
                let up = n.iter().filter(|n| n.up).count() as u64;
                (up, n.len() as u64 - up)
            }
            _ => (0, 0),
        };
        Scrape {
            tags,
            psm: psm.into_iter().map(|(c, (r, x))| (c.to_string(), r, x)).collect(),
            cmap,
            sam_applications: self.sam.procs.len() as u64,
            sam_heartbeats: self.sam.heartbeats,
            sam_recoveries: self.sam.recoveries,
            nodes_up,
            nodes_down,
            quorate: self.sam.quorate,
            last_seq: self.events.seq,
            subscribers: self.events.subscriptions.len() as u64,
        }
    }

    /// `DaemonStatus`: what this vigild is and holds.
    fn daemon_status(&self) -> Response {
        Response::Daemon(Box::new(DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uid: self.node.uid,
            started_ms: self.node.started.as_millis(),
            state_dir: self.node.paths.state_dir.display().to_string(),
            socket: self.node.paths.socket.display().to_string(),
            config: self.node.paths.config.as_ref().map(|p| p.display().to_string()),
            tags: self.pmf.tags.len() as u32,
            tracking: self.tracking_mode().into(),
            last_seq: self.events.seq,
            waiting: self.pmf.waiters.len() as u32,
            subscribers: self.events.subscriptions.len() as u32,
            node: self.node.name.clone(),
            node_id: self.node.id,
            first_seq: self.store.db.first_seq().unwrap_or(0),
        }))
    }
}
