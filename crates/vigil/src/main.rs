//! `vigil`: the command line of vigild.
//!
//! Exit codes: 0 success; 1 the daemon refused or the operation failed (and `query`: no such tag);
//! 2 a usage error; 3 vigild cannot be reached.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

mod output;
mod res;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vigil_client::proto::{self, Backoff, ProbeCheck, ProbeSpec, ProgramType, RunSpec};
use vigil_client::{Client, ClientError};

#[derive(Parser)]
#[command(version, about = "Keep vital processes alive: the command line of vigild")]
struct Cli {
    /// vigild's socket [default: $VIGIL_SOCKET, /run/vigil/vigild.sock for root, else $XDG_RUNTIME_DIR/vigil/vigild.sock]
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    json: bool,
    /// Cluster mode: the node to ask (this one by default); `status`, `list` and `psm get` also take a
    /// comma list or `all`, and succeed when any node answered (the others' errors go to stderr);
    /// `events` with any `--node` reads the cluster stream of those nodes, in etcd revision order
    #[arg(long, global = true)]
    node: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Create a tag and start COMMAND under it (pmfadm -c)
    Run(RunArgs),
    /// Start stopped or failed tags again, with a fresh retry budget (TAG: a name, a glob such as
    /// 'web*', or @GROUP)
    Start {
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Change the retry budget of a tag (pmfadm -m)
    Modify {
        tag: String,
        /// Restarts allowed within the period (-1: no limit)
        #[arg(long, short = 'n', allow_hyphen_values = true)]
        retries: Option<i64>,
        /// The period in seconds (-1: no limit)
        #[arg(long, short = 't', allow_hyphen_values = true)]
        period: Option<i64>,
    },
    /// Stop restarting and signal every process of the tags; SIGKILL follows after the wait (pmfadm -s)
    /// (TAG: a name, a glob such as 'web*', or @GROUP)
    Stop {
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
        /// The first signal [default: the tag's stop signal, SIGTERM]
        #[arg(long, short)]
        signal: Option<String>,
        /// Wait up to SECS for every process to exit; SIGKILL is sent when the wait runs out
        #[arg(long, short)]
        wait: Option<f64>,
    },
    /// Send a signal to every process of the tag without stopping monitoring (pmfadm -k)
    Kill {
        tag: String,
        /// Signal name or number [default: TERM]
        signal: Option<String>,
        /// Wait up to SECS for the signalled processes to exit
        #[arg(long, short)]
        wait: Option<f64>,
    },
    /// Stop the tags' processes and start their command again (not counted against the budget)
    /// (TAG: a name, a glob such as 'web*', or @GROUP)
    Restart {
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Stop the tag if needed and forget it
    Rm {
        tag: String,
        #[arg(long, short)]
        wait: Option<f64>,
    },
    /// Exit 0 if the tag exists, 1 if not; print nothing (pmfadm -q)
    Query { tag: String },
    /// List tags (pmfadm -L)
    List,
    /// Show the state of tags, or of all (pmfadm -l) (TAG: a name, a glob such as 'web*', or @GROUP)
    Status {
        #[arg(value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Wait until the tag no longer runs (stopped, failed or removed)
    Wait {
        tag: String,
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Show a tag's output log
    Logs {
        tag: String,
        /// Keep printing what is written
        #[arg(long, short)]
        follow: bool,
        /// Lines from the end to start with
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
    },
    /// Show stored events, or follow new ones (with --node: the cluster stream, by etcd revision)
    Events {
        /// Only events whose name matches: a glob (`sys.*.exited`) or a dotted prefix (`sys.unix.psm`)
        filter: Vec<String>,
        /// Only events with a sequence number above SEQ (with --node: an etcd revision above SEQ)
        #[arg(long, alias = "after", default_value_t = 0)]
        since: u64,
        /// Only events about this PSM category
        #[arg(long)]
        category: Option<String>,
        /// Only events about this PMF tag
        #[arg(long)]
        tag: Option<String>,
        /// Keep printing new events (after the stored ones since SEQ)
        #[arg(long, short)]
        follow: bool,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// The configuration map: typed keys with change tracking (as corosync-cmapctl)
    Cmap {
        /// Use the read-only stats map instead of the main one
        #[arg(long, global = true)]
        stats: bool,
        #[command(subcommand)]
        cmd: CmapCmd,
    },
    /// The process set manager: categories of vital processes and their members
    Psm {
        #[command(subcommand)]
        cmd: PsmCmd,
    },
    /// SAM: applications that heartbeat to a supervisor (see vigil-client's sam module, libsam)
    Sam {
        #[command(subcommand)]
        cmd: SamCmd,
    },
    /// Whether this node is quorate, and its votes (set the expected votes with
    /// `vigil cmap set quorum.expected_votes u32 N`)
    Quorum,
    /// Every node of the cluster: up or down, since when, its node id and address
    Nodes,
    /// Re-read vigild's config file and apply the difference
    Reload,
    /// Talk to vigild itself
    Daemon {
        #[command(subcommand)]
        cmd: DaemonCmd,
    },
}

#[derive(Subcommand)]
enum CmapCmd {
    /// Print a key as `key (type) = value`
    Get { key: String },
    /// Set a key: TYPE is i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin (bin: hex)
    Set {
        key: String,
        #[arg(value_name = "TYPE")]
        ty: String,
        value: String,
        /// Keep it across restarts of vigild
        #[arg(long)]
        persist: bool,
    },
    /// Delete a key
    Del { key: String },
    /// Add one to an integer key (wrapping)
    Inc { key: String },
    /// Subtract one from an integer key (wrapping)
    Dec { key: String },
    /// List keys under a prefix (all without one)
    Ls { prefix: Option<String> },
    /// Print changes of a key, or of a prefix with -p, until interrupted
    Track {
        key: String,
        /// Track every key under KEY as a prefix
        #[arg(short = 'p', long)]
        prefix: bool,
        /// Which changes: any of add, delete, modify [default: all]
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Set keys from a file of `KEY TYPE VALUE` lines (`-KEY` deletes; `#` comments)
    Load { file: PathBuf },
    /// Print every key
    Dump,
}

#[derive(Subcommand)]
enum SamCmd {
    /// Every SAM application on this node: supervisor, instance, state, policy
    Ls,
}

#[derive(Subcommand)]
enum PsmCmd {
    /// Create, remove or list categories
    Category {
        #[command(subcommand)]
        cmd: CategoryCmd,
    },
    /// Register a running process (any pid of the node) in a category
    Add { category: String, pid: i32 },
    /// Forget a member
    Rm { category: String, pid: i32 },
    /// Show members: all, of a category, or one pid
    Get { category: Option<String>, pid: Option<i32> },
    /// Set a member's state string
    State { category: String, pid: i32, state: String },
}

#[derive(Subcommand)]
enum CategoryCmd {
    Add {
        name: String,
    },
    /// Remove an empty category
    Rm {
        name: String,
    },
    Ls,
}

#[derive(Subcommand)]
enum DaemonCmd {
    /// Facts about the running vigild
    Status,
    /// Re-exec vigild in place (an upgrade) without touching any tag
    Reexec,
}

#[derive(clap::Args)]
struct RunArgs {
    tag: String,
    /// Environment variable for the command (repeatable)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Pass this command's whole environment to the tag
    #[arg(short = 'E', long = "inherit-env")]
    inherit_env: bool,
    /// Working directory [default: the user's home, or /]
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Instance number of a multi-instance resource
    #[arg(long, default_value_t = 0)]
    instance: u32,
    /// Program type: svc, mon or other
    #[arg(long = "type", default_value = "svc")]
    program_type: String,
    /// Child monitor level: 0 the process, 1 its children, ..., -1 all descendants
    #[arg(long, short = 'C', default_value_t = -1, allow_hyphen_values = true)]
    level: i64,
    /// Restarts allowed within the period: 0 never restart, -1 no limit
    #[arg(long, short = 'n', default_value_t = 0, allow_hyphen_values = true)]
    retries: i64,
    /// The period in seconds over which restarts are counted (-1: no limit)
    #[arg(long, short = 't', default_value_t = -1, allow_hyphen_values = true)]
    period: i64,
    /// Program run as `PROGRAM failed TAG` when the budget is spent: exit 0 restarts, else removes
    #[arg(long, short = 'a')]
    action: Option<String>,
    /// Exponential backoff between restarts, MIN:MAX seconds
    #[arg(long)]
    backoff: Option<String>,
    /// Start only once these tags are running (repeatable)
    #[arg(long)]
    after: Vec<String>,
    /// Signal that a stop sends first
    #[arg(long)]
    stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL
    #[arg(long)]
    stop_timeout: Option<f64>,
    /// Restart the tag unless it sends WATCHDOG=1 to $NOTIFY_SOCKET at least every SECS (sd_notify)
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    watchdog: Option<f64>,
    /// A health check (repeatable): exec:COMMAND (run by sh -c), tcp:HOST:PORT or http://HOST[:PORT]/PATH
    #[arg(long = "probe", value_name = "PROBE")]
    probes: Vec<String>,
    /// Seconds from the start to the first probe, and between probes [default: 10]
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    probe_interval: Option<f64>,
    /// Seconds a probe may take [default: 5, at most the interval]
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    probe_timeout: Option<f64>,
    /// Consecutive failed probes that restart the tag [default: 3]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    probe_threshold: Option<i64>,
    #[command(flatten)]
    res: res::ResArgs,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// A failure with the exit code it deserves.
struct Failure(u8, String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match e {
            ClientError::Connect { .. } => 3,
            _ => 1,
        };
        Failure(code, e.to_string())
    }
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure(2, msg.into())
}

fn secs(v: f64, what: &str) -> Result<Duration, Failure> {
    if !(0.0..=86_400.0 * 365.0).contains(&v) || v.is_nan() {
        return Err(usage(format!("{what} {v} is not a number of seconds")));
    }
    Ok(Duration::from_secs_f64(v))
}

fn signal(s: &str) -> Result<i32, Failure> {
    proto::signal_from_str(s).ok_or_else(|| usage(format!("{s:?} is not a signal name or number")))
}

fn main() -> ExitCode {
    vigil_client::process::default_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, msg)) => {
            if !msg.is_empty() {
                // vigild's refusals quote what users sent (tag names, paths).
                eprintln!("vigil: {}", vigil_client::escape_terminal(&msg));
            }
            ExitCode::from(code)
        }
    }
}

/// The nodes `--node` names when it names several (`all` or a comma list); None for one node.
fn several(c: &mut Client, node: &Option<String>) -> Result<Option<Vec<String>>, Failure> {
    match node.as_deref().map(str::trim) {
        Some("all") => Ok(Some(c.nodes()?.into_iter().map(|n| n.name).collect())),
        Some(list) if list.contains(',') => Ok(Some(
            list.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )),
        _ => Ok(None),
    }
}

/// Asks each node in turn and keeps what answered, with the node it came from; each node's error goes
/// to stderr. Fails only when no node answered.
fn each_node<T>(
    c: &mut Client,
    nodes: &[String],
    mut q: impl FnMut(&mut Client) -> Result<Vec<T>, ClientError>,
) -> Result<Vec<(String, T)>, Failure> {
    let mut out = Vec::new();
    let mut any = false;
    let mut last = None;
    for n in nodes {
        c.set_node(Some(n));
        match q(c) {
            Ok(v) => {
                any = true;
                out.extend(v.into_iter().map(|x| (n.clone(), x)));
            }
            Err(e) => {
                eprintln!(
                    "vigil: node {}: {}",
                    vigil_client::escape_terminal(n),
                    vigil_client::escape_terminal(&e.to_string())
                );
                last = Some(e);
            }
        }
    }
    c.set_node(None);
    match (any, last) {
        (true, _) | (false, None) => Ok(out),
        (false, Some(e)) => Err(Failure(1, "no node answered".into()).or(e)),
    }
}

impl Failure {
    fn or(self, e: ClientError) -> Failure {
        let f = Failure::from(e);
        Failure(f.0, format!("{}: {}", self.1, f.1))
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let path = cli.socket.clone().unwrap_or_else(vigil_client::default_socket_path);
    let node = cli.node.clone();
    let single = node.clone().filter(|n| n.trim() != "all" && !n.contains(','));
    let connect = || {
        let mut c = Client::connect(&path).map_err(Failure::from)?;
        c.set_node(single.as_deref());
        Ok::<Client, Failure>(c)
    };
    let json = cli.json;
    if let Some(n) = node.as_deref().filter(|_| single.is_none()) {
        let several_ok = matches!(
            cli.cmd,
            Cmd::List
                | Cmd::Status { tags: _ }
                | Cmd::Psm {
                    cmd: PsmCmd::Get { .. }
                }
                | Cmd::Nodes
                | Cmd::Events { .. }
        );
        if !several_ok {
            return Err(usage(format!(
                "--node {n}: only status, list, psm get and events take several nodes"
            )));
        }
    }
    match cli.cmd {
        Cmd::Run(a) => {
            let resources = a.res.to_wire()?;
            let spec = run_spec(a)?;
            // Safe to type again after an unanswered run: a tag already running this spec is the answer.
            let status = connect()?.run_with(spec, resources, true)?;
            output::tag_started(&status, json);
        }
        Cmd::Start { tags } => res::each(&mut connect()?, &tags, "started", |c, t| c.start(t))?,
        Cmd::Modify { tag, retries, period } => {
            if retries.is_none() && period.is_none() {
                return Err(usage("modify needs --retries and/or --period"));
            }
            connect()?.modify(&tag, retries, period)?
        }
        Cmd::Stop {
            tags,
            signal: sig,
            wait,
        } => {
            let sig = sig.as_deref().map(signal).transpose()?;
            let wait = wait.map(|w| secs(w, "--wait")).transpose()?;
            let mut c = connect()?;
            c.set_read_timeout(None).ok();
            res::each(&mut c, &tags, "stopped", |c, t| c.stop(t, sig, wait))?
        }
        Cmd::Kill { tag, signal: sig, wait } => {
            let sig = signal(sig.as_deref().unwrap_or("TERM"))?;
            let wait = wait.map(|w| secs(w, "--wait")).transpose()?;
            connect()?.kill(&tag, sig, wait)?
        }
        Cmd::Restart { tags } => res::each(&mut connect()?, &tags, "restarted", |c, t| c.restart(t))?,
        Cmd::Rm { tag, wait } => {
            let wait = wait.map(|w| secs(w, "--wait")).transpose()?;
            connect()?.remove(&tag, wait)?
        }
        Cmd::Query { tag } => {
            let exists = Client::connect(&path)
                .map_err(|e| Failure(3, e.to_string()))?
                .query(&tag)?;
            return Ok(if exists { 0 } else { 1 });
        }
        Cmd::List
        | Cmd::Status { .. }
        | Cmd::Psm {
            cmd: PsmCmd::Get { .. },
        } if single.is_none() && node.is_some() => {
            let mut c = connect()?;
            let nodes = several(&mut c, &node)?.unwrap_or_default();
            match cli.cmd {
                Cmd::List => {
                    let got = each_node(&mut c, &nodes, |c| c.list())?;
                    output::list_nodes(&got, json)
                }
                Cmd::Status { tags } if !tags.is_empty() && res::several(&tags) => {
                    return Err(usage("with several nodes, status takes one tag name or none"));
                }
                Cmd::Status { tags } if tags.len() == 1 => {
                    let tag = &tags[0];
                    let got = each_node(&mut c, &nodes, |c| c.status(tag).map(|s| vec![s]))?;
                    output::status_nodes(&got, json)
                }
                Cmd::Status { .. } => {
                    let got = each_node(&mut c, &nodes, |c| c.status_all())?;
                    output::status_nodes(&got, json)
                }
                Cmd::Psm {
                    cmd: PsmCmd::Get { category, pid },
                } => {
                    let local = proto::PsmNode::local();
                    let got = each_node(&mut c, &nodes, |c| c.psm_get(&local, category.as_deref(), pid))?;
                    let mut down: Vec<&str> = got
                        .iter()
                        .filter(|(_, m)| m.flags & proto::PSM_FL_UNREACHABLE != 0)
                        .map(|(n, _)| n.as_str())
                        .collect();
                    down.dedup();
                    for n in down {
                        eprintln!(
                            "vigil: node {}: down; its members are shown as last known (unreachable)",
                            vigil_client::escape_terminal(n)
                        );
                    }
                    let ms: Vec<_> = got.into_iter().map(|(_, m)| m).collect();
                    output::members(&ms, json)
                }
                _ => unreachable!("matched above"),
            }
        }
        Cmd::List => output::list(&connect()?.list()?, json),
        Cmd::Status { tags } if tags.is_empty() => {
            let mut c = connect()?;
            let all = c.status_all()?;
            res::print_status(&mut c, &all, json)
        }
        Cmd::Status { tags } => {
            let mut c = connect()?;
            if !res::several(&tags) {
                let st = c.status(&tags[0])?;
                res::print_status(&mut c, &[st], json);
            } else {
                let mut got = Vec::new();
                let mut failed = 0;
                for t in res::select(&mut c, &tags)? {
                    match c.status(&t) {
                        Ok(st) => got.push(st),
                        Err(e) => {
                            failed += 1;
                            eprintln!(
                                "vigil: {}: {}",
                                vigil_client::escape_terminal(&t),
                                vigil_client::escape_terminal(&e.to_string())
                            );
                        }
                    }
                }
                res::print_status(&mut c, &got, json);
                if failed > 0 {
                    return Ok(1);
                }
            }
        }
        Cmd::Wait { tag, timeout } => {
            let timeout = timeout.map(|t| secs(t, "--timeout")).transpose()?;
            match connect()?.wait(&tag, timeout)? {
                Some(st) if json => output::status(&[st], true),
                Some(st) => println!(
                    "{}: {}",
                    vigil_client::escape_terminal(&st.name),
                    vigil_client::escape_terminal(&st.state)
                ),
                None if json => println!("[]"),
                None => println!("{}: removed", vigil_client::escape_terminal(&tag)),
            }
        }
        Cmd::Logs { tag, follow, lines } => {
            let st = connect()?.status(&tag)?;
            // The log is a file of the tag's user, mode 0600: the file system enforces who reads it; this
            // only says so plainly instead of "Permission denied".
            let me = vigil_client::process::getuid();
            if me != 0 && me != st.uid {
                return Err(Failure(
                    1,
                    format!(
                        "the log of {} is readable only by its owner (uid {}) and root, not by uid {me}",
                        st.name, st.uid
                    ),
                ));
            }
            output::logs(&st.log_path, lines, follow).map_err(|e| Failure(1, format!("{}: {e}", st.log_path)))?;
        }
        Cmd::Events {
            filter,
            since,
            category,
            tag,
            follow,
            limit,
        } => {
            let filter = proto::EventFilter {
                names: filter,
                category,
                tag,
            };
            if let Some(n) = &node {
                // The cluster stream, of the named nodes.
                let nodes: Vec<String> = n
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut c = Client::connect(&path).map_err(Failure::from)?;
                if follow {
                    c.cluster_subscribe(Some(since), filter, nodes)?;
                    loop {
                        match c.next_cluster_item()? {
                            vigil_client::ClusterItem::Event(e) => output::cluster_event(&e, json),
                            vigil_client::ClusterItem::Lost { from, to } => output::lost_revisions(from, to, json),
                        }
                    }
                }
                let got = c.cluster_events(since, limit, filter, nodes)?;
                if let Some((from, to)) = got.lost {
                    output::lost_revisions(from, to, json);
                }
                for e in &got.events {
                    output::cluster_event(e, json);
                }
                return Ok(0);
            }
            let mut c = connect()?;
            if follow {
                c.subscribe_filtered(Some(since), filter)?;
                loop {
                    match c.next_item()? {
                        vigil_client::StreamItem::Event(e) => output::event(&e, json),
                        vigil_client::StreamItem::Lost { from, to } => output::lost(from, to, json),
                    }
                }
            }
            for e in c.events_filtered(since, limit, filter)? {
                output::event(&e, json);
            }
        }
        Cmd::Cmap { stats, cmd } => cmap(connect()?, stats, cmd, json)?,
        Cmd::Psm { cmd } => {
            // The node goes in the request itself, as libcfg sends it.
            let node = proto::PsmNode(single.clone().unwrap_or_default());
            let mut c = Client::connect(&path).map_err(Failure::from)?;
            match cmd {
                PsmCmd::Category {
                    cmd: CategoryCmd::Add { name },
                } => c.psm_category_add(&node, &name)?,
                PsmCmd::Category {
                    cmd: CategoryCmd::Rm { name },
                } => c.psm_category_remove(&node, &name)?,
                PsmCmd::Category { cmd: CategoryCmd::Ls } => output::categories(&c.psm_categories(&node)?, json),
                PsmCmd::Add { category, pid } => c.psm_add(&node, &category, pid)?,
                PsmCmd::Rm { category, pid } => c.psm_remove(&node, Some(&category), pid)?,
                PsmCmd::Get { category, pid } => output::members(&c.psm_get(&node, category.as_deref(), pid)?, json),
                PsmCmd::State { category, pid, state } => c.psm_set_state(&node, Some(&category), pid, &state)?,
            }
        }
        Cmd::Sam { cmd: SamCmd::Ls } => output::sam(&connect()?.sam_list()?, json),
        Cmd::Quorum => {
            let mut c = connect()?;
            let quorate = c.quorum_track()?;
            let expected = c.cmap_get("quorum.expected_votes")?;
            // The votes quorum is decided on (a vigild before total_votes has only its own).
            let votes = match c.cmap_get("runtime.votequorum.total_votes") {
                Ok(v) => v,
                Err(_) => c.cmap_get("runtime.votequorum.this_node_votes")?,
            };
            output::quorum(quorate, &expected, &votes, json);
        }
        Cmd::Nodes => {
            let mut c = Client::connect(&path).map_err(Failure::from)?;
            let nodes = c.nodes()?;
            output::nodes(&nodes, json);
            // Without its lease, the node cannot learn of changes: say that the list may be stale.
            if nodes.len() > 1 && matches!(c.cmap_get("runtime.votequorum.quorate"), Ok(proto::CmapValue::U8(0))) {
                eprintln!(
                    "vigil: this node has no quorum (etcd cannot be reached, or has lost its own): the list is as last seen"
                );
            }
        }
        Cmd::Reload => output::reload(&connect()?.reload()?, json),
        Cmd::Daemon { cmd: DaemonCmd::Status } => output::daemon(&connect()?.daemon_status()?, json),
        Cmd::Daemon { cmd: DaemonCmd::Reexec } => {
            let mut c = connect()?;
            let before = c.daemon_pid();
            c.reexec()?;
            if !json {
                println!("vigild (pid {before}) is re-executing in place");
            }
        }
    }
    Ok(0)
}

/// The kind of a `--probe` by its prefix; the address or URL itself is vigild's to judge.
fn probe_check(p: &str) -> Result<ProbeCheck, Failure> {
    if let Some(cmd) = p.strip_prefix("exec:") {
        if cmd.trim().is_empty() {
            return Err(usage(
                "--probe exec: needs a command, as in exec:'test -e /run/app.pid'",
            ));
        }
        Ok(ProbeCheck::Exec {
            command: vec!["sh".into(), "-c".into(), cmd.into()],
        })
    } else if let Some(address) = p.strip_prefix("tcp:") {
        Ok(ProbeCheck::Tcp {
            address: address.into(),
        })
    } else if p.starts_with("http://") || p.starts_with("https://") {
        Ok(ProbeCheck::Http { url: p.into() })
    } else {
        Err(usage(format!(
            "--probe {p:?}: unknown probe kind; use exec:COMMAND, tcp:HOST:PORT or http://HOST[:PORT]/PATH"
        )))
    }
}

fn probes(a: &RunArgs) -> Result<Vec<ProbeSpec>, Failure> {
    if a.probes.is_empty() && (a.probe_interval.is_some() || a.probe_timeout.is_some() || a.probe_threshold.is_some()) {
        return Err(usage(
            "--probe-interval, --probe-timeout and --probe-threshold need a --probe",
        ));
    }
    let ms = |v: Option<f64>, what: &str| -> Result<Option<u64>, Failure> {
        Ok(v.map(|v| secs(v, what)).transpose()?.map(|d| d.as_millis() as u64))
    };
    let interval_ms = ms(a.probe_interval, "--probe-interval")?;
    let timeout_ms = ms(a.probe_timeout, "--probe-timeout")?;
    let threshold = a
        .probe_threshold
        .map(|n| u32::try_from(n).map_err(|_| usage(format!("--probe-threshold {n} is not a count"))))
        .transpose()?;
    a.probes
        .iter()
        .map(|p| {
            Ok(ProbeSpec {
                check: probe_check(p)?,
                interval_ms,
                timeout_ms,
                threshold,
            })
        })
        .collect()
}

fn run_spec(a: RunArgs) -> Result<RunSpec, Failure> {
    let probes = probes(&a)?;
    let watchdog_ms = a
        .watchdog
        .map(|w| secs(w, "--watchdog"))
        .transpose()?
        .map(|d| d.as_millis() as u64);
    let mut env: Vec<(String, String)> = Vec::new();
    if a.inherit_env {
        env.extend(std::env::vars());
    }
    // The file's variables over the inherited ones, and -e over both.
    for (k, v) in a.res.env_file()? {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| usage(format!("-e {kv:?}: expected K=V")))?;
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let program_type = match a.program_type.as_str() {
        "svc" => ProgramType::Svc,
        "mon" => ProgramType::Mon,
        "other" => ProgramType::Other,
        t => return Err(usage(format!("--type {t:?}: use svc, mon or other"))),
    };
    let backoff = a
        .backoff
        .as_deref()
        .map(|b| {
            let (min, max) = b
                .split_once(':')
                .ok_or_else(|| usage(format!("--backoff {b:?}: expected MIN:MAX")))?;
            let min = secs(
                min.parse()
                    .map_err(|_| usage(format!("--backoff {b:?}: MIN is not a number")))?,
                "MIN",
            )?;
            let max = secs(
                max.parse()
                    .map_err(|_| usage(format!("--backoff {b:?}: MAX is not a number")))?,
                "MAX",
            )?;
            Ok::<_, Failure>(Backoff {
                min_ms: min.as_millis() as u64,
                max_ms: max.as_millis() as u64,
            })
        })
        .transpose()?;
    let cwd = a
        .cwd
        .map(|c| std::path::absolute(&c).unwrap_or(c).display().to_string());
    let mut command = a.command;
    if command[0].contains('/') {
        // A relative program path means the caller's directory, not vigild's.
        command[0] = std::path::absolute(&command[0])
            .map(|x| x.display().to_string())
            .unwrap_or(command[0].clone());
    }
    Ok(RunSpec {
        tag: a.tag,
        command,
        env,
        inherit_env: a.inherit_env,
        cwd,
        instance: a.instance,
        program_type,
        level: a.level,
        retries: a.retries,
        period: a.period,
        action: a.action.map(|p| {
            // A relative action path means the caller's directory, not vigild's.
            if p.contains('/') {
                std::path::absolute(&p).map(|x| x.display().to_string()).unwrap_or(p)
            } else {
                p
            }
        }),
        backoff,
        after: a.after,
        stop_signal: a.stop_signal.as_deref().map(signal).transpose()?,
        stop_timeout_ms: a
            .stop_timeout
            .map(|t| secs(t, "--stop-timeout"))
            .transpose()?
            .map(|d| d.as_millis() as u64),
        watchdog_ms,
        probes,
    })
}

fn cmap(mut c: Client, stats: bool, cmd: CmapCmd, json: bool) -> Result<(), Failure> {
    use proto::CmapMap;
    let map = if stats { CmapMap::Stats } else { CmapMap::Main };
    match cmd {
        CmapCmd::Get { key } => {
            let v = c.cmap_get_in(map, &key, None)?;
            output::cmap_entries(&[proto::CmapEntry { key, value: v }], json);
        }
        CmapCmd::Set {
            key,
            ty,
            value,
            persist,
        } => c.cmap_set_text(&key, &ty, &value, persist)?,
        CmapCmd::Del { key } => c.cmap_delete(&key)?,
        CmapCmd::Inc { key } => {
            let v = c.cmap_inc(&key)?;
            output::cmap_entries(&[proto::CmapEntry { key, value: v }], json);
        }
        CmapCmd::Dec { key } => {
            let v = c.cmap_dec(&key)?;
            output::cmap_entries(&[proto::CmapEntry { key, value: v }], json);
        }
        CmapCmd::Ls { prefix } => output::cmap_entries(&c.cmap_iter(map, prefix.as_deref().unwrap_or(""))?, json),
        CmapCmd::Dump => output::cmap_entries(&c.cmap_iter(map, "")?, json),
        CmapCmd::Track { key, prefix, events } => {
            let mut flags = 0;
            for e in if events.is_empty() {
                vec!["add".into(), "delete".into(), "modify".into()]
            } else {
                events
            } {
                flags |= match e.as_str() {
                    "add" => output::TRACK_ADD,
                    "delete" | "del" => output::TRACK_DELETE,
                    "modify" | "mod" => output::TRACK_MODIFY,
                    other => return Err(usage(format!("--events {other:?}: use add, delete and/or modify"))),
                };
            }
            if prefix {
                flags |= output::TRACK_PREFIX;
            }
            c.cmap_track_add(map, &key, flags, 0)?;
            loop {
                output::cmap_notification(&c.next_notification()?, json);
            }
        }
        CmapCmd::Load { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Failure(1, format!("{}: {e}", file.display())))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let at = |e: ClientError| Failure(1, format!("{}:{}: {e}", file.display(), n + 1));
                if let Some(key) = line.strip_prefix('-') {
                    c.cmap_delete(key.trim()).map_err(at)?;
                    continue;
                }
                let mut parts = line.splitn(3, char::is_whitespace);
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(k), Some(t), Some(v)) => c.cmap_set_text(k, t, v.trim_start(), false).map_err(at)?,
                    (Some(k), Some("str"), None) => c.cmap_set_text(k, "str", "", false).map_err(at)?,
                    _ => {
                        return Err(Failure(
                            1,
                            format!("{}:{}: expected KEY TYPE VALUE", file.display(), n + 1),
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}
