//! Reading the process connector: forks add to trees, exits end processes (see `super::lineage` for
//! how each event is attributed).
//!
//! Events are taken in order, so that a pid reused within one read is never confused with the process
//! that had it before. Only the judgement of a tag whose process exited, "its tree is empty: restart",
//! waits for the end of the read: a process's exit can come before its child's own forks
//! (`sh -c '( daemon & )'` ends while the subshell forks), and a tag must not be found empty, and
//! restarted, while its daemon is still on the way in. A child that was already gone when its fork was
//! read had exited, so its own forks are all queued: the connector is read again until no round finds
//! such a child (up to `DRAIN_ROUNDS`).

use std::collections::{BTreeMap, BTreeSet};

use tracing::warn;
use vigil_core::{Exit, TagName};
use vigil_sys::WaitStatus;

use crate::clock::now;
use crate::pmf::lineage::{Adopted, Watch};
use crate::state::Daemon;

/// Reads of the connector in one drain: a bound, so that a storm of short-lived forks cannot hold the
/// loop. What is left is read on the next turn of the loop (the socket stays readable).
const DRAIN_ROUNDS: usize = 16;

/// Messages (one event each) taken in one read: with `DRAIN_ROUNDS`, at most 16384 events a drain.
const READ_MESSAGES: usize = 1024;

/// One drain of the connector: the daemon, and what waits for the end of the drain.
struct Drain<'a> {
    d: &'a mut Daemon,
    /// Tags a process of which exited: whether one of them was watched by the level, and the latest.
    pending: BTreeMap<TagName, (bool, (i32, Exit))>,
    /// Tags whose lineage lost an entry: looked for in /proc.
    lost: BTreeSet<TagName>,
}

impl Watch for Drain<'_> {
    fn owner(&self, pid: i32) -> Option<(TagName, u32)> {
        let tag = self.d.pmf.procs.get(&pid)?.tag.as_ref()?;
        let depth = self.d.pmf.tags.get(tag)?.tag.tree().get(pid)?.depth;
        Some((tag.clone(), depth))
    }

    fn is_watched(&self, pid: i32) -> bool {
        self.d.pmf.procs.contains_key(&pid)
    }

    fn is_stale(&self, pid: i32) -> bool {
        let Some(w) = self.d.pmf.procs.get(&pid) else {
            return false;
        };
        // The usual case, the late fork event of a process vigild started itself (or found by a scan):
        // while the watched process has not exited, its pid can name no other, and its pidfd tells that
        // without a read of /proc (one poll instead of an open, a read and a close, at every start).
        if !w.pidfd.has_exited() {
            return false;
        }
        // Gone too is not proof: it may be this very process, found by a scan before its fork was read.
        vigil_sys::start_time(pid).is_ok_and(|st| st != w.id.start_time)
    }

    fn exited(&mut self, pid: i32, status: Option<WaitStatus>) {
        let exit = match status {
            Some(s) => crate::convert::exit_from_wait(s),
            None => match self.d.pmf.procs.get(&pid).map(|w| w.pidfd.exit_status()) {
                Some(Ok(Some(s))) => crate::convert::exit_from_wait(s),
                _ => Exit::Unknown,
            },
        };
        if let Some((tag, Some(watched))) = self.d.detach(pid, exit) {
            let p = self.pending.entry(tag).or_insert((false, (pid, exit)));
            p.0 |= watched;
            p.1 = (pid, exit);
        }
    }

    fn adopt(&mut self, tag: &TagName, pid: i32, depth: u32) -> Adopted {
        if !self.d.pmf.tags.contains_key(tag) {
            return Adopted::Unowned;
        }
        self.d.adopt_child(tag, pid, depth)
    }

    fn lost_track(&mut self, tag: &TagName) {
        self.lost.insert(tag.clone());
    }
}

impl Daemon {
    /// Reads the pending process connector events (see the module's comment).
    pub fn drain_connector(&mut self) {
        let Some(conn) = self.pmf.connector.clone() else {
            return;
        };
        let mut lineage = std::mem::take(&mut self.pmf.lineage);
        let mut dr = Drain {
            d: self,
            pending: BTreeMap::new(),
            lost: BTreeSet::new(),
        };
        let mut overrun = false;
        let mut events = Vec::new();
        for _ in 0..DRAIN_ROUNDS {
            events.clear();
            let more = match conn.read_some(&mut events, READ_MESSAGES) {
                Ok(more) => more,
                Err(vigil_sys::SysError::Overrun) => {
                    overrun = true;
                    true
                }
                Err(e) => {
                    warn!("process connector: {e}");
                    false
                }
            };
            let mut gone = false;
            for ev in events.drain(..) {
                gone |= lineage.apply(&mut dr, ev);
            }
            if !gone && !more {
                break;
            }
        }
        let Drain { pending, lost, .. } = dr;
        self.pmf.lineage = lineage;
        // Descendants are looked for before any tag is judged empty.
        if overrun {
            warn!("process connector overrun: rescanning every tree");
            // Exits may have been lost with the rest: what the lineage holds may name reused pids.
            self.pmf.lineage.clear();
            let names: Vec<TagName> = self.pmf.tags.keys().cloned().collect();
            self.rescan_all(&names);
        } else if !lost.is_empty() {
            warn!(
                tags = lost.len(),
                "too many processes gone before they could be watched: rescanning"
            );
            let names: Vec<TagName> = lost.iter().cloned().collect();
            self.rescan_all(&names);
        }
        for (tag, (watched, last)) in pending {
            let fx = match self.pmf.tags.get_mut(&tag) {
                Some(e) => e.tag.judge_exits(watched, last, now()),
                None => continue,
            };
            self.apply(&tag, fx);
        }
    }
}
