//! Supervision policies end to end: restart policies with success exit codes and signals, start_secs
//! and what `vigil run` says about the start it made, notify readiness gating `after` and `vigil wait`,
//! and `autostart = false` for config tags.

use std::process::Command;

use vigil_client::proto::{ErrorCode, RestartPolicy, RunSpec, Supervision, WaitUntil};

use crate::harness::*;

/// A program that says READY=1 to NOTIFY_SOCKET once GATE exists, then sleeps (python3's standard
/// library only).
const READY_WHEN: &str = r#"
import os, socket, sys, time
gate = sys.argv[1]
while not os.path.exists(gate):
    time.sleep(0.02)
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", addr)
time.sleep(3600)
"#;

fn supervised(v: &Vigild, spec: RunSpec, s: Supervision) {
    v.client().run_supervised(spec, s, false).expect("run");
}

fn policy(restart: RestartPolicy) -> Supervision {
    Supervision {
        restart,
        success_exit_codes: vec![0, 3],
        success_signals: vec![15],
        ..Supervision::default()
    }
}

#[test]
fn on_failure_and_never_end_a_success_as_exited_and_never_restarts_nothing() {
    let mut v = Vigild::start();
    let mut restarting = sh("clean3", "exit 3");
    restarting.retries = -1;
    // A success by a listed code, and by a listed signal: exited, nothing counted, started once.
    supervised(&v, restarting.clone(), policy(RestartPolicy::OnFailure));
    let mut by_term = sh("term", "kill -TERM $$; sleep 5");
    by_term.retries = -1;
    supervised(&v, by_term, policy(RestartPolicy::OnFailure));
    for tag in ["clean3", "term"] {
        let st = v.wait_state(tag, "exited");
        assert_eq!((st.starts, st.restarts_used), (1, 0), "{tag}: {st:?}");
        assert_eq!(st.supervision.restart, RestartPolicy::OnFailure);
    }
    // A failure under on-failure restarts under the budget until it is spent.
    let mut failing = sh("fails", "exit 1");
    failing.retries = 2;
    supervised(&v, failing, policy(RestartPolicy::OnFailure));
    let st = v.wait_state("fails", "failed");
    assert_eq!(st.starts, 3, "{st:?}");
    // `never`: a failure fails the tag at once, whatever the budget, and says why.
    let mut once = sh("once", "exit 1");
    once.retries = -1;
    supervised(&v, once, policy(RestartPolicy::Never));
    let st = v.wait_state("once", "failed");
    assert_eq!(st.starts, 1);
    assert_eq!(st.reason.as_deref(), Some("exited (exit 1); restart = never"));
    // The same exit under `always` (pmfadm's) is restarted.
    let mut always = sh("always", "exit 3");
    always.retries = 1;
    supervised(&v, always, policy(RestartPolicy::Always));
    assert_eq!(v.wait_state("always", "failed").starts, 2);
    // An exited tag stays exited across a restart of vigild, and `vigil start` starts it again.
    v.kill9();
    v.spawn();
    assert_eq!(v.status("clean3").state, "exited");
    let out = v.cli(&["start", "clean3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("clean3 to run a second time", || {
        Some(v.status("clean3")).filter(|s| s.starts == 2 && s.state == "exited")
    });
}

#[test]
fn vigil_run_waits_for_start_secs_and_says_how_a_quick_death_ended() {
    let v = Vigild::start();
    // The default: a command that dies at once is reported, with a nonzero exit.
    let out = v.cli(&["run", "dies", "--", "sh", "-c", "exit 1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stderr(&out).trim(),
        "vigil: dies: exited at once (exit 1); failed: retry budget spent: 0 restart(s) within the life of the tag"
    );
    // A death before start_secs is a failed start, even with exit 0 and a budget left: it is said so.
    let out = v.cli(&[
        "run",
        "early",
        "-n",
        "-1",
        "--start-secs",
        "5",
        "--",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("early: exited at once (exit 0); restarting (") && err.contains("no limit)"),
        "{err}"
    );
    // A command that lives: "running" only once start_secs has passed, and status says it is up.
    let began = std::time::Instant::now();
    let out = v.cli(&["run", "lives", "--start-secs", "0.5", "--", "sleep", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(began.elapsed() >= std::time::Duration::from_millis(500));
    let st = v.status("lives");
    assert!(st.up);
    assert_eq!(
        stdout(&out).trim(),
        format!("lives: running (pid {})", st.main_pid.unwrap())
    );
    assert!(v.tag_events("lives").iter().any(|e| e.name == "sys.vigil.pmf.tag.up"));
    // Bad settings are usage errors, named.
    let out = v.cli(&["run", "x", "--restart", "sometimes", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("use always, on-failure or never"));
    let out = v.cli(&["run", "x", "--success-signals", "NOPE", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn after_waits_for_ready_from_a_notify_tag_and_vigil_wait_reports_it() {
    let v = Vigild::start();
    let script = v.path("ready_when.py");
    std::fs::write(&script, READY_WHEN).unwrap();
    let gate = v.path("gate");
    let db = RunSpec::new(
        "db",
        vec![
            "python3".into(),
            script.display().to_string(),
            gate.display().to_string(),
        ],
    );
    supervised(
        &v,
        db,
        Supervision {
            notify: true,
            ..Supervision::default()
        },
    );
    let mut web = sh("web", "exec sleep 1000");
    web.after = vec!["db".into()];
    v.run(web);
    v.running_pid("db", None);
    // db runs but has not said READY=1: it is starting, and web waits.
    let st = v.status("db");
    assert!(!st.up && st.supervision.notify, "{st:?}");
    let out = v.cli(&["wait", "db", "--ready", "--timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("db: not ready at the end of the wait (it is running)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(v.status("web").state, "waiting");
    let out = v.cli(&["wait", "db", "--running", "--timeout", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // READY=1: db counts as running, web starts, and a wait for both is answered.
    std::fs::write(&gate, "").unwrap();
    let out = v.cli(&["wait", "db", "web", "--ready", "--timeout", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("db: running (pid") && text.contains("web: running (pid"),
        "{text}"
    );
    assert!(v.status("db").ready);
    // A tag that cannot get there any more fails the wait at once, saying why.
    v.run(sh("gone", "exit 4"));
    v.wait_state("gone", "failed");
    let err = v.client().wait_for("gone", WaitUntil::Ready, None, false).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ExecFailed));
    assert!(err.to_string().contains("gone: failed: retry budget spent"), "{err}");
    let out = v.cli(&["wait", "gone", "--stopped"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

const CONFIG: &str = r#"
[tag.manual]
command = ["sleep", "1000"]
autostart = false
restart = "on-failure"
success_exit_codes = [0, 3]
success_signals = ["TERM", 1]
start_secs = 0.2

[tag.auto]
command = ["sleep", "1000"]
"#;

#[test]
fn config_keys_and_autostart_false() {
    let mut v = Vigild::start_with(Some(CONFIG));
    v.running_pid("auto", None);
    let st = v.status("manual");
    assert_eq!(st.state, "stopped", "declared, not started: {st:?}");
    assert_eq!(
        st.supervision,
        Supervision {
            restart: RestartPolicy::OnFailure,
            success_exit_codes: vec![0, 3],
            success_signals: vec![15, 1],
            start_secs_ms: 200,
            notify: false,
        }
    );
    // A reload and a restart of vigild leave it stopped.
    let out = v.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    v.terminate();
    v.spawn();
    assert_eq!(v.status("manual").state, "stopped");
    // `vigil start` starts it; it counts as running after start_secs.
    let out = v.cli(&["start", "manual"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = v.cli(&["wait", "manual", "--ready", "--timeout", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // `vigil modify` changes the policy; a TERM is then not a success, and the tag restarts.
    let out = v.cli(&["modify", "manual", "--restart", "always", "--success-signals", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = v.status("manual");
    assert_eq!(
        (st.supervision.restart, st.supervision.success_signals.clone()),
        (RestartPolicy::Always, vec![])
    );
    // The example of the docs is valid; bad keys are refused by --check, naming the tag and the key.
    let example = repo_root().join("examples/supervision.toml");
    let out = Command::new(bin("vigild"))
        .arg("--check")
        .arg("--config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(stdout(&out).contains("valid: 4 tags"), "{}", stderr(&out));
    let bad = v.path("bad.toml");
    for (text, want) in [
        (
            "[tag.a]\ncommand = [\"true\"]\nrestart = \"sometimes\"\n",
            "tag.a: restart: restart policy \"sometimes\" is not one of always, on-failure, never",
        ),
        (
            "[tag.a]\ncommand = [\"true\"]\nsuccess_signals = [\"NOPE\"]\n",
            "tag.a: success_signals: \"NOPE\" is not a signal name or number",
        ),
        (
            "[tag.a]\ncommand = [\"true\"]\nstart_secs = 4000\n",
            "tag.a: start_secs = 4000 is outside 0..=3600 seconds",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(bin("vigild"))
            .arg("--check")
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(stderr(&out).contains(want), "{text}: {}", stderr(&out));
    }
}
