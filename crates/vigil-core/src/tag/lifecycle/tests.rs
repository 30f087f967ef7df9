//! One test per case of `resumed` and `respec` (the table at the top of `lifecycle.rs`), and the
//! readiness of `after`.

use std::time::Duration;

use super::after_ready;
use crate::names::TagName;
use crate::signal::Signal;
use crate::spec::{Level, TagSpec};
use crate::tag::{Effect, StartKind, StopMode, Tag, TagState};
use crate::time::Timestamp;
use crate::tree::ProcId;

fn spec() -> TagSpec {
    crate::spec::test_spec(3, -1)
}

fn t(s: u64) -> Timestamp {
    Timestamp(s * 1000)
}

fn p(pid: i32) -> ProcId {
    ProcId { pid, start_time: 1 }
}

fn name(s: &str) -> TagName {
    TagName::new(s).unwrap()
}

/// A tag as a store would give it back: in `state`, with `procs` (pid, depth) re-adopted, one restart
/// of its budget used.
fn stored(state: TagState, procs: &[(i32, u32)]) -> Tag {
    let mut tag = Tag::new(name("t"), spec());
    tag.state = state;
    for (pid, depth) in procs {
        tag.tree.insert(p(*pid), *depth);
    }
    tag.budget.history.push(t(1));
    tag.starts = 1;
    tag
}

// resumed

#[test]
fn resumed_makes_a_start_that_was_decided_and_never_reported() {
    let mut tag = stored(TagState::Backoff { until: t(50) }, &[]);
    tag.pending = Some(StartKind::Restart { counted: true });
    assert_eq!(tag.resumed(t(10)), vec![Effect::Spawn], "the start wins over the state");
    assert_eq!(
        tag.pending,
        Some(StartKind::Restart { counted: true }),
        "of the kind decided"
    );
}

#[test]
fn resumed_in_backoff_waits_out_the_same_backoff() {
    let mut tag = stored(TagState::Backoff { until: t(50) }, &[]);
    assert_eq!(tag.resumed(t(10)), vec![Effect::Timer(t(50))]);
    assert_eq!(tag.state, TagState::Backoff { until: t(50) });
}

#[test]
fn resumed_while_stopping_with_processes_keeps_the_stop_deadline() {
    let stopping = TagState::Stopping {
        deadline: t(20),
        then: StopMode::Restart,
        killed: false,
    };
    let mut tag = stored(stopping.clone(), &[(100, 0)]);
    assert_eq!(tag.resumed(t(10)), vec![Effect::Timer(t(20))]);
    assert_eq!(tag.state, stopping, "what the stop ends in is kept");
}

#[test]
fn resumed_while_stopping_without_processes_is_left_to_end_stopped_and_disabled() {
    let mut tag = stored(
        TagState::Stopping {
            deadline: t(20),
            then: StopMode::Restart,
            killed: false,
        },
        &[],
    );
    assert_eq!(
        tag.resumed(t(10)),
        vec![],
        "no signal and no timer: there is nothing to stop"
    );
    assert_eq!(
        tag.state,
        TagState::Stopping {
            deadline: t(20),
            then: StopMode::Stay,
            killed: false,
        }
    );
    assert!(!tag.enabled);
}

#[test]
fn resumed_in_action_runs_the_action_again() {
    let mut tag = stored(TagState::Action, &[]);
    assert_eq!(tag.resumed(t(10)), vec![Effect::RunAction]);
    assert_eq!(tag.state, TagState::Action);
}

#[test]
fn resumed_stopped_and_enabled_starts_with_a_fresh_budget() {
    // Stopped by vigild's own shutdown: it starts with the next vigild.
    let mut tag = stored(TagState::Stopped, &[]);
    assert_eq!(tag.resumed(t(10)), vec![Effect::Spawn]);
    assert_eq!(tag.pending, Some(StartKind::First));
    assert!(tag.budget.history.is_empty());
}

#[test]
fn resumed_stopped_by_the_user_stays_stopped() {
    let mut tag = stored(TagState::Stopped, &[]);
    tag.enabled = false;
    assert_eq!(tag.resumed(t(10)), vec![]);
    assert_eq!(tag.state, TagState::Stopped);
    assert_eq!(tag.pending, None);
}

#[test]
fn resumed_failed_or_waiting_does_nothing_by_itself() {
    let failed = TagState::Failed { reason: "gone".into() };
    for state in [failed, TagState::Waiting] {
        let mut tag = stored(state.clone(), &[]);
        assert_eq!(tag.resumed(t(10)), vec![], "{state:?}");
        assert_eq!(tag.state, state);
        assert_eq!(tag.pending, None);
    }
}

#[test]
fn resumed_running_whose_watched_processes_vanished_starts_afresh() {
    // A reboot: the store says running, and no process of the tag is left.
    let mut tag = stored(TagState::Running, &[]);
    assert_eq!(tag.resumed(t(10)), vec![Effect::Spawn]);
    assert_eq!(tag.state, TagState::Stopped, "until the start is reported");
    assert_eq!(tag.pending, Some(StartKind::First));
    assert!(tag.budget.history.is_empty());

    // Only an unwatched grandchild is left: as good as gone.
    let mut tag = stored(TagState::Running, &[(300, 2)]);
    tag.spec.level = Level(Some(0));
    assert_eq!(tag.resumed(t(10)), vec![], "a tree that is not empty cannot start");
    assert_eq!(tag.state, TagState::Stopped);
}

#[test]
fn resumed_running_restarts_its_health_clocks_from_now() {
    let mut tag = stored(TagState::Running, &[(100, 0)]);
    tag.spec.health.watchdog = Some(Duration::from_secs(30));
    assert_eq!(tag.resumed(t(100)), vec![Effect::Timer(t(130))]);
    assert_eq!(tag.state, TagState::Running);
    assert_eq!(tag.budget.history, vec![t(1)], "the budget is the stored one");

    let mut quiet = stored(TagState::Running, &[(100, 0)]);
    assert_eq!(quiet.resumed(t(100)), vec![], "no health check: nothing is due");
}

// respec

fn new_spec() -> TagSpec {
    TagSpec {
        command: vec!["sleep".into(), "200".into()],
        stop_signal: Signal::new(2).unwrap(),
        stop_timeout: Duration::from_secs(9),
        ..spec()
    }
}

#[test]
fn respec_of_a_stopped_tag_starts_it_with_the_new_spec() {
    let mut tag = stored(TagState::Stopped, &[]);
    tag.enabled = false;
    assert_eq!(tag.respec(new_spec(), t(10)), vec![Effect::Spawn]);
    assert_eq!(tag.spec, new_spec());
    assert!(tag.enabled, "a changed config starts even a tag the user stopped");
    assert_eq!(tag.pending, Some(StartKind::First));
    assert!(tag.budget.history.is_empty());
}

#[test]
fn respec_of_a_failed_tag_starts_it() {
    let mut tag = stored(TagState::Failed { reason: "gone".into() }, &[]);
    assert_eq!(tag.respec(new_spec(), t(10)), vec![Effect::Spawn]);
    assert_eq!(tag.pending, Some(StartKind::First));
}

#[test]
fn respec_of_a_running_tag_stops_it_with_the_new_stop_signal_then_restarts() {
    let mut tag = stored(TagState::Running, &[(100, 0), (101, 1)]);
    assert_eq!(
        tag.respec(new_spec(), t(10)),
        vec![
            Effect::Signal {
                signal: Signal::new(2).unwrap(),
                procs: vec![p(100), p(101)],
            },
            Effect::Timer(t(19)),
        ]
    );
    assert_eq!(
        tag.state,
        TagState::Stopping {
            deadline: t(19),
            then: StopMode::Restart,
            killed: false,
        }
    );
}

#[test]
fn respec_of_a_tag_under_way_without_processes_restarts_it_uncounted() {
    for state in [TagState::Backoff { until: t(50) }, TagState::Action] {
        let mut tag = stored(state.clone(), &[]);
        assert_eq!(tag.respec(new_spec(), t(10)), vec![Effect::Spawn], "{state:?}");
        assert_eq!(tag.pending, Some(StartKind::Restart { counted: false }));
        assert!(tag.budget.history.is_empty(), "{state:?}");
    }
}

#[test]
fn respec_of_a_waiting_tag_starts_it_without_waiting() {
    let mut tag = stored(TagState::Waiting, &[]);
    assert_eq!(tag.respec(new_spec(), t(10)), vec![Effect::Spawn]);
    assert_eq!(tag.pending, Some(StartKind::Restart { counted: false }));
}

#[test]
fn respec_of_a_stopping_tag_makes_the_stop_end_in_a_restart() {
    let mut tag = stored(
        TagState::Stopping {
            deadline: t(20),
            then: StopMode::Stay,
            killed: true,
        },
        &[(100, 0)],
    );
    assert_eq!(tag.respec(new_spec(), t(10)), vec![], "the stop under way goes on");
    assert_eq!(
        tag.state,
        TagState::Stopping {
            deadline: t(20),
            then: StopMode::Restart,
            killed: true,
        }
    );
    assert_eq!(tag.spec, new_spec());
}

// after

#[test]
fn after_is_ready_when_every_tag_named_runs() {
    let tag = |n: &str, state: TagState| {
        let mut t = Tag::new(name(n), spec());
        t.state = state;
        // Up as a tag without start_secs or notify is from its start (a tag not yet up: policy.rs).
        t.up = true;
        (name(n), t)
    };
    let tags: std::collections::BTreeMap<TagName, Tag> = [
        tag("db", TagState::Running),
        tag("cache", TagState::Running),
        tag("queue", TagState::Waiting),
        tag("mail", TagState::Backoff { until: t(5) }),
        tag("log", TagState::Stopped),
        tag("old", TagState::Failed { reason: "x".into() }),
        tag(
            "web",
            TagState::Stopping {
                deadline: t(5),
                then: StopMode::Restart,
                killed: false,
            },
        ),
    ]
    .into_iter()
    .collect();
    let ready = |after: &[&str]| after_ready(&after.iter().map(|a| name(a)).collect::<Vec<_>>(), |n| tags.get(n));
    assert!(ready(&[]), "no after: ready at once");
    assert!(ready(&["db"]));
    assert!(ready(&["db", "cache"]));
    for not_running in ["queue", "mail", "log", "old", "web"] {
        assert!(!ready(&["db", not_running]), "{not_running}");
    }
    assert!(!ready(&["db", "nosuch"]), "a tag that does not exist is not running");
}

#[test]
fn respec_of_a_failed_tag_with_unwatched_leftovers_stops_them_before_it_starts() {
    // Level 0: the main process's children are not watched, and outlive its failure.
    let mut tag = stored(TagState::Failed { reason: "spent".into() }, &[(300, 1)]);
    tag.spec.level = Level(Some(0));
    assert_eq!(
        tag.respec(new_spec(), t(10)),
        vec![
            Effect::Signal {
                signal: Signal::new(2).unwrap(),
                procs: vec![p(300)],
            },
            Effect::Timer(t(19)),
        ]
    );
    assert_eq!(
        tag.state,
        TagState::Stopping {
            deadline: t(19),
            then: StopMode::Restart,
            killed: false,
        }
    );
}
