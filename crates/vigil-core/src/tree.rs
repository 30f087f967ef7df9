//! The tree of processes that belong to a tag, with the depth of each below the original process.

use std::collections::BTreeMap;
use std::fmt;

use crate::spec::Level;

/// A process, identified so that a reused pid is never mistaken for the old process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId {
    pub pid: i32,
    /// Start time in clock ticks since boot, from /proc/PID/stat.
    pub start_time: u64,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(u8),
    Signal(i32),
    /// Nobody could tell (the process was not ours and the kernel kept no record): never reported as 0.
    Unknown,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::Unknown => f.write_str("unknown"),
        }
    }
}

/// One process of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeProc {
    pub id: ProcId,
    /// 0 for the process the tag started, 1 for its children, and so on.
    pub depth: u32,
}

/// Every live process of a tag: the watched ones (depth within the level) and deeper ones, which are not
/// watched but are still signalled on stop so that no orphan is left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcTree {
    procs: BTreeMap<i32, TreeProc>,
}

impl ProcTree {
    /// Adds a process at a known depth (the started process at 0, or one found again after a restart of
    /// vigild). Returns false when the pid is already present.
    pub fn insert(&mut self, id: ProcId, depth: u32) -> bool {
        if self.procs.contains_key(&id.pid) {
            return false;
        }
        self.procs.insert(id.pid, TreeProc { id, depth });
        true
    }

    /// A process of this tree forked: the child is one level deeper. Returns its depth, or None when the
    /// parent is not ours.
    pub fn on_fork(&mut self, parent: i32, child: ProcId) -> Option<u32> {
        let depth = self.procs.get(&parent)?.depth + 1;
        self.insert(child, depth).then_some(depth)
    }

    pub fn remove(&mut self, pid: i32) -> Option<TreeProc> {
        self.procs.remove(&pid)
    }

    pub fn get(&self, pid: i32) -> Option<&TreeProc> {
        self.procs.get(&pid)
    }

    pub fn contains(&self, pid: i32) -> bool {
        self.procs.contains_key(&pid)
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Processes whose depth the level watches.
    pub fn watched(&self, level: Level) -> impl Iterator<Item = &TreeProc> {
        self.procs.values().filter(move |p| level.watches(p.depth))
    }

    pub fn all(&self) -> impl Iterator<Item = &TreeProc> {
        self.procs.values()
    }

    pub fn ids(&self) -> Vec<ProcId> {
        self.procs.values().map(|p| p.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pid: i32) -> ProcId {
        ProcId {
            pid,
            start_time: pid as u64 * 10,
        }
    }

    #[test]
    fn depths_and_watching() {
        let mut t = ProcTree::default();
        assert!(t.insert(id(10), 0));
        assert_eq!(t.on_fork(10, id(11)), Some(1));
        assert_eq!(t.on_fork(11, id(12)), Some(2));
        assert_eq!(t.on_fork(99, id(13)), None, "not our parent");
        let level1 = Level::from_i64(1).unwrap();
        let watched: Vec<i32> = t.watched(level1).map(|p| p.id.pid).collect();
        assert_eq!(watched, [10, 11]);
        assert_eq!(t.watched(Level::ALL).count(), 3);
        t.remove(10);
        t.remove(11);
        assert_eq!(t.watched(level1).count(), 0);
        assert_eq!(t.len(), 1, "the unwatched grandchild is still tracked for stop");
    }
}
