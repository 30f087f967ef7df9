//! Log files against their own users: rotation, owners, modes, names. Every attack runs as `nobody`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{sh, stderr, stdout, wait_for, Vigild};

const NOBODY: u32 = 65534;
const SMALL_LOGS: &str = "[daemon]\nlog_max_bytes = 4096\nlog_keep = 2\n";

fn logs_dir(v: &Vigild) -> PathBuf {
    v.path("state").join("logs")
}

fn numbered(log: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", log.display()))
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Asserts that a log is a regular file of `uid` with mode 0600 exactly: no setuid, setgid or exec bit,
/// nothing for the group or others.
fn assert_private(p: &Path, uid: u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(m.file_type().is_file(), "{} is not a regular file", p.display());
    assert_eq!(
        m.mode() & 0o7777,
        0o600,
        "{} has mode {:o}",
        p.display(),
        m.mode() & 0o7777
    );
    assert_eq!(m.uid(), uid, "{} is owned by uid {}", p.display(), m.uid());
}

fn run_as_nobody(v: &Vigild, tag: &str, script: &str) {
    let out = v.cli_as(
        Some(NOBODY),
        &["run", tag, "--start-secs", "0", "--", "sh", "-c", script],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The attack as reported: the tag's user writes an executable into its log past the rotation size and
/// makes the log setuid (through the descriptor its process writes to) right after each write, so that
/// vigild, copying as root, would find it setuid (a write clears the bit, hence after). Every rotated file
/// must be the user's, mode 0600; the current one too, once a rotation came after the last chmod.
#[test]
fn rotation_never_makes_a_root_or_setuid_file() {
    let v = Vigild::start_with(Some(SMALL_LOGS));
    let log = logs_dir(&v).join("evil.log");
    // A last write past the limit after the last chmod, then small lines: a line in the emptied file
    // proves that the rotations are over.
    run_as_nobody(
        &v,
        "evil",
        "for i in 1 2 3; do cat /usr/bin/id; chmod 4755 /proc/self/fd/1; done; cat /usr/bin/id; \
         while :; do echo zz-marker-zz; sleep 0.1; done",
    );
    wait_for("the log to be rotated and written again", || {
        let len = std::fs::metadata(&log).ok()?.len();
        (numbered(&log, 1).exists() && len <= 4096 && read_lossy(&log).contains("zz-marker-zz")).then_some(())
    });
    for n in 1..=2 {
        let rotated = numbered(&log, n);
        if n == 1 || rotated.exists() {
            assert_private(&rotated, NOBODY);
        }
    }
    assert_private(&log, NOBODY);
    assert!(
        !PathBuf::from(format!("{}.new", log.display())).exists(),
        "no temporary copy is left"
    );
    // What the process writes still reaches the log: its descriptor was kept.
    let before = std::fs::metadata(&log).unwrap().len();
    wait_for("more output in the log", || {
        (std::fs::metadata(&log).ok()?.len() > before).then_some(())
    });
}

/// A user's log made huge and sparse with ftruncate: rotation must not copy it whole (which holds vigild
/// and fills the state disk), only its end.
#[test]
fn a_sparse_log_is_not_copied_whole() {
    let v = Vigild::start_with(Some(SMALL_LOGS));
    let log = logs_dir(&v).join("sparse.log");
    run_as_nobody(
        &v,
        "sparse",
        // One write 50 MiB past the start: the file grows sparse and ends with the line at once, so that
        // a rotation cannot come between the hole and the line (as it could after a truncate).
        "echo after-the-hole | dd of=/proc/self/fd/1 bs=64 seek=52428800 oflag=seek_bytes conv=notrunc status=none; \
         while :; do echo zz-marker-zz; sleep 0.1; done",
    );
    wait_for("the log to be rotated and written again", || {
        let len = std::fs::metadata(&log).ok()?.len();
        (numbered(&log, 1).exists() && len <= 4096 && read_lossy(&log).contains("zz-marker-zz")).then_some(())
    });
    let rotated = numbered(&log, 1);
    assert_private(&rotated, NOBODY);
    let len = std::fs::metadata(&rotated).unwrap().len();
    assert!(len <= 2 * 4096 + 100, "the rotated copy is {len} bytes");
    let text = read_lossy(&rotated);
    assert!(text.contains("after-the-hole"), "{text:?}");
    assert!(text.contains("bytes dropped from this log at rotation"), "{text:?}");
    assert!(v.cli(&["list"]).status.success());
}

/// The processes that outlive a vigild keep their log rotated (and so bounded) by the next one.
#[test]
fn rotation_goes_on_after_vigild_restarts() {
    let mut v = Vigild::start_with(Some(SMALL_LOGS));
    let go = v.path("go");
    let log = logs_dir(&v).join("steady.log");
    run_as_nobody(
        &v,
        "steady",
        &format!(
            "echo waiting; while [ ! -e {} ]; do sleep 0.05; done; cat /usr/bin/id; exec sleep 1000",
            go.display()
        ),
    );
    let pid = v.running_pid("steady", None);
    wait_for("the first line", || read_lossy(&log).contains("waiting").then_some(()));
    v.kill9();
    v.spawn();
    assert_eq!(v.running_pid("steady", None), pid, "re-adopted");
    std::fs::write(&go, "").unwrap();
    wait_for("the log to be rotated", || numbered(&log, 1).exists().then_some(()));
    assert_private(&numbered(&log, 1), NOBODY);
}

/// The inotify watches of vigild (all its inotify instances), from /proc.
fn inotify_watches(pid: u32) -> usize {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let is_inotify = std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify");
        if is_inotify {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
                .unwrap_or_default();
            n += info.lines().filter(|l| l.starts_with("inotify wd:")).count();
        }
    }
    n
}

/// Every watch counts against root's inotify limit: a user creating and removing tags must not leave
/// one behind per name, or rotation would end for every tag once the limit is reached.
#[test]
fn removed_tags_leave_no_watch() {
    let v = Vigild::start();
    let base = inotify_watches(v.pid());
    for i in 0..5 {
        run_as_nobody(&v, &format!("w{i}"), "exec sleep 1000");
    }
    wait_for("a watch per log", || {
        (inotify_watches(v.pid()) == base + 5).then_some(())
    });
    for i in 0..5 {
        let out = v.cli_as(Some(NOBODY), &["rm", &format!("w{i}"), "--wait", "10"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    wait_for("the watches to go", || (inotify_watches(v.pid()) == base).then_some(()));
}

/// A log name's previous owner must not get at the next owner's log through a descriptor it kept.
#[test]
fn a_new_owner_gets_a_new_log() {
    let v = Vigild::start();
    let log = logs_dir(&v).join("shared.log");
    run_as_nobody(&v, "shared", "echo from-nobody; exec sleep 1000");
    wait_for("nobody's output", || {
        read_lossy(&log).contains("from-nobody").then_some(())
    });

    // nobody keeps a descriptor on the log (read and write), then removes the tag.
    let mut keeper = Command::new("sh")
        .args([
            "-c",
            "exec 3<>\"$1\"; echo ready; read _; cat <&3; echo nobody-injected >&3; echo done",
        ])
        .arg("sh")
        .arg(&log)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keeper_out = BufReader::new(keeper.stdout.take().unwrap());
    let mut line = String::new();
    keeper_out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the keeper opened the log");
    let out = v.cli_as(Some(NOBODY), &["rm", "shared", "--wait", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the tag to be gone", || {
        v.client().status("shared").is_err().then_some(())
    });

    // root takes the name.
    v.run(sh("shared", "echo root-secret; exec sleep 1000"));
    wait_for("root's output", || {
        read_lossy(&log).contains("root-secret").then_some(())
    });

    // The keeper reads and writes through its old descriptor.
    writeln!(keeper.stdin.take().unwrap()).unwrap();
    let mut seen = String::new();
    loop {
        line.clear();
        if keeper_out.read_line(&mut line).unwrap() == 0 || line == "done\n" {
            break;
        }
        seen.push_str(&line);
    }
    keeper.wait().unwrap();
    assert!(
        seen.contains("from-nobody"),
        "the keeper read its own old log: {seen:?}"
    );
    assert!(!seen.contains("root-secret"), "nobody read root's log: {seen:?}");
    let text = read_lossy(&log);
    assert!(
        !text.contains("nobody-injected"),
        "nobody wrote into root's log: {text:?}"
    );
    assert!(
        !text.contains("from-nobody"),
        "root's log holds nobody's old output: {text:?}"
    );
    assert_private(&log, 0);

    // Nor can nobody open it anew, directly or through the CLI.
    let out = Command::new("cat")
        .arg(&log)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(!out.status.success(), "nobody read root's log: {}", stdout(&out));
    let out = v.cli_as(Some(NOBODY), &["logs", "shared"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("root-secret"));
    assert!(
        stderr(&out).contains("the log of shared is readable only by its owner (uid 0) and root, not by uid 65534"),
        "{}",
        stderr(&out)
    );
}

/// Logs are 0600 and their owner's: the owner and root read them, no one else.
#[test]
fn logs_are_private_to_their_owner() {
    let v = Vigild::start();
    let dir = logs_dir(&v);
    let m = std::fs::symlink_metadata(&dir).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (0, 0o711),
        "the logs directory is root's, 0711"
    );

    run_as_nobody(&v, "mine", "echo nobody-says-hi; exec sleep 1000");
    v.run(sh("rootly", "echo root-says-hi; exec sleep 1000"));
    let mine = dir.join("mine.log");
    wait_for("output", || read_lossy(&mine).contains("nobody-says-hi").then_some(()));
    wait_for("output", || {
        read_lossy(&dir.join("rootly.log"))
            .contains("root-says-hi")
            .then_some(())
    });
    assert_private(&mine, NOBODY);
    assert_private(&dir.join("rootly.log"), 0);

    // The owner and root read the log through the CLI; another user is told why not.
    let out = v.cli_as(Some(NOBODY), &["logs", "mine"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nobody-says-hi"));
    let out = v.cli(&["logs", "mine"]);
    assert!(stdout(&out).contains("nobody-says-hi"), "{}", stderr(&out));
    let out = v.cli_as(Some(65533), &["logs", "mine"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the log of mine is readable only by its owner (uid 65534) and root, not by uid 65533"),
        "{}",
        stderr(&out)
    );
    let out = v.cli_as(Some(NOBODY), &["logs", "rootly"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("root-says-hi"));

    // No one but vigild creates entries in the directory.
    let planted = dir.join("planted");
    let out = Command::new("sh")
        .args(["-c", "echo x > \"$1\""])
        .arg("sh")
        .arg(&planted)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && !planted.exists(),
        "nobody wrote into the logs directory"
    );
}

/// A symlink left in the logs directory (only root could put one there) is replaced, never followed:
/// a tag's user must not get a file elsewhere chowned to them or filled with their output.
#[test]
fn a_symlink_in_place_of_a_log_is_not_followed() {
    let v = Vigild::start();
    let target = v.path("target");
    std::fs::write(&target, "root's file\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = logs_dir(&v).join("linked.log");
    std::os::unix::fs::symlink(&target, &log).unwrap();
    run_as_nobody(&v, "linked", "echo through-the-link; exec sleep 1000");
    wait_for("the output", || {
        read_lossy(&log).contains("through-the-link").then_some(())
    });
    assert_private(&log, NOBODY);
    let m = std::fs::metadata(&target).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (0, 0o644),
        "the link's target was changed"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's file\n");
}

/// Every file named after a tag must fit in 255 bytes: longer names are refused at the door.
#[test]
fn long_tag_names_are_refused() {
    let v = Vigild::start_with(Some(SMALL_LOGS));
    let long = "n".repeat(241);
    let out = v.cli_as(Some(NOBODY), &["run", &long, "--", "sleep", "1000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tag name is 241 bytes long; the limit is 240"),
        "{}",
        stderr(&out)
    );
    let out = v.cli_as(Some(NOBODY), &["run", &"n".repeat(255), "--", "sleep", "1000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(v.client().list().unwrap().is_empty(), "nothing was created");

    // The longest name has a log that rotates.
    let name = "n".repeat(240);
    run_as_nobody(
        &v,
        &name,
        "cat /usr/bin/id; while :; do echo zz-marker-zz; sleep 0.1; done",
    );
    let log = logs_dir(&v).join(format!("{name}.log"));
    wait_for("the long name's log to be rotated", || {
        numbered(&log, 1).exists().then_some(())
    });
    assert_private(&numbered(&log, 1), NOBODY);
}

/// A log that cannot be opened does not keep the tag from running, and says so.
#[test]
fn a_log_that_cannot_be_opened_is_reported() {
    let v = Vigild::start();
    // Only root can do this to the directory; it stands for any failure to open the file.
    std::fs::create_dir(logs_dir(&v).join("blocked.log")).unwrap();
    v.run(sh("blocked", "exec sleep 1000"));
    v.wait_state("blocked", "running");
    let ev = wait_for("a log_failed event", || {
        v.tag_events("blocked")
            .into_iter()
            .find(|e| e.name == "sys.vigil.pmf.tag.log_failed")
    });
    let text = format!("{ev:?}");
    assert!(text.contains("blocked.log") && text.contains("/dev/null"), "{text}");
}

/// vigild's CPU time so far (utime + stime), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which ends with the last ')': state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_sec() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    stdout(&out).trim().parse().unwrap()
}

/// A tag that truncates its log to a 1 TiB sparse file in a tight loop: every write event finds it
/// over the limit. vigild copies only data (none here) and rotates at most once a second, so its CPU
/// time stays small and no rotated file holds more than `log_max_bytes` of data blocks.
#[test]
fn sparse_log_growth_costs_vigild_no_copy() {
    let v = Vigild::start();
    let pid = v.client().daemon_status().unwrap().pid;
    let max: u64 = 10 << 20; // log_max_bytes' default
    let log = logs_dir(&v).join("sparse.log");
    run_as_nobody(
        &v,
        "sparse",
        // One process, no forks: vigild's CPU is then its rotations', not its process tracking.
        "echo first-line; exec python3 -c 'import os, time\nwhile True:\n    os.ftruncate(1, 1 << 40)\n    time.sleep(0.01)'",
    );
    wait_for("the first rotation", || numbered(&log, 1).exists().then_some(()));
    let hz = clock_ticks_per_sec();
    let before = cpu_ticks(pid);
    // A measuring window, not a wait for a condition: the attack runs all along.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    // Rotations go on, once a second: the third rotated file comes within the window's aftermath.
    wait_for("rotations to go on", || numbered(&log, 2).exists().then_some(()));
    let out = v.cli(&["stop", "sparse"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for n in 1..=3 {
        if let Ok(m) = std::fs::metadata(numbered(&log, n)) {
            assert!(
                m.blocks() * 512 <= max,
                "{} holds {} bytes of data blocks, over log_max_bytes {max}",
                numbered(&log, n).display(),
                m.blocks() * 512
            );
        }
    }
    assert!(
        used * 1000 / hz < 600,
        "vigild used {} ms of CPU in 3 s of the attack",
        used * 1000 / hz
    );
    assert!(read_lossy(&numbered(&log, 1)).contains("bytes dropped"));
    eprintln!("vigild used {} ms of CPU in 3 s of the attack", used * 1000 / hz);
}
