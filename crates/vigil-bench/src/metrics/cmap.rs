//! CMAP: requests on the key-value map vigild hosts, and its track notifications.
//!
//! - set and get: one connection sends `count` `cmap_set` of a U32 to the keys `bench.k<i>`, each once
//!   the previous one is answered, then `count` `cmap_get` of the same keys; then four connections, each
//!   in its own thread with its own keys `bench.c<j>.k<i>`, do the same at once. A sample is one request,
//!   from before it is sent to its answer; ops/s is the requests over the time of the whole batch.
//! - iteration: 100,000 keys `bench.i<i>` (2,000 with `--smoke`) are loaded, then `cmap_iter(Main,
//!   "bench.")` is timed a few times.
//! - track: a second connection tracks the prefix `bench.t.` (ADD|MODIFY|PREFIX) in its own thread. A
//!   sample is from just before the writer's `cmap_set` of `bench.t.k` to the tracker having the
//!   notification, one set at a time; then a burst of sets of new keys, as fast as the writer's answers
//!   come, gives notifications/s.
//!
//! - C: the same set, get and track from a C program through vigil's libcmap.so.4 (`cmap_c.rs`).
//!
//! None of the sets is persistent: vigild writes a key to disk only if asked to, so every set here
//! changes memory only. Every time comes from one `Instant` shared by the threads.

use std::sync::{mpsc, Arc, Barrier};
use std::time::Instant;

use anyhow::{bail, Context};
use vigil_client::proto::{CmapMap, CmapValue};
use vigil_client::Client;

use super::{Ctx, Floor, Metric, Row, Unit};
use crate::daemon::Vigild;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "cmap", run };

const CLIENTS: usize = 4;
const ITER_KEYS: usize = 100_000;
const ITER_KEYS_SMOKE: usize = 2_000;
const ITER_RUNS: usize = 5;
const BURST: usize = 5_000;
const BURST_SMOKE: usize = 500;
const TRACK_FLAGS: u32 = 4 | 2 | 8; // ADD | MODIFY | PREFIX

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (vigild, mut client) = Vigild::start(&ctx.vigild)?;
    let n = ctx.count;
    let mut rows = Vec::new();

    // One client.
    let (sets, set_ns) = timed(n, |i| {
        client.cmap_set(&format!("bench.k{i}"), CmapValue::U32(i as u32), false)
    })?;
    let (gets, get_ns) = timed(n, |i| client.cmap_get(&format!("bench.k{i}")).map(drop))?;
    rows.push(op_row("cmap set, 1 client", &sets, n, set_ns)?);
    rows.push(op_row("cmap get, 1 client", &gets, n, get_ns)?);

    // Four clients at once, each its own connection and keys.
    let go = Arc::new(Barrier::new(CLIENTS));
    let workers = (0..CLIENTS)
        .map(|j| {
            let mut c = vigild.connect_another()?;
            let go = Arc::clone(&go);
            Ok(std::thread::spawn(move || -> anyhow::Result<_> {
                go.wait();
                let s = timed(n, |i| {
                    c.cmap_set(&format!("bench.c{j}.k{i}"), CmapValue::U32(i as u32), false)
                })?;
                go.wait();
                let g = timed(n, |i| c.cmap_get(&format!("bench.c{j}.k{i}")).map(drop))?;
                Ok((s, g))
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut sets, mut gets, mut set_ns, mut get_ns) = (Vec::new(), Vec::new(), 0, 0);
    for w in workers {
        let ((s, sn), (g, gn)) = w.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        sets.extend(s);
        gets.extend(g);
        // The batch lasts as long as its slowest client.
        set_ns = set_ns.max(sn);
        get_ns = get_ns.max(gn);
    }
    rows.push(op_row(
        &format!("cmap set, {CLIENTS} clients"),
        &sets,
        CLIENTS * n,
        set_ns,
    )?);
    rows.push(op_row(
        &format!("cmap get, {CLIENTS} clients"),
        &gets,
        CLIENTS * n,
        get_ns,
    )?);

    rows.push(iteration(ctx, &mut client)?);
    rows.push(track(ctx, &vigild, &mut client)?);
    rows.extend(super::cmap_c::rows(ctx, &vigild)?);
    drop(client);
    vigild.stop()?;
    Ok(rows)
}

/// Runs `op(0..n)` in turn: the latency of each and the time of them all, in ns.
fn timed(n: usize, mut op: impl FnMut(usize) -> vigil_client::Result<()>) -> anyhow::Result<(Vec<u64>, u64)> {
    let start = Instant::now();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        op(i)?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    Ok((samples, start.elapsed().as_nanos() as u64))
}

fn op_row(metric: &str, samples: &[u64], ops: usize, total_ns: u64) -> anyhow::Result<Row> {
    Ok(Row {
        metric: metric.into(),
        summary: Summary::of(samples).context("no samples")?,
        floor: Floor::SocketRoundTrip.into(),
        target: None,
        rate: Some(super::per_second(ops, total_ns, "ops")),
        unit: Unit::Micros,
        notes: vec![format!(
            "{ops} requests in {:.1} ms: {:.0} ops/s (not persistent: in memory only)",
            total_ns as f64 / 1e6,
            per_s(ops, total_ns)
        )],
    })
}

fn per_s(n: usize, ns: u64) -> f64 {
    n as f64 / (ns.max(1) as f64 / 1e9)
}

/// Loads the keys, then times `cmap_iter` over every `bench.` key.
fn iteration(ctx: &Ctx, client: &mut Client) -> anyhow::Result<Row> {
    let keys = if ctx.smoke { ITER_KEYS_SMOKE } else { ITER_KEYS };
    let load = Instant::now();
    for i in 0..keys {
        client.cmap_set(&format!("bench.i{i}"), CmapValue::U32(i as u32), false)?;
    }
    let load_ns = load.elapsed().as_nanos() as u64;
    let (samples, _) = timed(ITER_RUNS, |_| client.cmap_iter(CmapMap::Main, "bench.").map(drop))?;
    let got = client.cmap_iter(CmapMap::Main, "bench.")?.len();
    anyhow::ensure!(got >= keys, "cmap_iter answered {got} keys, {keys} were loaded");
    let summary = Summary::of(&samples).context("no samples")?;
    Ok(Row {
        metric: format!("cmap iter, {got} keys"),
        floor: Floor::SocketRoundTrip.into(),
        target: None,
        rate: None,
        unit: Unit::Micros,
        notes: vec![
            format!(
                "p50 {:.1} ms: {:.0} keys/s ({} runs)",
                summary.p50 as f64 / 1e6,
                per_s(got, summary.p50),
                ITER_RUNS
            ),
            format!(
                "loading {keys} keys (one set at a time, not persistent) took {:.0} ms: {:.0} sets/s",
                load_ns as f64 / 1e6,
                per_s(keys, load_ns)
            ),
        ],
        summary,
    })
}

/// Notification latency, one set at a time, then a burst.
fn track(ctx: &Ctx, vigild: &Vigild, writer: &mut Client) -> anyhow::Result<Row> {
    let n = ctx.count;
    let burst = if ctx.smoke { BURST_SMOKE } else { BURST };
    let mut tracker = vigild.connect_another()?;
    tracker.cmap_track_add(CmapMap::Main, "bench.t.", TRACK_FLAGS, 7)?;
    let base = Instant::now();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || -> anyhow::Result<()> {
        for _ in 0..n + burst {
            let note = tracker.next_notification()?;
            let at = base.elapsed().as_nanos() as u64;
            if tx.send((note.key, at)).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut samples = Vec::with_capacity(n);
    let mut measure = || -> anyhow::Result<u64> {
        for i in 0..n {
            let sent = base.elapsed().as_nanos() as u64;
            writer.cmap_set("bench.t.k", CmapValue::U32(i as u32), false)?;
            let (key, at) = rx.recv().context("the tracker stopped")?;
            if key != "bench.t.k" {
                bail!("notification for {key}, expected bench.t.k");
            }
            samples.push(at.saturating_sub(sent));
        }
        let start = base.elapsed().as_nanos() as u64;
        for i in 0..burst {
            writer.cmap_set(&format!("bench.t.b{i}"), CmapValue::U32(i as u32), false)?;
        }
        let mut last = start;
        for _ in 0..burst {
            last = rx.recv().context("the tracker stopped")?.1;
        }
        Ok(last - start)
    };
    let burst_ns = measure();
    // With an error, the reader may still be blocked; it ends when vigild stops.
    let burst_ns = burst_ns?;
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the tracker thread panicked"))??;
    Ok(Row {
        metric: "cmap set → track notification".into(),
        summary: Summary::of(&samples).context("no samples")?,
        floor: Floor::SocketRoundTrip.into(),
        target: None,
        rate: None,
        unit: Unit::Micros,
        notes: vec![format!(
            "burst of {burst} sets of new keys: the tracker had all {burst} notifications {:.1} ms after the \
             first set: {:.0} notifications/s",
            burst_ns as f64 / 1e6,
            per_s(burst, burst_ns)
        )],
    })
}
