//! Cluster mode: a real etcd (one member, Debian's `etcd`, on loopback ports in a temporary directory) and
//! two vigild nodes, A and B, on this machine.
//!
//! Remote round trip: `status` of every tag asked of A for node B (`Request::OnNode`): A's loop, A's
//! cluster task writing B's inbox, B's watch, B's loop, B's reply key, A's watch, the answer; next to the
//! same request answered by A itself. Event propagation: from a PSM add (or remove) asked of A until
//! the event reaches a subscriber to the cluster stream on B (A's store, A's publication to etcd, B's
//! watch, B's connection); next to the same event reaching a subscriber to A's local stream. Failure
//! detection: from a kill -9 of B until A lists B as down
//! (lease TTL 2 s, etcd's minimum), a few samples.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{Ctx, Floor, Metric, Row, Unit};
use crate::daemon::Vigild;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "cluster", run };

const TTL: u64 = 2;

/// One etcd member, killed on drop.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn etcd() -> anyhow::Result<Etcd> {
    let dir = tempfile::Builder::new().prefix("vigil-bench-etcd-").tempdir()?;
    let (c, p) = (port()?, port()?);
    let url = format!("http://127.0.0.1:{c}");
    let peer = format!("http://127.0.0.1:{p}");
    let child = Command::new("etcd")
        .args(["--name", "m0", "--data-dir"])
        .arg(dir.path().join("m0"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("m0={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start etcd (Debian's etcd-server: scripts/install-deps installs it)")?;
    let e = Etcd { child, url, _dir: dir };
    let end = Instant::now() + Duration::from_secs(10);
    while !healthy(c) {
        if Instant::now() >= end {
            bail!("etcd did not become healthy within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(e)
}

/// Whether etcd answers `/health` with a leader (etcd 3.4: `{"health":"true"}`).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

fn node(ctx: &Ctx, etcd: &Etcd, name: &str) -> anyhow::Result<(Vigild, vigil_client::Client)> {
    let args: Vec<String> = ["--cluster", &etcd.url, "--node", name, "--lease-ttl", &TTL.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Vigild::start_args(&ctx.vigild, &args)
}

fn wait_node(c: &mut vigil_client::Client, name: &str, up: bool) -> anyhow::Result<Instant> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if c.nodes()?.iter().any(|n| n.name == name && n.up == up) {
            return Ok(Instant::now());
        }
        if Instant::now() >= end {
            bail!("node {name} not {} within 10 s", if up { "up" } else { "down" });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let etcd = etcd()?;
    let (a, mut ca) = node(ctx, &etcd, "a")?;
    let (b, mut cb) = node(ctx, &etcd, "b")?;
    wait_node(&mut ca, "b", true)?;
    cb.run(vigil_client::proto::RunSpec::new(
        "bench",
        vec!["sleep".into(), "1000".into()],
    ))
    .context("cannot start a tag on b")?;

    let mut local = Vec::with_capacity(ctx.count);
    let mut remote = Vec::with_capacity(ctx.count);
    for _ in 0..ctx.count {
        ca.set_node(None);
        let t = Instant::now();
        ca.status_all()?;
        local.push(t.elapsed().as_nanos() as u64);
        ca.set_node(Some("b"));
        let t = Instant::now();
        let tags = ca.status_all()?;
        remote.push(t.elapsed().as_nanos() as u64);
        anyhow::ensure!(tags.len() == 1, "b answered {} tags", tags.len());
    }
    ca.set_node(None);
    drop(cb);
    let (propagation, local_event) = propagation(ctx, &a, &b, &mut ca)?;

    // Failure detection: a few kill -9 of a node, each a new vigild "c".
    let rounds = if ctx.smoke { 1 } else { 3 };
    let mut detect = Vec::new();
    b.kill9();
    wait_node(&mut ca, "b", false)?;
    for _ in 0..rounds {
        let (c, _cc) = node(ctx, &etcd, "c")?;
        wait_node(&mut ca, "c", true)?;
        let t = Instant::now();
        c.kill9();
        let seen = wait_node(&mut ca, "c", false)?;
        detect.push((seen - t).as_nanos() as u64);
    }
    a.stop()?;
    drop(etcd);

    let detect = Summary::of(&detect).context("no detection samples")?;
    let local = Summary::of(&local).context("no samples")?;
    let remote_notes = vec![format!(
        "same request answered by A itself: p50 {:.0} µs, p99 {:.0} µs",
        local.p50 as f64 / 1e3,
        local.p99 as f64 / 1e3
    )];
    let local_event = Summary::of(&local_event).context("no local event samples")?;
    Ok(vec![
        Row {
            metric: "cluster: event on node A to a subscriber of the cluster stream on B".into(),
            summary: Summary::of(&propagation).context("no propagation samples")?,
            floor: Floor::SocketRoundTrip.into(),
            target: None,
            rate: None,
            unit: Unit::Micros,
            notes: vec![format!(
                "same event to a subscriber of A's local stream: p50 {:.0} µs, p99 {:.0} µs",
                local_event.p50 as f64 / 1e3,
                local_event.p99 as f64 / 1e3
            )],
        },
        Row {
            metric: "cluster: status on node B asked of A (through etcd)".into(),
            summary: Summary::of(&remote).context("no samples")?,
            floor: Floor::SocketRoundTrip.into(),
            target: None,
            rate: None,
            unit: Unit::Micros,
            notes: remote_notes,
        },
        Row {
            metric: format!("cluster: kill -9 of a node until another lists it down (lease TTL {TTL} s)"),
            summary: detect,
            floor: Floor::SocketRoundTrip.into(),
            target: None,
            rate: None,
            unit: Unit::Micros,
            notes: vec![],
        },
    ])
}

/// Event propagation samples (A to B's cluster stream) and, for the same events, A's local stream.
fn propagation(
    ctx: &Ctx,
    a: &Vigild,
    b: &Vigild,
    ca: &mut vigil_client::Client,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    use vigil_client::proto::{EventFilter, PsmNode};
    use vigil_client::{ClusterItem, StreamItem};
    let filter = EventFilter {
        names: vec!["sys.unix.psm.instance".into()],
        ..Default::default()
    };
    let mut sub_b = vigil_client::Client::connect(b.socket())?;
    sub_b.set_read_timeout(Some(Duration::from_secs(10)))?;
    let end = sub_b.cluster_events(0, 1, filter.clone(), vec![])?.upto;
    sub_b.cluster_subscribe(Some(end), filter.clone(), vec![])?;
    let mut sub_a = vigil_client::Client::connect(a.socket())?;
    sub_a.set_read_timeout(Some(Duration::from_secs(10)))?;
    sub_a.subscribe_filtered(None, filter)?;
    let node = PsmNode::local();
    ca.psm_category_add(&node, "bench")?;
    let mut child = Command::new("sleep").arg("1000").spawn()?;
    let pid = child.id() as i32;
    // PSM refuses a pid still inside exec ("try again"): wait until the child is `sleep` with its argv.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exec_done = || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"));
    while !exec_done() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the child {pid} did not become sleep within 10 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut remote, mut local) = (Vec::new(), Vec::new());
    // Event 0 is not a sample: B's watch starts from a revision already past, so etcd hands it over on its
    // catch-up tick (every 100 ms) rather than at once, as it does every later event.
    for i in 0..=ctx.count {
        let t = Instant::now();
        if i % 2 == 0 {
            ca.psm_add(&node, "bench", pid)?;
        } else {
            ca.psm_remove(&node, Some("bench"), pid)?;
        }
        match sub_a.next_item()? {
            StreamItem::Event(_) if i == 0 => {}
            StreamItem::Event(_) => local.push(t.elapsed().as_nanos() as u64),
            StreamItem::Lost { from, to } => bail!("A's subscriber lost events {from}..={to}"),
        }
        match sub_b.next_cluster_item()? {
            ClusterItem::Event(e) => {
                if i > 0 {
                    remote.push(t.elapsed().as_nanos() as u64);
                }
                anyhow::ensure!(e.event.node == "a", "an event of node {}", e.event.node);
            }
            ClusterItem::Lost { from, to } => bail!("B's subscriber lost revisions {from}..={to}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok((remote, local))
}
