//! Hostile input for the decoder: every message type must turn any bytes into a message or an error,
//! never a panic, a stack overflow or an allocation the input did not pay for.

use vigil_proto::*;

/// A small deterministic generator: the same inputs on every run, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Decodes `payload` as everything a peer can send or receive; only the absence of a panic matters.
fn decode_all(payload: &[u8]) {
    let _ = decode::<ClientMsg>(payload);
    let _ = decode::<ServerMsg>(payload);
    let _ = decode::<Request>(payload);
    let _ = decode::<Response>(payload);
    let _ = decode_hello(payload);
    let mut framed = (payload.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(payload);
    let _ = read_msg::<ClientMsg, _>(&mut &framed[..]);
    let _ = read_msg::<ServerMsg, _>(&mut &framed[..]);
}

/// Valid frames of many kinds, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut spec = RunSpec::new("web", vec!["sh".into(), "-c".into(), "sleep 1".into()]);
    spec.env = vec![("A".into(), "b".into())];
    spec.probes = vec![ProbeSpec {
        check: ProbeCheck::Http {
            url: "http://x/".into(),
        },
        interval_ms: Some(1),
        timeout_ms: None,
        threshold: Some(2),
    }];
    let reqs = vec![
        Request::Run(Box::new(spec)),
        Request::Status {
            tag: Some("web".into()),
        },
        Request::Events {
            after: 3,
            limit: 10,
            filter: EventFilter {
                names: vec!["sys.*".into()],
                category: Some("c".into()),
                tag: None,
            },
        },
        Request::CmapSet {
            key: "a.b".into(),
            value: CmapValue::Binary(vec![1, 2, 3]),
            persist: true,
        },
        Request::OnNode {
            node: "zeus".into(),
            body: Box::new(Request::Wait {
                tag: "web".into(),
                timeout_ms: Some(5),
            }),
        },
        Request::PsmGet {
            node: PsmNode::local(),
            category: None,
            pid: Some(4),
        },
    ];
    let mut out: Vec<Vec<u8>> = reqs
        .into_iter()
        .enumerate()
        .map(|(i, body)| encode(&ClientMsg::Request { id: i as u64, body }).unwrap()[HEADER_LEN..].to_vec())
        .collect();
    out.push(
        encode(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            client: "x".into(),
        })
        .unwrap()[HEADER_LEN..]
            .to_vec(),
    );
    out.push(encode(&ServerMsg::Lost { from: 1, to: 9 }).unwrap()[HEADER_LEN..].to_vec());
    out.push(
        encode(&ServerMsg::Response {
            id: 1,
            result: Ok(Response::CmapEntries(vec![CmapEntry {
                key: "k".into(),
                value: CmapValue::Str("v".into()),
            }])),
        })
        .unwrap()[HEADER_LEN..]
            .to_vec(),
    );
    out
}

/// `Request::OnNode` nested `depth` times around a `List`, as a `ClientMsg::Request` payload.
fn nested_on_node(depth: usize) -> Vec<u8> {
    let one = encode(&Request::OnNode {
        node: String::new(),
        body: Box::new(Request::List),
    })
    .unwrap();
    let list = encode(&Request::List).unwrap();
    // One OnNode with an empty node name is its variant number and a zero length, then the body.
    let body = &one[HEADER_LEN..];
    let list = &list[HEADER_LEN..];
    let prefix = &body[..body.len() - list.len()];
    let mut payload = vec![1u8, 7]; // ClientMsg::Request, id 7
    for _ in 0..depth {
        payload.extend_from_slice(prefix);
    }
    payload.extend_from_slice(list);
    payload
}

#[test]
fn deep_on_node_is_refused_without_recursion() {
    for depth in [2, 3, 2_000, 1_000_000] {
        let payload = nested_on_node(depth);
        // In a thread with a small stack: were the decoder to descend, it would overflow here.
        let err = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || decode::<ClientMsg>(&payload).map(|_| ()))
            .unwrap()
            .join()
            .expect("the decoder must not overflow its stack");
        match err {
            Err(FrameError::Malformed(m)) => assert!(m.contains("OnNode may not carry another OnNode"), "{m}"),
            other => panic!("depth {depth}: {other:?}"),
        }
    }
    // One level is an ordinary request, and the refusal left nothing behind on this thread.
    let one: ClientMsg = decode(&nested_on_node(1)).unwrap();
    assert!(matches!(
        one,
        ClientMsg::Request {
            body: Request::OnNode { .. },
            ..
        }
    ));
    let again: ClientMsg = decode(&nested_on_node(1)).unwrap();
    assert_eq!(one, again);
}

#[test]
fn only_a_hello_is_decoded_as_a_hello() {
    let hello = encode(&ClientMsg::Hello {
        version: 2,
        client: "c".into(),
    })
    .unwrap();
    assert_eq!(decode_hello(&hello[HEADER_LEN..]).unwrap(), Some((2, "c".into())));
    // A request, even a hostile one, is recognised as "not a Hello" from its first byte alone.
    assert_eq!(decode_hello(&nested_on_node(100_000)).unwrap(), None);
    assert_eq!(decode_hello(&[]).unwrap(), None);
    assert!(decode_hello(&[0, 2]).is_err());
    assert!(matches!(
        frame_payload_len_max(((MAX_HELLO_LEN + 1) as u32).to_le_bytes(), MAX_HELLO_LEN),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..100_000 {
        let len = rng.below(64);
        decode_all(&rng.bytes(len));
    }
    // Small values dominate real frames: bytes that are mostly 0 and 1 reach deeper into the types.
    for _ in 0..100_000 {
        let len = rng.below(48);
        let b: Vec<u8> = (0..len).map(|_| (rng.next() % 4) as u8).collect();
        decode_all(&b);
    }
}

#[test]
fn mutated_frames_never_panic() {
    let mut rng = Rng(42);
    let seeds = seeds();
    for s in &seeds {
        decode_all(s);
    }
    for _ in 0..100_000 {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            match rng.below(5) {
                0 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                1 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b.truncate(i);
                }
                2 => {
                    let i = rng.below(b.len() + 1);
                    b.insert(i, rng.next() as u8);
                }
                3 if !b.is_empty() => {
                    // A huge length or count in the middle: must not be believed before the bytes are there.
                    let i = rng.below(b.len());
                    b.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
                }
                _ => {
                    let i = rng.below(b.len() + 1);
                    let n = rng.below(8);
                    let tail = rng.bytes(n);
                    b.splice(i..i, tail);
                }
            }
        }
        decode_all(&b);
    }
}
