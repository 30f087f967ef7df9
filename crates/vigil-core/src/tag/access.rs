//! A tag's fields are the rules' own: the daemon reads them through these accessors, and changes a tag
//! only through the rules' methods and the few named writes below (a process found outside the rules,
//! a policy setting, a tag given back by the store).

use super::{StartKind, Tag, TagState, Throttle};
use crate::budget::{RestartBudget, Storm};
use crate::health::Health;
use crate::names::TagName;
use crate::spec::TagSpec;
use crate::time::Timestamp;
use crate::tree::{Exit, ProcId, ProcTree};

/// What the store keeps of a tag besides its name, spec and processes: enough for [`Tag::restored`] to
/// give the tag back as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub state: TagState,
    pub enabled: bool,
    pub main: Option<ProcId>,
    /// The restarts counted against the budget.
    pub budget: Vec<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub last_exit: Option<(i32, Exit)>,
    pub starts: u64,
    pub quick_failures: u32,
    pub pending: Option<StartKind>,
    /// `READY=1` was received, and the last `STATUS=` text.
    pub ready: bool,
    pub status: Option<String>,
    /// The current instance counts as running (see `Tag::is_up`).
    pub up: bool,
}

impl Tag {
    /// A tag as the store kept it, with an empty tree: its processes are adopted (`adopt`) once checked.
    pub fn restored(name: TagName, spec: TagSpec, saved: Saved) -> Tag {
        let mut tag = Tag::new(name, spec);
        tag.health.ready = saved.ready;
        tag.health.status = saved.status;
        tag.state = saved.state;
        tag.enabled = saved.enabled;
        tag.main = saved.main;
        tag.budget.history = saved.budget;
        tag.started_at = saved.started_at;
        tag.last_exit = saved.last_exit;
        tag.starts = saved.starts;
        tag.quick_failures = saved.quick_failures;
        tag.pending = saved.pending;
        tag.up = saved.up;
        tag
    }

    /// A live process of the tag that vigild found itself rather than saw forked (re-adopted after a
    /// restart, or found by a scan) joins the tree at `depth`. Returns whether it was new to the tree.
    pub fn adopt(&mut self, id: ProcId, depth: u32) -> bool {
        self.tree.insert(id, depth)
    }

    /// The restart-storm policy changed (it is the daemon's, and never restarts the tag).
    pub fn set_storm(&mut self, storm: Option<Storm>) {
        self.storm = storm;
    }

    pub fn name(&self) -> &TagName {
        &self.name
    }

    pub fn spec(&self) -> &TagSpec {
        &self.spec
    }

    pub fn state(&self) -> &TagState {
        &self.state
    }

    pub fn tree(&self) -> &ProcTree {
        &self.tree
    }

    pub fn budget(&self) -> &RestartBudget {
        &self.budget
    }

    /// Whether the tag should run when vigild starts (false once the user stops it).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The process started last (depth 0).
    pub fn main(&self) -> Option<ProcId> {
        self.main
    }

    pub fn started_at(&self) -> Option<Timestamp> {
        self.started_at
    }

    /// The exit that explains the last instance's end.
    pub fn last_exit(&self) -> Option<(i32, Exit)> {
        self.last_exit
    }

    /// Starts of the command in the life of the tag.
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Consecutive quick failures, for the backoff.
    pub fn quick_failures(&self) -> u32 {
        self.quick_failures
    }

    /// A start decided and not yet reported back.
    pub fn pending(&self) -> Option<StartKind> {
        self.pending
    }

    /// The current instance counts as running, or will once its state is `Running` again (stored).
    pub fn up(&self) -> bool {
        self.up
    }

    /// The health checks of the current instance.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Why the current `Backoff` waits, when storm throttling or a resource shortage made it.
    pub fn throttle(&self) -> Option<&Throttle> {
        self.throttle.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::StopMode;

    fn spec() -> TagSpec {
        crate::spec::test_spec(3, -1)
    }

    #[test]
    fn a_restored_tag_is_what_was_saved_with_an_empty_tree() {
        let main = ProcId {
            pid: 100,
            start_time: 7,
        };
        let saved = Saved {
            state: TagState::Stopping {
                deadline: Timestamp(9_000),
                then: StopMode::Restart,
                killed: false,
            },
            enabled: false,
            main: Some(main),
            budget: vec![Timestamp(1_000), Timestamp(2_000)],
            started_at: Some(Timestamp(3_000)),
            last_exit: Some((99, Exit::Signal(9))),
            starts: 4,
            quick_failures: 2,
            pending: Some(StartKind::Restart { counted: true }),
            ready: true,
            status: Some("serving".into()),
            up: true,
        };
        let tag = Tag::restored(TagName::new("db").unwrap(), spec(), saved.clone());
        let back = Saved {
            state: tag.state().clone(),
            enabled: tag.enabled(),
            main: tag.main(),
            budget: tag.budget().history.clone(),
            started_at: tag.started_at(),
            last_exit: tag.last_exit(),
            starts: tag.starts(),
            quick_failures: tag.quick_failures(),
            pending: tag.pending(),
            ready: tag.health().ready,
            status: tag.health().status.clone(),
            up: tag.up(),
        };
        assert_eq!(back, saved);
        assert_eq!(tag.name().as_str(), "db");
        assert_eq!(*tag.spec(), spec());
        assert!(tag.tree().is_empty(), "processes are adopted once checked");
    }

    #[test]
    fn adopt_puts_a_found_process_in_the_tree_once() {
        let mut tag = Tag::new(TagName::new("db").unwrap(), spec());
        let id = ProcId {
            pid: 300,
            start_time: 7,
        };
        assert!(tag.adopt(id, 1));
        assert!(!tag.adopt(id, 1), "already known");
        assert_eq!(tag.tree().get(300).map(|p| p.depth), Some(1));
    }
}
