//! What the HTTP API costs the socket's hot paths (issue 21: "no measurable cost").
//!
//! Two vigild run side by side, the same but for `[http] unix = false` in one: the socket's requests of
//! every day (a CMAP set, a CMAP get, the status of one tag) are timed on each, one request at a time,
//! in three settings that take turns in rounds of [`BATCH`] requests, so that a drift of the machine's
//! load falls on all three alike:
//! - HTTP off: vigild serves no HTTP at all;
//! - HTTP on: `http.sock` is served, nobody uses it;
//! - HTTP on, scraped: a thread of this program fetches `GET /metrics` from it back to back (one
//!   connection each, as Prometheus does): thousands of times more often than any scrape interval, so
//!   a bound on what scraping can cost, on a machine whose cores the scraper, vigild's HTTP thread and
//!   its loop share.
//!
//! Each setting goes first in its round in turn, and each batch starts with [`WARM`] requests untimed:
//! a vigild that sat idle while the others ran would otherwise pay for waking in its first samples.
//! Each vigild holds [`TAGS`] tags (`sleep infinity`), so that a scrape has something to write. Rows
//! of the two "on" settings are compared with "off", the same request in the same run.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use vigil_client::proto::{CmapValue, RunSpec};

use super::{per_second, thousands, Against, Ctx, Floor, Metric, Row, Target, Unit};
use crate::daemon::Vigild;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "http-cost", run };

/// Requests of one kind in one setting before the next setting takes its turn.
const BATCH: usize = 50;
/// Tags each vigild holds.
const TAGS: usize = 200;
const TAGS_SMOKE: usize = 10;
/// Requests sent untimed before each batch.
const WARM: usize = 10;

/// The settings, in the order they take turns.
const SETTINGS: [&str; 3] = ["HTTP off", "HTTP on", "HTTP on, /metrics scraped"];

/// The requests timed.
const OPS: [&str; 3] = ["cmap set", "cmap get", "status of one tag"];

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let tags = if ctx.smoke { TAGS_SMOKE } else { TAGS };
    let conf = tempfile::Builder::new().prefix("vigil-bench-http-").tempdir()?;
    let off_conf = conf.path().join("off.toml");
    std::fs::write(&off_conf, "[http]\nunix = false\n")?;
    let (off, mut off_c) = Vigild::start_args(&ctx.vigild, &["--config".into(), off_conf.display().to_string()])?;
    let (on, mut on_c) = Vigild::start(&ctx.vigild)?;
    let sock = http_sock(&on);
    anyhow::ensure!(
        !http_sock(&off).exists(),
        "the vigild with [http] unix = false serves http.sock"
    );
    for c in [&mut off_c, &mut on_c] {
        for i in 0..tags {
            c.run(RunSpec::new(format!("h{i}"), vec!["sleep".into(), "infinity".into()]))
                .with_context(|| format!("run h{i}"))?;
        }
    }

    // The scraper: scrapes while `scraping` is set, parked otherwise.
    let scraping = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (scraping, stop, scrapes, sock) = (scraping.clone(), stop.clone(), scrapes.clone(), sock.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                if !scraping.load(Ordering::Relaxed) {
                    // Asleep until its setting's turn: no wake-ups of its own in the others'.
                    std::thread::park();
                    continue;
                }
                let body = scrape(&sock)?;
                anyhow::ensure!(body.ends_with("# EOF\n"), "a scrape ended early");
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };

    // samples[setting][op]
    let mut samples = vec![vec![Vec::with_capacity(ctx.count); OPS.len()]; SETTINGS.len()];
    // Whole turns: each setting goes first as often as the others (a smoke run too).
    let rounds = ctx.count.div_ceil(BATCH).next_multiple_of(SETTINGS.len());
    let mut scraped_ns = 0u64;
    let mut scrapes_in = 0;
    for round in 0..rounds {
        // Each setting goes first in turn: the one after a pause of its vigild is not always the same.
        for k in 0..SETTINGS.len() {
            let s = (round + k) % SETTINGS.len();
            let c = if s == 0 { &mut off_c } else { &mut on_c };
            let before = scrapes.load(Ordering::Relaxed);
            scraping.store(s == 2, Ordering::Relaxed);
            if s == 2 {
                scraper.thread().unpark();
                // The scraper is at work before the first sample.
                while scrapes.load(Ordering::Relaxed) == before {
                    if scraper.is_finished() {
                        // It failed: its error says why.
                        scraper
                            .join()
                            .map_err(|_| anyhow::anyhow!("the scraper thread panicked"))??;
                        anyhow::bail!("the scraper stopped");
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            let t = Instant::now();
            for (op, out) in samples[s].iter_mut().enumerate() {
                // A few requests untimed: the vigild that sat idle while the others ran wakes first.
                for i in 0..WARM + BATCH {
                    let key = format!("bench.http.k{}", (round * BATCH + i) % 1000);
                    let tag = format!("h{}", i % tags);
                    let t = Instant::now();
                    match op {
                        0 => c.cmap_set(&key, CmapValue::U32(i as u32), false)?,
                        1 => c.cmap_get(&key).map(drop)?,
                        _ => c.status(&tag).map(drop)?,
                    }
                    if i >= WARM {
                        out.push(t.elapsed().as_nanos() as u64);
                    }
                }
            }
            scraping.store(false, Ordering::Relaxed);
            if s == 2 {
                scraped_ns += t.elapsed().as_nanos() as u64;
                scrapes_in += scrapes.load(Ordering::Relaxed) - before;
            }
        }
    }
    scraping.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    scraper.thread().unpark();
    scraper
        .join()
        .map_err(|_| anyhow::anyhow!("the scraper thread panicked"))??;
    let scrapes = scrapes_in;
    anyhow::ensure!(scrapes > 0, "the scraper never scraped");

    let mut rows = Vec::new();
    for (op, name) in OPS.iter().enumerate() {
        let off_s = Summary::of(&samples[0][op]).context("no samples")?;
        for (s, setting) in SETTINGS.iter().enumerate() {
            let summary = Summary::of(&samples[s][op]).context("no samples")?;
            let (floor, target) = match s {
                0 => (Floor::SocketRoundTrip.into(), None),
                // An idle listener must not show; a scraper that keeps a core busy on a small machine
                // may, and the row says how much.
                1 => (
                    Against::Baseline {
                        name: format!("{name}, HTTP off"),
                        summary: off_s.clone(),
                    },
                    Some(Target::Ratio { p50: 1.1, p99: None }),
                ),
                _ => (
                    Against::Baseline {
                        name: format!("{name}, HTTP off"),
                        summary: off_s.clone(),
                    },
                    None,
                ),
            };
            let mut notes = vec![format!(
                "{} requests in rounds of {BATCH}, the three settings taking turns; {tags} tags in each vigild",
                samples[s][op].len()
            )];
            if s == 2 {
                notes.push(format!(
                    "{} scrapes of GET /metrics while this setting ran ({}), back to back, each a connection of its own",
                    thousands(scrapes as u64),
                    per_second(scrapes, scraped_ns, "scrapes"),
                ));
            }
            rows.push(Row {
                metric: format!("http-cost: {name}, {setting}"),
                summary,
                floor,
                target,
                rate: None,
                unit: Unit::Micros,
                notes,
            });
        }
    }
    drop((off_c, on_c));
    off.stop()?;
    on.stop()?;
    Ok(rows)
}

fn http_sock(v: &Vigild) -> PathBuf {
    v.dir().join("state").join("http.sock")
}

/// One `GET /metrics` on a connection of its own, read to its end (`Connection: close`).
fn scrape(sock: &Path) -> anyhow::Result<String> {
    let mut s = UnixStream::connect(sock).with_context(|| format!("cannot connect to {}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8(out).context("the exposition is not UTF-8")?;
    anyhow::ensure!(
        text.starts_with("HTTP/1.1 200"),
        "GET /metrics: {}",
        text.lines().next().unwrap_or("")
    );
    Ok(text)
}
