//! `pmfadm`: Solaris Cluster's process monitor facility command line, on vigild.
//!
//! Each mode is one or two requests over vigild's socket (`$VIGIL_SOCKET` or the default, as `vigil`).
//! Exit codes follow pmfadm(1M): 0 success; 1 the nametag does not exist (or, for `-c`, already does);
//! 2 a `-w` wait ran out; any other code is an error, and this one tells them apart: 3 a usage error,
//! 4 vigild refused or failed, 5 vigild cannot be reached.
//!
//! A tag that vigild keeps as `stopped` or `failed` is not registered for pmfadm: in pmfadm's model a tag
//! whose processes are gone for good no longer exists (`-s` forgets it, and a spent budget without an
//! action program removes it). `-c` replaces such a tag.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

mod args;
mod manual;
mod output;

use std::process::ExitCode;
use std::time::Duration;

use args::{Create, Invocation, Mode, Usage, Wait};
use vigil_client::proto::{ErrorCode, RunSpec, TagStatus};
use vigil_client::{Client, ClientError};

/// pmfadm's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Ok = 0,
    /// No such nametag, or `-c` of one that exists; `-q`: not registered.
    NoTag = 1,
    /// `-w` ran out before the processes were gone.
    TimedOut = 2,
    Usage = 3,
    /// vigild refused (permission, a value it judged wrong, no process to signal, another host) or failed.
    Failed = 4,
    Unreachable = 5,
}

/// A failure with its exit code and the sentence to print.
struct Failure(Code, String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match (&e, e.code()) {
            (ClientError::Connect { .. }, _) => Code::Unreachable,
            (_, Some(ErrorCode::NotFound | ErrorCode::AlreadyExists)) => Code::NoTag,
            (_, Some(ErrorCode::Timeout)) => Code::TimedOut,
            _ => Code::Failed,
        };
        let msg = match &e {
            // pmfadm has no --socket: point at the one way to name the socket.
            ClientError::Connect { path, source } => format!(
                "cannot connect to vigild at {}: {source} (is vigild running? set VIGIL_SOCKET)",
                path.display()
            ),
            e => e.to_string(),
        };
        Failure(code, msg)
    }
}

/// A wait with "no limit" still needs a number on the wire: a year is beyond any real stop.
const FOREVER: Duration = Duration::from_secs(365 * 86_400);

fn wait_duration(w: Wait) -> Option<Duration> {
    match w {
        Wait::No => None,
        Wait::Secs(s) => Some(Duration::from_secs(u64::from(s))),
        Wait::Forever => Some(FOREVER),
    }
}

fn main() -> ExitCode {
    vigil_client::process::default_sigpipe();
    let mut words = Vec::new();
    for (n, a) in std::env::args_os().skip(1).enumerate() {
        match a.into_string() {
            Ok(s) => words.push(s),
            Err(a) => {
                eprintln!("pmfadm: argument {} ({a:?}) is not valid UTF-8", n + 1);
                return ExitCode::from(Code::Usage as u8);
            }
        }
    }
    if let Some(r) = manual::generate(&words) {
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("pmfadm: {msg}");
                ExitCode::from(Code::Usage as u8)
            }
        };
    }
    let inv = match args::parse(&words) {
        Ok(inv) => inv,
        Err(Usage(msg)) => {
            eprintln!("pmfadm: {msg}");
            eprint!("{}", args::SYNOPSIS);
            return ExitCode::from(Code::Usage as u8);
        }
    };
    match run(inv) {
        Ok(code) => ExitCode::from(code as u8),
        Err(Failure(code, msg)) => {
            // vigild's refusals quote what users sent (tag names, paths).
            eprintln!("pmfadm: {}", vigil_client::escape_terminal(&msg));
            ExitCode::from(code as u8)
        }
    }
}

/// Whether pmfadm counts the tag as registered (see the module's comment).
fn active(st: &TagStatus) -> bool {
    !matches!(st.state.as_str(), "stopped" | "failed" | "exited")
}

/// The tag's status if it is registered; exit 1 with a sentence if not.
fn registered(c: &mut Client, tag: &str) -> Result<TagStatus, Failure> {
    let st = c.status(tag)?;
    if active(&st) {
        return Ok(st);
    }
    let why = st.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    Err(Failure(
        Code::NoTag,
        format!(
            "nametag {tag} is not registered (vigild keeps it as {}{why}; `pmfadm -c` replaces it)",
            st.state
        ),
    ))
}

fn run(inv: Invocation) -> Result<Code, Failure> {
    let path = vigil_client::default_socket_path();
    let mut c = Client::connect(&path)?;
    if let Some(host) = &inv.host {
        local_host(&mut c, host)?;
    }
    match inv.mode {
        Mode::Create(cr) => {
            c.run(run_spec(cr)?)?;
        }
        Mode::Modify { tag, retries, period } => {
            registered(&mut c, &tag)?;
            c.modify(&tag, retries, period.map(|p| p.secs()))?;
        }
        Mode::Stop { tag, wait, signal } => {
            registered(&mut c, &tag)?;
            // pmfadm(1M) -s stops monitoring and sends the signal if one is given, nothing else: no
            // signal means the processes keep running, and no SIGKILL follows one they ignore (-w then
            // exits 2 with them still running). vigild forgets the tag once they are gone. A release
            // with -w answers only then.
            c.set_read_timeout(None).ok();
            c.release(&tag, signal, wait_duration(wait))?;
        }
        Mode::Kill { tag, wait, signal } => {
            registered(&mut c, &tag)?;
            c.set_read_timeout(None).ok();
            c.kill(&tag, signal, wait_duration(wait))?;
        }
        Mode::Status { tag } => {
            let st = registered(&mut c, &tag)?;
            print!("{}", output::status(&st, &user_name(st.uid)));
        }
        Mode::List => {
            let me = vigil_client::current_uid();
            let all = c.status_all()?;
            let mut tags: Vec<&str> = all
                .iter()
                .filter(|st| active(st) && (me == 0 || st.uid == me))
                .map(|st| st.name.as_str())
                .collect();
            tags.sort_unstable();
            print!("{}", output::list(&tags));
        }
        Mode::Query { tag } => {
            return match c.status(&tag) {
                Ok(st) if active(&st) => Ok(Code::Ok),
                Ok(_) => Ok(Code::NoTag),
                // A name vigild could never hold is not registered either.
                Err(e) if matches!(e.code(), Some(ErrorCode::NotFound | ErrorCode::InvalidArgument)) => Ok(Code::NoTag),
                Err(e) => Err(e.into()),
            };
        }
    }
    Ok(Code::Ok)
}

/// `-h host`: this node answers for itself by any of its names; another node is asked through vigild
/// (cluster mode), which refuses it without cluster mode.
fn local_host(c: &mut Client, host: &str) -> Result<(), Failure> {
    let host = host.trim();
    if ["localhost", "local", "127.0.0.1", "::1"].contains(&host) {
        return Ok(());
    }
    let node = c.daemon_status()?.node;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if host == node || host == hostname.trim() {
        return Ok(());
    }
    c.set_node(Some(host));
    Ok(())
}

/// pmfadm -c's environment: `-E` passes all of pmfadm's, else only `-e` and PATH; and the command runs
/// in pmfadm's current directory. pmfadm(1M) says the process monitor re-instates the current directory
/// and PATH before it runs the command, and nothing else of the caller's environment.
fn run_spec(cr: Create) -> Result<RunSpec, Failure> {
    let cwd = std::env::current_dir().map_err(|e| Failure(Code::Failed, format!("the current directory: {e}")))?;
    let mut env: Vec<(String, String)> = if cr.inherit_env {
        std::env::vars().collect()
    } else {
        std::env::var("PATH")
            .map(|p| vec![("PATH".to_string(), p)])
            .unwrap_or_default()
    };
    for (k, v) in cr.env {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    let absolute = |p: String| {
        // A relative path means the caller's directory, not vigild's.
        if p.contains('/') {
            std::path::absolute(&p).map(|x| x.display().to_string()).unwrap_or(p)
        } else {
            p
        }
    };
    let mut command = cr.command;
    command[0] = absolute(command[0].clone());
    let mut spec = RunSpec::new(cr.tag, command);
    spec.env = env;
    spec.inherit_env = cr.inherit_env;
    spec.cwd = Some(cwd.display().to_string());
    spec.action = cr.action.map(absolute);
    if let Some(r) = cr.retries {
        spec.retries = r;
    }
    if let Some(p) = cr.period {
        spec.period = p.secs();
    }
    if let Some(l) = cr.level {
        spec.level = l;
    }
    Ok(spec)
}

/// The name of a uid from /etc/passwd, or the number.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}
