//! The process set manager (Tru64 PSM): categories of vital processes and their members.
//!
//! Rules, from psm.h(4) and cfg_psm_memops(3):
//! - a member is any live process, registered by pid; one process instance is in one category only
//!   (a second registration of a running instance is EALREADY);
//! - after a member exits, its termination status stays until it is removed or the program is restarted:
//!   "when a process is restarted, any exited process instance in the target category is replaced by the
//!   new instance" (psm.h). The category is shared by every local user, so a registration replaces only
//!   the exited instances its caller owns (same uid); an administrator's replaces any;
//! - a member added to a missing category creates it, unless autocat is off (ENOENT); as creating a
//!   category directly, only an administrator may (EPERM);
//! - limits on categories, members, and the lengths of the saved argv and of the state string (ENOSPC).

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Timestamp;
use crate::tree::{Exit, ProcId};

/// The state string vigil sets when a member is added.
pub const STATE_RUNNING: &str = "running";
/// The state string vigil sets when a member exits.
pub const STATE_EXITED: &str = "exited";

/// A category name: 1 to 63 bytes of letters, digits and `. _ - : @ +`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CategoryName(String);

impl CategoryName {
    pub const MAX_LEN: usize = 63;

    pub fn new(name: &str) -> Result<CategoryName, PsmError> {
        let bad = |why: String| PsmError::InvalidName {
            name: name.escape_debug().to_string(),
            why,
        };
        if name.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if name.len() > Self::MAX_LEN {
            return Err(bad(format!(
                "it is {} bytes long; the limit is {}",
                name.len(),
                Self::MAX_LEN
            )));
        }
        if let Some(c) = name.chars().find(|c| !(c.is_alphanumeric() || "._-:@+".contains(*c))) {
            return Err(bad(format!("{c:?} is not a letter, a digit or one of . _ - : @ +")));
        }
        Ok(CategoryName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CategoryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tunables of sys_attrs_psm, with their ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsmLimits {
    pub cat_max: u32,
    pub mem_max: u32,
    /// Bytes of saved argv kept (NUL included, as in the C record).
    pub argv_max: u32,
    /// Bytes of a state string (NUL included).
    pub state_max: u32,
    /// Whether adding a member to a missing category creates it.
    pub autocat: bool,
}

impl Default for PsmLimits {
    fn default() -> PsmLimits {
        PsmLimits {
            cat_max: 512,
            mem_max: 1024,
            argv_max: 256,
            state_max: 32,
            autocat: true,
        }
    }
}

impl PsmLimits {
    pub const CAT_MAX_RANGE: (u32, u32) = (1, 65_536);
    pub const MEM_MAX_RANGE: (u32, u32) = (1, 1_048_576);
    pub const ARGV_MAX_RANGE: (u32, u32) = (16, 4096);
    pub const STATE_MAX_RANGE: (u32, u32) = (8, 256);

    /// Checks a value against its range: out of range is ENOSPC, as psm.h says.
    pub fn check(name: &str, value: u32, range: (u32, u32)) -> Result<u32, PsmError> {
        if value < range.0 || value > range.1 {
            return Err(PsmError::Limit(format!(
                "{name} = {value} is outside {}..={}",
                range.0, range.1
            )));
        }
        Ok(value)
    }
}

/// Why a PSM request was refused; each maps to the errno the Tru64 pages give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsmError {
    #[error("category name {name:?} is invalid: {why}")]
    InvalidName { name: String, why: String },
    /// ESRCH
    #[error("no such process: pid {0}")]
    NoProcess(i32),
    /// EALREADY
    #[error("pid {pid} is running and already registered in category {category}")]
    Already { pid: i32, category: CategoryName },
    /// EAGAIN
    #[error("pid {0} is being created or is inside exec; try again")]
    Again(i32),
    /// ENOENT
    #[error("{0}")]
    NotFound(String),
    /// ENOSPC
    #[error("limit reached: {0}")]
    Limit(String),
    /// EEXIST
    #[error("category {0} already exists")]
    CategoryExists(CategoryName),
    /// EPERM: the caller may not do this to a category or member it does not own.
    #[error("permission denied: {0}")]
    Denied(String),
    /// ENOTEMPTY (the native API; the Tru64 C layer answers ENOTSUP instead)
    #[error("category {category} is not empty: it holds pid(s) {}", .pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "))]
    NotEmpty { category: CategoryName, pids: Vec<i32> },
}

/// Who asks for a registration: an administrator (root or vigild's own user) may create categories
/// and replace anyone's exited members; anyone else only their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsmCaller {
    pub uid: u32,
    pub admin: bool,
}

impl PsmCaller {
    pub const ROOT: PsmCaller = PsmCaller { uid: 0, admin: true };

    pub fn user(uid: u32) -> PsmCaller {
        PsmCaller { uid, admin: false }
    }

    /// Whether this caller's registration may take the place of `m`'s exited instance.
    fn may_replace(&self, m: &Member) -> bool {
        self.admin || m.uid == self.uid
    }
}

/// A process as it was when it asked to be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    pub id: ProcId,
    pub argv: Vec<String>,
    pub uid: u32,
}

/// A registered process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: ProcId,
    pub category: CategoryName,
    /// `<nodeid>-<pid>`, unique in the cluster.
    pub name: String,
    pub state: String,
    /// The saved argv, cut to the limit.
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// How it ended, once it has.
    pub exit: Option<Exit>,
    pub uid: u32,
    pub added: Timestamp,
}

impl Member {
    pub fn exited(&self) -> bool {
        self.exit.is_some()
    }
}

/// What changed, for the event stream (names as Tru64's EVM events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsmEvent {
    CategoryCreate(CategoryName),
    CategoryRemove(CategoryName),
    InstanceCreate {
        category: CategoryName,
        pid: i32,
    },
    InstanceRemove {
        category: CategoryName,
        pid: i32,
    },
    InstanceExited {
        category: CategoryName,
        pid: i32,
        exit: Exit,
    },
}

impl PsmEvent {
    pub fn name(&self) -> &'static str {
        match self {
            PsmEvent::CategoryCreate(_) => "sys.unix.psm.category.create",
            PsmEvent::CategoryRemove(_) => "sys.unix.psm.category.remove",
            PsmEvent::InstanceCreate { .. } => "sys.unix.psm.instance.create",
            PsmEvent::InstanceRemove { .. } => "sys.unix.psm.instance.remove",
            PsmEvent::InstanceExited { .. } => "sys.unix.psm.instance.exited",
        }
    }
}

/// Saved argv within `max` bytes, NUL separators and terminator included, as the C record holds it.
pub fn truncate_argv(argv: &[String], max: u32) -> (Vec<String>, bool) {
    let mut room = max.saturating_sub(1) as usize;
    let mut out = Vec::new();
    for (i, a) in argv.iter().enumerate() {
        let sep = usize::from(i > 0);
        if a.len() + sep <= room {
            out.push(a.clone());
            room -= a.len() + sep;
        } else {
            if room > sep {
                let mut cut = room - sep;
                while !a.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push(a[..cut].to_string());
            }
            return (out, true);
        }
    }
    (out, false)
}

/// Every category and member of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub categories: BTreeMap<CategoryName, Timestamp>,
    /// Keyed by pid: at most one member per pid (a reused pid replaces an exited member). Read freely;
    /// changed only through the methods, which keep `exited` in step.
    pub members: BTreeMap<i32, Member>,
    /// The pids of the exited members: the only ones an add may replace, found without a scan of all.
    exited: BTreeSet<i32>,
}

impl Registry {
    pub fn create_category(
        &mut self,
        cat: CategoryName,
        limits: &PsmLimits,
        now: Timestamp,
    ) -> Result<Vec<PsmEvent>, PsmError> {
        if self.categories.contains_key(&cat) {
            return Err(PsmError::CategoryExists(cat));
        }
        if self.categories.len() as u32 >= limits.cat_max {
            return Err(PsmError::Limit(format!("{} categories (psm_cat_max)", limits.cat_max)));
        }
        self.categories.insert(cat.clone(), now);
        Ok(vec![PsmEvent::CategoryCreate(cat)])
    }

    /// Removes an empty category; a non-empty one is refused with its members named.
    pub fn remove_category(&mut self, cat: &CategoryName) -> Result<Vec<PsmEvent>, PsmError> {
        if !self.categories.contains_key(cat) {
            return Err(PsmError::NotFound(format!("no such category: {cat}")));
        }
        let pids: Vec<i32> = self
            .members
            .values()
            .filter(|m| &m.category == cat)
            .map(|m| m.id.pid)
            .collect();
        if !pids.is_empty() {
            return Err(PsmError::NotEmpty {
                category: cat.clone(),
                pids,
            });
        }
        self.categories.remove(cat);
        Ok(vec![PsmEvent::CategoryRemove(cat.clone())])
    }

    /// Registers a process in a category for `caller`.
    pub fn add(
        &mut self,
        cat: CategoryName,
        facts: ProcFacts,
        caller: PsmCaller,
        node_id: u32,
        limits: &PsmLimits,
        now: Timestamp,
    ) -> Result<Vec<PsmEvent>, PsmError> {
        let pid = facts.id.pid;
        if let Some(m) = self.members.get(&pid) {
            if !m.exited() && m.id == facts.id {
                return Err(PsmError::Already {
                    pid,
                    category: m.category.clone(),
                });
            }
        }
        let mut events = Vec::new();
        let missing = !self.categories.contains_key(&cat);
        if missing && !limits.autocat {
            return Err(PsmError::NotFound(format!(
                "no such category: {cat} (psm_mem_autocat is 0)"
            )));
        }
        if missing && !caller.admin {
            return Err(PsmError::Denied(format!(
                "no such category: {cat}; only an administrator may create one (uid {} may not)",
                caller.uid
            )));
        }
        if missing && self.categories.len() as u32 >= limits.cat_max {
            return Err(PsmError::Limit(format!("{} categories (psm_cat_max)", limits.cat_max)));
        }
        // A reused pid may still name another user's exited member: registering the new process would
        // take its place (members are keyed by pid), so only that member's owner or an administrator may.
        if let Some(m) = self.members.get(&pid).filter(|m| m.exited() && !caller.may_replace(m)) {
            return Err(PsmError::Denied(format!(
                "pid {pid} is still recorded as an exited member of {} owned by uid {}; only its owner or an \
                 administrator may replace it (vigil psm rm)",
                m.category, m.uid
            )));
        }
        let (argv, argv_truncated) = truncate_argv(&facts.argv, limits.argv_max);
        // The exited instances of this category that the caller may replace are replaced by the new one,
        // whatever program they ran (psm.h: "any exited process instance in the target category"). An
        // exited member with this pid (a reused pid) goes too: members are keyed by pid.
        let replaced: Vec<i32> = self
            .exited
            .iter()
            .filter_map(|p| self.members.get(p))
            .filter(|m| m.id.pid == pid || (m.category == cat && caller.may_replace(m)))
            .map(|m| m.id.pid)
            .collect();
        let remaining = self.members.len() - replaced.len();
        if remaining as u32 >= limits.mem_max {
            return Err(PsmError::Limit(format!("{} members (psm_mem_max)", limits.mem_max)));
        }
        if missing {
            self.categories.insert(cat.clone(), now);
            events.push(PsmEvent::CategoryCreate(cat.clone()));
        }
        for p in replaced {
            self.exited.remove(&p);
            let m = self.members.remove(&p).expect("listed");
            events.push(PsmEvent::InstanceRemove {
                category: m.category,
                pid: p,
            });
        }
        self.exited.remove(&pid);
        self.members.insert(
            pid,
            Member {
                id: facts.id,
                category: cat.clone(),
                name: format!("{node_id}-{pid}"),
                state: STATE_RUNNING.to_string(),
                argv,
                argv_truncated,
                exit: None,
                uid: facts.uid,
                added: now,
            },
        );
        events.push(PsmEvent::InstanceCreate { category: cat, pid });
        Ok(events)
    }

    /// The member `pid`, checked to be in `cat` when one is given.
    pub fn find(&self, cat: Option<&CategoryName>, pid: i32) -> Result<&Member, PsmError> {
        match self.members.get(&pid) {
            Some(m) if cat.is_none_or(|c| *c == m.category) => Ok(m),
            Some(m) => Err(PsmError::NotFound(format!(
                "pid {pid} is in category {}, not {}",
                m.category,
                cat.expect("some")
            ))),
            None => Err(PsmError::NotFound(format!("pid {pid} is not registered"))),
        }
    }

    pub fn remove(&mut self, cat: Option<&CategoryName>, pid: i32) -> Result<Vec<PsmEvent>, PsmError> {
        let category = self.find(cat, pid)?.category.clone();
        self.members.remove(&pid);
        self.exited.remove(&pid);
        Ok(vec![PsmEvent::InstanceRemove { category, pid }])
    }

    pub fn set_state(
        &mut self,
        cat: Option<&CategoryName>,
        pid: i32,
        state: &str,
        limits: &PsmLimits,
    ) -> Result<(), PsmError> {
        self.find(cat, pid)?;
        if state.len() + 1 > limits.state_max as usize {
            return Err(PsmError::Limit(format!(
                "state string of {} bytes is over the {}-byte limit (NUL included)",
                state.len(),
                limits.state_max
            )));
        }
        if state.contains('\0') {
            return Err(PsmError::Limit("state string contains a NUL byte".into()));
        }
        self.members.get_mut(&pid).expect("found").state = state.to_string();
        Ok(())
    }

    /// A member's process ended. Returns nothing for a process that is not a live member.
    pub fn exited(&mut self, id: ProcId, exit: Exit) -> Vec<PsmEvent> {
        match self.members.get_mut(&id.pid) {
            Some(m) if m.id == id && !m.exited() => {
                self.exited.insert(id.pid);
                m.exit = Some(exit);
                m.state = STATE_EXITED.to_string();
                vec![PsmEvent::InstanceExited {
                    category: m.category.clone(),
                    pid: id.pid,
                    exit,
                }]
            }
            _ => vec![],
        }
    }

    /// A member as it was stored (exited or not), when the registry is loaded.
    pub fn restore(&mut self, m: Member) {
        let pid = m.id.pid;
        if m.exited() {
            self.exited.insert(pid);
        } else {
            self.exited.remove(&pid);
        }
        self.members.insert(pid, m);
    }

    /// Members matching a category (or all) and a pid (or all), in category then pid order.
    pub fn query(&self, cat: Option<&CategoryName>, pid: Option<i32>) -> Result<Vec<&Member>, PsmError> {
        if let Some(c) = cat {
            if !self.categories.contains_key(c) {
                return Err(PsmError::NotFound(format!("no such category: {c}")));
            }
        }
        if let Some(p) = pid {
            return Ok(vec![self.find(cat, p)?]);
        }
        let mut out: Vec<&Member> = self
            .members
            .values()
            .filter(|m| cat.is_none_or(|c| *c == m.category))
            .collect();
        out.sort_by(|a, b| (&a.category, a.id.pid).cmp(&(&b.category, b.id.pid)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
