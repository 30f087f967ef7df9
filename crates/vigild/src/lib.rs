//! vigild: one per node. It owns all state, serves the Unix socket and supervises processes.
//!
//! [`run`] is the whole daemon, on the caller's runtime and listener; [`run_daemon`] gives it a runtime of its
//! own, and `main.rs` only parses options. One loop owns the state
//! ([`state::Daemon`]); connections, pidfd watchers and signals send it messages.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

pub mod clock;
pub mod cluster;
pub mod cmap;
pub mod config;
pub mod conn;
pub mod convert;
pub mod events;
pub mod fit;
pub mod http;
pub mod msg;
pub mod node;
pub mod pmf;
pub mod psm;
pub mod realtime;
pub mod router;
#[cfg(test)]
mod run_tests;
pub mod sam;
pub mod scrape;
pub mod sd_notify;
pub mod server;
pub mod spec;
pub mod stamp;
pub mod state;
pub mod storage;
pub mod supervision;
pub mod tag_res;
#[cfg(test)]
mod tidy_tests;

// `vigild::marks::VAR` names the start marker for tests that forge one.
pub use pmf::marks;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::clock::now;
use crate::cluster::view::Cluster;
use crate::events::subscription::Events;
use crate::node::{Node, Paths};
use crate::pmf::state::Pmf;
use crate::state::{Daemon, SharedFd};
use crate::storage::Storage;

/// How vigild was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub config: Option<PathBuf>,
    pub tracking: Tracking,
    /// This node's name [default: the host name].
    pub node: Option<String>,
    /// Cluster mode: how to reach etcd (docs/cluster.md); None for a single node.
    pub cluster: Option<cluster::ClusterOptions>,
    /// Overrides `[daemon] max_connections_per_uid`.
    pub max_connections_per_uid: Option<usize>,
}

/// How vigild finds the descendants of the processes it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tracking {
    /// The process connector if the kernel allows it, else /proc scans.
    Auto,
    /// The netlink process connector only; fail to start without it.
    Connector,
    /// /proc scans only.
    Scan,
}

/// What the loop ended with.
pub enum Exit {
    Shutdown,
    Reexec,
}

/// Runs the daemon on a runtime of its own until SIGTERM/SIGINT (every tag stopped, `Exit::Shutdown`) or
/// a re-exec request: what the `vigild` program does.
pub fn run_daemon(opts: Options) -> anyhow::Result<Exit> {
    // One thread: the loop and the connection tasks take turns on it (the loop yields after every step
    // that was not a batch of requests, so a storm of process events cannot keep requests from being
    // read). A request's way in and its answer's way out cost no wake-up of another thread: on a
    // closed loop of small requests that was half of a request's time (docs/performance.md, "vigild's
    // one thread"). The loop is a task, not the runtime's main future, so that waking it is a push on
    // the local queue rather than a write to the driver's eventfd. The thread has a stack of a known
    // size, whatever RLIMIT_STACK vigild was started with: decoding a request must fit in it
    // (docs/fuzzing.md).
    // Blocked in every thread but the loop's (which unblocks them once its handlers are in place), so
    // that a stop sent during a re-exec is kept pending for the new image rather than lost.
    vigil_sys::set_stop_signals_blocked(true).context("cannot block the stop signals")?;
    let daemon = std::thread::Builder::new()
        .name("vigild".into())
        .stack_size(LOOP_STACK)
        .spawn(move || -> anyhow::Result<Exit> {
            realtime::own_this_thread();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // The blocking pool's threads copy the mask of whoever starts them (the loop's thread,
                // which takes the stop signals): they must not take one meant for a new image.
                .on_thread_start(|| {
                    let _ = vigil_sys::set_stop_signals_blocked(true);
                })
                .build()?;
            let ended = rt.block_on(async { tokio::spawn(run(opts, None, std::future::pending())).await });
            match ended {
                Ok(exit) => exit,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(e.into()),
            }
        })
        .context("cannot start vigild's thread")?;
    // A panic ends vigild as it would have on the main thread.
    daemon.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// A TERM or INT caught since the loop's last turn would be lost with this image: it is sent again, to
/// the process, where it waits (every thread blocks it now, and execve keeps pending signals and the
/// mask) until the new image's loop has its handlers and unblocks it, and then it stops vigild.
async fn keep_stops_for_new_image(sigterm: &mut tokio::signal::unix::Signal, sigint: &mut tokio::signal::unix::Signal) {
    for (s, n) in [(sigterm, libc::SIGTERM), (sigint, libc::SIGINT)] {
        if tokio::time::timeout(std::time::Duration::ZERO, s.recv()).await.is_ok() {
            let _ = vigil_sys::signal_self(n);
        }
    }
}

/// The stack of the thread that runs the loop and reads the connections.
pub const LOOP_STACK: usize = 8 << 20;

/// The daemon as a library function, on the caller's runtime: serves `listener` (None: binds
/// `opts.socket` once the state dir is this vigild's) until SIGTERM, SIGINT or `shutdown` stops every tag
/// (`Exit::Shutdown`), or a re-exec is asked for (`Exit::Reexec`, which the caller carries out).
/// `daemon.realtime_priority` applies only under [`run_daemon`]: the caller's threads keep their
/// scheduling.
pub async fn run(
    opts: Options,
    listener: Option<tokio::net::UnixListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Exit> {
    serve(opts, listener, shutdown).await
}

/// The state dir's mode: only vigild's user lists or changes it. Others keep search permission (x) so
/// that they reach what vigild gives them by path: tags of every user send to the notify socket in it,
/// and `vigil logs` opens a user's own log under `logs/`. The state file itself is 0600.
pub const STATE_DIR_MODE: u32 = 0o711;

fn prepare_dirs(opts: &Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(opts.state_dir.join("logs"))
        .with_context(|| format!("cannot create state dir {}", opts.state_dir.display()))?;
    // Also for a state dir an older vigild created world-readable.
    let meta = std::fs::metadata(&opts.state_dir)
        .with_context(|| format!("cannot inspect state dir {}", opts.state_dir.display()))?;
    let me = vigil_sys::getuid();
    anyhow::ensure!(
        std::os::unix::fs::MetadataExt::uid(&meta) == me,
        "state dir {} belongs to uid {}, not to vigild's uid {me}: another user could change what vigild stores",
        opts.state_dir.display(),
        std::os::unix::fs::MetadataExt::uid(&meta)
    );
    std::fs::set_permissions(&opts.state_dir, std::fs::Permissions::from_mode(STATE_DIR_MODE))
        .with_context(|| format!("cannot set the mode of state dir {}", opts.state_dir.display()))?;
    if let Some(dir) = opts.socket.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            // Anyone may connect: authorisation is per request, from SO_PEERCRED.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
        check_socket_dir(dir, me)?;
    }
    Ok(())
}

/// The socket's directory must be vigild's (or root's), and no one else may replace the socket in it: a
/// user who made `/tmp/vigil-UID` before its owner's vigild could otherwise swap the socket for one of
/// their own after vigild bound it. A directory others may write is fine only with the sticky bit (as
/// `/tmp`), where no one but the socket's owner can remove or rename it. Clients check the same
/// (docs/security.md).
fn check_socket_dir(dir: &std::path::Path, me: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot inspect socket dir {}", dir.display()))?;
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    anyhow::ensure!(
        owner == 0 || owner == me,
        "the socket's directory {} belongs to uid {owner}, not to root or vigild's uid {me}: its owner could \
         replace the socket with one of their own; use another --socket",
        dir.display()
    );
    anyhow::ensure!(
        mode & 0o022 == 0 || mode & 0o1000 != 0,
        "the socket's directory {} has mode {mode:04o}: others could replace the socket; make it writable \
         by its owner only (or sticky, as /tmp), or use another --socket",
        dir.display()
    );
    Ok(())
}

fn bind(socket: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    if socket.exists() {
        // A live vigild answers on it; a stale file is removed.
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            anyhow::bail!("another vigild is already listening on {}", socket.display());
        }
        std::fs::remove_file(socket).with_context(|| format!("cannot remove stale socket {}", socket.display()))?;
    }
    let listener =
        tokio::net::UnixListener::bind(socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// The HTTP API's listeners (docs/http.md): `http.sock` in the state dir, and TCP when configured,
/// over TLS with `tls`. A token file others could read refuses the start, since whoever reads it acts
/// as its owner.
async fn start_http(
    h: &config::HttpSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    state_dir: &std::path::Path,
    tx: &mpsc::UnboundedSender<msg::Msg>,
    admission: &conn::Admission,
    socket_open: &Arc<std::sync::atomic::AtomicUsize>,
) -> anyhow::Result<()> {
    let token = match &h.token_file {
        Some(p) => Some(http::read_token(p)?),
        None => None,
    };
    let api = Arc::new(http::call::Api::new(
        tx.clone(),
        admission.clone(),
        token,
        h.max_body_bytes,
        socket_open.clone(),
    ));
    if h.unix {
        let l = bind(&state_dir.join("http.sock"))?;
        tokio::spawn(http::serve_unix(l, api.clone()));
    }
    if let Some(addr) = h.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on [http] listen = {addr}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!("HTTP API on {scheme}://{}", l.local_addr().unwrap_or(addr));
        tokio::spawn(http::serve_tcp(l, api, tls));
    }
    Ok(())
}

async fn serve(
    opts: Options,
    listener: Option<tokio::net::UnixListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Exit> {
    prepare_dirs(&opts)?;
    let uid = vigil_sys::getuid();
    let gid = vigil_sys::getgid();
    let reexeced = std::env::var_os("VIGILD_REEXEC").is_some();
    let config = match &opts.config {
        // After a re-exec the processes must stay supervised whatever the file says now.
        Some(p) if reexeced => config::load(p, uid, gid)
            .map_err(|e| warn!("{e:#}; keeping the stored tags"))
            .ok(),
        Some(p) => Some(config::load(p, uid, gid)?),
        None => None,
    };
    let mut settings = config.as_ref().map(|c| c.settings.clone()).unwrap_or_default();
    if let Some(n) = opts.max_connections_per_uid {
        settings.max_connections_per_uid = n;
    }
    let settings_cmap = cmap::Cmap::from_settings(&settings);
    // Held until serve returns, after the shutdown copy: `vigild --recover` waits for none of it.
    let _state_lock = vigil_store::lock_state_dir(&opts.state_dir)?;
    let store = vigil_store::Store::open(&opts.state_dir.join("state.redb"))?;
    if store.rolled_back() {
        warn!(
            "the newest transaction of the state file did not verify (a power cut during a commit, or a damaged \
             page): redb went back to the transaction before it"
        );
    }
    store.set_events_kept(settings.events_kept);
    // Bound once the store is ours (redb locks it), so no other vigild is using this state dir; before any
    // tag starts, since their environment names it.
    let notify = match vigil_sys::NotifySocket::bind(&opts.state_dir.join(pmf::health::NOTIFY_SOCKET_NAME)) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            warn!("no notify socket ({e}): tags get no NOTIFY_SOCKET, and a watchdog cannot be fed");
            None
        }
    };

    if let Err(e) = vigil_sys::set_child_subreaper() {
        warn!("cannot become a child subreaper: {e}");
    }
    // Connections, pidfds and logs all take descriptors: take every one the hard limit allows.
    let nofile = match vigil_sys::raise_nofile_limit() {
        Ok(n) => Some(n),
        Err(e) => {
            warn!("cannot raise the open file limit: {e}");
            None
        }
    };
    let limits = conn::Limits::new(&settings, nofile, uid);
    // Opened before anything is re-adopted, so that no fork is missed in between.
    let connector = match opts.tracking {
        Tracking::Scan => None,
        Tracking::Connector => Some(Arc::new(
            vigil_sys::ProcConnector::open().context("--tracking connector: cannot open the process connector")?,
        )),
        Tracking::Auto => match vigil_sys::ProcConnector::open() {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                warn!("process connector unavailable ({e}); descendants are found by scanning /proc");
                None
            }
        },
    };
    let listener = match listener {
        Some(l) => l,
        None => bind(&opts.socket)?,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut shutdown_asked = false;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut sigchld = signal(SignalKind::child())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // `vigild` blocks these before its thread starts (so that one sent across a re-exec waits for the
    // new image): with the handlers in place, they may come now.
    vigil_sys::set_stop_signals_blocked(false)?;

    let node = opts.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    });
    // In cluster mode the node id comes from etcd (or its cache) before anything can use it: PSM unique
    // names carry it.
    let node_id = match &opts.cluster {
        Some(c) => cluster::node_id(c, &node, &opts.state_dir).await?,
        None => 1,
    };
    let logs = pmf::logs::Logs::new(opts.state_dir.join("logs"), settings.log_max_bytes, settings.log_keep)?;
    let seq = store.last_seq()?;
    let mut d = Daemon {
        node: Node {
            paths: Paths {
                state_dir: opts.state_dir.clone(),
                socket: opts.socket.clone(),
                config: opts.config.clone(),
            },
            settings,
            name: node.clone(),
            id: node_id,
            uid,
            gid,
            started: now(),
            tx: tx.clone(),
            shutting_down: false,
            reexec: None,
            reexec_now: false,
        },
        store: Storage::new(store),
        pmf: Pmf::new(notify, connector, logs, marks::Marks::load(&opts.state_dir)?),
        psm: Default::default(),
        cmap: settings_cmap,
        sam: Default::default(),
        cluster: Cluster {
            view: opts.cluster.as_ref().map(|_| Default::default()),
            cmds: None,
        },
        events: Events {
            seq,
            subscriptions: Vec::new(),
        },
        outbox: Vec::new(),
    };

    if let Some(view) = &mut d.cluster.view {
        // A node that never published starts the cluster stream with this run's events.
        view.first_seq = d.events.seq;
    }
    if d.store.db.is_fresh() {
        // The first start on this state dir creates the node's process set.
        d.emit("psm", "sys.unix.psm.set.create", vec![]);
    }
    d.cmap_restore()?;
    d.cmap_runtime_keys();
    if let Some(c) = &config {
        d.cmap_preload(&c.cmap_keys);
    }
    d.psm_restore()?;
    d.sam_restore()?;
    // A token file others could read refuses the start, before any tag is started again: a failure
    // after that would leave the tags running with nobody watching them.
    if let Some(p) = &d.node.settings.http.token_file {
        http::read_token(p)?;
    }
    // So do TLS files that do not load, for the same reason.
    let tls = match &d.node.settings.http.tls {
        Some(files) => Some(http::tls::server_config(files)?),
        None => None,
    };
    d.restore()?;
    if let Some(c) = config {
        d.ensure_categories(&c.categories);
        let report = d.apply_config(c.tags, &c.manual);
        info!(
            "config: started {:?}, restarted {:?}, stopped {:?}",
            report.started, report.restarted, report.stopped
        );
    }
    d.apply_storm_settings();
    d.emit(
        "vigild",
        "sys.vigil.daemon.start",
        vec![
            events::attr_i("pid", i64::from(std::process::id())),
            events::attr_b("reexec", reexeced),
        ],
    );
    d.finish_step();
    info!(
        pid = std::process::id(),
        socket = %opts.socket.display(),
        tracking = d.tracking_mode(),
        "vigild {} ready with {} tag(s)",
        env!("CARGO_PKG_VERSION"),
        d.pmf.tags.len()
    );

    let leave = opts.cluster.clone().map(|c| {
        let me = cluster::NodeRecord {
            name: node.clone(),
            id: node_id,
            address: std::path::absolute(&opts.socket)
                .unwrap_or_else(|_| opts.socket.clone())
                .display()
                .to_string(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            since_ms: 0,
            down_since_ms: None,
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        tokio::spawn(cluster::run(c, me, tx.clone(), cmd_rx));
        cmd_tx
    });
    d.cluster.cmds = leave.clone();
    // The tags run now: a listener that cannot be had (a TCP port someone else holds) costs the HTTP
    // API, not their supervision.
    // One admission for every listener: a uid's connections and request bytes count once, wherever
    // they come from.
    let admission = conn::Admission::new(limits);
    let socket_open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if let Err(e) = start_http(
        &d.node.settings.http,
        tls,
        &opts.state_dir,
        &tx,
        &admission,
        &socket_open,
    )
    .await
    {
        error!("the HTTP API is not served: {e:#}");
    }
    tokio::spawn(server::accept_loop(listener, tx, admission, socket_open));
    // The socket is bound and listening: a client that connects now is served, so the service manager
    // may start what is ordered after vigild.
    let ready = format!(
        "READY=1\nMAINPID={}\nSTATUS=vigild ready with {} tag(s)",
        std::process::id(),
        d.pmf.tags.len()
    );
    if let Err(e) = sd_notify::notify(&ready) {
        warn!("cannot tell the service manager that vigild is ready: {e}");
    }
    let connector_fd = match &d.pmf.connector {
        Some(c) => Some(SharedFd::register(c.clone())?),
        None => None,
    };
    let notify_fd = match &d.pmf.notify {
        Some(n) => Some(SharedFd::register(n.clone())?),
        None => None,
    };
    let inotify_fd = match &d.pmf.logs.inotify {
        Some(i) => Some(SharedFd::register(i.clone())?),
        None => None,
    };

    let mut poll = vigil_sys::busy_poll::BusyPoll::new(d.node.settings.busy_poll);
    let mut crowding = vigil_sys::busy_poll::Crowding::default();
    // What the loop's thread runs under (`daemon.realtime_priority`), set here, again when a reload
    // changes it, and left while work keeps the loop busy (realtime.rs).
    let mut sched = realtime::Loop::new(d.node.settings.realtime_priority);
    let own_uid = vigil_sys::getuid();
    let exit = loop {
        let deadline = d.next_deadline().map(|t| {
            let wait = t.since(now());
            tokio::time::Instant::now() + wait
        });
        // Not biased: under a storm of process events, requests must still get their turn.
        let mut requests = false;
        // Some of them from clients, which may send the next one soon.
        let mut answered = false;
        tokio::select! {
            _ = sigchld.recv() => d.reap(),
            ready = async { match &connector_fd { Some(f) => f.readable().await, None => std::future::pending().await } } => {
                if let Ok(mut guard) = ready {
                    d.drain_connector();
                    guard.clear_ready();
                }
            }
            Some(msg) = rx.recv() => {
                let now = std::time::Instant::now();
                poll.woken(d.node.settings.busy_poll, now);
                crowding.woken(now);
                // Take what is queued now, in order, up to a bound: a request never waits behind more
                // than one turn's worth of process notifications.
                let mut batch = vec![msg];
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                // Only root's and vigild's own user's requests are polled after: another user's
                // requests cost vigild what they cost, but buy no CPU time beyond that.
                answered = batch
                    .iter()
                    .any(|m| matches!(m, msg::Msg::Request { caller, .. } if caller.uid == 0 || caller.uid == own_uid));
                for msg in batch {
                    d.on_msg(msg);
                }
                requests = true;
                d.psm_mirror();
            }
            ready = async { match &notify_fd { Some(f) => f.readable().await, None => std::future::pending().await } } => {
                if let Ok(mut guard) = ready {
                    // Readiness is an edge: clear it only once the socket is empty.
                    if d.drain_notify() {
                        guard.clear_ready();
                    }
                }
            }
            ready = async { match &inotify_fd { Some(f) => f.readable().await, None => std::future::pending().await } } => {
                if let Ok(mut guard) = ready {
                    d.pmf.logs.on_inotify();
                    guard.clear_ready();
                }
            }
            _ = async { match deadline { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => d.on_timers(),
            _ = sigterm.recv() => d.begin_shutdown(),
            _ = sigint.recv() => d.begin_shutdown(),
            _ = &mut shutdown, if !shutdown_asked => {
                shutdown_asked = true;
                d.begin_shutdown();
            }
            _ = sighup.recv() => match d.check_new_image() {
                Ok(()) => d.node.reexec_now = true,
                Err(e) => tracing::error!("SIGHUP: not re-executing: {}", e.message),
            },
        }
        d.finish_step();
        sched.turn(d.node.settings.realtime_priority);
        // When process events never stop coming, the loop must still let the connection tasks
        // (accepting, reading requests, writing answers) run. After a batch of requests it need not:
        // the next select! finds nothing ready unless more came, and then it is their turn anyway.
        if !requests {
            tokio::task::yield_now().await;
        } else if answered {
            // The next request may be on its way: poll for it a while rather than sleep, so that it does
            // not pay for waking vigild (`daemon.busy_poll_us`, vigil_sys::busy_poll). Each turn of
            // this poll is a yield: the runtime looks at its sockets without sleeping and runs the
            // connection tasks, which hand what they read to `rx`.
            let max = d.node.settings.busy_poll;
            let began = std::time::Instant::now();
            let budget = poll.budget(max);
            let until = began + budget;
            while !budget.is_zero() && rx.is_empty() && std::time::Instant::now() < until {
                tokio::task::yield_now().await;
            }
            poll.polled(!rx.is_empty(), began, max);
            if !budget.is_zero() {
                let ended = std::time::Instant::now();
                sched.polled(ended.saturating_duration_since(began));
                // A real-time loop that keeps its client from running by polling on its CPU moves away.
                if crowding.polled(!rx.is_empty(), began, ended) && sched.realtime() {
                    match vigil_sys::move_off_cpu() {
                        Ok(true) => tracing::debug!("the loop's polls crowd its client out: moved to another CPU"),
                        Ok(false) => tracing::debug!("the loop's polls crowd its client out: no other CPU to move to"),
                        Err(e) => warn!("the loop's polls crowd its client out, and it cannot move: {e}"),
                    }
                }
            }
        }
        if d.shutdown_done() {
            break Exit::Shutdown;
        }
        if let Some(rx) = &mut d.node.reexec {
            // From here a stop waits for the new image (see `keep_stops_for_new_image`).
            let _ = vigil_sys::set_stop_signals_blocked(true);
            // Let the reply reach the client before the process image goes away.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx).await;
            keep_stops_for_new_image(&mut sigterm, &mut sigint).await;
            break Exit::Reexec;
        }
        if d.node.reexec_now {
            let _ = vigil_sys::set_stop_signals_blocked(true);
            keep_stops_for_new_image(&mut sigterm, &mut sigint).await;
            break Exit::Reexec;
        }
    };
    if let (Exit::Shutdown, Some(leave)) = (&exit, leave) {
        // A clean stop is a down node at once for the others, not after the lease's TTL. The loop is
        // over, so waiting here holds up nothing; the cluster task bounds every call with a timeout.
        let (done, wait) = tokio::sync::oneshot::channel();
        if leave.send(cluster::Cmd::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), wait).await;
        }
    }
    if let Exit::Shutdown = exit {
        // The way back if the file is damaged later: a copy of it as it is now, whole and verified at start.
        let t = std::time::Instant::now();
        match d.store.db.close_keeping_previous() {
            Ok(n) => info!(
                "kept a copy of the state file as {} ({n} bytes, {} ms)",
                vigil_store::previous_path(&opts.state_dir.join("state.redb")).display(),
                t.elapsed().as_millis()
            ),
            Err(e) => error!("{e}"),
        }
        let _ = std::fs::remove_file(&opts.socket);
        let _ = std::fs::remove_file(opts.state_dir.join(pmf::health::NOTIFY_SOCKET_NAME));
        info!("every tag is stopped; exiting");
    } else {
        info!("re-executing in place");
    }
    Ok(exit)
}
