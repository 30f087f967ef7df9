//! The resource keys of a `[tag.NAME]` table: `user`, `group`, `limits`, `nice`, `umask`, `stderr_log`,
//! `log_timestamps`, `env_file`, `tag_group`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use vigil_proto::{LimitSpec, Resources};

/// A user or group: a name or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum NameOrId {
    Id(u32),
    Name(String),
}

impl NameOrId {
    fn text(&self) -> String {
        match self {
            NameOrId::Id(n) => n.to_string(),
            NameOrId::Name(s) => s.clone(),
        }
    }
}

/// A limit: a number, `"unlimited"`, or `"SOFT:HARD"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum LimitValue {
    Number(u64),
    Text(String),
}

/// A umask: an integer (`0o027` in TOML) or octal digits in a string (`"027"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Umask {
    Number(u32),
    Octal(String),
}

/// The resource keys as the file gives them.
#[derive(Debug, Default)]
pub(super) struct ResKeys<'a> {
    pub user: Option<&'a NameOrId>,
    pub group: Option<&'a NameOrId>,
    pub limits: Option<&'a BTreeMap<String, LimitValue>>,
    pub nice: Option<i32>,
    pub umask: Option<&'a Umask>,
    pub stderr_log: Option<&'a str>,
    pub log_timestamps: bool,
    pub tag_group: Option<&'a str>,
}

impl ResKeys<'_> {
    pub(super) fn to_wire(&self) -> Result<Resources, String> {
        let mut limits = Vec::new();
        for (name, v) in self.limits.into_iter().flatten() {
            let kind = vigil_core::LimitKind::parse(name)
                .ok_or_else(|| vigil_core::ResError::UnknownLimit(name.clone()).to_string())?;
            let l = match v {
                LimitValue::Number(n) => vigil_core::Limit {
                    kind,
                    soft: Some(*n),
                    hard: Some(*n),
                },
                LimitValue::Text(t) => vigil_core::Limit::parse_value(kind, t).map_err(|e| e.to_string())?,
            };
            limits.push(LimitSpec {
                name: name.clone(),
                soft: l.soft,
                hard: l.hard,
            });
        }
        let umask = match self.umask {
            None => None,
            Some(Umask::Number(n)) => Some(*n),
            Some(Umask::Octal(s)) => Some(
                u32::from_str_radix(s.trim_start_matches("0o"), 8)
                    .map_err(|_| format!("umask = {s:?} is not an octal number"))?,
            ),
        };
        Ok(Resources {
            user: self.user.map(NameOrId::text),
            group: self.group.map(NameOrId::text),
            limits,
            nice: self.nice,
            umask,
            stderr_log: self.stderr_log.map(str::to_string),
            log_timestamps: self.log_timestamps,
            tag_group: self.tag_group.map(str::to_string),
        })
    }
}

/// The variables of `env_file` (relative to the config file's directory), read now: a reload reads it
/// again, and a changed file restarts the tag as any changed spec does.
pub(super) fn read_env_file(file: &str, dir: Option<&Path>) -> Result<Vec<(String, String)>, String> {
    let path = match dir {
        Some(d) if !file.starts_with('/') => d.join(file),
        _ => Path::new(file).to_path_buf(),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("env_file {}: {e}", path.display()))?;
    vigil_core::envfile::parse(&text).map_err(|e| format!("env_file {}: {e}", path.display()))
}
