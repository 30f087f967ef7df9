//! The CMAP keys vigild keeps itself: `runtime.*`, the config's preloaded keys, `vigil.pmf.*`,
//! `vigil.psm.*` and the `stats.*` counters.

use vigil_core::cmap::CmapValue as V;
use vigil_proto::CmapMap;

use super::map::{fits, member_key_prefix, tag_key_prefix, Ipcs};
use crate::conn::Caller;
use crate::state::Daemon;

impl Daemon {
    /// The keys that describe vigild itself.
    pub fn cmap_runtime_keys(&mut self) {
        self.cmap_internal("runtime.start_time", V::U64(self.node.started.as_millis()));
        self.cmap_internal("runtime.version", V::Str(env!("CARGO_PKG_VERSION").into()));
        self.cmap_internal("runtime.node_name", V::Str(self.node.name.clone()));
        self.cmap_internal("runtime.node_id", V::U32(self.node.id));
        self.cmap_internal("quorum.provider", V::Str("corosync_votequorum".into()));
        if self.cmap.main.get(crate::sam::state::EXPECTED_VOTES_KEY).is_err() {
            self.cmap_internal(crate::sam::state::EXPECTED_VOTES_KEY, V::U32(1));
        }
        self.quorum_update(true);
    }

    /// Keys the config file sets at start (and on reload); user keys, so persistence rules apply.
    pub fn cmap_preload(&mut self, keys: &[(String, V)]) {
        for (k, v) in keys {
            if self.cmap.main.is_readonly(k) {
                tracing::warn!("config: cmap key {k} is vigild's own and cannot be preloaded");
                continue;
            }
            let notes = self.cmap.main.set_internal(k, v.clone());
            self.cmap_persist(k, false);
            self.cmap_notify(CmapMap::Main, notes);
        }
    }

    /// vigild's own keys, derived in one place from what the step changed, before it is stored:
    /// `vigil.pmf.<tag>.*` of every tag it touched (dropped for a tag that is gone), `vigil.psm.<category>.
    /// <pid>.*` of every member it touched, and `stats.vigild.*`.
    pub fn cmap_mirror_step(&mut self) {
        let tags = std::mem::take(&mut self.pmf.dirty);
        for n in &tags {
            self.cmap_tag_keys(n);
        }
        self.pmf.dirty = tags;
        for (category, pid) in std::mem::take(&mut self.psm.members_changed) {
            self.cmap_member_keys(&category, pid);
        }
        self.cmap_conn_stats();
        self.cmap_daemon_stats();
    }

    /// `vigil.pmf.<tag>.*`: kept in step with the tag.
    fn cmap_tag_keys(&mut self, name: &vigil_core::TagName) {
        let prefix = tag_key_prefix(name.as_str());
        let Some(e) = self.pmf.tags.get(name).filter(|_| fits(&prefix)) else {
            self.cmap_internal_drop(&prefix);
            return;
        };
        let state = e.tag.state().name().to_string();
        let pid = e
            .tag
            .main()
            .filter(|m| e.tag.tree().contains(m.pid))
            .map_or(0, |m| m.pid);
        let restarts = e.tag.restarts_used(crate::clock::now());
        self.cmap_internal(&format!("{prefix}state"), V::Str(state));
        self.cmap_internal(&format!("{prefix}pid"), V::I32(pid));
        self.cmap_internal(&format!("{prefix}restarts"), V::U32(restarts));
    }

    /// `vigil.psm.<category>.<pid>.*`: kept in step with the member.
    fn cmap_member_keys(&mut self, category: &str, pid: i32) {
        let prefix = member_key_prefix(category, pid);
        let Some(m) = (self.psm.registry.members.get(&pid))
            .filter(|m| m.category.as_str() == category)
            .filter(|_| fits(&prefix))
        else {
            self.cmap_internal_drop(&prefix);
            return;
        };
        let state = m.state.clone();
        let exitcode = m.exit.and_then(crate::convert::exit_to_raw);
        self.cmap_internal(&format!("{prefix}state"), V::Str(state));
        match exitcode {
            Some(c) => self.cmap_internal(&format!("{prefix}exitcode"), V::U32(c)),
            None => {
                let notes = self.cmap.main.delete_internal(&format!("{prefix}exitcode"));
                self.cmap_notify(CmapMap::Main, notes);
            }
        }
    }
}

impl Daemon {
    /// `stats.ipcs.<conn>.*`: who is connected and how busy each connection is.
    pub fn cmap_count_request(&mut self, caller: Caller) {
        let ipcs = self.cmap.ipcs.entry(caller.conn).or_insert_with(|| Ipcs::new(caller));
        if ipcs.new == 0 {
            self.cmap.ipcs_due.push(caller.conn);
        }
        ipcs.new += 1;
    }

    /// `stats.ipcs.<conn>.*`: the requests of each connection counted this step.
    fn cmap_conn_stats(&mut self) {
        let mut ipcs = std::mem::take(&mut self.cmap.ipcs);
        let mut due = std::mem::take(&mut self.cmap.ipcs_due);
        // A connection that closed this step is gone from `ipcs`, with its keys.
        for conn in due.drain(..) {
            let Some(i) = ipcs.get_mut(&conn) else { continue };
            if i.written == 0 {
                let prefix = format!("stats.ipcs.{}.", i.caller.conn);
                self.cmap_stat(&format!("{prefix}uid"), V::U32(i.caller.uid));
                self.cmap_stat(&format!("{prefix}pid"), V::I32(i.caller.pid.unwrap_or(0)));
            }
            i.written += std::mem::take(&mut i.new);
            self.cmap_stat(&i.key, V::U64(i.written));
        }
        self.cmap.ipcs = ipcs;
        self.cmap.ipcs_due = due;
    }

    /// `stats.vigild.*`: vigild's own counters.
    fn cmap_daemon_stats(&mut self) {
        let now = [
            self.pmf.tags.len() as u64,
            self.pmf.procs.len() as u64,
            self.psm.registry.members.len() as u64,
            self.events.seq,
            self.events.subscriptions.len() as u64,
            self.cmap.main.len() as u64,
        ];
        if self.cmap.daemon_stats == Some(now) {
            return;
        }
        self.cmap.daemon_stats = Some(now);
        self.cmap_stat("stats.vigild.tags", V::U32(self.pmf.tags.len() as u32));
        self.cmap_stat("stats.vigild.processes", V::U32(self.pmf.procs.len() as u32));
        self.cmap_stat(
            "stats.vigild.psm_members",
            V::U32(self.psm.registry.members.len() as u32),
        );
        self.cmap_stat("stats.vigild.last_seq", V::U64(self.events.seq));
        self.cmap_stat(
            "stats.vigild.subscribers",
            V::U32(self.events.subscriptions.len() as u32),
        );
        self.cmap_stat("stats.vigild.cmap_keys", V::U64(self.cmap.main.len() as u64));
    }
}
