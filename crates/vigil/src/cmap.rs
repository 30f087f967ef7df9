//! `vigil cmap`: the configuration map, as corosync-cmapctl shows it.

use std::path::PathBuf;

use clap::Subcommand;
use vigil_client::proto;
use vigil_client::{Client, ClientError};

use crate::done::Done;
use crate::output;
use crate::{usage, Failure};

#[derive(Subcommand)]
pub enum CmapCmd {
    /// Print a key as `key (type) = value`
    Get {
        /// The key
        key: String,
    },
    /// Set a key, and print it as it is now
    Set {
        /// The key
        key: String,
        /// i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin
        #[arg(value_name = "TYPE")]
        ty: String,
        /// The value as text: a number (`-3` too), a string, or hex digits for bin
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Keep it across restarts of vigild
        #[arg(long)]
        persist: bool,
    },
    /// Delete a key
    Del {
        /// The key
        key: String,
    },
    /// Add one to an integer key (wrapping)
    Inc {
        /// The key
        key: String,
    },
    /// Subtract one from an integer key (wrapping)
    Dec {
        /// The key
        key: String,
    },
    /// List keys under a prefix (all without one)
    Ls {
        /// The prefix [default: every key]
        prefix: Option<String>,
    },
    /// Print changes of a key, or of a prefix with -p, until interrupted
    Track {
        /// The key, or the prefix with -p
        key: String,
        /// Track every key under KEY as a prefix
        #[arg(short = 'p', long)]
        prefix: bool,
        /// Which changes: any of add, delete, modify [default: all]
        #[arg(long, value_name = "EVENTS", value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Set keys from a file of `KEY TYPE VALUE` lines (`-KEY` deletes; `#` comments)
    Load {
        /// The file
        file: PathBuf,
    },
    /// Print every key
    Dump,
}

pub fn run(mut c: Client, stats: bool, cmd: CmapCmd, json: bool) -> Result<(), Failure> {
    use proto::CmapMap;
    let map = if stats { CmapMap::Stats } else { CmapMap::Main };
    match cmd {
        CmapCmd::Get { key } => {
            let v = c.cmap_get_in(map, &key, None)?;
            output::cmap_entries(&[proto::CmapEntry { key, value: v }], json);
        }
        CmapCmd::Set {
            key,
            ty,
            value,
            persist,
        } => {
            c.cmap_set_text(&key, &ty, &value, persist)?;
            let v = c.cmap_get_in(map, &key, None)?;
            output::cmap_entries(&[proto::CmapEntry { key, value: v }], json);
        }
        CmapCmd::Del { key } => {
            c.cmap_delete(&key)?;
            Done::new(&key, "deleted").print(json)
        }
        CmapCmd::Inc { key } => {
            let v = c.cmap_inc(&key)?;
            output::cmap_entries(&[proto::CmapEntry { key, value: v }], json);
        }
        CmapCmd::Dec { key } => {
            let v = c.cmap_dec(&key)?;
            output::cmap_entries(&[proto::CmapEntry { key, value: v }], json);
        }
        CmapCmd::Ls { prefix } => output::cmap_entries(&c.cmap_iter(map, prefix.as_deref().unwrap_or(""))?, json),
        CmapCmd::Dump => output::cmap_entries(&c.cmap_iter(map, "")?, json),
        CmapCmd::Track { key, prefix, events } => {
            let mut flags = 0;
            for e in if events.is_empty() {
                vec!["add".into(), "delete".into(), "modify".into()]
            } else {
                events
            } {
                flags |= match e.as_str() {
                    "add" => output::TRACK_ADD,
                    "delete" | "del" => output::TRACK_DELETE,
                    "modify" | "mod" => output::TRACK_MODIFY,
                    other => return Err(usage(format!("--events {other:?}: use add, delete and/or modify"))),
                };
            }
            if prefix {
                flags |= output::TRACK_PREFIX;
            }
            c.cmap_track_add(map, &key, flags, 0)?;
            loop {
                output::cmap_notification(&c.next_notification()?, json);
            }
        }
        CmapCmd::Load { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Failure(1, format!("{}: {e}", file.display())))?;
            let (mut set, mut deleted) = (0i64, 0i64);
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let at = |e: ClientError| {
                    let f = Failure::from(e);
                    Failure(f.0, format!("{}:{}: {}", file.display(), n + 1, f.1))
                };
                if let Some(key) = line.strip_prefix('-') {
                    c.cmap_delete(key.trim()).map_err(at)?;
                    deleted += 1;
                    continue;
                }
                let mut parts = line.splitn(3, char::is_whitespace);
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(k), Some(t), Some(v)) => c.cmap_set_text(k, t, v.trim_start(), false).map_err(at)?,
                    (Some(k), Some("str"), None) => c.cmap_set_text(k, "str", "", false).map_err(at)?,
                    _ => return Err(usage(format!("{}:{}: expected KEY TYPE VALUE", file.display(), n + 1))),
                }
                set += 1;
            }
            Done::new(&file.display().to_string(), "loaded")
                .note(format!("{set} set, {deleted} deleted"))
                .detail("set", set)
                .detail("deleted", deleted)
                .print(json)
        }
    }
    Ok(())
}
