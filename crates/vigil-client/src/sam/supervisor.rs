//! The supervising parent: watches one instance at a time over its link (heartbeats, the warn → kill
//! ladder, quorum and its deadline, the data), and tells vigild through the reporter thread of
//! [`super::report`], so that nothing here ever waits for vigild while an instance runs.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use vigil_core::sam::{Ending, Policy, Step, Watch};
use vigil_proto::{ErrorCode, SamChange, SamInfo, SamState, SAM_DATA_MAX};

use super::inbox::Inbox;
use super::report;
use super::{
    send_all, Result, SamError, CMD_DATA, CMD_HB, CMD_MARK_FAILED, CMD_START, CMD_STOP, CMD_WARN_SIGNAL, REPLY_ERROR,
    REPLY_OK, SIGKILL,
};
use crate::QuorumLease;

/// The parent side: one instance at a time.
pub(super) struct Supervisor {
    /// The policy the application gave; reported as is (the CMAP key `recovery` keeps it).
    pub(super) policy: Policy,
    /// `sam_mark_failed` was called: the supervisor quits after this instance whatever the policy.
    pub(super) marked_failed: bool,
    pub(super) interval_ms: i32,
    pub(super) warn_signal: i32,
    pub(super) instance: u32,
    pub(super) child: i32,
    pub(super) state: SamState,
    pub(super) data: Option<Vec<u8>>,
    /// The link to vigild while no reporter thread holds it (between instances).
    pub(super) link: Option<report::Link>,
    /// The thread that holds the link while an instance runs.
    pub(super) reporter: Option<report::Reporter>,
    /// While an instance runs without the thread: reports are sent from this loop without waiting, and
    /// their answers read here when they come (see [`Supervisor::start_reporter`]).
    pub(super) nowait: bool,
    /// The reports sent so, not yet answered, oldest first.
    pub(super) inflight: VecDeque<report::Job>,
    /// Quorum as vigild last told it, and until when that holds without news (None: no limit).
    pub(super) quorate: bool,
    pub(super) quorum_until: Option<Instant>,
    /// The quorum the instance was last acted on with: only a change is an event (a renewal is not).
    pub(super) acted_quorate: bool,
    /// A command whose reply waits for vigild's answer to its report: the application gets its reply
    /// then, and sends nothing else meanwhile (the supervisor's loop goes on).
    pub(super) pending: Option<Pending>,
    /// vigild's answers to the reports that asked for one, not yet acted on.
    pub(super) answers: Vec<std::result::Result<(), ErrorCode>>,
    pub(super) epoch: Instant,
    /// What the application sent, read ahead.
    pub(super) inbox: Inbox,
    /// The size of the data vigild last took: a store no larger cannot go over the user's quota (the
    /// blob it replaces does not count), so it is written behind (docs/sam.md, "The data").
    pub(super) accepted: usize,
    /// The end of the last instance, told to vigild once the next one is forked (fork first, report
    /// after): with the record as it was then.
    pub(super) ended: Option<(SamChange, SamInfo)>,
    /// When the next instance is to be forked ahead of need, while this one runs (None: not, or done).
    pub(super) standby_due: Option<Instant>,
    /// Reports held back a moment, oldest first, and when they are to be made.
    pub(super) deferred: Vec<(SamChange, SamInfo)>,
    pub(super) flush_due: Option<Instant>,
    /// How long to poll the link for the application's next command after a reply (see `poll_once`).
    pub(super) spin: vigil_sys::busy_poll::BusyPoll,
    /// The last commands handled had a reply: the application may send the next at once.
    pub(super) replied: bool,
}

/// How long an instance that sends nothing runs before its supervisor forks the next one ahead of need
/// (sam/standby.rs); one that sends a command has it forked once that is answered.
const STANDBY_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// Reports sent without waiting for their answers at most, before the thread takes over: a vigild that
/// leaves more unanswered is slow or stalled, and the thread waits for it instead of this loop (the
/// socket's buffer, far larger than this many small reports, never fills, so a send never waits).
const NOWAIT_INFLIGHT_MAX: usize = 64;
/// How long a report that needs no answer may be held back (see [`Supervisor::queue`]).
const REPORT_DELAY: std::time::Duration = std::time::Duration::from_millis(2);
/// A data store larger than this is left to the thread: a send of it could wait for room.
const NOWAIT_DATA_MAX: usize = 4096;

/// A reply that waits for vigild.
pub(super) enum Pending {
    /// `start`, `stop`, `warn_signal_set` with the CMAP flag: corosync answers once its CMAP has the
    /// change, so that the application reads the new state right after the call; Ok whatever vigild
    /// said. (Without the flag the reply does not wait: see [`Supervisor::report_then_reply`].)
    Done,
    /// A data store: kept once vigild takes it (within the user's budget, else `NoMemory`).
    Data(Option<Vec<u8>>),
    /// `mark_failed`: the kill follows the state "failed", and there is no reply.
    Act(Step),
}

/// How [`Supervisor::supervise`] returned.
pub(super) enum Supervised {
    /// The instance is gone: how it ended, and its wait status.
    Ended(Ending, vigil_sys::WaitStatus),
    /// This process is the standby forked meanwhile (`sam/standby.rs`), not the supervisor.
    Standby(Becoming),
}

/// A standby on its way to being the next instance: its link, its parked handlers, and the SAM lock
/// taken around its fork.
pub(super) struct Becoming {
    pub(super) link: OwnedFd,
    pub(super) parked: vigil_sys::ParkedHandlers,
    pub(super) guard: std::sync::MutexGuard<'static, super::Inner>,
}

/// What came in on the link.
enum Incoming {
    Command(u8),
    /// The application closed its end (it exited or exec'd).
    Closed,
}

impl Supervisor {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn info(&self) -> SamInfo {
        SamInfo {
            instance: self.instance,
            child: self.child,
            // corosync stores the int in the uint64 key poll_period as C converts it (sign-extended).
            interval_ms: self.interval_ms as i64 as u64,
            policy: self.policy.bits(),
            warn_signal: self.warn_signal,
            state: self.state,
        }
    }

    /// Tells vigild. While an instance runs the report is sent without waiting, or queued for the
    /// reporter thread, and this is Ok at once; between instances it is made here.
    pub(super) fn report(&mut self, change: SamChange) -> std::result::Result<(), ErrorCode> {
        let info = self.info();
        self.report_with(change, info)
    }

    /// [`Supervisor::report`] with the record as it was at another moment.
    fn report_with(&mut self, change: SamChange, info: SamInfo) -> std::result::Result<(), ErrorCode> {
        if self.behind() {
            self.queue(change, info, false);
            return Ok(());
        }
        self.flush_deferred();
        match self.link.as_mut() {
            Some(l) => l.report(change, info),
            None => Ok(()),
        }
    }

    /// Reports are made behind this loop (an instance runs): nothing here waits for vigild.
    fn behind(&self) -> bool {
        self.nowait || self.reporter.is_some()
    }

    /// Makes a report behind this loop; `answer`: vigild's answer goes to `answers`.
    fn queue(&mut self, change: SamChange, info: SamInfo, answer: bool) {
        if !answer && self.nowait && !self.policy.cmap() {
            // Held back a moment, so that vigild's work on them (a durable commit) does not compete with
            // an instance that restarts at once: in a crash loop, a few restarts' reports make one
            // commit. Nothing the application can see waits for them. Of the blobs held back only the
            // last is made: vigild keeps the last one, and a loop of stores would otherwise send them all.
            // (Within one instance: each instance's stores keep their event.)
            if matches!(change, SamChange::Data(_)) {
                let instance = info.instance;
                self.deferred
                    .retain(|(c, i)| !(matches!(c, SamChange::Data(_)) && i.instance == instance));
            }
            self.deferred.push((change, info));
            self.flush_due.get_or_insert_with(|| Instant::now() + REPORT_DELAY);
            return;
        }
        self.flush_deferred();
        self.queue_now(change, info, answer);
    }

    /// Makes the reports held back (see [`Supervisor::queue`]), in order: behind this loop while an
    /// instance runs, else here.
    pub(super) fn flush_deferred(&mut self) {
        self.flush_due = None;
        for (change, info) in std::mem::take(&mut self.deferred) {
            if self.behind() {
                self.queue_now(change, info, false);
            } else if let Some(l) = self.link.as_mut() {
                l.report(change, info).ok();
            }
        }
    }

    fn queue_now(&mut self, change: SamChange, info: SamInfo, answer: bool) {
        if self.nowait {
            let small = !matches!(&change, SamChange::Data(Some(d)) if d.len() > NOWAIT_DATA_MAX);
            if small && self.inflight.len() < NOWAIT_INFLIGHT_MAX {
                if let Some(sent) = self.link.as_mut().and_then(|l| l.send_nowait(&change, &info)) {
                    self.inflight.push_back(report::Job {
                        sent: Some(sent),
                        change,
                        info,
                        answer,
                    });
                    return;
                }
            }
            self.hand_to_thread();
        }
        if let Some(r) = &self.reporter {
            r.report(change, info, answer);
            return;
        }
        // Without a thread (none could be made) reports are made in the loop, as a last resort.
        let r = match self.link.as_mut() {
            Some(l) => l.report(change, info),
            None => Ok(()),
        };
        if answer {
            self.answers.push(r);
        }
    }

    /// For an instance that starts: reports are sent from this loop without waiting for their answers,
    /// which the loop reads as they come, so that the supervisor has no other thread when it forks the
    /// next instance and wakes none on the way. The reporter thread takes over when that cannot go on
    /// without waiting: a connection lost, vigild slow to answer, a large data store; and it always
    /// makes the reports of a QUORUM application, whose supervisor listens to vigild's news.
    fn start_reporter(&mut self) {
        let connected = self.link.as_ref().is_some_and(|l| l.vigild.is_some());
        if connected && !self.policy.quorum() {
            self.nowait = true;
            return;
        }
        self.start_thread(&mut Vec::new());
    }

    /// The reporter thread takes the link, with the reports already sent (whose answers it awaits);
    /// without a thread (none could be made) `jobs` are left, and reports are made in the loop, as a last
    /// resort.
    fn start_thread(&mut self, jobs: &mut Vec<report::Job>) {
        if self.link.is_some() {
            self.reporter = report::Reporter::start(&mut self.link, jobs);
        }
    }

    /// From here on the thread makes this instance's reports.
    fn hand_to_thread(&mut self) {
        self.nowait = false;
        let mut jobs = self.inflight.drain(..).collect();
        self.start_thread(&mut jobs);
        for j in jobs {
            self.complete(j);
        }
    }

    /// Makes a report here, waiting for vigild (its answer, if awaited, goes to `answers`).
    fn complete(&mut self, job: report::Job) {
        let answer = job.answer;
        let r = match self.link.as_mut() {
            Some(l) => l.complete(job),
            None => Ok(()),
        };
        if answer {
            self.answers.push(r);
        }
    }

    /// Waits here for the answers to the reports sent without waiting, up to the last whose answer
    /// matters (one that is awaited, or a data store); the later ones are let go (their answers, when
    /// they come, are passed over).
    fn await_inflight(&mut self) {
        let last = self
            .inflight
            .iter()
            .rposition(|s| s.answer || matches!(s.change, SamChange::Data(_)));
        let waited: Vec<report::Job> = self.inflight.drain(..).take(last.map_or(0, |i| i + 1)).collect();
        self.inflight.clear();
        for j in waited {
            self.complete(j);
        }
    }

    /// Reads the answers vigild has sent to the reports made without waiting (the connection polled
    /// readable). A lost connection hands the reports over to the thread, which reconnects and makes
    /// those not yet answered again.
    fn read_answers(&mut self) {
        let Some(c) = self.link.as_mut().and_then(|l| l.vigild.as_mut()) else {
            return self.hand_to_thread();
        };
        let got = c.responses_ready();
        let Ok(got) = got else {
            if let Some(l) = self.link.as_mut() {
                l.vigild = None;
            }
            return self.hand_to_thread();
        };
        for (id, result) in got {
            // Every report in flight here was sent (its `sent` is Some).
            match self.inflight.front().and_then(|j| j.sent).map(|s| s.id) {
                Some(oldest) if oldest == id => {}
                // Older ones were let go by an instance that ended.
                Some(oldest) if id < oldest => continue,
                None => continue,
                // Not in order: nothing this side can count on now; the thread makes the reports not
                // yet answered again on a new connection.
                Some(_) => {
                    if let Some(l) = self.link.as_mut() {
                        l.vigild = None;
                    }
                    return self.hand_to_thread();
                }
            }
            let s = self.inflight.pop_front().expect("matched above");
            let r = result.map(|_| ()).map_err(|e| e.code);
            if let Some(l) = self.link.as_mut() {
                l.answered(&s.change, &r);
            }
            if s.answer {
                self.answers.push(r);
            }
        }
    }

    /// Takes the link back once the instance is gone (and ends the reporter thread, if one took it
    /// over). A data store still waiting for vigild's answer gets it now (finish waits for the reports
    /// queued): the data is the supervisor's if vigild took it, as corosync's parent keeps what it read
    /// before the instance died, for the next instance to restore. Nobody is left to reply to.
    fn stop_reporter(&mut self) {
        if std::mem::take(&mut self.nowait) {
            self.await_inflight();
        }
        if let Some(r) = self.reporter.take() {
            let (link, answers) = r.finish();
            self.link = Some(link);
            self.answers.extend(answers);
        }
        self.take_news();
        for r in std::mem::take(&mut self.answers) {
            if let Some(Pending::Data(data)) = self.pending.take() {
                let _ = self.data_reply(data, r);
            }
        }
        self.pending = None;
    }

    /// Takes vigild's quorum news (and the answers the reporter has).
    fn take_news(&mut self) {
        let mut news = Vec::new();
        if let Some(l) = self.link.as_mut() {
            news.extend(l.news.drain(..));
        }
        if let Some(r) = &self.reporter {
            let (answers, n) = r.take();
            self.answers.extend(answers);
            news.extend(n);
        }
        for n in news {
            let QuorumLease { quorate, until } = n.lease;
            if n.reconnected {
                // A vigild that has just started again may not have renewed the node's lease yet: its
                // "not quorate" is no loss, and the deadline of the last renewal still rules (it acts if
                // no renewal comes in time). Without a deadline (not in cluster mode), how things stand
                // is taken as it is, and not acted on: no change was pushed.
                if self.quorum_until.is_some() && !quorate {
                    continue;
                }
                if until.is_none() {
                    self.acted_quorate = quorate;
                }
            }
            self.quorate = quorate;
            self.quorum_until = until;
        }
    }

    /// Quorum as it can be counted on now: as vigild told it, and not past its deadline.
    fn quorate_now(&self) -> bool {
        self.quorate && self.quorum_until.is_none_or(|t| Instant::now() < t)
    }

    fn act(&mut self, step: Step, reason: &str) {
        match step {
            Step::Warn => {
                let _ = vigil_sys::send_signal(self.child, self.warn_signal);
                self.report(SamChange::Warn {
                    signal: self.warn_signal,
                    reason: reason.into(),
                })
                .ok();
            }
            Step::Kill => {
                let _ = vigil_sys::send_signal(self.child, SIGKILL);
                self.report(SamChange::Kill { reason: reason.into() }).ok();
            }
        }
    }

    fn reply(link: &OwnedFd, r: std::result::Result<(), SamError>) {
        let msg = match r {
            Ok(()) => vec![REPLY_OK],
            Err(e) => {
                let mut m = vec![REPLY_ERROR];
                m.extend_from_slice(&e.cs_error().to_le_bytes());
                m
            }
        };
        let _ = send_all(link, &msg);
    }

    /// The reply to a data store, from vigild's answer.
    fn data_reply(&mut self, data: Option<Vec<u8>>, r: std::result::Result<(), ErrorCode>) -> Result<()> {
        match r {
            Err(ErrorCode::LimitExceeded) => Err(SamError::NoMemory),
            Err(_) => Err(SamError::Library),
            Ok(()) => {
                self.accepted = data.as_ref().map_or(0, Vec::len);
                self.data = data;
                Ok(())
            }
        }
    }

    /// Replies to the application for the answers vigild gave meanwhile.
    fn flush_answers(&mut self, link: &OwnedFd) {
        for r in std::mem::take(&mut self.answers) {
            if let Some(p) = self.pending.take() {
                self.answer(link, p, r);
            }
        }
    }

    fn answer(&mut self, link: &OwnedFd, p: Pending, r: std::result::Result<(), ErrorCode>) {
        let reply = match p {
            Pending::Done => Ok(()),
            Pending::Data(data) => self.data_reply(data, r),
            Pending::Act(step) => return self.act(step, "marked failed"),
        };
        Self::reply(link, reply);
    }

    /// `start` and `stop`: the application waits for a reply only under some policies (see
    /// [`Policy::start_is_answered`]); without one, the change is only reported.
    fn report_maybe_reply(&mut self, change: SamChange, link: &OwnedFd, answered: bool) {
        if answered {
            self.report_then_reply(change, link, Pending::Done);
        } else {
            self.report(change).ok();
        }
    }

    /// Reports `change`, and replies to the application once vigild has it: later, from the loop, while
    /// the reporter thread waits for vigild; at once without one.
    fn report_then_reply(&mut self, change: SamChange, link: &OwnedFd, p: Pending) {
        if matches!(p, Pending::Done) && !self.policy.cmap() {
            // Without CMAP nothing the application can read waits for vigild (corosync's parent
            // answers at once then): the reply first, the report behind it.
            Self::reply(link, Ok(()));
            self.report(change).ok();
            return;
        }
        let info = self.info();
        if self.behind() {
            self.queue(change, info, true);
            self.pending = Some(p);
            return;
        }
        let answer = self.report(change);
        self.answer(link, p, answer);
    }

    /// Watches one instance until it is gone; answers how it ended and its wait status. `standby` forks
    /// the next instance ahead of need (`sam/standby.rs`), once this one is told it may run and before
    /// any thread starts here; in the standby, this answers [`Supervised::Standby`] at once.
    pub(super) fn supervise(
        &mut self,
        pid: i32,
        link: OwnedFd,
        standby: &mut dyn FnMut() -> Option<Becoming>,
    ) -> Result<Supervised> {
        self.child = pid;
        self.state = SamState::Stopped;
        // Commands read ahead from the last instance's link are not this one's.
        self.inbox = Inbox::default();
        let Ok(pidfd) = vigil_sys::PidFd::open(pid) else {
            // The instance may already be running (without CMAP it does not wait for this process):
            // it must not run unsupervised while register answers Library here. Still an unreaped
            // child of ours, so the pid names it.
            let _ = vigil_sys::send_signal(pid, SIGKILL);
            let _ = vigil_sys::reap_child(pid);
            return Err(SamError::Library);
        };
        let mut watch = Watch::new(self.interval_ms.into());
        if self.policy.cmap() {
            // corosync's keys (state "stopped") are there when register returns: the instance waits
            // for vigild to have them.
            self.announce();
            Self::reply(&link, Ok(()));
        }
        // The next instance is forked ahead (sam/standby.rs) with this process's one thread: before the
        // reporter thread starts, when one will; else once the instance's first commands are answered
        // (or it has run STANDBY_AFTER without any), so that the fork holds up none of them.
        let connected = self.link.as_ref().is_some_and(|l| l.vigild.is_some());
        if self.policy.quorum() || !connected {
            if let Some(b) = standby() {
                return Ok(Supervised::Standby(b));
            }
        } else {
            self.standby_due = Some(Instant::now() + STANDBY_AFTER);
        }
        // Nothing the application can see waits for vigild, nor for this process: without CMAP the
        // instance returned from register without waiting for a reply, and vigild hears of the last
        // instance's end and of this one from the reporter.
        self.start_reporter();
        if !self.policy.cmap() {
            self.announce();
        }
        let watched = match self.watch_instance(&pidfd, &link, &mut watch, standby) {
            Ok(Some(b)) => return Ok(Supervised::Standby(b)),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        // Reaped before the reports are flushed: a stalled vigild must not keep a dead instance around.
        let status = watched.and_then(|()| vigil_sys::reap_child(pid).map_err(|_| SamError::Library));
        self.stop_reporter();
        let status = status?;
        // Told with the next instance, after its fork (or before the supervisor quits).
        self.ended = Some((
            SamChange::Exit {
                status: status.to_raw(),
            },
            self.info(),
        ));
        self.child = 0;
        Ok(Supervised::Ended(watch.ended(), status))
    }

    /// Tells vigild that the last instance ended, if it has not heard yet.
    pub(super) fn report_ended(&mut self) {
        if let Some((change, info)) = self.ended.take() {
            self.report_with(change, info).ok();
        }
    }

    /// Tells vigild of the instance that has just been forked (and the data the first one starts with).
    fn announce(&mut self) {
        self.report_ended();
        self.report(SamChange::Instance).ok();
        if self.instance == 1 {
            if let Some(d) = self.data.clone() {
                let size = d.len();
                if self.report(SamChange::Data(Some(d))).is_ok() && !self.behind() {
                    self.accepted = size;
                }
            }
        }
    }

    /// Watches the instance until it is gone (None), or until this process is the standby forked
    /// meanwhile (its [`Becoming`]).
    fn watch_instance(
        &mut self,
        pidfd: &vigil_sys::PidFd,
        link: &OwnedFd,
        watch: &mut Watch,
        standby: &mut dyn FnMut() -> Option<Becoming>,
    ) -> Result<Option<Becoming>> {
        let mut link_open = true;
        loop {
            let now = self.now();
            if let Some(step) = watch.expire(now) {
                self.act(step, "heartbeat missed");
            }
            self.on_quorum(watch);
            if self.flush_due.is_some_and(|t| Instant::now() >= t) {
                self.flush_deferred();
            }
            if let Some(due) = self.standby_due {
                // Not beside the reporter thread (taken over meanwhile): the next restart forks then.
                if self.reporter.is_some() {
                    self.standby_due = None;
                } else if Instant::now() >= due && self.inbox.is_empty() {
                    self.standby_due = None;
                    if let Some(b) = standby() {
                        return Ok(Some(b));
                    }
                }
            }
            if !self.poll_once(pidfd, link, &mut link_open, watch)? {
                return Ok(None);
            }
        }
    }

    /// One wait for something to happen; false once the instance is gone.
    fn poll_once(
        &mut self,
        pidfd: &vigil_sys::PidFd,
        link: &OwnedFd,
        link_open: &mut bool,
        watch: &mut Watch,
    ) -> Result<bool> {
        self.flush_answers(link);
        let mut ms = watch.deadline().map(|d| d.saturating_sub(self.now()));
        // The quorum deadline is a wake-up of its own while the instance counts on quorum.
        if let Some(until) = self.quorum_until.filter(|_| self.acted_quorate && self.policy.quorum()) {
            let left = until.saturating_duration_since(Instant::now()).as_millis() as u64;
            ms = Some(ms.map_or(left, |m| m.min(left)));
        }
        for due in [self.standby_due, self.flush_due].into_iter().flatten() {
            // Rounded up: a wake-up before it would only poll again.
            let left = due.saturating_duration_since(Instant::now()).as_micros().div_ceil(1000) as u64;
            ms = Some(ms.map_or(left, |m| m.min(left)));
        }
        // While a data store waits for vigild the application waits for its reply: nothing to read.
        let read_link = *link_open && self.pending.is_none();
        // Commands already read ahead are handled now; the poll only looks at what else happened.
        let buffered = read_link && !self.inbox.is_empty();
        if buffered {
            ms = Some(0);
        }
        // An application that has just had a reply may send its next command at once (a loop of data
        // stores): the link is polled for it a moment rather than slept on, as the application polls for
        // the reply (vigil_sys::busy_poll; how long adapts to how soon commands come).
        let mut spun = None;
        if read_link && !buffered && ms != Some(0) && std::mem::take(&mut self.replied) {
            let max = crate::answer_spin();
            let began = Instant::now();
            let found = vigil_sys::busy_poll::spin(self.spin.budget(max), || super::readable(link)).is_some();
            self.spin.polled(found, began, max);
            if found {
                ms = Some(0);
            } else {
                spun = Some(max);
            }
        }
        let timeout = ms.map(|ms| rustix::time::Timespec {
            tv_sec: (ms / 1000) as i64,
            tv_nsec: ((ms % 1000) * 1_000_000) as _,
        });
        let mut fds = vec![PollFd::new(pidfd, PollFlags::IN)];
        if read_link {
            fds.push(PollFd::new(link, PollFlags::IN));
        }
        // vigild's news: from the reporter thread, or (without one) straight from the connection.
        let quorum_pushes = self.policy.quorum();
        let direct = self.reporter.is_none() && quorum_pushes && self.link.as_ref().is_some_and(|l| l.vigild.is_some());
        // The answers to the reports sent without waiting.
        let answers = self.nowait && !self.inflight.is_empty();
        if let Some(r) = &self.reporter {
            fds.push(PollFd::new(&r.woken, PollFlags::IN));
        } else if let Some(c) = self
            .link
            .as_ref()
            .and_then(|l| l.vigild.as_ref())
            .filter(|_| direct || answers)
        {
            fds.push(PollFd::new(c, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Err(SamError::Library),
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut i = 1;
        if read_link {
            if let Some(max) = spun.filter(|_| ready[i]) {
                self.spin.woken(max, Instant::now());
            }
            if ready[i] || buffered {
                // Every command of the read; the next read once they are handled (or one waits for
                // vigild, whose reply the application waits for).
                loop {
                    match self.incoming(link) {
                        Incoming::Closed => *link_open = false,
                        Incoming::Command(c) => self.command(c, link, watch, pidfd)?,
                    }
                    if !*link_open || self.pending.is_some() || self.inbox.is_empty() {
                        break;
                    }
                }
            }
            i += 1;
        }
        // The link ends when the instance's files close on its way out, a moment before it is dead:
        // polled for that moment rather than slept for, the restart does not pay a second wake-up. (An
        // instance that closed its link and lives on costs this poll once: the link stays closed. What
        // else this round found, vigild's answers, is still readable at the next.)
        if read_link && !*link_open && !ready[0] {
            let gone = vigil_sys::busy_poll::spin(crate::answer_spin(), || dead(pidfd)).is_some();
            return Ok(!gone);
        }
        if ready.get(i).copied().unwrap_or(false) {
            if direct {
                if let Some(l) = self.link.as_mut() {
                    l.read_push();
                }
            } else if answers && self.nowait {
                self.read_answers();
            }
            self.take_news();
            self.flush_answers(link);
        }
        Ok(!ready[0])
    }

    /// Acts on a change of quorum, however it was learned (corosync's `sam_parent_handler`): from vigild,
    /// or from its deadline passing without a renewal (vigild stalled or gone: the node may be down for
    /// the others already). Each change opens a new interval, and one that finds the node not quorate
    /// while started is a failure of the instance (the warning the first time, SIGKILL at the next).
    fn on_quorum(&mut self, watch: &mut Watch) {
        self.take_news();
        let quorate = self.quorate_now();
        if quorate == self.acted_quorate {
            return;
        }
        self.acted_quorate = quorate;
        let now = self.now();
        if !quorate && watch.started() {
            let step = watch.fail(now);
            self.act(step, "quorum lost");
        } else {
            watch.heartbeat(now);
        }
    }

    fn incoming(&mut self, link: &OwnedFd) -> Incoming {
        let mut b = [0u8; 1];
        match self.inbox.read_exact(link, &mut b) {
            Ok(()) => Incoming::Command(b[0]),
            Err(_) => Incoming::Closed,
        }
    }

    fn command(&mut self, cmd: u8, link: &OwnedFd, watch: &mut Watch, pidfd: &vigil_sys::PidFd) -> Result<()> {
        let now = self.now();
        watch.heartbeat(now);
        if self.standby_due.is_some() {
            // Forked once this command and those read with it are answered.
            self.standby_due = Some(Instant::now());
        }
        // After a reply the application may send its next command at once; heartbeats and the commands
        // answered with nothing come at its own pace.
        self.replied |= match cmd {
            CMD_DATA | CMD_WARN_SIGNAL => true,
            CMD_START => self.policy.start_is_answered(),
            CMD_STOP => self.policy.stop_is_answered(),
            _ => false,
        };
        match cmd {
            // Never waits for vigild: the report is queued (docs/sam.md, "When vigild stalls").
            CMD_HB if self.policy.cmap() => {
                self.report(SamChange::Heartbeat).ok();
            }
            CMD_HB => {}
            CMD_START => {
                if !watch.started() {
                    if self.policy.quorum() && !self.wait_for_quorum(pidfd)? {
                        // The application died while waiting. corosync's sam_parent_handler takes the
                        // start all the same (sam_parent_wait_for_quorum returns CS_OK when the child is
                        // gone), so the end is a failure, recovered by the policy.
                        watch.start(self.now());
                        return Ok(());
                    }
                    self.state = SamState::Running;
                    watch.start(self.now());
                    self.report_maybe_reply(SamChange::Start, link, self.policy.start_is_answered());
                } else if self.policy.start_is_answered() {
                    Self::reply(link, Ok(()));
                }
            }
            CMD_STOP => {
                if watch.started() {
                    watch.stop();
                    self.state = SamState::Stopped;
                    self.report_maybe_reply(SamChange::Stop, link, self.policy.stop_is_answered());
                } else if self.policy.stop_is_answered() {
                    Self::reply(link, Ok(()));
                }
            }
            CMD_DATA => {
                let mut head = [0u8; 9];
                if self.inbox.read_exact(link, &mut head).is_err() {
                    return Ok(());
                }
                let len = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes")) as usize;
                let mut d = Vec::new();
                if len > SAM_DATA_MAX || d.try_reserve_exact(len).is_err() {
                    // Drain what the application sends, then say why.
                    let _ = self.inbox.skip(link, len as u64);
                    Self::reply(link, Err(SamError::NoMemory));
                    return Ok(());
                }
                d.resize(len, 0);
                if self.inbox.read_exact(link, &mut d).is_err() {
                    return Ok(());
                }
                let data = (head[0] != 0).then_some(d);
                if self.behind() && data.as_ref().map_or(0, Vec::len) <= self.accepted {
                    // Written behind: the supervisor keeps it (as corosync's does), vigild gets it from
                    // the reporter, within one commit; a newer store replaces one not yet sent.
                    self.data = data.clone();
                    // What vigild holds for it shrinks with it: a later store may not assume room
                    // given back meanwhile.
                    self.accepted = data.as_ref().map_or(0, Vec::len);
                    // The application first: it waits for this reply, vigild does not.
                    Self::reply(link, Ok(()));
                    self.report(SamChange::Data(data)).ok();
                } else {
                    self.report_then_reply(SamChange::Data(data.clone()), link, Pending::Data(data));
                }
            }
            CMD_WARN_SIGNAL => {
                let mut s = [0u8; 4];
                if self.inbox.read_exact(link, &mut s).is_err() {
                    return Ok(());
                }
                self.warn_signal = i32::from_le_bytes(s);
                self.report_then_reply(SamChange::WarnSignal, link, Pending::Done);
            }
            CMD_MARK_FAILED => {
                self.marked_failed = true;
                self.state = SamState::Failed;
                // corosync writes the state "failed" to its CMAP, then kills (no reply: the application
                // goes on meanwhile, as there).
                let step = watch.mark_failed();
                self.report_then_reply(SamChange::MarkFailed, link, Pending::Act(step));
            }
            _ => {}
        }
        Ok(())
    }

    /// `start` with QUORUM: the state is "waiting for quorum" until the node is quorate (and its deadline
    /// not past); false if the application died meanwhile.
    fn wait_for_quorum(&mut self, pidfd: &vigil_sys::PidFd) -> Result<bool> {
        self.take_news();
        if !self.quorate_now() {
            self.state = SamState::WaitingForQuorum;
            self.report(SamChange::WaitQuorum).ok();
        }
        loop {
            self.take_news();
            if self.quorate_now() {
                self.acted_quorate = true;
                return Ok(true);
            }
            // News comes from the reporter thread (which reaches a lost vigild again by itself), or
            // without one straight from the connection, or from a new connection tried every second.
            let direct = self.link.as_ref().and_then(|l| l.vigild.as_ref());
            let mut fds = vec![PollFd::new(pidfd, PollFlags::IN)];
            if let Some(r) = &self.reporter {
                fds.push(PollFd::new(&r.woken, PollFlags::IN));
            } else if let Some(c) = direct {
                fds.push(PollFd::new(c, PollFlags::IN));
            }
            let retry = fds.len() == 1;
            let second = rustix::time::Timespec { tv_sec: 1, tv_nsec: 0 };
            match rustix::event::poll(&mut fds, retry.then_some(&second)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Err(SamError::Library),
            }
            let dead = !fds[0].revents().is_empty();
            let news = fds.get(1).is_some_and(|f| !f.revents().is_empty());
            drop(fds);
            if dead {
                return Ok(false);
            }
            if self.reporter.is_none() {
                if let Some(l) = self.link.as_mut() {
                    if news {
                        l.read_push();
                    } else if retry && l.reconnect() {
                        self.report(SamChange::WaitQuorum).ok();
                    }
                }
            }
        }
    }
}

/// Whether the process of `pidfd` has ended (its pidfd polls readable).
fn dead(pidfd: &vigil_sys::PidFd) -> Option<()> {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(n) if n > 0 => Some(()),
        _ => None,
    }
}
