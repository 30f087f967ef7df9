//! What a tag's processes get besides their command: the names of their user and group, their
//! supplementary groups, resource limits, nice value and umask, where stderr goes, and the group of tags the tag belongs to.
//!
//! The numbers a tag runs as stay in `TagSpec::uid`/`gid`; the names here are the ones they were given
//! by (shown in status), looked up by vigild when the tag is made.

use crate::names::TagName;

/// A resource limit's name, as `ulimit` and systemd (`LimitNOFILE=`) spell it in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitKind {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl LimitKind {
    pub const ALL: [LimitKind; 16] = [
        LimitKind::As,
        LimitKind::Core,
        LimitKind::Cpu,
        LimitKind::Data,
        LimitKind::Fsize,
        LimitKind::Locks,
        LimitKind::Memlock,
        LimitKind::Msgqueue,
        LimitKind::Nice,
        LimitKind::Nofile,
        LimitKind::Nproc,
        LimitKind::Rss,
        LimitKind::Rtprio,
        LimitKind::Rttime,
        LimitKind::Sigpending,
        LimitKind::Stack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LimitKind::As => "as",
            LimitKind::Core => "core",
            LimitKind::Cpu => "cpu",
            LimitKind::Data => "data",
            LimitKind::Fsize => "fsize",
            LimitKind::Locks => "locks",
            LimitKind::Memlock => "memlock",
            LimitKind::Msgqueue => "msgqueue",
            LimitKind::Nice => "nice",
            LimitKind::Nofile => "nofile",
            LimitKind::Nproc => "nproc",
            LimitKind::Rss => "rss",
            LimitKind::Rtprio => "rtprio",
            LimitKind::Rttime => "rttime",
            LimitKind::Sigpending => "sigpending",
            LimitKind::Stack => "stack",
        }
    }

    pub fn parse(s: &str) -> Option<LimitKind> {
        LimitKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One resource limit: `None` is unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub kind: LimitKind,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl Limit {
    /// `VALUE` (soft and hard alike) or `SOFT:HARD`, each a number or `unlimited`/`infinity`.
    pub fn parse_value(kind: LimitKind, text: &str) -> Result<Limit, ResError> {
        let one = |t: &str| -> Result<Option<u64>, ResError> {
            match t.trim() {
                "unlimited" | "infinity" => Ok(None),
                n => n.parse::<u64>().map(Some).map_err(|_| ResError::BadLimit {
                    name: kind.name(),
                    value: text.to_string(),
                }),
            }
        };
        let (soft, hard) = match text.split_once(':') {
            Some((s, h)) => (one(s)?, one(h)?),
            None => {
                let v = one(text)?;
                (v, v)
            }
        };
        let limit = Limit { kind, soft, hard };
        limit.check()?;
        Ok(limit)
    }

    /// `NAME=VALUE` or `NAME=SOFT:HARD`, as `vigil run --limit` takes it.
    pub fn parse(text: &str) -> Result<Limit, ResError> {
        let (name, value) = text.split_once('=').ok_or_else(|| ResError::BadLimit {
            name: "",
            value: text.to_string(),
        })?;
        let kind = LimitKind::parse(name.trim()).ok_or_else(|| ResError::UnknownLimit(name.to_string()))?;
        Limit::parse_value(kind, value)
    }

    fn check(&self) -> Result<(), ResError> {
        let inf = |v: Option<u64>| v.unwrap_or(u64::MAX);
        if inf(self.soft) > inf(self.hard) {
            return Err(ResError::SoftAboveHard { name: self.kind.name() });
        }
        Ok(())
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
        if self.soft == self.hard {
            write!(f, "{}={}", self.kind.name(), v(self.soft))
        } else {
            write!(f, "{}={}:{}", self.kind.name(), v(self.soft), v(self.hard))
        }
    }
}

/// Why a resource setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResError {
    #[error("unknown resource limit {0:?}: use one of as core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack")]
    UnknownLimit(String),
    #[error("resource limit {name}={value:?} is not NUMBER, SOFT:HARD or unlimited")]
    BadLimit { name: &'static str, value: String },
    #[error("resource limit {name}: the soft limit is above the hard one")]
    SoftAboveHard { name: &'static str },
    #[error("resource limit {0} is given twice")]
    DuplicateLimit(&'static str),
    #[error("nice {0} is outside -20..=19")]
    Nice(i32),
    #[error("umask {0:o} is outside 0..=777 (octal)")]
    Umask(u32),
    #[error("stderr log {0:?} is not an absolute path")]
    RelativeStderrLog(String),
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error("{what} is {size} bytes; the limit is {limit}")]
    TooLong {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{0} supplementary groups; the limit is 65536")]
    TooManyGroups(usize),
    #[error("tag group {name:?}: {reason}")]
    BadTagGroup { name: String, reason: String },
}

/// A tag's resources, as given (names) and as resolved (supplementary groups).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// The user name the tag runs as, when one was given or known; the number is `TagSpec::uid`.
    pub user: Option<String>,
    /// The group name, as for `user`; the number is `TagSpec::gid`.
    pub group: Option<String>,
    /// Supplementary groups (initgroups(3) of a named user); empty means the primary group alone.
    pub groups: Vec<u32>,
    pub limits: Vec<Limit>,
    pub nice: Option<i32>,
    pub umask: Option<u32>,
    /// stderr to this file rather than to the tag's log (which keeps stdout).
    pub stderr_log: Option<String>,
    /// Each line of the tag's log starts with the time it was written, as svlogd -tt.
    pub log_timestamps: bool,
    /// The group of tags this tag belongs to (`vigil stop @web`).
    pub tag_group: Option<String>,
}

/// Bytes of a user or group name, and of a stderr log's path.
const NAME_BYTES: usize = 256;
const PATH_BYTES: usize = crate::spec::limits::PATH_BYTES;

impl Resources {
    pub fn validate(&self) -> Result<(), ResError> {
        for (what, v) in [("the user name", &self.user), ("the group name", &self.group)] {
            if let Some(v) = v {
                if v.contains('\0') {
                    return Err(ResError::Nul { what });
                }
                if v.len() > NAME_BYTES {
                    return Err(ResError::TooLong {
                        what,
                        size: v.len(),
                        limit: NAME_BYTES,
                    });
                }
            }
        }
        if self.groups.len() > 65_536 {
            return Err(ResError::TooManyGroups(self.groups.len()));
        }
        for (i, l) in self.limits.iter().enumerate() {
            l.check()?;
            if self.limits[..i].iter().any(|o| o.kind == l.kind) {
                return Err(ResError::DuplicateLimit(l.kind.name()));
            }
        }
        if let Some(n) = self.nice.filter(|n| !(-20..=19).contains(n)) {
            return Err(ResError::Nice(n));
        }
        if let Some(m) = self.umask.filter(|m| *m > 0o777) {
            return Err(ResError::Umask(m));
        }
        if let Some(p) = &self.stderr_log {
            if p.contains('\0') {
                return Err(ResError::Nul { what: "the stderr log" });
            }
            if p.len() > PATH_BYTES {
                return Err(ResError::TooLong {
                    what: "the stderr log",
                    size: p.len(),
                    limit: PATH_BYTES,
                });
            }
            if !p.starts_with('/') {
                return Err(ResError::RelativeStderrLog(p.clone()));
            }
        }
        if let Some(g) = &self.tag_group {
            TagName::new(g).map_err(|e| ResError::BadTagGroup {
                name: g.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_ulimit_spells_them() {
        let l = Limit::parse("nofile=4096").unwrap();
        assert_eq!((l.kind, l.soft, l.hard), (LimitKind::Nofile, Some(4096), Some(4096)));
        let l = Limit::parse("core=0:unlimited").unwrap();
        assert_eq!((l.soft, l.hard), (Some(0), None));
        assert_eq!(l.to_string(), "core=0:unlimited");
        assert_eq!(Limit::parse("nproc=100").unwrap().to_string(), "nproc=100");
        assert!(matches!(Limit::parse("files=3"), Err(ResError::UnknownLimit(_))));
        assert!(matches!(Limit::parse("nofile=lots"), Err(ResError::BadLimit { .. })));
        assert_eq!(
            Limit::parse("nofile=10:5").unwrap_err().to_string(),
            "resource limit nofile: the soft limit is above the hard one"
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let ok = Resources::default();
        assert_eq!(ok.validate(), Ok(()));
        let r = Resources {
            nice: Some(20),
            ..Resources::default()
        };
        assert_eq!(r.validate(), Err(ResError::Nice(20)));
        let r = Resources {
            umask: Some(0o1000),
            ..Resources::default()
        };
        assert_eq!(
            r.validate().unwrap_err().to_string(),
            "umask 1000 is outside 0..=777 (octal)"
        );
        let r = Resources {
            stderr_log: Some("err.log".into()),
            ..Resources::default()
        };
        assert!(matches!(r.validate(), Err(ResError::RelativeStderrLog(_))));
        let r = Resources {
            limits: vec![Limit::parse("nofile=1").unwrap(), Limit::parse("nofile=2").unwrap()],
            ..Resources::default()
        };
        assert_eq!(r.validate(), Err(ResError::DuplicateLimit("nofile")));
        let r = Resources {
            tag_group: Some("a b".into()),
            ..Resources::default()
        };
        assert!(matches!(r.validate(), Err(ResError::BadTagGroup { .. })));
    }
}
