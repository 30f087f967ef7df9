//! Cluster mode: the cluster event stream (docs/cluster.md): every node's events in one stream, ordered
//! by etcd revision, with the local stream's filters, replay and loss markers; published after an
//! outage of etcd or a kill -9, never lost.

use std::time::Duration;

use vigil_client::proto::{ClusterEvent, ErrorCode, EventFilter, PsmNode, Value};
use vigil_client::{ClientError, ClusterItem};

use crate::etcd::Etcd;
use crate::harness::*;

fn node(etcd: &Etcd, name: &str) -> Vigild {
    Vigild::start_args(&etcd.vigild_args(name, 2))
}

fn wait_up(v: &Vigild, name: &str) {
    wait_for(&format!("{name} up"), || {
        v.client().nodes().unwrap().into_iter().find(|n| n.name == name && n.up)
    });
}

fn names(patterns: &[&str]) -> EventFilter {
    EventFilter {
        names: patterns.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The kept history of the cluster stream, as node `v` reads it.
fn history(v: &Vigild, filter: EventFilter, nodes: &[&str]) -> Vec<ClusterEvent> {
    let nodes = nodes.iter().map(|s| s.to_string()).collect();
    v.client()
        .cluster_events(0, 10_000, filter, nodes)
        .expect("cluster events")
        .events
}

fn started(v: &Vigild, tag: &str) {
    v.run(sh(tag, "sleep 1000"));
}

/// Waits until `v`'s view of the stream has the start of `tag`.
fn wait_published(v: &Vigild, tag: &str) -> ClusterEvent {
    wait_for(&format!("{tag}'s start in the cluster stream"), || {
        history(v, names(&["sys.vigil.pmf.tag.start"]), &[])
            .into_iter()
            .find(|e| e.event.subject == tag)
    })
}

fn next(sub: &mut vigil_client::Client) -> ClusterEvent {
    match sub.next_cluster_item().expect("a cluster stream item") {
        ClusterItem::Event(e) => e,
        ClusterItem::Lost { from, to } => panic!("lost revisions {from}..={to}"),
    }
}

#[test]
fn every_nodes_events_in_one_stream_in_revision_order_with_filters_and_replay() {
    let etcd = Etcd::start1();
    let a = node(&etcd, "a");
    let b = node(&etcd, "b");
    wait_up(&a, "b");
    wait_up(&b, "a");
    let starts = || names(&["sys.vigil.pmf.tag.start"]);
    // Follow the stream on b from its current end: nothing produced from now on can be missed.
    let end = b.client().cluster_events(0, 10_000, starts(), vec![]).unwrap().upto;
    let mut sub = b.client();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.cluster_subscribe(Some(end), starts(), vec![]).unwrap();

    // One at a time, alternating nodes: the stream's order is the order they happened in.
    let order = [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("b", "b2"),
        ("b", "b3"),
        ("a", "a3"),
    ];
    let mut seen = Vec::new();
    for (n, tag) in order {
        started(if n == "a" { &a } else { &b }, tag);
        let e = next(&mut sub);
        assert_eq!((e.event.node.as_str(), e.event.subject.as_str()), (n, tag), "{e:?}");
        assert!(
            seen.last().is_none_or(|p: &ClusterEvent| p.rev < e.rev),
            "{seen:?} then {e:?}"
        );
        seen.push(e);
    }
    // At once on both nodes: each node's own order is kept, and revisions never go back.
    let burst = |v: &Vigild, n: &str| {
        for i in 0..10 {
            started(v, &format!("{n}-burst{i}"));
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| burst(&a, "a"));
        s.spawn(|| burst(&b, "b"));
    });
    let mut got = Vec::new();
    while got.len() < 20 {
        got.push(next(&mut sub));
    }
    for w in got.windows(2) {
        assert!(w[0].rev <= w[1].rev, "{w:?}");
    }
    for n in ["a", "b"] {
        let mine: Vec<String> = got
            .iter()
            .filter(|e| e.event.node == n)
            .map(|e| e.event.subject.clone())
            .collect();
        let want: Vec<String> = (0..10).map(|i| format!("{n}-burst{i}")).collect();
        assert_eq!(mine, want);
    }

    // The history, as either node reads it, is the same stream: same events, same revisions.
    let on_a: Vec<ClusterEvent> = history(&a, starts(), &[]).into_iter().filter(|e| e.rev > end).collect();
    assert_eq!(on_a, [seen.clone(), got.clone()].concat());
    // Filters: by node, and by tag as the local stream has it.
    let only_b = history(&a, starts(), &["b"]);
    assert!(!only_b.is_empty() && only_b.iter().all(|e| e.event.node == "b"));
    let a2 = a
        .client()
        .cluster_events(
            0,
            100,
            EventFilter {
                tag: Some("a2".into()),
                ..Default::default()
            },
            vec![],
        )
        .unwrap();
    assert!(
        !a2.events.is_empty() && a2.events.iter().all(|e| e.event.subject == "a2"),
        "{a2:?}"
    );
    // Replay from a revision: what came after it, and no more.
    let mut replay = a.client();
    replay.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    replay.cluster_subscribe(Some(seen[2].rev), starts(), vec![]).unwrap();
    assert_eq!(next(&mut replay), seen[3]);
    // Paging: a small limit answers whole revisions and says where to go on.
    let page = a.client().cluster_events(end, 2, starts(), vec![]).unwrap();
    assert_eq!(page.events, seen[..2]);
    assert_eq!(page.upto, seen[1].rev);

    // Membership: one up per join, posted by the join itself, not once per node that saw it.
    let joins = history(&a, names(&["sys.vigil.node.up"]), &[]);
    let who: Vec<&str> = joins.iter().map(|e| e.event.subject.as_str()).collect();
    assert_eq!(who, ["a", "b"], "{joins:?}");
    assert_eq!(joins[0].event.attr("how"), Some(&Value::Str("joined".into())));

    // Category events stay on their node; instance events are cluster-wide (Tru64's rule).
    let mut c = a.client();
    c.psm_category_add(&PsmNode::local(), "web").unwrap();
    let mut child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
    psm_add(&mut c, "web", child.id() as i32).unwrap();
    let created = wait_for("the instance's create in the cluster stream", || {
        history(&b, names(&["sys.unix.psm"]), &[]).into_iter().next()
    });
    assert_eq!(created.event.name, "sys.unix.psm.instance.create", "{created:?}");
    assert!(history(&b, names(&["sys.unix.psm.category"]), &[]).is_empty());
    assert!(a.events().iter().any(|e| e.name == "sys.unix.psm.category.create"));
    child.kill().unwrap();
    child.wait().unwrap();

    // The CLI: `vigil events --node all` is the cluster stream, the revision first.
    // `--after 0`: the whole stream, not only the newest 20.
    let out = a.cli(&["events", "--node", "all", "--after", "0", "sys.vigil.pmf.tag.start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let a1 = text
        .lines()
        .position(|l| l.contains("a#") && l.contains(" a1"))
        .expect(&text);
    let b1 = text
        .lines()
        .position(|l| l.contains("b#") && l.contains(" b1"))
        .expect(&text);
    assert!(a1 < b1, "{text}");
    let line = text.lines().nth(a1).unwrap();
    assert!(line.trim_start().starts_with(&seen[0].rev.to_string()), "{line}");
    let only = stdout(&a.cli(&["events", "--node", "b", "sys.vigil.pmf.tag.start"]));
    assert!(!only.is_empty() && only.lines().all(|l| l.contains(" b#")), "{only}");

    // A clean stop is one down event, from the node that left.
    let mut b = b;
    assert!(b.terminate().success());
    let down = wait_for("b's down in the stream", || {
        history(&a, names(&["sys.vigil.node.down"]), &[]).into_iter().next()
    });
    assert_eq!(down.event.subject, "b");
    assert_eq!(down.event.attr("how"), Some(&Value::Str("left".into())));
}

#[test]
fn a_subscription_to_new_events_gets_no_old_one_and_then_every_new_one_in_order() {
    let etcd = Etcd::start1();
    let a = node(&etcd, "a");
    let b = node(&etcd, "b");
    wait_up(&b, "a");
    started(&a, "old");
    let old = wait_published(&b, "old");
    let mut sub = b.client();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.cluster_subscribe(None, names(&["sys.vigil.pmf.tag.start"]), vec![])
        .unwrap();
    // When the watch behind the subscription is in place is etcd's business: tags start on a, one every
    // 50 ms, until the subscriber has seen some.
    let done = std::sync::atomic::AtomicBool::new(false);
    let made = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                started(&a, &format!("new{n}"));
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        });
        let first = next(&mut sub);
        let k: usize = first
            .event
            .subject
            .strip_prefix("new")
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("the first event is not a new one: {first:?}"));
        assert!(first.rev > old.rev, "{first:?} after {old:?}");
        // From the first one on, each new one, in order.
        let mut last = first;
        for want in k + 1..k + 4 {
            let e = next(&mut sub);
            assert_eq!(e.event.subject, format!("new{want}"), "{e:?} after {last:?}");
            assert!(e.rev > last.rev, "{e:?} after {last:?}");
            last = e;
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        producer.join().unwrap()
    });
    assert!(made >= 4, "{made} tags started");
}

#[test]
fn events_made_while_etcd_was_away_or_before_a_kill_9_reach_the_stream_later() {
    let mut etcd = Etcd::start1();
    let mut a = node(&etcd, "a");
    let b = node(&etcd, "b");
    wait_up(&b, "a");
    started(&a, "before");
    wait_published(&b, "before");
    etcd.stop(0);
    // Local supervision goes on; its events wait for etcd.
    started(&a, "away1");
    started(&a, "away2");
    etcd.restart(0);
    let away1 = wait_published(&b, "away1");
    let away2 = wait_published(&b, "away2");
    assert!(away1.rev <= away2.rev);
    // Killed before it could publish: the next run of vigild publishes from the store.
    etcd.stop(0);
    started(&a, "unpublished");
    a.kill9();
    etcd.restart(0);
    a.spawn();
    let e = wait_published(&b, "unpublished");
    assert_eq!(e.event.node, "a");
    // Published once each, in the node's order.
    let seqs: Vec<(String, u64)> = history(&b, names(&["sys.vigil.pmf.tag.start"]), &["a"])
        .into_iter()
        .map(|e| (e.event.subject, e.event.seq))
        .collect();
    let tags: Vec<&str> = seqs.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags.iter().filter(|t| **t == "away1").count(), 1, "{seqs:?}");
    assert_eq!(tags.iter().filter(|t| **t == "unpublished").count(), 1, "{seqs:?}");
    for w in seqs.windows(2) {
        assert!(w[0].1 < w[1].1, "{seqs:?}");
    }
}

#[test]
fn the_cluster_stream_needs_cluster_mode_and_known_nodes() {
    let v = Vigild::start();
    let err = v
        .client()
        .cluster_events(0, 10, EventFilter::default(), vec![])
        .unwrap_err();
    let ClientError::Server(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, ErrorCode::Unsupported);
    assert!(e.message.contains("needs cluster mode"), "{e}");
    let out = v.cli(&["events", "--node", "all"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("needs cluster mode"), "{}", stderr(&out));

    let etcd = Etcd::start1();
    let a = node(&etcd, "a");
    let err = a
        .client()
        .cluster_subscribe(None, EventFilter::default(), vec!["zeus".into()])
        .unwrap_err();
    let ClientError::Server(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, ErrorCode::NodeDown);
    assert!(e.message.contains("zeus is unknown"), "{e}");
}
