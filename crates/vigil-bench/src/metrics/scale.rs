//! Scale: one vigild with many tags declared in its config file, each a small long-lived process
//! (`sleep infinity`), and the spec's targets for it (docs/performance.md, "Scale").
//!
//! 1. An empty vigild first: its RSS (to tell what the tags cost), and single-key CMAP `set` and `get`
//!    with a few keys, then again once `keys` more are loaded.
//! 2. A vigild started with `--config` declaring `tags` tags (`retries = -1`), each running `c/idle.c`
//!    (a static program without a C library that waits for signals; `sleep infinity` with
//!    `--with-sleep`, or when gcc cannot build it): the time from its start
//!    to `list` showing every tag running with a process; its RSS (VmRSS, VmHWM) and the CPU it used
//!    for that; then its CPU while nobody asks anything for `idle` (from the run time of its threads in
//!    /proc/PID/task/*/schedstat, with their context switches: a vigild that polls wakes up).
//! 3. The status of every tag: the real `vigil status` (the process, its connection, the request, the
//!    table, written to /dev/null), and the client's `status_all` call alone.
//! 4. `kill` of the tags' processes killed with SIGKILL at once; a subscriber to
//!    `sys.vigil.pmf.tag.restart` notes when each tag's restart event arrives. A sample is one tag's,
//!    from just before the first kill; the targets are on the last one: 2 s, and 1.25x the floor of
//!    the same run, the tags' program started `kill` times in a loop without supervision (measured
//!    just before the kill, [`floor::spawn_loop`]). Loop and kill take turns in three rounds, each
//!    killing other tags; the ratio is of the median round to the median loop.
//! 5. Single-member PSM `add`, `get` and `remove` of processes of this benchmark, with no member, then
//!    again once `members` of the tags' processes are members.
//!
//! Rows of 1 and 5 are compared with the same operation under the light load, measured in the same run:
//! the ratio is what the many keys or members cost each operation.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vigil_client::proto::{CmapValue, ErrorCode, EventFilter, PsmNode};
use vigil_client::Client;

use super::{per_second, thousands, Against, Ctx, Metric, Row, ScaleSize, Stat, Target, Unit};
use crate::daemon::Vigild;
use crate::floor;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "scale", run };

/// The spec's targets.
const ALL_RUNNING: Duration = Duration::from_secs(10);
const RSS_MAX: u64 = 64 << 20;
/// 1% of one CPU, in parts per million.
const IDLE_CPU_MAX_PPM: u64 = 10_000;
const STATUS_MAX: Duration = Duration::from_millis(200);
/// A Prometheus scrape of every tag (issue 21).
const METRICS_MAX: Duration = Duration::from_millis(100);
const KILLED_BACK: Duration = Duration::from_secs(2);
/// All killed tags running again within this factor of the time a bare loop needs to start as many
/// processes of the same program (issue 15).
const KILLED_BACK_VS_SPAWN: f64 = 1.25;
/// Rounds of the bare loop and the kill, taking turns.
const KILL_ROUNDS: usize = 3;
/// A single-key or single-member operation "does not slow down": its p50 stays within this factor of
/// the same operation with few keys or members (the noise of this machine is about that big).
const NO_SLOWER: f64 = 1.5;
/// Runs of `vigil status` and of the client's call.
const STATUS_RUNS: usize = 10;
const STATUS_RUNS_SMOKE: usize = 3;
const CATEGORY: &str = "scale";
const PROBE_CATEGORY: &str = "scaleprobe";

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let size = ctx.scale;
    let mut rows = Vec::new();
    // The processes of step 5, started first so that each has long finished its exec when registered.
    let mut probes = Probes::spawn(ctx.count)?;

    // 1. An empty vigild.
    let (empty, mut c) = Vigild::start(&ctx.vigild)?;
    let base = Mem::of(empty.pid())?;
    rows.extend(cmap_rows(ctx.count, size.keys, &mut c)?);
    drop(c);
    empty.stop()?;

    // 2. Many tags from the config file.
    let dir = tempfile::Builder::new().prefix("vigil-bench-scale-").tempdir()?;
    let config = dir.path().join("vigild.toml");
    let (program, program_note) = idle_program(dir.path(), size.with_sleep);
    write_config(&config, &size, ctx.count, &program)?;
    let t0 = Instant::now();
    let (vigild, mut client) = Vigild::start_args(&ctx.vigild, &["--config".into(), config.display().to_string()])?;
    let answered = t0.elapsed();
    let pid = vigild.pid();
    let deadline = Duration::from_secs(60) + Duration::from_millis(10) * size.tags as u32;
    let (all_running, _) = wait_all_running(&mut client, size.tags, t0, deadline)?;
    let start_cpu = cpu_ns(pid)?;
    let mem = Mem::of(pid)?;
    rows.push(Row {
        metric: format!(
            "scale: {} tags from the config, all running",
            thousands(size.tags as u64)
        ),
        summary: one(all_running),
        floor: Against::Nothing,
        target: Some(Target::AtMost {
            stat: Stat::Max,
            value: ALL_RUNNING.as_nanos() as u64,
        }),
        rate: Some(per_second(size.tags, all_running.as_nanos() as u64, "tags")),
        unit: Unit::Millis,
        notes: vec![
            program_note,
            format!(
                "from vigild's spawn; its socket first answered after {:.0} ms; vigild's CPU until then {:.0} ms",
                answered.as_secs_f64() * 1e3,
                start_cpu as f64 / 1e6
            ),
        ],
    });
    rows.push(Row {
        metric: format!("scale: vigild RSS, {} watched processes", thousands(size.tags as u64)),
        summary: one_value(mem.rss),
        floor: Against::Nothing,
        target: Some(Target::AtMost {
            stat: Stat::Max,
            value: RSS_MAX,
        }),
        rate: None,
        unit: Unit::MiB,
        notes: vec![format!(
            "VmRSS {:.1} MiB, VmHWM {:.1} MiB; an empty vigild: VmRSS {:.1} MiB",
            mib(mem.rss),
            mib(mem.hwm),
            mib(base.rss)
        )],
    });
    rows.push(Row {
        metric: "scale: vigild RSS per watched process".into(),
        summary: one_value(mem.rss.saturating_sub(base.rss) / size.tags as u64),
        floor: Against::Nothing,
        target: None,
        rate: None,
        unit: Unit::KiB,
        notes: vec![format!(
            "(VmRSS with {} tags − VmRSS of an empty vigild) / {}",
            size.tags, size.tags
        )],
    });
    rows.push(Row {
        metric: "scale: vigild CPU per watched process started".into(),
        summary: one_value(start_cpu / size.tags as u64),
        floor: Against::Nothing,
        target: None,
        rate: None,
        unit: Unit::Micros,
        notes: vec![format!(
            "vigild's CPU time (all threads) from its start to every tag running, / {}",
            size.tags
        )],
    });

    // Idle: nobody asks anything.
    let (cpu0, sw0) = (cpu_ns(pid)?, switches(pid)?);
    let t = Instant::now();
    std::thread::sleep(size.idle);
    let (cpu1, sw1) = (cpu_ns(pid)?, switches(pid)?);
    let wall = t.elapsed().as_nanos() as u64;
    let ppm = (cpu1 - cpu0) * 1_000_000 / wall.max(1);
    rows.push(Row {
        metric: format!(
            "scale: vigild idle CPU, {} watched processes",
            thousands(size.tags as u64)
        ),
        summary: one_value(ppm),
        floor: Against::Nothing,
        target: Some(Target::AtMost {
            stat: Stat::Max,
            value: IDLE_CPU_MAX_PPM,
        }),
        rate: None,
        unit: Unit::Percent,
        notes: vec![format!(
            "{:.1} ms of CPU in {:.1} s; {} context switches ({:.1}/s): vigild wakes only when something happens \
             (here: the process connector reports every fork, exec and exit of the machine)",
            (cpu1 - cpu0) as f64 / 1e6,
            wall as f64 / 1e9,
            sw1 - sw0,
            (sw1 - sw0) as f64 / (wall as f64 / 1e9)
        )],
    });

    // 3. Status of all.
    rows.extend(status_rows(ctx, &vigild, &mut client, size.tags)?);
    rows.push(metrics_row(ctx, &vigild, size.tags)?);

    // 4. Killed at once, after the floor: the same program started as many times by a bare loop, right
    // now, beside the tags' processes. The machine must be in the same state for both: with 10,000
    // processes of the program alive, each new one's mappings cost more (perf: `vma_interval_tree_insert`
    // on the shared libraries' mappings is the top symbol of a mass restart of `sleep`). vigild hears of
    // the loop's processes through the process connector, and ignores them.
    // The host's speed moves by half within a run (the bare loop alone took 715 to 1,688 ms for the
    // same 1,000 starts), so the two take turns, KILL_ROUNDS times, each loop right before its kill,
    // and the rows hold the median of the rounds.
    rows.extend(kill_rows(&vigild, &mut client, &program, size.kill)?);

    // 5. PSM, few members then many (the killed tags have new processes now).
    let list = client.list()?;
    rows.extend(psm_rows(&mut client, vigild.pid(), &list, size.members, &mut probes)?);

    drop(client);
    probes.end();
    vigild.stop_within(Duration::from_secs(60) + Duration::from_millis(5) * size.tags as u32)?;
    Ok(rows)
}

fn one(d: Duration) -> Summary {
    one_value(d.as_nanos() as u64)
}

fn one_value(v: u64) -> Summary {
    Summary::of(&[v]).expect("one sample")
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The config file: PSM limits big enough, and `tags` tags running `sleep infinity` without a restart
/// limit.
fn write_config(path: &Path, size: &ScaleSize, probes: usize, program: &[String]) -> anyhow::Result<()> {
    let mut t = String::new();
    writeln!(t, "[psm]\npsm_mem_max = {}\n", size.members + probes + 64)?;
    // TOML basic strings escape as Rust's Debug does for these paths.
    let command: Vec<String> = program.iter().map(|a| format!("{a:?}")).collect();
    for i in 0..size.tags {
        writeln!(
            t,
            "[tag.{}]\ncommand = [{}]\nretries = -1\n",
            tag_name(i),
            command.join(", ")
        )?;
    }
    std::fs::write(path, t).with_context(|| format!("cannot write {}", path.display()))
}

const IDLE_SOURCE: &str = include_str!("../../c/idle.c");

/// The command of every tag, and a note that says which it is.
fn idle_program(dir: &Path, with_sleep: bool) -> (Vec<String>, String) {
    let sleep = vec!["sleep".to_string(), "infinity".to_string()];
    if with_sleep {
        return (sleep, "every tag runs `sleep infinity` (--with-sleep)".into());
    }
    let src = dir.join("idle.c");
    let exe = dir.join("idle");
    let built = std::fs::write(&src, IDLE_SOURCE)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let o = Command::new("gcc")
                .args([
                    "-O2",
                    "-static",
                    "-nostdlib",
                    "-fno-stack-protector",
                    "-Wall",
                    "-Werror",
                    "-o",
                ])
                .arg(&exe)
                .arg(&src)
                .output()
                .map_err(|e| format!("cannot run gcc: {e}"))?;
            if o.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).into_owned())
            }
        });
    match built {
        Ok(()) => (
            vec![exe.display().to_string()],
            "every tag runs c/idle.c, a static program without a C library that waits for signals".into(),
        ),
        Err(e) => (
            sleep,
            format!(
                "every tag runs `sleep infinity`: c/idle.c could not be built ({})",
                e.trim()
            ),
        ),
    }
}

fn tag_name(i: usize) -> String {
    format!("s{i:05}")
}

/// Polls `list` until `n` tags run with a process; the time since `t0` and the last list.
fn wait_all_running(
    client: &mut Client,
    n: usize,
    t0: Instant,
    deadline: Duration,
) -> anyhow::Result<(Duration, Vec<vigil_client::proto::TagSummary>)> {
    loop {
        let list = client.list()?;
        let running = list
            .iter()
            .filter(|t| t.state == "running" && !t.pids.is_empty())
            .count();
        let at = t0.elapsed();
        if running == n && list.len() == n {
            return Ok((at, list));
        }
        if at >= deadline {
            bail!("{running} of {n} tags running after {at:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// VmRSS and VmHWM of a process, in bytes.
struct Mem {
    rss: u64,
    hwm: u64,
}

impl Mem {
    fn of(pid: u32) -> anyhow::Result<Mem> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = |key: &str| -> anyhow::Result<u64> {
            let line = text
                .lines()
                .find(|l| l.starts_with(key))
                .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
            let v: u64 = line[key.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("{line:?}"))?;
            Ok(v * 1024)
        };
        Ok(Mem {
            rss: kb("VmRSS:")?,
            hwm: kb("VmHWM:")?,
        })
    }
}

/// The CPU time of every thread of `pid` so far, in ns (the first field of each task's schedstat).
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    sum_tasks(pid, |t| {
        let s = std::fs::read_to_string(t.join("schedstat")).ok()?;
        s.split_whitespace().next()?.parse().ok()
    })
}

/// Context switches (voluntary and not) of every thread of `pid` so far.
fn switches(pid: u32) -> anyhow::Result<u64> {
    sum_tasks(pid, |t| {
        let s = std::fs::read_to_string(t.join("status")).ok()?;
        Some(
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum(),
        )
    })
}

fn sum_tasks(pid: u32, f: impl Fn(&Path) -> Option<u64>) -> anyhow::Result<u64> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut sum = 0;
    for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        // A thread that ended meanwhile has nothing left to add.
        sum += f(&e?.path()).unwrap_or(0);
    }
    Ok(sum)
}

/// Single-key `set` and `get`, `count` of each, with few keys, then after `keys` more are loaded.
fn cmap_rows(count: usize, keys: usize, c: &mut Client) -> anyhow::Result<Vec<Row>> {
    let round = |c: &mut Client, prefix: &str| -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
        let mut sets = Vec::with_capacity(count);
        let mut gets = Vec::with_capacity(count);
        for i in 0..count {
            let key = format!("{prefix}{i}");
            let t = Instant::now();
            c.cmap_set(&key, CmapValue::U32(i as u32), false)?;
            sets.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            c.cmap_get(&key)?;
            gets.push(t.elapsed().as_nanos() as u64);
        }
        Ok((sets, gets))
    };
    let (few_sets, few_gets) = round(c, "scale.few.k")?;
    let t = Instant::now();
    for i in 0..keys {
        c.cmap_set(&format!("scale.load.k{i:06}"), CmapValue::U32(i as u32), false)?;
    }
    let load_ns = t.elapsed().as_nanos() as u64;
    let (many_sets, many_gets) = round(c, "scale.many.k")?;
    let n = thousands(keys as u64);
    let load = format!(
        "{keys} keys loaded one set at a time in {:.1} s ({})",
        load_ns as f64 / 1e9,
        per_second(keys, load_ns, "sets")
    );
    Ok(vec![
        against_few(
            format!("scale: cmap set, {n} keys"),
            "cmap set, few keys",
            &few_sets,
            &many_sets,
            vec![load.clone()],
        )?,
        against_few(
            format!("scale: cmap get, {n} keys"),
            "cmap get, few keys",
            &few_gets,
            &many_gets,
            vec![],
        )?,
    ])
}

fn against_few(metric: String, few_name: &str, few: &[u64], many: &[u64], notes: Vec<String>) -> anyhow::Result<Row> {
    Ok(Row {
        metric,
        summary: Summary::of(many).context("no samples")?,
        floor: Against::Baseline {
            name: few_name.into(),
            summary: Summary::of(few).context("no samples")?,
        },
        target: Some(Target::Ratio {
            p50: NO_SLOWER,
            p99: None,
        }),
        rate: None,
        unit: Unit::Micros,
        notes,
    })
}

/// `vigil status` (the real command line) and the client's `status_all`, of every tag.
fn status_rows(ctx: &Ctx, vigild: &Vigild, client: &mut Client, n: usize) -> anyhow::Result<Vec<Row>> {
    let runs = if ctx.smoke { STATUS_RUNS_SMOKE } else { STATUS_RUNS };
    let cli = ctx.self_exe.with_file_name("vigil");
    anyhow::ensure!(
        cli.is_file(),
        "{} is missing: build it (cargo build --release -p vigil)",
        cli.display()
    );
    let mut cli_samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let status = Command::new(&cli)
            .arg("status")
            .env("VIGIL_SOCKET", vigild.socket())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", cli.display()))?;
        cli_samples.push(t.elapsed().as_nanos() as u64);
        anyhow::ensure!(status.success(), "vigil status: {status}");
    }
    let mut call_samples = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let all = client.status_all()?;
        call_samples.push(t.elapsed().as_nanos() as u64);
        anyhow::ensure!(all.len() == n, "status of {} tags, not {n}", all.len());
        bytes = all.iter().map(|s| s.name.len() + s.log_path.len() + 100).sum::<usize>();
    }
    let n = thousands(n as u64);
    let target = Some(Target::AtMost {
        stat: Stat::P50,
        value: STATUS_MAX.as_nanos() as u64,
    });
    Ok(vec![
        Row {
            metric: format!("scale: `vigil status` of {n} tags (the command)"),
            summary: Summary::of(&cli_samples).context("no samples")?,
            floor: Against::Nothing,
            target,
            rate: None,
            unit: Unit::Millis,
            notes: vec![format!(
                "{runs} runs of the command line, output to /dev/null: its start, connection, request and table"
            )],
        },
        Row {
            metric: format!("scale: status of {n} tags (client call)"),
            summary: Summary::of(&call_samples).context("no samples")?,
            floor: Against::Nothing,
            target,
            rate: None,
            unit: Unit::Millis,
            notes: vec![format!(
                "{runs} calls of status_all; an answer of roughly {} KiB",
                bytes / 1024
            )],
        },
    ])
}

/// A scrape of `GET /metrics` on vigild's HTTP socket with every tag (issue 21: under 100 ms with
/// 10,000 tags), by curl as Prometheus would fetch it: connection, request, the whole exposition.
fn metrics_row(ctx: &Ctx, vigild: &Vigild, n: usize) -> anyhow::Result<Row> {
    let runs = if ctx.smoke { STATUS_RUNS_SMOKE } else { STATUS_RUNS };
    let sock = vigild
        .socket()
        .parent()
        .context("the socket has no directory")?
        .join("state")
        .join("http.sock");
    let mut samples = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--unix-socket"])
            .arg(&sock)
            .arg("http://vigil/metrics")
            .stdin(Stdio::null())
            .output()
            .context("cannot run curl")?;
        samples.push(t.elapsed().as_nanos() as u64);
        anyhow::ensure!(
            out.status.success(),
            "GET /metrics: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ups = out
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"vigil_tag_up{"))
            .count();
        anyhow::ensure!(ups == n, "/metrics showed {ups} tags, not {n}");
        bytes = out.stdout.len();
    }
    Ok(Row {
        metric: format!("scale: GET /metrics with {} tags", thousands(n as u64)),
        summary: Summary::of(&samples).context("no samples")?,
        floor: Against::Nothing,
        target: Some(Target::AtMost {
            stat: Stat::P50,
            value: METRICS_MAX.as_nanos() as u64,
        }),
        rate: None,
        unit: Unit::Millis,
        notes: vec![format!(
            "{runs} scrapes by curl on http.sock, each its own process and connection; {} KiB of OpenMetrics text",
            bytes / 1024
        )],
    })
}

/// Kills the main process of `k` tags at once, right after the bare loop started the same program `k`
/// times ([`floor::spawn_loop`]), in [`KILL_ROUNDS`] rounds, each on tags the rounds before did not
/// kill (while there are such). A tag's sample is until its restart event arrives. Two rows: every
/// tag's time in every round, against the 2 s target, and, per round, the time until the last one
/// against the loop's last start (the median round against the median loop).
fn kill_rows(vigild: &Vigild, client: &mut Client, program: &[String], k: usize) -> anyhow::Result<Vec<Row>> {
    let mut rounds = Vec::new();
    for r in 0..KILL_ROUNDS {
        let list = client.list()?;
        let from = (r * k) % list.len().max(1);
        let victims: HashMap<String, i32> = list
            .iter()
            .cycle()
            .skip(from)
            .take(k.min(list.len()))
            .map(|t| (t.name.clone(), t.pids[0]))
            .collect();
        let spawn_floor = floor::spawn_loop(program, k)?;
        rounds.push(kill_round(vigild, client, victims, spawn_floor, r == 0)?);
    }
    let floor_name = format!("posix_spawn loop ×{}", thousands(k as u64));
    let samples: Vec<u64> = rounds.iter().flat_map(|r| r.samples.iter().copied()).collect();
    let floor_samples: Vec<u64> = rounds.iter().flat_map(|r| r.floor.samples.iter().copied()).collect();
    let lasts: Vec<u64> = rounds.iter().map(|r| r.last()).collect();
    let floor_lasts: Vec<u64> = rounds.iter().map(|r| r.floor_last()).collect();
    let ms = |ns: u64| ns as f64 / 1e6;
    let per_round = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "round {}: all running again after {:.0} ms, the loop's last start {:.0} ms, {:.2}x; CPU per process \
                 started: vigild {:.0} µs, the loop's thread {:.0} µs",
                i + 1,
                ms(r.last()),
                ms(r.floor_last()),
                r.last() as f64 / r.floor_last().max(1) as f64,
                r.cpu_ns as f64 / 1e3 / k.max(1) as f64,
                r.floor.cpu_ns as f64 / 1e3 / k.max(1) as f64
            )
        })
        .collect::<Vec<_>>();
    let each = Row {
        metric: format!("scale: {} killed at once, each running again", thousands(k as u64)),
        summary: Summary::of(&samples).context("no samples")?,
        floor: Against::Baseline {
            name: floor_name.clone(),
            summary: Summary::of(&floor_samples).context("no samples of the spawn loop")?,
        },
        target: Some(Target::AtMost {
            stat: Stat::Max,
            value: KILLED_BACK.as_nanos() as u64,
        }),
        rate: Some(per_second(k, lasts.iter().copied().max().unwrap_or(0), "restarts")),
        unit: Unit::Millis,
        notes: vec![format!(
            "{KILL_ROUNDS} rounds of {k}; SIGKILL to {k} tags' processes took {:.1} ms to send (first round); a sample \
             is from the first kill of its round to the tag's restart event at a subscriber; after each round every \
             killed tag was running again with a new pid",
            rounds[0].sent.as_secs_f64() * 1e3,
        )],
    };
    let all = Row {
        metric: format!("scale: {} killed at once, all running again", thousands(k as u64)),
        summary: Summary::of(&lasts).context("no rounds")?,
        floor: Against::Baseline {
            name: floor_name,
            summary: Summary::of(&floor_lasts).context("no rounds")?,
        },
        target: Some(Target::Ratio {
            p50: KILLED_BACK_VS_SPAWN,
            p99: None,
        }),
        rate: None,
        unit: Unit::Millis,
        notes: std::iter::once(format!(
            "the floor: the tags' program started {k} times in a row by one thread (posix_spawn, output to /dev/null, \
             no supervision), right before each round's kill; vigild: from the first SIGKILL to the last restart \
             event; p50 is the median of {KILL_ROUNDS} rounds"
        ))
        .chain(per_round)
        .chain(
            rounds[0]
                .profiled
                .as_ref()
                .map(|p| format!("vigild profiled in round 1 (perf record -g): {}", p.display())),
        )
        .collect(),
    };
    Ok(vec![each, all])
}

/// One round of [`kill_rows`].
struct KillRound {
    samples: Vec<u64>,
    floor: floor::SpawnLoop,
    sent: Duration,
    cpu_ns: u64,
    profiled: Option<PathBuf>,
}

impl KillRound {
    fn last(&self) -> u64 {
        self.samples.iter().copied().max().unwrap_or(0)
    }

    fn floor_last(&self) -> u64 {
        self.floor.samples.iter().copied().max().unwrap_or(0)
    }
}

fn kill_round(
    vigild: &Vigild,
    client: &mut Client,
    victims: HashMap<String, i32>,
    floor: floor::SpawnLoop,
    profile: bool,
) -> anyhow::Result<KillRound> {
    let mut sub = vigild.connect_another()?;
    sub.subscribe_filtered(
        None,
        EventFilter {
            names: vec!["sys.vigil.pmf.tag.restart".into()],
            ..Default::default()
        },
    )?;
    let names: HashSet<String> = victims.keys().cloned().collect();
    let reader = std::thread::spawn(move || -> anyhow::Result<Vec<(String, Instant)>> {
        let mut seen = Vec::new();
        let mut left = names;
        while !left.is_empty() {
            let e = sub.next_event().context("restart events")?;
            if left.remove(&e.subject) {
                seen.push((e.subject, Instant::now()));
            }
        }
        Ok(seen)
    });
    let profiler = if profile { Profile::start(vigild.pid())? } else { None };
    let cpu0 = cpu_ns(vigild.pid())?;
    let t0 = Instant::now();
    for pid in victims.values() {
        vigil_sys::send_signal(*pid, 9).with_context(|| format!("kill -9 {pid}"))?;
    }
    let sent = t0.elapsed();
    let seen = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the event reader panicked"))??;
    let samples: Vec<u64> = seen.iter().map(|(_, at)| (*at - t0).as_nanos() as u64).collect();
    let cpu_ns = cpu_ns(vigild.pid())?.saturating_sub(cpu0);
    let profiled = profiler.map(Profile::end).transpose()?;
    // Every victim runs again, with a new process.
    let now: HashMap<String, (String, Vec<i32>)> = client
        .list()?
        .into_iter()
        .map(|t| (t.name, (t.state, t.pids)))
        .collect();
    for (name, old) in &victims {
        match now.get(name) {
            Some((state, pids)) if state == "running" && !pids.is_empty() && !pids.contains(old) => {}
            other => bail!("tag {name} after the kill: {other:?}"),
        }
    }
    Ok(KillRound {
        samples,
        floor,
        sent,
        cpu_ns,
        profiled,
    })
}

/// With `VIGIL_BENCH_PROFILE=FILE`, `perf record -g` of vigild from just before the kill until every
/// restart event arrived, into FILE (`perf report -i FILE`): where vigild's CPU of a mass restart goes.
/// The elapsed times of such a run are perf's too; its CPU figures less so.
struct Profile {
    perf: Child,
    out: PathBuf,
}

impl Profile {
    fn start(pid: u32) -> anyhow::Result<Option<Profile>> {
        let Some(out) = std::env::var_os("VIGIL_BENCH_PROFILE").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let out = PathBuf::from(out);
        let mut perf = Command::new("perf")
            .args(["record", "-g", "-q", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("VIGIL_BENCH_PROFILE: cannot run perf")?;
        // perf writes its header once it is attached: wait for the file, then a moment for the counters.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&out).map_or(true, |m| m.len() == 0) {
            if let Some(status) = perf.try_wait()? {
                bail!("VIGIL_BENCH_PROFILE: perf record ended at once ({status})");
            }
            if Instant::now() >= deadline {
                let _ = perf.kill();
                let _ = perf.wait();
                bail!("VIGIL_BENCH_PROFILE: perf record did not start within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(Some(Profile { perf, out }))
    }

    /// SIGINT, as perf record expects to be stopped, and its exit.
    fn end(mut self) -> anyhow::Result<PathBuf> {
        vigil_sys::send_signal(self.perf.id() as i32, 2 /* SIGINT */).context("cannot stop perf")?;
        let status = self.perf.wait()?;
        // perf ends with the signal it was stopped by, once its file is written.
        anyhow::ensure!(
            status.success() || status.code() == Some(130) || status.signal() == Some(2),
            "perf record: {status}"
        );
        Ok(std::mem::take(&mut self.out))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if self.perf.try_wait().ok().flatten().is_none() {
            let _ = self.perf.kill();
            let _ = self.perf.wait();
        }
    }
}

/// Processes of this benchmark that PSM registers and removes one at a time.
struct Probes {
    children: Vec<Child>,
}

impl Probes {
    fn spawn(n: usize) -> anyhow::Result<Probes> {
        let mut p = Probes { children: Vec::new() };
        for _ in 0..n {
            p.children.push(
                Command::new("sleep")
                    .arg("infinity")
                    .stdin(Stdio::null())
                    .spawn()
                    .context("cannot start sleep")?,
            );
        }
        Ok(p)
    }

    fn pids(&self) -> Vec<i32> {
        self.children.iter().map(|c| c.id() as i32).collect()
    }

    fn end(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.end();
    }
}

/// Single-member `add`, `get` and `remove`, with no member, then once `members` of the tags' processes
/// are members.
fn psm_rows(
    client: &mut Client,
    pid: u32,
    list: &[vigil_client::proto::TagSummary],
    members: usize,
    probes: &mut Probes,
) -> anyhow::Result<Vec<Row>> {
    let node = PsmNode::local();
    let pids = probes.pids();
    // add and remove are durable commits: each round starts once the disk has written what came before
    // (the 10,000 adds just made, in the second), so that both rounds meet the same disk.
    let settle = || -> anyhow::Result<()> {
        anyhow::ensure!(Command::new("sync").status()?.success(), "sync failed");
        std::thread::sleep(Duration::from_secs(1));
        Ok(())
    };
    // vigild's CPU time per add + get + remove: what the members cost it, without the disk's noise.
    let round = |client: &mut Client| -> anyhow::Result<([Vec<u64>; 3], f64)> {
        settle()?;
        let cpu0 = cpu_ns(pid)?;
        let mut out = [Vec::new(), Vec::new(), Vec::new()];
        for &pid in &pids {
            let t = Instant::now();
            add(client, &node, PROBE_CATEGORY, pid)?;
            out[0].push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            let got = client.psm_get(&node, Some(PROBE_CATEGORY), Some(pid))?;
            out[1].push(t.elapsed().as_nanos() as u64);
            anyhow::ensure!(got.len() == 1 && got[0].pid == pid, "psm get {pid}: {got:?}");
            let t = Instant::now();
            client.psm_remove(&node, Some(PROBE_CATEGORY), pid)?;
            out[2].push(t.elapsed().as_nanos() as u64);
        }
        let cpu = (cpu_ns(pid)? - cpu0) as f64 / pids.len().max(1) as f64;
        Ok((out, cpu))
    };
    let (few, cpu_few) = round(client)?;
    let t = Instant::now();
    for s in list.iter().take(members) {
        add(client, &node, CATEGORY, s.pids[0])?;
    }
    let load_ns = t.elapsed().as_nanos() as u64;
    let (many, cpu_many) = round(client)?;
    let n = thousands(members as u64);
    let load = format!(
        "{members} of the tags' processes registered one at a time in {:.1} s ({})",
        load_ns as f64 / 1e9,
        per_second(members, load_ns, "adds")
    );
    let cpu = format!(
        "vigild's CPU per add + get + remove: {:.0} µs with {n} members, {:.0} µs with few ({:.2}x)",
        cpu_many / 1e3,
        cpu_few / 1e3,
        cpu_many / cpu_few.max(1.0)
    );
    let mut rows = Vec::new();
    for (i, op) in ["add", "get", "remove"].iter().enumerate() {
        rows.push(against_few(
            format!("scale: psm {op}, {n} members"),
            &format!("psm {op}, few members"),
            &few[i],
            &many[i],
            if i == 0 {
                vec![load.clone(), cpu.clone()]
            } else {
                vec![]
            },
        )?);
    }
    Ok(rows)
}

/// `psm_add`, retried while vigild answers Busy (a process still inside exec has no argv yet).
fn add(client: &mut Client, node: &PsmNode, category: &str, pid: i32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.psm_add(node, category, pid) {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(ErrorCode::Busy) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(e) => return Err(e).with_context(|| format!("psm add {category} {pid}")),
        }
    }
}
