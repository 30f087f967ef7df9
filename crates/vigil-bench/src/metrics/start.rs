//! Tag start: how fast vigild takes a new tag and has its process running.
//!
//! One connection sends `count` `run` requests, each once the previous one is answered; each creates a
//! tag whose command is `sleep infinity` (a small long-lived process). vigild answers a `run` once the
//! process is spawned and the tag is stored, so a sample is the whole of it: the request, checks, the
//! spawn (fork and exec), the durable commit of the tag and its event, the answer. The rate is the
//! requests over the time of them all. The floor is fork+exec+wait: the spawn alone, without the
//! commit.

use std::time::Instant;

use anyhow::Context;
use vigil_client::proto::RunSpec;

use super::{per_second, Ctx, Floor, Metric, Row, Unit};
use crate::daemon::Vigild;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "start", run };

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (vigild, mut client) = Vigild::start(&ctx.vigild)?;
    let n = ctx.count;
    let mut samples = Vec::with_capacity(n);
    let all = Instant::now();
    for i in 0..n {
        let spec = RunSpec::new(format!("start{i}"), vec!["sleep".into(), "infinity".into()]);
        let t = Instant::now();
        let st = client.run(spec).with_context(|| format!("run start{i}"))?;
        samples.push(t.elapsed().as_nanos() as u64);
        anyhow::ensure!(st.state == "running", "tag start{i} is {} after run", st.state);
    }
    let total = all.elapsed().as_nanos() as u64;
    let running = client.list()?.iter().filter(|t| t.state == "running").count();
    anyhow::ensure!(running == n, "{running} of {n} tags running after the run requests");
    drop(client);
    vigild.stop()?;
    Ok(vec![Row {
        metric: "tag start (run → process running, answered)".into(),
        summary: Summary::of(&samples).context("no samples")?,
        floor: Floor::ForkExecWait.into(),
        target: None,
        rate: Some(per_second(n, total, "tags")),
        unit: Unit::Micros,
        notes: vec![format!(
            "{n} run requests of `sleep infinity`, one after another, each answered after the spawn and a durable commit"
        )],
    }])
}
