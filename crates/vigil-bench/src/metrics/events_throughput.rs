//! Event throughput: how fast vigild delivers a stream of events to many subscribers at once.
//!
//! Ten connections subscribe to the `sys.unix.psm.category` events, each read by its own thread. One
//! producer connection then sends `psm_category_add` and `psm_category_remove` of the category
//! `bench-events-0` in turn, each as soon as the previous one is answered; each request makes exactly
//! one event. The batch is 5,000 events (500 with `--smoke`). A second batch, in a fresh vigild, comes
//! from 4 producer connections at once (each its own category `bench-events-J`, a quarter of the
//! batch), to show whether one producer already gives vigild all the work it can take.
//!
//! Every time is read from one `Instant` shared by the threads. A producer notes when it sends each
//! request and when it has the answer; a subscriber notes when `next_item` returns each event, and
//! takes the k-th event about producer j's category for that producer's k-th request. The batch's
//! events are numbered from vigild's last sequence number + 1 on: an event numbered past the batch
//! fails the run, one numbered before it is counted and reported. From that:
//! - the batch time of a subscriber: from the first request to that subscriber having the last event;
//!   the throughput is the batch over the longest of them, the moment every subscriber has everything;
//! - a row "per event": each subscriber's batch time divided by the batch size;
//! - a row of event latency under load: for every event at every subscriber, its arrival minus the
//!   moment its request was sent (a producer has one request in flight at a time, so with several
//!   producers this includes waiting behind the others' requests).
//!
//! Loss markers (`StreamItem::Lost`) are counted and reported, never hidden: with vigild's default
//! subscriber queue (4,096) there should be none. After a loss, a subscriber's later events can no
//! longer be matched to their requests, and are left out of the latencies.

use std::sync::{mpsc, Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vigil_client::proto::{EventFilter, PsmNode};
use vigil_client::{Client, StreamItem};

use super::{Ctx, Floor, Metric, Row, Unit};
use crate::daemon::Vigild;
use crate::stats::{us, Summary};

pub const METRIC: Metric = Metric {
    name: "events-throughput",
    run,
};

const SUBSCRIBERS: usize = 10;
/// The batches, each in a fresh vigild: one producer connection, then several.
const PRODUCERS: &[usize] = &[1, 4];
/// Events per batch.
const BATCH: usize = 5000;
const BATCH_SMOKE: usize = 500;
const CATEGORY: &str = "bench-events";
const FAMILY: &str = "sys.unix.psm.category";
/// Once the producers are done, how often vigild is poked (a loss marker is flushed on vigild's next
/// step), and how long the subscribers may then take.
const POKE: Duration = Duration::from_millis(20);
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// What the subscribers are told before the batch starts.
#[derive(Clone)]
struct Plan {
    /// The sequence numbers the batch's events will have.
    first: u64,
    last: u64,
    /// Requests of each producer.
    shares: Vec<usize>,
}

/// What one subscriber saw.
struct Received {
    /// When it had the last event of the batch (or learnt it was lost), ns since the shared base.
    done_ns: u64,
    /// Arrival of each producer's events, in the order of its requests (None: lost, or after a loss),
    /// ns since the shared base.
    arrivals: Vec<Vec<Option<u64>>>,
    lost_markers: usize,
    lost_events: u64,
    /// Events numbered before the batch.
    unexpected: usize,
    /// A loss happened: arrivals after it are not recorded.
    misaligned: bool,
}

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let batch = if ctx.smoke { BATCH_SMOKE } else { BATCH };
    let mut rows = Vec::new();
    for &producers in PRODUCERS {
        rows.extend(one_batch(ctx, batch, producers)?);
    }
    Ok(rows)
}

/// The category of producer `j`.
fn category(j: usize) -> String {
    format!("{CATEGORY}-{j}")
}

/// One batch of `batch` events from `producers` connections (each its own category, its share of the
/// batch), in a vigild of its own.
fn one_batch(ctx: &Ctx, batch: usize, producers: usize) -> anyhow::Result<Vec<Row>> {
    let (vigild, mut control) = Vigild::start(&ctx.vigild)?;
    let base = Instant::now();
    let filter = EventFilter {
        names: vec![FAMILY.into()],
        category: None,
        tag: None,
    };
    let mut subscribers: Vec<(mpsc::Sender<Plan>, JoinHandle<anyhow::Result<Received>>)> = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut c = vigild.connect_another()?;
        c.subscribe_filtered(None, filter.clone())
            .with_context(|| format!("subscriber {i} cannot subscribe"))?;
        let (tx, rx) = mpsc::channel();
        let h = std::thread::spawn(move || receive(c, rx, base));
        subscribers.push((tx, h));
    }
    let info = control.daemon_status()?;
    anyhow::ensure!(
        info.subscribers as usize >= SUBSCRIBERS,
        "vigild counts {} subscribers, expected {SUBSCRIBERS}",
        info.subscribers
    );
    // Producer j sends the requests j, j + producers, j + 2 × producers... of the batch.
    let shares: Vec<usize> = (0..producers)
        .map(|j| (batch + producers - 1 - j) / producers)
        .collect();
    // The batch's events are numbered first..=last: nothing else happens in this daemon meanwhile.
    let plan = Plan {
        first: info.last_seq + 1,
        last: info.last_seq + batch as u64,
        shares: shares.clone(),
    };
    for (tx, _) in &subscribers {
        tx.send(plan.clone()).context("a subscriber thread ended early")?;
    }

    let go = Arc::new(Barrier::new(producers));
    let mut handles = Vec::with_capacity(producers);
    for (j, &share) in shares.iter().enumerate() {
        let c = vigild.connect_another()?;
        let go = go.clone();
        handles.push(std::thread::spawn(move || produce(c, &category(j), share, &go, base)));
    }
    let mut sent = Vec::with_capacity(producers);
    for (j, h) in handles.into_iter().enumerate() {
        let s = h
            .join()
            .map_err(|_| anyhow::anyhow!("producer {j} panicked"))?
            .with_context(|| format!("producer {j}"))?;
        sent.push(s);
    }
    let answered_ns = sent.iter().filter_map(|s| s.last()).map(|&(_, a)| a).max().unwrap_or(0);

    // Wait for every subscriber, poking vigild so that a pending loss marker is sent.
    let drain_deadline = Instant::now() + DRAIN_DEADLINE;
    while !subscribers.iter().all(|(_, h)| h.is_finished()) {
        if Instant::now() >= drain_deadline {
            bail!("the subscribers did not have the whole batch {DRAIN_DEADLINE:?} after the last answer");
        }
        std::thread::sleep(POKE);
        control.daemon_status()?;
    }
    let mut got = Vec::with_capacity(SUBSCRIBERS);
    for (i, (_, h)) in subscribers.into_iter().enumerate() {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("subscriber {i} panicked"))?
            .with_context(|| format!("subscriber {i}"))?;
        got.push(r);
    }
    vigild.stop()?;

    let start = sent
        .iter()
        .filter_map(|s| s.first())
        .map(|&(t, _)| t)
        .min()
        .unwrap_or(0);
    let batch_ns: Vec<u64> = got.iter().map(|r| r.done_ns.saturating_sub(start)).collect();
    let all_done_ns = batch_ns.iter().copied().max().unwrap_or(0);
    let per_event: Vec<u64> = batch_ns.iter().map(|t| t / batch as u64).collect();
    let mut latencies = Vec::with_capacity(batch * SUBSCRIBERS);
    for r in &got {
        for (arrivals, sent) in r.arrivals.iter().zip(&sent) {
            latencies.extend(
                arrivals
                    .iter()
                    .zip(sent)
                    .filter_map(|(a, (s, _))| a.map(|a| a.saturating_sub(*s))),
            );
        }
    }
    let round_trips: Vec<u64> = sent.iter().flatten().map(|&(s, a)| a - s).collect();
    let lost_markers: usize = got.iter().map(|r| r.lost_markers).sum();
    let lost_events: u64 = got.iter().map(|r| r.lost_events).sum();
    let unexpected: usize = got.iter().map(|r| r.unexpected).sum();
    let misaligned = got.iter().filter(|r| r.misaligned).count();
    let min_batch = batch_ns.iter().copied().min().unwrap_or(0);
    let answered = answered_ns.saturating_sub(start);

    let who = if producers == 1 {
        "1 producer connection".to_string()
    } else {
        format!("{producers} producer connections")
    };
    let rate = |n: usize, ns: u64| n as f64 / (ns.max(1) as f64 / 1e9);
    let mut notes = vec![
        format!(
            "{batch} events (psm_category_add/remove, {who}) to {SUBSCRIBERS} subscribers: every subscriber \
             had every event {:.1} ms after the first request: {:.0} events/s delivered to all {SUBSCRIBERS} \
             ({:.0} deliveries/s)",
            ms(all_done_ns),
            rate(batch, all_done_ns),
            rate(batch * SUBSCRIBERS, all_done_ns)
        ),
        format!(
            "time for each subscriber to receive the whole batch: min {:.1} ms, max {:.1} ms; the producers \
             had their last answer after {:.1} ms ({:.0} requests/s)",
            ms(min_batch),
            ms(all_done_ns),
            ms(answered),
            rate(batch, answered)
        ),
    ];
    if let Some(g) = Summary::of(&round_trips) {
        notes.push(format!(
            "one request of a producer (send to answer): p50 {:.1} µs, p99 {:.1} µs",
            us(g.p50),
            us(g.p99)
        ));
    }
    notes.push(format!(
        "loss markers: {lost_markers} ({lost_events} events lost) across {SUBSCRIBERS} subscribers, with \
         vigild's default subscriber queue"
    ));
    if misaligned > 0 {
        notes.push(format!(
            "{misaligned} subscriber(s) lost events: their latencies after the first loss are left out"
        ));
    }
    if unexpected > 0 {
        notes.push(format!(
            "{unexpected} event(s) numbered before the batch were received and ignored"
        ));
    }
    let latency_notes = vec![format!(
        "{} samples: every event of the batch at every subscriber, from the moment its request was sent",
        latencies.len()
    )];
    let suffix = if producers == 1 {
        String::new()
    } else {
        format!(", {producers} producers")
    };
    Ok(vec![
        Row {
            metric: format!("event to {SUBSCRIBERS} subscribers, per event{suffix}"),
            summary: Summary::of(&per_event).context("no subscriber finished")?,
            floor: Floor::SocketRoundTrip.into(),
            target: None,
            rate: None,
            unit: Unit::Micros,
            notes,
        },
        Row {
            metric: format!("event latency under load{suffix}"),
            summary: Summary::of(&latencies).context("every event was lost")?,
            floor: Floor::SocketRoundTrip.into(),
            target: None,
            rate: None,
            unit: Unit::Micros,
            notes: latency_notes,
        },
    ])
}

/// One producer: `n` requests on its category, create and remove in turn, each sent once the previous
/// one is answered. Answers (sent, answered) of each, ns since `base`.
fn produce(mut c: Client, category: &str, n: usize, go: &Barrier, base: Instant) -> anyhow::Result<Vec<(u64, u64)>> {
    let node = PsmNode::local();
    let mut times = Vec::with_capacity(n);
    go.wait();
    for k in 0..n {
        let sent = base.elapsed().as_nanos() as u64;
        let r = if k % 2 == 0 {
            c.psm_category_add(&node, category)
        } else {
            c.psm_category_remove(&node, category)
        };
        r.with_context(|| format!("request {k} on {category}"))?;
        times.push((sent, base.elapsed().as_nanos() as u64));
    }
    Ok(times)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// One subscriber: waits for the plan of the batch, then reads until it has the last event of the batch
/// or a loss marker that covers it. The k-th event about producer j's category is its k-th request.
fn receive(mut sub: Client, plan: mpsc::Receiver<Plan>, base: Instant) -> anyhow::Result<Received> {
    let Plan { first, last, shares } = plan.recv().context("the batch was never started")?;
    let mut r = Received {
        done_ns: 0,
        arrivals: shares.iter().map(|&n| vec![None; n]).collect(),
        lost_markers: 0,
        lost_events: 0,
        unexpected: 0,
        misaligned: false,
    };
    let mut next = vec![0usize; shares.len()];
    loop {
        let item = sub.next_item().context("reading events")?;
        let at = base.elapsed().as_nanos() as u64;
        match item {
            StreamItem::Event(e) => {
                if e.seq < first {
                    r.unexpected += 1;
                    continue;
                }
                anyhow::ensure!(
                    e.seq <= last,
                    "event {} ({}) is past the batch {first}..={last}: vigild numbered other events meanwhile",
                    e.seq,
                    e.name
                );
                let j = e
                    .subject
                    .strip_prefix(CATEGORY)
                    .and_then(|s| s.strip_prefix('-'))
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|&j| j < shares.len())
                    .with_context(|| format!("event {} is about {:?}, no producer's category", e.seq, e.subject))?;
                anyhow::ensure!(
                    next[j] < shares[j],
                    "more events about {} than its producer sent",
                    e.subject
                );
                if !r.misaligned {
                    r.arrivals[j][next[j]] = Some(at);
                }
                next[j] += 1;
                if e.seq == last {
                    r.done_ns = at;
                    return Ok(r);
                }
            }
            StreamItem::Lost { from, to } => {
                // Which producers' events were lost is unknown: later events can no longer be matched
                // to their requests.
                r.lost_markers += 1;
                r.misaligned = true;
                let (a, b) = (from.max(first), to.min(last));
                r.lost_events += (b + 1).saturating_sub(a);
                if to >= last {
                    r.done_ns = at;
                    return Ok(r);
                }
            }
        }
    }
}
