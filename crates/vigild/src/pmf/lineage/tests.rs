//! Attribution of event sequences, against a process table held in memory.

use std::collections::{BTreeSet, HashMap};

use super::*;

fn tag(s: &str) -> TagName {
    TagName::new(s).unwrap()
}

fn fork(parent: i32, child: i32) -> ProcEvent {
    ProcEvent::Fork { parent, child }
}

fn exit(pid: i32) -> ProcEvent {
    ProcEvent::Exit {
        pid,
        status: WaitStatus::Exited(0),
    }
}

/// The system's processes (pid -> start time) and what vigild watches (pid -> tag, depth, start time).
#[derive(Default)]
struct World {
    live: HashMap<i32, u64>,
    watched: HashMap<i32, (TagName, u32, u64)>,
    tags: BTreeSet<TagName>,
    exits: Vec<(i32, Option<WaitStatus>)>,
    lost: Vec<TagName>,
    next_start: u64,
}

impl World {
    fn with_tags(names: &[&str]) -> World {
        World {
            tags: names.iter().map(|n| tag(n)).collect(),
            next_start: 100,
            ..World::default()
        }
    }

    /// A process starts under `pid` (a new one if the pid was used before).
    fn spawn(&mut self, pid: i32) {
        self.next_start += 1;
        self.live.insert(pid, self.next_start);
    }

    /// A live process is watched as one of `t`'s at `depth`.
    fn watch(&mut self, pid: i32, t: &str, depth: u32) {
        self.watched.insert(pid, (tag(t), depth, self.live[&pid]));
    }

    fn tag_of(&self, pid: i32) -> Option<&str> {
        self.watched.get(&pid).map(|(t, _, _)| t.as_str())
    }

    fn run(&mut self, l: &mut Lineage, events: &[ProcEvent]) {
        for ev in events {
            l.apply(self, *ev);
        }
    }
}

impl Watch for World {
    fn owner(&self, pid: i32) -> Option<(TagName, u32)> {
        self.watched
            .get(&pid)
            .filter(|(t, _, _)| self.tags.contains(t))
            .map(|(t, d, _)| (t.clone(), *d))
    }

    fn is_watched(&self, pid: i32) -> bool {
        self.watched.contains_key(&pid)
    }

    fn is_stale(&self, pid: i32) -> bool {
        match (self.watched.get(&pid), self.live.get(&pid)) {
            (Some((_, _, st)), Some(now)) => st != now,
            _ => false,
        }
    }

    fn exited(&mut self, pid: i32, status: Option<WaitStatus>) {
        self.watched.remove(&pid);
        self.exits.push((pid, status));
    }

    fn adopt(&mut self, t: &TagName, pid: i32, depth: u32) -> Adopted {
        if !self.tags.contains(t) {
            return Adopted::Unowned;
        }
        if self.watched.get(&pid).is_some_and(|(w, _, _)| w == t) {
            return Adopted::Known;
        }
        match self.live.get(&pid) {
            Some(&st) => {
                self.watched.insert(pid, (t.clone(), depth, st));
                Adopted::New
            }
            None => Adopted::Gone,
        }
    }

    fn lost_track(&mut self, t: &TagName) {
        self.lost.push(t.clone());
    }
}

/// A's process P exits and its pid goes to a child of X, which is no tag's (another user's shell):
/// that child's own fork must not be put in A, or stopping A would kill it.
#[test]
fn reused_pid_forking_is_not_the_old_tags() {
    let mut w = World::with_tags(&["a"]);
    let mut l = Lineage::default();
    for pid in [10, 20] {
        w.spawn(pid);
    }
    w.watch(10, "a", 0);
    // By the time the events are read: P exited, X forked a new P, which forked Q.
    w.live.remove(&10);
    w.spawn(10);
    w.spawn(30);
    w.run(&mut l, &[exit(10), fork(20, 10), fork(10, 30)]);
    assert_eq!(w.exits, vec![(10, Some(WaitStatus::Exited(0)))]);
    assert_eq!(w.tag_of(10), None, "the new P is nobody's");
    assert_eq!(w.tag_of(30), None, "Q is nobody's");
}

/// The reused pid goes to another child of the same tag: it is watched as a new process (not "known"
/// under the old one's identity), at its own depth.
#[test]
fn reused_pid_in_the_same_tag_is_watched_anew() {
    let mut w = World::with_tags(&["a"]);
    let mut l = Lineage::default();
    for pid in [10, 11] {
        w.spawn(pid);
    }
    w.watch(10, "a", 0);
    w.watch(11, "a", 1);
    w.live.remove(&11);
    w.spawn(11);
    w.run(&mut l, &[exit(11), fork(10, 11)]);
    assert_eq!(w.exits.len(), 1);
    let (t, depth, st) = &w.watched[&11];
    assert_eq!((t.as_str(), *depth, *st), ("a", 1, w.live[&11]));
}

/// The reused pid goes to a child of another tag's process: it is that tag's, and nothing later
/// takes it away from it.
#[test]
fn reused_pid_in_another_tag_stays_there() {
    let mut w = World::with_tags(&["a", "b"]);
    let mut l = Lineage::default();
    for pid in [10, 20] {
        w.spawn(pid);
    }
    w.watch(10, "a", 0);
    w.watch(20, "b", 0);
    w.live.remove(&10);
    w.spawn(10);
    w.run(&mut l, &[exit(10), fork(20, 10)]);
    assert_eq!(w.tag_of(10), Some("b"));
    assert_eq!(
        w.exits,
        vec![(10, Some(WaitStatus::Exited(0)))],
        "the old P's exit only"
    );
}

/// A watched pid whose exit was never read (dropped) names another process at a fork: the old one is
/// ended first, and the new one goes where its parent is.
#[test]
fn fork_under_a_stale_watched_pid_ends_the_old_process() {
    let mut w = World::with_tags(&["a", "b"]);
    let mut l = Lineage::default();
    for pid in [10, 20] {
        w.spawn(pid);
    }
    w.watch(10, "a", 0);
    w.watch(20, "b", 0);
    w.spawn(10);
    w.run(&mut l, &[fork(20, 10)]);
    assert_eq!(w.exits, vec![(10, None)]);
    assert_eq!(w.tag_of(10), Some("b"));
}

/// A process found by a scan before its fork event was read is the same process: known, not ended.
#[test]
fn fork_of_a_process_already_watched_is_known() {
    let mut w = World::with_tags(&["a"]);
    let mut l = Lineage::default();
    for pid in [10, 11] {
        w.spawn(pid);
    }
    w.watch(10, "a", 0);
    w.watch(11, "a", 1);
    w.run(&mut l, &[fork(10, 11)]);
    assert!(w.exits.is_empty());
    assert_eq!(w.tag_of(11), Some("a"));
}

/// A middle process gone before its fork was read passes its tag to its children; after its exit,
/// its pid reused by a stranger passes nothing.
#[test]
fn gone_middle_process_until_its_exit() {
    let mut w = World::with_tags(&["a"]);
    let mut l = Lineage::default();
    for pid in [10, 20, 12] {
        w.spawn(pid);
    }
    w.watch(10, "a", 0);
    // 11 forked 12 and exited before the read; then 11 was reused by 20's child, which forked 13.
    w.spawn(11);
    w.spawn(13);
    w.live.remove(&11);
    w.live.remove(&13);
    let mut gone = false;
    for ev in [fork(10, 11), fork(11, 12), exit(11)] {
        gone |= l.apply(&mut w, ev);
    }
    assert!(gone, "a gone child asks for another read");
    assert_eq!(w.watched[&12].1, 2, "the grandchild, through the gone middle");
    assert!(l.is_empty(), "forgotten at its exit");
    w.run(&mut l, &[fork(20, 11), fork(11, 13)]);
    assert_eq!(l.get(13), None);
    assert_eq!(w.tag_of(13), None);
}

#[test]
fn remembers_until_forgotten() {
    let mut l = Lineage::default();
    l.record(10, tag("a"), 1);
    l.record(11, tag("b"), 3);
    assert_eq!(l.get(10), Some((&tag("a"), 1)));
    assert_eq!(l.get(11), Some((&tag("b"), 3)));
    l.forget(10);
    assert_eq!(l.get(10), None);
    // Recorded again (a reused pid): the newer entry wins, and only one is kept.
    l.record(11, tag("c"), 2);
    assert_eq!(l.get(11), Some((&tag("c"), 2)));
    assert_eq!(l.len(), 1);
    l.clear();
    assert_eq!(l.len(), 0);
}

/// A tag forking in a loop pushes out its own oldest entries, and says so; another tag's stay.
#[test]
fn bounded_per_tag() {
    let mut l = Lineage::default();
    assert_eq!(l.record(1, tag("quiet"), 1), None);
    let mut lost = Vec::new();
    for pid in 100..100 + PER_TAG as i32 + 10 {
        lost.extend(l.record(pid, tag("loop"), 1));
    }
    assert_eq!(lost, vec![tag("loop"); 10]);
    assert_eq!(l.len(), PER_TAG + 1);
    assert_eq!(l.get(1), Some((&tag("quiet"), 1)));
    assert_eq!(l.get(109), None, "the loop's oldest went first");
    assert!(l.get(110).is_some());
}

/// All tags together are bounded too: the entry pushed out is the busiest tag's, not a quiet one's.
#[test]
fn bounded_in_all_busiest_first() {
    let mut l = Lineage::default();
    l.record(1, tag("quiet"), 1);
    let mut pid = 100;
    let mut n = 0;
    'fill: for t in 0.. {
        for _ in 0..PER_TAG - (t % 2) {
            if l.len() == CAPACITY {
                break 'fill;
            }
            l.record(pid, tag(&format!("busy{t}")), 1);
            pid += 1;
            n += 1;
        }
    }
    assert_eq!(n + 1, CAPACITY);
    assert_eq!(l.record(2, tag("quiet"), 1), Some(tag("busy0")));
    assert_eq!(l.record(3, tag("other"), 1), Some(tag("busy2")));
    assert_eq!(l.get(100), None, "busy0's oldest");
    assert_eq!(l.get(1), Some((&tag("quiet"), 1)));
    assert_eq!(l.len(), CAPACITY);
}
