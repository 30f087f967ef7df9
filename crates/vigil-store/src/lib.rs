//! vigil's persistent state: one redb file in the state directory.
//!
//! Everything that must survive a `kill -9` of vigild is written here, in one transaction per change,
//! before the change is acknowledged: tags with their policies and processes, and the event log.
//!
//! Invariant: the store knows records, not rules. It does not depend on vigil-core or vigil-proto; vigild
//! converts. Record layouts only ever change through a new schema version and a migration below.

mod records;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

pub use records::*;

/// The schema this build writes. Older files are migrated on open; newer ones are refused.
pub const SCHEMA_VERSION: u64 = 1;

/// How many events are kept; older ones are trimmed.
pub const EVENTS_KEPT: u64 = 100_000;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TAGS: TableDefinition<&str, &[u8]> = TableDefinition::new("tags");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state file {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("the state file {path} has schema {found}, newer than this vigild understands ({supported})")]
    TooNew { path: PathBuf, found: u64, supported: u64 },
    #[error("state store: {0}")]
    Db(#[from] redb::Error),
    #[error("state store record {what}: {source}")]
    Record { what: String, source: postcard::Error },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> StoreError { StoreError::Db(e.into()) }
    })*};
}
db_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Changes written together, atomically.
#[derive(Debug, Default)]
pub struct Batch {
    pub put_tags: Vec<TagRecord>,
    pub delete_tags: Vec<String>,
    pub events: Vec<EventRecord>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.put_tags.is_empty() && self.delete_tags.is_empty() && self.events.is_empty()
    }
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the state file and brings it to the current schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::TooNew {
                        path: path.into(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    });
                }
                // Migrations from older schemas go here, one step per version.
                Some(_) => {}
            }
            tx.open_table(TAGS)?;
            tx.open_table(EVENTS)?;
        }
        tx.commit()?;
        Ok(Store { db })
    }

    pub fn tags(&self) -> Result<Vec<TagRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push(postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
                what: format!("tag {}", k.value()),
                source,
            })?);
        }
        Ok(out)
    }

    /// The sequence number of the newest event ever written (0 for none).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("last_seq")?.map_or(0, |v| v.value()))
    }

    /// Writes a batch in one durable transaction.
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut tags = tx.open_table(TAGS)?;
            for name in &batch.delete_tags {
                tags.remove(name.as_str())?;
            }
            for t in &batch.put_tags {
                let bytes = postcard::to_allocvec(t).map_err(|source| StoreError::Record {
                    what: format!("tag {}", t.name),
                    source,
                })?;
                tags.insert(t.name.as_str(), bytes.as_slice())?;
            }
            if let Some(last) = batch.events.last() {
                let mut events = tx.open_table(EVENTS)?;
                for e in &batch.events {
                    let bytes = postcard::to_allocvec(e).map_err(|source| StoreError::Record {
                        what: format!("event {}", e.seq),
                        source,
                    })?;
                    events.insert(e.seq, bytes.as_slice())?;
                }
                tx.open_table(META)?.insert("last_seq", last.seq)?;
                // Trim in steps so that the cost is spread out.
                if events.len()? > EVENTS_KEPT + 1000 {
                    let cut = last.seq.saturating_sub(EVENTS_KEPT);
                    events.retain_in(..cut, |_, _| false)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Events with a sequence number above `after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in table.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = row?;
            out.push(postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
                what: format!("event {}", k.value()),
                source,
            })?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
