//! The wire against a hostile local user: every attack runs as `nobody` (uid 65534) through a small
//! Python client speaking raw frames, and vigild must stay up, keep serving root, and keep its memory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use vigil_client::proto::{self, ClientMsg, CmapMap, CmapValue, Request, ServerMsg};

use crate::harness::*;

const NOBODY: u32 = 65534;

/// The attacker: raw frames from a file, with what comes back printed one frame a line.
const CLIENT: &str = r#"
import socket, sys

def out(*a):
    print(*a, flush=True)

def read_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b

def read_frame(s):
    h = read_exact(s, 4)
    if h is None:
        return None
    p = read_exact(s, int.from_bytes(h, "little"))
    return p

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s

def drain(s, timeout):
    s.settimeout(timeout)
    try:
        while True:
            p = read_frame(s)
            if p is None:
                out("EOF")
                return
            out("FRAME", p.hex())
    except socket.timeout:
        out("TIMEOUT")
    except ConnectionResetError:
        out("EOF")

path, mode, frames = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
if mode == "send":
    # Send, then print every answer until the server closes (or the timeout says it did not).
    s = connect(path)
    s.sendall(frames)
    drain(s, float(sys.argv[4]))
elif mode == "hold":
    # N connections, each with a Hello and its first answer, held until stdin closes.
    held = []
    for _ in range(int(sys.argv[4])):
        s = connect(path)
        s.settimeout(10)
        s.sendall(frames)
        p = read_frame(s)
        out("FRAME", p.hex() if p is not None else "")
        held.append(s)
    out("READY")
    sys.stdin.read()
elif mode == "noread":
    # Send, read nothing; on a line from stdin, close ("close") or read what is left ("drain").
    s = connect(path)
    s.sendall(frames)
    # Optionally, the first answers (e.g. the Welcome and a track's handle) before going quiet.
    for _ in range(int(sys.argv[5]) if len(sys.argv) > 5 else 0):
        out("FRAME", read_frame(s).hex())
    out("SENT")
    if sys.stdin.readline().strip() == "drain":
        drain(s, float(sys.argv[4]))
    else:
        s.close()
        out("CLOSED")
"#;

struct Attacker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Attacker {
    /// Runs the client as nobody: `mode`, the frames to send, and the mode's argument.
    fn start(v: &Vigild, mode: &str, frames: &[u8], arg: &str) -> Attacker {
        Attacker::start_reading(v, mode, frames, arg, 0)
    }

    /// As `start`; in mode `noread`, the first `first` answers are read before going quiet.
    fn start_reading(v: &Vigild, mode: &str, frames: &[u8], arg: &str, first: usize) -> Attacker {
        let script = v.path("attacker.py");
        if !script.exists() {
            std::fs::write(&script, CLIENT).unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let n = std::fs::read_dir(v.dir.path()).unwrap().count();
        let file: PathBuf = v.path(&format!("frames.{n}"));
        std::fs::write(&file, frames).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(v.socket())
            .arg(mode)
            .arg(&file)
            .arg(arg)
            .arg(first.to_string())
            .uid(NOBODY)
            .gid(NOBODY)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Attacker { child, stdin, stdout }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "the attacker ended early");
        l.trim_end().to_string()
    }

    /// Lines up to the one that starts with one of `ends`, which is returned last.
    fn lines_until(&mut self, ends: &[&str]) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let l = self.line();
            let end = ends.iter().any(|e| l.starts_with(e));
            all.push(l);
            if end {
                return all;
            }
        }
    }

    fn tell(&mut self, line: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        wait_deadline(&mut self.child, "the attacker");
    }
}

fn frame(line: &str) -> Option<ServerMsg> {
    let hex = line.strip_prefix("FRAME ")?;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Some(proto::decode(&bytes).expect("a server message"))
}

fn goodbye(lines: &[String]) -> Option<String> {
    lines.iter().filter_map(|l| frame(l)).find_map(|m| match m {
        ServerMsg::Goodbye { reason } => Some(reason),
        _ => None,
    })
}

fn hello() -> Vec<u8> {
    proto::encode(&ClientMsg::Hello {
        version: proto::PROTOCOL_VERSION,
        client: "attacker".into(),
    })
    .unwrap()
}

fn request(id: u64, body: Request) -> Vec<u8> {
    proto::encode(&ClientMsg::Request { id, body }).unwrap()
}

/// `Request::OnNode` nested `depth` deep around a `List`, as one frame (about 2 bytes a level).
fn deep_on_node(depth: usize) -> Vec<u8> {
    let one = request(
        7,
        Request::OnNode {
            node: String::new(),
            body: Box::new(Request::List),
        },
    );
    let list = request(7, Request::List);
    // [len][Request id][OnNode ""][List]: the OnNode prefix is what `one` has beyond `list`.
    let level = one[6..one.len() - 1].to_vec();
    let mut payload = one[4..6].to_vec();
    for _ in 0..depth {
        payload.extend_from_slice(&level);
    }
    payload.extend_from_slice(&list[6..]);
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&payload);
    f
}

/// vigild is the same process and still answers root.
fn still_serving(v: &Vigild, pid: u32) {
    let info = v.client().daemon_status().expect("vigild answers root");
    assert_eq!(info.pid, pid, "vigild restarted");
    let out = v.cli(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn deep_on_node_closes_only_that_connection() {
    let v = Vigild::start();
    let pid = v.client().daemon_status().unwrap().pid;
    let deep = deep_on_node(2_000);
    assert!(deep.len() < 4100, "a 4 KB frame: {}", deep.len());

    // Before the Hello: not decoded at all.
    let mut a = Attacker::start(&v, "send", &deep, "10");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    assert_eq!(got.last().map(String::as_str), Some("EOF"), "{got:?}");
    let r = goodbye(&got).expect("a Goodbye");
    assert!(r.contains("the first message must be Hello"), "{r}");
    still_serving(&v, pid);

    // After the Hello: refused at the second level, before the decoder descends.
    let mut frames = hello();
    frames.extend_from_slice(&deep);
    let mut a = Attacker::start(&v, "send", &frames, "10");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    assert_eq!(got.last().map(String::as_str), Some("EOF"), "{got:?}");
    let r = goodbye(&got).expect("a Goodbye");
    assert!(r.contains("OnNode may not carry another OnNode"), "{r}");
    still_serving(&v, pid);

    // One level is an ordinary request.
    let mut frames = hello();
    frames.extend_from_slice(&deep_on_node(1));
    let mut a = Attacker::start(&v, "noread", &frames, "2");
    a.lines_until(&["SENT"]);
    a.tell("drain");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    assert!(
        got.iter()
            .filter_map(|l| frame(l))
            .any(|m| matches!(m, ServerMsg::Response { id: 7, result: Ok(_) })),
        "{got:?}"
    );
}

#[test]
fn unread_answers_are_bounded_and_close_the_reader() {
    let v = Vigild::start_with(Some("[daemon]\nqueue_bytes = 4194308\n"));
    let pid = v.client().daemon_status().unwrap().pid;
    // About 1 MB of CMAP that anyone may read, in one answer.
    let mut c = v.client();
    for i in 0..50 {
        c.cmap_set(&format!("big.k{i:03}"), CmapValue::Binary(vec![0x5a; 20_000]), false)
            .unwrap();
    }
    let iter = |id| {
        request(
            id,
            Request::CmapIter {
                map: CmapMap::Main,
                prefix: "big.".into(),
            },
        )
    };
    assert!(
        proto::encode(&c.cmap_iter(CmapMap::Main, "big.").unwrap())
            .unwrap()
            .len()
            > 1_000_000
    );
    let before = vm(pid, "VmRSS:");

    // 300 requests (4 KB) that would ask for 300 MB of answers, none of them read.
    let mut frames = hello();
    for id in 1..=300 {
        frames.extend_from_slice(&iter(id));
    }
    let mut a = Attacker::start(&v, "noread", &frames, "20");
    a.lines_until(&["SENT"]);
    // vigild closes the connection once the answers waiting for it pass the bound.
    wait_for("vigild to log the slow reader", || {
        let log = std::fs::read_to_string(v.path("vigild.log")).unwrap();
        log.contains("the client reads too slowly").then_some(())
    });
    a.tell("drain");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    assert_eq!(got.last().map(String::as_str), Some("EOF"), "the reader was not closed");
    let answers = got.iter().filter(|l| l.starts_with("FRAME")).count();
    assert!(answers < 300, "{answers} answers: the reader was served without bound");
    let peak = vm(pid, "VmHWM:");
    eprintln!("vigild's resident memory: {before} bytes before, a peak of {peak} after 300 requests");
    assert!(
        peak < before + (32 << 20),
        "vigild grew from {before} to a peak of {peak} bytes"
    );
    still_serving(&v, pid);
}

#[test]
fn waiting_requests_are_bounded_and_die_with_their_connection() {
    let v = Vigild::start();
    let pid = v.client().daemon_status().unwrap().pid;
    v.run(sh("busy", "exec sleep 1000"));
    let mut frames = hello();
    for id in 1..=100 {
        frames.extend_from_slice(&request(
            id,
            Request::Wait {
                tag: "busy".into(),
                timeout_ms: None,
            },
        ));
    }
    let waiting = || v.client().daemon_status().unwrap().waiting;
    let mut a = Attacker::start(&v, "noread", &frames, "5");
    a.lines_until(&["SENT"]);
    // At most 64 requests of a connection wait for an answer; the rest stay unread in the socket.
    let n = wait_for("the requests to wait", || Some(waiting()).filter(|n| *n >= 64));
    assert_eq!(n, 64, "requests in flight on one connection");
    still_serving(&v, pid);
    assert_eq!(waiting(), 64);
    a.tell("close");
    a.lines_until(&["CLOSED"]);
    a.finish();
    wait_for("the waiting requests of the closed connection to go", || {
        (waiting() == 0).then_some(())
    });
    assert_eq!(v.status("busy").state, "running");
}

#[test]
fn one_user_cannot_take_every_connection() {
    let v = Vigild::start_args(&["--max-connections-per-uid".into(), "20".into()]);
    let pid = v.client().daemon_status().unwrap().pid;
    let mut a = Attacker::start(&v, "hold", &hello(), "25");
    let got = a.lines_until(&["READY"]);
    let msgs: Vec<ServerMsg> = got.iter().filter_map(|l| frame(l)).collect();
    let welcomed = msgs.iter().filter(|m| matches!(m, ServerMsg::Welcome { .. })).count();
    let refused: Vec<&String> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Goodbye { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!((welcomed, refused.len()), (20, 5), "{got:?}");
    assert!(
        refused[0].contains("uid 65534 already has 20 open") && refused[0].contains("max_connections_per_uid"),
        "{}",
        refused[0]
    );
    // Root is not counted: it connects and works while nobody holds its whole share.
    still_serving(&v, pid);
    let out = v.cli(&["run", "rooted", "--", "sleep", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The CLI of the limited user says why it cannot connect.
    let out = v.cli_as(Some(NOBODY), &["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("max_connections_per_uid"), "{}", stderr(&out));
    a.finish();
    // Its places come back when its connections end.
    wait_for("nobody to connect again", || {
        v.cli_as(Some(NOBODY), &["list"]).status.success().then_some(())
    });
}

#[test]
fn slow_hello_and_half_sent_frames_time_out() {
    let v = Vigild::start_with(Some("[daemon]\nhello_timeout = 0.5\nframe_timeout = 0.5\n"));
    let pid = v.client().daemon_status().unwrap().pid;

    // Nothing at all: closed after the Hello timeout.
    let mut a = Attacker::start(&v, "send", &[], "10");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    assert_eq!(got.last().map(String::as_str), Some("EOF"), "{got:?}");
    let r = goodbye(&got).expect("a Goodbye");
    assert!(r.contains("no hello within 0.5 s"), "{r}");

    // A header that promises a megabyte, and ten bytes of it.
    let mut frames = hello();
    frames.extend_from_slice(&(1u32 << 20).to_le_bytes());
    frames.extend_from_slice(&[0; 10]);
    let mut a = Attacker::start(&v, "send", &frames, "10");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    assert_eq!(got.last().map(String::as_str), Some("EOF"), "{got:?}");
    let r = goodbye(&got).expect("a Goodbye");
    assert!(r.contains("frame_timeout"), "{r}");

    // A connection that is idle between frames is not timed out: it answers after more than the
    // frame timeout.
    let mut frames = hello();
    frames.extend_from_slice(&request(1, Request::List));
    let mut a = Attacker::start(&v, "noread", &frames, "2");
    a.lines_until(&["SENT"]);
    // Two Hello timeouts of other connections prove that more than the frame timeout went by.
    for _ in 0..2 {
        let mut b = Attacker::start(&v, "send", &[], "10");
        assert_eq!(
            b.lines_until(&["EOF", "TIMEOUT"]).last().map(String::as_str),
            Some("EOF")
        );
        b.finish();
    }
    a.tell("drain");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    assert_eq!(got.last().map(String::as_str), Some("TIMEOUT"), "{got:?}");
    assert!(goodbye(&got).is_none(), "{got:?}");
    still_serving(&v, pid);
}

#[test]
fn a_replay_is_paged_through_the_subscribers_queue_without_loss() {
    // A queue of 4 events: the replay of the whole history goes through it a page at a time.
    let v = Vigild::start_with(Some("[daemon]\nsubscriber_queue = 4\n"));
    let mut c = v.client();
    for i in 0..60 {
        c.psm_category_add(&proto::PsmNode::local(), &format!("cat{i}"))
            .unwrap();
    }
    let last = c.daemon_status().unwrap().last_seq;
    assert!(last > 60, "{last}");
    let mut s = v.client();
    s.subscribe(Some(0)).unwrap();
    let mut seqs = vec![];
    while seqs.last() != Some(&last) {
        // A loss would be an error here: a replay must not lose what it pages.
        seqs.push(s.next_event().unwrap().seq);
    }
    c.psm_category_add(&proto::PsmNode::local(), "live").unwrap();
    let live = s.next_event().unwrap();
    assert_eq!(live.seq, last + 1);
    seqs.push(live.seq);
    assert_eq!(seqs[0], 1, "the whole history is replayed");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat: {seqs:?}");
}

#[test]
fn unread_cmap_notifications_become_a_loss_marker() {
    let v = Vigild::start_with(Some("[daemon]\nqueue_bytes = 4194308\n"));
    let pid = v.client().daemon_status().unwrap().pid;
    let mut frames = hello();
    frames.extend_from_slice(&request(
        1,
        Request::CmapTrackAdd {
            map: CmapMap::Main,
            key: "flood.".into(),
            flags: 4 | 2 | 8, // added or modified, by prefix
            context: 0,
        },
    ));
    // The tracker reads its Welcome and its track handle, then nothing.
    let mut a = Attacker::start_reading(&v, "noread", &frames, "3", 2);
    let first = a.lines_until(&["SENT"]);
    assert!(
        matches!(frame(&first[1]), Some(ServerMsg::Response { id: 1, result: Ok(_) })),
        "{first:?}"
    );
    let before = vm(pid, "VmRSS:");
    // 60 changes of half a megabyte each: 30 MB of notifications for a reader that does not read.
    let mut c = v.client();
    for i in 0..60u8 {
        c.cmap_set(&format!("flood.k{}", i % 3), CmapValue::Binary(vec![i; 500_000]), false)
            .unwrap();
    }
    let peak = vm(pid, "VmHWM:");
    eprintln!("vigild's resident memory: {before} bytes before, a peak of {peak} after 60 notifications");
    a.tell("drain");
    let got = a.lines_until(&["EOF", "TIMEOUT"]);
    a.finish();
    let msgs: Vec<ServerMsg> = got.iter().filter_map(|l| frame(l)).collect();
    let notes = msgs.iter().filter(|m| matches!(m, ServerMsg::CmapNotify(_))).count() as u64;
    let lost: u64 = msgs
        .iter()
        .map(|m| match m {
            ServerMsg::CmapLost { count } => *count,
            _ => 0,
        })
        .sum();
    assert!(lost > 0, "no loss marker: {notes} notifications");
    assert_eq!(notes + lost, 60, "every change is delivered or counted as lost");
    // The tracker is not disconnected: losing notifications is its only cost.
    assert_eq!(got.last().map(String::as_str), Some("TIMEOUT"), "{:?}", got.last());
    assert!(
        peak < before + (30 << 20),
        "vigild grew from {before} to a peak of {peak} bytes"
    );
    still_serving(&v, pid);
}
