//! The metrics. Each is a module with a [`Metric`] listed in [`ALL`]; a metric measures something of a
//! real vigild and says which floor it compares with and what ratio the spec allows.
//!
//! To add one: a module here, its `METRIC` in [`ALL`], and (if it should run alone) a subcommand in
//! `main.rs`.

pub mod cluster;
pub mod cmap;
mod cmap_c;
pub mod corosync;
pub mod events_throughput;
pub mod http_cost;
pub mod psm_exit;
pub mod restart;
pub mod sam;
pub mod scale;
pub mod start;

use std::path::PathBuf;

use crate::floor::Floors;
use crate::stats::Summary;

/// What every metric gets.
pub struct Ctx {
    /// Samples to collect.
    pub count: usize,
    /// A smoke run: metrics that do not count samples (batch sizes...) keep their work small too.
    pub smoke: bool,
    /// This executable, for the hidden child programs.
    pub self_exe: PathBuf,
    /// The vigild to measure.
    pub vigild: PathBuf,
    pub floors: Floors,
    /// The sizes of the scale benchmark.
    pub scale: ScaleSize,
}

/// How big the scale benchmark is.
#[derive(Debug, Clone, Copy)]
pub struct ScaleSize {
    /// Tags declared in the config file, each a long-lived process.
    pub tags: usize,
    /// Of them, killed at once.
    pub kill: usize,
    /// CMAP keys loaded before single-key operations are measured again.
    pub keys: usize,
    /// PSM members registered (the tags' processes) before single-member operations are measured again.
    pub members: usize,
    /// How long vigild is left alone to measure its idle CPU.
    pub idle: std::time::Duration,
    /// The tags run `sleep infinity` rather than `c/idle.c`.
    pub with_sleep: bool,
}

/// A metric: a name and what measures it.
pub struct Metric {
    pub name: &'static str,
    pub run: fn(&Ctx) -> anyhow::Result<Vec<Row>>,
}

/// Every metric, in the order `all` runs them.
pub const ALL: &[Metric] = &[
    restart::METRIC,
    start::METRIC,
    psm_exit::METRIC,
    events_throughput::METRIC,
    cmap::METRIC,
    sam::METRIC,
    corosync::METRIC,
    cluster::METRIC,
    http_cost::METRIC,
    scale::METRIC,
];

/// Which floor a row compares with.
#[derive(Debug, Clone, Copy)]
pub enum Floor {
    ForkExecWait,
    RespawnLoop,
    SocketRoundTrip,
    PipeRoundTrip,
    ProcSocketRoundTrip,
    ProcPipeRoundTrip,
}

impl Floor {
    pub const ALL: [Floor; 6] = [
        Floor::ForkExecWait,
        Floor::RespawnLoop,
        Floor::SocketRoundTrip,
        Floor::PipeRoundTrip,
        Floor::ProcSocketRoundTrip,
        Floor::ProcPipeRoundTrip,
    ];

    pub fn summary(self, f: &Floors) -> &Summary {
        match self {
            Floor::ForkExecWait => &f.exec,
            Floor::RespawnLoop => &f.respawn,
            Floor::SocketRoundTrip => &f.socket,
            Floor::PipeRoundTrip => &f.pipe,
            Floor::ProcSocketRoundTrip => &f.proc_socket,
            Floor::ProcPipeRoundTrip => &f.proc_pipe,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Floor::ForkExecWait => "fork+exec+wait",
            Floor::RespawnLoop => "respawn loop restart",
            Floor::SocketRoundTrip => "unix socket round trip",
            Floor::PipeRoundTrip => "pipe round trip",
            Floor::ProcSocketRoundTrip => "unix socket round trip, 2 processes, 64 B",
            Floor::ProcPipeRoundTrip => "pipe round trip, 2 processes, 64 B",
        }
    }
}

/// What a row is compared with: one of the machine's floors, a baseline of the same operation measured
/// in the same run under lighter load (CMAP with few keys against many), or nothing (absolute figures
/// such as memory).
pub enum Against {
    Floor(Floor),
    Baseline { name: String, summary: Summary },
    Nothing,
}

impl From<Floor> for Against {
    fn from(f: Floor) -> Against {
        Against::Floor(f)
    }
}

impl Against {
    /// The name and distribution of what the row is compared with.
    pub fn resolve<'a>(&'a self, floors: &'a Floors) -> Option<(&'a str, &'a Summary)> {
        match self {
            Against::Floor(f) => Some((f.name(), f.summary(floors))),
            Against::Baseline { name, summary } => Some((name, summary)),
            Against::Nothing => None,
        }
    }
}

/// What a target bounds.
#[derive(Debug, Clone, Copy)]
pub enum Stat {
    P50,
    Max,
}

/// A target of the spec.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// p50 and p99 at most these multiples of what the row is compared with (its p50 and p99); a p99
    /// of None is not bounded.
    Ratio { p50: f64, p99: Option<f64> },
    /// The statistic at most `value`, in the row's base unit (ns, bytes, ppm of one CPU).
    AtMost { stat: Stat, value: u64 },
}

impl Target {
    pub fn ratio(p50: f64, p99: f64) -> Target {
        Target::Ratio { p50, p99: Some(p99) }
    }
}

/// The unit of a row's figures. Samples are kept in a base unit: nanoseconds for times, bytes for memory,
/// parts per million of one CPU for CPU use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Micros,
    Millis,
    KiB,
    MiB,
    Percent,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Micros => "µs",
            Unit::Millis => "ms",
            Unit::KiB => "KiB",
            Unit::MiB => "MiB",
            Unit::Percent => "% CPU",
        }
    }

    /// A value in the base unit, in this unit.
    pub fn scale(self, v: u64) -> f64 {
        match self {
            Unit::Micros => v as f64 / 1e3,
            Unit::Millis => v as f64 / 1e6,
            Unit::KiB => v as f64 / 1024.0,
            Unit::MiB => v as f64 / (1024.0 * 1024.0),
            Unit::Percent => v as f64 / 1e4,
        }
    }

    pub fn fmt(self, v: u64) -> String {
        match self {
            Unit::Percent => format!("{:.3}", self.scale(v)),
            _ => format!("{:.1}", self.scale(v)),
        }
    }
}

/// One line of the report.
pub struct Row {
    pub metric: String,
    pub summary: Summary,
    pub floor: Against,
    pub target: Option<Target>,
    /// A throughput worth its own column ("15,346 ops/s").
    pub rate: Option<String>,
    pub unit: Unit,
    /// Facts worth printing under the table (how the daemon saw things, anomalies...).
    pub notes: Vec<String>,
}

/// `n` things in `ns` nanoseconds, as a rate with thousands separators.
pub fn per_second(n: usize, ns: u64, what: &str) -> String {
    let r = n as f64 / (ns.max(1) as f64 / 1e9);
    format!("{} {what}/s", thousands(r.round() as u64))
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
