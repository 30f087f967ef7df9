//! Processes: starting a tag's command, watching every process of its tree, and noticing exits.
//!
//! Exits are learnt three ways, whichever comes first: the process connector's exit event (with the
//! status, for any process), vigild's own reaping of its children on SIGCHLD, and the pidfd of each
//! watched process becoming readable. No exit is judged before the connector has been read past it:
//! every fork of a process is queued before its exit, so a child forked just before its parent died is
//! in its tag's tree before the tag can be found empty. A process that was gone before it could be
//! watched leaves its lineage (`super::lineage`), through which its own children are still attributed;
//! the connector is read in `super::drain`.

use std::ffi::OsString;
use std::sync::Arc;

use tracing::{debug, warn};
use vigil_core::{Effect, Exit, ProcId, SpawnFailure, TagEvent, TagName};
use vigil_sys::{PidFd, SpawnSpec};

use crate::clock::now;
use crate::msg::Msg;
use crate::pmf::lineage::Adopted;
use crate::pmf::state::Watched;
use crate::state::{Daemon, SharedFd};

/// How long to wait, step by step, for another parent to reap a member before its status is "unknown".
const EXIT_RETRY: [std::time::Duration; 6] = [
    std::time::Duration::from_millis(5),
    std::time::Duration::from_millis(20),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(5),
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a process started for a tag is: its command, its action program, or one of its exec probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Command,
    Action,
    Probe,
}

impl Daemon {
    /// The environment of a tag's processes: what the user gave, over sane defaults. The command also
    /// gets systemd's notify variables (`NOTIFY_SOCKET`, and `WATCHDOG_USEC` with a watchdog).
    fn environment(&mut self, name: &TagName, role: Role) -> Vec<(OsString, OsString)> {
        // Reading /etc/passwd on every restart costs more than the rest of the restart path: cache it.
        let uid = self.pmf.tags[name].tag.spec().uid;
        let user = self
            .pmf
            .users
            .entry(uid)
            .or_insert_with(|| vigil_sys::user_by_uid(uid))
            .clone();
        let spec = self.pmf.tags[name].tag.spec();
        let mut env: Vec<(OsString, OsString)> = spec.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        let mut defaults: Vec<(&str, String)> = vec![
            ("PATH", DEFAULT_PATH.to_string()),
            ("VIGIL_TAG", name.to_string()),
            ("VIGIL_INSTANCE", spec.instance.to_string()),
        ];
        if let Some((user, _, home)) = user {
            defaults.push(("HOME", home.display().to_string()));
            defaults.push(("USER", user.clone()));
            defaults.push(("LOGNAME", user));
        }
        if role == Role::Command {
            if let Some(n) = &self.pmf.notify {
                defaults.push(("NOTIFY_SOCKET", n.address().to_string()));
            }
            if let Some(w) = spec.health.watchdog {
                defaults.push(("WATCHDOG_USEC", w.as_micros().to_string()));
            }
        }
        for (k, v) in defaults {
            if !spec.env.iter().any(|(ek, _)| ek == k) {
                env.push((k.into(), v.into()));
            }
        }
        if role == Role::Command {
            // The start marker is vigild's, never the user's: it is how the next vigild finds this
            // process should the record of this start not reach the store (see marks.rs).
            let generation = self.pmf.tags[name].tag.starts() + 1;
            env.retain(|(k, _)| k != crate::pmf::marks::VAR);
            let mark = self.pmf.marks.value(spec.uid, name.as_str(), generation);
            env.push((crate::pmf::marks::VAR.into(), mark.into()));
        }
        env
    }

    /// The tag's log, created (owned by the tag's user) and watched for rotation; the child opens it
    /// itself. vigild keeps no descriptor on it: one per tag beside each process's pidfd would run into
    /// RLIMIT_NOFILE with thousands of tags.
    ///
    /// A log that cannot be made ready does not keep the tag from running (supervision comes first, and
    /// the cause may pass, a full disk say): its output goes to /dev/null, and a `log_failed` event
    /// says so, with the reason, to whoever watches the events. Out of descriptors is different:
    /// starting without the log would lose the output for good, while a later try is likely to find one.
    fn prepare_log(&mut self, name: &TagName) -> Result<Option<std::path::PathBuf>, SpawnFailure> {
        let s = self.pmf.tags[name].tag.spec();
        let (uid, gid) = (s.uid, s.gid);
        match self.pmf.logs.prepare(name, uid, gid) {
            Ok(path) => Ok(Some(path)),
            Err(e) if e.raw_os_error().is_some_and(vigil_sys::is_resource_shortage) => Err(SpawnFailure {
                reason: format!("cannot open the log: {e}"),
                temporary: true,
            }),
            Err(e) => {
                warn!(tag = %name, "cannot open log: {e}");
                let reason = format!("cannot open the log ({e}); output goes to /dev/null");
                self.emit_tag_event(name, TagEvent::LogFailed { reason });
                Ok(None)
            }
        }
    }

    /// The log of a tag whose processes outlived the previous vigild: watched again for rotation, and its
    /// owner and mode checked, as at a start.
    pub fn readopt_log(&mut self, name: &TagName) {
        let Some(s) = self
            .pmf
            .tags
            .get(name)
            .filter(|e| !e.tag.tree().is_empty())
            .map(|e| e.tag.spec())
        else {
            return;
        };
        let (uid, gid) = (s.uid, s.gid);
        if let Err(e) = self.pmf.logs.prepare(name, uid, gid) {
            warn!(tag = %name, "cannot watch the log: {e}");
        }
    }

    /// Starts `argv` for a tag: its user, environment, working directory and log (a probe's output goes
    /// to /dev/null: a check every few seconds would drown the tag's own output).
    /// A failure says whether it was a shortage of descriptors, processes or memory (worth another try).
    pub fn start_process(
        &mut self,
        name: &TagName,
        argv: &[String],
        role: Role,
    ) -> Result<vigil_sys::Spawned, SpawnFailure> {
        let env = self.environment(name, role);
        let log = if role == Role::Probe {
            None
        } else {
            self.prepare_log(name)?
        };
        let spec = self.pmf.tags[name].tag.spec();
        let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
        let switch = self.node.uid == 0 && (spec.uid != 0 || spec.gid != 0);
        // Another user's program is looked for by the child, as that user: root looking for it would
        // tell that user which files exist where only root may look.
        let program = if switch {
            std::path::PathBuf::from(&argv[0])
        } else {
            vigil_sys::resolve_program(&argv[0], path).map_err(|e| SpawnFailure {
                temporary: e.is_resource_shortage(),
                reason: e.to_string(),
            })?
        };
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let home = env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| std::path::PathBuf::from(v));
        // Without a working directory of its own, the tag starts in its home if it can enter it, else
        // in / (decided by the child, as the tag's user, for the reason above).
        let (cwd, cwd_or_root) = match &spec.cwd {
            Some(c) => (std::path::PathBuf::from(c), false),
            None if switch => (home.unwrap_or_else(|| "/".into()), true),
            None => (home.filter(|h| h.is_dir()).unwrap_or_else(|| "/".into()), false),
        };
        // With timestamps, the output goes through the stamper's pipe (see stamp.rs); if it cannot be
        // started, to the log as it is, which the event says.
        let mut stamped = None;
        let (timestamps, ids) = (spec.res.log_timestamps, switch.then_some((spec.uid, spec.gid)));
        if let (Some(path), true, false) = (&log, timestamps, role == Role::Probe) {
            match crate::stamp::start(path, ids) {
                Ok(w) => stamped = Some(w),
                Err(e) => {
                    warn!(tag = %name, "cannot start the log's timestamps: {e}");
                    let reason = format!("cannot start the log's timestamps ({e}); lines go to the log without");
                    self.emit_tag_event(name, TagEvent::LogFailed { reason });
                }
            }
        }
        let spec = self.pmf.tags[name].tag.spec();
        let sspec = SpawnSpec {
            program: &program,
            argv: &argv,
            env: &env,
            cwd: Some(&cwd),
            uid: switch.then_some(spec.uid),
            gid: switch.then_some(spec.gid),
            output: match (&stamped, &log) {
                (Some(pipe), _) => vigil_sys::Output::Fd(std::os::fd::AsFd::as_fd(pipe)),
                (None, Some(path)) => vigil_sys::Output::Append(path),
                (None, None) => vigil_sys::Output::Null,
            },
            // Each in a session of its own: a stop signals the tag's processes, and a probe that runs
            // out of time is killed with its whole process group.
            new_session: true,
            // As systemd: the pid the watchdog belongs to, which a library compares with its own.
            pid_env: (role == Role::Command
                && spec.health.watchdog.is_some()
                && !env.iter().any(|(k, _)| k == "WATCHDOG_PID"))
            .then_some("WATCHDOG_PID"),
            search_path: if switch { path } else { None },
            cwd_or_root,
            ..SpawnSpec::new(&program, &[], &[], vigil_sys::Output::Null)
        };
        let limits = crate::tag_res::child_limits(&spec.res);
        let sspec = SpawnSpec {
            groups: (switch && !spec.res.groups.is_empty()).then_some(spec.res.groups.as_slice()),
            limits: &limits,
            nice: spec.res.nice,
            umask: spec.res.umask,
            // A probe's output goes to /dev/null, its stderr too.
            stderr: spec
                .res
                .stderr_log
                .as_deref()
                .filter(|_| role != Role::Probe)
                .map(std::path::Path::new),
            ..sspec
        };
        vigil_sys::spawn(&sspec).map_err(|e| SpawnFailure {
            temporary: e.is_resource_shortage(),
            reason: e.to_string(),
        })
    }

    /// Carries out `Effect::Spawn`.
    pub fn spawn_tag(&mut self, name: &TagName) -> Vec<Effect> {
        let argv = self.pmf.tags[name].tag.spec().command.clone();
        match self.start_process(name, &argv, Role::Command) {
            Ok(sp) => {
                // The new process is runnable on this CPU: let it go first, the bookkeeping can wait.
                vigil_sys::yield_cpu();
                let id = ProcId {
                    pid: sp.pid,
                    start_time: sp.start_time,
                };
                self.watch(name, id, Arc::new(sp.pidfd));
                let e = self.pmf.tags.get_mut(name).expect("present");
                e.session = Some(sp.pid);
                e.tag.spawned(id, now())
            }
            Err(err) => {
                warn!(tag = %name, temporary = err.temporary, "cannot start: {}", err.reason);
                self.pmf
                    .tags
                    .get_mut(name)
                    .expect("present")
                    .tag
                    .spawn_failed(err, now())
            }
        }
    }

    /// Carries out `Effect::RunAction`: `PROGRAM failed TAG`.
    pub fn run_action(&mut self, name: &TagName) -> Vec<Effect> {
        let Some(program) = self.pmf.tags[name].tag.spec().action.clone() else {
            return vec![];
        };
        let argv = vec![program, "failed".to_string(), name.to_string()];
        match self.start_process(name, &argv, Role::Action) {
            Ok(sp) => {
                // The reaper reports its status; the pidfd is not needed.
                self.pmf.actions.insert(sp.pid, name.clone());
                vec![]
            }
            Err(err) => {
                warn!(tag = %name, "cannot run the action program: {}", err.reason);
                self.pmf
                    .tags
                    .get_mut(name)
                    .expect("present")
                    .tag
                    .action_exited(Exit::Code(127))
            }
        }
    }

    /// Adds a process to a tag's watch list, with a task that reports when its pidfd becomes readable.
    pub fn watch(&mut self, name: &TagName, id: ProcId, pidfd: Arc<PidFd>) {
        self.watch_for(Some(name.clone()), false, id, pidfd);
    }

    /// Watches a PSM member.
    pub fn watch_member(&mut self, id: ProcId, pidfd: Arc<PidFd>) {
        self.watch_for(None, true, id, pidfd);
    }

    fn watch_for(&mut self, tag: Option<TagName>, member: bool, id: ProcId, pidfd: Arc<PidFd>) {
        if let Some(w) = self.pmf.procs.get_mut(&id.pid).filter(|w| w.id == id) {
            // Already watched for the other reason: one watcher serves both.
            w.member |= member;
            if tag.is_some() {
                w.tag = tag;
            }
            return;
        }
        let tx = self.node.tx.clone();
        let fd = pidfd.clone();
        let task = tokio::spawn(async move {
            match SharedFd::register(fd) {
                Ok(afd) => {
                    let _ = afd.readable().await;
                }
                Err(e) => warn!(pid = id.pid, "cannot watch pidfd: {e}"),
            }
            let _ = tx.send(Msg::Exited {
                pid: id.pid,
                start_time: id.start_time,
            });
        });
        if let Some(old) = self.pmf.procs.insert(
            id.pid,
            Watched {
                id,
                tag,
                member,
                pidfd,
                task,
            },
        ) {
            old.task.abort();
        }
    }

    /// Opens a pidfd on a live process and checks that it is the process we think it is.
    fn open_checked(id: ProcId) -> Option<PidFd> {
        let fd = PidFd::open(id.pid).ok()?;
        (vigil_sys::start_time(id.pid).ok()? == id.start_time).then_some(fd)
    }

    /// A newly seen process belongs to a tag at `depth`: watch it.
    pub(crate) fn adopt_child(&mut self, name: &TagName, pid: i32, depth: u32) -> Adopted {
        if self.pmf.tags[name].tag.tree().contains(pid) {
            return Adopted::Known;
        }
        let Ok(st) = vigil_sys::start_time(pid) else {
            return Adopted::Gone;
        };
        let id = ProcId { pid, start_time: st };
        let Some(fd) = Self::open_checked(id) else {
            return Adopted::Gone;
        };
        self.pmf.tags.get_mut(name).expect("present").tag.adopt(id, depth);
        self.pmf.dirty.insert(name.clone());
        self.watch(name, id, Arc::new(fd));
        Adopted::New
    }

    /// Reaps vigild's exited children: actions and probes by pid, the rest by a walk over every child
    /// (bounded in rate with thousands of children, `crate::pmf::reap_scan`).
    pub fn reap(&mut self) {
        // Reap everything first, then act: acting restarts tags, and a command that exits at once would
        // otherwise keep this loop busy forever, starving every request (a livelock seen with
        // `sh -c 'exit 0'` under retries -1). New zombies are reaped on the next turn of the loop.
        let mut reaped = Vec::new();
        // Action programs and probes by their pid: the kernel looks at that one process, and none of
        // these pids can name another process yet, since it is not reaped. A tag's process is reaped
        // through its pidfd when its exit is reported (`detach`).
        let ours: Vec<i32> = self
            .pmf
            .actions
            .keys()
            .chain(self.pmf.probe_children.keys())
            .copied()
            .collect();
        for pid in ours {
            match vigil_sys::try_reap_child(pid) {
                Ok(Some(status)) => reaped.push((pid, status, None)),
                Ok(None) => {}
                Err(e) => warn!("reap {pid}: {e}"),
            }
        }
        // The walk over every child, for what nothing else reports; bounded in rate (see reap_scan.rs).
        let children = self.pmf.procs.len() + self.pmf.actions.len() + self.pmf.probe_children.len();
        let mut walk = self.pmf.reap_scan.ask(children, std::time::Instant::now());
        while walk {
            match vigil_sys::reap_any() {
                // With the identity watched under that pid now: once reaped, the pid may be reused, and
                // the connector read below may find the new process a tag's.
                Ok(Some((pid, status))) => reaped.push((pid, status, self.pmf.procs.get(&pid).map(|w| w.id))),
                Ok(None) => walk = false,
                Err(e) => {
                    warn!("reap: {e}");
                    walk = false;
                }
            }
        }
        // The connector is read after the reaping: the processes reaped had exited, so every fork they
        // made is queued by now and their children are in their trees before their exits are judged.
        self.drain_connector();
        for (pid, status, id) in reaped {
            let exit = crate::convert::exit_from_wait(status);
            if let Some(name) = self.pmf.actions.remove(&pid) {
                let fx = self
                    .pmf
                    .tags
                    .get_mut(&name)
                    .map(|e| e.tag.action_exited(exit))
                    .unwrap_or_default();
                self.apply(&name, fx);
            } else if let Some(reply) = self.pmf.probe_children.remove(&pid) {
                // The probe's task may have given up on it already.
                let _ = reply.send(exit);
            } else if id.is_some() && self.pmf.procs.get(&pid).map(|w| w.id) == id {
                self.proc_gone(pid, exit);
            }
        }
    }

    /// A pidfd became readable.
    pub fn on_exited(&mut self, pid: i32, start_time: u64) {
        // Most of these arrive after the connector or the reaper already handled the exit: cheap to drop,
        // so that a storm of them cannot delay the requests queued behind them.
        if self.pmf.procs.get(&pid).is_none_or(|w| w.id.start_time != start_time) {
            return;
        }
        // It has exited, so every fork it made is queued: the connector is read first, which most often
        // reports this exit too, together with the others of the moment (one batch of restarts).
        self.drain_connector();
        let Some(w) = self.pmf.procs.get(&pid).filter(|w| w.id.start_time == start_time) else {
            return;
        };
        // Our child: reaped by its pidfd, which gives the status without a walk over every child.
        let exit = match w.pidfd.try_reap() {
            Ok(Some(s)) => crate::convert::exit_from_wait(s),
            _ => match w.pidfd.exit_status() {
                Ok(Some(s)) => crate::convert::exit_from_wait(s),
                _ => Exit::Unknown,
            },
        };
        if exit == Exit::Unknown && w.tag.is_none() {
            // A member that is someone else's child: the kernel keeps its status for the pidfd only once
            // its parent has reaped it, which may take a moment. Ask again a few times before settling
            // for "unknown" (a tag's process is not kept waiting: its restart comes first).
            self.pmf.exit_retries.push((w.id, 0, now().plus(EXIT_RETRY[0])));
            return;
        }
        self.proc_gone(pid, exit);
    }

    /// Asks again for the exit status of members whose parents had not reaped them yet.
    pub fn retry_exits(&mut self) {
        let now = now();
        let due: Vec<(ProcId, usize)> = self
            .pmf
            .exit_retries
            .iter()
            .filter(|(_, _, at)| *at <= now)
            .map(|(id, n, _)| (*id, *n))
            .collect();
        self.pmf.exit_retries.retain(|(_, _, at)| *at > now);
        for (id, attempt) in due {
            let Some(w) = self.pmf.procs.get(&id.pid).filter(|w| w.id == id) else {
                continue;
            };
            match w.pidfd.exit_status() {
                Ok(Some(s)) => self.proc_gone(id.pid, crate::convert::exit_from_wait(s)),
                _ if attempt + 1 < EXIT_RETRY.len() => {
                    self.pmf
                        .exit_retries
                        .push((id, attempt + 1, now.plus(EXIT_RETRY[attempt + 1])));
                }
                _ => self.proc_gone(id.pid, Exit::Unknown),
            }
        }
    }

    /// A watched process is gone: tell its tag and the process set.
    pub fn proc_gone(&mut self, pid: i32, exit: Exit) {
        let Some((tag, Some(watched))) = self.detach(pid, exit) else {
            return;
        };
        let fx = match self.pmf.tags.get_mut(&tag) {
            Some(e) => e.tag.judge_exits(watched, (pid, exit), now()),
            None => return,
        };
        self.apply(&tag, fx);
    }

    /// A watched process is gone: out of the process set, the PSM and its tag's tree at once, so that
    /// its pid names nothing of ours any more. Whether the tag is now empty is left to the caller.
    /// Returns its tag, if any, and whether that tag's level watched it (None: it was not in the tree).
    pub(crate) fn detach(&mut self, pid: i32, exit: Exit) -> Option<(TagName, Option<bool>)> {
        let w = self.pmf.procs.remove(&pid)?;
        w.task.abort();
        // Reaped now if it is vigild's child: exactly this process (a pidfd names no later one), and
        // without the walk over every child that `reap_any` makes. Not ours, or reaped already: nothing.
        if let Err(e) = w.pidfd.try_reap() {
            warn!(pid, "reap: {e}");
        }
        debug!(tag = ?w.tag, member = w.member, pid, "exited: {exit}");
        if w.member {
            self.psm_exited(w.id, exit);
        }
        let tag = w.tag?;
        if self.pmf.connector.is_none() {
            // Without fork events, look for descendants now: orphans come back to vigild (subreaper).
            // Before the process leaves the tree, so that its zombie is not taken for a new process.
            self.rescan(&tag);
        }
        let watched = self.pmf.tags.get_mut(&tag).and_then(|e| e.tag.exit_recorded(pid, exit));
        if watched.is_some() {
            self.pmf.dirty.insert(tag.clone());
        }
        Some((tag, watched))
    }

    /// Finds descendants the hard way, from one snapshot of /proc: children of every process in the tree,
    /// and orphans of the tag's session that were reparented to vigild (a subreaper).
    pub fn rescan(&mut self, name: &TagName) {
        let table = vigil_sys::ProcTable::snapshot();
        self.rescan_with(name, &table);
    }

    pub fn rescan_with(&mut self, name: &TagName, table: &vigil_sys::ProcTable) {
        let unknown = self.unknown_children(table);
        self.rescan_among(name, table, &unknown);
    }

    /// Rescans the trees of `names` from one snapshot of /proc. vigild's unknown children are listed once
    /// for all of them: per tag, that would be every tag times every child of vigild (10^8 lookups with
    /// 10,000 tags after a connector overrun, seconds of a loop that answers nobody).
    pub fn rescan_all(&mut self, names: &[TagName]) {
        let table = vigil_sys::ProcTable::snapshot();
        let unknown = self.unknown_children(&table);
        for n in names {
            self.rescan_among(n, &table, &unknown);
        }
    }

    /// vigild's children in `table` that it neither watches nor started as an action or a probe: the
    /// orphans that came back to it (a subreaper), whichever tag they belong to.
    fn unknown_children(&self, table: &vigil_sys::ProcTable) -> Vec<i32> {
        table
            .children(std::process::id() as i32)
            .iter()
            .copied()
            .filter(|p| {
                !self.pmf.procs.contains_key(p)
                    && !self.pmf.actions.contains_key(p)
                    && !self.pmf.probe_children.contains_key(p)
            })
            .collect()
    }

    /// `rescan_with`, the orphans looked for among `unknown` (see [`Daemon::unknown_children`]).
    fn rescan_among(&mut self, name: &TagName, table: &vigil_sys::ProcTable, unknown: &[i32]) {
        let Some(e) = self.pmf.tags.get(name) else { return };
        let session = e.session;
        let mut queue: Vec<(i32, u32)> = e.tag.tree().all().map(|p| (p.id.pid, p.depth)).collect();
        if let Some(sid) = session {
            // An orphan's original depth is lost with its parent; the shallowest it can be is 1. One
            // adopted by an earlier tag of the same rescan is watched by now.
            let orphans: Vec<i32> = unknown
                .iter()
                .copied()
                .filter(|p| !self.pmf.procs.contains_key(p))
                .filter(|p| table.stat(*p).is_some_and(|s| s.session == sid))
                .collect();
            for pid in orphans {
                if self.adopt_child(name, pid, 1) == Adopted::New {
                    queue.push((pid, 1));
                }
            }
        }
        while let Some((pid, depth)) = queue.pop() {
            for &child in table.children(pid) {
                if !self.pmf.procs.contains_key(&child) && self.adopt_child(name, child, depth + 1) == Adopted::New {
                    queue.push((child, depth + 1));
                }
            }
        }
    }

    /// After a restart of vigild: re-adopt the processes of a tag that are still alive (same pid and
    /// start time), and let the rules handle the ones that died meanwhile.
    pub fn readopt(&mut self, name: &TagName, procs: Vec<(ProcId, u32)>) {
        let mut lost = Vec::new();
        for (id, depth) in procs {
            match Self::open_checked(id) {
                Some(fd) => {
                    self.pmf.tags.get_mut(name).expect("present").tag.adopt(id, depth);
                    self.watch(name, id, Arc::new(fd));
                }
                None => lost.push((id, depth)),
            }
        }
        for (id, depth) in lost {
            // Put it back so that the rules see its exit like any other.
            self.pmf.tags.get_mut(name).expect("present").tag.adopt(id, depth);
            self.emit_tag_event(name, TagEvent::Lost { proc: id });
            let fx = self
                .pmf
                .tags
                .get_mut(name)
                .expect("present")
                .tag
                .exited(id.pid, Exit::Unknown, now());
            self.apply(name, fx);
        }
    }
}
