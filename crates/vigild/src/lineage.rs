//! The lineage of processes a tag forked that were gone before vigild could watch them.
//!
//! The process connector names the parent of every fork, but a short-lived middle process (the
//! subshell of `( daemon & )`, `setsid -f`, a double-forking daemon's first child) has often exited,
//! and been reaped by its parent, by the time vigild reads its fork event: it has no start time and no
//! pidfd left, so it cannot be watched. Its own forks are still queued behind its fork event, and they
//! must be attributed: so the pid is remembered here with its tag and depth, and the fork events that
//! name it as parent find their tag and level through it.
//!
//! An entry lives until the process's exit event (every fork of a process is queued before its exit),
//! or until a fork event creates a new process under the same pid (the old one is then long gone). The
//! map is bounded, the oldest entries going first, against exit events the kernel dropped.

use std::collections::{BTreeMap, HashMap};

use vigil_core::TagName;

/// How many gone processes are remembered at most. Each is forgotten at its exit event, normally in the
/// same read of the connector: only dropped events leave entries behind, and they go first.
const CAPACITY: usize = 16_384;

#[derive(Debug, Default)]
pub struct Lineage {
    by_pid: HashMap<i32, Entry>,
    /// Insertion number -> pid, to forget the oldest first.
    order: BTreeMap<u64, i32>,
    next: u64,
}

#[derive(Debug)]
struct Entry {
    tag: TagName,
    depth: u32,
    seq: u64,
}

impl Lineage {
    /// Remembers that `pid`, gone before it could be watched, was a process of `tag` at `depth`.
    pub fn record(&mut self, pid: i32, tag: TagName, depth: u32) {
        self.forget(pid);
        while self.by_pid.len() >= CAPACITY {
            let Some((_, old)) = self.order.pop_first() else { break };
            self.by_pid.remove(&old);
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, pid);
        self.by_pid.insert(pid, Entry { tag, depth, seq });
    }

    /// The tag and depth of a gone process, if it was one of a tag's.
    pub fn get(&self, pid: i32) -> Option<(&TagName, u32)> {
        self.by_pid.get(&pid).map(|e| (&e.tag, e.depth))
    }

    /// The process exited, or its pid now names another process.
    pub fn forget(&mut self, pid: i32) {
        if let Some(e) = self.by_pid.remove(&pid) {
            self.order.remove(&e.seq);
        }
    }

    /// After events were lost, nothing here can be trusted to be current.
    pub fn clear(&mut self) {
        self.by_pid.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> TagName {
        TagName::new(s).unwrap()
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

    #[test]
    fn bounded_oldest_first() {
        let mut l = Lineage::default();
        for pid in 0..CAPACITY as i32 + 10 {
            l.record(pid, tag("a"), 1);
        }
        assert_eq!(l.len(), CAPACITY);
        assert_eq!(l.get(9), None, "the oldest went first");
        assert!(l.get(10).is_some());
        assert!(l.get(CAPACITY as i32 + 9).is_some());
    }
}
