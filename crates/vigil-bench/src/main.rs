//! `vigil-bench`: measures vigild, a real daemon in a temporary directory, next to the floor the machine
//! allows for the same work, measured in the same run.
//!
//! Each metric is a module under [`metrics`] listed in [`metrics::ALL`]; `all` runs every one of them.
//! The hidden `child`, `child-noop` and `child-psm` subcommands are the tiny programs the metrics start:
//! this binary re-invoked, so that the floor and the supervised program are the same executable.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

mod child;
mod corosync;
mod daemon;
mod floor;
mod machine;
mod metrics;
mod report;
mod stamps;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Benchmarks of vigild, each against the floor the machine allows.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Restart latency: from the exit of a supervised process to the start of its replacement.
    Restart(Opts),
    /// Tag start: `run` requests of a long-lived command, one after another; latency and tags/s.
    Start(Opts),
    /// PSM exit latency: from the exit of a registered process vigild did not start to its
    /// `sys.unix.psm.instance.exited` event at a subscriber.
    PsmExit(Opts),
    /// Event throughput: one producer, 10 subscribers; events/s delivered to all of them.
    EventsThroughput(Opts),
    /// CMAP: set/get ops/s and latency (1 and 4 clients), iteration over many keys, track notification
    /// latency and rate.
    Cmap(Opts),
    /// SAM: hc_send calls/s, and the time from an instance's abort to `register` returning in the next.
    Sam(Opts),
    /// Cluster mode (a real etcd, two vigild nodes): the round trip of a request to the other node, and
    /// the time until a killed node is seen down.
    Cluster(Opts),
    /// Scale: N tags declared in the config file (default 10,000), each a long-lived process: time until
    /// all run, vigild's RSS and idle CPU, status of all, K killed at once until all run again, and
    /// single-key CMAP and single-member PSM operations with many keys and members against few.
    Scale(Opts),
    /// Against corosync: one C program on Debian's libcmap and libsam, run against a private corosync and
    /// against vigild with vigil's libraries, alternating; one table of both and the ratio. Skipped with
    /// one line when corosync is not installed.
    Corosync(Opts),
    /// What the HTTP API costs the socket: CMAP set, CMAP get and the status of one tag, timed on a
    /// vigild without HTTP, one with it, and one with it while `GET /metrics` is scraped, taking turns.
    HttpCost(Opts),
    /// Every metric.
    All(Opts),
    /// The supervised program of `restart`: stamps its start, lives briefly, stamps its exit.
    #[command(hide = true)]
    Child { stamp: PathBuf },
    /// Exits at once: the program of the fork+exec+wait floor.
    #[command(hide = true)]
    ChildNoop,
    /// Echoes 64-byte messages from stdin to stdout: the other process of the two-process IPC floors.
    #[command(hide = true)]
    ChildEcho,
    /// The PSM member of `psm-exit`: reads stdin to its end, stamps its exit, exits 7.
    #[command(hide = true)]
    ChildPsm { stamp: PathBuf },
}

/// Options shared by every benchmark run.
#[derive(Args, Debug, Clone)]
pub struct Opts {
    /// Samples per metric (and runs of the fork+exec+wait floor).
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// The vigild to measure [default: the vigild next to this executable; under `cargo run`, built
    /// first with the same profile].
    #[arg(long)]
    vigild: Option<PathBuf>,
    /// A quick run that only checks the benchmark works (20 samples); what CI runs.
    #[arg(long, conflicts_with = "count")]
    smoke: bool,
    /// Scale: tags declared in the config file [default: 10000; 200 with --smoke].
    #[arg(long)]
    tags: Option<usize>,
    /// Scale: tags whose processes are killed at once [default: 1000; 20 with --smoke].
    #[arg(long)]
    kill: Option<usize>,
    /// Scale: CMAP keys loaded [default: 100000; 2000 with --smoke].
    #[arg(long)]
    keys: Option<usize>,
    /// Scale: PSM members registered [default: 10000; 200 with --smoke; at most --tags].
    #[arg(long)]
    members: Option<usize>,
    /// Scale: seconds vigild is left idle to measure its CPU [default: 10; 1 with --smoke].
    #[arg(long)]
    idle_secs: Option<f64>,
    /// Scale: the tags run `sleep infinity` (dynamically linked) instead of a tiny static program.
    #[arg(long)]
    with_sleep: bool,
}

impl Opts {
    fn scale(&self) -> anyhow::Result<metrics::ScaleSize> {
        let pick = |v: Option<usize>, full: usize, smoke: usize| v.unwrap_or(if self.smoke { smoke } else { full });
        let tags = pick(self.tags, 10_000, 200);
        let size = metrics::ScaleSize {
            tags,
            kill: pick(self.kill, 1_000, 20),
            keys: pick(self.keys, 100_000, 2_000),
            members: pick(self.members, 10_000, 200),
            idle: std::time::Duration::from_secs_f64(self.idle_secs.unwrap_or(if self.smoke { 1.0 } else { 10.0 })),
            with_sleep: self.with_sleep,
        };
        anyhow::ensure!(tags > 0, "--tags must be at least 1");
        anyhow::ensure!(size.kill <= tags, "--kill {} is more than --tags {tags}", size.kill);
        anyhow::ensure!(
            size.members <= tags,
            "--members {} is more than --tags {tags}",
            size.members
        );
        Ok(size)
    }
}

fn main() -> ExitCode {
    // Before anything else: for `child`, this is the moment the replacement process got control.
    let started_ns = child::now_ns();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Child { stamp } => return child::run(&stamp, started_ns),
        Cmd::ChildNoop => return ExitCode::SUCCESS,
        Cmd::ChildEcho => return floor::echo(),
        Cmd::ChildPsm { stamp } => return child::run_psm(&stamp),
        Cmd::Restart(opts) => bench(&opts, &[metrics::restart::METRIC]),
        Cmd::Start(opts) => bench(&opts, &[metrics::start::METRIC]),
        Cmd::Scale(opts) => bench(&opts, &[metrics::scale::METRIC]),
        Cmd::PsmExit(opts) => bench(&opts, &[metrics::psm_exit::METRIC]),
        Cmd::EventsThroughput(opts) => bench(&opts, &[metrics::events_throughput::METRIC]),
        Cmd::Cmap(opts) => bench(&opts, &[metrics::cmap::METRIC]),
        Cmd::Sam(opts) => bench(&opts, &[metrics::sam::METRIC]),
        Cmd::Cluster(opts) => bench(&opts, &[metrics::cluster::METRIC]),
        Cmd::Corosync(opts) => bench(&opts, &[metrics::corosync::METRIC]),
        Cmd::HttpCost(opts) => bench(&opts, &[metrics::http_cost::METRIC]),
        Cmd::All(opts) => bench(&opts, metrics::ALL),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Measures the floors, runs `which`, prints the report. Missed targets are reported, not failed.
fn bench(opts: &Opts, which: &[metrics::Metric]) -> anyhow::Result<()> {
    let count = if opts.smoke { 20 } else { opts.count };
    anyhow::ensure!(count > 0, "--count must be at least 1");
    let scale = opts.scale()?;
    let self_exe = std::env::current_exe()?;
    let vigild = daemon::locate(opts.vigild.as_deref())?;
    println!(
        "vigil-bench: {count} samples per metric{}; vigild: {}",
        if opts.smoke {
            " (smoke run: checks the benchmark works, numbers are rough)"
        } else {
            ""
        },
        vigild.display()
    );
    let floors = floor::measure(&self_exe, count, opts.smoke)?;
    let ctx = metrics::Ctx {
        count,
        smoke: opts.smoke,
        self_exe,
        vigild,
        floors,
        scale,
    };
    let mut rows = Vec::new();
    for m in which {
        let got = (m.run)(&ctx).map_err(|e| e.context(format!("metric {}", m.name)))?;
        rows.extend(got);
    }
    report::print(&ctx.floors, &rows);
    machine::print();
    Ok(())
}
