//! Daemons started through short-lived middle processes (double and triple forks, with and without
//! `setsid`) are tracked at their right level, whatever the timing: no tag restarts while its daemon
//! lives, and nothing is left after `stop`, after SIGTERM to vigild, or once the budget is spent.

use std::collections::HashMap;
use std::time::Duration;

use vigil_client::proto::TagStatus;

use crate::harness::*;

/// One way of starting a daemon: the script (with `D` standing for the daemon's command), the level of
/// the tag, the depth the daemon ends up at, and whether the tag's main process stays alive.
struct Shape {
    script: &'static str,
    level: i64,
    depth: u32,
    main_stays: bool,
}

const SHAPES: [Shape; 12] = [
    // Double fork, the middle process exits at once.
    Shape {
        script: "( D & ) ; exit 0",
        level: -1,
        depth: 2,
        main_stays: false,
    },
    // Double fork, the middle process exits after its child is started.
    Shape {
        script: "( D & sleep 0.1 ) ; exit 0",
        level: -1,
        depth: 2,
        main_stays: false,
    },
    // Triple fork, both middle processes exit at once.
    Shape {
        script: "( ( D & ) ; exit 0 ) ; exit 0",
        level: -1,
        depth: 3,
        main_stays: false,
    },
    // Triple fork, the inner middle process exits after its child is started.
    Shape {
        script: "( ( D & sleep 0.1 ) ; exit 0 ) ; exit 0",
        level: -1,
        depth: 3,
        main_stays: false,
    },
    // Double fork into a session of its own (setsid does not fork: it is no group leader).
    Shape {
        script: "( setsid D & ) ; exit 0",
        level: -1,
        depth: 2,
        main_stays: false,
    },
    // `setsid -f` forks and exits at once.
    Shape {
        script: "( setsid -f D ) ; exit 0",
        level: -1,
        depth: 2,
        main_stays: false,
    },
    // Triple fork ending in `setsid -f`.
    Shape {
        script: "( ( setsid -f D ) ; exit 0 ) ; exit 0",
        level: -1,
        depth: 3,
        main_stays: false,
    },
    // The main process does not wait for the middle one: its exit can be read before the daemon's fork.
    Shape {
        script: "( D & ) & exit 0",
        level: -1,
        depth: 2,
        main_stays: false,
    },
    // The same, leaving the session.
    Shape {
        script: "( setsid -f D ) & exit 0",
        level: -1,
        depth: 2,
        main_stays: false,
    },
    // At level 2, a daemon at depth 2 is watched...
    Shape {
        script: "( D & ) ; exit 0",
        level: 2,
        depth: 2,
        main_stays: false,
    },
    // ... and at level 3 one at depth 3...
    Shape {
        script: "( ( D & ) ; exit 0 ) ; exit 0",
        level: 3,
        depth: 3,
        main_stays: false,
    },
    // ... while at level 2 one at depth 3 is beyond: tracked (for stop) but not watched, so the main
    // process stays to keep the tag running.
    Shape {
        script: "( ( D & ) ; exit 0 ) ; exec sleep 1000",
        level: 2,
        depth: 3,
        main_stays: true,
    },
];

/// The daemons of one test: `sleep MARKER` with a marker unique to the test process, the test and the
/// tag, so that they are found in /proc whoever else runs; every one still alive is killed at the end,
/// even when the test fails.
struct Daemons {
    prefix: String,
}

impl Daemons {
    fn new(test: u32) -> Daemons {
        Daemons {
            prefix: format!("9{:07}{test}", std::process::id()),
        }
    }

    fn marker(&self, i: usize) -> String {
        format!("{}{i:03}", self.prefix)
    }

    /// Live (not zombie) `sleep` processes carrying one of this test's markers: marker -> pids.
    fn live(&self) -> HashMap<String, Vec<i32>> {
        let mut found: HashMap<String, Vec<i32>> = HashMap::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.len() >= 2 && args[0] == b"sleep" && args[1].starts_with(self.prefix.as_bytes()) && alive(pid) {
                let marker = String::from_utf8_lossy(args[1]).into_owned();
                found.entry(marker).or_default().push(pid);
            }
        }
        found
    }

    fn wait_none_left(&self, what: &str) {
        wait_for(&format!("no daemon left {what}"), || {
            let left = self.live();
            left.is_empty().then_some(())
        });
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for pids in self.live().values() {
            for pid in pids {
                let _ = std::process::Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

fn tag_name(test: &str, i: usize) -> String {
    format!("{test}{i:03}")
}

/// Starts `count` tags of every shape in turn, the last `pmfadm` ones with `pmfadm -c`.
fn start_tags(v: &Vigild, daemons: &Daemons, test: &str, count: usize, pmfadm: usize) {
    let mut c = v.client();
    for i in 0..count {
        let shape = &SHAPES[i % SHAPES.len()];
        let script = shape.script.replace('D', &format!("sleep {}", daemons.marker(i)));
        if i >= count - pmfadm {
            let level = shape.level.to_string();
            let args = [
                "-c",
                &tag_name(test, i),
                "-C",
                &level,
                "-n",
                "2",
                "-t",
                "1",
                "sh",
                "-c",
                &script,
            ];
            let out = v.pmfadm(&args);
            assert!(out.status.success(), "pmfadm {args:?}: {}", stderr(&out));
            continue;
        }
        let mut spec = sh(&tag_name(test, i), &script);
        spec.level = shape.level;
        spec.retries = 2;
        spec.period = 60;
        c.run(spec).expect("run");
    }
}

/// Why tag `i` is not yet as it must be, or None: its one daemon alive and in its tree at its depth,
/// watched as its level says, the middle processes gone, and the tag started once and running.
fn not_settled(st: &TagStatus, daemons: &HashMap<String, Vec<i32>>, marker: &str, i: usize) -> Option<String> {
    let shape = &SHAPES[i % SHAPES.len()];
    let pid = match daemons.get(marker).map(Vec::as_slice) {
        Some([pid]) => *pid,
        other => return Some(format!("daemons alive: {other:?}")),
    };
    if st.state != "running" || st.starts != 1 {
        return Some(format!(
            "state {} after {} start(s) while its daemon lives",
            st.state, st.starts
        ));
    }
    let Some(p) = st.procs.iter().find(|p| p.pid == pid) else {
        return Some(format!("daemon {pid} untracked; tree {:?}", st.procs));
    };
    let watched = shape.level == -1 || i64::from(shape.depth) <= shape.level;
    if p.level != shape.depth || p.watched != watched {
        return Some(format!("daemon {pid} at {p:?}, not at depth {}", shape.depth));
    }
    let others = st.procs.len() - 1;
    let expected = usize::from(shape.main_stays);
    (others != expected).then(|| format!("middle processes still in the tree: {:?}", st.procs))
}

/// Polls `f` until it returns Ok, failing with its last reason at the deadline: generous, as a hundred
/// tags share the machine's two cores with the other tests (a quiet run settles in a few seconds).
fn settle(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Ok(()) => return,
            Err(why) => assert!(std::time::Instant::now() < end, "timed out waiting for {what}: {why}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every tag is settled; fails naming the first that is not.
fn wait_settled(v: &Vigild, daemons: &Daemons, test: &str, count: usize) {
    let mut c = v.client();
    settle("every daemon tracked", || {
        let all: HashMap<String, TagStatus> = c
            .status_all()
            .expect("status")
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let live = daemons.live();
        for i in 0..count {
            let st = &all[&tag_name(test, i)];
            if let Some(why) = not_settled(st, &live, &daemons.marker(i), i) {
                return Err(format!("{}: {why}", st.name));
            }
        }
        Ok(())
    });
}

/// 100 tags of every shape (the last 12 made by `pmfadm -c`): each daemon tracked at its level, none
/// restarted; half stopped with `vigil stop`, the rest by SIGTERM to vigild; no daemon outlives either.
#[test]
fn hundred_forking_tags_tracked_and_stopped() {
    // Declared first, dropped last: after vigild, which could start more of them until it stops.
    let daemons = Daemons::new(1);
    let mut v = Vigild::start();
    let count = 100;
    start_tags(&v, &daemons, "df", count, 12);
    wait_settled(&v, &daemons, "df", count);

    let mut c = v.client();
    for i in (0..count).step_by(2) {
        c.stop(&tag_name("df", i), None, None).expect("stop");
    }
    wait_for("stopped tags' daemons to be gone", || {
        let live = daemons.live();
        (0..count)
            .step_by(2)
            .all(|i| !live.contains_key(&daemons.marker(i)))
            .then_some(())
    });
    let live = daemons.live();
    assert_eq!(live.len(), count / 2, "the running tags' daemons live on: {live:?}");

    let st = v.terminate();
    assert!(st.success(), "vigild: {st:?}");
    // vigild exits only once every process it tracks is gone.
    let left = daemons.live();
    assert!(left.is_empty(), "daemons outlived vigild: {left:?}");
}

/// Every daemon is killed until its tag's budget is spent: each restart's daemon is tracked again, and
/// once the tag has failed no process of it is left.
#[test]
fn forking_tags_spend_their_budget_and_leave_nothing() {
    let daemons = Daemons::new(2);
    let v = Vigild::start();
    let count = SHAPES.len();
    start_tags(&v, &daemons, "bs", count, 0);
    let mut c = v.client();
    for round in 1..=3u64 {
        let mut seen = vec![None; count];
        settle(&format!("round {round}'s daemons tracked"), || {
            let live = daemons.live();
            for (i, seen) in seen.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
                let st = c.status(&tag_name("bs", i)).expect("status");
                let shape = &SHAPES[i % SHAPES.len()];
                let watched = shape.level == -1 || i64::from(shape.depth) <= shape.level;
                let pids = live.get(&daemons.marker(i)).cloned().unwrap_or_default();
                let tracked = st.starts == round
                    && st.state == "running"
                    && pids.len() == 1
                    && st.procs.iter().any(|p| p.pid == pids[0] && p.watched == watched);
                if !tracked {
                    return Err(format!("{}: {st:?} daemons {pids:?}", st.name));
                }
                *seen = Some(pids[0]);
            }
            Ok(())
        });
        for (i, pid) in seen.iter().enumerate() {
            let shape = &SHAPES[i % SHAPES.len()];
            if shape.main_stays {
                // Its daemon is beyond the level: the main process is what the budget watches.
                let st = c.status(&tag_name("bs", i)).expect("status");
                let main = st.main_pid.expect("main");
                kill(main, "KILL");
            }
            kill(pid.expect("seen"), "KILL");
        }
    }
    for i in 0..count {
        let name = tag_name("bs", i);
        wait_for(&format!("{name} to fail"), || {
            let st = c.status(&name).expect("status");
            (st.state == "failed").then_some(())
        });
    }
    daemons.wait_none_left("once every budget is spent");
}

/// Without the process connector, the /proc scans find every daemon that stays in its tag's session,
/// as docs/vigild.md says (at level 1 when its middle processes were gone before a scan): none
/// restarted, none left after `stop` or SIGTERM to vigild.
#[test]
fn scan_mode_tracks_daemons_in_their_session() {
    let daemons = Daemons::new(3);
    let mut v = Vigild::start_scan();
    // The shapes that keep the session and watch every level.
    let shapes: Vec<usize> = (0..SHAPES.len())
        .filter(|&s| SHAPES[s].level == -1 && !SHAPES[s].script.contains("setsid"))
        .collect();
    let count = shapes.len() * 2;
    let mut c = v.client();
    for i in 0..count {
        let script = SHAPES[shapes[i % shapes.len()]]
            .script
            .replace('D', &format!("sleep {}", daemons.marker(i)));
        let mut spec = sh(&tag_name("sc", i), &script);
        spec.retries = 2;
        spec.period = 60;
        c.run(spec).expect("run");
    }
    settle("every daemon tracked by the scans", || {
        let live = daemons.live();
        for i in 0..count {
            let st = c.status(&tag_name("sc", i)).expect("status");
            let pids = live.get(&daemons.marker(i)).cloned().unwrap_or_default();
            let ok = st.starts == 1
                && st.state == "running"
                && pids.len() == 1
                && st.procs.len() == 1
                && st.procs[0].pid == pids[0]
                && st.procs[0].watched;
            if !ok {
                return Err(format!("{}: {st:?} daemons {pids:?}", st.name));
            }
        }
        Ok(())
    });
    for i in (0..count).step_by(2) {
        c.stop(&tag_name("sc", i), None, None).expect("stop");
    }
    wait_for("stopped tags' daemons to be gone", || {
        let live = daemons.live();
        (0..count)
            .step_by(2)
            .all(|i| !live.contains_key(&daemons.marker(i)))
            .then_some(())
    });
    let st = v.terminate();
    assert!(st.success(), "vigild: {st:?}");
    let left = daemons.live();
    assert!(left.is_empty(), "daemons outlived vigild: {left:?}");
}
