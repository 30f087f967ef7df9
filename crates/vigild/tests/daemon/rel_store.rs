//! A damaged state file: vigild refuses to start on it (exit 65, the file and the problem named, no
//! panic), never starts over as if it were new, and `vigild --recover` salvages it, fills the gaps from
//! the copy kept at the last clean shutdown and keeps the damaged file aside.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::*;

/// vigild's exit code for a damaged state file.
const EXIT_DAMAGED: i32 = 65;

/// Runs vigild once on `v`'s state dir with `args`, expecting it to exit by itself.
fn vigild_once(v: &Vigild, args: &[&str]) -> Output {
    let mut child = Command::new(bin("vigild"))
        .arg("--state-dir")
        .arg(v.path("state"))
        .arg("--socket")
        .arg(v.socket())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigild");
    wait_deadline(&mut child, "vigild on a damaged state file");
    child.wait_with_output().unwrap()
}

/// A vigild with tags `keep-marker-N` (N < `tags`), stopped cleanly: its state file is whole and a copy
/// of it is kept as `state.redb.prev`.
fn stopped_with_tags(tags: usize) -> Vigild {
    let mut v = Vigild::start();
    let mut c = v.client();
    for i in 0..tags {
        // A command that ends at once, not restarted: a tag to remember, no process to clean up.
        let mut spec = sh(&format!("keep-marker-{i}"), "exit 0");
        spec.retries = 0;
        c.run(spec).expect("run");
    }
    drop(c);
    assert!(v.terminate().success());
    v
}

fn state(v: &Vigild) -> std::path::PathBuf {
    v.path("state/state.redb")
}

/// vigild refuses the file with the documented code, names it and the problem, and does not panic.
fn assert_refused(v: &Vigild, problem: &str) -> String {
    let out = vigild_once(v, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_DAMAGED), "{err}");
    assert!(
        err.contains(&state(v).display().to_string()),
        "the file is named: {err}"
    );
    assert!(err.contains(problem), "the problem is named ({problem}): {err}");
    assert!(err.contains("--recover"), "the way out is named: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
    err
}

/// `vigild --recover` succeeds; returns its report.
fn recover(v: &Vigild) -> String {
    let out = vigild_once(v, &["--recover"]);
    assert!(out.status.success(), "--recover: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn damaged_copies(v: &Vigild) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(v.path("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.redb.damaged-")
        })
        .collect()
}

/// Zeroes every 4 KiB page of the file holding `needle`: the live copy of the record is among them.
fn zero_pages_with(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let pages: std::collections::BTreeSet<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i / 4096)
        .collect();
    for p in &pages {
        bytes[p * 4096..(p + 1) * 4096].fill(0);
    }
    std::fs::write(path, bytes).unwrap();
    pages.len()
}

#[test]
fn clean_shutdown_keeps_a_private_copy_of_the_state_file() {
    let v = stopped_with_tags(2);
    let prev = v.path("state/state.redb.prev");
    let meta = std::fs::metadata(&prev).expect("state.redb.prev after a clean shutdown");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!v.path("state/state.redb.prev.new").exists());
    // Verified by opening it before it took the name, which lets redb record its allocator state: the
    // same records, not the same bytes.
    assert!(std::fs::read(&prev).unwrap().starts_with(b"redb\x1a\x0a\xa9\x0d\x0a"));
}

#[test]
fn an_empty_state_file_is_refused_and_recovered_from_the_previous_copy() {
    let mut v = stopped_with_tags(3);
    std::fs::File::create(state(&v)).unwrap();
    assert_refused(&v, "empty");
    assert_eq!(
        std::fs::metadata(state(&v)).unwrap().len(),
        0,
        "the refused file is left alone"
    );
    let report = recover(&v);
    assert!(report.contains("state.redb.prev"), "{report}");
    assert_eq!(damaged_copies(&v).len(), 1, "the damaged file is kept aside");
    v.spawn();
    for i in 0..3 {
        v.status(&format!("keep-marker-{i}"));
    }
}

#[test]
fn a_truncated_state_file_is_refused() {
    let mut v = stopped_with_tags(3);
    let len = std::fs::metadata(state(&v)).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(state(&v))
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_refused(&v, "damaged");
    recover(&v);
    v.spawn();
    v.status("keep-marker-2");
}

#[test]
fn a_zeroed_page_is_refused_not_a_panic_and_salvaged() {
    let mut v = stopped_with_tags(40);
    assert!(zero_pages_with(&state(&v), b"keep-marker-30") > 0);
    assert_refused(&v, "integrity");
    let report = recover(&v);
    // A cleanly closed file opens without a repair: its readable tables are read record by record.
    assert!(
        report.contains("kind") && !report.contains("nothing could be read"),
        "{report}"
    );
    v.spawn();
    v.status("keep-marker-30");
    v.status("keep-marker-0");
}

/// After a kill -9 redb must repair the file to open it, and its repair verifies every page: one zeroed
/// page makes the whole file unreadable, and everything comes from the previous copy.
#[test]
fn a_zeroed_page_after_a_kill_is_recovered_from_the_previous_copy() {
    let mut v = stopped_with_tags(40);
    v.spawn();
    v.kill9();
    zero_pages_with(&state(&v), b"keep-marker-30");
    assert_refused(&v, "integrity");
    let report = recover(&v);
    assert!(report.contains("nothing could be read"), "{report}");
    assert!(report.contains("state.redb.prev"), "{report}");
    v.spawn();
    v.status("keep-marker-39");
}

#[test]
fn a_record_that_does_not_decode_is_refused() {
    let v = stopped_with_tags(2);
    {
        let db = redb::Database::create(state(&v)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, &[u8]>::new("tags"))
            .unwrap()
            .insert("keep-marker-1", &[0xff_u8, 0xff, 0xff][..])
            .unwrap();
        tx.commit().unwrap();
    }
    assert_refused(&v, "tag keep-marker-1 that does not decode");
}

#[test]
fn files_of_another_format_are_refused() {
    let v = stopped_with_tags(1);
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.resize(4096, 0);
    std::fs::write(state(&v), &sqlite).unwrap();
    assert_refused(&v, "SQLite");
    std::fs::write(state(&v), "tags = []\n").unwrap();
    assert_refused(&v, "a text file");
    assert_eq!(std::fs::read_to_string(state(&v)).unwrap(), "tags = []\n");
}

#[test]
fn recover_without_a_previous_copy_says_what_is_lost() {
    let mut v = Vigild::start();
    v.kill9();
    assert!(!v.path("state/state.redb.prev").exists());
    std::fs::write(state(&v), "not a state file\n").unwrap();
    let report = recover(&v);
    assert!(report.contains("nothing was recovered"), "{report}");
    let aside = damaged_copies(&v);
    assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), "not a state file\n");
    v.spawn();
}

#[test]
fn recover_leaves_a_sound_file_alone() {
    let mut v = stopped_with_tags(1);
    let report = recover(&v);
    assert!(report.contains("nothing to recover"), "{report}");
    assert!(damaged_copies(&v).is_empty());
    v.spawn();
    v.status("keep-marker-0");
}

#[test]
fn recover_refuses_while_vigild_answers() {
    let v = Vigild::start();
    let out = vigild_once(&v, &["--recover"]);
    assert_eq!(out.status.code(), Some(111), "{}", stderr(&out));
    assert!(stderr(&out).contains("stop it first"), "{}", stderr(&out));
    assert!(v.connect().is_ok(), "the running vigild is untouched");
}

#[test]
fn a_missing_state_file_beside_its_previous_copy_is_refused_and_recovered() {
    let mut v = stopped_with_tags(2);
    let prev = v.path("state/state.redb.prev");
    let kept = std::fs::read(&prev).unwrap();
    std::fs::remove_file(state(&v)).unwrap();
    assert_refused(&v, "is missing");
    assert!(!state(&v).exists(), "no empty file is made in its place");
    assert_eq!(std::fs::read(&prev).unwrap(), kept, "the previous copy is left alone");
    let report = recover(&v);
    assert!(report.contains("state.redb.prev"), "{report}");
    v.spawn();
    for i in 0..2 {
        v.status(&format!("keep-marker-{i}"));
    }
}

#[test]
fn a_symlinked_state_file_is_refused_for_good() {
    let v = stopped_with_tags(1);
    let real = v.path("state/real.redb");
    std::fs::rename(state(&v), &real).unwrap();
    std::os::unix::fs::symlink(&real, state(&v)).unwrap();
    let out = vigild_once(&v, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_DAMAGED), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    let out = vigild_once(&v, &["--recover"]);
    assert_eq!(out.status.code(), Some(EXIT_DAMAGED), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(state(&v)).unwrap().file_type().is_symlink());
}

#[test]
fn recover_is_locked_out_of_a_state_dir_in_use_whatever_the_socket() {
    let v = Vigild::start();
    let before = std::fs::read(state(&v)).unwrap();
    // Another socket: the probe of a running vigild finds none, the state dir's lock does.
    let mut child = Command::new(bin("vigild"))
        .arg("--state-dir")
        .arg(v.path("state"))
        .arg("--socket")
        .arg(v.path("elsewhere.sock"))
        .arg("--recover")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigild --recover");
    wait_deadline(&mut child, "vigild --recover on a state dir in use");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(111), "{}", stderr(&out));
    assert!(stderr(&out).contains("state.lock"), "{}", stderr(&out));
    assert_eq!(std::fs::read(state(&v)).unwrap(), before);
    assert!(v.connect().is_ok(), "the running vigild is untouched");
}
