//! SAM: real applications (vigil-sam-app, a scriptable program linking vigil-client's sam module) under
//! their own supervisors, reporting to a real vigild. Each step of the application writes what the call
//! returned, so every return code of sam.h is checked as the application sees it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_client::proto::{CmapValue, Event, Value};

use crate::harness::*;

/// A running vigil-sam-app: its supervisor is the process we started.
pub(crate) struct SamApp {
    pub(crate) child: Child,
    out: PathBuf,
}

impl SamApp {
    pub(crate) fn start(v: Option<&Vigild>, dir: &Path, args: &[&str]) -> SamApp {
        SamApp::start_env(v, dir, args, &[])
    }

    /// [`SamApp::start`] with more environment variables.
    pub(crate) fn start_env(v: Option<&Vigild>, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> SamApp {
        let out = dir.join(format!("sam-{}.out", unique()));
        let mut cmd = Command::new(bin("vigil-sam-app"));
        cmd.arg("--out")
            .arg(&out)
            .args(args)
            .envs(env.iter().copied())
            .process_group(0);
        match v {
            Some(v) => cmd.env("VIGIL_SOCKET", v.socket()),
            None => cmd.env("VIGIL_SOCKET", dir.join("no-such.sock")),
        };
        let child = cmd.stdout(Stdio::null()).spawn().expect("start vigil-sam-app");
        SamApp { child, out }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub(crate) fn wait_line(&self, line: &str) {
        wait_for(&format!("{line:?} in {}", self.out.display()), || {
            self.lines().iter().any(|l| l == line).then_some(())
        });
    }

    /// What step `step` of `instance` returned (the first such line).
    pub(crate) fn result(&self, instance: u32, step: &str) -> Option<String> {
        let prefix = format!("{instance} {step} ");
        self.lines()
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    /// Waits for the supervisor to exit; its exit code.
    pub(crate) fn exit_code(&mut self) -> i32 {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < end,
                "the SAM supervisor did not exit:\n{:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SamApp {
    fn drop(&mut self) {
        // The supervisor and its instances share a process group: none outlives the test. (Not with
        // kill(1): procps reads `-KILL -PGID` as options, and can signal every process.)
        let _ = vigil_sys::kill_process_group(self.child.id() as i32, 9);
        let _ = self.child.wait();
    }
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// The application's current instance, as vigild has it.
pub(crate) fn instance_pid(v: &Vigild, supervisor: i32) -> i32 {
    instance_pid_other_than(v, supervisor, 0)
}

/// The application's instance once it is another than `old`, as vigild has it.
fn instance_pid_other_than(v: &Vigild, supervisor: i32, old: i32) -> i32 {
    wait_for("the instance in vigild's SAM records", || {
        v.client()
            .sam_list()
            .ok()?
            .into_iter()
            .find(|p| p.pid == supervisor && p.info.child > 0 && p.info.child != old)
            .map(|p| p.info.child)
    })
}

/// The next instance the supervisor forked ahead of need (its child that is not `instance`).
pub(crate) fn standby_of(supervisor: i32, instance: i32) -> i32 {
    wait_for("the standby instance", || {
        vigil_sys::children(supervisor).into_iter().find(|&c| c != instance)
    })
}

/// Whether `pid` has ended (gone, or a zombie not yet reaped).
fn ended(pid: i32) -> bool {
    vigil_sys::proc_stat(pid).map_or(true, |s| s.state == 'Z')
}

pub(crate) fn sam_events(v: &Vigild, pid: i32) -> Vec<Event> {
    let subject = format!("sam/{pid}");
    v.events().into_iter().filter(|e| e.subject == subject).collect()
}

pub(crate) fn names(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .map(|e| e.name.trim_start_matches("sys.vigil.sam.").to_string())
        .collect()
}

pub(crate) fn attr(e: &Event, k: &str) -> Option<i64> {
    e.attrs.iter().find(|(n, _)| n == k).and_then(|(_, v)| match v {
        Value::Int(i) => Some(*i),
        _ => None,
    })
}

pub(crate) fn cmap(v: &Vigild, key: &str) -> Option<CmapValue> {
    v.client().cmap_get(key).ok()
}

fn set_expected_votes(v: &Vigild, n: u32) {
    v.client()
        .cmap_set("quorum.expected_votes", CmapValue::U32(n), false)
        .expect("set quorum.expected_votes");
}

#[test]
fn every_call_returns_the_code_of_sam_h_in_each_state() {
    let v = Vigild::start();
    let before = "start;hc;stop;finalize;register;mark-failed;warn:15;size;data;\
                  init:100:0;init:100:4;init:100:24;init:-1:restart;init:60000:restart";
    let pre = "hc;start;stop;callback:1;mark-failed;warn:0;warn:12;store:pre;size";
    let one = "hc;stop;warn:0;mark-failed;restore-small;start;start;callback:1;register;stop;\
               callback-none;size;data;finalize;finalize;start;stop;hc;size;data;warn:15";
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &["--before", before, "--pre", pre, "--on", &format!("1:{one}")],
    );
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    let want = [
        // Before initialize: every call is a bad handle.
        "0 start BadHandle",
        "0 hc BadHandle",
        "0 stop BadHandle",
        "0 finalize BadHandle",
        "0 register BadHandle",
        "0 mark-failed BadHandle",
        "0 warn:15 BadHandle",
        "0 size BadHandle",
        "0 data BadHandle",
        // Policies: neither QUIT nor RESTART, QUORUM alone, QUORUM|CMAP alone. A negative interval is
        // accepted as corosync's sam_initialize accepts it (no time limit); a second call is a bad handle.
        "0 init:100:0 InvalidParam",
        "0 init:100:4 InvalidParam",
        "0 init:100:24 InvalidParam",
        "0 init:-1:restart ok",
        "0 init:60000:restart BadHandle",
        // Initialized, not registered.
        "0 hc BadHandle",
        "0 start BadHandle",
        "0 stop BadHandle",
        "0 callback:1 BadHandle",
        "0 mark-failed BadHandle",
        // Any int is a warn signal to corosync's sam_warn_signal_set.
        "0 warn:0 ok",
        "0 warn:12 ok",
        "0 store:pre ok",
        "0 size 3",
        "1 register 1",
        // Registered.
        "1 hc BadHandle",
        "1 stop BadHandle",
        "1 warn:0 ok",
        "1 mark-failed InvalidParam",
        "1 restore-small InvalidParam",
        "1 start ok",
        // Started.
        "1 start BadHandle",
        "1 callback:1 BadHandle",
        "1 register BadHandle",
        "1 stop ok",
        // A first callback registration of none.
        "1 callback-none InvalidParam",
        // The data stored before register reached the instance.
        "1 size 3",
        "1 data pre",
        "1 finalize ok",
        // Finalized.
        "1 finalize BadHandle",
        "1 start BadHandle",
        "1 stop BadHandle",
        "1 hc BadHandle",
        "1 size BadHandle",
        "1 data BadHandle",
        "1 warn:15 BadHandle",
    ];
    let got = app.lines();
    assert_eq!(got, want, "lines:\n{}", got.join("\n"));
    // An orderly end (not started) quits: the supervisor's record is gone.
    let evs = sam_events(&v, app.pid());
    assert_eq!(names(&evs).last().map(String::as_str), Some("quit"), "{evs:#?}");
    assert!(v.client().sam_list().unwrap().is_empty());
}

#[test]
fn interval_zero_has_no_time_limit_and_no_callback() {
    let v = Vigild::start();
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "0",
            "--on",
            "1:callback:1;start;hc;sleep:400;stop;finalize",
        ],
    );
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(1, "callback:1").as_deref(), Some("InvalidParam"));
    assert_eq!(app.result(1, "sleep:400").as_deref(), Some("ok"));
    let evs = sam_events(&v, app.pid());
    assert!(!names(&evs).contains(&"warn".to_string()), "{evs:#?}");
}

#[test]
fn restart_policy_counts_instances_and_keeps_the_data() {
    let v = Vigild::start();
    let crash = "data;start;hc;store:gen-{n};abort";
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "5000",
            "--pre",
            "store:gen-{n}",
            "--on",
            &format!("1:{crash}"),
            "--on",
            &format!("2:{crash}"),
            "--on",
            &format!("3:{crash}"),
            "--otherwise",
            "data;finalize;exit:0",
        ],
    );
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    for n in 1..=4u32 {
        assert_eq!(app.result(n, "register"), Some(n.to_string()), "{:#?}", app.lines());
        // Each instance finds what the one before stored.
        assert_eq!(app.result(n, "data"), Some(format!("gen-{}", n - 1)));
    }
    let evs = sam_events(&v, app.pid());
    let n = names(&evs);
    assert_eq!(n.iter().filter(|x| *x == "register").count(), 1, "{n:?}");
    assert_eq!(n.iter().filter(|x| *x == "restart").count(), 3, "{n:?}");
    let aborted = evs
        .iter()
        .filter(|e| e.name.ends_with(".exit") && attr(e, "signal") == Some(6));
    assert_eq!(aborted.count(), 3, "{evs:#?}");
    let quit = evs.last().unwrap();
    assert!(quit.name.ends_with(".quit"), "{evs:#?}");
    assert_eq!(attr(quit, "instance"), Some(4));
}

#[test]
fn quit_policy_exits_with_the_failure() {
    let v = Vigild::start();
    let mut app = SamApp::start(Some(&v), v.dir.path(), &["--policy", "quit", "--on", "1:start;abort"]);
    // corosync's sam_register: exit(WEXITSTATUS(child_status)), 0 after a signal.
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(2, "register"), None, "no second instance under QUIT");
    let evs = sam_events(&v, app.pid());
    let quit = evs.iter().find(|e| e.name.ends_with(".quit")).expect("quit event");
    assert!(quit.attrs.contains(&("failed".into(), Value::Bool(true))), "{quit:?}");
}

#[test]
fn a_mebibyte_of_data_survives_restarts_and_storing_none_deletes_it() {
    let v = Vigild::start();
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "10000",
            "--on",
            "1:store-big:5000000;size;store-big:1048576;start;abort",
            "--on",
            "2:check-big:1048576;size;delete;size;data;start;abort",
            "--otherwise",
            "size;finalize;exit:0",
        ],
    );
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    let lines = app.lines();
    let want = [
        // Too large for vigild to keep: refused, nothing changed.
        "1 store-big NoMemory",
        "1 size 0",
        "1 store-big ok",
        "2 check-big ok",
        "2 size 1048576",
        "2 delete ok",
        "2 size 0",
        "2 data -",
        "3 size 0",
    ];
    for w in want {
        assert!(lines.iter().any(|l| l == w), "{w:?} missing from {lines:#?}");
    }
}

#[test]
fn a_missed_heartbeat_warns_then_kills_and_the_warn_signal_can_change() {
    let v = Vigild::start();
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "1000",
            "--on",
            "1:catch;start;beat:400;hang",
            "--on",
            "2:warn:10;catch;start;hang",
            "--on",
            "3:warn:9;start;hang",
            "--otherwise",
            "finalize;exit:0",
        ],
    );
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    // The warn signal reached the instance (which caught it), and only SIGKILL ended it.
    assert_eq!(app.result(1, "caught").as_deref(), Some("15"), "{:#?}", app.lines());
    assert_eq!(app.result(2, "caught").as_deref(), Some("10"), "{:#?}", app.lines());
    assert_eq!(app.result(3, "caught"), None);
    let evs = sam_events(&v, app.pid());
    let of = |n: i64| -> Vec<&Event> { evs.iter().filter(|e| attr(e, "instance") == Some(n)).collect() };
    for (n, sig) in [(1, 15), (2, 10)] {
        let e = of(n);
        let warn = e.iter().position(|e| e.name.ends_with(".warn")).expect("warn");
        let kill = e.iter().position(|e| e.name.ends_with(".kill")).expect("kill");
        let exit = e.iter().position(|e| e.name.ends_with(".exit")).expect("exit");
        assert!(warn < kill && kill < exit, "{e:#?}");
        assert_eq!(attr(e[warn], "signal"), Some(sig));
        assert_eq!(attr(e[exit], "signal"), Some(9));
        // One interval passes between the warning and the kill.
        assert!(e[kill].time_ms - e[warn].time_ms >= 700, "{e:#?}");
    }
    // SIGKILL as the warn signal: no warning, the first miss kills.
    let e = of(3);
    let warn = e.iter().find(|e| e.name.ends_with(".warn")).expect("warn");
    assert_eq!(attr(warn, "signal"), Some(9));
    assert!(!e.iter().any(|e| e.name.ends_with(".kill")), "{e:#?}");
}

#[test]
fn a_failing_callback_stops_the_heartbeats_and_a_healthy_one_keeps_them() {
    let v = Vigild::start();
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "1000",
            "--on",
            "1:callback:3;start;hang",
            "--on",
            // finalize while started stops first: an orderly end.
            "2:callback:1000000;start;sleep:3000;finalize;exit:0",
        ],
    );
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    let evs = sam_events(&v, app.pid());
    let start1 = evs
        .iter()
        .find(|e| e.name.ends_with(".start") && attr(e, "instance") == Some(1))
        .unwrap();
    let warn1 = evs
        .iter()
        .find(|e| e.name.ends_with(".warn") && attr(e, "instance") == Some(1))
        .expect("instance 1 warned once its callback failed");
    // Three healthy answers, one per interval, came first.
    assert!(warn1.time_ms - start1.time_ms >= 2000, "{evs:#?}");
    assert!(
        !evs.iter()
            .any(|e| e.name.ends_with(".warn") && attr(e, "instance") == Some(2)),
        "a healthy callback keeps the instance alone: {evs:#?}"
    );
    assert_eq!(app.result(2, "sleep:3000").as_deref(), Some("ok"));
    assert_eq!(app.result(2, "finalize").as_deref(), Some("ok"));
}

#[test]
fn cmap_keys_follow_a_whole_cycle_and_go_when_the_application_ends() {
    let v = Vigild::start();
    let d = v.dir.path();
    let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
    let script = format!(
        "1:wait:{};start;hc;wait:{};stop;wait:{};finalize;exit:0",
        a.display(),
        b.display(),
        c.display()
    );
    let mut app = SamApp::start(
        Some(&v),
        d,
        &["--interval", "60000", "--policy", "restart+cmap", "--on", &script],
    );
    let p = format!("resources.process.{}.", app.pid());
    let key = |k: &str| cmap(&v, &format!("{p}{k}"));
    let state = |s: &str| Some(CmapValue::Str(s.into()));
    wait_for("state stopped after register", || {
        (key("state") == state("stopped")).then_some(())
    });
    assert_eq!(key("recovery"), state("restart"));
    assert_eq!(key("poll_period"), Some(CmapValue::U64(60000)));
    std::fs::write(&a, "").unwrap();
    app.wait_line("1 hc ok");
    wait_for("state running after start", || {
        (key("state") == state("running")).then_some(())
    });
    // corosync's cs_timestamp_get(): CLOCK_MONOTONIC.
    let now_ns = vigil_sys::monotonic_now_ns();
    match key("last_updated") {
        Some(CmapValue::U64(t)) => assert!(t <= now_ns && now_ns - t < 60_000_000_000, "{t} vs {now_ns}"),
        other => panic!("last_updated is {other:?}"),
    }
    std::fs::write(&b, "").unwrap();
    app.wait_line("1 stop ok");
    wait_for("state stopped after stop", || {
        (key("state") == state("stopped")).then_some(())
    });
    std::fs::write(&c, "").unwrap();
    assert_eq!(app.exit_code(), 0);
    let left = v.client().cmap_iter(vigil_client::proto::CmapMap::Main, &p).unwrap();
    assert!(left.is_empty(), "keys left after a normal end: {left:?}");
}

#[test]
fn mark_failed_kills_without_warning_and_leaves_state_failed() {
    let v = Vigild::start();
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "60000",
            "--policy",
            "restart+cmap",
            "--on",
            "1:catch;start;hc;mark-failed;hang",
        ],
    );
    // RESTART becomes QUIT inside the supervisor, which exits with WEXITSTATUS of the SIGKILL: 0.
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(1, "mark-failed").as_deref(), Some("ok"));
    assert_eq!(app.result(1, "caught"), None, "no warning before the kill");
    assert_eq!(app.result(2, "register"), None);
    let p = format!("resources.process.{}.", app.pid());
    assert_eq!(cmap(&v, &format!("{p}state")), Some(CmapValue::Str("failed".into())));
    // corosync's sam_parent_mark_child_failed does not rewrite the recovery key.
    assert_eq!(
        cmap(&v, &format!("{p}recovery")),
        Some(CmapValue::Str("restart".into()))
    );
    let n = names(&sam_events(&v, app.pid()));
    let tail: Vec<&str> = n.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(tail, ["failed", "kill", "exit", "quit"], "{n:?}");
}

#[test]
fn start_waits_for_quorum_and_losing_quorum_recovers() {
    let v = Vigild::start();
    set_expected_votes(&v, 2);
    let out = v.cli(&["quorum"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("not quorate"),
        "{out:?}"
    );
    let app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "1000",
            "--policy",
            "restart+quorum+cmap",
            "--on",
            "1:start;beat:600000",
            "--on",
            "2:start;beat:600000",
        ],
    );
    let key = format!("resources.process.{}.state", app.pid());
    let state = |s: &str| Some(CmapValue::Str(s.into()));
    wait_for("waiting for quorum", || {
        (cmap(&v, &key) == state("waiting for quorum")).then_some(())
    });
    assert_eq!(app.result(1, "start"), None, "start returned without quorum");
    set_expected_votes(&v, 1);
    app.wait_line("1 start ok");
    wait_for("running", || (cmap(&v, &key) == state("running")).then_some(()));
    // Losing quorum while started takes the recovery action; the next instance waits again.
    set_expected_votes(&v, 3);
    app.wait_line("2 register 2");
    wait_for("instance 2 waiting", || {
        (cmap(&v, &key) == state("waiting for quorum")).then_some(())
    });
    let evs = sam_events(&v, app.pid());
    let warn = evs.iter().find(|e| e.name.ends_with(".warn")).expect("warn");
    assert!(
        warn.attrs
            .contains(&("reason".into(), Value::Str("quorum lost".into()))),
        "{warn:?}"
    );
    set_expected_votes(&v, 1);
    app.wait_line("2 start ok");
    // A supervisor that dies without a word is lost: its record goes, its state says failed.
    kill(app.pid(), "KILL");
    let mut app = app;
    app.child.wait().unwrap();
    wait_for("the lost supervisor to be forgotten", || {
        v.client().sam_list().unwrap().is_empty().then_some(())
    });
    assert_eq!(cmap(&v, &key), state("failed"));
    assert!(v
        .events()
        .iter()
        .any(|e| e.name == "sys.vigil.sam.lost" && e.subject == format!("sam/{}", app.pid())));
}

#[test]
fn expected_votes_is_checked_persisted_and_drives_quorum() {
    let mut v = Vigild::start();
    let mut c = v.client();
    assert_eq!(
        c.cmap_get("quorum.provider").unwrap(),
        CmapValue::Str("corosync_votequorum".into())
    );
    assert_eq!(c.cmap_get("quorum.expected_votes").unwrap(), CmapValue::U32(1));
    assert_eq!(c.cmap_get("runtime.votequorum.quorate").unwrap(), CmapValue::U8(1));
    for bad in [CmapValue::U32(0), CmapValue::Str("2".into()), CmapValue::U64(2)] {
        let e = c.cmap_set("quorum.expected_votes", bad.clone(), false).unwrap_err();
        assert!(e.to_string().contains("quorum.expected_votes"), "{bad:?}: {e}");
    }
    assert_eq!(
        c.cmap_get("quorum.expected_votes").unwrap(),
        CmapValue::U32(1),
        "unchanged"
    );
    assert!(c.cmap_delete("quorum.expected_votes").is_err());
    let mut t = v.client();
    assert!(t.quorum_track().unwrap());
    c.cmap_set("quorum.expected_votes", CmapValue::U32(2), false).unwrap();
    t.set_read_timeout(Some(DEADLINE)).unwrap();
    t.read_push().unwrap();
    assert_eq!(t.quorum_changes(), [false], "the change is pushed to trackers");
    assert_eq!(c.cmap_get("runtime.votequorum.quorate").unwrap(), CmapValue::U8(0));
    drop((c, t));
    v.kill9();
    v.spawn();
    let mut c = v.client();
    assert_eq!(
        c.cmap_get("quorum.expected_votes").unwrap(),
        CmapValue::U32(2),
        "kept across kill -9"
    );
    assert!(!c.quorum_track().unwrap());
}

#[test]
fn a_loop_of_data_stores_sends_vigild_the_last_blob_not_every_one() {
    let v = Vigild::start();
    let go = v.dir.path().join("go");
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "60000",
            "--on",
            &format!("1:start;stores:2000;store:end;wait:{};abort", go.display()),
            "--otherwise",
            "data;finalize;exit:0",
        ],
    );
    app.wait_line("1 store:end ok");
    // The last blob reaches vigild (a report held back is made within 2 ms)...
    wait_for("the last blob in vigild", || {
        let l = v.client().sam_list().ok()?;
        l.first().filter(|p| p.data_size == 3).map(|_| ())
    });
    // ...and not every one before it: the blobs held back together (2 ms) make one report, one data
    // event, so there are at most as many as 2 ms windows in the loop (and the first store, which
    // waited for vigild, and the last).
    let stores = names(&sam_events(&v, app.pid()))
        .iter()
        .filter(|n| *n == "data")
        .count();
    let took_us: u128 = app
        .result(1, "stores:2000")
        .and_then(|r| r.split_whitespace().nth(1)?.parse().ok())
        .expect("the loop's time");
    let windows = took_us / 2000 + 1;
    assert!(
        stores >= 1 && stores as u128 <= windows + 2,
        "{stores} data events for 2,001 stores in {took_us} µs"
    );
    std::fs::write(&go, "").unwrap();
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(2, "data").as_deref(), Some("end"));
}

#[test]
fn the_record_and_data_survive_a_kill_of_vigild() {
    let mut v = Vigild::start();
    let go = v.dir.path().join("go");
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "60000",
            "--policy",
            "restart+cmap",
            "--on",
            &format!("1:store:kept;start;hc;wait:{};abort", go.display()),
            "--otherwise",
            "data;finalize;exit:0",
        ],
    );
    app.wait_line("1 hc ok");
    wait_for("the record", || {
        let l = v.client().sam_list().unwrap();
        l.first().filter(|p| p.data_size == 4).map(|_| ())
    });
    v.kill9();
    v.spawn();
    let l = v.client().sam_list().unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!((l[0].pid, l[0].info.instance, l[0].data_size), (app.pid(), 1, 4));
    assert!(!l[0].connected, "the supervisor has not spoken to the new vigild yet");
    assert_eq!(
        cmap(&v, &format!("resources.process.{}.state", app.pid())),
        Some(CmapValue::Str("running".into()))
    );
    std::fs::write(&go, "").unwrap();
    // The supervisor reconnects with its next report and carries on.
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(2, "data").as_deref(), Some("kept"));
    let n = names(&sam_events(&v, app.pid()));
    assert!(n.contains(&"reattach".to_string()), "{n:?}");
    assert!(v.client().sam_list().unwrap().is_empty());
}

#[test]
fn without_vigild_plain_policies_work_and_flags_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = SamApp::start(
        None,
        dir.path(),
        &["--on", "1:start;store:x;abort", "--otherwise", "data;finalize;exit:5"],
    );
    assert_eq!(app.exit_code(), 5, "{:#?}", app.lines());
    assert_eq!(app.result(2, "data").as_deref(), Some("x"));
    // As in corosync, cmap is first needed by register: initialize succeeds, register fails.
    let mut app = SamApp::start(None, dir.path(), &["--policy", "restart+cmap"]);
    assert_eq!(app.exit_code(), 70);
    assert_eq!(app.result(0, "initialize").as_deref(), Some("ok"));
    assert_eq!(app.result(0, "register").as_deref(), Some("Library"));
    let mut app = SamApp::start(None, dir.path(), &["--policy", "restart+quorum"]);
    assert_eq!(app.exit_code(), 70);
    assert_eq!(app.result(0, "initialize").as_deref(), Some("Library"));
}

#[test]
fn each_policy_combination_recovers_as_it_says() {
    let v = Vigild::start();
    for base in ["quit", "restart"] {
        for quorum in [false, true] {
            for cmap_flag in [false, true] {
                let mut policy = base.to_string();
                if quorum {
                    policy.push_str("+quorum");
                }
                if cmap_flag {
                    policy.push_str("+cmap");
                }
                let mut app = SamApp::start(
                    Some(&v),
                    v.dir.path(),
                    &[
                        "--interval",
                        "60000",
                        "--policy",
                        &policy,
                        "--on",
                        "1:start;hc;abort",
                        "--otherwise",
                        "start;stop;finalize;exit:0",
                    ],
                );
                let code = app.exit_code();
                let state = cmap(&v, &format!("resources.process.{}.state", app.pid()));
                if base == "restart" {
                    assert_eq!(code, 0, "{policy}: {:#?}", app.lines());
                    assert_eq!(app.result(2, "start").as_deref(), Some("ok"), "{policy}");
                    assert_eq!(state, None, "{policy}: keys go after an orderly end");
                } else {
                    // WEXITSTATUS of an abort: 0, as corosync's supervisor exits.
                    assert_eq!(code, 0, "{policy}: {:#?}", app.lines());
                    assert_eq!(app.result(2, "register"), None, "{policy}");
                    let want = cmap_flag.then(|| CmapValue::Str("failed".into()));
                    assert_eq!(state, want, "{policy}: a failure that ends the supervisor");
                }
                let n = names(&sam_events(&v, app.pid()));
                assert_eq!(n.first().map(String::as_str), Some("register"), "{policy}: {n:?}");
                assert_eq!(n.last().map(String::as_str), Some("quit"), "{policy}: {n:?}");
            }
        }
    }
}

#[test]
fn a_restart_releases_the_instance_forked_ahead_with_the_data_and_the_handlers_back() {
    let v = Vigild::start();
    // The handlers are installed before register: the supervisor, and each instance it forks, has them.
    let app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "0",
            "--pre",
            "catch",
            "--on",
            "1:start;store:one;hang",
            "--on",
            "2:start;hang",
            "--on",
            "3:data;start;hang",
        ],
    );
    app.wait_line("1 store:one ok");
    let first = instance_pid(&v, app.pid());
    // A standby runs no handler of the application's: a signal it would catch ends it.
    let standby = standby_of(app.pid(), first);
    vigil_sys::send_signal(standby, SIGUSR1).unwrap();
    wait_for("the standby ended by SIGUSR1", || ended(standby).then_some(()));
    // Gone when it is needed: the supervisor forks the next instance as before.
    vigil_sys::send_signal(first, 9).unwrap();
    app.wait_line("2 start ok");
    let second = instance_pid_other_than(&v, app.pid(), first);
    assert_ne!(second, standby);
    assert!(app.result(2, "caught").is_none(), "{:#?}", app.lines());
    // The standby forked while instance 2 runs is instance 3: with the data instance 1 stored, and the
    // application's handler back.
    let standby = standby_of(app.pid(), second);
    vigil_sys::send_signal(second, 9).unwrap();
    app.wait_line("3 start ok");
    assert_eq!(instance_pid_other_than(&v, app.pid(), second), standby);
    assert_eq!(app.result(3, "data").as_deref(), Some("one"), "{:#?}", app.lines());
    vigil_sys::send_signal(standby, SIGUSR1).unwrap();
    app.wait_line(&format!("3 caught {SIGUSR1}"));
}

#[test]
fn a_standby_ends_with_its_supervisor_and_none_is_forked_when_turned_off() {
    let v = Vigild::start();
    let go = v.path("go");
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "0",
            "--on",
            &format!("1:start;wait:{};finalize;exit:0", go.display()),
        ],
    );
    app.wait_line("1 start ok");
    let standby = standby_of(app.pid(), instance_pid(&v, app.pid()));
    // The supervisor quits: its standby goes with it.
    std::fs::write(&go, "").unwrap();
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    wait_for("the standby gone with its supervisor", || ended(standby).then_some(()));

    // Killed, the supervisor leaves its standby an end of file.
    let app = SamApp::start(Some(&v), v.dir.path(), &["--interval", "0", "--on", "1:start;hang"]);
    app.wait_line("1 start ok");
    let standby = standby_of(app.pid(), instance_pid(&v, app.pid()));
    vigil_sys::send_signal(app.pid(), 9).unwrap();
    wait_for("the standby gone after its supervisor was killed", || {
        ended(standby).then_some(())
    });
    drop(app);

    // VIGIL_SAM_STANDBY=0: the supervisor forks nothing ahead. The standby is forked once the first
    // `start` is answered, before the supervisor reads the next command: by the store's answer it would
    // be there.
    let app = SamApp::start_env(
        Some(&v),
        v.dir.path(),
        &["--interval", "0", "--on", "1:start;store:x;hang"],
        &[("VIGIL_SAM_STANDBY", "0")],
    );
    app.wait_line("1 store:x ok");
    let first = instance_pid(&v, app.pid());
    assert_eq!(vigil_sys::children(app.pid()), vec![first]);
}

const SIGUSR1: i32 = 10;
