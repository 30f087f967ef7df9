//! Handles: the process-wide registry of connections (corosync's hdb database of `cmap_inst`), each
//! with its tracks, iterators, context and the notifications waiting for `cmap_dispatch`.
//!
//! The fd of `cmap_fd_get`. corosync's library has a socket for responses and another for
//! notifications, so a C program polls the second and wakes exactly when there is something to
//! dispatch. vigil has one socket for both, and a request reads past the notifications that arrive
//! before its answer, keeping them in memory: the socket would then be quiet although notifications
//! wait. So the fd given out is an epoll fd watching the socket and an eventfd; the eventfd is
//! signalled exactly when notifications wait in memory (kept so under the handle's lock after every
//! request and every dispatch). Either way the epoll fd polls readable when there is something to read.
//!
//! Locks: a handle's state is locked for one request or to take one notification, never while a
//! callback runs (callbacks call the library, `cmap_finalize` included) nor while dispatch waits (so
//! other threads' requests on the same handle go on meanwhile).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_void};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::event::{epoll, eventfd, poll, EventfdFlags, PollFd, PollFlags};
use vigil_client::proto::{CmapEntry, CmapMap, CmapNotification};
use vigil_client::{Client, ClientError};

use crate::errors::{self, CS_ERR_BAD_HANDLE, CS_ERR_LIBRARY, CS_ERR_TRY_AGAIN, CS_OK};
use crate::value;

/// `cs_dispatch_flags_t`.
pub const CS_DISPATCH_ONE: c_int = 1;
pub const CS_DISPATCH_ALL: c_int = 2;
// CS_DISPATCH_BLOCKING (3), like any value but these, waits and never returns after one notification.
pub const CS_DISPATCH_ONE_NONBLOCKING: c_int = 4;

/// `struct cmap_notify_value`, passed by value to the callback.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NotifyValue {
    pub ty: u32,
    pub len: usize,
    pub data: *const c_void,
}

/// `cmap_notify_fn_t`.
pub type NotifyFn = unsafe extern "C" fn(
    cmap_handle: u64,
    track_handle: u64,
    event: i32,
    key_name: *const c_char,
    new_value: NotifyValue,
    old_value: NotifyValue,
    user_data: *mut c_void,
);

/// A track's callback and its user data (a pointer kept as an address: the library never reads it).
#[derive(Clone, Copy)]
pub struct Track {
    pub notify: NotifyFn,
    pub user_data: usize,
}

/// One `cmap_handle_t`.
pub struct Inst {
    /// The map the handle was opened on: gets, iterations and tracks use it.
    pub map: CmapMap,
    epoll: OwnedFd,
    wake: OwnedFd,
    state: Mutex<State>,
}

pub struct State {
    /// None once finalized.
    client: Option<Client>,
    queue: VecDeque<CmapNotification>,
    /// Whether `wake` holds a count (exactly when `queue` is not empty, or after finalize).
    woken: bool,
    pub context: usize,
    pub tracks: HashMap<u64, Track>,
    pub iters: HashMap<u64, VecDeque<CmapEntry>>,
    pub next_iter: u64,
}

static HANDLES: Mutex<BTreeMap<u64, Arc<Inst>>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

fn handles() -> MutexGuard<'static, BTreeMap<u64, Arc<Inst>>> {
    HANDLES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects to vigild and registers a handle. vigild unreachable is `CS_ERR_LIBRARY`, what corosync's
/// library answers when corosync is not running; a socket served by another user is `CS_ERR_ACCESS`
/// (nothing was sent to it, and nothing it says is believed).
pub fn open(map: CmapMap) -> Result<u64, c_int> {
    let client = Client::connect_default().map_err(|e| crate::errors::from_connect(&e))?;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|_| CS_ERR_LIBRARY)?;
    let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|_| CS_ERR_LIBRARY)?;
    for (fd, tag) in [(client.as_fd(), 0), (wake.as_fd(), 1)] {
        epoll::add(&ep, fd, epoll::EventData::new_u64(tag), epoll::EventFlags::IN).map_err(|_| CS_ERR_LIBRARY)?;
    }
    let inst = Arc::new(Inst {
        map,
        epoll: ep,
        wake,
        state: Mutex::new(State {
            client: Some(client),
            queue: VecDeque::new(),
            woken: false,
            context: 0,
            tracks: HashMap::new(),
            iters: HashMap::new(),
            next_iter: 1,
        }),
    });
    // Like hdb's handles, a handle carries more than an index: the pid in the high half makes a handle
    // of another process (or a stale small number) a bad handle here.
    let handle = (u64::from(std::process::id()) << 32) | NEXT.fetch_add(1, Ordering::Relaxed);
    handles().insert(handle, inst);
    Ok(handle)
}

/// The handle's connection, or `CS_ERR_BAD_HANDLE`.
pub fn get(handle: u64) -> Result<Arc<Inst>, c_int> {
    handles().get(&handle).cloned().ok_or(CS_ERR_BAD_HANDLE)
}

/// Ends a handle: its connection closes (vigild drops its tracks), its tracks and iterators are gone, and
/// a dispatch waiting on it in another thread wakes and answers `CS_ERR_BAD_HANDLE`.
pub fn finalize(handle: u64) -> c_int {
    let Some(inst) = handles().remove(&handle) else {
        return CS_ERR_BAD_HANDLE;
    };
    let mut st = inst.lock();
    st.client = None;
    st.tracks.clear();
    st.iters.clear();
    st.queue.clear();
    if !st.woken {
        st.woken = true;
        inst.signal();
    }
    CS_OK
}

impl Inst {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn signal(&self) {
        // An eventfd's counter cannot overflow here: it is written only when it was read empty.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Keeps the eventfd in step with the queue.
    fn sync_wake(&self, st: &mut State) {
        let want = !st.queue.is_empty();
        if want && !st.woken {
            self.signal();
        } else if !want && st.woken {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&self.wake, &mut buf);
        }
        st.woken = want;
    }

    /// One request on the handle's connection; vigild's refusal through `on_err`.
    pub fn request_with<T>(
        &self,
        f: impl FnOnce(&mut Client, &mut State) -> vigil_client::Result<T>,
        on_err: impl FnOnce(&ClientError) -> c_int,
    ) -> Result<T, c_int> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(mut client) = st.client.take() else {
            return Err(CS_ERR_BAD_HANDLE);
        };
        let r = f(&mut client, st);
        st.queue.extend(client.pending_notifications());
        st.client = Some(client);
        self.sync_wake(st);
        r.map_err(|e| on_err(&e))
    }

    /// One request, vigild's refusal through the common table.
    pub fn request<T>(&self, f: impl FnOnce(&mut Client, &mut State) -> vigil_client::Result<T>) -> Result<T, c_int> {
        self.request_with(f, errors::from_client)
    }

    /// The next notification for a track that still exists, without blocking: from memory, else from the
    /// socket if it has something to read. Notifications of deleted tracks are dropped, as corosync does.
    fn next_ready(&self) -> Result<Option<(CmapNotification, Track)>, c_int> {
        let mut guard = self.lock();
        let st = &mut *guard;
        loop {
            if st.client.is_none() {
                return Err(CS_ERR_BAD_HANDLE);
            }
            if let Some(n) = st.queue.pop_front() {
                self.sync_wake(st);
                match st.tracks.get(&n.track) {
                    Some(t) => return Ok(Some((n, *t))),
                    None => continue,
                }
            }
            let client = st.client.as_mut().ok_or(CS_ERR_BAD_HANDLE)?;
            if !readable(client) {
                return Ok(None);
            }
            // A frame has begun to arrive: vigild writes whole frames, so the rest follows at once.
            client.read_push().map_err(|_| CS_ERR_LIBRARY)?;
            let notes = client.pending_notifications();
            st.queue.extend(notes);
        }
    }

    /// Waits, without the lock, until the epoll fd is readable (a notification, or the end of the
    /// connection or of the handle).
    fn wait(&self) -> Result<(), c_int> {
        let mut fds = [PollFd::new(&self.epoll, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(_) => Err(CS_ERR_LIBRARY),
        }
    }

    fn finalized(&self) -> bool {
        self.lock().client.is_none()
    }
}

/// Whether the socket has something to read (or has ended, which the read then reports).
fn readable(client: &Client) -> bool {
    let mut fds = [PollFd::new(client, PollFlags::IN)];
    let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// `cmap_dispatch`: ONE waits for one notification; ALL delivers every one there is without waiting;
/// BLOCKING delivers until the handle is finalized or the connection fails; ONE_NONBLOCKING delivers at
/// most one and answers `CS_ERR_TRY_AGAIN` if there is none. Finalizing the handle in a callback ends the
/// dispatch with `CS_ERR_BAD_HANDLE`, as corosync's library does.
pub fn dispatch(handle: u64, inst: &Inst, flags: c_int) -> c_int {
    loop {
        match inst.next_ready() {
            Err(cs) => return cs,
            Ok(Some((n, track))) => {
                deliver(handle, &n, track);
                if inst.finalized() {
                    return CS_ERR_BAD_HANDLE;
                }
                if flags == CS_DISPATCH_ONE || flags == CS_DISPATCH_ONE_NONBLOCKING {
                    return CS_OK;
                }
            }
            Ok(None) => match flags {
                CS_DISPATCH_ALL => return CS_OK,
                CS_DISPATCH_ONE_NONBLOCKING => return CS_ERR_TRY_AGAIN,
                // ONE, BLOCKING, and (as in corosync's library) any other value.
                _ => {
                    if let Err(cs) = inst.wait() {
                        return cs;
                    }
                }
            },
        }
    }
}

/// Calls a track's callback with the values as corosync passes them: by value, `{0, 0, NULL}` when unset,
/// the data valid for the duration of the call.
fn deliver(handle: u64, n: &CmapNotification, track: Track) {
    let key = std::ffi::CString::new(n.key.as_str()).unwrap_or_default();
    let new = n.new.as_ref().map(|v| (value::type_code(v), value::to_bytes(v)));
    let old = n.old.as_ref().map(|v| (value::type_code(v), value::to_bytes(v)));
    let c = |v: &Option<(u32, Vec<u8>)>| match v {
        Some((ty, b)) => NotifyValue {
            ty: *ty,
            len: b.len(),
            data: b.as_ptr().cast(),
        },
        None => NotifyValue {
            ty: 0,
            len: 0,
            data: std::ptr::null(),
        },
    };
    // SAFETY: `notify` is the non-NULL function the program registered with cmap_track_add for this
    // track, with cmap.h's signature; the key and the values outlive the call, as cmap.h promises.
    unsafe {
        (track.notify)(
            handle,
            n.track,
            n.event as i32,
            key.as_ptr(),
            c(&new),
            c(&old),
            track.user_data as *mut c_void,
        )
    };
}
