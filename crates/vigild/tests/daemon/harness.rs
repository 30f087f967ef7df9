//! A real vigild in a temporary directory, and ways to talk to it: the Rust client, the CLI, raw bytes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vigil_client::proto::{ErrorCode, Event, PsmNode, RunSpec, TagStatus};
use vigil_client::Client;

pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `f` until it yields a value, failing the test with `what` at the deadline.
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for_within(what, DEADLINE, f)
}

/// [`wait_for`] with a deadline of its own, for a condition that takes work in proportion to the
/// machine's load (thousands of restarts, say) while the other tests share its two cores.
pub fn wait_for_within<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registers a process as a PSM member of this node, retrying while it is still inside exec (Busy is
/// retryable, as the page says): a process just spawned may not have its new argv in place yet.
pub fn psm_add(c: &mut Client, cat: &str, pid: i32) -> Result<(), vigil_client::ClientError> {
    wait_for("the process to finish its exec", || {
        match c.psm_add(&PsmNode::local(), cat, pid) {
            Err(e) if e.code() == Some(ErrorCode::Busy) => None,
            other => Some(other),
        }
    })
}

/// Waits until a just-spawned process shows its argv: a C program registering it (whose library answers
/// EAGAIN while it is inside exec) then gets the answer the test expects.
pub fn wait_argv(pid: i32) {
    wait_for("the process to finish its exec", || {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (!argv.is_empty()).then_some(())
    })
}

/// Runs `vigil ARGS` for a PSM add, again while the process is still inside exec.
pub fn cli_psm_add(v: &Vigild, args: &[&str]) -> Output {
    wait_for("the process to finish its exec", || {
        let out = v.cli(args);
        (!String::from_utf8_lossy(&out.stderr).contains("inside exec")).then_some(out)
    })
}

pub fn bin(name: &str) -> PathBuf {
    let vigild = PathBuf::from(env!("CARGO_BIN_EXE_vigild"));
    if name == "vigild" {
        return vigild;
    }
    let p = vigild.with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test does)",
        p.display()
    );
    p
}

pub struct Vigild {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub uid: Option<u32>,
    /// Track descendants with /proc scans instead of the process connector.
    pub scan: bool,
    /// More arguments for vigild (cluster mode's, for one).
    pub args: Vec<String>,
}

impl Vigild {
    pub fn start() -> Vigild {
        Self::start_with(None)
    }

    pub fn start_with(config: Option<&str>) -> Vigild {
        Self::start_as(config, None)
    }

    /// Starts vigild (as root) with /proc scans instead of the process connector.
    pub fn start_scan() -> Vigild {
        Self::launch(None, None, true, &[])
    }

    /// Starts vigild as another user, with the /proc scan instead of the process connector.
    pub fn start_as(config: Option<&str>, uid: Option<u32>) -> Vigild {
        Self::launch(config, uid, uid.is_some(), &[])
    }

    /// Starts vigild (as root) with more arguments, e.g. `--cluster URL --node NAME`.
    pub fn start_args(args: &[String]) -> Vigild {
        Self::launch(None, None, false, args)
    }

    fn launch(config: Option<&str>, uid: Option<u32>, scan: bool, args: &[String]) -> Vigild {
        let dir = tempfile::tempdir().expect("tempdir");
        // Other users connect in some tests: the socket's directory must be reachable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(c) = config {
            std::fs::write(dir.path().join("vigil.toml"), c).unwrap();
        }
        if let Some(uid) = uid {
            std::fs::create_dir(dir.path().join("state")).unwrap();
            std::os::unix::fs::chown(dir.path().join("state"), Some(uid), Some(uid)).unwrap();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
        }
        let mut v = Vigild {
            dir,
            child: None,
            uid,
            scan,
            args: args.to_vec(),
        };
        v.spawn();
        v
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("vigild.sock")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts vigild on this directory (again) and waits until it answers.
    pub fn spawn(&mut self) {
        let mut cmd = Command::new(bin("vigild"));
        cmd.arg("--state-dir")
            .arg(self.path("state"))
            .arg("--socket")
            .arg(self.socket());
        cmd.arg("--log-level").arg("debug");
        if self.path("vigil.toml").exists() {
            cmd.arg("--config").arg(self.path("vigil.toml"));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("vigild.log"))
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        if self.scan {
            cmd.arg("--tracking").arg("scan");
        }
        cmd.args(&self.args);
        if let Some(uid) = self.uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid).current_dir("/").env("HOME", "/nonexistent");
        }
        self.child = Some(cmd.spawn().expect("start vigild"));
        let end = Instant::now() + DEADLINE;
        while self.connect().is_err() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if Instant::now() >= end || exited.is_some() {
                // What vigild said is what explains it: its log's end, in the failure.
                let log = std::fs::read_to_string(self.path("vigild.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("timed out waiting for vigild to answer ({exited:?}); the end of its log:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A connection, retried until the deadline (vigild may be re-executing).
    pub fn client(&self) -> Client {
        wait_for("a connection to vigild", || self.connect().ok())
    }

    /// One connection attempt; the test (root) trusts the user a per-user vigild runs as.
    pub fn connect(&self) -> Result<Client, vigil_client::ClientError> {
        Client::connect_trusting(&self.socket(), self.uid)
    }

    /// Runs the CLI against this vigild, optionally as another user.
    pub fn cli_as(&self, uid: Option<u32>, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("vigil"));
        cmd.arg("--socket").arg(self.socket()).args(args);
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid).current_dir("/");
        }
        cmd.output().expect("run vigil")
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(None, args)
    }

    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "vigild did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn run(&self, spec: RunSpec) -> TagStatus {
        self.client().run(spec).expect("run")
    }

    pub fn status(&self, tag: &str) -> TagStatus {
        self.client().status(tag).expect("status")
    }

    pub fn events(&self) -> Vec<Event> {
        wait_for("the event list", || self.client().events(0, 10_000).ok())
    }

    pub fn tag_events(&self, tag: &str) -> Vec<Event> {
        self.events().into_iter().filter(|e| e.subject == tag).collect()
    }

    /// Waits until the tag is running with a main pid different from `not`.
    pub fn running_pid(&self, tag: &str, not: Option<i32>) -> i32 {
        wait_for(&format!("{tag} running with a new pid"), || {
            let st = self.status(tag);
            st.main_pid.filter(|p| st.state == "running" && Some(*p) != not)
        })
    }

    pub fn wait_state(&self, tag: &str, state: &str) -> TagStatus {
        wait_for(&format!("{tag} to be {state}"), || {
            Some(self.status(tag)).filter(|s| s.state == state)
        })
    }
}

impl Drop for Vigild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Stop every tag so that no process outlives the test.
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn sh(tag: &str, script: &str) -> RunSpec {
    RunSpec::new(tag, vec!["sh".into(), "-c".into(), script.into()])
}

pub fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; it is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub fn kill(pid: i32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The repository's root (for `include/` and the C sources of the tests).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// vigil's C libraries under their sonames and link names (`libsam.so.4`, `libsam.so`, ...), in one
/// directory for `gcc -L` and `LD_LIBRARY_PATH`. Cargo builds them as `libNAME.so` beside the binaries.
pub fn c_lib_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let target = bin("vigild").parent().expect("target dir").to_path_buf();
        let dir = target.join("c-libs");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, soname) in [
            ("libsam.so", "libsam.so.4"),
            ("libcmap.so", "libcmap.so.4"),
            ("libcfg.so", "libcfg.so.1"),
            ("libdsdev.so", "libdsdev.so.1"),
            ("libcorosync_common.so", "libcorosync_common.so.4"),
        ] {
            let built = target.join(name);
            if !built.exists() {
                // gcc says "cannot find -lNAME" if a test needs it.
                eprintln!(
                    "{} is missing: build the workspace first (`cargo build --workspace`, as scripts/test does)",
                    built.display()
                );
                continue;
            }
            for link in [name, soname] {
                let l = dir.join(link);
                let _ = std::fs::remove_file(&l);
                std::os::unix::fs::symlink(&built, &l).unwrap();
            }
        }
        dir
    })
    .clone()
}

/// Where the C programs of the tests live.
pub fn c_src(name: &str) -> PathBuf {
    repo_root().join("tests/c").join(name)
}

/// Compiles C sources with gcc (warnings are errors) into `out`; `headers` chooses vigil's own headers
/// (`include/`) or, with None, the system's (Debian's corosync headers).
pub fn compile_c(sources: &[PathBuf], out: &Path, vigil_headers: bool, libs: &[&str]) {
    let mut cmd = Command::new("gcc");
    cmd.args(["-Wall", "-Wextra", "-Werror", "-O1", "-g", "-o"]).arg(out);
    if vigil_headers {
        cmd.arg("-I").arg(repo_root().join("include"));
    }
    cmd.args(sources);
    cmd.arg("-L").arg(c_lib_dir());
    for l in libs {
        cmd.arg(format!("-l{l}"));
    }
    let o = cmd.output().expect("run gcc");
    assert!(o.status.success(), "gcc failed: {}", String::from_utf8_lossy(&o.stderr));
}

impl Vigild {
    /// Runs `pmfadm` against this vigild (found through `VIGIL_SOCKET`, as pmfadm has no socket flag),
    /// from `dir` with `env` added to the test's environment.
    pub fn pmfadm_in(&self, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("pmfadm"));
        cmd.env("VIGIL_SOCKET", self.socket()).current_dir(dir).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run pmfadm")
    }

    pub fn pmfadm(&self, args: &[&str]) -> Output {
        self.pmfadm_in(self.dir.path(), &[], args)
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `(version, name)` of every symbol a library defines, from `objdump -T`.
pub fn exports(lib: &Path) -> Vec<(String, String)> {
    let o = Command::new("objdump")
        .arg("-T")
        .arg(lib)
        .output()
        .expect("run objdump");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut syms: Vec<(String, String)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip_while(|l| !l.starts_with("DYNAMIC SYMBOL TABLE"))
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.contains("*UND*"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[f.len() - 2].to_string(), f[f.len() - 1].to_string())
        })
        .collect();
    syms.sort();
    syms
}

/// A C test program from `tests/c/<src>`, compiled once per header set (vigil's `include/` or the
/// system's) and linked with `libs`.
pub fn c_program(src: &str, vigil_headers: bool, libs: &[&str]) -> PathBuf {
    type Built = Vec<(String, bool, PathBuf)>;
    static BUILT: std::sync::Mutex<Built> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if let Some((_, _, p)) = built.iter().find(|(s, h, _)| s == src && *h == vigil_headers) {
        return p.clone();
    }
    let stem = src.trim_end_matches(".c");
    let out = c_lib_dir().join(format!("{stem}_{}", if vigil_headers { "vigil_h" } else { "system_h" }));
    compile_c(&[c_src(src)], &out, vigil_headers, libs);
    built.push((src.to_string(), vigil_headers, out.clone()));
    out
}

/// Waits for a child with the deadline; at the deadline its process group and itself are killed and the
/// test fails with `what`.
pub fn wait_deadline(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > end {
            let _ = vigil_sys::kill_process_group(child.id() as i32, 9);
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a SAM supervisor reports of a first instance under QUIT, stopped: for tests that send raw
/// `SamReport`s.
pub fn quit_app_info() -> vigil_client::proto::SamInfo {
    vigil_client::proto::SamInfo {
        instance: 1,
        child: 0,
        interval_ms: 0,
        policy: vigil_client::proto::SAM_POLICY_QUIT,
        warn_signal: 15,
        state: vigil_client::proto::SamState::Stopped,
    }
}

impl Vigild {
    /// Waits for vigild to exit by itself (a stop already sent); its exit status.
    pub fn terminate_waited(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "vigild did not exit after the stop it was sent");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A TCP port on loopback free at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// vigild, not started, with its state dir, socket and config (`vigil.toml`, written by the caller) in
/// `dir`: for a test of how it starts or refuses to.
pub fn vigild_in(dir: &Path) -> Command {
    let mut cmd = Command::new(bin("vigild"));
    cmd.arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(dir.join("v.sock"))
        .arg("--config")
        .arg(dir.join("vigil.toml"));
    cmd
}
