//! SAM, the service availability manager: corosync's `sam.h` in Rust, one process-wide instance as in C.
//!
//! ```text
//! initialize(interval, policy) ── register() ──fork──► child: returns Ok(instance), runs the application
//!                                     │                   start / hc_send ... / stop / data_store ...
//!                                     └─ parent: stays in register() as the supervisor, forever:
//!                                        timer, policy, data; a failed child is replaced by a new one,
//!                                        which returns from register() again with instance + 1
//! ```
//!
//! The supervisor and its child talk over a socketpair (commands one way, replies the other; a dead peer
//! is an error, never a SIGPIPE). The supervisor reports every change to vigild when it can reach it
//! (events `sys.vigil.sam.*`, the record `vigil sam ls` shows, the data blob kept across a restart of vigild,
//! and with the CMAP flag corosync's keys `resources.process.<supervisor pid>.*`); with the QUORUM flag it
//! follows vigild's quorum. Without those flags SAM works without vigild too, as corosync's library does.
//! While an instance runs, the reports go through a thread of their own (`sam/report.rs`): the supervisor
//! (`sam/supervisor.rs`) never waits for vigild to watch its application. In cluster mode vigild hands it a
//! deadline with each renewal of the node's lease, after which it takes quorum as lost by itself, so that a
//! stalled or dead vigild cannot keep a QUORUM application running on a node the others count down.
//!
//! Error values are corosync's (`cs_error_t`, see [`SamError::cs_error`]), and each call is accepted in
//! exactly the states `sam.h` gives. The rules are those of corosync's lib/sam.c, followed exactly for C
//! and Rust programs alike (see docs/sam.md): the arguments are checked in its order, the warning is
//! never taken back within an instance, and the supervisor exits with `WEXITSTATUS` of its last instance.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use vigil_core::sam::{Next, Policy};
use vigil_proto::{SamChange, SamState, SAM_DATA_MAX};
use vigil_sys::busy_poll::BusyPoll;

use crate::{Client, ClientError};

mod inbox;
mod report;
mod standby;
mod supervisor;

use supervisor::{Supervised, Supervisor};

pub use vigil_core::sam::{POLICY_CMAP, POLICY_QUIT, POLICY_QUORUM, POLICY_RESTART};
/// The forks [`register_forking`] can be given (vigil-sys's, for the C library, which depends on this
/// crate alone).
pub use vigil_sys::{fork, fork_single_threaded, Forked, SysError as ForkError};

/// What a SAM call can return besides success, with corosync's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SamError {
    /// `CS_ERR_LIBRARY`: an internal call failed (pipe, fork, the link to the supervisor).
    #[error("SAM library error (the link between the application and its supervisor failed)")]
    Library,
    /// `CS_ERR_TRY_AGAIN`.
    #[error("try again")]
    TryAgain,
    /// `CS_ERR_INVALID_PARAM`: a bad argument, or a call the policy does not allow.
    #[error("invalid parameter")]
    InvalidParam,
    /// `CS_ERR_NO_MEMORY`: the data is too large.
    #[error("no memory (data too large)")]
    NoMemory,
    /// `CS_ERR_BAD_HANDLE`: the call is not allowed in the current state (not initialized, not
    /// registered, not started, finalized, or a second initialize/register).
    #[error("bad handle (call not allowed in this state)")]
    BadHandle,
    /// `CS_ERR_ACCESS`: the socket that should be vigild's is served by another user (see
    /// [`crate::ClientError::Untrusted`]); nothing was sent to it.
    #[error("access denied (the vigild socket is not served by root or this user)")]
    Access,
}

impl SamError {
    /// The `cs_error_t` value.
    pub fn cs_error(self) -> i32 {
        match self {
            SamError::Library => 2,
            SamError::TryAgain => 6,
            SamError::InvalidParam => 7,
            SamError::NoMemory => 8,
            SamError::BadHandle => 9,
            SamError::Access => 11,
        }
    }

    fn from_cs(code: i32) -> SamError {
        match code {
            6 => SamError::TryAgain,
            7 => SamError::InvalidParam,
            8 => SamError::NoMemory,
            9 => SamError::BadHandle,
            11 => SamError::Access,
            _ => SamError::Library,
        }
    }
}

/// `sam_hc_callback_t`: 0 means healthy.
pub type HcCallback = Arc<dyn Fn() -> i32 + Send + Sync>;

type Result<T> = std::result::Result<T, SamError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    NotInitialized,
    Initialized,
    Registered,
    Started,
    Finalized,
    /// This process is the supervisor: no SAM call is for it.
    Supervising,
}

// Commands from the application to its supervisor, and the replies.
const CMD_START: u8 = 0;
const CMD_STOP: u8 = 1;
const CMD_HB: u8 = 2;
const CMD_DATA: u8 = 3;
const CMD_WARN_SIGNAL: u8 = 4;
const CMD_MARK_FAILED: u8 = 5;
const REPLY_OK: u8 = 0;
const REPLY_ERROR: u8 = 1;

/// The callback thread's orders.
enum CbOrder {
    Start,
    Stop,
}

struct Inner {
    status: Status,
    /// As given to `initialize`: 0 or less is no time limit.
    interval_ms: i32,
    policy: u32,
    warn_signal: i32,
    instance: u32,
    data: Option<Vec<u8>>,
    /// The application's end of the link to its supervisor.
    link: Option<OwnedFd>,
    vigild: Option<Client>,
    socket: Option<PathBuf>,
    quorate: bool,
    callback: Option<HcCallback>,
    cb_shared: Option<Arc<Mutex<Option<HcCallback>>>>,
    cb_tx: Option<mpsc::Sender<CbOrder>>,
    /// When the last heartbeat went to the supervisor (see [`hc_send`]).
    last_beat: Option<Instant>,
    /// How long to poll for the supervisor's next reply (see [`read_reply_soon`]).
    reply_spin: BusyPoll,
}

static STATE: Mutex<Inner> = Mutex::new(Inner {
    status: Status::NotInitialized,
    interval_ms: 0,
    policy: 0,
    warn_signal: libc_sigterm(),
    instance: 0,
    data: None,
    link: None,
    vigild: None,
    socket: None,
    quorate: false,
    callback: None,
    cb_shared: None,
    cb_tx: None,
    last_beat: None,
    reply_spin: BusyPoll::new(Duration::from_micros(crate::DEFAULT_SPIN_US)),
});

const fn libc_sigterm() -> i32 {
    15
}

const SIGKILL: i32 = 9;

fn lock() -> MutexGuard<'static, Inner> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `sam_initialize`: the health-check interval in milliseconds (0 or less: no time limit, only the
/// application's death is watched) and the recovery policy (`POLICY_QUIT` or `POLICY_RESTART`, with
/// `POLICY_QUORUM` and `POLICY_CMAP`). As in corosync's `sam_initialize`, the state is checked first (a
/// second call is `BadHandle`, whatever its arguments), then the policy (`InvalidParam`); the interval
/// is not checked. With QUORUM, vigild must be reachable now (`$VIGIL_SOCKET` or the default socket),
/// else `Library`; with CMAP it is needed only by `register`, where corosync connects to its cmap.
pub fn initialize(interval_ms: i32, policy: u32) -> Result<()> {
    let mut g = lock();
    if g.status != Status::NotInitialized {
        return Err(SamError::BadHandle);
    }
    let p = Policy::new(policy).map_err(|_| SamError::InvalidParam)?;
    let socket = crate::default_socket_path();
    // No vigild is fine (the application is then supervised alone); an impostor is not: the
    // application must learn that its reports would go to another user.
    let mut vigild = match Client::connect(&socket) {
        Ok(c) => Some(c),
        Err(ClientError::Untrusted { .. }) => return Err(SamError::Access),
        Err(_) => None,
    };
    if p.quorum() && vigild.is_none() {
        return Err(SamError::Library);
    }
    let mut quorate = true;
    if p.quorum() {
        // With its deadline: the supervisor stops the application on its own when vigild goes quiet.
        quorate = vigild
            .as_mut()
            .expect("checked")
            .quorum_lease_track()
            .map_err(|_| SamError::Library)?;
    }
    g.status = Status::Initialized;
    g.interval_ms = interval_ms;
    g.policy = policy;
    g.warn_signal = libc_sigterm();
    g.data = None;
    g.vigild = vigild;
    g.socket = Some(socket);
    g.quorate = quorate;
    Ok(())
}

/// `sam_register`: forks. The child returns `Ok(instance)` (1 for the first instance, one more after each
/// recovery); the caller's process stays here as the supervisor and never returns, except with an error
/// when it cannot go on (then `Library`). A second call, or one before `initialize`, is `BadHandle`.
/// With the CMAP flag, vigild must be reachable (corosync's `sam_cmap_register`), else `Library`.
///
/// The process must have one thread when it calls `register` (threads may start in the application
/// afterwards): with other threads running it forks nothing and answers `Library`, since a child of a
/// multi-threaded process inherits locks those threads held. corosync's C library forks whatever threads
/// the process has; `libsam.so.4` does the same through [`register_forking`].
pub fn register() -> Result<u32> {
    register_forking(vigil_sys::fork_single_threaded)
}

/// [`register`], with each fork (the first instance's and every recovery's) made by `fork`.
///
/// This is the C library's way in: `sam_register` forks as corosync's does, in a process that may have
/// other threads, with `unsafe { vigil_client::sam::fork() }` under the contract the C caller accepts.
/// In the child, `register` itself takes no lock but the SAM lock, which the forking thread holds, and
/// frees memory (kept usable by glibc) before it returns to the application. In the parent (the
/// supervisor), the recoveries' forks are made with one thread: the reporter thread, when one was
/// needed (`sam/report.rs`), is ended before each.
pub fn register_forking(mut fork: impl FnMut() -> std::result::Result<Forked, ForkError>) -> Result<u32> {
    let mut g = lock();
    if g.status != Status::Initialized {
        return Err(SamError::BadHandle);
    }
    let policy = Policy::new(g.policy).map_err(|_| SamError::InvalidParam)?;
    if policy.cmap() && g.vigild.is_none() {
        let socket = g.socket.clone().unwrap_or_else(crate::default_socket_path);
        g.vigild = Some(Client::connect(&socket).map_err(|_| SamError::Library)?);
    }
    let mut sup = Supervisor {
        policy,
        marked_failed: false,
        interval_ms: g.interval_ms,
        warn_signal: g.warn_signal,
        instance: g.instance,
        child: 0,
        state: SamState::Stopped,
        data: g.data.clone(),
        link: Some(report::Link {
            vigild: g.vigild.take(),
            socket: g.socket.clone(),
            data: g.data.clone(),
            quorum: policy.quorum(),
            ..Default::default()
        }),
        reporter: None,
        nowait: false,
        inflight: Default::default(),
        quorate: g.quorate,
        quorum_until: None,
        acted_quorate: g.quorate,
        pending: None,
        answers: Vec::new(),
        epoch: Instant::now(),
        inbox: Default::default(),
        accepted: 0,
        ended: None,
        standby_due: None,
        deferred: Vec::new(),
        flush_due: None,
        spin: BusyPoll::new(crate::answer_spin()),
        replied: false,
    };
    // A policy that restarts keeps the next instance forked ahead of need (sam/standby.rs).
    let standbys = policy.restarts() && standby::enabled();
    let mut next: Option<standby::Standby> = None;
    loop {
        // The last instance's end is told after the next fork (fork first, report after); when no next
        // instance can be made, register answers `Library` in the supervisor as corosync's does, and
        // vigild hears of that end first.
        sup.instance = sup.instance.wrapping_add(1);
        let release = standby::Release {
            instance: sup.instance,
            warn_signal: sup.warn_signal,
            data: sup.data.clone(),
        };
        let released = next.take().and_then(|s| s.release(&release));
        let (pid, ours) = match released {
            Some(r) => r,
            None => {
                let pair = rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None);
                let Ok((ours, theirs)) = pair else {
                    sup.report_ended();
                    return Err(SamError::Library);
                };
                let Ok(forked) = fork() else {
                    sup.report_ended();
                    return Err(SamError::Library);
                };
                match forked {
                    Forked::Child => {
                        drop(ours);
                        drop(sup);
                        return become_instance(g, theirs, policy, release);
                    }
                    Forked::Parent(pid) => {
                        drop(theirs);
                        (pid, ours)
                    }
                }
            }
        };
        g.status = Status::Supervising;
        drop(g);
        let mut fork_next = || -> Option<supervisor::Becoming> {
            if !standbys {
                return None;
            }
            // Under the SAM lock, as the instances' forks: no other thread of the process holds it in
            // the child.
            let guard = lock();
            match standby::fork(&mut fork) {
                standby::Forked::Standby(link, parked) => Some(supervisor::Becoming { link, parked, guard }),
                standby::Forked::Supervisor(s) => {
                    next = s;
                    None
                }
            }
        };
        let supervised = sup.supervise(pid, ours, &mut fork_next);
        let (ending, status) = match supervised {
            Ok(Supervised::Ended(ending, status)) => (ending, status),
            Ok(Supervised::Standby(b)) => {
                // The supervisor's copy: its connection to vigild, its data, are not this process's.
                drop(sup);
                let r = standby::wait(&b.link, b.parked);
                return become_instance(b.guard, b.link, policy, r);
            }
            Err(e) => {
                if let Some(s) = next.take() {
                    s.dismiss();
                }
                return Err(e);
            }
        };
        let policy = if sup.marked_failed {
            sup.policy.into_quit()
        } else {
            sup.policy
        };
        match vigil_core::sam::next(policy, ending) {
            Next::Restart => g = lock(),
            Next::Quit { failed } => {
                if let Some(s) = next.take() {
                    s.dismiss();
                }
                let code = exit_code(status);
                sup.report_ended();
                let _ = sup.report(SamChange::Quit { code, failed });
                std::process::exit(code);
            }
        }
    }
}

/// In a new instance (forked now, or a standby just released): `register` returns in it. corosync writes
/// the CMAP keys (state "stopped") before it forks, so they are there when register returns: with CMAP
/// the instance waits for the supervisor to have reported it. Without CMAP the instance runs at once, as
/// corosync's does (lib/sam.c, sam_register: the child returns right after the fork): the supervisor
/// sends nothing to wait for.
fn become_instance(
    mut g: MutexGuard<'static, Inner>,
    link: OwnedFd,
    policy: Policy,
    r: standby::Release,
) -> Result<u32> {
    if policy.cmap() {
        read_reply(&link)?;
    }
    g.status = Status::Registered;
    g.last_beat = None;
    g.instance = r.instance;
    g.data = r.data;
    g.warn_signal = r.warn_signal;
    g.link = Some(link);
    // The supervisor's connection to vigild is its own: this copy closes.
    g.vigild = None;
    Ok(g.instance)
}

/// The supervisor exits as corosync's `sam_register` does, with `exit(WEXITSTATUS(child_status))`: the
/// application's exit code, or 0 when a signal ended it (WEXITSTATUS of a signal's status is 0). Callers
/// written for corosync check exactly this.
fn exit_code(status: vigil_sys::WaitStatus) -> i32 {
    match status {
        vigil_sys::WaitStatus::Exited(c) => c,
        vigil_sys::WaitStatus::Signaled { .. } => 0,
    }
}

fn send_all(fd: &OwnedFd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(SamError::Library),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Err(SamError::Library),
        }
    }
    Ok(())
}

fn recv_exact(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::net::recv(fd, &mut buf[got..], RecvFlags::empty()) {
            Ok((0, _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok((n, _)) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn read_reply(fd: &OwnedFd) -> Result<()> {
    let mut b = [0u8; 1];
    recv_exact(fd, &mut b).map_err(|_| SamError::Library)?;
    match b[0] {
        REPLY_OK => Ok(()),
        REPLY_ERROR => {
            let mut c = [0u8; 4];
            recv_exact(fd, &mut c).map_err(|_| SamError::Library)?;
            Err(SamError::from_cs(i32::from_le_bytes(c)))
        }
        _ => Err(SamError::Library),
    }
}

fn command(g: &mut Inner, cmd: u8, payload: &[u8], reply: bool) -> Result<()> {
    let fd = g.link.as_ref().ok_or(SamError::BadHandle)?;
    let mut msg = Vec::with_capacity(1 + payload.len());
    msg.push(cmd);
    msg.extend_from_slice(payload);
    send_all(fd, &msg)?;
    if reply {
        read_reply_soon(fd, &mut g.reply_spin)?;
    }
    Ok(())
}

/// The supervisor's reply, polled for a moment before sleeping for it, as vigil's client polls for
/// vigild's answers ([`crate::answer_spin`], `VIGIL_SPIN_US`): a loop of data stores would otherwise
/// pay two scheduler wake-ups a store (the supervisor polls its link for the next command likewise).
fn read_reply_soon(fd: &OwnedFd, spin: &mut BusyPoll) -> Result<()> {
    let max = crate::answer_spin();
    let began = Instant::now();
    let found = vigil_sys::busy_poll::spin(spin.budget(max), || readable(fd)).is_some();
    spin.polled(found, began, max);
    let r = read_reply(fd);
    if !found {
        spin.woken(max, Instant::now());
    }
    r
}

/// Whether `fd` has something to read (or is at its end, or failed): what a blocking read would not
/// wait for.
pub(super) fn readable(fd: &OwnedFd) -> Option<()> {
    let mut b = [0u8; 1];
    match rustix::net::recv(fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => None,
        _ => Some(()),
    }
}

/// `sam_start`: health checking begins; from now on `hc_send` is due every interval (or the callback
/// answers). With QUORUM it waits while the node is not quorate. Only after `register` and not started:
/// else `BadHandle`.
pub fn start() -> Result<()> {
    let mut g = lock();
    if g.status != Status::Registered {
        return Err(SamError::BadHandle);
    }
    let answered = Policy::new(g.policy).is_ok_and(Policy::start_is_answered);
    command(&mut g, CMD_START, &[], answered)?;
    g.last_beat = None;
    if let Some(tx) = g.cb_tx.as_ref().filter(|_| g.callback.is_some()) {
        let _ = tx.send(CbOrder::Start);
    }
    g.status = Status::Started;
    Ok(())
}

/// `sam_stop`: health checking pauses. Only when started: else `BadHandle`.
pub fn stop() -> Result<()> {
    let mut g = lock();
    if g.status != Status::Started {
        return Err(SamError::BadHandle);
    }
    let answered = Policy::new(g.policy).is_ok_and(Policy::stop_is_answered);
    command(&mut g, CMD_STOP, &[], answered)?;
    g.last_beat = None;
    if let Some(tx) = g.cb_tx.as_ref() {
        let _ = tx.send(CbOrder::Stop);
    }
    g.status = Status::Registered;
    Ok(())
}

/// `sam_hc_send`: one heartbeat. Only when started: else `BadHandle`.
pub fn hc_send() -> Result<()> {
    let mut g = lock();
    if g.status != Status::Started {
        return Err(SamError::BadHandle);
    }
    // A heartbeat right after one the supervisor has tells it nothing new: within BEAT_WINDOW (and a
    // hundredth of the interval) of the last one sent, it is not sent again. The supervisor's deadline
    // then runs from at most that much earlier; a loop of hc_send costs a clock read, not a system call
    // (docs/sam.md, "Differences from the original").
    let now = Instant::now();
    if g.last_beat
        .is_some_and(|t| now.duration_since(t) < beat_window(g.interval_ms))
    {
        return Ok(());
    }
    command(&mut g, CMD_HB, &[], false)?;
    g.last_beat = Some(now);
    Ok(())
}

/// Heartbeats sent within this long of the last one are not sent again (see [`hc_send`]).
pub const BEAT_WINDOW: Duration = Duration::from_micros(100);

fn beat_window(interval_ms: i32) -> Duration {
    match u64::try_from(interval_ms) {
        Ok(ms) if ms > 0 => BEAT_WINDOW.min(Duration::from_micros(ms * 10)),
        _ => BEAT_WINDOW,
    }
}

/// `sam_finalize`: stops health checking if started; no later start is possible. `BadHandle` before
/// `initialize` or after a first finalize.
pub fn finalize() -> Result<()> {
    if lock().status == Status::Started {
        stop()?;
    }
    let mut g = lock();
    if !matches!(g.status, Status::Initialized | Status::Registered) {
        return Err(SamError::BadHandle);
    }
    g.status = Status::Finalized;
    g.data = None;
    Ok(())
}

fn usable(g: &Inner) -> Result<()> {
    match g.status {
        Status::Initialized | Status::Registered | Status::Started => Ok(()),
        _ => Err(SamError::BadHandle),
    }
}

/// `sam_warn_signal_set`: the signal sent one interval before SIGKILL (default SIGTERM; SIGKILL means no
/// warning). `BadHandle` before `initialize` or after `finalize`. Any number is accepted, as corosync
/// accepts it: one that is no signal (0, or out of range) makes the warning a no-op, and the next silent
/// interval still kills.
pub fn warn_signal_set(signal: i32) -> Result<()> {
    let mut g = lock();
    usable(&g)?;
    if g.link.is_some() {
        command(&mut g, CMD_WARN_SIGNAL, &signal.to_le_bytes(), true)?;
    }
    g.warn_signal = signal;
    Ok(())
}

/// `sam_data_store`: keeps `data` (None or empty: deletes it) with the supervisor, so that it survives
/// recoveries. `BadHandle` before `initialize` or after `finalize`; `NoMemory` when it is larger than
/// [`SAM_DATA_MAX`] (what vigild keeps); `Library` when the supervisor cannot be reached.
pub fn data_store(data: Option<&[u8]>) -> Result<()> {
    let mut g = lock();
    usable(&g)?;
    let data = data.filter(|d| !d.is_empty());
    if data.is_some_and(|d| d.len() > SAM_DATA_MAX) {
        return Err(SamError::NoMemory);
    }
    if g.link.is_some() {
        let d = data.unwrap_or(&[]);
        let mut payload = Vec::with_capacity(9 + d.len());
        payload.push(data.is_some() as u8);
        payload.extend_from_slice(&(d.len() as u64).to_le_bytes());
        payload.extend_from_slice(d);
        command(&mut g, CMD_DATA, &payload, true)?;
    }
    g.data = data.map(<[u8]>::to_vec);
    Ok(())
}

/// `sam_data_getsize`: the size of the stored data (0: none). `BadHandle` before `initialize` or after
/// `finalize`.
pub fn data_getsize() -> Result<usize> {
    let g = lock();
    usable(&g)?;
    Ok(g.data.as_ref().map_or(0, Vec::len))
}

/// `sam_data_restore`: copies the stored data into `buf` and answers its size (0: nothing stored, `buf`
/// untouched). `InvalidParam` when `buf` is smaller than the data; `BadHandle` before `initialize` or
/// after `finalize`.
pub fn data_restore(buf: &mut [u8]) -> Result<usize> {
    let g = lock();
    usable(&g)?;
    let Some(d) = g.data.as_ref() else { return Ok(0) };
    if buf.len() < d.len() {
        return Err(SamError::InvalidParam);
    }
    buf[..d.len()].copy_from_slice(d);
    Ok(d.len())
}

/// The stored data, whole (empty: none).
pub fn data_restore_vec() -> Result<Vec<u8>> {
    let g = lock();
    usable(&g)?;
    Ok(g.data.clone().unwrap_or_default())
}

/// `sam_mark_failed`: the supervisor kills this instance without warning, sets the CMAP state "failed"
/// and quits (whatever the policy; the CMAP key `recovery` keeps its value, as in corosync). Only with the CMAP flag (`InvalidParam` otherwise), after `register`
/// (`BadHandle` otherwise).
pub fn mark_failed() -> Result<()> {
    let mut g = lock();
    if !matches!(g.status, Status::Registered | Status::Started) {
        return Err(SamError::BadHandle);
    }
    if g.policy & POLICY_CMAP == 0 {
        return Err(SamError::InvalidParam);
    }
    command(&mut g, CMD_MARK_FAILED, &[], false)
}

/// `sam_hc_callback_register`: event-driven checking. With a callback, a thread of the application sends
/// the heartbeats itself (four per interval) while the callback returns 0 (asked once per interval); a
/// non-zero answer stops them, so the supervisor warns and then kills. None switches back to
/// `hc_send`. Only after `register` and before `start` (`BadHandle`); `InvalidParam` with interval 0, or
/// None as the first registration.
pub fn hc_callback_register(cb: Option<HcCallback>) -> Result<()> {
    let mut g = lock();
    if g.status != Status::Registered {
        return Err(SamError::BadHandle);
    }
    // corosync refuses only 0; a negative interval gives a thread that never ticks (poll(2) waits forever
    // on the negative quarter).
    if g.interval_ms == 0 {
        return Err(SamError::InvalidParam);
    }
    if let Some(shared) = &g.cb_shared {
        *shared.lock().unwrap_or_else(|e| e.into_inner()) = cb.clone();
        g.callback = cb;
        return Ok(());
    }
    let Some(cb) = cb else {
        return Err(SamError::InvalidParam);
    };
    let shared = Arc::new(Mutex::new(Some(cb.clone())));
    let (tx, rx) = mpsc::channel();
    let tick = (g.interval_ms > 0).then(|| Duration::from_millis((g.interval_ms as u64 / 4).max(1)));
    let thread_cb = shared.clone();
    std::thread::Builder::new()
        .name("sam-hc".into())
        .spawn(move || callback_thread(rx, thread_cb, tick))
        .map_err(|_| SamError::Library)?;
    g.cb_shared = Some(shared);
    g.cb_tx = Some(tx);
    g.callback = Some(cb);
    Ok(())
}

/// Sends a heartbeat every tick while started, and asks the callback every fourth tick; once the callback
/// reports a failure, no more heartbeats go out.
fn callback_thread(rx: mpsc::Receiver<CbOrder>, cb: Arc<Mutex<Option<HcCallback>>>, tick: Option<Duration>) {
    let mut started = false;
    let mut failed = false;
    let mut count = 0u32;
    loop {
        let order = if let Some(tick) = tick.filter(|_| started && !failed) {
            match rx.recv_timeout(tick) {
                Ok(o) => Some(o),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(o) => Some(o),
                Err(_) => return,
            }
        };
        match order {
            Some(CbOrder::Start) => started = true,
            Some(CbOrder::Stop) => started = false,
            None => {
                let f = cb.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let Some(f) = f else { continue };
                if hc_send().is_ok() {
                    count += 1;
                }
                if count >= 4 {
                    count = 0;
                    if f() != 0 {
                        failed = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod beat_tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_sent_again_after_the_window_or_a_hundredth_of_the_interval() {
        assert_eq!(beat_window(60_000), BEAT_WINDOW);
        assert_eq!(beat_window(5), Duration::from_micros(50));
        assert_eq!(beat_window(1), Duration::from_micros(10));
        // No time limit: nothing depends on the heartbeats' timing.
        assert_eq!(beat_window(0), BEAT_WINDOW);
        assert_eq!(beat_window(-1), BEAT_WINDOW);
    }
}
