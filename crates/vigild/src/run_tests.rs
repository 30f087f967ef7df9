//! vigild in-process through [`crate::run`]: the caller's listener, the caller's shutdown.

use std::time::{Duration, Instant};

use crate::{Exit, Options, Tracking};

#[test]
fn the_daemon_runs_in_process_on_the_callers_listener_and_stops_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vigild.sock");
    let opts = Options {
        state_dir: dir.path().join("state"),
        socket: socket.clone(),
        config: None,
        tracking: Tracking::Scan,
        node: Some("in-process".into()),
        cluster: None,
        max_connections_per_uid: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let path = socket.clone();
    let daemon = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            crate::run(opts, Some(listener), async {
                let _ = stopped.await;
            })
            .await
        })
    });

    // The listener is bound before the daemon starts; it answers once its state is restored.
    let deadline = Instant::now() + Duration::from_secs(10);
    let info = loop {
        match vigil_client::Client::connect(&socket).and_then(|mut c| c.daemon_status()) {
            Ok(info) => break info,
            Err(e) if Instant::now() < deadline => {
                assert!(!daemon.is_finished(), "the daemon ended before it answered: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the in-process daemon did not answer: {e}"),
        }
    };
    assert_eq!(info.node, "in-process");
    assert_eq!(info.pid, std::process::id(), "the daemon runs in this process");

    stop.send(()).unwrap();
    let exit = daemon
        .join()
        .expect("the daemon's thread")
        .expect("the daemon's result");
    assert!(
        matches!(exit, Exit::Shutdown),
        "told to stop, the daemon stops rather than re-executing"
    );
    assert!(!socket.exists(), "a stopped daemon removes its socket");
}
