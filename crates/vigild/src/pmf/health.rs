//! Health checks: systemd's notify socket, and probes. The rules (deadlines, counting) are in
//! `vigil_core::health`; here is their I/O.
//!
//! One notify socket serves every tag, as `/run/systemd/notify` does for systemd, rather than one socket
//! per tag: the kernel tells who sent each datagram (SO_PASSCRED), and vigild already knows which tag each
//! watched pid belongs to, so a datagram is attributed exactly, from any process of the tag (a launcher
//! script's child too), with one fd in the loop and nothing to create, chown or clean up per tag. A
//! per-tag socket would prove only that the sender could open a path, not that it is one of the tag's
//! processes, so it would need the same check anyway.
//!
//! Probes never block the loop: a TCP or HTTP probe is a tokio task; an exec probe is started by the
//! loop like any process of vigild (so that it is vigild's child and reaped by vigild's reaper alone, in
//! its own session), and a task waits for the exit status that the reaper hands over, or for the
//! timeout, after which the loop kills the probe's process group. Results come back as `Msg::ProbeDone`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, trace, warn};
use vigil_core::health::{parse_notify, HttpUrl};
use vigil_core::{Effect, Exit, ProbeCheck, TagName};

use crate::clock::now;
use crate::msg::Msg;
use crate::pmf::procs::Role;
use crate::state::Daemon;

/// The notify socket's file in the state directory.
pub const NOTIFY_SOCKET_NAME: &str = "notify.sock";

/// How much of a response is read looking for the status line.
const STATUS_LINE_MAX: usize = 4096;

/// Datagrams read in one turn of the loop before others get theirs.
const NOTIFY_BATCH: usize = 256;

impl Daemon {
    /// Reads waiting notify datagrams; true when the socket is empty.
    pub fn drain_notify(&mut self) -> bool {
        let Some(sock) = self.pmf.notify.clone() else {
            return true;
        };
        for _ in 0..NOTIFY_BATCH {
            match sock.recv() {
                Ok(Some(d)) => match d.pid.filter(|p| *p > 0) {
                    Some(pid) => self.notified(pid, &String::from_utf8_lossy(&d.data)),
                    None => debug!("notify datagram without credentials: ignored"),
                },
                Ok(None) => return true,
                Err(e) => {
                    warn!("notify socket: {e}");
                    return true;
                }
            }
        }
        false
    }

    fn tag_of_pid(&self, pid: i32) -> Option<TagName> {
        self.pmf.procs.get(&pid).and_then(|w| w.tag.clone())
    }

    /// A datagram from `pid`: only a process of a tag may speak, and only for that tag.
    fn notified(&mut self, pid: i32, text: &str) {
        let msgs = parse_notify(text);
        if msgs.is_empty() {
            return;
        }
        let mut name = self.tag_of_pid(pid);
        if name.is_none() && self.pmf.connector.is_none() {
            // Without fork events a new child of a tag is unknown until a scan finds it. Scan at most once
            // a second, so that datagrams from strangers cannot keep vigild reading /proc.
            let due = self
                .pmf
                .notify_rescan
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                self.pmf.notify_rescan = Some(Instant::now());
                let table = vigil_sys::ProcTable::snapshot();
                let names: Vec<TagName> = self.pmf.tags.keys().cloned().collect();
                for n in names {
                    self.rescan_with(&n, &table);
                }
                name = self.tag_of_pid(pid);
            }
        }
        let Some(name) = name else {
            debug!(pid, "notify from a process of no tag: ignored");
            return;
        };
        let Some(e) = self.pmf.tags.get_mut(&name) else { return };
        trace!(tag = %name, pid, "notify: {text:?}");
        let before = (e.tag.health().ready, e.tag.health().status.clone());
        match e.tag.notified(pid, &msgs, now()) {
            Ok(fx) => {
                if (e.tag.health().ready, &e.tag.health().status) != (before.0, &before.1) {
                    self.pmf.dirty.insert(name.clone());
                }
                self.apply(&name, fx);
            }
            Err(refused) => debug!("notify ignored: {refused}"),
        }
    }

    /// Carries out `Effect::RunProbe`.
    pub fn run_probe(&mut self, name: &TagName, index: usize, instance: u64) -> Vec<Effect> {
        let Some(spec) = self
            .pmf
            .tags
            .get(name)
            .and_then(|e| e.tag.spec().health.probes.get(index).cloned())
        else {
            return vec![];
        };
        let tx = self.node.tx.clone();
        let tag = name.clone();
        let timeout = spec.timeout;
        let late = move || format!("no answer within {} ms", timeout.as_millis());
        match spec.check {
            ProbeCheck::Exec { command } => match self.start_process(name, &command, Role::Probe) {
                Ok(sp) => {
                    let (reply, exited) = tokio::sync::oneshot::channel();
                    self.pmf.probe_children.insert(sp.pid, reply);
                    let pid = sp.pid;
                    tokio::spawn(async move {
                        let result = match tokio::time::timeout(timeout, exited).await {
                            Ok(Ok(Exit::Code(0))) => Ok(()),
                            Ok(Ok(exit)) => Err(format!("the command ended with {exit}")),
                            Ok(Err(_)) => Err("the command's exit status was lost".to_string()),
                            Err(_) => Err(late()),
                        };
                        let _ = tx.send(Msg::ProbeDone {
                            tag,
                            instance,
                            index,
                            pid: Some(pid),
                            result,
                        });
                    });
                    vec![]
                }
                Err(e) => self
                    .pmf
                    .tags
                    .get_mut(name)
                    .map(|en| en.tag.probe_done(instance, index, Err(e.reason), now()))
                    .unwrap_or_default(),
            },
            ProbeCheck::Tcp { host, port } => {
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(format!("connect: {e}")),
                        Err(_) => Err(late()),
                    };
                    let _ = tx.send(Msg::ProbeDone {
                        tag,
                        instance,
                        index,
                        pid: None,
                        result,
                    });
                });
                vec![]
            }
            ProbeCheck::Http(url) => {
                tokio::spawn(async move {
                    let result = tokio::time::timeout(timeout, http_get(&url))
                        .await
                        .unwrap_or_else(|_| Err(late()));
                    let _ = tx.send(Msg::ProbeDone {
                        tag,
                        instance,
                        index,
                        pid: None,
                        result,
                    });
                });
                vec![]
            }
        }
    }

    /// A probe run ended.
    pub fn on_probe_done(
        &mut self,
        name: &TagName,
        instance: u64,
        index: usize,
        pid: Option<i32>,
        result: Result<(), String>,
    ) {
        if let Some(pid) = pid.filter(|p| self.pmf.probe_children.contains_key(p)) {
            // Not reaped yet, so the pid (its process group's id too) is still this probe's.
            if let Err(e) = vigil_sys::kill_process_group(pid, libc::SIGKILL) {
                debug!(tag = %name, pid, "killing a late probe: {e}");
            }
        }
        if let Err(e) = &result {
            debug!(tag = %name, index, "probe failed: {e}");
        }
        let fx = match self.pmf.tags.get_mut(name) {
            Some(e) => {
                // Counted as the rules judge it: a late result of an instance that is gone is not.
                let current = *e.tag.state() == vigil_core::TagState::Running && e.tag.starts() == instance;
                e.probe_failures += u64::from(result.is_err() && current);
                e.tag.probe_done(instance, index, result, now())
            }
            None => return,
        };
        self.apply(name, fx);
    }

    /// Kills every running exec probe (vigild is stopping).
    pub fn kill_probes(&mut self) {
        for pid in self.pmf.probe_children.keys() {
            let _ = vigil_sys::kill_process_group(*pid, libc::SIGKILL);
        }
    }
}

/// `GET` the URL over HTTP/1.1 with `Connection: close`, and judge the status line alone: 2xx is healthy.
/// vigil's own small need (local health endpoints, plain HTTP), not worth an HTTP stack.
pub async fn http_get(url: &HttpUrl) -> Result<(), String> {
    let mut s = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vigild/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send the request: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return status_ok(&buf[..end]);
        }
        if buf.len() >= STATUS_LINE_MAX {
            return Err("no status line in the first 4 KiB of the response".into());
        }
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read the response: {e}"))?;
        if n == 0 {
            return Err("the connection closed before a status line".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `HTTP/1.x NNN reason`: Ok for 2xx.
fn status_ok(line: &[u8]) -> Result<(), String> {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) if version.starts_with("HTTP/") => Ok(()),
        Some(_) if version.starts_with("HTTP/") => Err(format!("HTTP status {}", line[version.len()..].trim())),
        _ => Err(format!(
            "not an HTTP response: {:?}",
            line.chars().take(60).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_ok(b"HTTP/1.0 200 OK"), Ok(()));
        assert_eq!(status_ok(b"HTTP/1.1 204"), Ok(()));
        assert_eq!(
            status_ok(b"HTTP/1.1 503 Service Unavailable"),
            Err("HTTP status 503 Service Unavailable".into())
        );
        assert_eq!(status_ok(b"HTTP/1.1 301 Moved"), Err("HTTP status 301 Moved".into()));
        assert!(status_ok(b"SSH-2.0-OpenSSH")
            .unwrap_err()
            .starts_with("not an HTTP response"));
    }
}
