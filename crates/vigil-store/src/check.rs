//! Opening the state file without trusting it, and keeping a copy of the last good one.
//!
//! Only a missing file means "new". A file that is empty, too short for redb's header, of another format,
//! altered since redb wrote it, or whose records no longer decode is refused as [`StoreError::Damaged`]:
//! starting on it as if it were new would drop every tag, key and event without a word.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{Database, DatabaseError, StorageError};

use crate::StoreError;

/// redb's file signature, the first bytes of every file it writes.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Signatures of files that are sometimes mistaken for the state file, for a clearer message.
const KNOWN_FORMATS: &[(&[u8], &str)] = &[
    (b"SQLite format 3\0", "an SQLite database"),
    (b"\x1f\x8b", "a gzip file"),
    (b"PK\x03\x04", "a zip file"),
    (b"\x7fELF", "an ELF binary"),
];

/// The path of the copy of the state file kept at each clean shutdown.
pub fn previous_path(path: &Path) -> PathBuf {
    with_suffix(path, ".prev")
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

pub(crate) fn damaged(path: &Path, problem: impl Into<String>) -> StoreError {
    StoreError::Damaged {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Whether the file at `path` exists; if it does, that it starts as a redb file does.
///
/// Runs before redb sees the file: redb initializes an empty file as a new database.
pub(crate) fn exists_and_looks_like_redb(path: &Path) -> Result<bool, StoreError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(StoreError::Mode {
                path: path.into(),
                source,
            })
        }
    };
    // The file holds secrets: a symlink (planted to make vigild chmod or overwrite something else) is
    // never followed. Refused for good, not as a failure a retry could get past.
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(path).map_or("?".into(), |t| t.display().to_string());
        return Err(StoreError::Refused {
            path: path.into(),
            problem: format!(
                "is a symbolic link (to {to}): vigild never opens its state file through one; put the file \
                 itself in its place"
            ),
        });
    }
    if !meta.is_file() {
        return Err(damaged(path, "is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(damaged(
            path,
            "is empty (0 bytes): the state it held is gone, and vigild does not start over in its place",
        ));
    }
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|source| StoreError::Mode {
            path: path.into(),
            source,
        })?;
    let head = &head[..n];
    if head.len() < REDB_MAGIC.len() || head[..REDB_MAGIC.len()] != REDB_MAGIC {
        let what = KNOWN_FORMATS
            .iter()
            .find(|(sig, _)| head.starts_with(sig))
            .map_or("a file of another format".to_string(), |(_, w)| w.to_string());
        let what = if n < REDB_MAGIC.len() && REDB_MAGIC.starts_with(head) {
            format!("truncated to {} bytes", meta.len())
        } else if head.iter().all(|&b| b == 0) {
            "zeroed at its start".to_string()
        } else if head
            .iter()
            .all(|&b| b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b))
        {
            "a text file".to_string()
        } else {
            what
        };
        return Err(damaged(path, format!("is not a redb state file: it is {what}")));
    }
    Ok(true)
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A missing state file is new only when no copy of an earlier one lies beside it: with a `.prev`
/// there, the state existed and the file was lost. Starting empty would also overwrite that good copy
/// with the empty store at the next clean shutdown, losing the way back.
pub(crate) fn refuse_missing_with_previous(path: &Path) -> Result<(), StoreError> {
    let prev = previous_path(path);
    if std::fs::symlink_metadata(&prev).is_ok() {
        return Err(damaged(
            path,
            format!(
                "is missing, but the copy kept at the last clean shutdown ({}) is there: the state existed and \
                 vigild does not start empty in its place; `vigild --recover` brings that copy back",
                prev.display()
            ),
        ));
    }
    Ok(())
}

/// Creates a new, empty redb file at `path` atomically: under a temporary name first, so that a crash
/// while it is made never leaves an empty `path` behind (which the next start would refuse as damaged).
pub(crate) fn create_new(path: &Path) -> Result<(), StoreError> {
    let io_err = |source| StoreError::Mode {
        path: path.into(),
        source,
    };
    let tmp = with_suffix(path, ".new");
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_err)?;
    // Made 0600 above; redb now initializes the empty file.
    let db = Database::create(&tmp).map_err(|source| StoreError::Open {
        path: path.into(),
        source,
    })?;
    drop(db);
    file.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)?;
    sync_dir(path).map_err(io_err)
}

pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()),
        None => std::fs::File::open(".").and_then(|d| d.sync_all()),
    }
}

/// What a checked open found besides the database.
pub(crate) struct Opened {
    pub db: Database,
    /// redb found the newest commit's pages damaged and went back to the commit before it.
    pub rolled_back: bool,
}

/// Opens an existing redb file with redb's integrity check: every page of the committed trees is read
/// and its checksum verified, so a file changed behind redb's back is refused here rather than making
/// a later read panic. A panic inside redb (it asserts on some corrupt pages) is caught and reported.
pub(crate) fn open_verified(path: &Path) -> Result<Opened, StoreError> {
    let rolled_back = Arc::new(AtomicBool::new(false));
    let seen = rolled_back.clone();
    let mut builder = redb::Builder::new();
    builder.set_check_integrity_on_open(true);
    // redb reports progress 0.3 only when the newest commit did not verify and it falls back to the one
    // before: what a power cut during a commit leaves, or a damaged page in the newest tree.
    builder.set_repair_callback(move |s| {
        if (s.progress() - 0.3).abs() < 1e-6 {
            seen.store(true, Ordering::Relaxed);
        }
    });
    let opened = guard(path, || builder.open(path))?.map_err(|e| classify(path, e))?;
    Ok(Opened {
        db: opened,
        rolled_back: rolled_back.load(Ordering::Relaxed),
    })
}

/// Runs `f`, turning a panic into [`StoreError::Damaged`]: redb asserts on some corrupt pages instead of
/// returning an error, and vigild must say which file is at fault rather than exit with a backtrace.
pub(crate) fn guard<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        damaged(path, format!("redb failed reading it ({msg})"))
    })
}

/// Damage is permanent (a retry finds it again); a lock or an I/O error may pass.
fn classify(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::Storage(StorageError::Corrupted(m)) => {
            damaged(path, format!("fails redb's integrity check: {m}"))
        }
        DatabaseError::Storage(StorageError::Io(io)) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            damaged(path, format!("ends before its last page (truncated?): {io}"))
        }
        DatabaseError::RepairAborted => damaged(path, "needs a repair that redb could not make"),
        source => StoreError::Open {
            path: path.into(),
            source,
        },
    }
}

/// Copies the (closed) state file to its `.prev` beside it, atomically: under a temporary name, synced,
/// then renamed over the old copy, so that the `.prev` is always a whole file. Returns the size copied.
pub(crate) fn keep_previous(path: &Path) -> Result<u64, StoreError> {
    let prev = previous_path(path);
    let io_err = |source| StoreError::Keep {
        path: prev.clone(),
        source,
    };
    let tmp = with_suffix(path, ".prev.new");
    let n = copy_private(path, &tmp).map_err(io_err)?;
    // The copy replaces the only way back: it must open as vigild opens the state file (every page's
    // checksum, every record decoded), or the older copy stays. A copy that needed redb to roll back
    // its newest commit is not the file just closed cleanly.
    let verified = match crate::Store::open(&tmp) {
        Ok(s) if s.rolled_back() => Err("its newest commit does not verify".to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = verified {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(std::io::Error::other(format!(
            "the copy does not verify, so the older copy is kept: {e}"
        ))));
    }
    if let Err(e) = std::fs::rename(&tmp, &prev) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    sync_dir(path).map_err(io_err)?;
    Ok(n)
}

/// Copies `src` to a new file `dst` (a stale one is replaced) of mode 0600, synced; never through a
/// symlink at either end, since the state file holds secrets. A failed copy leaves no `dst`.
pub(crate) fn copy_private(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let _ = std::fs::remove_file(dst);
    let mut from = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dst)?;
    // On Linux this copies in the kernel (copy_file_range), or shares the blocks on a file system that can.
    let copied = std::io::copy(&mut from, &mut to).and_then(|n| {
        to.flush()?;
        to.sync_all()?;
        Ok(n)
    });
    if copied.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    copied
}
