//! The HTTP API against a real vigild: every route, the caller's permissions as another uid, bad
//! input, SSE replay across a reconnect, CMAP tracking, the TCP token, connection limits and the
//! metrics exposition read by Prometheus' own parser.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use vigil_client::proto::RunSpec;

use crate::harness::*;

pub const NOBODY: u32 = 65534;

pub fn http_sock(v: &Vigild) -> PathBuf {
    v.path("state").join("http.sock")
}

/// How curl reaches vigild: its Unix socket, or TCP with a token.
#[derive(Clone)]
pub enum To {
    Unix(PathBuf),
    Tcp(u16, Option<String>),
}

pub fn curl_cmd(to: &To, uid: Option<u32>, args: &[&str]) -> Command {
    let mut cmd = match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={u}"))
                .arg(format!("--regid={u}"))
                .arg("--clear-groups")
                .arg("curl");
            c
        }
        None => Command::new("curl"),
    };
    cmd.arg("-sS");
    match to {
        To::Unix(p) => {
            cmd.arg("--unix-socket").arg(p);
        }
        To::Tcp(_, Some(t)) => {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        To::Tcp(_, None) => {}
    }
    cmd.args(args);
    cmd
}

pub fn url(to: &To, path: &str) -> String {
    match to {
        To::Unix(_) => format!("http://vigil{path}"),
        To::Tcp(port, _) => format!("http://127.0.0.1:{port}{path}"),
    }
}

/// One request: (status, body as JSON or as a string).
pub fn req_as(to: &To, uid: Option<u32>, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let u = url(to, path);
    let mut args = vec!["-X", method, "-w", "\n%{http_code}", &u];
    if let Some(b) = body {
        args.extend(["-H", "content-type: application/json", "--data-binary", b]);
    } else if method != "GET" {
        args.extend(["-H", "content-type: application/json"]);
    }
    let out = curl_cmd(to, uid, &args).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code: u16 = code.trim().parse().unwrap_or(0);
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (code, v)
}

pub fn req(v: &Vigild, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    req_as(&To::Unix(http_sock(v)), None, method, path, body)
}

fn ok(v: &Vigild, method: &str, path: &str, body: Option<&str>) -> Value {
    let (code, out) = req(v, method, path, body);
    assert!((200..300).contains(&code), "{method} {path}: {code} {out}");
    out
}

fn tag_state(v: &Vigild, tag: &str) -> String {
    v.status(tag).state
}

#[test]
fn http_tag_routes_do_what_the_cli_does() {
    let v = Vigild::start();
    let run = json!({"tag": "web", "command": ["sh", "-c", "echo hello-from-web; exec sleep 1000"], "retries": 2});
    let (code, st) = req(&v, "POST", "/api/tags", Some(&run.to_string()));
    assert_eq!(code, 201, "{st}");
    assert_eq!(st["name"], "web");
    assert_eq!(v.status("web").retries, 2);

    let list = ok(&v, "GET", "/api/tags", None);
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    let one = ok(&v, "GET", "/api/tags/web", None);
    assert_eq!(one["state"], "running");
    // The shapes of docs/json.md: RFC 3339 beside the epoch milliseconds, the environment an object.
    assert!(one["started"].as_str().is_some_and(|t| t.ends_with('Z')), "{one}");
    assert!(one["env"].is_object(), "{one}");

    let (code, e) = req(&v, "GET", "/api/tags/nope", None);
    assert_eq!((code, e["kind"].as_str()), (404, Some("not_found")), "{e}");
    let (code, e) = req(&v, "POST", "/api/tags", Some(&run.to_string()));
    assert_eq!(code, 409, "{e}");

    ok(&v, "PATCH", "/api/tags/web", Some(r#"{"retries": 5, "period": 60}"#));
    let st = v.status("web");
    assert_eq!((st.retries, st.period), (5, 60));

    let logs = wait_for("the log line over HTTP", || {
        let l = ok(&v, "GET", "/api/tags/web/logs?lines=10", None);
        l["lines"]
            .as_array()
            .filter(|a| {
                a.iter()
                    .any(|x| x.as_str().is_some_and(|s| s.contains("hello-from-web")))
            })
            .cloned()
    });
    assert!(!logs.is_empty());

    ok(&v, "POST", "/api/tags/web/stop", Some(r#"{"wait_ms": 5000}"#));
    assert_eq!(tag_state(&v, "web"), "stopped");
    ok(&v, "POST", "/api/tags/web/start", None);
    let pid = v.running_pid("web", None);
    ok(&v, "POST", "/api/tags/web/restart", None);
    v.running_pid("web", Some(pid));
    let pid = v.running_pid("web", None);
    ok(
        &v,
        "POST",
        "/api/tags/web/kill",
        Some(r#"{"signal": 9, "wait_ms": 5000}"#),
    );
    assert!(!alive(pid));
    ok(&v, "DELETE", "/api/tags/web?wait_ms=5000", None);
    assert!(v.client().status("web").is_err());
    let stored = ok(&v, "GET", "/api/events/stored?after=0&tag=web", None);
    let names: Vec<&str> = stored
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"sys.vigil.pmf.tag.remove"), "{names:?}");
}

#[test]
fn http_psm_cmap_sam_and_cluster_routes() {
    let v = Vigild::start();
    let (code, _) = req(&v, "POST", "/api/psm/categories", Some(r#"{"category": "webcat"}"#));
    assert_eq!(code, 201);
    let cats = ok(&v, "GET", "/api/psm/categories", None);
    assert!(cats.as_array().unwrap().iter().any(|c| c["name"] == "webcat"), "{cats}");
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = child.id() as i32;
    wait_argv(pid);
    let body = json!({"category": "webcat", "pid": pid}).to_string();
    let (code, e) = req(&v, "POST", "/api/psm/members", Some(&body));
    assert_eq!(code, 201, "{e}");
    ok(
        &v,
        "PUT",
        &format!("/api/psm/members/{pid}/state"),
        Some(r#"{"state": "warm"}"#),
    );
    let m = ok(&v, "GET", "/api/psm/members?category=webcat", None);
    assert_eq!(m[0]["pid"], pid);
    assert_eq!(m[0]["state"], "warm");
    ok(&v, "DELETE", &format!("/api/psm/members/{pid}?category=webcat"), None);
    let (code, _) = req(&v, "DELETE", &format!("/api/psm/members/{pid}?category=webcat"), None);
    assert_eq!(code, 404);
    ok(&v, "DELETE", "/api/psm/categories/webcat", None);
    let _ = child.kill();
    let _ = child.wait();

    ok(
        &v,
        "PUT",
        "/api/cmap/keys/app.port",
        Some(r#"{"type": "u16", "value": 8080}"#),
    );
    ok(
        &v,
        "PUT",
        "/api/cmap/keys/app.name",
        Some(r#"{"type": "str", "value": "shop"}"#),
    );
    let got = ok(&v, "GET", "/api/cmap/keys/app.port", None);
    assert_eq!(got, json!({"key": "app.port", "type": "u16", "value": 8080}));
    let (code, e) = req(
        &v,
        "PUT",
        "/api/cmap/keys/app.port",
        Some(r#"{"type": "u8", "value": 300}"#),
    );
    assert_eq!(code, 400, "{e}");
    assert_eq!(ok(&v, "GET", "/api/cmap/keys/app.port", None)["value"], 8080);
    let list = ok(&v, "GET", "/api/cmap/keys?prefix=app.", None);
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert_eq!(keys, ["app.name", "app.port"]);
    ok(&v, "DELETE", "/api/cmap/keys/app.name", None);
    let (code, _) = req(&v, "GET", "/api/cmap/keys/app.name", None);
    assert_eq!(code, 404);

    assert_eq!(ok(&v, "GET", "/api/sam", None), json!([]));
    assert_eq!(ok(&v, "GET", "/api/quorum", None), json!({"quorate": true}));
    let nodes = ok(&v, "GET", "/api/nodes", None);
    assert_eq!(nodes[0]["state"], "up", "{nodes}");
    assert_eq!(ok(&v, "GET", "/api/daemon", None)["pid"], v.pid());
    let (code, e) = req(&v, "GET", "/api/tags?node=elsewhere", None);
    assert_eq!(code, 501, "{e}");
    let api = ok(&v, "GET", "/api/openapi.json", None);
    assert!(api["paths"]["/api/tags"].is_object(), "{api}");
    let (code, e) = req(&v, "GET", "/api/nothing", None);
    assert_eq!((code, e["kind"].as_str()), (404, Some("not_found")));
}

#[test]
fn http_acts_as_the_peer_uid() {
    let v = Vigild::start();
    v.run(RunSpec::new("roots", vec!["sleep".into(), "1000".into()]));
    let to = To::Unix(http_sock(&v));
    // Anyone may read status, as on the main socket.
    let (code, st) = req_as(&to, Some(NOBODY), "GET", "/api/tags/roots", None);
    assert_eq!((code, st["state"].as_str()), (200, Some("running")), "{st}");
    for (method, path, body) in [
        ("POST", "/api/tags/roots/stop", None),
        ("POST", "/api/tags/roots/kill", Some(r#"{"signal": 9}"#)),
        ("DELETE", "/api/tags/roots", None),
        ("PATCH", "/api/tags/roots", Some(r#"{"retries": 3}"#)),
        ("GET", "/api/tags/roots/logs", None),
    ] {
        let (code, e) = req_as(&to, Some(NOBODY), method, path, body);
        assert_eq!(
            (code, e["kind"].as_str()),
            (403, Some("permission_denied")),
            "{method} {path}: {e}"
        );
    }
    let st = v.status("roots");
    assert_eq!((st.state.as_str(), st.retries), ("running", 0));
    // nobody's own tag runs as nobody, and nobody may stop it.
    let run = json!({"tag": "mine", "command": ["sleep", "1000"]}).to_string();
    let (code, st) = req_as(&to, Some(NOBODY), "POST", "/api/tags", Some(&run));
    assert_eq!((code, st["uid"].as_u64()), (201, Some(u64::from(NOBODY))), "{st}");
    let (code, e) = req_as(
        &to,
        Some(NOBODY),
        "POST",
        "/api/tags/mine/stop",
        Some(r#"{"wait_ms": 5000}"#),
    );
    assert_eq!(code, 200, "{e}");
    assert_eq!(tag_state(&v, "mine"), "stopped");
}

#[test]
fn http_bad_input_is_a_clear_4xx_and_changes_nothing() {
    let v = Vigild::start_with(Some("[http]\nmax_body_bytes = 4096\n"));
    v.run(RunSpec::new("keep", vec!["sleep".into(), "1000".into()]));
    let before = v.status("keep");
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("POST", "/api/tags", "{not json", 400, "not the JSON expected"),
        (
            "POST",
            "/api/tags",
            r#"{"tag": "x", "command": "sleep"}"#,
            400,
            "invalid type",
        ),
        (
            "POST",
            "/api/tags",
            r#"{"tag": "x", "command": ["sleep"], "bogus": 1}"#,
            400,
            "unknown field",
        ),
        (
            "POST",
            "/api/tags",
            r#"{"tag": "", "command": ["sleep", "1"]}"#,
            400,
            "",
        ),
        ("PATCH", "/api/tags/keep", r#"{"retries": "many"}"#, 400, "invalid type"),
        ("POST", "/api/tags/keep/kill", r#"{}"#, 400, "missing field"),
        (
            "PUT",
            "/api/cmap/keys/k",
            r#"{"type": "u32", "value": [1]}"#,
            400,
            "number or a string",
        ),
        ("GET", "/api/events/stored?after=minus", "", 400, "bad query"),
    ];
    for (method, path, body, want, says) in cases {
        let body = (!body.is_empty()).then_some(*body);
        let (code, e) = req(&v, method, path, body);
        assert_eq!(code, *want, "{method} {path}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(!msg.is_empty() && msg.contains(says), "{method} {path}: {e}");
    }
    let big = json!({"tag": "big", "command": ["sleep", "x".repeat(8000)]}).to_string();
    let (code, e) = req(&v, "POST", "/api/tags", Some(&big));
    assert_eq!((code, e["kind"].as_str()), (413, Some("too_large")), "{e}");
    // Without JSON's content type, or from another origin, nothing that changes state is taken.
    let u = "http://vigil/api/tags/keep/stop".to_string();
    let out = curl_cmd(
        &To::Unix(http_sock(&v)),
        None,
        &["-X", "POST", "-w", "\n%{http_code}", &u],
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("415"));
    let out = curl_cmd(
        &To::Unix(http_sock(&v)),
        None,
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-H",
            "origin: http://evil.example",
            "-w",
            "\n%{http_code}",
            &u,
        ],
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("403"), "{out:?}");
    let after = v.status("keep");
    assert_eq!((after.state.as_str(), after.main_pid), ("running", before.main_pid));
    assert_eq!(v.client().status_all().map(|t| t.len()).unwrap_or(0), 1);
    // vigild is still well.
    ok(&v, "GET", "/api/tags", None);
}

/// A `curl -N` reading an SSE stream, line by line.
pub struct Stream {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// The event being read: name, id, data.
    cur: (String, Option<u64>, String),
}

pub type SseEv = (String, Option<u64>, Value);

impl Stream {
    pub fn open(to: &To, uid: Option<u32>, path: &str, headers: &[&str]) -> Stream {
        let u = url(to, path);
        let mut args = vec!["-N"];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.push(&u);
        let mut child = curl_cmd(to, uid, &args).stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Stream {
            child,
            lines,
            cur: ("message".into(), None, String::new()),
        }
    }

    /// The next SSE event as (event name, id, data), if one comes within `d`.
    pub fn next_within(&mut self, d: Duration) -> Option<SseEv> {
        let end = std::time::Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let l = self.lines.recv_timeout(left).ok()?;
            if l.is_empty() {
                if !self.cur.2.is_empty() {
                    let (name, id, data) = std::mem::replace(&mut self.cur, ("message".into(), None, String::new()));
                    return Some((name, id, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            if let Some(v) = l.strip_prefix("event: ") {
                self.cur.0 = v.to_string();
            } else if let Some(v) = l.strip_prefix("id: ") {
                self.cur.1 = v.parse().ok();
            } else if let Some(v) = l.strip_prefix("data: ") {
                self.cur.2.push_str(v);
            }
        }
    }

    pub fn next(&mut self) -> SseEv {
        self.next_within(DEADLINE).expect("an SSE event within the deadline")
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn http_sse_replays_across_a_reconnect_without_loss() {
    let v = Vigild::start();
    let to = To::Unix(http_sock(&v));
    let mut seen: Vec<u64> = Vec::new();
    let mut s = Stream::open(&to, None, "/api/events?since=0", &[]);
    let first_last = v.client().daemon_status().unwrap().last_seq;
    while seen.last() != Some(&first_last) {
        let (name, id, e) = s.next();
        assert_eq!(name, "message");
        assert_eq!(id, e["seq"].as_u64());
        seen.push(id.unwrap());
    }
    drop(s);
    // Events while nobody listens.
    for i in 0..5 {
        v.run(RunSpec::new(format!("gap{i}"), vec!["true".into()]));
    }
    // Each tag's exit is its last event: once all five are stored, nothing more comes from them. (A
    // tag's state alone can read "not running" before its exit event, while it is still starting.)
    let last = wait_for("the tags' exits", || {
        let evs = v.events();
        let done = (0..5).all(|i| {
            evs.iter()
                .any(|e| e.subject == format!("gap{i}") && e.name == "sys.vigil.pmf.tag.exit")
        });
        done.then(|| evs.last().map(|e| e.seq)).flatten()
    });
    let resume = format!("Last-Event-ID: {}", seen.last().unwrap());
    let mut s = Stream::open(&to, None, "/api/events?since=0", &[&resume]);
    while seen.last() != Some(&last) {
        let (_, id, _) = s.next();
        seen.push(id.unwrap());
    }
    let want: Vec<u64> = (1..=last).collect();
    assert_eq!(seen, want, "every event exactly once, in order");
    // Live events keep coming on the same stream.
    v.run(RunSpec::new("live", vec!["sleep".into(), "1000".into()]));
    let (_, id, e) = s.next();
    assert_eq!((id, e["subject"].as_str()), (Some(last + 1), Some("live")), "{e}");
    // A replay from before the kept history starts with a loss marker, never a silent gap.
    let (code, _) = req(&v, "GET", "/api/events/stored?after=0", None);
    assert_eq!(code, 200);
}

#[test]
fn http_sse_loss_marker_and_cmap_tracking() {
    let v = Vigild::start_with(Some("[daemon]\nevents_kept = 10\n"));
    for i in 0..8 {
        v.run(RunSpec::new(format!("t{i}"), vec!["true".into()]));
    }
    wait_for("old events dropped from history", || {
        (v.client().daemon_status().unwrap().first_seq > 1).then_some(())
    });
    let to = To::Unix(http_sock(&v));
    let mut s = Stream::open(&to, None, "/api/events?since=0", &[]);
    let (name, id, e) = s.next();
    assert_eq!(name, "lost", "{e}");
    assert_eq!(e["from"], 1);
    assert_eq!(id, e["to"].as_u64());

    let mut t = Stream::open(&to, Some(NOBODY), "/api/cmap/track?prefix=shop.", &[]);
    // curl does not say when the track is in place: set the key until a change shows.
    let mut c = v.client();
    let mut port = 80;
    let (name, _, n) = wait_for("a cmap event", || {
        port += 1;
        c.cmap_set("shop.port", vigil_client::proto::CmapValue::U16(port), false)
            .unwrap();
        t.next_within(Duration::from_millis(200))
    });
    assert_eq!(name, "cmap", "{n}");
    assert_eq!(n["key"], "shop.port");
    assert_eq!(n["new"]["type"], "u16", "{n}");
    // Later changes come in order, old and new values told.
    c.cmap_set("shop.port", vigil_client::proto::CmapValue::U16(9), false)
        .unwrap();
    let (_, _, n) = loop {
        let e = t.next();
        if e.2["new"]["value"] == 9 {
            break e;
        }
    };
    assert_eq!(n["event"], "modify");
    assert!(n["old"]["value"].as_u64().is_some(), "{n}");
}

/// `GET /metrics` as `uid` (None: root), read by Debian's python3-prometheus-client (scripts/install-deps),
/// whose OpenMetrics parser is strict: `{"NAME{labels as sorted JSON}": value}`.
fn scrape(v: &Vigild, uid: Option<u32>) -> Value {
    let to = To::Unix(http_sock(v));
    let u = url(&to, "/metrics");
    let out = curl_cmd(&to, uid, &["-i", &u]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("application/openmetrics-text"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    let script = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        key = s.name + json.dumps(s.labels, sort_keys=True)
        out[key] = s.value
print(json.dumps(out))
"#;
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let o = py.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the parser refused the exposition: {}\n{body}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn http_metrics_parse_and_match_status() {
    let v = Vigild::start();
    v.run(RunSpec::new("up1", vec!["sleep".into(), "1000".into()]));
    let mut sp = sh("flap", "exit 3");
    sp.retries = 2;
    v.run(sp);
    wait_for("flap failed", || (v.status("flap").state == "failed").then_some(()));
    let (code, _) = req(&v, "POST", "/api/psm/categories", Some(r#"{"category": "mcat"}"#));
    assert_eq!(code, 201);
    let m = scrape(&v, None);
    let get = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("no {k} in {m}"));
    let up1 = v.status("up1");
    let flap = v.status("flap");
    assert_eq!(get(r#"vigil_tag_up{"tag": "up1"}"#), 1.0);
    assert_eq!(get(r#"vigil_tag_up{"tag": "flap"}"#), 0.0);
    assert_eq!(get(r#"vigil_tag_state{"state": "failed", "tag": "flap"}"#), 1.0);
    assert_eq!(
        get(r#"vigil_tag_restarts_total{"tag": "flap"}"#),
        (flap.starts - 1) as f64
    );
    assert_eq!(get(r#"vigil_tag_last_exit_code{"tag": "flap"}"#), 3.0);
    assert_eq!(get(r#"vigil_tag_processes{"tag": "up1"}"#), up1.procs.len() as f64);
    assert_eq!(get(r#"vigil_psm_members{"category": "mcat", "state": "running"}"#), 0.0);
    assert_eq!(get(r#"vigil_quorate{}"#), 1.0);
    let d = v.client().daemon_status().unwrap();
    assert_eq!(get(r#"vigild_tags{}"#), f64::from(d.tags));
    assert!(get(r#"vigild_event_sequence{}"#) <= d.last_seq as f64);
    assert!(get(r#"vigild_resident_memory_bytes{}"#) > 1e6);
}

/// The counters vigild keeps for `/metrics` follow what was done: CMAP operations and track
/// notifications, SAM heartbeats and recoveries, failed probe runs, open connections; a caller who may
/// not read CMAP sees none of its figures.
#[test]
fn http_metrics_count_what_was_done() {
    use vigil_client::proto::{CmapMap, CmapValue, ProbeCheck, ProbeSpec, Request, SamChange, SamInfo, SamState};
    let v = Vigild::start_with(Some("[cmap]\nread_gid = 4242\n"));
    let mut probed = RunSpec::new("probed", vec!["sleep".into(), "1000".into()]);
    probed.probes = vec![ProbeSpec {
        check: ProbeCheck::Exec {
            command: vec!["false".into()],
        },
        interval_ms: Some(150),
        timeout_ms: Some(100),
        threshold: Some(1000),
    }];
    v.run(probed);
    let get = |m: &Value, k: &str| m[k].as_f64().unwrap_or_else(|| panic!("no {k} in {m}"));

    // CMAP: each set carried out counts once, a refused one not at all; each notification sent counts.
    let mut c = v.client();
    let mut tracker = v.client();
    tracker.cmap_track_add(CmapMap::Main, "m.t.", 4 | 2 | 8, 0).unwrap();
    let before = scrape(&v, None);
    for i in 0..5u32 {
        c.cmap_set(&format!("m.t.k{i}"), CmapValue::U32(i), false).unwrap();
    }
    c.cmap_set("m.other", CmapValue::U32(1), false).unwrap();
    assert!(c.cmap_set("runtime.nope", CmapValue::U32(1), false).is_err());
    c.cmap_get("m.other").unwrap();
    let after = scrape(&v, None);
    let set = r#"vigil_cmap_operations_total{"op": "set"}"#;
    assert_eq!(get(&after, set) - get(&before, set), 6.0, "{after}");
    let gets = r#"vigil_cmap_operations_total{"op": "get"}"#;
    assert_eq!(get(&after, gets) - get(&before, gets), 1.0);
    let notes = "vigil_cmap_notifications_total{}";
    assert_eq!(get(&after, notes) - get(&before, notes), 5.0, "{after}");
    let keys = c.cmap_iter(CmapMap::Main, "").unwrap().len() as f64;
    assert_eq!(get(&after, "vigil_cmap_keys{}"), keys);
    // This connection, the tracker's and the harness's own are open on the main socket.
    assert!(get(&after, "vigild_connections{}") >= 2.0, "{after}");
    // Another uid, outside [cmap] read_gid, sees no CMAP figure, and the rest.
    let nobody = scrape(&v, Some(NOBODY));
    assert!(
        nobody.get(set).is_none() && nobody.get("vigil_cmap_keys{}").is_none(),
        "{nobody}"
    );
    assert_eq!(get(&nobody, r#"vigil_tag_up{"tag": "probed"}"#), 1.0);

    // SAM, as an application's supervisor reports (this test's process is the application).
    let info = |instance| SamInfo {
        instance,
        child: std::process::id() as i32,
        interval_ms: 0,
        policy: vigil_client::proto::SAM_POLICY_RESTART,
        warn_signal: 15,
        state: SamState::Running,
    };
    let mut sam = v.client();
    let report = |sam: &mut vigil_client::Client, change, instance| {
        sam.request(Request::SamReport {
            change,
            info: info(instance),
        })
        .unwrap()
    };
    report(&mut sam, SamChange::Instance, 1);
    for _ in 0..3 {
        report(&mut sam, SamChange::Heartbeat, 1);
    }
    report(&mut sam, SamChange::Instance, 2);
    report(&mut sam, SamChange::Heartbeat, 2);
    let m = scrape(&v, None);
    assert_eq!(get(&m, "vigil_sam_heartbeats_total{}"), 4.0, "{m}");
    assert_eq!(get(&m, "vigil_sam_recoveries_total{}"), 1.0, "{m}");
    assert_eq!(
        get(&m, "vigil_sam_applications{}"),
        v.client().sam_list().unwrap().len() as f64
    );

    // Probes: every failed run counts; with no pass in between, as many as the consecutive failures.
    wait_for("three failed probe runs", || {
        (v.status("probed").probes[0].failures >= 3).then_some(())
    });
    let low = u64::from(v.status("probed").probes[0].failures);
    let m = scrape(&v, None);
    let high = u64::from(v.status("probed").probes[0].failures);
    let total = get(&m, r#"vigil_tag_health_check_failures_total{"tag": "probed"}"#) as u64;
    let failing = get(&m, r#"vigil_tag_probe_failures{"tag": "probed"}"#) as u64;
    assert!((low..=high).contains(&total), "{low} <= {total} <= {high}");
    assert_eq!(total, failing);
    drop(tracker);
}

pub fn token_config(dir: &std::path::Path, port: u16, mode: u32) -> (String, String) {
    let token = "s3cret-token-0123456789".to_string();
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
        path.display()
    );
    (token, cfg)
}

#[test]
fn http_tcp_needs_the_token_and_acts_as_its_owner() {
    let keep = tempfile::tempdir().unwrap();
    let port = free_port();
    let (token, cfg) = token_config(keep.path(), port, 0o600);
    let v = Vigild::start_with(Some(&cfg));
    let tcp = To::Tcp(port, Some(token.clone()));
    let (code, e) = req_as(&To::Tcp(port, None), None, "GET", "/api/tags", None);
    assert_eq!((code, e["kind"].as_str()), (401, Some("unauthorized")), "{e}");
    let (code, _) = req_as(
        &To::Tcp(port, Some("wrong-token-0123456789".into())),
        None,
        "GET",
        "/api/tags",
        None,
    );
    assert_eq!(code, 401);
    let run = json!({"tag": "viatcp", "command": ["sleep", "1000"]}).to_string();
    let (code, st) = req_as(&tcp, None, "POST", "/api/tags", Some(&run));
    assert_eq!((code, st["uid"].as_u64()), (201, Some(0)), "{st}");
    let page = Command::new("curl").args(["-sS", &url(&tcp, "/")]).output().unwrap();
    assert!(String::from_utf8_lossy(&page.stdout).contains("<html"), "the dashboard");
    drop(v);

    // A token others may read refuses the start, with the reason.
    let (_, cfg) = token_config(keep.path(), free_port(), 0o644);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vigil.toml"), cfg).unwrap();
    let out = vigild_in(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode 644"), "{out:?}");
}

#[test]
fn http_connection_limits_keep_root_served() {
    let v = Vigild::start_with(Some("[daemon]\nmax_connections_per_uid = 2\n"));
    let to = To::Unix(http_sock(&v));
    let a = Stream::open(&to, Some(NOBODY), "/api/events", &[]);
    let b = Stream::open(&to, Some(NOBODY), "/api/events", &[]);
    // Both held: the subscriber count says so.
    wait_for("two subscribers", || {
        (v.client().daemon_status().unwrap().subscribers == 2).then_some(())
    });
    let (code, e) = req_as(&to, Some(NOBODY), "GET", "/api/tags", None);
    assert_eq!((code, e["kind"].as_str()), (503, Some("unavailable")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("max_connections_per_uid"), "{e}");
    assert_eq!(req(&v, "GET", "/api/tags", None).0, 200);
    drop(a);
    wait_for("a place again", || {
        (req_as(&to, Some(NOBODY), "GET", "/api/tags", None).0 == 200).then_some(())
    });
    drop(b);
}

#[test]
fn http_logs_follow_streams_new_lines() {
    let v = Vigild::start();
    v.run(sh(
        "talker",
        "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done",
    ));
    wait_for("a first line", || {
        let l = ok(&v, "GET", "/api/tags/talker/logs?lines=1", None);
        (!l["lines"].as_array()?.is_empty()).then_some(())
    });
    let to = To::Unix(http_sock(&v));
    let mut s = Stream::open(&to, None, "/api/tags/talker/logs?follow=true&lines=1", &[]);
    let (name, _, first) = s.next();
    assert_eq!(name, "log", "{first}");
    let n = |l: &Value| -> u64 {
        l.as_str()
            .and_then(|s| s.strip_prefix("line-"))
            .and_then(|x| x.parse().ok())
            .unwrap()
    };
    let start = n(&first["lines"][0]);
    // Later lines come in order, none skipped.
    let mut next = start + 1;
    while next < start + 10 {
        let (name, _, e) = s.next();
        assert_eq!(name, "log");
        for l in e["lines"].as_array().unwrap() {
            assert_eq!(n(l), next, "{e}");
            next += 1;
        }
    }
    let (code, e) = req_as(&to, Some(NOBODY), "GET", "/api/tags/talker/logs?follow=true", None);
    assert_eq!(code, 403, "{e}");
}
