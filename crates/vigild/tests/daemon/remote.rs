//! Cluster mode: remote operations and cluster-wide queries through etcd (docs/cluster.md). All nodes run
//! on this machine, so a pid registered on another node is a real local process.

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use vigil_client::proto::{PsmNode, PSM_FL_UNREACHABLE};

use crate::etcd::Etcd;
use crate::harness::*;

/// How long vigild waits for another node to answer.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

fn node(etcd: &Etcd, name: &str) -> Vigild {
    Vigild::start_args(&etcd.vigild_args(name, 2))
}

fn wait_up(v: &Vigild, name: &str) {
    wait_for(&format!("{name} up"), || {
        v.client().nodes().unwrap().into_iter().find(|n| n.name == name && n.up)
    });
}

fn wait_down(v: &Vigild, name: &str) {
    wait_for(&format!("{name} down"), || {
        v.client()
            .nodes()
            .unwrap()
            .into_iter()
            .find(|n| n.name == name && !n.up)
    });
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    stdout(o)
}

fn sleeper() -> Child {
    Command::new("sleep").arg("1000").spawn().unwrap()
}

#[test]
fn psm_and_pmf_operations_run_on_the_node_they_name() {
    let etcd = Etcd::start1();
    let a = node(&etcd, "a");
    let b = node(&etcd, "b");
    wait_up(&a, "b");
    let mut child = sleeper();
    let pid = child.id().to_string();

    // PSM on b, asked of a: b registers the member, a has none.
    ok(&a.cli(&["psm", "--node", "b", "category", "add", "web"]));
    ok(&cli_psm_add(&a, &["psm", "--node", "b", "add", "web", &pid]));
    let on_b = b.client().psm_get(&PsmNode::local(), Some("web"), None).unwrap();
    assert_eq!(on_b.len(), 1);
    assert_eq!((on_b[0].pid.to_string(), on_b[0].node.as_str()), (pid.clone(), "b"));
    assert!(a.client().psm_get(&PsmNode::local(), Some("web"), None).is_err());
    let text = ok(&a.cli(&["psm", "--node", "b", "get", "web"]));
    assert!(text.contains(&pid), "{text}");
    ok(&a.cli(&["psm", "--node", "b", "state", "web", &pid, "ready"]));
    assert_eq!(
        b.client().psm_get(&PsmNode::local(), Some("web"), None).unwrap()[0].state,
        "ready"
    );

    // PMF on b through a: vigil run --node, then pmfadm -h.
    ok(&a.cli(&["--node", "b", "run", "t", "--", "sleep", "1000"]));
    assert_eq!(b.status("t").state, "running");
    let text = ok(&a.cli(&["--node", "b", "status", "t"]));
    assert!(text.contains("t: running"), "{text}");
    assert!(a.client().status("t").is_err(), "the tag lives on b only");
    // pmfadm takes -h with its queries (-l, -L, -q), as pmfadm(1M) has it.
    assert_eq!(stdout(&a.pmfadm(&["-L", "-h", "b"])), "tags: t\n");
    ok(&a.pmfadm(&["-q", "t", "-h", "b"]));
    assert!(!a.pmfadm(&["-q", "t"]).status.success(), "t is not on a");
    assert!(ok(&a.pmfadm(&["-l", "t", "-h", "b"])).contains("sleep 1000"));
    // A deferred answer (a stop that waits) comes back too.
    ok(&a.cli(&["--node", "b", "stop", "t", "--wait", "3"]));
    assert_eq!(b.status("t").state, "stopped");

    // Requests bound to the caller's connection stay local; unknown nodes are named.
    let out = a.cli(&["--node", "b", "quorum"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only makes sense on the caller's own node"),
        "{}",
        stderr(&out)
    );
    let out = a.cli(&["--node", "zeus", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("node zeus is unknown"), "{}", stderr(&out));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_target_node_checks_the_callers_permissions() {
    let etcd = Etcd::start1();
    let a = node(&etcd, "a");
    let b = node(&etcd, "b");
    wait_up(&a, "b");
    ok(&a.cli(&["--node", "b", "run", "root-tag", "--", "sleep", "1000"]));
    let out = a.cli_as(Some(65534), &["--node", "b", "stop", "root-tag"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("uid 65534 may not stop"), "{}", stderr(&out));
    assert_eq!(b.status("root-tag").state, "running");
    let out = a.cli_as(Some(65534), &["--node", "b", "kill", "root-tag"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_eq!(b.status("root-tag").state, "running");
}

#[test]
fn a_down_node_fails_fast_and_its_members_show_as_unreachable() {
    let etcd = Etcd::start1();
    let a = node(&etcd, "a");
    let mut b = node(&etcd, "b");
    wait_up(&a, "b");
    let mut child = sleeper();
    let pid = child.id().to_string();
    ok(&a.cli(&["psm", "--node", "b", "category", "add", "db"]));
    ok(&cli_psm_add(&a, &["psm", "--node", "b", "add", "db", &pid]));
    ok(&a.cli(&["run", "here", "--", "sleep", "1000"]));

    // Killed but not yet seen down: the request times out with the node named.
    b.kill9();
    let t = Instant::now();
    let out = a.cli(&["--node", "b", "status"]);
    let took = t.elapsed();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("node b"), "{}", stderr(&out));
    assert!(took < REMOTE_TIMEOUT + Duration::from_secs(3), "took {took:?}");
    eprintln!(
        "request to a killed node failed after {took:?}: {}",
        stderr(&out).trim()
    );

    wait_down(&a, "b");
    let t = Instant::now();
    let out = a.cli(&["--node", "b", "status"]);
    assert!(stderr(&out).contains("node b is down"), "{}", stderr(&out));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "a known-down node is refused at once, not after the {REMOTE_TIMEOUT:?} timeout"
    );

    // Several nodes: the query succeeds with what answered, b's error on stderr.
    let out = a.cli(&["--node", "all", "status"]);
    let text = ok(&out);
    assert!(text.contains("a:here: running"), "{text}");
    assert!(stderr(&out).contains("node b is down"), "{}", stderr(&out));
    let text = ok(&a.cli(&["--node", "a,b", "list"]));
    assert!(text.contains("NODE") && text.contains("here"), "{text}");

    // b's members: as last known, marked unreachable.
    let out = a.cli(&["--node", "all", "psm", "get"]);
    let text = ok(&out);
    assert!(text.contains(&pid) && text.contains("unreachable"), "{text}");
    assert!(stderr(&out).contains("node b: down"), "{}", stderr(&out));
    let mut c = a.client();
    c.set_node(Some("b"));
    let ms = c.psm_get(&PsmNode::local(), None, None).unwrap();
    assert_eq!(ms.len(), 1);
    assert!(ms[0].flags & PSM_FL_UNREACHABLE != 0);
    assert_eq!(ms[0].category, "db");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn without_cluster_mode_other_nodes_are_refused() {
    let v = Vigild::start();
    let out = v.cli(&["--node", "zeus", "status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cluster mode"), "{}", stderr(&out));
    // This node by its name, and `all` (this node alone), still answer.
    let node = v.client().daemon_status().unwrap().node;
    ok(&v.cli(&["--node", &node, "list"]));
    ok(&v.cli(&["--node", "all", "list"]));
}
