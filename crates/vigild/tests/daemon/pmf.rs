//! The PMF rules, end to end.

use std::time::Instant;

use vigil_client::proto::{ErrorCode, ExitStatus};

use crate::harness::*;

#[test]
fn restarts_after_kill_9_and_counts_the_budget() {
    let v = Vigild::start();
    let mut spec = sh("web", "exec sleep 1000");
    spec.retries = -1;
    let pid = v.run(spec).main_pid.expect("started");
    kill(pid, "KILL");
    let new = v.running_pid("web", Some(pid));
    let st = v.status("web");
    assert_eq!(st.last_exit, Some((pid, ExitStatus::Signal(9))));
    assert_eq!(st.starts, 2);
    assert_eq!(st.restarts_used, 1);
    assert!(alive(new));
    let names: Vec<String> = v.tag_events("web").into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "sys.vigil.pmf.tag.start",
            "sys.vigil.pmf.tag.exit",
            "sys.vigil.pmf.tag.restart"
        ]
    );
}

#[test]
fn budget_spent_without_action_fails_and_stays_stopped() {
    let v = Vigild::start();
    let mut spec = sh("flaky", "exit 3");
    spec.retries = 2;
    spec.period = 60;
    v.run(spec);
    let st = v.wait_state("flaky", "failed");
    assert_eq!(st.starts, 3, "the first start and two restarts");
    assert_eq!(st.last_exit.map(|e| e.1), Some(ExitStatus::Code(3)));
    assert!(st.reason.unwrap().contains("retry budget spent"));
    assert!(st.procs.is_empty());
    // Failed stays failed: nothing restarts it behind the user's back. Only a later step could: one that
    // changes a tag (which looks again at the tags that wait), or a timer. A witness tag restarted after a
    // 300 ms backoff makes both: its exit and its start change a tag, and vigild fires timers in the order
    // of their deadlines, so once the witness's restart is in the event list, every timer due within
    // 300 ms of flaky's failure has fired, and whatever it started would be there too.
    let events = v.tag_events("flaky").len();
    let mut witness = sh("witness", "exit 1");
    witness.retries = 1;
    witness.backoff = Some(vigil_client::proto::Backoff {
        min_ms: 300,
        max_ms: 300,
    });
    v.run(witness);
    wait_for("the witness's restart after its backoff", || {
        v.tag_events("witness")
            .iter()
            .any(|e| e.name == "sys.vigil.pmf.tag.restart")
            .then_some(())
    });
    assert_eq!(v.tag_events("flaky").len(), events, "{:?}", v.tag_events("flaky"));
    assert_eq!(v.status("flaky").state, "failed");
    // An explicit start gives it a fresh budget.
    v.client().start("flaky").unwrap();
    let st = v.wait_state("flaky", "failed");
    assert_eq!(st.starts, 6);
}

#[test]
fn action_program_exit_zero_restarts_non_zero_removes() {
    let v = Vigild::start();
    let log = v.path("action.log");
    let ok = v.path("ok.sh");
    // The first call says "restart", the second "give up".
    write_script(
        &ok,
        &format!(
            "echo \"$@\" >> {log}\n[ $(wc -l < {log}) -ge 2 ] && exit 1\nexit 0",
            log = log.display()
        ),
    );
    let mut spec = sh("acted", "exit 1");
    spec.retries = 0;
    spec.action = Some(ok.display().to_string());
    v.run(spec);
    wait_for("the tag to be removed by the action's non-zero exit", || {
        (!v.client().query("acted").unwrap()).then_some(())
    });
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls, "failed acted\nfailed acted\n",
        "called as PROGRAM failed TAG, twice"
    );
    let names: Vec<String> = v.tag_events("acted").into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "sys.vigil.pmf.tag.start",
            "sys.vigil.pmf.tag.exit",
            "sys.vigil.pmf.tag.action",
            "sys.vigil.pmf.tag.action_exit",
            "sys.vigil.pmf.tag.restart",
            "sys.vigil.pmf.tag.exit",
            "sys.vigil.pmf.tag.action",
            "sys.vigil.pmf.tag.action_exit",
            "sys.vigil.pmf.tag.remove",
        ]
    );
}

/// The main process exits at once, its child lives ~1 s, its grandchild ~2 s. The tag's exit comes when
/// the last process within the level is gone.
#[test]
fn child_monitor_levels() {
    let v = Vigild::start();
    // Seconds apart, so that a loaded machine's slow forks cannot blur the three ends.
    let script = "sh -c 'sleep 6 & sleep 3' & exit 0";
    for (tag, level) in [("l0", 0), ("l1", 1), ("lall", -1)] {
        let mut spec = sh(tag, script);
        spec.level = level;
        v.run(spec);
    }
    let elapsed = |tag: &str| {
        let evs = wait_for(&format!("{tag} to fail"), || {
            let evs = v.tag_events(tag);
            evs.iter().any(|e| e.name.ends_with(".failed")).then_some(evs)
        });
        let start = evs.iter().find(|e| e.name.ends_with(".start")).unwrap().time_ms;
        let exit = evs.iter().find(|e| e.name.ends_with(".exit")).unwrap().time_ms;
        exit - start
    };
    let (l0, l1, lall) = (elapsed("l0"), elapsed("l1"), elapsed("lall"));
    assert!(l0 < 2500, "level 0 ends with the main process, not after {l0} ms");
    assert!(
        (2900..5900).contains(&l1),
        "level 1 ends with the child, not after {l1} ms"
    );
    assert!(lall >= 5900, "level -1 ends with the grandchild, not after {lall} ms");
}

#[test]
fn status_shows_levels_and_watched_descendants() {
    let v = Vigild::start();
    let mut spec = sh("tree", "sleep 100 & sleep 100 & wait");
    spec.level = 0;
    v.run(spec);
    let st = wait_for("two children to be seen", || {
        Some(v.status("tree")).filter(|s| s.procs.len() == 3)
    });
    let main = st.procs.iter().find(|p| p.level == 0).unwrap();
    assert!(main.watched);
    assert!(
        st.procs.iter().filter(|p| p.level == 1).all(|p| !p.watched),
        "beyond level 0"
    );
}

#[test]
fn stop_escalates_to_sigkill_and_leaves_no_process() {
    let v = Vigild::start();
    let mut spec = sh("stubborn", "trap '' TERM; sleep 100 & while :; do sleep 0.05; done");
    spec.retries = -1;
    v.run(spec);
    let st = wait_for("a child to appear", || {
        Some(v.status("stubborn")).filter(|s| s.procs.len() >= 2)
    });
    let pids: Vec<i32> = st.procs.iter().map(|p| p.pid).collect();
    let t = Instant::now();
    let out = v.cli(&["stop", "stubborn", "--wait", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let took = t.elapsed().as_millis();
    assert!(
        took >= 1000,
        "the shell ignores SIGTERM: the stop must wait for SIGKILL, took {took} ms"
    );
    let st = v.status("stubborn");
    assert_eq!(st.state, "stopped");
    assert!(st.procs.is_empty());
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the stop");
    }
    assert_eq!(st.last_exit.map(|e| e.1), Some(ExitStatus::Signal(9)));
}

#[test]
fn kill_signals_without_stopping_monitoring() {
    let v = Vigild::start();
    let mut spec = sh("k", "exec sleep 1000");
    spec.retries = -1;
    let pid = v.run(spec).main_pid.unwrap();
    let out = v.cli(&["kill", "k", "USR1", "--wait", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(pid));
    let new = v.running_pid("k", Some(pid));
    assert_eq!(v.status("k").last_exit, Some((pid, ExitStatus::Signal(10))));
    assert!(alive(new));
}

#[test]
fn manual_restart_does_not_use_the_budget() {
    let v = Vigild::start();
    let mut spec = sh("r", "exec sleep 1000");
    spec.retries = 0;
    let pid = v.run(spec).main_pid.unwrap();
    v.client().restart("r").unwrap();
    let new = v.running_pid("r", Some(pid));
    let st = v.status("r");
    assert_eq!((st.restarts_used, st.starts), (0, 2));
    assert!(alive(new) && !alive(pid));
}

#[test]
fn backoff_spaces_restarts() {
    let v = Vigild::start();
    let mut spec = sh("b", "exit 1");
    spec.retries = 2;
    spec.backoff = Some(vigil_client::proto::Backoff {
        min_ms: 300,
        max_ms: 5000,
    });
    v.run(spec);
    v.wait_state("b", "failed");
    let times: Vec<u64> = v
        .tag_events("b")
        .iter()
        .filter(|e| e.name.ends_with(".restart"))
        .map(|e| e.time_ms)
        .collect();
    let exits: Vec<u64> = v
        .tag_events("b")
        .iter()
        .filter(|e| e.name.ends_with(".exit"))
        .map(|e| e.time_ms)
        .collect();
    assert!(times[0] - exits[0] >= 300, "first backoff 300 ms");
    assert!(times[1] - exits[1] >= 600, "second backoff doubles");
}

/// The sequence number of `tag`'s first event named `name`.
fn first_seq(events: &[vigil_client::proto::Event], tag: &str, name: &str) -> Option<u64> {
    events
        .iter()
        .find(|e| e.subject == tag && e.name == name)
        .map(|e| e.seq)
}

#[test]
fn after_orders_starts_and_logs_capture_output() {
    // app comes first in the file (and in name order), so without the `after` gate it would start first.
    let v = Vigild::start_with(Some(
        r#"
[tag.app]
command = ["sh", "-c", "echo app-out; echo app-err >&2; exec sleep 1000"]
after = ["db"]
[tag.db]
command = ["sh", "-c", "echo db-ready; exec sleep 1000"]
"#,
    ));
    let app = v.wait_state("app", "running");
    let db = v.status("db");
    assert!(app.started_ms.unwrap() >= db.started_ms.unwrap());
    let events = v.events();
    let db_start = first_seq(&events, "db", "sys.vigil.pmf.tag.start").expect("db started");
    let app_start = first_seq(&events, "app", "sys.vigil.pmf.tag.start").expect("app started");
    assert!(
        db_start < app_start,
        "app started (event {app_start}) before db (event {db_start})"
    );
    let log = wait_for("app's output in its log", || {
        std::fs::read_to_string(&app.log_path)
            .ok()
            .filter(|l| l.contains("app-err"))
    });
    assert!(log.contains("app-out"));
}

#[test]
fn a_tag_waits_for_a_stopped_dependency_and_starts_when_it_runs() {
    let v = Vigild::start();
    let mut c = v.client();
    v.run(sh("base", "exec sleep 1000"));
    c.stop("base", None, None).unwrap();
    v.wait_state("base", "stopped");
    let mut spec = sh("upper", "exec sleep 1000");
    spec.after = vec!["base".into()];
    let st = v.run(spec);
    assert_eq!(st.state, "waiting", "upper waits for base, which is stopped");
    assert_eq!(st.main_pid, None);
    // Any later step that changes a tag looks again at the waiting ones: another tag's start and exit
    // are two such steps, and upper must still be waiting after them.
    v.run(sh("bystander", "exit 0"));
    wait_for("bystander's exit", || {
        v.tag_events("bystander")
            .iter()
            .any(|e| e.name == "sys.vigil.pmf.tag.exit")
            .then_some(())
    });
    let st = v.status("upper");
    assert_eq!(st.state, "waiting", "upper must not start while base is stopped");
    assert!(st.procs.is_empty());
    assert!(
        v.tag_events("upper").is_empty(),
        "no start, no exit: {:?}",
        v.tag_events("upper")
    );
    // base runs again: upper leaves Waiting, after base's start.
    c.start("base").unwrap();
    let upper = v.running_pid("upper", None);
    assert!(alive(upper));
    let events = v.events();
    let base_starts: Vec<u64> = events
        .iter()
        .filter(|e| e.subject == "base" && e.name == "sys.vigil.pmf.tag.start")
        .map(|e| e.seq)
        .collect();
    let upper_start = first_seq(&events, "upper", "sys.vigil.pmf.tag.start").expect("upper started");
    assert_eq!(base_starts.len(), 2, "{events:?}");
    assert!(base_starts[1] < upper_start, "upper started before base's second start");
}

#[test]
fn already_running_is_an_error_that_names_the_tag() {
    let v = Vigild::start();
    v.run(sh("dup", "exec sleep 1000"));
    let err = v.client().run(sh("dup", "exec sleep 1000")).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AlreadyExists));
    assert!(err.to_string().contains("tag dup is already running"), "{err}");
    let out = v.cli(&["query", "dup"]);
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
    let out = v.cli(&["query", "nope"]);
    assert_eq!((out.status.code(), out.stdout.len()), (Some(1), 0));
}

/// Without the process connector (vigild not root), descendants are found by scanning /proc, and
/// orphans reparented to vigild are attributed by their session: the level rules still hold.
#[test]
fn levels_without_the_process_connector() {
    let v = Vigild::start_as(None, Some(65534));
    assert_eq!(v.client().daemon_status().unwrap().tracking, "/proc scan");
    let script = "sh -c 'sleep 6 & sleep 3' & exit 0";
    for (tag, level) in [("l0", 0), ("lall", -1)] {
        let mut spec = sh(tag, script);
        spec.level = level;
        let mut c = v.connect().unwrap();
        // Root may not ask a per-user vigild to run things as root: the refusal says why.
        let err = c.run(spec.clone()).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
        let out = v.cli_as(
            Some(65534),
            &["run", tag, "-C", &level.to_string(), "--", "sh", "-c", script],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let elapsed = |tag: &str| {
        let evs = wait_for(&format!("{tag} to fail"), || {
            let evs = v.tag_events(tag);
            evs.iter().any(|e| e.name.ends_with(".failed")).then_some(evs)
        });
        let start = evs.iter().find(|e| e.name.ends_with(".start")).unwrap().time_ms;
        evs.iter().find(|e| e.name.ends_with(".exit")).unwrap().time_ms - start
    };
    let (l0, lall) = (elapsed("l0"), elapsed("lall"));
    assert!(l0 < 2500, "level 0 ends with the main process, not after {l0} ms");
    assert!(
        lall >= 5900,
        "level -1 ends with the last descendant, not after {lall} ms"
    );
}

#[test]
fn wait_returns_when_the_tag_ends() {
    let v = Vigild::start();
    v.run(sh("w", "sleep 0.3; exit 4"));
    let out = v.cli(&["wait", "w", "--timeout", "10", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st[0]["state"], "failed");
    assert_eq!(st[0]["last_exit"]["code"], 4);
    let out = v.cli(&["wait", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn logs_rotate_by_size() {
    let v = Vigild::start_with(Some(
        r#"
[daemon]
log_max_bytes = 4096
log_keep = 2
[tag.chatty]
command = ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exec sleep 1000"]
"#,
    ));
    let st = v.wait_state("chatty", "running");
    let rotated = format!("{}.1", st.log_path);
    wait_for("the log to be rotated", || {
        std::path::Path::new(&rotated).exists().then_some(())
    });
    let size = std::fs::metadata(&rotated).unwrap().len();
    assert!(size > 4096 / 2, "the rotated file holds the old content ({size} bytes)");
    assert!(
        !std::path::Path::new(&format!("{}.3", st.log_path)).exists(),
        "only log_keep files are kept"
    );
}

#[test]
fn subscription_replays_then_follows_in_order() {
    let v = Vigild::start();
    v.run(sh("one", "exec sleep 1000"));
    let last = v.client().daemon_status().unwrap().last_seq;
    let mut c = v.client();
    c.subscribe(Some(0)).unwrap();
    let mut seqs = vec![];
    while seqs.last() != Some(&last) {
        seqs.push(c.next_event().unwrap().seq);
    }
    assert_eq!(seqs[0], 1, "the whole history is replayed");
    v.run(sh("two", "exec sleep 1000"));
    let live = c.next_event().unwrap();
    assert_eq!(live.name, "sys.vigil.pmf.tag.start");
    assert_eq!(live.subject, "two");
    seqs.push(live.seq);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat: {seqs:?}");
}

#[test]
fn a_reader_that_closes_early_ends_the_cli_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let v = Vigild::start();
    v.run(sh("quiet", "exec sleep 1000"));
    let cases: [(&str, Vec<String>); 2] = [
        (
            "vigil",
            vec![
                "--socket".into(),
                v.socket().display().to_string(),
                "status".into(),
                "quiet".into(),
            ],
        ),
        ("pmfadm", vec!["-l".into(), "quiet".into()]),
    ];
    for (prog, args) in cases {
        // The reader is gone before the first write, as with `| head -0` or a `grep -q` that has matched.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(bin(prog))
            .args(&args)
            .env("VIGIL_SOCKET", v.socket())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(13), "{prog} ended with {:?}", out.status);
        assert!(
            out.stderr.is_empty(),
            "{prog} wrote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
