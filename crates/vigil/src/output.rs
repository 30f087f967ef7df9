//! How answers are shown: short lines and tables for people, JSON for scripts.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{presets::NOTHING, Table};
use serde::Serialize;
use vigil_client::proto::{
    ClusterEvent, CmapEntry, CmapNotification, CmapValue, DaemonInfo, Event, ExitStatus, PsmCategory, PsmMember,
    ReloadReport, TagStatus, TagSummary,
};

/// User-controlled text for human output (see `vigil_client::escape_terminal`); JSON stays exact.
fn esc(s: &str) -> String {
    vigil_client::escape_terminal(s).into_owned()
}

/// Words joined by spaces, each escaped.
fn esc_join(words: &[String]) -> String {
    words.iter().map(|w| esc(w)).collect::<Vec<_>>().join(" ")
}

/// `k=v` pairs, escaped.
fn esc_pairs<V: std::fmt::Display>(pairs: &[(String, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(&v.to_string())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("plain data serializes"));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn exit_text(e: &ExitStatus) -> String {
    match e {
        ExitStatus::Code(c) => format!("exit code {c}"),
        ExitStatus::Signal(s) => format!("killed by {}", vigil_client::proto::signal_name(*s)),
        ExitStatus::Unknown => "unknown".into(),
    }
}

/// Milliseconds as seconds, without a needless fraction.
fn seconds(ms: u64) -> String {
    // f64's Display prints 1.0 as "1" and 0.15 as "0.15".
    format!("{}", ms as f64 / 1000.0)
}

fn limit(n: i64) -> String {
    if n < 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

pub fn tag_started(st: &TagStatus, json: bool) {
    if json {
        return print_json(st);
    }
    match st.main_pid {
        Some(pid) => println!("{}: {} (pid {pid})", esc(&st.name), esc(shown_state(st))),
        None => println!("{}: {}", esc(&st.name), esc(shown_state(st))),
    }
}

/// A running tag whose start does not count yet (start_secs, READY=1) is shown as `starting`.
fn shown_state(st: &TagStatus) -> &str {
    if st.state == "running" && !st.up {
        "starting"
    } else {
        &st.state
    }
}

/// The supervision settings, when they are not pmfadm's.
fn supervision_line(s: &vigil_client::proto::Supervision) -> Option<String> {
    use vigil_client::proto::RestartPolicy;
    if *s == vigil_client::proto::Supervision::default() {
        return None;
    }
    let policy = match s.restart {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    };
    let codes: Vec<String> = s.success_exit_codes.iter().map(u8::to_string).collect();
    let mut line = format!("{policy}; success: exit {}", codes.join(","));
    if !s.success_signals.is_empty() {
        let sigs: Vec<String> = s
            .success_signals
            .iter()
            .map(|n| vigil_client::proto::signal_name(*n))
            .collect();
        line.push_str(&format!(", signal {}", sigs.join(",")));
    }
    line.push_str(&format!("; start_secs {} s", seconds(s.start_secs_ms)));
    if s.notify {
        line.push_str("; notify (READY=1)");
    }
    Some(line)
}

pub fn list(tags: &[TagSummary], json: bool) {
    if json {
        return print_json(&tags);
    }
    let mut t = Table::new();
    t.load_style(NOTHING).set_header(["TAG", "STATE", "PIDS"]);
    for s in tags {
        let pids: Vec<String> = s.pids.iter().map(|p| p.to_string()).collect();
        t.add_row([esc(&s.name), esc(&s.state), pids.join(" ")]);
    }
    println!("{t}");
}

/// `list` over several nodes: a NODE column (JSON: each tag with a `node` field).
pub fn list_nodes(tags: &[(String, TagSummary)], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = tags.iter().map(|(n, t)| with_node(n, t)).collect();
        return print_json(&v);
    }
    let mut t = Table::new();
    t.load_style(NOTHING).set_header(["NODE", "TAG", "STATE", "PIDS"]);
    for (n, s) in tags {
        let pids: Vec<String> = s.pids.iter().map(|p| p.to_string()).collect();
        t.add_row([esc(n), esc(&s.name), esc(&s.state), pids.join(" ")]);
    }
    println!("{t}");
}

/// `status` over several nodes: each tag's name as `node:tag` (JSON: a `node` field).
pub fn status_nodes(tags: &[(String, TagStatus)], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = tags.iter().map(|(n, t)| with_node(n, t)).collect();
        return print_json(&v);
    }
    let named: Vec<TagStatus> = tags
        .iter()
        .map(|(n, t)| TagStatus {
            name: format!("{n}:{}", t.name),
            ..t.clone()
        })
        .collect();
    status(&named, false)
}

fn with_node<T: serde::Serialize>(node: &str, t: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("node".into(), node.into());
    }
    v
}

pub fn status(tags: &[TagStatus], json: bool) {
    if json {
        return print_json(&tags);
    }
    for (i, st) in tags.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let up = st.started_ms.map(|s| {
            format!(
                ", up {}",
                human_duration(Duration::from_millis(now_ms().saturating_sub(s)))
            )
        });
        println!("{}: {}{}", esc(&st.name), esc(shown_state(st)), up.unwrap_or_default());
        if let Some(r) = &st.reason {
            println!("  reason:    {}", esc(r));
        }
        println!("  command:   {}", esc_join(&st.command));
        if !st.env.is_empty() {
            println!("  env:       {}", esc_pairs(&st.env));
        }
        if let Some(c) = &st.cwd {
            println!("  cwd:       {}", esc(c));
        }
        println!("  user:      uid {} gid {}", st.uid, st.gid);
        println!(
            "  policy:    level {}, retries {} within {}, restarts used {}{}",
            st.level,
            limit(st.retries),
            if st.period < 0 {
                "no period".to_string()
            } else {
                format!("{} s", st.period)
            },
            st.restarts_used,
            st.action
                .as_ref()
                .map(|a| format!(", action {}", esc(a)))
                .unwrap_or_default()
        );
        if !st.after.is_empty() {
            println!("  after:     {}", esc_join(&st.after));
        }
        if let Some(line) = supervision_line(&st.supervision) {
            println!("  restart:   {line}");
        }
        if let Some(w) = st.watchdog_ms {
            println!("  watchdog:  {} s", seconds(w));
        }
        if st.watchdog_ms.is_some() || st.ready || st.status_text.is_some() {
            println!("  ready:     {}", if st.ready { "yes" } else { "no" });
        }
        if let Some(s) = &st.status_text {
            println!("  status:    {}", esc(s));
        }
        for p in &st.probes {
            let fails = match (&p.last_error, p.failures) {
                (_, 0) => String::new(),
                (Some(e), n) => format!("; failed {n} time(s) in a row: {}", esc(e)),
                (None, n) => format!("; failed {n} time(s) in a row"),
            };
            println!(
                "  probe:     {} every {} s, timeout {} s, threshold {}{fails}",
                esc(&p.check.to_string()),
                seconds(p.interval_ms),
                seconds(p.timeout_ms),
                p.threshold
            );
        }
        println!("  starts:    {}", st.starts);
        for p in &st.procs {
            println!(
                "  pid {:<8} level {}{}",
                p.pid,
                p.level,
                if p.watched {
                    ""
                } else {
                    " (not watched: beyond the level)"
                }
            );
        }
        if let Some((pid, e)) = &st.last_exit {
            println!("  last exit: pid {pid}, {}", exit_text(e));
        }
        println!("  log:       {}", esc(&st.log_path));
    }
}

pub fn event(e: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).expect("plain data serializes"));
        return;
    }
    println!(
        "{:>6} {} {} {} {} {}",
        e.seq,
        e.time_ms,
        esc(&e.node),
        esc(&e.name),
        esc(&e.subject),
        esc_pairs(&e.attrs)
    );
}

/// An event of the cluster stream: its etcd revision first, then the node's own sequence number.
pub fn cluster_event(e: &ClusterEvent, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).expect("plain data serializes"));
        return;
    }
    let ev = &e.event;
    println!(
        "{:>6} {} {}#{} {} {} {}",
        e.rev,
        ev.time_ms,
        esc(&ev.node),
        ev.seq,
        esc(&ev.name),
        esc(&ev.subject),
        esc_pairs(&ev.attrs)
    );
}

/// A loss marker of the cluster stream, in etcd revisions.
pub fn lost_revisions(from: u64, to: u64, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "lost": { "from_rev": from, "to_rev": to } }));
    } else {
        println!("lost revisions {from}..{to}; resume from {}", to + 1);
    }
}

/// A loss marker: never silent.
pub fn lost(from: u64, to: u64, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "lost": { "from": from, "to": to } }));
    } else {
        println!("lost events {from}..{to}; resume from {}", to + 1);
    }
}

pub fn categories(cats: &[PsmCategory], json: bool) {
    if json {
        return print_json(&cats);
    }
    let mut t = Table::new();
    t.load_style(NOTHING).set_header(["CATEGORY", "MEMBERS", "RUNNING"]);
    for c in cats {
        t.add_row([esc(&c.name), c.members.to_string(), c.running.to_string()]);
    }
    println!("{t}");
}

pub fn members(ms: &[PsmMember], json: bool) {
    if json {
        return print_json(&ms);
    }
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_header(["CATEGORY", "NAME", "PID", "STATE", "EXIT", "ARGV"]);
    for m in ms {
        let exit = m.exit.as_ref().map(exit_text).unwrap_or_default();
        let mut argv = esc_join(&m.argv);
        if m.flags & vigil_client::proto::PSM_FL_ARGTRUNC != 0 {
            argv.push_str(" ...");
        }
        t.add_row([
            esc(&m.category),
            esc(&m.name),
            m.pid.to_string(),
            if m.flags & vigil_client::proto::PSM_FL_UNREACHABLE != 0 {
                format!("unreachable ({})", esc(&m.state))
            } else {
                esc(&m.state)
            },
            exit,
            argv,
        ]);
    }
    println!("{t}");
}

pub fn reload(r: &ReloadReport, json: bool) {
    if json {
        return print_json(r);
    }
    for (what, names) in [
        ("started", &r.started),
        ("restarted", &r.restarted),
        ("stopped", &r.stopped),
        ("unchanged", &r.unchanged),
    ] {
        if !names.is_empty() {
            println!("{what}: {}", esc_join(names));
        }
    }
    if r.started.is_empty() && r.restarted.is_empty() && r.stopped.is_empty() {
        println!("nothing to do");
    }
}

pub fn daemon(d: &DaemonInfo, json: bool) {
    if json {
        return print_json(d);
    }
    println!("vigild {} (pid {}, uid {})", esc(&d.version), d.pid, d.uid);
    println!(
        "  up:        {}",
        human_duration(Duration::from_millis(now_ms().saturating_sub(d.started_ms)))
    );
    println!("  state dir: {}", esc(&d.state_dir));
    println!("  socket:    {}", esc(&d.socket));
    println!("  config:    {}", esc(d.config.as_deref().unwrap_or("(none)")));
    println!("  tags:      {}", d.tags);
    println!("  tracking:  {}", d.tracking);
    println!("  events:    {}", d.last_seq);
}

/// Prints the last `lines` lines, then (with `follow`) what is appended, also across rotations.
pub fn logs(path: &str, lines: usize, follow: bool) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut text = String::new();
    BufReader::new(&mut f).read_to_string(&mut text)?;
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = std::io::stdout().lock();
    for l in &all[start..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut pos = f.seek(SeekFrom::End(0))?;
    loop {
        let len = std::fs::metadata(path)?.len();
        if len < pos {
            // Rotated (copied and truncated): start again from the top.
            pos = 0;
        }
        if len > pos {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(pos))?;
            let mut r = BufReader::new(f);
            let mut line = String::new();
            while r.read_line(&mut line)? > 0 {
                write!(out, "{line}")?;
                line.clear();
            }
            out.flush()?;
            pos = len;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// cmap.h's track flags.
pub const TRACK_DELETE: u32 = 1;
pub const TRACK_MODIFY: u32 = 2;
pub const TRACK_ADD: u32 = 4;
pub const TRACK_PREFIX: u32 = 8;

/// corosync-cmapctl's type names and value text.
fn cmap_text(v: &CmapValue) -> (&'static str, String) {
    match v {
        CmapValue::I8(x) => ("i8", x.to_string()),
        CmapValue::U8(x) => ("u8", x.to_string()),
        CmapValue::I16(x) => ("i16", x.to_string()),
        CmapValue::U16(x) => ("u16", x.to_string()),
        CmapValue::I32(x) => ("i32", x.to_string()),
        CmapValue::U32(x) => ("u32", x.to_string()),
        CmapValue::I64(x) => ("i64", x.to_string()),
        CmapValue::U64(x) => ("u64", x.to_string()),
        CmapValue::Float(x) => ("flt", x.to_string()),
        CmapValue::Double(x) => ("dbl", x.to_string()),
        CmapValue::Str(x) => ("str", x.clone()),
        // A string that is not UTF-8 (set by a C program): shown with U+FFFD where a byte is not.
        CmapValue::StrBytes(x) => ("str", String::from_utf8_lossy(x).into_owned()),
        CmapValue::Binary(x) => ("bin", x.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

fn cmap_json(v: &CmapValue) -> serde_json::Value {
    let (ty, text) = cmap_text(v);
    let value = match v {
        CmapValue::Str(_) | CmapValue::StrBytes(_) | CmapValue::Binary(_) => serde_json::Value::String(text),
        CmapValue::Float(x) if x.is_finite() => serde_json::json!(x),
        CmapValue::Double(x) if x.is_finite() => serde_json::json!(x),
        CmapValue::Float(_) | CmapValue::Double(_) => serde_json::Value::String(text),
        _ => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    };
    serde_json::json!({ "type": ty, "value": value })
}

/// `key (type) = value` lines, as corosync-cmapctl prints them.
pub fn cmap_entries(entries: &[CmapEntry], json: bool) {
    if json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let mut j = cmap_json(&e.value);
                j["key"] = serde_json::Value::String(e.key.clone());
                j
            })
            .collect();
        return print_json(&list);
    }
    for e in entries {
        let (ty, text) = cmap_text(&e.value);
        println!("{} ({ty}) = {}", esc(&e.key), esc(&text));
    }
}

pub fn cmap_notification(n: &CmapNotification, json: bool) {
    let event = match n.event {
        TRACK_ADD => "add",
        TRACK_DELETE => "delete",
        TRACK_MODIFY => "modify",
        _ => "?",
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "event": event, "key": n.key, "track": n.track,
                "new": n.new.as_ref().map(cmap_json), "old": n.old.as_ref().map(cmap_json),
            })
        );
        return;
    }
    let show = |v: &Option<CmapValue>| match v {
        Some(v) => {
            let (ty, text) = cmap_text(v);
            format!("({ty}) {}", esc(&text))
        }
        None => "-".to_string(),
    };
    println!("{event} {}: {} -> {}", esc(&n.key), show(&n.old), show(&n.new));
    let _ = std::io::stdout().flush();
}

pub fn sam(ps: &[vigil_client::proto::SamProcess], json: bool) {
    if json {
        return print_json(&ps);
    }
    let mut t = Table::new();
    t.load_style(NOTHING).set_header([
        "SUPERVISOR",
        "NAME",
        "INSTANCE",
        "CHILD",
        "STATE",
        "POLICY",
        "INTERVAL",
        "DATA",
        "LAST HEARTBEAT",
    ]);
    for p in ps {
        let i = &p.info;
        let mut policy = vec![if i.policy & vigil_client::proto::SAM_POLICY_RESTART != 0 {
            "restart"
        } else {
            "quit"
        }];
        if i.policy & vigil_client::proto::SAM_POLICY_QUORUM != 0 {
            policy.push("quorum");
        }
        if i.policy & vigil_client::proto::SAM_POLICY_CMAP != 0 {
            policy.push("cmap");
        }
        let last = if p.last_updated_ms == 0 {
            "-".to_string()
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            format!("{:.1}s ago", now.saturating_sub(p.last_updated_ms) as f64 / 1000.0)
        };
        let mut pid = p.pid.to_string();
        if !p.connected {
            pid.push_str(" (disconnected)");
        }
        t.add_row([
            pid,
            esc(&p.name),
            i.instance.to_string(),
            i.child.to_string(),
            i.state.cmap_str().to_string(),
            policy.join("+"),
            format!("{}ms", i.interval_ms),
            p.data_size.to_string(),
            last,
        ]);
    }
    println!("{t}");
}

pub fn quorum(quorate: bool, expected: &CmapValue, votes: &CmapValue, json: bool) {
    let (expected, votes) = (cmap_text(expected).1, cmap_text(votes).1);
    if json {
        return print_json(&serde_json::json!({
            "quorate": quorate,
            "expected_votes": expected.parse::<u64>().ok(),
            "votes": votes.parse::<u64>().ok(),
        }));
    }
    // The rule itself, so that the numbers explain the answer.
    println!(
        "{} (votes {votes}, expected votes {expected}: quorate while votes > 0 and votes > expected votes / 2)",
        if quorate { "quorate" } else { "not quorate" }
    );
}

pub fn nodes(ns: &[vigil_client::proto::NodeInfo], json: bool) {
    if json {
        return print_json(&ns);
    }
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_header(["NODE", "ID", "STATE", "SINCE", "ADDRESS", "PID", "VERSION"]);
    for n in ns {
        let mut name = esc(&n.name);
        if n.this_node {
            name.push_str(" (this node)");
        }
        t.add_row([
            name,
            n.id.to_string(),
            if n.up { "up" } else { "down" }.to_string(),
            format!(
                "{} ago",
                human_duration(Duration::from_millis(now_ms().saturating_sub(n.since_ms)))
            ),
            esc(&n.address),
            n.pid.to_string(),
            esc(&n.version),
        ]);
    }
    println!("{t}");
}
