//! `vigil events`: the newest stored events (or those since a time, an age or a sequence number), then,
//! with `-f`, each new one as it is posted.

use std::collections::VecDeque;
use std::path::Path;

use vigil_client::proto::{json as view, ClusterEvent, Event, EventFilter};
use vigil_client::{Client, ClusterItem, StreamItem};

use crate::output::{esc_pairs, print_json_line};
use crate::when::{local, now_ms, parse_since, Since};
use crate::{usage, Failure};

/// Events shown when neither `-n` nor a start is given.
const DEFAULT_LINES: usize = 20;
/// vigild answers at most this many events per request.
const PAGE: u32 = 10_000;

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Only events whose name matches: a glob (`sys.*.exited`) or a dotted prefix (`sys.unix.psm`); any
    /// of several may match
    #[arg(value_name = "FILTER")]
    filter: Vec<String>,
    /// Show the newest N events that match [default: 20; with --since or --after: every one]
    #[arg(short = 'n', long = "lines", alias = "limit", value_name = "N")]
    lines: Option<usize>,
    /// Only events from WHEN on: an age (`90s`, `10m`, `1h30m`, `2d`), an RFC 3339 time
    /// (`2026-12-02T18:00:00Z`), or a sequence number, for the events above it (with --node: an etcd
    /// revision)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only events with a sequence number above SEQ (with --node: an etcd revision above SEQ)
    #[arg(long, value_name = "SEQ", conflicts_with = "since")]
    after: Option<u64>,
    /// Only events about this PSM category
    #[arg(long, value_name = "CATEGORY")]
    category: Option<String>,
    /// Only events about this PMF tag
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// After the stored events, keep printing new ones as they are posted
    #[arg(long, short)]
    follow: bool,
}

/// What to show, from the arguments.
struct Selection {
    /// Above this sequence number (or revision).
    after: u64,
    /// At or after this time.
    from_ms: Option<u64>,
    /// The newest this many.
    newest: Option<usize>,
    filter: EventFilter,
}

impl EventsArgs {
    fn selection(self) -> Result<(Selection, bool), Failure> {
        let since = self
            .since
            .as_deref()
            .map(|s| parse_since(s, now_ms()))
            .transpose()
            .map_err(usage)?;
        let after = match (self.after, since) {
            (Some(n), _) | (None, Some(Since::Seq(n))) => n,
            _ => 0,
        };
        let from_ms = match since {
            Some(Since::Time(t)) => Some(t),
            _ => None,
        };
        let bounded = self.after.is_some() || since.is_some();
        let newest = self.lines.or((!bounded).then_some(DEFAULT_LINES));
        let filter = EventFilter {
            names: self.filter,
            category: self.category,
            tag: self.tag,
        };
        Ok((
            Selection {
                after,
                from_ms,
                newest,
                filter,
            },
            self.follow,
        ))
    }
}

fn print_event(e: &Event, json: bool) {
    if json {
        return print_json_line(&view::Event::from(e));
    }
    let line = format!(
        "{:>6} {} {} {} {} {}",
        e.seq,
        local(e.time_ms),
        esc(&e.node),
        esc(&e.name),
        esc(&e.subject),
        esc_pairs(&e.attrs)
    );
    println!("{}", line.trim_end());
}

/// An event of the cluster stream: its etcd revision first, then the node's own sequence number.
fn print_cluster_event(e: &ClusterEvent, json: bool) {
    if json {
        return print_json_line(&view::Event::from(e));
    }
    let ev = &e.event;
    let line = format!(
        "{:>6} {} {}#{} {} {} {}",
        e.rev,
        local(ev.time_ms),
        esc(&ev.node),
        ev.seq,
        esc(&ev.name),
        esc(&ev.subject),
        esc_pairs(&ev.attrs)
    );
    println!("{}", line.trim_end());
}

fn esc(s: &str) -> String {
    vigil_client::escape_terminal(s).into_owned()
}

/// A loss marker: never silent.
fn print_lost(from: u64, to: u64, json: bool) {
    if json {
        print_json_line(&view::Lost {
            lost: view::LostRange::Seq { from, to },
        });
    } else {
        println!("lost events {from}..{to}; resume from {}", to + 1);
    }
}

/// A loss marker of the cluster stream, in etcd revisions.
fn print_lost_revisions(from: u64, to: u64, json: bool) {
    if json {
        print_json_line(&view::Lost {
            lost: view::LostRange::Rev {
                from_rev: from,
                to_rev: to,
            },
        });
    } else {
        println!("lost revisions {from}..{to}; resume from {}", to + 1);
    }
}

/// Every stored event above `after` that matches, oldest first.
fn stored_above(c: &mut Client, mut after: u64, filter: &EventFilter) -> Result<Vec<Event>, Failure> {
    let mut out = Vec::new();
    loop {
        let got = c.events_filtered(after, PAGE, filter.clone())?;
        match got.last() {
            Some(e) => after = e.seq,
            None => return Ok(out),
        }
        out.extend(got);
    }
}

/// The stored events of the selection, oldest first. The newest are found by looking back from the
/// last sequence number in growing windows, so that `vigil events` reads a few events, not the whole
/// history (100,000 by default).
fn stored(c: &mut Client, s: &Selection) -> Result<(Vec<Event>, u64), Failure> {
    let info = c.daemon_status()?;
    if s.newest.is_none() && s.from_ms.is_none() {
        return Ok((stored_above(c, s.after, &s.filter)?, info.last_seq));
    }
    let mut window = (s.newest.unwrap_or(0) as u64).max(64) * 2;
    loop {
        let start = info.last_seq.saturating_sub(window).max(s.after);
        let mut got = stored_above(c, start, &s.filter)?;
        // Nothing older is kept, or nothing older is wanted.
        let mut covered = start <= s.after || start < info.first_seq;
        if let Some(t) = s.from_ms {
            if !covered {
                // The window reaches back before `t` when its first event, of any name, is older.
                covered = c
                    .events_filtered(start, 1, EventFilter::default())?
                    .first()
                    .is_none_or(|e| e.time_ms < t);
            }
            got.retain(|e| e.time_ms >= t);
        }
        if covered || s.newest.is_some_and(|n| got.len() >= n) {
            if let Some(n) = s.newest {
                got.drain(..got.len().saturating_sub(n));
            }
            return Ok((got, info.last_seq));
        }
        window = window.saturating_mul(8);
    }
}

pub fn run(path: &Path, node: Option<&str>, args: EventsArgs, json: bool) -> Result<(), Failure> {
    let (s, follow) = args.selection()?;
    if let Some(n) = node {
        let nodes: Vec<String> = n
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        return cluster(path, nodes, s, follow, json);
    }
    let mut c = Client::connect(path)?;
    let (events, last_seq) = stored(&mut c, &s)?;
    for e in &events {
        print_event(e, json);
    }
    if !follow {
        return Ok(());
    }
    // From what was read: an event posted since is replayed by the subscription, none twice.
    let from = events.last().map_or(0, |e| e.seq).max(last_seq).max(s.after);
    c.subscribe_filtered(Some(from), s.filter.clone())?;
    loop {
        match c.next_item()? {
            StreamItem::Event(e) if s.from_ms.is_none_or(|t| e.time_ms >= t) => print_event(&e, json),
            StreamItem::Event(_) => {}
            StreamItem::Lost { from, to } => print_lost(from, to, json),
        }
    }
}

/// The cluster stream of `nodes` (every node for `all`), by etcd revision.
fn cluster(path: &Path, nodes: Vec<String>, s: Selection, follow: bool, json: bool) -> Result<(), Failure> {
    let mut c = Client::connect(path)?;
    let mut after = s.after;
    let mut kept: VecDeque<ClusterEvent> = VecDeque::new();
    loop {
        let got = c.cluster_events(after, PAGE, s.filter.clone(), nodes.clone())?;
        if let Some((from, to)) = got.lost {
            print_lost_revisions(from, to, json);
        }
        let done = got.events.is_empty() || got.upto <= after;
        after = after.max(got.upto);
        for e in got.events {
            if s.from_ms.is_none_or(|t| e.event.time_ms >= t) {
                kept.push_back(e);
                if s.newest.is_some_and(|n| kept.len() > n) {
                    kept.pop_front();
                }
            }
        }
        if done {
            break;
        }
    }
    for e in &kept {
        print_cluster_event(e, json);
    }
    if !follow {
        return Ok(());
    }
    c.cluster_subscribe(Some(after), s.filter, nodes)?;
    loop {
        match c.next_cluster_item()? {
            ClusterItem::Event(e) if s.from_ms.is_none_or(|t| e.event.time_ms >= t) => print_cluster_event(&e, json),
            ClusterItem::Event(_) => {}
            ClusterItem::Lost { from, to } => print_lost_revisions(from, to, json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: EventsArgs,
    }

    fn sel(args: &[&str]) -> Selection {
        let mut v = vec!["t"];
        v.extend(args);
        T::parse_from(v).a.selection().ok().unwrap().0
    }

    #[test]
    fn defaults() {
        let s = sel(&[]);
        assert_eq!((s.after, s.from_ms, s.newest), (0, None, Some(20)));
        let s = sel(&["--since", "120"]);
        assert_eq!((s.after, s.from_ms, s.newest), (120, None, None));
        let s = sel(&["--after", "7", "-n", "3"]);
        assert_eq!((s.after, s.newest), (7, Some(3)));
        let s = sel(&["--since", "10m"]);
        assert!(s.from_ms.is_some() && s.newest.is_none());
    }
}
