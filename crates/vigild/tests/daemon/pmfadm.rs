//! `pmfadm`, Solaris Cluster's command line, run as a program against a real vigild.

use vigil_client::proto::ExitStatus;

use crate::harness::*;

fn ok(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
}

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

fn registered(v: &Vigild, tag: &str) -> bool {
    match code(&v.pmfadm(&["-q", tag])) {
        Some(0) => true,
        Some(1) => false,
        other => panic!("pmfadm -q {tag} exited with {other:?}"),
    }
}

#[test]
fn create_with_every_option() {
    let v = Vigild::start();
    write_script(&v.path("decide.sh"), "exit 1");
    let out = v.pmfadm_in(
        v.dir.path(),
        &[("PMF_NOT_PASSED", "secret")],
        &[
            "-c",
            "web",
            "-a",
            "./decide.sh",
            "-e",
            "A=1",
            "-e",
            "B=two words",
            "-n",
            "3",
            "-t",
            "2",
            "-C",
            "1",
            "sh",
            "-c",
            "echo \"$A|$B|$PMF_NOT_PASSED|$(pwd)\" > out; exec sleep 1000",
        ],
    );
    ok(&out);
    assert!(out.stdout.is_empty(), "pmfadm -c prints nothing on success");
    let st = v.wait_state("web", "running");
    assert_eq!((st.retries, st.period, st.level), (3, 120, 1), "-t is in minutes");
    assert_eq!(
        st.action,
        Some(v.path("decide.sh").display().to_string()),
        "made absolute"
    );
    let keys: Vec<&str> = st.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["PATH", "A", "B"], "only PATH and -e: {:?}", st.env);
    assert_eq!(
        st.cwd.as_deref(),
        Some(v.dir.path().to_str().unwrap()),
        "pmfadm's current directory"
    );
    let line = wait_for("the command's output", || {
        std::fs::read_to_string(v.path("out"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(line.trim(), format!("1|two words||{}", v.dir.path().display()));
}

#[test]
fn create_with_the_whole_environment_and_no_limits() {
    let v = Vigild::start();
    let out = v.pmfadm_in(
        v.dir.path(),
        &[("PMF_MARK", "hello")],
        &[
            "-c",
            "env",
            "-E",
            "-n",
            "-1",
            "-t",
            "-1",
            "sh",
            "-c",
            "echo $PMF_MARK > mark; exec sleep 1000",
        ],
    );
    ok(&out);
    let st = v.wait_state("env", "running");
    assert_eq!((st.retries, st.period, st.level), (-1, -1, -1));
    assert!(
        st.env.contains(&("PMF_MARK".into(), "hello".into())),
        "-E passes everything"
    );
    let mark = wait_for("the mark", || {
        std::fs::read_to_string(v.path("mark"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(mark, "hello\n");
    // The unlimited budget holds: a killed process comes back.
    let pid = st.main_pid.unwrap();
    kill(pid, "KILL");
    v.running_pid("env", Some(pid));
}

#[test]
fn create_of_an_existing_tag_exits_1_and_changes_nothing() {
    let v = Vigild::start();
    ok(&v.pmfadm(&["-c", "dup", "sleep", "1000"]));
    let before = v.wait_state("dup", "running");
    let out = v.pmfadm(&["-c", "dup", "-n", "5", "sleep", "2000"]);
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("tag dup is already running"), "{}", stderr(&out));
    let after = v.status("dup");
    assert_eq!(
        (after.main_pid, after.starts, after.retries, after.command),
        (before.main_pid, 1, 0, before.command)
    );
}

#[test]
fn child_monitor_levels_and_the_status_layout() {
    let v = Vigild::start();
    let script = "sleep 100 & sleep 100 & wait";
    ok(&v.pmfadm(&["-c", "l0", "-C", "0", "-n", "2", "-t", "1", "sh", "-c", script]));
    ok(&v.pmfadm(&["-c", "l1", "-C", "1", "sh", "-c", script]));
    ok(&v.pmfadm(&["-c", "lall", "sh", "-c", script]));
    for tag in ["l0", "l1", "lall"] {
        wait_for(&format!("{tag}'s children"), || {
            Some(v.status(tag)).filter(|s| s.procs.len() == 3)
        });
    }
    let l0 = v.status("l0");
    assert_eq!(l0.level, 0);
    let main = l0.main_pid.unwrap();
    let out = v.pmfadm(&["-l", "l0"]);
    ok(&out);
    assert_eq!(
        stdout(&out),
        format!(
            "pmfadm -c l0 -n 2 -t 1 -C 0 sh -c 'sleep 100 & sleep 100 & wait'\n\
             \tenvironment:\n\t\tPATH={}\n\
             \tretries: 0\n\towner: root\n\tmonitor children: 0\n\tpids: {main}\n",
            std::env::var("PATH").unwrap()
        ),
        "level 0 watches the shell only"
    );
    let l1 = stdout(&v.pmfadm(&["-l", "l1"]));
    assert!(l1.contains("\tmonitor children: 1\n"), "{l1}");
    let pids = l1.lines().find_map(|l| l.strip_prefix("\tpids: ")).unwrap();
    assert_eq!(pids.split(' ').count(), 3, "level 1 watches the children too: {l1}");
    let all = stdout(&v.pmfadm(&["-l", "lall"]));
    assert!(all.contains("\tmonitor children: all\n"), "{all}");
    let out = v.pmfadm(&["-L"]);
    ok(&out);
    assert_eq!(stdout(&out), "tags: l0 l1 lall\n");
}

#[test]
fn modify_counts_the_period_in_minutes() {
    let v = Vigild::start();
    ok(&v.pmfadm(&["-c", "m", "sleep", "1000"]));
    ok(&v.pmfadm(&["-m", "m", "-n", "5", "-t", "3"]));
    let st = v.status("m");
    assert_eq!((st.retries, st.period), (5, 180));
    ok(&v.pmfadm(&["-m", "m", "-t", "-1"]));
    assert_eq!((v.status("m").retries, v.status("m").period), (5, -1));
    ok(&v.pmfadm(&["-m", "m", "-n", "-1"]));
    assert_eq!(v.status("m").retries, -1);
    let out = v.pmfadm(&["-m", "nope", "-n", "1"]);
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("no such tag: nope"), "{}", stderr(&out));
}

#[test]
fn stop_signals_by_name_and_number_and_forgets_the_tag() {
    let v = Vigild::start();
    // The script says when its trap is set: a signal before that would end it without the trap.
    let trap = |sig: &str, file: &str| {
        format!("trap 'echo got > {file}; exit 0' {sig}; : > {file}.ready; while :; do sleep 0.05; done")
    };
    let ready = |file: &str| {
        wait_for(&format!("{file}'s trap"), || {
            v.path(&format!("{file}.ready")).exists().then_some(())
        })
    };
    ok(&v.pmfadm(&["-c", "byname", "-n", "-1", "sh", "-c", &trap("USR1", "usr1")]));
    ok(&v.pmfadm(&["-c", "bynumber", "-n", "-1", "sh", "-c", &trap("USR2", "usr2")]));
    ready("usr1");
    ready("usr2");
    ok(&v.pmfadm(&["-s", "byname", "-w", "10", "sigusr1"]));
    assert_eq!(std::fs::read_to_string(v.path("usr1")).unwrap(), "got\n");
    assert!(
        !registered(&v, "byname"),
        "with -w, the tag is gone when pmfadm returns"
    );
    assert!(!v.client().query("byname").unwrap(), "vigild forgot it too");
    ok(&v.pmfadm(&["-s", "bynumber", "-w", "10", "12"]));
    assert_eq!(std::fs::read_to_string(v.path("usr2")).unwrap(), "got\n");
    assert!(!registered(&v, "bynumber"));

    // Without a signal, pmfadm -s only stops monitoring: see compat_c.rs.
}

#[test]
fn kill_signals_and_keeps_monitoring() {
    let v = Vigild::start();
    ok(&v.pmfadm(&["-c", "k", "-n", "-1", "sleep", "1000"]));
    let pid = v.wait_state("k", "running").main_pid.unwrap();
    ok(&v.pmfadm(&["-k", "k", "-w", "10", "usr1"]));
    assert!(!alive(pid), "with -w, the process is gone when pmfadm returns");
    let new = v.running_pid("k", Some(pid));
    assert_eq!(v.status("k").last_exit, Some((pid, ExitStatus::Signal(10))));
    // No signal named: SIGKILL, as pmfadm -k does.
    ok(&v.pmfadm(&["-k", "k", "-w", "10"]));
    let newer = v.running_pid("k", Some(new));
    assert_eq!(v.status("k").last_exit, Some((new, ExitStatus::Signal(9))));
    // By number, without waiting.
    ok(&v.pmfadm(&["-k", "k", "15"]));
    v.running_pid("k", Some(newer));
    assert_eq!(v.status("k").last_exit, Some((newer, ExitStatus::Signal(15))));
    assert!(registered(&v, "k"));
}

#[test]
fn kill_wait_that_runs_out_exits_2() {
    let v = Vigild::start();
    ok(&v.pmfadm(&["-c", "deaf", "sh", "-c", "trap '' USR1; while :; do sleep 0.05; done"]));
    let pid = v.wait_state("deaf", "running").main_pid.unwrap();
    let out = v.pmfadm(&["-k", "deaf", "-w", "1", "USR1"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("pmfadm: "), "{}", stderr(&out));
    assert!(alive(pid));
    assert_eq!(v.status("deaf").starts, 1);
}

#[test]
fn query_list_and_status_see_registered_tags_only() {
    let v = Vigild::start();
    ok(&v.pmfadm(&["-c", "up", "sleep", "1000"]));
    v.run(sh("spent", "exit 3"));
    v.wait_state("spent", "failed");
    let out = v.pmfadm(&["-q", "up"]);
    assert_eq!((code(&out), out.stdout.len(), out.stderr.len()), (Some(0), 0, 0));
    for tag in ["nope", "spent", "bad,name"] {
        let out = v.pmfadm(&["-q", tag]);
        assert_eq!(
            (code(&out), out.stdout.len(), out.stderr.len()),
            (Some(1), 0, 0),
            "{tag}"
        );
    }
    assert_eq!(
        stdout(&v.pmfadm(&["-L"])),
        "tags: up\n",
        "a failed tag is not registered"
    );
    let out = v.pmfadm(&["-l", "spent"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("nametag spent is not registered"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));
    // -c replaces the failed tag.
    ok(&v.pmfadm(&["-c", "spent", "sleep", "1000"]));
    assert!(registered(&v, "spent"));
}

#[test]
fn host_is_this_node_or_needs_cluster_mode() {
    let v = Vigild::start();
    ok(&v.pmfadm(&["-c", "h", "sleep", "1000"]));
    let node = v.client().daemon_status().unwrap().node;
    ok(&v.pmfadm(&["-q", "h", "-h", "localhost"]));
    ok(&v.pmfadm(&["-l", "h", "-h", &node]));
    assert_eq!(stdout(&v.pmfadm(&["-L", "-h", &node])), "tags: h\n");
    for args in [
        &["-q", "h", "-h", "zeus"][..],
        &["-L", "-h", "zeus"],
        &["-l", "h", "-h", "zeus"],
    ] {
        let out = v.pmfadm(args);
        assert_eq!(code(&out), Some(4), "{args:?}");
        assert!(stderr(&out).contains("zeus"), "{}", stderr(&out));
        assert!(stderr(&out).contains("cluster mode"), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    let out = v.pmfadm(&["-s", "h", "-h", "zeus"]);
    assert_eq!(code(&out), Some(3), "-h does not go with -s");
    assert!(registered(&v, "h"));
}

#[test]
fn bad_input_is_refused_with_a_reason_and_changes_nothing() {
    let v = Vigild::start();
    ok(&v.pmfadm(&["-c", "keep", "-n", "2", "sleep", "1000"]));
    let before = v.wait_state("keep", "running");
    let events = v.events().len();
    for (args, want_code, want) in [
        (&["-s", "nope"][..], 1, "no such tag: nope"),
        (&["-k", "nope"], 1, "no such tag: nope"),
        (&["-l", "nope"], 1, "no such tag: nope"),
        (&[], 3, "no mode given"),
        (&["-s"], 3, "option -s needs a nametag"),
        (&["-c", "keep"], 3, "-c keep needs a command"),
        (&["-k", "keep", "NOSUCHSIG"], 3, "\"NOSUCHSIG\" is not a signal"),
        (&["-s", "keep", "99"], 3, "\"99\" is not a signal"),
        (&["-m", "keep", "-n", "lots"], 3, "-n \"lots\" is not a whole number"),
        (&["-m", "keep", "-t", "0"], 3, "the period is in minutes"),
        (&["-k", "keep", "-w", "soon"], 3, "-w \"soon\" is not a whole number"),
        (&["-c", "new", "-C", "-2", "sleep", "1"], 3, "-C -2"),
        (&["-s", "keep", "-k", "keep"], 3, "-s and -k cannot be used together"),
        (
            &["-c", "new", "-e", "A=1", "-E", "sleep", "1"],
            3,
            "-e and -E cannot be used together",
        ),
        (&["-q", "keep", "-z"], 3, "unknown option -z"),
        (&["-m", "keep"], 3, "needs -n retries and/or -t period"),
        (&["-c", "bad/name", "sleep", "1"], 4, "bad/name"),
        (&["-c", "new", "/no/such/program"], 4, "/no/such/program"),
    ] {
        let out = v.pmfadm(args);
        let err = stderr(&out);
        assert_eq!(code(&out), Some(want_code), "{args:?}: {err}");
        assert!(err.starts_with("pmfadm: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        if want_code == 3 {
            assert!(
                err.contains("usage: pmfadm -c nametag"),
                "a usage error shows the synopsis"
            );
        }
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let after = v.status("keep");
    assert_eq!(
        (
            after.state.as_str(),
            after.main_pid,
            after.starts,
            after.retries,
            after.period
        ),
        ("running", before.main_pid, 1, 2, -1)
    );
    assert!(!v.client().query("new").unwrap());
    assert_eq!(v.events().len(), events, "no event: nothing changed");
}

#[test]
fn unreachable_vigild_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("pmfadm"))
        .env("VIGIL_SOCKET", dir.path().join("none.sock"))
        .args(["-q", "web"])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(5));
    assert!(stderr(&out).contains("cannot connect to vigild"), "{}", stderr(&out));
    assert!(
        stderr(&out).ends_with("set VIGIL_SOCKET)\n"),
        "pmfadm has no --socket: {}",
        stderr(&out)
    );
}
