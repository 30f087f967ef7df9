//! Health checks of a running tag, as pure rules: systemd's watchdog (the program pings through the notify
//! socket) and probes (vigild runs a check every interval). A failed check ends the instance the way a
//! crash does (see `Tag::unhealthy`); what is decided here is *when* a check has failed.
//!
//! | check    | healthy while                                          | fails when                                  |
//! |----------|--------------------------------------------------------|---------------------------------------------|
//! | watchdog | a `WATCHDOG=1` came within the interval since the      | the deadline passes, or `WATCHDOG=trigger`  |
//! |          | start or the previous one                              |                                             |
//! | probe    | fewer than `threshold` consecutive runs failed         | the `threshold`-th consecutive run fails    |
//!
//! Probes run one at a time per probe: the next run is due one interval after the previous one ended, and
//! the first one interval after the start, which gives a program that much time to come up.

use std::fmt;
use std::time::Duration;

use crate::time::Timestamp;

/// The longest watchdog interval, probe interval or probe timeout.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// The most consecutive failures a probe may be allowed.
pub const MAX_THRESHOLD: u32 = 1000;
/// The most probes a tag may have.
pub const MAX_PROBES: usize = 16;
/// Probe defaults: every 10 s, 5 s to answer, 3 failures in a row before acting.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_THRESHOLD: u32 = 3;
/// A `STATUS=` text is kept up to this many bytes (systemd's notify datagrams are at most 4 KiB anyway).
pub const MAX_STATUS_BYTES: usize = 1024;

/// Why a health setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    #[error("watchdog {} s is out of range: use 0.001 to 86400 seconds", secs(*.0))]
    Watchdog(Duration),
    #[error("probe {probe}: interval {} s is out of range: use 0.001 to 86400 seconds", secs(*interval))]
    Interval { probe: String, interval: Duration },
    #[error("probe {probe}: timeout {} s is out of range: use 0.001 seconds up to the interval ({} s)",
        secs(*timeout), secs(*interval))]
    Timeout {
        probe: String,
        timeout: Duration,
        interval: Duration,
    },
    #[error("probe {probe}: threshold {threshold} is out of range: use 1 to {MAX_THRESHOLD}")]
    Threshold { probe: String, threshold: u32 },
    #[error("probe exec: the command is empty")]
    EmptyCommand,
    #[error("probe tcp:{address}: {why}")]
    Address { address: String, why: String },
    #[error("probe {url}: {why}")]
    Url { url: String, why: String },
    #[error("at most {MAX_PROBES} probes per tag")]
    TooMany,
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// `HOST:PORT` (`[V6]:PORT` for an IPv6 address) into its parts; the port must be 1 to 65535.
pub fn parse_host_port(address: &str) -> Result<(String, u16), HealthError> {
    let bad = |why: &str| HealthError::Address {
        address: address.to_string(),
        why: why.to_string(),
    };
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| bad("no ']' after the IPv6 address"))?;
        (h, p.strip_prefix(':').ok_or_else(|| bad("no :PORT after the address"))?)
    } else {
        address.rsplit_once(':').ok_or_else(|| bad("expected HOST:PORT"))?
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad("the host is empty or malformed"));
    }
    let port = match port.parse::<u32>() {
        Ok(p @ 1..=65535) => p as u16,
        _ => return Err(bad(&format!("port {port:?} is not a number from 1 to 65535"))),
    };
    Ok((host.to_string(), port))
}

/// An `http://` URL, taken apart for a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// The path and query, starting with '/'.
    pub path: String,
}

impl HttpUrl {
    /// `http://HOST[:PORT][/PATH]`; https is refused (vigild speaks plain HTTP to local services).
    pub fn parse(url: &str) -> Result<HttpUrl, HealthError> {
        let bad = |why: String| HealthError::Url {
            url: url.to_string(),
            why,
        };
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(bad(if url.starts_with("https://") {
                "https is not supported: probe plain http, or use an exec probe".into()
            } else {
                "expected http://HOST[:PORT]/PATH".into()
            }));
        };
        if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or a control character".into()));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(bad("user info in the URL is not supported".into()));
        }
        let has_port = if authority.starts_with('[') {
            authority.contains("]:")
        } else {
            authority.contains(':')
        };
        let (host, port) = if has_port {
            parse_host_port(authority).map_err(|e| match e {
                HealthError::Address { why, .. } => bad(why),
                other => other,
            })?
        } else {
            let h = authority.trim_start_matches('[').trim_end_matches(']');
            if h.is_empty() {
                return Err(bad("the host is empty".into()));
            }
            (h.to_string(), 80)
        };
        Ok(HttpUrl { host, port, path })
    }

    /// The `Host:` header value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCheck {
    /// Run a command as the tag's user, in its environment and directory: exit 0 is healthy.
    Exec { command: Vec<String> },
    /// Open a TCP connection.
    Tcp { host: String, port: u16 },
    /// GET the URL: a 2xx status is healthy.
    Http(HttpUrl),
}

impl fmt::Display for ProbeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `exec:CMD` on the command line runs `sh -c CMD`: show it as it was written.
            ProbeCheck::Exec { command } => match command.as_slice() {
                [sh, c, line] if sh == "sh" && c == "-c" => write!(f, "exec:{line}"),
                _ => write!(f, "exec:{}", command.join(" ")),
            },
            ProbeCheck::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            ProbeCheck::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            ProbeCheck::Http(u) => u.fmt(f),
        }
    }
}

/// One probe of a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub check: ProbeCheck,
    /// From the end of one run to the start of the next (and from the start of the tag to the first).
    pub interval: Duration,
    /// A run that takes longer has failed (an exec probe is killed).
    pub timeout: Duration,
    /// Consecutive failures that make the tag unhealthy.
    pub threshold: u32,
}

/// The health checks of a tag, as the user gave them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthSpec {
    /// The program must send `WATCHDOG=1` at least this often.
    pub watchdog: Option<Duration>,
    pub probes: Vec<ProbeSpec>,
}

fn in_range(d: Duration) -> bool {
    d >= Duration::from_millis(1) && d <= MAX_INTERVAL
}

impl HealthSpec {
    pub fn validate(&self) -> Result<(), HealthError> {
        if let Some(w) = self.watchdog {
            if !in_range(w) {
                return Err(HealthError::Watchdog(w));
            }
        }
        if self.probes.len() > MAX_PROBES {
            return Err(HealthError::TooMany);
        }
        for p in &self.probes {
            let probe = p.check.to_string();
            if let ProbeCheck::Exec { command } = &p.check {
                if command.first().is_none_or(|c| c.is_empty()) {
                    return Err(HealthError::EmptyCommand);
                }
            }
            if !in_range(p.interval) {
                return Err(HealthError::Interval {
                    probe,
                    interval: p.interval,
                });
            }
            if p.timeout < Duration::from_millis(1) || p.timeout > p.interval {
                return Err(HealthError::Timeout {
                    probe,
                    timeout: p.timeout,
                    interval: p.interval,
                });
            }
            if !(1..=MAX_THRESHOLD).contains(&p.threshold) {
                return Err(HealthError::Threshold {
                    probe,
                    threshold: p.threshold,
                });
            }
        }
        Ok(())
    }
}

/// One assignment of an sd_notify datagram that vigil acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    Ready,
    Status(String),
    /// `WATCHDOG=1`: a ping.
    Watchdog,
    /// `WATCHDOG=trigger`: the program asks to be treated as failed now.
    WatchdogTrigger,
    /// `WATCHDOG_USEC=N`: a new watchdog interval for this instance.
    WatchdogUsec(u64),
    MainPid(i32),
}

/// Parses the newline-separated `KEY=VALUE` assignments of a datagram. Assignments vigil has no use for
/// (`STOPPING=1`, `RELOADING=1`, `ERRNO=`...) and malformed lines are skipped, as systemd skips them.
pub fn parse_notify(text: &str) -> Vec<Notify> {
    text.split('\n')
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            match (k, v) {
                ("READY", "1") => Some(Notify::Ready),
                ("STATUS", s) => Some(Notify::Status(truncate(s, MAX_STATUS_BYTES))),
                ("WATCHDOG", "1") => Some(Notify::Watchdog),
                ("WATCHDOG", "trigger") => Some(Notify::WatchdogTrigger),
                ("WATCHDOG_USEC", n) => n.parse().ok().filter(|n| *n > 0).map(Notify::WatchdogUsec),
                ("MAINPID", n) => n.parse().ok().filter(|n| *n > 0).map(Notify::MainPid),
                _ => None,
            }
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthFailure {
    /// No `WATCHDOG=1` within the interval.
    WatchdogMissed { interval: Duration },
    /// The program sent `WATCHDOG=trigger`.
    WatchdogTrigger,
    /// A probe failed `failures` times in a row; `error` is what the last run said.
    Probe {
        index: usize,
        probe: String,
        failures: u32,
        error: String,
    },
}

impl HealthFailure {
    /// `watchdog` or `probe`.
    pub fn check(&self) -> &'static str {
        match self {
            HealthFailure::WatchdogMissed { .. } | HealthFailure::WatchdogTrigger => "watchdog",
            HealthFailure::Probe { .. } => "probe",
        }
    }

    /// A sentence for people.
    pub fn reason(&self) -> String {
        match self {
            HealthFailure::WatchdogMissed { interval } => {
                format!("no WATCHDOG=1 within {} s", secs(*interval))
            }
            HealthFailure::WatchdogTrigger => "the program sent WATCHDOG=trigger".to_string(),
            HealthFailure::Probe {
                probe, failures, error, ..
            } => format!("probe {probe} failed {failures} time(s) in a row: {error}"),
        }
    }
}

/// The progress of one probe in the current instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeRun {
    /// Consecutive failures.
    pub failures: u32,
    /// When the next run is due; `None` while one is under way.
    pub next: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// The health of the current instance of a tag. Reset at every start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `READY=1` was received.
    pub ready: bool,
    /// The last `STATUS=` text.
    pub status: Option<String>,
    /// The watchdog interval of this instance: the spec's, or what the program set with `WATCHDOG_USEC`.
    pub watchdog: Option<Duration>,
    /// When the watchdog fires unless a ping comes first.
    pub deadline: Option<Timestamp>,
    pub probes: Vec<ProbeRun>,
    /// The pid the program named with `MAINPID=`.
    pub main_pid: Option<i32>,
}

impl Health {
    /// The checks of a new instance started at `now`: every clock starts from the start.
    pub fn start(spec: &HealthSpec, now: Timestamp) -> Health {
        Health {
            ready: false,
            status: None,
            watchdog: spec.watchdog,
            deadline: spec.watchdog.map(|w| now.plus(w)),
            probes: spec
                .probes
                .iter()
                .map(|p| ProbeRun {
                    next: Some(now.plus(p.interval)),
                    ..Default::default()
                })
                .collect(),
            main_pid: None,
        }
    }

    /// Checks of an instance that vigild found running when it started again: the clocks start over
    /// (pings sent while vigild was away were lost), what the program said is kept.
    pub fn resume(&mut self, spec: &HealthSpec, now: Timestamp) {
        let fresh = Health::start(spec, now);
        self.watchdog = fresh.watchdog;
        self.deadline = fresh.deadline;
        self.probes = fresh.probes;
    }

    /// The earliest time something is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.probes.iter().filter_map(|p| p.next).chain(self.deadline).min()
    }

    /// `WATCHDOG=1`.
    pub fn ping(&mut self, now: Timestamp) {
        if let Some(w) = self.watchdog {
            self.deadline = Some(now.plus(w));
        }
    }

    /// `WATCHDOG_USEC=N`: only for a tag with a watchdog, and only within the allowed range.
    pub fn set_watchdog(&mut self, usec: u64, now: Timestamp) {
        let w = Duration::from_micros(usec);
        if self.watchdog.is_some() && in_range(w) {
            self.watchdog = Some(w);
            self.deadline = Some(now.plus(w));
        }
    }

    /// What is due at `now`: a missed watchdog, or else the probes to run (marked as under way).
    pub fn due(&mut self, now: Timestamp) -> Result<Vec<usize>, HealthFailure> {
        if let (Some(d), Some(interval)) = (self.deadline, self.watchdog) {
            if d <= now {
                self.deadline = None;
                return Err(HealthFailure::WatchdogMissed { interval });
            }
        }
        let mut run = Vec::new();
        for (i, p) in self.probes.iter_mut().enumerate() {
            if p.next.is_some_and(|n| n <= now) {
                p.next = None;
                run.push(i);
            }
        }
        Ok(run)
    }

    /// A probe run ended: count it, and schedule the next run.
    pub fn probe_done(
        &mut self,
        spec: &HealthSpec,
        index: usize,
        result: Result<(), String>,
        now: Timestamp,
    ) -> Result<(), HealthFailure> {
        let (Some(run), Some(ps)) = (self.probes.get_mut(index), spec.probes.get(index)) else {
            return Ok(());
        };
        run.next = Some(now.plus(ps.interval));
        match result {
            Ok(()) => {
                run.failures = 0;
                Ok(())
            }
            Err(error) => {
                run.failures += 1;
                run.last_error = Some(error.clone());
                if run.failures >= ps.threshold {
                    // Counting starts over for the next instance; this one is about to end.
                    run.next = None;
                    Err(HealthFailure::Probe {
                        index,
                        probe: ps.check.to_string(),
                        failures: run.failures,
                        error,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    fn probe(threshold: u32) -> ProbeSpec {
        ProbeSpec {
            check: ProbeCheck::Tcp {
                host: "127.0.0.1".into(),
                port: 80,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            threshold,
        }
    }

    #[test]
    fn watchdog_deadline_moves_with_each_ping() {
        let spec = HealthSpec {
            watchdog: Some(Duration::from_secs(2)),
            probes: vec![],
        };
        let mut h = Health::start(&spec, t(0));
        assert_eq!(h.next_due(), Some(t(2000)));
        assert_eq!(h.due(t(1999)), Ok(vec![]));
        h.ping(t(1500));
        assert_eq!(h.next_due(), Some(t(3500)));
        assert_eq!(h.due(t(2000)), Ok(vec![]), "the ping moved the deadline");
        assert_eq!(
            h.due(t(3500)),
            Err(HealthFailure::WatchdogMissed {
                interval: Duration::from_secs(2)
            })
        );
        assert_eq!(h.next_due(), None, "a missed watchdog fires once");
    }

    #[test]
    fn watchdog_usec_changes_the_interval_of_a_watched_instance_only() {
        let mut h = Health::start(
            &HealthSpec {
                watchdog: Some(Duration::from_secs(2)),
                probes: vec![],
            },
            t(0),
        );
        h.set_watchdog(5_000_000, t(1000));
        assert_eq!((h.watchdog, h.deadline), (Some(Duration::from_secs(5)), Some(t(6000))));
        h.set_watchdog(0, t(1000));
        assert_eq!(h.watchdog, Some(Duration::from_secs(5)), "0 is ignored");
        let mut none = Health::start(&HealthSpec::default(), t(0));
        none.set_watchdog(1_000_000, t(0));
        none.ping(t(0));
        assert_eq!((none.watchdog, none.deadline), (None, None));
    }

    #[test]
    fn probes_act_after_threshold_consecutive_failures() {
        let spec = HealthSpec {
            watchdog: None,
            probes: vec![probe(3)],
        };
        let mut h = Health::start(&spec, t(0));
        assert_eq!(h.due(t(999)), Ok(vec![]), "first run one interval after the start");
        assert_eq!(h.due(t(1000)), Ok(vec![0]));
        assert_eq!(h.due(t(1500)), Ok(vec![]), "one run at a time");
        assert_eq!(h.next_due(), None);
        let err = || Err("connection refused".to_string());
        assert_eq!(h.probe_done(&spec, 0, err(), t(1100)), Ok(()));
        assert_eq!(h.next_due(), Some(t(2100)));
        assert_eq!(h.probe_done(&spec, 0, err(), t(2100)), Ok(()));
        assert_eq!(h.probe_done(&spec, 0, Ok(()), t(3100)), Ok(()));
        assert_eq!(h.probes[0].failures, 0, "a success resets the count");
        assert_eq!(h.probe_done(&spec, 0, err(), t(4100)), Ok(()));
        assert_eq!(h.probe_done(&spec, 0, err(), t(5100)), Ok(()));
        assert_eq!(
            h.probe_done(&spec, 0, err(), t(6100)),
            Err(HealthFailure::Probe {
                index: 0,
                probe: "tcp:127.0.0.1:80".into(),
                failures: 3,
                error: "connection refused".into()
            })
        );
        assert_eq!(h.probe_done(&spec, 7, err(), t(6100)), Ok(()), "unknown probe");
    }

    #[test]
    fn notify_messages() {
        assert_eq!(
            parse_notify("READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1\nSTOPPING=1\nbogus\nMAINPID=42"),
            vec![
                Notify::Ready,
                Notify::Status("serving 3 clients".into()),
                Notify::Watchdog,
                Notify::MainPid(42)
            ]
        );
        assert_eq!(
            parse_notify("WATCHDOG=trigger\nWATCHDOG_USEC=2000000\nWATCHDOG_USEC=x\nREADY=0"),
            vec![Notify::WatchdogTrigger, Notify::WatchdogUsec(2_000_000)]
        );
        let long = "é".repeat(MAX_STATUS_BYTES);
        match &parse_notify(&format!("STATUS={long}"))[0] {
            Notify::Status(s) => assert!(s.len() <= MAX_STATUS_BYTES && s.len() >= MAX_STATUS_BYTES - 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addresses_and_urls() {
        assert_eq!(parse_host_port("127.0.0.1:8080"), Ok(("127.0.0.1".into(), 8080)));
        assert_eq!(parse_host_port("[::1]:80"), Ok(("::1".into(), 80)));
        assert_eq!(parse_host_port("localhost:65535"), Ok(("localhost".into(), 65535)));
        for (bad, why) in [
            ("127.0.0.1", "expected HOST:PORT"),
            ("127.0.0.1:0", "port \"0\" is not a number from 1 to 65535"),
            ("127.0.0.1:65536", "65536"),
            ("127.0.0.1:http", "\"http\""),
            (":80", "host is empty"),
        ] {
            let e = parse_host_port(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
        let u = HttpUrl::parse("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/health?x=1");
        let u = HttpUrl::parse("http://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str(), u.authority()), (80, "/", "localhost".into()));
        assert_eq!(HttpUrl::parse("http://[::1]:81/").unwrap().authority(), "[::1]:81");
        for (bad, why) in [
            ("https://x/", "https is not supported"),
            ("ftp://x/", "expected http://"),
            ("http://x:0/", "not a number from 1 to 65535"),
            ("http:///x", "host is empty"),
            ("http://a b/", "whitespace"),
        ] {
            let e = HttpUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = |s: HealthSpec| s.validate().unwrap_err().to_string();
        let w = |ms| HealthSpec {
            watchdog: Some(Duration::from_millis(ms)),
            probes: vec![],
        };
        assert_eq!(bad(w(0)), "watchdog 0 s is out of range: use 0.001 to 86400 seconds");
        assert!(w(1).validate().is_ok());
        let p = |f: fn(&mut ProbeSpec)| {
            let mut p = probe(3);
            f(&mut p);
            HealthSpec {
                watchdog: None,
                probes: vec![p],
            }
        };
        assert_eq!(
            bad(p(|p| p.threshold = 0)),
            "probe tcp:127.0.0.1:80: threshold 0 is out of range: use 1 to 1000"
        );
        assert!(bad(p(|p| p.interval = Duration::ZERO)).contains("interval 0 s is out of range"));
        assert!(bad(p(|p| p.timeout = Duration::from_secs(2))).contains("timeout 2 s is out of range"));
        assert_eq!(
            bad(p(|p| p.check = ProbeCheck::Exec { command: vec![] })),
            "probe exec: the command is empty"
        );
        assert!(p(|_| {}).validate().is_ok());
    }
}
