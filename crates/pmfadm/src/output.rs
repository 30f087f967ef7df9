//! pmfadm's output: `-l` prints the command line that would create the tag, then its facts, indented;
//! `-L` prints the tags on one line.

use vigil_client::proto::TagStatus;

/// User-controlled text for a terminal (see `vigil_client::escape_terminal`).
fn esc(s: &str) -> String {
    vigil_client::escape_terminal(s).into_owned()
}

/// A word as a shell would need it: bare when safe, else in single quotes (with control characters
/// escaped: this is read on a terminal before anyone pastes it).
fn shell_word(w: &str) -> String {
    let w = &esc(w);
    let safe = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if safe {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// vigild keeps the period in seconds; pmfadm speaks minutes (rounded up, so the window is never shown
/// shorter than it is).
fn period_minutes(secs: i64) -> i64 {
    (secs + 59) / 60
}

/// The `-l` text of one tag; `owner` is the user name (or uid) of the tag's user.
pub fn status(st: &TagStatus, owner: &str) -> String {
    let mut line = vec!["pmfadm".to_string(), "-c".into(), shell_word(&st.name)];
    if let Some(a) = &st.action {
        line.extend(["-a".into(), shell_word(a)]);
    }
    if st.retries != 0 {
        line.extend(["-n".into(), st.retries.to_string()]);
    }
    if st.period != -1 {
        line.extend(["-t".into(), period_minutes(st.period).to_string()]);
    }
    if st.level != -1 {
        line.extend(["-C".into(), st.level.to_string()]);
    }
    line.extend(st.command.iter().map(|w| shell_word(w)));
    let mut out = line.join(" ");
    out.push('\n');
    if !st.env.is_empty() {
        out.push_str("\tenvironment:\n");
        for (k, v) in &st.env {
            out.push_str(&format!("\t\t{}={}\n", esc(k), esc(v)));
        }
    }
    out.push_str(&format!("\tretries: {}\n", st.restarts_used));
    out.push_str(&format!("\towner: {}\n", esc(owner)));
    let level = match st.level {
        -1 => "all".to_string(),
        n => n.to_string(),
    };
    out.push_str(&format!("\tmonitor children: {level}\n"));
    let pids: Vec<String> = st
        .procs
        .iter()
        .filter(|p| p.watched)
        .map(|p| p.pid.to_string())
        .collect();
    out.push_str(&format!("\tpids: {}\n", pids.join(" ")));
    out
}

/// The `-L` line.
pub fn list(tags: &[&str]) -> String {
    let tags: Vec<String> = tags.iter().map(|t| esc(t)).collect();
    format!("tags: {}\n", tags.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_client::proto::{ProcInfo, RunSpec};

    #[test]
    fn status_layout() {
        let spec = RunSpec::new("web", vec!["sh".into(), "-c".into(), "exec sleep 1000".into()]);
        let st = TagStatus {
            name: spec.tag,
            state: "running".into(),
            reason: None,
            uid: 0,
            gid: 0,
            command: spec.command,
            env: vec![("A".into(), "1".into())],
            cwd: None,
            instance: 0,
            program_type: spec.program_type,
            level: 1,
            retries: 3,
            period: 90,
            action: Some("/bin/decide".into()),
            backoff: None,
            after: vec![],
            restarts_used: 2,
            starts: 3,
            procs: vec![
                ProcInfo {
                    pid: 10,
                    level: 0,
                    watched: true,
                },
                ProcInfo {
                    pid: 11,
                    level: 1,
                    watched: true,
                },
                ProcInfo {
                    pid: 12,
                    level: 2,
                    watched: false,
                },
            ],
            main_pid: Some(10),
            started_ms: None,
            last_exit: None,
            log_path: String::new(),
            from_config: false,
            watchdog_ms: None,
            probes: vec![],
            ready: false,
            status_text: None,
            supervision: Default::default(),
            up: true,
        };
        assert_eq!(
            status(&st, "root"),
            "pmfadm -c web -a /bin/decide -n 3 -t 2 -C 1 sh -c 'exec sleep 1000'\n\
             \tenvironment:\n\t\tA=1\n\
             \tretries: 2\n\towner: root\n\tmonitor children: 1\n\tpids: 10 11\n"
        );
        assert_eq!(list(&["a", "b"]), "tags: a b\n");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
