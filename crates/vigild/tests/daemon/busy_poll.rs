//! `daemon.busy_poll_us`: after answering, vigild polls for the next request instead of sleeping, and
//! goes back to sleep once requests stop.

use std::process::Command;
use std::time::{Duration, Instant};

use vigil_client::proto::CmapValue;

use crate::harness::*;

/// The tests of this file measure vigild's scheduling, and one floods a vigild: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The voluntary context switches and the CPU time (ns) of all of vigild's threads.
fn switches_and_cpu(pid: u32) -> (u64, u64) {
    let mut sw = 0;
    let mut cpu = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        sw += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let sched = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
        cpu += sched
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (sw, cpu)
}

/// `n` CMAP sets one after another on one connection; vigild's voluntary context switches meanwhile.
fn closed_loop(v: &Vigild, n: u32) -> u64 {
    let mut c = v.client();
    c.cmap_set("poll.k", CmapValue::U32(0), false).unwrap();
    let (sw0, _) = switches_and_cpu(v.pid());
    for i in 0..n {
        c.cmap_set("poll.k", CmapValue::U32(i), false).unwrap();
    }
    switches_and_cpu(v.pid()).0 - sw0
}

#[test]
fn busy_poll_keeps_vigild_awake_between_requests_and_lets_it_sleep_after() {
    let _one = one_at_a_time();
    let n = 2000;
    // The longest poll there is, so that a test client slowed by a loaded machine still comes back
    // within it.
    let v = Vigild::start_with(Some("[daemon]\nbusy_poll_us = 1000\n"));
    let polling = closed_loop(&v, n);
    assert!(
        polling < u64::from(n) / 2,
        "vigild slept {polling} times in {n} requests that each came right after the last answer"
    );
    // Once the requests stop, vigild sleeps: half a second idle costs it next to no CPU.
    let (_, cpu0) = switches_and_cpu(v.pid());
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let (_, cpu1) = switches_and_cpu(v.pid());
    let idle = Duration::from_nanos(cpu1 - cpu0);
    assert!(
        idle < t.elapsed() / 10,
        "vigild used {idle:?} of CPU in {:?} with no request",
        t.elapsed()
    );
    drop(v);

    // For comparison only: without polling, how often vigild sleeps depends on the machine's load as
    // much as on vigild (on a busy machine the next request is often there before it could sleep: 950
    // of 2,000 in one CI run, 1,689 on a quiet machine), so it is printed, not asserted.
    let off = Vigild::start_with(Some("[daemon]\nbusy_poll_us = 0\n"));
    let sleeping = closed_loop(&off, n);
    println!(
        "vigild's voluntary context switches in {n} requests: {polling} polling, {sleeping} with busy_poll_us = 0"
    );
}

/// The voluntary context switches of a SAM instance and of its supervisor over 2,000 data stores
/// (`stores:N`), with `VIGIL_SPIN_US` at `spin`.
fn store_loop_switches(v: &Vigild, spin: &str) -> (u64, u64) {
    let go = v.dir.path().join(format!("go-{spin}"));
    let script = format!("1:start;wait:{};stores:2000;finalize;exit:0", go.display());
    let mut app = crate::sam::SamApp::start_env(
        Some(v),
        v.dir.path(),
        &["--interval", "60000", "--on", &script],
        &[("VIGIL_SPIN_US", spin)],
    );
    app.wait_line("1 start ok");
    let supervisor = app.pid() as u32;
    let before = switches_and_cpu(supervisor).0;
    std::fs::write(&go, "").unwrap();
    let stores = wait_for("the loop of stores", || app.result(1, "stores:2000"));
    let supervisor = switches_and_cpu(supervisor).0 - before;
    assert_eq!(app.exit_code(), 0, "{:#?}", app.lines());
    let instance = stores
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the loop's switches: {stores:?}"));
    (instance, supervisor)
}

#[test]
fn a_sam_instance_and_its_supervisor_poll_for_each_other_in_a_loop_of_stores() {
    if cpus() < 2 {
        // With one CPU neither polls by default: the poll would keep the other from running.
        println!("skipped: one CPU");
        return;
    }
    let _one = one_at_a_time();
    let v = Vigild::start();
    // The longest poll there is, so that a loaded machine's slower steps still come within it.
    let (instance, supervisor) = store_loop_switches(&v, "1000");
    // (Without the supervisor's poll the instance still polls, and the supervisor slept 804 times.)
    assert!(
        instance < 1000 && supervisor < 500,
        "in 2,000 data stores, each answered at once, the instance slept {instance} times and its \
         supervisor {supervisor}"
    );
    // For comparison only (as with vigild's polling above): without it each store sleeps on both sides.
    let off = store_loop_switches(&v, "0");
    println!(
        "voluntary context switches in 2,000 stores, instance and supervisor: {instance} and {supervisor} \
         polling, {} and {} with VIGIL_SPIN_US=0",
        off.0, off.1
    );
}

/// Of one task of vigild (`/proc/PID/task/TID/stat`): its name, its real-time
/// priority and its policy (0 SCHED_OTHER, 2 SCHED_RR).
struct Task {
    tid: i32,
    comm: String,
    rt_priority: u32,
    policy: u32,
}

fn task(pid: u32, tid: i32) -> Option<Task> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_string();
    // `rest` begins with field 3 (the state): field N is at N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i - 3)?.parse::<u32>().ok();
    Some(Task {
        tid,
        comm,
        rt_priority: n(40)?,
        policy: n(41)?,
    })
}

fn tasks(pid: u32) -> Vec<Task> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| task(pid, t.ok()?.file_name().to_str()?.parse().ok()?))
        .collect()
}

/// vigild's threads that run real-time, as (tid, priority).
fn realtime(pid: u32) -> Vec<(i32, u32)> {
    tasks(pid)
        .into_iter()
        .filter(|t| t.policy != 0)
        .map(|t| (t.tid, t.rt_priority))
        .collect()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn only_the_loop_runs_real_time_and_nothing_it_starts_does() {
    let _one = one_at_a_time();
    let mut v = Vigild::start_with(Some("[daemon]\n"));
    // Something for every kind of thread vigild starts: a tag (a process), a durable commit.
    v.run(sh("rt-child", "exec sleep 60"));
    let child = v.running_pid("rt-child", None);
    let rt = realtime(v.pid());
    if cpus() == 1 {
        assert!(
            rt.is_empty(),
            "one CPU: nothing runs real-time by default, but {rt:?} do"
        );
        return;
    }
    if !realtime_allowed(&v) {
        return;
    }
    assert_eq!(rt.len(), 1, "exactly one of vigild's threads runs real-time: {rt:?}");
    let (tid, priority) = rt[0];
    assert_eq!(priority, 1, "the default realtime_priority is 1");
    assert_eq!(
        task(v.pid(), tid).unwrap().comm,
        "vigild",
        "the loop's thread is the real-time one"
    );
    let p = task(child as u32, child).expect("the tag's process");
    assert_eq!(
        (p.policy, p.rt_priority),
        (0, 0),
        "a process vigild starts begins under the normal policy"
    );

    // A reload applies a new priority, and 0 takes the loop back to the normal policy.
    std::fs::write(v.path("vigil.toml"), "[daemon]\nrealtime_priority = 7\n").unwrap();
    v.client().reload().unwrap();
    wait_for("the loop at priority 7", || {
        (realtime(v.pid()) == vec![(tid, 7)]).then_some(())
    });
    std::fs::write(v.path("vigil.toml"), "[daemon]\nrealtime_priority = 0\n").unwrap();
    v.client().reload().unwrap();
    wait_for("no real-time thread", || realtime(v.pid()).is_empty().then_some(()));
    // A value out of range is refused by the reload, which changes nothing.
    std::fs::write(v.path("vigil.toml"), "[daemon]\nrealtime_priority = 100\n").unwrap();
    let e = v.client().reload().unwrap_err().to_string();
    assert!(e.contains("daemon.realtime_priority = 100 is outside 1..=99"), "{e}");
    assert!(realtime(v.pid()).is_empty());
    v.terminate();
}

/// Pins thread `tid` to the CPUs in `cpus`, with util-linux's taskset.
fn pin(tid: i32, cpus: &[usize]) {
    let list = cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let out = Command::new("taskset")
        .args(["-p", "-c", &list, &tid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "taskset -p -c {list} {tid}: {}", stderr(&out));
}

/// The calling thread's id.
fn gettid() -> i32 {
    let me = std::fs::read_link("/proc/thread-self").unwrap();
    me.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

/// The first CPU this process may run on.
fn first_cpu() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    list.split([',', '-']).next().unwrap().parse().unwrap()
}

/// A vigild with `config`, and its loop's thread, when it runs real-time (None, said, where it cannot).
fn realtime_vigild(config: &str) -> Option<(Vigild, i32)> {
    let v = Vigild::start_with(Some(config));
    if cpus() == 1 || !realtime_allowed(&v) {
        return None;
    }
    let (loop_tid, _) = realtime(v.pid())[0];
    Some((v, loop_tid))
}

/// Whether vigild could make its loop real-time here (no CAP_SYS_NICE in some containers); says so when
/// not.
fn realtime_allowed(v: &Vigild) -> bool {
    let log = std::fs::read_to_string(v.path("vigild.log")).unwrap_or_default();
    let refused = log.contains("the loop's scheduling is unchanged");
    if refused {
        println!("the kernel refused SCHED_RR here: nothing to check");
    }
    !refused
}

#[test]
fn a_real_time_loop_sees_when_its_polls_keep_its_client_from_running() {
    let _one = one_at_a_time();
    // The longest poll there is, so that a client slowed by a debug build or a loaded machine would
    // come back within it from a CPU of its own.
    let Some((v, loop_tid)) = realtime_vigild("[daemon]\nbusy_poll_us = 1000\n") else {
        return;
    };
    // The loop and a closed-loop client on one CPU: each poll of the loop after an answer keeps the
    // client from sending the next request, which comes just after the poll gives up. The loop may run
    // on no other CPU, so the kernel cannot part them (nor a test beside this one: a real-time thread
    // woken while another runs on its CPU may be put elsewhere).
    let cpu = first_cpu();
    pin(loop_tid, &[cpu]);
    let mut c = v.client();
    let log = v.path("vigild.log");
    let sets = std::thread::spawn(move || {
        pin(gettid(), &[cpu]);
        let mut sets = 0u32;
        wait_for_within(
            "the loop to see that its polls keep its client waiting",
            Duration::from_secs(30),
            || {
                for _ in 0..100 {
                    c.cmap_set("rt.k", CmapValue::U32(sets), false).unwrap();
                    sets += 1;
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.contains("the loop's polls crowd its client out: no other CPU to move to")
                    .then_some(sets)
            },
        )
    })
    .join()
    .unwrap();
    println!("the loop saw within {sets} requests that its polls kept its client waiting");
}

#[test]
fn a_loop_kept_busy_leaves_the_real_time_policy_until_it_is_quiet_again() {
    let _one = one_at_a_time();
    // No polling: all of the loop's time under a flood is work, as it is for a user other than root.
    let Some((v, loop_tid)) = realtime_vigild("[daemon]\nbusy_poll_us = 0\n") else {
        return;
    };
    let pid = v.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let floods: Vec<_> = (0..2)
        .map(|t| {
            let mut c = v.client();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut round = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let reqs = (0..500u32).map(|i| vigil_client::proto::Request::CmapSet {
                        key: format!("flood.{t}.{i}"),
                        value: CmapValue::U32(round),
                        persist: false,
                    });
                    c.pipeline(reqs, 64).unwrap();
                    round += 1;
                }
            })
        })
        .collect();
    wait_for("the busy loop under the normal policy", || {
        task(pid, loop_tid).is_some_and(|t| t.policy == 0).then_some(())
    });
    let log = std::fs::read_to_string(v.path("vigild.log")).unwrap();
    assert!(log.contains("under the normal policy until it is quieter"), "{log}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in floods {
        f.join().unwrap();
    }
    // Quiet again: back to SCHED_RR at the first turn after a quiet window.
    wait_for("the quiet loop back under SCHED_RR", || {
        let _ = v.client().daemon_status();
        task(pid, loop_tid)
            .is_some_and(|t| t.policy == 2 && t.rt_priority == 1)
            .then_some(())
    });
}
