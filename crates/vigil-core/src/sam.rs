//! SAM's rules: recovery policies, and the deadlines of one supervised instance.
//!
//! A SAM supervisor watches one instance of its application at a time. While health checking is started,
//! each heartbeat (any command from the instance) opens a new interval; an interval without one sends the
//! warn signal, and the next silent interval after the warning sends SIGKILL. The instance's end is then a
//! recovery (a failure) or a quit (an orderly end), and the recovery policy turns a recovery into a new
//! instance (RESTART) or the supervisor's exit (QUIT).
//!
//! These are the rules of corosync's lib/sam.c (`sam_parent_handler`, `sam_parent_kill_child`), followed
//! exactly because programs written for corosync depend on them: the warning is never taken back within
//! an instance (corosync's `term_send` is cleared only when `sam_register` forks the next one), so a
//! command that arrives after it (a `sam_data_store` from the warn signal's handler, a late `sam_hc_send`)
//! only delays the SIGKILL by one interval; while stopped there is no deadline at all; and with interval 0
//! a warning caused by a lost quorum is followed by SIGKILL at the next quorum event, not after a time.

use std::fmt;

/// `SAM_RECOVERY_POLICY_QUIT`.
pub const POLICY_QUIT: u32 = 1;
/// `SAM_RECOVERY_POLICY_RESTART`.
pub const POLICY_RESTART: u32 = 2;
/// `SAM_RECOVERY_POLICY_QUORUM`.
pub const POLICY_QUORUM: u32 = 0x08;
/// `SAM_RECOVERY_POLICY_CMAP` (also `SAM_RECOVERY_POLICY_CONFDB`).
pub const POLICY_CMAP: u32 = 0x10;

/// A checked recovery policy: QUIT or RESTART, with the QUORUM and CMAP flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy(u32);

/// Why a policy value is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPolicy(pub u32);

impl fmt::Display for BadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovery policy {:#x} is not QUIT (1) or RESTART (2), optionally with QUORUM (0x8) and CMAP (0x10)",
            self.0
        )
    }
}

impl std::error::Error for BadPolicy {}

impl Policy {
    pub fn new(bits: u32) -> Result<Policy, BadPolicy> {
        let base = bits & !(POLICY_QUORUM | POLICY_CMAP);
        if base != POLICY_QUIT && base != POLICY_RESTART {
            return Err(BadPolicy(bits));
        }
        Ok(Policy(bits))
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn restarts(self) -> bool {
        self.0 & !(POLICY_QUORUM | POLICY_CMAP) == POLICY_RESTART
    }

    pub fn quorum(self) -> bool {
        self.0 & POLICY_QUORUM != 0
    }

    pub fn cmap(self) -> bool {
        self.0 & POLICY_CMAP != 0
    }

    /// Whether the instance's `sam_start` waits for its supervisor's reply: with QUORUM or CMAP only, as
    /// in corosync's lib/sam.c (`sam_start` reads a reply under that condition, and `sam_parent_handler`
    /// sends one only from `sam_parent_wait_for_quorum` and `sam_parent_cmap_state_set`).
    pub fn start_is_answered(self) -> bool {
        self.quorum() || self.cmap()
    }

    /// Whether `sam_stop` waits for its supervisor's reply: with CMAP only (corosync's `sam_stop`).
    pub fn stop_is_answered(self) -> bool {
        self.cmap()
    }

    /// `sam_mark_failed` (corosync's `sam_parent_mark_child_failed`): the supervisor now quits after the
    /// failure, keeping the flags. Only the decision changes: corosync does not rewrite the CMAP key
    /// `recovery`, so callers keep reporting the policy the application gave.
    pub fn into_quit(self) -> Policy {
        Policy(POLICY_QUIT | (self.0 & (POLICY_QUORUM | POLICY_CMAP)))
    }

    /// The value of `resources.process.<pid>.recovery`.
    pub fn recovery_name(self) -> &'static str {
        if self.restarts() {
            "restart"
        } else {
            "quit"
        }
    }
}

/// What the supervisor must do to the instance now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the warn signal (SIGKILL, if that is the warn signal, is no warning).
    Warn,
    /// Send SIGKILL: the instance has failed.
    Kill,
}

/// How an instance ended, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It failed: recovery per the policy.
    Failed,
    /// It ended while health checking was stopped: an orderly end, the supervisor quits.
    Orderly,
}

/// What the supervisor does after an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start a new instance.
    Restart,
    /// Exit; `failed` when the application failed (CMAP state "failed", keys kept).
    Quit { failed: bool },
}

/// The deadlines of one instance. Times are milliseconds on a monotonic clock the caller reads.
///
/// The interval is `sam_initialize`'s `time_interval` as given: 0 or less means no time limit (corosync
/// hands it to poll(2), where a negative timeout waits forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    interval_ms: i64,
    started: bool,
    /// corosync's `term_send`: the warn signal was sent to this instance.
    warned: bool,
    /// Set once the instance was killed (or must be): its end is a failure whatever the state.
    killed: bool,
    deadline: Option<u64>,
}

impl Watch {
    pub fn new(interval_ms: i64) -> Watch {
        Watch {
            interval_ms,
            started: false,
            warned: false,
            killed: false,
            deadline: None,
        }
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn warned(&self) -> bool {
        self.warned
    }

    /// When [`Watch::expire`] must be called next, if ever.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    /// A new interval opens now, if checking is started and there is a time limit: corosync's parent
    /// polls again with the whole interval after anything woke it.
    fn rearm(&mut self, now: u64) {
        self.deadline = (self.started && !self.killed && self.interval_ms > 0).then(|| now + self.interval_ms as u64);
    }

    /// Health checking starts: the first interval opens now.
    pub fn start(&mut self, now: u64) {
        self.started = true;
        self.rearm(now);
    }

    /// Health checking stops: no deadline until the next start. A warning already sent stays sent.
    pub fn stop(&mut self) {
        self.started = false;
        self.deadline = None;
    }

    /// A command arrived from the instance (or another event woke the supervisor): a new interval
    /// opens. It does not take back a warning.
    pub fn heartbeat(&mut self, now: u64) {
        self.rearm(now);
    }

    /// The deadline passed: warn first, kill at the next expiry.
    pub fn expire(&mut self, now: u64) -> Option<Step> {
        match self.deadline {
            Some(d) if d <= now => Some(self.fail(now)),
            _ => None,
        }
    }

    /// The instance is unhealthy (a silent interval, or quorum lost while started): corosync's
    /// `sam_parent_kill_child`, the warn signal the first time, SIGKILL after.
    pub fn fail(&mut self, now: u64) -> Step {
        if self.warned || self.killed {
            self.killed = true;
            self.deadline = None;
            Step::Kill
        } else {
            self.warned = true;
            self.rearm(now);
            Step::Warn
        }
    }

    /// `sam_mark_failed`: corosync sets `term_send` first, so the kill comes without a warning.
    pub fn mark_failed(&mut self) -> Step {
        self.started = true;
        self.killed = true;
        self.deadline = None;
        Step::Kill
    }

    /// The instance is gone: a failure if checking was started or it was killed, else an orderly end
    /// (corosync decides by its `status` when the link closes, and a SIGKILL is always a recovery).
    pub fn ended(&self) -> Ending {
        if self.started || self.killed {
            Ending::Failed
        } else {
            Ending::Orderly
        }
    }
}

/// What follows an instance's end under `policy`.
pub fn next(policy: Policy, ending: Ending) -> Next {
    match ending {
        Ending::Orderly => Next::Quit { failed: false },
        Ending::Failed if policy.restarts() => Next::Restart,
        Ending::Failed => Next::Quit { failed: true },
    }
}

/// Votequorum's rule: quorate while the votes are at least `expected / 2 + 1`.
pub fn quorate(votes: u32, expected_votes: u32) -> bool {
    // votes >= expected / 2 + 1, as votequorum states it.
    votes > expected_votes / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        for ok in [1, 2, 1 | 8, 2 | 8, 1 | 0x10, 2 | 0x10, 2 | 8 | 0x10] {
            assert!(Policy::new(ok).is_ok(), "{ok:#x}");
        }
        for bad in [0, 3, 4, 8, 0x10, 0x18, 0x20 | 1, u32::MAX] {
            let e = Policy::new(bad).unwrap_err();
            assert!(e.to_string().contains("not QUIT"), "{e}");
        }
        let p = Policy::new(2 | 8 | 0x10).unwrap();
        assert!(p.restarts() && p.quorum() && p.cmap());
        assert_eq!(p.recovery_name(), "restart");
        let q = p.into_quit();
        assert_eq!(q.bits(), 1 | 8 | 0x10);
        assert!(!q.restarts());
    }

    #[test]
    fn warn_then_kill() {
        let mut w = Watch::new(100);
        assert_eq!(w.deadline(), None, "no deadline before start");
        w.start(1000);
        assert_eq!(w.deadline(), Some(1100));
        assert_eq!(w.expire(1099), None);
        w.heartbeat(1050);
        assert_eq!(w.expire(1100), None, "a heartbeat opens a new interval");
        assert_eq!(w.expire(1150), Some(Step::Warn));
        assert_eq!(w.deadline(), Some(1250));
        assert_eq!(w.expire(1250), Some(Step::Kill));
        assert_eq!(w.deadline(), None);
        assert_eq!(w.ended(), Ending::Failed);
    }

    // corosync lib/sam.c, sam_parent_kill_child: term_send stays set until sam_register forks the next
    // instance, so a command after the warning only opens one more interval, which ends in SIGKILL.
    #[test]
    fn a_command_after_the_warning_does_not_take_it_back() {
        let mut w = Watch::new(100);
        w.start(0);
        assert_eq!(w.expire(100), Some(Step::Warn));
        w.heartbeat(150);
        assert!(w.warned());
        assert_eq!(w.expire(249), None, "the command opened a new interval");
        assert_eq!(w.expire(250), Some(Step::Kill), "killed, not warned again");
    }

    // corosync lib/sam.c, sam_parent_handler: stopped means poll(-1), no deadline; the warning survives
    // stop and start, and the next silent interval kills.
    #[test]
    fn the_warning_survives_stop_and_start() {
        let mut w = Watch::new(100);
        w.start(0);
        assert_eq!(w.expire(100), Some(Step::Warn));
        w.stop();
        assert_eq!(w.deadline(), None, "no deadline while stopped, warned or not");
        w.start(1000);
        assert_eq!(w.deadline(), Some(1100));
        assert_eq!(w.expire(1100), Some(Step::Kill));
    }

    // corosync lib/sam.c, sam_parent_handler: an EOF while stopped is SAM_PARENT_ACTION_QUIT, warned or not.
    #[test]
    fn a_warned_instance_that_stopped_ends_in_order() {
        let mut w = Watch::new(100);
        w.start(0);
        assert_eq!(w.expire(100), Some(Step::Warn));
        w.stop();
        assert_eq!(w.ended(), Ending::Orderly);
    }

    #[test]
    fn no_interval_means_no_deadline_even_after_a_warning() {
        for interval in [0, -1, -5000] {
            let mut w = Watch::new(interval);
            w.start(0);
            w.heartbeat(10);
            assert_eq!(w.deadline(), None, "{interval}");
            // Quorum lost: the warning, then nothing until the next quorum event says so again.
            assert_eq!(w.fail(20), Step::Warn);
            assert_eq!(w.deadline(), None, "{interval}");
            assert_eq!(w.fail(5000), Step::Kill);
        }
    }

    #[test]
    fn stop_clears_the_deadline_and_end_is_orderly() {
        let mut w = Watch::new(100);
        w.start(0);
        w.stop();
        assert_eq!(w.deadline(), None);
        assert_eq!(w.ended(), Ending::Orderly);
        assert_eq!(next(Policy::new(2).unwrap(), w.ended()), Next::Quit { failed: false });
    }

    #[test]
    fn mark_failed_kills_at_once_and_quits_failed() {
        let mut w = Watch::new(100);
        assert_eq!(w.mark_failed(), Step::Kill);
        w.heartbeat(5);
        assert_eq!(w.deadline(), None);
        assert_eq!(w.ended(), Ending::Failed);
        let p = Policy::new(2 | 0x10).unwrap().into_quit();
        assert_eq!(next(p, w.ended()), Next::Quit { failed: true });
    }

    #[test]
    fn policy_decides_after_failure() {
        assert_eq!(next(Policy::new(2).unwrap(), Ending::Failed), Next::Restart);
        assert_eq!(
            next(Policy::new(1).unwrap(), Ending::Failed),
            Next::Quit { failed: true }
        );
        assert_eq!(
            next(Policy::new(1).unwrap(), Ending::Orderly),
            Next::Quit { failed: false }
        );
    }

    #[test]
    fn votequorum() {
        assert!(quorate(1, 1));
        assert!(quorate(1, 0));
        assert!(!quorate(1, 2));
        assert!(!quorate(1, 3));
        assert!(quorate(2, 3));
        assert!(!quorate(2, 4));
    }
}
