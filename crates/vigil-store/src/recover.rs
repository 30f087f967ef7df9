//! Recovering a damaged state file: salvage record by record, fill what was lost from the copy kept at
//! the last clean shutdown, write a new good file, and keep the damaged one aside.
//!
//! The damaged file is only ever read through a copy: redb repairs a file as it opens it, and the file
//! as it was is the evidence of what went wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableError};

use crate::check::{self, previous_path, with_suffix};
use crate::{
    Batch, CmapRecord, EventRecord, EventRecordV1, MemberRecord, SamRecord, Store, StoreError, TagRecord, TagRecordV3,
    CATEGORIES, CMAP, EVENTS, MEMBERS, META, SAM, SAM_DATA, TAGS,
};

/// What one kind of record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindReport {
    pub kind: &'static str,
    /// Read from the damaged file.
    pub salvaged: u64,
    /// Records of the damaged file that could not be read; None when its table could not even say how
    /// many it held.
    pub lost: Option<u64>,
    /// Taken from the previous copy because the damaged file lost records of this kind: they are as
    /// they were at the last clean shutdown, older than what was lost. They are not counted against
    /// `lost`: a record of the copy may be one deleted since, not one of those lost.
    pub from_previous: u64,
    /// The keys of the records taken from the previous copy, so the operator can check each.
    pub restored: Vec<String>,
}

/// Where the records of the new file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file opened and verified: nothing was done.
    Sound,
    /// Salvaged from the damaged file, gaps filled from the previous copy if there was one.
    Salvaged,
    /// The damaged file could not be read at all: everything comes from the previous copy.
    Previous,
    /// Nothing could be read from either: the new file is empty.
    Nothing,
}

/// What `recover` did, for the operator to read.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub path: PathBuf,
    pub source: Source,
    /// What was wrong with the file.
    pub problem: Option<String>,
    /// Why the damaged file could not be read at all, if it could not.
    pub unreadable: Option<String>,
    /// Where the damaged file now is.
    pub moved_to: Option<PathBuf>,
    /// The previous copy used, with the time it was written (seconds since the epoch).
    pub previous: Option<(PathBuf, u64)>,
    /// Why the previous copy could not be used, when it was needed.
    pub previous_problem: Option<String>,
    pub kinds: Vec<KindReport>,
    /// The sequence number of the newest event, carried over so that event numbers never go back.
    pub last_seq: u64,
    /// When the damaged file's meta table or events could not all be read, the newest number it gave
    /// is unknown: `last_seq` is then the highest number seen plus this jump ([`SEQ_JUMP`]).
    pub seq_jump: Option<u64>,
}

/// How far event numbers move forward when the damaged file's newest number is unknown. vigild numbers
/// events one by one and writes each in a synced transaction: at ten thousand events a second without
/// pause, 2^40 numbers last three and a half years, longer than any run between two clean shutdowns
/// (each of which leaves a `.prev` whose number is a floor); and u64 leaves room for 2^24 such jumps.
/// Readers see a gap in the numbers, as they do when old events are trimmed, never a number twice.
pub const SEQ_JUMP: u64 = 1 << 40;

impl Recovery {
    /// Records of the damaged file that could not be read; None when unknown. Never netted against
    /// [`Recovery::restored_total`]: which of the records restored from the copy were among the lost, and
    /// which had been deleted since the copy was made, cannot be told.
    pub fn lost_total(&self) -> Option<u64> {
        self.kinds.iter().try_fold(0u64, |acc, k| k.lost.map(|l| acc + l))
    }

    /// Records taken from the previous copy.
    pub fn restored_total(&self) -> u64 {
        self.kinds.iter().map(|k| k.from_previous).sum()
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let Some(problem) = &self.problem else {
            return writeln!(f, "{path} opens and verifies: nothing to recover, nothing changed");
        };
        writeln!(f, "{path} was damaged: it {problem}")?;
        if let Some(m) = &self.moved_to {
            writeln!(f, "the damaged file is kept as {}", m.display())?;
        }
        if let Some(u) = &self.unreadable {
            writeln!(f, "nothing could be read from it: {u}")?;
        }
        if let Some((p, t)) = &self.previous {
            writeln!(
                f,
                "records were restored from {} (written at the clean shutdown of {}): they are as they were \
                 then, older than what was lost; the copy may include records deleted since",
                p.display(),
                utc(*t)
            )?;
        }
        if let Some(p) = &self.previous_problem {
            writeln!(f, "the previous copy could not be used: {p}")?;
        }
        writeln!(f, "{:<14} {:>9} {:>9} {:>9}", "kind", "salvaged", "lost", "restored")?;
        for k in &self.kinds {
            let lost = k.lost.map_or("unknown".to_string(), |l| l.to_string());
            writeln!(f, "{:<14} {:>9} {:>9} {:>9}", k.kind, k.salvaged, lost, k.from_previous)?;
        }
        if let Some((_, t)) = &self.previous {
            for k in self.kinds.iter().filter(|k| !k.restored.is_empty()) {
                const SHOWN: usize = 20;
                let mut names = k.restored.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
                if k.restored.len() > SHOWN {
                    names.push_str(&format!(" and {} more", k.restored.len() - SHOWN));
                }
                writeln!(
                    f,
                    "restored {} from the copy of {}, may include records deleted since: {names}",
                    k.kind,
                    utc(*t)
                )?;
            }
        }
        let restored = self.restored_total();
        match (self.lost_total(), &self.source) {
            (_, Source::Nothing) => writeln!(f, "nothing was recovered: {path} is now an empty state file")?,
            (Some(0), _) => writeln!(f, "every record of the damaged file was read into the new {path}")?,
            (Some(n), _) => writeln!(
                f,
                "{n} records of the damaged file could not be read; the new {path} holds the rest"
            )?,
            (None, _) => writeln!(
                f,
                "an unknown number of records of the damaged file could not be read; the new {path} holds the rest"
            )?,
        }
        if restored > 0 {
            writeln!(
                f,
                "{restored} records were restored from the previous copy (not counted against those lost)"
            )?;
        }
        writeln!(f, "last event sequence number: {}", self.last_seq)?;
        if let Some(j) = self.seq_jump {
            writeln!(
                f,
                "the damaged file's newest event number could not be read: numbering moved forward by {j} past \
                 the highest number seen, so that no number is given twice"
            )?;
        }
        Ok(())
    }
}

/// The records of one table that could be read.
struct Part<K, T> {
    got: BTreeMap<K, T>,
    /// Records read whose bytes did not decode.
    bad: u64,
    /// The count the table's header gives, if it could be read.
    total: Option<u64>,
    /// Why reading stopped early.
    stopped: Option<String>,
}

impl<K: Ord + Clone + fmt::Display, T: Clone> Part<K, T> {
    fn empty() -> Self {
        Part {
            got: BTreeMap::new(),
            bad: 0,
            total: Some(0),
            stopped: None,
        }
    }

    /// How many records of the table were not read: None when unknown.
    fn lost(&self) -> Option<u64> {
        let read = self.got.len() as u64 + self.bad;
        match (self.total, &self.stopped) {
            (Some(t), _) => Some(self.bad + t.saturating_sub(read)),
            (None, None) => Some(self.bad),
            (None, Some(_)) => None,
        }
    }

    fn lossy(&self) -> bool {
        self.lost() != Some(0)
    }

    /// Fills the keys this part lacks from `older`; returns the keys filled.
    fn fill_from(&mut self, older: &Part<K, T>) -> Vec<String> {
        let mut filled = Vec::new();
        for (k, v) in &older.got {
            if !self.got.contains_key(k) {
                self.got.insert(k.clone(), v.clone());
                filled.push(k.to_string());
            }
        }
        filled
    }
}

/// Reads a table record by record until the end, or until redb fails or panics; a record that does not
/// decode is counted and skipped.
macro_rules! salvage_table {
    ($tx:expr, $def:expr, |$k:ident, $v:ident| $conv:expr) => {{
        let mut part = Part::empty();
        part.total = None;
        let tx = $tx;
        let run = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            let table = match tx.open_table($def) {
                Ok(t) => t,
                // Tables are added by later schemas: an older file has none to lose.
                Err(TableError::TableDoesNotExist(_)) => {
                    part.total = Some(0);
                    return Ok(());
                }
                Err(e) => return Err(e.to_string()),
            };
            part.total = table.len().ok();
            for row in table.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                let $k = k.value();
                let $v = v.value();
                match $conv {
                    Some((key, val)) => {
                        part.got.insert(key, val);
                    }
                    None => part.bad += 1,
                }
            }
            Ok(())
        }));
        match run {
            Ok(Ok(())) => {}
            Ok(Err(e)) => part.stopped = Some(e),
            Err(_) => part.stopped = Some("redb panicked reading it".into()),
        }
        part
    }};
}

struct Salvage {
    last_seq: u64,
    /// The meta table or the events could not all be read: `last_seq` may be below the file's own.
    seq_unsure: bool,
    tags: Part<String, TagRecord>,
    categories: Part<String, u64>,
    members: Part<i32, MemberRecord>,
    cmap: Part<String, CmapRecord>,
    sam: Part<i32, SamRecord>,
    sam_data: Part<i32, Vec<u8>>,
    events: Part<u64, EventRecord>,
}

impl Salvage {
    fn lossy(&self) -> bool {
        self.tags.lossy()
            || self.categories.lossy()
            || self.members.lossy()
            || self.cmap.lossy()
            || self.sam.lossy()
            || self.sam_data.lossy()
            || self.events.lossy()
    }
}

/// Reads what can be read of the redb file at `path`, through a copy of it.
fn salvage(path: &Path) -> Result<Salvage, String> {
    if !path.exists() {
        return Err("the file is missing".into());
    }
    check::exists_and_looks_like_redb(path).map_err(|e| match e {
        StoreError::Damaged { problem, .. } => format!("it {problem}"),
        e => e.to_string(),
    })?;
    let copy = with_suffix(path, ".salvage");
    check::copy_private(path, &copy).map_err(|e| format!("cannot copy it to {}: {e}", copy.display()))?;
    let out = salvage_copy(&copy);
    let _ = std::fs::remove_file(&copy);
    out
}

fn salvage_copy(copy: &Path) -> Result<Salvage, String> {
    // A plain open: it trusts the pages it is not asked for, which is what lets the readable tables be read.
    let db = match catch_unwind(|| Database::open(copy)) {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return Err(format!("redb cannot open it: {e}")),
        Err(_) => return Err("redb panicked opening it".into()),
    };
    let tx = match catch_unwind(AssertUnwindSafe(|| db.begin_read())) {
        Ok(Ok(tx)) => tx,
        Ok(Err(e)) => return Err(format!("redb cannot read it: {e}")),
        Err(_) => return Err("redb panicked reading it".into()),
    };
    let meta = salvage_table!(&tx, META, |k, v| Some((k.to_string(), v)));
    let schema = meta.got.get("schema").copied().unwrap_or(crate::SCHEMA_VERSION);
    let tags = salvage_table!(&tx, TAGS, |k, v| {
        let t = if schema < 4 {
            postcard::from_bytes::<TagRecordV3>(v)
                .ok()
                .map(|t| TagRecord::from(crate::schema6::TagRecordV5::from(crate::schema5::TagRecordV4::from(t))))
        } else if schema < 5 {
            postcard::from_bytes::<crate::schema5::TagRecordV4>(v)
                .ok()
                .map(|t| TagRecord::from(crate::schema6::TagRecordV5::from(t)))
        } else if schema < 6 {
            postcard::from_bytes::<crate::schema6::TagRecordV5>(v)
                .ok()
                .map(TagRecord::from)
        } else {
            postcard::from_bytes::<TagRecord>(v).ok()
        };
        t.map(|t| (k.to_string(), t))
    });
    let categories = salvage_table!(&tx, CATEGORIES, |k, v| Some((k.to_string(), v)));
    let members = salvage_table!(&tx, MEMBERS, |k, v| postcard::from_bytes::<MemberRecord>(v)
        .ok()
        .map(|m| (k, m)));
    let cmap = salvage_table!(&tx, CMAP, |k, v| postcard::from_bytes::<CmapRecord>(v)
        .ok()
        .map(|c| (k.to_string(), c)));
    let sam = salvage_table!(&tx, SAM, |k, v| postcard::from_bytes::<SamRecord>(v)
        .ok()
        .map(|r| (k, r)));
    let sam_data = salvage_table!(&tx, SAM_DATA, |k, v| Some((k, v.to_vec())));
    let events = salvage_table!(&tx, EVENTS, |k, v| {
        let e = if schema < 2 {
            postcard::from_bytes::<EventRecordV1>(v).ok().map(EventRecord::from)
        } else {
            postcard::from_bytes::<EventRecord>(v).ok()
        };
        e.map(|e| (k, e))
    });
    let newest = events.got.keys().next_back().copied().unwrap_or(0);
    Ok(Salvage {
        last_seq: meta.got.get("last_seq").copied().unwrap_or(0).max(newest),
        seq_unsure: meta.lossy() || events.lossy(),
        tags,
        categories,
        members,
        cmap,
        sam,
        sam_data,
        events,
    })
}

/// Recovers the state file at `path` (vigild is not running on it).
///
/// A file that opens and verifies is left alone ([`Source::Sound`]). Otherwise every table of the damaged
/// file is read record by record, skipping what fails; a kind of record that lost something is filled
/// from the copy kept at the last clean shutdown ([`previous_path`]), and when the damaged file cannot be
/// read at all, everything comes from that copy. The records are written to a new file, the damaged
/// file is kept beside it as `state.redb.damaged-TIME`, and the new file takes its place.
pub fn recover(path: &Path) -> Result<Recovery, StoreError> {
    let err = |problem: String| StoreError::Recover {
        path: path.into(),
        problem,
    };
    // Held to the end: no vigild starts on the file while it is read and replaced.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let _lock = crate::lock_state_dir(dir)?;
    let opened = if std::fs::symlink_metadata(path).is_ok() {
        open_copy(path)
    } else if previous_path(path).exists() {
        Err(check::damaged(path, "is missing"))
    } else {
        return Err(err(
            "it is missing, and there is no previous copy to take its place".into()
        ));
    };
    let problem = match opened {
        Ok(_) => {
            return Ok(Recovery {
                path: path.into(),
                source: Source::Sound,
                problem: None,
                unreadable: None,
                moved_to: None,
                previous: None,
                previous_problem: None,
                kinds: Vec::new(),
                last_seq: 0,
                seq_jump: None,
            })
        }
        Err(StoreError::Damaged { problem, .. }) => problem,
        Err(e) => return Err(e),
    };
    let current = salvage(path);
    let needs_previous = current.as_ref().map_or(true, Salvage::lossy);
    let prev_path = previous_path(path);
    let (previous, previous_problem) = if needs_previous && prev_path.exists() {
        match salvage(&prev_path) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        }
    } else if needs_previous {
        (
            None,
            Some(format!("there is none ({} is missing)", prev_path.display())),
        )
    } else {
        (None, None)
    };
    let (unreadable, mut s, source) = match (current, previous.is_some()) {
        (Ok(s), _) => (None, s, Source::Salvaged),
        (Err(e), true) => (Some(e), empty_salvage(), Source::Previous),
        (Err(e), false) => (Some(e), empty_salvage(), Source::Nothing),
    };
    let whole = unreadable.is_some();
    let mut kinds = Vec::new();
    macro_rules! kind {
        ($name:expr, $field:ident) => {{
            let lost = if whole { None } else { s.$field.lost() };
            let restored = match &previous {
                Some(p) if whole || s.$field.lossy() => s.$field.fill_from(&p.$field),
                _ => Vec::new(),
            };
            let from_previous = restored.len() as u64;
            kinds.push(KindReport {
                kind: $name,
                salvaged: s.$field.got.len() as u64 - from_previous,
                lost,
                from_previous,
                restored,
            });
        }};
    }
    kind!("tags", tags);
    kind!("categories", categories);
    kind!("members", members);
    kind!("cmap keys", cmap);
    kind!("sam apps", sam);
    kind!("sam data", sam_data);
    kind!("events", events);
    let prev_seq = previous.as_ref().map_or(0, |p| p.last_seq);
    let seen = s
        .last_seq
        .max(prev_seq)
        .max(s.events.got.keys().next_back().copied().unwrap_or(0));
    // A file read only in part may have given numbers above any seen: numbers handed out once (to
    // `vigil events` readers, to cluster peers) must never be handed out again.
    let seq_jump = (whole || s.seq_unsure).then_some(SEQ_JUMP);
    let last_seq = seen.saturating_add(seq_jump.unwrap_or(0));

    let fresh = with_suffix(path, ".recovered");
    let _ = std::fs::remove_file(&fresh);
    {
        let store = Store::open(&fresh)?;
        // Every event read is written; vigild trims to its own setting with its next commit.
        store.set_events_kept(u64::MAX / 2);
        let batch = Batch {
            put_tags: std::mem::take(&mut s.tags.got).into_values().collect(),
            put_categories: std::mem::take(&mut s.categories.got).into_iter().collect(),
            put_members: std::mem::take(&mut s.members.got).into_values().collect(),
            put_cmap: std::mem::take(&mut s.cmap.got).into_iter().collect(),
            put_sam: std::mem::take(&mut s.sam.got).into_values().collect(),
            put_sam_data: std::mem::take(&mut s.sam_data.got)
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect(),
            events: std::mem::take(&mut s.events.got).into_values().collect(),
            ..Default::default()
        };
        store.commit(&batch)?;
        store.set_last_seq(last_seq)?;
    }
    let moved_to = if path.exists() {
        let aside = aside_name(path);
        // A second name first, then the new file renamed over the first: at every moment `path` names
        // a whole file, the damaged one or the new one, never nothing (which would start empty).
        std::fs::hard_link(path, &aside).map_err(|e| err(format!("cannot keep it as {}: {e}", aside.display())))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&fresh, path).map_err(|e| err(format!("cannot put {} in its place: {e}", fresh.display())))?;
    check::sync_dir(path).map_err(|e| err(format!("cannot sync its directory: {e}")))?;
    let prev_time = std::fs::metadata(&prev_path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let used_previous = kinds.iter().any(|k| k.from_previous > 0) || source == Source::Previous;
    Ok(Recovery {
        path: path.into(),
        source,
        problem: Some(problem),
        unreadable,
        moved_to,
        previous: used_previous.then_some((prev_path, prev_time)),
        previous_problem,
        kinds,
        last_seq,
        seq_jump,
    })
}

/// Opens the file at `path` as vigild would, through a copy: redb's open commits a repair or a
/// migration, and the damaged file must stay byte for byte as it was, the evidence of what went wrong.
fn open_copy(path: &Path) -> Result<(), StoreError> {
    // What is refused before redb sees the file needs no copy (and a symlink must not be copied).
    check::exists_and_looks_like_redb(path)?;
    let copy = with_suffix(path, ".check");
    check::copy_private(path, &copy).map_err(|e| StoreError::Recover {
        path: path.into(),
        problem: format!("cannot copy it to {}: {e}", copy.display()),
    })?;
    let opened = Store::open(&copy).map(drop).map_err(|e| match e {
        StoreError::Damaged { problem, .. } => check::damaged(path, problem),
        e => e,
    });
    let _ = std::fs::remove_file(&copy);
    opened
}

fn empty_salvage() -> Salvage {
    Salvage {
        last_seq: 0,
        seq_unsure: true,
        tags: Part::empty(),
        categories: Part::empty(),
        members: Part::empty(),
        cmap: Part::empty(),
        sam: Part::empty(),
        sam_data: Part::empty(),
        events: Part::empty(),
    }
}

/// `state.redb.damaged-20261202T123456Z`, with a counter if that name is taken.
fn aside_name(path: &Path) -> PathBuf {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = with_suffix(path, &format!(".damaged-{}", utc_compact(now)));
    let mut name = base.clone();
    let mut n = 1;
    while name.exists() {
        name = with_suffix(&base, &format!(".{n}"));
        n += 1;
    }
    name
}

/// (year, month, day, hour, minute, second) in UTC of seconds since the epoch (Howard Hinnant's
/// days-to-civil).
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

fn utc(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

fn utc_compact(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc_compact(1_796_214_896), "20261202T123456Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
