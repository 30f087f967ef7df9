//! What `GET /metrics` shows, as the loop hands it over: one answer taken in one step, holding the
//! counters the services keep and the few facts of each tag the exposition prints, and nothing else
//! (no status of each tag, no list of CMAP keys), so that a scrape of 10,000 tags costs the loop
//! little. `http::metrics` writes it out as text.

/// The figures of one scrape, as the caller may see them.
pub struct Scrape {
    /// Every tag, in name order.
    pub tags: Vec<TagFigures>,
    /// Every PSM category: (name, running members, exited members).
    pub psm: Vec<(String, u64, u64)>,
    /// CMAP, when the caller may read it.
    pub cmap: Option<CmapFigures>,
    /// SAM applications supervised now.
    pub sam_applications: u64,
    /// Heartbeat reports received, and recoveries reported, since vigild started.
    pub sam_heartbeats: u64,
    pub sam_recoveries: u64,
    /// Nodes of the cluster up and down (this node alone outside cluster mode).
    pub nodes_up: u64,
    pub nodes_down: u64,
    pub quorate: bool,
    /// The sequence number of the last event, and the connections subscribed to events.
    pub last_seq: u64,
    pub subscribers: u64,
}

/// One tag's figures.
pub struct TagFigures {
    pub name: String,
    /// The state's name, as `vigil status` shows it.
    pub state: &'static str,
    /// Starts after the first.
    pub restarts: u64,
    /// The main process's last exit code, 128+N for a death by signal N (as a shell says it).
    pub last_exit_code: Option<i64>,
    /// Milliseconds since the running instance started (0 when it is not running).
    pub uptime_ms: u64,
    pub processes: u64,
    /// Consecutive failures of the current instance's probes (their sum).
    pub probe_failing: u64,
    /// Probe runs that failed since vigild started.
    pub probe_failures: u64,
}

/// CMAP's figures.
pub struct CmapFigures {
    /// Keys of the main map.
    pub keys: u64,
    /// Requests carried out since vigild started, by kind (`cmap::map::OPS`, same order).
    pub ops: Vec<(&'static str, u64)>,
    /// Track notifications sent since vigild started.
    pub notifications: u64,
}
