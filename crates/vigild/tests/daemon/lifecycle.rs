//! vigild itself: kill -9 and re-adoption, re-exec, reload, graceful shutdown, persistence.

use vigil_client::proto::{ExitStatus, Value};

use crate::harness::*;

#[test]
fn readopts_processes_after_kill_9() {
    let mut v = Vigild::start();
    let mut keep = sh("keep", "exec sleep 1000");
    keep.retries = -1;
    let kept = v.run(keep).main_pid.unwrap();
    let mut lost = sh("lost", "exec sleep 1000");
    lost.retries = -1;
    let lost_pid = v.run(lost).main_pid.unwrap();
    let mut idle = sh("idle", "exec sleep 1000");
    idle.retries = 5;
    v.run(idle);
    v.client()
        .stop("idle", None, Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let seq_before = v.client().daemon_status().unwrap().last_seq;

    v.kill9();
    assert!(alive(kept), "a kill -9 of vigild must not take its processes down");
    kill(lost_pid, "KILL");
    wait_for("the lost process to die", || (!alive(lost_pid)).then_some(()));
    v.spawn();

    let st = v.status("keep");
    assert_eq!(
        (st.state.as_str(), st.main_pid, st.starts),
        ("running", Some(kept), 1),
        "re-adopted, not restarted"
    );
    let new = v.running_pid("lost", Some(lost_pid));
    assert_eq!(
        v.status("lost").last_exit,
        Some((lost_pid, ExitStatus::Unknown)),
        "not ours to know: unknown, never 0"
    );
    assert!(alive(new));
    assert_eq!(v.status("idle").state, "stopped", "a stopped tag stays stopped");
    assert!(
        v.client().daemon_status().unwrap().last_seq > seq_before,
        "sequence numbers carry on"
    );
    // Found dead (sys.vigil.pmf.tag.lost) or, if nobody has reaped it yet, seen to exit: either way the
    // status is unknown.
    assert!(v
        .tag_events("lost")
        .iter()
        .any(|e| e.name == "sys.vigil.pmf.tag.exit" && e.attr("status") == Some(&Value::Str("unknown".into()))));

    // Supervision goes on for the re-adopted process.
    kill(kept, "TERM");
    let again = v.running_pid("keep", Some(kept));
    assert_eq!(v.status("keep").last_exit, Some((kept, ExitStatus::Signal(15))));
    assert!(alive(again));
}

#[test]
fn reexec_keeps_every_process() {
    let v = Vigild::start();
    let mut spec = sh("stay", "exec sleep 1000");
    spec.retries = -1;
    let pid = v.run(spec).main_pid.unwrap();
    let out = v.cli(&["daemon", "reexec"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("vigild to come back after re-exec", || {
        v.events()
            .iter()
            .any(|e| e.name == "sys.vigil.daemon.start" && e.attr("reexec") == Some(&Value::Bool(true)))
            .then_some(())
    });
    let info = v.client().daemon_status().unwrap();
    assert_eq!(info.pid, v.pid(), "same pid: still the parent of its processes");
    let st = v.status("stay");
    assert_eq!((st.main_pid, st.starts), (Some(pid), 1));
    // Still the parent: the exit status is exact.
    kill(pid, "KILL");
    v.running_pid("stay", Some(pid));
    assert_eq!(v.status("stay").last_exit, Some((pid, ExitStatus::Signal(9))));
}

/// A stop sent the moment a re-exec is answered (while the old image hands over) is not lost: it waits
/// for the new image, which stops every tag and exits.
#[test]
fn a_sigterm_during_a_reexec_stops_the_new_vigild() {
    let mut v = Vigild::start();
    let pid = v.run(sh("t", "exec sleep 1000")).main_pid.unwrap();
    v.client().reexec().unwrap();
    kill(v.pid() as i32, "TERM");
    let st = v.terminate_waited();
    assert!(st.success(), "{st}");
    assert!(!alive(pid), "the tag's process outlived vigild's stop");
}

#[test]
fn sighup_reexecs_too() {
    let v = Vigild::start();
    let pid = v.run(sh("h", "exec sleep 1000")).main_pid.unwrap();
    kill(v.pid() as i32, "HUP");
    wait_for("re-exec after SIGHUP", || {
        v.events()
            .iter()
            .any(|e| e.name == "sys.vigil.daemon.start" && e.attr("reexec") == Some(&Value::Bool(true)))
            .then_some(())
    });
    assert_eq!(v.status("h").main_pid, Some(pid));
}

#[test]
fn reload_applies_the_difference() {
    let v = Vigild::start_with(Some(
        r#"
[tag.same]
command = ["sleep", "1000"]
[tag.changed]
command = ["sleep", "1000"]
[tag.gone]
command = ["sleep", "1000"]
"#,
    ));
    let same = v.running_pid("same", None);
    let changed = v.running_pid("changed", None);
    let gone = v.running_pid("gone", None);
    std::fs::write(
        v.path("vigil.toml"),
        r#"
[tag.same]
command = ["sleep", "1000"]
[tag.changed]
command = ["sleep", "2000"]
[tag.new]
command = ["sleep", "1000"]
"#,
    )
    .unwrap();
    let out = v.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("started: new"), "{text}");
    assert!(text.contains("restarted: changed"), "{text}");
    assert!(text.contains("stopped: gone"), "{text}");
    assert!(text.contains("unchanged: same"), "{text}");
    v.running_pid("new", None);
    let c = v.running_pid("changed", Some(changed));
    assert_eq!(v.status("changed").command, ["sleep", "2000"]);
    assert!(alive(c) && !alive(changed));
    assert_eq!(v.status("same").main_pid, Some(same));
    wait_for("gone to be removed", || {
        (!v.client().query("gone").unwrap()).then_some(())
    });
    assert!(!alive(gone));

    // A broken config is refused and changes nothing.
    std::fs::write(v.path("vigil.toml"), "[tag.x]\ncommand = []\n").unwrap();
    let out = v.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("command is empty"), "{}", stderr(&out));
    assert_eq!(v.client().list().unwrap().len(), 3);
}

#[test]
fn sigterm_stops_every_tag_and_exits_0_and_they_come_back() {
    let mut v = Vigild::start();
    let mut spec = sh("t", "trap '' TERM; exec sleep 1000");
    spec.stop_timeout_ms = Some(300);
    spec.retries = -1;
    let pid = v.run(spec).main_pid.unwrap();
    let st = v.terminate();
    assert_eq!(st.code(), Some(0));
    assert!(!alive(pid));
    v.spawn();
    let new = v.running_pid("t", Some(pid));
    assert!(alive(new), "a tag stopped by the shutdown starts again with vigild");
}

#[test]
fn reexec_is_refused_while_the_config_is_broken() {
    let v = Vigild::start_with(Some("[tag.a]\ncommand = [\"sleep\", \"1000\"]\n"));
    let pid = v.running_pid("a", None);
    std::fs::write(v.path("vigil.toml"), "[tag.a]\ncommand = [\n").unwrap();
    let out = v.cli(&["daemon", "reexec"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("fix it first"), "{}", stderr(&out));
    kill(v.pid() as i32, "HUP");
    // Still the same daemon image, still supervising.
    let st = v.status("a");
    assert_eq!(st.main_pid, Some(pid));
    assert!(!v.events().iter().any(|e| e.attr("reexec") == Some(&Value::Bool(true))));
}

#[test]
fn shutdown_does_not_start_a_tag_in_backoff() {
    let mut v = Vigild::start();
    let mut b = sh("backing", "exit 1");
    b.retries = -1;
    b.backoff = Some(vigil_client::proto::Backoff {
        min_ms: 200,
        max_ms: 200,
    });
    v.run(b);
    let mut slow = sh("slow", "trap '' TERM; exec sleep 1000");
    slow.stop_timeout_ms = Some(1000);
    v.run(slow);
    v.wait_state("backing", "backoff");
    // While "slow" takes a second to stop, "backing"'s timer fires: it must not start again.
    assert_eq!(v.terminate().code(), Some(0));
}

#[test]
fn wait_reports_a_removed_tag() {
    let v = Vigild::start();
    v.run(sh("gone", "exec sleep 1000"));
    let socket = v.socket();
    let waiter = std::thread::spawn(move || vigil_client::Client::connect(&socket).unwrap().wait("gone", None));
    wait_for("the waiter to be registered", || {
        (v.client().daemon_status().unwrap().waiting == 1).then_some(())
    });
    v.client().remove("gone", None).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), None);
}
