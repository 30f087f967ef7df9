//! A tag's user and group (with supplementary groups), resource limits, nice and umask, stderr to its own
//! file, environment files, and the commands that act on several tags at once (globs, `@GROUP`). The
//! child's real ids, groups, limits, nice value and umask are read from /proc.

use std::process::Output;

use crate::harness::*;

const NOBODY: u32 = 65534;

fn ok(o: &Output) {
    assert!(o.status.success(), "stdout {} stderr {}", stdout(o), stderr(o));
}

/// A line of /proc/PID/status, after its `Name:`.
fn proc_status(pid: i32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// (soft, hard) of a limit as /proc/PID/limits shows it ("Max open files  4096  4096  files").
fn proc_limit(pid: i32, title: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(title))
        .unwrap_or_else(|| panic!("no {title} in /proc/{pid}/limits"));
    let mut rest = line[title.len()..].split_whitespace();
    (rest.next().unwrap().into(), rest.next().unwrap().into())
}

fn nice_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    // Fields after the name start at 3 (state); nice is field 19.
    rest.split_whitespace().nth(19 - 3).unwrap().parse().unwrap()
}

/// A user of this machine that belongs to a group other than its primary one (/etc/group's members),
/// with that user's groups as `id -G` prints them, sorted.
fn user_with_supplementary_groups() -> (String, Vec<u32>) {
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    for line in groups.lines() {
        let f: Vec<&str> = line.split(':').collect();
        for member in f.get(3).unwrap_or(&"").split(',').filter(|m| !m.is_empty()) {
            let out = std::process::Command::new("id").arg("-G").arg(member).output().unwrap();
            if out.status.success() {
                let mut ids: Vec<u32> = stdout(&out).split_whitespace().map(|g| g.parse().unwrap()).collect();
                ids.sort();
                if ids.len() > 1 {
                    return (member.to_string(), ids);
                }
            }
        }
    }
    panic!("this test needs a user with a supplementary group in /etc/group (Debian's postgres in ssl-cert)");
}

fn groups_of(pid: i32) -> Vec<u32> {
    let mut g: Vec<u32> = proc_status(pid, "Groups")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    g.sort();
    g
}

#[test]
fn config_tags_run_as_their_user_and_group_with_the_users_groups() {
    let (user, want_groups) = user_with_supplementary_groups();
    let config = format!(
        r#"
[tag.named]
command = ["sleep", "1000"]
user = "{user}"

[tag.numbers]
command = ["sleep", "1000"]
user = 33
group = "nogroup"
"#
    );
    let v = Vigild::start_with(Some(&config));
    let pid = v.running_pid("named", None);
    let out = std::process::Command::new("id").arg("-u").arg(&user).output().unwrap();
    let uid = stdout(&out).trim().to_string();
    assert_eq!(proc_status(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(groups_of(pid), want_groups, "initgroups of {user}");
    let st = stdout(&v.cli(&["status", "named"]));
    assert!(st.contains(&format!("run as:    user {user} ({uid}), group ")), "{st}");

    let pid = v.running_pid("numbers", None);
    assert_eq!(proc_status(pid, "Uid"), "33 33 33 33");
    assert_eq!(proc_status(pid, "Gid"), "65534 65534 65534 65534");
    // A number brings no supplementary groups: the group alone.
    assert_eq!(groups_of(pid), vec![65534]);
    let st = stdout(&v.cli(&["status", "numbers"]));
    assert!(
        st.contains("run as:    user www-data (33), group nogroup (65534)"),
        "{st}"
    );
}

#[test]
fn only_root_runs_a_tag_as_another_user() {
    let v = Vigild::start();
    ok(&v.cli(&["run", "as-www", "--user", "www-data", "--", "sleep", "1000"]));
    let pid = v.running_pid("as-www", None);
    assert_eq!(proc_status(pid, "Uid"), "33 33 33 33");
    assert_eq!(proc_status(pid, "Gid"), "33 33 33 33");

    // nobody may not become www-data, nor take another group...
    let out = v.cli_as(
        Some(NOBODY),
        &["run", "steal", "--user", "www-data", "--", "sleep", "1000"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only root may run a tag as another user"),
        "{}",
        stderr(&out)
    );
    let out = v.cli_as(Some(NOBODY), &["run", "steal", "--group", "0", "--", "sleep", "1000"]);
    assert!(
        stderr(&out).contains("only root may run a tag as another user"),
        "{}",
        stderr(&out)
    );
    assert!(!v.client().query("steal").unwrap());
    // ...but may name itself.
    ok(&v.cli_as(Some(NOBODY), &["run", "own", "--user", "nobody", "--", "sleep", "1000"]));
    let pid = v.running_pid("own", None);
    assert_eq!(proc_status(pid, "Uid"), "65534 65534 65534 65534");
    // An unknown user is named in the error.
    let out = v.cli(&["run", "ghost", "--user", "no-such-user-here", "--", "true"]);
    assert!(
        stderr(&out).contains("no such user: no-such-user-here"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn limits_nice_and_umask_reach_the_child() {
    let config = r#"
[tag.limited]
command = ["sleep", "1000"]
limits = { nofile = 4096, nproc = 100, core = "0:unlimited" }
nice = 5
umask = 0o027
"#;
    let v = Vigild::start_with(Some(config));
    let pid = v.running_pid("limited", None);
    assert_eq!(proc_limit(pid, "Max open files"), ("4096".into(), "4096".into()));
    assert_eq!(proc_limit(pid, "Max processes"), ("100".into(), "100".into()));
    assert_eq!(proc_limit(pid, "Max core file size"), ("0".into(), "unlimited".into()));
    assert_eq!(nice_of(pid), 5);
    assert_eq!(proc_status(pid, "Umask"), "0027");
    let st = stdout(&v.cli(&["status", "limited"]));
    assert!(st.contains("limits:    core=0:unlimited nofile=4096 nproc=100"), "{st}");
    assert!(st.contains("nice:      5") && st.contains("umask:     027"), "{st}");

    // The same from the command line, as an ordinary user within its own limits.
    ok(&v.cli_as(
        Some(NOBODY),
        &[
            "run",
            "mine",
            "--limit",
            "nofile=64:128",
            "--nice",
            "3",
            "--umask",
            "077",
            "--",
            "sleep",
            "1000",
        ],
    ));
    let pid = v.running_pid("mine", None);
    assert_eq!(proc_limit(pid, "Max open files"), ("64".into(), "128".into()));
    assert_eq!(nice_of(pid), 3);
    assert_eq!(proc_status(pid, "Umask"), "0077");
}

#[test]
fn an_ordinary_user_cannot_raise_a_hard_limit_or_lower_nice() {
    let v = Vigild::start();
    let out = v.cli_as(
        Some(NOBODY),
        &["run", "greedy", "--limit", "nofile=unlimited", "--", "sleep", "1000"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only root may raise a hard limit"),
        "{}",
        stderr(&out)
    );
    assert!(!v.client().query("greedy").unwrap());
    // A negative nice value is refused by the kernel to the tag's user, and the start fails saying so.
    let out = v.cli_as(Some(NOBODY), &["run", "pushy", "--nice", "-5", "--", "sleep", "1000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("setpriority(-5)"), "{}", stderr(&out));
    // Bad values are usage errors of the command line.
    let out = v.cli(&["run", "x", "--limit", "files=3", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown resource limit \"files\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stderr_goes_to_its_own_file_and_env_files_are_read() {
    // An empty config, for the reload below.
    let v = Vigild::start_with(Some(""));
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "# settings\nGREETING=hello from the file\nWHO=file\n").unwrap();
    let err_log = dir.path().join("app.err");
    ok(&v.cli(&[
        "run",
        "app",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "WHO=flag",
        "--stderr-log",
        err_log.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo \"out: $GREETING by $WHO\"; echo 'err: oops' >&2; sleep 1000",
    ]));
    let st = v.status("app");
    wait_for("the stderr line", || {
        std::fs::read_to_string(&err_log).ok().filter(|s| s == "err: oops\n")
    });
    let log = wait_for("the stdout line", || {
        std::fs::read_to_string(&st.log_path)
            .ok()
            .filter(|s| s.contains("out:"))
    });
    assert_eq!(
        log, "out: hello from the file by flag\n",
        "stdout only, -e over the file"
    );
    let shown = stdout(&v.cli(&["status", "app"]));
    assert!(shown.contains(&format!("stderr:    {}", err_log.display())), "{shown}");

    // A config tag's env_file is relative to the config file, read at each reload.
    std::fs::write(v.path("web.env"), "PORT=8080\n").unwrap();
    std::fs::write(
        v.path("vigil.toml"),
        "[tag.web]\ncommand = [\"sh\", \"-c\", \"echo port=$PORT; sleep 1000\"]\nenv_file = \"web.env\"\n",
    )
    .unwrap();
    ok(&v.cli(&["reload"]));
    let st = v.wait_state("web", "running");
    wait_for("web's output", || {
        std::fs::read_to_string(&st.log_path)
            .ok()
            .filter(|s| s == "port=8080\n")
    });
    std::fs::write(v.path("web.env"), "PORT=oops no equals\nBROKEN\n").unwrap();
    let out = v.cli(&["reload"]);
    assert!(
        stderr(&out).contains("web.env: line 2: \"BROKEN\" is not KEY=VALUE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn several_tags_at_once_by_name_glob_and_group() {
    let v = Vigild::start();
    for (tag, group) in [("web1", "web"), ("web2", "web"), ("db1", "db")] {
        ok(&v.cli(&["run", tag, "--tag-group", group, "--", "sleep", "1000"]));
    }
    let out = v.cli(&["stop", "web*"]);
    ok(&out);
    // Each line says what was done, then the tag's state when it is not that yet
    // (`web1: stopped (stopping, pid 42)`).
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("web1: stopped"), "{lines:?}");
    assert!(lines[1].starts_with("web2: stopped"), "{lines:?}");
    v.wait_state("web1", "stopped");
    v.wait_state("web2", "stopped");
    assert_eq!(v.status("db1").state, "running");

    let out = v.cli(&["start", "@web"]);
    ok(&out);
    // Each line is what was done and the tag now: `web1: started (running, pid 42)`.
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("web1: started (running, pid "), "{lines:?}");
    assert!(lines[1].starts_with("web2: started (running, pid "), "{lines:?}");
    v.wait_state("web2", "running");

    // One line per tag, and a nonzero exit when any failed.
    let out = v.cli(&["restart", "db1", "nosuch", "@web"]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("db1: restarted ("), "{lines:?}");
    assert!(lines[1].starts_with("nosuch: error: no such tag"), "{lines:?}");
    assert!(lines[2].starts_with("web1: restarted ("), "{lines:?}");
    assert!(lines[3].starts_with("web2: restarted ("), "{lines:?}");
    // With --json, an array of what was done, one object per tag.
    let out = v.cli(&["--json", "stop", "@web"]);
    ok(&out);
    let done: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let subjects: Vec<(&str, &str)> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["subject"].as_str().unwrap(), d["done"].as_str().unwrap()))
        .collect();
    assert_eq!(subjects, [("web1", "stopped"), ("web2", "stopped")], "{done}");
    // A pattern that matches nothing is an error of its own.
    let out = v.cli(&["stop", "@nobody-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("@nobody-here matches no tag"), "{}", stderr(&out));

    let shown = stdout(&v.cli(&["status", "@web"]));
    assert!(shown.starts_with("web1: ") && shown.contains("\nweb2: "), "{shown}");
    assert!(!shown.contains("db1"), "{shown}");
    assert!(shown.contains("tag group: web"), "{shown}");
}

/// `2026-12-02_19:21:48.12345 ` at the start of a line.
fn stamped(line: &str) -> Option<&str> {
    let (ts, rest) = line.split_once(' ')?;
    let b = ts.as_bytes();
    let ok = b.len() == 25
        && b[10] == b'_'
        && b[19] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit());
    ok.then_some(rest)
}

/// vigild's children that are vigild too (the stampers): (pid, state letter, real uid).
fn stampers(vigild: u32) -> Vec<(i32, char, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if head.ends_with("(vigild") && f[1] == vigild.to_string() {
            let uid = proc_status(pid, "Uid").split(' ').next().unwrap().parse().unwrap();
            out.push((pid, f[0].chars().next().unwrap(), uid));
        }
    }
    out
}

#[test]
fn log_lines_get_timestamps_and_outlive_a_kill_of_vigild() {
    let mut v = Vigild::start();
    let go = v.path("go");
    let script = format!(
        "echo one; echo two >&2; printf part; while [ ! -e {} ]; do sleep 0.02; done; echo ial; echo after; sleep 1000",
        go.display()
    );
    ok(&v.cli_as(
        Some(NOBODY),
        &["run", "stamped", "--log-timestamps", "--", "sh", "-c", &script],
    ));
    let st = v.status("stamped");
    let pid = v.running_pid("stamped", None);
    let text = wait_for("the stamped lines", || {
        std::fs::read_to_string(&st.log_path)
            .ok()
            .filter(|s| s.lines().count() >= 2)
    });
    let lines: Vec<Option<&str>> = text.lines().map(stamped).collect();
    assert_eq!(lines, [Some("one"), Some("two")], "{text:?}");
    let shown = stdout(&v.cli(&["status", "stamped"]));
    assert!(shown.contains("log:       timestamped lines"), "{shown}");
    let s = stampers(v.pid());
    assert!(
        s.len() == 1 && s[0].2 == NOBODY,
        "one stamper, as the tag's user: {s:?}"
    );
    // The stamper is a process of its own, of the tag's user: a kill -9 of vigild leaves the output
    // flowing, and a line written in two parts stays one line.
    v.kill9();
    v.spawn();
    assert_eq!(v.running_pid("stamped", None), pid, "re-adopted");
    std::fs::write(&go, "").unwrap();
    let text = wait_for("the last lines", || {
        std::fs::read_to_string(&st.log_path)
            .ok()
            .filter(|s| s.lines().count() >= 4)
    });
    let lines: Vec<Option<&str>> = text.lines().map(stamped).collect();
    assert_eq!(
        lines,
        [Some("one"), Some("two"), Some("partial"), Some("after")],
        "{text:?}"
    );
    // A stamper of this vigild ends with its tag's output, and is reaped.
    ok(&v.cli(&[
        "run",
        "brief",
        "--log-timestamps",
        "--start-secs",
        "0",
        "--",
        "sh",
        "-c",
        "echo bye",
    ]));
    let st = v.status("brief");
    wait_for("brief's line", || {
        std::fs::read_to_string(&st.log_path)
            .ok()
            .filter(|s| s.ends_with(" bye\n"))
    });
    wait_for("the stamper to be reaped", || {
        stampers(v.pid()).is_empty().then_some(())
    });
}

/// A run with resources keeps its supervision settings (they travel together in one `RunWith`), and a
/// kill -9 of vigild keeps both (the store holds them side by side).
#[test]
fn resources_and_supervision_settings_go_together() {
    let mut v = Vigild::start();
    ok(&v.cli(&[
        "run",
        "both",
        "--nice",
        "3",
        "--tag-group",
        "pair",
        "--restart",
        "never",
        "--success-exit-codes",
        "0,3",
        "--start-secs",
        "0",
        "--",
        "sleep",
        "1000",
    ]));
    let st = v.status("both");
    assert_eq!(st.supervision.restart, vigil_client::proto::RestartPolicy::Never);
    assert_eq!(st.supervision.success_exit_codes, vec![0, 3]);
    let pid = st.main_pid.expect("running");
    assert_eq!(nice_of(pid), 3);
    v.kill9();
    v.spawn();
    let st = v.status("both");
    assert_eq!(st.supervision.restart, vigil_client::proto::RestartPolicy::Never);
    assert_eq!(st.supervision.success_exit_codes, vec![0, 3]);
    let res = v.client().resources(Some("both")).unwrap();
    assert_eq!(res[0].resources.nice, Some(3));
    assert_eq!(res[0].resources.tag_group.as_deref(), Some("pair"));
    // `vigil status --json` shows them beside the supervision settings.
    let out = v.cli(&["--json", "status", "both"]);
    ok(&out);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown[0]["supervision"]["restart"], "never", "{shown}");
    assert_eq!(shown[0]["resources"]["nice"], 3, "{shown}");
    assert_eq!(shown[0]["resources"]["tag_group"], "pair", "{shown}");
    assert_eq!(shown[0]["resources"]["user"], "root", "{shown}");
    // `never` still holds after the restart: a death by SIGTERM (no success) fails the tag, unrestarted.
    assert_eq!(st.main_pid, Some(pid), "the same process, adopted");
    kill(pid, "TERM");
    let st = v.wait_state("both", "failed");
    assert_eq!(st.starts, 1, "never restarted");
}
