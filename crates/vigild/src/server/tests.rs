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
    let counts = Arc::new(Mutex::new(Counts::default()));
    let a1 = admit(&counts, &l, 10).unwrap();
    let _a2 = admit(&counts, &l, 10).unwrap();
    let e = admit(&counts, &l, 10).err().unwrap();
    assert!(
        e.contains("uid 10 already has 2 open") && e.contains("max_connections_per_uid = 2"),
        "{e}"
    );
    let _b1 = admit(&counts, &l, 11).unwrap();
    let e = admit(&counts, &l, 12).err().unwrap();
    assert!(e.contains("max_connections = 3"), "{e}");
    // Root and vigild's own user are never counted nor refused.
    for _ in 0..10 {
        assert!(admit(&counts, &l, 0).unwrap().is_none());
        assert!(admit(&counts, &l, 1000).unwrap().is_none());
    }
    // A connection that ends gives its place back.
    drop(a1);
    assert!(admit(&counts, &l, 12).unwrap().is_some());
}

#[test]
fn a_uids_connections_share_one_budget_that_outlives_them() {
    let l = Limits {
        request_bytes: 1000,
        ..limits(10, 10)
    };
    let counts = Arc::new(Mutex::new(Counts::default()));
    let a = admit(&counts, &l, 10).unwrap().unwrap();
    let b = admit(&counts, &l, 10).unwrap().unwrap();
    assert!(Arc::ptr_eq(&a.budget, &b.budget));
    let other = admit(&counts, &l, 11).unwrap().unwrap();
    assert!(!Arc::ptr_eq(&a.budget, &other.budget));
    // A request still waiting for the loop keeps its bytes after its connections are gone: the uid's
    // next connection finds the same budget, not a fresh one.
    let held = a.budget.clone().try_acquire_many_owned(800).unwrap();
    drop((a, b));
    let c = admit(&counts, &l, 10).unwrap().unwrap();
    assert_eq!(c.budget.available_permits(), 200);
    drop(held);
    assert_eq!(c.budget.available_permits(), 1000);
    // Once nothing holds it, it is forgotten.
    drop(c);
    assert!(!counts.lock().unwrap().budgets.contains_key(&10));
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
