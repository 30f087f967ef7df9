//! A real etcd for the cluster tests: 1 or 3 members on loopback ports in a temporary directory.
//!
//! Debian's `etcd-server` must be installed (`scripts/install-deps` does it, and `scripts/test` runs
//! that): without it the tests fail, they do not skip. Ports come from the kernel (bind to port 0), so
//! tests running in parallel do not collide; a start that loses a port race is tried again on new ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, DEADLINE};

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

pub struct Etcd {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    initial_cluster: String,
    token: String,
    /// etcd's `--heartbeat-interval` and `--election-timeout`, in ms.
    timing: (u32, u32),
}

fn etcd_bin() -> &'static str {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join("etcd").exists());
    assert!(
        found,
        "etcd is not installed: run scripts/install-deps (as root), which installs Debian's etcd-server"
    );
    "etcd"
}

impl Etcd {
    /// One member.
    pub fn start1() -> Etcd {
        Self::start(1)
    }

    /// Three members, for quorum: stopping two of them loses it.
    pub fn start3() -> Etcd {
        Self::start(3)
    }

    fn start(n: usize) -> Etcd {
        Self::start_timed(n, (100, 1000))
    }

    fn start_timed(n: usize, timing: (u32, u32)) -> Etcd {
        let bin = etcd_bin();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let members: Vec<Member> = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    child: None,
                })
                .collect();
            let initial_cluster = members
                .iter()
                .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
                .collect::<Vec<_>>()
                .join(",");
            let token = format!("vigil-test-{}", dir.path().display());
            let mut e = Etcd {
                dir,
                members,
                initial_cluster,
                token,
                timing,
            };
            for i in 0..n {
                e.spawn(bin, i);
            }
            if e.wait_healthy(DEADLINE) {
                return e;
            }
            eprintln!("etcd did not become healthy (a port taken meanwhile?); trying other ports");
        }
        panic!("could not start a healthy etcd of {n} member(s)");
    }

    fn spawn(&mut self, bin: &str, i: usize) {
        let m = &self.members[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(bin)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            // Quick elections: a member notices a lost leader within a second.
            .arg(format!("--heartbeat-interval={}", self.timing.0))
            .arg(format!("--election-timeout={}", self.timing.1))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// The client URLs of every member, comma-separated, for `vigild --cluster`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// vigild's arguments to join this etcd as `node`, with a lease of `ttl` seconds.
    pub fn vigild_args(&self, node: &str, ttl: u64) -> Vec<String> {
        let ttl = ttl.to_string();
        ["--cluster", &self.endpoints(), "--node", node, "--lease-ttl", &ttl]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Whether member `i` answers `/health` with a leader (etcd 3.4: `{"health":"true"}`).
    pub fn healthy(&self, i: usize) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.members[i].client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    fn wait_healthy(&mut self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            let running: Vec<usize> = (0..self.members.len())
                .filter(|i| self.members[*i].child.is_some())
                .collect();
            if running.iter().all(|i| self.healthy(*i)) {
                return true;
            }
            // A member that exited (a port taken) will not become healthy.
            if self
                .members
                .iter_mut()
                .any(|m| m.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))))
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Kills member `i` (SIGKILL: a member lost, not a goodbye).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and ports, and waits until every running member is healthy.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(etcd_bin(), i);
        assert!(self.wait_healthy(DEADLINE), "etcd member {i} did not come back healthy");
    }
}

impl Etcd {
    /// Three members that elect a new leader within a few hundred ms of losing one, for fault runs.
    pub fn start3_quick() -> Etcd {
        Self::start_timed(3, (50, 300))
    }

    /// The index of the member that is the leader, as the members' metrics say (`etcd_server_is_leader`).
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.members[i].client_port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .is_err()
            {
                return false;
            }
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            body.lines().any(|l| l == "etcd_server_is_leader 1")
        })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}
