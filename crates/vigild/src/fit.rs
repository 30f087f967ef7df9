//! Answers that list every tag must fit one frame, whatever each user put in their tags: one user's
//! large tags must never make `vigil status` or `pmfadm -L` fail for everyone else.
//!
//! The bounds at the door (`vigil_core::spec::limits`) keep one tag within about 150 KiB without its
//! environment, and `daemon.tags_per_uid` keeps one user to 64 tags by default; a list still cannot
//! be bounded by those alone (the number of users is not), so the list itself is fitted:
//! - it never carries an environment (up to 64 KiB a tag): `vigil status TAG` shows one;
//! - when it would still pass [`LIST_BUDGET`], the largest entries are shortened first (strings to
//!   [`TRIM_BYTES`], lists to [`TRIM_ITEMS`], each cut marked), so small tags stay whole;
//! - and if that is not enough, the largest are cut down to their name, state, owner, program name and
//!   16 processes (at most about 700 bytes with a 255-byte name, 200 for usual names: 5,900 tags fit at
//!   worst, some 20,000 usually).

use vigil_proto::{TagStatus, MAX_FRAME_LEN};

/// What a list may take of a frame: the rest is for the envelope (ids, result, variant tags).
pub const LIST_BUDGET: usize = MAX_FRAME_LEN - 64 * 1024;
/// A shortened entry keeps this many bytes of each string...
pub const TRIM_BYTES: usize = 256;
/// ... and this many items of each list.
pub const TRIM_ITEMS: usize = 16;

fn size(st: &TagStatus) -> usize {
    postcard::to_allocvec(st).map_or(usize::MAX / 4, |v| v.len())
}

/// `s` cut to `max` bytes (at a character boundary), with the cut said.
fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    let more = s.len() - at;
    s.truncate(at);
    s.push_str(&format!("…[{more} more bytes]"));
}

fn cut_list(v: &mut Vec<String>, items: usize, bytes: usize) {
    if v.len() > items {
        let more = v.len() - items;
        v.truncate(items);
        v.push(format!("…[{more} more]"));
    }
    for s in v.iter_mut() {
        cut(s, bytes);
    }
}

/// The first level: every string and list of the entry shortened.
fn shorten(st: &mut TagStatus) {
    cut_list(&mut st.command, TRIM_ITEMS, TRIM_BYTES);
    cut_list(&mut st.after, TRIM_ITEMS, TRIM_BYTES);
    for s in [&mut st.cwd, &mut st.action, &mut st.reason, &mut st.status_text]
        .into_iter()
        .flatten()
    {
        cut(s, TRIM_BYTES);
    }
    cut(&mut st.log_path, TRIM_BYTES);
    st.procs.truncate(TRIM_ITEMS);
    st.probes.truncate(TRIM_ITEMS);
    for p in &mut st.probes {
        cut(&mut p.check, TRIM_BYTES);
        if let Some(e) = &mut p.last_error {
            cut(e, TRIM_BYTES);
        }
    }
}

/// The second level: what `pmfadm -L` and a table of tags need, and the program name.
fn skeleton(st: &mut TagStatus) {
    st.command.truncate(1);
    cut_list(&mut st.command, 1, 64);
    st.after.clear();
    st.cwd = None;
    st.action = None;
    st.status_text = None;
    st.probes.clear();
    if let Some(r) = &mut st.reason {
        cut(r, 64);
    }
    cut(&mut st.log_path, 64);
}

/// Every tag's status, fitted into one answer (see the module doc).
pub fn status_list(mut all: Vec<TagStatus>) -> Vec<TagStatus> {
    for st in &mut all {
        st.env.clear();
    }
    let mut sizes: Vec<usize> = all.iter().map(size).collect();
    let mut total: usize = sizes.iter().sum();
    for level in [shorten as fn(&mut TagStatus), skeleton] {
        if total <= LIST_BUDGET {
            break;
        }
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
        for i in order {
            if total <= LIST_BUDGET {
                break;
            }
            level(&mut all[i]);
            let new = size(&all[i]);
            total = total - sizes[i] + new;
            sizes[i] = new;
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::ProgramType;

    fn status(name: &str, arg_bytes: usize) -> TagStatus {
        TagStatus {
            name: name.into(),
            state: "running".into(),
            reason: None,
            uid: 65534,
            gid: 65534,
            command: vec!["/bin/sleep".into(), "x".repeat(arg_bytes)],
            env: vec![("SECRET".into(), "y".repeat(60_000))],
            cwd: None,
            instance: 0,
            program_type: ProgramType::Svc,
            level: -1,
            retries: -1,
            period: -1,
            action: None,
            backoff: None,
            after: vec![],
            restarts_used: 0,
            starts: 1,
            procs: vec![],
            main_pid: Some(1),
            started_ms: None,
            last_exit: None,
            log_path: format!("/var/lib/vigil/logs/{name}.log"),
            from_config: false,
            watchdog_ms: None,
            probes: vec![],
            ready: false,
            status_text: None,
            supervision: Default::default(),
            up: true,
        }
    }

    fn encoded(all: &[TagStatus]) -> usize {
        postcard::to_allocvec(all).unwrap().len()
    }

    #[test]
    fn a_list_never_carries_the_environment_and_small_tags_stay_whole() {
        let all = status_list(vec![status("a", 10), status("b", 20)]);
        assert!(all.iter().all(|s| s.env.is_empty()));
        assert_eq!(all[1].command[1].len(), 20);
    }

    #[test]
    fn large_tags_are_shortened_first_and_the_list_fits() {
        // 200 tags at the command's limit: 12.8 MiB whole.
        let mut all: Vec<TagStatus> = (0..200).map(|i| status(&format!("big{i}"), 65_000)).collect();
        all.push(status("root-tag", 100));
        let all = status_list(all);
        assert!(encoded(&all) <= LIST_BUDGET, "{}", encoded(&all));
        assert_eq!(all.len(), 201, "every tag is listed");
        let small = all.iter().find(|s| s.name == "root-tag").unwrap();
        assert_eq!(small.command[1].len(), 100, "a small tag stays whole");
        let cut = all.iter().filter(|s| s.command[1].ends_with("more bytes]")).count();
        assert!(
            (100..=200).contains(&cut),
            "{cut} entries shortened: only as many as needed"
        );
    }

    #[test]
    fn many_tags_are_cut_to_a_skeleton_when_shortening_is_not_enough() {
        // Shortened, each of these still takes about 9 KiB: 600 of them pass the budget.
        let mut all: Vec<TagStatus> = (0..600).map(|i| status(&format!("t{i}"), 10)).collect();
        for st in &mut all {
            st.command = (0..40).map(|_| "x".repeat(300)).collect();
            st.after = (0..64).map(|i| format!("{}{i}", "d".repeat(200))).collect();
            st.cwd = Some("c".repeat(4096));
            st.action = Some("a".repeat(4096));
        }
        let all = status_list(all);
        assert!(encoded(&all) <= LIST_BUDGET, "{}", encoded(&all));
        assert_eq!(all.len(), 600);
        assert!(all.iter().any(|s| s.after.is_empty()), "some were cut to a skeleton");
        assert!(all.iter().all(|s| s.uid == 65534 && s.state == "running"));
    }
}
