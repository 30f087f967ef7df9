//! The state store under attack: a full state disk (changes refused, not done in memory; recovery once
//! space is back, without a restart), per-uid quotas on what users keep in vigild, and the modes of the
//! state dir and file. The attacks run as `nobody`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vigil_client::proto::{CmapValue, ErrorCode, Request, Response, SamChange};
use vigil_client::Client;

use crate::harness::*;

const NOBODY: u32 = 65534;

/// A tmpfs mounted on a directory for the life of the test; unmounted (lazily: the tags may still hold
/// their logs open) and removed with its parent when dropped.
pub(crate) struct Tmpfs {
    pub(crate) mount: PathBuf,
    parent: PathBuf,
}

impl Tmpfs {
    pub(crate) fn mount(mount: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir(mount).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(mount)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs on {}", mount.display());
        Tmpfs {
            mount: mount.into(),
            parent: mount.parent().unwrap().into(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}

/// Writes zeros into `path` until the file system is full.
pub(crate) fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "filling {}: {e}", path.display());
            break;
        }
    }
    // The last partial chunk may have left a few bytes; a second pass takes them.
    let _ = f.write_all(&[0u8; 4096]);
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

const UNSTORABLE: &str = "the state store cannot be written";

#[test]
fn a_full_state_disk_refuses_changes_then_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = dir.keep();
    let tmpfs = Tmpfs::mount(&dir.join("state"), "8m");
    let mut v = Vigild {
        dir: tempfile::TempDir::new_in(&dir).unwrap(),
        child: None,
        uid: None,
        scan: false,
        args: vec![],
    };
    // The harness keeps its state in `<dir>/state`: point that at the tmpfs.
    std::os::unix::fs::symlink(&tmpfs.mount, v.path("state")).unwrap();
    v.spawn();
    let before = v.run(sh("before", "exec sleep 1000"));
    assert_eq!(before.state, "running");

    let filler = tmpfs.mount.join("filler");
    fill(&filler);

    // The first change that needs the disk finds it full: it was made in memory before its commit
    // failed, and the answer says so. Values large enough that the file must grow.
    let mut c = v.client();
    let mut stored = Vec::new();
    let first = wait_for("a change the full disk cannot take", || {
        let key = format!("sec.big{}", stored.len());
        match c.cmap_set(&key, CmapValue::Binary(vec![7; 900 << 10]), true) {
            Ok(()) => {
                stored.push(key);
                assert!(stored.len() < 50, "the full disk took {} MiB", stored.len());
                None
            }
            Err(e) => Some((key, e)),
        }
    });
    let (kept_key, e) = first;
    assert_eq!(e.code(), Some(ErrorCode::Internal), "{e}");
    assert!(e.to_string().contains("done, but not stored"), "{e}");

    // From now on a change is refused before it is made: no tag, no process.
    let out = v.cli(&["run", "full", "--", "sleep", "4242421"]);
    assert!(!out.status.success(), "run on a full disk: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(UNSTORABLE) && err.contains("the change was not made"),
        "{err}"
    );
    let e = v.client().run(sh("full2", "exec sleep 4242422")).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Internal), "{e}");
    assert!(e.to_string().contains(UNSTORABLE), "{e}");
    let e = v.client().stop("before", None, None).unwrap_err();
    assert!(e.to_string().contains(UNSTORABLE), "{e}");
    // Queries still answer: the marker that the refusals above were seen through.
    let names: Vec<String> = v.client().list().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["before"], "a refused change happened in memory");
    assert!(
        !sleep_runs("4242421") && !sleep_runs("4242422"),
        "a refused run started a process"
    );
    assert_eq!(v.status("before").state, "running");

    // Space comes back: the same vigild takes changes again, and stores the one it kept in memory.
    std::fs::remove_file(&filler).unwrap();
    let after = wait_for("a change once space is back", || {
        match v.client().run(sh("after", "exec sleep 1000")) {
            Ok(st) => Some(st),
            Err(e) if e.to_string().contains(UNSTORABLE) => None,
            Err(e) => panic!("run after space came back: {e}"),
        }
    });
    assert_eq!(after.state, "running");
    v.client().cmap_set("sec.after", CmapValue::U32(1), true).unwrap();

    // Everything acknowledged, and the change kept in memory, survive a kill -9.
    v.kill9();
    v.spawn();
    let names: Vec<String> = v.client().list().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["after", "before"]);
    assert_eq!(
        v.status("before").main_pid,
        before.main_pid,
        "re-adopted, not restarted"
    );
    assert_eq!(v.status("after").main_pid, after.main_pid, "re-adopted, not restarted");
    let mut c = v.client();
    assert_eq!(c.cmap_get("sec.after").unwrap(), CmapValue::U32(1));
    assert!(c.cmap_get(&kept_key).is_ok(), "the change kept in memory was lost");
    for k in &stored {
        assert!(c.cmap_get(k).is_ok(), "{k} was acknowledged but is gone");
    }
    drop(c);
    drop(v);
    drop(tmpfs);
}

/// Whether some process runs `sleep SECONDS` (a number no other test uses).
fn sleep_runs(seconds: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == format!("sleep\0{seconds}\0").as_bytes()))
}

/// Runs this test binary as `nobody` to send one raw SAM data report (the supervisor's side of
/// `sam_data_store`); the answer, as the helper wrote it to a file of its own. With `hold`, the helper
/// keeps its connection (and so its record) until its stdin closes.
fn sam_store_as_nobody(v: &Vigild, bytes: usize, hold: bool) -> (std::process::Child, String) {
    let out = v.path(&format!("sam-result-{}", crate::sam::unique()));
    std::fs::write(&out, b"").unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["sec_store::sam_report_helper", "--exact", "--test-threads=1"])
        .env("SEC_STORE_SOCKET", v.socket())
        .env("SEC_STORE_BYTES", bytes.to_string())
        .env("SEC_STORE_HOLD", if hold { "1" } else { "0" })
        .env("SEC_STORE_OUT", &out)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let result = wait_for("the helper's answer", || {
        let s = std::fs::read_to_string(&out).unwrap();
        s.strip_suffix('\n').map(str::to_string)
    });
    (child, result)
}

/// Not a test on its own: the body of `sam_store_as_nobody`'s process (does nothing without its
/// environment).
#[test]
fn sam_report_helper() {
    let Some(socket) = std::env::var_os("SEC_STORE_SOCKET") else {
        return;
    };
    let bytes: usize = std::env::var("SEC_STORE_BYTES").unwrap().parse().unwrap();
    let out = std::env::var_os("SEC_STORE_OUT").unwrap();
    let mut c = Client::connect(Path::new(&socket)).unwrap();
    let info = quit_app_info();
    let r = c.request(Request::SamReport {
        change: SamChange::Data(Some(vec![5; bytes])),
        info,
    });
    let line = match r {
        Ok(Response::Ok) => "ok".to_string(),
        Ok(other) => format!("unexpected {other:?}"),
        Err(e) => format!("{:?} {e}", e.code()),
    };
    std::fs::write(out, format!("{line}\n")).unwrap();
    if std::env::var("SEC_STORE_HOLD").as_deref() == Ok("1") {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    }
}

#[test]
fn sam_data_beyond_a_uids_quota_is_refused() {
    let v = Vigild::start_with(Some("[daemon]\nsam_data_per_uid = 1048576\n"));
    // nobody's first application keeps 600 KiB: within the quota.
    let (mut holder, r) = sam_store_as_nobody(&v, 600 << 10, true);
    assert_eq!(r, "ok");
    // Its second would bring it to 1.2 MiB: refused, with the limit named, and nothing stored.
    let (mut second, r) = sam_store_as_nobody(&v, 600 << 10, false);
    assert!(
        r.starts_with("Some(LimitExceeded)") && r.contains("daemon.sam_data_per_uid = 1048576"),
        "{r}"
    );
    second.wait().unwrap();
    let procs = v.client().sam_list().unwrap();
    let held: u64 = procs.iter().map(|p| p.data_size).sum();
    assert_eq!(held, 600 << 10, "{procs:#?}");
    // Root has no quota.
    let mut c = v.client();
    let info = quit_app_info();
    let r = c.request(Request::SamReport {
        change: SamChange::Data(Some(vec![1; 2 << 20])),
        info,
    });
    assert!(matches!(r, Ok(Response::Ok)), "{r:?}");
    drop(holder.stdin.take());
    holder.wait().unwrap();
}

#[test]
fn tags_beyond_a_uids_quota_are_refused() {
    let v = Vigild::start_with(Some("[daemon]\ntags_per_uid = 2\n"));
    for t in ["q1", "q2"] {
        let out = v.cli_as(Some(NOBODY), &["run", t, "--", "sleep", "1000"]);
        assert!(out.status.success(), "{out:?}");
    }
    let out = v.cli_as(Some(NOBODY), &["run", "q3", "--", "sleep", "1000"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("daemon.tags_per_uid = 2"), "{err}");
    let names: Vec<String> = v.client().list().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["q1", "q2"]);
    // Root is not bound by it.
    let out = v.cli(&["run", "q4", "--", "sleep", "1000"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn the_state_dir_and_file_are_private_also_on_an_existing_install() {
    let mut v = Vigild::start();
    let state = v.path("state");
    let file = state.join("state.redb");
    let secret = "hunter2-in-the-environment";
    let mut spec = sh("secret", "exec sleep 1000");
    spec.env.push(("DB_PASSWORD".into(), secret.into()));
    v.run(spec);
    let nobody_reads = |p: &Path| Command::new("cat").arg(p).uid(NOBODY).gid(NOBODY).output().unwrap();
    let check = |v: &Vigild| {
        assert_eq!(mode(&state), 0o711, "state dir");
        assert_eq!(mode(&file), 0o600, "state file");
        let out = nobody_reads(&file);
        assert!(!out.status.success(), "nobody read the state file");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
        let ls = Command::new("ls").arg(&state).uid(NOBODY).gid(NOBODY).output().unwrap();
        assert!(!ls.status.success(), "nobody listed the state dir");
        // What others need in it still works: nobody reaches its own tag's log by path.
        let out = v.cli_as(
            Some(NOBODY),
            &["run", "mine", "--", "sh", "-c", "echo from-nobody; exec sleep 1000"],
        );
        assert!(out.status.success(), "{out:?}");
        wait_for("nobody's log through vigil logs", || {
            let out = v.cli_as(Some(NOBODY), &["logs", "mine"]);
            String::from_utf8_lossy(&out.stdout)
                .contains("from-nobody")
                .then_some(())
        });
        let out = v.cli_as(Some(NOBODY), &["rm", "mine"]);
        assert!(out.status.success(), "{out:?}");
    };
    check(&v);
    // An install from before: a world-readable dir and file are made private at the next start.
    v.kill9();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        nobody_reads(&file).status.success(),
        "the setup must be readable before the start"
    );
    // nobody opens the world-readable file now and keeps the descriptor over the upgrade.
    let mut keeper = Command::new("python3")
        .args([
            "-c",
            "import sys; f = open(sys.argv[1], 'rb'); print('open', flush=True); sys.stdin.readline(); \
             sys.stdout.write(str(f.read().count(sys.argv[2].encode())))",
        ])
        .arg(&file)
        .arg("after-the-upgrade-secret")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(keeper.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "open");
    v.spawn();
    check(&v);
    // A secret stored after the upgrade is not in the file nobody still holds open: the state moved to a
    // new inode rather than having its mode changed.
    let mut spec = sh("later", "exec sleep 1000");
    spec.env.push(("TOKEN".into(), "after-the-upgrade-secret".into()));
    v.run(spec);
    drop(keeper.stdin.take());
    let out = keeper.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0",
        "nobody's old descriptor read the new secret"
    );
}

/// Processes started for a test, killed with it.
struct Kids(Vec<std::process::Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn psm_members_beyond_a_uids_quota_are_refused() {
    let v = Vigild::start_with(Some("[daemon]\npsm_members_per_uid = 2\n"));
    let out = v.cli(&["psm", "category", "add", "quota"]);
    assert!(out.status.success(), "{out:?}");
    let kids = Kids(
        (0..3)
            .map(|_| {
                Command::new("sleep")
                    .arg("4242431")
                    .uid(NOBODY)
                    .gid(NOBODY)
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let pids: Vec<String> = kids.0.iter().map(|c| c.id().to_string()).collect();
    for p in &pids {
        wait_argv(p.parse().unwrap());
    }
    for p in &pids[..2] {
        let out = v.cli_as(Some(NOBODY), &["psm", "add", "quota", p]);
        assert!(out.status.success(), "{out:?}");
    }
    let out = v.cli_as(Some(NOBODY), &["psm", "add", "quota", &pids[2]]);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("daemon.psm_members_per_uid = 2"), "{err}");
    let members = v
        .client()
        .psm_get(&vigil_client::proto::PsmNode::local(), Some("quota"), None)
        .unwrap();
    assert_eq!(members.len(), 2, "{members:#?}");
    // Root is not bound by it.
    let out = v.cli(&["psm", "add", "quota", &pids[2]]);
    assert!(out.status.success(), "{out:?}");
}
