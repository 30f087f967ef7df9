//! Attributing the process connector's events to tags, and the lineage of processes a tag forked that
//! were gone before vigild could watch them.
//!
//! Events are taken in the order the kernel queued them, for identity: an exit takes its pid out of
//! every lookup at once, so a pid reused later in the same read names the new process only (a fork by
//! it is never put in the old process's tag). Every fork of a process is queued before its exit, so
//! nothing that process did is lost by forgetting it there. Only the judgement "the tag is now empty"
//! waits for the end of the read (see `super::procs`).
//!
//! The process connector names the parent of every fork, but a short-lived middle process (the
//! subshell of `( daemon & )`, `setsid -f`, a double-forking daemon's first child) has often exited,
//! and been reaped by its parent, by the time vigild reads its fork event: it has no start time and no
//! pidfd left, so it cannot be watched. Its own forks are still queued behind its fork event, and they
//! must be attributed: so the pid is remembered here with its tag and depth, and the fork events that
//! name it as parent find their tag and level through it.
//!
//! An entry lives until the process's exit event, or until a fork event creates a new process under
//! the same pid. The map is bounded per tag and in all, against exit events the kernel dropped and
//! against a tag forking faster than vigild reads: an entry pushed out costs its tag a /proc rescan,
//! never another tag's attribution.

use std::collections::{BTreeMap, HashMap};

use vigil_core::TagName;
use vigil_sys::{ProcEvent, WaitStatus};

/// How many gone processes are remembered at most, all tags together. Each is forgotten at its exit
/// event, normally in the same read of the connector: only dropped events leave entries behind.
const CAPACITY: usize = 16_384;

/// How many gone processes one tag may have remembered at once: a tag forking in a loop pushes out its
/// own oldest entries, not another tag's.
const PER_TAG: usize = 1_024;

/// What became of a process found to belong to a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// Now watched, in the tag's tree.
    New,
    /// Already in the tag's tree.
    Known,
    /// Gone before it could be watched (no start time or pidfd any more, or another process now).
    Gone,
    /// The tag is no more: nothing to adopt into.
    Unowned,
}

/// What attribution needs to know of, and do to, the processes vigild watches.
pub trait Watch {
    /// The tag and depth of a watched process, if it is one of a tag that still exists.
    fn owner(&self, pid: i32) -> Option<(TagName, u32)>;
    /// Whether the pid is watched at all (for a tag or as a PSM member).
    fn is_watched(&self, pid: i32) -> bool;
    /// Whether a watched pid now names another process: the watched one ended unseen.
    fn is_stale(&self, pid: i32) -> bool;
    /// A watched process ended (`None`: how is not known): it leaves every lookup now.
    fn exited(&mut self, pid: i32, status: Option<WaitStatus>);
    /// Watches `pid` as a process of `tag` at `depth`, if it is still there.
    fn adopt(&mut self, tag: &TagName, pid: i32, depth: u32) -> Adopted;
    /// The tag lost the lineage of one of its gone processes: its tree must be looked for in /proc.
    fn lost_track(&mut self, tag: &TagName);
}

#[derive(Debug, Default)]
pub struct Lineage {
    by_pid: HashMap<i32, Entry>,
    /// Per tag, insertion number -> pid, to push out the oldest first.
    per_tag: HashMap<TagName, BTreeMap<u64, i32>>,
    next: u64,
}

#[derive(Debug)]
struct Entry {
    tag: TagName,
    depth: u32,
    seq: u64,
}

impl Lineage {
    /// Takes one connector event. Returns true when a fork's child was already gone (its lineage is
    /// kept, and its own forks are queued: worth reading again).
    pub fn apply<W: Watch>(&mut self, w: &mut W, ev: ProcEvent) -> bool {
        match ev {
            ProcEvent::Fork { parent, child } => self.on_fork(w, parent, child),
            ProcEvent::Exit { pid, status } => {
                self.forget(pid);
                if w.is_watched(pid) {
                    w.exited(pid, Some(status));
                }
                false
            }
            ProcEvent::Exec { .. } => false,
        }
    }

    fn on_fork<W: Watch>(&mut self, w: &mut W, parent: i32, child: i32) -> bool {
        // The pid now names a new process: whatever was known under it has ended.
        self.forget(child);
        if w.is_watched(child) && w.is_stale(child) {
            w.exited(child, None);
        }
        let Some((tag, depth)) = w
            .owner(parent)
            .or_else(|| self.get(parent).map(|(t, d)| (t.clone(), d)))
        else {
            return false;
        };
        let depth = depth.saturating_add(1);
        if w.adopt(&tag, child, depth) != Adopted::Gone {
            return false;
        }
        tracing::debug!(tag = %tag, pid = child, depth, "forked and gone before it could be watched");
        if let Some(lost) = self.record(child, tag, depth) {
            w.lost_track(&lost);
        }
        true
    }

    /// Remembers that `pid`, gone before it could be watched, was a process of `tag` at `depth`.
    /// Returns the tag of an entry pushed out to make room, if one was.
    pub fn record(&mut self, pid: i32, tag: TagName, depth: u32) -> Option<TagName> {
        self.forget(pid);
        let mut lost = None;
        let own = self.per_tag.get(&tag).map_or(0, BTreeMap::len);
        let victim = if own >= PER_TAG {
            self.per_tag.get(&tag).and_then(|o| o.values().next().copied())
        } else if self.by_pid.len() >= CAPACITY {
            // The oldest entry of the tag that holds the most (of those, the one waiting longest): a
            // busy tag pays, not a quiet one.
            self.per_tag
                .values()
                .filter_map(|o| {
                    o.first_key_value()
                        .map(|(seq, pid)| (o.len(), std::cmp::Reverse(*seq), *pid))
                })
                .max()
                .map(|(_, _, pid)| pid)
        } else {
            None
        };
        if let Some(old) = victim {
            lost = self.forget(old);
        }
        let seq = self.next;
        self.next += 1;
        self.per_tag.entry(tag.clone()).or_default().insert(seq, pid);
        self.by_pid.insert(pid, Entry { tag, depth, seq });
        lost
    }

    /// The tag and depth of a gone process, if it was one of a tag's.
    pub fn get(&self, pid: i32) -> Option<(&TagName, u32)> {
        self.by_pid.get(&pid).map(|e| (&e.tag, e.depth))
    }

    /// The process exited, or its pid now names another process. Returns the tag it was of.
    pub fn forget(&mut self, pid: i32) -> Option<TagName> {
        let e = self.by_pid.remove(&pid)?;
        if let Some(o) = self.per_tag.get_mut(&e.tag) {
            o.remove(&e.seq);
            if o.is_empty() {
                self.per_tag.remove(&e.tag);
            }
        }
        Some(e.tag)
    }

    /// After events were lost, nothing here can be trusted to be current.
    pub fn clear(&mut self) {
        self.by_pid.clear();
        self.per_tag.clear();
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }
}

#[cfg(test)]
mod tests;
