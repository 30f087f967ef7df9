//! The restart policy and the minimum uptime of a start, applied to a tag (the rules are in
//! `crate::policy`; the rows they add to the table are at the top of `tag.rs`).

use super::{Effect, Tag, TagState};
use crate::event::TagEvent;
use crate::policy::RestartPolicy;
use crate::time::Timestamp;
use crate::tree::Exit;

impl Tag {
    /// When the current instance will have lived `start_secs`, if that is still to come.
    pub(super) fn up_due(&self) -> Option<Timestamp> {
        let s = &self.spec.supervision;
        if self.up || s.notify || s.start_secs.is_zero() || self.state != TagState::Running {
            return None;
        }
        self.started_at.map(|t| t.plus(s.start_secs))
    }

    /// A timer of a running tag: the instance may have lived long enough to count as running.
    pub(super) fn up_timer(&mut self, now: Timestamp) -> Vec<Effect> {
        match self.up_due() {
            Some(at) if at <= now => {
                self.up = true;
                let pid = self.main.map_or(0, |m| m.pid);
                vec![Effect::Emit(TagEvent::Up { pid })]
            }
            _ => vec![],
        }
    }

    /// What the restart policy makes of the end of an instance that ended with `exit` (None: stopped
    /// for a failed health check): `None` leaves it to the budget.
    pub(super) fn by_policy(&mut self, exit: Option<Exit>) -> Option<Vec<Effect>> {
        let s = &self.spec.supervision;
        let success = self.up && exit.is_some_and(|e| s.is_success(e));
        match (s.restart, success) {
            (RestartPolicy::Always, _) | (RestartPolicy::OnFailure, false) => None,
            (RestartPolicy::OnFailure | RestartPolicy::Never, true) => {
                self.state = TagState::Exited;
                Some(vec![])
            }
            (RestartPolicy::Never, false) => {
                let reason = self.failure_reason(exit, "restart = never");
                self.state = TagState::Failed { reason: reason.clone() };
                Some(vec![Effect::Emit(TagEvent::Failed { reason })])
            }
        }
    }

    /// New supervision settings (`vigil modify`): they apply from the next exit, and nothing restarts
    /// for them. A start that no longer needs to wait counts as running at once.
    pub fn modify_supervision(&mut self, supervision: crate::policy::Supervision) -> Vec<Effect> {
        self.spec.supervision = supervision;
        if self.state == TagState::Running && !self.up && self.spec.supervision.up_at_start() {
            self.up = true;
        }
        self.up_due().map(Effect::Timer).into_iter().collect()
    }

    /// Why an instance's end is a failure, for the status and the `failed` event.
    pub(super) fn failure_reason(&self, exit: Option<Exit>, then: &str) -> String {
        let how = match exit {
            None => "stopped for a failed health check".to_string(),
            Some(e) if !self.up => format!("exited at once ({e})"),
            Some(e) => format!("exited ({e})"),
        };
        format!("{how}; {then}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::event::TagEvent;
    use crate::health::Notify;
    use crate::names::TagName;
    use crate::policy::{RestartPolicy, Supervision};
    use crate::signal::Signal;
    use crate::tag::{after_ready, Effect, Tag, TagState};
    use crate::time::Timestamp;
    use crate::tree::{Exit, ProcId};

    fn p(pid: i32) -> ProcId {
        ProcId { pid, start_time: 1 }
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp(n)
    }

    fn tag(retries: i64, sup: Supervision) -> Tag {
        let mut spec = crate::spec::test_spec(retries, -1);
        spec.supervision = sup;
        let mut tag = Tag::new(TagName::new("t").unwrap(), spec);
        tag.set_storm(None);
        tag.start().unwrap();
        tag
    }

    fn policy(restart: RestartPolicy, start_ms: u64) -> Supervision {
        Supervision {
            restart,
            success_exit_codes: vec![0, 3],
            success_signals: vec![Signal::TERM],
            start_secs: Duration::from_millis(start_ms),
            notify: false,
        }
    }

    /// One row per case of the policy table in `crate::policy`: the policy, how long the instance lived
    /// (its `start_secs` is 1 s), how it ended, then the state it leaves and whether the budget counted.
    #[test]
    fn the_policy_table() {
        use RestartPolicy::*;
        #[rustfmt::skip]
        let rows = [
            // policy     lived  exit                 state      restarts used
            (Always,     2000, Exit::Code(0),        "running", 1),
            (Always,      100, Exit::Code(1),        "running", 1),
            (OnFailure,  2000, Exit::Code(0),        "exited",  0),
            (OnFailure,  2000, Exit::Code(3),        "exited",  0),
            (OnFailure,  2000, Exit::Signal(15),     "exited",  0),
            (OnFailure,  2000, Exit::Code(1),        "running", 1),
            (OnFailure,  2000, Exit::Signal(9),      "running", 1),
            (OnFailure,   100, Exit::Code(0),        "running", 1),
            (Never,      2000, Exit::Code(0),        "exited",  0),
            (Never,      2000, Exit::Code(1),        "failed",  0),
            (Never,       100, Exit::Code(0),        "failed",  0),
        ];
        for (restart, lived, exit, state, used) in rows {
            let mut t = tag(-1, policy(restart, 1000));
            t.spawned(p(100), ms(0));
            if lived >= 1000 {
                assert_eq!(t.timer(ms(1000)), vec![Effect::Emit(TagEvent::Up { pid: 100 })]);
            }
            let fx = t.exited(100, exit, ms(lived));
            if state == "running" {
                assert_eq!(fx.last(), Some(&Effect::Spawn), "{restart:?} {lived} {exit:?}");
                t.spawned(p(101), ms(lived));
            }
            assert_eq!(t.state().name(), state, "{restart:?} {lived} {exit:?}: {fx:?}");
            assert_eq!(t.restarts_used(ms(lived)), used, "{restart:?} {lived} {exit:?}");
        }
    }

    #[test]
    fn a_death_before_start_secs_is_a_failed_start_and_says_so() {
        let mut t = tag(0, policy(RestartPolicy::Never, 1000));
        assert_eq!(
            t.spawned(p(100), ms(0))[1],
            Effect::Timer(ms(1000)),
            "the start timer is armed"
        );
        assert!(!t.is_up());
        assert_eq!(t.timer(ms(999)), vec![], "not before its time");
        let fx = t.exited(100, Exit::Code(0), ms(500));
        let reason = "exited at once (exit 0); restart = never";
        assert_eq!(fx[1], Effect::Emit(TagEvent::Failed { reason: reason.into() }));
        assert_eq!(t.timer(ms(1000)), vec![], "the timer of a gone instance does nothing");
        // An exited or failed tag starts again with `start`.
        assert_eq!(t.start(), Ok(vec![Effect::Spawn]));
    }

    #[test]
    fn a_notify_tag_is_up_at_ready_and_after_waits_for_it() {
        let sup = Supervision {
            notify: true,
            start_secs: Duration::from_secs(1),
            ..Supervision::default()
        };
        let mut db = Tag::new(TagName::new("db").unwrap(), {
            let mut s = crate::spec::test_spec(-1, -1);
            s.supervision = sup;
            s
        });
        db.start().unwrap();
        assert_eq!(db.spawned(p(100), ms(0)).len(), 1, "no start timer: READY=1 decides");
        let deps = [TagName::new("db").unwrap()];
        assert!(!after_ready(&deps, |_| Some(&db)), "running is not enough");
        assert_eq!(db.timer(ms(5000)), vec![]);
        assert!(!db.is_up());
        db.notified(100, &[Notify::Ready], ms(6000)).unwrap();
        assert!(db.is_up());
        assert!(after_ready(&deps, |_| Some(&db)));
        // A plain tag is up as soon as it runs, as before.
        let mut plain = tag(-1, Supervision::default());
        plain.spawned(p(200), ms(0));
        assert!(after_ready(&deps, |_| Some(&plain)));
    }

    #[test]
    fn a_start_still_counting_when_vigild_restarts_is_timed_from_its_start() {
        let mut t = tag(-1, policy(RestartPolicy::Always, 1000));
        t.spawned(p(100), ms(0));
        let saved = crate::tag::Saved {
            state: t.state().clone(),
            enabled: true,
            main: t.main(),
            budget: vec![],
            started_at: t.started_at(),
            last_exit: None,
            starts: t.starts(),
            quick_failures: 0,
            pending: None,
            ready: false,
            status: None,
            up: t.up(),
        };
        let mut back = Tag::restored(t.name().clone(), t.spec().clone(), saved);
        back.adopt(p(100), 0);
        assert_eq!(
            back.resumed(ms(400)),
            vec![Effect::Timer(ms(1000))],
            "not from the resume"
        );
        assert_eq!(back.timer(ms(1000)), vec![Effect::Emit(TagEvent::Up { pid: 100 })]);
        assert!(back.is_up());
    }

    #[test]
    fn autostart_false_stays_stopped_until_started_and_a_new_spec_does_not_start_it() {
        let mut t = Tag::new(TagName::new("t").unwrap(), crate::spec::test_spec(0, -1));
        t.declare_stopped();
        assert_eq!(t.resumed(ms(0)), vec![], "a restart of vigild leaves it stopped");
        let mut spec = crate::spec::test_spec(3, -1);
        spec.supervision.restart = RestartPolicy::Never;
        assert_eq!(t.respec_manual(spec.clone(), ms(1)), vec![]);
        assert_eq!((t.state(), t.spec()), (&TagState::Stopped, &spec));
        assert_eq!(t.start(), Ok(vec![Effect::Spawn]));
        t.spawned(p(100), ms(2));
        // Running, a new spec restarts it as any changed tag.
        let fx = t.respec_manual(crate::spec::test_spec(1, -1), ms(3));
        assert_eq!(
            fx.first(),
            Some(&Effect::Signal {
                signal: Signal::TERM,
                procs: vec![p(100)]
            })
        );
    }

    #[test]
    fn modify_supervision_applies_from_the_next_exit() {
        let mut t = tag(-1, policy(RestartPolicy::Always, 5000));
        t.spawned(p(100), ms(0));
        assert!(!t.is_up());
        // No start_secs any more: the start counts at once.
        assert_eq!(t.modify_supervision(policy(RestartPolicy::OnFailure, 0)), vec![]);
        assert!(t.is_up());
        assert_eq!(
            t.exited(100, Exit::Code(0), ms(10)).len(),
            1,
            "exit posted, not restarted"
        );
        assert_eq!(t.state(), &TagState::Exited);
    }

    #[test]
    fn a_health_stop_is_a_failure_whatever_the_status() {
        let mut sup = policy(RestartPolicy::OnFailure, 0);
        sup.success_signals = vec![Signal::TERM];
        let mut spec = crate::spec::test_spec(-1, -1);
        spec.supervision = sup;
        spec.health.watchdog = Some(Duration::from_secs(1));
        let mut t = Tag::new(TagName::new("t").unwrap(), spec);
        t.set_storm(None);
        t.start().unwrap();
        t.spawned(p(100), ms(0));
        t.timer(ms(1000));
        assert_eq!(t.state().name(), "stopping");
        let fx = t.exited(100, Exit::Signal(15), ms(1100));
        assert_eq!(fx.last(), Some(&Effect::Spawn), "restarted, not exited: {fx:?}");
        assert_ne!(t.state(), &TagState::Exited);
        assert_eq!(t.restarts_used(ms(1100)), 1, "counted like a crash");
    }
}
