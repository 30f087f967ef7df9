//! What a tag runs and under which policy, validated before anything is started.

use std::time::Duration;

use crate::budget::{Backoff, Period, Retries};
use crate::health::{HealthError, HealthSpec};
use crate::names::TagName;

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
    #[error(transparent)]
    Health(#[from] HealthError),
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
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub uid: u32,
    pub gid: u32,
    /// The watchdog and the probes.
    pub health: HealthSpec,
}

impl TagSpec {
    /// Checks what the type system cannot: a non-empty command, NUL-free strings, sane env names.
    pub fn validate(&self, name: &TagName) -> Result<(), SpecError> {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
