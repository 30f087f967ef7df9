//! What a tag does when the world around it changes rather than its processes: vigild starts again on
//! a state dir (`resumed`), a config reload gives it a new spec (`respec`), and the tags it starts
//! after become ready (`after_ready`).
//!
//! | state (as stored)      | resumed                                  | respec (spec changed)            |
//! |------------------------|------------------------------------------|----------------------------------|
//! | a start was decided    | Spawn                                    | (by its state)                   |
//! | Backoff                | Timer(until)                             | Spawn (restart, uncounted)       |
//! | Stopping, processes    | Timer(deadline)                          | the stop ends in a restart       |
//! | Stopping, none         | nothing; the stop now ends stopped       | the stop ends in a restart       |
//! | Action                 | RunAction                                | Spawn (restart, uncounted)       |
//! | Stopped, enabled       | Spawn (fresh budget)                     | Spawn (fresh budget)             |
//! | Stopped, disabled      | nothing                                  | Spawn (fresh budget), enabled    |
//! | Failed, Exited         | nothing                                  | Spawn (fresh budget)             |
//! | Waiting                | nothing (the step's scan decides)        | Spawn (restart, uncounted)       |
//! | Running, none watched  | Spawn (fresh budget): they vanished      | Spawn (restart, uncounted)       |
//! | Running, processes     | health clocks start over from `now`      | stop signal + Stopping(restart)  |
//!
//! A tag declared with `autostart = false` is created stopped and disabled (`declare_stopped`), and a
//! reload that changes its spec leaves it so when it is not under way (`respec_manual`).

use super::{Effect, StopMode, Tag, TagState};
use crate::names::TagName;
use crate::spec::TagSpec;
use crate::time::Timestamp;

impl Tag {
    /// vigild started again and found this tag as its store recorded it, with the processes that are
    /// still alive re-adopted (those that died meanwhile have been through `exited`): carry on from
    /// where the last vigild was.
    pub fn resumed(&mut self, now: Timestamp) -> Vec<Effect> {
        if self.pending.is_some() {
            // A start was decided and never reported back: make it.
            return vec![Effect::Spawn];
        }
        match self.state.clone() {
            TagState::Backoff { until } => vec![Effect::Timer(until)],
            TagState::Stopping { deadline, .. } => {
                if self.tree.is_empty() {
                    self.stop(self.spec.stop_signal, self.spec.stop_timeout, StopMode::Stay, now)
                } else {
                    vec![Effect::Timer(deadline)]
                }
            }
            TagState::Action => vec![Effect::RunAction],
            TagState::Stopped if self.enabled => self.start().unwrap_or_default(),
            TagState::Running if self.tree.watched(self.spec.level).next().is_none() => self.restart_vanished(),
            TagState::Running => self.resume_health(now),
            _ => vec![],
        }
    }

    /// A config reload declares this tag with a different spec: the new spec takes effect at once, and
    /// the tag starts (fresh, if it had no process and was not under way) or restarts with it, not
    /// counted against its budget. The caller decides whether the spec changed.
    pub fn respec(&mut self, spec: TagSpec, now: Timestamp) -> Vec<Effect> {
        self.spec = spec;
        if self.tree.is_empty() && !self.is_active() {
            self.start().unwrap_or_default()
        } else {
            self.restart(now)
        }
    }
}

impl Tag {
    /// A tag declared with `autostart = false`: it exists, stopped, until a user starts it, and stays
    /// so across restarts of vigild.
    pub fn declare_stopped(&mut self) {
        self.enabled = false;
    }

    /// A reload gives a tag declared with `autostart = false` a new spec: one that is not under way
    /// takes it and stays as it is; one that runs restarts with it, as with `respec`.
    pub fn respec_manual(&mut self, spec: TagSpec, now: Timestamp) -> Vec<Effect> {
        if self.tree.is_empty() && !self.is_active() {
            self.spec = spec;
            vec![]
        } else {
            self.respec(spec, now)
        }
    }
}

/// Whether a tag declared to start after `after` may start: every one of them exists and counts as
/// running (it lived its `start_secs`, or said `READY=1` when it uses notify).
/// `lookup` finds a tag by name.
pub fn after_ready<'a>(after: &[TagName], lookup: impl Fn(&TagName) -> Option<&'a Tag>) -> bool {
    after.iter().all(|d| lookup(d).is_some_and(|t| t.is_up()))
}

#[cfg(test)]
mod tests;
