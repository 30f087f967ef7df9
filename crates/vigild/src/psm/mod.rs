//! The process set manager: requests, member watching, and persistence.

pub mod state;

pub use state::Psm;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use vigil_core::psm::{CategoryName, Member, ProcFacts, PsmCaller, PsmError, PsmEvent};
use vigil_core::{Exit, ProcId};
use vigil_proto::{ErrorCode, PsmCategory, PsmMember, PsmNode, Response, WireError, PSM_FL_ARGTRUNC, PSM_FL_EXIT};
use vigil_store::MemberRecord;
use vigil_sys::PidFd;

use crate::clock::now;
use crate::conn::Caller;
use crate::events::attr::{attr_i, attr_s};
use crate::state::Daemon;

type Answer = Result<Response, WireError>;

/// The errno each refusal stands for, as the Tru64 pages name them, becomes a wire code.
pub fn psm_error(e: PsmError) -> WireError {
    let code = match &e {
        PsmError::InvalidName { .. } => ErrorCode::InvalidArgument,
        PsmError::NoProcess(_) => ErrorCode::NoProcess,
        PsmError::Already { .. } | PsmError::CategoryExists(_) => ErrorCode::AlreadyExists,
        PsmError::Again(_) => ErrorCode::Busy,
        PsmError::NotFound(_) => ErrorCode::NotFound,
        PsmError::Limit(_) => ErrorCode::LimitExceeded,
        PsmError::NotEmpty { .. } => ErrorCode::Busy,
        PsmError::Denied(_) => ErrorCode::PermissionDenied,
    };
    WireError::new(code, e.to_string())
}

fn category(name: &str) -> Result<CategoryName, WireError> {
    CategoryName::new(name).map_err(psm_error)
}

fn opt_category(name: &Option<String>) -> Result<Option<CategoryName>, WireError> {
    name.as_deref().map(category).transpose()
}

pub fn member_to_record(m: &Member) -> MemberRecord {
    MemberRecord {
        pid: m.id.pid,
        start_time: m.id.start_time,
        category: m.category.to_string(),
        name: m.name.clone(),
        state: m.state.clone(),
        argv: m.argv.clone(),
        argv_truncated: m.argv_truncated,
        exit: m.exit.map(crate::convert::exit_to_store),
        uid: m.uid,
        added_ms: m.added.as_millis(),
    }
}

pub fn member_from_record(r: &MemberRecord) -> Option<Member> {
    Some(Member {
        id: ProcId {
            pid: r.pid,
            start_time: r.start_time,
        },
        category: CategoryName::new(&r.category).ok()?,
        name: r.name.clone(),
        state: r.state.clone(),
        argv: r.argv.clone(),
        argv_truncated: r.argv_truncated,
        exit: r.exit.map(crate::convert::exit_from_store),
        uid: r.uid,
        added: vigil_core::Timestamp(r.added_ms),
    })
}

impl Daemon {
    /// Only the local node is served here: a single other node was routed to it before (remote.rs).
    fn local_node(&self, node: &PsmNode) -> Result<(), WireError> {
        let n = node.0.trim();
        if n.is_empty() || n == "local" || n == self.node.name {
            return Ok(());
        }
        if self.cluster.view.is_some() {
            // Other single nodes were routed there before this (remote.rs): only lists are left.
            return Err(WireError::new(
                ErrorCode::Unsupported,
                format!("node {n:?}: vigild asks one node at a time; vigil --node and libcfg ask each node of a list"),
            ));
        }
        Err(WireError::new(
            ErrorCode::Unsupported,
            format!(
                "node {n:?}: other nodes, all nodes and node lists need cluster mode; this vigild serves {} alone",
                self.node.name
            ),
        ))
    }

    fn psm_apply(&mut self, events: Vec<PsmEvent>) {
        self.psm.changed = true;
        for ev in events {
            let name = ev.name();
            let (subject, attrs) = match &ev {
                PsmEvent::CategoryCreate(c) => {
                    let created = self.psm.registry.categories.get(c).copied().unwrap_or_default();
                    self.store
                        .batch
                        .put_categories
                        .push((c.to_string(), created.as_millis()));
                    (c.to_string(), vec![attr_s("category", c.to_string())])
                }
                PsmEvent::CategoryRemove(c) => {
                    self.store.batch.delete_categories.push(c.to_string());
                    (c.to_string(), vec![attr_s("category", c.to_string())])
                }
                PsmEvent::InstanceCreate { category, pid } => (
                    category.to_string(),
                    vec![attr_s("category", category.to_string()), attr_i("pid", i64::from(*pid))],
                ),
                PsmEvent::InstanceRemove { category, pid } => {
                    self.store.batch.delete_members.push(*pid);
                    self.psm.members_changed.insert((category.to_string(), *pid));
                    (
                        category.to_string(),
                        vec![attr_s("category", category.to_string()), attr_i("pid", i64::from(*pid))],
                    )
                }
                PsmEvent::InstanceExited { category, pid, exit } => {
                    let mut a = vec![
                        attr_s("category", category.to_string()),
                        attr_i("pid", i64::from(*pid)),
                        attr_s("exit", exit.to_string()),
                    ];
                    if let Some(raw) = crate::convert::exit_to_raw(*exit) {
                        a.push(attr_i("status", i64::from(raw)));
                    }
                    (category.to_string(), a)
                }
            };
            self.emit(&subject, name, attrs);
        }
    }

    fn persist_member(&mut self, pid: i32) {
        if let Some(m) = self.psm.registry.members.get(&pid) {
            self.store.batch.delete_members.retain(|p| *p != pid);
            self.store.batch.put_members.push(member_to_record(m));
            self.psm.members_changed.insert((m.category.to_string(), pid));
        }
    }

    /// A member's process ended.
    pub fn psm_exited(&mut self, id: ProcId, exit: Exit) {
        let events = self.psm.registry.exited(id, exit);
        if !events.is_empty() {
            self.persist_member(id.pid);
            self.psm_apply(events);
        }
    }

    /// Loads the registry and re-watches the members still alive; the others are reported exited.
    pub fn psm_restore(&mut self) -> anyhow::Result<()> {
        for (c, t) in self.store.db.categories()? {
            if let Ok(c) = CategoryName::new(&c) {
                self.psm.registry.categories.insert(c, vigil_core::Timestamp(t));
            }
        }
        let records = self.store.db.members()?;
        for r in &records {
            let Some(m) = member_from_record(r) else { continue };
            let (id, exited) = (m.id, m.exited());
            self.psm.registry.restore(m);
            if exited {
                continue;
            }
            match PidFd::open(id.pid)
                .ok()
                .filter(|_| vigil_sys::start_time(id.pid).ok() == Some(id.start_time))
            {
                Some(fd) => self.watch_member(id, Arc::new(fd)),
                // It died while vigild was away; nobody kept its status for us.
                None => self.psm_exited(id, Exit::Unknown),
            }
        }
        Ok(())
    }

    /// Creates the categories the config file declares, where missing.
    pub fn ensure_categories(&mut self, cats: &[CategoryName]) {
        let limits = self.node.settings.psm;
        for c in cats {
            if !self.psm.registry.categories.contains_key(c) {
                match self.psm.registry.create_category(c.clone(), &limits, now()) {
                    Ok(ev) => self.psm_apply(ev),
                    Err(e) => tracing::warn!("config: {e}"),
                }
            }
        }
    }

    pub fn psm_category_add(&mut self, caller: Caller, node: &PsmNode, name: &str) -> Answer {
        self.local_node(node)?;
        let c = category(name)?;
        self.psm_admin(caller, "create a category")?;
        let limits = self.node.settings.psm;
        let ev = self
            .psm
            .registry
            .create_category(c, &limits, now())
            .map_err(psm_error)?;
        self.psm_apply(ev);
        Ok(Response::Ok)
    }

    pub fn psm_category_remove(&mut self, caller: Caller, node: &PsmNode, name: &str) -> Answer {
        self.local_node(node)?;
        let c = category(name)?;
        self.psm_admin(caller, "remove a category")?;
        let ev = self.psm.registry.remove_category(&c).map_err(psm_error)?;
        self.psm_apply(ev);
        Ok(Response::Ok)
    }

    /// Root and vigild's own user administer PSM: they create and remove categories, and their
    /// registrations replace anyone's exited instances.
    fn is_psm_admin(&self, caller: Caller) -> bool {
        caller.uid == 0 || caller.uid == self.node.uid
    }

    fn psm_admin(&self, caller: Caller, verb: &str) -> Result<(), WireError> {
        if !self.is_psm_admin(caller) {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!("only root or uid {} may {verb}", self.node.uid),
            ));
        }
        Ok(())
    }

    pub fn psm_category_list(&self, node: &PsmNode) -> Answer {
        self.local_node(node)?;
        Ok(Response::PsmCategories(
            self.psm
                .registry
                .categories
                .iter()
                .map(|(c, t)| {
                    let members: Vec<&Member> = self
                        .psm
                        .registry
                        .members
                        .values()
                        .filter(|m| &m.category == c)
                        .collect();
                    PsmCategory {
                        name: c.to_string(),
                        members: members.len() as u32,
                        running: members.iter().filter(|m| !m.exited()).count() as u32,
                        created_ms: t.as_millis(),
                    }
                })
                .collect(),
        ))
    }

    /// What the kernel says about a pid about to be registered.
    fn facts(pid: i32) -> Result<ProcFacts, PsmError> {
        if pid <= 0 {
            return Err(PsmError::NoProcess(pid));
        }
        let stat = vigil_sys::proc_stat(pid).map_err(|_| PsmError::NoProcess(pid))?;
        if stat.state == 'Z' || stat.state == 'X' {
            return Err(PsmError::NoProcess(pid));
        }
        let uid = std::fs::metadata(format!("/proc/{pid}"))
            .map_err(|_| PsmError::NoProcess(pid))?
            .uid();
        let argv: Vec<String> = vigil_sys::cmdline(pid)
            .map_err(|_| PsmError::NoProcess(pid))?
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        if argv.is_empty() {
            // A user process without an argv is between fork and exec or inside exec; a kernel thread
            // never has one.
            if stat.ppid == 2 || pid == 2 {
                return Err(PsmError::NotFound(format!("pid {pid} is a kernel thread")));
            }
            return Err(PsmError::Again(pid));
        }
        Ok(ProcFacts {
            id: ProcId {
                pid,
                start_time: stat.start_time,
            },
            argv,
            uid,
        })
    }

    pub fn psm_add(&mut self, caller: Caller, node: &PsmNode, cat: &str, pid: i32) -> Answer {
        self.local_node(node)?;
        let c = category(cat)?;
        let facts = Self::facts(pid).map_err(psm_error)?;
        if caller.uid != 0 && caller.uid != facts.uid {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "pid {pid} belongs to uid {}; uid {} may not register it",
                    facts.uid, caller.uid
                ),
            ));
        }
        // Pin the process before registering it, so an exit in between is seen.
        let fd = PidFd::open(pid).map_err(|_| psm_error(PsmError::NoProcess(pid)))?;
        if vigil_sys::start_time(pid).ok() != Some(facts.id.start_time) {
            return Err(psm_error(PsmError::NoProcess(pid)));
        }
        if self.quota_applies(caller.uid) {
            let limit = self.node.settings.quotas.psm_members_per_uid;
            let held = self
                .psm
                .registry
                .members
                .values()
                // Not those this add replaces: the caller's own exited instances of the category.
                .filter(|m| m.uid == facts.uid && m.id.pid != pid)
                .filter(|m| !(m.exited() && m.category == c && m.uid == caller.uid))
                .count();
            if held >= limit {
                return Err(WireError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "uid {} has {held} PSM member(s), its limit (daemon.psm_members_per_uid = {limit}); \
                         remove one first",
                        facts.uid
                    ),
                ));
            }
        }
        let id = facts.id;
        let limits = self.node.settings.psm;
        let events = self
            .psm
            .registry
            .add(
                c,
                facts,
                PsmCaller {
                    uid: caller.uid,
                    admin: self.is_psm_admin(caller),
                },
                self.node.id,
                &limits,
                now(),
            )
            .map_err(psm_error)?;
        self.persist_member(pid);
        self.psm_apply(events);
        self.watch_member(id, Arc::new(fd));
        Ok(Response::Ok)
    }

    fn psm_owner(&self, caller: Caller, cat: Option<&CategoryName>, pid: i32, verb: &str) -> Result<(), WireError> {
        let m = self.psm.registry.find(cat, pid).map_err(psm_error)?;
        if caller.uid != 0 && caller.uid != m.uid {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "member {pid} belongs to uid {}; uid {} may not {verb} it",
                    m.uid, caller.uid
                ),
            ));
        }
        Ok(())
    }

    pub fn psm_remove(&mut self, caller: Caller, node: &PsmNode, cat: &Option<String>, pid: i32) -> Answer {
        self.local_node(node)?;
        let c = opt_category(cat)?;
        self.psm_owner(caller, c.as_ref(), pid, "remove")?;
        let events = self.psm.registry.remove(c.as_ref(), pid).map_err(psm_error)?;
        if let Some(w) = self.pmf.procs.get_mut(&pid) {
            w.member = false;
            if w.tag.is_none() {
                if let Some(w) = self.pmf.procs.remove(&pid) {
                    w.task.abort();
                }
            }
        }
        self.psm_apply(events);
        Ok(Response::Ok)
    }

    pub fn psm_set_state(
        &mut self,
        caller: Caller,
        node: &PsmNode,
        cat: &Option<String>,
        pid: i32,
        state: &str,
    ) -> Answer {
        self.local_node(node)?;
        let c = opt_category(cat)?;
        self.psm_owner(caller, c.as_ref(), pid, "change")?;
        let limits = self.node.settings.psm;
        self.psm
            .registry
            .set_state(c.as_ref(), pid, state, &limits)
            .map_err(psm_error)?;
        self.psm.changed = true;
        self.persist_member(pid);
        Ok(Response::Ok)
    }

    pub fn psm_get(&self, node: &PsmNode, cat: &Option<String>, pid: Option<i32>) -> Answer {
        self.local_node(node)?;
        let c = opt_category(cat)?;
        let found = self.psm.registry.query(c.as_ref(), pid).map_err(psm_error)?;
        let total = found.len() as u32;
        let mut members: Vec<PsmMember> = found
            .into_iter()
            .enumerate()
            .map(|(i, m)| PsmMember {
                listidx: i as u32 + 1,
                listcnt: total,
                total,
                pid: m.id.pid,
                exitcode: m.exit.and_then(crate::convert::exit_to_raw),
                flags: if m.exited() { PSM_FL_EXIT } else { 0 } | if m.argv_truncated { PSM_FL_ARGTRUNC } else { 0 },
                name: m.name.clone(),
                state: m.state.clone(),
                argv: m.argv.clone(),
                category: m.category.to_string(),
                node: self.node.name.clone(),
                exit: m.exit.map(crate::convert::exit_to_wire),
                uid: m.uid,
                start_time: m.id.start_time,
                added_ms: m.added.as_millis(),
            })
            .collect();
        fit_members(&mut members);
        Ok(Response::PsmMembers(members))
    }
}

/// Every member's saved argv is the member's own choice (its command line, up to `psm_argv_max`): when
/// the whole list would not fit one answer, the longest saved argvs are cut further, with the
/// truncation flag set as for any cut argv, so that a list of all members always fits.
fn fit_members(members: &mut [PsmMember]) {
    let size = |m: &PsmMember| postcard::to_allocvec(m).map_or(usize::MAX / 4, |v| v.len());
    let mut sizes: Vec<usize> = members.iter().map(size).collect();
    let mut total: usize = sizes.iter().sum();
    if total <= crate::fit::LIST_BUDGET {
        return;
    }
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    for i in order {
        if total <= crate::fit::LIST_BUDGET {
            break;
        }
        let m = &mut members[i];
        let (argv, cut) = vigil_core::psm::truncate_argv(&m.argv, 64);
        if cut {
            m.argv = argv;
            m.flags |= PSM_FL_ARGTRUNC;
        }
        let new = size(m);
        total = total - sizes[i] + new;
        sizes[i] = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(pid: i32, argv_bytes: usize) -> PsmMember {
        PsmMember {
            listidx: 1,
            listcnt: 1,
            total: 1,
            pid,
            exitcode: None,
            flags: 0,
            name: format!("1-{pid}"),
            state: "running".into(),
            argv: vec!["/usr/sbin/d".into(), "a".repeat(argv_bytes)],
            category: "c".into(),
            node: "n".into(),
            exit: None,
            uid: 65534,
            start_time: 1,
            added_ms: 1,
        }
    }

    #[test]
    fn a_list_of_members_always_fits_and_cuts_the_longest_argvs_first() {
        let mut small = vec![member(1, 10), member(2, 20)];
        fit_members(&mut small);
        assert_eq!(small, vec![member(1, 10), member(2, 20)], "nothing to cut");
        // 1,500 members with 4 KiB of saved argv (psm_argv_max at its top) pass a frame.
        let mut all: Vec<PsmMember> = (0..1500).map(|p| member(p, 4000)).collect();
        all.push(member(9999, 10));
        fit_members(&mut all);
        assert!(postcard::to_allocvec(&all).unwrap().len() <= crate::fit::LIST_BUDGET);
        let cut: Vec<&PsmMember> = all.iter().filter(|m| m.flags & PSM_FL_ARGTRUNC != 0).collect();
        assert!(
            !cut.is_empty() && cut.len() < 1500,
            "only as many as needed: {}",
            cut.len()
        );
        assert!(cut.iter().all(|m| m.argv.concat().len() < 64));
        assert_eq!(all.last().unwrap(), &member(9999, 10), "a short one stays whole");
    }
}
