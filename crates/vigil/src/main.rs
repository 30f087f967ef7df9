//! `vigil`: the command line of vigild.
//!
//! Exit codes: 0 success; 1 the daemon refused or the operation failed (and `query`: no such tag);
//! 2 a usage error or a malformed value (whether vigil or vigild finds it); 3 vigild cannot be reached.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

mod cmap;
mod done;
mod events;
mod generate;
mod output;
mod res;
mod several;
mod supervise;
mod when;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vigil_client::proto::ErrorCode;
use vigil_client::proto::{self, Backoff, ProbeCheck, ProbeSpec, ProgramType, RunSpec};
use vigil_client::{Client, ClientError};

use done::Done;

#[derive(Parser)]
#[command(
    version,
    about = "Keep vital processes alive: the command line of vigild",
    after_help = "Exit status: 0 success; 1 vigild refused or the operation failed; 2 a usage error or a \
                  malformed value; 3 vigild cannot be reached. The global options go before or after the command."
)]
struct Cli {
    // The global options: one line each in every command's -h, the whole story in --help.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options",
        help = "vigild's socket [default: $VIGIL_SOCKET, else root's or the user's: see --help]",
        long_help = "vigild's socket [default: $VIGIL_SOCKET, /run/vigil/vigild.sock for root, else \
                     $XDG_RUNTIME_DIR/vigil/vigild.sock]"
    )]
    socket: Option<PathBuf>,
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        help = "Print JSON instead of text (docs/json.md)",
        long_help = "Print JSON instead of text, in the documented shapes of docs/json.md, for every command \
                     that prints something but `logs` and `query`"
    )]
    json: bool,
    #[arg(
        long,
        global = true,
        value_name = "NODE",
        help_heading = "Global options",
        help = "Cluster mode: the node to ask, or for some commands a comma list or `all` (see --help)",
        long_help = "Cluster mode: the node to ask (this one by default); `status`, `list` and `psm get` also \
                     take a comma list or `all`, and succeed when any node answered (the others' errors go to \
                     stderr); `events` with any `--node` reads the cluster stream of those nodes, in etcd \
                     revision order"
    )]
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
    /// Start stopped or failed tags again, with a fresh retry budget
    Start {
        /// The tags: names, globs such as 'web*', or @GROUP
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Change the retry budget of a tag (pmfadm -m)
    Modify {
        /// The tag
        tag: String,
        /// Restarts allowed within the period (-1: no limit)
        #[arg(long, short = 'n', value_name = "N", allow_hyphen_values = true)]
        retries: Option<i64>,
        /// The period in seconds (-1: no limit)
        #[arg(long, short = 't', value_name = "SECS", allow_hyphen_values = true)]
        period: Option<i64>,
        #[command(flatten)]
        supervision: supervise::ModifySupervision,
    },
    /// Stop restarting and signal every process of the tags; SIGKILL follows after the wait (pmfadm -s)
    Stop {
        /// The tags: names, globs such as 'web*', or @GROUP
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
        /// The first signal [default: the tag's stop signal, SIGTERM]
        #[arg(long, short, value_name = "SIG")]
        signal: Option<String>,
        /// Wait up to SECS for every process to exit; SIGKILL is sent when the wait runs out
        #[arg(long, short, value_name = "SECS")]
        wait: Option<f64>,
    },
    /// Send a signal to every process of the tag without stopping monitoring (pmfadm -k)
    Kill {
        /// The tag
        tag: String,
        /// Signal name or number [default: TERM]
        #[arg(value_name = "SIG")]
        signal: Option<String>,
        /// Wait up to SECS for the signalled processes to exit
        #[arg(long, short, value_name = "SECS")]
        wait: Option<f64>,
    },
    /// Stop the tags' processes and start their command again (not counted against the budget)
    Restart {
        /// The tags: names, globs such as 'web*', or @GROUP
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Stop the tag if needed and forget it
    Rm {
        /// The tag
        tag: String,
        /// Wait up to SECS for its processes to exit; SIGKILL is sent when the wait runs out
        #[arg(long, short, value_name = "SECS")]
        wait: Option<f64>,
    },
    /// Exit 0 if the tag exists, 1 if not; print nothing (pmfadm -q)
    Query {
        /// The tag
        tag: String,
    },
    /// List tags: state, processes, uptime, restarts used of the budget and last exit (pmfadm -L)
    List,
    /// Show the state of tags, or of all (pmfadm -l)
    Status {
        /// The tags: names, globs such as 'web*', or @GROUP [default: every tag]
        #[arg(value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Wait until each tag no longer runs (stopped, failed, exited or removed), or with --running or
    /// --ready until each runs; exit 1 when one cannot get there any more or the timeout passes
    Wait {
        /// The tags
        #[arg(required = true)]
        tags: Vec<String>,
        /// Until a process of each tag runs
        #[arg(long, conflicts_with_all = ["ready", "stopped"])]
        running: bool,
        /// Until each tag counts as running: it lived its start_secs, or sent READY=1 when it uses notify
        #[arg(long, conflicts_with = "stopped")]
        ready: bool,
        /// Until each tag has no process and will get none (the default)
        #[arg(long)]
        stopped: bool,
        /// Give up after SECS (for all the tags together)
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
    },
    /// Show a tag's output log
    Logs {
        /// The tag
        tag: String,
        /// Keep printing what is written
        #[arg(long, short)]
        follow: bool,
        /// Lines from the end to start with
        #[arg(long, short = 'n', value_name = "N", default_value_t = 50)]
        lines: usize,
    },
    /// Show the newest events (or those since a time), and follow new ones with -f (with --node: the
    /// cluster stream, by etcd revision)
    Events(events::EventsArgs),
    /// The configuration map: typed keys with change tracking (as corosync-cmapctl)
    Cmap {
        /// Use the read-only stats map instead of the main one
        #[arg(long, global = true)]
        stats: bool,
        #[command(subcommand)]
        cmd: cmap::CmapCmd,
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
    /// Print the completion script for SHELL (`make install` runs it)
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Write vigil's man pages into DIR (`make install` runs it)
    #[command(hide = true)]
    Manpage { dir: PathBuf },
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
    Add {
        /// The category
        category: String,
        /// The process
        pid: i32,
    },
    /// Forget a member
    Rm {
        /// The category
        category: String,
        /// The member's pid
        pid: i32,
    },
    /// Show members: all, of a category, or one pid
    Get {
        /// The category [default: every category]
        category: Option<String>,
        /// The member's pid [default: every member]
        pid: Option<i32>,
    },
    /// Set a member's state string
    State {
        /// The category
        category: String,
        /// The member's pid
        pid: i32,
        /// The new state, any text
        state: String,
    },
}

#[derive(Subcommand)]
enum CategoryCmd {
    /// Create a category
    Add {
        /// The category
        name: String,
    },
    /// Remove an empty category
    Rm {
        /// The category
        name: String,
    },
    /// List categories with their members and how many run
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
    /// The tag: 1 to 240 letters, digits and `. _ - : @ + ,`
    tag: String,
    /// Environment variable for the command (repeatable)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Pass this command's whole environment to the tag
    #[arg(short = 'E', long = "inherit-env")]
    inherit_env: bool,
    /// Working directory [default: the user's home, or /]
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Instance number of a multi-instance resource
    #[arg(long, value_name = "N", default_value_t = 0)]
    instance: u32,
    /// Program type: svc, mon or other
    #[arg(long = "type", value_name = "TYPE", default_value = "svc")]
    program_type: String,
    /// Child monitor level: 0 the process, 1 its children, ..., -1 all descendants
    #[arg(long, short = 'C', value_name = "N", default_value_t = -1, allow_hyphen_values = true)]
    level: i64,
    /// Restarts allowed within the period: 0 never restart, -1 no limit
    #[arg(long, short = 'n', value_name = "N", default_value_t = 0, allow_hyphen_values = true)]
    retries: i64,
    /// The period in seconds over which restarts are counted (-1: no limit)
    #[arg(long, short = 't', value_name = "SECS", default_value_t = -1, allow_hyphen_values = true)]
    period: i64,
    /// Program run as `PROGRAM failed TAG` when the budget is spent: exit 0 restarts, else removes
    #[arg(long, short = 'a', value_name = "PROGRAM")]
    action: Option<String>,
    /// Exponential backoff between restarts, MIN:MAX seconds
    #[arg(long, value_name = "MIN:MAX")]
    backoff: Option<String>,
    /// Start only once these tags are running (repeatable)
    #[arg(long, value_name = "TAG")]
    after: Vec<String>,
    /// Signal that a stop sends first
    #[arg(long, value_name = "SIG")]
    stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL
    #[arg(long, value_name = "SECS")]
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
    supervision: supervise::RunSupervision,
    #[command(flatten)]
    res: res::ResArgs,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// A failure with the exit code it deserves.
struct Failure(u8, String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match e {
            ClientError::Connect { .. } => 3,
            // A malformed value is a usage error whoever finds it: vigild checks most of them.
            _ if e.code() == Some(ErrorCode::InvalidArgument) => 2,
            _ => 1,
        };
        Failure(code, e.to_string())
    }
}

/// An error that is not the command's: a broken config file makes `reload` and `reexec` fail (1), though
/// vigild calls it an invalid argument.
fn refused(e: ClientError) -> Failure {
    let f = Failure::from(e);
    Failure(if f.0 == 2 { 1 } else { f.0 }, f.1)
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
    if json && matches!(cli.cmd, Cmd::Query { .. } | Cmd::Logs { .. }) {
        return Err(usage(
            "--json: query answers with its exit status and logs prints the log as written; neither prints JSON",
        ));
    }
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
        Cmd::Run(mut a) => {
            let sup = std::mem::take(&mut a.supervision);
            let resources = a.res.to_wire()?;
            let spec = run_spec(a)?;
            // Safe to type again after an unanswered run: a tag already running this spec is the answer.
            let status = sup.run(&mut connect()?, spec, resources)?;
            output::tag_started(&status, json);
        }
        Cmd::Start { tags } => several::each(&mut connect()?, &tags, json, |c, t| {
            c.start(t)?;
            Ok(Done::new(t, "started").tag(&c.status(t)?))
        })?,
        Cmd::Modify {
            tag,
            retries,
            period,
            supervision,
        } => {
            if retries.is_none() && period.is_none() && supervision.is_empty() {
                return Err(usage(
                    "modify needs --retries, --period, --restart, --success-exit-codes, --success-signals \
                     or --start-secs",
                ));
            }
            let mut c = connect()?;
            if retries.is_some() || period.is_some() {
                c.modify(&tag, retries, period)?;
            }
            if !supervision.is_empty() {
                supervision.send(&mut c, &tag)?;
            }
            let st = c.status(&tag)?;
            Done::new(&tag, "modified")
                .note(format!("retries {}", output::budget(&st)))
                .detail("retries", st.retries)
                .detail("period", st.period)
                .print(json)
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
            several::each(&mut c, &tags, json, |c, t| several::stop(c, t, sig, wait))?
        }
        Cmd::Kill { tag, signal: sig, wait } => {
            let sig = signal(sig.as_deref().unwrap_or("TERM"))?;
            let wait = wait.map(|w| secs(w, "--wait")).transpose()?;
            let mut c = connect()?;
            let procs = c.status(&tag)?.procs.len();
            c.kill(&tag, sig, wait)?;
            Done::new(&tag, "signalled")
                .note(format!(
                    "{} to {procs} process{}{}",
                    proto::signal_name(sig),
                    if procs == 1 { "" } else { "es" },
                    if wait.is_some() { ", all gone" } else { "" }
                ))
                .detail("signal", proto::signal_name(sig))
                .detail("processes", procs as i64)
                .print(json)
        }
        Cmd::Restart { tags } => several::each(&mut connect()?, &tags, json, |c, t| {
            c.restart(t)?;
            Ok(Done::new(t, "restarted").tag(&after_restart(c, t)?))
        })?,
        Cmd::Rm { tag, wait } => {
            let wait = wait.map(|w| secs(w, "--wait")).transpose()?;
            connect()?.remove(&tag, wait)?;
            Done::new(&tag, "removed").print(json)
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
                    let got = each_node(&mut c, &nodes, |c| c.status_all())?;
                    let got: Vec<_> = got.into_iter().map(|(n, t)| (Some(n), t)).collect();
                    output::list(&got, json)
                }
                Cmd::Status { tags } if !tags.is_empty() && several::several(&tags) => {
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
        Cmd::List => {
            let tags: Vec<_> = connect()?.status_all()?.into_iter().map(|t| (None, t)).collect();
            output::list(&tags, json)
        }
        Cmd::Status { tags } => return several::status(&mut connect()?, &tags, json),
        Cmd::Wait {
            tags,
            running,
            ready,
            stopped: _,
            timeout,
        } if running || ready || tags.len() > 1 => {
            let timeout = timeout.map(|t| secs(t, "--timeout")).transpose()?;
            let until = match (running, ready) {
                (true, _) => proto::WaitUntil::Running,
                (_, true) => proto::WaitUntil::Ready,
                _ => proto::WaitUntil::Stopped,
            };
            let got = supervise::wait(&mut connect()?, &tags, until, timeout)?;
            if json {
                let got: Vec<_> = got.into_iter().filter_map(|(_, st)| st).collect();
                output::status(&got, true);
            } else {
                for (tag, st) in &got {
                    match st {
                        Some(st) => output::tag_started(st, false),
                        None => println!("{}: removed", vigil_client::escape_terminal(tag)),
                    }
                }
            }
        }
        Cmd::Wait { tags, timeout, .. } => {
            let tag = tags.into_iter().next().expect("one tag at least");
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
        Cmd::Events(args) => events::run(&path, node.as_deref(), args, json)?,
        Cmd::Cmap { stats, cmd } => cmap::run(connect()?, stats, cmd, json)?,
        Cmd::Psm { cmd } => {
            // The node goes in the request itself, as libcfg sends it.
            let node = proto::PsmNode(single.clone().unwrap_or_default());
            let mut c = Client::connect(&path).map_err(Failure::from)?;
            match cmd {
                PsmCmd::Category {
                    cmd: CategoryCmd::Add { name },
                } => {
                    c.psm_category_add(&node, &name)?;
                    Done::new(&name, "created").print(json)
                }
                PsmCmd::Category {
                    cmd: CategoryCmd::Rm { name },
                } => {
                    c.psm_category_remove(&node, &name)?;
                    Done::new(&name, "removed").print(json)
                }
                PsmCmd::Category { cmd: CategoryCmd::Ls } => output::categories(&c.psm_categories(&node)?, json),
                PsmCmd::Add { category, pid } => {
                    c.psm_add(&node, &category, pid)?;
                    Done::new(&category, "added")
                        .note(format!("pid {pid}"))
                        .detail("pid", i64::from(pid))
                        .print(json)
                }
                PsmCmd::Rm { category, pid } => {
                    c.psm_remove(&node, Some(&category), pid)?;
                    Done::new(&category, "removed")
                        .note(format!("pid {pid}"))
                        .detail("pid", i64::from(pid))
                        .print(json)
                }
                PsmCmd::Get { category, pid } => output::members(&c.psm_get(&node, category.as_deref(), pid)?, json),
                PsmCmd::State { category, pid, state } => {
                    c.psm_set_state(&node, Some(&category), pid, &state)?;
                    Done::new(&category, "state set")
                        .note(format!("pid {pid}: {}", output::word(&state)))
                        .detail("pid", i64::from(pid))
                        .detail("state", state.as_str())
                        .print(json)
                }
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
        Cmd::Reload => output::reload(&connect()?.reload().map_err(refused)?, json),
        Cmd::Daemon { cmd: DaemonCmd::Status } => output::daemon(&connect()?.daemon_status()?, json),
        Cmd::Daemon { cmd: DaemonCmd::Reexec } => {
            let mut c = connect()?;
            let before = c.daemon_pid();
            c.reexec().map_err(refused)?;
            Done::new("vigild", "re-executing")
                .note(format!("pid {before}, in place"))
                .detail("pid", i64::from(before))
                .print(json)
        }
        Cmd::Completions { shell } => generate::completions(shell),
        Cmd::Manpage { dir } => generate::manpages(&dir).map_err(|e| Failure(1, format!("manpage: {e}")))?,
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

/// The tag's status once its restart is through: vigild answers `restart` as soon as the old processes
/// are signalled, and the next request can come before they have gone. While the tag is stopping, asks
/// again (a stop ends within the tag's stop timeout, then SIGKILL), up to [`RESTART_SHOWN_WITHIN`].
fn after_restart(c: &mut Client, tag: &str) -> Result<proto::TagStatus, ClientError> {
    let until = std::time::Instant::now() + RESTART_SHOWN_WITHIN;
    loop {
        let st = c.status(tag)?;
        if st.state != "stopping" || std::time::Instant::now() >= until {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How long `vigil restart` waits for the old processes to go before it shows the tag as it is.
const RESTART_SHOWN_WITHIN: Duration = Duration::from_secs(5);
