//! Per-tag log files in the state directory, rotated by size.
//!
//! Processes write straight into their log file (O_APPEND), so their output survives a restart or a
//! `kill -9` of vigild and costs vigild nothing. vigild only watches the files with inotify and, when one
//! grows past the limit, copies it to `TAG.log.1` (shifting older ones) and truncates it in place.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tracing::warn;
use vigil_core::TagName;
use vigil_sys::Inotify;

pub struct Logs {
    dir: PathBuf,
    pub inotify: Option<std::sync::Arc<Inotify>>,
    wds: HashMap<i32, PathBuf>,
    max_bytes: u64,
    keep: u32,
}

impl Logs {
    pub fn new(dir: PathBuf, max_bytes: u64, keep: u32) -> Logs {
        let inotify = Inotify::new()
            .map_err(|e| warn!("log rotation disabled: {e}"))
            .ok()
            .map(std::sync::Arc::new);
        Logs {
            dir,
            inotify,
            wds: HashMap::new(),
            max_bytes,
            keep,
        }
    }

    pub fn set_limits(&mut self, max_bytes: u64, keep: u32) {
        self.max_bytes = max_bytes;
        self.keep = keep;
    }

    pub fn path(&self, tag: &TagName) -> PathBuf {
        self.dir.join(format!("{tag}.log"))
    }

    /// Opens (creating) the log of a tag for appending, owned by the tag's user.
    pub fn open(&mut self, tag: &TagName, uid: u32, gid: u32) -> std::io::Result<File> {
        let path = self.path(tag);
        let file = OpenOptions::new().create(true).append(true).mode(0o640).open(&path)?;
        if let Err(e) = std::os::unix::fs::fchown(&file, Some(uid), Some(gid)) {
            // Only root can give a file away; a per-user vigild writes its own files anyway.
            if vigil_sys::getuid() == 0 {
                warn!("cannot chown {}: {e}", path.display());
            }
        }
        if let Some(ino) = &self.inotify {
            match ino.add_modify_watch(&path) {
                Ok(wd) => {
                    self.wds.insert(wd, path);
                }
                Err(e) => warn!("cannot watch {} for rotation: {e}", path.display()),
            }
        }
        Ok(file)
    }

    /// Drains inotify and rotates every log that is over the limit.
    pub fn on_inotify(&mut self) {
        let Some(ino) = &self.inotify else { return };
        let mut wds = Vec::new();
        if let Err(e) = ino.read_events(&mut wds) {
            warn!("inotify: {e}");
        }
        wds.sort_unstable();
        wds.dedup();
        for wd in wds {
            if let Some(path) = self.wds.get(&wd) {
                if std::fs::metadata(path)
                    .map(|m| m.len() > self.max_bytes)
                    .unwrap_or(false)
                {
                    if let Err(e) = rotate(path, self.keep) {
                        warn!("cannot rotate {}: {e}", path.display());
                    }
                }
            }
        }
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Copy-and-truncate, because the writers hold the file open with O_APPEND and keep writing to it.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(path, n + 1))?;
        }
    }
    std::fs::copy(path, numbered(path, 1))?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(())
}
