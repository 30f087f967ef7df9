//! An operator's first minutes: the demo configuration runs as the README starts it, from wherever.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;

/// vigild started as `scripts/demo` starts it, with a relative `--state-dir` and `--socket`, from one
/// directory, while its tags run in others: the demo's heartbeat tag reaches the notify socket from its
/// own working directory (READY=1, then its beats) and starts once, and the paths vigild reports are
/// absolute. With the state dir left relative, the tag got `NOTIFY_SOCKET=state/notify.sock`, failed at
/// once and was restarted forever.
#[test]
fn the_demo_runs_with_relative_paths_from_another_directory() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.toml");
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("vigild.log")).unwrap();
    let child = Command::new(bin("vigild"))
        .current_dir(dir.path())
        .args([
            "--state-dir",
            "state",
            "--socket",
            "vigild.sock",
            "--log-level",
            "debug",
            "--config",
        ])
        .arg(std::path::absolute(&demo).unwrap())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vigild");
    // The harness's own handle on it: the socket and state are where it looks, and dropping it stops
    // every tag of the demo.
    let v = Vigild {
        dir,
        child: Some(child),
        uid: None,
        scan: false,
        args: vec![],
    };
    wait_for("vigild to answer on the relative socket", || v.connect().ok());
    let st = wait_for("the heartbeat tag to say READY=1 and beat", || {
        let st = v.status("heartbeat");
        (st.ready && st.status_text.as_deref().is_some_and(|t| t.starts_with("beat"))).then_some(st)
    });
    assert_eq!(st.starts, 1, "the heartbeat tag was restarted: {st:?}");
    assert!(Path::new(&st.log_path).is_absolute(), "log path {:?}", st.log_path);
    assert!(
        st.log_path.starts_with(v.dir.path().to_str().unwrap()),
        "log path {:?} is not in the state dir",
        st.log_path
    );
}

/// `vigild --check --config FILE` says what a valid file declares and exits 0, names the file and the
/// problem of an invalid one and exits 1, and in neither case starts anything or creates the state dir.
#[test]
fn check_validates_a_config_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let check = |config: &Path| {
        Command::new(bin("vigild"))
            .args(["--check", "--state-dir"])
            .arg(&state)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run vigild --check")
    };
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.toml");
    let out = check(&demo);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("valid: 4 tags"),
        "{:?} {said} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[tag.web]\ncommand = [\"sleep\", \"1\"]\nretries = \"often\"\n").unwrap();
    let out = check(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.toml") && err.contains("retries"), "{err}");
    assert!(!state.exists(), "--check created the state dir");
}
