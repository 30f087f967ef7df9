//! The floors: what the machine needs for the same work without vigild, measured in the same run.
//!
//! - fork+exec+wait: starting the same tiny program (this executable, `child-noop`) and waiting for it,
//!   with `std::process::Command`: the least any supervisor pays to replace a process.
//! - respawn loop: the restart latency of the simplest possible supervisor, a loop that waits for the
//!   `child` program and starts it again at once, stamped exactly as in the restart metric.
//! - Unix socket and pipe round trips: one byte there and back between two threads of one process. Not
//!   the floor of a request to a daemon, which crosses between processes: the two-process floors below.
//! - the same between two processes, 64 bytes there and back, over a Unix socket and over a pair of
//!   pipes: the true floor of a client's request to a daemon (the `child-echo` program is the other
//!   process; neither is pinned to a CPU).
//! - spawn loop ([`spawn_loop`], for the scale metric only): the same long-lived program started N times
//!   in a row with no supervision, the least any supervisor pays to bring N killed processes back.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use crate::stamps;
use crate::stats::Summary;

/// Round trips per IPC floor (they are cheap; many give a stable p99).
const ROUND_TRIPS: usize = 20_000;
const ROUND_TRIPS_SMOKE: usize = 2_000;
/// Untimed runs first, so that caches and the page cache are warm.
const WARM_UP_EXECS: usize = 5;
const WARM_UP_ROUND_TRIPS: usize = 200;

/// Every floor, as distributions in nanoseconds.
pub struct Floors {
    pub exec: Summary,
    pub respawn: Summary,
    pub socket: Summary,
    pub pipe: Summary,
    pub proc_socket: Summary,
    pub proc_pipe: Summary,
}

pub fn measure(self_exe: &Path, execs: usize, smoke: bool) -> anyhow::Result<Floors> {
    let trips = if smoke { ROUND_TRIPS_SMOKE } else { ROUND_TRIPS };
    Ok(Floors {
        exec: summarise(fork_exec_wait(self_exe, execs)?, "fork+exec+wait")?,
        respawn: summarise(respawn_loop(self_exe, execs)?, "respawn loop")?,
        socket: summarise(socket_round_trips(trips)?, "unix socket round trip")?,
        pipe: summarise(pipe_round_trips(trips)?, "pipe round trip")?,
        proc_socket: summarise(
            proc_socket_round_trips(self_exe, trips)?,
            "two-process socket round trip",
        )?,
        proc_pipe: summarise(proc_pipe_round_trips(self_exe, trips)?, "two-process pipe round trip")?,
    })
}

fn summarise(samples: Vec<u64>, what: &str) -> anyhow::Result<Summary> {
    Summary::of(&samples).with_context(|| format!("no samples for the {what} floor"))
}

/// Runs `self_exe child-noop` `n` times, timing each from before the fork to after the wait.
fn fork_exec_wait(self_exe: &Path, n: usize) -> anyhow::Result<Vec<u64>> {
    let run = || -> anyhow::Result<u64> {
        let t = Instant::now();
        let status = Command::new(self_exe)
            .arg("child-noop")
            .status()
            .with_context(|| format!("cannot run {}", self_exe.display()))?;
        let ns = t.elapsed().as_nanos() as u64;
        anyhow::ensure!(status.success(), "{} child-noop: {status}", self_exe.display());
        Ok(ns)
    };
    for _ in 0..WARM_UP_EXECS {
        run()?;
    }
    (0..n).map(|_| run()).collect()
}

/// Runs `self_exe child STAMP` `n + 1` times in a row, and returns the `n` restart latencies (exit stamp
/// to the next start stamp).
fn respawn_loop(self_exe: &Path, n: usize) -> anyhow::Result<Vec<u64>> {
    let dir = tempfile::Builder::new().prefix("vigil-bench-").tempdir()?;
    let stamp = dir.path().join("stamps");
    for _ in 0..=n {
        let status = Command::new(self_exe)
            .arg("child")
            .arg(&stamp)
            .status()
            .with_context(|| format!("cannot run {}", self_exe.display()))?;
        anyhow::ensure!(status.success(), "{} child: {status}", self_exe.display());
    }
    let text = std::fs::read_to_string(&stamp)?;
    let mut s = stamps::parse(&text)?;
    anyhow::ensure!(
        s.samples.len() >= n,
        "respawn loop: {} of {n} samples ({} with the clock going backwards)",
        s.samples.len(),
        s.backwards
    );
    s.samples.truncate(n);
    Ok(s.samples)
}

fn socket_round_trips(n: usize) -> anyhow::Result<Vec<u64>> {
    let (a, b) = UnixStream::pair().context("socketpair")?;
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    ping_pong(a, a2, b, b2, n).context("unix socket round trips")
}

fn pipe_round_trips(n: usize) -> anyhow::Result<Vec<u64>> {
    let (there_r, there_w) = std::io::pipe().context("pipe")?;
    let (back_r, back_w) = std::io::pipe().context("pipe")?;
    ping_pong(there_w, back_r, there_r, back_w, n).context("pipe round trips")
}

/// The bytes of one two-process round trip.
pub const ECHO_BYTES: usize = 64;

fn proc_socket_round_trips(self_exe: &Path, n: usize) -> anyhow::Result<Vec<u64>> {
    let (a, b) = UnixStream::pair().context("socketpair")?;
    let child = Command::new(self_exe)
        .arg("child-echo")
        .stdin(std::os::fd::OwnedFd::from(b.try_clone()?))
        .stdout(std::os::fd::OwnedFd::from(b))
        .spawn()
        .with_context(|| format!("cannot run {} child-echo", self_exe.display()))?;
    let rx = a.try_clone()?;
    proc_ping_pong(a, rx, child, n).context("two-process unix socket round trips")
}

fn proc_pipe_round_trips(self_exe: &Path, n: usize) -> anyhow::Result<Vec<u64>> {
    let (there_r, there_w) = std::io::pipe().context("pipe")?;
    let (back_r, back_w) = std::io::pipe().context("pipe")?;
    let child = Command::new(self_exe)
        .arg("child-echo")
        .stdin(there_r)
        .stdout(back_w)
        .spawn()
        .with_context(|| format!("cannot run {} child-echo", self_exe.display()))?;
    proc_ping_pong(there_w, back_r, child, n).context("two-process pipe round trips")
}

/// Sends [`ECHO_BYTES`] through `tx` to the `child-echo` process, which writes them back, and times
/// until they arrive on `rx`; `n` times after a warm-up. The child ends when `tx` is closed.
fn proc_ping_pong(mut tx: impl Write, mut rx: impl Read, mut child: Child, n: usize) -> anyhow::Result<Vec<u64>> {
    let mut samples = Vec::with_capacity(n);
    let mut msg = [0u8; ECHO_BYTES];
    let mut back = [0u8; ECHO_BYTES];
    let result = (|| -> anyhow::Result<()> {
        for i in 0..WARM_UP_ROUND_TRIPS + n {
            // Letters only: the child's stdout is line-buffered, and a newline would split the write.
            msg.fill(b'a' + (i % 26) as u8);
            let t = Instant::now();
            tx.write_all(&msg)?;
            rx.read_exact(&mut back)?;
            let ns = t.elapsed().as_nanos() as u64;
            anyhow::ensure!(back == msg, "the echo process sent back other bytes");
            if i >= WARM_UP_ROUND_TRIPS {
                samples.push(ns);
            }
        }
        Ok(())
    })();
    drop(tx);
    drop(rx);
    let status = child.wait()?;
    result?;
    anyhow::ensure!(status.success(), "child-echo: {status}");
    Ok(samples)
}

/// `child-echo`: reads [`ECHO_BYTES`] at a time from stdin and writes them back to stdout, until stdin
/// ends.
pub fn echo() -> std::process::ExitCode {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut b = [0u8; ECHO_BYTES];
    while input.read_exact(&mut b).is_ok() {
        if output.write_all(&b).and_then(|()| output.flush()).is_err() {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

/// Sends one byte through `tx`, which a thread reads from `echo_rx` and writes back to `echo_tx`, and
/// times until it arrives on `rx`; `n` times after a warm-up.
fn ping_pong(
    mut tx: impl Write,
    mut rx: impl Read,
    mut echo_rx: impl Read + Send + 'static,
    mut echo_tx: impl Write + Send + 'static,
    n: usize,
) -> anyhow::Result<Vec<u64>> {
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        // Ends when the other side is dropped.
        while echo_rx.read_exact(&mut b).is_ok() {
            if echo_tx.write_all(&b).is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(n);
    let mut b = [0u8; 1];
    for i in 0..WARM_UP_ROUND_TRIPS + n {
        let t = Instant::now();
        tx.write_all(&[i as u8])?;
        rx.read_exact(&mut b)?;
        let ns = t.elapsed().as_nanos() as u64;
        anyhow::ensure!(b[0] == i as u8, "the echo sent back {} for {}", b[0], i as u8);
        if i >= WARM_UP_ROUND_TRIPS {
            samples.push(ns);
        }
    }
    // Both ends: a socket's read half is the same socket as its write half.
    drop(tx);
    drop(rx);
    echo.join().map_err(|_| anyhow::anyhow!("the echo thread panicked"))?;
    Ok(samples)
}

/// Starts `program` (argv) `n` times in a row as fast as one thread can, with no supervision: what
/// vigild's restart of `n` killed tags is compared with. Sample `i` is the time from just before the
/// first start to the return of the `i`-th, so that the samples are laid out as those of the restart
/// (from the kill to each tag's restart): the last one is the time until all `n` run.
///
/// `std::process::Command::spawn` is glibc's `posix_spawn` here (clone(CLONE_VM | CLONE_VFORK) + exec,
/// returning once the exec is done), which is what vigild's spawn does too; the output goes to
/// /dev/null. Every process is killed and reaped before this returns.
pub fn spawn_loop(program: &[String], n: usize) -> anyhow::Result<SpawnLoop> {
    spawn_n(program, WARM_UP_EXECS)?;
    spawn_n(program, n)
}

/// What [`spawn_loop`] measured.
#[derive(Debug)]
pub struct SpawnLoop {
    /// From before the first start to the return of each, in ns.
    pub samples: Vec<u64>,
    /// The CPU time of the starting thread over the loop, in ns: what the machine's load does not move
    /// as much as the elapsed time.
    pub cpu_ns: u64,
}

/// The CPU time this thread used so far, in ns (the first field of its schedstat).
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn spawn_n(program: &[String], n: usize) -> anyhow::Result<SpawnLoop> {
    let (exe, args) = program.split_first().context("an empty command")?;
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    let mut failed = None;
    for _ in 0..n {
        match Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => {
                samples.push(t0.elapsed().as_nanos() as u64);
                children.push(c);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let cpu_ns = thread_cpu_ns().saturating_sub(cpu0);
    for c in &mut children {
        let _ = c.kill();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    match failed {
        Some(e) => Err(e).with_context(|| format!("spawn loop: cannot start {exe}")),
        None => Ok(SpawnLoop { samples, cpu_ns }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spawn_loop_times_every_start_from_the_first_and_leaves_no_process() {
        let cmd = vec!["sleep".to_string(), "1000".to_string()];
        let got = spawn_n(&cmd, 5).unwrap();
        let samples = got.samples;
        assert_eq!(samples.len(), 5);
        assert!(got.cpu_ns > 0);
        assert!(samples.windows(2).all(|w| w[0] <= w[1]), "{samples:?}");
        // Killed and reaped: no `sleep 1000` child of this process is left.
        let me = std::process::id().to_string();
        let left = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|s| {
                let after = s.rsplit_once(") ").map_or("", |(_, a)| a);
                after.split_whitespace().nth(1) == Some(me.as_str()) && s.contains("(sleep)")
            })
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error_that_names_it() {
        let err = spawn_loop(&["/nonexistent/vigil-bench-prog".to_string()], 3).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/vigil-bench-prog"), "{err:#}");
        assert!(spawn_loop(&[], 3).is_err());
    }
}
