//! `GET /metrics`: Prometheus' exposition (OpenMetrics text) of what the caller may read. The loop
//! hands over one [`Scrape`] (its counters and a few facts of each tag, taken in one step) and the text
//! is written straight from it on the blocking pool, off vigild's one thread: no per-scrape registry,
//! no status of each tag.
//! Labels are few and bounded by what vigild holds (tag, state, category, CMAP operation): no pid, no
//! instance number, so a restart storm adds no series.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};

use crate::http::auth::Asker;
use crate::http::call::Api;
use crate::http::errors::HttpError;
use crate::msg::Msg;
use crate::scrape::{Scrape, TagFigures};

/// vigild's resident memory in bytes and CPU time in clock ticks, from /proc.
fn own_usage() -> (u64, u64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    // Fields 14 and 15 (utime, stime) after the command name.
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (rss, ticks)
}

/// The exposition being written. Each family is written whole (its HELP and TYPE, then its samples),
/// as OpenMetrics wants; a counter's samples are `NAME_total`.
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample; `suffix` is "_total" for a counter. Label values are escaped (`\`, `"`, newline).
    fn sample(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one sample per tag.
    fn per_tag(
        &mut self,
        tags: &[TagFigures],
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&TagFigures) -> Option<Value>,
    ) {
        self.family(name, kind, help);
        let suffix = if kind == "counter" { "_total" } else { "" };
        for t in tags {
            if let Some(v) = value(t) {
                self.sample(name, suffix, &[("tag", &t.name)], v);
            }
        }
    }

    /// A family of one sample without labels.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        let suffix = if kind == "counter" { "_total" } else { "" };
        self.sample(name, suffix, &[], value);
    }
}

/// A sample's value: an integer, or a whole and thousandths (seconds from milliseconds).
enum Value {
    Int(i64),
    Millis(u64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Millis(ms) => write!(f, "{}.{:03}", ms / 1000, ms % 1000),
        }
    }
}

fn int(n: u64) -> Option<Value> {
    Some(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// A label value as OpenMetrics quotes it.
fn escape(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The whole exposition of `s`, with what the HTTP server and /proc add.
pub fn write(s: &Scrape, api: &Api) -> String {
    // About 330 bytes of text for each tag.
    let mut t = Text {
        out: String::with_capacity(4096 + s.tags.len() * 360),
    };
    let tags = &s.tags;
    t.per_tag(tags, "vigil_tag_up", "gauge", "1 while the tag is running", |f| {
        int(u64::from(f.state == "running"))
    });
    t.family("vigil_tag_state", "gauge", "The tag's state (1 for the current one)");
    for f in tags {
        t.sample("vigil_tag_state", "", &[("tag", &f.name), ("state", f.state)], 1);
    }
    t.per_tag(
        tags,
        "vigil_tag_restarts",
        "counter",
        "Starts of the tag after its first",
        |f| int(f.restarts),
    );
    t.per_tag(
        tags,
        "vigil_tag_last_exit_code",
        "gauge",
        "The last exit code of the tag's main process (128+N for signal N)",
        |f| f.last_exit_code.map(Value::Int),
    );
    t.per_tag(
        tags,
        "vigil_tag_uptime_seconds",
        "gauge",
        "Seconds since the running instance started",
        |f| Some(Value::Millis(f.uptime_ms)),
    );
    t.per_tag(tags, "vigil_tag_processes", "gauge", "Processes the tag holds", |f| {
        int(f.processes)
    });
    t.per_tag(
        tags,
        "vigil_tag_probe_failures",
        "gauge",
        "Consecutive failures of the tag's health probes",
        |f| int(f.probe_failing),
    );
    t.per_tag(
        tags,
        "vigil_tag_health_check_failures",
        "counter",
        "Health-probe runs of the tag that failed since vigild started",
        |f| int(f.probe_failures),
    );

    t.family("vigil_psm_members", "gauge", "PSM members by category and state");
    for (cat, running, exited) in &s.psm {
        t.sample(
            "vigil_psm_members",
            "",
            &[("category", cat), ("state", "running")],
            running,
        );
        t.sample(
            "vigil_psm_members",
            "",
            &[("category", cat), ("state", "exited")],
            exited,
        );
    }

    // Only to whom may read CMAP.
    if let Some(c) = &s.cmap {
        t.one("vigil_cmap_keys", "gauge", "Keys of CMAP's main map", c.keys);
        t.family(
            "vigil_cmap_operations",
            "counter",
            "CMAP requests carried out since vigild started, by operation",
        );
        for (op, n) in &c.ops {
            t.sample("vigil_cmap_operations", "_total", &[("op", op)], n);
        }
        t.one(
            "vigil_cmap_notifications",
            "counter",
            "CMAP track notifications sent since vigild started",
            c.notifications,
        );
    }

    t.one(
        "vigil_sam_applications",
        "gauge",
        "SAM applications supervised",
        s.sam_applications,
    );
    t.one(
        "vigil_sam_heartbeats",
        "counter",
        "SAM heartbeat reports received since vigild started",
        s.sam_heartbeats,
    );
    t.one(
        "vigil_sam_recoveries",
        "counter",
        "SAM recoveries (a new instance of an application) since vigild started",
        s.sam_recoveries,
    );

    t.family("vigil_cluster_nodes", "gauge", "Nodes of the cluster by state");
    t.sample("vigil_cluster_nodes", "", &[("state", "up")], s.nodes_up);
    t.sample("vigil_cluster_nodes", "", &[("state", "down")], s.nodes_down);
    t.one(
        "vigil_quorate",
        "gauge",
        "1 while this node is quorate",
        u8::from(s.quorate),
    );

    t.one(
        "vigild_event_sequence",
        "gauge",
        "The sequence number of the last event",
        s.last_seq,
    );
    t.one(
        "vigild_event_subscribers",
        "gauge",
        "Connections subscribed to events",
        s.subscribers,
    );
    t.one("vigild_tags", "gauge", "Tags vigild holds", tags.len());
    let (rss, ticks) = own_usage();
    t.one("vigild_resident_memory_bytes", "gauge", "vigild's resident memory", rss);
    // /proc counts CPU time at USER_HZ, 100 ticks a second.
    t.one(
        "vigild_cpu_seconds",
        "counter",
        "CPU time vigild used",
        format_args!("{}.{:02}", ticks / 100, ticks % 100),
    );
    t.one(
        "vigild_connections",
        "gauge",
        "Connections open on the main socket",
        api.socket_open.load(Ordering::Relaxed),
    );
    t.one(
        "vigild_http_connections",
        "gauge",
        "HTTP connections open",
        api.open.load(Ordering::Relaxed),
    );
    t.one(
        "vigild_http_requests",
        "counter",
        "HTTP requests received",
        api.requests.load(Ordering::Relaxed),
    );
    t.out.push_str("# EOF\n");
    t.out
}

/// Scrapes made at once, by everyone: each costs the loop a pass over every tag and holds its text
/// (about 3 MB with 10,000 tags) until it is sent, so a user's many connections cannot multiply that.
static SCRAPING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The whole exposition, as the caller sees vigild.
pub async fn render(api: &Arc<Api>, who: Asker) -> Result<String, HttpError> {
    let _turn = SCRAPING.acquire().await.expect("never closed");
    let (reply, answer) = tokio::sync::oneshot::channel();
    let caller = api.caller(who.uid, who.gid, who.pid);
    let gone = || {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "vigild is shutting down",
        )
    };
    api.tx.send(Msg::Scrape { caller, reply }).map_err(|_| gone())?;
    let scrape = answer.await.map_err(|_| gone())?;
    // vigild has one thread, the loop's and the socket's: the text (2.9 MB with 10,000 tags) is
    // written on the blocking pool, so that requests on the socket do not wait for it.
    let api = api.clone();
    tokio::task::spawn_blocking(move || write(&scrape, &api))
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_quoted_as_openmetrics_says() {
        let cases = [
            ("web", "web"),
            ("a\"b", "a\\\"b"),
            ("back\\slash", "back\\\\slash"),
            ("two\nlines", "two\\nlines"),
            ("é\"", "é\\\""),
        ];
        for (raw, quoted) in cases {
            let mut out = String::new();
            escape(&mut out, raw);
            assert_eq!(out, quoted, "{raw:?}");
        }
    }

    #[test]
    fn seconds_from_milliseconds_keep_three_decimals() {
        for (ms, text) in [(0, "0.000"), (7, "0.007"), (1500, "1.500"), (86_400_123, "86400.123")] {
            assert_eq!(Value::Millis(ms).to_string(), text);
        }
        assert_eq!(Value::Int(-3).to_string(), "-3");
    }
}
