//! What the state file's safety costs on a big store: the copy kept at a clean shutdown and the verified
//! open at start, for a store of TAGS tags and EVENTS events (defaults 10,000 and 100,000).
//!
//!     cargo run --release -p vigil-store --example keep_cost [DIR] [TAGS] [EVENTS]
//!
//! DIR (default: a temporary directory) should be on the file system of the state dir measured.

use std::time::Instant;

use vigil_store::*;

fn tag(i: usize) -> TagRecord {
    TagRecord {
        name: format!("service-{i:05}"),
        command: vec!["/usr/local/bin/worker".into(), "--queue".into(), format!("q{i}")],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
        cwd: Some("/srv".into()),
        instance: 1,
        program_type: 0,
        level: -1,
        retries: 3,
        period: 60,
        action: None,
        backoff_ms: None,
        after: vec![],
        stop_signal: 15,
        stop_timeout_ms: 10_000,
        uid: 1000,
        gid: 1000,
        from_config: true,
        state: StateRecord::Running,
        enabled: true,
        procs: vec![ProcRecord {
            pid: 1000 + i as i32,
            start_time: 12345,
            depth: 0,
        }],
        main: Some(ProcRecord {
            pid: 1000 + i as i32,
            start_time: 12345,
            depth: 0,
        }),
        budget_ms: vec![],
        started_ms: Some(1),
        last_exit: None,
        starts: 1,
        quick_failures: 0,
        pending: None,
        watchdog_ms: None,
        probes: vec![],
        ready: true,
        status_text: None,
        supervision: Default::default(),
        res: Default::default(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = args.get(1).map_or(tmp.path().to_path_buf(), std::path::PathBuf::from);
    let tags: usize = args.get(2).map_or(10_000, |a| a.parse().unwrap());
    let events: u64 = args.get(3).map_or(100_000, |a| a.parse().unwrap());
    let path = dir.join("keep_cost.redb");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(previous_path(&path));
    {
        let s = Store::open(&path).unwrap();
        s.commit(&Batch {
            put_tags: (0..tags).map(tag).collect(),
            ..Default::default()
        })
        .unwrap();
        for chunk in (1..=events).collect::<Vec<_>>().chunks(10_000) {
            let events = chunk
                .iter()
                .map(|&seq| EventRecord {
                    seq,
                    time_ms: seq,
                    name: "sys.vigil.pmf.tag.start".into(),
                    node: "node1".into(),
                    subject: format!("service-{:05}", seq as usize % tags.max(1)),
                    attrs: vec![("pid".into(), AttrRecord::Int(seq as i64))],
                })
                .collect();
            s.commit(&Batch {
                events,
                ..Default::default()
            })
            .unwrap();
        }
    }
    let t = Instant::now();
    let mut s = Store::open(&path).unwrap();
    let open = t.elapsed();
    let t = Instant::now();
    let bytes = s.close_keeping_previous().unwrap();
    let keep = t.elapsed();
    println!(
        "{tags} tags, {events} events: state file {bytes} bytes; verified open {} ms; close + keep previous {} ms",
        open.as_millis(),
        keep.as_millis()
    );
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(previous_path(&path));
}
