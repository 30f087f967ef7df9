//! SAM without waiting for vigild: what corosync's library does in the application's own supervisor
//! (keep the data, start the next instance) does not wait for vigild's commit. vigild is stopped
//! (SIGSTOP) while the application acts, so anything that still waited for it would not return.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::sam::{instance_pid, SamApp};

/// vigild, stopped until dropped.
struct Stopped(i32);

impl Stopped {
    fn new(v: &Vigild) -> Stopped {
        let pid = v.pid() as i32;
        kill(pid, "STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        kill(self.0, "CONT");
    }
}

fn lines_with(app: &SamApp, prefix: &str) -> usize {
    app.lines().iter().filter(|l| l.starts_with(prefix)).count()
}

/// The record vigild keeps for the application's supervisor (with its data size), once it has one.
fn record(v: &Vigild, pid: i32) -> Option<vigil_client::proto::SamProcess> {
    v.client().sam_list().ok()?.into_iter().find(|p| p.pid == pid)
}

#[test]
fn a_data_store_no_larger_than_the_last_one_vigild_took_is_written_behind() {
    let v = Vigild::start();
    let go = v.path("go");
    let app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "60000",
            "--on",
            &format!("1:store:aaaa;wait:{};store:bbbb;store:cccccccc;exit:0", go.display()),
        ],
    );
    wait_for("vigild has the first store", || {
        record(&v, app.pid()).filter(|r| r.data_size == 4)
    });
    {
        let _stopped = Stopped::new(&v);
        std::fs::write(&go, "").unwrap();
        // The same size: the supervisor keeps it and answers at once.
        wait_for_within(
            "the second store returns while vigild is stopped",
            Duration::from_secs(5),
            || (lines_with(&app, "1 store:") == 2).then_some(()),
        );
        // Larger: it could go over the user's quota, so it waits for vigild's word.
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            assert_eq!(
                lines_with(&app, "1 store:"),
                2,
                "a larger store returned while vigild was stopped"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    wait_for("the larger store returns once vigild runs", || {
        (lines_with(&app, "1 store:") == 3).then_some(())
    });
    assert!(
        app.lines()
            .iter()
            .filter(|l| l.starts_with("1 store:"))
            .all(|l| l.ends_with(" ok")),
        "{:#?}",
        app.lines()
    );
    // vigild got the blob written behind, and the larger one after it.
    let evs = crate::sam::sam_events(&v, app.pid());
    let sizes: Vec<i64> = evs
        .iter()
        .filter(|e| e.name.ends_with(".data"))
        .filter_map(|e| crate::sam::attr(e, "size"))
        .collect();
    assert_eq!(sizes, vec![4, 4, 8], "{evs:#?}");
}

#[test]
fn the_next_instance_runs_before_vigild_hears_that_the_last_one_ended() {
    let v = Vigild::start();
    let go = v.path("go");
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "60000",
            "--on",
            &format!("1:start;wait:{};abort", go.display()),
            "--on",
            // Without the CMAP flag these are answered at once, as corosync's parent does: none waits
            // for vigild.
            "2:start;warn:10;stop;exit:0",
        ],
    );
    wait_for("vigild has the first instance", || {
        record(&v, app.pid()).filter(|r| r.info.instance == 1)
    });
    {
        let _stopped = Stopped::new(&v);
        std::fs::write(&go, "").unwrap();
        wait_for_within(
            "the second instance's register returns while vigild is stopped",
            Duration::from_secs(5),
            || app.result(2, "exit:0"),
        );
    }
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(2, "register"), Some("2".into()), "{:#?}", app.lines());
    // vigild heard all of it, in order: the first instance's end before the second one.
    let n = crate::sam::names(&crate::sam::sam_events(&v, app.pid()));
    let exit = n.iter().position(|x| x == "exit").expect("an exit event");
    let restart = n.iter().position(|x| x == "restart").expect("a restart event");
    assert!(exit < restart, "{n:?}");
    // And what the second instance did, after it, in its order.
    let tail: Vec<&str> = n[restart..].iter().map(String::as_str).collect();
    assert_eq!(&tail[..4], ["restart", "start", "warn_signal", "stop"], "{n:?}");
}

#[test]
fn a_store_vigild_takes_after_its_instance_died_is_the_next_instances_data() {
    // corosync's parent keeps a store it read before the instance died (lib/sam.c, sam_parent_data_store:
    // the blob is the parent's once read, whatever becomes of the child). vigil's supervisor keeps a first
    // store once vigild took it; here vigild is stopped from before the store until the instance, blocked
    // in it, has been warned (SIGTERM ends it) and reaped: vigild's answer comes after that death.
    let v = Vigild::start();
    let go = v.path("go");
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "500",
            "--on",
            &format!("1:start;wait:{};store:aaaa;hang", go.display()),
            "--on",
            "2:data;exit:0",
        ],
    );
    app.wait_line("1 start ok");
    let first = instance_pid(&v, app.pid());
    {
        let _stopped = Stopped::new(&v);
        std::fs::write(&go, "").unwrap();
        // The supervisor cannot start the next instance before vigild answers the reports it queued.
        wait_for("instance 1 dead and reaped while vigild is stopped", || {
            (!vigil_sys::children(app.pid()).contains(&first)).then_some(())
        });
        assert!(app.result(1, "store:aaaa").is_none(), "{:#?}", app.lines());
        assert!(app.result(2, "register").is_none(), "{:#?}", app.lines());
    }
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(2, "data").as_deref(), Some("aaaa"), "{:#?}", app.lines());
}

/// A second vigild, on its own state directory and the first one's socket path; killed when dropped.
struct Successor(std::process::Child);

impl Successor {
    /// Takes over `v`'s socket path (the old socket file is moved aside: `v` keeps its connections).
    fn start(v: &Vigild) -> Successor {
        std::fs::rename(v.socket(), v.path("aside.sock")).unwrap();
        let dir = v.path("successor");
        std::fs::create_dir(&dir).unwrap();
        let log = std::fs::File::create(dir.join("vigild.log")).unwrap();
        let child = std::process::Command::new(bin("vigild"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(v.socket())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the second vigild");
        let s = Successor(child);
        wait_for("the second vigild answers", || {
            vigil_client::Client::connect(&v.socket()).ok()
        });
        s
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reports_in_flight_when_vigild_dies_are_made_again_on_the_next_connection() {
    // The supervisor sends its reports without waiting for their answers. When its vigild dies with
    // several of them unanswered, each goes again on the new connection: the request ids of the dead
    // one mean nothing there, and waiting for them would wait forever (the application's stop, which
    // waits for its answer, would never return).
    let mut v = Vigild::start();
    let go = v.path("go");
    let mut app = SamApp::start(
        Some(&v),
        v.dir.path(),
        &[
            "--interval",
            "60000",
            "--policy",
            "restart+cmap",
            "--on",
            &format!("1:start;wait:{};hc;hc;hc;stop;exit:0", go.display()),
        ],
    );
    app.wait_line("1 start ok");
    kill(v.pid() as i32, "STOP");
    std::fs::write(&go, "").unwrap();
    // The heartbeats return at once (their reports wait for vigild's answers); the stop waits.
    wait_for("three heartbeats", || (lines_with(&app, "1 hc") == 3).then_some(()));
    let next = Successor::start(&v);
    v.kill9();
    wait_for_within("the stop returns", Duration::from_secs(10), || app.result(1, "stop"));
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    assert_eq!(app.result(1, "stop").as_deref(), Some("ok"), "{:#?}", app.lines());
    // The new vigild has the application, told again from its record.
    let mut c = vigil_client::Client::connect(&v.socket()).unwrap();
    let subject = format!("sam/{}", app.pid());
    let evs: Vec<_> = c
        .events(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == subject)
        .collect();
    let n = crate::sam::names(&evs);
    assert!(n.contains(&"reattach".to_string()), "{n:?}");
    drop(next);
}
