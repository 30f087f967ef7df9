//! What the config file sets for the daemon itself (`[daemon]`, `[psm]`, `[cmap]`), with defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_core::psm::{PsmError, PsmLimits};
use vigil_core::TagName;

/// How many events may wait for one subscriber before it starts losing them (`daemon.subscriber_queue`).
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// Daemon-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stop_timeout: Duration,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    pub psm: vigil_core::psm::PsmLimits,
    pub subscriber_queue: usize,
    pub events_kept: u64,
    pub cmap_persist_prefixes: Vec<String>,
    pub cmap_write_gid: Option<u32>,
    pub cmap_read_gid: Option<u32>,
    pub cmap_max_value_bytes: usize,
    /// Connection limits (docs/security.md); vigild's `--max-connections-per-uid` overrides the
    /// first.
    pub max_connections_per_uid: usize,
    pub max_connections: usize,
    pub hello_timeout: Duration,
    pub frame_timeout: Duration,
    pub send_timeout: Duration,
    pub max_in_flight: usize,
    pub queue_bytes: usize,
    /// Bytes of requests of one uid read from its connections and not yet handled by the loop; beyond
    /// it, its connections are not read until the loop catches up.
    pub request_bytes_per_uid: usize,
    /// Per-uid quotas (root and vigild's own user have none): they keep one user from filling the state
    /// disk or vigild's memory for everyone.
    pub quotas: Quotas,
    /// Restart-storm throttling of tags (`None`: off).
    pub storm: Option<vigil_core::Storm>,
    /// Config-declared tags whose storm throttling differs from `storm`.
    pub storm_overrides: BTreeMap<TagName, Option<vigil_core::Storm>>,
    /// The HTTP API (`[http]`, docs/http.md).
    pub http: HttpSettings,
    /// How long the loop may poll for the next request after answering, before it sleeps
    /// (`daemon.busy_poll_us`, see busy_poll.rs; zero: never).
    pub busy_poll: Duration,
    /// The `SCHED_RR` priority of vigild's loop thread, 0 for the normal policy
    /// (`daemon.realtime_priority`, vigil_sys::set_realtime).
    pub realtime_priority: u8,
}

/// Where and how the HTTP API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `http.sock` in the state dir.
    pub unix: bool,
    /// TCP, with a bearer token read from `token_file`.
    pub listen: Option<std::net::SocketAddr>,
    pub token_file: Option<std::path::PathBuf>,
    /// TLS on `listen` (`None`: plain HTTP).
    pub tls: Option<TlsFiles>,
    pub max_body_bytes: usize,
}

/// The PEM files of the TCP listener's TLS. `http::tls` reads and checks them (`--check`, the start, a
/// re-exec), as it must build the server's TLS config from them anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate, then its chain.
    pub cert: std::path::PathBuf,
    /// The private key; its owner alone may read it.
    pub key: std::path::PathBuf,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            unix: true,
            listen: None,
            token_file: None,
            tls: None,
            max_body_bytes: 1 << 20,
        }
    }
}

/// What one uid other than root (and vigild's own) may keep in vigild, and so in the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes of SAM data over all of the uid's SAM applications.
    pub sam_data_per_uid: u64,
    /// Tags whose processes run as the uid, stopped and failed ones included: with the bounds of
    /// each tag's spec, this keeps every list answer within a frame (docs/security.md).
    pub tags_per_uid: usize,
    /// PSM members whose processes run as the uid.
    pub psm_members_per_uid: usize,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            sam_data_per_uid: 16 << 20,
            tags_per_uid: TAGS_PER_UID,
            psm_members_per_uid: 256,
        }
    }
}

/// The default of `daemon.busy_poll_us` with more than one CPU online (0 with one), and its bounds
/// other than 0: a shorter poll is not worth its first `epoll_wait` (vigil_sys::busy_poll::MIN).
pub const BUSY_POLL_US: u64 = 50;
pub const BUSY_POLL_US_MIN: u64 = 5;
pub const BUSY_POLL_US_MAX: u64 = 1000;

/// The default of `daemon.realtime_priority` with more than one CPU online (0 with one): above every
/// process of the normal policy, below every other real-time thread (the kernel's, corosync's 99).
pub const REALTIME_PRIORITY: u8 = 1;

/// The default of `daemon.tags_per_uid`.
pub const TAGS_PER_UID: usize = 64;

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            stop_timeout: Duration::from_secs(10),
            log_max_bytes: 10 << 20,
            log_keep: 3,
            psm: Default::default(),
            subscriber_queue: SUBSCRIBER_QUEUE,
            events_kept: vigil_store::EVENTS_KEPT,
            cmap_persist_prefixes: Vec::new(),
            cmap_write_gid: None,
            cmap_read_gid: None,
            cmap_max_value_bytes: vigil_core::cmap::Limits::default().max_value_bytes,
            max_connections_per_uid: 256,
            max_connections: 4096,
            hello_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            max_in_flight: 64,
            queue_bytes: 16 << 20,
            request_bytes_per_uid: 64 << 20,
            quotas: Quotas::default(),
            storm: Some(vigil_core::Storm::default()),
            storm_overrides: BTreeMap::new(),
            http: HttpSettings::default(),
            // With one CPU, vigild polling would keep it from the very client it waits for.
            busy_poll: match std::thread::available_parallelism() {
                Ok(n) if n.get() > 1 => Duration::from_micros(BUSY_POLL_US),
                _ => Duration::ZERO,
            },
            // With one CPU, a flood of requests to a real-time vigild would leave other processes
            // only what the kernel's real-time throttling keeps for them.
            realtime_priority: match std::thread::available_parallelism() {
                Ok(n) if n.get() > 1 => REALTIME_PRIORITY,
                _ => 0,
            },
        }
    }
}

/// Checks the `[psm]` settings against their ranges (ENOSPC when out of range, as psm.h says).
pub fn limits_from(
    cat_max: Option<u32>,
    mem_max: Option<u32>,
    argv_max: Option<u32>,
    state_max: Option<u32>,
    autocat: Option<u32>,
) -> Result<PsmLimits, PsmError> {
    let d = PsmLimits::default();
    Ok(PsmLimits {
        cat_max: PsmLimits::check("psm_cat_max", cat_max.unwrap_or(d.cat_max), PsmLimits::CAT_MAX_RANGE)?,
        mem_max: PsmLimits::check("psm_mem_max", mem_max.unwrap_or(d.mem_max), PsmLimits::MEM_MAX_RANGE)?,
        argv_max: PsmLimits::check(
            "psm_argv_max",
            argv_max.unwrap_or(d.argv_max),
            PsmLimits::ARGV_MAX_RANGE,
        )?,
        state_max: PsmLimits::check(
            "psm_state_max",
            state_max.unwrap_or(d.state_max),
            PsmLimits::STATE_MAX_RANGE,
        )?,
        autocat: PsmLimits::check("psm_mem_autocat", autocat.unwrap_or(1), (0, 1))? == 1,
    })
}
