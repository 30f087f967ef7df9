//! Times as people read and write them: local times in text output, and `--since` as a time or an age.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `ms` since the epoch in the local time zone (`TZ`, else /etc/localtime), to the millisecond:
/// `2026-12-02 19:00:00.123`.
pub fn local(ms: u64) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
    {
        Some(t) => t
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
        None => ms.to_string(),
    }
}

/// Where `vigil events --since` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Above this sequence number (with `--node`: etcd revision).
    Seq(u64),
    /// At or after this time, ms since the epoch.
    Time(u64),
}

/// `--since`: a sequence number (`120`), an RFC 3339 time (`2026-12-02T18:00:00Z`, any offset), or an age
/// counted back from `now_ms` (`90s`, `10m`, `1h30m`, `2d`).
pub fn parse_since(s: &str, now_ms: u64) -> Result<Since, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Since::Seq(n));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return u64::try_from(t.as_millisecond())
            .map(Since::Time)
            .map_err(|_| format!("--since {s:?}: before 1970"));
    }
    let age_ms = match s.parse::<jiff::SignedDuration>() {
        Ok(d) if !d.is_negative() => d.as_millis() as u64,
        _ => match s.strip_suffix('d').and_then(|n| n.trim().parse::<u64>().ok()) {
            Some(days) => days.saturating_mul(86_400_000),
            None => {
                return Err(format!(
                    "--since {s:?}: expected a sequence number, an RFC 3339 time (2026-12-02T18:00:00Z) \
                     or an age (90s, 10m, 1h30m, 2d)"
                ))
            }
        },
    };
    Ok(Since::Time(now_ms.saturating_sub(age_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since() {
        let now = 1_796_234_400_000;
        assert_eq!(parse_since("120", now), Ok(Since::Seq(120)));
        assert_eq!(parse_since("10m", now), Ok(Since::Time(now - 600_000)));
        assert_eq!(parse_since("1h30m", now), Ok(Since::Time(now - 5_400_000)));
        assert_eq!(parse_since("2d", now), Ok(Since::Time(now - 2 * 86_400_000)));
        assert_eq!(
            parse_since("2026-12-02T19:00:00+01:00", now),
            Ok(Since::Time(1_796_234_400_000))
        );
        assert!(parse_since("yesterday", now)
            .unwrap_err()
            .contains("expected a sequence number"));
        assert!(parse_since("-5m", now).is_err());
    }
}
