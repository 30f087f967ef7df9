use super::*;

fn cat(s: &str) -> CategoryName {
    CategoryName::new(s).unwrap()
}

fn facts(pid: i32, argv: &[&str]) -> ProcFacts {
    ProcFacts {
        id: ProcId {
            pid,
            start_time: pid as u64,
        },
        argv: argv.iter().map(|s| s.to_string()).collect(),
        uid: 0,
    }
}

const T: Timestamp = Timestamp(0);

#[test]
fn add_autocreates_and_refuses_a_second_registration() {
    let mut r = Registry::default();
    let l = PsmLimits::default();
    let ev = r.add(cat("mountd"), facts(10, &["mountd", "-n"]), 1, &l, T).unwrap();
    assert_eq!(
        ev,
        vec![
            PsmEvent::CategoryCreate(cat("mountd")),
            PsmEvent::InstanceCreate {
                category: cat("mountd"),
                pid: 10
            }
        ]
    );
    assert_eq!(r.members[&10].name, "1-10");
    assert_eq!(r.members[&10].state, "running");
    let e = r.add(cat("other"), facts(10, &["mountd"]), 1, &l, T).unwrap_err();
    assert_eq!(
        e,
        PsmError::Already {
            pid: 10,
            category: cat("mountd")
        },
        "one category per instance"
    );
}

#[test]
fn autocat_off_and_limits() {
    let mut r = Registry::default();
    let l = PsmLimits {
        autocat: false,
        ..PsmLimits::default()
    };
    assert!(matches!(
        r.add(cat("x"), facts(1, &["a"]), 1, &l, T),
        Err(PsmError::NotFound(_))
    ));
    let l = PsmLimits {
        cat_max: 1,
        mem_max: 2,
        ..PsmLimits::default()
    };
    r.add(cat("x"), facts(1, &["a"]), 1, &l, T).unwrap();
    assert!(
        matches!(r.add(cat("y"), facts(2, &["a"]), 1, &l, T), Err(PsmError::Limit(_))),
        "cat_max"
    );
    r.add(cat("x"), facts(2, &["b"]), 1, &l, T).unwrap();
    assert!(
        matches!(r.add(cat("x"), facts(3, &["c"]), 1, &l, T), Err(PsmError::Limit(_))),
        "mem_max"
    );
    assert!(PsmLimits::check("psm_mem_max", 0, PsmLimits::MEM_MAX_RANGE).is_err());
}

#[test]
fn exit_keeps_status_until_a_restart_replaces_it() {
    let mut r = Registry::default();
    let l = PsmLimits::default();
    r.add(cat("c"), facts(10, &["/sbin/d", "-x"]), 1, &l, T).unwrap();
    r.add(cat("c"), facts(11, &["/sbin/other"]), 1, &l, T).unwrap();
    let id = ProcId {
        pid: 10,
        start_time: 10,
    };
    assert_eq!(r.exited(id, Exit::Code(7)).len(), 1);
    assert_eq!(r.exited(id, Exit::Code(7)), vec![], "once");
    assert_eq!(r.members[&10].state, "exited");
    r.exited(
        ProcId {
            pid: 11,
            start_time: 11,
        },
        Exit::Signal(11),
    );
    // A new instance of /sbin/d replaces the exited one, not the exited /sbin/other.
    let ev = r.add(cat("c"), facts(20, &["/sbin/d"]), 1, &l, T).unwrap();
    assert_eq!(
        ev[0],
        PsmEvent::InstanceRemove {
            category: cat("c"),
            pid: 10
        }
    );
    assert!(!r.members.contains_key(&10) && r.members.contains_key(&11));
}

#[test]
fn restored_exited_members_are_replaced_as_live_exits_are() {
    let l = PsmLimits::default();
    let mut before = Registry::default();
    before.add(cat("c"), facts(10, &["/sbin/d"]), 1, &l, T).unwrap();
    before.add(cat("c"), facts(11, &["/sbin/e"]), 1, &l, T).unwrap();
    before.add(cat("c"), facts(12, &["/sbin/f"]), 1, &l, T).unwrap();
    for pid in [10, 11] {
        let id = ProcId {
            pid,
            start_time: pid as u64,
        };
        before.exited(id, Exit::Code(1));
    }
    // A registry loaded from what was stored behaves as the one that saw the exits.
    let mut r = Registry {
        categories: before.categories.clone(),
        ..Registry::default()
    };
    for m in before.members.values() {
        r.restore(m.clone());
    }
    assert_eq!(r, before);
    // A new /sbin/d replaces the exited one; pid 11, reused by another program, replaces the exited
    // /sbin/e; the live /sbin/f stays.
    let ev = r.add(cat("c"), facts(20, &["/sbin/d"]), 1, &l, T).unwrap();
    assert_eq!(
        ev[0],
        PsmEvent::InstanceRemove {
            category: cat("c"),
            pid: 10
        }
    );
    let reused = ProcFacts {
        id: ProcId {
            pid: 11,
            start_time: 99,
        },
        ..facts(11, &["/bin/other"])
    };
    let ev = r.add(cat("c"), reused, 1, &l, T).unwrap();
    assert_eq!(
        ev[0],
        PsmEvent::InstanceRemove {
            category: cat("c"),
            pid: 11
        }
    );
    assert_eq!(r.members[&11].argv, ["/bin/other"]);
    assert!(!r.members[&11].exited() && !r.members.contains_key(&10) && r.members.contains_key(&12));
    // Nothing exited is left to replace: a third /sbin/d replaces nothing.
    let ev = r.add(cat("c"), facts(21, &["/sbin/d"]), 1, &l, T).unwrap();
    assert!(
        !ev.iter().any(|e| matches!(e, PsmEvent::InstanceRemove { .. })),
        "{ev:?}"
    );
}

#[test]
fn argv_truncation() {
    let argv: Vec<String> = vec!["prog".into(), "a".repeat(20)];
    assert_eq!(truncate_argv(&argv, 64), (argv.clone(), false));
    let (cut, trunc) = truncate_argv(&argv, 16);
    assert!(trunc);
    assert_eq!(cut, vec!["prog".to_string(), "a".repeat(10)], "4 + 1 + 10 + NUL = 16");
}

#[test]
fn remove_state_and_categories() {
    let mut r = Registry::default();
    let l = PsmLimits::default();
    r.add(cat("c"), facts(10, &["p"]), 1, &l, T).unwrap();
    assert!(matches!(r.remove_category(&cat("c")), Err(PsmError::NotEmpty { .. })));
    assert!(
        r.set_state(Some(&cat("c")), 10, &"x".repeat(32), &l).is_err(),
        "32 + NUL > 32"
    );
    r.set_state(Some(&cat("c")), 10, &"x".repeat(31), &l).unwrap();
    r.set_state(Some(&cat("c")), 10, "ready", &l).unwrap();
    assert!(matches!(r.remove(Some(&cat("d")), 10), Err(PsmError::NotFound(_))));
    r.remove(None, 10).unwrap();
    assert_eq!(
        r.remove_category(&cat("c")).unwrap(),
        vec![PsmEvent::CategoryRemove(cat("c"))]
    );
    assert!(CategoryName::new("a b").is_err());
}
