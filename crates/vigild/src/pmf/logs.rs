//! Per-tag log files in the state directory, rotated by size.
//!
//! Processes write straight into their log file (O_APPEND), so their output survives a restart or a
//! `kill -9` of vigild and costs vigild nothing. vigild only watches the files with inotify and rotates
//! one when it grows past the limit.
//!
//! A log is written by the tag's processes, so its content and, since its owner may chmod it, its mode
//! are the user's. vigild runs as root, and so follows these rules:
//!
//! - The logs directory is vigild's own (0711): no one else can create, rename or remove an entry in it,
//!   so no symlink or hard link can be planted there. Every open still uses `O_NOFOLLOW` and checks that
//!   it got a regular file, as a second line.
//! - A log belongs to one user, the tag's, and is mode 0600. vigild creates it empty, gives it to that
//!   user (`fchown`) and sets the mode (`fchmod`) on the descriptor it opened, before a byte of the
//!   user's is in it; it does so again at every start and rotation, so a mode its owner set does not last.
//! - A log whose owner is not the tag's user (the name was used by someone else before) is never
//!   reopened: it is removed with its rotated files and a new file (a new inode) is created, so a
//!   descriptor the previous owner kept leads to the old file only.
//!
//! Rotation copies and truncates, as logrotate's `copytruncate`: the running processes keep their
//! descriptor and their O_APPEND writes land at the start of the emptied file, so output keeps flowing
//! into `TAG.log` without restarting anyone. Renaming the file away instead would leave the processes
//! writing into the renamed file, which would then grow without bound. The copy is a NEW file, created
//! by vigild under a temporary name, owned by the tag's user with mode 0600 before the user's bytes are
//! copied into it, and only then renamed to `TAG.log.1`; it never takes the source's mode, and root
//! never owns a file with a user's content. What the processes write between the end of the copy and
//! the truncation is lost, as with `copytruncate`. At most twice `log_max_bytes` is copied, the end of
//! the file: a file far larger was not written line by line (a sparse file made with ftruncate) and
//! copying it whole would hold vigild and fill the disk. Only the data of that end is copied: the holes
//! of a sparse file are skipped and counted as dropped, so a tag that truncates its log to a huge size
//! costs vigild no copy of zeros. A tag's log is rotated at most once a second (`ROTATE_EVERY`): one
//! over the limit again sooner is rotated when that second is over, from a timer of the loop.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::warn;
use vigil_core::TagName;
use vigil_sys::Inotify;

/// The mode of every log file: its owner (the tag's user) reads and writes it, root reads it, no one
/// else; never a setuid, setgid or exec bit.
pub const LOG_MODE: u32 = 0o600;

/// The mode of the logs directory: only vigild creates entries in it, and no one else can list it
/// (a user reaches their own log by its path).
pub const DIR_MODE: u32 = 0o711;

/// `daemon.log_keep`'s upper bound, as config.rs checks it: the rotated files are `.1` to `.100`.
const MAX_KEEP: u32 = 100;

/// The longest suffixes put after a tag's name: `.log.100` and the temporary `.log.new`.
const LONGEST_SUFFIX: &str = ".log.100";
const NEW_SUFFIX: &str = ".log.new";

/// The shortest time between two rotations of one tag's log: a tag that grows its log past the limit
/// in a tight loop makes vigild rotate once a second, not once per write.
pub const ROTATE_EVERY: Duration = Duration::from_secs(1);

// Every file named after a tag fits in NAME_MAX.
const _: () = assert!(TagName::MAX_LEN + LONGEST_SUFFIX.len() <= 255);
const _: () = assert!(NEW_SUFFIX.len() <= LONGEST_SUFFIX.len());

/// Whose a watched log is.
struct Watched {
    tag: TagName,
    uid: u32,
    gid: u32,
}

pub struct Logs {
    dir: PathBuf,
    pub inotify: Option<std::sync::Arc<Inotify>>,
    wds: HashMap<i32, Watched>,
    /// The watch of each tag's current log, to drop it when the file is replaced.
    by_tag: HashMap<TagName, i32>,
    max_bytes: u64,
    keep: u32,
    /// When each watched log was last rotated, for `ROTATE_EVERY`.
    rotated: HashMap<i32, Instant>,
    /// Logs over the limit again within `ROTATE_EVERY`, and when to look at them again.
    due: HashMap<i32, Instant>,
}

impl Logs {
    /// Takes the logs directory (created by the caller), making sure it is vigild's own.
    pub fn new(dir: PathBuf, max_bytes: u64, keep: u32) -> anyhow::Result<Logs> {
        secure_dir(&dir)?;
        let inotify = Inotify::new()
            .map_err(|e| warn!("log rotation disabled: {e}"))
            .ok()
            .map(std::sync::Arc::new);
        Ok(Logs {
            dir,
            inotify,
            wds: HashMap::new(),
            by_tag: HashMap::new(),
            max_bytes,
            keep,
            rotated: HashMap::new(),
            due: HashMap::new(),
        })
    }

    pub fn set_limits(&mut self, max_bytes: u64, keep: u32) {
        self.max_bytes = max_bytes;
        self.keep = keep;
    }

    pub fn path(&self, tag: &TagName) -> PathBuf {
        self.dir.join(format!("{tag}.log"))
    }

    fn suffixed(&self, tag: &TagName, suffix: &str) -> PathBuf {
        self.dir.join(format!("{tag}{suffix}"))
    }

    /// Makes the tag's log ready for its processes to open (they open it by path, vigild keeps no
    /// descriptor): a regular file owned by `uid`, mode 0600, watched for rotation. A file left by
    /// another owner is replaced by a new one.
    pub fn prepare(&mut self, tag: &TagName, uid: u32, gid: u32) -> std::io::Result<PathBuf> {
        // A vigild that is not root cannot give files away: its files are its own.
        let me = vigil_sys::getuid();
        let uid = if me == 0 { uid } else { me };
        let path = self.path(tag);
        let (file, meta) = match open_existing(&path, false)? {
            Some(f) => match f.metadata()? {
                m if m.file_type().is_file() && m.uid() == uid => (f, Some(m)),
                _ => {
                    // Someone else's log (or not a file at all): it is not reopened, whoever holds it.
                    self.discard(tag)?;
                    (create_new(&path)?, None)
                }
            },
            None => (create_new(&path)?, None),
        };
        // At a restart the log is most often as the last start left it: no chown and chmod then (two
        // syscalls of every restart).
        if meta.is_none_or(|m| m.gid() != gid || m.mode() & 0o7777 != LOG_MODE) {
            give(&file, uid, gid, &path)?;
        }
        self.watch(tag, &path, uid, gid);
        Ok(path)
    }

    fn watch(&mut self, tag: &TagName, path: &Path, uid: u32, gid: u32) {
        let Some(ino) = &self.inotify else { return };
        match ino.add_modify_watch(path) {
            Ok(wd) => {
                if let Some(old) = self.by_tag.insert(tag.clone(), wd).filter(|old| *old != wd) {
                    let _ = ino.remove_watch(old);
                    self.wds.remove(&old);
                }
                self.wds.insert(
                    wd,
                    Watched {
                        tag: tag.clone(),
                        uid,
                        gid,
                    },
                );
            }
            Err(e) => warn!("cannot watch {} for rotation: {e}", path.display()),
        }
    }

    /// Stops watching the log of a tag that is gone: every watch counts against root's inotify limit,
    /// and one left behind per removed tag would exhaust it, ending rotation for every tag. The files
    /// stay until the name is used again.
    pub fn forget(&mut self, tag: &TagName) {
        if let Some(wd) = self.by_tag.remove(tag) {
            self.wds.remove(&wd);
            self.rotated.remove(&wd);
            self.due.remove(&wd);
            if let Some(ino) = &self.inotify {
                let _ = ino.remove_watch(wd);
            }
        }
    }

    /// Removes a tag's log and its rotated files (all that `log_keep` may have made), and its watch.
    fn discard(&mut self, tag: &TagName) -> std::io::Result<()> {
        self.forget(tag);
        let mut paths = vec![self.path(tag), self.suffixed(tag, NEW_SUFFIX)];
        paths.extend((1..=MAX_KEEP).map(|n| self.suffixed(tag, &format!(".log.{n}"))));
        for p in paths {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(std::io::Error::new(e.kind(), format!("remove {}: {e}", p.display())))
                }
                _ => {}
            }
        }
        Ok(())
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
        let now = Instant::now();
        self.rotated.retain(|_, at| now.duration_since(*at) < ROTATE_EVERY);
        for wd in wds {
            self.look(wd, now);
        }
    }

    /// When a log rotated too recently must be looked at again, if one is.
    pub fn next_check(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// Looks again at the logs whose rotation was put off, once their time has come.
    pub fn on_timer(&mut self) {
        let now = Instant::now();
        let ready: Vec<i32> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(wd, _)| *wd)
            .collect();
        for wd in ready {
            self.due.remove(&wd);
            self.look(wd, now);
        }
    }

    /// Rotates a watched log that is over the limit, unless it was rotated less than `ROTATE_EVERY`
    /// ago: then it is looked at again when that time is over.
    fn look(&mut self, wd: i32, now: Instant) {
        let Some(w) = self.wds.get(&wd) else { return };
        if let Some(last) = self.rotated.get(&wd) {
            if now.duration_since(*last) < ROTATE_EVERY {
                self.due.insert(wd, *last + ROTATE_EVERY);
                return;
            }
        }
        match self.rotate(&w.tag, w.uid, w.gid) {
            Ok(true) => {
                self.rotated.insert(wd, now);
            }
            Ok(false) => {}
            Err(e) => warn!("cannot rotate {}: {e}", self.path(&w.tag).display()),
        }
    }

    /// Rotates the tag's log if it is over the limit: `TAG.log.N` become `.N+1`, a copy of `TAG.log`
    /// becomes `TAG.log.1`, and `TAG.log` is emptied in place (see the module's comment for why).
    /// True when it did.
    fn rotate(&self, tag: &TagName, uid: u32, gid: u32) -> std::io::Result<bool> {
        let path = self.path(tag);
        let Some(current) = open_existing(&path, true)? else {
            return Ok(false);
        };
        if !is_owned_file(&current, uid)? {
            // Only `prepare` replaces a file; until then the tag has no log of its own to rotate.
            return Err(std::io::Error::other("not a file of the tag's user; left alone"));
        }
        let len = current.metadata()?.len();
        if len <= self.max_bytes {
            return Ok(false);
        }
        let new = self.suffixed(tag, NEW_SUFFIX);
        match std::fs::remove_file(&new) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let copy = create_new(&new)?;
        // The user's before it holds anything of theirs.
        give(&copy, uid, gid, &new)?;
        // A log far past the limit was not written line by line between two looks: a sparse file made
        // with ftruncate, say. Copied whole, it would hold vigild's loop and fill the disk; only its end
        // is kept, with a line that says so.
        // Of that end, only the data: the holes of a sparse file would be copied as written zeros.
        let cap = self.max_bytes.saturating_mul(2);
        let from = len.saturating_sub(cap);
        let extents = vigil_sys::data_extents(&current, from, len).map_err(std::io::Error::other)?;
        let data: u64 = extents.iter().map(|(s, e)| e - s).sum();
        if data < len {
            writeln!(
                &copy,
                "[vigild: {} bytes dropped from this log at rotation (its start past twice log_max_bytes, or holes)]",
                len - data
            )?;
        }
        for (start, end) in extents {
            (&current).seek(SeekFrom::Start(start))?;
            std::io::copy(&mut (&current).take(end - start), &mut &copy)?;
        }
        drop(copy);
        // A mode its owner set since the start goes, before the file is emptied: whoever sees new
        // output in it knows that the mode was reset.
        current.set_permissions(Permissions::from_mode(LOG_MODE))?;
        // Emptied before the copy takes its place, so that whoever sees `TAG.log.1` appear knows that
        // what is written from then on stays in `TAG.log`.
        current.set_len(0)?;
        for n in (1..self.keep).rev() {
            let from = self.suffixed(tag, &format!(".log.{n}"));
            match std::fs::rename(from, self.suffixed(tag, &format!(".log.{}", n + 1))) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&new, self.suffixed(tag, ".log.1"))?;
        Ok(true)
    }
}

/// Opens an existing log without following a symlink or blocking on a FIFO; `None` if there is none.
/// A symlink or a FIFO (which no one but root could have put there) comes back as a descriptor on
/// something that `is_owned_file` refuses, so the caller replaces it.
fn open_existing(path: &Path, read: bool) -> std::io::Result<Option<File>> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    let mut o = OpenOptions::new();
    o.read(read).append(!read).write(read).custom_flags(flags);
    match o.open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // A symlink (ELOOP), or a FIFO or socket (ENXIO): not a log; an O_PATH descriptor stands for it.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENXIO)) => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(path)
            .map(Some),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("open {}: {e}", path.display()))),
    }
}

/// Whether `f` is a regular file owned by `uid`.
fn is_owned_file(f: &File, uid: u32) -> std::io::Result<bool> {
    let m = f.metadata()?;
    Ok(m.file_type().is_file() && m.uid() == uid)
}

/// Creates a new, empty log: never an existing file or a symlink's target (O_EXCL).
fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(LOG_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("create {}: {e}", path.display())))
}

/// Gives a log to the tag's user with the fixed mode, through the descriptor vigild opened.
fn give(f: &File, uid: u32, gid: u32, path: &Path) -> std::io::Result<()> {
    if let Err(e) = std::os::unix::fs::fchown(f, Some(uid), Some(gid)) {
        // Only root can give a file away; a per-user vigild writes its own files anyway.
        if vigil_sys::getuid() == 0 {
            return Err(std::io::Error::new(e.kind(), format!("chown {}: {e}", path.display())));
        }
    }
    // After the chown, which would clear a setuid bit but not the others.
    f.set_permissions(Permissions::from_mode(LOG_MODE))
}

/// The logs directory must be a real directory of vigild's user, which no one else can write into:
/// then only vigild creates, renames and removes the files in it.
fn secure_dir(dir: &Path) -> anyhow::Result<()> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| anyhow::anyhow!("logs directory {}: {e}", dir.display()))?;
    let me = vigil_sys::getuid();
    anyhow::ensure!(
        m.file_type().is_dir() && m.uid() == me,
        "logs directory {} is not a directory owned by uid {me}: refusing to write logs there",
        dir.display()
    );
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .map_err(|e| anyhow::anyhow!("cannot set the mode of {}: {e}", dir.display()))
}
