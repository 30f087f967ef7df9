//! Cluster mode: real etcd (1 or 3 members, see `etcd.rs`), several real vigild nodes on one machine,
//! each with its own state dir and socket.

use std::time::{Duration, Instant};

use vigil_client::proto::{CmapValue, Event, NodeInfo, Value};

use crate::etcd::Etcd;
use crate::harness::*;
use crate::sam::{cmap, sam_events, SamApp};

fn node(etcd: &Etcd, name: &str) -> Vigild {
    Vigild::start_args(&etcd.vigild_args(name, 2))
}

fn nodes(v: &Vigild) -> Vec<NodeInfo> {
    v.client().nodes().expect("nodes")
}

fn find<'a>(ns: &'a [NodeInfo], name: &str) -> Option<&'a NodeInfo> {
    ns.iter().find(|n| n.name == name)
}

/// Waits until `v` lists `name` as up (or down).
fn wait_node(v: &Vigild, name: &str, up: bool) -> NodeInfo {
    wait_for(
        &format!("{name} {} on this node", if up { "up" } else { "down" }),
        || find(&nodes(v), name).filter(|n| n.up == up).cloned(),
    )
}

fn node_events(v: &Vigild, name: &str) -> Vec<Event> {
    v.events()
        .into_iter()
        .filter(|e| e.subject == name && e.name.starts_with("sys.vigil.node."))
        .collect()
}

fn quorate(v: &Vigild) -> Option<CmapValue> {
    cmap(v, "runtime.votequorum.quorate")
}

fn wait_quorate(v: &Vigild, q: bool) {
    wait_for(&format!("quorate {q}"), || {
        (quorate(v) == Some(CmapValue::U8(q as u8))).then_some(())
    });
}

#[test]
fn nodes_join_see_each_other_and_a_clean_stop_is_down_at_once() {
    let etcd = Etcd::start1();
    let a = node(&etcd, "a");
    // b's lease would outlive the test: only its leave can make it down within the bound below.
    let mut b = Vigild::start_args(&etcd.vigild_args("b", 30));
    let b_on_a = wait_node(&a, "b", true);
    let a_on_b = wait_node(&b, "a", true);
    assert_ne!(b_on_a.id, a_on_b.id, "every node has its own id");
    assert_eq!(b_on_a.address, b.socket().display().to_string());
    assert_eq!(b_on_a.pid, b.pid());
    assert!(!b_on_a.this_node);
    assert!(find(&nodes(&a), "a").unwrap().this_node);
    // Both nodes post both joins.
    for v in [&a, &b] {
        let up = wait_for("b's up event", || node_events(v, "b").into_iter().next());
        assert_eq!(up.name, "sys.vigil.node.up");
        assert_eq!(up.attr("node_id"), Some(&Value::Int(b_on_a.id as i64)));
    }
    // The CLI: a table for people, JSON for scripts.
    let out = a.cli(&["nodes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("NODE") && text.contains("a (this node)"), "{text}");
    let b_line = text.lines().find(|l| l.trim_start().starts_with("b ")).expect(&text);
    assert!(
        b_line.contains(" up ") && b_line.contains(&b_on_a.id.to_string()),
        "{b_line}"
    );
    let json: serde_json::Value = serde_json::from_slice(&a.cli(&["--json", "nodes"]).stdout).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json}");

    // A clean stop: the others see the node down long before its lease would expire.
    let t = Instant::now();
    assert!(b.terminate().success());
    let down = wait_node(&a, "b", false);
    assert!(t.elapsed() < Duration::from_secs(10), "down after {:?}", t.elapsed());
    assert_eq!(down.id, b_on_a.id, "a down node keeps its id");
    let names: Vec<String> = node_events(&a, "b").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["sys.vigil.node.up", "sys.vigil.node.down"]);
    let text = stdout(&a.cli(&["nodes"]));
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("b ") && l.contains(" down ")),
        "{text}"
    );
}

#[test]
fn a_killed_vigild_is_down_on_the_others_within_the_lease_ttl_plus_one_second() {
    let etcd = Etcd::start1();
    let ttl = 3; // the default
    let a = Vigild::start_args(&etcd.vigild_args("a", ttl));
    let mut b = Vigild::start_args(&etcd.vigild_args("b", ttl));
    wait_node(&a, "b", true);
    b.kill9();
    let killed = Instant::now();
    let limit = Duration::from_secs(ttl + 1);
    // The assertion: the down event on a, within TTL + 1 s of the kill.
    loop {
        if node_events(&a, "b").iter().any(|e| e.name == "sys.vigil.node.down") {
            break;
        }
        assert!(
            killed.elapsed() < limit,
            "no sys.vigil.node.down for b within {limit:?} of its kill -9"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("failure detection: {:?} (lease TTL {ttl} s)", killed.elapsed());
    assert!(!find(&nodes(&a), "b").unwrap().up);
}

#[test]
fn node_ids_are_stable_across_restarts_even_while_etcd_is_away() {
    let mut etcd = Etcd::start1();
    let mut a = node(&etcd, "a");
    let mut b = node(&etcd, "b");
    let id_a = wait_node(&b, "a", true).id;
    let id_b = wait_node(&a, "b", true).id;
    let runtime_id = |v: &Vigild| cmap(v, "runtime.node_id");
    assert_eq!(runtime_id(&a), Some(CmapValue::U32(id_a)));
    assert_eq!(a.client().daemon_status().unwrap().node_id, id_a);
    b.kill9();
    b.spawn();
    assert_eq!(wait_node(&a, "b", true).id, id_b, "same id after kill -9");
    assert_eq!(runtime_id(&b), Some(CmapValue::U32(id_b)));
    assert!(a.terminate().success());
    a.spawn();
    assert_eq!(wait_node(&b, "a", true).id, id_a, "same id after a clean stop");
    // A new node gets a new id.
    let c = node(&etcd, "c");
    let id_c = wait_node(&a, "c", true).id;
    assert!(id_c != id_a && id_c != id_b, "{id_a} {id_b} {id_c}");
    // Without etcd, a node that joined before starts with its cached id.
    drop(c);
    etcd.stop(0);
    b.kill9();
    b.spawn();
    assert_eq!(runtime_id(&b), Some(CmapValue::U32(id_b)));
    etcd.restart(0);
    assert_eq!(wait_node(&a, "b", true).id, id_b);
}

#[test]
fn a_vigild_that_never_reached_etcd_does_not_start() {
    let etcd = Etcd::start1();
    let url = etcd.endpoints();
    drop(etcd);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("vigild"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args(["--cluster", &url, "--node", "lonely"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111), "a temporary failure");
    assert!(
        stderr(&out).contains("cannot get a node id for lonely"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn losing_etcd_quorum_loses_the_nodes_quorum_and_sam_recovers_when_it_returns() {
    let mut etcd = Etcd::start3();
    let a = node(&etcd, "a");
    let b = node(&etcd, "b");
    wait_node(&a, "b", true);
    wait_quorate(&a, true);
    wait_quorate(&b, true);
    // Node c registers a member, then goes down before etcd loses its quorum.
    let mut c = node(&etcd, "c");
    wait_node(&a, "c", true);
    let mut member = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = member.id().to_string();
    let out = cli_psm_add(&c, &["psm", "add", "web", &pid]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(c.terminate().success());
    wait_node(&a, "c", false);
    let app = SamApp::start(
        Some(&a),
        a.dir.path(),
        &[
            "--interval",
            "1000",
            "--policy",
            "restart+quorum+cmap",
            "--on",
            "1:start;beat:600000",
            "--on",
            "2:start;beat:600000",
        ],
    );
    app.wait_line("1 start ok");
    // On b, an application under QUORUM_QUIT: losing quorum ends it.
    let mut quitter = SamApp::start(
        Some(&b),
        b.dir.path(),
        &[
            "--interval",
            "1000",
            "--policy",
            "quit+quorum",
            "--on",
            "1:start;beat:600000",
        ],
    );
    quitter.wait_line("1 start ok");
    // 2 of 3 members gone: etcd has no quorum, so neither has any node.
    etcd.stop(1);
    etcd.stop(2);
    wait_quorate(&a, false);
    wait_quorate(&b, false);
    // QUORUM_QUIT: the supervisor quits, with no second instance.
    quitter.exit_code();
    assert_eq!(quitter.result(2, "register"), None, "{:#?}", quitter.lines());
    let evs = sam_events(&b, quitter.pid());
    assert!(evs.iter().any(|e| e.name.ends_with(".quit")), "{evs:#?}");
    // The read-only view: a down node's members, read without a leader, as last known.
    let out = a.cli(&["psm", "--node", "c", "get"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&pid) && stdout(&out).contains("unreachable"),
        "{}",
        stdout(&out)
    );
    member.kill().unwrap();
    member.wait().unwrap();
    // The nodes as last seen, and a word that it may be stale.
    let out = a.cli(&["nodes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("b "), "{}", stdout(&out));
    assert!(stderr(&out).contains("the list is as last seen"), "{}", stderr(&out));
    // The application under QUORUM is warned, then recovered: its next instance waits for quorum.
    app.wait_line("2 register 2");
    let evs = sam_events(&a, app.pid());
    let warn = evs.iter().find(|e| e.name.ends_with(".warn")).expect("warn");
    assert_eq!(warn.attr("reason"), Some(&Value::Str("quorum lost".into())), "{warn:?}");
    assert_eq!(app.result(2, "start"), None, "started without quorum");
    assert!(a.events().iter().any(|e| e.name == "sys.vigil.quorum.lost"));
    // Quorum back: the nodes are quorate again and the application starts.
    etcd.restart(1);
    wait_quorate(&a, true);
    wait_quorate(&b, true);
    app.wait_line("2 start ok");
    assert!(a.events().iter().any(|e| e.name == "sys.vigil.quorum.regained"));
    etcd.restart(2);
    assert!(find(&nodes(&b), "a").unwrap().up);
}

#[test]
fn local_supervision_goes_on_while_etcd_is_away_and_the_node_rejoins() {
    let mut etcd = Etcd::start1();
    let a = node(&etcd, "a");
    let b = node(&etcd, "b");
    let id_a = wait_node(&b, "a", true).id;
    wait_quorate(&a, true);
    let mut spec = sh("flappy", "sleep 0.2; exit 1");
    spec.retries = -1;
    a.run(spec);
    let restarts = |v: &Vigild| {
        v.tag_events("flappy")
            .iter()
            .filter(|e| e.name == "sys.vigil.pmf.tag.restart")
            .count()
    };
    etcd.stop(0);
    wait_quorate(&a, false);
    // Restarts go on without etcd.
    let before = restarts(&a);
    wait_for("restarts while etcd is away", || {
        (restarts(&a) >= before + 3).then_some(())
    });
    etcd.restart(0);
    wait_quorate(&a, true);
    // Re-registered with the same id; the other node sees it up.
    assert_eq!(wait_node(&b, "a", true).id, id_a);
    let during = restarts(&a);
    wait_for("restarts after etcd is back", || {
        (restarts(&a) >= during + 2).then_some(())
    });
    // The node's events kept their order: numbered without a gap, in time order.
    let evs = a.events();
    for w in evs.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "{:?} then {:?}", w[0], w[1]);
        assert!(w[1].time_ms >= w[0].time_ms, "{:?} then {:?}", w[0], w[1]);
    }
    let names: Vec<&str> = evs
        .iter()
        .filter(|e| e.subject == "quorum")
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        names.ends_with(&["sys.vigil.quorum.lost", "sys.vigil.quorum.regained"]),
        "{names:?}"
    );
}
