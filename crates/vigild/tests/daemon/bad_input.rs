//! Every bad input gets one clear line, a non-zero exit, and changes nothing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use vigil_client::proto::{self, ClientMsg, ErrorCode};

use crate::harness::*;

fn refused(v: &Vigild, args: &[&str], expect: &str) {
    let before = v.client().list().unwrap();
    let out = v.cli(args);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{args:?} should fail");
    assert!(err.contains(expect), "{args:?}: expected {expect:?} in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert_eq!(v.client().list().unwrap(), before, "{args:?} changed state");
}

#[test]
fn cli_refusals() {
    let v = Vigild::start();
    v.run(sh("ok", "exec sleep 1000"));
    refused(&v, &["status", "nope"], "no such tag: nope");
    refused(&v, &["stop", "nope"], "no such tag: nope");
    refused(
        &v,
        &["run", "bad", "--", "/nonexistent/program"],
        "cannot find executable",
    );
    refused(&v, &["run", "bad", "--", ""], "empty program name");
    refused(&v, &["run", "has space", "--", "true"], "contains whitespace");
    refused(&v, &["run", "a/b", "--", "true"], "contains a '/'");
    refused(&v, &["run", "ctl\u{1}x", "--", "true"], "control character");
    refused(&v, &["run", &"x".repeat(256), "--", "true"], "256 bytes long");
    refused(
        &v,
        &["run", "lv", "--level", "-2", "--", "true"],
        "level -2 is out of range",
    );
    refused(
        &v,
        &["run", "rt", "--retries", "-2", "--", "true"],
        "retries -2 is out of range",
    );
    refused(
        &v,
        &["run", "pd", "--period", "-2", "--", "true"],
        "period -2 is out of range",
    );
    refused(&v, &["modify", "ok", "--retries", "-5"], "retries -5 is out of range");
    refused(&v, &["kill", "ok", "NOSIG"], "not a signal");
    refused(
        &v,
        &["run", "cw", "--cwd", "/nonexistent-dir", "--", "true"],
        "working directory",
    );
    refused(&v, &["run", "ok", "--", "true"], "tag ok is already running");
    let st = v.status("ok");
    assert_eq!((st.retries, st.state.as_str()), (0, "running"));
}

#[test]
fn empty_command_over_the_wire() {
    let v = Vigild::start();
    let err = v.client().run(proto::RunSpec::new("e", vec![])).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    assert!(err.to_string().contains("the command is empty"));
    assert!(!v.client().query("e").unwrap());
}

fn raw(v: &Vigild, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(v.socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn hello(version: u32) -> Vec<u8> {
    proto::encode(&ClientMsg::Hello {
        version,
        client: "test".into(),
    })
    .unwrap()
}

fn goodbye(bytes: &[u8]) -> Option<String> {
    // Skip frames until a Goodbye.
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let msg: proto::ServerMsg = proto::decode(&rest[4..4 + len]).ok()?;
        if let proto::ServerMsg::Goodbye { reason } = msg {
            return Some(reason);
        }
        rest = &rest[4 + len..];
    }
    None
}

#[test]
fn bad_frames_close_only_that_connection() {
    let v = Vigild::start();
    v.run(sh("ok", "exec sleep 1000"));
    let before = v.status("ok");

    let r = goodbye(&raw(&v, &[0xff, 0xff, 0xff, 0x7f])).expect("oversized frame answered");
    assert!(r.contains("over the limit"), "{r}");
    let r = goodbye(&raw(&v, &[100, 0, 0, 0, 1, 2, 3])).expect("truncated frame answered");
    assert!(r.contains("middle of a frame"), "{r}");
    // Before the Hello, nothing but a Hello is decoded: garbage is refused as not being one.
    let r = goodbye(&raw(&v, &[3, 0, 0, 0, 0xfe, 0xfe, 0xfe])).expect("garbage answered");
    assert!(r.contains("the first message must be Hello"), "{r}");
    let mut garbage = hello(proto::PROTOCOL_VERSION);
    garbage.extend_from_slice(&[3, 0, 0, 0, 0xfe, 0xfe, 0xfe]);
    let r = goodbye(&raw(&v, &garbage)).expect("garbage answered");
    assert!(r.contains("malformed"), "{r}");
    let r = goodbye(&raw(&v, &hello(99))).expect("unknown version answered");
    assert!(r.contains("version 99"), "{r}");
    let mut after_hello = hello(proto::PROTOCOL_VERSION);
    after_hello.extend_from_slice(&[9, 0, 0, 0, 0xee]);
    let r = goodbye(&raw(&v, &after_hello)).expect("bad request answered");
    assert!(r.contains("middle of a frame"), "{r}");
    // Frames that come in one write are taken from what was read ahead: the oversized header behind a
    // request is refused as when it comes alone.
    let mut together = hello(proto::PROTOCOL_VERSION);
    together.extend(
        proto::encode(&ClientMsg::Request {
            id: 1,
            body: proto::Request::List,
        })
        .unwrap(),
    );
    together.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
    let r = goodbye(&raw(&v, &together)).expect("oversized frame after a request answered");
    assert!(r.contains("over the limit"), "{r}");

    // vigild still serves everyone, and nothing changed.
    let after = v.status("ok");
    assert_eq!((after.main_pid, after.starts), (before.main_pid, before.starts));
    assert!(v.cli(&["list"]).status.success());
}

#[test]
fn owner_check_across_users() {
    let v = Vigild::start();
    let nobody = Some(65534);
    v.run(sh("rootly", "exec sleep 1000"));
    // Anyone may read.
    let out = v.cli_as(nobody, &["status", "rootly"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [
        &["stop", "rootly"][..],
        &["kill", "rootly"],
        &["modify", "rootly", "-n", "3"],
        &["restart", "rootly"],
        &["rm", "rootly"],
    ] {
        let out = v.cli_as(nobody, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("belongs to uid 0; uid 65534 may not"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(v.status("rootly").state, "running");

    // A tag created by another user runs as that user, who may stop it.
    let out = v.cli_as(nobody, &["run", "mine", "--", "sleep", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = v.running_pid("mine", None);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.split_whitespace().skip(1).all(|u| u == "65534"), "{uid_line}");
    let out = v.cli_as(nobody, &["stop", "mine", "--wait", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v.status("mine").state, "stopped");
    // Root may change anyone's tag.
    assert!(v.cli(&["rm", "mine"]).status.success());
}
