//! How a tag is supervised beyond its budget: whether an exit is restarted at all (the restart policy
//! and what counts as success), how long a start must live before it counts as running, and whether the
//! program says itself when it is ready (sd_notify's `READY=1`).
//!
//! | restart      | exit judged a success              | exit judged a failure               |
//! |--------------|------------------------------------|-------------------------------------|
//! | `always`     | restart under the budget           | restart under the budget            |
//! | `on-failure` | `Exited`, the budget untouched     | restart under the budget            |
//! | `never`      | `Exited`                           | `Failed`                            |
//!
//! An exit is a success when it is one of `success_exit_codes` or a death by one of `success_signals`,
//! and the instance was up (it lived `start_secs`, or said `READY=1` when it uses notify): a death
//! before that is a failed start, whatever its status. An instance stopped for a failed health check is
//! always a failure.

use std::time::Duration;

use crate::signal::Signal;
use crate::tree::Exit;

/// The longest `start_secs`.
pub const MAX_START: Duration = Duration::from_secs(3600);
/// The most success exit codes or signals a tag may list.
pub const MAX_SUCCESS: usize = 64;

/// Whether an instance that ended is started again (systemd's `Restart=`, supervisord's `autorestart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Every exit restarts, under the budget (pmfadm's behaviour).
    #[default]
    Always,
    /// A successful exit ends the tag as `exited`; a failure restarts under the budget.
    OnFailure,
    /// Nothing restarts: a success ends the tag as `exited`, a failure as `failed`.
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Result<RestartPolicy, PolicyError> {
        match s {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            other => Err(PolicyError::Restart(other.to_string())),
        }
    }
}

/// Why a supervision setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("restart policy {0:?} is not one of always, on-failure, never")]
    Restart(String),
    #[error("start_secs {} s is out of range: use 0 to 3600 seconds", .0.as_secs_f64())]
    StartSecs(Duration),
    #[error("{what}: at most {MAX_SUCCESS} values, not {count}")]
    TooMany { what: &'static str, count: usize },
}

/// The supervision settings of a tag. The default is pmfadm's: every exit restarts, a start counts at
/// once, no readiness protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervision {
    pub restart: RestartPolicy,
    /// Exit codes that are a success (systemd's `SuccessExitStatus=`); 0 by default.
    pub success_exit_codes: Vec<u8>,
    /// Deaths by these signals are a success (none by default).
    pub success_signals: Vec<Signal>,
    /// How long an instance must live before it counts as running (supervisord's `startsecs`).
    pub start_secs: Duration,
    /// The program sends `READY=1` to `NOTIFY_SOCKET` once it serves (systemd's `Type=notify`): it
    /// counts as running only then, and tags that start after it wait for that.
    pub notify: bool,
}

impl Default for Supervision {
    fn default() -> Supervision {
        Supervision {
            restart: RestartPolicy::Always,
            success_exit_codes: vec![0],
            success_signals: Vec::new(),
            start_secs: Duration::ZERO,
            notify: false,
        }
    }
}

impl Supervision {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.start_secs > MAX_START {
            return Err(PolicyError::StartSecs(self.start_secs));
        }
        for (what, count) in [
            ("success_exit_codes", self.success_exit_codes.len()),
            ("success_signals", self.success_signals.len()),
        ] {
            if count > MAX_SUCCESS {
                return Err(PolicyError::TooMany { what, count });
            }
        }
        Ok(())
    }

    /// Whether `exit` of an instance that was up is a success.
    pub fn is_success(&self, exit: Exit) -> bool {
        match exit {
            Exit::Code(c) => self.success_exit_codes.contains(&c),
            Exit::Signal(s) => self.success_signals.iter().any(|x| x.number() == s),
            Exit::Unknown => false,
        }
    }

    /// Whether an instance counts as running as soon as it is started.
    pub fn up_at_start(&self) -> bool {
        !self.notify && self.start_secs.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_a_listed_code_or_signal() {
        let mut s = Supervision::default();
        let table = [
            (Exit::Code(0), true),
            (Exit::Code(3), false),
            (Exit::Signal(15), false),
            (Exit::Unknown, false),
        ];
        for (exit, want) in table {
            assert_eq!(s.is_success(exit), want, "default, {exit:?}");
        }
        s.success_exit_codes = vec![0, 3];
        s.success_signals = vec![Signal::TERM];
        let table = [
            (Exit::Code(0), true),
            (Exit::Code(3), true),
            (Exit::Code(1), false),
            (Exit::Signal(15), true),
            (Exit::Signal(9), false),
        ];
        for (exit, want) in table {
            assert_eq!(s.is_success(exit), want, "[0, 3] and TERM, {exit:?}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(RestartPolicy::parse("on-failure"), Ok(RestartPolicy::OnFailure));
        assert_eq!(
            RestartPolicy::parse("sometimes").unwrap_err().to_string(),
            "restart policy \"sometimes\" is not one of always, on-failure, never"
        );
        let s = Supervision {
            start_secs: Duration::from_secs(3601),
            ..Supervision::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("0 to 3600"));
        let s = Supervision {
            success_exit_codes: vec![1; 65],
            ..Supervision::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("at most 64"));
        assert!(Supervision::default().up_at_start());
    }
}
