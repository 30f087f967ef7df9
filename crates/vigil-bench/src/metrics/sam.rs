//! SAM: how fast an application can heartbeat, and how long a SAM application is gone when an instance
//! aborts.
//!
//! Both run `vigil-sam-app` (next to this executable) against a real vigild. Heartbeats: one instance
//! calls `hc_send` in a loop; the supervisor reads each one (without the CMAP flag nothing reaches
//! vigild; with it, each heartbeat refreshes `last_updated` in vigild's CMAP). Recovery: every instance
//! starts health checking and aborts; a sample is from just before `abort` to just after `register`
//! returns in the next instance, both on the system-wide monotonic clock: the death, the supervisor
//! learning of it through its pidfd, reaping, telling vigild (exit, restart), and a fork.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{Ctx, Floor, Metric, Row, Unit};
use crate::daemon::Vigild;
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "sam", run };

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let app = ctx.self_exe.with_file_name("vigil-sam-app");
    anyhow::ensure!(
        app.exists(),
        "{} is missing: build the workspace's binaries",
        app.display()
    );
    let (vigild, _client) = Vigild::start(&ctx.vigild)?;
    let beats = if ctx.smoke { 2_000 } else { 200_000 };
    let mut rows = vec![
        heartbeats(&app, &vigild, "restart", beats)?,
        heartbeats(&app, &vigild, "restart+cmap", beats / 10)?,
    ];
    rows.push(recovery(&app, &vigild, ctx.count)?);
    vigild.stop()?;
    Ok(rows)
}

/// Runs vigil-sam-app to its end; its output lines.
fn run_app(app: &Path, vigild: &Vigild, name: &str, args: &[String], timeout: Duration) -> anyhow::Result<Vec<String>> {
    let out = vigild.dir().join(format!("{name}.out"));
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new(app)
        .arg("--out")
        .arg(&out)
        .args(args)
        .env("VIGIL_SOCKET", vigild.socket())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", app.display()))?;
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name}: the SAM application did not finish in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out).with_context(|| format!("cannot read {}", out.display()))?;
    anyhow::ensure!(
        status.success(),
        "{name}: the SAM application ended with {status}:\n{text}"
    );
    Ok(text.lines().map(str::to_string).collect())
}

fn heartbeats(app: &Path, vigild: &Vigild, policy: &str, n: usize) -> anyhow::Result<Row> {
    let args: Vec<String> = [
        "--interval",
        "60000",
        "--policy",
        policy,
        "--on",
        &format!("1:start;beats:{n};stop;finalize;exit:0"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let lines = run_app(app, vigild, &format!("hc-{policy}"), &args, Duration::from_secs(120))?;
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("1 beats "))
        .context("no beats line")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse::<f64>().with_context(|| format!("beats line {line:?}")))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(f.len() == 7, "beats line {line:?}");
    let summary = Summary {
        n: f[6] as usize,
        min: f[1] as u64,
        p50: f[2] as u64,
        p99: f[3] as u64,
        max: f[4] as u64,
        mean: f[5],
    };
    Ok(Row {
        metric: format!("sam hc_send ({policy})"),
        summary,
        floor: Floor::PipeRoundTrip.into(),
        target: None,
        rate: Some(format!("{} calls/s", super::thousands(f[0].round() as u64))),
        unit: Unit::Micros,
        notes: vec![format!(
            "{policy}: {n} hc_send calls at {:.0} calls/s{}",
            f[0],
            if policy.contains("cmap") {
                " (each one also refreshes last_updated in vigild's CMAP)"
            } else {
                ""
            }
        )],
    })
}

fn recovery(app: &Path, vigild: &Vigild, count: usize) -> anyhow::Result<Row> {
    let args: Vec<String> = [
        "--stamp".to_string(),
        "--interval".into(),
        "60000".into(),
        "--on".into(),
        format!("{}:finalize;exit:0", count + 2),
        "--otherwise".into(),
        "start;stamp;abort".into(),
    ]
    .to_vec();
    let lines = run_app(
        app,
        vigild,
        "recovery",
        &args,
        Duration::from_secs(60 + count as u64 / 10),
    )?;
    let stamp = |instance: usize, step: &str| -> Option<u64> {
        let prefix = format!("{instance} {step} ");
        lines.iter().find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
    };
    let mut samples = Vec::with_capacity(count);
    for i in 1..=count {
        let (Some(died), Some(back)) = (stamp(i, "stamp"), stamp(i + 1, "registered")) else {
            bail!("instance {i} or {} left no stamp", i + 1);
        };
        samples.push(back.saturating_sub(died));
    }
    Ok(Row {
        metric: "restart latency, SAM child (abort → register returns)".into(),
        summary: Summary::of(&samples).context("no samples")?,
        floor: Floor::ForkExecWait.into(),
        target: None,
        rate: None,
        unit: Unit::Micros,
        notes: vec![format!(
            "{count} instances aborted one after another under RESTART; each sample ends when register returns \
             in the next one"
        )],
    })
}
