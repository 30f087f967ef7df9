//! Golden frames of supervision settings (`Request::RunSupervised`, `WaitFor`, `ModifySupervision`,
//! protocol 3): appended variants, so every older frame keeps its bytes (see golden.rs).

use vigil_proto::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_supervision_frames() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "run_supervised",
            encode(&ClientMsg::Request {
                id: 13,
                body: Request::RunSupervised {
                    spec: Box::new(RunSpec::new("web", vec!["true".into()])),
                    supervision: Supervision {
                        restart: RestartPolicy::OnFailure,
                        success_exit_codes: vec![0, 3],
                        success_signals: vec![15],
                        start_secs_ms: 1000,
                        notify: true,
                    },
                    once: true,
                },
            })
            .unwrap(),
        ),
        (
            "wait_for",
            encode(&ClientMsg::Request {
                id: 14,
                body: Request::WaitFor {
                    tag: "web".into(),
                    until: WaitUntil::Ready,
                    timeout_ms: Some(2000),
                    this_start: true,
                },
            })
            .unwrap(),
        ),
        (
            "modify_supervision",
            encode(&ClientMsg::Request {
                id: 15,
                body: Request::ModifySupervision {
                    tag: "web".into(),
                    restart: Some(RestartPolicy::Never),
                    success_exit_codes: None,
                    success_signals: Some(vec![]),
                    start_secs_ms: None,
                },
            })
            .unwrap(),
        ),
    ];
    let got: Vec<String> = cases.iter().map(|(n, b)| format!("{n} {}", hex(b))).collect();
    let want = include_str!("golden_supervision.txt").lines().collect::<Vec<_>>();
    if std::env::var_os("VIGIL_WRITE_GOLDEN").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden_supervision.txt"),
            got.join("\n") + "\n",
        )
        .unwrap();
        return;
    }
    assert_eq!(got, want);
}
