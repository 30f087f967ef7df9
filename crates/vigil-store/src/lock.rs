//! The state dir's lock: vigild holds it while it runs, `recover` while it works, so neither replaces
//! or writes the state file under the other. redb's own lock covers only a file redb opened; a file
//! refused before redb sees it, or a `recover` run with another `--socket`, is not covered by it.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// The lock file's name in the state dir.
pub const LOCK_NAME: &str = "state.lock";

/// Held while alive; the lock goes with the file (also at an exec, since the file is close-on-exec).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Takes the lock of the state dir `dir` without waiting: [`StoreError::Locked`] if another process
/// holds it.
pub fn lock_state_dir(dir: &Path) -> Result<StateLock, StoreError> {
    let path: PathBuf = dir.join(LOCK_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| StoreError::Mode {
            path: path.clone(),
            source,
        })?;
    // A vigild killed a moment ago can leave a child between its fork and its exec, which holds a copy
    // of the lock until the exec closes it (the file is close-on-exec): such a holder lets go within
    // moments, so the lock is asked for again for a while before the state dir is declared in use.
    let end = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StateLock { _file: file }),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
            Err(TryLockError::Error(source)) => return Err(StoreError::Mode { path, source }),
        }
    }
}

/// How long the lock is asked for before the state dir counts as in use (see `lock_state_dir`).
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
