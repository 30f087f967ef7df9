//! The shapes themselves: each view against the JSON text docs/json.md promises.

use serde_json::json;

use super::*;
use crate::msg::{self, CmapValue, ExitStatus};

fn to(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_796_234_400_123), "2026-12-02T18:00:00.123Z");
    assert_eq!(rfc3339(u64::MAX), "9999-12-30T22:00:00.999Z");
}

#[test]
fn exits_are_plain_objects() {
    assert_eq!(to(Exit::from(&ExitStatus::Code(1))), json!({"code": 1}));
    assert_eq!(
        to(Exit::from(&ExitStatus::Signal(15))),
        json!({"signal": 15, "name": "SIGTERM"})
    );
    assert_eq!(to(Exit::from(&ExitStatus::Unknown)), json!({"unknown": true}));
    let last = LastExit {
        pid: 42,
        exit: (&ExitStatus::Signal(9)).into(),
    };
    assert_eq!(to(&last), json!({"pid": 42, "signal": 9, "name": "SIGKILL"}));
    let back: LastExit = serde_json::from_value(to(&last)).unwrap();
    assert_eq!(back, last);
}

fn status() -> msg::TagStatus {
    msg::TagStatus {
        name: "web".into(),
        state: "running".into(),
        reason: None,
        uid: 1000,
        gid: 1000,
        command: vec!["sleep".into(), "60".into()],
        env: vec![("B".into(), "2".into()), ("A".into(), "1 2".into())],
        cwd: None,
        instance: 0,
        program_type: msg::ProgramType::Mon,
        level: -1,
        retries: 3,
        period: 60,
        action: None,
        backoff: Some(msg::Backoff {
            min_ms: 100,
            max_ms: 2000,
        }),
        after: vec![],
        restarts_used: 1,
        starts: 2,
        procs: vec![msg::ProcInfo {
            pid: 7,
            level: 0,
            watched: true,
        }],
        main_pid: Some(7),
        started_ms: Some(1_796_234_400_123),
        last_exit: Some((6, ExitStatus::Code(1))),
        log_path: "/var/log/web.log".into(),
        from_config: false,
        watchdog_ms: None,
        probes: vec![],
        ready: false,
        status_text: None,
    }
}

#[test]
fn a_tag() {
    let v = to(Tag::from(&status()));
    assert_eq!(v["env"], json!({"B": "2", "A": "1 2"}));
    // The environment keeps its order.
    let text = serde_json::to_string(&Tag::from(&status())).unwrap();
    assert!(text.contains(r#""env":{"B":"2","A":"1 2"}"#), "{text}");
    assert_eq!(v["program_type"], "mon");
    assert_eq!(v["procs"], json!([{"pid": 7, "level": 0, "watched": true}]));
    assert_eq!(v["started"], "2026-12-02T18:00:00.123Z");
    assert_eq!(v["started_ms"], 1_796_234_400_123u64);
    assert_eq!(v["last_exit"], json!({"pid": 6, "code": 1}));
    assert_eq!(v["backoff"], json!({"min_ms": 100, "max_ms": 2000}));
    assert!(v.get("node").is_none());
    let back: Tag = serde_json::from_str(&text).unwrap();
    assert_eq!(back, Tag::from(&status()));

    let item = to(TagItem::from(&status()));
    assert_eq!(
        item,
        json!({
            "name": "web", "state": "running", "main_pid": 7,
            "procs": [{"pid": 7, "level": 0, "watched": true}],
            "started": "2026-12-02T18:00:00.123Z", "started_ms": 1_796_234_400_123u64,
            "restarts_used": 1, "retries": 3, "starts": 2,
            "last_exit": {"pid": 6, "code": 1}
        })
    );
}

#[test]
fn events_have_attributes_as_an_object() {
    let e = msg::Event {
        seq: 5,
        time_ms: 1000,
        name: "sys.vigil.pmf.tag.exit".into(),
        node: "n1".into(),
        subject: "web".into(),
        attrs: vec![
            ("pid".into(), msg::Value::Int(7)),
            ("status".into(), msg::Value::Str("exit 1".into())),
            ("counted".into(), msg::Value::Bool(true)),
        ],
    };
    let v = to(Event::from(&e));
    assert_eq!(
        v,
        json!({
            "seq": 5, "time": "1970-01-01T00:00:01.000Z", "time_ms": 1000,
            "name": "sys.vigil.pmf.tag.exit", "node": "n1", "subject": "web",
            "attrs": {"pid": 7, "status": "exit 1", "counted": true}
        })
    );
    let c = to(Event::from(&msg::ClusterEvent { rev: 9, event: e }));
    assert_eq!(c["rev"], 9);
    let back: Event = serde_json::from_value(c.clone()).unwrap();
    assert_eq!(to(back), c);
    assert_eq!(
        to(Lost {
            lost: LostRange::Seq { from: 1, to: 3 }
        }),
        json!({"lost": {"from": 1, "to": 3}})
    );
}

#[test]
fn cmap_values_carry_their_type() {
    assert_eq!(
        to(CmapTyped::from(&CmapValue::U32(3))),
        json!({"type": "u32", "value": 3})
    );
    assert_eq!(
        to(CmapTyped::from(&CmapValue::I8(-3))),
        json!({"type": "i8", "value": -3})
    );
    assert_eq!(
        to(CmapTyped::from(&CmapValue::Float(0.1))),
        json!({"type": "flt", "value": 0.1})
    );
    assert_eq!(
        to(CmapTyped::from(&CmapValue::Double(f64::INFINITY))),
        json!({"type": "dbl", "value": "inf"})
    );
    assert_eq!(
        to(CmapTyped::from(&CmapValue::Binary(vec![0, 0xff]))),
        json!({"type": "bin", "value": "00ff"})
    );
    assert_eq!(
        to(CmapTyped::from(&CmapValue::StrBytes(vec![b'a', 0xff]))),
        json!({"type": "str", "value": "a\u{fffd}", "hex": "61ff"})
    );
    let e = to(CmapEntry::from(&msg::CmapEntry {
        key: "a.b".into(),
        value: CmapValue::Str("x y".into()),
    }));
    assert_eq!(e, json!({"key": "a.b", "type": "str", "value": "x y"}));
    let back: CmapEntry = serde_json::from_value(e).unwrap();
    assert_eq!(back.key, "a.b");
}

fn parse(v: serde_json::Value) -> Result<CmapValue, String> {
    let t: CmapTyped = serde_json::from_value(v).map_err(|e| e.to_string())?;
    CmapValue::try_from(&t).map_err(|e| e.to_string())
}

#[test]
fn cmap_values_come_in_checked() {
    assert_eq!(parse(json!({"type": "u8", "value": 255})), Ok(CmapValue::U8(255)));
    assert_eq!(
        parse(json!({"type": "u8", "value": 300})),
        Err("CMAP value of type u8: 300 is out of range".into())
    );
    assert_eq!(
        parse(json!({"type": "u32", "value": -1})),
        Err("CMAP value of type u32: -1 is out of range".into())
    );
    assert_eq!(
        parse(json!({"type": "i64", "value": "3"})),
        Err("CMAP value of type i64: \"3\" is not an integer".into())
    );
    assert_eq!(
        parse(json!({"type": "u64", "value": u64::MAX})),
        Ok(CmapValue::U64(u64::MAX))
    );
    assert_eq!(parse(json!({"type": "dbl", "value": 2})), Ok(CmapValue::Double(2.0)));
    assert_eq!(
        parse(json!({"type": "flt", "value": 1e300})).unwrap_err(),
        "CMAP value of type flt: 1e300 is out of range"
    );
    assert_eq!(
        parse(json!({"type": "str", "value": "x"})),
        Ok(CmapValue::Str("x".into()))
    );
    assert_eq!(
        parse(json!({"type": "bin", "value": "00ff"})),
        Ok(CmapValue::Binary(vec![0, 255]))
    );
    assert!(parse(json!({"type": "bin", "value": "0g"})).is_err());
    assert!(parse(json!({"type": "u128", "value": 1})).is_err());
    assert_eq!(
        parse(json!({"type": "str", "value": "a?", "hex": "61ff"})),
        Ok(CmapValue::StrBytes(vec![b'a', 0xff]))
    );
    // Every value goes out and comes back as it was.
    for v in [
        CmapValue::I16(-300),
        CmapValue::U16(65535),
        CmapValue::I32(i32::MIN),
        CmapValue::I64(i64::MIN),
        CmapValue::Float(1.5),
        CmapValue::Double(-0.25),
        CmapValue::Str(String::new()),
    ] {
        assert_eq!(parse(to(CmapTyped::from(&v))), Ok(v));
    }
}

#[test]
fn psm_sam_nodes_quorum() {
    let m = msg::PsmMember {
        listidx: 1,
        listcnt: 1,
        total: 1,
        pid: 7,
        exitcode: Some(256),
        flags: crate::PSM_FL_EXIT,
        name: "1-7".into(),
        state: "up".into(),
        argv: vec!["x".into()],
        category: "db".into(),
        node: "n1".into(),
        exit: Some(ExitStatus::Code(1)),
        uid: 0,
        start_time: 99,
        added_ms: 0,
    };
    let v = to(PsmMember::from(&m));
    assert_eq!(v["exit"], json!({"code": 1}));
    assert_eq!(v["exited"], true);
    assert_eq!(v["argv_truncated"], false);
    assert_eq!(v["wait_status"], 256);
    assert!(v.get("flags").is_none() && v.get("listidx").is_none());

    let s = msg::SamProcess {
        pid: 3,
        uid: 0,
        name: "app".into(),
        info: msg::SamInfo {
            instance: 1,
            child: 4,
            interval_ms: 1000,
            policy: crate::SAM_POLICY_RESTART | crate::SAM_POLICY_QUORUM,
            warn_signal: 15,
            state: msg::SamState::WaitingForQuorum,
        },
        data_size: 0,
        last_updated_ms: 0,
        registered_ms: 1,
        connected: true,
    };
    let v = to(SamApp::from(&s));
    assert_eq!(v["state"], "waiting_for_quorum");
    assert_eq!(v["recovery"], "restart");
    assert_eq!(v["quorum"], true);
    assert_eq!(v["cmap"], false);
    assert_eq!(v["warn_signal_name"], "SIGTERM");
    assert_eq!(v["last_heartbeat"], json!(null));

    let n = msg::NodeInfo {
        name: "a".into(),
        id: 1,
        up: false,
        since_ms: 0,
        address: "/s".into(),
        pid: 1,
        version: "1".into(),
        this_node: true,
    };
    assert_eq!(to(Node::from(&n))["state"], "down");

    let q = Quorum::new(true, &CmapValue::U32(2), &CmapValue::U32(3));
    assert_eq!(to(q), json!({"quorate": true, "votes": 2, "expected_votes": 3}));
}

#[test]
fn done() {
    let d = Done {
        subject: "web".into(),
        done: "stopped".into(),
        state: Some("stopped".into()),
        details: Pairs(vec![("signal".into(), AttrValue::Str("SIGTERM".into()))]),
    };
    assert_eq!(
        to(&d),
        json!({"subject": "web", "done": "stopped", "state": "stopped", "details": {"signal": "SIGTERM"}})
    );
}
