//! The one place where core, wire and store types meet.

use std::time::Duration;

use vigil_core as core;
use vigil_core::{Exit, ProcId, Tag, TagEvent, TagName, TagSpec, TagState, Timestamp};
use vigil_proto as proto;
use vigil_store as store;

use crate::events::attr::{attr_b, attr_i, attr_s, Attr};

pub fn exit_from_wait(s: vigil_sys::WaitStatus) -> Exit {
    match s {
        vigil_sys::WaitStatus::Exited(c) => Exit::Code(c as u8),
        vigil_sys::WaitStatus::Signaled { signal, .. } => Exit::Signal(signal),
    }
}

pub fn exit_to_wire(e: Exit) -> proto::ExitStatus {
    match e {
        Exit::Code(c) => proto::ExitStatus::Code(c),
        Exit::Signal(s) => proto::ExitStatus::Signal(s),
        Exit::Unknown => proto::ExitStatus::Unknown,
    }
}

pub fn exit_to_store(e: Exit) -> store::ExitRecord {
    match e {
        Exit::Code(c) => store::ExitRecord::Code(c),
        Exit::Signal(s) => store::ExitRecord::Signal(s),
        Exit::Unknown => store::ExitRecord::Unknown,
    }
}

pub fn exit_from_store(e: store::ExitRecord) -> Exit {
    match e {
        store::ExitRecord::Code(c) => Exit::Code(c),
        store::ExitRecord::Signal(s) => Exit::Signal(s),
        store::ExitRecord::Unknown => Exit::Unknown,
    }
}

pub fn program_type_from_wire(t: proto::ProgramType) -> core::ProgramType {
    match t {
        proto::ProgramType::Svc => core::ProgramType::Svc,
        proto::ProgramType::Mon => core::ProgramType::Mon,
        proto::ProgramType::Other => core::ProgramType::Other,
    }
}

fn program_type_to_wire(t: core::ProgramType) -> proto::ProgramType {
    match t {
        core::ProgramType::Svc => proto::ProgramType::Svc,
        core::ProgramType::Mon => proto::ProgramType::Mon,
        core::ProgramType::Other => proto::ProgramType::Other,
    }
}

fn program_type_code(t: core::ProgramType) -> u8 {
    match t {
        core::ProgramType::Svc => 0,
        core::ProgramType::Mon => 1,
        core::ProgramType::Other => 2,
    }
}

fn stop_mode_to_store(m: core::StopMode) -> store::StopModeRecord {
    match m {
        core::StopMode::Stay => store::StopModeRecord::Stay,
        core::StopMode::Restart => store::StopModeRecord::Restart,
        core::StopMode::Remove => store::StopModeRecord::Remove,
        core::StopMode::Shutdown => store::StopModeRecord::Shutdown,
        core::StopMode::Recover => store::StopModeRecord::Recover,
    }
}

fn stop_mode_from_store(m: store::StopModeRecord) -> core::StopMode {
    match m {
        store::StopModeRecord::Stay => core::StopMode::Stay,
        store::StopModeRecord::Restart => core::StopMode::Restart,
        store::StopModeRecord::Remove => core::StopMode::Remove,
        store::StopModeRecord::Shutdown => core::StopMode::Shutdown,
        store::StopModeRecord::Recover => core::StopMode::Recover,
    }
}

fn proc_record(id: ProcId, depth: u32) -> store::ProcRecord {
    store::ProcRecord {
        pid: id.pid,
        start_time: id.start_time,
        depth,
    }
}

pub fn backoff_to_wire(b: Option<core::Backoff>) -> Option<proto::Backoff> {
    b.map(|b| proto::Backoff {
        min_ms: b.min.as_millis() as u64,
        max_ms: b.max.as_millis() as u64,
    })
}

fn probe_to_record(p: &core::ProbeSpec) -> store::ProbeRecord {
    store::ProbeRecord {
        check: match &p.check {
            core::ProbeCheck::Exec { command } => store::ProbeCheckRecord::Exec {
                command: command.clone(),
            },
            core::ProbeCheck::Tcp { host, port } => store::ProbeCheckRecord::Tcp {
                host: host.clone(),
                port: *port,
            },
            core::ProbeCheck::Http(u) => store::ProbeCheckRecord::Http {
                host: u.host.clone(),
                port: u.port,
                path: u.path.clone(),
            },
        },
        interval_ms: p.interval.as_millis() as u64,
        timeout_ms: p.timeout.as_millis() as u64,
        threshold: p.threshold,
    }
}

fn probe_from_record(r: &store::ProbeRecord) -> core::ProbeSpec {
    core::ProbeSpec {
        check: match &r.check {
            store::ProbeCheckRecord::Exec { command } => core::ProbeCheck::Exec {
                command: command.clone(),
            },
            store::ProbeCheckRecord::Tcp { host, port } => core::ProbeCheck::Tcp {
                host: host.clone(),
                port: *port,
            },
            store::ProbeCheckRecord::Http { host, port, path } => core::ProbeCheck::Http(core::health::HttpUrl {
                host: host.clone(),
                port: *port,
                path: path.clone(),
            }),
        },
        interval: Duration::from_millis(r.interval_ms),
        timeout: Duration::from_millis(r.timeout_ms),
        threshold: r.threshold,
    }
}

pub fn tag_to_record(tag: &Tag, from_config: bool) -> store::TagRecord {
    let s = tag.spec();
    store::TagRecord {
        name: tag.name().to_string(),
        command: s.command.clone(),
        env: s.env.clone(),
        cwd: s.cwd.clone(),
        instance: s.instance,
        program_type: program_type_code(s.program_type),
        level: s.level.to_i64(),
        retries: s.retries.to_i64(),
        period: s.period.to_secs_i64(),
        action: s.action.clone(),
        backoff_ms: s.backoff.map(|b| (b.min.as_millis() as u64, b.max.as_millis() as u64)),
        after: s.after.iter().map(|a| a.to_string()).collect(),
        stop_signal: s.stop_signal.number(),
        stop_timeout_ms: s.stop_timeout.as_millis() as u64,
        uid: s.uid,
        gid: s.gid,
        from_config,
        state: match tag.state() {
            TagState::Waiting => store::StateRecord::Waiting,
            TagState::Running => store::StateRecord::Running,
            TagState::Backoff { until } => store::StateRecord::Backoff {
                until_ms: until.as_millis(),
            },
            TagState::Action => store::StateRecord::Action,
            TagState::Stopping { deadline, then, killed } => store::StateRecord::Stopping {
                deadline_ms: deadline.as_millis(),
                then: stop_mode_to_store(*then),
                killed: *killed,
            },
            TagState::Stopped => store::StateRecord::Stopped,
            TagState::Failed { reason } => store::StateRecord::Failed { reason: reason.clone() },
            TagState::Exited => store::StateRecord::Exited,
        },
        enabled: tag.enabled(),
        procs: tag.tree().all().map(|p| proc_record(p.id, p.depth)).collect(),
        main: tag.main().map(|m| proc_record(m, 0)),
        budget_ms: tag.budget().history.iter().map(|t| t.as_millis()).collect(),
        started_ms: tag.started_at().map(|t| t.as_millis()),
        last_exit: tag.last_exit().map(|(p, e)| (p, exit_to_store(e))),
        starts: tag.starts(),
        quick_failures: tag.quick_failures(),
        pending: tag.pending().map(|k| match k {
            core::tag::StartKind::First => 0,
            core::tag::StartKind::Restart { counted: true } => 1,
            core::tag::StartKind::Restart { counted: false } => 2,
        }),
        watchdog_ms: s.health.watchdog.map(|w| w.as_millis() as u64),
        probes: s.health.probes.iter().map(probe_to_record).collect(),
        ready: tag.health().ready,
        status_text: tag.health().status.clone(),
        supervision: crate::supervision::to_record(tag),
        res: crate::tag_res::to_record(&s.res),
    }
}

/// Rebuilds a tag from its record; the processes are returned apart, to be checked before re-adoption.
pub fn tag_from_record(r: &store::TagRecord) -> Result<(Tag, Vec<(ProcId, u32)>), String> {
    let name = TagName::existing(&r.name).map_err(|e| e.to_string())?;
    let spec = TagSpec {
        command: r.command.clone(),
        env: r.env.clone(),
        cwd: r.cwd.clone(),
        instance: r.instance,
        program_type: match r.program_type {
            1 => core::ProgramType::Mon,
            2 => core::ProgramType::Other,
            _ => core::ProgramType::Svc,
        },
        level: core::Level::from_i64(r.level).ok_or("bad level")?,
        retries: core::Retries::from_i64(r.retries).ok_or("bad retries")?,
        period: core::Period::from_secs_i64(r.period).ok_or("bad period")?,
        action: r.action.clone(),
        backoff: r.backoff_ms.map(|(a, b)| core::Backoff {
            min: Duration::from_millis(a),
            max: Duration::from_millis(b),
        }),
        after: r.after.iter().filter_map(|a| TagName::existing(a).ok()).collect(),
        stop_signal: core::Signal::new(r.stop_signal).map_err(|e| e.to_string())?,
        stop_timeout: Duration::from_millis(r.stop_timeout_ms),
        uid: r.uid,
        gid: r.gid,
        health: core::HealthSpec {
            watchdog: r.watchdog_ms.map(Duration::from_millis),
            probes: r.probes.iter().map(probe_from_record).collect(),
        },
        supervision: crate::supervision::from_record(&r.supervision)?,
        res: crate::tag_res::from_record(&r.res)?,
    };
    let state = match &r.state {
        store::StateRecord::Waiting => TagState::Waiting,
        store::StateRecord::Running => TagState::Running,
        store::StateRecord::Backoff { until_ms } => TagState::Backoff {
            until: Timestamp(*until_ms),
        },
        store::StateRecord::Action => TagState::Action,
        store::StateRecord::Stopping {
            deadline_ms,
            then,
            killed,
        } => TagState::Stopping {
            deadline: Timestamp(*deadline_ms),
            then: stop_mode_from_store(*then),
            killed: *killed,
        },
        store::StateRecord::Stopped => TagState::Stopped,
        store::StateRecord::Failed { reason } => TagState::Failed { reason: reason.clone() },
        store::StateRecord::Exited => TagState::Exited,
    };
    let saved = core::tag::Saved {
        state,
        enabled: r.enabled,
        main: r.main.as_ref().map(|m| ProcId {
            pid: m.pid,
            start_time: m.start_time,
        }),
        budget: r.budget_ms.iter().map(|t| Timestamp(*t)).collect(),
        started_at: r.started_ms.map(Timestamp),
        last_exit: r.last_exit.map(|(p, e)| (p, exit_from_store(e))),
        starts: r.starts,
        quick_failures: r.quick_failures,
        pending: r.pending.map(|k| match k {
            0 => core::tag::StartKind::First,
            1 => core::tag::StartKind::Restart { counted: true },
            _ => core::tag::StartKind::Restart { counted: false },
        }),
        ready: r.ready,
        status: r.status_text.clone(),
        up: r.supervision.up,
    };
    let tag = Tag::restored(name, spec, saved);
    let procs = r
        .procs
        .iter()
        .map(|p| {
            (
                ProcId {
                    pid: p.pid,
                    start_time: p.start_time,
                },
                p.depth,
            )
        })
        .collect();
    Ok((tag, procs))
}

pub fn tag_status(tag: &Tag, from_config: bool, log_path: String, now: Timestamp) -> proto::TagStatus {
    let s = tag.spec();
    proto::TagStatus {
        name: tag.name().to_string(),
        state: tag.state().name().to_string(),
        reason: match tag.state() {
            TagState::Failed { reason } => Some(reason.clone()),
            // A wait the user did not configure is explained: the storm rule or a resource shortage.
            TagState::Backoff { .. } => tag.throttle().map(|t| t.to_string()),
            _ => None,
        },
        uid: s.uid,
        gid: s.gid,
        command: s.command.clone(),
        env: s.env.clone(),
        cwd: s.cwd.clone(),
        instance: s.instance,
        program_type: program_type_to_wire(s.program_type),
        level: s.level.to_i64(),
        retries: s.retries.to_i64(),
        period: s.period.to_secs_i64(),
        action: s.action.clone(),
        backoff: backoff_to_wire(s.backoff),
        after: s.after.iter().map(|a| a.to_string()).collect(),
        restarts_used: tag.restarts_used(now),
        starts: tag.starts(),
        procs: tag
            .tree()
            .all()
            .map(|p| proto::ProcInfo {
                pid: p.id.pid,
                level: p.depth,
                watched: s.level.watches(p.depth),
            })
            .collect(),
        main_pid: tag.main().filter(|m| tag.tree().contains(m.pid)).map(|m| m.pid),
        started_ms: tag
            .started_at()
            .map(|t| t.as_millis())
            .filter(|_| !tag.tree().is_empty()),
        last_exit: tag.last_exit().map(|(p, e)| (p, exit_to_wire(e))),
        log_path,
        from_config,
        watchdog_ms: tag
            .health()
            .watchdog
            .or(s.health.watchdog)
            .map(|w| w.as_millis() as u64),
        probes: s
            .health
            .probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let run = tag.health().probes.get(i);
                proto::ProbeStatus {
                    check: p.check.to_string(),
                    interval_ms: p.interval.as_millis() as u64,
                    timeout_ms: p.timeout.as_millis() as u64,
                    threshold: p.threshold,
                    failures: run.map_or(0, |r| r.failures),
                    last_error: run.and_then(|r| r.last_error.clone()),
                }
            })
            .collect(),
        // Of the current instance: a tag without processes has none to be ready.
        ready: tag.health().ready && !tag.tree().is_empty(),
        status_text: tag.health().status.clone(),
        supervision: crate::supervision::to_wire(&s.supervision),
        up: tag.is_up(),
    }
}

/// The attributes of a tag event.
pub fn event_data(ev: &TagEvent) -> Vec<(String, Attr)> {
    let exit_attrs = |exit: &Exit| {
        let mut d = vec![attr_s("status", exit.to_string())];
        match exit {
            Exit::Code(c) => d.push(attr_i("code", i64::from(*c))),
            Exit::Signal(s) => d.push(attr_i("signal", i64::from(*s))),
            Exit::Unknown => {}
        }
        d
    };
    match ev {
        TagEvent::Start { pid } => vec![attr_i("pid", i64::from(*pid))],
        TagEvent::Exit { pid, exit } => {
            let mut d = vec![attr_i("pid", i64::from(*pid))];
            d.extend(exit_attrs(exit));
            d
        }
        TagEvent::Restart { pid, counted } => vec![attr_i("pid", i64::from(*pid)), attr_b("counted", *counted)],
        TagEvent::Failed { reason } | TagEvent::LogFailed { reason } => vec![attr_s("reason", reason.clone())],
        TagEvent::Action { program } => vec![attr_s("program", program.clone())],
        TagEvent::ActionExit { exit } => exit_attrs(exit),
        TagEvent::Stop | TagEvent::Remove => vec![],
        TagEvent::Lost { proc } => vec![attr_i("pid", i64::from(proc.pid))],
        TagEvent::Ready { pid } | TagEvent::Up { pid } => vec![attr_i("pid", i64::from(*pid))],
        TagEvent::Throttled { quick_deaths, delay } => vec![
            attr_i("quick_exits", i64::from(*quick_deaths)),
            attr_i("delay_ms", delay.as_millis() as i64),
        ],
        TagEvent::SpawnRetry { reason, attempt, delay } => vec![
            attr_s("reason", reason.clone()),
            attr_i("attempt", i64::from(*attempt)),
            attr_i("delay_ms", delay.as_millis() as i64),
        ],
        TagEvent::Unhealthy(f) => {
            let mut d = vec![attr_s("check", f.check())];
            match f {
                core::HealthFailure::WatchdogMissed { interval } => {
                    d.push(attr_i("interval_ms", interval.as_millis() as i64));
                }
                core::HealthFailure::WatchdogTrigger => d.push(attr_b("trigger", true)),
                core::HealthFailure::Probe {
                    index,
                    probe,
                    failures,
                    error,
                } => {
                    d.push(attr_i("index", *index as i64));
                    d.push(attr_s("probe", probe.clone()));
                    d.push(attr_i("failures", i64::from(*failures)));
                    d.push(attr_s("error", error.clone()));
                }
            }
            d.push(attr_s("reason", f.reason()));
            d
        }
    }
}

/// The wait(2) encoding of an exit, for PSM's `mrs_exitcode` and event attributes.
pub fn exit_to_raw(e: Exit) -> Option<u32> {
    match e {
        Exit::Code(c) => Some(u32::from(c) << 8),
        Exit::Signal(s) => Some((s & 0x7f) as u32),
        Exit::Unknown => None,
    }
}

pub fn event_to_wire(e: &store::EventRecord, local_node: &str) -> proto::Event {
    proto::Event {
        seq: e.seq,
        time_ms: e.time_ms,
        name: e.name.clone(),
        // Events written before nodes were recorded are this node's.
        node: if e.node.is_empty() {
            local_node.to_string()
        } else {
            e.node.clone()
        },
        subject: e.subject.clone(),
        attrs: e
            .attrs
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    store::AttrRecord::Str(s) => proto::Value::Str(s.clone()),
                    store::AttrRecord::Int(i) => proto::Value::Int(*i),
                    store::AttrRecord::Bool(b) => proto::Value::Bool(*b),
                };
                (k.clone(), v)
            })
            .collect(),
    }
}
