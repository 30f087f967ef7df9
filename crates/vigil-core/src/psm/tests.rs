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
    let ev = r
        .add(cat("mountd"), facts(10, &["mountd", "-n"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
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
    let e = r
        .add(cat("other"), facts(10, &["mountd"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap_err();
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
        r.add(cat("x"), facts(1, &["a"]), PsmCaller::ROOT, 1, &l, T),
        Err(PsmError::NotFound(_))
    ));
    let l = PsmLimits {
        cat_max: 1,
        mem_max: 2,
        ..PsmLimits::default()
    };
    r.add(cat("x"), facts(1, &["a"]), PsmCaller::ROOT, 1, &l, T).unwrap();
    assert!(
        matches!(
            r.add(cat("y"), facts(2, &["a"]), PsmCaller::ROOT, 1, &l, T),
            Err(PsmError::Limit(_))
        ),
        "cat_max"
    );
    r.add(cat("x"), facts(2, &["b"]), PsmCaller::ROOT, 1, &l, T).unwrap();
    assert!(
        matches!(
            r.add(cat("x"), facts(3, &["c"]), PsmCaller::ROOT, 1, &l, T),
            Err(PsmError::Limit(_))
        ),
        "mem_max"
    );
    assert!(PsmLimits::check("psm_mem_max", 0, PsmLimits::MEM_MAX_RANGE).is_err());
}

#[test]
fn exit_keeps_status_until_a_restart_replaces_it() {
    let mut r = Registry::default();
    let l = PsmLimits::default();
    r.add(cat("c"), facts(10, &["/sbin/d", "-x"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    r.add(cat("c"), facts(11, &["/sbin/other"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    r.add(cat("elsewhere"), facts(12, &["/sbin/d"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    let id = ProcId {
        pid: 10,
        start_time: 10,
    };
    assert_eq!(r.exited(id, Exit::Code(7)).len(), 1);
    assert_eq!(r.exited(id, Exit::Code(7)), vec![], "once");
    assert_eq!(r.members[&10].state, "exited");
    for pid in [11, 12] {
        r.exited(
            ProcId {
                pid,
                start_time: pid as u64,
            },
            Exit::Signal(11),
        );
    }
    // psm.h: any exited instance in the target category is replaced, whatever program it ran; the
    // exited member of another category stays.
    let ev = r
        .add(cat("c"), facts(20, &["/sbin/new"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    let removed: Vec<i32> = ev
        .iter()
        .filter_map(|e| match e {
            PsmEvent::InstanceRemove { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [10, 11]);
    assert!(!r.members.contains_key(&10) && !r.members.contains_key(&11));
    assert_eq!(r.members[&12].exit, Some(Exit::Signal(11)));
}

fn owned(pid: i32, argv: &[&str], uid: u32) -> ProcFacts {
    ProcFacts {
        uid,
        ..facts(pid, argv)
    }
}

fn exit(r: &mut Registry, pid: i32, code: u8) {
    let id = ProcId {
        pid,
        start_time: pid as u64,
    };
    assert_eq!(r.exited(id, Exit::Code(code)).len(), 1);
}

#[test]
fn a_user_replaces_only_their_own_exited_instances() {
    let mut r = Registry::default();
    let l = PsmLimits::default();
    let (alice, bob) = (1000, 1001);
    r.add(
        cat("mountd"),
        owned(10, &["/usr/sbin/mountd"], 0),
        PsmCaller::ROOT,
        1,
        &l,
        T,
    )
    .unwrap();
    r.add(
        cat("mountd"),
        owned(11, &["/usr/sbin/mountd"], alice),
        PsmCaller::user(alice),
        1,
        &l,
        T,
    )
    .unwrap();
    r.add(
        cat("mountd"),
        owned(12, &["/bin/bobs"], bob),
        PsmCaller::user(bob),
        1,
        &l,
        T,
    )
    .unwrap();
    exit(&mut r, 10, 3);
    exit(&mut r, 11, 4);
    exit(&mut r, 12, 5);
    // Bob's process posing as the same program replaces only Bob's own exited member, though its
    // argv[0] differs from that member's.
    let ev = r
        .add(
            cat("mountd"),
            owned(20, &["/usr/sbin/mountd"], bob),
            PsmCaller::user(bob),
            1,
            &l,
            T,
        )
        .unwrap();
    assert_eq!(
        ev[0],
        PsmEvent::InstanceRemove {
            category: cat("mountd"),
            pid: 12
        }
    );
    assert_eq!(r.members[&10].exit, Some(Exit::Code(3)), "root's status is kept");
    assert_eq!(r.members[&11].exit, Some(Exit::Code(4)), "alice's status is kept");
    // Root's registration replaces any exited instance of the category.
    let ev = r
        .add(
            cat("mountd"),
            owned(21, &["/usr/sbin/mountd"], 0),
            PsmCaller::ROOT,
            1,
            &l,
            T,
        )
        .unwrap();
    let removed: Vec<i32> = ev
        .iter()
        .filter_map(|e| match e {
            PsmEvent::InstanceRemove { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [10, 11]);
}

#[test]
fn only_an_administrator_creates_a_category_by_adding() {
    let mut r = Registry::default();
    let l = PsmLimits::default();
    let e = r
        .add(cat("new"), owned(10, &["a"], 65534), PsmCaller::user(65534), 1, &l, T)
        .unwrap_err();
    assert!(matches!(e, PsmError::Denied(_)), "{e:?}");
    assert!(e.to_string().contains("only an administrator"), "{e}");
    assert!(r.categories.is_empty() && r.members.is_empty(), "nothing changed");
    r.add(cat("new"), owned(10, &["a"], 65534), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    // Once it exists, anyone registers their own processes in it.
    r.add(cat("new"), owned(11, &["a"], 65534), PsmCaller::user(65534), 1, &l, T)
        .unwrap();
    assert_eq!(r.members.len(), 2);
}

#[test]
fn restored_exited_members_are_replaced_as_live_exits_are() {
    let l = PsmLimits::default();
    let mut before = Registry::default();
    before
        .add(cat("c"), facts(10, &["/sbin/d"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    before
        .add(cat("other"), facts(11, &["/sbin/e"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    before
        .add(cat("c"), facts(12, &["/sbin/f"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
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
    // A new instance in c replaces the exited one there; pid 11, reused by another program in another
    // category, replaces the exited /sbin/e; the live /sbin/f stays.
    let ev = r
        .add(cat("c"), facts(20, &["/sbin/d"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
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
    let ev = r.add(cat("c"), reused, PsmCaller::ROOT, 1, &l, T).unwrap();
    assert_eq!(
        ev[0],
        PsmEvent::InstanceRemove {
            category: cat("other"),
            pid: 11
        }
    );
    assert_eq!(r.members[&11].argv, ["/bin/other"]);
    assert!(!r.members[&11].exited() && !r.members.contains_key(&10) && r.members.contains_key(&12));
    // Nothing exited is left to replace: a third instance replaces nothing.
    let ev = r
        .add(cat("c"), facts(21, &["/sbin/d"]), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
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
    r.add(cat("c"), facts(10, &["p"]), PsmCaller::ROOT, 1, &l, T).unwrap();
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

#[test]
fn a_reused_pid_does_not_erase_another_users_exited_member() {
    let mut r = Registry::default();
    let l = PsmLimits::default();
    let (alice, bob) = (1000, 1001);
    r.add(cat("c"), owned(10, &["a"], 0), PsmCaller::ROOT, 1, &l, T)
        .unwrap();
    r.add(cat("c"), owned(11, &["a"], alice), PsmCaller::user(alice), 1, &l, T)
        .unwrap();
    exit(&mut r, 11, 4);
    // Bob's new process got pid 11 (another start time): registering it would take alice's record.
    let reused = ProcFacts {
        id: ProcId {
            pid: 11,
            start_time: 99,
        },
        ..owned(11, &["b"], bob)
    };
    let e = r
        .add(cat("c"), reused.clone(), PsmCaller::user(bob), 1, &l, T)
        .unwrap_err();
    assert!(
        matches!(e, PsmError::Denied(_)) && e.to_string().contains("owned by uid 1000"),
        "{e}"
    );
    assert_eq!(r.members[&11].exit, Some(Exit::Code(4)), "alice's status is kept");
    // Its owner (or root) may.
    r.add(cat("c"), reused, PsmCaller::ROOT, 1, &l, T).unwrap();
    assert_eq!(r.members[&11].exit, None);
}
