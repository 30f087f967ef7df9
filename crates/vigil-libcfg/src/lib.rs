//! libcfg.so.1: the process set manager's calls of Tru64's configuration management library
//! (`cfg_psm_memops(3)`, `cfg_psm_catops(3)`, `psm.h(4)`), on vigild's PSM through vigil-client.
//!
//! Statuses are Tru64's: a framework status in the low 16 bits and, for a refusal by the process set
//! manager, its errno in the high 16 bits (`CFG_STATUS_MAKE(errno, CFG_FRAME_SUCCESS)`). Arrays handed
//! out by the `*get` calls are malloc'd and remembered, so that `cfg_psm_memfree` accepts the array or a
//! pointer to it (the page's synopsis and its example differ).

// A C ABI needs raw pointers and exported symbols: this crate allows unsafe code, each block with a
// `// SAFETY:` line (ARCHITECTURE.md names the crates that may).
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_uint, CStr};
use std::sync::{Mutex, MutexGuard};

use vigil_client::proto::{ErrorCode, PsmCategory, PsmMember, PsmNode};
use vigil_client::{Client, ClientError};

const CFG_SUCCESS: c_int = 0;
const CFG_FRAME_EPRIVS: c_int = 4;
const CFG_FRAME_ECONNECT: c_int = 6;
const CFG_FRAME_ESUBSYS: c_int = 8;

const PSM_MEMLEN: usize = 32;
const PSM_STATELEN: usize = 32;
const PSM_ARGVLEN: usize = 256;
const PSM_CATLEN: usize = 64;
const PSM_FL_EXIT: c_uint = 0x1;
const PSM_FL_ARGTRUNC: c_uint = 0x2;
const PSM_EXIT_UNKNOWN: c_uint = 0xffff_ffff;
const ALL_NODES: &str = "*";

/// `struct psm_memrsp_s`, field for field.
#[repr(C)]
pub struct PsmMemrsp {
    mrs_listidx: c_uint,
    mrs_listcnt: c_uint,
    mrs_total: c_uint,
    mrs_pid: c_uint,
    mrs_exitcode: c_uint,
    mrs_flags: c_uint,
    mrs_name: [c_char; PSM_MEMLEN],
    mrs_state: [c_char; PSM_STATELEN],
    mrs_argv: [c_char; PSM_ARGVLEN],
}

/// `struct psm_catrsp_s`.
#[repr(C)]
pub struct PsmCatrsp {
    crs_listidx: c_uint,
    crs_listcnt: c_uint,
    crs_total: c_uint,
    crs_members: c_uint,
    crs_running: c_uint,
    crs_name: [c_char; PSM_CATLEN],
}

/// The `_PSM_CAT_*` indices' names, in psm.h's order.
const CATEGORIES: [&CStr; 12] = [
    c"mountd",
    c"nfsd",
    c"portmap",
    c"inetd",
    c"syslogd",
    c"cron",
    c"sshd",
    c"named",
    c"sendmail",
    c"lpd",
    c"ntpd",
    c"httpd",
];

fn category_of(idx: c_int) -> Option<&'static CStr> {
    usize::try_from(idx).ok().and_then(|i| CATEGORIES.get(i)).copied()
}

fn subsys(errno: c_int) -> c_int {
    errno << 16
}

/// One connection for the process, opened on first use and again after it failed.
static CONN: Mutex<Option<Client>> = Mutex::new(None);
/// The arrays handed out and not freed yet (addresses).
static ISSUED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a wire error means to a C caller.
fn status_of(e: &ClientError) -> c_int {
    match e {
        ClientError::Server(w) => match w.code {
            ErrorCode::NoProcess => subsys(libc::ESRCH),
            ErrorCode::AlreadyExists => subsys(libc::EALREADY),
            ErrorCode::Busy => subsys(libc::EAGAIN),
            ErrorCode::NotFound => subsys(libc::ENOENT),
            ErrorCode::LimitExceeded => subsys(libc::ENOSPC),
            ErrorCode::Unsupported => subsys(libc::ENOTSUP),
            // Cluster mode: the node is down, unknown, or did not answer in time (docs/cfg.md).
            ErrorCode::NodeDown => subsys(libc::EHOSTDOWN),
            ErrorCode::InvalidArgument => subsys(libc::EINVAL),
            ErrorCode::PermissionDenied => CFG_FRAME_EPRIVS,
            _ => CFG_FRAME_ESUBSYS,
        },
        ClientError::Connect { .. } => CFG_FRAME_ECONNECT,
        // The socket is served by another user: a privilege problem, not a missing daemon.
        ClientError::Untrusted { .. } => CFG_FRAME_EPRIVS,
        _ => CFG_FRAME_ESUBSYS,
    }
}

/// Runs `f` on the connection; a broken connection is reopened once (vigild may have restarted).
fn with_client<T>(f: impl Fn(&mut Client) -> Result<T, ClientError>) -> Result<T, c_int> {
    let mut g = lock(&CONN);
    for attempt in 0..2 {
        if g.is_none() {
            *g = Some(Client::connect_default().map_err(|e| status_of(&e))?);
        }
        match f(g.as_mut().expect("connected")) {
            Ok(v) => return Ok(v),
            Err(e @ ClientError::Server(_)) => return Err(status_of(&e)),
            Err(e) => {
                *g = None;
                if attempt == 1 {
                    return Err(status_of(&e));
                }
            }
        }
    }
    Err(CFG_FRAME_ESUBSYS)
}

/// A C string argument; None for NULL. Not UTF-8 is EINVAL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn text(p: *const c_char) -> Result<Option<String>, c_int> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(|s| Some(s.to_string()))
        .map_err(|_| subsys(libc::EINVAL))
}

/// The node argument as vigild names nodes: NULL is this node, `_PSM_ALLNODE` every node.
fn wire_node(node: Option<String>) -> PsmNode {
    match node.as_deref() {
        None => PsmNode(String::new()),
        Some(ALL_NODES) => PsmNode("all".into()),
        Some(n) => PsmNode(n.to_string()),
    }
}

/// Runs a query on the nodes `node` names and merges what answered: a query succeeds when any node
/// answered (the first error is returned when none did). `_PSM_ALLNODE` is every node `vigil nodes` lists:
/// without cluster mode, this node.
fn query_nodes<T>(
    node: Option<String>,
    q: impl Fn(&mut Client, &PsmNode) -> Result<Vec<T>, ClientError>,
) -> Result<Vec<T>, c_int> {
    let names: Vec<Option<String>> = match node.as_deref() {
        None => vec![None],
        // Every node vigild knows, up or down (this one alone without cluster mode), asked one by one.
        Some(ALL_NODES) => with_client(|c| c.nodes())?.into_iter().map(|n| Some(n.name)).collect(),
        Some(list) => list.split(',').map(|s| Some(s.trim().to_string())).collect(),
    };
    let mut out = Vec::new();
    let mut first_err = None;
    let mut any = false;
    for n in names {
        match with_client(|c| q(c, &wire_node(n.clone()))) {
            Ok(v) => {
                any = true;
                out.extend(v);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if any {
        Ok(out)
    } else {
        Err(first_err.unwrap_or(subsys(libc::ENOENT)))
    }
}

/// Copies `s` into a fixed C field, NUL-terminated; true when it had to be cut.
fn fill(field: &mut [c_char], s: &[u8]) -> bool {
    let n = s.len().min(field.len() - 1);
    for (d, b) in field.iter_mut().zip(&s[..n]) {
        *d = *b as c_char;
    }
    field[n] = 0;
    n < s.len()
}

/// Allocates `n` zeroed records with malloc and remembers the array.
fn alloc<T>(n: usize) -> Result<*mut T, c_int> {
    // SAFETY: calloc with a count and a size; a NULL answer is handled.
    let p = unsafe { libc::calloc(n.max(1), std::mem::size_of::<T>()) }.cast::<T>();
    if p.is_null() {
        return Err(subsys(libc::ENOMEM));
    }
    lock(&ISSUED).get_or_insert_with(HashSet::new).insert(p as usize);
    Ok(p)
}

/// Frees an array we handed out, given the array or a pointer to it; anything else is left alone.
///
/// # Safety
/// `pp` is NULL, an array from `alloc`, or a pointer to a pointer that is NULL or such an array.
unsafe fn free_issued(pp: *mut *mut u8) {
    if pp.is_null() {
        return;
    }
    let mut issued = lock(&ISSUED);
    let set = issued.get_or_insert_with(HashSet::new);
    if set.remove(&(pp as usize)) {
        // SAFETY: `pp` is an array we allocated with calloc and have not freed.
        unsafe { libc::free(pp.cast()) };
        return;
    }
    // SAFETY: not one of our arrays, so by the contract a pointer to a (possibly NULL) array pointer.
    let p = unsafe { *pp };
    if !p.is_null() && set.remove(&(p as usize)) {
        // SAFETY: `p` is an array we allocated and have not freed; the caller's pointer is cleared.
        unsafe {
            libc::free(p.cast());
            *pp = std::ptr::null_mut();
        }
    }
}

fn member_record(r: &mut PsmMemrsp, m: &PsmMember) {
    r.mrs_pid = m.pid as c_uint;
    let exited = m.flags & PSM_FL_EXIT != 0;
    r.mrs_exitcode = match (exited, m.exitcode) {
        (false, _) => 0,
        (true, Some(s)) => s,
        (true, None) => PSM_EXIT_UNKNOWN,
    };
    r.mrs_flags = m.flags;
    fill(&mut r.mrs_name, m.name.as_bytes());
    fill(&mut r.mrs_state, m.state.as_bytes());
    let mut argv = Vec::new();
    for a in &m.argv {
        argv.extend_from_slice(a.as_bytes());
        argv.push(0);
    }
    // Each argument keeps its NUL; the field's last byte is a NUL of its own.
    let room = PSM_ARGVLEN - 1;
    if argv.len() > room {
        argv.truncate(room);
        r.mrs_flags |= PSM_FL_ARGTRUNC;
    }
    fill(&mut r.mrs_argv, &argv);
}

/// `cfg_status_t cfg_psm_memadd(const char *node, const char *catnam, pid_t pid)`
///
/// # Safety
/// `node` and `catnam` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_memadd(node: *const c_char, catnam: *const c_char, pid: libc::pid_t) -> c_int {
    // SAFETY: forwarded contract.
    let (node, cat) = match unsafe { (text(node), text(catnam)) } {
        (Ok(n), Ok(Some(c))) => (n, c),
        (Err(e), _) | (_, Err(e)) => return e,
        (_, Ok(None)) => return subsys(libc::EINVAL),
    };
    if pid <= 0 {
        return subsys(libc::ESRCH);
    }
    let node = wire_node(node);
    with_client(|c| c.psm_add(&node, &cat, pid)).map_or_else(|e| e, |()| CFG_SUCCESS)
}

/// `cfg_status_t cfg_psm_memrem(const char *node, const char *catnam, pid_t pid)`; catnam
/// `_PSM_ALLCAT` removes the pid from whatever category holds it.
///
/// # Safety
/// `node` and `catnam` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_memrem(node: *const c_char, catnam: *const c_char, pid: libc::pid_t) -> c_int {
    // SAFETY: forwarded contract.
    let (node, cat) = match unsafe { (text(node), text(catnam)) } {
        (Ok(n), Ok(c)) => (n, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let node = wire_node(node);
    with_client(|c| c.psm_remove(&node, cat.as_deref(), pid)).map_or_else(|e| e, |()| CFG_SUCCESS)
}

/// `cfg_status_t cfg_psm_memstate_set(const char *node, const char *catnam, pid_t pid, const char *state)`:
/// vigil's own call (Tru64's libcfg has none) for the member's "user-modifiable state string" (psm.h).
/// `catnam` NULL is any category; NULL `state` is EINVAL; vigild judges the rest (length, owner).
///
/// # Safety
/// `node`, `catnam` and `state` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_memstate_set(
    node: *const c_char,
    catnam: *const c_char,
    pid: libc::pid_t,
    state: *const c_char,
) -> c_int {
    // SAFETY: forwarded contract.
    let (node, cat, state) = match unsafe { (text(node), text(catnam), text(state)) } {
        (Ok(n), Ok(c), Ok(Some(s))) => (n, c, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        (_, _, Ok(None)) => return subsys(libc::EINVAL),
    };
    let node = wire_node(node);
    with_client(|c| c.psm_set_state(&node, cat.as_deref(), pid, &state)).map_or_else(|e| e, |()| CFG_SUCCESS)
}

/// `cfg_status_t cfg_psm_memget(const char *node, const char *catnam, pid_t pid, psm_memrsp_t **memrsp)`
///
/// # Safety
/// `node` and `catnam` are NULL or NUL-terminated strings; `memrsp` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_memget(
    node: *const c_char,
    catnam: *const c_char,
    pid: libc::pid_t,
    memrsp: *mut *mut PsmMemrsp,
) -> c_int {
    if memrsp.is_null() {
        return subsys(libc::EINVAL);
    }
    // SAFETY: checked non-NULL; writable by the contract.
    unsafe { *memrsp = std::ptr::null_mut() };
    // SAFETY: forwarded contract.
    let (node, cat) = match unsafe { (text(node), text(catnam)) } {
        (Ok(n), Ok(c)) => (n, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let want = (pid != -1).then_some(pid);
    let found = match query_nodes(node, |c, n| c.psm_get(n, cat.as_deref(), want)) {
        Ok(f) => f,
        Err(e) => return e,
    };
    if found.is_empty() && want.is_some() {
        return subsys(libc::ENOENT);
    }
    let n = found.len();
    let arr = match alloc::<PsmMemrsp>(n) {
        Ok(a) => a,
        Err(e) => return e,
    };
    // SAFETY: `arr` holds max(n, 1) zeroed records; a generic query that matched nothing answers one
    // record of zeros, as the page says.
    let recs = unsafe { std::slice::from_raw_parts_mut(arr, n.max(1)) };
    for (i, (r, m)) in recs.iter_mut().zip(&found).enumerate() {
        r.mrs_listidx = i as c_uint + 1;
        r.mrs_listcnt = n as c_uint;
        r.mrs_total = n as c_uint;
        member_record(r, m);
    }
    // SAFETY: checked non-NULL above.
    unsafe { *memrsp = arr };
    CFG_SUCCESS
}

/// `void cfg_psm_memfree(psm_memrsp_t **memrsp)`, also given the array itself.
///
/// # Safety
/// As `free_issued`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_memfree(memrsp: *mut *mut PsmMemrsp) {
    // SAFETY: forwarded contract.
    unsafe { free_issued(memrsp.cast()) }
}

/// `cfg_status_t cfg_psm_catadd(const char *node, const char *catnam)`: an existing category is EEXIST.
///
/// # Safety
/// `node` and `catnam` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_catadd(node: *const c_char, catnam: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    let (node, cat) = match unsafe { (text(node), text(catnam)) } {
        (Ok(n), Ok(Some(c))) => (n, c),
        (Err(e), _) | (_, Err(e)) => return e,
        (_, Ok(None)) => return subsys(libc::EINVAL),
    };
    let node = wire_node(node);
    match with_client(|c| c.psm_category_add(&node, &cat)) {
        Ok(()) => CFG_SUCCESS,
        Err(e) if e == subsys(libc::EALREADY) => subsys(libc::EEXIST),
        Err(e) => e,
    }
}

/// `cfg_status_t cfg_psm_catrem(const char *node, const char *catnam)`: categories cannot be removed
/// (psm.h: "Any attempt to remove a category returns an ENOTSUP subsystem error").
#[unsafe(no_mangle)]
pub extern "C" fn cfg_psm_catrem(_node: *const c_char, _catnam: *const c_char) -> c_int {
    subsys(libc::ENOTSUP)
}

/// `cfg_status_t cfg_psm_catget(const char *node, const char *catnam, psm_catrsp_t **catrsp)`
///
/// # Safety
/// `node` and `catnam` are NULL or NUL-terminated strings; `catrsp` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_catget(
    node: *const c_char,
    catnam: *const c_char,
    catrsp: *mut *mut PsmCatrsp,
) -> c_int {
    if catrsp.is_null() {
        return subsys(libc::EINVAL);
    }
    // SAFETY: checked non-NULL; writable by the contract.
    unsafe { *catrsp = std::ptr::null_mut() };
    // SAFETY: forwarded contract.
    let (node, cat) = match unsafe { (text(node), text(catnam)) } {
        (Ok(n), Ok(c)) => (n, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let all = match query_nodes(node, |c, n| c.psm_categories(n)) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let found: Vec<&PsmCategory> = all
        .iter()
        .filter(|c| cat.as_deref().is_none_or(|n| c.name == n))
        .collect();
    if found.is_empty() && cat.is_some() {
        return subsys(libc::ENOENT);
    }
    let n = found.len();
    let arr = match alloc::<PsmCatrsp>(n) {
        Ok(a) => a,
        Err(e) => return e,
    };
    // SAFETY: `arr` holds max(n, 1) zeroed records.
    let recs = unsafe { std::slice::from_raw_parts_mut(arr, n.max(1)) };
    for (i, (r, c)) in recs.iter_mut().zip(&found).enumerate() {
        r.crs_listidx = i as c_uint + 1;
        r.crs_listcnt = n as c_uint;
        r.crs_total = n as c_uint;
        r.crs_members = c.members;
        r.crs_running = c.running;
        fill(&mut r.crs_name, c.name.as_bytes());
    }
    // SAFETY: checked non-NULL above.
    unsafe { *catrsp = arr };
    CFG_SUCCESS
}

/// `void cfg_psm_catfree(psm_catrsp_t **catrsp)`, also given the array itself.
///
/// # Safety
/// As `free_issued`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfg_psm_catfree(catrsp: *mut *mut PsmCatrsp) {
    // SAFETY: forwarded contract.
    unsafe { free_issued(catrsp.cast()) }
}

/// `const char *cfg_psm_catname(int idx)`: the category of a `_PSM_CAT_*` index, or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn cfg_psm_catname(idx: c_int) -> *const c_char {
    category_of(idx).map_or(std::ptr::null(), CStr::as_ptr)
}

/// `cfg_status_t cfg_psm_regself(int idx)`: `_PSM_REGSELF(idx)`; the calling process joins the category.
#[unsafe(no_mangle)]
pub extern "C" fn cfg_psm_regself(idx: c_int) -> c_int {
    let Some(cat) = category_of(idx).and_then(|c| c.to_str().ok()) else {
        return subsys(libc::EINVAL);
    };
    let pid = std::process::id() as i32;
    with_client(|c| c.psm_add(&PsmNode(String::new()), cat, pid)).map_or_else(|e| e, |()| CFG_SUCCESS)
}
