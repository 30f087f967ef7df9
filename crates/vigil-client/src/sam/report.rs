//! The supervisor's link to vigild: reports, reconnection, and quorum with its deadline.
//!
//! While an instance runs, the link lives on a thread of its own (the [`Reporter`]): a report waits for
//! vigild there, never in the supervisor's loop, so a stalled vigild holds up neither the heartbeats nor
//! the warnings nor the quorum deadline (docs/sam.md, "When vigild stalls"). Reports reach vigild in the
//! order they were made; heartbeats waiting in a row are sent as one.
//!
//! The supervisor uses the thread only when it must (`supervisor.rs`, `start_reporter`): while vigild
//! keeps up, reports are sent from the supervisor's loop without waiting ([`Link::send_nowait`]), and the
//! thread takes them over, with those already sent, when that would wait. It is ended before each fork,
//! so a fork is always made with one thread. Idle, it waits on a condition variable unless it listens
//! to vigild's quorum news; a supervisor that takes the link back from an idle thread does not wake it
//! for that.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use vigil_proto::{ErrorCode, Request, SamChange, SamInfo};

use crate::{Client, ClientError, QuorumLease};

/// How often a supervisor of a QUORUM application without vigild tries to reach it again: well within
/// the quorum deadline (at least the lease's TTL of 2 s less a third and a margin), so that a vigild that
/// re-executes renews it in time; a refused connect costs microseconds.
const RETRY: Duration = Duration::from_millis(100);

/// The connection to vigild and what it takes to make a new one.
#[derive(Default)]
pub(super) struct Link {
    pub(super) vigild: Option<Client>,
    /// One more for each new connection: a report sent without waiting is answered only on its own.
    pub(super) generation: u64,
    pub(super) socket: Option<PathBuf>,
    /// The data as vigild last accepted it: sent again on a new connection.
    pub(super) data: Option<Vec<u8>>,
    /// Track quorum (the QUORUM policy).
    pub(super) quorum: bool,
    /// The last record reported: what a new connection reattaches.
    pub(super) last_info: Option<SamInfo>,
    /// Quorum as vigild told it, not yet taken by the supervisor.
    pub(super) news: VecDeque<News>,
    /// The news now read are the answer of a new connection.
    pub(super) reconnecting: bool,
}

/// A report sent without waiting: on which connection of the link, with which request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    pub(super) generation: u64,
    pub(super) id: u64,
}

/// Quorum as vigild told it.
#[derive(Debug, Clone, Copy)]
pub(super) struct News {
    pub(super) lease: QuorumLease,
    /// Read on a new connection (vigild restarted or came back): how things stand, not a change.
    pub(super) reconnected: bool,
}

impl Link {
    /// Tells vigild; reconnects once if the connection was lost (vigild restarted). Without vigild,
    /// nothing to tell: Ok.
    pub(super) fn report(&mut self, change: SamChange, info: SamInfo) -> Result<(), ErrorCode> {
        self.last_info = Some(info.clone());
        let body = Request::SamReport {
            change: change.clone(),
            info,
        };
        // Once, and once more on a new connection if this one was lost.
        for _ in 0..2 {
            if self.vigild.is_none() && !self.reconnect() {
                return Ok(());
            }
            let r = self.vigild.as_mut().expect("connected above").request(body.clone());
            if let Some(r) = self.answer(r) {
                self.answered(&change, &r);
                return r;
            }
        }
        Ok(())
    }

    /// vigild's answer to a report, or None when the connection was lost (then it is let go).
    fn answer(&mut self, r: crate::Result<vigil_proto::Response>) -> Option<Result<(), ErrorCode>> {
        self.collect();
        match r {
            Ok(_) => Some(Ok(())),
            Err(ClientError::Server(e)) => Some(Err(e.code)),
            Err(_) => {
                self.vigild = None;
                None
            }
        }
    }

    /// Sends a report without waiting for its answer (the supervisor's loop reads it): where it went
    /// ([`Sent`]), or None when it cannot go now (no connection, or no room on it), for the reporter
    /// thread to make.
    pub(super) fn send_nowait(&mut self, change: &SamChange, info: &SamInfo) -> Option<Sent> {
        let c = self.vigild.as_mut()?;
        let body = Request::SamReport {
            change: change.clone(),
            info: info.clone(),
        };
        match c.send_request_nowait(body) {
            Ok(Some(id)) => {
                self.last_info = Some(info.clone());
                Some(Sent {
                    generation: self.generation,
                    id,
                })
            }
            Ok(None) => None,
            Err(_) => {
                self.vigild = None;
                None
            }
        }
    }

    /// vigild answered a report sent by [`Link::send_nowait`]: data it took is what a new connection
    /// sends again.
    pub(super) fn answered(&mut self, change: &SamChange, r: &Result<(), ErrorCode>) {
        if let (SamChange::Data(d), Ok(())) = (change, r) {
            self.data = d.clone();
        }
    }

    /// Makes a queued report: waits for the answer of one already sent, else sends it and waits.
    pub(super) fn complete(&mut self, job: Job) -> Result<(), ErrorCode> {
        match job.sent {
            Some(sent) => self.await_sent(sent, job.change, job.info),
            None => self.report(job.change, job.info),
        }
    }

    /// Waits for the answer to a report sent by [`Link::send_nowait`]; if its connection is gone (lost,
    /// or replaced by a new one, where its id means nothing), the report is made again.
    fn await_sent(&mut self, sent: Sent, change: SamChange, info: SamInfo) -> Result<(), ErrorCode> {
        let r = match self.vigild.as_mut() {
            Some(c) if sent.generation == self.generation => c.response(sent.id),
            _ => return self.report(change, info),
        };
        match self.answer(r) {
            Some(r) => {
                self.answered(&change, &r);
                r
            }
            None => self.report(change, info),
        }
    }

    /// A new connection: the record reattached, the data sent again, quorum tracked again. False when
    /// vigild cannot be reached.
    pub(super) fn reconnect(&mut self) -> bool {
        let Some(path) = self.socket.clone() else { return false };
        let Ok(mut c) = Client::connect(&path) else {
            return false;
        };
        self.generation += 1;
        if let Some(info) = self.last_info.clone() {
            let again = |c: &mut Client, change: SamChange| {
                c.request(Request::SamReport {
                    change,
                    info: info.clone(),
                })
            };
            if again(&mut c, SamChange::Reattach).is_err() {
                return false;
            }
            if let Some(d) = self.data.clone() {
                let _ = again(&mut c, SamChange::Data(Some(d)));
            }
        }
        self.vigild = Some(c);
        if self.quorum {
            self.reconnecting = true;
            self.track();
            self.reconnecting = false;
        }
        true
    }

    /// Asks for quorum with its deadline on the current connection: the answer's news (pushed right
    /// after it) supersedes anything older.
    pub(super) fn track(&mut self) {
        let Some(c) = self.vigild.as_mut() else { return };
        if c.quorum_lease_track().is_err() {
            self.vigild = None;
            return;
        }
        // The first message may follow the answer: it belongs to this track (how things stand on this
        // connection), not to the changes pushed later.
        let mut got = c.quorum_leases();
        while got.is_empty() {
            if c.read_push().is_err() {
                self.vigild = None;
                return;
            }
            got = c.quorum_leases();
        }
        let reconnected = self.reconnecting;
        self.news
            .extend(got.into_iter().map(|lease| News { lease, reconnected }));
    }

    /// Reads one pushed message (the socket polled readable).
    pub(super) fn read_push(&mut self) {
        if let Some(c) = self.vigild.as_mut() {
            if c.read_push().is_err() {
                self.vigild = None;
            }
        }
        self.collect();
    }

    /// Moves the quorum news the client received into `news`.
    fn collect(&mut self) {
        if let Some(c) = self.vigild.as_mut() {
            let reconnected = self.reconnecting;
            self.news
                .extend(c.quorum_leases().into_iter().map(|lease| News { lease, reconnected }));
        }
    }
}

pub(super) struct Job {
    pub(super) change: SamChange,
    pub(super) info: SamInfo,
    /// The supervisor waits for vigild's answer (a command whose reply waits for it).
    pub(super) answer: bool,
    /// Already sent by the supervisor: only its answer is awaited (on that connection).
    pub(super) sent: Option<Sent>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// The link, while nobody is using it: the thread takes it out to make a report (or to wait for
    /// vigild's pushes, or to reconnect) and puts it back; the supervisor takes it back when the instance
    /// is gone ([`Reporter::finish`]).
    link: Option<Link>,
    /// The read end of the pipe that wakes the thread while it polls (as it does only to hear vigild's
    /// quorum news; taken out meanwhile), and the write end of the one it wakes the supervisor by.
    wake_rx: Option<OwnedFd>,
    woken_tx: Option<OwnedFd>,
    /// The thread is polling (with `wake_rx` and the link): a poke writes to the pipe, not the condvar.
    polling: bool,
    /// The supervisor has taken the link back: the thread has nothing more to do.
    parked: bool,
    /// The supervisor wants the link back once the jobs are done.
    closing: bool,
    /// The thread has just started: quorum is tracked anew before anything else.
    fresh: bool,
    /// The supervisor's handle is gone: the thread ends.
    ended: bool,
    answers: VecDeque<Result<(), ErrorCode>>,
    news: VecDeque<News>,
}

impl State {
    /// Wakes the thread, however it waits.
    fn poke(&self, shared: &Shared, wake: &OwnedFd) {
        if self.polling {
            poke(wake);
        } else {
            shared.idle.notify_one();
        }
    }
}

/// Wakes the supervisor.
fn tell(woken_tx: &Option<OwnedFd>) {
    if let Some(w) = woken_tx {
        poke(w);
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Where the thread waits when it has nothing to poll.
    idle: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The supervisor's handle on the thread that makes its reports.
pub(super) struct Reporter {
    shared: Arc<Shared>,
    /// Written to wake the thread while it polls.
    wake: OwnedFd,
    /// Readable when the thread has answers or news, or has parked: the supervisor polls it.
    pub(super) woken: OwnedFd,
    /// None once joined.
    thread: Option<JoinHandle<()>>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::{pipe_with, PipeFlags};
    Ok(pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

/// Empties a wake-up pipe.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// One byte is enough: a full pipe already wakes its reader.
fn poke(fd: &OwnedFd) {
    let _ = rustix::io::write(fd, &[1]);
}

impl Reporter {
    /// Starts the thread with the link in `held` and the reports in `jobs`; without a thread (none can be
    /// made) they stay there.
    pub(super) fn start(held: &mut Option<Link>, jobs: &mut Vec<Job>) -> Option<Reporter> {
        let (wake_rx, wake) = pipe().ok()?;
        let (woken, woken_tx) = pipe().ok()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                link: held.take(),
                jobs: std::mem::take(jobs).into(),
                wake_rx: Some(wake_rx),
                woken_tx: Some(woken_tx),
                fresh: true,
                ..Default::default()
            }),
            idle: Condvar::new(),
        });
        let q = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("sam-report".into())
            .spawn(move || run(&q));
        match spawned {
            Ok(thread) => Some(Reporter {
                shared,
                wake,
                woken,
                thread: Some(thread),
            }),
            Err(_) => {
                let mut s = shared.lock();
                *held = s.link.take();
                jobs.extend(s.jobs.drain(..));
                None
            }
        }
    }

    /// Queues a report; `answer`: its result comes back through [`Reporter::take`].
    pub(super) fn report(&self, change: SamChange, info: SamInfo, answer: bool) {
        let mut q = self.shared.lock();
        // Heartbeats in a row say nothing more than the last one: a stall of vigild leaves one behind.
        let beat = matches!(change, SamChange::Heartbeat);
        // A data store replaces the whole blob: one not yet sent is dropped for the newer one, so that a
        // stalled vigild holds at most one blob here besides the one being sent.
        if matches!(change, SamChange::Data(_)) && !answer {
            q.jobs
                .retain(|j| j.answer || j.sent.is_some() || !matches!(j.change, SamChange::Data(_)));
        }
        match q.jobs.back_mut() {
            Some(last) if beat && !answer && last.sent.is_none() && matches!(last.change, SamChange::Heartbeat) => {
                last.info = info
            }
            _ => q.jobs.push_back(Job {
                change,
                info,
                answer,
                sent: None,
            }),
        }
        q.poke(&self.shared, &self.wake);
    }

    /// What the thread has for the supervisor since the last call: the answers to the reports that asked
    /// for one, and quorum news, each oldest first.
    pub(super) fn take(&self) -> (Vec<Result<(), ErrorCode>>, Vec<News>) {
        // Emptied first: anything added after it pokes again.
        drain(&self.woken);
        let mut q = self.shared.lock();
        (q.answers.drain(..).collect(), q.news.drain(..).collect())
    }

    /// Takes the link back once the queued reports are made, with the news and the answers not yet
    /// taken (those of the reports made last), and ends the thread. An idle thread (the usual case when
    /// an instance dies) gives the link up where it waits, without being woken for it.
    pub(super) fn finish(mut self) -> (Link, Vec<Result<(), ErrorCode>>) {
        let mut s = self.shared.lock();
        let idle = s.link.is_some() && s.jobs.is_empty() && !s.fresh && !s.polling;
        if !idle {
            s.closing = true;
            s.poke(&self.shared, &self.wake);
            drop(s);
            // Looked at again every so often: a thread that ended (it cannot short of a bug) says
            // nothing, and its pipe end stays open in the shared state.
            let tick = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            loop {
                let mut fds = [PollFd::new(&self.woken, PollFlags::IN)];
                let _ = rustix::event::poll(&mut fds, Some(&tick));
                drain(&self.woken);
                s = self.shared.lock();
                // A thread that ended (it cannot short of a bug) left the link where it was.
                if s.parked || self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                    break;
                }
                drop(s);
            }
        }
        s.parked = true;
        s.ended = true;
        s.poke(&self.shared, &self.wake);
        let mut link = s.link.take().unwrap_or_default();
        let mut news: VecDeque<News> = s.news.drain(..).collect();
        news.append(&mut link.news);
        link.news = news;
        let answers = s.answers.drain(..).collect();
        drop(s);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (link, answers)
    }
}

impl Drop for Reporter {
    /// The thread ends once it has made the reports queued (the supervisor is going away).
    fn drop(&mut self) {
        if self.thread.is_some() {
            let mut s = self.shared.lock();
            s.ended = true;
            s.poke(&self.shared, &self.wake);
        }
    }
}

/// What the thread does next, found under the lock.
enum Work {
    Track(Link),
    Report(Job, Link),
    /// Wait for a poke or for vigild's pushes, with the link and the pipe end taken out; with a timeout
    /// when vigild is to be reached again.
    Poll(Link, OwnedFd),
}

/// The thread: makes the queued reports in order, reads vigild's quorum pushes in between, and retries a
/// lost vigild every [`RETRY`] when quorum is tracked; waits once the supervisor has taken the link
/// back, and ends when told to (or when the supervisor's handle is gone).
fn run(shared: &Shared) {
    loop {
        let work = {
            let mut guard = shared.lock();
            loop {
                let s = &mut *guard;
                let Some(link) = s.link.as_mut().filter(|_| !s.parked) else {
                    if s.ended {
                        return;
                    }
                    guard = shared.idle.wait(guard).unwrap_or_else(|e| e.into_inner());
                    continue;
                };
                if !link.news.is_empty() {
                    s.news.extend(link.news.drain(..));
                    tell(&s.woken_tx);
                }
                if std::mem::take(&mut s.fresh) {
                    // Pushes older than this instance were read late: a fresh track makes the newest
                    // news current.
                    break Work::Track(s.link.take().expect("matched above"));
                }
                if let Some(job) = s.jobs.pop_front() {
                    break Work::Report(job, s.link.take().expect("matched above"));
                }
                if std::mem::take(&mut s.closing) {
                    s.parked = true;
                    tell(&s.woken_tx);
                    continue;
                }
                if s.ended {
                    return;
                }
                // Only quorum is pushed: without it there is nothing to read between reports.
                let listen = link.quorum && (link.vigild.is_some() || link.socket.is_some());
                if let (true, Some(rx)) = (listen, s.wake_rx.take()) {
                    s.polling = true;
                    break Work::Poll(s.link.take().expect("matched above"), rx);
                }
                guard = shared.idle.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        };
        match work {
            Work::Track(mut link) => {
                if link.quorum {
                    link.track();
                }
                shared.lock().link = Some(link);
            }
            Work::Report(job, mut link) => {
                let answer = job.answer;
                let r = link.complete(job);
                let mut s = shared.lock();
                s.link = Some(link);
                if answer {
                    s.answers.push_back(r);
                    tell(&s.woken_tx);
                }
            }
            Work::Poll(mut link, rx) => {
                listen(&mut link, &rx);
                let mut s = shared.lock();
                s.polling = false;
                s.link = Some(link);
                s.wake_rx = Some(rx);
            }
        }
    }
}

/// One wait for a poke, for a push from vigild, or (vigild lost) for the time to reach it again.
fn listen(link: &mut Link, wake: &OwnedFd) {
    let retry = link.vigild.is_none();
    let timeout = retry.then(|| rustix::time::Timespec {
        tv_sec: RETRY.as_secs() as i64,
        tv_nsec: RETRY.subsec_nanos() as _,
    });
    let mut fds = vec![PollFd::new(wake, PollFlags::IN)];
    if let Some(c) = link.vigild.as_ref() {
        fds.push(PollFd::new(c, PollFlags::IN));
    }
    if matches!(rustix::event::poll(&mut fds, timeout.as_ref()), Err(e) if e != rustix::io::Errno::INTR) {
        // Nothing sensible to wait on: not a busy loop either.
        std::thread::sleep(RETRY);
        return;
    }
    let pushed = fds.get(1).is_some_and(|f| !f.revents().is_empty());
    let woke = !fds[0].revents().is_empty();
    drop(fds);
    if woke {
        drain(wake);
    }
    if pushed {
        link.read_push();
    } else if retry && !woke {
        link.reconnect();
    }
}
