//! The messages. Wire types are plain data: vigild converts them to and from its own types in one place.

use serde::{Deserialize, Serialize};

pub use crate::cmap::{CmapEntry, CmapMap, CmapNotification, CmapValue};
use crate::error::WireError;
pub use crate::event::{Event, EventFilter, Value};
pub use crate::psm::{PsmCategory, PsmMember, PsmNode};
pub use crate::sam::{SamChange, SamInfo, SamProcess, SamState};

/// The first message of a connection, as the server reads it: nothing but `ClientMsg::Hello` is decoded
/// before the handshake (the same bytes as `ClientMsg::Hello`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloMsg {
    Hello { version: u32, client: String },
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// The first message of every connection.
    Hello {
        version: u32,
        client: String,
    },
    Request {
        id: u64,
        body: Request,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The answer to `Hello`.
    Welcome {
        version: u32,
        daemon_version: String,
        pid: u32,
    },
    Response {
        id: u64,
        result: Result<Response, WireError>,
    },
    /// A pushed event, after `Request::Subscribe`.
    Event(Event),
    /// The server is closing this connection, and why.
    Goodbye { reason: String },
    /// Events `from..=to` will never reach this subscriber (it fell behind, or they are older than the
    /// kept history): resume from `to + 1` with `Events` or a new subscription.
    Lost { from: u64, to: u64 },
    /// A tracked CMAP key changed (after `CmapTrackAdd`).
    CmapNotify(CmapNotification),
    /// The node's quorum changed (after `QuorumTrack`).
    Quorum { quorate: bool },
    /// A pushed event of the cluster stream, after `Request::ClusterSubscribe`. Loss markers of that
    /// stream are `Lost` with etcd revisions.
    ClusterEvent(ClusterEvent),
    /// `count` CMAP notifications for this connection were dropped: it did not read them while they
    /// filled its queue. Tracked keys may have changed meanwhile; read them again.
    CmapLost { count: u64 },
    /// The node's quorum, with how long it holds at most (after `QuorumLeaseTrack`): sent at each change
    /// and, in cluster mode, at each renewal of the node's lease. `valid_ms` is counted from when the
    /// message is read: past it without a newer message, the node may have been declared down by the
    /// others, so the reader must take quorum as lost. `None`: no time limit (not in cluster mode).
    QuorumLease { quorate: bool, valid_ms: Option<u64> },
}

/// The PMF program type of `scds_pmf_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ProgramType {
    #[default]
    Svc,
    Mon,
    Other,
}

/// Exponential backoff between automatic restarts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub min_ms: u64,
    pub max_ms: u64,
}

/// What a probe checks; vigild parses and checks the address or URL, so every client gets the same errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeCheck {
    /// Run a command as the tag's user, in its environment: exit 0 is healthy.
    Exec { command: Vec<String> },
    /// Connect to `HOST:PORT` (`[V6]:PORT`).
    Tcp { address: String },
    /// GET an `http://` URL: a 2xx status is healthy.
    Http { url: String },
}

/// A probe of a tag. `None` takes vigild's default (10 s interval, 5 s timeout, threshold 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub check: ProbeCheck,
    /// From the end of one run to the start of the next, and from the start of the tag to the first.
    pub interval_ms: Option<u64>,
    /// A run that takes longer has failed; at most the interval.
    pub timeout_ms: Option<u64>,
    /// Consecutive failures before the tag is restarted, 1 or more.
    pub threshold: Option<u32>,
}

/// A probe and how it fares in the current instance, for `vigil status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// `exec:COMMAND`, `tcp:HOST:PORT` or the URL.
    pub check: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub threshold: u32,
    /// Consecutive failures so far.
    pub failures: u32,
    /// What the last failed run said.
    pub last_error: Option<String>,
}

/// `vigil run` / `pmfadm -c`: create a tag and start its command.
///
/// Numbers keep the pmfadm conventions (-1 = no limit) and are checked by the daemon, so every client gets
/// the same errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub tag: String,
    pub command: Vec<String>,
    /// Environment variables for the command. vigild adds PATH, HOME, USER, LOGNAME, VIGIL_TAG and
    /// VIGIL_INSTANCE where they are missing.
    pub env: Vec<(String, String)>,
    /// Informational: `env` holds the caller's whole environment (`-E`).
    pub inherit_env: bool,
    pub cwd: Option<String>,
    pub instance: u32,
    pub program_type: ProgramType,
    /// Child monitor level: -1 all descendants, 0 the process only, N down to N.
    pub level: i64,
    /// -1 unlimited, 0 never restart.
    pub retries: i64,
    /// Seconds; -1 no limit.
    pub period: i64,
    pub action: Option<String>,
    pub backoff: Option<Backoff>,
    pub after: Vec<String>,
    pub stop_signal: Option<i32>,
    pub stop_timeout_ms: Option<u64>,
    /// The program must send `WATCHDOG=1` to `NOTIFY_SOCKET` at least this often (protocol 2).
    pub watchdog_ms: Option<u64>,
    /// Health probes (protocol 2).
    pub probes: Vec<ProbeSpec>,
}

impl RunSpec {
    /// A spec with pmfadm's defaults: all levels watched, no restart limit... as `pmfadm -c` without flags.
    pub fn new(tag: impl Into<String>, command: Vec<String>) -> RunSpec {
        RunSpec {
            tag: tag.into(),
            command,
            env: vec![],
            inherit_env: false,
            cwd: None,
            instance: 0,
            program_type: ProgramType::Svc,
            level: -1,
            retries: 0,
            period: -1,
            action: None,
            backoff: None,
            after: vec![],
            stop_signal: None,
            stop_timeout_ms: None,
            watchdog_ms: None,
            probes: vec![],
        }
    }
}

/// Every operation a client can ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Run(Box<RunSpec>),
    /// Start a stopped or failed tag again, with a fresh budget.
    Start {
        tag: String,
    },
    /// `pmfadm -m`: change the budget of a tag.
    Modify {
        tag: String,
        retries: Option<i64>,
        period: Option<i64>,
    },
    /// Stop monitoring and signal every process; SIGKILL after the wait (or the tag's stop timeout).
    /// With `wait_ms` the response comes when every process is gone.
    Stop {
        tag: String,
        signal: Option<i32>,
        wait_ms: Option<u64>,
    },
    /// Signal every process without stopping monitoring; with `wait_ms`, answer when they are gone.
    Kill {
        tag: String,
        signal: i32,
        wait_ms: Option<u64>,
    },
    /// Stop and start again, not counted against the budget.
    Restart {
        tag: String,
    },
    /// Stop (if needed) and forget the tag.
    Remove {
        tag: String,
        wait_ms: Option<u64>,
    },
    /// Whether the tag exists.
    Query {
        tag: String,
    },
    List,
    Status {
        tag: Option<String>,
    },
    /// Answer when the tag is no longer running (stopped, failed or removed).
    Wait {
        tag: String,
        timeout_ms: Option<u64>,
    },
    /// Stored events with a sequence number above `after` that match the filter, at most `limit`.
    Events {
        after: u64,
        limit: u32,
        filter: EventFilter,
    },
    /// Push the stored events above `after` that match (none for `None`), then live ones. Events the
    /// subscriber cannot take in time are replaced by one `Lost` marker: loss is never silent.
    Subscribe {
        after: Option<u64>,
        filter: EventFilter,
    },
    /// Re-read the config file and apply the difference.
    Reload,
    /// Re-exec vigild in place, keeping every process.
    Reexec,
    DaemonStatus,
    /// PSM: create a category.
    PsmCategoryAdd {
        node: PsmNode,
        category: String,
    },
    /// PSM: remove an empty category.
    PsmCategoryRemove {
        node: PsmNode,
        category: String,
    },
    PsmCategoryList {
        node: PsmNode,
    },
    /// PSM: register a live process (any pid on the node) in a category.
    PsmAdd {
        node: PsmNode,
        category: String,
        pid: i32,
    },
    /// PSM: forget a member; `category` None means any.
    PsmRemove {
        node: PsmNode,
        category: Option<String>,
        pid: i32,
    },
    /// PSM: members of a category (None: all) with a pid (None: all).
    PsmGet {
        node: PsmNode,
        category: Option<String>,
        pid: Option<i32>,
    },
    /// PSM: set a member's state string.
    PsmSetState {
        node: PsmNode,
        category: Option<String>,
        pid: i32,
        state: String,
    },
    /// CMAP: a value; with `ty` (a cmap_value_types_t code), refused when the key holds another type.
    CmapGet {
        map: CmapMap,
        key: String,
        ty: Option<u32>,
    },
    /// CMAP: set a key (its type comes with the value); `persist` keeps it across restarts of vigild.
    CmapSet {
        key: String,
        value: CmapValue,
        persist: bool,
    },
    CmapDelete {
        key: String,
    },
    /// CMAP: add one to an integer key, wrapping; answers the new value.
    CmapInc {
        key: String,
    },
    /// CMAP: subtract one from an integer key, wrapping; answers the new value.
    CmapDec {
        key: String,
    },
    /// CMAP: set only if the key holds `expected` (None: only if it does not exist).
    CmapCompareAndSet {
        key: String,
        expected: Option<CmapValue>,
        value: CmapValue,
        persist: bool,
    },
    /// CMAP: every key under a prefix, in key order.
    CmapIter {
        map: CmapMap,
        prefix: String,
    },
    /// CMAP: track a key, or a prefix with `CMAP_TRACK_PREFIX`, for the events in `flags`; answers the track
    /// handle. Notifications are pushed to this connection until `CmapTrackDelete` or the connection ends.
    CmapTrackAdd {
        map: CmapMap,
        key: String,
        flags: u32,
        context: u64,
    },
    CmapTrackDelete {
        track: u64,
    },
    /// CMAP: set a key from text, as a person types it (`u8` `300` is refused), parsed by vigild so every
    /// client gets the same errors. `ty` is a type name: i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin.
    CmapSetText {
        key: String,
        ty: String,
        text: String,
        persist: bool,
    },
    /// SAM: a supervisor reports a change of its application (the caller's pid is the supervisor).
    SamReport {
        change: SamChange,
        info: SamInfo,
    },
    /// SAM: every supervised application on this node.
    SamList,
    /// Whether the node is quorate now; later changes are pushed as `ServerMsg::Quorum` until the
    /// connection ends.
    QuorumTrack,
    /// Every node of the cluster, up or down (without cluster mode, this node alone).
    Nodes,
    /// Cluster mode: `body` carried out by the node `node` (this one when it names this node), with that
    /// node's permission checks applied to the caller's uid and gid, and its answer returned. A node that
    /// is down or unknown is `ErrorCode::NodeDown`; without cluster mode, another node is `Unsupported`.
    /// Requests bound to this connection (subscriptions, CMAP and quorum tracks, SAM reports, re-exec)
    /// are refused for another node.
    ///
    /// The body may not be another `OnNode`: decoding refuses the nesting before it descends, so no
    /// input can make the decoder recurse deeper than one level (a deep nest would overflow the stack).
    OnNode {
        node: String,
        #[serde(deserialize_with = "crate::frame::one_level")]
        body: Box<Request>,
    },
    /// Cluster mode: the events of every node (or of `nodes`) with an etcd revision above `after`
    /// that match the filter, oldest first, at most `limit` (0 for `after`: from the oldest etcd
    /// keeps). Answered with `Response::ClusterEvents`.
    ClusterEvents {
        after: u64,
        limit: u32,
        filter: EventFilter,
        nodes: Vec<String>,
    },
    /// Cluster mode: push the cluster stream's events with a revision above `after` (none for `None`:
    /// only new ones), then live ones, as `ServerMsg::ClusterEvent`; loss is a `Lost` marker of
    /// revisions. `nodes` empty means every node.
    ClusterSubscribe {
        after: Option<u64>,
        filter: EventFilter,
        nodes: Vec<String>,
    },
    /// Solaris's `pmfadm -s`: stop monitoring the tag for good and send `signal` (if any) once to every
    /// process, never SIGKILL; the tag is forgotten once its processes are gone. With `wait_ms`, answer
    /// when they are gone, or `Timeout` with them still running. (`Stop` is vigil's: TERM, then KILL.)
    Release {
        tag: String,
        signal: Option<i32>,
        wait_ms: Option<u64>,
    },
    /// `QuorumTrack` with a deadline: whether the node is quorate now, then `ServerMsg::QuorumLease`
    /// messages (the first right after the answer) at each change and each renewal of the node's lease,
    /// until the connection ends. A SAM supervisor uses it to stop a QUORUM application on its own when
    /// vigild stalls or dies.
    QuorumLeaseTrack,
    /// `Run`, safe to send again after a lost answer: when the caller's tag of that name is active with
    /// exactly this spec (the one an earlier `RunOnce` or `Run` made), nothing is started and the answer
    /// is its status, as the first answer would have been. Anything else is handled as `Run` (an active
    /// tag with another spec is `AlreadyExists`). A command that has already ended when the retry arrives
    /// is started again: the tag keeps no memory of which request started it.
    RunOnce(Box<RunSpec>),
    /// `Run` (or `RunOnce` with `once`) with supervision settings beyond pmfadm's (protocol 3). A client
    /// sends it only when `supervision` is not the default, so that plain runs stay `Run` frames.
    RunSupervised {
        spec: Box<RunSpec>,
        supervision: Supervision,
        once: bool,
    },
    /// Answer when the tag reaches `until` (protocol 3): `Tag(TagStatus)` then. Refused with
    /// `ExecFailed` when it cannot get there any more (it failed, exited, was stopped or removed, or,
    /// with `this_start`, the instance running or about to start when the request came ended), with
    /// `Timeout` at the deadline.
    WaitFor {
        tag: String,
        until: WaitUntil,
        timeout_ms: Option<u64>,
        this_start: bool,
    },
    /// Change the supervision settings of a tag (protocol 3); `None` keeps a setting. They apply from
    /// the next exit of the tag, which is not restarted for it.
    ModifySupervision {
        tag: String,
        restart: Option<RestartPolicy>,
        success_exit_codes: Option<Vec<u8>>,
        success_signals: Option<Vec<i32>>,
        start_secs_ms: Option<u64>,
    },
    /// `Run` (or `RunOnce` with `once`) with the tag's resources: user and group, limits, nice, umask,
    /// stderr log, tag group (protocol 3), and its supervision settings as `RunSupervised` carries them.
    /// A separate variant so that `Run`'s bytes stay those of protocol 2; clients send it only when a
    /// resource is asked for.
    RunWith {
        spec: Box<RunSpec>,
        resources: Box<crate::res::Resources>,
        once: bool,
        supervision: Supervision,
    },
    /// The resources of one tag (or of every tag), answered with `Response::Resources`: anyone may
    /// read them, as `Status` (protocol 3).
    Resources {
        tag: Option<String>,
    },
}

/// Whether an instance that ended is started again (protocol 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartPolicy {
    /// Every exit restarts, under the budget (pmfadm's behaviour).
    #[default]
    Always,
    /// A successful exit ends the tag as `exited`; a failure restarts.
    OnFailure,
    /// Nothing restarts: a success ends the tag as `exited`, a failure as `failed`.
    Never,
}

/// How a tag is supervised beyond its budget (protocol 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    pub restart: RestartPolicy,
    /// Exit codes that are a success.
    pub success_exit_codes: Vec<u8>,
    /// Signals whose deaths are a success.
    pub success_signals: Vec<i32>,
    /// How long an instance must live before it counts as running; a death before is a failed start.
    pub start_secs_ms: u64,
    /// The program says `READY=1` through `NOTIFY_SOCKET` when it serves: it counts as running then,
    /// and tags that start after it wait for that.
    pub notify: bool,
}

impl Default for Supervision {
    /// pmfadm's: every exit restarts, exit 0 is the success, a start counts at once.
    fn default() -> Supervision {
        Supervision {
            restart: RestartPolicy::Always,
            success_exit_codes: vec![0],
            success_signals: vec![],
            start_secs_ms: 0,
            notify: false,
        }
    }
}

/// What a `WaitFor` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitUntil {
    /// A process of the tag runs.
    Running,
    /// The tag counts as running: it lived its `start_secs`, or said `READY=1` when it uses notify.
    Ready,
    /// The tag has no process and will not get one (stopped, failed, exited or removed).
    Stopped,
}

/// Successful answers. The large ones are boxed, as the large requests are: every answer is moved
/// several times on its way to the socket, and a set's answer should not move 480 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Ok,
    Exists(bool),
    Tag(Box<TagStatus>),
    Tags(Vec<TagStatus>),
    List(Vec<TagSummary>),
    Events(Vec<Event>),
    Reload(ReloadReport),
    Daemon(Box<DaemonInfo>),
    PsmMembers(Vec<PsmMember>),
    PsmCategories(Vec<PsmCategory>),
    CmapValue(CmapValue),
    CmapEntries(Vec<CmapEntry>),
    CmapTrack(u64),
    SamProcesses(Vec<SamProcess>),
    Quorate(bool),
    Nodes(Vec<NodeInfo>),
    ClusterEvents(ClusterEvents),
    Resources(Vec<crate::res::TagResources>),
}

/// One event of the cluster stream: a node's event and the etcd revision that orders it among every
/// node's. Events published together share a revision and keep their node's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    pub rev: u64,
    pub event: Event,
}

/// An answer to `Request::ClusterEvents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvents {
    pub events: Vec<ClusterEvent>,
    /// Revisions whose events etcd no longer keeps (compacted): `from..=to`.
    pub lost: Option<(u64, u64)>,
    /// The stream's revision this answer reaches: ask again with `after: Some(upto)` for more.
    pub upto: u64,
}

/// One node of the cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// Assigned once, at the node's first join; PSM unique names are `<id>-<pid>`.
    pub id: u32,
    pub up: bool,
    /// Since when the node has been up (or down), ms since the epoch.
    pub since_ms: u64,
    /// The node's vigild socket.
    pub address: String,
    /// The node's vigild pid, as it last registered.
    pub pid: u32,
    /// The node's vigild version, as it last registered.
    pub version: String,
    /// This is the node that answered.
    pub this_node: bool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    Code(u8),
    Signal(i32),
    Unknown,
}

/// One process of a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcInfo {
    pub pid: i32,
    /// 0 for the started process, 1 for its children...
    pub level: u32,
    /// Whether the tag's level watches it (deeper ones are only signalled on stop).
    pub watched: bool,
}

/// The whole state of a tag, for `vigil status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagStatus {
    pub name: String,
    /// waiting, running, backoff, action, stopping, stopped, failed.
    pub state: String,
    /// Why a tag failed, or why a tag in `backoff` waits when it is not its own backoff: restart-storm
    /// throttling or a start that failed for want of a resource.
    pub reason: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub instance: u32,
    pub program_type: ProgramType,
    pub level: i64,
    pub retries: i64,
    pub period: i64,
    pub action: Option<String>,
    pub backoff: Option<Backoff>,
    pub after: Vec<String>,
    pub restarts_used: u32,
    pub starts: u64,
    pub procs: Vec<ProcInfo>,
    pub main_pid: Option<i32>,
    /// When the current instance started (ms since the Unix epoch).
    pub started_ms: Option<u64>,
    pub last_exit: Option<(i32, ExitStatus)>,
    pub log_path: String,
    /// True for tags declared in the config file.
    pub from_config: bool,
    /// The watchdog interval of the current instance (protocol 2).
    pub watchdog_ms: Option<u64>,
    pub probes: Vec<ProbeStatus>,
    /// The current instance sent `READY=1`.
    pub ready: bool,
    /// The current instance's last `STATUS=` text.
    pub status_text: Option<String>,
    /// The supervision settings (protocol 3).
    pub supervision: Supervision,
    /// The current instance counts as running (protocol 3): see `WaitUntil::Ready`.
    pub up: bool,
}

/// One line of `vigil list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSummary {
    pub name: String,
    pub state: String,
    pub pids: Vec<i32>,
}

/// What `Reload` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReloadReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Facts about the daemon itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub uid: u32,
    pub started_ms: u64,
    pub state_dir: String,
    pub socket: String,
    pub config: Option<String>,
    pub tags: u32,
    /// "process connector" or "/proc scan": how descendants are found.
    pub tracking: String,
    pub last_seq: u64,
    /// Requests waiting for a condition (`wait`, `stop --wait`...).
    pub waiting: u32,
    /// Connections subscribed to events.
    pub subscribers: u32,
    pub node: String,
    pub node_id: u32,
    /// The oldest stored event (history before it is gone).
    pub first_seq: u64,
}
