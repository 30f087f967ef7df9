//! A real vigild in a temporary directory, for the length of one metric.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vigil_client::Client;

/// How long vigild may take to accept its first connection, and to exit after SIGTERM.
const START_DEADLINE: Duration = Duration::from_secs(10);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// The most a request to the daemon may block.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds the vigild to measure: `explicit`, else the `vigild` next to this executable. Under `cargo run`
/// (which sets `CARGO`), that vigild is built first with the same profile and target directory, so
/// that it is never missing or stale.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "--vigild {}: no such file", p.display());
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("this executable has no directory")?;
    if let Some(cargo) = std::env::var_os("CARGO") {
        build_vigild(&cargo, dir)?;
    }
    let p = dir.join("vigild");
    anyhow::ensure!(
        p.is_file(),
        "no vigild next to {}: build it (cargo build --release -p vigild) or pass --vigild PATH",
        exe.display()
    );
    Ok(p)
}

/// `cargo build -p vigild` (and vigil-sam-app) into `bin_dir` (TARGET/PROFILE), when this crate's workspace
/// is still there.
fn build_vigild(cargo: &OsStr, bin_dir: &Path) -> anyhow::Result<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let (Some(profile), Some(target_dir)) = (bin_dir.file_name().and_then(|p| p.to_str()), bin_dir.parent()) else {
        return Ok(());
    };
    if !manifest.is_file() {
        return Ok(());
    }
    let profile = match profile {
        "debug" => "dev",
        p => p,
    };
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "vigild",
            // The command line, timed by the scale metric.
            "-p",
            "vigil",
            // And the SAM metric's application, a second binary of this package.
            "-p",
            "vigil-bench",
            "--bins",
            "--profile",
            profile,
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .context("cannot run cargo to build vigild and vigil-sam-app")?;
    anyhow::ensure!(
        status.success(),
        "cargo build -p vigild -p vigil-bench --bins: {status}"
    );
    Ok(())
}

/// A running vigild; killed (SIGKILL) if dropped before [`Vigild::stop`].
pub struct Vigild {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Vigild {
    /// Starts `bin` with its state, socket and log in a new temporary directory, and connects to it once
    /// its socket accepts connections.
    pub fn start(bin: &Path) -> anyhow::Result<(Vigild, Client)> {
        Self::start_args(bin, &[])
    }

    /// As [`Vigild::start`], with more arguments (`--cluster ... --node ...`).
    pub fn start_args(bin: &Path, extra: &[String]) -> anyhow::Result<(Vigild, Client)> {
        let dir = tempfile::Builder::new().prefix("vigil-bench-").tempdir()?;
        let socket = dir.path().join("s.sock");
        let log = dir.path().join("vigild.log");
        let out = File::create(&log)?;
        let child = Command::new(bin)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(&socket)
            .args(["--log-level", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut d = Vigild {
            child: Some(child),
            socket,
            log,
            dir,
        };
        let client = d.connect()?;
        Ok((d, client))
    }

    /// Where it listens.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Another connection to the running vigild (for subscribers, producers...), with the same read
    /// timeout as the first.
    pub fn connect_another(&self) -> anyhow::Result<Client> {
        let c = Client::connect(&self.socket).context("cannot open another connection to vigild")?;
        c.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(c)
    }

    fn connect(&mut self) -> anyhow::Result<Client> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                self.child = None;
                bail!("vigild exited at start ({status}){}", self.log_tail());
            }
            match Client::connect(&self.socket) {
                Ok(c) => {
                    c.set_read_timeout(Some(REQUEST_TIMEOUT))?;
                    return Ok(c);
                }
                Err(e) if Instant::now() >= deadline => {
                    bail!(
                        "vigild did not accept a connection within {START_DEADLINE:?}: {e}{}",
                        self.log_tail()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// vigild's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM (vigild stops every tag and exits), then waits for it.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop_within(STOP_DEADLINE)
    }

    /// As [`Vigild::stop`], with a longer deadline: stopping thousands of tags takes longer.
    pub fn stop_within(mut self, deadline: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("kill -TERM {}: {status}", child.id());
        }
        let limit = deadline;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::ensure!(status.success(), "vigild exited with {status}{}", self.log_tail());
                return Ok(());
            }
            if Instant::now() >= deadline {
                kill_with_children(&mut child);
                bail!("vigild still running {limit:?} after SIGTERM{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, no goodbye: what a crashed node looks like to the others. Its tags' processes, which a
    /// crash leaves running, are ended too, so that the benchmark leaves nothing behind.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            kill_with_children(&mut child);
        }
    }

    /// The end of vigild's log, to explain a failure.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.trim().is_empty() {
            String::new()
        } else {
            format!("\nvigild's log:\n{tail}")
        }
    }
}

/// How long a vigild dropped without [`Vigild::stop`] (a metric failed half way) has to stop its tags after
/// SIGTERM: thousands of them take a while.
const DROP_STOP_DEADLINE: Duration = Duration::from_secs(60);

impl Drop for Vigild {
    /// A metric that fails half way must not leave its tags' processes behind (10,000 `sleep`s of the
    /// scale metric, say): SIGTERM first, which stops every tag, and if vigild is still there after
    /// [`DROP_STOP_DEADLINE`], SIGKILL to it and to its children and their process groups.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) && vigil_sys::send_signal(child.id() as i32, 15).is_ok() {
            let deadline = Instant::now() + DROP_STOP_DEADLINE;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        kill_with_children(&mut child);
    }
}

/// SIGKILL to vigild and then to every child it had (each tag's process leads a process group of its
/// own, which gets it too): the children are held by pidfds taken before vigild dies, so that none of
/// them, reparented then, is missed or mistaken for a later process with its pid.
fn kill_with_children(child: &mut Child) {
    let pid = child.id() as i32;
    // vigild stopped first, so that it starts nothing new between the list and its death.
    let _ = vigil_sys::send_signal(pid, 19 /* SIGSTOP */);
    let held: Vec<vigil_sys::PidFd> = vigil_sys::children(pid)
        .into_iter()
        .filter_map(|c| vigil_sys::PidFd::open(c).ok())
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    for fd in &held {
        if !fd.has_exited() {
            let _ = vigil_sys::kill_process_group(fd.pid(), 9);
            let _ = fd.send_signal(9);
        }
    }
}
