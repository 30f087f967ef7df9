//! A private corosync: Debian's `corosync` daemon, a single node on loopback with its default scheduling
//! (it raises its own threads to SCHED_RR 99), its configuration, state directory and log in a temporary
//! directory.
//!
//! corosync's IPC (libqb) listens on abstract Unix sockets named after its services ("cmap"...), and it
//! locks /var/run/corosync.pid: both are machine-wide. So it runs in its own network namespace (abstract
//! sockets belong to one) and its own mount namespace with a tmpfs over /run, and never meets a corosync
//! of the machine or of another run. Its clients enter both namespaces with `nsenter`. This needs root.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const START_DEADLINE: Duration = Duration::from_secs(20);
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Why the comparison cannot run here, if it cannot: the one line printed instead of it.
pub fn unavailable() -> Option<String> {
    for tool in ["corosync", "corosync-cmapctl"] {
        if which(tool).is_none() {
            return Some(format!(
                "{tool} is not installed (Debian's package `corosync`; scripts/install-deps installs it)"
            ));
        }
    }
    for header in ["/usr/include/corosync/cmap.h", "/usr/include/corosync/sam.h"] {
        if !Path::new(header).is_file() {
            return Some(format!(
                "{header} is missing (Debian's packages libcmap-dev and libsam-dev)"
            ));
        }
    }
    for tool in ["unshare", "nsenter", "ip"] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed; a private corosync needs it"));
        }
    }
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() == 0 => None,
        _ => Some("not root: a private corosync needs its own network and mount namespaces".into()),
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A running private corosync; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Corosync {
    /// `unshare`, whose child (forked into the new namespaces) is corosync.
    unshare: Option<Child>,
    /// corosync's pid, the target of `nsenter`.
    pid: u32,
    log: PathBuf,
}

impl Corosync {
    /// Starts corosync with its files in `dir`, and waits until it answers CMAP.
    pub fn start(dir: &Path) -> anyhow::Result<Corosync> {
        let conf = dir.join("corosync.conf");
        std::fs::write(&conf, config(dir))?;
        let pid_file = dir.join("corosync.pid");
        let log = dir.join("corosync.log");
        let out = File::create(&log)?;
        // $0 and $1: the paths, out of the script's text.
        let script = "ip link set lo up && mount -t tmpfs vigil-bench /run && echo $$ > \"$0\" && \
                      exec corosync -f -c \"$1\"";
        let unshare = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--propagation",
                "private",
                "--fork",
                "sh",
                "-c",
                script,
            ])
            .arg(&pid_file)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot run unshare to start corosync")?;
        let mut c = Corosync {
            unshare: Some(unshare),
            pid: 0,
            log,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(st) = c.unshare.as_mut().map(Child::try_wait).transpose()?.flatten() {
                c.unshare = None;
                bail!("corosync exited at start ({st}){}", c.log_tail());
            }
            if c.pid == 0 {
                c.pid = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
            }
            if c.pid != 0 {
                let ready = c
                    .command("corosync-cmapctl")
                    .arg("totem.cluster_name")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .context("cannot run nsenter corosync-cmapctl")?;
                if ready.success() {
                    return Ok(c);
                }
            }
            if Instant::now() >= deadline {
                bail!("corosync did not answer CMAP within {START_DEADLINE:?}{}", c.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `program`, run in corosync's namespaces (so that its libcmap finds this corosync).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-n", "-m", "--"])
            .arg(program)
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("VIGIL_SOCKET");
        cmd
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "\ncorosync's log:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Corosync {
    fn drop(&mut self) {
        let Some(mut child) = self.unshare.take() else {
            return;
        };
        if self.pid != 0 {
            let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.pid != 0 {
            let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Debian's default corosync.conf (totem version 2, knet, no crypto, votequorum, one node on
/// 127.0.0.1), with its log on stderr and its state in `dir`.
fn config(dir: &Path) -> String {
    format!(
        "totem {{
\tversion: 2
\tcluster_name: vigilbench
\tcrypto_cipher: none
\tcrypto_hash: none
}}
logging {{
\tfileline: off
\tto_stderr: yes
\tto_logfile: no
\tto_syslog: no
\tdebug: off
}}
quorum {{
\tprovider: corosync_votequorum
}}
nodelist {{
\tnode {{
\t\tname: node1
\t\tnodeid: 1
\t\tring0_addr: 127.0.0.1
\t}}
}}
system {{
\tstate_dir: {}
}}
",
        dir.display()
    )
}
