//! vigil's persistent state: one redb file in the state directory.
//!
//! Everything that must survive a `kill -9` of vigild is written here, in one transaction per change,
//! before the change is acknowledged: tags with their policies and processes, and the event log.
//!
//! Invariant: the store knows records, not rules. It does not depend on vigil-core or vigil-proto; vigild
//! converts. Record layouts only ever change through a new schema version and a migration below.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

mod check;
mod lock;
mod migrate;
mod records;
mod recover;
mod schema5;
mod schema6;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

pub use check::previous_path;
pub use lock::{lock_state_dir, StateLock, LOCK_NAME};
pub use records::*;
pub use recover::{recover, KindReport, Recovery, Source, SEQ_JUMP};

/// The schema this build writes. Older files are migrated on open; newer ones are refused.
pub const SCHEMA_VERSION: u64 = 6;

/// How many events are kept by default; older ones are trimmed.
pub const EVENTS_KEPT: u64 = 100_000;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TAGS: TableDefinition<&str, &[u8]> = TableDefinition::new("tags");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CATEGORIES: TableDefinition<&str, u64> = TableDefinition::new("psm_categories");
const MEMBERS: TableDefinition<i32, &[u8]> = TableDefinition::new("psm_members");
const CMAP: TableDefinition<&str, &[u8]> = TableDefinition::new("cmap");
/// SAM applications by supervisor pid, and their data blobs (apart: a blob can be large, the record changes
/// often). New tables are additive: no schema version of their own.
/// A SAM record and its data blob, if any.
pub type SamWithData = (SamRecord, Option<Vec<u8>>);

const SAM: TableDefinition<i32, &[u8]> = TableDefinition::new("sam");
const SAM_DATA: TableDefinition<i32, &[u8]> = TableDefinition::new("sam_data");

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
    #[error("the state file {path} is not open: reopening it failed before")]
    Closed { path: PathBuf },
    #[error("cannot set the mode of the state file {path}: {source}")]
    Mode { path: PathBuf, source: std::io::Error },
    /// The file exists but cannot be trusted: a permanent failure, which `recover` deals with.
    #[error("the state file {path} is damaged: it {problem}")]
    Damaged { path: PathBuf, problem: String },
    #[error("cannot keep a copy of the state file as {path}: {source}")]
    Keep { path: PathBuf, source: std::io::Error },
    #[error("cannot recover the state file {path}: {problem}")]
    Recover { path: PathBuf, problem: String },
    /// The path is not one vigild opens (a symlink): permanent, like damage, but `recover` cannot help.
    #[error("the state file {path} is refused: it {problem}")]
    Refused { path: PathBuf, problem: String },
    #[error("the state dir is in use: another process (a running vigild, or vigild --recover) holds {path}")]
    Locked { path: PathBuf },
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
    /// PSM categories and when they were created.
    pub put_categories: Vec<(String, u64)>,
    pub delete_categories: Vec<String>,
    pub put_members: Vec<MemberRecord>,
    pub delete_members: Vec<i32>,
    /// Persistent CMAP keys.
    pub put_cmap: Vec<(String, CmapRecord)>,
    pub delete_cmap: Vec<String>,
    /// SAM records; deleting one deletes its data too.
    pub put_sam: Vec<SamRecord>,
    pub delete_sam: Vec<i32>,
    /// SAM data blobs (None: delete).
    pub put_sam_data: Vec<(i32, Option<Vec<u8>>)>,
}

impl Batch {
    /// Adds the changes of a later batch, so that committing `self` afterwards does what committing the
    /// two one after the other would. A record written again replaces its earlier version, so what is
    /// kept while the file cannot be written grows with the number of records, not of changes; events
    /// are kept beyond `keep_events` only as far as a commit would keep them.
    pub fn append(&mut self, later: Batch, keep_events: u64) {
        fn merge<T, K: PartialEq>(
            deletes: &mut Vec<K>,
            puts: &mut Vec<T>,
            later_deletes: Vec<K>,
            later_puts: Vec<T>,
            key: impl Fn(&T) -> &K,
        ) {
            puts.retain(|p| !later_deletes.contains(key(p)) && !later_puts.iter().any(|l| key(l) == key(p)));
            for d in later_deletes {
                if !deletes.contains(&d) {
                    deletes.push(d);
                }
            }
            puts.extend(later_puts);
        }
        merge(
            &mut self.delete_tags,
            &mut self.put_tags,
            later.delete_tags,
            later.put_tags,
            |t| &t.name,
        );
        merge(
            &mut self.delete_categories,
            &mut self.put_categories,
            later.delete_categories,
            later.put_categories,
            |c| &c.0,
        );
        merge(
            &mut self.delete_members,
            &mut self.put_members,
            later.delete_members,
            later.put_members,
            |m| &m.pid,
        );
        merge(
            &mut self.delete_cmap,
            &mut self.put_cmap,
            later.delete_cmap,
            later.put_cmap,
            |c| &c.0,
        );
        // Deleting a SAM record deletes its data too; data written later stays.
        self.put_sam_data
            .retain(|(p, _)| !later.delete_sam.contains(p) && !later.put_sam_data.iter().any(|(l, _)| l == p));
        self.put_sam_data.extend(later.put_sam_data);
        merge(
            &mut self.delete_sam,
            &mut self.put_sam,
            later.delete_sam,
            later.put_sam,
            |r| &r.pid,
        );
        self.events.extend(later.events);
        let keep = usize::try_from(keep_events.max(1)).unwrap_or(usize::MAX);
        if self.events.len() > keep {
            self.events.drain(..self.events.len() - keep);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.put_tags.is_empty()
            && self.delete_tags.is_empty()
            && self.events.is_empty()
            && self.put_categories.is_empty()
            && self.delete_categories.is_empty()
            && self.put_members.is_empty()
            && self.delete_members.is_empty()
            && self.put_cmap.is_empty()
            && self.delete_cmap.is_empty()
            && self.put_sam.is_empty()
            && self.delete_sam.is_empty()
            && self.put_sam_data.is_empty()
    }
}

pub struct Store {
    path: PathBuf,
    /// None only after a reopen failed; the next reopen tries again.
    db: Option<Database>,
    fresh: bool,
    rolled_back: bool,
    events_kept: std::cell::Cell<u64>,
}

impl Store {
    /// Opens (or creates) the state file and brings it to the current schema.
    ///
    /// The file holds every tag's environment and the CMAP keys that `read_gid` hides, so it is made
    /// readable by its owner alone: created 0600, and an existing file (from an older vigild that left it
    /// 0644) is brought to 0600 too.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if !check::exists_and_looks_like_redb(path)? {
            check::refuse_missing_with_previous(path)?;
            check::create_new(path)?;
        }
        secure_file(path)?;
        let opened = check::open_verified(path)?;
        let db = &opened.db;
        let fresh = check::guard(path, || migrate::migrate(path, db))?.map_err(|e| as_damage(path, e))?;
        // Every record is decoded once now, so that one that no longer decodes is found before anything
        // runs rather than in the middle of a restore.
        let store = Store {
            path: path.into(),
            db: Some(opened.db),
            fresh,
            rolled_back: opened.rolled_back,
            events_kept: std::cell::Cell::new(EVENTS_KEPT),
        };
        check::guard(path, || store.validate())?.map_err(|e| as_damage(path, e))?;
        Ok(store)
    }

    /// Decodes every record of every table.
    fn validate(&self) -> Result<(), StoreError> {
        self.tags()?;
        self.categories()?;
        self.members()?;
        self.cmap()?;
        self.sam()?;
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        for row in table.iter()? {
            let (k, v) = row?;
            postcard::from_bytes::<EventRecord>(v.value()).map_err(|source| StoreError::Record {
                what: format!("event {}", k.value()),
                source,
            })?;
        }
        Ok(())
    }

    /// Closes the file and keeps a copy of it as `state.redb.prev` (see [`previous_path`]): the way back
    /// when the file is damaged later. Returns the bytes copied. The store is closed afterwards.
    pub fn close_keeping_previous(&mut self) -> Result<u64, StoreError> {
        if let Some(db) = self.db.take() {
            // A clean close records redb's allocator state, so that the copy opens without a repair.
            db.close().map_err(|source| StoreError::Open {
                path: self.path.clone(),
                source,
            })?;
        }
        check::keep_previous(&self.path)
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Closed {
            path: self.path.clone(),
        })
    }

    /// Drops the database and opens the file again.
    ///
    /// redb refuses every write after one failed I/O ("Previous I/O error occurred"), even once the cause
    /// (a full disk) is gone: only a new `Database` writes again. The file stays consistent, since redb's
    /// commits are atomic; opening it repairs what the failed commit left.
    pub fn reopen(&mut self) -> Result<(), StoreError> {
        // The old handle holds the file's lock: it must be gone before the file is opened again.
        self.db = None;
        self.db = Some(open_db(&self.path)?);
        Ok(())
    }

    /// Writes a transaction that changes nothing visible: whether the file can be written right now.
    pub fn probe(&self) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write()?;
        tx.open_table(META)?.insert("probe", 0)?;
        tx.commit()?;
        Ok(())
    }

    pub fn events_kept(&self) -> u64 {
        self.events_kept.get()
    }

    /// How many of the newest events to keep (at least 1); older ones are trimmed as new ones come.
    pub fn set_events_kept(&self, n: u64) {
        self.events_kept.set(n.max(1));
    }

    /// Whether the open found the newest transaction's pages damaged and went back to the one before it:
    /// what a power cut during a commit leaves (that commit was never acknowledged), or a damaged page.
    pub fn rolled_back(&self) -> bool {
        self.rolled_back
    }

    /// Whether this open created the state file (the first start on a state dir).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// PSM categories with their creation times.
    pub fn categories(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(CATEGORIES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    pub fn members(&self) -> Result<Vec<MemberRecord>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(MEMBERS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push(postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
                what: format!("member {}", k.value()),
                source,
            })?);
        }
        Ok(out)
    }

    /// The SAM records, each with its data blob.
    pub fn sam(&self) -> Result<Vec<SamWithData>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(SAM)?;
        let data = tx.open_table(SAM_DATA)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let r: SamRecord = postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
                what: format!("sam process {}", k.value()),
                source,
            })?;
            let blob = data.get(k.value())?.map(|b| b.value().to_vec());
            out.push((r, blob));
        }
        Ok(out)
    }

    /// The persistent CMAP keys.
    pub fn cmap(&self) -> Result<Vec<(String, CmapRecord)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(CMAP)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((
                k.value().to_string(),
                postcard::from_bytes(v.value()).map_err(|source| StoreError::Record {
                    what: format!("cmap key {}", k.value()),
                    source,
                })?,
            ));
        }
        Ok(out)
    }

    /// The oldest event kept (0 when there is none): history before it is gone.
    pub fn first_seq(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        let first = table.first()?.map_or(0, |(k, _)| k.value());
        Ok(first)
    }

    pub fn tags(&self) -> Result<Vec<TagRecord>, StoreError> {
        let tx = self.db()?.begin_read()?;
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
        let tx = self.db()?.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("last_seq")?.map_or(0, |v| v.value()))
    }

    /// Sets the sequence number of the newest event written, so that event numbers never go back (a
    /// recovered file may have lost its newest events).
    pub(crate) fn set_last_seq(&self, seq: u64) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write()?;
        tx.open_table(META)?.insert("last_seq", seq)?;
        tx.commit()?;
        Ok(())
    }

    /// Writes a batch in one durable transaction.
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.commit_all(std::slice::from_ref(batch))
    }

    /// Writes batches in one durable transaction, each as if committed after the one before it: the
    /// changes kept while the file could not be written, followed by the newest.
    pub fn commit_all(&self, batches: &[Batch]) -> Result<(), StoreError> {
        if batches.iter().all(Batch::is_empty) {
            return Ok(());
        }
        let tx = self.db()?.begin_write()?;
        for batch in batches {
            self.write(&tx, batch)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn write(&self, tx: &redb::WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
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
            let mut cats = tx.open_table(CATEGORIES)?;
            for c in &batch.delete_categories {
                cats.remove(c.as_str())?;
            }
            for (c, t) in &batch.put_categories {
                cats.insert(c.as_str(), *t)?;
            }
            let mut members = tx.open_table(MEMBERS)?;
            for p in &batch.delete_members {
                members.remove(*p)?;
            }
            for m in &batch.put_members {
                let bytes = postcard::to_allocvec(m).map_err(|source| StoreError::Record {
                    what: format!("member {}", m.pid),
                    source,
                })?;
                members.insert(m.pid, bytes.as_slice())?;
            }
            let mut cmap = tx.open_table(CMAP)?;
            for k in &batch.delete_cmap {
                cmap.remove(k.as_str())?;
            }
            for (k, v) in &batch.put_cmap {
                let bytes = postcard::to_allocvec(v).map_err(|source| StoreError::Record {
                    what: format!("cmap key {k}"),
                    source,
                })?;
                cmap.insert(k.as_str(), bytes.as_slice())?;
            }
            let mut sam = tx.open_table(SAM)?;
            let mut sam_data = tx.open_table(SAM_DATA)?;
            for p in &batch.delete_sam {
                sam.remove(*p)?;
                sam_data.remove(*p)?;
            }
            for r in &batch.put_sam {
                let bytes = postcard::to_allocvec(r).map_err(|source| StoreError::Record {
                    what: format!("sam process {}", r.pid),
                    source,
                })?;
                sam.insert(r.pid, bytes.as_slice())?;
            }
            for (p, d) in &batch.put_sam_data {
                match d {
                    Some(d) => {
                        sam_data.insert(*p, d.as_slice())?;
                    }
                    None => {
                        sam_data.remove(*p)?;
                    }
                }
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
                let kept = self.events_kept.get();
                if events.len()? > kept + kept.min(1000) {
                    let cut = last.seq.saturating_sub(kept);
                    events.retain_in(..cut, |_, _| false)?;
                }
            }
        }
        Ok(())
    }

    /// Events with a sequence number above `after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let tx = self.db()?.begin_read()?;
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

/// A record that does not decode, or a storage error while reading, makes the whole file untrusted at open.
fn as_damage(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Record { what, source } => {
            check::damaged(path, format!("holds a {what} that does not decode ({source})"))
        }
        StoreError::Db(redb::Error::Corrupted(m)) => check::damaged(path, format!("fails redb's integrity check: {m}")),
        e => e,
    }
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::open(path).map_err(|source| StoreError::Open {
        path: path.into(),
        source,
    })
}

/// Creates the file 0600 if it is missing (redb would create it with the umask's mode), and gives an
/// existing one mode 0600.
fn secure_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode_err = |source| StoreError::Mode {
        path: path.into(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // The state file is never a symlink planted to make vigild chmod something else.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(mode_err)?;
    let loose = f.metadata().map_err(mode_err)?.permissions().mode() & 0o077 != 0;
    if !loose {
        return f
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(mode_err);
    }
    // A file others could read (an older vigild made it 0644) may be open in another user's process
    // still: a chmod would leave that descriptor reading every later secret. The state moves to a new
    // file (a new inode) instead, and the old one, renamed over, gets no more writes.
    let tmp = path.with_extension("redb.private");
    let _ = std::fs::remove_file(&tmp);
    let mut fresh = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(mode_err)?;
    std::io::copy(&mut &f, &mut fresh).map_err(mode_err)?;
    fresh.sync_all().map_err(mode_err)?;
    std::fs::rename(&tmp, path).map_err(mode_err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(mode_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod tests;
