//! Golden frames of quorum with a deadline (`Request::QuorumLeaseTrack`, `ServerMsg::QuorumLease`):
//! appended variants, so every older frame keeps its bytes (see golden.rs).

use vigil_proto::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_quorum_lease_frames() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "quorum_lease_track",
            encode(&ClientMsg::Request {
                id: 12,
                body: Request::QuorumLeaseTrack,
            })
            .unwrap(),
        ),
        (
            "quorum_lease",
            encode(&ServerMsg::QuorumLease {
                quorate: true,
                valid_ms: Some(1750),
            })
            .unwrap(),
        ),
        (
            "quorum_lease_unbounded",
            encode(&ServerMsg::QuorumLease {
                quorate: false,
                valid_ms: None,
            })
            .unwrap(),
        ),
    ];
    let got: Vec<String> = cases.iter().map(|(n, b)| format!("{n} {}", hex(b))).collect();
    let want = include_str!("golden_quorum_lease.txt").lines().collect::<Vec<_>>();
    if std::env::var_os("VIGIL_WRITE_GOLDEN").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden_quorum_lease.txt"),
            got.join("\n") + "\n",
        )
        .unwrap();
        return;
    }
    assert_eq!(got, want);
}
