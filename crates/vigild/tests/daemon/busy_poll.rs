//! `daemon.busy_poll_us`: after answering, vigild polls for the next request instead of sleeping, and
//! goes back to sleep once requests stop.

use std::process::Command;
use std::time::{Duration, Instant};

use vigil_client::proto::CmapValue;

use crate::harness::*;

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

/// Of one task of vigild (`/proc/PID/task/TID/stat`): its name, the CPU it last ran on, its real-time
/// priority and its policy (0 SCHED_OTHER, 2 SCHED_RR).
struct Task {
    tid: i32,
    comm: String,
    cpu: u32,
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
        cpu: n(39)?,
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

#[test]
fn a_real_time_loop_moves_off_the_cpu_of_the_client_it_keeps_waiting() {
    if cpus() == 1 {
        println!("one CPU: there is no other CPU to move to");
        return;
    }
    // The longest poll there is, so that a test client slowed by a debug build or a loaded machine
    // would come back within it from a CPU of its own.
    let v = Vigild::start_with(Some("[daemon]\nbusy_poll_us = 1000\n"));
    let (loop_tid, _) = realtime(v.pid())[0];
    // The loop on CPU 0, then free to run anywhere: a real-time thread wakes where it last ran, so it
    // stays on CPU 0 unless it moves itself.
    pin(loop_tid, &[0]);
    let mut c = v.client();
    wait_for("the loop on CPU 0", || {
        c.cmap_set("rt.k", CmapValue::U32(0), false).unwrap();
        (task(v.pid(), loop_tid)?.cpu == 0).then_some(())
    });
    pin(loop_tid, &(0..cpus()).collect::<Vec<_>>());
    // A client on CPU 0 only, in a closed loop: each poll of the loop after an answer keeps the client
    // from sending the next request, which comes just after the poll gives up.
    let pid = v.pid();
    let moved = std::thread::spawn(move || {
        pin(gettid(), &[0]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sets = 0u32;
        while Instant::now() < deadline {
            for _ in 0..100 {
                c.cmap_set("rt.k", CmapValue::U32(sets), false).unwrap();
                sets += 1;
            }
            if task(pid, loop_tid).is_some_and(|t| t.cpu != 0) {
                return Some(sets);
            }
        }
        None
    })
    .join()
    .unwrap();
    let sets = moved.expect("the loop stayed on its client's CPU for 30 s of requests");
    println!("the loop moved off the client's CPU within {sets} requests");
}
