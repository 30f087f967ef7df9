//! CMAP hosted by vigild: requests, access control, persistence, the keys vigild keeps itself, and
//! delivery of track notifications to the connections that asked for them.

use vigil_core::cmap::{CmapMap as Map, CmapValue as V, Notification};
use vigil_proto::{CmapEntry, CmapMap, CmapNotification, CmapValue, ErrorCode, Response, ServerMsg, WireError};

use crate::conn::{Caller, ConnTx, Outgoing};
use crate::state::Daemon;

pub mod map;
pub mod mirror;

pub use map::*;

type Answer = Result<Response, WireError>;

/// The caller's supplementary groups, from /proc (SO_PEERCRED gives only the primary one): none when the
/// process there is no longer the caller's (its pid reused by another user's process since it connected).
fn groups_of(pid: Option<i32>, uid: u32) -> Vec<u32> {
    let Some(pid) = pid else { return vec![] };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return vec![];
    };
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| {
            v.split_whitespace()
                .filter_map(|g| g.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
    };
    // Real, effective, saved and file-system uids: the connection was made as the effective one.
    if field("Uid:").and_then(|u| u.get(1).copied()) != Some(uid) {
        return vec![];
    }
    field("Groups:").unwrap_or_default()
}

impl Daemon {
    fn cmap_in_group(&self, caller: Caller, gid: u32) -> bool {
        caller.gid == gid || groups_of(caller.pid, caller.uid).contains(&gid)
    }

    pub(crate) fn cmap_may_read(&self, caller: Caller) -> Result<(), WireError> {
        match self.cmap.read_gid {
            Some(g) if caller.uid != 0 && caller.uid != self.node.uid && !self.cmap_in_group(caller, g) => {
                Err(WireError::new(
                    ErrorCode::PermissionDenied,
                    format!("reading CMAP needs group {g}; uid {} is not in it", caller.uid),
                ))
            }
            _ => Ok(()),
        }
    }

    fn cmap_may_write(&self, caller: Caller) -> Result<(), WireError> {
        if caller.uid == 0
            || caller.uid == self.node.uid
            || self.cmap.write_gid.is_some_and(|g| self.cmap_in_group(caller, g))
        {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::PermissionDenied,
            match self.cmap.write_gid {
                Some(g) => format!("writing CMAP needs root or group {g}; uid {} has neither", caller.uid),
                None => format!("writing CMAP needs root; uid {} is not", caller.uid),
            },
        ))
    }

    fn cmap_map(&self, map: CmapMap) -> &Map {
        match map {
            CmapMap::Main => &self.cmap.main,
            CmapMap::Stats => &self.cmap.stats,
        }
    }

    /// Hands notifications to the connections that track the keys; they go out after the step's commit.
    pub fn cmap_notify(&mut self, map: CmapMap, notes: Vec<Notification>) {
        for n in notes {
            let Some(out) = self.cmap.conns.get(&n.owner) else {
                continue;
            };
            let Some(&track) = self.cmap.handles.get(&(map == CmapMap::Stats, n.track)) else {
                continue;
            };
            let msg = ServerMsg::CmapNotify(CmapNotification {
                track,
                event: n.event,
                key: n.key,
                new: n.new.as_ref().map(to_wire),
                old: n.old.as_ref().map(to_wire),
                context: n.context,
            });
            // Lost and counted, not queued without bound, when the tracker does not read them.
            self.outbox.push((out.for_notes(), Outgoing::msg(msg)));
            self.cmap.notified += 1;
        }
    }

    fn cmap_persist(&mut self, key: &str, persist: bool) {
        let wanted = persist
            || self.cmap.persisted.contains(key)
            || self.cmap.persist_prefixes.iter().any(|p| key.starts_with(p.as_str()));
        if !wanted {
            return;
        }
        self.cmap.persisted.insert(key.to_string());
        match self.cmap.main.get(key) {
            Ok(v) => {
                let r = to_record(v);
                self.store.batch.delete_cmap.retain(|k| k != key);
                self.store.batch.put_cmap.push((key.to_string(), r));
            }
            Err(_) => {
                self.cmap.persisted.remove(key);
                self.store.batch.put_cmap.retain(|(k, _)| k != key);
                self.store.batch.delete_cmap.push(key.to_string());
            }
        }
    }

    /// Loads the persisted keys.
    pub fn cmap_restore(&mut self) -> anyhow::Result<()> {
        for (k, r) in self.store.db.cmap()? {
            if k == crate::sam::state::EXPECTED_VOTES_KEY {
                if let v @ V::U32(1..) = from_record(&r) {
                    self.cmap.main.set_internal(&k, v);
                }
            } else if vigil_core::cmap::validate_key(&k).is_ok() && !self.cmap.main.is_readonly(&k) {
                self.cmap.main.set_internal(&k, from_record(&r));
                self.cmap.persisted.insert(k);
            }
        }
        Ok(())
    }

    /// Sets one of vigild's own keys (read-only for users), telling whoever tracks it.
    pub fn cmap_internal(&mut self, key: &str, value: V) {
        let notes = self.cmap.main.set_internal(key, value);
        self.cmap_notify(CmapMap::Main, notes);
    }

    pub fn cmap_internal_drop(&mut self, prefix: &str) {
        let notes = self.cmap.main.delete_prefix_internal(prefix);
        self.cmap_notify(CmapMap::Main, notes);
    }

    pub fn cmap_stat(&mut self, key: &str, value: V) {
        let notes = self.cmap.stats.set_internal(key, value);
        self.cmap_notify(CmapMap::Stats, notes);
    }

    /// A connection ended: its tracks end with it.
    pub fn on_closed(&mut self, conn: u64) {
        self.cmap.main.drop_owner(conn);
        self.cmap.stats.drop_owner(conn);
        let gone: Vec<u64> = self
            .cmap
            .tracks
            .iter()
            .filter(|(_, t)| t.2 == conn)
            .map(|(h, _)| *h)
            .collect();
        for h in gone {
            self.cmap_forget_track(h);
        }
        self.cmap.conns.remove(&conn);
        self.cmap.ipcs.remove(&conn);
        let notes = self.cmap.stats.delete_prefix_internal(&format!("stats.ipcs.{conn}."));
        self.cmap_notify(CmapMap::Stats, notes);
    }

    pub fn cmap_get(&self, caller: Caller, map: CmapMap, key: &str, ty: Option<u32>) -> Answer {
        self.cmap_may_read(caller)?;
        let m = self.cmap_map(map);
        let v = match ty {
            None => m.get(key),
            Some(code) => {
                let ty = vigil_core::cmap::CmapType::from_code(code).ok_or_else(|| {
                    WireError::new(ErrorCode::InvalidArgument, format!("{code} is not a cmap value type"))
                })?;
                m.get_typed(key, ty)
            }
        }
        .map_err(cmap_error)?;
        Ok(Response::CmapValue(to_wire(v)))
    }

    pub fn cmap_iter(&self, caller: Caller, map: CmapMap, prefix: &str) -> Answer {
        self.cmap_may_read(caller)?;
        Ok(Response::CmapEntries(
            self.cmap_map(map)
                .iter_prefix(prefix)
                .map(|(k, v)| CmapEntry {
                    key: k.to_string(),
                    value: to_wire(v),
                })
                .collect(),
        ))
    }

    pub fn cmap_set(&mut self, caller: Caller, key: &str, value: CmapValue, persist: bool) -> Answer {
        self.cmap_may_write(caller)?;
        if key == crate::sam::state::EXPECTED_VOTES_KEY {
            return self.set_expected_votes(&to_core(value));
        }
        let limits = self.cmap.limits;
        let notes = self.cmap.main.set(key, to_core(value), &limits).map_err(cmap_error)?;
        self.cmap_persist(key, persist);
        self.cmap_notify(CmapMap::Main, notes);
        Ok(Response::Ok)
    }

    pub fn cmap_cas(
        &mut self,
        caller: Caller,
        key: &str,
        expected: Option<CmapValue>,
        value: CmapValue,
        persist: bool,
    ) -> Answer {
        self.cmap_may_write(caller)?;
        let limits = self.cmap.limits;
        let expected = expected.map(to_core);
        let notes = self
            .cmap
            .main
            .compare_and_set(key, expected.as_ref(), to_core(value), &limits)
            .map_err(cmap_error)?;
        self.cmap_persist(key, persist);
        self.cmap_notify(CmapMap::Main, notes);
        Ok(Response::Ok)
    }

    pub fn cmap_delete(&mut self, caller: Caller, key: &str) -> Answer {
        self.cmap_may_write(caller)?;
        let notes = self.cmap.main.delete(key).map_err(cmap_error)?;
        self.cmap_persist(key, false);
        self.cmap_notify(CmapMap::Main, notes);
        Ok(Response::Ok)
    }

    pub fn cmap_adjust(&mut self, caller: Caller, key: &str, up: bool) -> Answer {
        self.cmap_may_write(caller)?;
        let notes = if up {
            self.cmap.main.inc(key)
        } else {
            self.cmap.main.dec(key)
        }
        .map_err(cmap_error)?;
        self.cmap_persist(key, false);
        self.cmap_notify(CmapMap::Main, notes);
        let v = self.cmap.main.get(key).map_err(cmap_error)?;
        Ok(Response::CmapValue(to_wire(v)))
    }

    pub fn cmap_track_add(
        &mut self,
        caller: Caller,
        map: CmapMap,
        key: &str,
        flags: u32,
        context: u64,
        out: &ConnTx,
    ) -> Answer {
        self.cmap_may_read(caller)?;
        // Every change of a key is matched against every track: one user's tracks must not make every
        // request slow for everyone.
        let held = self.cmap.tracks_per_uid.get(&caller.uid).copied().unwrap_or(0);
        if caller.uid != 0 && caller.uid != self.node.uid && held >= TRACKS_PER_UID {
            return Err(WireError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "uid {} already holds {held} CMAP tracks; the limit is {TRACKS_PER_UID} per user",
                    caller.uid
                ),
            ));
        }
        let m = match map {
            CmapMap::Main => &mut self.cmap.main,
            CmapMap::Stats => &mut self.cmap.stats,
        };
        let id = m.track_add(caller.conn, key, flags, context).map_err(cmap_error)?;
        let handle = self.cmap.next_track;
        self.cmap.next_track += 1;
        self.cmap.tracks.insert(handle, (map, id, caller.conn, caller.uid));
        self.cmap.handles.insert((map == CmapMap::Stats, id), handle);
        *self.cmap.tracks_per_uid.entry(caller.uid).or_default() += 1;
        self.cmap.conns.insert(caller.conn, out.clone());
        Ok(Response::CmapTrack(handle))
    }

    pub fn cmap_track_delete(&mut self, caller: Caller, handle: u64) -> Answer {
        let Some(&(map, id, owner, _)) = self.cmap.tracks.get(&handle).filter(|t| t.2 == caller.conn) else {
            return Err(WireError::new(
                ErrorCode::NotFound,
                format!("no track {handle} on this connection"),
            ));
        };
        let m = match map {
            CmapMap::Main => &mut self.cmap.main,
            CmapMap::Stats => &mut self.cmap.stats,
        };
        m.track_delete(owner, id).map_err(cmap_error)?;
        self.cmap_forget_track(handle);
        Ok(Response::Ok)
    }

    /// Forgets a track handle and what indexes it (the map's own track is dropped by the caller).
    fn cmap_forget_track(&mut self, handle: u64) {
        let Some((map, id, _, uid)) = self.cmap.tracks.remove(&handle) else {
            return;
        };
        self.cmap.handles.remove(&(map == CmapMap::Stats, id));
        if let Some(n) = self.cmap.tracks_per_uid.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.cmap.tracks_per_uid.remove(&uid);
            }
        }
    }
}

impl Daemon {
    pub fn cmap_set_text(&mut self, caller: Caller, key: &str, ty: &str, text: &str, persist: bool) -> Answer {
        let t = vigil_core::cmap::CmapType::parse_name(ty).ok_or_else(|| {
            WireError::new(
                ErrorCode::InvalidArgument,
                format!("{ty:?} is not a cmap type: use i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin"),
            )
        })?;
        let v = V::parse(t, text).map_err(cmap_error)?;
        self.cmap_set(caller, key, to_wire(&v), persist)
    }
}
