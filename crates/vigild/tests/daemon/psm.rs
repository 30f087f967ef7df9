//! The process set manager and the event stream, against a real vigild and real processes that vigild
//! did not start.

use std::process::{Child, Command};

use vigil_client::proto::{ErrorCode, ExitStatus, PsmNode, Value, PSM_FL_ARGTRUNC, PSM_FL_EXIT};
use vigil_client::StreamItem;

use crate::harness::*;

fn local() -> PsmNode {
    PsmNode::local()
}

/// A process started by the test, not by vigild: its status must still be learnt.
fn outsider(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn add(c: &mut vigil_client::Client, cat: &str, pid: i32) -> Result<(), vigil_client::ClientError> {
    psm_add(c, cat, pid)
}

fn member_exit(v: &Vigild, pid: i32) -> (Option<u32>, Option<ExitStatus>) {
    wait_for("the member to be reported exited", || {
        let m = v.client().psm_get(&local(), None, Some(pid)).ok()?.remove(0);
        (m.flags & PSM_FL_EXIT != 0).then_some((m.exitcode, m.exit))
    })
}

#[test]
fn exit_status_of_processes_vigild_did_not_start() {
    let v = Vigild::start();
    let mut seven = outsider("read x; exit 7");
    let mut segv = outsider("read x; kill -SEGV $$");
    let (p7, p11) = (seven.id() as i32, segv.id() as i32);
    let mut c = v.client();
    add(&mut c, "outsiders", p7).unwrap();
    add(&mut c, "outsiders", p11).unwrap();
    let m = c.psm_get(&local(), Some("outsiders"), None).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].listidx, m[0].listcnt, m[0].total, m[1].listidx), (1, 2, 2, 2));
    assert_eq!(m[0].state, "running");
    assert_eq!(m[0].name, format!("1-{}", m[0].pid));
    assert_eq!(m[0].argv, ["sh", "-c", "read x; exit 7"]);
    // Let them go (stdin closes), and reap them as their real parent does.
    drop(seven.stdin.take());
    drop(segv.stdin.take());
    let _ = seven.wait();
    let _ = segv.wait();
    assert_eq!(member_exit(&v, p7), (Some(0x700), Some(ExitStatus::Code(7))));
    assert_eq!(member_exit(&v, p11), (Some(11), Some(ExitStatus::Signal(11))));
    let m = v.client().psm_get(&local(), None, Some(p7)).unwrap().remove(0);
    assert_eq!(m.state, "exited");
    let ev = v
        .events()
        .into_iter()
        .find(|e| e.name == "sys.unix.psm.instance.exited" && e.attr("pid") == Some(&Value::Int(p7.into())))
        .unwrap();
    assert_eq!(ev.attr("status"), Some(&Value::Int(0x700)));
    assert_eq!(ev.attr("category"), Some(&Value::Str("outsiders".into())));
}

#[test]
fn every_error_case() {
    let v = Vigild::start_with(Some(
        "[psm]\npsm_mem_max = 3\npsm_cat_max = 2\ncategories = [\"declared\"]\n",
    ));
    let mut c = v.client();
    let code = |r: Result<(), vigil_client::ClientError>| r.unwrap_err().code().unwrap();
    // ESRCH: a pid that is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id() as i32;
    gone.wait().unwrap();
    assert_eq!(code(add(&mut c, "declared", gone_pid)), ErrorCode::NoProcess);
    assert_eq!(code(add(&mut c, "declared", -5)), ErrorCode::NoProcess);
    // EALREADY: one category per running instance.
    let a = outsider("read x");
    add(&mut c, "declared", a.id() as i32).unwrap();
    let e = add(&mut c, "other", a.id() as i32).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyExists));
    assert!(e.to_string().contains("already registered in category declared"), "{e}");
    // ENOSPC: categories and members.
    let b = outsider("read x");
    add(&mut c, "second", b.id() as i32).unwrap();
    let d = outsider("read x");
    let e = add(&mut c, "third", d.id() as i32).unwrap_err();
    assert_eq!(e.code().unwrap(), ErrorCode::LimitExceeded, "{e}");
    add(&mut c, "second", d.id() as i32).unwrap();
    let e4 = outsider("read x");
    let e = add(&mut c, "second", e4.id() as i32).unwrap_err();
    assert!(e.to_string().contains("psm_mem_max"), "{e}");
    // State strings past the limit, unknown members, bad names, other nodes.
    assert_eq!(
        code(c.psm_set_state(&local(), None, a.id() as i32, &"s".repeat(40))),
        ErrorCode::LimitExceeded
    );
    c.psm_set_state(&local(), Some("declared"), a.id() as i32, "ready")
        .unwrap();
    assert_eq!(
        code(c.psm_set_state(&local(), Some("second"), a.id() as i32, "x")),
        ErrorCode::NotFound
    );
    assert_eq!(code(c.psm_remove(&local(), None, 999_999)), ErrorCode::NotFound);
    assert_eq!(code(add(&mut c, "bad name", a.id() as i32)), ErrorCode::InvalidArgument);
    let e = c.psm_add(&PsmNode("zeus".into()), "declared", 1).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unsupported));
    assert!(e.to_string().contains("need cluster mode"), "{e}");
    let e = c.psm_get(&PsmNode("a,b".into()), None, None).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unsupported));
    // A non-empty category is refused with its members named.
    let e = c.psm_category_remove(&local(), "second").unwrap_err();
    assert!(e.to_string().contains(&b.id().to_string()), "{e}");
    // Nothing above changed anything.
    let members = c.psm_get(&local(), None, None).unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().find(|m| m.pid == a.id() as i32).unwrap().state, "ready");
    for mut p in [a, b, d, e4] {
        let _ = p.kill();
        let _ = p.wait();
    }
}

#[test]
fn autocat_off_refuses_missing_categories() {
    let v = Vigild::start_with(Some("[psm]\npsm_mem_autocat = 0\n"));
    let mut p = outsider("read x");
    let e = add(&mut v.client(), "nope", p.id() as i32).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    v.client().psm_category_add(&local(), "yes").unwrap();
    add(&mut v.client(), "yes", p.id() as i32).unwrap();
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn argv_is_truncated_and_flagged() {
    let v = Vigild::start_with(Some("[psm]\npsm_argv_max = 16\n"));
    let mut p = outsider("read x; echo a-long-argument-that-does-not-fit");
    add(&mut v.client(), "c", p.id() as i32).unwrap();
    let m = v.client().psm_get(&local(), Some("c"), None).unwrap().remove(0);
    assert_ne!(m.flags & PSM_FL_ARGTRUNC, 0);
    assert_eq!(m.argv.join("\0").len() + 1, 16, "{:?}", m.argv);
    // Out of range settings are refused (ENOSPC in Tru64's words).
    std::fs::write(v.path("vigil.toml"), "[psm]\npsm_argv_max = 5\n").unwrap();
    let out = v.cli(&["reload"]);
    assert!(stderr(&out).contains("psm_argv_max = 5 is outside"), "{}", stderr(&out));
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn a_restarted_instance_replaces_the_exited_one() {
    let v = Vigild::start();
    let mut first = outsider("read x");
    let p1 = first.id() as i32;
    add(&mut v.client(), "svc", p1).unwrap();
    drop(first.stdin.take());
    let _ = first.wait();
    member_exit(&v, p1);
    // The exit status stays until the program comes back.
    assert_eq!(v.client().psm_get(&local(), Some("svc"), None).unwrap().len(), 1);
    let mut second = outsider("read x");
    let p2 = second.id() as i32;
    add(&mut v.client(), "svc", p2).unwrap();
    let m = v.client().psm_get(&local(), Some("svc"), None).unwrap();
    assert_eq!(m.iter().map(|m| m.pid).collect::<Vec<_>>(), [p2]);
    let names: Vec<String> = v
        .events()
        .into_iter()
        .filter(|e| e.subject == "svc")
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [
            "sys.unix.psm.category.create",
            "sys.unix.psm.instance.create",
            "sys.unix.psm.instance.exited",
            "sys.unix.psm.instance.remove",
            "sys.unix.psm.instance.create",
        ]
    );
    let _ = second.kill();
    let _ = second.wait();
}

#[test]
fn members_survive_kill_9_of_vigild() {
    let mut v = Vigild::start();
    let mut stays = outsider("read x");
    let mut dies = outsider("read x");
    let (ps, pd) = (stays.id() as i32, dies.id() as i32);
    add(&mut v.client(), "k", ps).unwrap();
    add(&mut v.client(), "k", pd).unwrap();
    v.client().psm_set_state(&local(), None, ps, "serving").unwrap();
    v.kill9();
    drop(dies.stdin.take());
    let _ = dies.wait();
    v.spawn();
    assert_eq!(
        member_exit(&v, pd),
        (None, Some(ExitStatus::Unknown)),
        "died while vigild was away: unknown, not 0"
    );
    let m = v.client().psm_get(&local(), None, Some(ps)).unwrap().remove(0);
    assert_eq!((m.state.as_str(), m.flags & PSM_FL_EXIT), ("serving", 0));
    // And it is still watched.
    drop(stays.stdin.take());
    let _ = stays.wait();
    // `read` at end of input fails: the shell exits 1.
    assert_eq!(member_exit(&v, ps), (Some(0x100), Some(ExitStatus::Code(1))));
}

#[test]
fn concurrent_changes_are_posted_in_order_and_replay_after_reconnect() {
    let v = Vigild::start();
    let start = v.client().daemon_status().unwrap().last_seq;
    let mut procs: Vec<Child> = (0..8).map(|_| outsider("read x")).collect();
    let pids: Vec<i32> = procs.iter().map(|p| p.id() as i32).collect();
    let socket = v.socket();
    let threads: Vec<_> = pids
        .iter()
        .map(|&pid| {
            let socket = socket.clone();
            std::thread::spawn(move || add(&mut vigil_client::Client::connect(&socket).unwrap(), "conc", pid))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    for p in &mut procs {
        drop(p.stdin.take());
        let _ = p.wait();
    }
    for &pid in &pids {
        member_exit(&v, pid);
    }
    // Read half the stream, disconnect, and resume from the last seen number.
    let mut c = v.client();
    let filter = vigil_client::proto::EventFilter {
        names: vec!["sys.unix.psm.instance".into()],
        ..Default::default()
    };
    c.subscribe_filtered(Some(start), filter.clone()).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 8 {
        seen.push(c.next_event().unwrap());
    }
    drop(c);
    let mut c = v.client();
    c.subscribe_filtered(Some(seen.last().unwrap().seq), filter).unwrap();
    while seen.len() < 16 {
        seen.push(c.next_event().unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq), "in order, no repeat");
    for &pid in &pids {
        let at = |name: &str| {
            seen.iter()
                .position(|e| e.name == name && e.attr("pid") == Some(&Value::Int(pid.into())))
        };
        assert!(at("sys.unix.psm.instance.create").unwrap() < at("sys.unix.psm.instance.exited").unwrap());
    }
}

#[test]
fn a_slow_subscriber_is_told_what_it_lost() {
    // Restart-storm throttling off: the flood below is a storm on purpose.
    let v = Vigild::start_with(Some("[daemon]\nsubscriber_queue = 8\nstorm = \"off\"\n"));
    let start = v.client().daemon_status().unwrap().last_seq;
    let mut slow = v.client();
    slow.subscribe(None).unwrap();
    // A tag that restarts as fast as it can floods the stream while `slow` reads nothing.
    for name in ["flood", "flood2", "flood3"] {
        let mut flood = sh(name, "exit 0");
        flood.retries = -1;
        v.run(flood);
    }
    // About 6 s alone; several times that while the rest of the suite runs beside it.
    wait_for_within("thousands of events", std::time::Duration::from_secs(90), || {
        (v.client().daemon_status().unwrap().last_seq > start + 6000).then_some(())
    });
    for name in ["flood", "flood2", "flood3"] {
        v.client()
            .stop(name, None, Some(std::time::Duration::from_secs(5)))
            .unwrap();
    }
    let end = v.client().daemon_status().unwrap().last_seq;
    let mut last = start;
    let mut lost = None;
    // Everything up to `end` arrives, as events or inside loss markers: nothing goes missing unannounced.
    while last < end {
        match slow.next_item().unwrap() {
            StreamItem::Event(e) => {
                assert_eq!(e.seq, last + 1, "no silent gap");
                last = e.seq;
            }
            StreamItem::Lost { from, to } => {
                assert_eq!(from, last + 1, "the marker starts right after the last delivered event");
                assert!(to >= from);
                last = to;
                lost = Some((from, to));
            }
        }
    }
    assert!(lost.is_some(), "the subscriber must have been told of a loss");
}

/// Without the process connector the status comes from the pidfd, once the real parent has reaped the
/// process: vigild asks again for a while rather than settle for "unknown".
#[test]
fn exit_status_without_the_process_connector() {
    let v = Vigild::start_scan();
    assert_eq!(v.client().daemon_status().unwrap().tracking, "/proc scan");
    let mut p = outsider("read x; exit 7");
    let pid = p.id() as i32;
    add(&mut v.client(), "scan", pid).unwrap();
    drop(p.stdin.take());
    // Reap it a little late, as a busy parent would.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let _ = p.wait();
    assert_eq!(member_exit(&v, pid), (Some(0x700), Some(ExitStatus::Code(7))));
}

#[test]
fn a_process_registers_itself() {
    let v = Vigild::start();
    let mut c = v.client();
    c.psm_register_self("selves").unwrap();
    let me = std::process::id() as i32;
    let m = c.psm_get(&local(), Some("selves"), Some(me)).unwrap().remove(0);
    assert_eq!((m.pid, m.state.as_str(), m.flags), (me, "running", 0));
    c.psm_remove(&local(), Some("selves"), me).unwrap();
    assert!(c.psm_get(&local(), Some("selves"), None).unwrap().is_empty());
}

#[test]
fn replay_from_trimmed_history_says_exactly_what_is_gone() {
    let v = Vigild::start_with(Some("[daemon]\nevents_kept = 10\n"));
    let mut c = v.client();
    for i in 0..30 {
        c.psm_category_add(&local(), &format!("c{i}")).unwrap();
    }
    let first = c.daemon_status().unwrap().first_seq;
    assert!(first > 1, "old events were trimmed");
    let mut r = v.client();
    r.subscribe(Some(0)).unwrap();
    assert_eq!(r.next_item().unwrap(), StreamItem::Lost { from: 1, to: first - 1 });
    match r.next_item().unwrap() {
        StreamItem::Event(e) => assert_eq!(e.seq, first),
        other => panic!("expected the oldest kept event, got {other:?}"),
    }
}

#[test]
fn a_member_vigild_did_not_start_does_not_hold_up_sigterm_and_is_watched_again() {
    let mut v = Vigild::start();
    let mut child = outsider("read x; exit 3");
    let pid = child.id() as i32;
    add(&mut v.client(), "outside", pid).unwrap();
    // A clean stop ends vigild's tags, not processes it was only told about.
    assert!(v.terminate().success());
    assert!(alive(pid), "the member outlives vigild");
    v.spawn();
    let m = v.client().psm_get(&local(), Some("outside"), Some(pid)).unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    // Still watched: its exit is seen by the new vigild.
    drop(child.stdin.take());
    child.wait().unwrap();
    assert_eq!(member_exit(&v, pid).1, Some(ExitStatus::Code(3)));
}
