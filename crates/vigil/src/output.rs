//! How answers are shown: short lines and tables for people, JSON for scripts.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use comfy_table::{presets::NOTHING, Table};
use serde::Serialize;
use vigil_client::proto::{
    json as view, CmapEntry, CmapNotification, CmapValue, DaemonInfo, ExitStatus, PsmCategory, PsmMember, ReloadReport,
    TagStatus,
};

use crate::when::{local, now_ms};

/// User-controlled text for human output (see `vigil_client::escape_terminal`); JSON stays exact.
fn esc(s: &str) -> String {
    vigil_client::escape_terminal(s).into_owned()
}

/// Words joined by spaces, each escaped.
fn esc_join(words: &[String]) -> String {
    words.iter().map(|w| esc(w)).collect::<Vec<_>>().join(" ")
}

/// A value as one shell word: escaped, and in double quotes when it is empty or has a space or a quote
/// (`status="exit 1"`), so that `k=v` lists split where they seem to.
pub fn word(s: &str) -> String {
    let e = esc(s);
    if e.is_empty() || e.contains([' ', '"', '\'']) {
        format!("\"{}\"", e.replace('"', "\\\""))
    } else {
        e
    }
}

/// `k=v` pairs, escaped and quoted where needed.
pub fn esc_pairs<V: std::fmt::Display>(pairs: &[(String, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), word(&v.to_string())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A document: indented, for people and `jq` alike.
pub fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("plain data serializes"));
}

/// One item of a stream (events, CMAP changes): one object per line, so that a reader can act on each as
/// it comes (JSON Lines).
pub fn print_json_line<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).expect("plain data serializes"));
    let _ = std::io::stdout().flush();
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn exit_text(e: &ExitStatus) -> String {
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

/// The retry budget: `3 within 60 s`, `unlimited within no period`.
pub fn budget(st: &TagStatus) -> String {
    format!(
        "{} within {}",
        limit(st.retries),
        if st.period < 0 {
            "no period".to_string()
        } else {
            format!("{} s", st.period)
        }
    )
}

pub fn tag_started(st: &TagStatus, json: bool) {
    if json {
        return print_json(&view::Tag::from(st));
    }
    match st.main_pid {
        Some(pid) => println!("{}: {} (pid {pid})", esc(&st.name), esc(&st.state)),
        None => println!("{}: {}", esc(&st.name), esc(&st.state)),
    }
}

/// `list`: one line per tag with its state, processes, uptime, restarts and last exit; over several
/// nodes (`--node all`) a NODE column first (JSON: a `node` field).
pub fn list(tags: &[(Option<String>, TagStatus)], json: bool) {
    if json {
        let items: Vec<view::TagItem> = tags
            .iter()
            .map(|(n, t)| view::TagItem {
                node: n.clone(),
                ..view::TagItem::from(t)
            })
            .collect();
        return print_json(&items);
    }
    let nodes = tags.iter().any(|(n, _)| n.is_some());
    let mut header = vec!["TAG", "STATE", "PIDS", "UPTIME", "RESTARTS", "LAST EXIT"];
    if nodes {
        header.insert(0, "NODE");
    }
    let mut t = Table::new();
    t.load_style(NOTHING).set_header(header);
    let now = now_ms();
    for (n, s) in tags {
        let pids: Vec<String> = s.procs.iter().map(|p| p.pid.to_string()).collect();
        let uptime = match s.started_ms {
            Some(ms) if !s.procs.is_empty() => human_duration(Duration::from_millis(now.saturating_sub(ms))),
            _ => "-".into(),
        };
        // Restarts used of the budget: `1/3`, or `1/-` with no limit.
        let restarts = format!(
            "{}/{}",
            s.restarts_used,
            if s.retries < 0 {
                "-".to_string()
            } else {
                s.retries.to_string()
            }
        );
        let last = s.last_exit.as_ref().map_or("-".into(), |(_, e)| exit_text(e));
        let mut row = vec![
            esc(&s.name),
            esc(&s.state),
            or_dash(pids.join(" ")),
            uptime,
            restarts,
            last,
        ];
        if nodes {
            row.insert(0, esc(n.as_deref().unwrap_or_default()));
        }
        t.add_row(row);
    }
    println!("{t}");
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// `status` over several nodes: each tag's name as `node:tag` (JSON: a `node` field).
pub fn status_nodes(tags: &[(String, TagStatus)], json: bool) {
    if json {
        let v: Vec<view::Tag> = tags
            .iter()
            .map(|(n, t)| view::Tag {
                node: Some(n.clone()),
                ..view::Tag::from(t)
            })
            .collect();
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

pub fn status(tags: &[TagStatus], json: bool) {
    if json {
        return print_json(&tags.iter().map(view::Tag::from).collect::<Vec<_>>());
    }
    for (i, st) in tags.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let up = st.started_ms.filter(|_| !st.procs.is_empty()).map(|s| {
            format!(
                ", up {} (since {})",
                human_duration(Duration::from_millis(now_ms().saturating_sub(s))),
                local(s)
            )
        });
        println!("{}: {}{}", esc(&st.name), esc(&st.state), up.unwrap_or_default());
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

pub fn categories(cats: &[PsmCategory], json: bool) {
    if json {
        return print_json(&cats.iter().map(view::PsmCategory::from).collect::<Vec<_>>());
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
        return print_json(&ms.iter().map(view::PsmMember::from).collect::<Vec<_>>());
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
        return print_json(&view::Reload::from(r));
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
        return print_json(&view::Daemon::from(d));
    }
    println!("vigild {} (pid {}, uid {})", esc(&d.version), d.pid, d.uid);
    println!(
        "  up:        {} (since {})",
        human_duration(Duration::from_millis(now_ms().saturating_sub(d.started_ms))),
        local(d.started_ms)
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

/// `key (type) = value` lines, as corosync-cmapctl prints them.
pub fn cmap_entries(entries: &[CmapEntry], json: bool) {
    if json {
        return print_json(&entries.iter().map(view::CmapEntry::from).collect::<Vec<_>>());
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
        return print_json_line(&view::CmapChange::from(n));
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
        return print_json(&ps.iter().map(view::SamApp::from).collect::<Vec<_>>());
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
            format!("{:.1}s ago", now_ms().saturating_sub(p.last_updated_ms) as f64 / 1000.0)
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
    if json {
        return print_json(&view::Quorum::new(quorate, votes, expected));
    }
    let (expected, votes) = (cmap_text(expected).1, cmap_text(votes).1);
    // The rule itself, so that the numbers explain the answer.
    println!(
        "{} (votes {votes}, expected votes {expected}: quorate while votes > 0 and votes > expected votes / 2)",
        if quorate { "quorate" } else { "not quorate" }
    );
}

pub fn nodes(ns: &[vigil_client::proto::NodeInfo], json: bool) {
    if json {
        return print_json(&ns.iter().map(view::Node::from).collect::<Vec<_>>());
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
