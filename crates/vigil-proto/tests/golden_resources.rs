//! Golden frames of a tag's resources (`Request::RunWith`, `Request::Resources`,
//! `Response::Resources`): appended variants, so every older frame keeps its bytes (see golden.rs).

use vigil_proto::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn resources() -> Resources {
    Resources {
        user: Some("www".into()),
        group: None,
        limits: vec![LimitSpec {
            name: "nofile".into(),
            soft: Some(4096),
            hard: None,
        }],
        nice: Some(-1),
        umask: Some(0o27),
        stderr_log: None,
        log_timestamps: true,
        tag_group: Some("web".into()),
    }
}

#[test]
fn golden_resources_frames() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "run_with",
            encode(&ClientMsg::Request {
                id: 13,
                body: Request::RunWith {
                    spec: Box::new(RunSpec::new("web", vec!["true".into()])),
                    resources: Box::new(resources()),
                    once: true,
                    supervision: Supervision {
                        restart: RestartPolicy::OnFailure,
                        success_exit_codes: vec![0],
                        success_signals: vec![],
                        start_secs_ms: 0,
                        notify: false,
                    },
                },
            })
            .unwrap(),
        ),
        (
            "resources",
            encode(&ClientMsg::Request {
                id: 14,
                body: Request::Resources {
                    tag: Some("web".into()),
                },
            })
            .unwrap(),
        ),
        (
            "resources_answer",
            encode(&ServerMsg::Response {
                id: 14,
                result: Ok(Response::Resources(vec![TagResources {
                    tag: "web".into(),
                    uid: 33,
                    gid: 33,
                    user: Some("www".into()),
                    group: Some("www".into()),
                    groups: vec![33, 4],
                    resources: resources(),
                }])),
            })
            .unwrap(),
        ),
    ];
    for (name, bytes) in &cases {
        // Each frame decodes back to what was encoded.
        let payload = &bytes[HEADER_LEN..];
        if name.starts_with("resources_answer") {
            let back: ServerMsg = decode(payload).unwrap();
            assert_eq!(encode(&back).unwrap(), *bytes);
        } else {
            let back: ClientMsg = decode(payload).unwrap();
            assert_eq!(encode(&back).unwrap(), *bytes);
        }
    }
    let got: Vec<String> = cases.iter().map(|(n, b)| format!("{n} {}", hex(b))).collect();
    if std::env::var_os("VIGIL_WRITE_GOLDEN").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden_resources.txt"),
            got.join("\n") + "\n",
        )
        .unwrap();
        return;
    }
    let want = include_str!("golden_resources.txt").lines().collect::<Vec<_>>();
    assert_eq!(got, want);
}
