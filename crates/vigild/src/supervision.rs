//! A tag's supervision settings between the wire, the rules and the store (the requests that use them:
//! `pmf/policy.rs`).

use std::time::Duration;

use vigil_core::policy::{RestartPolicy, Supervision};
use vigil_core::{Signal, Tag, TagName, TagSpec};
use vigil_proto::{self as proto, ErrorCode, WireError};
use vigil_store as store;

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, msg)
}

fn restart_from_wire(r: proto::RestartPolicy) -> RestartPolicy {
    match r {
        proto::RestartPolicy::Always => RestartPolicy::Always,
        proto::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
        proto::RestartPolicy::Never => RestartPolicy::Never,
    }
}

fn restart_to_wire(r: RestartPolicy) -> proto::RestartPolicy {
    match r {
        RestartPolicy::Always => proto::RestartPolicy::Always,
        RestartPolicy::OnFailure => proto::RestartPolicy::OnFailure,
        RestartPolicy::Never => proto::RestartPolicy::Never,
    }
}

fn signals(list: &[i32]) -> Result<Vec<Signal>, String> {
    list.iter()
        .map(|s| Signal::new(*s).map_err(|e| format!("success signal {e}")))
        .collect()
}

/// The settings of a request, checked.
pub fn from_wire(w: &proto::Supervision) -> Result<Supervision, String> {
    let s = Supervision {
        restart: restart_from_wire(w.restart),
        success_exit_codes: w.success_exit_codes.clone(),
        success_signals: signals(&w.success_signals)?,
        start_secs: Duration::from_millis(w.start_secs_ms),
        notify: w.notify,
    };
    s.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

pub fn to_wire(s: &Supervision) -> proto::Supervision {
    proto::Supervision {
        restart: restart_to_wire(s.restart),
        success_exit_codes: s.success_exit_codes.clone(),
        success_signals: s.success_signals.iter().map(|s| s.number()).collect(),
        start_secs_ms: s.start_secs.as_millis() as u64,
        notify: s.notify,
    }
}

/// A built spec with the request's supervision settings; the error names the tag.
pub fn with_supervision(name: &TagName, mut spec: TagSpec, w: &proto::Supervision) -> Result<TagSpec, WireError> {
    spec.supervision = from_wire(w).map_err(|e| invalid(format!("tag {name}: {e}")))?;
    Ok(spec)
}

pub fn to_record(tag: &Tag) -> store::SupervisionRecord {
    let s = &tag.spec().supervision;
    store::SupervisionRecord {
        restart: match s.restart {
            RestartPolicy::Always => 0,
            RestartPolicy::OnFailure => 1,
            RestartPolicy::Never => 2,
        },
        success_exit_codes: s.success_exit_codes.clone(),
        success_signals: s.success_signals.iter().map(|s| s.number()).collect(),
        start_secs_ms: s.start_secs.as_millis() as u64,
        notify: s.notify,
        up: tag.up(),
    }
}

pub fn from_record(r: &store::SupervisionRecord) -> Result<Supervision, String> {
    Ok(Supervision {
        restart: match r.restart {
            1 => RestartPolicy::OnFailure,
            2 => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        },
        success_exit_codes: r.success_exit_codes.clone(),
        success_signals: signals(&r.success_signals)?,
        start_secs: Duration::from_millis(r.start_secs_ms),
        notify: r.notify,
    })
}
