//! The metrics. Each is a module with a [`Metric`] listed in [`ALL`]; a metric measures something of a
//! real vigild and says which floor it compares with and what ratio the spec allows.
//!
//! To add one: a module here, its `METRIC` in [`ALL`], and (if it should run alone) a subcommand in
//! `main.rs`.

pub mod cluster;
pub mod cmap;
mod cmap_c;
pub mod events_throughput;
pub mod psm_exit;
pub mod restart;
pub mod sam;

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
}

/// A metric: a name and what measures it.
pub struct Metric {
    pub name: &'static str,
    pub run: fn(&Ctx) -> anyhow::Result<Vec<Row>>,
}

/// Every metric, in the order `all` runs them.
pub const ALL: &[Metric] = &[
    restart::METRIC,
    psm_exit::METRIC,
    events_throughput::METRIC,
    cmap::METRIC,
    sam::METRIC,
    cluster::METRIC,
];

/// Which floor a row compares with.
#[derive(Debug, Clone, Copy)]
pub enum Floor {
    ForkExecWait,
    RespawnLoop,
    SocketRoundTrip,
    PipeRoundTrip,
}

impl Floor {
    pub const ALL: [Floor; 4] = [
        Floor::ForkExecWait,
        Floor::RespawnLoop,
        Floor::SocketRoundTrip,
        Floor::PipeRoundTrip,
    ];

    pub fn summary(self, f: &Floors) -> &Summary {
        match self {
            Floor::ForkExecWait => &f.exec,
            Floor::RespawnLoop => &f.respawn,
            Floor::SocketRoundTrip => &f.socket,
            Floor::PipeRoundTrip => &f.pipe,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Floor::ForkExecWait => "fork+exec+wait",
            Floor::RespawnLoop => "respawn loop restart",
            Floor::SocketRoundTrip => "unix socket round trip",
            Floor::PipeRoundTrip => "pipe round trip",
        }
    }
}

/// The spec's targets: p50 and p99 at most these multiples of the floor's p50 and p99.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub p50: f64,
    pub p99: f64,
}

/// One line of the report.
pub struct Row {
    pub metric: String,
    pub summary: Summary,
    pub floor: Floor,
    pub target: Option<Target>,
    /// Facts worth printing under the table (how the daemon saw things, anomalies...).
    pub notes: Vec<String>,
}
