//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`: real messages, encoded as
//! vigil encodes them, and the hostile shapes that have hurt or could hurt a reader. Run it after a
//! change of the wire, the config or a parser:
//!
//! ```text
//! cargo run --manifest-path fuzz/seeds/Cargo.toml
//! ```
//!
//! Seeds are named after what they hold; existing files of the same name are replaced, others (inputs the
//! fuzzer found and someone chose to keep) are left alone.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vigil_proto::*;

/// How deep the nested `OnNode` seed goes: a 4 KiB frame of 2 bytes per level (variant, empty node name),
/// which overflowed vigild's stack when `OnNode` could nest.
const ON_NODE_DEPTH: usize = 2_000;

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }
}

fn frame<T: Serialize>(m: &T) -> Vec<u8> {
    encode(m).expect("a seed encodes")
}

fn req(id: u64, body: Request) -> ClientMsg {
    ClientMsg::Request { id, body }
}

fn hello() -> Vec<u8> {
    frame(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        client: "vigil 0.1.0".into(),
    })
}

fn welcome() -> Vec<u8> {
    frame(&ServerMsg::Welcome {
        version: PROTOCOL_VERSION,
        daemon_version: "0.1.0".into(),
        pid: 4242,
    })
}

fn cmap_values() -> Vec<CmapValue> {
    vec![
        CmapValue::I8(-8),
        CmapValue::U8(8),
        CmapValue::I16(-16),
        CmapValue::U16(16),
        CmapValue::I32(-32),
        CmapValue::U32(32),
        CmapValue::I64(i64::MIN),
        CmapValue::U64(u64::MAX),
        CmapValue::Float(1.5),
        CmapValue::Double(f64::NAN),
        CmapValue::Str("text".into()),
        CmapValue::Binary(vec![0, 1, 0xff]),
    ]
}

fn requests() -> Vec<(&'static str, Request)> {
    let mut run = RunSpec::new(
        "web",
        vec!["/usr/bin/python3".into(), "-m".into(), "http.server".into()],
    );
    run.env = vec![("PORT".into(), "8080".into())];
    run.cwd = Some("/srv".into());
    run.retries = 3;
    run.period = 60;
    run.backoff = Some(Backoff {
        min_ms: 100,
        max_ms: 5_000,
    });
    run.after = vec!["db".into()];
    run.stop_signal = Some(15);
    run.stop_timeout_ms = Some(2_000);
    run.watchdog_ms = Some(1_000);
    run.probes = vec![
        ProbeSpec {
            check: ProbeCheck::Tcp {
                address: "127.0.0.1:8080".into(),
            },
            interval_ms: Some(1_000),
            timeout_ms: None,
            threshold: Some(3),
        },
        ProbeSpec {
            check: ProbeCheck::Http {
                url: "http://[::1]:8080/health".into(),
            },
            interval_ms: None,
            timeout_ms: Some(500),
            threshold: None,
        },
        ProbeSpec {
            check: ProbeCheck::Exec {
                command: vec!["/bin/true".into()],
            },
            interval_ms: None,
            timeout_ms: None,
            threshold: None,
        },
    ];
    let filter = EventFilter {
        names: vec!["tag.*".into()],
        category: Some("db".into()),
        tag: Some("web".into()),
    };
    let info = SamInfo {
        instance: 1,
        child: 4243,
        interval_ms: 1_000,
        policy: SAM_POLICY_RESTART | SAM_POLICY_CMAP,
        warn_signal: 15,
        state: SamState::Running,
    };
    let node = || PsmNode::local();
    let mut v = vec![
        ("run", Request::Run(run)),
        ("start", Request::Start { tag: "web".into() }),
        (
            "modify",
            Request::Modify {
                tag: "web".into(),
                retries: Some(-1),
                period: None,
            },
        ),
        (
            "stop",
            Request::Stop {
                tag: "web".into(),
                signal: Some(9),
                wait_ms: Some(1_000),
            },
        ),
        (
            "kill",
            Request::Kill {
                tag: "web".into(),
                signal: 1,
                wait_ms: None,
            },
        ),
        ("restart", Request::Restart { tag: "web".into() }),
        (
            "remove",
            Request::Remove {
                tag: "web".into(),
                wait_ms: None,
            },
        ),
        ("query", Request::Query { tag: "web".into() }),
        ("list", Request::List),
        ("status", Request::Status { tag: None }),
        (
            "wait",
            Request::Wait {
                tag: "web".into(),
                timeout_ms: Some(10),
            },
        ),
        (
            "events",
            Request::Events {
                after: 0,
                limit: 100,
                filter: filter.clone(),
            },
        ),
        (
            "subscribe",
            Request::Subscribe {
                after: Some(0),
                filter: filter.clone(),
            },
        ),
        ("reload", Request::Reload),
        ("reexec", Request::Reexec),
        ("daemon_status", Request::DaemonStatus),
        (
            "psm_category_add",
            Request::PsmCategoryAdd {
                node: node(),
                category: "db".into(),
            },
        ),
        (
            "psm_category_remove",
            Request::PsmCategoryRemove {
                node: PsmNode("zeus".into()),
                category: "db".into(),
            },
        ),
        ("psm_category_list", Request::PsmCategoryList { node: node() }),
        (
            "psm_add",
            Request::PsmAdd {
                node: node(),
                category: "db".into(),
                pid: 1,
            },
        ),
        (
            "psm_remove",
            Request::PsmRemove {
                node: node(),
                category: None,
                pid: -1,
            },
        ),
        (
            "psm_get",
            Request::PsmGet {
                node: node(),
                category: Some("db".into()),
                pid: Some(1),
            },
        ),
        (
            "psm_set_state",
            Request::PsmSetState {
                node: node(),
                category: None,
                pid: 1,
                state: "ok".into(),
            },
        ),
        (
            "cmap_get",
            Request::CmapGet {
                map: CmapMap::Stats,
                key: "runtime.x".into(),
                ty: Some(7),
            },
        ),
        ("cmap_delete", Request::CmapDelete { key: "app.port".into() }),
        ("cmap_inc", Request::CmapInc { key: "app.n".into() }),
        ("cmap_dec", Request::CmapDec { key: "app.n".into() }),
        (
            "cmap_cas",
            Request::CmapCompareAndSet {
                key: "app.n".into(),
                expected: Some(CmapValue::U32(1)),
                value: CmapValue::U32(2),
                persist: true,
            },
        ),
        (
            "cmap_iter",
            Request::CmapIter {
                map: CmapMap::Main,
                prefix: "app.".into(),
            },
        ),
        (
            "cmap_track_add",
            Request::CmapTrackAdd {
                map: CmapMap::Main,
                key: "app.".into(),
                flags: 0xf,
                context: 7,
            },
        ),
        ("cmap_track_delete", Request::CmapTrackDelete { track: 1 }),
        (
            "cmap_set_text",
            Request::CmapSetText {
                key: "app.port".into(),
                ty: "u16".into(),
                text: "8080".into(),
                persist: false,
            },
        ),
        ("sam_list", Request::SamList),
        ("quorum_track", Request::QuorumTrack),
        ("nodes", Request::Nodes),
        (
            "on_node",
            Request::OnNode {
                node: "zeus".into(),
                body: Box::new(Request::Query { tag: "web".into() }),
            },
        ),
        (
            "cluster_events",
            Request::ClusterEvents {
                after: 0,
                limit: 10,
                filter: EventFilter::default(),
                nodes: vec!["zeus".into()],
            },
        ),
        (
            "cluster_subscribe",
            Request::ClusterSubscribe {
                after: None,
                filter,
                nodes: vec![],
            },
        ),
    ];
    for (i, value) in cmap_values().into_iter().enumerate() {
        let name: &'static str = [
            "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "flt", "dbl", "str", "bin",
        ][i];
        let name: &'static str = Box::leak(format!("cmap_set_{name}").into_boxed_str());
        v.push((
            name,
            Request::CmapSet {
                key: "app.key".into(),
                value,
                persist: i % 2 == 0,
            },
        ));
    }
    for (name, change) in [
        ("sam_report_instance", SamChange::Instance),
        ("sam_report_heartbeat", SamChange::Heartbeat),
        (
            "sam_report_warn",
            SamChange::Warn {
                signal: 15,
                reason: "missed".into(),
            },
        ),
        (
            "sam_report_kill",
            SamChange::Kill {
                reason: "missed".into(),
            },
        ),
        ("sam_report_exit", SamChange::Exit { status: 1 }),
        ("sam_report_data", SamChange::Data(Some(vec![1, 2, 3]))),
        ("sam_report_quit", SamChange::Quit { code: 1, failed: true }),
        ("sam_report_reattach", SamChange::Reattach),
    ] {
        v.push((
            name,
            Request::SamReport {
                change,
                info: info.clone(),
            },
        ));
    }
    v
}

/// `OnNode` inside `OnNode`, `depth` times, around a `List`, as the payload of a request: as sent before
/// Hello, it took vigild down while `OnNode` could nest. Written byte by byte (as in
/// tests/golden.txt's `on_node`), so that it stays the same attack whatever the types become.
fn deep_on_node_frame(depth: usize) -> Vec<u8> {
    const CLIENT_REQUEST: u8 = 1; // ClientMsg::Request
    const ON_NODE: u8 = 0x25; // Request::OnNode (variant 37)
    const LIST: u8 = 0x08; // Request::List (variant 8)
    let mut payload = vec![CLIENT_REQUEST, 1]; // id 1
    for _ in 0..depth {
        payload.extend_from_slice(&[ON_NODE, 0]); // an empty node name
    }
    payload.push(LIST);
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend(payload);
    f
}

/// Hand-made frames no encoder produces: each is a reader's problem to refuse.
fn hostile_frames() -> Vec<(&'static str, Vec<u8>)> {
    let with_len = |payload: &[u8]| {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    };
    // A 4 KiB Hello: the client name is the whole frame.
    let big_hello = frame(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        client: "x".repeat(4_080),
    });
    // A Run with 2,000 empty arguments: many small allocations in one 4 KiB frame.
    let many_args = frame(&req(1, Request::Run(RunSpec::new("t", vec![String::new(); 2_000]))));
    vec![
        ("header_over_limit", ((MAX_FRAME_LEN + 1) as u32).to_le_bytes().to_vec()),
        ("header_max_u32", u32::MAX.to_le_bytes().to_vec()),
        // Promises 4 MiB, sends 3 bytes.
        ("truncated_4mib", {
            let mut f = (MAX_FRAME_LEN as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&[0, 1, 2]);
            f
        }),
        ("empty_payload", with_len(&[])),
        // Hello whose string claims u64::MAX bytes (a 10-byte varint).
        (
            "string_len_u64_max",
            with_len(&[0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ),
        // A varint longer than any integer.
        (
            "overlong_varint",
            with_len(&[0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        ),
        ("bad_utf8", with_len(&[0, 2, 3, b'a', 0xff, b'b'])),
        ("unknown_variant", with_len(&[0x7f])),
        ("unknown_request", with_len(&[1, 1, 0x7f])),
        ("trailing_bytes", {
            let mut h = hello();
            h.push(0);
            let len = (h.len() - HEADER_LEN) as u32;
            h[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
            h
        }),
        // A Vec that claims 2^32 elements: a reader must not reserve them.
        (
            "vec_len_huge",
            with_len(&[1, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff, 0x0f]),
        ),
        ("big_hello_4k", big_hello),
        ("run_2000_args_4k", many_args),
    ]
}

fn frames_client(c: &Corpus) {
    let t = "frame_client";
    c.put(t, "hello", &hello());
    for (name, body) in requests() {
        let mut conn = hello();
        conn.extend(frame(&req(7, body)));
        c.put(t, &format!("hello_{name}"), &conn);
    }
    for (name, bytes) in hostile_frames() {
        c.put(t, &format!("hostile_{name}"), &bytes);
        // The same after a Hello, where vigild decodes requests.
        let mut conn = hello();
        conn.extend(bytes);
        c.put(t, &format!("hello_hostile_{name}"), &conn);
    }
    // The frame that took vigild down, sent first (before Hello), as the attack did; and after a Hello.
    let deep = deep_on_node_frame(ON_NODE_DEPTH);
    assert!(deep.len() <= 4_100, "the deep OnNode seed is {} bytes", deep.len());
    c.put(t, "regression_deep_on_node_before_hello", &deep);
    let mut conn = hello();
    conn.extend(&deep);
    c.put(t, "regression_deep_on_node_after_hello", &conn);
}

fn frames_server(c: &Corpus) {
    let t = "frame_server";
    let status = TagStatus {
        name: "web".into(),
        state: "running".into(),
        reason: None,
        uid: 0,
        gid: 0,
        command: vec!["/bin/sleep".into(), "60".into()],
        env: vec![("A".into(), "b".into())],
        cwd: Some("/".into()),
        instance: 0,
        program_type: ProgramType::Svc,
        level: -1,
        retries: -1,
        period: -1,
        action: None,
        backoff: Some(Backoff { min_ms: 1, max_ms: 2 }),
        after: vec![],
        restarts_used: 1,
        starts: 2,
        procs: vec![ProcInfo {
            pid: 42,
            level: 0,
            watched: true,
        }],
        main_pid: Some(42),
        started_ms: Some(1),
        last_exit: Some((41, ExitStatus::Signal(9))),
        log_path: "/var/log/vigil/web.log".into(),
        from_config: false,
        watchdog_ms: Some(1_000),
        probes: vec![ProbeStatus {
            check: "tcp:127.0.0.1:80".into(),
            interval_ms: 1_000,
            timeout_ms: 500,
            threshold: 3,
            failures: 1,
            last_error: Some("refused".into()),
        }],
        ready: true,
        status_text: Some("serving".into()),
        supervision: Supervision::default(),
        up: true,
    };
    let event = Event {
        seq: 9,
        time_ms: 1_700_000_000_000,
        name: "tag.started".into(),
        node: "zeus".into(),
        subject: "web".into(),
        attrs: vec![
            ("pid".into(), Value::Int(42)),
            ("ok".into(), Value::Bool(true)),
            ("why".into(), Value::Str("start".into())),
        ],
    };
    let resp = |id, result| ServerMsg::Response { id, result };
    let msgs = vec![
        ("ok", resp(1, Ok(Response::Ok))),
        ("exists", resp(2, Ok(Response::Exists(true)))),
        ("tag", resp(3, Ok(Response::Tag(status.clone())))),
        ("tags", resp(4, Ok(Response::Tags(vec![status.clone(), status])))),
        ("events", resp(5, Ok(Response::Events(vec![event.clone()])))),
        (
            "error",
            resp(
                6,
                Err(WireError::new(ErrorCode::PermissionDenied, "tag web belongs to uid 0")),
            ),
        ),
        ("event", ServerMsg::Event(event)),
        (
            "goodbye",
            ServerMsg::Goodbye {
                reason: "the first message must be Hello".into(),
            },
        ),
        ("lost", ServerMsg::Lost { from: 1, to: 100 }),
        (
            "cmap_notify",
            ServerMsg::CmapNotify(CmapNotification {
                track: 1,
                event: 4,
                key: "app.port".into(),
                new: Some(CmapValue::U16(80)),
                old: Some(CmapValue::Str("old".into())),
                context: 7,
            }),
        ),
        ("quorum", ServerMsg::Quorum { quorate: false }),
    ];
    c.put(t, "welcome", &welcome());
    for (name, m) in msgs {
        let mut conn = welcome();
        conn.extend(frame(&m));
        c.put(t, &format!("welcome_{name}"), &conn);
    }
    for (name, bytes) in hostile_frames() {
        let mut conn = welcome();
        conn.extend(bytes);
        c.put(t, &format!("welcome_hostile_{name}"), &conn);
    }
    // The golden frames of the protocol's tests: every one a real message of one side or the other. The
    // frames of appended requests live in files of their own (no name is in two of them).
    for file in [
        "golden.txt",
        "golden_quorum_lease.txt",
        "golden_supervision.txt",
        "golden_resources.txt",
    ] {
        let golden = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../crates/vigil-proto/tests")
                .join(file),
        )
        .expect("golden frames");
        for line in golden.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            let Some((name, hex)) = line.split_once(' ') else {
                continue;
            };
            let bytes: Vec<u8> = (0..hex.trim().len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex.trim()[i..i + 2], 16).expect("golden hex"))
                .collect();
            // A golden frame is a client's or a server's: each side's target gets it after its greeting.
            let mut to_server = hello();
            to_server.extend(&bytes);
            c.put("frame_client", &format!("golden_{name}"), &to_server);
            let mut to_client = welcome();
            to_client.extend(&bytes);
            c.put(t, &format!("golden_{name}"), &to_client);
        }
    }
}

fn config(c: &Corpus) {
    let t = "config";
    c.put(
        t,
        "full.toml",
        br#"[daemon]
stop_timeout = 5
log_max_bytes = 1048576
log_keep = 3
subscriber_queue = 1024
events_kept = 100000

[psm]
psm_cat_max = 64
psm_mem_max = 1024
categories = ["db", "web"]

[cmap]
persist_prefixes = ["app."]
write_gid = 100
max_value_bytes = 65536

[cmap.keys]
"app.port" = "u16:8080"
"app.name" = "str:vigil"
"app.blob" = "bin:00ff"
"app.ratio" = "dbl:0.5"

[tag.db]
command = ["/usr/bin/postgres", "-D", "/var/lib/pg"]
retries = 3
period = 60
backoff = "1s..30s"
stop_signal = "SIGINT"
stop_timeout = 10
watchdog = 30
env = { PGPORT = "5432" }
restart = "on-failure"
success_exit_codes = [0, 3]
success_signals = ["TERM", 1]
start_secs = 1.5
notify = true
autostart = false

[tag.web]
command = ["/usr/bin/python3", "-m", "http.server"]
after = ["db"]
type = "svc"
level = 0
cwd = "/srv"
user = "www-data"
group = 33
limits = { nofile = 4096, core = "0:unlimited" }
nice = 5
umask = 0o027
stderr_log = "/var/log/web.err"
log_timestamps = true
env_file = "web.env"
tag_group = "web"

[[tag.web.probe]]
tcp = "127.0.0.1:8000"
interval = 1
timeout = 0.5
threshold = 3

[[tag.web.probe]]
http = "http://[::1]:8000/health"

[[tag.web.probe]]
exec = ["/bin/true"]
"#,
    );
    c.put(t, "empty.toml", b"");
    c.put(
        t,
        "cycle.toml",
        b"[tag.a]\ncommand=[\"x\"]\nafter=[\"b\"]\n[tag.b]\ncommand=[\"x\"]\nafter=[\"a\"]\n",
    );
    c.put(
        t,
        "nested_arrays.toml",
        format!("x = {}1{}\n", "[".repeat(1_000), "]".repeat(1_000)).as_bytes(),
    );
    c.put(
        t,
        "nested_tables.toml",
        format!("x = {}1{}\n", "{a=".repeat(1_000), "}".repeat(1_000)).as_bytes(),
    );
    c.put(
        t,
        "bad_numbers.toml",
        b"[daemon]\nstop_timeout = nan\nlog_keep = -1\nlog_max_bytes = 18446744073709551615\n",
    );
}

fn sd_notify(c: &Corpus) {
    let t = "sd_notify";
    c.put(t, "ready", b"READY=1\nSTATUS=serving 3 clients\nMAINPID=42\n");
    c.put(t, "watchdog", b"WATCHDOG=1\nWATCHDOG_USEC=1000000\nWATCHDOG=trigger");
    c.put(
        t,
        "long_status",
        format!("STATUS={}", "\u{e9}".repeat(2_000)).as_bytes(),
    );
    c.put(
        t,
        "junk",
        b"=\n==\nSTOPPING=1\nERRNO=2\nMAINPID=-1\nWATCHDOG_USEC=0\nMAINPID=99999999999\n\xff\xfe",
    );
    c.put(t, "tcp", b"[::1]:8080");
    c.put(t, "url", b"http://example.com:8080/health?full=1");
    c.put(t, "url_v6", b"http://[::1]/");
}

fn cmap_value(c: &Corpus) {
    let t = "cmap_value";
    // The target reads a type code (its first bytes) then texts: plain text seeds steer it well enough.
    for (i, s) in [
        "127", "-129", "65535", "nan", "-inf", "1e39", "00ff", "abc", "app.port", "a,b/c",
    ]
    .iter()
    .enumerate()
    {
        let mut b = vec![i as u8];
        b.extend_from_slice(s.as_bytes());
        c.put(t, &format!("text_{i}"), &b);
    }
}

fn c_libraries(c: &Corpus) {
    // Structured inputs (a choice of call, then its arguments): a few byte patterns to start from.
    for t in ["libcmap", "libsam"] {
        c.put(t, "zeros", &[0u8; 64]);
        c.put(t, "ones", &[0xffu8; 64]);
        c.put(t, "ramp", &(0..=255u8).collect::<Vec<_>>());
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let c = Corpus { root };
    frames_client(&c);
    frames_server(&c);
    config(&c);
    sd_notify(&c);
    cmap_value(&c);
    c_libraries(&c);
    println!("seeds written under {}", c.root.display());
}
