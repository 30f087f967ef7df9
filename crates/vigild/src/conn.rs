//! A connection as the loop sees it: who asks ([`Caller`]) and where its answers go ([`ConnTx`]), with
//! the bounds that keep a slow reader from holding vigild's memory (docs/security.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use vigil_proto::{ServerMsg, HEADER_LEN, MAX_FRAME_LEN};

use crate::config::Settings;

/// Who is asking, from SO_PEERCRED.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The peer's pid, when the kernel gave one (for its supplementary groups).
    pub pid: Option<i32>,
    pub conn: u64,
}

/// A message to a connection's writer; `written` is told once the bytes are on the socket. `events`
/// hands the writer the bounded channel of a new subscription.
pub struct Outgoing {
    /// Boxed: an answer is moved to the outbox, the connection's channel and the writer's batch.
    pub msg: Box<ServerMsg>,
    pub written: Option<oneshot::Sender<()>>,
    pub events: Option<mpsc::Receiver<ServerMsg>>,
}

impl Outgoing {
    pub fn msg(msg: ServerMsg) -> Outgoing {
        Outgoing {
            msg: Box::new(msg),
            written: None,
            events: None,
        }
    }
}

/// The bounds of connections, from `[daemon]` (docs/security.md).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections one uid other than root (and vigild's own) may hold.
    pub per_uid: usize,
    /// Connections of all such uids together; root keeps room beyond it.
    pub total: usize,
    /// From accept to a complete Hello.
    pub hello_timeout: Duration,
    /// From a frame's first byte to its last.
    pub frame_timeout: Duration,
    /// How long answers may wait while the peer reads nothing.
    pub send_timeout: Duration,
    /// Requests of one connection waiting for their answer to be written.
    pub in_flight: usize,
    /// Bytes of answers and pushes waiting for one connection to read them.
    pub queue_bytes: usize,
    /// Bytes of requests of one uid read and not yet handled by the loop.
    pub request_bytes: usize,
    /// vigild's own uid, which like root is not limited.
    pub own_uid: u32,
}

impl Limits {
    /// The limits of the settings; the total is also kept within half the open file limit, so that
    /// connections can never take the descriptors that processes, pidfds and root's connections need.
    pub fn new(s: &Settings, nofile: Option<u64>, own_uid: u32) -> Limits {
        let fds = nofile.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
        Limits {
            per_uid: s.max_connections_per_uid,
            total: s.max_connections.min(fds),
            hello_timeout: s.hello_timeout,
            frame_timeout: s.frame_timeout,
            send_timeout: s.send_timeout,
            in_flight: s.max_in_flight,
            queue_bytes: s.queue_bytes,
            request_bytes: s.request_bytes_per_uid,
            own_uid,
        }
    }

    pub(crate) fn exempt(&self, uid: u32) -> bool {
        uid == 0 || uid == self.own_uid
    }
}

/// Open connections per uid, of the main socket and the HTTP API's listeners together, kept by the
/// accept loops and released when a connection ends.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) per_uid: HashMap<u32, usize>,
    /// Connections of uids that are limited.
    pub(crate) limited: usize,
    /// Each limited uid's budget of request bytes, shared by its connections and held by its requests
    /// until the loop has handled them: a uid that closes its connections and opens new ones while
    /// its requests still wait finds the same budget, not a fresh one.
    pub(crate) budgets: HashMap<u32, Weak<Semaphore>>,
}

/// Who may connect: one share of connections and one budget of request bytes per uid, for every
/// socket vigild serves (the main socket, `http.sock`, HTTP over TCP), so that a user cannot take
/// more by spreading over them.
#[derive(Clone)]
pub struct Admission {
    pub(crate) counts: Arc<Mutex<Counts>>,
    pub limits: Arc<Limits>,
}

/// One counted connection; dropping it releases its place.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    uid: u32,
    /// The uid's budget of request bytes not yet handled.
    pub budget: Arc<Semaphore>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.limited = c.limited.saturating_sub(1);
        if let Some(n) = c.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
        // Budgets no connection nor waiting request holds any more (this slot still holds its own).
        let uid = self.uid;
        c.budgets.retain(|u, b| b.strong_count() > usize::from(*u == uid));
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            counts: Arc::default(),
            limits: Arc::new(limits),
        }
    }

    /// Takes a place for a connection of `uid`, or says which limit it is over (`what` names the kind
    /// of connection refused, for the message). Root and vigild's own uid are not counted (None), so
    /// no user can keep them out.
    pub fn admit(&self, uid: u32, what: &str) -> Result<Option<Slot>, String> {
        self.admit_named(uid, what, &format!("uid {uid}"))
    }

    /// As [`Admission::admit`], with `name` saying who `uid` is in the message (a pseudo-user).
    pub fn admit_named(&self, uid: u32, what: &str, name: &str) -> Result<Option<Slot>, String> {
        let limits = &self.limits;
        if limits.exempt(uid) {
            return Ok(None);
        }
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mine = c.per_uid.get(&uid).copied().unwrap_or(0);
        if mine >= limits.per_uid {
            return Err(format!(
                "too many {what}connections: {name} already has {mine} open (the main socket and the HTTP API \
                 together), the limit per uid ([daemon] max_connections_per_uid = {})",
                limits.per_uid
            ));
        }
        if c.limited >= limits.total {
            return Err(format!(
                "too many {what}connections: users other than root hold {} open, the limit ([daemon] \
                 max_connections = {})",
                c.limited, limits.total
            ));
        }
        c.limited += 1;
        *c.per_uid.entry(uid).or_insert(0) += 1;
        let budget = match c.budgets.get(&uid).and_then(Weak::upgrade) {
            Some(b) => b,
            None => {
                let b = Arc::new(Semaphore::new(limits.request_bytes));
                c.budgets.insert(uid, Arc::downgrade(&b));
                b
            }
        };
        Ok(Some(Slot {
            counts: self.counts.clone(),
            uid,
            budget,
        }))
    }
}

/// What a connection shares between its reader, its writer and the loop.
pub(crate) struct Shared {
    pub(crate) conn: u64,
    /// Bytes of answers queued for the writer; None for a queue without a bound (answers to another
    /// node).
    pub(crate) queued: AtomicUsize,
    /// Bytes of CMAP notifications queued, within the same bound; those that find no room are counted
    /// in `notes_lost` and the writer tells the client how many with `ServerMsg::CmapLost`.
    pub(crate) noted: AtomicUsize,
    pub(crate) notes_lost: AtomicUsize,
    pub(crate) max_bytes: Option<usize>,
    /// Why the connection must end now (a reader too slow); the reader wakes on `kill`.
    pub(crate) killed: Mutex<Option<String>>,
    /// Whether `killed` is set, read without its lock on every request.
    pub(crate) is_killed: AtomicBool,
    pub(crate) kill: Notify,
    /// Permits for requests read and not yet answered.
    pub(crate) in_flight: Semaphore,
    pub(crate) max_in_flight: usize,
}

impl Shared {
    pub(crate) fn close(&self, reason: String) {
        let mut k = self.killed.lock().unwrap_or_else(|e| e.into_inner());
        if k.is_none() {
            *k = Some(reason);
            self.is_killed.store(true, Ordering::Release);
            self.kill.notify_one();
        }
    }

    pub(crate) fn killed(&self) -> Option<String> {
        if !self.is_killed.load(Ordering::Acquire) {
            return None;
        }
        self.killed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A request's answer is on the socket: the reader may take one more.
    pub(crate) fn answered(&self) {
        if self.in_flight.available_permits() < self.max_in_flight {
            self.in_flight.add_permits(1);
        }
    }
}

/// A message was not queued: the connection is gone, or was closed for reading too slowly.
#[derive(Debug)]
pub struct NotSent;

/// Where a connection's answers and pushes go. The queue is bounded in bytes: a message that would
/// pass the bound closes the connection instead of being queued (its reader is too slow).
#[derive(Clone)]
pub struct ConnTx {
    tx: mpsc::UnboundedSender<(Outgoing, Queued)>,
    pub(crate) shared: Arc<Shared>,
    /// Messages sent through this handle are CMAP notifications: lost (and counted) rather than
    /// closing the connection when there is no room.
    notes: bool,
    /// Bytes already counted for the one message this handle will send (`reserve`).
    reserved: Option<usize>,
}

/// What a queued message counts against.
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    pub(crate) size: usize,
    pub(crate) note: bool,
}

impl ConnTx {
    pub(crate) fn new(conn: u64, limits: Option<&Limits>) -> (ConnTx, mpsc::UnboundedReceiver<(Outgoing, Queued)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let max_in_flight = limits.map_or(1, |l| l.in_flight.max(1));
        let shared = Arc::new(Shared {
            conn,
            queued: AtomicUsize::new(0),
            noted: AtomicUsize::new(0),
            notes_lost: AtomicUsize::new(0),
            max_bytes: limits.map(|l| l.queue_bytes),
            killed: Mutex::new(None),
            is_killed: AtomicBool::new(false),
            kill: Notify::new(),
            in_flight: Semaphore::new(max_in_flight),
            max_in_flight,
        });
        (
            ConnTx {
                tx,
                shared,
                notes: false,
                reserved: None,
            },
            rx,
        )
    }

    /// The same connection, for CMAP notifications.
    pub fn for_notes(&self) -> ConnTx {
        ConnTx {
            notes: true,
            ..self.clone()
        }
    }

    /// A queue that is not a socket's (the answers of requests from other nodes): no byte bound, since
    /// each holds one answer.
    pub fn detached(conn: u64) -> (ConnTx, mpsc::UnboundedReceiver<(Outgoing, Queued)>) {
        ConnTx::new(conn, None)
    }

    /// The connection's number.
    pub fn conn(&self) -> u64 {
        self.shared.conn
    }

    /// Counts an answer against the bound now, before it waits for the end of the loop's step: a step
    /// that answers many requests of one connection cannot hold more than the bound for it. The
    /// handle returned sends that answer; None when it does not fit (the connection is closed).
    pub fn reserve(&self, msg: &ServerMsg) -> Option<ConnTx> {
        let size = frame_size(msg);
        self.admit(size).ok()?;
        Some(ConnTx {
            reserved: Some(size),
            ..self.clone()
        })
    }

    /// Counts `size` bytes, or says why they do not fit (closing the connection for an answer).
    fn admit(&self, size: usize) -> Result<(), NotSent> {
        let sh = &self.shared;
        if let Some(max) = sh.max_bytes {
            let queued = sh.queued.load(Ordering::Relaxed) + sh.noted.load(Ordering::Relaxed);
            if queued + size > max && self.notes {
                sh.notes_lost.fetch_add(1, Ordering::Relaxed);
                return Err(NotSent);
            }
            if queued + size > max {
                self.shared.close(format!(
                    "the client reads too slowly: {} bytes of answers are waiting for it and {size} more would \
                     pass the limit of {max} ([daemon] queue_bytes)",
                    queued
                ));
                return Err(NotSent);
            }
        }
        let count = if self.notes { &sh.noted } else { &sh.queued };
        count.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Queues a message; refused (and the connection closed) when the bytes waiting for this reader
    /// would pass the bound.
    pub fn send(&self, o: Outgoing) -> Result<(), NotSent> {
        let size = match self.reserved {
            Some(size) => size,
            None => {
                let size = frame_size(&o.msg);
                self.admit(size)?;
                size
            }
        };
        let count = if self.notes {
            &self.shared.noted
        } else {
            &self.shared.queued
        };
        let q = Queued { size, note: self.notes };
        self.tx.send((o, q)).map_err(|_| {
            count.fetch_sub(size, Ordering::Relaxed);
            NotSent
        })
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.is_killed()
    }

    /// Closed for reading too slowly: nothing more is done for it. (A client that merely hung up
    /// still has its last requests carried out.)
    pub fn is_killed(&self) -> bool {
        self.shared.is_killed.load(Ordering::Acquire)
    }
}

/// The bytes a message takes on the socket. An answer too large to send becomes a short error in the
/// writer: count what will be sent.
fn frame_size(msg: &ServerMsg) -> usize {
    postcard::experimental::serialized_size(msg)
        .unwrap_or(MAX_FRAME_LEN)
        .min(MAX_FRAME_LEN)
        + HEADER_LEN
}
