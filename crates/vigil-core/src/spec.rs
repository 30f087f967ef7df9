//! What a tag runs and under which policy, validated before anything is started.

use std::time::Duration;

use crate::budget::{Backoff, Period, Retries};
use crate::health::{HealthError, HealthSpec};
use crate::names::TagName;
use crate::policy::{PolicyError, Supervision};
use crate::signal::Signal;

/// The PMF program type of `scds_pmf_start`: a service, a fault monitor, or something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgramType {
    #[default]
    Svc,
    Mon,
    Other,
}

impl ProgramType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgramType::Svc => "svc",
            ProgramType::Mon => "mon",
            ProgramType::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<ProgramType> {
        match s {
            "svc" => Some(ProgramType::Svc),
            "mon" => Some(ProgramType::Mon),
            "other" => Some(ProgramType::Other),
            _ => None,
        }
    }
}

/// The child monitor level: 0 watches the process, 1 also its children, ...; `None` (-1) all descendants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level(pub Option<u32>);

impl Level {
    pub const ALL: Level = Level(None);

    pub fn from_i64(n: i64) -> Option<Level> {
        match n {
            -1 => Some(Level(None)),
            0..=1_000_000 => Some(Level(Some(n as u32))),
            _ => None,
        }
    }

    pub fn to_i64(self) -> i64 {
        self.0.map_or(-1, i64::from)
    }

    /// Whether a process at `depth` below the original one is watched.
    pub fn watches(self, depth: u32) -> bool {
        self.0.is_none_or(|max| depth <= max)
    }
}

/// The size bounds of a spec. vigild answers every user from one process, in frames of at most 4 MiB:
/// no user's tag may be so large that a list of everyone's tags stops fitting, so each size a user
/// chooses is bounded when the tag is made.
pub mod limits {
    /// Arguments of the command (program included).
    pub const ARGS: usize = 1024;
    /// Bytes of the command, each argument counted with its terminating NUL, as execve counts them.
    pub const ARGV_BYTES: usize = 64 * 1024;
    /// Environment variables.
    pub const ENV_VARS: usize = 1024;
    /// Bytes of one `NAME=VALUE` entry (NUL included).
    pub const ENV_ENTRY_BYTES: usize = 32 * 1024;
    /// Bytes of the whole environment, entries counted as above.
    pub const ENV_BYTES: usize = 64 * 1024;
    /// Bytes of the working directory and of the action program's path (PATH_MAX).
    pub const PATH_BYTES: usize = 4096;
    /// Tags named in `after`.
    pub const AFTER: usize = 64;
    /// Arguments of an exec probe.
    pub const PROBE_ARGS: usize = 64;
    /// Bytes of an exec probe's command (NULs included), or of a probe's address or URL.
    pub const PROBE_BYTES: usize = 4096;
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the command is empty")]
    EmptyCommand,
    #[error("the command contains an empty program name")]
    EmptyProgram,
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error("environment variable name {name:?} is empty or contains '='")]
    BadEnvName { name: String },
    #[error("a tag cannot start after itself")]
    SelfDependency,
    #[error("stop timeout must be between 1 ms and 1 day, not {0:?}")]
    StopTimeout(Duration),
    /// A size over its bound (see [`limits`]).
    #[error("{what} is {size} {unit}; the limit is {limit}")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
        unit: &'static str,
    },
    #[error(transparent)]
    Health(#[from] HealthError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Res(#[from] crate::res::ResError),
}

/// Everything needed to (re)start a tag, exactly as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpec {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub instance: u32,
    pub program_type: ProgramType,
    pub level: Level,
    pub retries: Retries,
    pub period: Period,
    pub action: Option<String>,
    pub backoff: Option<Backoff>,
    pub after: Vec<TagName>,
    /// The signal a stop sends first, and how long it waits before SIGKILL.
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub uid: u32,
    pub gid: u32,
    /// The watchdog and the probes.
    pub health: HealthSpec,
    /// The restart policy, the minimum uptime of a start, the readiness protocol.
    pub supervision: Supervision,
    /// User and group names, limits, nice, umask, stderr log, tag group.
    pub res: crate::res::Resources,
}

impl TagSpec {
    /// Checks what the type system cannot: a non-empty command, NUL-free strings, sane env names.
    pub fn validate(&self, name: &TagName) -> Result<(), SpecError> {
        self.check_sizes()?;
        let program = self.command.first().ok_or(SpecError::EmptyCommand)?;
        if program.is_empty() {
            return Err(SpecError::EmptyProgram);
        }
        let nul = |what: String, s: &str| {
            if s.contains('\0') {
                Err(SpecError::Nul { what })
            } else {
                Ok(())
            }
        };
        for (i, a) in self.command.iter().enumerate() {
            nul(format!("argument {i}"), a)?;
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') {
                return Err(SpecError::BadEnvName { name: k.clone() });
            }
            nul(format!("environment variable {k}"), k)?;
            nul(format!("environment variable {k}"), v)?;
        }
        if let Some(c) = &self.cwd {
            nul("the working directory".into(), c)?;
        }
        if let Some(a) = &self.action {
            nul("the action program".into(), a)?;
            if a.is_empty() {
                return Err(SpecError::EmptyProgram);
            }
        }
        if self.after.contains(name) {
            return Err(SpecError::SelfDependency);
        }
        if self.stop_timeout.is_zero() || self.stop_timeout > Duration::from_secs(86_400) {
            return Err(SpecError::StopTimeout(self.stop_timeout));
        }
        self.health.validate()?;
        self.supervision.validate()?;
        self.res.validate()?;
        Ok(())
    }
}

fn bound(what: impl Into<String>, size: usize, limit: usize, unit: &'static str) -> Result<(), SpecError> {
    if size > limit {
        return Err(SpecError::TooLarge {
            what: what.into(),
            size,
            limit,
            unit,
        });
    }
    Ok(())
}

/// Bytes of a list of C strings, each with its NUL.
fn c_bytes<'a>(items: impl Iterator<Item = &'a str>) -> usize {
    items.map(|s| s.len() + 1).sum()
}

/// The sizes of a command and an environment, against [`limits`]: callers check them before copying
/// either, so that a request far over the limits costs no copy.
pub fn check_command_env(command: &[String], env: &[(String, String)]) -> Result<(), SpecError> {
    bound("the command", command.len(), limits::ARGS, "arguments")?;
    bound(
        "the command",
        c_bytes(command.iter().map(String::as_str)),
        limits::ARGV_BYTES,
        "bytes (NULs included)",
    )?;
    bound("the environment", env.len(), limits::ENV_VARS, "variables")?;
    let mut total = 0;
    for (k, v) in env {
        let entry = k.len() + 1 + v.len() + 1;
        bound(
            format!("environment variable {}", k.escape_debug()),
            entry,
            limits::ENV_ENTRY_BYTES,
            "bytes (NAME=VALUE and its NUL)",
        )?;
        total += entry;
    }
    bound(
        "the environment",
        total,
        limits::ENV_BYTES,
        "bytes (NAME=VALUE and a NUL each)",
    )?;
    Ok(())
}

impl TagSpec {
    /// Every size a user chooses, against [`limits`]; the error names the field and the limit.
    pub fn check_sizes(&self) -> Result<(), SpecError> {
        check_command_env(&self.command, &self.env)?;
        if let Some(c) = &self.cwd {
            bound("the working directory", c.len(), limits::PATH_BYTES, "bytes")?;
        }
        if let Some(a) = &self.action {
            bound("the action program", a.len(), limits::PATH_BYTES, "bytes")?;
        }
        bound("after", self.after.len(), limits::AFTER, "tags")?;
        for (i, p) in self.health.probes.iter().enumerate() {
            match &p.check {
                crate::health::ProbeCheck::Exec { command } => {
                    bound(
                        format!("probe {i}'s command"),
                        command.len(),
                        limits::PROBE_ARGS,
                        "arguments",
                    )?;
                    bound(
                        format!("probe {i}'s command"),
                        c_bytes(command.iter().map(String::as_str)),
                        limits::PROBE_BYTES,
                        "bytes (NULs included)",
                    )?;
                }
                other => bound(
                    format!("probe {i}'s address"),
                    other.to_string().len(),
                    limits::PROBE_BYTES,
                    "bytes",
                )?,
            }
        }
        Ok(())
    }
}

/// A `sleep 100` tag of root with the given budget (`-1` for no limit), the stop signal TERM and no
/// health checks: the fixture of the rules' tests.
#[cfg(test)]
pub(crate) fn test_spec(retries: i64, period: i64) -> TagSpec {
    TagSpec {
        command: vec!["sleep".into(), "100".into()],
        env: vec![],
        cwd: None,
        instance: 0,
        program_type: ProgramType::Svc,
        level: Level::ALL,
        retries: Retries::from_i64(retries).expect("a valid retry count"),
        period: Period::from_secs_i64(period).expect("a valid period"),
        action: None,
        backoff: None,
        after: vec![],
        stop_signal: Signal::TERM,
        stop_timeout: Duration::from_secs(5),
        uid: 0,
        gid: 0,
        health: HealthSpec::default(),
        supervision: Supervision::default(),
        res: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TagSpec {
        TagSpec {
            command: vec!["sleep".into(), "1".into()],
            env: vec![],
            cwd: None,
            instance: 0,
            program_type: ProgramType::Svc,
            level: Level::ALL,
            retries: Retries(None),
            period: Period(None),
            action: None,
            backoff: None,
            after: vec![],
            stop_signal: Signal::TERM,
            stop_timeout: Duration::from_secs(1),
            uid: 0,
            gid: 0,
            health: HealthSpec::default(),
            supervision: Supervision::default(),
            res: Default::default(),
        }
    }

    #[test]
    fn sizes_are_bounded_and_the_error_names_the_limit() {
        let name = TagName::new("t").unwrap();
        let at_limit = |n: usize| "x".repeat(n);
        let mut s = spec();
        // The command: 64 KiB with its NULs is fine, one byte more is not.
        s.command = vec!["p".into(), at_limit(limits::ARGV_BYTES - 2 - 1)];
        assert_eq!(s.validate(&name), Ok(()));
        s.command[1].push('x');
        let e = s.validate(&name).unwrap_err().to_string();
        assert_eq!(e, "the command is 65537 bytes (NULs included); the limit is 65536");
        s.command = vec!["a".into(); limits::ARGS + 1];
        assert!(s
            .validate(&name)
            .unwrap_err()
            .to_string()
            .contains("1025 arguments; the limit is 1024"));
        // The environment: one entry, then the total.
        let mut s = spec();
        s.env = vec![("BIG".into(), at_limit(limits::ENV_ENTRY_BYTES))];
        let e = s.validate(&name).unwrap_err().to_string();
        assert!(
            e.starts_with("environment variable BIG is 32773 bytes") && e.contains("limit is 32768"),
            "{e}"
        );
        s.env = (0..3).map(|i| (format!("V{i}"), at_limit(30_000))).collect();
        let e = s.validate(&name).unwrap_err().to_string();
        assert!(
            e.starts_with("the environment is 90012 bytes") && e.ends_with("the limit is 65536"),
            "{e}"
        );
        s.env = (0..=limits::ENV_VARS)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        assert!(s.validate(&name).unwrap_err().to_string().contains("1025 variables"));
        // Paths, after, probes.
        let mut s = spec();
        s.cwd = Some(at_limit(limits::PATH_BYTES + 1));
        assert!(s
            .validate(&name)
            .unwrap_err()
            .to_string()
            .starts_with("the working directory is 4097 bytes"));
        let mut s = spec();
        s.action = Some(at_limit(limits::PATH_BYTES + 1));
        assert!(s
            .validate(&name)
            .unwrap_err()
            .to_string()
            .starts_with("the action program is 4097 bytes"));
        let mut s = spec();
        s.after = (0..=limits::AFTER)
            .map(|i| TagName::new(&format!("d{i}")).unwrap())
            .collect();
        assert!(s
            .validate(&name)
            .unwrap_err()
            .to_string()
            .starts_with("after is 65 tags"));
        let mut s = spec();
        s.health.probes = vec![crate::health::ProbeSpec {
            check: crate::health::ProbeCheck::Exec {
                command: vec!["sh".into(), at_limit(limits::PROBE_BYTES)],
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            threshold: 1,
        }];
        assert!(s
            .validate(&name)
            .unwrap_err()
            .to_string()
            .starts_with("probe 0's command is 4100 bytes"));
    }

    #[test]
    fn levels() {
        assert!(Level::from_i64(-2).is_none());
        let zero = Level::from_i64(0).unwrap();
        assert!(zero.watches(0) && !zero.watches(1));
        let one = Level::from_i64(1).unwrap();
        assert!(one.watches(1) && !one.watches(2));
        assert!(Level::ALL.watches(1000));
    }
}
