//! What one local user must not be able to do to the others through vigild's shared tables: replace
//! their PSM members, create PSM categories, make list answers too large for anyone, or make vigild
//! restart a failing command without pause; and a start that fails for want of descriptors is retried.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vigil_client::proto::{Event, PsmNode, RunSpec};

use crate::harness::*;

const NOBODY: u32 = 65534;
/// Another ordinary user.
const ALICE: u32 = 4242;

/// `sleep 1000` as `uid`, showing `argv0` as its program name.
fn sleeper(uid: u32, argv0: &str) -> Child {
    let mut cmd = Command::new("sleep");
    cmd.arg0(argv0).arg("1000").current_dir("/");
    if uid != 0 {
        cmd.uid(uid).gid(uid);
    }
    let child = cmd.spawn().expect("start sleep");
    wait_argv(child.id() as i32);
    child
}

fn end(mut child: Child) -> i32 {
    let pid = child.id() as i32;
    child.kill().unwrap();
    child.wait().unwrap();
    pid
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "stdout {} stderr {}", stdout(o), stderr(o));
}

/// `vigil psm add CAT PID` as `uid`, retried while the process is inside exec.
fn psm_add_as(v: &Vigild, uid: u32, cat: &str, pid: i32) -> std::process::Output {
    wait_for("the process to finish its exec", || {
        let out = v.cli_as(Some(uid), &["psm", "add", cat, &pid.to_string()]);
        (!stderr(&out).contains("inside exec")).then_some(out)
    })
}

#[test]
fn psm_replacement_stays_within_the_owner_and_users_cannot_create_categories() {
    let v = Vigild::start();
    ok(&v.cli(&["psm", "category", "add", "mountd"]));
    let root = sleeper(0, "/usr/sbin/mountd");
    let alice = sleeper(ALICE, "/usr/sbin/mountd");
    let own = sleeper(NOBODY, "/usr/bin/something-else");
    let mut c = v.client();
    psm_add(&mut c, "mountd", root.id() as i32).unwrap();
    ok(&psm_add_as(&v, ALICE, "mountd", alice.id() as i32));
    ok(&psm_add_as(&v, NOBODY, "mountd", own.id() as i32));
    let (root, alice, own) = (end(root), end(alice), end(own));
    wait_for("the three members to be exited", || {
        let ms = c.psm_get(&PsmNode::local(), Some("mountd"), None).ok()?;
        (ms.len() == 3 && ms.iter().all(|m| m.exit.is_some())).then_some(())
    });

    // nobody's process posing as the same program registers: it replaces nobody's own exited
    // member (another program), and neither root's nor alice's.
    let posing = sleeper(NOBODY, "/usr/sbin/mountd");
    let posing_pid = posing.id() as i32;
    ok(&psm_add_as(&v, NOBODY, "mountd", posing_pid));
    let members = c.psm_get(&PsmNode::local(), Some("mountd"), None).unwrap();
    let pids: Vec<i32> = members.iter().map(|m| m.pid).collect();
    assert!(
        pids.contains(&root) && pids.contains(&alice),
        "root's and alice's exited members are kept: {pids:?}"
    );
    for m in members.iter().filter(|m| m.pid == root || m.pid == alice) {
        assert_eq!(m.exitcode, Some(9), "{}'s exit status is kept", m.pid);
    }
    assert!(!pids.contains(&own), "nobody's own exited member is replaced: {pids:?}");
    assert!(pids.contains(&posing_pid));
    end(posing);

    // nobody may not create a category by adding to a missing one; root still may.
    let p = sleeper(NOBODY, "/usr/bin/x");
    let out = psm_add_as(&v, NOBODY, "newcat", p.id() as i32);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("only an administrator may create one"), "{err}");
    let cats = c.psm_categories(&PsmNode::local()).unwrap();
    assert!(!cats.iter().any(|k| k.name == "newcat"), "nothing was created");
    psm_add(&mut c, "newcat", p.id() as i32).unwrap();
    assert!(c
        .psm_categories(&PsmNode::local())
        .unwrap()
        .iter()
        .any(|k| k.name == "newcat"));
    end(p);
}

#[test]
fn oversized_tags_are_refused_with_the_limit_named() {
    let v = Vigild::start();
    let big_env = format!("BIG={}", "x".repeat(70_000));
    let out = v.cli_as(Some(NOBODY), &["run", "big", "-e", &big_env, "--", "sleep", "100"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("environment variable BIG is 70005 bytes") && err.contains("the limit is 32768"),
        "{err}"
    );
    let env: Vec<String> = (0..3).map(|i| format!("V{i}={}", "y".repeat(30_000))).collect();
    let mut args = vec!["run", "big"];
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend(["--", "sleep", "100"]);
    let out = v.cli_as(Some(NOBODY), &args);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("the environment is 90012 bytes") && err.contains("limit is 65536"),
        "{err}"
    );
    let arg = "z".repeat(40_000);
    let out = v.cli_as(Some(NOBODY), &["run", "big", "--", "sleep", &arg, &arg]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("the command is 80008 bytes") && err.contains("limit is 65536"),
        "{err}"
    );
    // Nothing was made, and vigild answers.
    assert!(!v.client().query("big").unwrap());
    // An event filter is matched against every event for everyone's loop: it is bounded too.
    let patterns: Vec<String> = (0..65).map(|i| format!("sys.x{i}.*")).collect();
    let mut args = vec!["events"];
    args.extend(patterns.iter().map(String::as_str));
    let out = v.cli_as(Some(NOBODY), &args);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("65 name patterns; the limit is 64"),
        "{err}"
    );
    ok(&v.cli_as(Some(NOBODY), &args[..65]));
}

#[test]
fn one_users_largest_tags_leave_every_list_working() {
    let v = Vigild::start();
    v.run(RunSpec::new("roots", vec!["sleep".into(), "1000".into()]));
    // nobody fills every tag it may hold to the per-tag maximums: 64 KiB of command and 64 KiB of
    // environment each. The command exits at once (retries 0): the tags stay, failed.
    let pad = "p".repeat(64 * 1024 - 2 - "/bin/true".len() - 1 - 1);
    let envs: Vec<String> = (0..2).map(|i| format!("E{i}={}", "v".repeat(32 * 1024 - 5))).collect();
    let mut made = 0;
    loop {
        let tag = format!("fill{made}");
        // `/bin/true` ends at once: `run` must not wait for it to count as running.
        let mut args = vec!["run".to_string(), tag, "--start-secs".into(), "0".into()];
        for e in &envs {
            args.extend(["-e".to_string(), e.clone()]);
        }
        args.extend(["--".into(), "/bin/true".into(), pad.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = v.cli_as(Some(NOBODY), &args);
        if !out.status.success() {
            let err = stderr(&out);
            assert!(err.contains("the limit is 64 per user"), "{err}");
            break;
        }
        made += 1;
        assert!(made <= 64, "the per-user limit holds");
    }
    assert_eq!(made, 64);
    // Root's (and everyone's) lists still answer, and show root's tag.
    let out = v.cli(&["status"]);
    ok(&out);
    assert!(stdout(&out).contains("roots"), "{}", stdout(&out));
    let out = v.cli(&["status", "--json"]);
    ok(&out);
    let out = v.cli(&["list"]);
    ok(&out);
    assert!(stdout(&out).contains("roots"));
    let out = v.pmfadm(&["-L"]);
    ok(&out);
    assert!(stdout(&out).contains("roots"), "{}", stdout(&out));
    let out = v.cli_as(Some(NOBODY), &["status"]);
    ok(&out);
    // One tag still shows whole to its owner.
    let one = v.status("fill0");
    assert_eq!(one.command[1].len(), pad.len());
    assert_eq!(one.env.iter().filter(|(k, _)| k.starts_with('E')).count(), 2);
}

fn starts(evs: &[Event]) -> usize {
    evs.iter()
        .filter(|e| e.name.ends_with(".start") || e.name.ends_with(".restart"))
        .count()
}

#[test]
fn a_restart_storm_is_throttled_and_an_occasional_crash_is_not() {
    let v = Vigild::start();
    ok(&v.cli_as(
        Some(NOBODY),
        &["run", "spin", "-n", "-1", "--start-secs", "0", "--", "/bin/true"],
    ));
    ok(&v.cli_as(
        Some(NOBODY),
        &["run", "crashy", "-n", "-1", "--", "sh", "-c", "sleep 1.2; exit 1"],
    ));
    // The storm is noticed, posted and shown.
    let ev = wait_for("the throttled event", || {
        v.tag_events("spin")
            .into_iter()
            .find(|e| e.name == "sys.vigil.pmf.tag.throttled")
    });
    assert!(ev.attr("delay_ms").is_some(), "{ev:?}");
    let st = wait_for("spin's status to show the throttle", || {
        Some(v.status("spin")).filter(|s| s.state == "backoff")
    });
    let reason = st.reason.unwrap_or_default();
    assert!(
        reason.contains("throttled") && reason.contains("quick exits"),
        "{reason}"
    );
    let out = v.cli(&["status", "spin"]);
    assert!(stdout(&out).contains("throttled"), "{}", stdout(&out));
    // Over the next 3 s, few starts: unthrottled, /bin/true restarts hundreds of times a second.
    let before = starts(&v.tag_events("spin"));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let after = starts(&v.tag_events("spin"));
    let window = t0.elapsed();
    assert!(
        after - before < 30,
        "{} starts in {window:?}: the storm is not throttled",
        after - before
    );
    // The tag that runs 1.2 s between crashes restarted at once each time, never throttled.
    let evs = wait_for("crashy to restart three times", || {
        let evs = v.tag_events("crashy");
        (evs.iter().filter(|e| e.name.ends_with(".restart")).count() >= 3).then_some(evs)
    });
    assert!(!evs.iter().any(|e| e.name.ends_with(".throttled")), "{evs:?}");
    for pair in evs.windows(2) {
        if pair[0].name.ends_with(".exit") && pair[1].name.ends_with(".restart") {
            let gap = pair[1].time_ms - pair[0].time_ms;
            assert!(gap < 100, "restart {gap} ms after the exit");
        }
    }
}

fn lowest_free_fd(pid: u32) -> u32 {
    let used: std::collections::BTreeSet<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// vigild's (soft, hard) RLIMIT_NOFILE.
fn nofile(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_string(), f[4].to_string())
}

/// Sets vigild's soft RLIMIT_NOFILE, keeping the hard one (raising that would take CAP_SYS_RESOURCE).
fn set_soft_nofile(pid: u32, soft: &str) {
    let hard = nofile(pid).1;
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={soft}:{hard}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit: {}", stderr(&out));
}

#[test]
fn a_start_that_meets_emfile_is_retried_until_it_succeeds() {
    let v = Vigild::start();
    v.run({
        let mut s = RunSpec::new("svc", vec!["sleep".into(), "1000".into()]);
        s.retries = -1;
        s
    });
    let first = v.running_pid("svc", None);
    let vigild = v.pid();
    let log = std::fs::read_to_string(v.path("vigild.log")).unwrap_or_default().len();
    // With every descriptor number below the limit taken, vigild cannot open one more: the restart
    // below meets EMFILE.
    let limit = wait_for("no client connection left", || {
        std::thread::sleep(Duration::from_millis(100));
        let a = lowest_free_fd(vigild);
        (lowest_free_fd(vigild) == a).then_some(a)
    });
    let soft = nofile(vigild).0;
    set_soft_nofile(vigild, &limit.to_string());
    kill(first, "KILL");
    wait_for("vigild to meet the shortage", || {
        let text = std::fs::read_to_string(v.path("vigild.log")).ok()?;
        text[log..].contains("cannot start").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    set_soft_nofile(vigild, &soft);
    let second = v.running_pid("svc", Some(first));
    assert!(alive(second));
    let evs = v.tag_events("svc");
    assert!(evs.iter().any(|e| e.name == "sys.vigil.pmf.tag.spawn_retry"), "{evs:?}");
    assert!(!evs.iter().any(|e| e.name.ends_with(".failed")), "{evs:?}");
}
