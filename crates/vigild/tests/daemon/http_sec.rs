//! The HTTP API held to the main socket's bounds, attacked as a real non-root user (setpriv): a body
//! trickled past `frame_timeout`, connections spread over both sockets to get past the per-uid share,
//! a body that holds the uid's budget of request bytes, a stream its client does not read, and a
//! token shown anywhere but the Authorization header.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;
use crate::http::{http_sock, req, req_as, token_config, url, Stream, To, NOBODY};

/// A raw client on a Unix socket, in python3's standard library. It runs the actions of its second
/// argument (a JSON list) in order: `send` bytes, `trickle` bytes one a time every `every` seconds,
/// `look` up to `look` seconds for what arrives, `wait` for a line on stdin, `read` until the server
/// closes. While it trickles, looks or reads, it prints
/// `recv FIRST-LINE` for what arrives and, once the server closes, `closed STATUS-LINE` and
/// `body BODY`; a failed send prints `send-error`.
const CLIENT: &str = r#"
import json, select, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
print("connected", flush=True)
got = b""
def look(t):
    global got
    r, _, _ = select.select([s], [], [], t)
    if not r:
        return
    try:
        b = s.recv(1 << 16)
    except OSError:
        b = b""
    if not b:
        while got.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in got:
            got = got.split(b"\r\n\r\n", 1)[1]
        head = got.split(b"\r\n", 1)[0].decode(errors="replace")
        body = got.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
        print("closed", head, flush=True)
        print("body", body.replace("\n", " "), flush=True)
        sys.exit(0)
    print("recv", b.split(b"\r\n", 1)[0].decode(errors="replace"), flush=True)
    got += b
for a in json.loads(sys.argv[2]):
    if "send" in a:
        s.sendall(a["send"].encode())
        print("sent", flush=True)
    if "trickle" in a:
        for ch in a["trickle"]:
            try:
                s.sendall(ch.encode())
            except OSError:
                print("send-error", flush=True)
                break
            look(a["every"])
    if "look" in a:
        look(a["look"])
    if "wait" in a:
        sys.stdin.readline()
    if "read" in a:
        while True:
            look(60)
"#;

struct Raw {
    child: Child,
    lines: Receiver<String>,
}

impl Raw {
    /// Starts the client as nobody on `sock`.
    fn start(v: &Vigild, sock: &Path, actions: Value) -> Raw {
        let script = v.path("raw_client.py");
        if !script.exists() {
            std::fs::write(&script, CLIENT).unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let mut child = Command::new("setpriv")
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg("/usr/bin/python3")
            .arg(&script)
            .arg(sock)
            .arg(actions.to_string())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv python3");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Raw { child, lines }
    }

    /// The next line that starts with `prefix`, within the deadline.
    fn until(&self, prefix: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!("no line `{prefix}...` from the raw client within {DEADLINE:?}"),
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(mut i) = self.child.stdin.take() {
            let _ = writeln!(i);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nobody_code(v: &Vigild, path: &str) -> (u16, Value) {
    req_as(&To::Unix(http_sock(v)), Some(NOBODY), "GET", path, None)
}

#[test]
fn http_sec_a_trickled_body_gets_408_and_frees_its_slot() {
    let v = Vigild::start_with(Some("[daemon]\nmax_connections_per_uid = 1\nframe_timeout = 3\n"));
    let head = "POST /api/tags HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{";
    let started = Instant::now();
    let raw = Raw::start(
        &v,
        &http_sock(&v),
        json!([{"send": head}, {"trickle": "x".repeat(500), "every": 0.2}, {"read": true}]),
    );
    raw.until("sent");
    // The trickler holds nobody's one place meanwhile.
    let (code, e) = nobody_code(&v, "/api/whoami");
    assert_eq!((code, e["kind"].as_str()), (503, Some("unavailable")), "{e}");
    // A byte every 0.2 s would keep it going for 100 s: the body's deadline ends it.
    let closed = raw.until("closed");
    assert!(closed.contains(" 408 "), "{closed}");
    let body = raw.until("body");
    assert!(body.contains("frame_timeout"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    println!(
        "a trickled body answered 408 after {:?} (frame_timeout 3 s)",
        started.elapsed()
    );
    // Its place is free again; nothing was created.
    wait_for("nobody's place back", || {
        (nobody_code(&v, "/api/whoami").0 == 200).then_some(())
    });
    assert_eq!(req(&v, "GET", "/api/tags", None).1, json!([]));
}

#[test]
fn http_sec_one_connection_share_over_both_sockets() {
    let v = Vigild::start_with(Some("[daemon]\nmax_connections_per_uid = 2\nhello_timeout = 60\n"));
    let to = To::Unix(http_sock(&v));
    // Nobody's whole share on http.sock ...
    let a = Stream::open(&to, Some(NOBODY), "/api/events", &[]);
    let b = Stream::open(&to, Some(NOBODY), "/api/events", &[]);
    wait_for("two subscribers", || {
        (v.client().daemon_status().unwrap().subscribers == 2).then_some(())
    });
    // ... leaves nobody no place on the main socket, nor another on http.sock, with the reason.
    let out = v.cli_as(Some(NOBODY), &["list"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("max_connections_per_uid = 2"), "{}", stderr(&out));
    let (code, e) = nobody_code(&v, "/api/tags");
    assert_eq!((code, e["kind"].as_str()), (503, Some("unavailable")), "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("max_connections_per_uid = 2"),
        "{e}"
    );
    // Root keeps both sockets.
    assert!(v.cli(&["list"]).status.success());
    assert_eq!(req(&v, "GET", "/api/tags", None).0, 200);
    drop((a, b));
    wait_for("nobody's places back", || {
        (v.client().daemon_status().unwrap().subscribers == 0).then_some(())
    });

    // The other way round: nobody's connections to the main socket (no Hello yet) fill the share
    // that http.sock counts in.
    let m1 = Raw::start(&v, &v.socket(), json!([{"wait": true}]));
    let m2 = Raw::start(&v, &v.socket(), json!([{"wait": true}]));
    m1.until("connected");
    m2.until("connected");
    wait_for("nobody refused on http.sock", || {
        (nobody_code(&v, "/api/whoami").0 == 503).then_some(())
    });
    assert_eq!(req(&v, "GET", "/api/whoami", None).0, 200);
    drop((m1, m2));
    wait_for("nobody's place back", || {
        (nobody_code(&v, "/api/whoami").0 == 200).then_some(())
    });
}

#[test]
fn http_sec_a_body_counts_in_the_uids_request_budget() {
    // The smallest budget there may be (one frame of the largest size): a body that says it is
    // larger takes all of it while it arrives. The body's deadline is far away: the client gives the
    // body up when the test says so.
    let v = Vigild::start_with(Some(
        "[daemon]\nrequest_bytes_per_uid = 4194308\nframe_timeout = 120\n[http]\nmax_body_bytes = 67108864\n",
    ));
    let head = "POST /api/tags HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\n\
                Content-Length: 8388608\r\nExpect: 100-continue\r\n\r\n";
    let mut raw = Raw::start(
        &v,
        &http_sock(&v),
        json!([{"send": head}, {"look": 60}, {"wait": true}]),
    );
    // vigild asks for the body once it has taken the bytes from nobody's budget.
    let go = raw.until("recv");
    assert!(go.contains("100 Continue"), "{go}");
    // A request of nobody on the main socket now waits for the budget, until the body is given up.
    let mut cli = nobody_list(&v);
    // Unanswered for a second (an answer takes milliseconds when nothing holds the budget)...
    let waiting = Instant::now() + Duration::from_secs(1);
    while Instant::now() < waiting {
        assert!(
            cli.try_wait().unwrap().is_none(),
            "nobody's request on the main socket was answered while the body held the budget"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and answered once the client that held the budget goes.
    drop(raw.child.stdin.take());
    let st = wait_for("vigil list as nobody ended", || cli.try_wait().unwrap());
    assert!(st.success(), "{st:?}");
    // Root's requests never wait for it.
    assert!(v.cli(&["list"]).status.success());
    drop(v);

    // A body that does not come within `frame_timeout` gets 408, and gives the budget back.
    let v = Vigild::start_with(Some(
        "[daemon]\nrequest_bytes_per_uid = 4194308\nframe_timeout = 2\n[http]\nmax_body_bytes = 67108864\n",
    ));
    let raw = Raw::start(&v, &http_sock(&v), json!([{"send": head}, {"read": true}]));
    assert!(raw.until("recv").contains("100 Continue"));
    let closed = raw.until("closed");
    assert!(closed.contains(" 408 "), "{closed}");
    let mut cli = nobody_list(&v);
    let st = wait_for("vigil list as nobody ended after the 408", || cli.try_wait().unwrap());
    assert!(st.success(), "{st:?}");
}

/// `vigil list` as nobody on the main socket, started.
fn nobody_list(v: &Vigild) -> std::process::Child {
    Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(bin("vigil"))
        .arg("--socket")
        .arg(v.socket())
        .arg("list")
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn http_sec_a_client_that_does_not_read_is_dropped() {
    let v = Vigild::start_with(Some("[daemon]\nmax_connections_per_uid = 1\nsend_timeout = 2\n"));
    let track = "GET /api/cmap/track?prefix=big. HTTP/1.1\r\nHost: vigil\r\n\r\n";
    let raw = Raw::start(&v, &http_sock(&v), json!([{"send": track}, {"wait": true}]));
    raw.until("sent");
    let (code, _) = nobody_code(&v, "/api/whoami");
    assert_eq!(code, 503, "the reader that does not read holds nobody's place");
    // Changes of half a MiB each, which the client never reads: once the socket is full, vigild waits
    // `send_timeout` for it, then drops the connection and its track.
    let mut c = v.client();
    let mut n = 0u32;
    let started = Instant::now();
    wait_for("the reader that does not read dropped", || {
        n += 1;
        let value = format!("{n}-{}", "x".repeat(512 << 10));
        c.cmap_set("big.value", vigil_client::proto::CmapValue::Str(value), false)
            .unwrap();
        (nobody_code(&v, "/api/whoami").0 == 200).then_some(())
    });
    println!(
        "a tracker that reads nothing dropped {:?} after the first change, {n} changes of 512 KiB (send_timeout 2 s)",
        started.elapsed()
    );
    drop(raw);
}

#[test]
fn http_sec_the_token_counts_only_in_the_authorization_header() {
    let keep = tempfile::tempdir().unwrap();
    let port = free_port();
    let (token, cfg) = token_config(keep.path(), port, 0o600);
    let _v = Vigild::start_with(Some(&cfg));
    let curl = |headers: &[String], method: &str, path: &str| -> u16 {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method]);
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        let out = cmd.arg(url(&To::Tcp(port, None), path)).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    };
    // A browser sends a host's cookies to every port of it: a cookie with the token is not looked at,
    // and no route sets one.
    assert_eq!(curl(&[format!("cookie: vigil_token={token}")], "GET", "/api/tags"), 401);
    let json = "content-type: application/json".to_string();
    assert_eq!(curl(std::slice::from_ref(&json), "POST", "/api/login"), 404);
    assert_eq!(
        curl(&[format!("authorization: Bearer {token}")], "GET", "/api/tags"),
        200
    );
    // The scheme's name is not case-sensitive (RFC 9110); a token of another length is wrong.
    assert_eq!(
        curl(&[format!("authorization: bearer {token}")], "GET", "/api/whoami"),
        200
    );
    assert_eq!(
        curl(&[format!("authorization: Bearer {token}x")], "GET", "/api/whoami"),
        401
    );
    assert_eq!(curl(&["authorization: Bearer".to_string()], "GET", "/api/whoami"), 401);
    // Without the token, only the page and its assets: every route of the API wants it.
    assert_eq!(curl(&[], "GET", "/"), 200);
    for path in ["/api/tags", "/api/events", "/metrics", "/api/whoami", "/api/daemon"] {
        assert_eq!(curl(&[], "GET", path), 401, "{path}");
    }
}

#[test]
fn http_sec_heads_are_bounded_in_size_and_time() {
    let v = Vigild::start_with(Some("[daemon]\nhello_timeout = 1\n"));
    // A head larger than vigild buffers for a connection.
    let big = format!(
        "GET /api/whoami HTTP/1.1\r\nHost: vigil\r\nX-Pad: {}\r\n\r\n",
        "x".repeat(100 << 10)
    );
    let raw = Raw::start(&v, &http_sock(&v), json!([{"send": big}, {"read": true}]));
    let closed = raw.until("closed");
    assert!(closed.contains(" 431 "), "{closed}");
    // A connection kept alive after its answer, then idle: closed after `hello_timeout`.
    let one = "GET /api/whoami HTTP/1.1\r\nHost: vigil\r\n\r\n";
    let started = Instant::now();
    let raw = Raw::start(&v, &http_sock(&v), json!([{"send": one}, {"read": true}]));
    let answer = raw.until("recv");
    assert!(answer.contains(" 200 "), "{answer}");
    raw.until("closed");
    println!("an idle connection closed after {:?}", started.elapsed());
    // A head that never ends, likewise.
    let raw = Raw::start(
        &v,
        &http_sock(&v),
        json!([{"trickle": "GET /api/whoami HTTP/1.1\r\nX: ".to_string() + &"y".repeat(200), "every": 0.1}, {"read": true}]),
    );
    raw.until("closed");
}

#[test]
fn http_sec_tcp_clients_share_one_pseudo_users_place() {
    let keep = tempfile::tempdir().unwrap();
    let port = free_port();
    let (token, cfg) = token_config(keep.path(), port, 0o600);
    let v = Vigild::start_with(Some(&format!("{cfg}[daemon]\nmax_connections_per_uid = 2\n")));
    let tcp = To::Tcp(port, Some(token));
    let a = Stream::open(&tcp, None, "/api/events", &[]);
    let b = Stream::open(&tcp, None, "/api/events", &[]);
    wait_for("two subscribers", || {
        (v.client().daemon_status().unwrap().subscribers == 2).then_some(())
    });
    // A third TCP client, token or not, is refused with the reason ...
    let (code, e) = req_as(&tcp, None, "GET", "/api/whoami", None);
    assert_eq!((code, e["kind"].as_str()), (503, Some("unavailable")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("TCP listener's clients"), "{e}");
    // ... while nobody keeps their own share, and root both sockets.
    assert_eq!(nobody_code(&v, "/api/whoami").0, 200);
    assert!(v.cli_as(Some(NOBODY), &["list"]).status.success());
    assert_eq!(req(&v, "GET", "/api/whoami", None).0, 200);
    assert!(v.cli(&["list"]).status.success());
    drop((a, b));
}
