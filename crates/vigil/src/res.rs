//! `vigil run`'s resource flags (`--user`, `--group`, `--limit`, `--nice`, `--umask`, `--stderr-log`,
//! `--env-file`, `--tag-group`) and the resource lines of `vigil status`.

use std::path::PathBuf;

use vigil_client::proto::json as view;
use vigil_client::proto::{LimitSpec, Resources, TagResources, TagStatus};
use vigil_client::Client;

use crate::{usage, Failure};

#[derive(clap::Args, Default)]
pub struct ResArgs {
    /// Run as this user (name or number; a name brings its supplementary groups); only root may name
    /// another user [default: the caller]
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Run with this group (name or number) [default: the user's primary group]
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// A resource limit, NAME=VALUE or NAME=SOFT:HARD (`unlimited` allowed), e.g. nofile=4096 (repeatable)
    #[arg(long = "limit", value_name = "NAME=VALUE")]
    limits: Vec<String>,
    /// Nice value, -20 to 19 (below 0: root only)
    #[arg(long, allow_hyphen_values = true)]
    nice: Option<i32>,
    /// File mode creation mask, in octal (e.g. 027)
    #[arg(long)]
    umask: Option<String>,
    /// Append stderr to this file (created by the tag's user if missing) instead of the tag's log
    #[arg(long, value_name = "PATH")]
    stderr_log: Option<PathBuf>,
    /// Start each line of the tag's log with the UTC time it was written (as svlogd -tt)
    #[arg(long)]
    log_timestamps: bool,
    /// Read environment variables from FILE: KEY=VALUE lines, `#` comments (-e wins over it)
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Put the tag in a group of tags, which `vigil stop|start|restart|status @GROUP` acts on
    #[arg(long, value_name = "GROUP")]
    tag_group: Option<String>,
}

impl ResArgs {
    pub fn to_wire(&self) -> Result<Resources, Failure> {
        let mut limits = Vec::new();
        for l in &self.limits {
            let l = vigil_core::Limit::parse(l).map_err(|e| usage(format!("--limit {l:?}: {e}")))?;
            limits.push(LimitSpec {
                name: l.kind.name().into(),
                soft: l.soft,
                hard: l.hard,
            });
        }
        let umask = self
            .umask
            .as_deref()
            .map(|u| u32::from_str_radix(u, 8).map_err(|_| usage(format!("--umask {u:?} is not an octal number"))))
            .transpose()?;
        Ok(Resources {
            user: self.user.clone(),
            group: self.group.clone(),
            limits,
            nice: self.nice,
            umask,
            // A relative path means the caller's directory, not vigild's.
            stderr_log: self
                .stderr_log
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or(p.clone()).display().to_string()),
            log_timestamps: self.log_timestamps,
            tag_group: self.tag_group.clone(),
        })
    }

    /// The variables of `--env-file`, read by this command (as the caller), none without it.
    pub fn env_file(&self) -> Result<Vec<(String, String)>, Failure> {
        let Some(f) = &self.env_file else {
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(f).map_err(|e| usage(format!("--env-file {}: {e}", f.display())))?;
        vigil_core::envfile::parse(&text).map_err(|e| usage(format!("--env-file {}: {e}", f.display())))
    }
}

/// The lines `vigil status` adds for a tag's resources (nothing for a vigild without them).
pub fn print_resources(r: &TagResources) {
    let esc = vigil_client::escape_terminal;
    let name = |n: &Option<String>, id: u32| match n {
        Some(n) => format!("{} ({id})", esc(n)),
        None => id.to_string(),
    };
    let mut who = format!(
        "  run as:    user {}, group {}",
        name(&r.user, r.uid),
        name(&r.group, r.gid)
    );
    if !r.groups.is_empty() {
        let g: Vec<String> = r.groups.iter().map(u32::to_string).collect();
        who.push_str(&format!(", groups {}", g.join(",")));
    }
    println!("{who}");
    let res = &r.resources;
    if !res.limits.is_empty() {
        let v = |n: Option<u64>| n.map_or("unlimited".to_string(), |n| n.to_string());
        let ls: Vec<String> = res
            .limits
            .iter()
            .map(|l| {
                if l.soft == l.hard {
                    format!("{}={}", esc(&l.name), v(l.soft))
                } else {
                    format!("{}={}:{}", esc(&l.name), v(l.soft), v(l.hard))
                }
            })
            .collect();
        println!("  limits:    {}", ls.join(" "));
    }
    if let Some(n) = res.nice {
        println!("  nice:      {n}");
    }
    if let Some(m) = res.umask {
        println!("  umask:     {m:03o}");
    }
    if let Some(p) = &res.stderr_log {
        println!("  stderr:    {}", esc(p));
    }
    if res.log_timestamps {
        println!("  log:       timestamped lines");
    }
    if let Some(g) = &res.tag_group {
        println!("  tag group: {}", esc(g));
    }
}

/// `vigil status` of the given statuses, each with its resource lines (with `--json`, its `resources`
/// object) when vigild has them.
pub fn print_status(c: &mut Client, tags: &[TagStatus], json: bool) {
    // One request per tag shows each whole; past `PER_TAG` tags, the list (without stderr logs, names
    // and groups cut: it must fit one answer) saves the round trips.
    const PER_TAG: usize = 100;
    let all = if tags.len() > PER_TAG {
        c.resources(None).ok()
    } else {
        None
    };
    let mut res_of = |st: &TagStatus| match &all {
        Some(all) => all.iter().find(|r| r.tag == st.name).cloned(),
        None => c.resources(Some(&st.name)).ok().and_then(|mut v| v.pop()),
    };
    if json {
        let v: Vec<view::Tag> = tags
            .iter()
            .map(|st| view::Tag {
                resources: res_of(st).as_ref().map(view::Resources::from),
                ..view::Tag::from(st)
            })
            .collect();
        return crate::output::print_json(&v);
    }
    for (i, st) in tags.iter().enumerate() {
        if i > 0 {
            println!();
        }
        crate::output::status(std::slice::from_ref(st), false);
        if let Some(r) = res_of(st) {
            print_resources(&r);
        }
    }
}
