//! Timestamped logs (`log_timestamps`): a tag's output goes through a pipe to a small process, vigild's
//! own binary run as `vigild --stamp-log`, that starts each line with the UTC time it read it, as svlogd
//! -tt does (`2026-12-02_19:21:48.12345 `), and appends it to the tag's log (its stdout).
//!
//! A process of its own rather than a task of vigild: the tag's output must keep flowing while vigild
//! restarts or is killed, as it does when the tag writes its log itself. It ends when every writer of the
//! pipe is gone (end of file), so with the tag's last process.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest line written as one: a longer one is cut into lines of this size (as svlogd's linemax),
/// so that a tag writing without newlines costs the stamper no more memory than this.
pub const LINE_MAX: usize = 64 * 1024;

/// `YYYY-MM-DD_HH:MM:SS.xxxxx` in UTC, svlogd -tt's format.
pub fn format_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm), valid for every date after 1970.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}_{:02}:{:02}:{:02}.{:05}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros() / 10
    )
}

/// Copies `input` to `output` line by line, each line prefixed with `now()` and a space. A last line
/// without a newline gets one.
pub fn stamp(mut input: impl BufRead, mut output: impl Write, now: impl Fn() -> SystemTime) -> std::io::Result<()> {
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !line.is_empty() {
                line.push(b'\n');
                write_line(&mut output, &line, &now)?;
            }
            return Ok(());
        }
        let room = LINE_MAX - line.len();
        let (take, end) = match buf.iter().take(room).position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), buf.len() >= room),
        };
        line.extend_from_slice(&buf[..take]);
        input.consume(take);
        if end {
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            write_line(&mut output, &line, &now)?;
            line.clear();
        }
    }
}

fn write_line(output: &mut impl Write, line: &[u8], now: &impl Fn() -> SystemTime) -> std::io::Result<()> {
    // One write per line: the log is O_APPEND, and vigild's rotation may truncate it between two.
    let mut out = Vec::with_capacity(line.len() + 26);
    out.extend_from_slice(format_utc(now()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(line);
    output.write_all(&out)
}

/// `vigild --stamp-log`: stdin to stdout, stamped, until end of file.
pub fn run() -> std::process::ExitCode {
    let stdin = std::io::stdin().lock();
    // Unbuffered: each line reaches the log as soon as it is read.
    let stdout = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().expect("stdout"));
    match stamp(
        std::io::BufReader::with_capacity(LINE_MAX, stdin),
        stdout,
        SystemTime::now,
    ) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

/// Starts the stamper of a tag's log (as `uid`/`gid` when given, in a process group of its own) and
/// returns the pipe's end the tag's stdout and stderr go to. The log is opened here, as it is for a
/// child of `spawn`: never through a symlink, and it must exist (the caller prepared it).
pub fn start(log: &Path, ids: Option<(u32, u32)>) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(log)?;
    let (read, write) = vigil_sys::pipe_cloexec().map_err(std::io::Error::other)?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--stamp-log")
        .env_clear()
        .current_dir("/")
        .stdin(std::process::Stdio::from(read))
        .stdout(std::process::Stdio::from(file))
        .stderr(std::process::Stdio::null())
        // Not in the tag's process group: a signal to the tag's group leaves it to drain the pipe.
        .process_group(0);
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    // Not waited for here: vigild's reaping of children it does not know collects it when it ends.
    cmd.spawn()?;
    Ok(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_as_svlogd() {
        let t = UNIX_EPOCH + Duration::from_micros(1_796_238_108_123_456);
        assert_eq!(format_utc(t), "2026-12-02_19:01:48.12345");
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01_00:00:00.00000");
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29_00:00:00.00000"
        );
    }

    #[test]
    fn stamps_lines_cuts_long_ones_and_ends_the_last() {
        let t = || UNIX_EPOCH;
        let mut out = Vec::new();
        stamp(&b"one\ntwo\n\nlast"[..], &mut out, t).unwrap();
        let p = "1970-01-01_00:00:00.00000 ";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{p}one\n{p}two\n{p}\n{p}last\n")
        );
        let long = vec![b'x'; LINE_MAX + 10];
        let mut out = Vec::new();
        stamp(std::io::BufReader::with_capacity(1000, &long[..]), &mut out, t).unwrap();
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), p.len() + LINE_MAX);
        assert_eq!(lines[1].len(), p.len() + 10);
    }
}
