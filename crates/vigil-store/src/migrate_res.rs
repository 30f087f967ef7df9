//! Schema 4 to 5: tags gain their resources (none for the migrated ones).

use redb::ReadableTable;

use crate::{StoreError, TagRecord, TagRecordV4, TAGS};

pub(crate) fn migrate_4_to_5(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut tags = tx.open_table(TAGS)?;
    let mut rewritten = Vec::new();
    for row in tags.iter()? {
        let (k, v) = row?;
        let old: TagRecordV4 = postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
            what: format!("tag {} (schema 4)", k.value()),
            source,
        })?;
        rewritten.push(TagRecord::from(old));
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
