//! Turning a request (or a config entry) into a validated tag spec, with one error per problem.

use std::time::Duration;

use vigil_core::health::{self, HealthSpec, HttpUrl, ProbeCheck, ProbeSpec};
use vigil_core::{Backoff, Level, Period, Retries, Signal, TagName, TagSpec};
use vigil_proto::{self as proto, ErrorCode, RunSpec, WireError};

use crate::convert::program_type_from_wire;

pub const DEFAULT_STOP_SIGNAL: Signal = Signal::TERM;

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, msg)
}

pub fn tag_name(name: &str) -> Result<TagName, WireError> {
    TagName::new(name).map_err(|e| invalid(e.to_string()))
}

/// Checks every field of a run request; `uid`/`gid` are whom the processes run as.
pub fn build(run: &RunSpec, uid: u32, gid: u32, default_stop: Duration) -> Result<(TagName, TagSpec), WireError> {
    let name = tag_name(&run.tag)?;
    // Sizes first: the fields below are copied into the spec, and a request far over the limits
    // must cost no copy (spec.validate checks them again, with the rest).
    vigil_core::spec::check_command_env(&run.command, &run.env).map_err(|e| invalid(format!("tag {name}: {e}")))?;
    if run.after.len() > vigil_core::spec::limits::AFTER {
        let e = vigil_core::SpecError::TooLarge {
            what: "after".into(),
            size: run.after.len(),
            limit: vigil_core::spec::limits::AFTER,
            unit: "tags",
        };
        return Err(invalid(format!("tag {name}: {e}")));
    }
    let level = Level::from_i64(run.level).ok_or_else(|| {
        invalid(format!(
            "level {} is out of range: use -1 (all descendants) or 0 and up",
            run.level
        ))
    })?;
    let retries = Retries::from_i64(run.retries).ok_or_else(|| {
        invalid(format!(
            "retries {} is out of range: use -1 (no limit) or 0 and up",
            run.retries
        ))
    })?;
    let period = Period::from_secs_i64(run.period).ok_or_else(|| {
        invalid(format!(
            "period {} is out of range: use -1 (no limit) or 1 second and up",
            run.period
        ))
    })?;
    let backoff = match run.backoff {
        None => None,
        Some(b) if b.min_ms > b.max_ms => return Err(invalid("backoff MIN is larger than MAX")),
        Some(b) if b.max_ms > 86_400_000 => return Err(invalid("backoff MAX is over one day")),
        Some(b) => Some(Backoff {
            min: Duration::from_millis(b.min_ms),
            max: Duration::from_millis(b.max_ms),
        }),
    };
    // Names of other tags, which may be older than the current length limit.
    let after = run
        .after
        .iter()
        .map(|a| TagName::existing(a).map_err(|e| invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let stop_signal = match run.stop_signal {
        None => DEFAULT_STOP_SIGNAL,
        Some(s) => Signal::new(s).map_err(|e| invalid(format!("stop signal {e}")))?,
    };
    let stop_timeout = run.stop_timeout_ms.map_or(default_stop, Duration::from_millis);
    let probes = run
        .probes
        .iter()
        .map(probe)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("tag {name}: {e}")))?;
    let spec = TagSpec {
        command: run.command.clone(),
        env: run.env.clone(),
        cwd: run.cwd.clone(),
        instance: run.instance,
        program_type: program_type_from_wire(run.program_type),
        level,
        retries,
        period,
        action: run.action.clone(),
        backoff,
        after,
        stop_signal,
        stop_timeout,
        uid,
        gid,
        health: HealthSpec {
            watchdog: run.watchdog_ms.map(Duration::from_millis),
            probes,
        },
        supervision: Default::default(),
        res: Default::default(),
    };
    spec.validate(&name).map_err(|e| invalid(format!("tag {name}: {e}")))?;
    // Only for root's tags: another user's working directory is checked as that user, when the
    // tag's programs are (see `Daemon::run`), so that root never answers what exists where only
    // root may look.
    if let Some(cwd) = spec.cwd.as_ref().filter(|_| uid == 0) {
        if !std::path::Path::new(cwd).is_dir() {
            return Err(invalid(format!("tag {name}: working directory {cwd} does not exist")));
        }
    }
    Ok((name, spec))
}

/// Name patterns in one event filter.
pub const FILTER_NAMES: usize = 64;
/// Bytes of one pattern, or of the category or tag a filter names.
pub const FILTER_BYTES: usize = 255;

/// A subscriber's filter is matched against every event posted for as long as it is subscribed, in the
/// loop that serves everyone: its size is bounded, or one user's filter would slow every answer.
/// (A check of the request in place: a request is hundreds of bytes, moved for nothing otherwise.)
pub fn bounded_filters(req: &proto::Request) -> Result<(), WireError> {
    use proto::Request as R;
    let filter = match req {
        R::Events { filter, .. }
        | R::Subscribe { filter, .. }
        | R::ClusterEvents { filter, .. }
        | R::ClusterSubscribe { filter, .. } => filter,
        _ => return Ok(()),
    };
    if filter.names.len() > FILTER_NAMES {
        return Err(invalid(format!(
            "the event filter has {} name patterns; the limit is {FILTER_NAMES}",
            filter.names.len()
        )));
    }
    let long = filter
        .names
        .iter()
        .chain(filter.category.iter())
        .chain(filter.tag.iter())
        .find(|s| s.len() > FILTER_BYTES);
    if let Some(s) = long {
        return Err(invalid(format!(
            "an event filter's pattern, category or tag is {} bytes; the limit is {FILTER_BYTES}",
            s.len()
        )));
    }
    Ok(())
}

/// A probe from the wire, with vigild's defaults; the ranges are checked with the rest of the spec.
fn probe(p: &proto::ProbeSpec) -> Result<ProbeSpec, health::HealthError> {
    let check = match &p.check {
        proto::ProbeCheck::Exec { command } => ProbeCheck::Exec {
            command: command.clone(),
        },
        proto::ProbeCheck::Tcp { address } => {
            let (host, port) = health::parse_host_port(address)?;
            ProbeCheck::Tcp { host, port }
        }
        proto::ProbeCheck::Http { url } => ProbeCheck::Http(HttpUrl::parse(url)?),
    };
    let interval = p.interval_ms.map_or(health::DEFAULT_INTERVAL, Duration::from_millis);
    Ok(ProbeSpec {
        check,
        interval,
        // A short interval alone must not be refused for the default timeout being longer.
        timeout: p
            .timeout_ms
            .map_or(health::DEFAULT_TIMEOUT.min(interval), Duration::from_millis),
        threshold: p.threshold.unwrap_or(health::DEFAULT_THRESHOLD),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_are_bounded() {
        let req = |names: Vec<String>, tag: Option<String>| proto::Request::Subscribe {
            after: None,
            filter: proto::EventFilter {
                names,
                category: None,
                tag,
            },
        };
        assert!(bounded_filters(&req(vec!["sys.*".into(); FILTER_NAMES], None)).is_ok());
        let e = bounded_filters(&req(vec!["sys.*".into(); FILTER_NAMES + 1], None)).unwrap_err();
        assert_eq!(e.message, "the event filter has 65 name patterns; the limit is 64");
        let e = bounded_filters(&req(vec![], Some("t".repeat(256)))).unwrap_err();
        assert!(e.message.ends_with("is 256 bytes; the limit is 255"), "{}", e.message);
        assert!(bounded_filters(&proto::Request::List).is_ok());
    }

    #[test]
    fn sizes_are_checked_before_anything_else() {
        // Two million one-byte variables (about 4 MB on the wire): refused for their count, and before
        // any other field is looked at (the level is bad too).
        let mut run = proto::RunSpec::new("t", vec!["/bin/true".into()]);
        run.env = vec![("a".to_string(), String::new()); 2_000_000];
        run.level = -5;
        let e = build(&run, 1000, 1000, Duration::from_secs(1)).unwrap_err();
        assert!(
            e.message.contains("the environment") && e.message.contains("variables"),
            "{}",
            e.message
        );
        let mut run = proto::RunSpec::new("t", vec!["x".into(); 100_000]);
        run.level = -5;
        let e = build(&run, 1000, 1000, Duration::from_secs(1)).unwrap_err();
        assert!(e.message.contains("the command"), "{}", e.message);
    }
}
