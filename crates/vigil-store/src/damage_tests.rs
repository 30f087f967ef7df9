//! Damaged state files: refused at open, recovered by `recover`.

use std::os::unix::fs::PermissionsExt;

use super::tests::{event, tag};
use super::*;

/// A store with `n` tags named `tagN-marker`, two CMAP keys and some events, cleanly closed, with its
/// previous copy kept.
fn filled(path: &Path, n: usize) {
    let mut s = Store::open(path).unwrap();
    s.commit(&Batch {
        put_tags: (0..n).map(|i| tag(&format!("tag{i}-marker"))).collect(),
        put_cmap: vec![
            ("k1".into(), CmapRecord::U32(1)),
            ("k2".into(), CmapRecord::Str("v".into())),
        ],
        events: (1..=20).map(event).collect(),
        ..Default::default()
    })
    .unwrap();
    s.close_keeping_previous().unwrap();
}

fn problem(r: Result<Store, StoreError>) -> String {
    match r {
        Err(StoreError::Damaged { problem, .. }) => problem,
        Err(e) => panic!("not refused as damaged: {e}"),
        Ok(_) => panic!("a damaged file opened"),
    }
}

/// Zeroes every 4 KiB page holding `needle`: the live copy of a record is among them.
fn zero_pages_with(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let mut pages = std::collections::BTreeSet::new();
    for i in 0..bytes.len().saturating_sub(needle.len()) {
        if &bytes[i..i + needle.len()] == needle {
            pages.insert(i / 4096);
        }
    }
    for p in &pages {
        bytes[p * 4096..(p + 1) * 4096].fill(0);
    }
    std::fs::write(path, bytes).unwrap();
    pages.len()
}

#[test]
fn a_missing_file_is_new_and_made_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let s = Store::open(&path).unwrap();
    assert!(s.is_fresh());
    assert!(!dir.path().join("state.redb.new").exists());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn an_empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(&path, b"").unwrap();
    let p = problem(Store::open(&path));
    assert!(p.contains("empty"), "{p}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the file is left as it was");
}

#[test]
fn files_of_other_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(&path, b"tags = []\n").unwrap();
    assert!(problem(Store::open(&path)).contains("a text file"));
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.resize(8192, 0);
    std::fs::write(&path, &sqlite).unwrap();
    assert!(problem(Store::open(&path)).contains("SQLite"));
    // A redb file of some other program: no schema of vigil's, tables of its own.
    std::fs::remove_file(&path).unwrap();
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TableDefinition::<u64, u64>::new("theirs"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        tx.commit().unwrap();
    }
    assert!(problem(Store::open(&path)).contains("theirs"));
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 200);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    let before = std::fs::read(&path).unwrap();
    problem(Store::open(&path));
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the refused file is left as it was"
    );
    f.set_len(5).unwrap();
    assert!(problem(Store::open(&path)).contains("truncated"));
}

#[test]
fn a_zeroed_page_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 200);
    assert!(zero_pages_with(&path, b"tag150-marker") > 0);
    let before = std::fs::read(&path).unwrap();
    problem(Store::open(&path));
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the refused file is left as it was"
    );
}

#[test]
fn a_record_that_does_not_decode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 3);
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TAGS).unwrap().insert("bad", &[0xff_u8; 3][..]).unwrap();
        tx.commit().unwrap();
    }
    let p = problem(Store::open(&path));
    assert!(p.contains("tag bad that does not decode"), "{p}");
}

#[test]
fn keeps_the_previous_file_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 5);
    let prev = previous_path(&path);
    assert_eq!(std::fs::metadata(&prev).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join("state.redb.prev.new").exists());
    assert_eq!(Store::open(&prev).unwrap().tags().unwrap().len(), 5);
}

#[test]
fn recover_leaves_a_sound_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 5);
    let r = recover(&path).unwrap();
    assert_eq!(r.source, Source::Sound);
    assert!(r.moved_to.is_none());
}

#[test]
fn recover_salvages_and_fills_from_the_previous_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 300);
    // A change after the copy was kept: the salvage has it, the copy does not.
    {
        let s = Store::open(&path).unwrap();
        s.commit(&Batch {
            put_cmap: vec![("k3".into(), CmapRecord::U8(3))],
            events: vec![event(21)],
            ..Default::default()
        })
        .unwrap();
    }
    zero_pages_with(&path, b"tag250-marker");
    let r = recover(&path).unwrap();
    assert_eq!(r.source, Source::Salvaged, "{r}");
    let tags = r.kinds.iter().find(|k| k.kind == "tags").unwrap();
    assert!(tags.from_previous > 0, "{r}");
    assert_eq!(
        tags.lost,
        Some(tags.from_previous),
        "every lost tag was in the copy: {r}"
    );
    assert_eq!(r.lost_total(), tags.lost, "lost is not netted against restored: {r}");
    let moved = r.moved_to.clone().unwrap();
    assert!(moved
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("state.redb.damaged-"));
    problem(Store::open(&moved));
    let s = Store::open(&path).unwrap();
    assert_eq!(s.tags().unwrap().len(), 300);
    assert_eq!(s.cmap().unwrap().len(), 3, "the newer key of the damaged file is kept");
    assert_eq!(s.last_seq().unwrap(), 21);
}

#[test]
fn recover_takes_the_previous_copy_when_nothing_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 4);
    std::fs::write(&path, b"").unwrap();
    let r = recover(&path).unwrap();
    assert_eq!(r.source, Source::Previous, "{r}");
    assert!(r.unreadable.is_some());
    let s = Store::open(&path).unwrap();
    assert_eq!(s.tags().unwrap().len(), 4);
    // The unreadable file may have numbered events past the copy's 20.
    assert_eq!(s.last_seq().unwrap(), 20 + SEQ_JUMP);
}

#[test]
fn recover_without_anything_readable_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(&path, b"not a state file\n").unwrap();
    let r = recover(&path).unwrap();
    assert_eq!(r.source, Source::Nothing, "{r}");
    assert!(r.to_string().contains("nothing was recovered"), "{r}");
    assert!(Store::open(&path).unwrap().tags().unwrap().is_empty());
    assert_eq!(std::fs::read(r.moved_to.unwrap()).unwrap(), b"not a state file\n");
}

#[test]
fn a_missing_file_beside_its_previous_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 5);
    std::fs::remove_file(&path).unwrap();
    let p = problem(Store::open(&path));
    assert!(p.contains("is missing") && p.contains("--recover"), "{p}");
    assert!(!path.exists());
    assert_eq!(Store::open(&previous_path(&path)).unwrap().tags().unwrap().len(), 5);
}

#[test]
fn recover_reports_lost_and_restored_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    // The copy holds tag0..49; then 300 tags are added and those 50 deleted.
    filled(&path, 50);
    {
        let s = Store::open(&path).unwrap();
        s.commit(&Batch {
            put_tags: (0..300).map(|i| tag(&format!("new{i}-marker"))).collect(),
            delete_tags: (0..50).map(|i| format!("tag{i}-marker")).collect(),
            ..Default::default()
        })
        .unwrap();
    }
    zero_pages_with(&path, b"new250-marker");
    let r = recover(&path).unwrap();
    let names: Vec<String> = Store::open(&path)
        .unwrap()
        .tags()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let new_kept = names.iter().filter(|n| n.starts_with("new")).count() as u64;
    let back = names.iter().filter(|n| n.starts_with("tag")).count() as u64;
    assert!(new_kept < 300, "the damage lost some tags: {r}");
    let tags = r.kinds.iter().find(|k| k.kind == "tags").unwrap();
    assert_eq!(
        tags.lost,
        Some(300 - new_kept),
        "every unread tag is counted as lost: {r}"
    );
    assert_eq!(r.lost_total(), Some(300 - new_kept), "{r}");
    assert_eq!(tags.from_previous, back, "{r}");
    assert_eq!(r.restored_total(), back, "{r}");
    assert_eq!(tags.restored.len() as u64, back);
    assert!(tags.restored.iter().all(|n| n.starts_with("tag")), "{r}");
    let text = r.to_string();
    assert!(
        text.contains(&format!(
            "{} records of the damaged file could not be read",
            300 - new_kept
        )),
        "{text}"
    );
    assert!(text.contains("may include records deleted since: tag"), "{text}");
}

#[test]
fn recover_moves_event_numbers_forward_when_the_newest_are_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 3); // the copy's newest event is 20
    {
        let s = Store::open(&path).unwrap();
        s.commit(&Batch {
            events: (21..=40).map(event).collect(),
            ..Default::default()
        })
        .unwrap();
    }
    // The meta table and the events are lost: the file's own newest number, 40, is unknown.
    zero_pages_with(&path, b"last_seq");
    zero_pages_with(&path, b"sys.vigil.pmf.tag.start");
    let r = recover(&path).unwrap();
    assert!(r.last_seq > 40, "event numbers went back: {r}");
    assert_eq!(r.seq_jump, Some(SEQ_JUMP), "{r}");
    assert!(r.to_string().contains("numbering moved forward"), "{r}");
    assert_eq!(Store::open(&path).unwrap().last_seq().unwrap(), r.last_seq);
}

#[test]
fn recover_keeps_event_numbers_when_they_were_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 300);
    zero_pages_with(&path, b"tag250-marker");
    let r = recover(&path).unwrap();
    assert_eq!((r.last_seq, r.seq_jump), (20, None), "{r}");
}

#[test]
fn a_copy_that_does_not_verify_does_not_replace_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 300);
    let kept = std::fs::read(previous_path(&path)).unwrap();
    zero_pages_with(&path, b"tag250-marker");
    let e = check::keep_previous(&path).unwrap_err().to_string();
    assert!(e.contains("does not verify"), "{e}");
    assert_eq!(
        std::fs::read(previous_path(&path)).unwrap(),
        kept,
        "the older copy is kept"
    );
    assert!(!dir.path().join("state.redb.prev.new").exists());
}

#[test]
fn recover_leaves_the_damaged_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    filled(&path, 3);
    // A record that does not decode: redb opens the file (and commits as it does), vigil refuses it.
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TAGS).unwrap().insert("bad", &[0xff_u8; 3][..]).unwrap();
        tx.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let r = recover(&path).unwrap();
    assert_eq!(r.source, Source::Salvaged, "{r}");
    assert_eq!(
        std::fs::read(r.moved_to.unwrap()).unwrap(),
        before,
        "the damaged file is evidence"
    );
    assert!(!dir.path().join("state.redb.check").exists());
}
