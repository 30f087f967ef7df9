//! libsam behaves as corosync's: each rule read in corosync's lib/sam.c, asserted from C programs
//! (tests/c/sam_compat.c, and tests/c/sam_corosync_suite.c, which replays the scenarios of corosync's own
//! test program test/testsam.c) built against Debian's headers and against vigil's, run with vigil's
//! libsam.so.4 and a real vigild. Where no daemon is needed, the same binary also runs with Debian's own
//! libsam.so.4 (no LD_LIBRARY_PATH), and both must answer the same.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vigil_client::proto::{CmapValue, Value};

use crate::harness::*;

fn program(vigil_headers: bool) -> PathBuf {
    c_program("sam_compat.c", vigil_headers, &["sam"])
}

/// Which libsam.so.4 a run loads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lib {
    Vigil,
    /// Debian's, from /usr/lib: the original the answers are measured against.
    Debian,
}

struct Run {
    code: i32,
    pid: u32,
    lines: String,
}

/// Runs one scenario to its supervisor's end. `socket`: vigild's, or None for a path where none listens.
fn run(dir: &Path, socket: Option<&Path>, exe: &Path, scenario: &str, lib: Lib) -> Run {
    let name = exe.file_name().unwrap().to_string_lossy();
    let out = dir.join(format!("{scenario}-{name}-{lib:?}.out"));
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new(exe);
    cmd.arg(&out).arg(scenario).stdout(Stdio::null());
    match socket {
        Some(s) => cmd.env("VIGIL_SOCKET", s),
        None => cmd.env("VIGIL_SOCKET", dir.join("no-vigild-here.sock")),
    };
    match lib {
        Lib::Vigil => cmd.env("LD_LIBRARY_PATH", c_lib_dir()),
        Lib::Debian => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    let mut child = cmd.spawn().expect("start the C program");
    let pid = child.id();
    let code = wait_deadline(&mut child, scenario).code().unwrap_or(-1);
    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    Run { code, pid, lines }
}

/// Runs `scenario` with vigil's libsam (both header sets) and, when `debian` is true, with Debian's:
/// every run must exit with `code` and write exactly `want`.
fn same_everywhere(v: &Vigild, scenario: &str, socket: Option<&Path>, code: i32, want: &str, debian: bool) {
    let mut runs = vec![(true, Lib::Vigil), (false, Lib::Vigil)];
    if debian {
        runs.push((false, Lib::Debian));
    }
    for (vigil_headers, lib) in runs {
        let r = run(v.dir.path(), socket, &program(vigil_headers), scenario, lib);
        let ctx = format!("{scenario}, {lib:?}'s libsam, vigil headers: {vigil_headers}");
        assert_eq!(r.lines.trim_end(), want, "{ctx}");
        assert_eq!(r.code, code, "{ctx}: the supervisor's exit status\n{}", r.lines);
    }
}

const ARGS: &str = "0 initialize_bad_policy 7
0 initialize_negative 1
0 initialize_again_bad_policy 9
0 initialize_again 9
0 warn_signal_set_0 1
0 warn_signal_set_-1 1
0 warn_signal_set_1000 1
0 warn_signal_set_65 1
0 warn_signal_set_term 1
1 register 1
1 hc_callback_register 1
1 warn_signal_set_1000 1
1 start 1
1 hc_send 1
1 stop 1
1 finalize 1";

// corosync lib/sam.c, sam_initialize: the state is checked before the policy (a second call is
// CS_ERR_BAD_HANDLE whatever its policy: Debian's 3.1.7 library answers so), and the interval is not
// checked at all. sam_warn_signal_set stores any int, in the application and in its supervisor
// (sam_parent_warn_signal_set). sam_hc_callback_register refuses only an interval of 0.
#[test]
fn argument_checks_follow_corosyncs_order_and_codes() {
    let v = Vigild::start();
    same_everywhere(&v, "args", Some(&v.socket()), 0, ARGS, true);
}

// corosync lib/sam.c: sam_initialize calls quorum_initialize at once (QUORUM), but cmap is first
// reached by sam_register's sam_cmap_register (CMAP): without a daemon the error comes from there.
#[test]
fn without_a_daemon_cmap_fails_in_register_and_quorum_in_initialize() {
    let v = Vigild::start();
    same_everywhere(&v, "cmap_no_daemon", None, 0, "0 initialize 1\n0 register 2", true);
    same_everywhere(&v, "quorum_no_daemon", None, 0, "0 initialize 2", true);
}

// corosync lib/sam.c, sam_register: when the policy says quit, the supervisor ends with
// exit(WEXITSTATUS(child_status)): 0 after a SIGKILL or an abort, the code of an exit.
#[test]
fn the_supervisor_exits_with_wexitstatus_of_its_instance() {
    let v = Vigild::start();
    let started = "0 initialize 1\n1 register 1\n1 start 1";
    same_everywhere(&v, "exit_kill", Some(&v.socket()), 0, started, true);
    same_everywhere(&v, "exit_abort", Some(&v.socket()), 0, started, true);
    same_everywhere(&v, "exit_code", Some(&v.socket()), 5, started, true);
    // vigild still learns how the instance really ended.
    let r = run(v.dir.path(), Some(&v.socket()), &program(true), "exit_kill", Lib::Vigil);
    assert_eq!(r.code, 0);
    let subject = format!("sam/{}", r.pid);
    let evs: Vec<_> = v.events().into_iter().filter(|e| e.subject == subject).collect();
    let exit = evs.iter().find(|e| e.name == "sys.vigil.sam.exit").expect("exit event");
    assert!(exit.attrs.contains(&("signal".into(), Value::Int(9))), "{exit:?}");
    let quit = evs.iter().find(|e| e.name == "sys.vigil.sam.quit").expect("quit event");
    assert!(quit.attrs.contains(&("code".into(), Value::Int(0))), "{quit:?}");
    assert!(quit.attrs.contains(&("failed".into(), Value::Bool(true))), "{quit:?}");
}

// corosync lib/sam.c, sam_parent_kill_child: the warn signal sets term_send, which only sam_register
// clears before forking the next instance; any command opens one more interval (sam_parent_handler
// polls again), but the next silent one sends SIGKILL. A data store from the warn signal's handler
// (as corosync's test/testsam.c test6 does) or a late sam_hc_send does not take the warning back.
#[test]
fn a_message_after_the_warning_does_not_take_it_back() {
    let v = Vigild::start();
    let s = Some(v.socket());
    same_everywhere(
        &v,
        "store_after_warn",
        s.as_deref(),
        0,
        "0 initialize 1
1 register 1
1 warn_signal_set 1
1 start 1
1 hc_send 1
2 register 1
2 stored_warnings 1",
        true,
    );
    same_everywhere(
        &v,
        "late_hc",
        s.as_deref(),
        0,
        "0 initialize 1
1 register 1
1 start 1
1 warned 1
1 hc_send 1
2 register 1",
        true,
    );
}

// corosync lib/sam.c, sam_parent_handler: while stopped the supervisor polls without a timeout, so a
// warned instance that stops is left alone; started again, its next silent interval kills it (term_send
// still set). An instance that ends while stopped is an orderly end (SAM_PARENT_ACTION_QUIT), warned or
// not: no restart, and the supervisor exits with its code.
#[test]
fn the_warning_holds_across_stop_and_start_and_a_stopped_end_is_orderly() {
    let v = Vigild::start();
    let s = Some(v.socket());
    same_everywhere(
        &v,
        "stop_start",
        s.as_deref(),
        0,
        "0 initialize 1
1 register 1
1 start 1
1 warned 1
1 hc_send 1
1 stop 1
1 survived_stopped 1
1 start 1
2 register 1",
        true,
    );
    same_everywhere(
        &v,
        "warned_stop_exit",
        s.as_deref(),
        3,
        "0 initialize 1
1 register 1
1 start 1
1 warned 1
1 stop 1",
        true,
    );
}

// corosync lib/sam.c, sam_parent_mark_child_failed: the policy becomes QUIT inside the supervisor only
// (the CMAP key "recovery" is written once, by sam_cmap_register, and never again); SIGKILL without a
// warning (term_send set first); sam_register then sets the state "failed" and exits with
// WEXITSTATUS, 0.
#[test]
fn mark_failed_keeps_the_recovery_key_and_exits_zero() {
    let v = Vigild::start();
    for vigil_headers in [true, false] {
        let r = run(
            v.dir.path(),
            Some(&v.socket()),
            &program(vigil_headers),
            "mark_failed",
            Lib::Vigil,
        );
        assert_eq!(
            r.lines.trim_end(),
            "0 initialize 1\n1 register 1\n1 start 1\n1 mark_failed 1",
            "no warning, no second instance"
        );
        assert_eq!(r.code, 0, "{}", r.lines);
        let key = |k: &str| v.client().cmap_get(&format!("resources.process.{}.{k}", r.pid)).ok();
        assert_eq!(key("recovery"), Some(CmapValue::Str("restart".into())));
        assert_eq!(key("state"), Some(CmapValue::Str("failed".into())));
    }
}

fn set_expected_votes(v: &Vigild, n: u32) {
    v.client()
        .cmap_set("quorum.expected_votes", CmapValue::U32(n), false)
        .expect("set quorum.expected_votes");
}

// corosync lib/sam.c, sam_parent_handler: with interval 0 the supervisor polls without a timeout; a
// quorum event that finds no quorum while started calls sam_parent_kill_child, which warns the first
// time and kills the next: the SIGKILL waits for the next quorum event, however long that takes. An
// event that finds quorum again does nothing.
#[test]
fn with_interval_zero_a_lost_quorum_kills_at_the_next_quorum_event() {
    let v = Vigild::start();
    for vigil_headers in [true, false] {
        let out = v.dir.path().join(format!("quorum0-{vigil_headers}.out"));
        let mut child = Command::new(program(vigil_headers))
            .arg(&out)
            .arg("quorum0")
            .env("VIGIL_SOCKET", v.socket())
            .env("LD_LIBRARY_PATH", c_lib_dir())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let lines = || std::fs::read_to_string(&out).unwrap_or_default();
        let has = |l: &str| lines().lines().any(|x| x == l);
        wait_for("instance 1 started", || has("1 start 1").then_some(()));
        set_expected_votes(&v, 2);
        // The instance outlives the warning by 2.5 s, more than any fixed grace, and says so.
        wait_for("instance 1 survived the warning", || has("1 survived 1").then_some(()));
        set_expected_votes(&v, 1);
        set_expected_votes(&v, 2);
        let code = wait_deadline(&mut child, "the SAM supervisor").code();
        set_expected_votes(&v, 1);
        assert_eq!(code, Some(0), "{}", lines());
        assert_eq!(
            lines().trim_end(),
            "0 initialize 1\n1 register 1\n1 start 1\n1 warned 1\n1 survived 1\n2 register 1",
            "killed at the second loss, without a second warning"
        );
    }
}

fn suite(vigil_headers: bool) -> PathBuf {
    c_program("sam_corosync_suite.c", vigil_headers, &["sam", "cmap"])
}

// The scenarios of corosync's own test program (test/testsam.c, tests 1 to 9), replayed by
// tests/c/sam_corosync_suite.c against vigil's libsam and libcmap and a real vigild. Its quorum test
// drives vigil's quorum through quorum.expected_votes instead of corosync's testquorum provider.
#[test]
fn corosyncs_testsam_scenarios_all_pass() {
    let v = Vigild::start();
    for vigil_headers in [true, false] {
        let err = v.dir.path().join(format!("suite-{vigil_headers}.err"));
        let mut child = Command::new(suite(vigil_headers))
            .env("VIGIL_SOCKET", v.socket())
            .env("LD_LIBRARY_PATH", c_lib_dir())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let code = wait_suite(&mut child);
        let report = std::fs::read_to_string(&err).unwrap();
        for n in 1..=9 {
            assert!(
                report.lines().any(|l| l == format!("test{n} passed")),
                "test{n} did not pass (vigil headers: {vigil_headers}):\n{report}"
            );
        }
        assert!(report.contains("All tests passed (0 skipped)"), "{report}");
        assert_eq!(code, Some(0), "{report}");
    }
}

/// The suite runs its nine scenarios one after another, with corosync's sleeps: its own deadline.
fn wait_suite(child: &mut std::process::Child) -> Option<i32> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the corosync test suite did not end in time");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
