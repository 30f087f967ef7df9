use super::*;
use crate::config::Settings;

fn limits(per_uid: usize, total: usize) -> Limits {
    let s = Settings {
        max_connections_per_uid: per_uid,
        max_connections: total,
        ..Settings::default()
    };
    Limits::new(&s, Some(1 << 20), 1000)
}

#[test]
fn connections_per_uid_and_in_total_root_keeps_room() {
    let l = limits(2, 3);
    let adm = Admission::new(l.clone());
    let a1 = adm.admit(10, "").unwrap();
    let _a2 = adm.admit(10, "").unwrap();
    let e = adm.admit(10, "").err().unwrap();
    assert!(
        e.contains("uid 10 already has 2 open") && e.contains("max_connections_per_uid = 2"),
        "{e}"
    );
    let _b1 = adm.admit(11, "").unwrap();
    let e = adm.admit(12, "").err().unwrap();
    assert!(e.contains("max_connections = 3"), "{e}");
    // Root and vigild's own user are never counted nor refused.
    for _ in 0..10 {
        assert!(adm.admit(0, "").unwrap().is_none());
        assert!(adm.admit(1000, "").unwrap().is_none());
    }
    // A connection that ends gives its place back.
    drop(a1);
    assert!(adm.admit(12, "").unwrap().is_some());
}

#[test]
fn a_uids_connections_share_one_budget_that_outlives_them() {
    let l = Limits {
        request_bytes: 1000,
        ..limits(10, 10)
    };
    let adm = Admission::new(l.clone());
    let a = adm.admit(10, "").unwrap().unwrap();
    let b = adm.admit(10, "").unwrap().unwrap();
    assert!(Arc::ptr_eq(&a.budget, &b.budget));
    let other = adm.admit(11, "").unwrap().unwrap();
    assert!(!Arc::ptr_eq(&a.budget, &other.budget));
    // A request still waiting for the loop keeps its bytes after its connections are gone: the uid's
    // next connection finds the same budget, not a fresh one.
    let held = a.budget.clone().try_acquire_many_owned(800).unwrap();
    drop((a, b));
    let c = adm.admit(10, "").unwrap().unwrap();
    assert_eq!(c.budget.available_permits(), 200);
    drop(held);
    assert_eq!(c.budget.available_permits(), 1000);
    // Once nothing holds it, it is forgotten.
    drop(c);
    assert!(!adm.counts.lock().unwrap().budgets.contains_key(&10));
}

#[test]
fn the_total_stays_within_half_the_open_file_limit() {
    let s = Settings::default();
    assert_eq!(Limits::new(&s, Some(1024), 0).total, 512);
    assert_eq!(Limits::new(&s, Some(1 << 20), 0).total, s.max_connections);
    assert_eq!(Limits::new(&s, None, 0).total, s.max_connections);
}

#[test]
fn answers_past_the_bound_close_notifications_past_it_are_counted() {
    let l = Limits {
        queue_bytes: 100,
        ..limits(1, 1)
    };
    let (tx, _rx) = ConnTx::new(7, Some(&l));
    let small = || Outgoing::msg(ServerMsg::Quorum { quorate: true });
    let big = || {
        Outgoing::msg(ServerMsg::Goodbye {
            reason: "x".repeat(200),
        })
    };
    // A notification that does not fit is lost and counted; the connection stays.
    assert!(tx.for_notes().send(big()).is_err());
    assert_eq!(tx.shared.notes_lost.load(Ordering::Relaxed), 1);
    assert!(!tx.is_closed());
    assert!(tx.send(small()).is_ok());
    // An answer that does not fit closes the connection and says why.
    assert!(tx.reserve(&big().msg).is_none());
    assert!(tx.is_closed());
    let why = tx.shared.killed().unwrap();
    assert!(why.contains("reads too slowly") && why.contains("queue_bytes"), "{why}");
}

/// While the loop handles nothing (here its queue is never drained), one connection's requests are read
/// only as far as the uid's budget of request bytes allows: what waits for the loop holds no more than
/// the budget, the sender is left blocked on the socket, and once the loop has handled what it holds,
/// the rest is read. (The loop and the connections share vigild's one thread, so a stalled loop cannot
/// be had in a running vigild; this is the connection's own code on a real socket.)
#[tokio::test]
async fn requests_waiting_for_the_loop_hold_no_more_than_the_uids_budget() {
    use vigil_proto::Request;
    let budget_bytes: usize = 1 << 20;
    let l = Limits {
        request_bytes: budget_bytes,
        in_flight: 64,
        ..limits(10, 10)
    };
    let budget = Arc::new(Semaphore::new(budget_bytes));
    let (server, client) = UnixStream::pair().unwrap();
    let cred = server.peer_cred().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn({
        let budget = budget.clone();
        let l = l.clone();
        async move { connection(server, cred, 1, tx, &l, Some(budget)).await }
    });
    // 16 requests of about 300 KiB: nearly 5 MiB, five times the budget.
    let frame = |id| {
        vigil_proto::encode(&ClientMsg::Request {
            id,
            body: Request::Wait {
                tag: "x".repeat(300 << 10),
                timeout_ms: Some(0),
            },
        })
        .unwrap()
    };
    let frame_len = frame(1).len();
    let mut bytes = vigil_proto::encode(&ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        client: "budget".into(),
    })
    .unwrap();
    for id in 1..=16 {
        bytes.extend(frame(id));
    }
    let (_client_rd, mut client_wr) = client.into_split();
    let writer = tokio::spawn(async move { client_wr.write_all(&bytes).await });
    // The reader stops once no further frame fits in what is left of the budget.
    let stuck = async {
        while budget.available_permits() >= frame_len {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), stuck)
        .await
        .expect("the reader took requests up to the budget");
    // It stays stuck: nothing more is read while the loop holds what it was given.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = Vec::new();
    while let Ok(m) = rx.try_recv() {
        waiting.push(m);
    }
    assert!(
        !waiting.is_empty() && waiting.len() < 16,
        "{} requests read",
        waiting.len()
    );
    assert!(
        waiting.len() * frame_len <= budget_bytes,
        "{} requests of {frame_len} bytes wait for the loop, past the budget of {budget_bytes}",
        waiting.len()
    );
    assert!(!writer.is_finished(), "the sender was not held back");
    // The loop handles them (their bytes go back to the budget): the rest is read, every request.
    let mut got = waiting.len();
    drop(waiting);
    let all = async {
        while got < 16 {
            match rx.recv().await {
                Some(m) => {
                    drop(m);
                    got += 1;
                }
                None => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("every request read once the loop ran");
    assert_eq!(got, 16);
    writer.await.unwrap().unwrap();
    reader.abort();
}
