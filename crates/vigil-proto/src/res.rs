//! A tag's resources on the wire: its user and group, resource limits, nice, umask, stderr log and tag
//! group. They travel apart from `RunSpec` and `TagStatus` (in `Request::RunWith`
//! and `Request::Resources`), so that every frame of protocol 2 keeps its bytes.

use serde::{Deserialize, Serialize};

/// One resource limit: `name` as `ulimit` spells it (`nofile`, `nproc`, `core`...); `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSpec {
    pub name: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// What a tag's processes get besides their command. `Default` is what `Run` gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    /// A user name or number to run as; only root may name another user than the caller.
    /// `None`: the caller (for config tags, vigild's user).
    pub user: Option<String>,
    /// A group name or number; `None`: the user's primary group (or the caller's).
    pub group: Option<String>,
    pub limits: Vec<LimitSpec>,
    /// -20 to 19.
    pub nice: Option<i32>,
    /// 0 to 0o777.
    pub umask: Option<u32>,
    /// An absolute path: stderr goes there (appended, created owned by the tag's user) rather than to
    /// the tag's log, which keeps stdout.
    pub stderr_log: Option<String>,
    /// Each line of the tag's log starts with the UTC time it was read (`2026-12-02_19:21:48.12345 `, as
    /// svlogd -tt); stderr too unless it has its own file.
    pub log_timestamps: bool,
    /// The group of tags this tag belongs to (`vigil stop @web`): a name with the rules of tag names.
    pub tag_group: Option<String>,
}

/// A tag's resources as vigild holds them (after `Request::Resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagResources {
    pub tag: String,
    pub uid: u32,
    pub gid: u32,
    /// The user's and group's names, where known.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Supplementary groups (empty: the primary group alone).
    pub groups: Vec<u32>,
    /// `user` and `group` are the names above; the rest as given.
    pub resources: Resources,
}
