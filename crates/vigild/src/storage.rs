//! The state file as the loop uses it: this step's batch, the changes kept in memory while the file
//! cannot be written, and the failure that refuses changes until it can.

use std::time::Duration;

use tracing::{error, info, warn};
use vigil_proto::WireError;
use vigil_store::{Batch, Store};

/// The store and what is on its way into it.
pub struct Storage {
    pub db: Store,
    /// This step's changes, committed at its end.
    pub batch: Batch,
    /// Changes made in memory whose commit failed, merged in order: written before anything newer as soon
    /// as the state file can be written again.
    pub unpersisted: Batch,
    /// Set while the state file cannot be written: changes are refused at the door until a write works.
    pub failing: Option<StoreFailure>,
}

/// Why the state file cannot be written, and when a write was last tried.
pub struct StoreFailure {
    pub reason: String,
    pub tried: std::time::Instant,
}

/// How often the loop tries to write again on its own while the state file cannot be written: each try
/// reopens the file (redb repairs it after a failed commit), so not at every step.
pub const STORE_RETRY: Duration = Duration::from_secs(1);

/// A request that needs the store tries again sooner, so that a change made right after space came back
/// is not refused; still bounded, so that a flood of requests cannot turn into a flood of reopens.
pub const STORE_RETRY_ON_REQUEST: Duration = Duration::from_millis(100);

impl Storage {
    pub fn new(db: Store) -> Storage {
        Storage {
            db,
            batch: Batch::default(),
            unpersisted: Batch::default(),
            failing: None,
        }
    }

    /// Writes this step's changes, after any kept from steps whose commit failed. On failure the changes
    /// are kept (the events stay in `batch`, to be pushed: they happened) and the reason is returned.
    pub fn persist(&mut self, batch: &mut Batch) -> Result<(), String> {
        if self.failing.is_none() {
            if batch.is_empty() {
                return Ok(());
            }
            match self.db.commit(batch) {
                Ok(()) => return Ok(()),
                Err(e) => warn!("cannot write the state file ({e}); reopening it"),
            }
        }
        if !batch.is_empty() {
            let kept = std::mem::take(batch);
            batch.events = kept.events.clone();
            let keep = self.db.events_kept();
            self.unpersisted.append(kept, keep);
        }
        match &self.failing {
            Some(f) if f.tried.elapsed() < STORE_RETRY => Err(f.reason.clone()),
            _ => self.recover(),
        }
    }

    /// Reopens the state file (redb refuses every write after one failed I/O, even once space is back)
    /// and writes the changes kept in memory, or, with none kept, a probe.
    pub fn recover(&mut self) -> Result<(), String> {
        // A handle that failed once stays poisoned: every try starts with a new one.
        let written = self.db.reopen().and_then(|()| {
            if self.unpersisted.is_empty() {
                self.db.probe()
            } else {
                self.db.commit(&self.unpersisted)
            }
        });
        match written {
            Ok(()) => {
                self.unpersisted = Batch::default();
                if let Some(f) = self.failing.take() {
                    info!(
                        "the state file can be written again, and the changes kept in memory are stored; the \
                         last failure was: {}",
                        f.reason
                    );
                }
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                if self.failing.is_none() {
                    error!("cannot write the state file: {reason}; changes are refused until it can be written");
                }
                self.failing = Some(StoreFailure {
                    reason: reason.clone(),
                    tried: std::time::Instant::now(),
                });
                Err(reason)
            }
        }
    }

    /// While the state file cannot be written, a change is refused before it is made, so that nothing is
    /// done that a restart would forget. A request first tries to write again (at most every 100 ms): a
    /// change right after space came back goes through.
    pub fn refuse_unstorable(&mut self, what: &str) -> Result<(), WireError> {
        let Some(f) = &self.failing else {
            return Ok(());
        };
        if f.tried.elapsed() >= STORE_RETRY_ON_REQUEST && self.recover().is_ok() {
            return Ok(());
        }
        let reason = self.failing.as_ref().map_or_else(String::new, |f| f.reason.clone());
        Err(WireError::new(
            vigil_proto::ErrorCode::Internal,
            format!("the state store cannot be written: {reason}; the change was not made ({what})"),
        ))
    }
}
