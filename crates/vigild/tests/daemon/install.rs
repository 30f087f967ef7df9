//! vigild installed and run for real: under systemd's `Type=notify`, with a log for shippers, and what
//! `make install` puts in place (docs/install.md).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_client::Client;

use crate::harness::*;

/// vigild started in `dir` with `args` and `env`, its stderr in `dir/vigild.log`, as the harness's own
/// handle (dropping it stops vigild and every tag).
fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &Path)]) -> Vigild {
    let log = std::fs::File::create(dir.path().join("vigild.log")).unwrap();
    let child = Command::new(bin("vigild"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("vigild.sock"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vigild");
    Vigild {
        dir,
        child: Some(child),
        uid: None,
        scan: false,
        args: vec![],
    }
}

/// systemd's `Type=notify`: vigild sends READY=1 (with its pid) to `$NOTIFY_SOCKET`, and by then its own
/// socket accepts and answers. The datagram is the first thing the test waits for: a connection made the
/// moment it arrives must be served.
#[test]
fn vigild_says_ready_to_notify_socket_once_its_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("systemd-notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(DEADLINE)).unwrap();
    let v = start_in(dir, &["--log-level", "debug"], &[("NOTIFY_SOCKET", &notify)]);
    let mut buf = [0u8; 4096];
    let n = listener
        .recv(&mut buf)
        .expect("READY=1 from vigild within the deadline");
    // Connect before anything else: READY=1 must not come before the socket serves.
    let mut c = Client::connect(&v.socket()).expect("vigild's socket accepts once READY=1 is sent");
    c.list().expect("vigild answers once READY=1 is sent");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    let lines: Vec<&str> = msg.lines().collect();
    assert!(lines.contains(&"READY=1"), "{msg:?}");
    assert!(lines.contains(&format!("MAINPID={}", v.pid()).as_str()), "{msg:?}");
    // Once: nothing more while vigild runs.
    listener.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(listener.recv(&mut buf).is_err(), "a second notification");
}

/// `--log-format json`: every line vigild writes to stderr is one JSON object with a level and a message,
/// without colour codes, the fields of the record beside them.
#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let v = start_in(dir, &["--log-format", "json", "--log-level", "debug"], &[]);
    wait_for("vigild to answer", || v.connect().ok());
    let log = v.path("vigild.log");
    let text = wait_for("the ready line in the log", || {
        let t = std::fs::read_to_string(&log).ok()?;
        t.contains("ready with").then_some(t)
    });
    assert!(!text.contains('\u{1b}'), "colour codes in the log: {text}");
    let mut ready = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let o: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(o["level"].is_string() && o["timestamp"].is_string(), "{line}");
        let m = o["message"].as_str().unwrap_or_else(|| panic!("no message: {line}"));
        if m.contains("ready with") {
            ready = true;
            assert_eq!(o["pid"], v.pid(), "{line}");
        }
    }
    assert!(ready, "{text}");

    let bad = Command::new(bin("vigild"))
        .args(["--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("xml"), "{}", stderr(&bad));
}
