//! CMAP against a real vigild: types, keys, inc/dec, tracking, permissions, persistence.

use vigil_client::proto::{CmapMap, CmapValue as V, ErrorCode};
use vigil_client::Client;

use crate::harness::*;

const ADD: u32 = 4;
const DELETE: u32 = 1;
const MODIFY: u32 = 2;
const PREFIX: u32 = 8;

#[test]
fn every_type_round_trips_at_its_boundaries() {
    let v = Vigild::start();
    let mut c = v.client();
    let values = [
        ("t.i8.min", V::I8(i8::MIN)),
        ("t.i8.max", V::I8(i8::MAX)),
        ("t.u8.max", V::U8(u8::MAX)),
        ("t.i16", V::I16(i16::MIN)),
        ("t.u16", V::U16(u16::MAX)),
        ("t.i32", V::I32(i32::MIN)),
        ("t.u32", V::U32(u32::MAX)),
        ("t.i64", V::I64(i64::MIN)),
        ("t.u64.max", V::U64(u64::MAX)),
        ("t.flt.inf", V::Float(f32::INFINITY)),
        ("t.flt.ninf", V::Float(f32::NEG_INFINITY)),
        ("t.dbl.inf", V::Double(f64::INFINITY)),
        ("t.dbl.min", V::Double(f64::MIN_POSITIVE)),
        ("t.str.empty", V::Str(String::new())),
        ("t.bin.zeros", V::Binary(vec![0, 0, 1, 0])),
        ("t.bin.empty", V::Binary(vec![])),
    ];
    for (k, val) in &values {
        c.cmap_set(k, val.clone(), false).unwrap();
        assert_eq!(&c.cmap_get(k).unwrap(), val, "{k}");
    }
    for (k, nan) in [("t.flt.nan", V::Float(f32::NAN)), ("t.dbl.nan", V::Double(f64::NAN))] {
        c.cmap_set(k, nan, false).unwrap();
        match c.cmap_get(k).unwrap() {
            V::Float(x) => assert!(x.is_nan()),
            V::Double(x) => assert!(x.is_nan()),
            other => panic!("{other:?}"),
        }
    }
    // A typed get of another type is an invalid-parameter error, never a conversion.
    let e = c.cmap_get_in(CmapMap::Main, "t.u8.max", Some(5)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let listed = c.cmap_iter(CmapMap::Main, "t.").unwrap();
    assert_eq!(listed.len(), values.len() + 2);
    assert!(
        listed.windows(2).all(|w| w[0].key < w[1].key),
        "stable, sorted iteration"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let v = Vigild::start();
    let mut c = v.client();
    c.cmap_set("app.port", V::U16(8080), false).unwrap();
    // A malformed value is a usage error (2), found by vigild as much as by vigil; a refusal is 1.
    let cases: &[(&[&str], &str, i32)] = &[
        (&["cmap", "set", "app.port", "u8", "300"], "out of range", 2),
        (&["cmap", "set", "app.port", "u16", "eighty"], "eighty", 2),
        (&["cmap", "set", "app.port", "int128", "1"], "not a cmap type", 2),
        (&["cmap", "set", "ab", "u8", "1"], "ab", 2),
        (&["cmap", "set", &"k".repeat(256), "u8", "1"], "256", 2),
        (&["cmap", "set", "has space", "u8", "1"], "has space", 2),
        (&["cmap", "set", "runtime.version", "str", "x"], "runtime.version", 1),
        (&["cmap", "get", "no.such.key"], "no.such.key", 1),
        (&["cmap", "inc", "t.nope"], "t.nope", 1),
    ];
    for (args, expect, code) in cases {
        let out = v.cli(args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(expect), "{args:?}: expected {expect:?} in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let big = "x".repeat(2 << 20);
    let e = c.cmap_set("app.big", V::Str(big), false).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitExceeded));
    assert_eq!(c.cmap_get("app.port").unwrap(), V::U16(8080));
    assert_eq!(c.cmap_get("app.big").unwrap_err().code(), Some(ErrorCode::NotFound));
    // The CLI prints as corosync-cmapctl does.
    let out = v.cli(&["cmap", "get", "app.port"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app.port (u16) = 8080\n");
}

#[test]
fn inc_and_dec_wrap() {
    let v = Vigild::start();
    let mut c = v.client();
    c.cmap_set("w.u8", V::U8(255), false).unwrap();
    assert_eq!(c.cmap_inc("w.u8").unwrap(), V::U8(0));
    c.cmap_set("w.i8", V::I8(i8::MIN), false).unwrap();
    assert_eq!(c.cmap_dec("w.i8").unwrap(), V::I8(i8::MAX));
    c.cmap_set("w.u64", V::U64(0), false).unwrap();
    assert_eq!(c.cmap_dec("w.u64").unwrap(), V::U64(u64::MAX));
    c.cmap_set("w.str", V::Str("x".into()), false).unwrap();
    assert_eq!(
        c.cmap_inc("w.str").unwrap_err().code(),
        Some(ErrorCode::InvalidArgument)
    );
}

#[test]
fn tracking_flags_prefixes_and_values() {
    let v = Vigild::start();
    let mut w = v.client();
    let mut t = v.client();
    let add = t.cmap_track_add(CmapMap::Main, "a.key", ADD, 11).unwrap();
    let modify = t.cmap_track_add(CmapMap::Main, "a.key", MODIFY, 22).unwrap();
    let del = t.cmap_track_add(CmapMap::Main, "a.key", DELETE, 33).unwrap();
    let pre = t
        .cmap_track_add(CmapMap::Main, "a.", ADD | DELETE | MODIFY | PREFIX, 44)
        .unwrap();
    // No event asked for: accepted, and never notified (as corosync's icmap_track_add; compat_c.rs).
    t.cmap_track_add(CmapMap::Main, "a.key", 0, 0).unwrap();
    t.cmap_track_add(CmapMap::Main, "a.key", PREFIX, 0).unwrap();
    assert_eq!(
        t.cmap_track_add(CmapMap::Main, "a.key", 64 | ADD, 0)
            .unwrap_err()
            .code(),
        Some(ErrorCode::InvalidArgument)
    );
    w.cmap_set("a.key", V::U32(1), false).unwrap();
    w.cmap_set("a.key", V::U32(1), false).unwrap(); // unchanged: no notification
    w.cmap_set("a.key", V::Str("two".into()), false).unwrap();
    w.cmap_set("a.other", V::U8(9), false).unwrap();
    w.cmap_delete("a.key").unwrap();
    w.cmap_set("b.key", V::U8(1), false).unwrap(); // tracked by nobody
    let mut got = vec![];
    while got.len() < 7 {
        got.push(t.next_notification().unwrap());
    }
    let brief: Vec<(u64, u32, &str, u64)> = got
        .iter()
        .map(|n| (n.track, n.event, n.key.as_str(), n.context))
        .collect();
    assert_eq!(
        brief,
        [
            (add, ADD, "a.key", 11),
            (pre, ADD, "a.key", 44),
            (modify, MODIFY, "a.key", 22),
            (pre, MODIFY, "a.key", 44),
            (pre, ADD, "a.other", 44),
            (del, DELETE, "a.key", 33),
            (pre, DELETE, "a.key", 44),
        ]
    );
    assert_eq!((got[0].new.clone(), got[0].old.clone()), (Some(V::U32(1)), None));
    assert_eq!(
        (got[2].new.clone(), got[2].old.clone()),
        (Some(V::Str("two".into())), Some(V::U32(1)))
    );
    assert_eq!(
        (got[5].new.clone(), got[5].old.clone()),
        (None, Some(V::Str("two".into())))
    );
    // A deleted track is silent.
    t.cmap_track_delete(pre).unwrap();
    w.cmap_set("a.key", V::U8(5), false).unwrap();
    assert_eq!(t.next_notification().unwrap().track, add);
    assert!(t.pending_notifications().is_empty());
}

#[test]
fn concurrent_writers_are_notified_in_order_and_dead_trackers_are_cleaned_up() {
    let v = Vigild::start();
    let mut t = v.client();
    t.cmap_track_add(CmapMap::Main, "c.", ADD | MODIFY | PREFIX, 0).unwrap();
    let socket = v.socket();
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                for n in 0..50u32 {
                    c.cmap_set(&format!("c.w{i}"), V::U32(n), false).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut last = [None; 4];
    for _ in 0..200 {
        let n = t.next_notification().unwrap();
        let i: usize = n.key["c.w".len()..].parse().unwrap();
        let Some(V::U32(x)) = n.new else { panic!() };
        assert_eq!(
            n.old.as_ref().map(|o| matches!(o, V::U32(y) if *y + 1 == x)),
            if x == 0 { None } else { Some(true) }
        );
        assert!(
            last[i].is_none_or(|l: u32| l + 1 == x),
            "writer {i}: {x} after {last:?}"
        );
        last[i] = Some(x);
    }
    // A tracking client that goes away takes its tracks (and its stats) with it: once it and the writers
    // are gone, the only connection vigild knows is the one asking.
    drop(t);
    let mut c = v.client();
    wait_for("the closed connections to be forgotten", || {
        let keys = c.cmap_iter(CmapMap::Stats, "stats.ipcs.").ok()?;
        let conns: std::collections::BTreeSet<&str> = keys.iter().filter_map(|e| e.key.split('.').nth(2)).collect();
        (conns.len() == 1).then_some(())
    });
}

/// `stats.ipcs.<conn>.requests` of the connections whose pid key is this process's.
fn request_counts(c: &mut Client) -> Vec<u64> {
    let entries = c.cmap_iter(CmapMap::Stats, "stats.ipcs.").unwrap();
    let pid = V::I32(std::process::id() as i32);
    entries
        .iter()
        .filter(|e| e.key.ends_with(".pid") && e.value == pid)
        .filter_map(|e| {
            let requests = format!("{}requests", e.key.trim_end_matches("pid"));
            match entries.iter().find(|r| r.key == requests)?.value {
                V::U64(n) => Some(n),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn each_connection_counts_its_requests_in_the_stats_map() {
    let v = Vigild::start();
    let mut c = v.client();
    for i in 0..5 {
        c.cmap_set("count.key", V::U32(i), false).unwrap();
    }
    // The iteration is counted with the step that answers it, after the answer is made.
    let first = request_counts(&mut c);
    assert!(first.contains(&5), "{first:?}");
    for _ in 0..3 {
        c.cmap_get("count.key").unwrap();
    }
    // 5 sets, the first iteration, 3 gets: the counts of later steps add up.
    let then = request_counts(&mut c);
    assert!(then.contains(&9), "{then:?}");
    // vigild's own counters are written when they change, and only then.
    let keys = |c: &mut Client| match c.cmap_iter(CmapMap::Stats, "stats.vigild.cmap_keys").unwrap()[..] {
        [ref e] => e.value.clone(),
        ref other => panic!("{other:?}"),
    };
    let before = keys(&mut c);
    c.cmap_set("count.other", V::U8(1), false).unwrap();
    let V::U64(n) = before else { panic!("{before:?}") };
    assert_eq!(keys(&mut c), V::U64(n + 1));
}

#[test]
fn writes_need_root_and_reads_are_open() {
    let v = Vigild::start();
    v.client().cmap_set("p.key", V::U8(1), false).unwrap();
    let nobody = Some(65534);
    let out = v.cli_as(nobody, &["cmap", "get", "p.key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = v.cli_as(nobody, &["cmap", "set", "p.key", "u8", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("writing CMAP needs root"), "{}", stderr(&out));
    assert_eq!(v.client().cmap_get("p.key").unwrap(), V::U8(1));
}

#[test]
fn a_configured_group_may_write() {
    let v = Vigild::start_with(Some("[cmap]\nwrite_gid = 65534\n"));
    let out = v.cli_as(Some(65534), &["cmap", "set", "g.key", "str", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v.client().cmap_get("g.key").unwrap(), V::Str("hello".into()));
}

#[test]
fn persistent_keys_survive_kill_9() {
    let mut v = Vigild::start_with(Some(
        "[cmap]\npersist_prefixes = [\"keep.\"]\n[cmap.keys]\n\"boot.mode\" = \"str:normal\"\n",
    ));
    let mut c = v.client();
    c.cmap_set("keep.a", V::U64(7), false).unwrap();
    c.cmap_set("flagged", V::Double(1.5), true).unwrap();
    c.cmap_set("gone.b", V::U8(1), false).unwrap();
    c.cmap_inc("keep.a").unwrap();
    assert_eq!(c.cmap_get("boot.mode").unwrap(), V::Str("normal".into()));
    drop(c);
    v.kill9();
    v.spawn();
    let mut c = v.client();
    assert_eq!(c.cmap_get("keep.a").unwrap(), V::U64(8));
    assert_eq!(c.cmap_get("flagged").unwrap(), V::Double(1.5));
    assert_eq!(c.cmap_get("gone.b").unwrap_err().code(), Some(ErrorCode::NotFound));
    c.cmap_delete("keep.a").unwrap();
    drop(c);
    v.kill9();
    v.spawn();
    assert_eq!(
        v.client().cmap_get("keep.a").unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
}

#[test]
fn vigild_keeps_its_own_keys() {
    let v = Vigild::start();
    let mut c = v.client();
    assert_eq!(c.cmap_get("runtime.votequorum.quorate").unwrap(), V::U8(1));
    assert!(matches!(c.cmap_get("runtime.node_name").unwrap(), V::Str(_)));
    let mut t = v.client();
    t.cmap_track_add(CmapMap::Main, "vigil.pmf.kv.", ADD | MODIFY | DELETE | PREFIX, 0)
        .unwrap();
    let pid = v.run(sh("kv", "exec sleep 1000")).main_pid.unwrap();
    wait_for("the tag's keys", || {
        (c.cmap_get("vigil.pmf.kv.pid").ok()? == V::I32(pid)).then_some(())
    });
    assert_eq!(c.cmap_get("vigil.pmf.kv.state").unwrap(), V::Str("running".into()));
    assert!(t.next_notification().unwrap().key.starts_with("vigil.pmf.kv."));
    c.remove("kv", Some(std::time::Duration::from_secs(5))).unwrap();
    wait_for("the tag's keys to go", || {
        c.cmap_get("vigil.pmf.kv.state").is_err().then_some(())
    });
    // Loading a file of KEY TYPE VALUE lines.
    std::fs::write(v.path("keys.txt"), "# comment\nl.a u32 5\nl.b str two words\n-l.a\n").unwrap();
    let out = v.cli(&["cmap", "load", v.path("keys.txt").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.cmap_get("l.b").unwrap(), V::Str("two words".into()));
    assert!(c.cmap_get("l.a").is_err());
}

#[test]
fn tags_whose_names_keys_cannot_hold_get_escaped_keys() {
    let v = Vigild::start();
    let mut c = v.client();
    // Solaris Cluster's tag names have commas; `@` and `+` are tag characters too, none of them key ones.
    for (tag, key) in [
        ("rg,rs,0.svc", "vigil.pmf.rg/2crs/2c0.svc."),
        ("a@b+c", "vigil.pmf.a/40b/2bc."),
    ] {
        let pid = v.run(sh(tag, "exec sleep 1000")).main_pid.unwrap();
        wait_for(&format!("{tag}'s keys"), || {
            (c.cmap_get(&format!("{key}pid")).ok()? == V::I32(pid)).then_some(())
        });
        c.remove(tag, Some(std::time::Duration::from_secs(5))).unwrap();
        wait_for(&format!("{tag}'s keys to go"), || {
            c.cmap_get(&format!("{key}state")).is_err().then_some(())
        });
    }
    // A name too long for a key keeps its tag, without keys.
    let long = "x,".repeat(100);
    v.run(sh(&long, "exec sleep 1000"));
    assert_eq!(v.status(&long).state, "running");
    assert!(c.cmap_iter(CmapMap::Main, "vigil.pmf.x").unwrap().is_empty());
}
