//! The TOML config file: daemon settings and the tags that start with vigild.

mod res_keys;
mod settings;

pub use settings::{limits_from, HttpSettings, Quotas, Settings, TlsFiles, SUBSCRIBER_QUEUE, TAGS_PER_UID};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use vigil_core::{TagName, TagSpec};
use vigil_proto::{Backoff, ProbeCheck, ProbeSpec, ProgramType, RunSpec};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    daemon: DaemonSection,
    #[serde(default)]
    tag: BTreeMap<String, TagSection>,
    #[serde(default)]
    psm: PsmSection,
    #[serde(default)]
    cmap: CmapSection,
    #[serde(default)]
    http: HttpSection,
}

/// The HTTP API (docs/http.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    /// Serve `http.sock` in the state dir (default true).
    unix: Option<bool>,
    /// A TCP address to serve too, `127.0.0.1:9797`; requests there need the bearer token.
    listen: Option<String>,
    /// The token's file: readable by its owner only; TCP requests act as its owner.
    token_file: Option<std::path::PathBuf>,
    /// Let `listen` be an address other than loopback.
    allow_remote: Option<bool>,
    /// The largest request body, in bytes.
    max_body_bytes: Option<usize>,
    /// Serve `listen` over TLS with this PEM certificate (its chain may follow it in the file).
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `tls_cert`: readable by its owner only.
    tls_key: Option<std::path::PathBuf>,
}

impl HttpSection {
    fn apply(&self, s: &mut Settings) -> anyhow::Result<()> {
        let h = &mut s.http;
        if let Some(u) = self.unix {
            h.unix = u;
        }
        if let Some(n) = self.max_body_bytes {
            anyhow::ensure!(
                (1024..=64 << 20).contains(&n),
                "http.max_body_bytes = {n} is outside 1024..=67108864"
            );
            h.max_body_bytes = n;
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(settings::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), None) => anyhow::bail!("http.tls_cert is set without http.tls_key: give both or neither"),
            (None, Some(_)) => anyhow::bail!("http.tls_key is set without http.tls_cert: give both or neither"),
        };
        let Some(listen) = &self.listen else {
            anyhow::ensure!(self.token_file.is_none(), "http.token_file is set without http.listen");
            anyhow::ensure!(
                tls.is_none(),
                "http.tls_cert and http.tls_key are set without http.listen: TLS is for the TCP listener"
            );
            return Ok(());
        };
        let addr: std::net::SocketAddr = listen.parse().map_err(|e| {
            anyhow::anyhow!("http.listen = {listen:?} is not an address and port ({e}), as 127.0.0.1:9797")
        })?;
        anyhow::ensure!(
            addr.ip().is_loopback() || self.allow_remote == Some(true),
            "http.listen = {listen:?} is not a loopback address: set http.allow_remote = true to serve other hosts"
        );
        let Some(token_file) = &self.token_file else {
            anyhow::bail!("http.listen is set without http.token_file: TCP requests need a bearer token");
        };
        h.listen = Some(addr);
        h.token_file = Some(token_file.clone());
        h.tls = tls;
        Ok(())
    }
}

/// CMAP's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CmapSection {
    /// Keys under these prefixes survive restarts of vigild (as do keys set with the persist flag).
    #[serde(default)]
    persist_prefixes: Vec<String>,
    /// A group whose members may write (root and vigild's user always may).
    write_gid: Option<u32>,
    /// A group outside which nobody but root and vigild's user may read (default: everyone reads).
    read_gid: Option<u32>,
    /// The largest value accepted, in bytes.
    max_value_bytes: Option<usize>,
    /// Keys set at start, as `"key" = "TYPE:VALUE"` (`"app.port" = "u16:8080"`).
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

/// The process set manager's settings, named as Tru64's sys_attrs_psm.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PsmSection {
    psm_cat_max: Option<u32>,
    psm_mem_max: Option<u32>,
    psm_argv_max: Option<u32>,
    psm_state_max: Option<u32>,
    psm_mem_autocat: Option<u32>,
    /// Categories that exist from the start.
    #[serde(default)]
    categories: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonSection {
    /// Seconds between the stop signal and SIGKILL.
    stop_timeout: Option<f64>,
    /// A tag's log is rotated when it grows past this many bytes.
    log_max_bytes: Option<u64>,
    /// Rotated logs kept (TAG.log.1 ... TAG.log.N).
    log_keep: Option<u32>,
    /// Events that may wait for one subscriber before it loses them.
    subscriber_queue: Option<usize>,
    /// Events kept in the state file for replay.
    events_kept: Option<u64>,
    /// Connections one user other than root may hold.
    max_connections_per_uid: Option<usize>,
    /// Connections all users other than root may hold together.
    max_connections: Option<usize>,
    /// Seconds from accepting a connection to its Hello.
    hello_timeout: Option<f64>,
    /// Seconds from a frame's first byte to its last.
    frame_timeout: Option<f64>,
    /// Seconds answers may wait while the client reads nothing.
    send_timeout: Option<f64>,
    /// Requests of one connection that may wait for their answer.
    max_in_flight: Option<usize>,
    /// Bytes of answers and notifications that may wait for one connection to read them.
    queue_bytes: Option<usize>,
    /// Bytes of requests one uid may have read and not yet handled by the loop.
    request_bytes_per_uid: Option<usize>,
    /// Per-uid quotas, for every user but root and vigild's own: SAM data bytes, tags, PSM members.
    sam_data_per_uid: Option<u64>,
    tags_per_uid: Option<u32>,
    psm_members_per_uid: Option<u32>,
    /// Restart-storm throttling of every tag: `off` or `AFTER:MIN:MAX[:QUICK]`.
    storm: Option<String>,
    /// Microseconds the loop may poll for the next request after answering (0: never).
    busy_poll_us: Option<u64>,
    /// The SCHED_RR priority of the loop thread, 1..=99 (0: the normal policy).
    realtime_priority: Option<u64>,
}

impl DaemonSection {
    /// The bounds of connections (docs/security.md).
    fn apply_wire(&self, s: &mut Settings) -> anyhow::Result<()> {
        let range = |what: &str, v: usize, lo: usize, hi: usize| -> anyhow::Result<usize> {
            anyhow::ensure!((lo..=hi).contains(&v), "daemon.{what} = {v} is outside {lo}..={hi}");
            Ok(v)
        };
        if let Some(n) = self.max_connections_per_uid {
            s.max_connections_per_uid = range("max_connections_per_uid", n, 1, 1_000_000)?;
        }
        if let Some(n) = self.max_connections {
            s.max_connections = range("max_connections", n, 1, 1_000_000)?;
        }
        if let Some(t) = self.hello_timeout {
            s.hello_timeout = secs("daemon.hello_timeout", t)?;
        }
        if let Some(t) = self.frame_timeout {
            s.frame_timeout = secs("daemon.frame_timeout", t)?;
        }
        if let Some(t) = self.send_timeout {
            s.send_timeout = secs("daemon.send_timeout", t)?;
        }
        if let Some(n) = self.max_in_flight {
            s.max_in_flight = range("max_in_flight", n, 1, 65_536)?;
        }
        if let Some(us) = self.busy_poll_us {
            let (min, max) = (settings::BUSY_POLL_US_MIN, settings::BUSY_POLL_US_MAX);
            anyhow::ensure!(
                us == 0 || (min..=max).contains(&us),
                "daemon.busy_poll_us = {us} is outside {min}..={max} (0 turns polling off)"
            );
            s.busy_poll = Duration::from_micros(us);
        }
        if let Some(p) = self.realtime_priority {
            anyhow::ensure!(
                p <= 99,
                "daemon.realtime_priority = {p} is outside 1..=99 (0 runs vigild's loop under the normal policy)"
            );
            s.realtime_priority = p as u8;
        }
        if let Some(n) = self.queue_bytes {
            // Room for at least one frame of the largest size, or a large answer could never be sent.
            let min = vigil_proto::MAX_FRAME_LEN + vigil_proto::HEADER_LEN;
            s.queue_bytes = range("queue_bytes", n, min, 1 << 30)?;
        }
        if let Some(n) = self.request_bytes_per_uid {
            // Room for one frame of the largest size, or such a request could never be read.
            let min = vigil_proto::MAX_FRAME_LEN + vigil_proto::HEADER_LEN;
            s.request_bytes_per_uid = range("request_bytes_per_uid", n, min, 1 << 40)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagSection {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    #[serde(default)]
    instance: u32,
    #[serde(rename = "type")]
    program_type: Option<String>,
    #[serde(default = "minus_one")]
    level: i64,
    #[serde(default)]
    retries: i64,
    #[serde(default = "minus_one")]
    period: i64,
    action: Option<String>,
    backoff: Option<String>,
    #[serde(default)]
    after: Vec<String>,
    stop_signal: Option<String>,
    stop_timeout: Option<f64>,
    /// Seconds within which the program must send WATCHDOG=1.
    watchdog: Option<f64>,
    /// `[[tag.NAME.probe]]` tables.
    #[serde(default)]
    probe: Vec<ProbeSection>,
    /// This tag's restart-storm throttling, instead of `daemon.storm`.
    storm: Option<String>,
    // Resources (config/res_keys.rs).
    user: Option<res_keys::NameOrId>,
    group: Option<res_keys::NameOrId>,
    limits: Option<BTreeMap<String, res_keys::LimitValue>>,
    nice: Option<i32>,
    umask: Option<res_keys::Umask>,
    stderr_log: Option<String>,
    #[serde(default)]
    log_timestamps: bool,
    env_file: Option<String>,
    tag_group: Option<String>,
    /// `always` (the default), `on-failure` or `never`.
    restart: Option<String>,
    /// Exit codes that are a success (default: 0).
    success_exit_codes: Option<Vec<u8>>,
    /// Signals whose deaths are a success, by name or number (default: none).
    success_signals: Option<Vec<SignalName>>,
    /// Seconds an instance must live before it counts as running (default: 0).
    start_secs: Option<f64>,
    /// The program sends READY=1 when it serves (systemd's Type=notify).
    #[serde(default)]
    notify: bool,
    /// false: declared, stopped, started by `vigil start` (default: true).
    #[serde(default = "yes")]
    autostart: bool,
}

/// A signal as a config file gives it: `"TERM"`, `"SIGTERM"` or `15`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SignalName {
    Name(String),
    Number(i32),
}

fn yes() -> bool {
    true
}

/// One probe: exactly one of `exec`, `tcp`, `http`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSection {
    exec: Option<ExecProbe>,
    tcp: Option<String>,
    http: Option<String>,
    interval: Option<f64>,
    timeout: Option<f64>,
    threshold: Option<u32>,
}

/// A command line run by `sh -c`, or an argv.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExecProbe {
    Line(String),
    Argv(Vec<String>),
}

impl ProbeSection {
    fn to_wire(&self, i: usize) -> anyhow::Result<ProbeSpec> {
        let what = |k: &str| format!("probe[{i}].{k}");
        let ms = |k: &str, v: Option<f64>| -> anyhow::Result<Option<u64>> {
            v.map(|v| secs(&what(k), v).map(|d| d.as_millis() as u64)).transpose()
        };
        let check = match (&self.exec, &self.tcp, &self.http) {
            (Some(ExecProbe::Line(l)), None, None) => ProbeCheck::Exec {
                command: vec!["sh".into(), "-c".into(), l.clone()],
            },
            (Some(ExecProbe::Argv(a)), None, None) => ProbeCheck::Exec { command: a.clone() },
            (None, Some(t), None) => ProbeCheck::Tcp { address: t.clone() },
            (None, None, Some(h)) => ProbeCheck::Http { url: h.clone() },
            _ => anyhow::bail!("probe[{i}]: give exactly one of exec, tcp, http"),
        };
        Ok(ProbeSpec {
            check,
            interval_ms: ms("interval", self.interval)?,
            timeout_ms: ms("timeout", self.timeout)?,
            threshold: self.threshold,
        })
    }
}

fn minus_one() -> i64 {
    -1
}

/// A parsed and validated config.
#[derive(Debug, Default)]
pub struct Config {
    pub settings: Settings,
    pub tags: Vec<(TagName, TagSpec)>,
    pub categories: Vec<vigil_core::psm::CategoryName>,
    /// CMAP keys to preload.
    pub cmap_keys: Vec<(String, vigil_core::cmap::CmapValue)>,
    /// Tags declared with `autostart = false`.
    pub manual: BTreeSet<TagName>,
}

fn secs(what: &str, v: f64) -> anyhow::Result<Duration> {
    if !(0.001..=86_400.0).contains(&v) {
        anyhow::bail!("{what} = {v} is outside 0.001..=86400 seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Reads and checks a config file; every error names the file, the tag and the key.
pub fn load(path: &Path, uid: u32, gid: u32) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
    parse_in(&text, uid, gid, path.parent()).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

pub fn parse(text: &str, uid: u32, gid: u32) -> anyhow::Result<Config> {
    parse_in(text, uid, gid, None)
}

/// `parse`, with relative `env_file`s taken from `dir` (the config file's directory).
pub fn parse_in(text: &str, uid: u32, gid: u32, dir: Option<&Path>) -> anyhow::Result<Config> {
    let file: File = toml::from_str(text)?;
    let mut settings = Settings::default();
    if let Some(t) = file.daemon.stop_timeout {
        settings.stop_timeout = secs("daemon.stop_timeout", t)?;
    }
    if let Some(b) = file.daemon.log_max_bytes {
        anyhow::ensure!(b >= 4096, "daemon.log_max_bytes = {b} is below 4096");
        settings.log_max_bytes = b;
    }
    if let Some(k) = file.daemon.log_keep {
        anyhow::ensure!((1..=100).contains(&k), "daemon.log_keep = {k} is outside 1..=100");
        settings.log_keep = k;
    }
    if let Some(q) = file.daemon.subscriber_queue {
        anyhow::ensure!(
            (1..=1_000_000).contains(&q),
            "daemon.subscriber_queue = {q} is outside 1..=1000000"
        );
        settings.subscriber_queue = q;
    }
    if let Some(k) = file.daemon.events_kept {
        anyhow::ensure!(
            (10..=100_000_000).contains(&k),
            "daemon.events_kept = {k} is outside 10..=100000000"
        );
        settings.events_kept = k;
    }
    file.daemon.apply_wire(&mut settings)?;
    file.http.apply(&mut settings)?;
    if let Some(b) = file.daemon.sam_data_per_uid {
        anyhow::ensure!(b <= 1 << 40, "daemon.sam_data_per_uid = {b} is above 1 TiB");
        settings.quotas.sam_data_per_uid = b;
    }
    if let Some(n) = file.daemon.tags_per_uid {
        anyhow::ensure!(n <= 1_000_000, "daemon.tags_per_uid = {n} is above 1000000");
        settings.quotas.tags_per_uid = n as usize;
    }
    if let Some(n) = file.daemon.psm_members_per_uid {
        anyhow::ensure!(n <= 1_000_000, "daemon.psm_members_per_uid = {n} is above 1000000");
        settings.quotas.psm_members_per_uid = n as usize;
    }
    if let Some(s) = &file.daemon.storm {
        settings.storm = vigil_core::Storm::parse(s).map_err(|e| anyhow::anyhow!("daemon.storm: {e}"))?;
    }
    let c = &file.cmap;
    settings.cmap_persist_prefixes = c.persist_prefixes.clone();
    settings.cmap_write_gid = c.write_gid;
    settings.cmap_read_gid = c.read_gid;
    if let Some(m) = c.max_value_bytes {
        anyhow::ensure!(
            (1..=(4 << 20) - 4096).contains(&m),
            "cmap.max_value_bytes = {m} is outside 1..={}",
            (4 << 20) - 4096
        );
        settings.cmap_max_value_bytes = m;
    }
    let mut cmap_keys = Vec::new();
    for (k, tv) in &c.keys {
        vigil_core::cmap::validate_key(k).map_err(|e| anyhow::anyhow!("cmap.keys: {e}"))?;
        let (t, v) = tv
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("cmap.keys.{k:?} = {tv:?}: expected \"TYPE:VALUE\""))?;
        let ty = vigil_core::cmap::CmapType::parse_name(t).ok_or_else(|| {
            anyhow::anyhow!("cmap.keys.{k:?}: {t:?} is not a type (i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin)")
        })?;
        let value = vigil_core::cmap::CmapValue::parse(ty, v).map_err(|e| anyhow::anyhow!("cmap.keys.{k:?}: {e}"))?;
        cmap_keys.push((k.clone(), value));
    }
    let p = &file.psm;
    settings.psm = limits_from(
        p.psm_cat_max,
        p.psm_mem_max,
        p.psm_argv_max,
        p.psm_state_max,
        p.psm_mem_autocat,
    )
    .map_err(|e| anyhow::anyhow!("psm: {e}"))?;
    let categories = p
        .categories
        .iter()
        .map(|c| vigil_core::psm::CategoryName::new(c).map_err(|e| anyhow::anyhow!("psm.categories: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tags = Vec::new();
    let mut manual = BTreeSet::new();
    for (name, t) in file.tag {
        let ctx = |e: String| anyhow::anyhow!("tag.{name}: {e}");
        let program_type = match t.program_type.as_deref() {
            None | Some("svc") => ProgramType::Svc,
            Some("mon") => ProgramType::Mon,
            Some("other") => ProgramType::Other,
            Some(other) => return Err(ctx(format!("type = {other:?}: use svc, mon or other"))),
        };
        let backoff = match &t.backoff {
            None => None,
            Some(b) => {
                let b = vigil_core::Backoff::parse(b).map_err(ctx)?;
                Some(Backoff {
                    min_ms: b.min.as_millis() as u64,
                    max_ms: b.max.as_millis() as u64,
                })
            }
        };
        let stop_signal = match &t.stop_signal {
            None => None,
            Some(s) => Some(
                vigil_proto::signal_from_str(s).ok_or_else(|| ctx(format!("stop_signal = {s:?} is not a signal")))?,
            ),
        };
        let stop_timeout_ms = match t.stop_timeout {
            None => None,
            Some(v) => Some(secs("stop_timeout", v).map_err(|e| ctx(e.to_string()))?.as_millis() as u64),
        };
        let watchdog_ms = match t.watchdog {
            None => None,
            Some(v) => Some(secs("watchdog", v).map_err(|e| ctx(e.to_string()))?.as_millis() as u64),
        };
        if let Some(s) = &t.storm {
            let storm = vigil_core::Storm::parse(s).map_err(ctx)?;
            let tag = crate::spec::tag_name(&name).map_err(|e| ctx(e.message))?;
            settings.storm_overrides.insert(tag, storm);
        }
        let probes = t
            .probe
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i).map_err(|e| ctx(e.to_string())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let supervision = supervision_of(&t).map_err(ctx)?;
        let autostart = t.autostart;
        let wire_res = res_keys::ResKeys {
            user: t.user.as_ref(),
            group: t.group.as_ref(),
            limits: t.limits.as_ref(),
            nice: t.nice,
            umask: t.umask.as_ref(),
            stderr_log: t.stderr_log.as_deref(),
            log_timestamps: t.log_timestamps,
            tag_group: t.tag_group.as_deref(),
        }
        .to_wire()
        .map_err(ctx)?;
        // The file's variables first: the `env` table's win over them.
        let mut env: Vec<(String, String)> = match &t.env_file {
            Some(f) => res_keys::read_env_file(f, dir).map_err(ctx)?,
            None => Vec::new(),
        };
        env.retain(|(k, _)| !t.env.contains_key(k));
        let mut seen = BTreeSet::new();
        // A later line of the file wins over an earlier one.
        env.reverse();
        env.retain(|(k, _)| seen.insert(k.clone()));
        env.reverse();
        env.extend(t.env);
        let run = RunSpec {
            tag: name.clone(),
            command: t.command,
            env,
            inherit_env: false,
            cwd: t.cwd,
            instance: t.instance,
            program_type,
            level: t.level,
            retries: t.retries,
            period: t.period,
            action: t.action,
            backoff,
            after: t.after,
            stop_signal,
            stop_timeout_ms,
            watchdog_ms,
            probes,
        };
        let (tag, mut spec) = crate::spec::build(&run, uid, gid, settings.stop_timeout).map_err(|e| ctx(e.message))?;
        // vigild's config speaks for vigild's user: as root, for any user.
        let asker = crate::tag_res::Asker {
            uid,
            gid,
            may_switch: uid == 0,
        };
        crate::tag_res::apply(&tag, &mut spec, &wire_res, asker).map_err(|e| ctx(e.message))?;
        let spec = crate::supervision::with_supervision(&tag, spec, &supervision).map_err(|e| ctx(e.message))?;
        if !autostart {
            manual.insert(tag.clone());
        }
        tags.push((tag, spec));
    }
    check_after(&tags)?;
    Ok(Config {
        settings,
        tags,
        categories,
        cmap_keys,
        manual,
    })
}

/// The supervision keys of a tag, as the wire carries them (vigild checks them as for a request).
fn supervision_of(t: &TagSection) -> Result<vigil_proto::Supervision, String> {
    let mut s = vigil_proto::Supervision::default();
    if let Some(r) = &t.restart {
        s.restart = match vigil_core::RestartPolicy::parse(r).map_err(|e| format!("restart: {e}"))? {
            vigil_core::RestartPolicy::Always => vigil_proto::RestartPolicy::Always,
            vigil_core::RestartPolicy::OnFailure => vigil_proto::RestartPolicy::OnFailure,
            vigil_core::RestartPolicy::Never => vigil_proto::RestartPolicy::Never,
        };
    }
    if let Some(codes) = &t.success_exit_codes {
        s.success_exit_codes = codes.clone();
    }
    if let Some(sigs) = &t.success_signals {
        s.success_signals = sigs
            .iter()
            .map(|g| match g {
                SignalName::Number(n) => Ok(*n),
                SignalName::Name(n) => vigil_proto::signal_from_str(n)
                    .ok_or_else(|| format!("success_signals: {n:?} is not a signal name or number")),
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = t.start_secs {
        if !(0.0..=3600.0).contains(&v) {
            return Err(format!("start_secs = {v} is outside 0..=3600 seconds"));
        }
        s.start_secs_ms = (v * 1000.0).round() as u64;
    }
    s.notify = t.notify;
    Ok(s)
}

/// Every `after` names a declared tag, and there is no cycle.
fn check_after(tags: &[(TagName, TagSpec)]) -> anyhow::Result<()> {
    let by_name: BTreeMap<&TagName, &TagSpec> = tags.iter().map(|(n, s)| (n, s)).collect();
    for (n, s) in tags {
        for a in &s.after {
            anyhow::ensure!(
                by_name.contains_key(a),
                "tag.{n}: after names {a}, which is not declared"
            );
        }
    }
    fn visit<'a>(
        n: &'a TagName,
        by_name: &BTreeMap<&'a TagName, &'a TagSpec>,
        path: &mut Vec<&'a TagName>,
        done: &mut BTreeSet<&'a TagName>,
    ) -> anyhow::Result<()> {
        if done.contains(n) {
            return Ok(());
        }
        if let Some(i) = path.iter().position(|p| *p == n) {
            let cycle: Vec<String> = path[i..].iter().map(|p| p.to_string()).collect();
            anyhow::bail!("start order has a cycle: {} -> {n}", cycle.join(" -> "));
        }
        path.push(n);
        for a in &by_name[n].after {
            let (k, _) = by_name.get_key_value(a).expect("checked above");
            visit(k, by_name, path, done)?;
        }
        path.pop();
        done.insert(n);
        Ok(())
    }
    let mut done = BTreeSet::new();
    for n in by_name.keys() {
        visit(n, &by_name, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
