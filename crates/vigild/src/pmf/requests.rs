//! One function per request. Each checks everything first and changes nothing when it refuses.

use std::time::Duration;

use vigil_core::{Period, Refused, Retries, Signal, StopMode, Tag, TagName, TagState};
use vigil_proto::{ErrorCode, Response, TagSummary, WireError};

use crate::clock::now;
use crate::conn::{Caller, ConnTx};
use crate::msg::RunArgs;
use crate::pmf::state::{Entry, WaitFor, Waiter};
use crate::state::Daemon;

type Answer = Result<Response, WireError>;

fn err(code: ErrorCode, msg: impl Into<String>) -> WireError {
    WireError::new(code, msg)
}

fn refused(r: Refused) -> WireError {
    let code = match r {
        Refused::AlreadyRunning(_) => ErrorCode::AlreadyExists,
        Refused::NoProcesses(_) => ErrorCode::NoProcess,
        Refused::Stopping(_) => ErrorCode::Busy,
        // Never a request's answer (notify datagrams are not answered), but mapped all the same.
        Refused::Stranger(..) => ErrorCode::PermissionDenied,
    };
    err(code, r.to_string())
}

fn ms(d: u64) -> Duration {
    Duration::from_millis(d)
}

impl Daemon {
    /// `Query`: whether a tag of that name exists.
    pub fn query(&self, tag: &str) -> Response {
        Response::Exists(
            TagName::existing(tag)
                .ok()
                .is_some_and(|n| self.pmf.tags.contains_key(&n)),
        )
    }

    /// `List`: every tag's name, state and watched pids.
    pub fn list(&self) -> Response {
        Response::List(
            self.pmf
                .tags
                .iter()
                .map(|(n, e)| TagSummary {
                    name: n.to_string(),
                    state: e.tag.state().name().into(),
                    pids: e.tag.tree().watched(e.tag.spec().level).map(|p| p.id.pid).collect(),
                })
                .collect(),
        )
    }

    /// `Status`: every tag's status, or one tag's, as `caller` may see it.
    pub fn status(&self, caller: Caller, tag: Option<String>) -> Answer {
        match tag {
            // A list carries no environment (crate::fit): `status TAG` shows one, to whom may see it.
            None => Ok(Response::Tags(crate::fit::status_list(
                self.pmf.tags.keys().map(|n| self.status_for(n, caller.uid)).collect(),
            ))),
            Some(tag) => self
                .known(&tag)
                .map(|n| Response::Tags(vec![self.status_for(&n, caller.uid)])),
        }
    }

    /// `Wait`: answered once the tag is idle, or at the deadline.
    pub fn wait(
        &mut self,
        caller: Caller,
        tag: &str,
        timeout_ms: Option<u64>,
        id: u64,
        out: &ConnTx,
    ) -> Option<Answer> {
        let name = match self.known(tag) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let deadline = timeout_ms.map(|t| now().plus(ms(t)));
        self.pmf.waiters.push(Waiter {
            until: WaitFor::TagIdle {
                tag: name,
                with_status: true,
                viewer: caller.uid,
            },
            deadline,
            out: out.clone(),
            id,
        });
        None
    }

    /// Whether the per-uid quotas bind this uid: not root, nor the user vigild runs as.
    pub fn quota_applies(&self, uid: u32) -> bool {
        uid != 0 && uid != self.node.uid
    }

    pub(crate) fn known(&self, tag: &str) -> Result<TagName, WireError> {
        let name = TagName::existing(tag).map_err(|e| err(ErrorCode::InvalidArgument, e.to_string()))?;
        if !self.pmf.tags.contains_key(&name) {
            return Err(err(ErrorCode::NotFound, format!("no such tag: {name}")));
        }
        Ok(name)
    }

    /// The tag exists and the caller owns it (or is root).
    pub(crate) fn owned(&self, caller: Caller, tag: &str, verb: &str) -> Result<TagName, WireError> {
        let name = self.known(tag)?;
        let owner = self.pmf.tags[&name].tag.spec().uid;
        if caller.uid != 0 && caller.uid != owner {
            return Err(err(
                ErrorCode::PermissionDenied,
                format!(
                    "tag {name} belongs to uid {owner}; uid {} may not {verb} it",
                    caller.uid
                ),
            ));
        }
        Ok(name)
    }

    pub fn admin(&self, caller: Caller, verb: &str) -> Result<(), WireError> {
        if caller.uid != 0 && caller.uid != self.node.uid {
            return Err(err(
                ErrorCode::PermissionDenied,
                format!("only root or uid {} may {verb}", self.node.uid),
            ));
        }
        Ok(())
    }

    fn refuse_if_shutting_down(&self) -> Result<(), WireError> {
        if self.node.shutting_down {
            return Err(err(ErrorCode::Busy, "vigild is shutting down"));
        }
        Ok(())
    }

    /// `Run` and `RunOnce` (`once`): another user's programs are checked off the loop (see `run`), and
    /// the answer comes when the check is done (`Msg::RunChecked`).
    pub fn run_request(&mut self, caller: Caller, id: u64, run: RunArgs, out: &ConnTx, once: bool) -> Option<Answer> {
        match self.run(caller, run, false, once) {
            Ok(RunOutcome::Done(r)) => Some(Ok(r)),
            Err(e) => Some(Err(e)),
            Ok(RunOutcome::Check(job)) => {
                let tx = self.node.tx.clone();
                let out = out.clone();
                tokio::task::spawn_blocking(move || {
                    let result = job.check();
                    let _ = tx.send(crate::msg::Msg::RunChecked {
                        caller,
                        id,
                        run: Box::new(job.run),
                        once,
                        out,
                        result: Box::new(result),
                    });
                });
                None
            }
        }
    }

    /// The end of a `Run` whose programs were checked off the loop: everything else is checked again,
    /// since the tags may have changed meanwhile.
    pub fn on_run_checked(&mut self, caller: Caller, id: u64, run: RunArgs, once: bool, out: &ConnTx, result: Answer) {
        let answer = result.and_then(|_| match self.run(caller, run, true, once)? {
            RunOutcome::Done(r) => Ok(r),
            RunOutcome::Check(_) => unreachable!("a checked run is not checked again"),
        });
        self.reply(out, id, answer);
    }

    fn run(&mut self, caller: Caller, run: RunArgs, checked: bool, once: bool) -> Result<RunOutcome, WireError> {
        self.refuse_if_shutting_down()?;
        if self.node.uid != 0 && caller.uid != self.node.uid {
            return Err(err(
                ErrorCode::PermissionDenied,
                format!(
                    "this vigild runs as uid {} and cannot start processes as uid {}",
                    self.node.uid, caller.uid
                ),
            ));
        }
        let (name, mut spec) = crate::spec::build(&run.0, caller.uid, caller.gid, self.node.settings.stop_timeout)?;
        let asker = crate::tag_res::Asker {
            uid: caller.uid,
            gid: caller.gid,
            may_switch: caller.uid == 0 && self.node.uid == 0,
        };
        crate::tag_res::apply(&name, &mut spec, &run.2, asker)?;
        let spec = crate::supervision::with_supervision(&name, spec, &run.1)?;
        if let Some(old) = self.pmf.tags.get(&name) {
            // A `RunOnce` sent again after its answer was lost finds its own tag: the first one ran.
            if once && old.tag.is_active() && *old.tag.spec() == spec {
                return Ok(RunOutcome::Done(Response::Tag(Box::new(self.status_of(&name)))));
            }
            if old.tag.is_active() {
                return Err(err(ErrorCode::AlreadyExists, format!("tag {name} is already running")));
            }
            if caller.uid != 0 && caller.uid != old.tag.spec().uid {
                return Err(err(
                    ErrorCode::PermissionDenied,
                    format!(
                        "tag {name} belongs to uid {}; uid {} may not replace it",
                        old.tag.spec().uid,
                        caller.uid
                    ),
                ));
            }
        }
        // One user's tags must leave room for everyone else's, in the table and in every list answer;
        // creating again a tag of one's own does not count.
        if self.quota_applies(caller.uid) {
            let held = self
                .pmf
                .tags
                .iter()
                .filter(|(n, e)| e.tag.spec().uid == caller.uid && **n != name)
                .count();
            let max = self.node.settings.quotas.tags_per_uid;
            if held >= max {
                return Err(err(
                    ErrorCode::LimitExceeded,
                    format!(
                        "tag {name}: uid {} already holds {held} tags; the limit is {max} per user \
                         (daemon.tags_per_uid = {max}): remove one with vigil rm",
                        caller.uid
                    ),
                ));
            }
        }
        for dep in &spec.after {
            if !self.pmf.tags.contains_key(dep) {
                return Err(err(
                    ErrorCode::NotFound,
                    format!("tag {name} starts after {dep}, which does not exist"),
                ));
            }
        }
        // Refuse a command that cannot be found now rather than fail later.
        let path = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| std::ffi::OsString::from(v));
        let path = path.unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        // As another user, the programs and the working directory are checked by a child that has
        // become that user: root looking would answer what exists where only root may look.
        // That child's lookups may block for as long as that user likes (a FUSE mount that never
        // answers): it runs off the loop, which answers this request when it is done.
        let switch = self.node.uid == 0 && (spec.uid != 0 || spec.gid != 0);
        if switch && !checked {
            return Ok(RunOutcome::Check(Box::new(RunCheck {
                name: name.to_string(),
                programs: std::iter::once(spec.command[0].clone())
                    .chain(spec.action.clone())
                    .collect(),
                cwd: spec.cwd.clone().map(Into::into),
                uid: spec.uid,
                gid: spec.gid,
                groups: spec.res.groups.clone(),
                path,
                run,
            })));
        }
        if !switch {
            vigil_sys::resolve_program(&spec.command[0], Some(&path))
                .map_err(|e| err(ErrorCode::ExecFailed, format!("tag {name}: {e}")))?;
            if let Some(action) = &spec.action {
                vigil_sys::resolve_program(action, Some(&path))
                    .map_err(|e| err(ErrorCode::ExecFailed, format!("tag {name}: action program: {e}")))?;
            }
        }
        self.pmf.tags.remove(&name);
        self.insert_and_start(name.clone(), spec, false);
        let e = &self.pmf.tags[&name];
        if e.tag.starts() == 0 {
            if let TagState::Failed { reason } = e.tag.state() {
                let reason = reason.clone();
                self.pmf.tags.remove(&name);
                // Left dirty: the step's mirror drops its CMAP keys, which may be those of a tag of the
                // same name removed earlier in this step (a dirty tag that is gone is not stored).
                self.pmf.dirty.insert(name.clone());
                self.store.batch.delete_tags.push(name.to_string());
                return Err(err(ErrorCode::ExecFailed, format!("tag {name}: {reason}")));
            }
        }
        Ok(RunOutcome::Done(Response::Tag(Box::new(self.status_of(&name)))))
    }

    /// Adds a tag and starts it now, or parks it until the tags it starts after are running.
    /// The restart-storm throttling of a tag: its own from the config file, else the daemon's.
    pub fn storm_for(&self, name: &TagName, from_config: bool) -> Option<vigil_core::Storm> {
        match self.node.settings.storm_overrides.get(name) {
            Some(s) if from_config => *s,
            _ => self.node.settings.storm,
        }
    }

    /// Gives every tag the storm throttling the settings say (after a restore or a reload); a tag's
    /// current streak is kept.
    pub fn apply_storm_settings(&mut self) {
        let storms: Vec<(TagName, Option<vigil_core::Storm>)> = self
            .pmf
            .tags
            .iter()
            .map(|(n, e)| (n.clone(), self.storm_for(n, e.from_config)))
            .collect();
        for (n, s) in storms {
            if let Some(e) = self.pmf.tags.get_mut(&n) {
                e.tag.set_storm(s);
            }
        }
    }

    pub fn insert_and_start(&mut self, name: TagName, spec: vigil_core::TagSpec, from_config: bool) {
        let deps_ready = vigil_core::tag::after_ready(&spec.after, |d| self.pmf.tags.get(d).map(|e| &e.tag));
        let mut tag = Tag::new(name.clone(), spec);
        tag.set_storm(self.storm_for(&name, from_config));
        let fx = if deps_ready {
            tag.start().expect("a new tag can start")
        } else {
            tag.wait_for_deps();
            vec![]
        };
        self.pmf.tags.insert(
            name.clone(),
            Entry {
                tag,
                from_config,
                session: None,
                probe_failures: 0,
            },
        );
        self.pmf.dirty.insert(name.clone());
        self.apply(&name, fx);
    }

    /// Adds a config tag declared with `autostart = false`: stopped until a user starts it.
    pub fn insert_stopped(&mut self, name: TagName, spec: vigil_core::TagSpec) {
        let mut tag = Tag::new(name.clone(), spec);
        tag.set_storm(self.storm_for(&name, true));
        tag.declare_stopped();
        self.pmf.tags.insert(
            name.clone(),
            Entry {
                tag,
                from_config: true,
                session: None,
                probe_failures: 0,
            },
        );
        self.pmf.dirty.insert(name);
    }

    pub fn start(&mut self, caller: Caller, tag: &str) -> Answer {
        self.refuse_if_shutting_down()?;
        let name = self.owned(caller, tag, "start")?;
        let fx = self
            .pmf
            .tags
            .get_mut(&name)
            .expect("known")
            .tag
            .start()
            .map_err(refused)?;
        self.apply(&name, fx);
        Ok(Response::Ok)
    }

    pub fn modify(&mut self, caller: Caller, tag: &str, retries: Option<i64>, period: Option<i64>) -> Answer {
        let name = self.owned(caller, tag, "modify")?;
        let r = retries
            .map(|r| {
                Retries::from_i64(r).ok_or_else(|| {
                    err(
                        ErrorCode::InvalidArgument,
                        format!("retries {r} is out of range: use -1 (no limit) or 0 and up"),
                    )
                })
            })
            .transpose()?;
        let p = period
            .map(|p| {
                Period::from_secs_i64(p).ok_or_else(|| {
                    err(
                        ErrorCode::InvalidArgument,
                        format!("period {p} is out of range: use -1 (no limit) or 1 second and up"),
                    )
                })
            })
            .transpose()?;
        self.pmf.tags.get_mut(&name).expect("known").tag.modify(r, p);
        self.pmf.dirty.insert(name);
        Ok(Response::Ok)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn stop(
        &mut self,
        caller: Caller,
        tag: &str,
        signal: Option<i32>,
        wait_ms: Option<u64>,
        mode: StopMode,
        id: u64,
        out: &ConnTx,
    ) -> Option<Answer> {
        let verb = if mode == StopMode::Remove { "remove" } else { "stop" };
        let name = match self.owned(caller, tag, verb) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let signal = match signal.map(signal_number).transpose() {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let e = self.pmf.tags.get_mut(&name).expect("known");
        let signal = signal.unwrap_or(e.tag.spec().stop_signal);
        let timeout = wait_ms.map_or(e.tag.spec().stop_timeout, ms);
        let fx = e.tag.stop(signal, timeout, mode, now());
        self.apply(&name, fx);
        match wait_ms {
            None => Some(Ok(Response::Ok)),
            Some(w) => {
                // SIGKILL goes out when the wait runs out; allow a little for it to land.
                let deadline = Some(now().plus(ms(w) + Self::stop_grace()));
                self.pmf.waiters.push(Waiter {
                    until: WaitFor::TagIdle {
                        tag: name,
                        with_status: false,
                        viewer: caller.uid,
                    },
                    deadline,
                    out: out.clone(),
                    id,
                });
                None
            }
        }
    }

    /// `pmfadm -s`: see `Request::Release`.
    pub fn release(
        &mut self,
        caller: Caller,
        tag: &str,
        signal: Option<i32>,
        wait_ms: Option<u64>,
        id: u64,
        out: &ConnTx,
    ) -> Option<Answer> {
        let name = match self.owned(caller, tag, "stop") {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let signal = match signal.map(signal_number).transpose() {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let fx = self.pmf.tags.get_mut(&name).expect("known").tag.release(signal, now());
        self.apply(&name, fx);
        match wait_ms {
            None => Some(Ok(Response::Ok)),
            Some(w) => {
                // No SIGKILL follows: at the deadline whatever still runs is left running.
                self.pmf.waiters.push(Waiter {
                    until: WaitFor::TagIdle {
                        tag: name,
                        with_status: false,
                        viewer: caller.uid,
                    },
                    deadline: Some(now().plus(ms(w))),
                    out: out.clone(),
                    id,
                });
                None
            }
        }
    }

    pub fn kill(
        &mut self,
        caller: Caller,
        tag: &str,
        signal: i32,
        wait_ms: Option<u64>,
        id: u64,
        out: &ConnTx,
    ) -> Option<Answer> {
        let name = match self.owned(caller, tag, "signal") {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let signal = match signal_number(signal) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let tag = &self.pmf.tags[&name].tag;
        let procs = tag.tree().ids();
        let fx = match tag.kill(signal) {
            Ok(fx) => fx,
            Err(r) => return Some(Err(refused(r))),
        };
        self.apply(&name, fx);
        match wait_ms {
            None => Some(Ok(Response::Ok)),
            Some(w) => {
                let deadline = Some(now().plus(ms(w)));
                self.pmf.waiters.push(Waiter {
                    until: WaitFor::ProcsGone(name, procs),
                    deadline,
                    out: out.clone(),
                    id,
                });
                None
            }
        }
    }

    pub fn restart(&mut self, caller: Caller, tag: &str) -> Answer {
        self.refuse_if_shutting_down()?;
        let name = self.owned(caller, tag, "restart")?;
        if matches!(self.pmf.tags[&name].tag.state(), TagState::Stopping { .. }) {
            return Err(err(ErrorCode::Busy, format!("tag {name} is being stopped")));
        }
        let fx = self.pmf.tags.get_mut(&name).expect("known").tag.restart(now());
        self.apply(&name, fx);
        Ok(Response::Ok)
    }
}

/// How long the check of another user's programs may take before it is killed and the `Run` refused.
const RUN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

enum RunOutcome {
    Done(Response),
    /// The programs must be checked as the tag's user first, off the loop.
    Check(Box<RunCheck>),
}

/// What a check of a `Run`'s programs as another user needs, owned so that it can leave the loop.
struct RunCheck {
    name: String,
    /// The command, then the action program if any.
    programs: Vec<String>,
    cwd: Option<std::path::PathBuf>,
    uid: u32,
    gid: u32,
    /// The supplementary groups the tag will have (a named user's): they may open the way to a program.
    groups: Vec<u32>,
    path: std::ffi::OsString,
    run: RunArgs,
}

impl RunCheck {
    /// Checks each program as the tag's user, in its working directory and PATH (as `spawn` will
    /// start it), each within `RUN_CHECK_TIMEOUT`.
    fn check(&self) -> Answer {
        for (i, program) in self.programs.iter().enumerate() {
            vigil_sys::check_exec_within(
                &vigil_sys::SpawnSpec {
                    cwd: Some(self.cwd.as_deref().unwrap_or(std::path::Path::new("/"))),
                    uid: Some(self.uid),
                    gid: Some(self.gid),
                    groups: (!self.groups.is_empty()).then_some(self.groups.as_slice()),
                    search_path: Some(&self.path),
                    ..vigil_sys::SpawnSpec::new(std::path::Path::new(program), &[], &[], vigil_sys::Output::Null)
                },
                RUN_CHECK_TIMEOUT,
            )
            .map_err(|e| {
                let what = if i == 0 { "" } else { "action program: " };
                err(ErrorCode::ExecFailed, format!("tag {}: {what}{e}", self.name))
            })?;
        }
        Ok(Response::Ok)
    }
}

/// A signal a request names, checked where it comes off the wire: refused with the same words by stop,
/// release and kill.
fn signal_number(s: i32) -> Result<Signal, WireError> {
    Signal::new(s).map_err(|e| err(ErrorCode::InvalidArgument, e.to_string()))
}
