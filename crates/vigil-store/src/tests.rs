use super::*;

pub(crate) fn tag(name: &str) -> TagRecord {
    TagRecord {
        name: name.into(),
        command: vec!["sleep".into(), "1".into()],
        env: vec![("A".into(), "1".into())],
        cwd: None,
        instance: 0,
        program_type: 0,
        level: -1,
        retries: 3,
        period: 60,
        action: None,
        backoff_ms: None,
        after: vec![],
        stop_signal: 15,
        stop_timeout_ms: 10_000,
        uid: 0,
        gid: 0,
        from_config: false,
        state: StateRecord::Running,
        enabled: true,
        procs: vec![ProcRecord {
            pid: 42,
            start_time: 7,
            depth: 0,
        }],
        main: Some(ProcRecord {
            pid: 42,
            start_time: 7,
            depth: 0,
        }),
        budget_ms: vec![1, 2],
        started_ms: Some(5),
        last_exit: Some((41, ExitRecord::Signal(9))),
        starts: 3,
        quick_failures: 0,
        pending: None,
        watchdog_ms: None,
        probes: vec![],
        ready: false,
        status_text: None,
        supervision: SupervisionRecord::default(),
        res: ResRecord::default(),
    }
}

pub(crate) fn event(seq: u64) -> EventRecord {
    EventRecord {
        seq,
        time_ms: seq * 10,
        name: "sys.vigil.pmf.tag.start".into(),
        node: "n1".into(),
        subject: "a".into(),
        attrs: vec![("pid".into(), AttrRecord::Int(42))],
    }
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let s = Store::open(&path).unwrap();
        s.commit(&Batch {
            put_tags: vec![tag("a"), tag("b")],
            events: vec![event(1), event(2)],
            ..Default::default()
        })
        .unwrap();
        s.commit(&Batch {
            delete_tags: vec!["b".into()],
            events: vec![event(3)],
            ..Default::default()
        })
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.tags().unwrap(), vec![tag("a")]);
    assert_eq!(s.last_seq().unwrap(), 3);
    let seqs: Vec<u64> = s.events_after(1, 10).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [2, 3]);
}

#[test]
fn trims_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s")).unwrap();
    let events: Vec<EventRecord> = (1..=EVENTS_KEPT + 1001).map(event).collect();
    s.commit(&Batch {
        events,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.first_seq().unwrap(), 1001);
    let first = s.events_after(0, 1).unwrap();
    assert_eq!(first[0].seq, 1001, "events older than the last {EVENTS_KEPT} are gone");
}

#[test]
fn refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema", SCHEMA_VERSION + 1)
            .unwrap();
        tx.commit().unwrap();
    }
    assert!(matches!(Store::open(&path), Err(StoreError::TooNew { .. })));
}

/// A state file written by schema 1 (the first release) is migrated: its tags load, its events gain a node
/// and typed attributes.
#[test]
fn migrates_schema_1_fixture() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema1.redb");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&fixture, &copy).unwrap();
    let s = Store::open(&copy).unwrap();
    assert!(!s.is_fresh());
    assert_eq!(s.tags().unwrap(), vec![tag("fixture")]);
    assert_eq!(s.last_seq().unwrap(), 1);
    let e = &s.events_after(0, 10).unwrap()[0];
    assert_eq!(
        (e.seq, e.node.as_str(), e.name.as_str()),
        (1, "", "sys.vigil.pmf.tag.start")
    );
    assert!(s.members().unwrap().is_empty() && s.categories().unwrap().is_empty());
    drop(s);
    // It opens again at the current schema, with no second migration.
    assert_eq!(Store::open(&copy).unwrap().events_after(0, 10).unwrap().len(), 1);
}

/// A state file of schema 3 (before health checks): its tags load without checks, and a tag with checks
/// round-trips after the migration.
#[test]
fn migrates_schema_3_fixture() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema3.redb");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&fixture, &copy).unwrap();
    let s = Store::open(&copy).unwrap();
    let mut want = tag("fixture");
    want.state = StateRecord::Stopping {
        deadline_ms: 9,
        then: StopModeRecord::Restart,
        killed: false,
    };
    assert_eq!(s.tags().unwrap(), vec![want]);
    assert_eq!(s.cmap().unwrap(), vec![("app.port".to_string(), CmapRecord::U16(8080))]);
    assert_eq!(s.last_seq().unwrap(), 1);
    let mut checked = tag("checked");
    checked.watchdog_ms = Some(2000);
    checked.probes = vec![ProbeRecord {
        check: ProbeCheckRecord::Http {
            host: "127.0.0.1".into(),
            port: 8080,
            path: "/health".into(),
        },
        interval_ms: 1000,
        timeout_ms: 500,
        threshold: 3,
    }];
    checked.ready = true;
    checked.status_text = Some("serving".into());
    checked.state = StateRecord::Stopping {
        deadline_ms: 1,
        then: StopModeRecord::Recover,
        killed: true,
    };
    s.commit(&Batch {
        put_tags: vec![checked.clone()],
        ..Default::default()
    })
    .unwrap();
    drop(s);
    let s = Store::open(&copy).unwrap();
    assert_eq!(
        s.tags().unwrap().into_iter().find(|t| t.name == "checked"),
        Some(checked)
    );
}

/// A state file of schema 4 (before supervision settings): its tags load with the settings they
/// behaved by, and a tag with settings and the new `Exited` state round-trips after the migration.
#[test]
fn migrates_schema_4_fixture() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema4.redb");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&fixture, &copy).unwrap();
    let s = Store::open(&copy).unwrap();
    let mut fixture = tag("fixture");
    fixture.watchdog_ms = Some(2000);
    fixture.ready = true;
    fixture.status_text = Some("serving".into());
    let mut done = tag("done");
    done.state = StateRecord::Stopped;
    done.procs = vec![];
    assert_eq!(s.tags().unwrap(), vec![done, fixture]);
    let mut exited = tag("exited");
    exited.state = StateRecord::Exited;
    exited.supervision = SupervisionRecord {
        restart: 1,
        success_exit_codes: vec![0, 3],
        success_signals: vec![15],
        start_secs_ms: 1500,
        notify: true,
        up: false,
    };
    s.commit(&Batch {
        put_tags: vec![exited.clone()],
        ..Default::default()
    })
    .unwrap();
    drop(s);
    let s = Store::open(&copy).unwrap();
    assert_eq!(s.tags().unwrap().into_iter().find(|t| t.name == "exited"), Some(exited));
}

#[test]
fn psm_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let m = MemberRecord {
        pid: 7,
        start_time: 9,
        category: "c".into(),
        name: "1-7".into(),
        state: "running".into(),
        argv: vec!["x".into()],
        argv_truncated: false,
        exit: Some(ExitRecord::Code(7)),
        uid: 0,
        added_ms: 1,
    };
    {
        let s = Store::open(&path).unwrap();
        assert!(s.is_fresh());
        let b = Batch {
            put_categories: vec![("c".into(), 1), ("d".into(), 2)],
            put_members: vec![m.clone()],
            ..Default::default()
        };
        s.commit(&b).unwrap();
        s.commit(&Batch {
            delete_categories: vec!["d".into()],
            ..Default::default()
        })
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.categories().unwrap(), vec![("c".to_string(), 1)]);
    assert_eq!(s.members().unwrap(), vec![m]);
    s.commit(&Batch {
        delete_members: vec![7],
        ..Default::default()
    })
    .unwrap();
    assert!(s.members().unwrap().is_empty());
}

#[test]
fn sam_records_and_their_data_round_trip_and_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let rec = |pid| SamRecord {
        pid,
        start_time: 9,
        uid: 1000,
        name: "app".into(),
        instance: 3,
        child: pid + 1,
        interval_ms: 500,
        policy: 0x12,
        warn_signal: 15,
        state: 1,
        last_updated_ms: 7,
        registered_ms: 5,
    };
    {
        let s = Store::open(&path).unwrap();
        let mut b = Batch::default();
        b.put_sam.push(rec(10));
        b.put_sam.push(rec(20));
        b.put_sam_data.push((10, Some(vec![1; 1 << 20])));
        b.put_sam_data.push((20, Some(vec![2])));
        s.commit(&b).unwrap();
        let mut b = Batch::default();
        b.put_sam_data.push((20, None));
        s.commit(&b).unwrap();
    }
    let s = Store::open(&path).unwrap();
    let got = s.sam().unwrap();
    assert_eq!(got, vec![(rec(10), Some(vec![1; 1 << 20])), (rec(20), None)]);
    let mut b = Batch::default();
    b.delete_sam.push(10);
    s.commit(&b).unwrap();
    assert_eq!(
        s.sam().unwrap(),
        vec![(rec(20), None)],
        "the record's data goes with it"
    );
}

#[test]
fn state_file_is_private_new_and_existing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    drop(Store::open(&path).unwrap());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o600);
    // A file an older vigild left world-readable is made private on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn state_file_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"x").unwrap();
    let path = dir.path().join("state.redb");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::Refused { .. })));
    assert_eq!(std::fs::read(&target).unwrap(), b"x");
}

#[test]
fn batches_kept_apart_commit_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut store = Store::open(&path).unwrap();
    let first = Batch {
        put_tags: vec![tag("a"), tag("b")],
        events: vec![event(1)],
        ..Default::default()
    };
    let second = Batch {
        delete_tags: vec!["a".into()],
        events: vec![event(2)],
        ..Default::default()
    };
    let third = Batch {
        put_tags: vec![tag("c")],
        delete_tags: vec!["b".into()],
        ..Default::default()
    };
    store.commit_all(&[first, second, third]).unwrap();
    store.reopen().unwrap();
    store.probe().unwrap();
    let names: Vec<String> = store.tags().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["c"]);
    assert_eq!(store.last_seq().unwrap(), 2);
}

#[test]
fn appended_batches_commit_as_if_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.redb")).unwrap();
    store
        .commit(&Batch {
            put_tags: vec![tag("old")],
            put_cmap: vec![("k.old".into(), CmapRecord::U8(1))],
            ..Default::default()
        })
        .unwrap();
    let mut kept = Batch {
        put_tags: vec![tag("a"), tag("b")],
        delete_tags: vec!["old".into()],
        put_cmap: vec![("k.a".into(), CmapRecord::U8(1))],
        events: vec![event(1), event(2)],
        ..Default::default()
    };
    let mut a2 = tag("a");
    a2.starts = 99;
    kept.append(
        Batch {
            put_tags: vec![a2, tag("old")],
            delete_tags: vec!["b".into()],
            delete_cmap: vec!["k.a".into(), "k.old".into()],
            events: vec![event(3)],
            ..Default::default()
        },
        2,
    );
    // One version of each record is kept, and events only as far as a commit would keep them.
    assert_eq!(kept.put_tags.len(), 2);
    assert_eq!(kept.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    store.commit(&kept).unwrap();
    let mut tags = store.tags().unwrap();
    tags.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "old"]);
    assert_eq!(tags[0].starts, 99);
    assert!(store.cmap().unwrap().is_empty());
    assert_eq!(store.last_seq().unwrap(), 3);
}

/// A state file of schema 5 (before resources): its tags load with none (user and group names, limits...
/// empty) and keep their supervision settings, and a tag with resources round-trips after the migration.
#[test]
fn migrates_schema_5_fixture() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema5.redb");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&fixture, &copy).unwrap();
    let s = Store::open(&copy).unwrap();
    let mut want = tag("fixture");
    want.watchdog_ms = Some(2000);
    want.ready = true;
    want.status_text = Some("serving".into());
    want.uid = 33;
    want.gid = 33;
    want.supervision = SupervisionRecord {
        restart: 1,
        success_exit_codes: vec![0, 3],
        success_signals: vec![15],
        start_secs_ms: 1500,
        notify: true,
        up: true,
    };
    let mut exited = tag("exited");
    exited.state = StateRecord::Exited;
    exited.procs = vec![];
    exited.main = None;
    exited.supervision.restart = 2;
    exited.supervision.up = false;
    assert_eq!(s.tags().unwrap(), vec![exited, want]);
    let mut with = tag("with");
    with.res = ResRecord {
        user: Some("www-data".into()),
        group: Some("www-data".into()),
        groups: vec![33, 4],
        limits: vec![LimitRecord {
            name: "nofile".into(),
            soft: Some(4096),
            hard: None,
        }],
        nice: Some(5),
        umask: Some(0o27),
        stderr_log: Some("/var/log/with.err".into()),
        log_timestamps: true,
        tag_group: Some("web".into()),
    };
    s.commit(&Batch {
        put_tags: vec![with.clone()],
        ..Default::default()
    })
    .unwrap();
    drop(s);
    let s = Store::open(&copy).unwrap();
    assert!(s.tags().unwrap().contains(&with));
}
