//! How an HTTP request reaches the loop: the same [`Msg::Request`] with the same [`Caller`] as a socket
//! request, so every permission check is the socket's own code. Each HTTP request is a connection of
//! its own to the loop (a [`Session`]); when it ends (answered, or its client gone), the loop is told
//! with [`Msg::Closed`] and forgets what it held (waiting requests, CMAP tracks, subscriptions).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use vigil_proto::{ErrorCode, Request, Response, ServerMsg, WireError};

use crate::conn::{Admission, Caller, ConnTx, Limits, Outgoing, Queued};
use crate::msg::Msg;

/// Connection numbers of HTTP sessions start here, far above the socket's (which count from 1) and
/// below the one cluster requests use (u64::MAX): the loop keys what a connection holds by number.
const FIRST_CONN: u64 = 1 << 48;

/// Who an HTTP connection's requests act as.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// The Unix socket: the peer's credentials.
    Unix { uid: u32, gid: u32, pid: Option<i32> },
    /// TCP: the bearer token's owner, once the request shows the token.
    Tcp,
}

/// The bearer token of TCP requests and whom it acts as.
pub struct Token {
    pub secret: String,
    pub uid: u32,
    pub gid: u32,
}

/// What every HTTP handler shares.
pub struct Api {
    pub tx: mpsc::UnboundedSender<Msg>,
    pub limits: Limits,
    /// Shared with the main socket: one share of connections and one budget of request bytes per uid.
    pub admission: Admission,
    pub token: Option<Token>,
    pub max_body: usize,
    next_conn: AtomicU64,
    /// HTTP connections open now (for /metrics).
    pub open: AtomicUsize,
    /// HTTP requests answered since start (for /metrics).
    pub requests: AtomicU64,
    /// Connections open now on the main socket (for /metrics), counted by its accept loop.
    pub socket_open: Arc<AtomicUsize>,
}

impl Api {
    pub fn new(
        tx: mpsc::UnboundedSender<Msg>,
        admission: Admission,
        token: Option<Token>,
        max_body: usize,
        socket_open: Arc<AtomicUsize>,
    ) -> Api {
        Api {
            tx,
            limits: Limits::clone(&admission.limits),
            admission,
            token,
            max_body,
            next_conn: AtomicU64::new(FIRST_CONN),
            open: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            socket_open,
        }
    }

    /// A session acting as `uid`/`gid`.
    pub fn session(self: &Arc<Api>, uid: u32, gid: u32, pid: Option<i32>) -> Session {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out, rx) = ConnTx::new(conn, Some(&self.limits));
        Session {
            api: self.clone(),
            caller: Caller { uid, gid, pid, conn },
            out,
            rx,
            next_id: 1,
            pushed: VecDeque::new(),
        }
    }

    /// A caller of its own for a message that is not a request (a scrape of `/metrics`): the loop
    /// keeps nothing for it, so no `Closed` follows.
    pub fn caller(&self, uid: u32, gid: u32, pid: Option<i32>) -> Caller {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        Caller { uid, gid, pid, conn }
    }

    /// One request, answered.
    pub async fn ask(self: &Arc<Api>, who: Caller, req: Request) -> Result<Response, WireError> {
        let mut s = self.session(who.uid, who.gid, who.pid);
        s.ask(req).await.map(|(r, _)| r)
    }
}

fn gone() -> WireError {
    WireError::new(
        ErrorCode::Internal,
        "vigild is shutting down: the request was not carried out",
    )
}

/// One HTTP request's connection to the loop.
pub struct Session {
    api: Arc<Api>,
    pub caller: Caller,
    out: ConnTx,
    rx: mpsc::UnboundedReceiver<(Outgoing, Queued)>,
    next_id: u64,
    /// Messages pushed to the connection while it waited for an answer.
    pushed: VecDeque<ServerMsg>,
}

impl Session {
    /// Sends a request and waits for its answer; a subscription's answer also hands over its events.
    pub async fn ask(&mut self, req: Request) -> Result<(Response, Option<mpsc::Receiver<ServerMsg>>), WireError> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = Msg::Request {
            caller: self.caller,
            id,
            req: Box::new(req),
            out: self.out.clone(),
            held: None,
        };
        self.api.tx.send(msg).map_err(|_| gone())?;
        loop {
            let (o, _) = self.recv().await.ok_or_else(gone)?;
            match *o.msg {
                ServerMsg::Response { id: got, result } if got == id => {
                    return result.map(|r| (r, o.events));
                }
                other => self.pushed.push_back(other),
            }
        }
    }

    /// The next message pushed to this connection (CMAP notifications, quorum changes); a count of
    /// notifications that found no room comes as `CmapLost`. None once the loop has let go of it.
    pub async fn pushed(&mut self) -> Option<ServerMsg> {
        if let Some(m) = self.pushed.pop_front() {
            return Some(m);
        }
        let lost = self.out.shared.notes_lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            return Some(ServerMsg::CmapLost { count: lost as u64 });
        }
        self.recv().await.map(|(o, _)| *o.msg)
    }

    /// A message from the loop, taken off the connection's byte count as a socket's writer does.
    async fn recv(&mut self) -> Option<(Outgoing, Queued)> {
        let (o, q) = self.rx.recv().await?;
        let sh = &self.out.shared;
        if q.note {
            sh.noted.fetch_sub(q.size, Ordering::Relaxed);
        } else {
            sh.queued.fetch_sub(q.size, Ordering::Relaxed);
        }
        Some((o, q))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Whatever the loop holds for this session (a waiting stop, a track, a subscriber) goes.
        let _ = self.api.tx.send(Msg::Closed { conn: self.caller.conn });
    }
}
