//! The state machine of a PMF tag.
//!
//! | state     | event                         | next state / effects                                       |
//! |-----------|-------------------------------|------------------------------------------------------------|
//! | Stopped   | start                         | Spawn                                                      |
//! | Waiting   | deps_ready                    | Spawn                                                      |
//! | (any)     | spawned                       | Running; Emit start/restart                                |
//! | (any)     | spawn_failed, permanent       | Failed; Emit failed                                        |
//! | (any)     | spawn_failed, resource short  | Backoff + Timer (growing delay); Emit spawn_retry          |
//! | Running   | last watched process exits    | budget left: Spawn (or Backoff + Timer); Emit exit/restart |
//! |           |                               | spent, action: Action + RunAction; spent: Failed           |
//! |           | ... a quick death (storm)     | from the Nth in a row: Backoff + Timer; Emit throttled     |
//! | Backoff   | timer                         | Spawn (the start that was put off)                         |
//! | Action    | action exits 0 / non-zero     | budget reset + Spawn / Remove                              |
//! | Running.. | stop                          | Stopping + Signal(all) + Timer(deadline)                   |
//! | Stopping  | timer past deadline           | Signal(SIGKILL, all) (not after a release)                 |
//! | Running.. | release (pmfadm -s)           | Stopping(remove) + Signal(all) if a signal was given       |
//! | Stopping  | last process of the tree exits| Stopped / Spawn (restart) / Remove, as requested           |
//! | Running   | timer: watchdog deadline past | Emit unhealthy; Stopping(recover) + Signal(all) + Timer    |
//! | Running   | timer: a probe is due         | RunProbe + Timer(next check)                               |
//! | Running   | probe failed `threshold` times| as a missed watchdog                                       |
//! | Running   | notify from a process of ours | ready / status / ping; WATCHDOG=trigger as a missed one    |
//! | Stopping  | tree empty, recover           | Emit exit; as "last watched process exits" (budget counts) |
//! | Running   | timer: up `start_secs`        | counts as running (`up`); Emit up                          |
//! | Running   | READY=1, the tag uses notify  | counts as running (`up`); Emit ready                       |
//! | Running   | last exit, a success, was up  | `on-failure`/`never`: Exited, the budget untouched         |
//! | Running   | last exit, a failure, `never` | Failed                                                     |
//!
//! What counts as a success, and the restart policies: `policy.rs`.
//!
//! What a tag does when vigild starts again, when a reload changes its spec, and when the tags it starts
//! after are running: `tag/lifecycle.rs`, with its own table.

use std::time::Duration;

use crate::budget::{Period, RestartBudget, Retries, Storm};
use crate::event::TagEvent;
use crate::health::{Health, HealthFailure, Notify};
use crate::names::TagName;
use crate::signal::Signal;
use crate::spec::TagSpec;
use crate::time::Timestamp;
use crate::tree::{Exit, ProcId, ProcTree};

mod access;
mod lifecycle;
mod policy;

pub use access::Saved;
pub use lifecycle::after_ready;

pub const SIGKILL: i32 = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagState {
    /// Declared with `after`: waits until the tags it names are running.
    Waiting,
    Running,
    /// Waiting out the backoff before an automatic restart.
    Backoff {
        until: Timestamp,
    },
    /// The action program decides whether the tag restarts or goes.
    Action,
    Stopping {
        deadline: Timestamp,
        then: StopMode,
        killed: bool,
    },
    Stopped,
    Failed {
        reason: String,
    },
    /// The last instance ended in a success and the restart policy does not restart it.
    Exited,
}

impl TagState {
    pub fn name(&self) -> &'static str {
        match self {
            TagState::Waiting => "waiting",
            TagState::Running => "running",
            TagState::Backoff { .. } => "backoff",
            TagState::Action => "action",
            TagState::Stopping { .. } => "stopping",
            TagState::Stopped => "stopped",
            TagState::Failed { .. } => "failed",
            TagState::Exited => "exited",
        }
    }
}

/// What happens once a stop has emptied the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Stay stopped (`vigil stop`).
    Stay,
    /// Start again, not counted against the budget (`vigil restart`, a changed config).
    Restart,
    /// Forget the tag (`vigil rm`, a tag gone from the config).
    Remove,
    /// vigild is shutting down: stop, but start again when vigild next starts.
    Shutdown,
    /// A health check failed: once the tree is empty, carry on as after a crash (the budget counts).
    Recover,
}

/// Why a request was refused; the tag is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("tag {0} is already running")]
    AlreadyRunning(TagName),
    #[error("tag {0} has no running process")]
    NoProcesses(TagName),
    #[error("tag {0} is being stopped")]
    Stopping(TagName),
    #[error("pid {1} is not a process of tag {0}")]
    Stranger(TagName, i32),
}

/// What the caller must carry out for the rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start the command; report back with `spawned` or `spawn_failed`.
    Spawn,
    Signal {
        signal: Signal,
        procs: Vec<ProcId>,
    },
    /// Call `timer` at (or after) this time.
    Timer(Timestamp),
    /// Run `ACTION failed TAG`; report back with `action_exited`.
    RunAction,
    Emit(TagEvent),
    /// The tag is gone: forget it.
    Remove,
    /// Run probe `index` of the spec for the instance numbered `instance` (`Tag::starts`); report back
    /// with `probe_done`.
    RunProbe {
        index: usize,
        instance: u64,
    },
}

/// Why a start could not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnFailure {
    pub reason: String,
    /// The system was short of a resource (descriptors, processes, memory): a later try may succeed, so
    /// the tag is not failed for it.
    pub temporary: bool,
}

/// Why a tag in `Backoff` waits beyond its own backoff, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub until: Timestamp,
    pub delay: Duration,
    pub cause: ThrottleCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThrottleCause {
    /// It died this many times in a row within the storm threshold of its start.
    QuickDeaths(u32),
    /// Its start failed for want of a resource, this many times in a row.
    SpawnFailed { reason: String, attempt: u32 },
}

impl std::fmt::Display for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            ThrottleCause::QuickDeaths(n) => write!(
                f,
                "throttled: {n} quick exits in a row; next start after {} ms",
                self.delay.as_millis()
            ),
            ThrottleCause::SpawnFailed { reason, attempt } => write!(
                f,
                "start failed for want of a resource ({reason}); try {} after {} ms",
                attempt + 1,
                self.delay.as_millis()
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    First,
    Restart { counted: bool },
}

/// One PMF tag: its spec, its state, its processes and its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    name: TagName,
    spec: TagSpec,
    state: TagState,
    tree: ProcTree,
    budget: RestartBudget,
    /// Whether the tag should run when vigild starts (false once the user stops it).
    enabled: bool,
    /// The process started last (depth 0).
    main: Option<ProcId>,
    started_at: Option<Timestamp>,
    last_exit: Option<(i32, Exit)>,
    /// Starts of the command in the life of the tag.
    starts: u64,
    /// Consecutive quick failures, for the backoff.
    quick_failures: u32,
    pending: Option<StartKind>,
    /// Watched processes of the current instance that have exited (to tell this instance's exits from
    /// the previous one's).
    instance_exits: Vec<i32>,
    /// The health checks of the current instance.
    health: Health,
    /// Restart-storm throttling (`None`: off). Not part of the spec: it is a daemon policy that a
    /// config-declared tag may override, and changing it never restarts the tag.
    storm: Option<Storm>,
    /// Consecutive deaths within the storm threshold of the start.
    quick_deaths: u32,
    /// Consecutive starts that failed for want of a resource.
    spawn_retries: u32,
    /// The start a `Backoff` puts off, when it is not a counted restart.
    deferred: Option<StartKind>,
    /// Why the current `Backoff` waits, when storm throttling or a resource shortage made it.
    throttle: Option<Throttle>,
    /// The current instance counts as running: it lived `start_secs`, or said `READY=1` when the tag
    /// uses notify. A death before that is a failed start.
    up: bool,
}

impl Tag {
    pub fn new(name: TagName, spec: TagSpec) -> Tag {
        Tag {
            name,
            spec,
            state: TagState::Stopped,
            tree: ProcTree::default(),
            budget: RestartBudget::default(),
            enabled: true,
            main: None,
            started_at: None,
            last_exit: None,
            starts: 0,
            quick_failures: 0,
            pending: None,
            instance_exits: Vec::new(),
            health: Health::default(),
            storm: Some(Storm::default()),
            quick_deaths: 0,
            spawn_retries: 0,
            deferred: None,
            throttle: None,
            up: false,
        }
    }

    fn instance_pids_contain(&self, pid: i32) -> bool {
        self.instance_exits.contains(&pid)
    }

    /// Whether the tag has a process or is about to (a second `run` of it is an error).
    pub fn is_active(&self) -> bool {
        !matches!(
            self.state,
            TagState::Stopped | TagState::Failed { .. } | TagState::Exited
        )
    }

    /// Whether the current instance counts as running (see `up`).
    pub fn is_up(&self) -> bool {
        self.state == TagState::Running && self.up
    }

    pub fn restarts_used(&self, now: Timestamp) -> u32 {
        self.budget.used(self.spec.period, now)
    }

    /// Starts a stopped or failed tag with a fresh budget.
    pub fn start(&mut self) -> Result<Vec<Effect>, Refused> {
        match self.state {
            TagState::Stopped | TagState::Failed { .. } | TagState::Exited | TagState::Waiting
                if self.tree.is_empty() =>
            {
                self.enabled = true;
                self.budget.reset();
                self.quick_failures = 0;
                self.quick_deaths = 0;
                Ok(self.spawn(StartKind::First))
            }
            TagState::Stopping { .. } => Err(Refused::Stopping(self.name.clone())),
            _ => Err(Refused::AlreadyRunning(self.name.clone())),
        }
    }

    /// Parks a tag until the tags it starts after are running.
    pub fn wait_for_deps(&mut self) {
        self.enabled = true;
        self.state = TagState::Waiting;
    }

    pub fn deps_ready(&mut self) -> Vec<Effect> {
        if self.state == TagState::Waiting {
            self.spawn(StartKind::First)
        } else {
            vec![]
        }
    }

    fn spawn(&mut self, kind: StartKind) -> Vec<Effect> {
        self.pending = Some(kind);
        vec![Effect::Spawn]
    }

    /// A decided start will not happen (vigild is shutting down): the tag rests as stopped, enabled, and
    /// starts with the next vigild.
    pub fn cancel_start(&mut self) {
        self.pending = None;
        self.deferred = None;
        self.throttle = None;
        self.state = TagState::Stopped;
    }

    /// A tag recorded as running whose processes all vanished without a trace (a reboot): start afresh.
    pub fn restart_vanished(&mut self) -> Vec<Effect> {
        self.state = TagState::Stopped;
        self.start().unwrap_or_default()
    }

    /// The command was started as `id`.
    pub fn spawned(&mut self, id: ProcId, now: Timestamp) -> Vec<Effect> {
        let kind = self.pending.take().unwrap_or(StartKind::First);
        self.tree.insert(id, 0);
        self.instance_exits.clear();
        self.main = Some(id);
        self.started_at = Some(now);
        self.starts += 1;
        self.spawn_retries = 0;
        self.deferred = None;
        self.throttle = None;
        self.state = TagState::Running;
        self.health = Health::start(&self.spec.health, now);
        self.up = self.spec.supervision.up_at_start();
        let ev = match kind {
            StartKind::First => TagEvent::Start { pid: id.pid },
            StartKind::Restart { counted } => TagEvent::Restart { pid: id.pid, counted },
        };
        let mut fx = vec![Effect::Emit(ev)];
        fx.extend(self.health.next_due().map(Effect::Timer));
        fx.extend(self.up_due().map(Effect::Timer));
        fx
    }

    /// The command could not be started. A permanent error (no such program, permission denied) fails
    /// the tag at once rather than looping on what a retry cannot cure; a shortage of descriptors,
    /// processes or memory is some other process's doing and passes: the start is tried again after a
    /// growing delay, and never counts against the budget.
    pub fn spawn_failed(&mut self, failure: SpawnFailure, now: Timestamp) -> Vec<Effect> {
        let kind = self.pending.take();
        if !failure.temporary {
            self.throttle = None;
            self.state = TagState::Failed {
                reason: failure.reason.clone(),
            };
            return vec![Effect::Emit(TagEvent::Failed { reason: failure.reason })];
        }
        self.spawn_retries = self.spawn_retries.saturating_add(1);
        let delay = self.storm.unwrap_or_default().retry_delay(self.spawn_retries);
        let until = now.plus(delay);
        self.deferred = kind;
        self.state = TagState::Backoff { until };
        self.throttle = Some(Throttle {
            until,
            delay,
            cause: ThrottleCause::SpawnFailed {
                reason: failure.reason.clone(),
                attempt: self.spawn_retries,
            },
        });
        vec![
            Effect::Emit(TagEvent::SpawnRetry {
                reason: failure.reason,
                attempt: self.spawn_retries,
                delay,
            }),
            Effect::Timer(until),
        ]
    }

    /// A process of the tree forked; returns whether the child belongs to this tag.
    pub fn forked(&mut self, parent: i32, child: ProcId) -> bool {
        self.tree.on_fork(parent, child).is_some()
    }

    /// A process of the tree exited.
    pub fn exited(&mut self, pid: i32, exit: Exit, now: Timestamp) -> Vec<Effect> {
        match self.exit_recorded(pid, exit) {
            Some(watched) => self.judge_exits(watched, (pid, exit), now),
            None => vec![],
        }
    }

    /// A process of the tree exited: it leaves the tree at once, but whether the tag is now empty is
    /// left to `judge_exits`, so that a caller reading a batch of fork and exit events can first take
    /// every fork of the batch (a child forked just before its parent died). Returns whether the level
    /// watched it, or None when it was not in the tree.
    pub fn exit_recorded(&mut self, pid: i32, exit: Exit) -> Option<bool> {
        let p = self.tree.remove(pid)?;
        let watched = self.spec.level.watches(p.depth);
        // The status that explains an instance's end is a failure if there was one: a helper exiting 0
        // after the service crashed must not hide the crash, nor a launcher script's exit 0 hide the
        // daemon's later SIGSEGV.
        if watched {
            let recorded_clean = match self.last_exit {
                Some((p, e)) => e == Exit::Code(0) || !self.instance_pids_contain(p),
                None => true,
            };
            if exit != Exit::Code(0) || recorded_clean {
                self.last_exit = Some((pid, exit));
            }
            self.instance_exits.push(pid);
        }
        Some(watched)
    }

    /// After exits recorded by `exit_recorded`: the tag is judged on its tree as it is now. `watched`
    /// says whether any of those exits was of a watched process, `last` is the latest of them.
    pub fn judge_exits(&mut self, watched: bool, last: (i32, Exit), now: Timestamp) -> Vec<Effect> {
        match self.state {
            TagState::Running if watched && self.tree.watched(self.spec.level).next().is_none() => {
                let (pid, exit) = self.last_exit.unwrap_or(last);
                let mut fx = vec![Effect::Emit(TagEvent::Exit { pid, exit })];
                fx.extend(self.after_last_exit(Some(exit), now));
                fx
            }
            TagState::Stopping { then, .. } if self.tree.is_empty() => self.finish_stop(then, now),
            _ => vec![],
        }
    }

    /// The last watched process is gone, having ended with `exit` (None: stopped for a failed health
    /// check, a failure whatever its status): the restart policy may end the tag here; else restart
    /// within the budget, or give the action program the say.
    fn after_last_exit(&mut self, exit: Option<Exit>, now: Timestamp) -> Vec<Effect> {
        let ran_for = self.started_at.map_or(Duration::ZERO, |s| now.since(s));
        match self.storm {
            Some(s) if s.is_quick(ran_for) => self.quick_deaths = self.quick_deaths.saturating_add(1),
            _ => self.quick_deaths = 0,
        }
        if let Some(fx) = self.by_policy(exit) {
            return fx;
        }
        if !self.budget.try_consume(self.spec.retries, self.spec.period, now) {
            return match &self.spec.action {
                Some(program) => {
                    self.state = TagState::Action;
                    vec![
                        Effect::RunAction,
                        Effect::Emit(TagEvent::Action {
                            program: program.clone(),
                        }),
                    ]
                }
                None => {
                    let reason = format!(
                        "retry budget spent: {} restart(s) within {}",
                        self.spec.retries.to_i64(),
                        match self.spec.period.0 {
                            Some(p) => format!("{} s", p.as_secs()),
                            None => "the life of the tag".to_string(),
                        }
                    );
                    self.state = TagState::Failed { reason: reason.clone() };
                    vec![Effect::Emit(TagEvent::Failed { reason })]
                }
            };
        }
        let backoff = match self.spec.backoff {
            Some(b) => {
                if b.resets_after(ran_for) {
                    self.quick_failures = 0;
                }
                self.quick_failures += 1;
                b.delay(self.quick_failures)
            }
            None => Duration::ZERO,
        };
        let storm = self.storm.map_or(Duration::ZERO, |s| s.delay(self.quick_deaths));
        let delay = backoff.max(storm);
        if delay.is_zero() {
            return self.spawn(StartKind::Restart { counted: true });
        }
        let until = now.plus(delay);
        self.state = TagState::Backoff { until };
        let mut fx = Vec::new();
        // Posted only when the storm rule is what holds the tag back: a configured backoff is the user's
        // own choice and has no event of its own.
        if storm > backoff {
            self.throttle = Some(Throttle {
                until,
                delay,
                cause: ThrottleCause::QuickDeaths(self.quick_deaths),
            });
            fx.push(Effect::Emit(TagEvent::Throttled {
                quick_deaths: self.quick_deaths,
                delay,
            }));
        }
        fx.push(Effect::Timer(until));
        fx
    }

    /// The action program ended.
    pub fn action_exited(&mut self, exit: Exit) -> Vec<Effect> {
        if self.state != TagState::Action {
            return vec![];
        }
        let mut fx = vec![Effect::Emit(TagEvent::ActionExit { exit })];
        if exit == Exit::Code(0) {
            // "zero restarts it with the original parameters": a fresh budget, as for a new tag.
            self.budget.reset();
            self.quick_failures = 0;
            fx.extend(self.spawn(StartKind::Restart { counted: false }));
        } else {
            fx.extend([Effect::Emit(TagEvent::Remove), Effect::Remove]);
        }
        fx
    }

    /// Time has passed: a backoff may be over, a stop may need SIGKILL, a health check may be due.
    pub fn timer(&mut self, now: Timestamp) -> Vec<Effect> {
        match self.state {
            TagState::Running => {
                let mut fx = self.up_timer(now);
                match self.health.due(now) {
                    Err(failure) => fx.extend(self.unhealthy(failure, now)),
                    Ok(due) => {
                        let instance = self.starts;
                        fx.extend(due.into_iter().map(|index| Effect::RunProbe { index, instance }));
                        fx.extend(self.health.next_due().map(Effect::Timer));
                    }
                }
                fx
            }
            TagState::Backoff { until } if until <= now => {
                let kind = self.deferred.take().unwrap_or(StartKind::Restart { counted: true });
                self.spawn(kind)
            }
            TagState::Stopping {
                deadline,
                then,
                killed: false,
            } if deadline <= now => {
                self.state = TagState::Stopping {
                    deadline,
                    then,
                    killed: true,
                };
                vec![Effect::Signal {
                    signal: Signal::KILL,
                    procs: self.tree.ids(),
                }]
            }
            _ => vec![],
        }
    }

    /// Stops monitoring and signals every process of the tree; SIGKILL follows after `timeout`.
    pub fn stop(&mut self, signal: Signal, timeout: Duration, mode: StopMode, now: Timestamp) -> Vec<Effect> {
        if mode == StopMode::Stay || mode == StopMode::Remove {
            self.enabled = false;
        }
        if let TagState::Stopping { deadline, killed, .. } = self.state {
            // A second stop only changes what happens at the end (a remove wins over a stop).
            self.state = TagState::Stopping {
                deadline,
                then: mode,
                killed,
            };
            return vec![];
        }
        self.pending = None;
        self.deferred = None;
        self.throttle = None;
        if self.tree.is_empty() {
            return self.finish_stop(mode, now);
        }
        let deadline = now.plus(timeout);
        self.state = TagState::Stopping {
            deadline,
            then: mode,
            killed: false,
        };
        vec![
            Effect::Signal {
                signal,
                procs: self.tree.ids(),
            },
            Effect::Timer(deadline),
        ]
    }

    /// Solaris's `pmfadm -s`: stops monitoring for good, sends `signal` (if any) once to every process,
    /// and never follows it with SIGKILL; the tag is removed once its processes are gone. Processes
    /// that ignore the signal, or get none, keep running.
    pub fn release(&mut self, signal: Option<Signal>, now: Timestamp) -> Vec<Effect> {
        self.enabled = false;
        if let TagState::Stopping { deadline, killed, .. } = self.state {
            // Already stopping: it now ends in a removal; a SIGKILL already planned stays planned.
            self.state = TagState::Stopping {
                deadline,
                then: StopMode::Remove,
                killed,
            };
            return signal
                .map(|signal| Effect::Signal {
                    signal,
                    procs: self.tree.ids(),
                })
                .into_iter()
                .collect();
        }
        self.pending = None;
        if self.tree.is_empty() {
            return self.finish_stop(StopMode::Remove, now);
        }
        // `killed: true`: the timer never sends SIGKILL for this stop.
        self.state = TagState::Stopping {
            deadline: now,
            then: StopMode::Remove,
            killed: true,
        };
        signal
            .map(|signal| Effect::Signal {
                signal,
                procs: self.tree.ids(),
            })
            .into_iter()
            .collect()
    }

    fn finish_stop(&mut self, mode: StopMode, now: Timestamp) -> Vec<Effect> {
        match mode {
            StopMode::Recover => {
                // The same path as a crash: the exit is posted, and the budget decides.
                self.state = TagState::Stopped;
                let mut fx = Vec::new();
                if let Some((pid, exit)) = self.last_exit.filter(|(p, _)| self.instance_pids_contain(*p)) {
                    fx.push(Effect::Emit(TagEvent::Exit { pid, exit }));
                }
                fx.extend(self.after_last_exit(None, now));
                fx
            }
            StopMode::Stay | StopMode::Shutdown => {
                let was_stopped = self.state == TagState::Stopped;
                self.state = TagState::Stopped;
                if was_stopped {
                    vec![]
                } else {
                    vec![Effect::Emit(TagEvent::Stop)]
                }
            }
            StopMode::Restart => {
                self.state = TagState::Stopped;
                self.enabled = true;
                self.spawn(StartKind::Restart { counted: false })
            }
            StopMode::Remove => vec![Effect::Emit(TagEvent::Remove), Effect::Remove],
        }
    }

    /// Signals every process of the tree without changing the monitoring.
    pub fn kill(&self, signal: Signal) -> Result<Vec<Effect>, Refused> {
        if self.tree.is_empty() {
            return Err(Refused::NoProcesses(self.name.clone()));
        }
        Ok(vec![Effect::Signal {
            signal,
            procs: self.tree.ids(),
        }])
    }

    /// A manual restart: not counted against the budget.
    pub fn restart(&mut self, now: Timestamp) -> Vec<Effect> {
        self.enabled = true;
        if self.tree.is_empty() {
            self.budget.reset();
            self.deferred = None;
            return self.spawn(StartKind::Restart { counted: false });
        }
        self.stop(self.spec.stop_signal, self.spec.stop_timeout, StopMode::Restart, now)
    }

    /// A health check failed: post it, and stop the instance with the tag's stop signal (SIGKILL after
    /// its stop timeout); once every process is gone the tag restarts under its budget, as after a crash.
    pub fn unhealthy(&mut self, failure: HealthFailure, now: Timestamp) -> Vec<Effect> {
        let mut fx = vec![Effect::Emit(TagEvent::Unhealthy(failure))];
        fx.extend(self.stop(self.spec.stop_signal, self.spec.stop_timeout, StopMode::Recover, now));
        fx
    }

    /// An sd_notify datagram from `pid`. Only the processes of the tag (or the one it named with
    /// `MAINPID=`) may speak for it; anything is ignored unless the tag is running.
    pub fn notified(&mut self, pid: i32, msgs: &[Notify], now: Timestamp) -> Result<Vec<Effect>, Refused> {
        if !self.tree.contains(pid) && self.health.main_pid != Some(pid) {
            return Err(Refused::Stranger(self.name.clone(), pid));
        }
        let mut fx = Vec::new();
        if self.state != TagState::Running {
            return Ok(fx);
        }
        for m in msgs {
            match m {
                Notify::Ready if !self.health.ready => {
                    self.health.ready = true;
                    if self.spec.supervision.notify {
                        self.up = true;
                    }
                    let pid = self.health.main_pid.or(self.main.map(|m| m.pid)).unwrap_or(pid);
                    fx.push(Effect::Emit(TagEvent::Ready { pid }));
                }
                Notify::Ready => {}
                Notify::Status(s) => self.health.status = Some(s.clone()),
                Notify::Watchdog => self.health.ping(now),
                Notify::WatchdogUsec(usec) => {
                    self.health.set_watchdog(*usec, now);
                    fx.extend(self.health.next_due().map(Effect::Timer));
                }
                Notify::MainPid(p) if self.tree.contains(*p) => self.health.main_pid = Some(*p),
                Notify::MainPid(_) => {}
                Notify::WatchdogTrigger => {
                    fx.extend(self.unhealthy(HealthFailure::WatchdogTrigger, now));
                    return Ok(fx);
                }
            }
        }
        Ok(fx)
    }

    /// A probe run of instance `instance` ended; results of an earlier instance are stale and dropped.
    pub fn probe_done(
        &mut self,
        instance: u64,
        index: usize,
        result: Result<(), String>,
        now: Timestamp,
    ) -> Vec<Effect> {
        if self.state != TagState::Running || instance != self.starts {
            return vec![];
        }
        match self.health.probe_done(&self.spec.health, index, result, now) {
            Err(failure) => self.unhealthy(failure, now),
            Ok(()) => self.health.next_due().map(Effect::Timer).into_iter().collect(),
        }
    }

    /// vigild found this tag running when it started: its health clocks start over from `now`.
    pub fn resume_health(&mut self, now: Timestamp) -> Vec<Effect> {
        if self.state != TagState::Running {
            return vec![];
        }
        self.health.resume(&self.spec.health, now);
        let mut fx: Vec<Effect> = self.health.next_due().map(Effect::Timer).into_iter().collect();
        fx.extend(self.up_due().map(Effect::Timer));
        fx
    }

    pub fn modify(&mut self, retries: Option<Retries>, period: Option<Period>) {
        if let Some(r) = retries {
            self.spec.retries = r;
        }
        if let Some(p) = period {
            self.spec.period = p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{ProbeCheck, ProbeSpec};
    use crate::spec::Level;

    const TERM: Signal = Signal::TERM;

    fn spec(retries: i64, period: i64) -> TagSpec {
        crate::spec::test_spec(retries, period)
    }

    fn p(pid: i32) -> ProcId {
        ProcId { pid, start_time: 1 }
    }

    fn t(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn running(spec: TagSpec) -> Tag {
        let mut tag = Tag::new(TagName::new("t").unwrap(), spec);
        assert_eq!(tag.start().unwrap(), vec![Effect::Spawn]);
        tag.spawned(p(100), t(0));
        tag
    }

    #[test]
    fn restarts_within_budget_then_fails() {
        let mut tag = running(spec(2, 60));
        let fx = tag.exited(100, Exit::Code(1), t(1));
        assert_eq!(
            fx,
            vec![
                Effect::Emit(TagEvent::Exit {
                    pid: 100,
                    exit: Exit::Code(1)
                }),
                Effect::Spawn
            ]
        );
        assert_eq!(
            tag.spawned(p(101), t(1)),
            vec![Effect::Emit(TagEvent::Restart {
                pid: 101,
                counted: true
            })]
        );
        assert_eq!(tag.exited(101, Exit::Signal(9), t(2))[1], Effect::Spawn);
        tag.spawned(p(102), t(2));
        assert_eq!(tag.restarts_used(t(2)), 2);
        let fx = tag.exited(102, Exit::Code(1), t(3));
        assert!(matches!(fx[1], Effect::Emit(TagEvent::Failed { .. })), "{fx:?}");
        assert_eq!(tag.state.name(), "failed");
        assert!(!tag.is_active());
    }

    #[test]
    fn only_the_last_watched_process_counts() {
        let mut tag = running(spec(-1, -1));
        assert!(tag.forked(100, p(200)));
        assert_eq!(
            tag.exited(100, Exit::Code(0), t(1)),
            vec![],
            "child 200 is still watched at level -1"
        );
        assert_eq!(tag.exited(200, Exit::Code(3), t(2))[1], Effect::Spawn);
        assert_eq!(
            tag.last_exit,
            Some((200, Exit::Code(3))),
            "the failure, not the launcher's exit 0"
        );
        // And a helper's clean exit after a crash does not hide the crash.
        tag.spawned(p(300), t(3));
        tag.forked(300, p(301));
        tag.exited(300, Exit::Signal(11), t(4));
        tag.exited(301, Exit::Code(0), t(4));
        assert_eq!(tag.last_exit, Some((300, Exit::Signal(11))));
    }

    #[test]
    fn level_zero_ignores_children() {
        let mut s = spec(-1, -1);
        s.level = Level::from_i64(0).unwrap();
        let mut tag = running(s);
        assert!(tag.forked(100, p(200)));
        assert_eq!(tag.exited(100, Exit::Code(0), t(1))[1], Effect::Spawn);
        assert!(
            tag.tree.contains(200),
            "the unwatched child is still stopped with the tag"
        );
    }

    #[test]
    fn action_program_decides() {
        let mut s = spec(0, -1);
        s.action = Some("/bin/act".into());
        let mut tag = running(s.clone());
        let fx = tag.exited(100, Exit::Code(1), t(1));
        assert_eq!(fx[1], Effect::RunAction);
        assert_eq!(tag.action_exited(Exit::Code(0))[1], Effect::Spawn);
        tag.spawned(p(101), t(2));
        assert_eq!(tag.state, TagState::Running);

        let mut tag = running(s);
        tag.exited(100, Exit::Code(1), t(1));
        let fx = tag.action_exited(Exit::Code(2));
        assert_eq!(fx.last(), Some(&Effect::Remove));
    }

    #[test]
    fn release_signals_only_when_asked_never_kills_and_ends_removed() {
        // pmfadm(1M) -s: no signal unless one is named, no SIGKILL after it, no restart.
        let mut tag = running(spec(-1, -1));
        tag.forked(100, p(200));
        assert_eq!(tag.release(None, t(0)), vec![]);
        assert_eq!(tag.timer(t(3600)), vec![], "no SIGKILL, however long");
        assert_eq!(
            tag.release(Some(TERM), t(1)),
            vec![Effect::Signal {
                signal: TERM,
                procs: vec![p(100), p(200)]
            }],
            "a second -s with a signal sends it"
        );
        assert_eq!(tag.exited(100, Exit::Code(0), t(2)), vec![], "no restart");
        let fx = tag.exited(200, Exit::Code(0), t(2));
        assert_eq!(fx.last(), Some(&Effect::Remove));
        assert!(!tag.enabled);

        let mut quiet = running(spec(-1, -1));
        assert_eq!(
            quiet.release(Some(TERM), t(0)),
            vec![Effect::Signal {
                signal: TERM,
                procs: vec![p(100)]
            }]
        );
        assert_eq!(quiet.timer(t(3600)), vec![]);
    }

    #[test]
    fn stop_escalates_and_ends_stopped() {
        let mut tag = running(spec(-1, -1));
        tag.forked(100, p(200));
        let fx = tag.stop(TERM, Duration::from_secs(5), StopMode::Stay, t(0));
        assert_eq!(
            fx,
            vec![
                Effect::Signal {
                    signal: TERM,
                    procs: vec![p(100), p(200)]
                },
                Effect::Timer(t(5))
            ]
        );
        assert_eq!(tag.timer(t(4)), vec![]);
        assert_eq!(
            tag.timer(t(5)),
            vec![Effect::Signal {
                signal: Signal::KILL,
                procs: vec![p(100), p(200)]
            }]
        );
        assert_eq!(tag.timer(t(6)), vec![], "SIGKILL is sent once");
        assert_eq!(
            tag.exited(100, Exit::Signal(9), t(6)),
            vec![],
            "no restart while stopping"
        );
        assert_eq!(
            tag.exited(200, Exit::Signal(9), t(6)),
            vec![Effect::Emit(TagEvent::Stop)]
        );
        assert_eq!(tag.state, TagState::Stopped);
        assert!(!tag.enabled);
    }

    #[test]
    fn manual_restart_is_not_counted() {
        let mut tag = running(spec(1, 60));
        tag.restart(t(1));
        let fx = tag.exited(100, Exit::Signal(TERM.number()), t(1));
        assert_eq!(fx, vec![Effect::Spawn]);
        assert_eq!(
            tag.spawned(p(101), t(1)),
            vec![Effect::Emit(TagEvent::Restart {
                pid: 101,
                counted: false
            })]
        );
        assert_eq!(tag.restarts_used(t(1)), 0);
    }

    #[test]
    fn backoff_delays_restarts() {
        let mut s = spec(-1, -1);
        s.backoff = Some(crate::Backoff::parse("1:4").unwrap());
        let mut tag = running(s);
        let fx = tag.exited(100, Exit::Code(1), t(0));
        assert_eq!(fx[1], Effect::Timer(t(1)));
        assert_eq!(tag.timer(Timestamp(999)), vec![]);
        assert_eq!(tag.timer(t(1)), vec![Effect::Spawn]);
        tag.spawned(p(101), t(1));
        assert_eq!(
            tag.exited(101, Exit::Code(1), t(1))[1],
            Effect::Timer(t(3)),
            "second quick failure: 2 s"
        );
    }

    #[test]
    fn refusals() {
        let mut tag = running(spec(1, 1));
        assert_eq!(tag.start(), Err(Refused::AlreadyRunning(tag.name.clone())));
        let mut stopped = Tag::new(TagName::new("s").unwrap(), spec(1, 1));
        assert_eq!(stopped.kill(TERM), Err(Refused::NoProcesses(stopped.name.clone())));
        assert_eq!(stopped.stop(TERM, Duration::from_secs(1), StopMode::Stay, t(0)), vec![]);
    }

    fn watched(retries: i64, watchdog_secs: u64) -> Tag {
        let mut s = spec(retries, -1);
        s.health.watchdog = Some(Duration::from_secs(watchdog_secs));
        let mut tag = Tag::new(TagName::new("w").unwrap(), s);
        tag.start().unwrap();
        let fx = tag.spawned(p(100), t(0));
        assert_eq!(
            fx[1],
            Effect::Timer(t(watchdog_secs)),
            "the watchdog is armed at the start"
        );
        tag
    }

    #[test]
    fn missed_watchdog_stops_then_restarts_under_the_budget() {
        let mut tag = watched(1, 2);
        assert_eq!(tag.notified(100, &[Notify::Watchdog], t(1)), Ok(vec![]));
        assert_eq!(
            tag.timer(t(2)),
            vec![Effect::Timer(t(3))],
            "the ping moved the deadline"
        );
        let fx = tag.timer(t(3));
        assert_eq!(
            fx,
            vec![
                Effect::Emit(TagEvent::Unhealthy(HealthFailure::WatchdogMissed {
                    interval: Duration::from_secs(2)
                })),
                Effect::Signal {
                    signal: TERM,
                    procs: vec![p(100)]
                },
                Effect::Timer(t(8)),
            ]
        );
        assert_eq!(tag.state.name(), "stopping");
        assert_eq!(
            tag.timer(t(8)),
            vec![Effect::Signal {
                signal: Signal::KILL,
                procs: vec![p(100)]
            }],
            "warn, then kill"
        );
        assert_eq!(
            tag.exited(100, Exit::Signal(SIGKILL), t(8)),
            vec![
                Effect::Emit(TagEvent::Exit {
                    pid: 100,
                    exit: Exit::Signal(SIGKILL)
                }),
                Effect::Spawn
            ]
        );
        assert_eq!(tag.restarts_used(t(8)), 1, "counted like a crash");
        assert_eq!(
            tag.spawned(p(101), t(8)),
            vec![
                Effect::Emit(TagEvent::Restart {
                    pid: 101,
                    counted: true
                }),
                Effect::Timer(t(10))
            ]
        );
        // The second miss finds the budget spent.
        tag.timer(t(10));
        let fx = tag.exited(101, Exit::Signal(TERM.number()), t(10));
        assert!(matches!(fx[1], Effect::Emit(TagEvent::Failed { .. })), "{fx:?}");
        assert_eq!(tag.state.name(), "failed");
    }

    #[test]
    fn notify_ready_status_and_trigger() {
        let mut tag = watched(-1, 5);
        tag.forked(100, p(200));
        assert_eq!(
            tag.notified(300, &[Notify::Ready], t(0)),
            Err(Refused::Stranger(tag.name.clone(), 300)),
            "only the tag's processes speak for it"
        );
        assert_eq!(
            tag.notified(200, &[Notify::Ready, Notify::Status("up".into()), Notify::Ready], t(1)),
            Ok(vec![Effect::Emit(TagEvent::Ready { pid: 100 })]),
            "ready once per instance, from a child too"
        );
        assert_eq!((tag.health.ready, tag.health.status.as_deref()), (true, Some("up")));
        let fx = tag.notified(100, &[Notify::WatchdogTrigger], t(2)).unwrap();
        assert_eq!(fx[0], Effect::Emit(TagEvent::Unhealthy(HealthFailure::WatchdogTrigger)));
        assert_eq!(tag.state.name(), "stopping");
        assert_eq!(
            tag.notified(100, &[Notify::Watchdog], t(2)),
            Ok(vec![]),
            "ignored while stopping"
        );
        tag.exited(200, Exit::Signal(TERM.number()), t(3));
        tag.exited(100, Exit::Signal(TERM.number()), t(3));
        tag.spawned(p(101), t(3));
        assert_eq!(
            (tag.health.ready, tag.health.status.clone()),
            (false, None),
            "reset on restart"
        );
    }

    #[test]
    fn probes_run_on_time_and_stale_results_are_dropped() {
        let mut s = spec(-1, -1);
        s.health.probes = vec![ProbeSpec {
            check: ProbeCheck::Tcp {
                host: "localhost".into(),
                port: 1,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            threshold: 2,
        }];
        let mut tag = running(s);
        assert_eq!(tag.timer(t(1)), vec![Effect::RunProbe { index: 0, instance: 1 }]);
        assert_eq!(
            tag.probe_done(1, 0, Err("refused".into()), t(1)),
            vec![Effect::Timer(t(2))]
        );
        assert_eq!(
            tag.probe_done(0, 0, Err("refused".into()), t(1)),
            vec![],
            "stale instance"
        );
        tag.timer(t(2));
        let fx = tag.probe_done(1, 0, Err("refused".into()), t(2));
        assert!(matches!(
            &fx[0],
            Effect::Emit(TagEvent::Unhealthy(HealthFailure::Probe { failures: 2, .. }))
        ));
        assert_eq!(tag.state.name(), "stopping");
        // A user's stop during the recovery wins: the tag stays stopped.
        tag.stop(TERM, Duration::from_secs(5), StopMode::Stay, t(2));
        assert_eq!(
            tag.exited(100, Exit::Signal(TERM.number()), t(3)),
            vec![Effect::Emit(TagEvent::Stop)]
        );
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp(n)
    }

    /// Runs one instance that dies `ran_ms` after its start at `at` and returns the effects of its end.
    fn die_after(tag: &mut Tag, pid: i32, at: u64, ran_ms: u64) -> Vec<Effect> {
        tag.spawned(p(pid), ms(at));
        tag.exited(pid, Exit::Code(0), ms(at + ran_ms))
    }

    #[test]
    fn a_restart_storm_is_throttled_with_a_growing_delay() {
        let mut tag = Tag::new(TagName::new("spin").unwrap(), spec(-1, -1));
        tag.start().unwrap();
        let mut now = 0;
        // The first quick deaths restart at once: latency is unchanged.
        for pid in 1..=4 {
            let fx = die_after(&mut tag, pid, now, 2);
            now += 2;
            assert_eq!(fx.last(), Some(&Effect::Spawn), "death {pid}: {fx:?}");
        }
        // From the fifth quick death in a row on, each start waits, twice as long each time.
        let mut delays = Vec::new();
        for pid in 5..=9 {
            let fx = die_after(&mut tag, pid, now, 2);
            now += 2;
            let TagState::Backoff { until } = tag.state else {
                panic!("death {pid}: {:?}", tag.state)
            };
            let delay = until.as_millis() - now;
            assert_eq!(
                fx[1],
                Effect::Emit(TagEvent::Throttled {
                    quick_deaths: pid as u32,
                    delay: Duration::from_millis(delay)
                })
            );
            assert_eq!(fx[2], Effect::Timer(until));
            let shown = tag.throttle.as_ref().expect("status shows the throttle").to_string();
            assert!(
                shown.contains("throttled") && shown.contains(&format!("{delay} ms")),
                "{shown}"
            );
            assert_eq!(tag.timer(ms(until.as_millis() - 1)), vec![], "not before its time");
            assert_eq!(tag.timer(until), vec![Effect::Spawn]);
            now = until.as_millis();
            delays.push(delay);
        }
        assert_eq!(delays, [100, 200, 400, 800, 1600]);
        // A run longer than the threshold ends the streak: the next death restarts at once.
        let fx = die_after(&mut tag, 10, now, 1500);
        assert_eq!(fx.last(), Some(&Effect::Spawn));
        assert_eq!((tag.quick_deaths, tag.throttle.clone()), (0, None));
        // The budget is counted as before: every restart counted.
        assert_eq!(tag.budget.history.len(), 10);
    }

    #[test]
    fn an_occasional_crash_restarts_at_once_and_storm_off_never_waits() {
        let mut tag = running(spec(-1, -1));
        for (i, pid) in (101..=120).enumerate() {
            let start = i as u64 * 5000;
            let fx = tag.exited(pid - 1, Exit::Signal(11), ms(start + 4000));
            assert_eq!(fx.last(), Some(&Effect::Spawn), "a crash after 4 s is not a storm");
            tag.spawned(p(pid), ms(start + 5000));
        }
        let mut tag = Tag::new(TagName::new("t").unwrap(), spec(-1, -1));
        tag.storm = None;
        tag.start().unwrap();
        for pid in 1..=50 {
            assert_eq!(die_after(&mut tag, pid, pid as u64, 0).last(), Some(&Effect::Spawn));
        }
    }

    #[test]
    fn the_storm_rule_and_a_backoff_take_the_longer_delay() {
        let mut s = spec(-1, -1);
        s.backoff = Some(crate::Backoff::parse("0.05:0.05").unwrap());
        let mut tag = Tag::new(TagName::new("t").unwrap(), s);
        tag.storm = Some(Storm {
            after: 2,
            ..Storm::default()
        });
        tag.start().unwrap();
        let fx = die_after(&mut tag, 1, 0, 0);
        assert_eq!(fx[1], Effect::Timer(ms(50)), "the backoff alone: no throttle event");
        assert_eq!(tag.throttle, None);
        tag.timer(ms(50));
        let fx = die_after(&mut tag, 2, 50, 0);
        assert!(
            matches!(fx[1], Effect::Emit(TagEvent::Throttled { quick_deaths: 2, .. })),
            "{fx:?}"
        );
        assert_eq!(fx[2], Effect::Timer(ms(150)));
    }

    #[test]
    fn a_start_short_of_resources_is_retried_not_failed() {
        let mut tag = Tag::new(TagName::new("t").unwrap(), spec(0, -1));
        assert_eq!(tag.start().unwrap(), vec![Effect::Spawn]);
        let emfile = |n| SpawnFailure {
            reason: format!("Too many open files ({n})"),
            temporary: true,
        };
        let mut now = 0;
        for attempt in 1..=3u32 {
            let fx = tag.spawn_failed(emfile(attempt), ms(now));
            let delay = Duration::from_millis(100 << (attempt - 1));
            let until = ms(now).plus(delay);
            assert_eq!(
                fx,
                vec![
                    Effect::Emit(TagEvent::SpawnRetry {
                        reason: format!("Too many open files ({attempt})"),
                        attempt,
                        delay
                    }),
                    Effect::Timer(until)
                ]
            );
            assert_eq!(tag.state, TagState::Backoff { until });
            assert!(tag.is_active());
            assert!(tag
                .throttle
                .as_ref()
                .unwrap()
                .to_string()
                .contains("want of a resource"));
            assert_eq!(tag.timer(until), vec![Effect::Spawn]);
            now = until.as_millis();
        }
        // The retried start is still the first one, and used no budget (retries 0).
        assert_eq!(
            tag.spawned(p(5), ms(now)),
            vec![Effect::Emit(TagEvent::Start { pid: 5 })]
        );
        assert_eq!(
            (tag.spawn_retries, tag.throttle.clone(), tag.restarts_used(ms(now))),
            (0, None, 0)
        );
        // A permanent error fails the tag as before.
        let mut tag = Tag::new(TagName::new("t").unwrap(), spec(-1, -1));
        tag.start().unwrap();
        let fx = tag.spawn_failed(
            SpawnFailure {
                reason: "No such file or directory".into(),
                temporary: false,
            },
            ms(0),
        );
        assert!(matches!(&fx[0], Effect::Emit(TagEvent::Failed { .. })));
        assert_eq!(tag.state.name(), "failed");
    }

    #[test]
    fn a_stop_during_a_retry_wait_stays_stopped() {
        let mut tag = Tag::new(TagName::new("t").unwrap(), spec(-1, -1));
        tag.start().unwrap();
        tag.spawn_failed(
            SpawnFailure {
                reason: "EMFILE".into(),
                temporary: true,
            },
            ms(0),
        );
        assert_eq!(
            tag.stop(TERM, Duration::from_secs(1), StopMode::Stay, ms(1)),
            vec![Effect::Emit(TagEvent::Stop)]
        );
        assert_eq!(tag.timer(ms(1000)), vec![], "the retry is off");
        assert_eq!(
            (tag.state.clone(), tag.deferred, tag.throttle.clone()),
            (TagState::Stopped, None, None)
        );
    }
}
