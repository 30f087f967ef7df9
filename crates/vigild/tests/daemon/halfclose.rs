//! A client that sends its requests and then shuts its writing end (`printf ... | nc -U` does) still
//! reads: every request it sent is carried out and answered before vigild lets the connection go.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vigil_client::proto::{self, ClientMsg, CmapMap, CmapValue, Request, ServerMsg};

use crate::harness::*;

#[test]
fn a_half_closed_client_gets_every_answer() {
    let v = Vigild::start();
    // Answers larger than the socket's buffer: most of them still wait in vigild when it reads the end.
    let big = vec![0x5a; 60_000];
    v.client()
        .cmap_set("half.big", CmapValue::Binary(big.clone()), false)
        .unwrap();
    // Fewer than `max_in_flight` (64): vigild reads them all, and the end, without waiting for the reader.
    let n = 41u64;
    let mut bytes = proto::encode(&ClientMsg::Hello {
        version: proto::PROTOCOL_VERSION,
        client: "half-closed".into(),
    })
    .unwrap();
    for id in 1..=n {
        let body = if id % 2 == 1 {
            Request::CmapSet {
                key: format!("half.k{id:03}"),
                value: CmapValue::U32(id as u32),
                persist: false,
            }
        } else {
            Request::CmapGet {
                map: CmapMap::Main,
                key: "half.big".into(),
                ty: None,
            }
        };
        bytes.extend(proto::encode(&ClientMsg::Request { id, body }).unwrap());
    }
    let mut s = UnixStream::connect(v.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // A slow reader: it takes its answers only after vigild has carried out its last request.
    wait_for("vigild to have handled the last set", || {
        v.client().cmap_get(&format!("half.k{n:03}")).ok().map(|_| ())
    });
    let mut answered = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the answers: {e}"),
        }
        let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut payload).unwrap();
        match proto::decode::<ServerMsg>(&payload).unwrap() {
            ServerMsg::Response { id, .. } => answered.push(id),
            ServerMsg::Goodbye { reason } => panic!("vigild said goodbye: {reason}"),
            _ => {}
        }
    }
    assert_eq!(
        answered,
        (1..=n).collect::<Vec<_>>(),
        "every request answered, in order"
    );
    let mut c = v.client();
    for id in [1, n / 2 + 1, n] {
        assert_eq!(
            c.cmap_get(&format!("half.k{id:03}")).unwrap(),
            CmapValue::U32(id as u32)
        );
    }
}
