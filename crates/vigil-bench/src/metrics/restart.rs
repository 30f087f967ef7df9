//! Restart latency: how long a supervised process stays dead before vigild has its replacement running.
//!
//! The tag runs `vigil-bench child STAMP` with no restart limit, level 0 and no backoff, so every exit
//! is followed at once by a restart. Each instance appends its start time (the first thing `main` does)
//! and, about 20 ms later, its exit time to STAMP, then exits 0. A sample is the start of instance k+1
//! minus the exit of instance k, both stamped inside the processes on the system-wide clock: the
//! child's teardown, vigild learning of the exit, its bookkeeping and persisting, the fork and exec of
//! the replacement and its start-up until `main`. The floor is fork+exec+wait of the same executable.
//!
//! vigild runs with restart-storm throttling off (`[daemon] storm = "off"`): an instance that dies 20 ms
//! after its start is a storm by design, which the default setting would let restart at once only four
//! times in a row before it adds delays. What is measured is the latency of one restart, the same with
//! throttling on for those first restarts, and for any service that runs longer than a second.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vigil_client::proto::RunSpec;
use vigil_client::Client;

use super::{Ctx, Floor, Metric, Row, Target, Unit};
use crate::daemon::Vigild;
use crate::stamps::{self, Stamps};
use crate::stats::Summary;

pub const METRIC: Metric = Metric { name: "restart", run };

const TAG: &str = "bench";
/// Without progress for this long, ask vigild what the tag is doing.
const STALL: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(50);

fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let config_dir = tempfile::Builder::new().prefix("vigil-bench-restart-").tempdir()?;
    let config = config_dir.path().join("vigil.toml");
    std::fs::write(&config, "[daemon]\nstorm = \"off\"\n")?;
    let (vigild, mut client) = Vigild::start_args(&ctx.vigild, &["--config".into(), config.display().to_string()])?;
    let stamp = vigild.dir().join("stamps");
    let mut spec = RunSpec::new(
        TAG,
        vec![
            ctx.self_exe.to_string_lossy().into_owned(),
            "child".into(),
            stamp.to_string_lossy().into_owned(),
        ],
    );
    spec.retries = -1;
    spec.level = 0;
    client.run(spec).context("cannot create the tag")?;
    let tracking = client.daemon_status()?.tracking;

    let stamps = wait_for_samples(&stamp, ctx.count, &mut client)?;

    client
        .stop(TAG, None, Some(Duration::from_secs(5)))
        .context("cannot stop the tag")?;
    vigild.stop()?;

    let summary = Summary::of(&stamps.samples[..ctx.count]).context("no samples")?;
    let mut notes = vec![format!("vigild tracked processes with the {tracking}")];
    if stamps.backwards > 0 {
        notes.push(format!(
            "{} sample(s) dropped: the clock went backwards between an exit and the next start",
            stamps.backwards
        ));
    }
    Ok(vec![Row {
        metric: "restart latency, PMF tag".into(),
        summary,
        floor: Floor::ForkExecWait.into(),
        target: Some(Target::ratio(2.0, 5.0)),
        rate: None,
        unit: Unit::Micros,
        notes,
    }])
}

/// Polls the stamp file until it holds `n` samples, or fails if the tag stops restarting.
fn wait_for_samples(stamp: &Path, n: usize, client: &mut Client) -> anyhow::Result<Stamps> {
    // Each instance lives ~20 ms; a generous deadline that still ends a broken run.
    let deadline = Instant::now() + Duration::from_secs(30) + Duration::from_millis(100) * n as u32;
    let mut progress = (0, Instant::now());
    loop {
        let text = match std::fs::read_to_string(stamp) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", stamp.display())),
        };
        let stamps = stamps::parse(&text)?;
        if stamps.samples.len() >= n {
            return Ok(stamps);
        }
        if stamps.starts != progress.0 {
            progress = (stamps.starts, Instant::now());
        } else if progress.1.elapsed() >= STALL {
            let st = client.status(TAG)?;
            if !matches!(st.state.as_str(), "running" | "backoff" | "waiting") {
                bail!(
                    "the tag is {}{} after {} start(s); its log: {}",
                    st.state,
                    st.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
                    stamps.starts,
                    st.log_path
                );
            }
            progress.1 = Instant::now();
        }
        if Instant::now() >= deadline {
            bail!(
                "only {} of {n} samples ({} start(s)) before the deadline",
                stamps.samples.len(),
                stamps.starts
            );
        }
        std::thread::sleep(POLL);
    }
}
