//! What a local user can do to other users through vigil's clients and answers: pose as vigild on a
//! socket another user's client finds by convention, put terminal escapes into root's terminal, learn
//! which files exist where only root may look, and read other users' environment values. Every attack
//! runs as a real non-root user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use vigil_client::proto::{ServerMsg, PROTOCOL_VERSION};

use crate::harness::*;

const NOBODY: u32 = 65534;

/// A listener run by `nobody` that answers the handshake as vigild would and records, per connection,
/// every byte it received (hex), so that a test sees exactly what a client gave away. A connection whose
/// first frame is `MARK` only writes `MARK`: connections are served one by one, so once `MARK` is in the
/// log, every connection before it has been recorded.
const SQUATTER: &str = r#"
import os, socket, sys
sock_path, log_path, welcome = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
os.makedirs(os.path.dirname(sock_path), exist_ok=True)
os.chmod(os.path.dirname(sock_path), 0o777)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock_path)
os.chmod(sock_path, 0o777)
s.listen(16)
log = open(log_path, "a")
log.write("READY\n"); log.flush()

def frame(c, got):
    head = b""
    while len(head) < 4:
        b = c.recv(4 - len(head))
        if not b:
            return None
        head += b
    n = int.from_bytes(head, "little")
    body = b""
    while len(body) < n:
        b = c.recv(n - len(body))
        if not b:
            return None
        body += b
    got.extend(head + body)
    return body

while True:
    c, _ = s.accept()
    c.settimeout(20)
    got = bytearray()
    try:
        first = frame(c, got)
        if first == b"MARK":
            log.write("MARK\n"); log.flush(); c.close(); continue
        if first is not None:
            c.sendall(welcome)
            frame(c, got)
    except Exception:
        pass
    log.write("CONN " + got.hex() + "\n"); log.flush()
    c.close()
"#;

struct Squatter {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Squatter {
    /// Starts the listener as `nobody` on `socket` (its directory is made by `nobody`, mode 0777, as a
    /// squatter of `/tmp/vigil-UID` would).
    fn start(socket: &Path) -> Squatter {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let script = dir.path().join("squat.py");
        std::fs::write(&script, SQUATTER).unwrap();
        let log = dir.path().join("squat.log");
        let mut welcome = Vec::new();
        let msg = ServerMsg::Welcome {
            version: PROTOCOL_VERSION,
            daemon_version: "0.0.0".into(),
            pid: 1,
        };
        vigil_client::proto::write_msg(&mut welcome, &msg).unwrap();
        let hex: String = welcome.iter().map(|b| format!("{b:02x}")).collect();
        let child = Command::new("python3")
            .arg(&script)
            .arg(socket)
            .arg(&log)
            .arg(hex)
            .uid(NOBODY)
            .gid(NOBODY)
            .current_dir("/")
            .stdout(Stdio::null())
            .spawn()
            .expect("start python3");
        let s = Squatter {
            child,
            socket: socket.to_path_buf(),
            log,
            _dir: dir,
        };
        wait_for("the squatter to listen", || {
            s.lines().contains(&"READY".to_string()).then_some(())
        });
        s
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every connection the squatter served before now, as the hex of the bytes it received.
    fn connections(&self) -> Vec<String> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect to the squatter");
        std::io::Write::write_all(&mut s, b"\x04\x00\x00\x00MARK").unwrap();
        let lines = wait_for("the squatter to log the marker", || {
            let l = self.lines();
            l.contains(&"MARK".to_string()).then_some(l)
        });
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("CONN").map(|h| h.trim().to_string()))
            .collect()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.socket.parent().filter(|d| d.starts_with("/tmp/vigil-")) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The conventional socket of `uid` (no `XDG_RUNTIME_DIR`), cleared of what an earlier run left.
fn tmp_socket_of(uid: u32) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/vigil-{uid}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("vigild.sock")
}

/// `cmd` as `uid` with none of the variables that would name a socket.
fn as_victim(cmd: &mut Command, uid: u32) -> &mut Command {
    cmd.env_remove("VIGIL_SOCKET")
        .env_remove("XDG_RUNTIME_DIR")
        .uid(uid)
        .gid(uid)
        .current_dir("/")
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_squatted_default_socket_gets_nothing_from_the_cli() {
    const VICTIM: u32 = 65533;
    let sq = Squatter::start(&tmp_socket_of(VICTIM));
    let mut cmd = Command::new(bin("vigil"));
    as_victim(&mut cmd, VICTIM).args(["run", "db", "-e", "DB_PASSWORD=hunter2", "--", "/bin/true"]);
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "the client trusted the squatter: {err}");
    assert!(
        err.contains("refusing to talk to /tmp/vigil-65533/vigild.sock")
            && err.contains("owned by uid 65534")
            && err.contains("expected a directory owned by root or uid 65533"),
        "{err}"
    );
    // Refused before it connected: the squatter saw no connection at all.
    let conns = sq.connections();
    assert!(
        conns.iter().all(|c| !c.contains(&hex("hunter2"))),
        "the password leaked: {conns:?}"
    );
    assert_eq!(conns, Vec::<String>::new(), "the squatter was talked to");
}

#[test]
fn a_named_socket_served_by_another_user_gets_no_byte() {
    const VICTIM: u32 = 65531;
    // Named explicitly, in a directory of the squatter's choosing: the server's credentials decide.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = dir.path().join("sub/vigild.sock");
    let sq = Squatter::start(&sock);
    for tool in ["vigil", "pmfadm"] {
        let mut cmd = Command::new(bin(tool));
        as_victim(&mut cmd, VICTIM).env("VIGIL_SOCKET", &sock);
        if tool == "vigil" {
            cmd.args(["run", "db", "-e", "DB_PASSWORD=hunter2", "--", "/bin/true"]);
        } else {
            cmd.args(["-c", "db", "/bin/true"]).env("DB_PASSWORD", "hunter2");
        }
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{tool} trusted the squatter: {err}");
        assert!(
            err.contains(&format!("refusing to talk to {}", sock.display()))
                && err.contains("runs as uid 65534")
                && err.contains("expected a server running as root or uid 65531"),
            "{tool}: {err}"
        );
    }
    // Two connections (the kernel completes a connect before anyone can ask who listens), no byte.
    assert_eq!(sq.connections(), ["", ""]);
}

#[test]
fn libcmap_refuses_a_squatted_socket_with_cs_err_access() {
    const VICTIM: u32 = 65532;
    let sq = Squatter::start(&tmp_socket_of(VICTIM));
    let exe = c_program("cmap_test.c", false, &["cmap", "pthread"]);
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(VICTIM), Some(VICTIM)).unwrap();
    let out = dir.path().join("out");
    let mut cmd = Command::new(&exe);
    as_victim(&mut cmd, VICTIM)
        .arg(&out)
        .arg("nodaemon")
        .env("LD_LIBRARY_PATH", c_lib_dir());
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // CS_ERR_ACCESS (11): not CS_OK with a forged server behind the handle.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "initialize 11\n");
    assert_eq!(sq.connections(), Vec::<String>::new());
}

/// A real vigild still answers a client that finds it by convention: its directory is root's.
#[test]
fn the_real_vigild_is_trusted() {
    const USER: u32 = 65530;
    let v = Vigild::start();
    let runtime = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(runtime.path(), Some(USER), Some(USER)).unwrap();
    std::os::unix::fs::symlink(v.dir.path(), runtime.path().join("vigil")).unwrap();
    let mut cmd = Command::new(bin("vigil"));
    as_victim(&mut cmd, USER)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .args(["run", "mine", "--", "sleep", "60"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v.status("mine").uid, USER);
}

/// What `nobody` puts into `STATUS=`, a PSM state and a member's argv: a terminal would clear the screen
/// and retitle the window.
const EVIL: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[31mOK\nfake line";

const NOTIFY_STATUS: &str = r#"
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(("READY=1\nSTATUS=" + bytes.fromhex(sys.argv[1]).decode()).encode(), addr)
time.sleep(3600)
"#;

fn no_raw_control(what: &str, o: &std::process::Output) -> String {
    assert!(o.status.success(), "{what}: {}", stderr(o));
    let text = stdout(o);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{what}: raw control characters on root's terminal: {text:?}"
    );
    text
}

#[test]
fn human_output_escapes_what_other_users_wrote_and_json_stays_exact() {
    let v = Vigild::start();
    let script = v.path("notify.py");
    std::fs::write(&script, NOTIFY_STATUS).unwrap();
    let evil_hex = hex(EVIL.split('\n').next().unwrap());
    let out = v.cli_as(
        Some(NOBODY),
        &["run", "esc", "--", "python3", script.to_str().unwrap(), &evil_hex],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the STATUS= text", || {
        v.status("esc").status_text.filter(|s| !s.is_empty())
    });

    // A PSM member of nobody's with a hostile argv[0] and state.
    let ok = v.cli(&["psm", "category", "add", "esccat"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let mut member = Command::new("/bin/sleep");
    member.arg0(EVIL).arg("60").uid(NOBODY).gid(NOBODY).current_dir("/");
    let mut member = member.spawn().unwrap();
    let pid = member.id().to_string();
    wait_argv(member.id() as i32);
    let add = v.cli_as(Some(NOBODY), &["psm", "add", "esccat", &pid]);
    assert!(add.status.success(), "{}", stderr(&add));
    let set = v.cli_as(Some(NOBODY), &["psm", "state", "esccat", &pid, EVIL]);
    assert!(set.status.success(), "{}", stderr(&set));

    let status = no_raw_control("status", &v.cli(&["status", "esc"]));
    assert!(
        status.contains("status:    \\e]0;owned\\x07\\e[2J\\e[31mOK"),
        "{status}"
    );
    let psm = no_raw_control("psm get", &v.cli(&["psm", "get", "esccat"]));
    assert!(psm.contains("\\e[31mOK\\nfake line"), "{psm}");
    no_raw_control("events", &v.cli(&["events"]));

    // JSON is for programs: exact.
    let json: serde_json::Value = serde_json::from_slice(&v.cli(&["--json", "status", "esc"]).stdout).unwrap();
    assert_eq!(json[0]["status_text"], EVIL.split('\n').next().unwrap(), "{json}");
    let json: serde_json::Value = serde_json::from_slice(&v.cli(&["--json", "psm", "get", "esccat"]).stdout).unwrap();
    assert_eq!(json[0]["state"], EVIL, "{json}");
    let _ = member.kill();
    let _ = member.wait();
}

#[test]
fn environment_values_are_shown_to_the_owner_and_root_only() {
    let v = Vigild::start();
    let out = v.cli(&["run", "rootdb", "-e", "DB_PASSWORD=r00tsecret", "--", "sleep", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = v.cli_as(
        Some(NOBODY),
        &["run", "nobodydb", "-e", "API_TOKEN=n0bodysecret", "--", "sleep", "60"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let env_of = |uid: Option<u32>, tag: &str| -> serde_json::Value {
        let o = v.cli_as(uid, &["--json", "status", tag]);
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j[0]["env"].clone()
    };
    let pair = |k: &str, val: &str| serde_json::json!({ k: val });
    // Root and the owner see the values; others the names only.
    assert_eq!(env_of(None, "rootdb"), pair("DB_PASSWORD", "r00tsecret"));
    assert_eq!(env_of(Some(NOBODY), "rootdb"), pair("DB_PASSWORD", "<hidden>"));
    assert_eq!(env_of(Some(NOBODY), "nobodydb"), pair("API_TOKEN", "n0bodysecret"));
    assert_eq!(env_of(None, "nobodydb"), pair("API_TOKEN", "n0bodysecret"));
    assert_eq!(env_of(Some(65533), "nobodydb"), pair("API_TOKEN", "<hidden>"));
    // Every other way a status leaves vigild: all tags at once (a list carries no environment at
    // all), human output, pmfadm -l, wait.
    for o in [
        v.cli_as(Some(NOBODY), &["status"]),
        v.cli_as(Some(NOBODY), &["--json", "status"]),
    ] {
        let text = stdout(&o);
        assert!(
            o.status.success() && text.contains("rootdb") && !text.contains("r00tsecret"),
            "{text}"
        );
    }
    let mut pmfadm = Command::new(bin("pmfadm"));
    pmfadm
        .env("VIGIL_SOCKET", v.socket())
        .args(["-l", "rootdb"])
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/");
    let o = pmfadm.output().unwrap();
    let text = stdout(&o);
    assert!(
        text.contains("DB_PASSWORD=<hidden>") && !text.contains("r00tsecret"),
        "{text}{}",
        stderr(&o)
    );
    let stop = v.cli(&["stop", "rootdb"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let o = v.cli_as(Some(NOBODY), &["--json", "wait", "rootdb", "--timeout", "10"]);
    let text = stdout(&o);
    assert!(
        text.contains("DB_PASSWORD") && !text.contains("r00tsecret"),
        "{text}{}",
        stderr(&o)
    );
}

/// `nobody`'s refusals for `path` (a program, or with `cwd` a working directory), with the path and
/// the tag's name taken out: what is left must not depend on whether the path exists.
fn refusal_as_nobody(v: &Vigild, tag: &str, args: &[&str], path: &str) -> String {
    let mut all = vec!["run", tag];
    all.extend_from_slice(args);
    let out = v.cli_as(Some(NOBODY), &all);
    assert!(!out.status.success(), "{tag} started");
    stderr(&out)
        .replace(&format!("{path:?}"), "\"PATH\"")
        .replace(&format!("tag {tag}"), "tag TAG")
}

#[test]
fn nobody_cannot_learn_which_files_exist_where_only_root_may_look() {
    let v = Vigild::start();
    // A root-only directory with an executable and a directory in it.
    let secret = v.path("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    write_script(&secret.join("prog"), "exit 0");
    std::fs::create_dir(secret.join("dir")).unwrap();
    let s = secret.display().to_string();
    let (prog, missing) = (format!("{s}/prog"), format!("{s}/missing"));

    // A program by path.
    let exists = refusal_as_nobody(&v, "o1", &["--", &prog], &prog);
    let absent = refusal_as_nobody(&v, "o2", &["--", &missing], &missing);
    assert_eq!(exists, absent);
    assert!(
        exists.contains("\"PATH\" not found or not accessible as uid 65534"),
        "{exists}"
    );
    // A program found through PATH.
    let path_env = format!("PATH={s}");
    let exists = refusal_as_nobody(&v, "o3", &["-e", &path_env, "--", "prog"], "prog");
    let absent = refusal_as_nobody(&v, "o4", &["-e", &path_env, "--", "missing"], "missing");
    assert_eq!(exists, absent);
    assert!(exists.contains("not found or not accessible as uid 65534"), "{exists}");
    // An action program.
    let exists = refusal_as_nobody(&v, "o5", &["-a", &prog, "--", "true"], &prog);
    let absent = refusal_as_nobody(&v, "o6", &["-a", &missing, "--", "true"], &missing);
    assert_eq!(exists, absent);
    // A working directory.
    let (dir, nodir) = (format!("{s}/dir"), format!("{s}/nodir"));
    let exists = refusal_as_nobody(&v, "o7", &["--cwd", &dir, "--", "true"], &dir);
    let absent = refusal_as_nobody(&v, "o8", &["--cwd", &nodir, "--", "true"], &nodir);
    assert_eq!(exists, absent);
    assert!(exists.contains("working directory"), "{exists}");

    // What nobody may reach is found as before, through PATH too, and root's tags are unchanged.
    let ok = v.cli_as(Some(NOBODY), &["run", "fine", "--", "sleep", "60"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    v.wait_state("fine", "running");
    let ok = v.cli(&["run", "rootprog", "--", &prog]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // vigild answered each refusal and stays up.
    assert!(v.client().list().unwrap().iter().all(|t| !t.name.starts_with('o')));
}

/// vigild's own side of the squatted socket: a directory that another user made (or that others may
/// write) is refused at start, before vigild binds a socket someone else could swap for their own.
#[test]
fn vigild_refuses_a_socket_dir_another_user_controls() {
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // vigild must refuse at once; one that starts anyway is ended at the deadline and the test fails.
    let start = |dir: &Path| {
        let log = top.path().join("vigild.err");
        let mut child = Command::new(bin("vigild"))
            .arg("--state-dir")
            .arg(top.path().join("state"))
            .arg("--socket")
            .arg(dir.join("vigild.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let st = wait_deadline(&mut child, "vigild on a socket dir it must refuse");
        (st.success(), std::fs::read_to_string(&log).unwrap())
    };
    // Made by nobody, as a squatter would make /tmp/vigil-UID before its owner's vigild starts.
    let squatted = top.path().join("squatted");
    std::fs::create_dir(&squatted).unwrap();
    std::os::unix::fs::chown(&squatted, Some(NOBODY), Some(NOBODY)).unwrap();
    let (ok, err) = start(&squatted);
    assert!(!ok && err.contains("belongs to uid 65534"), "{err}");
    // Root's, but writable by everyone without the sticky bit.
    let open = top.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, err) = start(&open);
    assert!(!ok && err.contains("has mode 0777"), "{err}");
    assert!(!squatted.join("vigild.sock").exists() && !open.join("vigild.sock").exists());
}

/// A FUSE mount whose server never answers (not even the kernel's first request), as any user can make
/// one with fusermount: every lookup below it blocks until the mount goes away. Made by root here, for
/// `nobody` (user_id), with the kernel's own mount options so that no FUSE package is needed.
struct StuckMount {
    server: Child,
    dir: PathBuf,
}

impl StuckMount {
    fn new(dir: &Path) -> StuckMount {
        std::fs::create_dir_all(dir).unwrap();
        let mut server = Command::new("sh")
            .arg("-c")
            .arg(
                "exec 3<>/dev/fuse && mount -i -t fuse -o \
                 fd=3,rootmode=40000,user_id=65534,group_id=65534,allow_other vigil-stuck \"$1\" && \
                 echo ready && exec sleep 600",
            )
            .arg("sh")
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line, "ready\n", "cannot make a FUSE mount at {}", dir.display());
        StuckMount {
            server,
            dir: dir.to_owned(),
        }
    }
}

impl Drop for StuckMount {
    fn drop(&mut self) {
        // Closing the last /dev/fuse descriptor aborts the connection: every lookup waiting in it fails.
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Processes of `uid` whose parent is `ppid`.
fn children_of(ppid: u32, uid: u32) -> Vec<u32> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        };
        if field("PPid:") == Some(ppid.to_string()) && field("Uid:") == Some(uid.to_string()) {
            found.push(pid);
        }
    }
    found
}

/// `vigil run` by nobody, in the background.
fn run_as_nobody(v: &Vigild, args: &[&str]) -> Child {
    Command::new(bin("vigil"))
        .arg("--socket")
        .arg(v.socket())
        .arg("run")
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lookups of another user's programs are that user's: one that blocks forever must not stop
/// vigild answering everyone else, and the `Run` itself is refused after a while.
#[test]
fn a_lookup_that_never_ends_does_not_stop_vigild() {
    let v = Vigild::start();
    let mnt = v.path("mnt");
    let _mount = StuckMount::new(&mnt);
    let m = mnt.display().to_string();
    let cases: [(&str, Vec<String>); 2] = [
        (
            "cwd",
            vec!["--cwd".into(), format!("{m}/sub"), "--".into(), "true".into()],
        ),
        (
            "path",
            vec![
                "-e".into(),
                format!("PATH={m}/bin:/usr/bin:/bin"),
                "--".into(),
                "true".into(),
            ],
        ),
    ];
    for (tag, args) in cases {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.insert(0, tag);
        let run = run_as_nobody(&v, &args);
        // The check's child, as nobody, is stuck in the mount: the request has reached vigild.
        wait_for("the lookup as nobody to start", || {
            (!children_of(v.pid(), NOBODY).is_empty()).then_some(())
        });
        // Root, on another connection, still gets answers.
        let mut status = Command::new(bin("vigil"))
            .arg("--socket")
            .arg(v.socket())
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let answered = wait_for_within(
            &format!("vigild to answer root while a {tag} lookup blocks"),
            std::time::Duration::from_secs(3),
            || status.try_wait().unwrap(),
        );
        assert!(answered.success());
        // nobody gets a refusal that says why, and no tag.
        let out = run.wait_with_output().unwrap();
        assert!(!out.status.success(), "{tag} started");
        assert!(
            stderr(&out).contains("program lookup timed out as uid 65534"),
            "{}",
            stderr(&out)
        );
        assert!(!v.client().list().unwrap().iter().any(|t| t.name == tag));
    }
    // A PATH too long to search is refused at once, and vigild stays up.
    let long = vec!["/nonexistent"; 300].join(":");
    let out = v.cli_as(
        Some(NOBODY),
        &["run", "long", "-e", &format!("PATH={long}"), "--", "true"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("PATH has 300 entries; at most 256 are searched"),
        "{}",
        stderr(&out)
    );
    let ok = v.cli_as(Some(NOBODY), &["run", "fine", "--", "sleep", "60"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}
