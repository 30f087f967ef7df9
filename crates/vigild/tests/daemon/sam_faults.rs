//! SAM when vigild stalls: a supervisor never waits for vigild to watch its application, and a QUORUM
//! application stops on its supervisor's own deadline before the other nodes count its node down.

use std::time::{Duration, Instant};

use vigil_client::proto::{CmapValue, Value};

use crate::etcd::Etcd;
use crate::harness::*;
use crate::sam::{cmap, instance_pid, names, sam_events, standby_of, SamApp};

/// Resumes a stopped vigild however the test ends, so that its drop can reap it.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = vigil_sys::send_signal(self.0, 18);
    }
}

#[test]
fn a_stalled_vigild_neither_warns_nor_restarts_a_beating_cmap_application() {
    let v = Vigild::start();
    let app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "1000",
            "--policy",
            "restart+cmap",
            "--on",
            "1:start;beat:600000",
        ],
    );
    app.wait_line("1 start ok");
    let child = instance_pid(&v, app.pid());
    let key = format!("resources.process.{}.last_updated", app.pid());
    let stamp = || match cmap(&v, &key) {
        Some(CmapValue::U64(n)) if n > 0 => Some(n),
        _ => None,
    };
    let before = wait_for("a heartbeat in CMAP", stamp);

    // vigild stopped for two intervals: the application beats all along, its supervisor must not care.
    let resume = Resume(v.pid() as i32);
    kill(v.pid() as i32, "STOP");
    let stalled = Instant::now();
    // The stall itself is the scenario (not a wait for a condition): the instance must live through it.
    while stalled.elapsed() < Duration::from_millis(2200) {
        assert!(
            alive(child),
            "the instance died while vigild was stopped: {:#?}",
            app.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(resume);

    // CMAP catches up, and nothing was held against the application.
    wait_for("a heartbeat after the stall", || stamp().filter(|n| *n > before));
    assert!(alive(child), "{:#?}", app.lines());
    let evs = names(&sam_events(&v, app.pid()));
    assert!(!evs.iter().any(|n| n == "warn" || n == "kill"), "{evs:?}");
    assert_eq!(app.result(2, "register"), None, "restarted: {:#?}", app.lines());
    assert_eq!(app.result(1, "beat"), None, "a heartbeat failed: {:#?}", app.lines());
    let rec = v
        .client()
        .sam_list()
        .unwrap()
        .into_iter()
        .find(|p| p.pid == app.pid())
        .unwrap();
    assert_eq!((rec.info.instance, rec.info.child), (1, child));
    assert!(rec.connected);
}

#[test]
fn a_quorum_application_stops_before_the_others_count_its_frozen_node_down() {
    let etcd = Etcd::start1();
    let a = Vigild::start_args(&etcd.vigild_args("a", 2));
    let b = Vigild::start_args(&etcd.vigild_args("b", 2));
    let a_up_on_b = || {
        b.client()
            .nodes()
            .ok()?
            .into_iter()
            .find(|n| n.name == "a")
            .map(|n| n.up)
    };
    wait_for("a up on b", || a_up_on_b().filter(|up| *up));
    wait_for("a quorate", || {
        (cmap(&a, "runtime.votequorum.quorate") == Some(CmapValue::U8(1))).then_some(())
    });
    let app = SamApp::start(
        Some(&a),
        a.dir.path(),
        &[
            "--interval",
            "1000",
            "--policy",
            "restart+quorum",
            "--on",
            "1:start;beat:600000",
            "--on",
            "2:start;beat:600000",
        ],
    );
    app.wait_line("1 start ok");
    let child = instance_pid(&a, app.pid());

    let resume = Resume(a.pid() as i32);
    kill(a.pid() as i32, "STOP");
    let frozen = Instant::now();
    // Whether the instance is gone is read before each look at b, so "gone" is seen no later than it was.
    let mut gone_after = None;
    loop {
        if gone_after.is_none() && !alive(child) {
            gone_after = Some(frozen.elapsed());
        }
        if a_up_on_b() == Some(false) {
            break;
        }
        assert!(frozen.elapsed() < Duration::from_secs(10), "a never went down on b");
        std::thread::sleep(Duration::from_millis(10));
    }
    let down_after = frozen.elapsed();
    let gone_after = gone_after
        .unwrap_or_else(|| panic!("b counts a down after {down_after:?}, and a's QUORUM application still runs"));
    eprintln!("frozen vigild: application stopped after {gone_after:?}, node down on b after {down_after:?}");
    drop(resume);

    // vigild back: the reports catch up, the node joins again, and the next instance starts once quorate.
    app.wait_line("2 start ok");
    let evs = sam_events(&a, app.pid());
    let warn = evs.iter().find(|e| e.name.ends_with(".warn")).expect("a warn event");
    assert_eq!(warn.attr("reason"), Some(&Value::Str("quorum lost".into())), "{warn:?}");
    wait_for("a up on b again", || a_up_on_b().filter(|up| *up));
}

#[test]
fn a_reexec_of_vigild_in_cluster_mode_does_not_fail_a_quorum_application() {
    let etcd = Etcd::start1();
    // A TTL of 5 s leaves the new image over 3 s to renew the lease before the old deadline, even on a
    // loaded machine (the minimum, 2 s, leaves about 1 s: a slow re-exec would be a real loss then).
    let ttl = 5;
    let a = Vigild::start_args(&etcd.vigild_args("a", ttl));
    wait_for("a quorate", || {
        (cmap(&a, "runtime.votequorum.quorate") == Some(CmapValue::U8(1))).then_some(())
    });
    let app = SamApp::start(
        Some(&a),
        a.dir.path(),
        &[
            "--interval",
            "1000",
            "--policy",
            "restart+quorum",
            "--on",
            "1:start;beat:600000",
        ],
    );
    app.wait_line("1 start ok");
    let child = instance_pid(&a, app.pid());
    let reexec = Instant::now();
    assert!(a.client().reexec().is_ok());
    // The new image is quorate once it has renewed its lease; the supervisor, on a new connection, must
    // neither take the image's first "not quorate yet" for a loss nor let its old deadline run out.
    wait_for("the supervisor back on the new image", || {
        let p = a.client().sam_list().ok()?.into_iter().find(|p| p.pid == app.pid())?;
        p.connected.then_some(())
    });
    wait_for("a quorate again", || {
        (cmap(&a, "runtime.votequorum.quorate") == Some(CmapValue::U8(1))).then_some(())
    });
    // Past the deadline the old image gave (at most the TTL after the re-exec), the instance lives.
    while reexec.elapsed() < Duration::from_secs(ttl) {
        assert!(
            alive(child),
            "the instance died {:?} after the re-exec: {:#?}\n{:?}",
            reexec.elapsed(),
            app.lines(),
            sam_events(&a, app.pid())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let evs = names(&sam_events(&a, app.pid()));
    assert!(!evs.iter().any(|n| n == "warn" || n == "kill"), "{evs:?}");
}

/// The last instance's end is told after the next fork. When the recovery's fork fails (here: the
/// supervisor's uid may have no more processes), `register` answers `Library` in the supervisor, as corosync's does, and
/// vigild has still heard how the last instance ended.
#[test]
fn when_the_next_instance_cannot_be_forked_vigild_still_hears_the_last_one_end() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    let v = Vigild::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.path().join("app.out");
    let go = dir.path().join("go");
    // The supervisor's uid may hold 50 processes; the test's own fill the rest once instance 1 runs.
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    use std::os::unix::process::CommandExt;
    let mut app = Command::new("prlimit")
        .arg("--nproc=50:50")
        .arg("setpriv")
        .args(nobody)
        .arg(bin("vigil-sam-app"))
        .arg("--out")
        .arg(&out)
        .args(["--interval", "300", "--policy", "restart", "--on"])
        .arg(format!("1:wait:{};start;hang", go.display()))
        .env("VIGIL_SOCKET", v.socket())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let supervisor = app.id() as i32;
    // The supervisor and its instance share a process group: none outlives the test, however it ends.
    let _group = Group(supervisor);
    let lines = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for("instance 1", || lines().contains("1 register 1").then_some(()));
    let first = instance_pid(&v, supervisor);
    let standby = standby_of(supervisor, first);
    let fill: Vec<Killed> = (0..50)
        .map(|_| {
            let c = Command::new("setpriv")
                .args(nobody)
                .args(["sleep", "600"])
                .spawn()
                .unwrap();
            Killed(c)
        })
        .collect();
    // The next instance was forked ahead (sam/standby.rs): with it gone, the recovery forks, and fails.
    vigil_sys::send_signal(standby, 9).unwrap();
    std::fs::write(&go, "").unwrap();

    let status = wait_deadline(&mut app, "the supervisor");
    assert_eq!(status.code(), Some(70), "{}", lines());
    assert!(lines().contains("0 register Library"), "{}", lines());
    let evs = sam_events(&v, supervisor);
    let exit = evs.iter().find(|e| e.name == "sys.vigil.sam.exit");
    let exit = exit.unwrap_or_else(|| panic!("no exit event: {:?}", names(&evs)));
    // Ended by the warn signal (SIGTERM) for the heartbeat it missed: the recovery that could not be forked.
    assert_eq!(crate::sam::attr(exit, "signal"), Some(15), "{exit:?}");
    drop(fill);
}

/// A process group killed when the test ends.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = vigil_sys::kill_process_group(self.0, 9);
    }
}

/// A child killed and reaped when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
