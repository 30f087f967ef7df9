//! A tag's user, groups and resources as `vigil status --json` shows them beside the tag (they travel
//! apart from `TagStatus`, in `Response::Resources`).

use serde::{Deserialize, Serialize};

/// One resource limit; `null` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub name: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// What a tag's processes get besides their command (the tag's `uid` and `gid` are the tag's own keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// The user's and group's names, where known.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Supplementary groups (empty: the primary group alone).
    pub groups: Vec<u32>,
    pub limits: Vec<Limit>,
    pub nice: Option<i32>,
    /// In octal, as `umask` prints it: `"027"`.
    pub umask: Option<String>,
    pub stderr_log: Option<String>,
    pub log_timestamps: bool,
    pub tag_group: Option<String>,
}

impl From<&crate::TagResources> for Resources {
    fn from(r: &crate::TagResources) -> Resources {
        let res = &r.resources;
        Resources {
            user: r.user.clone(),
            group: r.group.clone(),
            groups: r.groups.clone(),
            limits: res
                .limits
                .iter()
                .map(|l| Limit {
                    name: l.name.clone(),
                    soft: l.soft,
                    hard: l.hard,
                })
                .collect(),
            nice: res.nice,
            umask: res.umask.map(|m| format!("{m:03o}")),
            stderr_log: res.stderr_log.clone(),
            log_timestamps: res.log_timestamps,
            tag_group: res.tag_group.clone(),
        }
    }
}
