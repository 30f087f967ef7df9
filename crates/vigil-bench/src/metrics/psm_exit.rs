//! PSM exit latency: how long after a registered process exits a subscriber has its
//! `sys.unix.psm.instance.exited` event.
//!
//! The member is a process vigild did not start: the bench spawns `vigil-bench child-psm STAMP` itself,
//! with a pipe as its stdin, and registers it in the category `bench` with `psm_add`. Registration may
//! be refused with `Busy` right after the spawn, while the child is still inside exec; it is retried.
//! Closing the pipe makes the child stamp `exit <ns>` into STAMP and exit 7; the bench reaps it at once
//! (as a parent should, and as vigild needs when it learns exit statuses from pidfds). A second
//! connection, subscribed to the exited events of the category, is read by its own thread, which
//! stamps each event's arrival the moment `next_item` returns it. A sample is arrival minus exit, both
//! on the system-wide clock: the child's teardown, vigild learning of the exit, its bookkeeping and
//! persisting, and the delivery through the socket. The floor is the Unix socket round trip.
//!
//! Each event is checked: it is about the child's pid, and its `status` is the wait(2) status of exit
//! code 7 (`0x700`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vigil_client::proto::{ErrorCode, EventFilter, PsmNode, Value};
use vigil_client::{Client, StreamItem};

use super::{Ctx, Floor, Metric, Row, Unit};
use crate::child::{now_ns, PSM_EXIT_CODE};
use crate::daemon::Vigild;
use crate::stamps;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "psm-exit", run };

const CATEGORY: &str = "bench";
const EXITED: &str = "sys.unix.psm.instance.exited";
/// Untimed members first, so that caches and vigild's paths are warm.
const WARM_UP: usize = 3;
/// How long registration may keep answering `Busy` before the run fails.
const REGISTER_DEADLINE: Duration = Duration::from_secs(5);
const REGISTER_RETRY: Duration = Duration::from_micros(50);
/// How long after the reap the event may take before the run fails.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// What the reader thread saw of one exited event.
struct Arrival {
    /// When `next_item` returned it (ns since the Unix epoch).
    at_ns: u64,
    pid: Option<Value>,
    status: Option<Value>,
}

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (vigild, mut client) = Vigild::start(&ctx.vigild)?;
    let stamp = vigild.dir().join("psm-stamps");
    let node = PsmNode::local();
    client
        .psm_category_add(&node, CATEGORY)
        .context("cannot create the category")?;
    let tracking = client.daemon_status()?.tracking;

    let mut sub = vigild.connect_another()?;
    sub.subscribe_filtered(
        None,
        EventFilter {
            names: vec![EXITED.into()],
            category: Some(CATEGORY.into()),
            tag: None,
        },
    )
    .context("cannot subscribe")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || read_events(sub, tx));

    let total = WARM_UP + ctx.count;
    let mut arrivals = Vec::with_capacity(total);
    let mut busy = 0;
    for _ in 0..total {
        let (pid, retries) = one_member(ctx, &mut client, &node, &stamp)?;
        busy += retries;
        let a = match rx.recv_timeout(EVENT_DEADLINE) {
            Ok(a) => a?,
            Err(_) => bail!("no {EXITED} event for pid {pid} within {EVENT_DEADLINE:?} of its reap"),
        };
        anyhow::ensure!(
            a.pid == Some(Value::Int(i64::from(pid))),
            "an {EXITED} event for pid {:?}, expected {pid}",
            a.pid
        );
        let want = Value::Int(i64::from(PSM_EXIT_CODE) << 8);
        anyhow::ensure!(
            a.status.as_ref() == Some(&want),
            "the {EXITED} event of pid {pid} has status {:?}, expected {want:?}",
            a.status
        );
        arrivals.push(a.at_ns);
    }

    // Before vigild stops: its directory, where the stamps are, goes with it.
    let text = std::fs::read_to_string(&stamp).with_context(|| format!("cannot read {}", stamp.display()))?;
    vigild.stop()?;
    // The connection is closed now: the reader ends.
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the event reader panicked"))?;

    let exits = stamps::parse_exits(&text)?;
    anyhow::ensure!(exits.len() == total, "{} exit stamps for {total} members", exits.len());
    let mut backwards = 0;
    let samples: Vec<u64> = exits[WARM_UP..]
        .iter()
        .zip(&arrivals[WARM_UP..])
        .filter_map(|(exit, at)| {
            let d = at.checked_sub(*exit);
            backwards += usize::from(d.is_none());
            d
        })
        .collect();
    let summary = Summary::of(&samples).context("no samples")?;
    let mut notes = vec![
        format!("vigild tracked processes with the {tracking}"),
        format!(
            "every event had the member's pid and status 0x{:x}; registration answered Busy {busy} time(s) \
             across {total} members (retried every {REGISTER_RETRY:?})",
            u32::from(PSM_EXIT_CODE) << 8
        ),
    ];
    if backwards > 0 {
        notes.push(format!(
            "{backwards} sample(s) dropped: the clock went backwards between an exit and its event"
        ));
    }
    Ok(vec![Row {
        metric: "exit detection, registered non-child (psm exit → event)".into(),
        summary,
        floor: Floor::SocketRoundTrip.into(),
        target: None,
        rate: None,
        unit: Unit::Micros,
        notes,
    }])
}

/// Starts one member, registers it, lets it exit and reaps it. Answers its pid and how many times
/// registration answered `Busy`.
fn one_member(ctx: &Ctx, client: &mut Client, node: &PsmNode, stamp: &Path) -> anyhow::Result<(i32, usize)> {
    let mut child = Command::new(&ctx.self_exe)
        .arg("child-psm")
        .arg(stamp)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", ctx.self_exe.display()))?;
    let pid = child.id() as i32;
    let retries = match register(client, node, pid) {
        Ok(r) => r,
        Err(e) => {
            kill(&mut child);
            return Err(e);
        }
    };
    // End of file on its stdin: the child stamps its exit and exits.
    drop(child.stdin.take());
    let status = child.wait().context("cannot reap the member")?;
    anyhow::ensure!(
        status.code() == Some(i32::from(PSM_EXIT_CODE)),
        "the member {pid} ended with {status}"
    );
    Ok((pid, retries))
}

/// `psm_add`, retried while vigild answers `Busy` (the process is still inside exec).
fn register(client: &mut Client, node: &PsmNode, pid: i32) -> anyhow::Result<usize> {
    let deadline = Instant::now() + REGISTER_DEADLINE;
    let mut retries = 0;
    loop {
        match client.psm_add(node, CATEGORY, pid) {
            Ok(()) => return Ok(retries),
            Err(e) if e.code() == Some(ErrorCode::Busy) && Instant::now() < deadline => {
                retries += 1;
                std::thread::sleep(REGISTER_RETRY);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot register pid {pid}")),
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads the subscription until the connection ends or nobody listens; a loss marker is an error.
fn read_events(mut sub: Client, tx: mpsc::Sender<anyhow::Result<Arrival>>) {
    loop {
        let item = match sub.next_item() {
            Ok(i) => i,
            // vigild stopped (the end of a run) or the read timed out between samples: either way the
            // main thread has what it needs or reports the missing event itself.
            Err(_) => return,
        };
        let at_ns = now_ns();
        let msg = match item {
            StreamItem::Event(e) => Ok(Arrival {
                at_ns,
                pid: e.attr("pid").cloned(),
                status: e.attr("status").cloned(),
            }),
            StreamItem::Lost { from, to } => Err(anyhow::anyhow!("the subscriber lost events {from}..={to}")),
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}
