//! libdsdev.so.1 from C: Solaris Cluster's scds_pmf_* (rgm/libdsdev.h), compiled with gcc against vigil's
//! header, against a real vigild, checked both by the codes the C program sees and by vigil's own view.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_client::proto::{ExitStatus, ProgramType};

use crate::harness::*;

const METHOD: &[&str] = &["-R", "web-rs", "-T", "SUNW.web", "-G", "web-rg"];
const NOERR: &str = "0";
const INVAL: &str = "3";
const STATE: &str = "9";
const INTERNAL: &str = "18";
const TIMEOUT: &str = "20";

fn program() -> PathBuf {
    c_program("dsdev_test.c", true, &["dsdev"])
}

/// Runs the C program with `method` arguments and `ops`; its lines. At the deadline it is killed and the
/// test fails.
fn run_with(socket: &Path, method: &[&str], ops: &[&[&str]], env: &[(&str, &str)]) -> Vec<String> {
    let ops = ops.concat();
    let mut child = Command::new(program())
        .args(method)
        .arg("--")
        .args(&ops)
        .env("VIGIL_SOCKET", socket)
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the C program");
    let status = wait_deadline(&mut child, &format!("dsdev_test {ops:?}"));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "dsdev_test {ops:?}: {status}; {out}");
    out.lines().map(str::to_string).collect()
}

/// Runs `ops` as the web-rs resource; its lines after `initialize 0`.
fn run(v: &Vigild, ops: &[&[&str]]) -> Vec<String> {
    let mut lines = run_with(&v.socket(), METHOD, ops, &[]);
    assert_eq!(lines.first().map(String::as_str), Some("initialize 0"), "{lines:?}");
    lines.remove(0);
    lines
}

/// The code of one op.
fn code(v: &Vigild, op: &[&str]) -> String {
    let lines = run(v, &[op]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].rsplit(' ').next().unwrap().to_string()
}

fn codes(lines: &[String]) -> Vec<&str> {
    lines.iter().map(|l| l.rsplit(' ').next().unwrap()).collect()
}

#[test]
fn initialize_needs_the_resource_its_type_and_its_group() {
    let v = Vigild::start();
    let table: &[(&[&str], &str)] = &[
        (&[], INVAL),
        (&["-R", "rs", "-T", "t"], INVAL),
        (&["-R", "rs", "-G", "g"], INVAL),
        (&["-T", "t", "-G", "g"], INVAL),
        (&["-R", "", "-T", "t", "-G", "g"], INVAL),
        (&["-R", "rs", "-T", "t", "-G"], INVAL),
        (&["-R", "rs", "-T", "t", "-G", "g"], NOERR),
        // As the RGM passes them to a method, with property overrides and flags in between.
        (
            &[
                "-Rrs",
                "-x",
                "Port=-R",
                "-c",
                "-Tt",
                "-r",
                "Thorough_probe_interval=60",
                "-Gg",
            ],
            NOERR,
        ),
    ];
    for (method, want) in table {
        let lines = run_with(&v.socket(), method, &[], &[]);
        assert_eq!(lines, [format!("initialize {want}")], "{method:?}");
    }
    // No vigild there.
    let lines = run_with(&v.path("nothing.sock"), METHOD, &[], &[]);
    assert_eq!(lines, [format!("initialize {INTERNAL}")]);
}

#[test]
fn start_runs_each_program_type_under_its_solaris_tag() {
    let v = Vigild::start();
    let lines = run(
        &v,
        &[
            &["start", "svc", "0", "0", "sleep 1000"],
            &["start", "mon", "0", "-1", "/bin/sh -c 'sleep 1000 & wait'"],
            &["start", "other", "3", "1", "sleep 1000"],
            &["start", "svc", "0", "0", "sleep 1000"],
            &["status", "svc", "0"],
            &["status", "mon", "0"],
            &["status", "svc", "1"],
            &["status_null", "svc", "0"],
        ],
    );
    assert_eq!(
        lines,
        [
            "start 0",
            "start 0",
            "start 0",
            // Already running: SCHA_ERR_INTERNAL, as scds_pmf_start(3HA) says.
            "start 18",
            "status 0 monitored",
            "status 0 monitored",
            "status 0 not_monitored",
            "status_null 3",
        ]
    );
    let svc = v.status("web-rg,web-rs,0.svc");
    let seen = (svc.state.as_str(), svc.program_type, svc.instance, svc.level);
    assert_eq!(seen, ("running", ProgramType::Svc, 0, 0));
    assert_eq!(svc.command, ["sleep", "1000"]);
    assert_eq!(svc.starts, 1, "the second start must not have touched it");
    let mon = v.status("web-rg,web-rs,0.mon");
    assert_eq!((mon.program_type, mon.level), (ProgramType::Mon, -1));
    assert_eq!(mon.command, ["/bin/sh", "-c", "sleep 1000 & wait"]);
    // The shell and its sleep, one level down, both watched.
    wait_for("the monitor's child", || {
        (v.status("web-rg,web-rs,0.mon").procs.len() == 2).then_some(())
    });
    let other = v.status("web-rg,web-rs,3.other");
    assert_eq!(
        (other.program_type, other.instance, other.level),
        (ProgramType::Other, 3, 1)
    );
    let list = v.cli(&["list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    for tag in ["web-rg,web-rs,0.svc", "web-rg,web-rs,0.mon", "web-rg,web-rs,3.other"] {
        assert!(list.contains(tag), "vigil list: {list}");
    }
}

#[test]
fn start_refuses_bad_arguments_and_leaves_no_tag() {
    let v = Vigild::start();
    let lines = run(
        &v,
        &[
            &["start", "7", "5", "0", "sleep 1"],
            &["start", "svc", "-1", "0", "sleep 1"],
            &["start_null", "svc", "5"],
            &["start", "svc", "5", "0", "   "],
            &["start", "svc", "5", "0", "sh -c 'unclosed"],
            &["start", "svc", "5", "0", "/nonexistent/program"],
            &["start", "svc", "5", "-2", "sleep 1"],
            &["start_env", "svc", "5", "0", "sleep 1", "1", "NO_EQUALS_SIGN"],
            &["status", "7", "5"],
        ],
    );
    assert_eq!(codes(&lines[..8]), [INVAL; 8], "{lines:?}");
    assert_eq!(lines[8], "status 3 unset");
    assert!(v.client().list().unwrap().is_empty());
}

#[test]
fn start_env_gives_the_program_that_environment_and_start_gives_none_of_the_callers() {
    let v = Vigild::start();
    let with = v.path("with");
    let without = v.path("without");
    let print_env = format!(
        "/bin/sh -c 'echo \"$DSDEV_A|$DSDEV_B|$VIGIL_TAG\" > {}; exec sleep 1000'",
        with.display()
    );
    let print_caller = format!(
        "/bin/sh -c 'echo \"[$DSDEV_CALLER]\" > {}; exec sleep 1000'",
        without.display()
    );
    let ops: &[&[&str]] = &[
        &[
            "start_env",
            "svc",
            "0",
            "-1",
            &print_env,
            "2",
            "DSDEV_A=alpha",
            "DSDEV_B=two words",
        ],
        &["start", "svc", "1", "-1", &print_caller],
    ];
    let lines = run_with(&v.socket(), METHOD, ops, &[("DSDEV_CALLER", "leaked")]);
    assert_eq!(lines, ["initialize 0", "start_env 0", "start 0"]);
    let read = |p: &Path| std::fs::read_to_string(p).ok().filter(|s| s.ends_with('\n'));
    let line = wait_for("the first program's line", || read(&with));
    assert_eq!(line, "alpha|two words|web-rg,web-rs,0.svc\n");
    assert_eq!(wait_for("the second program's line", || read(&without)), "[]\n");
    let env = v.status("web-rg,web-rs,0.svc").env;
    assert!(env.contains(&("DSDEV_B".into(), "two words".into())), "{env:?}");
}

#[test]
fn stop_signals_then_kills_and_is_done_when_nothing_runs() {
    let v = Vigild::start();
    // A program that ignores SIGTERM, and one that does not.
    let stubborn = "/bin/sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'";
    let lines = run(
        &v,
        &[
            &["start", "svc", "0", "0", "sleep 1000"],
            &["start", "svc", "1", "0", stubborn],
        ],
    );
    assert_eq!(codes(&lines), [NOERR, NOERR]);
    let pid = v.running_pid("web-rg,web-rs,0.svc", None);
    assert_eq!(code(&v, &["stop", "svc", "0", "15", "10"]), NOERR);
    let st = v.status("web-rg,web-rs,0.svc");
    assert_eq!(st.state, "stopped");
    assert_eq!(st.last_exit, Some((pid, ExitStatus::Signal(15))));
    assert!(!alive(pid));

    // SIGTERM is ignored: SIGKILL after 80% of the 2 s.
    let pid = v.running_pid("web-rg,web-rs,1.svc", None);
    let t0 = Instant::now();
    assert_eq!(code(&v, &["stop", "svc", "1", "15", "2"]), NOERR);
    assert!(t0.elapsed() >= Duration::from_millis(1500), "{:?}", t0.elapsed());
    let st = v.status("web-rg,web-rs,1.svc");
    assert_eq!(st.last_exit, Some((pid, ExitStatus::Signal(9))));

    let lines = run(
        &v,
        &[
            &["status", "svc", "0"],
            // Not running, never started: nothing to do.
            &["stop", "svc", "0", "15", "10"],
            &["stop", "mon", "9", "15", "10"],
            &["stop", "svc", "0", "15", "-1"],
            // A stopped program starts again under the same tag.
            &["start", "svc", "0", "0", "sleep 1000"],
        ],
    );
    assert_eq!(
        lines,
        ["status 0 not_monitored", "stop 0", "stop 0", "stop 3", "start 0"]
    );
    assert_eq!(v.status("web-rg,web-rs,0.svc").state, "running");
}

#[test]
fn signal_reaches_every_process_and_waits_as_long_as_asked() {
    let v = Vigild::start();
    // The shell ignores SIGHUP; its sleeps do not.
    let hup_proof = "/bin/sh -c 'trap \"\" HUP; while :; do sleep 0.1; done'";
    let lines = run(
        &v,
        &[
            &["start", "svc", "0", "-1", hup_proof],
            &["start", "other", "0", "0", "sleep 1000"],
        ],
    );
    assert_eq!(codes(&lines), [NOERR, NOERR]);
    let shell = v.running_pid("web-rg,web-rs,0.svc", None);
    let t0 = Instant::now();
    assert_eq!(code(&v, &["signal", "svc", "0", "1", "1"]), TIMEOUT);
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert_eq!(code(&v, &["signal", "svc", "0", "1", "0"]), NOERR);
    // Monitoring goes on.
    assert!(alive(shell));
    assert_eq!(v.status("web-rg,web-rs,0.svc").state, "running");
    let events = v.tag_events("web-rg,web-rs,0.svc");
    assert!(events.iter().all(|e| e.name != "sys.vigil.pmf.tag.stop"), "{events:?}");

    let sleeper = v.running_pid("web-rg,web-rs,0.other", None);
    let lines = run(
        &v,
        &[
            &["signal", "other", "0", "15", "-1"],
            &["signal", "other", "0", "15", "0"],
            &["signal", "svc", "0", "1", "-2"],
        ],
    );
    // -1 waits until the process is gone; then there is nothing left to signal.
    assert_eq!(codes(&lines), [NOERR, STATE, INVAL]);
    assert!(!alive(sleeper));
    let st = v.status("web-rg,web-rs,0.other");
    assert_eq!(st.last_exit, Some((sleeper, ExitStatus::Signal(15))));
    assert_eq!(code(&v, &["signal", "mon", "4", "15", "0"]), STATE);
}

#[test]
fn restart_fm_kills_the_fault_monitor_and_starts_it_again() {
    let v = Vigild::start();
    assert_eq!(code(&v, &["restart_fm", "0"]), STATE);
    let lines = run(
        &v,
        &[
            &["start", "mon", "0", "0", "sleep 1000"],
            &["start", "svc", "0", "0", "sleep 1000"],
        ],
    );
    assert_eq!(codes(&lines), [NOERR, NOERR]);
    let mon = v.running_pid("web-rg,web-rs,0.mon", None);
    let svc = v.running_pid("web-rg,web-rs,0.svc", None);
    assert_eq!(code(&v, &["restart_fm", "0"]), NOERR);
    let new = v.running_pid("web-rg,web-rs,0.mon", Some(mon));
    wait_for("the old monitor to be gone", || (!alive(mon)).then_some(()));
    let st = v.status("web-rg,web-rs,0.mon");
    assert_eq!(st.last_exit, Some((mon, ExitStatus::Signal(9))));
    assert_eq!(st.restarts_used, 0);
    // The data service itself is left alone.
    assert_eq!(v.running_pid("web-rg,web-rs,0.svc", None), svc);
    // A stopped monitor starts again too.
    assert_eq!(code(&v, &["stop", "mon", "0", "15", "5"]), NOERR);
    assert_eq!(code(&v, &["restart_fm", "0"]), NOERR);
    v.running_pid("web-rg,web-rs,0.mon", Some(new));
}

#[test]
fn the_restart_budget_comes_from_the_retry_properties() {
    let v = Vigild::start();
    let method = [METHOD, &["-r", "Retry_count=2", "-r", "Retry_interval=60"]].concat();
    let lines = run_with(&v.socket(), &method, &[&["start", "svc", "0", "0", "sleep 0.2"]], &[]);
    assert_eq!(lines, ["initialize 0", "start 0"]);
    let st = v.status("web-rg,web-rs,0.svc");
    assert_eq!((st.retries, st.period), (2, 60));
    // Two restarts, then the budget is spent.
    let st = wait_for("the budget to be spent", || {
        Some(v.status("web-rg,web-rs,0.svc"))
            .filter(|s| !matches!(s.state.as_str(), "running" | "backoff") && s.starts == 3)
    });
    assert_eq!(st.restarts_used, 2);
    let bad = [METHOD, &["-r", "Retry_count=many"]].concat();
    assert_eq!(run_with(&v.socket(), &bad, &[], &[]), [format!("initialize {INVAL}")]);
}

#[test]
fn bad_handles_and_null_pointers_are_refused() {
    let v = Vigild::start();
    let lines = run(&v, &[&["handles"]]);
    let want = [
        "bogus_start 2",
        "bogus_start_env 2",
        "bogus_stop 2",
        "bogus_signal 2",
        "bogus_status 2",
        "bogus_restart_fm 2",
        "null_start 2",
        "null_status 2",
        "initialize_second 0",
        "second_status 0",
        "closed_is_null 0",
        "closed_status 2",
        "closed_restart_fm 2",
        "first_still_good 0",
        "initialize_null_handle 3",
        "initialize_null_argv 3",
        "initialize_negative_argc 3",
        "initialize_failed_is_null 0",
    ];
    assert_eq!(lines, want);
    assert!(v.client().list().unwrap().is_empty(), "no bad call may start anything");
}
