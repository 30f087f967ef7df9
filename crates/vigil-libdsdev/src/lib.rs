//! libdsdev.so.1: the PMF part of Solaris Cluster's data service development library (`rgm/libdsdev.h`)
//! for C programs, on vigil's tags.
//!
//! `scds_initialize` reads the resource, its type and its group from the method's `-R -T -G` arguments
//! and connects to vigild; each `scds_pmf_*` call is one or two requests on that connection, on the tag
//! `<group>,<resource>,<instance>.svc|.mon|.other`. Every check of a value is vigild's; this library maps
//! vigild's error codes to `scha_err_t` in one table (`scha`).
//!
//! A handle is a number, not a pointer: the handles live in a table here, so a handle that was never
//! returned, or was closed, is found out (`SCHA_ERR_HANDLE`) instead of being read.

// A C ABI needs raw pointers and exported symbols: this crate allows unsafe code, each block with a
// `// SAFETY:` line (ARCHITECTURE.md names the crates that may).
#![allow(unsafe_code)]

mod parse;

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vigil_client::proto::{ErrorCode, ProgramType, RunSpec};
use vigil_client::{Client, ClientError};

use parse::MethodArgs;

// `scha_err_t` (scha_calls(3HA)): the values libdsdev returns.
const SCHA_ERR_NOERR: c_int = 0;
const SCHA_ERR_HANDLE: c_int = 2;
const SCHA_ERR_INVAL: c_int = 3;
const SCHA_ERR_ACCESS: c_int = 6;
const SCHA_ERR_STATE: c_int = 9;
const SCHA_ERR_INTERNAL: c_int = 18;
const SCHA_ERR_TIMEOUT: c_int = 20;

// `scds_pmf_type_t`.
const SCDS_PMF_TYPE_SVC: c_int = 0;
const SCDS_PMF_TYPE_MON: c_int = 1;
const SCDS_PMF_TYPE_OTHER: c_int = 2;

// `scds_pmf_status_t`.
const SCDS_PMF_MONITORED: c_int = 0;
const SCDS_PMF_NOT_MONITORED: c_int = 1;

const SIGKILL: i32 = 9;

/// How long `scds_pmf_restart_fm` lets the fault monitor take to die (Solaris: `Monitor_stop_timeout`,
/// whose default is 300 s); SIGKILL rarely needs more than an instant.
const MONITOR_STOP_TIMEOUT: Duration = Duration::from_secs(300);

/// vigild's error codes as `scha_err_t`: the one table.
fn scha(e: &ClientError) -> c_int {
    if let ClientError::Untrusted { .. } = e {
        // Another user serves vigild's socket: nothing was sent to it.
        return SCHA_ERR_ACCESS;
    }
    match e.code() {
        Some(ErrorCode::InvalidArgument | ErrorCode::ExecFailed) => SCHA_ERR_INVAL,
        // scds_pmf_start(3HA): a program that runs already is SCHA_ERR_INTERNAL.
        Some(ErrorCode::AlreadyExists) => SCHA_ERR_INTERNAL,
        Some(ErrorCode::PermissionDenied) => SCHA_ERR_ACCESS,
        // No such program, none of its processes left, or it is being stopped.
        Some(ErrorCode::NotFound | ErrorCode::NoProcess | ErrorCode::Busy) => SCHA_ERR_STATE,
        Some(ErrorCode::Timeout) => SCHA_ERR_TIMEOUT,
        // vigild's own failures, and no vigild at all.
        _ => SCHA_ERR_INTERNAL,
    }
}

/// What `scds_initialize` set up.
struct Handle {
    args: MethodArgs,
    /// None after the connection broke: the next call connects again, so a long-lived fault monitor
    /// outlives a restart of vigild.
    client: Option<Client>,
}

impl Handle {
    /// One exchange with vigild; a broken connection is dropped, so that the next call makes a new one.
    fn call<T>(&mut self, f: impl FnOnce(&mut Client) -> Result<T, ClientError>) -> Result<T, c_int> {
        if self.client.is_none() {
            self.client = Some(Client::connect_default().map_err(|e| scha(&e))?);
        }
        let c = self.client.as_mut().expect("connected above");
        f(c).inspect_err(|e| {
            if e.code().is_none() {
                self.client = None;
            }
        })
        .map_err(|e| scha(&e))
    }

    /// The program's tag: `<group>,<resource>,<instance>.svc`, `.mon` or `.other`.
    fn tag(&self, program_type: c_int, instance: c_int) -> Result<(String, ProgramType), c_int> {
        let (suffix, ty) = match program_type {
            SCDS_PMF_TYPE_SVC => ("svc", ProgramType::Svc),
            SCDS_PMF_TYPE_MON => ("mon", ProgramType::Mon),
            SCDS_PMF_TYPE_OTHER => ("other", ProgramType::Other),
            _ => return Err(SCHA_ERR_INVAL),
        };
        if instance < 0 {
            return Err(SCHA_ERR_INVAL);
        }
        let a = &self.args;
        Ok((format!("{},{},{instance}.{suffix}", a.group, a.resource), ty))
    }

    /// Whether vigil watches the tag now (`pmfadm -q`): it exists and is neither stopped, failed nor being
    /// stopped.
    fn monitored(&mut self, tag: &str) -> Result<bool, c_int> {
        match self.call(|c| c.status(tag)) {
            Ok(st) => Ok(matches!(
                st.state.as_str(),
                "waiting" | "running" | "backoff" | "action"
            )),
            Err(SCHA_ERR_STATE) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

struct Registry {
    next: usize,
    handles: BTreeMap<usize, Arc<Mutex<Handle>>>,
}

static HANDLES: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    handles: BTreeMap::new(),
});

/// Handles are numbers from this base on, never reused, so that a stray small integer is not one.
const HANDLE_BASE: usize = 0xd5de_0000;

fn registry() -> MutexGuard<'static, Registry> {
    // A panic cannot happen while the table is held (no call out of this file); a poisoned lock is fine.
    HANDLES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on the handle, or answers `SCHA_ERR_HANDLE` for one this library did not give out.
fn with_handle(handle: *mut c_void, f: impl FnOnce(&mut Handle) -> Result<(), c_int>) -> c_int {
    let Some(h) = registry().handles.get(&(handle as usize)).cloned() else {
        return SCHA_ERR_HANDLE;
    };
    let mut h = h.lock().unwrap_or_else(PoisonError::into_inner);
    match f(&mut h) {
        Ok(()) => SCHA_ERR_NOERR,
        Err(e) => e,
    }
}

/// Reads a C string; NULL is `SCHA_ERR_INVAL`. Text that is not UTF-8 is taken with replacements, as
/// vigild's names and commands are UTF-8.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn text(s: *const c_char) -> Result<String, c_int> {
    if s.is_null() {
        return Err(SCHA_ERR_INVAL);
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// `scha_err_t scds_initialize(scds_handle_t *handle, int argc, char *argv[])`
///
/// # Safety
/// `handle` is NULL or points to a writable `scds_handle_t`; `argv` holds `argc` NUL-terminated strings
/// (a NULL entry ends it early).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scds_initialize(handle: *mut *mut c_void, argc: c_int, argv: *const *const c_char) -> c_int {
    if handle.is_null() || argc < 0 || (argc > 0 && argv.is_null()) {
        return SCHA_ERR_INVAL;
    }
    let mut args = Vec::new();
    for i in 0..argc as usize {
        // SAFETY: argv holds argc pointers (the caller's contract, as main's argv).
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated string.
        args.push(unsafe { text(p) }.expect("not NULL"));
    }
    let args = match parse::method_args(&args) {
        Ok(a) => a,
        Err(_) => return SCHA_ERR_INVAL,
    };
    let client = match Client::connect_default() {
        Ok(c) => c,
        Err(e) => return scha(&e),
    };
    let mut reg = registry();
    let id = HANDLE_BASE + reg.next;
    reg.next += 1;
    reg.handles.insert(
        id,
        Arc::new(Mutex::new(Handle {
            args,
            client: Some(client),
        })),
    );
    // SAFETY: checked non-NULL; the caller passes a writable scds_handle_t.
    unsafe { handle.write(id as *mut c_void) };
    SCHA_ERR_NOERR
}

/// `void scds_close(scds_handle_t *handle)`: forgets the handle and sets it to NULL. NULL, or a handle
/// already closed, is left alone.
///
/// # Safety
/// `handle` is NULL or points to a readable and writable `scds_handle_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scds_close(handle: *mut *mut c_void) {
    if handle.is_null() {
        return;
    }
    // SAFETY: checked non-NULL; the caller passes a scds_handle_t it owns.
    let id = unsafe { handle.read() } as usize;
    if registry().handles.remove(&id).is_some() {
        // SAFETY: as above.
        unsafe { handle.write(std::ptr::null_mut()) };
    }
}

/// Both start functions; `env` is None for `scds_pmf_start`.
///
/// # Safety
/// `command` is NULL or a NUL-terminated string; `env` is NULL or a NULL-terminated array of them.
unsafe fn start(
    handle: *mut c_void,
    program_type: c_int,
    instance: c_int,
    command: *const c_char,
    level: c_int,
    env: *const *const c_char,
) -> c_int {
    with_handle(handle, |h| {
        let (tag, ty) = h.tag(program_type, instance)?;
        // SAFETY: the caller's contract.
        let line = unsafe { text(command) }?;
        let argv = parse::split_command(&line).map_err(|_| SCHA_ERR_INVAL)?;
        let mut spec = RunSpec::new(tag.clone(), argv);
        spec.instance = instance as u32;
        spec.program_type = ty;
        spec.level = i64::from(level);
        spec.retries = h.args.retry_count.unwrap_or(spec.retries);
        spec.period = h.args.retry_interval.unwrap_or(spec.period);
        if ty == ProgramType::Mon {
            // scds_pmf_restart_fm(3HA) kills the fault monitor with SIGKILL: a restart stops it so.
            spec.stop_signal = Some(SIGKILL);
        }
        // scds_pmf_start(3HA) is "the same as pmfadm -c": the program runs in the caller's working
        // directory, with the caller's PATH (and nothing else of its environment) unless an environment is
        // given, which the program then gets as it is.
        spec.cwd = std::env::current_dir().ok().map(|d| d.display().to_string());
        if env.is_null() {
            spec.env = std::env::var("PATH")
                .map(|p| vec![("PATH".to_string(), p)])
                .unwrap_or_default();
        } else {
            // SAFETY: the caller's contract.
            spec.env = unsafe { environment(env) }?;
        }
        let r = h.call(|c| c.run(spec));
        if let Err(SCHA_ERR_INTERNAL) = r {
            // scds_pmf_start(3HA): when the program runs already, it "outputs a syslog() error" and
            // returns SCHA_ERR_INTERNAL.
            syslog_err(&format!(
                "{tag}: scds_pmf_start: the program is already running under PMF"
            ));
        }
        r.map(drop)
    })
}

/// One message to syslog(3) at LOG_ERR, with the caller's own openlog settings (an RGM method's ident
/// and facility, if it set them).
fn syslog_err(msg: &str) {
    let Ok(msg) = std::ffi::CString::new(msg) else {
        return;
    };
    // SAFETY: a constant "%s" format and one NUL-terminated string for it.
    unsafe { libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), msg.as_ptr()) };
}

/// `KEY=VALUE` strings, as execve(2) takes them; one without `=` is `SCHA_ERR_INVAL`.
///
/// # Safety
/// `env` is NULL or a NULL-terminated array of NUL-terminated strings.
unsafe fn environment(env: *const *const c_char) -> Result<Vec<(String, String)>, c_int> {
    let mut out = Vec::new();
    if env.is_null() {
        return Ok(out);
    }
    for i in 0.. {
        // SAFETY: the array is NULL-terminated, and we stop at its NULL.
        let p = unsafe { *env.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated string.
        let s = unsafe { text(p) }?;
        let (k, v) = s.split_once('=').ok_or(SCHA_ERR_INVAL)?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `scha_err_t scds_pmf_start(scds_handle_t handle, scds_pmf_type_t program_type, int instance,
/// const char *command, int child_monitor_level)`
///
/// # Safety
/// `command` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scds_pmf_start(
    handle: *mut c_void,
    program_type: c_int,
    instance: c_int,
    command: *const c_char,
    child_monitor_level: c_int,
) -> c_int {
    // SAFETY: the caller's contract; no environment.
    unsafe {
        start(
            handle,
            program_type,
            instance,
            command,
            child_monitor_level,
            std::ptr::null(),
        )
    }
}

/// `scha_err_t scds_pmf_start_env(..., int child_monitor_level, char **env)`: `env` is the program's
/// environment; vigild adds PATH, HOME, USER, LOGNAME where it lacks them, and always VIGIL_TAG,
/// VIGIL_INSTANCE and NOTIFY_SOCKET (see rgm/libdsdev.h).
///
/// # Safety
/// `command` is NULL or a NUL-terminated string; `env` is NULL or a NULL-terminated array of them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scds_pmf_start_env(
    handle: *mut c_void,
    program_type: c_int,
    instance: c_int,
    command: *const c_char,
    child_monitor_level: c_int,
    env: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { start(handle, program_type, instance, command, child_monitor_level, env) }
}

/// `scha_err_t scds_pmf_stop(scds_handle_t handle, scds_pmf_type_t program_type, int instance, int signal,
/// time_t timeout)`: nothing to do when the program does not run; else `signal`, SIGKILL after 80% of
/// `timeout` seconds, and `SCHA_ERR_TIMEOUT` if processes outlive that too.
#[unsafe(no_mangle)]
pub extern "C" fn scds_pmf_stop(
    handle: *mut c_void,
    program_type: c_int,
    instance: c_int,
    signal: c_int,
    timeout: c_long,
) -> c_int {
    with_handle(handle, |h| {
        let (tag, _) = h.tag(program_type, instance)?;
        if timeout < 0 {
            return Err(SCHA_ERR_INVAL);
        }
        if !h.monitored(&tag)? {
            return Ok(());
        }
        let kill_after = Duration::from_millis(timeout.saturating_mul(800) as u64);
        match h.call(|c| c.stop(&tag, Some(signal), Some(kill_after))) {
            // It ended between the two requests.
            Err(SCHA_ERR_STATE) => Ok(()),
            r => r,
        }
    })
}

/// `scha_err_t scds_pmf_signal(scds_handle_t handle, scds_pmf_type_t program_type, int instance, int signal,
/// time_t timeout)`: sends `signal` to every process, monitoring goes on; waits up to `timeout` seconds
/// for them to exit (0: not at all, -1: without limit).
#[unsafe(no_mangle)]
pub extern "C" fn scds_pmf_signal(
    handle: *mut c_void,
    program_type: c_int,
    instance: c_int,
    signal: c_int,
    timeout: c_long,
) -> c_int {
    with_handle(handle, |h| {
        let (tag, _) = h.tag(program_type, instance)?;
        let wait = match timeout {
            0 => None,
            // vigild's wait needs an end: this one is beyond any data service method's life.
            -1 => Some(Duration::from_millis(u64::from(u32::MAX))),
            t if t > 0 => Some(Duration::from_secs(t as u64)),
            _ => return Err(SCHA_ERR_INVAL),
        };
        h.call(|c| c.kill(&tag, signal, wait))
    })
}

/// `scha_err_t scds_pmf_get_status(scds_handle_t handle, scds_pmf_type_t program_type, int instance,
/// scds_pmf_status_t *pmf_status)`
///
/// # Safety
/// `pmf_status` is NULL or points to a writable `scds_pmf_status_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scds_pmf_get_status(
    handle: *mut c_void,
    program_type: c_int,
    instance: c_int,
    pmf_status: *mut c_int,
) -> c_int {
    with_handle(handle, |h| {
        let (tag, _) = h.tag(program_type, instance)?;
        if pmf_status.is_null() {
            return Err(SCHA_ERR_INVAL);
        }
        let st = if h.monitored(&tag)? {
            SCDS_PMF_MONITORED
        } else {
            SCDS_PMF_NOT_MONITORED
        };
        // SAFETY: checked non-NULL; the caller passes a writable scds_pmf_status_t.
        unsafe { pmf_status.write(st) };
        Ok(())
    })
}

/// `scha_err_t scds_pmf_restart_fm(scds_handle_t handle, int instance)`: the fault monitor (the MON
/// program of `instance`) is killed with SIGKILL and started again with its command, not counted against
/// its restart budget. A monitor never started is `SCHA_ERR_STATE`.
#[unsafe(no_mangle)]
pub extern "C" fn scds_pmf_restart_fm(handle: *mut c_void, instance: c_int) -> c_int {
    with_handle(handle, |h| {
        let (tag, _) = h.tag(SCDS_PMF_TYPE_MON, instance)?;
        let st = h.call(|c| c.status(&tag))?;
        if st.state == "stopping" {
            // A stop under way ends with SIGKILL at worst: wait for it, then start again.
            h.call(|c| c.wait(&tag, Some(MONITOR_STOP_TIMEOUT))).map(drop)?;
        }
        h.call(|c| c.restart(&tag))
    })
}
