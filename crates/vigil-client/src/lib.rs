//! The Rust client of vigild.
//!
//! [`Client`] is blocking: one request at a time over one Unix stream, with events that arrive in between
//! kept for [`Client::next_event`]. The CLI and the C libraries are built on it.
//!
//! Invariant: the client knows the wire, not the daemon's rules; every check is the daemon's, so every
//! client gets the same errors.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod resources;
pub mod sam;

pub use resources::SelectError;

pub use vigil_proto as proto;

mod pipeline;
pub use pipeline::PIPELINE_WINDOW_MAX;

/// What the command-line programs built on this crate need of their own process, so that they need no
/// other vigil crate (ARCHITECTURE.md).
pub mod process {
    pub use vigil_sys::{default_sigpipe, getuid};
}
use vigil_proto::{
    ClientMsg, ClusterEvent, ClusterEvents, CmapEntry, CmapMap, CmapNotification, CmapValue, DaemonInfo, ErrorCode,
    Event, EventFilter, FrameError, PsmCategory, PsmMember, PsmNode, ReloadReport, Request, Response, RestartPolicy,
    RunSpec, ServerMsg, Supervision, TagStatus, TagSummary, WaitUntil, WireError, PROTOCOL_VERSION,
};

/// What can go wrong talking to vigild.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to vigild at {path}: {source} (is vigild running? set VIGIL_SOCKET or --socket)")]
    Connect { path: PathBuf, source: io::Error },
    #[error("vigild speaks protocol {theirs}, this client speaks {ours}")]
    Version { ours: u32, theirs: u32 },
    #[error("connection to vigild: {0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Server(#[from] WireError),
    #[error("vigild sent an unexpected answer: {0}")]
    Unexpected(String),
    /// Events `from..=to` will never arrive (this reader fell behind, or history was trimmed); resume
    /// from `to + 1`.
    #[error("lost events {from}..{to}; resume from {}", to + 1)]
    Lost { from: u64, to: u64 },
    /// The socket is not vigild's as far as this client can tell: its server runs as another user, or
    /// (for the default socket) its directory could have been made by another user. Nothing was sent.
    #[error(
        "refusing to talk to {}: {found}; expected {expected} (another user may be posing as vigild: \
         remove it, or name the real socket with VIGIL_SOCKET or --socket)",
        path.display()
    )]
    Untrusted {
        path: PathBuf,
        /// What was found, e.g. "the server runs as uid 65534".
        found: String,
        /// What would have been trusted, e.g. "root or uid 1000".
        expected: String,
    },
}

impl ClientError {
    /// The daemon's error code, when the daemon refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The uid of this process, read without libc.
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

/// The effective uid of this process: the one vigild sees through SO_PEERCRED.
fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Where vigild listens unless told otherwise: `$VIGIL_SOCKET`; for root `/run/vigil/vigild.sock`; for
/// others `$XDG_RUNTIME_DIR/vigil/vigild.sock` if it exists, else the system socket if that exists.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = explicit_socket() {
        return p;
    }
    implicit_socket_path()
}

fn explicit_socket() -> Option<PathBuf> {
    std::env::var_os("VIGIL_SOCKET")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The socket this client picks by convention when nobody named one. Another user can create
/// `/tmp/vigil-UID` before its owner does, so a path found this way is only used in a directory
/// nobody else could have written (see [`check_directory`]).
fn implicit_socket_path() -> PathBuf {
    let system = PathBuf::from("/run/vigil/vigild.sock");
    if current_uid() == 0 {
        return system;
    }
    let user = match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("vigil/vigild.sock"),
        None => PathBuf::from(format!("/tmp/vigil-{}/vigild.sock", current_uid())),
    };
    if !user.exists() && system.exists() {
        return system;
    }
    // A per-user directory that another user made (or may write) cannot hold this user's own vigild
    // (vigild refuses such a directory too): it is a squatter's, and the system's vigild, when there is
    // one, is the one to talk to. Without one, the refusal names the squatted directory.
    if system.exists() && check_directory(&user, &trusted_uids(effective_uid(), None)).is_err() {
        return system;
    }
    user
}

/// Every path a client may pick by convention, however it was reached this time (a script may well set
/// `VIGIL_SOCKET=/tmp/vigil-$UID/vigild.sock`): their directories get [`check_directory`]. Other
/// paths were chosen by whoever set them up, and the peer check alone decides.
fn conventional_socket_paths() -> Vec<PathBuf> {
    let mut paths = vec![
        PathBuf::from("/run/vigil/vigild.sock"),
        PathBuf::from(format!("/tmp/vigil-{}/vigild.sock", current_uid())),
    ];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        paths.push(PathBuf::from(dir).join("vigil/vigild.sock"));
    }
    paths
}

/// Writes with MSG_NOSIGNAL: a vigild that went away is an error to the caller, never a SIGPIPE that would
/// end a C program using the client (its default action) — a SAM supervisor above all.
struct NoSigpipe<'a>(&'a UnixStream);

impl io::Write for NoSigpipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::net::send(self.0, buf, rustix::net::SendFlags::NOSIGNAL) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a message that is expected within microseconds: the first read polls the socket for up to
/// `spin` before it blocks, and notes whether that found something; the reads after it (the rest of the
/// frame) block at once as usual. See [`answer_spin`].
struct SpinRead<'a> {
    stream: &'a UnixStream,
    spin: Duration,
    found: Option<bool>,
}

impl io::Read for SpinRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.found.is_none() {
            let got = vigil_sys::busy_poll::spin(self.spin, || {
                match rustix::net::recv(self.stream, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => None,
                    r => Some(r),
                }
            });
            self.found = Some(got.is_some());
            if let Some(r) = got {
                return r.map(|(n, _)| n).map_err(io::Error::from);
            }
        }
        (&mut &*self.stream).read(buf)
    }
}

/// The longest a request polls for its answer before it sleeps: `VIGIL_SPIN_US` microseconds from the
/// environment (0: never poll), by default 50 with more than one CPU online and 0 with one (where
/// vigild cannot run while this process polls). Waking a process that sleeps costs the answer a
/// scheduler wake-up, from 4 µs to 25 µs and more on a virtual machine whose CPU went idle; most of
/// vigild's answers come sooner than the default. How long each request polls adapts
/// ([`vigil_sys::busy_poll::BusyPoll`]): a client whose answers come late soon stops polling.
pub fn answer_spin() -> Duration {
    static SPIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| {
        let us = std::env::var("VIGIL_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                if cpus > 1 {
                    DEFAULT_SPIN_US
                } else {
                    0
                }
            });
        Duration::from_micros(us.min(MAX_SPIN_US))
    })
}

/// The default of `VIGIL_SPIN_US` with more than one CPU, and its largest value.
const DEFAULT_SPIN_US: u64 = 50;
const MAX_SPIN_US: u64 = 1000;

/// The node's quorum as one `ServerMsg::QuorumLease` told it, after [`Client::quorum_lease_track`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumLease {
    pub quorate: bool,
    /// When the quorum can no longer be counted on without a newer message, on this process's monotonic
    /// clock (computed when the message was read); None: no time limit (vigild is not in cluster mode).
    pub until: Option<std::time::Instant>,
}

/// A connection to vigild.
pub struct Client {
    stream: UnixStream,
    next_id: u64,
    daemon_pid: u32,
    daemon_version: String,
    events: VecDeque<StreamItem>,
    /// The cluster stream's items, after [`Client::cluster_subscribe`].
    cluster: VecDeque<ClusterItem>,
    /// The connection's push stream is the cluster stream (its loss markers are revisions).
    cluster_stream: bool,
    notifications: VecDeque<CmapNotification>,
    /// CMAP notifications vigild dropped because this client did not read them in time.
    notifications_lost: u64,
    quorum: VecDeque<bool>,
    /// Quorum with its deadline, after [`Client::quorum_lease_track`].
    quorum_leases: VecDeque<QuorumLease>,
    /// Cluster mode: the node requests are for (None: the node of this vigild).
    node: Option<String>,
    /// How long the next request polls for its answer before it sleeps.
    spin: vigil_sys::busy_poll::BusyPoll,
}

impl std::os::fd::AsFd for Client {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    Event(Event),
    /// Events `from..=to` will never arrive: resume from `to + 1`.
    Lost {
        from: u64,
        to: u64,
    },
}

/// What a subscription to the cluster stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterItem {
    Event(ClusterEvent),
    /// Revisions `from..=to` will never arrive: resume from `to + 1`.
    Lost {
        from: u64,
        to: u64,
    },
}

impl Client {
    /// Connects and performs the version handshake, after checking that the server runs as root or as
    /// this client's own user (see [`check_peer`]). A path that is the client's default by convention
    /// (not named by the caller nor by `$VIGIL_SOCKET`) must also lie in a directory that no other
    /// user could have made or written (see [`check_directory`]).
    pub fn connect(path: &Path) -> Result<Client> {
        Client::connect_trusting(path, None)
    }

    /// [`Client::connect`] that also accepts a server running as `also`: for root talking on purpose
    /// to the vigild of one user (e.g. to look at it), never for finding vigild by convention.
    pub fn connect_trusting(path: &Path, also: Option<u32>) -> Result<Client> {
        let me = effective_uid();
        let trusted = trusted_uids(me, also);
        if conventional_socket_paths().iter().any(|p| p == path) {
            check_directory(path, &trusted)?;
        }
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.into(),
            source,
        })?;
        // Before the first byte: a server that is not root nor us (nor whom the caller trusts) must
        // never see a request, its environment values or what the client would believe from it.
        check_peer(&stream, path, &trusted)?;
        let mut c = Client {
            stream,
            next_id: 1,
            daemon_pid: 0,
            daemon_version: String::new(),
            events: VecDeque::new(),
            cluster: VecDeque::new(),
            cluster_stream: false,
            notifications: VecDeque::new(),
            notifications_lost: 0,
            quorum: VecDeque::new(),
            quorum_leases: VecDeque::new(),
            node: None,
            spin: vigil_sys::busy_poll::BusyPoll::new(answer_spin()),
        };
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            client: client_name(),
        };
        vigil_proto::write_msg(&mut NoSigpipe(&c.stream), &hello)?;
        match vigil_proto::read_msg(&mut c.stream)? {
            ServerMsg::Welcome {
                version,
                daemon_version,
                pid,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(ClientError::Version {
                        ours: PROTOCOL_VERSION,
                        theirs: version,
                    });
                }
                c.daemon_pid = pid;
                c.daemon_version = daemon_version;
                Ok(c)
            }
            ServerMsg::Goodbye { reason } => Err(ClientError::Unexpected(format!("refused: {reason}"))),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Connects to [`default_socket_path`].
    pub fn connect_default() -> Result<Client> {
        Client::connect(&default_socket_path())
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon_pid
    }

    pub fn daemon_version(&self) -> &str {
        &self.daemon_version
    }

    /// Bounds how long a read may block (None: forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    /// Cluster mode: sends the requests that follow to the node `node` through this vigild (wrapped in
    /// `Request::OnNode`), or to this vigild's own node with None.
    pub fn set_node(&mut self, node: Option<&str>) {
        self.node = node.map(str::to_string);
    }

    /// The node set by [`Client::set_node`].
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// `body` for the node set by [`Client::set_node`] (as it is without one, or when it names its own).
    fn addressed(&self, body: Request) -> Request {
        match &self.node {
            Some(node) if !matches!(body, Request::OnNode { .. }) => Request::OnNode {
                node: node.clone(),
                body: Box::new(body),
            },
            _ => body,
        }
    }

    /// Sends one request and waits for its response; events pushed meanwhile are kept.
    pub fn request(&mut self, body: Request) -> Result<Response> {
        let body = self.addressed(body);
        let id = self.next_id;
        self.next_id += 1;
        vigil_proto::write_msg(&mut NoSigpipe(&self.stream), &ClientMsg::Request { id, body })?;
        self.response(id)
    }

    /// Sends one request without waiting for anything: its id, to match the response that
    /// [`Client::responses_ready`] or [`Client::response`] gives later; None when the connection has no
    /// room for the frame now (nothing was sent). A frame the connection takes only in part is written to
    /// its end before this returns (the stream must stay whole), which can wait only for a peer that has
    /// left a whole socket buffer unread.
    pub fn send_request_nowait(&mut self, body: Request) -> Result<Option<u64>> {
        let body = self.addressed(body);
        let frame = vigil_proto::encode(&ClientMsg::Request { id: self.next_id, body })?;
        let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
        let sent = loop {
            match rustix::net::send(&self.stream, &frame, flags) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return Ok(None),
                r => break r.map_err(|e| vigil_proto::FrameError::from(io::Error::from(e)))?,
            }
        };
        if sent < frame.len() {
            io::Write::write_all(&mut NoSigpipe(&self.stream), &frame[sent..])
                .map_err(vigil_proto::FrameError::from)?;
        }
        let id = self.next_id;
        self.next_id += 1;
        Ok(Some(id))
    }

    /// The responses whose whole frames have arrived, without waiting, oldest first (pushed messages among
    /// them are kept, as with [`Client::request`]). A frame not yet whole is left in the socket, so that
    /// a blocking read can take it later. The end of the connection is an error (once the responses
    /// taken before it are given).
    pub fn responses_ready(&mut self) -> Result<Vec<(u64, std::result::Result<Response, WireError>)>> {
        let mut out = Vec::new();
        match self.take_whole_frames(&mut out) {
            Err(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    fn take_whole_frames(&mut self, out: &mut Vec<(u64, std::result::Result<Response, WireError>)>) -> Result<()> {
        let flags = rustix::net::RecvFlags::DONTWAIT;
        let peek = |stream: &UnixStream, buf: &mut [u8]| loop {
            match rustix::net::recv(stream, &mut *buf, flags | rustix::net::RecvFlags::PEEK) {
                Err(rustix::io::Errno::INTR) => {}
                r => return r,
            }
        };
        let io_err = |e: rustix::io::Errno| ClientError::from(vigil_proto::FrameError::from(io::Error::from(e)));
        loop {
            let mut header = [0u8; vigil_proto::HEADER_LEN];
            let peeked = match peek(&self.stream, &mut header) {
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(e) => return Err(io_err(e)),
                Ok((0, _)) => return Err(vigil_proto::FrameError::Closed.into()),
                Ok((n, _)) => n,
            };
            if peeked < header.len() {
                return Ok(());
            }
            let whole = vigil_proto::HEADER_LEN + vigil_proto::frame_payload_len(header)?;
            let mut frame = vec![0u8; whole];
            match peek(&self.stream, &mut frame) {
                Ok((n, _)) if n == whole => {}
                Ok(_) | Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(e) => return Err(io_err(e)),
            }
            // The whole frame is there: take it (a stream socket gives exactly what was peeked).
            let mut taken = 0;
            while taken < whole {
                match rustix::net::recv(&self.stream, &mut frame[taken..], flags) {
                    Err(rustix::io::Errno::INTR) => {}
                    Ok((0, _)) => return Err(vigil_proto::FrameError::Truncated.into()),
                    Ok((n, _)) => taken += n,
                    Err(e) => return Err(io_err(e)),
                }
            }
            match vigil_proto::decode::<ServerMsg>(&frame[vigil_proto::HEADER_LEN..])? {
                ServerMsg::Response { id, result } => out.push((id, result)),
                other => self.keep(other)?,
            }
        }
    }

    /// Waits for the response to the request `id` sent by [`Client::send_request_nowait`]; pushed
    /// messages meanwhile are kept, and the responses to older requests sent without waiting, which
    /// nobody waits for any more, are passed over.
    pub fn response(&mut self, id: u64) -> Result<Response> {
        loop {
            match self.read_soon()? {
                ServerMsg::Response { id: rid, result } if rid == id => return Ok(result?),
                ServerMsg::Response { id: rid, .. } if rid < id => {}
                other => self.keep(other)?,
            }
        }
    }

    /// Reads the next message, one expected soon (the answer to a request just sent): polling for it
    /// first, as long as [`answer_spin`] and how soon the last answers came allow.
    fn read_soon(&mut self) -> Result<ServerMsg> {
        let max = answer_spin();
        let began = std::time::Instant::now();
        let mut r = SpinRead {
            stream: &self.stream,
            spin: self.spin.budget(max),
            found: None,
        };
        let msg = vigil_proto::read_msg(&mut r);
        let found = r.found.unwrap_or(true);
        self.spin.polled(found, began, max);
        if !found {
            self.spin.woken(max, std::time::Instant::now());
        }
        Ok(msg?)
    }

    /// Queues a pushed message for whoever reads that kind; the end of the connection or a message that has
    /// no place here is an error.
    fn keep(&mut self, msg: ServerMsg) -> Result<()> {
        match msg {
            ServerMsg::Event(e) => self.events.push_back(StreamItem::Event(e)),
            ServerMsg::Lost { from, to } if self.cluster_stream => {
                self.cluster.push_back(ClusterItem::Lost { from, to })
            }
            ServerMsg::Lost { from, to } => self.events.push_back(StreamItem::Lost { from, to }),
            ServerMsg::ClusterEvent(e) => self.cluster.push_back(ClusterItem::Event(e)),
            ServerMsg::CmapNotify(n) => self.notifications.push_back(n),
            ServerMsg::CmapLost { count } => self.notifications_lost += count,
            ServerMsg::Quorum { quorate } => self.quorum.push_back(quorate),
            ServerMsg::QuorumLease { quorate, valid_ms } => self.quorum_leases.push_back(QuorumLease {
                quorate,
                // The duration counts from now, on this process's clock: vigild's need not be ours.
                until: valid_ms.map(|ms| std::time::Instant::now() + Duration::from_millis(ms)),
            }),
            ServerMsg::Goodbye { reason } => {
                return Err(ClientError::Unexpected(format!(
                    "vigild closed the connection: {reason}"
                )))
            }
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        Ok(())
    }

    /// The next pushed item (after [`Client::subscribe`]): an event or a loss marker.
    pub fn next_item(&mut self) -> Result<StreamItem> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            self.read_push()?;
        }
    }

    /// The next item of the cluster stream (after [`Client::cluster_subscribe`]): an event with its
    /// revision, or a loss marker of revisions.
    pub fn next_cluster_item(&mut self) -> Result<ClusterItem> {
        loop {
            if let Some(e) = self.cluster.pop_front() {
                return Ok(e);
            }
            self.read_push()?;
        }
    }

    /// The next CMAP track notification, blocking until one comes (after [`Client::cmap_track_add`]).
    pub fn next_notification(&mut self) -> Result<CmapNotification> {
        loop {
            if let Some(n) = self.notifications.pop_front() {
                return Ok(n);
            }
            self.read_push()?;
        }
    }

    /// How many CMAP notifications vigild dropped since the last call, because this client did not
    /// read them while they filled its queue (tracked keys may have changed unseen: read them again).
    pub fn take_notifications_lost(&mut self) -> u64 {
        std::mem::take(&mut self.notifications_lost)
    }

    /// Notifications already received, without blocking.
    pub fn pending_notifications(&mut self) -> Vec<CmapNotification> {
        self.notifications.drain(..).collect()
    }

    /// Reads one pushed message (e.g. once the socket polled readable) and keeps it for `next_item`,
    /// `next_notification` or `quorum_changes`.
    pub fn read_push(&mut self) -> Result<()> {
        let msg = vigil_proto::read_msg(&mut self.stream)?;
        self.keep(msg)
    }

    /// Whether the node is quorate now; changes are pushed from then on (see [`Client::quorum_changes`]).
    pub fn quorum_track(&mut self) -> Result<bool> {
        match self.request(Request::QuorumTrack)? {
            Response::Quorate(q) => Ok(q),
            other => Err(unexpected(other)),
        }
    }

    /// Quorum changes received so far, oldest first, without blocking.
    pub fn quorum_changes(&mut self) -> Vec<bool> {
        self.quorum.drain(..).collect()
    }

    /// [`Client::quorum_track`] with a deadline: whether the node is quorate now; from then on each
    /// change, and in cluster mode each renewal of the node's lease, is pushed with how long it holds
    /// (see [`Client::quorum_leases`]), the first right after this answer.
    pub fn quorum_lease_track(&mut self) -> Result<bool> {
        match self.request(Request::QuorumLeaseTrack)? {
            Response::Quorate(q) => Ok(q),
            other => Err(unexpected(other)),
        }
    }

    /// Quorum with its deadline as received so far, oldest first, without blocking.
    pub fn quorum_leases(&mut self) -> Vec<QuorumLease> {
        self.quorum_leases.drain(..).collect()
    }

    /// Every SAM application on the node.
    pub fn sam_list(&mut self) -> Result<Vec<vigil_proto::SamProcess>> {
        match self.request(Request::SamList)? {
            Response::SamProcesses(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    /// Every node of the cluster, up or down, with its id, address and since when (this node alone
    /// when vigild is not in cluster mode).
    pub fn nodes(&mut self) -> Result<Vec<vigil_proto::NodeInfo>> {
        match self.request(Request::Nodes)? {
            Response::Nodes(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// The raw socket, e.g. to poll it for readability (the C library's `cmap_fd_get`).
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.stream.as_raw_fd()
    }

    fn value(&mut self, body: Request) -> Result<CmapValue> {
        match self.request(body)? {
            Response::CmapValue(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// CMAP: the value of a key in the main map.
    pub fn cmap_get(&mut self, key: &str) -> Result<CmapValue> {
        self.value(Request::CmapGet {
            map: CmapMap::Main,
            key: key.into(),
            ty: None,
        })
    }

    /// CMAP: a value from either map; with `ty` (a cmap_value_types_t code) a key of another type is an
    /// invalid-parameter error, never converted.
    pub fn cmap_get_in(&mut self, map: CmapMap, key: &str, ty: Option<u32>) -> Result<CmapValue> {
        self.value(Request::CmapGet {
            map,
            key: key.into(),
            ty,
        })
    }

    /// CMAP: sets a key; `persist` keeps it across restarts of vigild.
    pub fn cmap_set(&mut self, key: &str, value: CmapValue, persist: bool) -> Result<()> {
        self.ok(Request::CmapSet {
            key: key.into(),
            value,
            persist,
        })
    }

    /// CMAP: sets a key from text and a type name, parsed (and refused) by vigild.
    pub fn cmap_set_text(&mut self, key: &str, ty: &str, text: &str, persist: bool) -> Result<()> {
        self.ok(Request::CmapSetText {
            key: key.into(),
            ty: ty.into(),
            text: text.into(),
            persist,
        })
    }

    pub fn cmap_delete(&mut self, key: &str) -> Result<()> {
        self.ok(Request::CmapDelete { key: key.into() })
    }

    /// CMAP: adds one to an integer key (wrapping) and answers the new value.
    pub fn cmap_inc(&mut self, key: &str) -> Result<CmapValue> {
        self.value(Request::CmapInc { key: key.into() })
    }

    /// CMAP: subtracts one from an integer key (wrapping) and answers the new value.
    pub fn cmap_dec(&mut self, key: &str) -> Result<CmapValue> {
        self.value(Request::CmapDec { key: key.into() })
    }

    /// CMAP: sets `key` only if it holds `expected` (None: only if it does not exist); `Conflict` otherwise.
    pub fn cmap_compare_and_set(
        &mut self,
        key: &str,
        expected: Option<CmapValue>,
        value: CmapValue,
        persist: bool,
    ) -> Result<()> {
        self.ok(Request::CmapCompareAndSet {
            key: key.into(),
            expected,
            value,
            persist,
        })
    }

    /// CMAP: every key under `prefix` ("" for all), in key order.
    pub fn cmap_iter(&mut self, map: CmapMap, prefix: &str) -> Result<Vec<CmapEntry>> {
        match self.request(Request::CmapIter {
            map,
            prefix: prefix.into(),
        })? {
            Response::CmapEntries(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// CMAP: tracks a key (or a prefix, with `CMAP_TRACK_PREFIX` in `flags`); answers the track handle.
    pub fn cmap_track_add(&mut self, map: CmapMap, key: &str, flags: u32, context: u64) -> Result<u64> {
        match self.request(Request::CmapTrackAdd {
            map,
            key: key.into(),
            flags,
            context,
        })? {
            Response::CmapTrack(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    pub fn cmap_track_delete(&mut self, track: u64) -> Result<()> {
        self.ok(Request::CmapTrackDelete { track })
    }

    /// The next pushed event; a loss is an error ([`ClientError::Lost`]), never skipped in silence.
    pub fn next_event(&mut self) -> Result<Event> {
        match self.next_item()? {
            StreamItem::Event(e) => Ok(e),
            StreamItem::Lost { from, to } => Err(ClientError::Lost { from, to }),
        }
    }

    fn ok(&mut self, body: Request) -> Result<()> {
        match self.request(body)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a tag and starts its command (`pmfadm -c`).
    pub fn run(&mut self, spec: RunSpec) -> Result<TagStatus> {
        match self.request(Request::Run(Box::new(spec)))? {
            Response::Tag(t) => Ok(*t),
            other => Err(unexpected(other)),
        }
    }

    /// As [`Client::run`], but safe to send again when the answer was lost (vigild restarted, the
    /// connection broke): if the caller's tag is already active with exactly this spec, nothing is
    /// started and its status is the answer (`Request::RunOnce`). The command line's `vigil run` uses it.
    pub fn run_once(&mut self, spec: RunSpec) -> Result<TagStatus> {
        match self.request(Request::RunOnce(Box::new(spec)))? {
            Response::Tag(t) => Ok(*t),
            other => Err(unexpected(other)),
        }
    }

    /// As [`Client::run`] (or [`Client::run_once`] with `once`), with supervision settings: a
    /// restart policy, a minimum uptime, readiness (`Request::RunSupervised`). Default settings are
    /// sent as a plain `Run`, which any vigild of protocol 2 or later understands.
    pub fn run_supervised(&mut self, spec: RunSpec, supervision: Supervision, once: bool) -> Result<TagStatus> {
        let body = match (supervision == Supervision::default(), once) {
            (true, false) => Request::Run(Box::new(spec)),
            (true, true) => Request::RunOnce(Box::new(spec)),
            (false, _) => Request::RunSupervised {
                spec: Box::new(spec),
                supervision,
                once,
            },
        };
        match self.request(body)? {
            Response::Tag(t) => Ok(*t),
            other => Err(unexpected(other)),
        }
    }

    /// Blocks until the tag reaches `until` and returns its status (`Request::WaitFor`; None: it was
    /// removed, which is `Stopped`); refused when it cannot any more (with `this_start`: when the
    /// instance running or about to start ended first), or with `Timeout`.
    pub fn wait_for(
        &mut self,
        tag: &str,
        until: WaitUntil,
        timeout: Option<Duration>,
        this_start: bool,
    ) -> Result<Option<TagStatus>> {
        match self.request(Request::WaitFor {
            tag: tag.into(),
            until,
            timeout_ms: timeout.map(|d| d.as_millis() as u64),
            this_start,
        })? {
            Response::Tag(t) => Ok(Some(*t)),
            Response::Ok if until == WaitUntil::Stopped => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Changes a tag's supervision settings (`Request::ModifySupervision`); `None` keeps a setting.
    pub fn modify_supervision(
        &mut self,
        tag: &str,
        restart: Option<RestartPolicy>,
        success_exit_codes: Option<Vec<u8>>,
        success_signals: Option<Vec<i32>>,
        start_secs: Option<Duration>,
    ) -> Result<()> {
        self.ok(Request::ModifySupervision {
            tag: tag.into(),
            restart,
            success_exit_codes,
            success_signals,
            start_secs_ms: start_secs.map(|d| d.as_millis() as u64),
        })
    }

    pub fn start(&mut self, tag: &str) -> Result<()> {
        self.ok(Request::Start { tag: tag.into() })
    }

    pub fn modify(&mut self, tag: &str, retries: Option<i64>, period: Option<i64>) -> Result<()> {
        self.ok(Request::Modify {
            tag: tag.into(),
            retries,
            period,
        })
    }

    pub fn stop(&mut self, tag: &str, signal: Option<i32>, wait: Option<Duration>) -> Result<()> {
        self.ok(Request::Stop {
            tag: tag.into(),
            signal,
            wait_ms: wait.map(|d| d.as_millis() as u64),
        })
    }

    /// Solaris's `pmfadm -s`: stop monitoring, `signal` once if given, never SIGKILL (`Request::Release`).
    pub fn release(&mut self, tag: &str, signal: Option<i32>, wait: Option<Duration>) -> Result<()> {
        self.ok(Request::Release {
            tag: tag.into(),
            signal,
            wait_ms: wait.map(|d| d.as_millis() as u64),
        })
    }

    pub fn kill(&mut self, tag: &str, signal: i32, wait: Option<Duration>) -> Result<()> {
        self.ok(Request::Kill {
            tag: tag.into(),
            signal,
            wait_ms: wait.map(|d| d.as_millis() as u64),
        })
    }

    pub fn restart(&mut self, tag: &str) -> Result<()> {
        self.ok(Request::Restart { tag: tag.into() })
    }

    pub fn remove(&mut self, tag: &str, wait: Option<Duration>) -> Result<()> {
        self.ok(Request::Remove {
            tag: tag.into(),
            wait_ms: wait.map(|d| d.as_millis() as u64),
        })
    }

    /// Whether the tag exists (`pmfadm -q`).
    pub fn query(&mut self, tag: &str) -> Result<bool> {
        match self.request(Request::Query { tag: tag.into() })? {
            Response::Exists(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    pub fn list(&mut self) -> Result<Vec<TagSummary>> {
        match self.request(Request::List)? {
            Response::List(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    /// The status of one tag.
    pub fn status(&mut self, tag: &str) -> Result<TagStatus> {
        match self.request(Request::Status { tag: Some(tag.into()) })? {
            Response::Tags(mut t) if t.len() == 1 => Ok(t.remove(0)),
            other => Err(unexpected(other)),
        }
    }

    /// The status of every tag.
    pub fn status_all(&mut self) -> Result<Vec<TagStatus>> {
        match self.request(Request::Status { tag: None })? {
            Response::Tags(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// Blocks until the tag is no longer running, and returns its last status (None: it was removed).
    pub fn wait(&mut self, tag: &str, timeout: Option<Duration>) -> Result<Option<TagStatus>> {
        match self.request(Request::Wait {
            tag: tag.into(),
            timeout_ms: timeout.map(|d| d.as_millis() as u64),
        })? {
            Response::Tag(t) => Ok(Some(*t)),
            Response::Ok => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Stored events after `after`, at most `limit`.
    pub fn events(&mut self, after: u64, limit: u32) -> Result<Vec<Event>> {
        self.events_filtered(after, limit, EventFilter::default())
    }

    /// Stored events after `after` that match `filter`, at most `limit`.
    pub fn events_filtered(&mut self, after: u64, limit: u32, filter: EventFilter) -> Result<Vec<Event>> {
        match self.request(Request::Events { after, limit, filter })? {
            Response::Events(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// Starts the event push: the stored events after `after` (none for `None`: only new ones), then live
    /// events, read with [`Client::next_event`].
    pub fn subscribe(&mut self, after: Option<u64>) -> Result<()> {
        self.subscribe_filtered(after, EventFilter::default())
    }

    /// [`Client::subscribe`] to the events that match `filter` only.
    pub fn subscribe_filtered(&mut self, after: Option<u64>, filter: EventFilter) -> Result<()> {
        self.cluster_stream = false;
        self.ok(Request::Subscribe { after, filter })
    }

    /// Cluster mode: every node's events (or those of `nodes`) with an etcd revision above `after` that
    /// match `filter`, in revision order, about `limit` at most (whole revisions); ask again from the
    /// answer's `upto` for more.
    pub fn cluster_events(
        &mut self,
        after: u64,
        limit: u32,
        filter: EventFilter,
        nodes: Vec<String>,
    ) -> Result<ClusterEvents> {
        let req = Request::ClusterEvents {
            after,
            limit,
            filter,
            nodes,
        };
        match self.request(req)? {
            Response::ClusterEvents(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// Cluster mode: starts the push of the cluster stream: the events with a revision above `after`
    /// (none for `None`: only new ones), then live ones, read with [`Client::next_cluster_item`].
    pub fn cluster_subscribe(&mut self, after: Option<u64>, filter: EventFilter, nodes: Vec<String>) -> Result<()> {
        self.cluster_stream = true;
        self.ok(Request::ClusterSubscribe { after, filter, nodes })
    }

    /// PSM: creates a category.
    pub fn psm_category_add(&mut self, node: &PsmNode, category: &str) -> Result<()> {
        self.ok(Request::PsmCategoryAdd {
            node: node.clone(),
            category: category.into(),
        })
    }

    /// PSM: removes an empty category.
    pub fn psm_category_remove(&mut self, node: &PsmNode, category: &str) -> Result<()> {
        self.ok(Request::PsmCategoryRemove {
            node: node.clone(),
            category: category.into(),
        })
    }

    pub fn psm_categories(&mut self, node: &PsmNode) -> Result<Vec<PsmCategory>> {
        match self.request(Request::PsmCategoryList { node: node.clone() })? {
            Response::PsmCategories(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// PSM: registers any live process of the node in a category.
    pub fn psm_add(&mut self, node: &PsmNode, category: &str, pid: i32) -> Result<()> {
        self.ok(Request::PsmAdd {
            node: node.clone(),
            category: category.into(),
            pid,
        })
    }

    /// PSM: registers the calling process (Tru64's `_PSM_REGSELF`).
    pub fn psm_register_self(&mut self, category: &str) -> Result<()> {
        self.psm_add(&PsmNode::local(), category, std::process::id() as i32)
    }

    pub fn psm_remove(&mut self, node: &PsmNode, category: Option<&str>, pid: i32) -> Result<()> {
        self.ok(Request::PsmRemove {
            node: node.clone(),
            category: category.map(Into::into),
            pid,
        })
    }

    /// PSM: members of a category (None: all) with a pid (None: all).
    pub fn psm_get(&mut self, node: &PsmNode, category: Option<&str>, pid: Option<i32>) -> Result<Vec<PsmMember>> {
        match self.request(Request::PsmGet {
            node: node.clone(),
            category: category.map(Into::into),
            pid,
        })? {
            Response::PsmMembers(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    pub fn psm_set_state(&mut self, node: &PsmNode, category: Option<&str>, pid: i32, state: &str) -> Result<()> {
        self.ok(Request::PsmSetState {
            node: node.clone(),
            category: category.map(Into::into),
            pid,
            state: state.into(),
        })
    }

    pub fn reload(&mut self) -> Result<ReloadReport> {
        match self.request(Request::Reload)? {
            Response::Reload(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub fn reexec(&mut self) -> Result<()> {
        self.ok(Request::Reexec)
    }

    pub fn daemon_status(&mut self) -> Result<DaemonInfo> {
        match self.request(Request::DaemonStatus)? {
            Response::Daemon(d) => Ok(*d),
            other => Err(unexpected(other)),
        }
    }
}

/// Root, this process's user, and whom the caller also trusts.
fn trusted_uids(me: u32, also: Option<u32>) -> Vec<u32> {
    let mut t = vec![0, me];
    t.extend(also);
    t.sort_unstable();
    t.dedup();
    t
}

fn describe(trusted: &[u32]) -> String {
    let mut names: Vec<String> = trusted
        .iter()
        .map(|&u| if u == 0 { "root".to_string() } else { format!("uid {u}") })
        .collect();
    match names.len() {
        1 => names.remove(0),
        _ => {
            let last = names.pop().expect("two or more");
            format!("{} or {last}", names.join(", "))
        }
    }
}

/// The server's credentials, which the kernel recorded when it listened: a process of another user
/// cannot fake them, whatever it did to the socket's path.
fn check_peer(stream: &UnixStream, path: &Path, trusted: &[u32]) -> Result<()> {
    let cred = rustix::net::sockopt::socket_peercred(stream).map_err(|e| ClientError::Connect {
        path: path.into(),
        source: e.into(),
    })?;
    let uid = cred.uid.as_raw();
    if trusted.contains(&uid) {
        return Ok(());
    }
    Err(ClientError::Untrusted {
        path: path.into(),
        found: format!("the server (pid {}) runs as uid {uid}", cred.pid.as_raw_nonzero()),
        expected: format!("a server running as {}", describe(trusted)),
    })
}

/// The directory of a socket found by convention: owned by a trusted user and writable by nobody else,
/// so that the name could not have been made, or replaced, by another user. Checked before connecting,
/// so a squatter sees not even a connection.
fn check_directory(path: &Path, trusted: &[u32]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|source| ClientError::Connect {
        path: path.into(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if trusted.contains(&meta.uid()) && mode & 0o022 == 0 {
        return Ok(());
    }
    Err(ClientError::Untrusted {
        path: path.into(),
        found: format!(
            "its directory {} is owned by uid {} with mode {mode:04o}",
            dir.display(),
            meta.uid()
        ),
        expected: format!(
            "a directory owned by {} and not writable by group or others",
            describe(trusted)
        ),
    })
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}

fn client_name() -> String {
    std::env::args().next().unwrap_or_else(|| "vigil-client".into())
}

/// Text for a person's terminal: what vigild reports comes in part from other users (tag names,
/// `STATUS=` text, PSM states, argv, environment), and a control character in it would be obeyed by
/// the terminal of whoever reads it (moving the cursor, rewriting earlier lines, changing the window
/// title). Control characters (C0, DEL, C1) and the bidirectional overrides are shown as escapes in
/// the style of Rust's `escape_debug` (`\e` for ESC, `\n`, `\t`, `\r`, else `\x1f` or `\u{202e}`);
/// everything else, backslashes included, is shown as is. JSON output must not use this: it is exact.
pub fn escape_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    fn special(c: char) -> bool {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(special) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if special(c) && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if special(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_read_finds_what_is_there_waits_for_what_is_not_and_sees_the_end() {
        use std::io::{Read as _, Write as _};
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = |spin| SpinRead {
            stream: &a,
            spin,
            found: None,
        };
        // There already: found by the poll.
        b.write_all(b"hello").unwrap();
        let mut r = reader(Duration::from_millis(100));
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert_eq!((&buf, r.found), (b"hel", Some(true)));
        // The rest of it: a plain read.
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        // Not there within the poll: the read sleeps for it.
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            b.write_all(b"late").unwrap();
            b
        });
        let mut r = reader(Duration::from_micros(10));
        let mut buf = [0u8; 4];
        r.read_exact(&mut buf).unwrap();
        assert_eq!((&buf, r.found), (b"late", Some(false)));
        // The end of the connection, seen by the poll.
        drop(writer.join().unwrap());
        assert_eq!(reader(Duration::from_millis(100)).read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn control_characters_are_escaped_for_terminals() {
        assert_eq!(escape_terminal("plain text, a\\b"), "plain text, a\\b");
        assert_eq!(
            escape_terminal("\u{1b}[2Jx\ny\t\r\u{7f}\u{9b}\u{202e}é"),
            "\\e[2Jx\\ny\\t\\r\\x7f\\u{9b}\\u{202e}é"
        );
    }

    #[test]
    fn trusted_uids_are_named_in_the_error() {
        assert_eq!(describe(&trusted_uids(0, None)), "root");
        assert_eq!(describe(&trusted_uids(1000, None)), "root or uid 1000");
        assert_eq!(describe(&trusted_uids(0, Some(65534))), "root or uid 65534");
        assert_eq!(describe(&trusted_uids(5, Some(7))), "root, uid 5 or uid 7");
    }
}
