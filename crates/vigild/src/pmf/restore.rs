//! Starting up on an existing state dir, and applying a config file (at start and on reload).

use std::collections::HashSet;

use tracing::warn;
use vigil_core::{ProcId, StopMode, TagName, TagSpec};
use vigil_proto::ReloadReport;

use crate::clock::now;
use crate::pmf::state::Entry;
use crate::state::Daemon;

impl Daemon {
    /// Loads every tag from the store, re-adopts its live processes and lets the rules deal with what
    /// happened while vigild was away.
    pub fn restore(&mut self) -> anyhow::Result<()> {
        let records = self.store.db.tags()?;
        let mut restored = Vec::new();
        for r in &records {
            match crate::convert::tag_from_record(r) {
                Ok((tag, procs)) => {
                    let name = tag.name().clone();
                    self.pmf.tags.insert(
                        name.clone(),
                        Entry {
                            tag,
                            from_config: r.from_config,
                            session: None,
                            probe_failures: 0,
                        },
                    );
                    restored.push((name, procs));
                }
                Err(e) => tracing::error!("tag {} in the store is unreadable and is skipped: {e}", r.name),
            }
        }
        // Before anything can start: a start the store never heard of must end first, or its tag would
        // run twice.
        let recorded: HashSet<ProcId> = restored
            .iter()
            .flat_map(|(_, procs)| procs.iter().map(|(id, _)| *id))
            .collect();
        let strays = self.end_unrecorded(&recorded);
        for (name, procs) in restored {
            self.readopt(&name, procs);
        }
        // Children that died while vigild was re-executing are zombies: their statuses are exact.
        self.reap();
        let now = now();
        let names: Vec<TagName> = self.pmf.tags.keys().cloned().collect();
        // Processes of a recorded start that left their tree while no vigild was there to see it (their
        // parent died and they went to init): the tag's, at the shallowest depth an orphan can be.
        for f in strays {
            if !self.pmf.procs.contains_key(&f.id.pid) {
                if let Ok(name) = TagName::existing(&f.tag) {
                    self.adopt_child(&name, f.id.pid, 1);
                }
            }
        }
        // Descendants forked while vigild was away are unknown to it: find them, from one /proc scan.
        let table = vigil_sys::ProcTable::snapshot();
        for name in names {
            self.rescan_with(&name, &table);
            self.readopt_log(&name);
            let Some(e) = self.pmf.tags.get_mut(&name) else {
                continue;
            };
            let fx = e.tag.resumed(now);
            self.apply(&name, fx);
        }
        Ok(())
    }

    /// Finds every process that carries a start marker (marks.rs) and is not in the store, and ends the
    /// ones whose start the store never recorded: the tag does not exist (a `Run` whose batch was lost),
    /// belongs to another user now, or has fewer starts than the marker's generation (a restart whose
    /// batch was lost; the rules start it again from what the store says). Its whole session goes with
    /// it, for descendants that cleared their environment. Returns the other marked processes: those of
    /// a recorded start, which the caller adopts once the recorded ones are watched again.
    fn end_unrecorded(&mut self, recorded: &HashSet<ProcId>) -> Vec<crate::pmf::marks::Found> {
        let began = std::time::Instant::now();
        let mut table = vigil_sys::ProcTable::snapshot();
        // A spawn the killed vigild was in the middle of: the child has not exec'd, so its environment
        // is still vigild's and shows no marker. It execs within moments: wait for that (bounded: the
        // name is anyone's to take), then look again.
        let spawning = |t: &vigil_sys::ProcTable| {
            t.pids().any(|p| {
                t.stat(p)
                    .is_some_and(|s| s.comm == vigil_sys::SPAWNING_COMM && s.state != 'Z')
            })
        };
        let end = began + std::time::Duration::from_secs(2);
        while spawning(&table) && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(10));
            table = vigil_sys::ProcTable::snapshot();
        }
        let mut keep = Vec::new();
        let mut ended: HashSet<i32> = HashSet::new();
        let found = self.pmf.marks.scan(&table, |id| recorded.contains(&id));
        let marked = found.len();
        for f in found {
            let tag = TagName::existing(&f.tag).ok().and_then(|n| self.pmf.tags.get(&n));
            let unrecorded = match tag {
                None => true,
                Some(e) => e.tag.spec().uid != f.uid || f.generation > e.tag.starts(),
            };
            if !unrecorded {
                keep.push(f);
                continue;
            }
            warn!(
                tag = %f.tag,
                pid = f.id.pid,
                generation = f.generation,
                "ending a process whose start was never stored (vigild was killed before recording it)"
            );
            let mut victims = vec![f.id];
            if f.session == f.id.pid {
                victims.extend(
                    table
                        .pids()
                        .filter(|p| *p != f.id.pid && !ended.contains(p))
                        .filter_map(|p| table.stat(p).map(|s| (p, s)))
                        .filter(|(_, s)| s.session == f.session && s.state != 'Z')
                        .filter(|(p, _)| vigil_sys::uids(*p).is_ok_and(|u| u.iter().all(|x| *x == f.uid)))
                        .map(|(p, s)| ProcId {
                            pid: p,
                            start_time: s.start_time,
                        }),
                );
            }
            for id in victims {
                if !ended.insert(id.pid) {
                    continue;
                }
                // The pidfd, opened and then checked against the start time, is the process found.
                let Ok(fd) = vigil_sys::PidFd::open(id.pid) else {
                    continue;
                };
                if vigil_sys::start_time(id.pid).ok() == Some(id.start_time) {
                    if let Err(e) = fd.send_signal(libc::SIGKILL) {
                        warn!(pid = id.pid, "cannot end an unrecorded process: {e}");
                    }
                }
            }
        }
        tracing::info!(
            processes = table.pids().count(),
            marked,
            ended = ended.len(),
            "start markers read in {} ms",
            began.elapsed().as_millis()
        );
        keep
    }

    /// Makes the config-declared tags match `tags`: new ones start, changed ones restart with the new
    /// spec, ones no longer declared are stopped and removed.
    /// Tags in `manual` (`autostart = false`) are created stopped, and a changed spec does not start
    /// them.
    pub fn apply_config(
        &mut self,
        tags: Vec<(TagName, TagSpec)>,
        manual: &std::collections::BTreeSet<TagName>,
    ) -> ReloadReport {
        let mut report = ReloadReport::default();
        let declared: std::collections::BTreeSet<TagName> = tags.iter().map(|(n, _)| n.clone()).collect();
        let gone: Vec<TagName> = self
            .pmf
            .tags
            .iter()
            .filter(|(n, e)| e.from_config && !declared.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        let now = now();
        for name in gone {
            let e = self.pmf.tags.get_mut(&name).expect("listed");
            let fx = e.tag.stop(
                e.tag.spec().stop_signal,
                e.tag.spec().stop_timeout,
                StopMode::Remove,
                now,
            );
            self.apply(&name, fx);
            report.stopped.push(name.to_string());
        }
        // Tags are started in an order where every `after` comes first; the rest wait for their turn.
        for (name, spec) in tags {
            match self.pmf.tags.get_mut(&name) {
                None if manual.contains(&name) => {
                    self.insert_stopped(name.clone(), spec);
                    report.unchanged.push(name.to_string());
                }
                None => {
                    self.insert_and_start(name.clone(), spec, true);
                    report.started.push(name.to_string());
                }
                Some(e) if *e.tag.spec() == spec && e.from_config => report.unchanged.push(name.to_string()),
                Some(e) => {
                    e.from_config = true;
                    let fx = if manual.contains(&name) {
                        e.tag.respec_manual(spec, now)
                    } else {
                        e.tag.respec(spec, now)
                    };
                    self.pmf.dirty.insert(name.clone());
                    self.apply(&name, fx);
                    report.restarted.push(name.to_string());
                }
            }
        }
        report
    }

    /// Whether the config file (if any) still loads, and what it says: a re-exec is refused when it
    /// does not.
    pub fn check_config(&self) -> Result<Option<crate::config::Config>, vigil_proto::WireError> {
        // A new image starts from the state file, which lacks the changes kept in memory.
        if let Some(f) = &self.store.failing {
            return Err(vigil_proto::WireError::new(
                vigil_proto::ErrorCode::Internal,
                format!(
                    "the state store cannot be written: {}; a re-exec would lose the changes kept in memory",
                    f.reason
                ),
            ));
        }
        match &self.node.paths.config {
            None => Ok(None),
            Some(p) => crate::config::load(p, self.node.uid, self.node.gid)
                .map(Some)
                .map_err(|e| {
                    vigil_proto::WireError::new(vigil_proto::ErrorCode::InvalidArgument, format!("{e:#}; fix it first"))
                }),
        }
    }

    /// `Reload`: re-read the config file and apply it.
    pub fn reload(&mut self) -> Result<vigil_proto::Response, vigil_proto::WireError> {
        let Some(path) = self.node.paths.config.clone() else {
            return Err(vigil_proto::WireError::new(
                vigil_proto::ErrorCode::InvalidArgument,
                "vigild was started without --config: nothing to reload",
            ));
        };
        let config = crate::config::load(&path, self.node.uid, self.node.gid)
            .map_err(|e| vigil_proto::WireError::new(vigil_proto::ErrorCode::InvalidArgument, format!("{e:#}")))?;
        self.node.settings = config.settings.clone();
        self.pmf
            .logs
            .set_limits(self.node.settings.log_max_bytes, self.node.settings.log_keep);
        self.node.settings.psm = config.settings.psm;
        self.cmap.apply_settings(&config.settings);
        self.cmap_preload(&config.cmap_keys);
        self.pmf.users.clear();
        self.store.db.set_events_kept(config.settings.events_kept);
        self.ensure_categories(&config.categories);
        let report = self.apply_config(config.tags, &config.manual);
        self.apply_storm_settings();
        Ok(vigil_proto::Response::Reload(report))
    }
}
