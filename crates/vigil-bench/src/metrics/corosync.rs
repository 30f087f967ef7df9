//! corosync's own work, side by side: `c/corosync_bench.c`, built once against Debian's headers and
//! linked against Debian's libcmap.so.4 and libsam.so.4, run against a private corosync
//! ([`crate::corosync`]) and then, the same binary with `LD_LIBRARY_PATH` pointing at vigil's libraries
//! and `VIGIL_SOCKET` at vigild, against vigild; alternating, a few rounds each, with the same counts.
//! Every figure comes from the program's own clock (CLOCK_MONOTONIC); this module only summarizes and
//! prints one table of both sides and the ratio vigil/corosync.
//!
//! Latencies pool the samples of every round; rates are the median of the rounds (each round's figure is
//! in the notes). The SAM rows need no corosync daemon (corosync's libsam supervises in the application's
//! own parent process): they compare the two libraries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{Against, Ctx, Floor, Metric, Row, Unit};
use crate::corosync::{self, Corosync};
use crate::daemon::Vigild;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "corosync", run };

const SOURCE: &str = include_str!("../../c/corosync_bench.c");
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// The counts, the same for both sides.
struct Sizes {
    rounds: usize,
    /// Requests per latency row (set, get, track, data_store; a tenth as many connects).
    n: usize,
    keys: usize,
    flood: usize,
    beats: usize,
    restarts: usize,
}

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    if let Some(why) = corosync::unavailable() {
        println!("corosync: skipped: {why}");
        return Ok(Vec::new());
    }
    let z = if ctx.smoke {
        Sizes {
            rounds: 1,
            n: 200,
            keys: 2_000,
            flood: 500,
            beats: 2_000,
            restarts: 3,
        }
    } else {
        Sizes {
            rounds: 3,
            n: ctx.count * 10,
            keys: 20_000,
            flood: 10_000,
            beats: 200_000,
            restarts: 100,
        }
    };
    let dir = tempfile::Builder::new().prefix("vigil-bench-corosync-").tempdir()?;
    let exe = build(dir.path())?;
    let libs = vigil_libs(ctx, dir.path())?;
    let coro = Corosync::start(dir.path())?;
    let (vigild, _client) = Vigild::start(&ctx.vigild)?;
    let mut sides = [Side::default(), Side::default()];
    for round in 0..z.rounds {
        for (i, side) in sides.iter_mut().enumerate() {
            let vigil = i == 1;
            let name = if vigil { "vigil" } else { "corosync" };
            let out = dir.path().join(format!("{name}-{round}.cmap"));
            let mut cmd = if vigil {
                let mut c = Command::new(&exe);
                c.env("LD_LIBRARY_PATH", &libs).env("VIGIL_SOCKET", vigild.socket());
                c
            } else {
                coro.command(&exe)
            };
            cmd.arg(&out)
                .arg("cmap")
                .args([z.n, z.keys, z.flood, round + 1].iter().map(ToString::to_string));
            run_program(cmd, &format!("{name} cmap"))?;
            side.add_cmap(&std::fs::read_to_string(&out)?, &z)
                .with_context(|| format!("{name}'s cmap output"))?;
            if vigil {
                side.pipelined_rate
                    .push(pipelined_sets(&vigild, z.n * 10, round).context("the pipelined sets")?);
            }

            let out = dir.path().join(format!("{name}-{round}.sam"));
            let mut cmd = Command::new(&exe);
            if vigil {
                cmd.env("LD_LIBRARY_PATH", &libs).env("VIGIL_SOCKET", vigild.socket());
            } else {
                cmd.env_remove("LD_LIBRARY_PATH").env_remove("VIGIL_SOCKET");
            }
            cmd.arg(&out)
                .arg("sam")
                .args([z.n, z.beats, z.restarts].iter().map(ToString::to_string));
            run_program(cmd, &format!("{name} sam"))?;
            side.add_sam(&std::fs::read_to_string(&out)?, &z)
                .with_context(|| format!("{name}'s sam output"))?;
        }
    }
    drop(coro);
    vigild.stop()?;
    let [c, v] = sides;
    print_table(&z, &c, &v)?;
    for f in [Floor::ProcSocketRoundTrip, Floor::ProcPipeRoundTrip] {
        let s = f.summary(&ctx.floors);
        println!(
            "  floor, same run: {}: p50 {:.1} µs, p99 {:.1} µs",
            f.name(),
            s.p50 as f64 / 1e3,
            s.p99 as f64 / 1e3
        );
    }
    rows(&c, &v)
}

/// gcc, Debian's headers and libraries (the system's, as a corosync application is built).
fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let src = dir.join("corosync_bench.c");
    std::fs::write(&src, SOURCE)?;
    let exe = dir.join("corosync_bench");
    let o = Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-lcmap", "-lsam", "-lpthread"])
        .output()
        .context("cannot run gcc (the corosync comparison needs it)")?;
    if !o.status.success() {
        bail!("gcc failed on corosync_bench.c: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(exe)
}

/// A directory where libcmap.so.4 and libsam.so.4 are this build's (vigil's) libraries.
fn vigil_libs(ctx: &Ctx, dir: &Path) -> anyhow::Result<PathBuf> {
    let bin_dir = ctx.self_exe.parent().context("vigil-bench's directory")?;
    let lib_dir = dir.join("vigil-libs");
    std::fs::create_dir_all(&lib_dir)?;
    for lib in ["libcmap", "libsam"] {
        // Cargo leaves a dependency's cdylib in deps/ and copies it up only when the library itself was
        // asked for: the newer of the two is this build's.
        let built = [
            bin_dir.join(format!("{lib}.so")),
            bin_dir.join(format!("deps/{lib}.so")),
        ]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .with_context(|| format!("no {lib}.so in {} or its deps/: build vigil-bench", bin_dir.display()))?;
        std::os::unix::fs::symlink(&built, lib_dir.join(format!("{lib}.so.4")))?;
    }
    Ok(lib_dir)
}

/// Runs the program to its end, within the deadline.
fn run_program(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: cannot start corosync_bench"))?;
    let end = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: corosync_bench did not finish in {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err)?;
    }
    anyhow::ensure!(status.success(), "{what}: corosync_bench ended with {status}: {err}");
    Ok(())
}

/// What one side measured, over every round.
#[derive(Default)]
struct Side {
    set: Vec<u64>,
    get: Vec<u64>,
    track: Vec<u64>,
    connect: Vec<u64>,
    store: Vec<u64>,
    restart: Vec<u64>,
    /// Per round.
    set_rate: Vec<f64>,
    get_rate: Vec<f64>,
    create_rate: Vec<f64>,
    iter_ns: Vec<u64>,
    flood_rate: Vec<f64>,
    flood_lost: u64,
    hc_rate: Vec<f64>,
    /// vigil only: sets of one key from the Rust client with many in flight, per round.
    pipelined_rate: Vec<f64>,
}

/// vigil's Rust client setting one key `n` times with up to [`vigil_client::PIPELINE_WINDOW_MAX`] sets in
/// flight on one connection ([`vigil_client::Client::pipeline`]): ops/s, every set answered Ok.
fn pipelined_sets(vigild: &Vigild, n: usize, round: usize) -> anyhow::Result<f64> {
    use vigil_client::proto::{CmapValue, Request};
    let mut c = vigil_client::Client::connect(vigild.socket())?;
    let key = format!("bench.pipelined.r{round}");
    let t = Instant::now();
    let got = c.pipeline(
        (0..n).map(|i| Request::CmapSet {
            key: key.clone(),
            value: CmapValue::U32(i as u32),
            persist: false,
        }),
        vigil_client::PIPELINE_WINDOW_MAX,
    )?;
    let ns = t.elapsed().as_nanos() as u64;
    let refused = got.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(refused == 0, "{refused} of {n} pipelined sets were refused");
    Ok(rate(n, ns))
}

fn lines<'a>(text: &'a str, kind: &'a str) -> impl Iterator<Item = anyhow::Result<u64>> + 'a {
    text.lines()
        .filter_map(move |l| l.strip_prefix(kind)?.strip_prefix(' '))
        .map(move |n| n.parse::<u64>().with_context(|| format!("{kind} value {n:?}")))
}

fn one(text: &str, kind: &str) -> anyhow::Result<u64> {
    lines(text, kind).next().with_context(|| format!("no {kind} line"))?
}

fn rate(n: usize, ns: u64) -> f64 {
    n as f64 / (ns.max(1) as f64 / 1e9)
}

impl Side {
    fn add_cmap(&mut self, text: &str, z: &Sizes) -> anyhow::Result<()> {
        self.set.extend(lines(text, "set").collect::<anyhow::Result<Vec<_>>>()?);
        self.get.extend(lines(text, "get").collect::<anyhow::Result<Vec<_>>>()?);
        self.track
            .extend(lines(text, "track").collect::<anyhow::Result<Vec<_>>>()?);
        self.connect
            .extend(lines(text, "connect").collect::<anyhow::Result<Vec<_>>>()?);
        self.set_rate.push(rate(z.n, one(text, "set_total")?));
        self.get_rate.push(rate(z.n, one(text, "get_total")?));
        self.create_rate.push(rate(z.keys, one(text, "create_total")?));
        let iterated = one(text, "iter_count")?;
        anyhow::ensure!(
            iterated == z.keys as u64,
            "cmap_iter gave {iterated} keys, {} were created",
            z.keys
        );
        self.iter_ns.push(one(text, "iter_total")?);
        let got = one(text, "flood_count")?;
        self.flood_rate.push(rate(got as usize, one(text, "flood_total")?));
        self.flood_lost += one(text, "flood_lost")?;
        Ok(())
    }

    fn add_sam(&mut self, text: &str, z: &Sizes) -> anyhow::Result<()> {
        self.hc_rate.push(rate(z.beats, one(text, "hc_total")?));
        self.store
            .extend(lines(text, "store").collect::<anyhow::Result<Vec<_>>>()?);
        // Each instance's "aborted" is followed by the next one's "returned".
        let mut aborted = None;
        let mut restarts = 0;
        for l in text.lines() {
            if let Some(t) = l.strip_prefix("aborted ") {
                aborted = Some(t.parse::<u64>()?);
            } else if let Some(t) = l.strip_prefix("returned ") {
                let a = aborted.take().context("a register returned with no abort before it")?;
                self.restart.push(t.parse::<u64>()?.saturating_sub(a));
                restarts += 1;
            }
        }
        anyhow::ensure!(restarts == z.restarts, "{restarts} restarts of {}", z.restarts);
        Ok(())
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

fn summary(v: &[u64], what: &str) -> anyhow::Result<Summary> {
    Summary::of(v).with_context(|| format!("no {what} samples"))
}

/// The table: one line per figure, both sides, the ratio vigil/corosync and which way is better.
fn print_table(z: &Sizes, c: &Side, v: &Side) -> anyhow::Result<()> {
    let mut lines: Vec<[String; 5]> = Vec::new();
    let mut rate_line = |what: &str, c: &[f64], v: &[f64]| {
        let (mc, mv) = (median(c), median(v));
        lines.push([
            what.into(),
            format!("{mc:.0}"),
            format!("{mv:.0}"),
            format!("{:.2}x", mv / mc.max(f64::MIN_POSITIVE)),
            "higher".into(),
        ]);
    };
    rate_line("cmap_set_uint32, one key, ops/s", &c.set_rate, &v.set_rate);
    rate_line("cmap_get, one key, ops/s", &c.get_rate, &v.get_rate);
    rate_line(
        &format!("cmap_set creating {} distinct keys, ops/s", z.keys),
        &c.create_rate,
        &v.create_rate,
    );
    rate_line(
        &format!("track: notifications/s, flood of {} sets", z.flood),
        &c.flood_rate,
        &v.flood_rate,
    );
    rate_line("sam_hc_send, calls/s", &c.hc_rate, &v.hc_rate);
    // corosync's library has no way to have several requests in flight: its synchronous rate is the
    // figure a pipelined client of vigil is measured against.
    rate_line(
        "cmap set, one key: corosync sync C / vigil pipelined Rust, ops/s",
        &c.set_rate,
        &v.pipelined_rate,
    );
    let mut lat_line = |what: &str, c: &[u64], v: &[u64]| -> anyhow::Result<()> {
        let (sc, sv) = (summary(c, what)?, summary(v, what)?);
        for (p, a, b) in [("p50", sc.p50, sv.p50), ("p99", sc.p99, sv.p99)] {
            lines.push([
                format!("{what}, {p} µs"),
                format!("{:.1}", a as f64 / 1e3),
                format!("{:.1}", b as f64 / 1e3),
                format!("{:.2}x", b as f64 / a.max(1) as f64),
                "lower".into(),
            ]);
        }
        Ok(())
    };
    lat_line("cmap_set_uint32, one key", &c.set, &v.set)?;
    lat_line("cmap_get, one key", &c.get, &v.get)?;
    lat_line("track: set → notification, closed loop", &c.track, &v.track)?;
    lat_line("sam_data_store (32 B) round trip", &c.store, &v.store)?;
    lat_line("SAM restart: abort() → sam_register returns", &c.restart, &v.restart)?;
    lat_line("cmap_initialize + cmap_finalize", &c.connect, &v.connect)?;
    let iter = |s: &Side| {
        let ms: Vec<f64> = s.iter_ns.iter().map(|&n| n as f64 / 1e6).collect();
        median(&ms)
    };
    let (ic, iv) = (iter(c), iter(v));
    lines.push([
        format!("cmap_iter over {} keys, ms", z.keys),
        format!("{ic:.1}"),
        format!("{iv:.1}"),
        format!("{:.2}x", iv / ic.max(f64::MIN_POSITIVE)),
        "lower".into(),
    ]);
    lines.push([
        format!("track: notifications lost in the floods ({} rounds)", z.rounds),
        c.flood_lost.to_string(),
        v.flood_lost.to_string(),
        "—".into(),
        "lower".into(),
    ]);

    println!();
    println!(
        "against corosync (one binary, {} alternating rounds each; rates: median of the rounds; \
         latencies: every sample):",
        z.rounds
    );
    crate::report::print_table(
        &["operation", "corosync", "vigil", "vigil/corosync", "better"],
        lines.into_iter().map(Vec::from).collect(),
    );
    let f = |s: &[f64]| s.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    let rounds = |what: &str, c: &[f64], v: &[f64]| {
        println!("  {what} per round: corosync {}; vigil {}", f(c), f(v));
    };
    rounds("cmap_set_uint32 ops/s", &c.set_rate, &v.set_rate);
    rounds("cmap_get ops/s", &c.get_rate, &v.get_rate);
    rounds("create ops/s", &c.create_rate, &v.create_rate);
    rounds("flood notifications/s", &c.flood_rate, &v.flood_rate);
    rounds("sam_hc_send calls/s", &c.hc_rate, &v.hc_rate);
    println!(
        "  cmap set ops/s per round: corosync's synchronous C {}; vigil's pipelined Rust {}",
        f(&c.set_rate),
        f(&v.pipelined_rate)
    );
    Ok(())
}

/// vigil's latencies as rows of the main report, each against corosync's in the same run.
fn rows(c: &Side, v: &Side) -> anyhow::Result<Vec<Row>> {
    let row = |what: &str, c: &[u64], v: &[u64]| -> anyhow::Result<Row> {
        Ok(Row {
            metric: format!("{what} (C, vs corosync)"),
            summary: summary(v, what)?,
            floor: Against::Baseline {
                name: "corosync".into(),
                summary: summary(c, what)?,
            },
            target: None,
            rate: None,
            unit: Unit::Micros,
            notes: Vec::new(),
        })
    };
    Ok(vec![
        row("cmap_set_uint32", &c.set, &v.set)?,
        row("cmap_get", &c.get, &v.get)?,
        row("cmap set → notification", &c.track, &v.track)?,
        row("sam_data_store", &c.store, &v.store)?,
        row("SAM restart", &c.restart, &v.restart)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(restarts: usize) -> Sizes {
        Sizes {
            rounds: 1,
            n: 2,
            keys: 3,
            flood: 4,
            beats: 1_000,
            restarts,
        }
    }

    #[test]
    fn the_cmap_output_gives_samples_rates_and_lost_notifications() {
        let text = "set 10\nset 30\nset_total 2000\nget 5\nget 7\nget_total 1000\ncreate_total 3000\n\
                    iter_total 500\niter_count 3\nconnect 100\nconnect_total 100\ntrack 40\ntrack 60\n\
                    track_total 200\nflood_sets_total 50\nflood_total 1000\nflood_count 3\nflood_lost 1\n";
        let mut s = Side::default();
        s.add_cmap(text, &sizes(0)).unwrap();
        assert_eq!(
            (s.set, s.get, s.track, s.connect),
            (vec![10, 30], vec![5, 7], vec![40, 60], vec![100])
        );
        assert_eq!(s.set_rate, [1e6]);
        assert_eq!(s.create_rate, [1e6]);
        assert_eq!(s.flood_rate, [3e6]);
        assert_eq!(s.flood_lost, 1);
        // An iteration that did not see every created key is an error, not a fast row.
        let short = text.replace("iter_count 3", "iter_count 2");
        assert!(Side::default().add_cmap(&short, &sizes(0)).is_err());
    }

    #[test]
    fn a_restart_is_from_an_abort_to_the_next_register_and_every_one_is_counted() {
        let text = "hc_total 1000\nstore 8\nstore_total 8\naborted 100\nreturned 350\naborted 400\nreturned 900\n";
        let mut s = Side::default();
        s.add_sam(text, &sizes(2)).unwrap();
        assert_eq!(s.restart, [250, 500]);
        assert_eq!(s.store, [8]);
        assert_eq!(s.hc_rate, [1e9]);
        assert!(Side::default().add_sam(text, &sizes(3)).is_err());
        assert!(Side::default().add_sam("hc_total 1\nreturned 5\n", &sizes(1)).is_err());
    }
}
