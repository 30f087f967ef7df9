//! Bringing a state file to the current schema: one step per version, oldest first.

use std::path::Path;

use redb::{Database, ReadableTable, TableHandle};

use crate::{
    check, EventRecord, EventRecordV1, StoreError, TagRecordV3, CATEGORIES, CMAP, EVENTS, MEMBERS, META, SAM, SAM_DATA,
    SCHEMA_VERSION, TAGS,
};

/// Brings an opened file to the current schema; returns whether it was new (no schema yet).
pub(crate) fn migrate(path: &Path, db: &Database) -> Result<bool, StoreError> {
    let tx = db.begin_write()?;
    let fresh;
    {
        let mut meta = tx.open_table(META)?;
        let found = meta.get("schema")?.map(|v| v.value());
        fresh = found.is_none();
        match found {
            None => {
                // A redb file without vigil's schema but with tables is some other program's database.
                drop(meta);
                let foreign: Vec<String> = tx
                    .list_tables()?
                    .map(|t| t.name().to_string())
                    .filter(|n| n != "meta")
                    .collect();
                if !foreign.is_empty() {
                    return Err(check::damaged(
                        path,
                        format!("is a redb file without vigil's schema, with tables {foreign:?}"),
                    ));
                }
                meta = tx.open_table(META)?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::TooNew {
                    path: path.into(),
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            // One step per version, oldest first.
            Some(v) => {
                if v < 2 {
                    migrate_1_to_2(&tx)?;
                }
                // Schema 3 only adds the cmap table, created below.
                if v < 4 {
                    migrate_3_to_4(&tx)?;
                }
                if v < 5 {
                    crate::schema5::migrate_4_to_5(&tx)?;
                }
                if v < 6 {
                    crate::schema6::migrate_5_to_6(&tx)?;
                }
            }
        }
        meta.insert("schema", SCHEMA_VERSION)?;
        tx.open_table(TAGS)?;
        tx.open_table(EVENTS)?;
        tx.open_table(CATEGORIES)?;
        tx.open_table(MEMBERS)?;
        tx.open_table(CMAP)?;
        tx.open_table(SAM)?;
        tx.open_table(SAM_DATA)?;
    }
    tx.commit()?;
    Ok(fresh)
}

/// Schema 2 adds the PSM tables (created on open) and gives events a node and typed attributes.
fn migrate_1_to_2(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut events = tx.open_table(EVENTS)?;
    let mut rewritten = Vec::new();
    for row in events.iter()? {
        let (k, v) = row?;
        let old: EventRecordV1 = postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
            what: format!("event {} (schema 1)", k.value()),
            source,
        })?;
        rewritten.push(EventRecord::from(old));
    }
    for e in rewritten {
        let bytes = postcard::to_allocvec(&e).map_err(|source| StoreError::Record {
            what: format!("event {}", e.seq),
            source,
        })?;
        events.insert(e.seq, bytes.as_slice())?;
    }
    Ok(())
}

/// Schema 4 gives tags their health checks (none for the migrated ones) and a new stop mode.
fn migrate_3_to_4(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut tags = tx.open_table(TAGS)?;
    let mut rewritten = Vec::new();
    for row in tags.iter()? {
        let (k, v) = row?;
        let old: TagRecordV3 = postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
            what: format!("tag {} (schema 3)", k.value()),
            source,
        })?;
        rewritten.push(crate::schema5::TagRecordV4::from(old));
    }
    for t in rewritten {
        let bytes = postcard::to_allocvec(&t).map_err(|source| StoreError::Record {
            what: format!("tag {}", t.name),
            source,
        })?;
        tags.insert(t.name.as_str(), bytes.as_slice())?;
    }
    Ok(())
}
