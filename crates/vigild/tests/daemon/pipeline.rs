//! Many requests in flight on one connection (`Client::pipeline`): every one answered, in the order
//! given, whatever the others did.

use std::time::{Duration, Instant};

use vigil_client::proto::{CmapMap, CmapValue as V, Request, Response};

use crate::harness::*;

#[test]
fn a_thousand_sets_in_flight_are_all_answered_in_order_with_the_refusals_in_place() {
    let v = Vigild::start();
    v.run(sh("slow", "sleep 1000"));
    let mut c = v.client();
    let mut reqs = Vec::new();
    for i in 0..1000u32 {
        reqs.push(match i {
            // A refusal in the middle: a key name CMAP does not take.
            500 => Request::CmapSet {
                key: "bad key with spaces".into(),
                value: V::U32(i),
                persist: false,
            },
            // One that waits (up to 300 ms) does not hold up the answers after it.
            600 => Request::Wait {
                tag: "slow".into(),
                timeout_ms: Some(300),
            },
            _ => Request::CmapSet {
                key: format!("pipe.k{i}"),
                value: V::U32(i),
                persist: false,
            },
        });
    }
    let t = Instant::now();
    let got = c.pipeline(reqs, 10_000).unwrap();
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(got.len(), 1000);
    for (i, r) in got.iter().enumerate() {
        match i {
            500 => assert!(
                matches!(r, Err(e) if e.message.contains("bad key with spaces")),
                "{i}: {r:?}"
            ),
            600 => assert!(r.is_err(), "the wait for a running tag timed out: {r:?}"),
            _ => assert!(matches!(r, Ok(Response::Ok)), "{i}: {r:?}"),
        }
    }
    // Every set is there, with its own value.
    for i in [0u32, 1, 499, 501, 599, 601, 999] {
        assert_eq!(c.cmap_get(&format!("pipe.k{i}")).unwrap(), V::U32(i));
    }
    // The connection goes on as usual after it.
    c.cmap_set("pipe.after", V::U32(7), false).unwrap();
    assert_eq!(c.cmap_get("pipe.after").unwrap(), V::U32(7));
}

const ADD: u32 = 4;
const MODIFY: u32 = 2;
const PREFIX: u32 = 8;

/// Answers larger than the client's read buffer, and notifications pushed among the answers on the
/// same connection: every answer whole and in its place, every notification kept for the caller.
#[test]
fn large_answers_and_pushed_notifications_among_the_answers_are_all_read() {
    let v = Vigild::start();
    let mut c = v.client();
    let big = vec![b'x'; 200 << 10];
    c.cmap_set("pipe.big", V::Binary(big.clone()), false).unwrap();
    c.cmap_track_add(CmapMap::Main, "pipe.t.", ADD | MODIFY | PREFIX, 9)
        .unwrap();
    let n = 300u32;
    let reqs = (0..n).map(|i| match i % 3 {
        0 => Request::CmapGet {
            map: CmapMap::Main,
            key: "pipe.big".into(),
            ty: None,
        },
        _ => Request::CmapSet {
            key: format!("pipe.t.{i}"),
            value: V::U32(i),
            persist: false,
        },
    });
    let got = c.pipeline(reqs, 64).unwrap();
    assert_eq!(got.len(), n as usize);
    for (i, r) in got.iter().enumerate() {
        match i % 3 {
            0 => assert!(
                matches!(r, Ok(Response::CmapValue(V::Binary(b))) if *b == big),
                "{i}: not the whole value"
            ),
            _ => assert!(matches!(r, Ok(Response::Ok)), "{i}: {r:?}"),
        }
    }
    // One notification per set, in order, none lost.
    for i in (0..n).filter(|i| i % 3 != 0) {
        let note = c.next_notification().unwrap();
        assert_eq!(note.key, format!("pipe.t.{i}"));
    }
    assert_eq!(c.take_notifications_lost(), 0);
}
