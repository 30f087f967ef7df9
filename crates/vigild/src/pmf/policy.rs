//! `ModifySupervision`, and `WaitFor`: a request answered when a tag is running, ready or stopped, or
//! refused when it cannot get there any more.

use std::time::Duration;

use vigil_core::{Tag, TagName, TagState};
use vigil_proto::{self as proto, ErrorCode, Response, WaitUntil, WireError};

use crate::clock::now;
use crate::conn::{Caller, ConnTx};
use crate::pmf::state::{WaitFor, Waiter};
use crate::state::Daemon;
use crate::supervision::{from_wire, to_wire};

type Answer = Result<Response, WireError>;

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, msg)
}

/// What `ModifySupervision` changes; `None` keeps a setting.
pub struct Change {
    pub restart: Option<proto::RestartPolicy>,
    pub success_exit_codes: Option<Vec<u8>>,
    pub success_signals: Option<Vec<i32>>,
    pub start_secs_ms: Option<u64>,
}

/// How a `WaitFor` that cannot be met any more explains it: what became of the instance, then of the tag.
fn why_not(tag: &Tag, instance_ended: bool, now: vigil_core::Timestamp) -> String {
    let mut parts = Vec::new();
    if instance_ended {
        match tag.last_exit() {
            Some((_, exit)) => parts.push(format!("exited at once ({exit})")),
            None => parts.push("ended before it counted as running".to_string()),
        }
    }
    let spec = tag.spec();
    match tag.state() {
        TagState::Failed { reason } => parts.push(format!("failed: {reason}")),
        TagState::Exited => parts.push(format!(
            "not restarted (restart = {})",
            spec.supervision.restart.as_str()
        )),
        TagState::Stopped => parts.push("stopped".to_string()),
        TagState::Stopping { .. } => parts.push("being stopped".to_string()),
        TagState::Action => parts.push("its action program decides".to_string()),
        _ => {
            let limit = match spec.retries.to_i64() {
                -1 => "no limit".to_string(),
                n => format!("{n} allowed"),
            };
            parts.push(format!(
                "restarting ({} restart(s) used, {limit})",
                tag.restarts_used(now)
            ));
        }
    }
    parts.join("; ")
}

impl Daemon {
    pub fn modify_supervision(&mut self, caller: Caller, tag: &str, c: Change) -> Answer {
        let name = self.owned(caller, tag, "modify")?;
        let mut w = to_wire(&self.pmf.tags[&name].tag.spec().supervision);
        if let Some(r) = c.restart {
            w.restart = r;
        }
        if let Some(codes) = c.success_exit_codes {
            w.success_exit_codes = codes;
        }
        if let Some(sigs) = c.success_signals {
            w.success_signals = sigs;
        }
        if let Some(ms) = c.start_secs_ms {
            w.start_secs_ms = ms;
        }
        let s = from_wire(&w).map_err(|e| invalid(format!("tag {name}: {e}")))?;
        let fx = self.pmf.tags.get_mut(&name).expect("owned").tag.modify_supervision(s);
        self.pmf.dirty.insert(name.clone());
        self.apply(&name, fx);
        Ok(Response::Ok)
    }

    /// `WaitFor`: answered when the tag reaches `until`, refused when it cannot any more, or at the
    /// deadline. With `this_start`, only the instance running (or the next one to start) when the
    /// request came counts: `vigil run` reports on the start it made.
    #[allow(clippy::too_many_arguments)]
    pub fn wait_for(
        &mut self,
        caller: Caller,
        tag: &str,
        until: WaitUntil,
        timeout_ms: Option<u64>,
        this_start: bool,
        id: u64,
        out: &ConnTx,
    ) -> Option<Answer> {
        let name = match self.known(tag) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let t = &self.pmf.tags[&name].tag;
        // The start of interest is the latest one, unless none has been made yet (the tag waits for
        // the tags it starts after, or its first start is put off): then the next one.
        let instance = this_start.then(|| match t.state() {
            TagState::Waiting => t.starts() + 1,
            _ if t.starts() == 0 => 1,
            _ => t.starts(),
        });
        self.pmf.waiters.push(Waiter {
            until: WaitFor::Reaches {
                tag: name,
                until,
                instance,
                viewer: caller.uid,
            },
            deadline: timeout_ms.map(|t| now().plus(Duration::from_millis(t))),
            out: out.clone(),
            id,
        });
        // Answered at the end of this step if it holds already.
        None
    }

    /// Whether a `WaitFor` is settled: `Some` with its answer, or `None` while it may still be met.
    pub fn reaches(&self, name: &TagName, until: WaitUntil, instance: Option<u64>, viewer: u32) -> Option<Answer> {
        let Some(e) = self.pmf.tags.get(name) else {
            // Gone is as stopped as a tag gets.
            if until == WaitUntil::Stopped {
                return Some(Ok(Response::Ok));
            }
            return Some(Err(WireError::new(ErrorCode::NotFound, format!("{name}: removed"))));
        };
        let t = &e.tag;
        let status = || Ok(Response::Tag(Box::new(self.status_for(name, viewer))));
        let now = now();
        match until {
            WaitUntil::Stopped => return (!t.is_active()).then(status),
            WaitUntil::Running if t.state() == &TagState::Running => return Some(status()),
            // With `this_start`, an instance that is up but not the one asked about has replaced it.
            WaitUntil::Ready if t.is_up() && instance.is_none_or(|n| t.starts() == n) => return Some(status()),
            _ => {}
        }
        let ended = instance.is_some_and(|n| t.starts() > n || (t.starts() == n && t.state() != &TagState::Running));
        if ended || !t.is_active() {
            return Some(Err(WireError::new(
                ErrorCode::ExecFailed,
                format!("{name}: {}", why_not(t, ended, now)),
            )));
        }
        None
    }
}
