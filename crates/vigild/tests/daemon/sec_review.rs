//! Attacks found by reviewing the bounds as an attacker: text that every event would carry, CMAP tracks
//! that every change is matched against, a SAM record reached through another user's reused pid, and a
//! PSM record reached the same way. Each runs as a real non-root user: the test binary runs itself as
//! `nobody` to send raw requests (`review_helper`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use vigil_client::proto::{CmapMap, Request, Response, SamChange, Value};
use vigil_client::Client;

use crate::harness::*;

const NOBODY: u32 = 65534;

/// Runs `review_helper` as `nobody` in `mode`; returns the line it wrote.
fn as_nobody(v: &Vigild, mode: &str) -> String {
    let out = v.path(&format!("review-{mode}"));
    std::fs::write(&out, b"").unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["sec_review::review_helper", "--exact", "--test-threads=1"])
        .env("SEC_REVIEW_SOCKET", v.socket())
        .env("SEC_REVIEW_MODE", mode)
        .env("SEC_REVIEW_OUT", &out)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_deadline(&mut child, "the helper run as nobody");
    std::fs::read_to_string(&out).unwrap().trim_end().to_string()
}

fn outcome(r: Result<Response, vigil_client::ClientError>) -> String {
    match r {
        Ok(Response::Ok) => "ok".into(),
        Ok(other) => format!("ok {other:?}"),
        Err(e) => format!("{:?} {e}", e.code()),
    }
}

/// Not a test on its own: the body of `as_nobody`'s process (does nothing without its environment).
#[test]
fn review_helper() {
    let Some(socket) = std::env::var_os("SEC_REVIEW_SOCKET") else {
        return;
    };
    let mode = std::env::var("SEC_REVIEW_MODE").unwrap();
    let out = std::env::var_os("SEC_REVIEW_OUT").unwrap();
    let mut c = Client::connect(Path::new(&socket)).unwrap();
    let line = match mode.as_str() {
        "warn" => {
            let info = quit_app_info();
            outcome(c.request(Request::SamReport {
                change: SamChange::Warn {
                    signal: 15,
                    reason: "A".repeat(1 << 20),
                },
                info,
            }))
        }
        "tracks" => {
            let mut ok = 0;
            let mut last = String::new();
            for i in 0..1100 {
                let r = c.request(Request::CmapTrackAdd {
                    map: CmapMap::Stats,
                    // One key that no step changes: 1,024 tracks of the whole statistics prefix would be
                    // notified of every statistics write, which under load took this loop past its deadline.
                    key: "stats.vigil.review.untouched".into(),
                    flags: 4 | 2 | 1,
                    context: i,
                });
                match r {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        last = format!("{:?} {e}", e.code());
                        break;
                    }
                }
            }
            format!("{ok} {last}")
        }
        other => panic!("unknown mode {other}"),
    };
    std::fs::write(out, format!("{line}\n")).unwrap();
}

#[test]
fn a_long_sam_reason_is_cut_in_the_event() {
    let v = Vigild::start();
    assert_eq!(as_nobody(&v, "warn"), "ok");
    let warn = wait_for("the warn event", || {
        v.events().into_iter().find(|e| e.name == "sys.vigil.sam.warn")
    });
    let Some(Value::Str(reason)) = warn.attr("reason") else {
        panic!("{warn:?}")
    };
    assert!(
        reason.len() < 4200 && reason.ends_with(&format!("…[{} more bytes]", (1 << 20) - 4096)),
        "{} bytes",
        reason.len()
    );
}

#[test]
fn a_user_holds_a_bounded_number_of_cmap_tracks() {
    let v = Vigild::start();
    let r = as_nobody(&v, "tracks");
    assert!(
        r.starts_with("1024 Some(LimitExceeded)") && r.contains("the limit is 1024 per user"),
        "{r}"
    );
    // The tracks went with the connection: root's own track still works, and nobody could track again.
    let mut c = v.client();
    assert!(c
        .request(Request::CmapTrackAdd {
            map: CmapMap::Stats,
            key: "stats.".into(),
            flags: 8 | 4,
            context: 0,
        })
        .is_ok());
    // vigild lets go of the first connection's tracks when it reads that connection's end, which can come
    // after the next connection's first requests: wait for it, with a deadline.
    wait_for("nobody's tracks to be let go with its connection", || {
        Some(as_nobody(&v, "tracks")).filter(|r| r.starts_with("1024 "))
    });
}
