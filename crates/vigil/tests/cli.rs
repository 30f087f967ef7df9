//! The command line against a real vigild: the JSON each command prints, compared with the shapes in
//! tests/golden/ (docs/json.md), and what the text output and the exit codes promise.
//!
//! Volatile values (pids, times, paths) are replaced by a placeholder of their JSON type before the
//! comparison, so a golden file pins every key, every type and every stable value. `UPDATE_GOLDEN=1`
//! writes the files from what the commands print (read the diff before committing it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_client::proto::{Request, SamChange, SamInfo, SamState};
use vigil_client::Client;

const DEADLINE: Duration = Duration::from_secs(20);

/// Keys whose values change from run to run.
const VOLATILE: &[&str] = &[
    "pid",
    "main_pid",
    "child",
    "time",
    "time_ms",
    "started",
    "started_ms",
    "since",
    "since_ms",
    "created",
    "created_ms",
    "added",
    "added_ms",
    "registered",
    "registered_ms",
    "last_heartbeat",
    "last_heartbeat_ms",
    "start_time",
    "seq",
    "first_seq",
    "last_seq",
    "log_path",
    "state_dir",
    "socket",
    "config",
    "version",
    "tracking",
    "address",
    "waited_ms",
    "node_id",
    "id",
    "wait_status",
];

fn vigil_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vigil"))
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real vigild in a temporary directory, node name `golden`.
struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
}

impl Daemon {
    fn start(config: Option<&str>) -> Daemon {
        let vigild = vigil_bin().with_file_name("vigild");
        assert!(
            vigild.exists(),
            "{} is missing: build it first (`cargo build -p vigild`)",
            vigild.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(vigild);
        cmd.arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(dir.path().join("vigild.sock"))
            .args(["--node", "golden"]);
        if let Some(c) = config {
            std::fs::write(dir.path().join("vigil.toml"), c).unwrap();
            cmd.arg("--config").arg(dir.path().join("vigil.toml"));
        }
        let log = std::fs::File::create(dir.path().join("vigild.log")).unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("start vigild");
        let d = Daemon { dir, child };
        wait_for("vigild to answer", || d.client().ok());
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("vigild.sock")
    }

    fn client(&self) -> Result<Client, vigil_client::ClientError> {
        Client::connect(&self.socket())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(vigil_bin());
        // Local times in text output are the zone's: pin it.
        cmd.arg("--socket").arg(self.socket()).args(args).env("TZ", "UTC");
        cmd
    }

    fn vigil(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run vigil")
    }

    /// The command's text output; it must succeed.
    fn text(&self, args: &[&str]) -> String {
        let out = self.vigil(args);
        assert!(out.status.success(), "vigil {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The command's JSON (`--json` is added); it must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend(args);
        let text = self.text(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("vigil {args:?}: {e}: {text}"))
    }

    /// Each line of a streaming command's JSON output (JSON Lines).
    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        let mut a = vec!["--json"];
        a.extend(args);
        self.text(&a)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("vigil {args:?}: {e}: {l}")))
            .collect()
    }

    fn state(&self, tag: &str) -> Option<String> {
        self.client().ok()?.status(tag).ok().map(|s| s.state)
    }

    fn wait_state(&self, tag: &str, state: &str) {
        wait_for(&format!("{tag} to be {state}"), || {
            (self.state(tag).as_deref() == Some(state)).then_some(())
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM stops every tag; then make sure vigild is gone.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `v` with every volatile value (by key, plus `extra`) replaced by `"<number>"` or `"<string>"`; null
/// stays null, so that the type is still compared.
fn normalize(v: &mut Value, extra: &[&str]) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if VOLATILE.contains(&k.as_str()) || extra.contains(&k.as_str()) {
                    placeholder(x);
                } else {
                    normalize(x, extra);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, extra)),
        _ => {}
    }
}

fn placeholder(x: &mut Value) {
    match x {
        Value::Number(_) => *x = Value::String("<number>".into()),
        Value::String(_) => *x = Value::String("<string>".into()),
        Value::Array(a) => a.iter_mut().for_each(placeholder),
        Value::Object(m) => m.values_mut().for_each(placeholder),
        Value::Null | Value::Bool(_) => {}
    }
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"))
}

/// Compares `v` (normalized) with tests/golden/NAME.json.
fn golden(name: &str, mut v: Value, extra: &[&str]) {
    normalize(&mut v, extra);
    let path = golden_path(name);
    let got = serde_json::to_string_pretty(&v).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    let want: Value = serde_json::from_str(&want).unwrap();
    assert_eq!(
        v,
        want,
        "vigil's JSON for {name} is not the shape of {}:\n{got}",
        path.display()
    );
}

#[test]
fn tags_run_list_status_and_wait() {
    let d = Daemon::start(None);
    let run = d.json(&[
        "run",
        "web",
        "-n",
        "3",
        "-t",
        "60",
        "-e",
        "GREETING=hello world",
        "--type",
        "mon",
        "--backoff",
        "0.1:2",
        "--",
        "sleep",
        "1000",
    ]);
    golden("run", run, &[]);
    // A tag that has run and failed: its last exit.
    d.text(&["run", "bad", "-n", "1", "--", "sh", "-c", "exit 3"]);
    d.wait_state("bad", "failed");
    golden("list", d.json(&["list"]), &[]);
    golden("status", d.json(&["status", "web"]), &[]);
    golden("status_all", d.json(&["status"]), &[]);
    golden("wait", d.json(&["wait", "bad", "--timeout", "5"]), &[]);

    let list = d.text(&["list"]);
    let header = list.lines().next().unwrap();
    for col in ["TAG", "STATE", "PIDS", "UPTIME", "RESTARTS", "LAST EXIT"] {
        assert!(header.contains(col), "{col} in {list}");
    }
    let bad = list.lines().find(|l| l.trim_start().starts_with("bad ")).expect(&list);
    assert!(
        bad.contains("failed") && bad.contains("1/1") && bad.contains("exit code 3"),
        "{bad}"
    );
    let web = list.lines().find(|l| l.trim_start().starts_with("web ")).expect(&list);
    assert!(web.contains("running") && web.contains("0/3"), "{web}");
}

#[test]
fn mutating_commands_say_what_they_did() {
    let d = Daemon::start(None);
    d.text(&["run", "web", "-n", "-1", "--", "sleep", "1000"]);
    let stop = d.text(&["stop", "web", "--wait", "5"]);
    assert!(stop.starts_with("web: stopped (gone after "), "{stop}");
    // A command that ignores SIGTERM is killed when the wait runs out, and the line says so.
    d.text(&[
        "run",
        "deaf",
        "--",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    assert_eq!(
        d.text(&["stop", "deaf", "--wait", "0.5"]),
        "deaf: stopped (SIGKILL after 0.5 s)\n"
    );
    let start = d.text(&["start", "web"]);
    assert!(start.starts_with("web: started (running, pid "), "{start}");
    let kill = d.text(&["kill", "web", "HUP", "--wait", "5"]);
    assert_eq!(kill, "web: signalled (SIGHUP to 1 process, all gone)\n");
    d.wait_state("web", "running");
    let restart = d.text(&["restart", "web"]);
    assert!(restart.starts_with("web: restarted (running, pid "), "{restart}");
    assert_eq!(
        d.text(&["modify", "web", "-n", "5", "-t", "60"]),
        "web: modified (retries 5 within 60 s)\n"
    );

    golden("stop", d.json(&["stop", "web", "-s", "KILL", "--wait", "5"]), &[]);
    golden("start", d.json(&["start", "web"]), &[]);
    golden("kill", d.json(&["kill", "web", "USR2", "--wait", "5"]), &[]);
    d.wait_state("web", "running");
    golden("restart", d.json(&["restart", "web"]), &[]);
    golden("modify", d.json(&["modify", "web", "-n", "2"]), &[]);
    golden("rm", d.json(&["rm", "web", "--wait", "5"]), &[]);
    assert_eq!(
        d.text(&["run", "x", "--", "sleep", "1000"]).split(" (").next(),
        Some("x: running")
    );
    assert_eq!(d.text(&["rm", "x", "--wait", "5"]), "x: removed\n");
}

#[test]
fn events_newest_first_since_and_follow() {
    let d = Daemon::start(None);
    for i in 0..3 {
        d.text(&["run", &format!("t{i}"), "--", "sh", "-c", "exit 3"]);
        d.wait_state(&format!("t{i}"), "failed");
    }
    // The newest by default (20), oldest first.
    let all = d.json_lines(&["events"]);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let newest = d.json_lines(&["events", "-n", "2"]);
    assert_eq!(newest, all[all.len() - 2..], "-n 2 is the two newest");
    // With a filter, the newest that match, even when older events of other names come after them.
    let starts = d.json_lines(&["events", "-n", "2", "sys.vigil.pmf.tag.start"]);
    let subjects: Vec<&str> = starts.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["t1", "t2"]);
    let failed = d.json_lines(&["events", "--tag", "t1", "sys.vigil.pmf.tag.failed"]);
    golden("events", Value::Array(failed), &[]);

    // --since: a sequence number, an age, a time.
    let after = d.json_lines(&["events", "--since", &seqs[seqs.len() - 3].to_string()]);
    assert_eq!(after, all[all.len() - 2..]);
    assert_eq!(
        d.json_lines(&["events", "--since", "1h"]),
        all,
        "every event is within the hour"
    );
    assert!(d.json_lines(&["events", "--since", "2099-01-01T00:00:00Z"]).is_empty());
    let out = d.vigil(&["events", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--since \"yesterday\""), "{}", stderr(&out));

    // Text: local time (UTC here), values with spaces quoted.
    let text = d.text(&["events", "--tag", "t0", "sys.vigil.pmf.tag.failed"]);
    let line = text.lines().next().expect(&text);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1].len(), "2026-12-02".len(), "{line}");
    assert_eq!(fields[2].len(), "18:00:00.123".len(), "{line}");
    assert!(line.contains("reason=\"retry budget spent: "), "{line}");

    // -f: the newest, then new ones as they come.
    let mut follow = d
        .command(&["--json", "events", "-f", "-n", "1", "sys.vigil.pmf.tag.start"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["subject"], "t2");
    d.text(&["run", "late", "--", "sleep", "1000"]);
    let next: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(next["subject"], "late");
    follow.kill().unwrap();
    follow.wait().unwrap();
}

#[test]
fn cmap_values_are_typed() {
    let d = Daemon::start(None);
    golden("cmap_set", d.json(&["cmap", "set", "app.port", "u16", "8080"]), &[]);
    d.text(&["cmap", "set", "app.name", "str", "web front"]);
    d.text(&["cmap", "set", "app.ratio", "dbl", "0.25"]);
    d.text(&["cmap", "set", "app.blob", "bin", "00ff"]);
    d.text(&["cmap", "set", "app.neg", "i8", "-3"]);
    golden("cmap_get", d.json(&["cmap", "get", "app.port"]), &[]);
    golden("cmap_ls", d.json(&["cmap", "ls", "app."]), &[]);
    golden("cmap_inc", d.json(&["cmap", "inc", "app.port"]), &[]);
    golden("cmap_del", d.json(&["cmap", "del", "app.port"]), &[]);
    assert_eq!(d.text(&["cmap", "get", "app.name"]), "app.name (str) = web front\n");

    // A track prints one object per change. It is in place once a change made after its start reaches
    // it: changes go on until one does.
    let mut track = d
        .command(&["--json", "cmap", "track", "-p", "app."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(track.stdout.take().unwrap()));
    let seen = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while !seen.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                d.text(&["cmap", "set", "app.count", "u32", &n.to_string()]);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        lines.next().unwrap().unwrap();
        seen.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    d.text(&["cmap", "set", "app.port", "u16", "80"]);
    let change = loop {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if v["key"] == "app.port" {
            break v;
        }
    };
    track.kill().unwrap();
    track.wait().unwrap();
    golden("cmap_track", change, &["track"]);
}

#[test]
fn psm_sam_quorum_nodes_daemon_reload() {
    let d = Daemon::start(Some("[tag.cfg]\ncommand = [\"sleep\", \"1000\"]\n"));
    golden("psm_category_add", d.json(&["psm", "category", "add", "db"]), &[]);
    let mut member = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = member.id().to_string();
    golden("psm_add", d.json(&["psm", "add", "db", &pid]), &[]);
    golden("psm_state", d.json(&["psm", "state", "db", &pid, "ready now"]), &[]);
    golden("psm_category_ls", d.json(&["psm", "category", "ls"]), &[]);
    golden("psm_get", d.json(&["psm", "get", "db"]), &["name"]);
    member.kill().unwrap();
    member.wait().unwrap();
    wait_for("the member's exit", || {
        d.json(&["psm", "get", "db"])[0]["exited"].as_bool().filter(|e| *e)
    });
    let exited = d.json(&["psm", "get", "db"]);
    assert_eq!(exited[0]["exit"], serde_json::json!({"signal": 9, "name": "SIGKILL"}));
    golden("psm_get_exited", exited, &["name"]);
    golden("psm_rm", d.json(&["psm", "rm", "db", &pid]), &[]);

    // This process reports as a SAM supervisor.
    let mut c = d.client().unwrap();
    c.request(Request::SamReport {
        change: SamChange::Instance,
        info: SamInfo {
            instance: 1,
            child: 1,
            interval_ms: 1000,
            policy: vigil_client::proto::SAM_POLICY_RESTART,
            warn_signal: 15,
            state: SamState::Stopped,
        },
    })
    .unwrap();
    golden("sam_ls", d.json(&["sam", "ls"]), &["name", "uid"]);
    drop(c);

    golden("quorum", d.json(&["quorum"]), &[]);
    golden("nodes", d.json(&["nodes"]), &[]);
    golden("daemon_status", d.json(&["daemon", "status"]), &[]);
    std::fs::write(
        d.dir.path().join("vigil.toml"),
        "[tag.cfg]\ncommand = [\"sleep\", \"1001\"]\n[tag.new]\ncommand = [\"sleep\", \"1000\"]\n",
    )
    .unwrap();
    // Tag names, nothing volatile (`started` is not a time here).
    let reload = d.json(&["reload"]);
    assert_eq!(
        reload,
        serde_json::json!({"started": ["new"], "stopped": [], "restarted": ["cfg"], "unchanged": []})
    );
    golden("daemon_reexec", d.json(&["daemon", "reexec"]), &[]);
    // The new image is up once it has posted its start; a SIGTERM before that could be lost in the exec.
    wait_for("vigild back from its re-exec", || {
        let mut c = d.client().ok()?;
        let e = c.events(0, 10_000).ok()?;
        e.iter()
            .any(|e| {
                e.name == "sys.vigil.daemon.start" && e.attr("reexec") == Some(&vigil_client::proto::Value::Bool(true))
            })
            .then_some(())
    });
}

#[test]
fn exit_codes() {
    let d = Daemon::start(None);
    let code = |args: &[&str]| d.vigil(args).status.code();
    // Malformed values: 2, whether vigil finds them (a signal name) or vigild (a tag name, a CMAP value).
    assert_eq!(code(&["kill", "web", "NOPE"]), Some(2));
    assert_eq!(code(&["run", "bad name", "--", "true"]), Some(2));
    assert_eq!(code(&["cmap", "set", "a.b", "u8", "300"]), Some(2));
    assert_eq!(code(&["events", "--since", "soon"]), Some(2));
    assert_eq!(code(&["--json", "query", "web"]), Some(2));
    assert_eq!(code(&["--json", "logs", "web"]), Some(2));
    // Refusals and failures: 1.
    assert_eq!(code(&["stop", "nope"]), Some(1));
    assert_eq!(code(&["query", "nope"]), Some(1));
    assert_eq!(code(&["reload"]), Some(1), "no config: a refusal, not a usage error");
    // No vigild: 3.
    let out = Command::new(vigil_bin())
        .args(["--socket", "/nonexistent/vigild.sock", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn help_describes_every_argument() {
    // Every subcommand's help: each argument has a description.
    let top = Command::new(vigil_bin()).arg("--help").output().unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(top.contains("Global options:"), "{top}");
    let mut paths: Vec<Vec<&str>> = vec![];
    for cmd in [
        "run", "start", "modify", "stop", "kill", "restart", "rm", "query", "list", "status", "wait", "logs", "events",
        "quorum", "nodes", "reload",
    ] {
        paths.push(vec![cmd]);
    }
    for sub in ["get", "set", "del", "inc", "dec", "ls", "track", "load", "dump"] {
        paths.push(vec!["cmap", sub]);
    }
    for sub in ["add", "rm", "get", "state"] {
        paths.push(vec!["psm", sub]);
    }
    for sub in ["add", "rm", "ls"] {
        paths.push(vec!["psm", "category", sub]);
    }
    for p in paths {
        let out = Command::new(vigil_bin()).args(&p).arg("-h").output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        // clap lists an undescribed argument as a bare `<NAME>` or `--flag <X>` line.
        for line in help.lines() {
            let t = line.trim();
            let bare = (t.starts_with('<') || t.starts_with('[') || t.starts_with('-'))
                && !t.contains("  ")
                && !t.starts_with("-h, --help")
                && !t.starts_with("-V, --version");
            assert!(!bare, "vigil {p:?} -h: {t:?} has no description\n{help}");
        }
    }
}
