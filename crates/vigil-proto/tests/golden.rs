//! Golden frames: the bytes of these messages are the protocol. A change here breaks deployed clients,
//! so it must come with a new PROTOCOL_VERSION.

use vigil_proto::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_frames() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "hello",
            encode(&ClientMsg::Hello {
                version: 1,
                client: "cli".into(),
            })
            .unwrap(),
        ),
        (
            "query",
            encode(&ClientMsg::Request {
                id: 7,
                body: Request::Query { tag: "web".into() },
            })
            .unwrap(),
        ),
        (
            "stop",
            encode(&ClientMsg::Request {
                id: 8,
                body: Request::Stop {
                    tag: "web".into(),
                    signal: Some(15),
                    wait_ms: Some(1000),
                },
            })
            .unwrap(),
        ),
        (
            "error",
            encode(&ServerMsg::Response {
                id: 7,
                result: Err(WireError::new(ErrorCode::NotFound, "no such tag: web")),
            })
            .unwrap(),
        ),
        (
            "exists",
            encode(&ServerMsg::Response {
                id: 7,
                result: Ok(Response::Exists(true)),
            })
            .unwrap(),
        ),
        (
            "sam_report",
            encode(&ClientMsg::Request {
                id: 9,
                body: Request::SamReport {
                    change: SamChange::Warn {
                        signal: 15,
                        reason: "heartbeat missed".into(),
                    },
                    info: SamInfo {
                        instance: 2,
                        child: 4242,
                        interval_ms: 1000,
                        policy: SAM_POLICY_RESTART | SAM_POLICY_CMAP,
                        warn_signal: 15,
                        state: SamState::Running,
                    },
                },
            })
            .unwrap(),
        ),
        ("quorum", encode(&ServerMsg::Quorum { quorate: false }).unwrap()),
        (
            "run_probe",
            encode(&ClientMsg::Request {
                id: 9,
                body: Request::Run(Box::new(RunSpec {
                    watchdog_ms: Some(2000),
                    probes: vec![ProbeSpec {
                        check: ProbeCheck::Tcp {
                            address: "127.0.0.1:80".into(),
                        },
                        interval_ms: Some(1000),
                        timeout_ms: None,
                        threshold: Some(3),
                    }],
                    ..RunSpec::new("web", vec!["true".into()])
                })),
            })
            .unwrap(),
        ),
        (
            "nodes",
            encode(&ClientMsg::Request {
                id: 10,
                body: Request::Nodes,
            })
            .unwrap(),
        ),
        (
            "nodes_answer",
            encode(&ServerMsg::Response {
                id: 10,
                result: Ok(Response::Nodes(vec![NodeInfo {
                    name: "zeus".into(),
                    id: 2,
                    up: false,
                    since_ms: 1_700_000_000_000,
                    address: "/run/vigil/vigild.sock".into(),
                    pid: 4242,
                    version: "0.1.0".into(),
                    this_node: false,
                }])),
            })
            .unwrap(),
        ),
        (
            "on_node",
            encode(&ClientMsg::Request {
                id: 11,
                body: Request::OnNode {
                    node: "zeus".into(),
                    body: Box::new(Request::Status {
                        tag: Some("web".into()),
                    }),
                },
            })
            .unwrap(),
        ),
        (
            "node_down",
            encode(&ServerMsg::Response {
                id: 11,
                result: Err(WireError::new(ErrorCode::NodeDown, "node zeus is down")),
            })
            .unwrap(),
        ),
    ];
    let got: Vec<String> = cases.iter().map(|(n, b)| format!("{n} {}", hex(b))).collect();
    let want = include_str!("golden.txt").lines().collect::<Vec<_>>();
    if std::env::var_os("VIGIL_WRITE_GOLDEN").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden.txt"),
            got.join("\n") + "\n",
        )
        .unwrap();
        return;
    }
    assert_eq!(got, want);
}
