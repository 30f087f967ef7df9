//! Health checks end to end: programs speaking sd_notify to the watchdog, and probes of each kind.

use std::os::unix::net::UnixDatagram;

use vigil_client::proto::{Event, ProbeCheck, ProbeSpec, Value};

use crate::harness::*;

/// A program written for systemd's watchdog, in python3's standard library only. It records its pid,
/// WATCHDOG_PID and WATCHDOG_USEC in ENVFILE (one line per start), says READY=1 and a STATUS, then sends
/// WATCHDOG=1 every PERIOD seconds, appending a line to PINGFILE each time. Its first start sends PINGS
/// pings (-1: forever) then goes silent; later starts do what AFTER says: `silent`, or `trigger`
/// (WATCHDOG=trigger at once).
const PINGER: &str = r#"
import os, socket, sys, time
envfile, pingfile, period, pings, after = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
with open(envfile, "a") as f:
    f.write("%d %s %s\n" % (os.getpid(), os.environ.get("WATCHDOG_PID"), os.environ.get("WATCHDOG_USEC")))
with open(envfile) as f:
    start = len(f.readlines())
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def send(m):
    # As sd_notify: a supervisor that is away (restarting) is no reason to die.
    try:
        s.sendto(m.encode(), addr)
    except OSError:
        pass
send("READY=1\nSTATUS=pinging")
if start > 1 and after == "trigger":
    send("WATCHDOG=trigger")
elif start == 1:
    n = 0
    while pings < 0 or n < pings:
        send("WATCHDOG=1")
        with open(pingfile, "a") as f:
            f.write("ping\n")
        n += 1
        time.sleep(period)
send("STATUS=silent")
time.sleep(3600)
"#;

fn pinger(
    v: &Vigild,
    tag: &str,
    watchdog_ms: u64,
    period: f64,
    pings: i64,
    after: &str,
) -> vigil_client::proto::RunSpec {
    let script = v.path("pinger.py");
    std::fs::write(&script, PINGER).unwrap();
    let mut spec = vigil_client::proto::RunSpec::new(
        tag,
        vec![
            "python3".into(),
            script.display().to_string(),
            v.path(&format!("{tag}.env")).display().to_string(),
            v.path(&format!("{tag}.pings")).display().to_string(),
            period.to_string(),
            pings.to_string(),
            after.into(),
        ],
    );
    spec.watchdog_ms = Some(watchdog_ms);
    spec.stop_timeout_ms = Some(1000);
    spec
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn attr<'a>(e: &'a Event, k: &str) -> Option<&'a Value> {
    e.attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v)
}

fn attr_str(e: &Event, k: &str) -> String {
    match attr(e, k) {
        Some(Value::Str(s)) => s.clone(),
        other => panic!("{k} of {e:?}: {other:?}"),
    }
}

fn names(v: &Vigild, tag: &str) -> Vec<String> {
    v.tag_events(tag).into_iter().map(|e| e.name).collect()
}

#[test]
fn a_program_that_stops_pinging_is_restarted_under_its_budget() {
    let v = Vigild::start();
    // A watchdog of 3 s: long enough for a slow python start to reach its first ping.
    let mut spec = pinger(&v, "quiet", 3000, 0.1, 3, "trigger");
    spec.retries = 1;
    let first = v.run(spec).main_pid.expect("started");

    // systemd's environment, with the pid the program itself sees.
    let env = wait_for("the program to record its environment", || {
        lines(&v.path("quiet.env")).first().cloned()
    });
    assert_eq!(
        env,
        format!("{first} {first} 3000000"),
        "pid, WATCHDOG_PID, WATCHDOG_USEC"
    );

    // It pings three times, then goes silent: 3 s later it is stopped and started again. The second
    // start records itself, then asks for the trigger at once: the tag may be past "running" before a
    // status could show it, so the pid comes from what the program wrote.
    let second: i32 = wait_for("the second start to record its environment", || {
        lines(&v.path("quiet.env"))
            .get(1)
            .and_then(|l| l.split(' ').next()?.parse().ok())
    });
    assert_ne!(second, first);
    assert!(!alive(first));
    assert_eq!(lines(&v.path("quiet.pings")).len(), 3);
    let st = v.status("quiet");
    assert_eq!((st.starts, st.restarts_used), (2, 1), "counted like a crash");

    // The second start sends WATCHDOG=trigger: the budget (1) is spent, so the tag fails.
    let st = v.wait_state("quiet", "failed");
    assert!(st.reason.as_deref().unwrap().contains("retry budget spent"), "{st:?}");
    assert!(!alive(second));
    assert!(!st.ready, "no instance, nothing ready");

    let events = v.tag_events("quiet");
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sys.vigil.pmf.tag.start",
            "sys.vigil.pmf.tag.ready",
            "sys.vigil.pmf.tag.unhealthy",
            "sys.vigil.pmf.tag.exit",
            "sys.vigil.pmf.tag.restart",
            "sys.vigil.pmf.tag.ready",
            "sys.vigil.pmf.tag.unhealthy",
            "sys.vigil.pmf.tag.exit",
            "sys.vigil.pmf.tag.failed",
        ]
    );
    let missed = &events[2];
    assert_eq!(attr_str(missed, "check"), "watchdog");
    assert_eq!(attr_str(missed, "reason"), "no WATCHDOG=1 within 3 s");
    assert_eq!(attr(missed, "interval_ms"), Some(&Value::Int(3000)));
    // Warned with the stop signal, which python dies of.
    assert_eq!(attr_str(&events[3], "status"), "signal 15");
    assert_eq!(attr(&events[4], "counted"), Some(&Value::Bool(true)));
    assert_eq!(attr(&events[6], "trigger"), Some(&Value::Bool(true)));
}

#[test]
fn a_program_that_keeps_pinging_is_left_alone_and_shows_ready_and_status() {
    let v = Vigild::start();
    let pid = v.run(pinger(&v, "steady", 2000, 0.2, -1, "silent")).main_pid.unwrap();
    // Three intervals' worth of pings.
    wait_for("30 pings", || {
        (lines(&v.path("steady.pings")).len() >= 30).then_some(())
    });

    // A stranger cannot speak for the tag: the kernel vouches for the sender's pid.
    let s = UnixDatagram::unbound().unwrap();
    s.send_to(b"STATUS=forged\nWATCHDOG=trigger", v.path("state/notify.sock"))
        .unwrap();

    let out = v.cli(&["status", "steady", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let st = &json[0];
    assert_eq!(st["ready"], true, "{st}");
    assert_eq!(st["status_text"], "pinging", "{st}");
    assert_eq!(st["watchdog_ms"], 2000);
    assert_eq!(
        (st["starts"].as_u64(), st["main_pid"].as_i64()),
        (Some(1), Some(i64::from(pid)))
    );
    let text = String::from_utf8(v.cli(&["status", "steady"]).stdout).unwrap();
    for want in ["watchdog:  2 s", "ready:     yes", "status:    pinging"] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    assert_eq!(
        names(&v, "steady"),
        ["sys.vigil.pmf.tag.start", "sys.vigil.pmf.tag.ready"]
    );
    assert!(alive(pid));
}

/// The pinging program outlives a `kill -9` and a re-exec of vigild: it is re-adopted, its pings reach
/// the notify socket bound anew at the same path, and it is neither restarted nor forgotten as ready.
#[test]
fn the_watchdog_carries_on_across_kill_9_and_reexec_of_vigild() {
    let mut v = Vigild::start();
    let pid = v.run(pinger(&v, "kept", 2000, 0.2, -1, "silent")).main_pid.unwrap();
    let pingfile = v.path("kept.pings");
    let pings = || lines(&pingfile).len();
    wait_for("ready", || v.status("kept").ready.then_some(()));
    v.kill9();
    v.spawn();
    let after = pings();
    // Three intervals' worth of pings to the new vigild.
    wait_for("30 pings after the restart", || (pings() >= after + 30).then_some(()));
    assert!(v.client().reexec().is_ok());
    let after = pings();
    wait_for("10 pings after the re-exec", || (pings() >= after + 10).then_some(()));
    let st = v.status("kept");
    assert_eq!((st.starts, st.main_pid, st.ready), (1, Some(pid), true), "{st:?}");
    assert_eq!(st.status_text.as_deref(), Some("pinging"));
    assert!(!names(&v, "kept").iter().any(|n| n.ends_with("unhealthy")));
}

fn probe(check: ProbeCheck, threshold: u32) -> ProbeSpec {
    ProbeSpec {
        check,
        interval_ms: Some(150),
        timeout_ms: Some(150),
        threshold: Some(threshold),
    }
}

fn http_server(tag: &str, port: u16) -> vigil_client::proto::RunSpec {
    let mut spec = vigil_client::proto::RunSpec::new(
        tag,
        ["python3", "-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"]
            .map(String::from)
            .to_vec(),
    );
    spec.cwd = Some("/".into());
    spec.retries = -1;
    spec
}

#[test]
fn http_and_tcp_probes_leave_a_healthy_server_alone_and_restart_a_failing_one() {
    let v = Vigild::start();
    let port = free_port();
    let mut web = http_server("web", port);
    web.probes = vec![
        probe(
            ProbeCheck::Http {
                url: format!("http://127.0.0.1:{port}/"),
            },
            10,
        ),
        probe(
            ProbeCheck::Tcp {
                address: format!("127.0.0.1:{port}"),
            },
            10,
        ),
    ]
    .into_iter()
    .map(|p| ProbeSpec {
        // Room for python to start listening: 10 runs, 3 s.
        interval_ms: Some(300),
        ..p
    })
    .collect();
    let pid = v.run(web).main_pid.unwrap();

    let bad_port = free_port();
    let mut missing = http_server("missing", bad_port);
    missing.probes = vec![ProbeSpec {
        // The first run 1.5 s after the start, when python listens.
        interval_ms: Some(1500),
        timeout_ms: Some(1000),
        ..probe(
            ProbeCheck::Http {
                url: format!("http://127.0.0.1:{bad_port}/no/such/page"),
            },
            2,
        )
    }];
    let missing_pid = v.run(missing).main_pid.unwrap();

    // http.server logs every GET: wait for the probes to have been answered several times.
    let log = std::path::PathBuf::from(v.status("web").log_path);
    wait_for("five probe requests in web's log", || {
        (lines(&log)
            .iter()
            .filter(|l| l.contains("\"GET / HTTP/1.1\" 200"))
            .count()
            >= 5)
            .then_some(())
    });
    let st = v.status("web");
    assert_eq!((st.starts, st.main_pid), (1, Some(pid)), "left alone");
    assert_eq!(st.probes.len(), 2);
    // A reply slower than the probe's timeout counts once; what matters is that none is failing now.
    wait_for("web's probes to be passing", || {
        v.status("web").probes.iter().all(|p| p.failures == 0).then_some(())
    });
    assert_eq!(st.probes[1].check, format!("tcp:127.0.0.1:{port}"));
    assert!(!names(&v, "web").iter().any(|n| n.ends_with("unhealthy")));

    // A 404 is a failure: after two in a row the server is restarted.
    v.running_pid("missing", Some(missing_pid));
    let unhealthy = v
        .tag_events("missing")
        .into_iter()
        .find(|e| e.name == "sys.vigil.pmf.tag.unhealthy")
        .expect("an unhealthy event");
    assert_eq!(attr_str(&unhealthy, "check"), "probe");
    assert_eq!(attr_str(&unhealthy, "error"), "HTTP status 404 File not found");
    assert_eq!(attr(&unhealthy, "failures"), Some(&Value::Int(2)));
    assert_eq!(
        attr_str(&unhealthy, "probe"),
        format!("http://127.0.0.1:{bad_port}/no/such/page")
    );
}

#[test]
fn a_failing_tcp_probe_restarts_after_its_threshold_and_spends_the_budget() {
    let v = Vigild::start();
    let mut spec = sh("deaf", "exec sleep 1000");
    spec.retries = 1;
    spec.stop_timeout_ms = Some(1000);
    spec.probes = vec![probe(
        ProbeCheck::Tcp {
            address: format!("127.0.0.1:{}", free_port()),
        },
        3,
    )];
    v.run(spec);
    let st = v.wait_state("deaf", "failed");
    assert!(st.reason.unwrap().contains("retry budget spent: 1 restart(s)"));
    let events = v.tag_events("deaf");
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sys.vigil.pmf.tag.start",
            "sys.vigil.pmf.tag.unhealthy",
            "sys.vigil.pmf.tag.exit",
            "sys.vigil.pmf.tag.restart",
            "sys.vigil.pmf.tag.unhealthy",
            "sys.vigil.pmf.tag.exit",
            "sys.vigil.pmf.tag.failed",
        ]
    );
    // Three failures, the first one interval after the start: not before 3 intervals.
    assert!(
        events[1].time_ms - events[0].time_ms >= 450,
        "acted after {} ms",
        events[1].time_ms - events[0].time_ms
    );
    assert_eq!(attr(&events[1], "failures"), Some(&Value::Int(3)));
    assert!(attr_str(&events[1], "error").contains("refused"), "{:?}", events[1]);
}

/// Exec probes are vigild's children: reaped by vigild, never taken for the tag's processes or its
/// orphans (here with /proc scans, where orphans are adopted by session).
#[test]
fn exec_probes_are_reaped_and_are_not_the_tags_processes() {
    let v = Vigild::start_scan();
    let flag = v.path("healthy");
    let count = v.path("probes");
    std::fs::write(&flag, "").unwrap();
    let mut spec = sh("checked", "exec sleep 1000");
    spec.retries = -1;
    spec.probes = vec![ProbeSpec {
        interval_ms: Some(300),
        timeout_ms: Some(300),
        ..probe(
            ProbeCheck::Exec {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "echo $VIGIL_TAG >> {}; sleep 0.05 & test -e {}",
                        count.display(),
                        flag.display()
                    ),
                ],
            },
            3,
        )
    }];
    let pid = v.run(spec).main_pid.unwrap();
    wait_for("ten probe runs", || (lines(&count).len() >= 10).then_some(()));
    assert!(lines(&count).iter().all(|l| l == "checked"), "the tag's environment");
    let st = v.status("checked");
    assert_eq!((st.starts, st.main_pid), (1, Some(pid)));
    assert_eq!(st.procs.len(), 1, "only the command: {:?}", st.procs);
    wait_for("no zombie among vigild's children", || {
        let table = std::fs::read_dir("/proc").unwrap();
        let zombies = table
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|s| {
                let rest = s
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start().to_string())
                    .unwrap_or_default();
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.len() > 2 && f[0] == "Z" && f[1] == v.pid().to_string()
            })
            .count();
        (zombies == 0).then_some(())
    });

    // Failing now: restarted after three failures.
    std::fs::remove_file(&flag).unwrap();
    v.running_pid("checked", Some(pid));
    let ev = v
        .tag_events("checked")
        .into_iter()
        .find(|e| e.name == "sys.vigil.pmf.tag.unhealthy")
        .unwrap();
    assert_eq!(attr_str(&ev, "error"), "the command ended with exit 1");
    assert!(!alive(pid));
}

#[test]
fn bad_health_settings_are_refused_and_change_nothing() {
    let v = Vigild::start();
    v.run(sh("ok", "exec sleep 1000"));
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "w", "--watchdog", "0", "--", "true"],
            "tag w: watchdog 0 s is out of range: use 0.001 to 86400 seconds",
        ),
        (
            &["run", "w", "--watchdog", "-1", "--", "true"],
            "--watchdog -1 is not a number of seconds",
        ),
        (
            &["run", "p", "--probe", "udp:127.0.0.1:53", "--", "true"],
            "unknown probe kind",
        ),
        (
            &["run", "p", "--probe", "tcp:127.0.0.1:99999", "--", "true"],
            "probe tcp:127.0.0.1:99999: port \"99999\" is not a number from 1 to 65535",
        ),
        (
            &["run", "p", "--probe", "tcp:127.0.0.1", "--", "true"],
            "expected HOST:PORT",
        ),
        (
            &[
                "run",
                "p",
                "--probe",
                "tcp:127.0.0.1:80",
                "--probe-threshold",
                "0",
                "--",
                "true",
            ],
            "threshold 0 is out of range: use 1 to 1000",
        ),
        (
            &[
                "run",
                "p",
                "--probe",
                "tcp:127.0.0.1:80",
                "--probe-threshold",
                "-1",
                "--",
                "true",
            ],
            "--probe-threshold -1 is not a count",
        ),
        (
            &["run", "p", "--probe", "https://127.0.0.1/", "--", "true"],
            "https is not supported",
        ),
        (
            &["run", "p", "--probe", "http://127.0.0.1:0/", "--", "true"],
            "not a number from 1 to 65535",
        ),
        (&["run", "p", "--probe", "exec:", "--", "true"], "needs a command"),
        (&["run", "p", "--probe-interval", "1", "--", "true"], "need a --probe"),
        (
            &[
                "run",
                "p",
                "--probe",
                "tcp:127.0.0.1:80",
                "--probe-interval",
                "1",
                "--probe-timeout",
                "2",
                "--",
                "true",
            ],
            "timeout 2 s is out of range",
        ),
    ];
    for (args, expect) in cases {
        let before = v.client().list().unwrap();
        let out = v.cli(args);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?} should fail");
        assert!(err.contains(expect), "{args:?}: expected {expect:?} in {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert_eq!(v.client().list().unwrap(), before, "{args:?} changed state");
    }
}
