//! `GET /metrics`: Prometheus' exposition (OpenMetrics text) of what the caller may read, built per
//! scrape from the same requests the CLI sends. Labels are few and bounded by what vigild holds (tag,
//! state, category): no pid, no instance number, so a restart storm adds no series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use vigil_proto::{CmapMap, ExitStatus, PsmNode, Request, Response};

use crate::http::auth::Asker;
use crate::http::call::Api;
use crate::http::errors::HttpError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TagL {
    tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TagStateL {
    tag: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryL {
    category: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateL {
    state: String,
}

type G = Family<TagL, Gauge>;
type Gf = Family<TagL, Gauge<f64, AtomicU64>>;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// vigild's resident memory in bytes and CPU time in seconds, from /proc.
fn own_usage() -> (i64, f64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    // Fields 14 and 15 (utime, stime) after the command name, in clock ticks: /proc always counts
    // them at USER_HZ, 100 per second.
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .map_or(0.0, |t| t as f64 / 100.0);
    (rss, cpu)
}

async fn get(s: &mut crate::http::call::Session, req: Request) -> Result<Option<Response>, HttpError> {
    match s.ask(req).await {
        Ok((r, _)) => Ok(Some(r)),
        // What the caller may not read, or what this node does not run, is left out.
        Err(e)
            if matches!(
                e.code,
                vigil_proto::ErrorCode::PermissionDenied | vigil_proto::ErrorCode::Unsupported
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The whole exposition, as the caller sees vigild.
pub async fn render(api: &Arc<Api>, who: Asker) -> Result<String, HttpError> {
    let mut s = who.session(api);
    let mut reg = Registry::default();

    let up = G::default();
    let state = Family::<TagStateL, Gauge>::default();
    let restarts = Family::<TagL, Counter>::default();
    let exit = G::default();
    let uptime = Gf::default();
    let procs = G::default();
    let probe_failures = G::default();
    let now = now_ms();
    if let Some(Response::Tags(tags)) = get(&mut s, Request::Status { tag: None }).await? {
        for t in &tags {
            let l = TagL { tag: t.name.clone() };
            up.get_or_create(&l).set(i64::from(t.state == "running"));
            state
                .get_or_create(&TagStateL {
                    tag: t.name.clone(),
                    state: t.state.clone(),
                })
                .set(1);
            restarts.get_or_create(&l).inc_by(t.starts.saturating_sub(1));
            match t.last_exit {
                Some((_, ExitStatus::Code(c))) => {
                    exit.get_or_create(&l).set(i64::from(c));
                }
                // As a shell reports a death by signal.
                Some((_, ExitStatus::Signal(n))) => {
                    exit.get_or_create(&l).set(128 + i64::from(n));
                }
                _ => {}
            }
            let running = t.state == "running";
            let secs = match t.started_ms {
                Some(ms) if running => now.saturating_sub(ms) as f64 / 1000.0,
                _ => 0.0,
            };
            uptime.get_or_create(&l).set(secs);
            procs.get_or_create(&l).set(t.procs.len() as i64);
            probe_failures
                .get_or_create(&l)
                .set(t.probes.iter().map(|p| i64::from(p.failures)).sum());
        }
    }
    reg.register("vigil_tag_up", "1 while the tag is running", up);
    reg.register("vigil_tag_state", "The tag's state (1 for the current one)", state);
    reg.register("vigil_tag_restarts", "Starts of the tag after its first", restarts);
    reg.register(
        "vigil_tag_last_exit_code",
        "The last exit code of the tag's main process (128+N for signal N)",
        exit,
    );
    reg.register(
        "vigil_tag_uptime_seconds",
        "Seconds since the running instance started",
        uptime,
    );
    reg.register("vigil_tag_processes", "Processes the tag holds", procs);
    reg.register(
        "vigil_tag_probe_failures",
        "Consecutive failures of the tag's health probes",
        probe_failures,
    );

    let members = Family::<CategoryL, Gauge>::default();
    let req = Request::PsmGet {
        node: PsmNode::local(),
        category: None,
        pid: None,
    };
    if let Some(Response::PsmMembers(m)) = get(&mut s, req).await? {
        for m in &m {
            let state = if m.exit.is_some() { "exited" } else { "running" };
            members
                .get_or_create(&CategoryL {
                    category: m.category.clone(),
                    state: state.into(),
                })
                .inc();
        }
    }
    if let Some(Response::PsmCategories(c)) = get(&mut s, Request::PsmCategoryList { node: PsmNode::local() }).await? {
        for c in &c {
            // Empty categories show as 0 rather than not at all.
            for state in ["running", "exited"] {
                let _ = members.get_or_create(&CategoryL {
                    category: c.name.clone(),
                    state: state.into(),
                });
            }
        }
    }
    reg.register("vigil_psm_members", "PSM members by category and state", members);

    let keys: Gauge = Gauge::default();
    let req = Request::CmapIter {
        map: CmapMap::Main,
        prefix: String::new(),
    };
    if let Some(Response::CmapEntries(e)) = get(&mut s, req).await? {
        keys.set(e.len() as i64);
    }
    reg.register("vigil_cmap_keys", "CMAP keys the caller may read", keys);

    let sam: Gauge = Gauge::default();
    let recoveries: Counter = Counter::default();
    if let Some(Response::SamProcesses(p)) = get(&mut s, Request::SamList).await? {
        sam.set(p.len() as i64);
        recoveries.inc_by(p.iter().map(|p| u64::from(p.info.instance.saturating_sub(1))).sum());
    }
    reg.register("vigil_sam_applications", "SAM applications supervised", sam);
    reg.register(
        "vigil_sam_recoveries",
        "SAM instances after each application's first",
        recoveries,
    );

    let nodes = Family::<StateL, Gauge>::default();
    if let Some(Response::Nodes(n)) = get(&mut s, Request::Nodes).await? {
        let upn = n.iter().filter(|n| n.up).count() as i64;
        nodes.get_or_create(&StateL { state: "up".into() }).set(upn);
        nodes
            .get_or_create(&StateL { state: "down".into() })
            .set(n.len() as i64 - upn);
    }
    reg.register("vigil_cluster_nodes", "Nodes of the cluster by state", nodes);
    let quorate: Gauge = Gauge::default();
    if let Some(Response::Quorate(q)) = get(&mut s, Request::QuorumTrack).await? {
        quorate.set(i64::from(q));
    }
    reg.register("vigil_quorate", "1 while this node is quorate", quorate);

    let seq: Gauge = Gauge::default();
    let subscribers: Gauge = Gauge::default();
    let tags: Gauge = Gauge::default();
    if let Some(Response::Daemon(d)) = get(&mut s, Request::DaemonStatus).await? {
        seq.set(d.last_seq as i64);
        subscribers.set(i64::from(d.subscribers));
        tags.set(i64::from(d.tags));
    }
    reg.register("vigild_event_sequence", "The sequence number of the last event", seq);
    reg.register(
        "vigild_event_subscribers",
        "Connections subscribed to events",
        subscribers,
    );
    reg.register("vigild_tags", "Tags vigild holds", tags);
    let (rss, cpu) = own_usage();
    let rss_g: Gauge = Gauge::default();
    rss_g.set(rss);
    reg.register("vigild_resident_memory_bytes", "vigild's resident memory", rss_g);
    let cpu_c: Counter<f64, AtomicU64> = Counter::default();
    cpu_c.inc_by(cpu);
    reg.register("vigild_cpu_seconds", "CPU time vigild used", cpu_c);
    let open: Gauge = Gauge::default();
    open.set(api.open.load(Ordering::Relaxed) as i64);
    reg.register("vigild_http_connections", "HTTP connections open", open);
    let served: Counter = Counter::default();
    served.inc_by(api.requests.load(Ordering::Relaxed));
    reg.register("vigild_http_requests", "HTTP requests received", served);

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(out)
}

pub async fn metrics(State(api): State<Arc<Api>>, who: Asker) -> Result<HttpResponse, HttpError> {
    let body = render(&api, who).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
