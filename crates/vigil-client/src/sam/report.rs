//! The supervisor's link to vigild: reports, reconnection, and quorum with its deadline.
//!
//! While an instance runs, the link lives on a thread of its own (the [`Reporter`]): a report waits for
//! vigild there, never in the supervisor's loop, so a stalled vigild holds up neither the heartbeats nor
//! the warnings nor the quorum deadline (docs/sam.md, "When vigild stalls"). Reports reach vigild in the
//! order they were made; heartbeats waiting in a row are sent as one. The thread exists only between the
//! start of an instance and its end, so the supervisor never forks while it runs.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
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
        let is_data = matches!(change, SamChange::Data(_));
        let data = match &change {
            SamChange::Data(d) => d.clone(),
            _ => None,
        };
        if self.vigild.is_none() && !self.reconnect() {
            return Ok(());
        }
        let c = self.vigild.as_mut().expect("connected above");
        let r = c.request(Request::SamReport {
            change: change.clone(),
            info: info.clone(),
        });
        self.collect();
        let r = match r {
            Ok(_) => Ok(()),
            Err(ClientError::Server(e)) => Err(e.code),
            Err(_) => {
                // Lost: once more on a new connection.
                self.vigild = None;
                if !self.reconnect() {
                    return Ok(());
                }
                let c = self.vigild.as_mut().expect("connected above");
                let r = c.request(Request::SamReport { change, info });
                self.collect();
                match r {
                    Err(ClientError::Server(e)) => Err(e.code),
                    _ => Ok(()),
                }
            }
        };
        if is_data && r.is_ok() {
            self.data = data;
        }
        r
    }

    /// A new connection: the record reattached, the data sent again, quorum tracked again. False when
    /// vigild cannot be reached.
    pub(super) fn reconnect(&mut self) -> bool {
        let Some(path) = self.socket.clone() else { return false };
        let Ok(mut c) = Client::connect(&path) else {
            return false;
        };
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

struct Job {
    change: SamChange,
    info: SamInfo,
    /// The supervisor waits for vigild's answer (a command whose reply waits for it).
    answer: bool,
}

#[derive(Default)]
struct Queues {
    jobs: VecDeque<Job>,
    /// The supervisor wants the link back once the jobs are done.
    closing: bool,
    answers: VecDeque<Result<(), ErrorCode>>,
    news: VecDeque<News>,
}

/// The supervisor's handle on the thread that owns the link while an instance runs.
pub(super) struct Reporter {
    queues: Arc<Mutex<Queues>>,
    /// Written to wake the thread.
    wake: OwnedFd,
    /// Readable when the thread has answers or news: the supervisor polls it.
    pub(super) woken: OwnedFd,
    thread: JoinHandle<Link>,
}

fn lock(q: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    q.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Starts the thread with the link in `held`; without a thread (none can be made) the link stays there.
    pub(super) fn start(held: &mut Option<Link>) -> Option<Reporter> {
        let (wake_rx, wake) = pipe().ok()?;
        let (woken, woken_tx) = pipe().ok()?;
        let queues = Arc::new(Mutex::new(Queues::default()));
        let q = queues.clone();
        // Handed over through a slot, so that it comes back if the thread cannot be spawned.
        let slot = Arc::new(Mutex::new(held.take()));
        let s = slot.clone();
        let spawned = std::thread::Builder::new().name("sam-report".into()).spawn(move || {
            let link = s.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
            run(link, &q, &wake_rx, &woken_tx)
        });
        match spawned {
            Ok(thread) => Some(Reporter {
                queues,
                wake,
                woken,
                thread,
            }),
            Err(_) => {
                *held = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                None
            }
        }
    }

    /// Queues a report; `answer`: its result comes back through [`Reporter::take`].
    pub(super) fn report(&self, change: SamChange, info: SamInfo, answer: bool) {
        {
            let mut q = lock(&self.queues);
            // Heartbeats in a row say nothing more than the last one: a stall of vigild leaves one behind.
            let beat = matches!(change, SamChange::Heartbeat);
            // A data store replaces the whole blob: one not yet sent is dropped for the newer one, so
            // that a stalled vigild holds at most one blob here besides the one being sent.
            if matches!(change, SamChange::Data(_)) && !answer {
                q.jobs.retain(|j| j.answer || !matches!(j.change, SamChange::Data(_)));
            }
            match q.jobs.back_mut() {
                Some(last) if beat && !answer && matches!(last.change, SamChange::Heartbeat) => last.info = info,
                _ => q.jobs.push_back(Job { change, info, answer }),
            }
        }
        poke(&self.wake);
    }

    /// What the thread has for the supervisor since the last call: the answers to the reports that asked
    /// for one, and quorum news, each oldest first.
    pub(super) fn take(&self) -> (Vec<Result<(), ErrorCode>>, Vec<News>) {
        // Emptied first: anything added after it pokes again.
        drain(&self.woken);
        let mut q = lock(&self.queues);
        (q.answers.drain(..).collect(), q.news.drain(..).collect())
    }

    /// Waits for the queued reports to be made and takes the link back, with the news not yet taken,
    /// and the answers not yet taken (those of the reports made last).
    pub(super) fn finish(self) -> (Link, Vec<Result<(), ErrorCode>>) {
        lock(&self.queues).closing = true;
        poke(&self.wake);
        // The thread cannot panic short of a bug; the supervisor then goes on without vigild.
        let mut link = self.thread.join().unwrap_or_default();
        let mut q = lock(&self.queues);
        let mut news: VecDeque<News> = q.news.drain(..).collect();
        news.append(&mut link.news);
        link.news = news;
        (link, q.answers.drain(..).collect())
    }
}

/// The thread: makes the queued reports in order, reads vigild's pushes in between, and retries a lost
/// vigild every [`RETRY`] when quorum is tracked.
fn run(mut link: Link, queues: &Mutex<Queues>, wake: &OwnedFd, woken: &OwnedFd) -> Link {
    // Pushes older than this instance were read late: a fresh track makes the newest news current.
    if link.quorum {
        link.track();
    }
    loop {
        let job = {
            let mut q = lock(queues);
            if !link.news.is_empty() {
                q.news.extend(link.news.drain(..));
                poke(woken);
            }
            match q.jobs.pop_front() {
                Some(j) => Some(j),
                None if q.closing => return link,
                None => None,
            }
        };
        if let Some(job) = job {
            let r = link.report(job.change, job.info);
            if job.answer {
                lock(queues).answers.push_back(r);
                poke(woken);
            }
            continue;
        }
        let retry = link.quorum && link.vigild.is_none() && link.socket.is_some();
        let timeout = retry.then(|| rustix::time::Timespec {
            tv_sec: RETRY.as_secs() as i64,
            tv_nsec: RETRY.subsec_nanos() as _,
        });
        let mut fds = vec![PollFd::new(wake, PollFlags::IN)];
        if let Some(c) = link.vigild.as_ref() {
            fds.push(PollFd::new(c, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // Nothing sensible is left to wait on: the supervisor takes the link back.
            Err(_) => return link,
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
}
