//! The supervision options of `vigil run` and `vigil modify` (restart policy, success statuses,
//! start_secs, notify), how `run` waits for the start it made, and `vigil wait`.

use std::time::Duration;

use vigil_client::proto::{self, ErrorCode, RestartPolicy, Supervision, TagStatus, WaitUntil};
use vigil_client::{Client, ClientError};

use crate::{secs, signal, usage, Failure};

/// Options of `vigil run`.
#[derive(clap::Args, Default)]
pub struct RunSupervision {
    /// Restart policy: always (every exit, under the budget), on-failure (a success ends the tag as
    /// `exited`), never (a success ends it as `exited`, a failure as `failed`)
    #[arg(long, value_name = "POLICY", default_value = "always")]
    restart: String,
    /// Exit codes that are a success, comma-separated [default: 0]
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    success_exit_codes: Vec<u8>,
    /// Signals whose deaths are a success, comma-separated names or numbers [default: none]
    #[arg(long, value_delimiter = ',', value_name = "SIGNALS")]
    success_signals: Vec<String>,
    /// Seconds the command must live before it counts as running: a death before is a failed start;
    /// `run` waits that long and says what happened (0: count it at once and return)
    #[arg(long, value_name = "SECS", default_value_t = 1.0, allow_hyphen_values = true)]
    start_secs: f64,
    /// The command sends READY=1 to $NOTIFY_SOCKET when it serves (sd_notify): it counts as running
    /// only then, `run` waits for it, and tags started `--after` it wait for it too
    #[arg(long)]
    notify: bool,
    /// Seconds `run` waits for the tag to count as running; past them it fails and leaves the tag as it is
    #[arg(long, value_name = "SECS", default_value_t = 90.0, allow_hyphen_values = true)]
    ready_timeout: f64,
}

/// Options of `vigil modify`.
#[derive(clap::Args)]
pub struct ModifySupervision {
    /// Restart policy: always, on-failure or never
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    /// Exit codes that are a success, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    success_exit_codes: Option<Vec<u8>>,
    /// Signals whose deaths are a success, comma-separated (`none` for none)
    #[arg(long, value_delimiter = ',', value_name = "SIGNALS")]
    success_signals: Option<Vec<String>>,
    /// Seconds a start must live before it counts as running
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    start_secs: Option<f64>,
}

fn policy(s: &str) -> Result<RestartPolicy, Failure> {
    match s {
        "always" => Ok(RestartPolicy::Always),
        "on-failure" => Ok(RestartPolicy::OnFailure),
        "never" => Ok(RestartPolicy::Never),
        other => Err(usage(format!("--restart {other:?}: use always, on-failure or never"))),
    }
}

fn signals(list: &[String]) -> Result<Vec<i32>, Failure> {
    if list.len() == 1 && list[0] == "none" {
        return Ok(vec![]);
    }
    list.iter().map(|s| signal(s)).collect()
}

fn start_secs(v: f64) -> Result<Duration, Failure> {
    let d = secs(v, "--start-secs")?;
    if d > Duration::from_secs(3600) {
        return Err(usage(format!("--start-secs {v} is over 3600 seconds")));
    }
    Ok(d)
}

impl RunSupervision {
    pub fn supervision(&self) -> Result<Supervision, Failure> {
        let mut s = Supervision {
            restart: policy(&self.restart)?,
            success_signals: signals(&self.success_signals)?,
            start_secs_ms: start_secs(self.start_secs)?.as_millis() as u64,
            notify: self.notify,
            ..Supervision::default()
        };
        if !self.success_exit_codes.is_empty() {
            s.success_exit_codes = self.success_exit_codes.clone();
        }
        Ok(s)
    }

    /// Whether `run` waits for the tag to count as running before it answers.
    pub fn waits(&self) -> bool {
        self.notify || self.start_secs > 0.0
    }

    /// Creates the tag (with its resources), then waits for the start it made to count as running: the answer is the
    /// status then, or a failure that says how that start ended and what the tag does now.
    pub fn run(&self, c: &mut Client, spec: proto::RunSpec, resources: proto::Resources) -> Result<TagStatus, Failure> {
        let tag = spec.tag.clone();
        let status = c.run_supervised_with(spec, self.supervision()?, resources, true)?;
        if !self.waits() {
            return Ok(status);
        }
        let timeout = secs(self.ready_timeout, "--ready-timeout")?;
        c.set_read_timeout(None).ok();
        c.wait_for(&tag, WaitUntil::Ready, Some(timeout), true)
            .and_then(|st| {
                st.ok_or_else(|| {
                    ClientError::Server(proto::WireError::new(ErrorCode::NotFound, format!("{tag}: removed")))
                })
            })
            .map_err(|e| match e.code() {
                Some(ErrorCode::Timeout) => Failure(
                    1,
                    format!(
                        "{tag}: {} after {} s; left as it is (see vigil status {tag})",
                        if self.notify { "no READY=1" } else { "not running" },
                        self.ready_timeout
                    ),
                ),
                _ => Failure::from(e),
            })
    }
}

impl ModifySupervision {
    pub fn is_empty(&self) -> bool {
        self.restart.is_none()
            && self.success_exit_codes.is_none()
            && self.success_signals.is_none()
            && self.start_secs.is_none()
    }

    pub fn send(&self, c: &mut Client, tag: &str) -> Result<(), Failure> {
        let restart = self.restart.as_deref().map(policy).transpose()?;
        let sigs = self.success_signals.as_deref().map(signals).transpose()?;
        let start = self.start_secs.map(start_secs).transpose()?;
        c.modify_supervision(tag, restart, self.success_exit_codes.clone(), sigs, start)?;
        Ok(())
    }
}

/// `vigil wait TAG... --ready | --running | --stopped`: one tag after the other, each within what is
/// left of the timeout; the first that cannot get there fails the command. A tag removed (`--stopped`)
/// is `None`.
pub fn wait(
    c: &mut Client,
    tags: &[String],
    until: WaitUntil,
    timeout: Option<Duration>,
) -> Result<Vec<(String, Option<TagStatus>)>, ClientError> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    c.set_read_timeout(None).ok();
    let mut out = Vec::new();
    for t in tags {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        out.push((t.clone(), c.wait_for(t, until, left, false)?));
    }
    Ok(out)
}
