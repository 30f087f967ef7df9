//! CMAP hosted by vigild: requests, access control, persistence, the keys vigild keeps itself, and
//! delivery of track notifications to the connections that asked for them.

use std::collections::{BTreeSet, HashMap};

use vigil_core::cmap::{CmapError, CmapMap as Map, CmapValue as V, Limits, Notification, TrackId};
use vigil_proto::{CmapEntry, CmapMap, CmapNotification, CmapValue, ErrorCode, Response, ServerMsg, WireError};
use vigil_store::CmapRecord;

use crate::server::{Caller, ConnTx, Outgoing};
use crate::state::Daemon;

type Answer = Result<Response, WireError>;

/// Keys under these prefixes are vigild's own: users read and track them, never write them.
pub const READONLY_PREFIXES: [&str; 3] = ["runtime.", "vigil.", "quorum."];

/// CMAP's state in vigild, beside the maps' own rules.
pub struct Cmap {
    pub main: Map,
    pub stats: Map,
    pub limits: Limits,
    /// Keys written with the persist flag or under a persistent prefix.
    pub persisted: BTreeSet<String>,
    pub persist_prefixes: Vec<String>,
    /// Who may write (besides root and vigild's user), and who may read (None: everyone).
    pub write_gid: Option<u32>,
    pub read_gid: Option<u32>,
    /// Track handles as the wire knows them: (map, the map's own id, owning connection, its uid).
    pub tracks: HashMap<u64, (CmapMap, TrackId, u64, u32)>,
    /// The handle of each (map is stats, the map's own id): a notification finds its handle at once,
    /// however many tracks there are.
    pub handles: HashMap<(bool, TrackId), u64>,
    /// Tracks held by each uid other than root's, bounded by [`TRACKS_PER_UID`].
    pub tracks_per_uid: HashMap<u32, usize>,
    pub next_track: u64,
    /// Where each tracking connection's notifications go.
    pub conns: HashMap<u64, ConnTx>,
}

/// CMAP tracks one uid other than root (and vigild's own) may hold over all its connections.
pub const TRACKS_PER_UID: usize = 1024;

impl Cmap {
    pub fn new() -> Cmap {
        Cmap {
            main: Map::new(READONLY_PREFIXES.iter().map(|p| p.to_string()).collect()),
            stats: Map::new(vec![String::new()]),
            limits: Limits::default(),
            persisted: BTreeSet::new(),
            persist_prefixes: Vec::new(),
            write_gid: None,
            read_gid: None,
            tracks: HashMap::new(),
            handles: HashMap::new(),
            tracks_per_uid: HashMap::new(),
            next_track: 1,
            conns: HashMap::new(),
        }
    }
}

impl Default for Cmap {
    fn default() -> Cmap {
        Cmap::new()
    }
}

pub fn to_core(v: CmapValue) -> V {
    match v {
        CmapValue::I8(x) => V::I8(x),
        CmapValue::U8(x) => V::U8(x),
        CmapValue::I16(x) => V::I16(x),
        CmapValue::U16(x) => V::U16(x),
        CmapValue::I32(x) => V::I32(x),
        CmapValue::U32(x) => V::U32(x),
        CmapValue::I64(x) => V::I64(x),
        CmapValue::U64(x) => V::U64(x),
        CmapValue::Float(x) => V::Float(x),
        CmapValue::Double(x) => V::Double(x),
        CmapValue::Str(x) => V::Str(x),
        CmapValue::Binary(x) => V::Binary(x),
        // Normalised: bytes that are UTF-8 after all become the one form of that string.
        CmapValue::StrBytes(x) => V::string(x),
    }
}

pub fn to_wire(v: &V) -> CmapValue {
    match v {
        V::I8(x) => CmapValue::I8(*x),
        V::U8(x) => CmapValue::U8(*x),
        V::I16(x) => CmapValue::I16(*x),
        V::U16(x) => CmapValue::U16(*x),
        V::I32(x) => CmapValue::I32(*x),
        V::U32(x) => CmapValue::U32(*x),
        V::I64(x) => CmapValue::I64(*x),
        V::U64(x) => CmapValue::U64(*x),
        V::Float(x) => CmapValue::Float(*x),
        V::Double(x) => CmapValue::Double(*x),
        V::Str(x) => CmapValue::Str(x.clone()),
        V::Binary(x) => CmapValue::Binary(x.clone()),
        V::StrBytes(x) => CmapValue::StrBytes(x.clone()),
    }
}

pub fn to_record(v: &V) -> CmapRecord {
    match v {
        V::I8(x) => CmapRecord::I8(*x),
        V::U8(x) => CmapRecord::U8(*x),
        V::I16(x) => CmapRecord::I16(*x),
        V::U16(x) => CmapRecord::U16(*x),
        V::I32(x) => CmapRecord::I32(*x),
        V::U32(x) => CmapRecord::U32(*x),
        V::I64(x) => CmapRecord::I64(*x),
        V::U64(x) => CmapRecord::U64(*x),
        V::Float(x) => CmapRecord::Float(*x),
        V::Double(x) => CmapRecord::Double(*x),
        V::Str(x) => CmapRecord::Str(x.clone()),
        V::Binary(x) => CmapRecord::Binary(x.clone()),
        V::StrBytes(x) => CmapRecord::StrBytes(x.clone()),
    }
}

fn from_record(r: &CmapRecord) -> V {
    match r {
        CmapRecord::I8(x) => V::I8(*x),
        CmapRecord::U8(x) => V::U8(*x),
        CmapRecord::I16(x) => V::I16(*x),
        CmapRecord::U16(x) => V::U16(*x),
        CmapRecord::I32(x) => V::I32(*x),
        CmapRecord::U32(x) => V::U32(*x),
        CmapRecord::I64(x) => V::I64(*x),
        CmapRecord::U64(x) => V::U64(*x),
        CmapRecord::Float(x) => V::Float(*x),
        CmapRecord::Double(x) => V::Double(*x),
        CmapRecord::Str(x) => V::Str(x.clone()),
        CmapRecord::Binary(x) => V::Binary(x.clone()),
        CmapRecord::StrBytes(x) => V::string(x.clone()),
    }
}

/// corosync's answers, as wire codes: the C library maps them back to cs_error_t.
pub fn cmap_error(e: CmapError) -> WireError {
    let code = match &e {
        CmapError::InvalidKey { .. } | CmapError::InvalidParam(_) | CmapError::TypeMismatch { .. } => {
            ErrorCode::InvalidArgument
        }
        CmapError::NotExist(_) => ErrorCode::NotFound,
        CmapError::TooLarge { .. } => ErrorCode::LimitExceeded,
        CmapError::Access(_) => ErrorCode::PermissionDenied,
        CmapError::CasMismatch { .. } => ErrorCode::Conflict,
    };
    WireError::new(code, e.to_string())
}

/// The caller's supplementary groups, from /proc (SO_PEERCRED gives only the primary one).
fn groups_of(pid: Option<i32>) -> Vec<u32> {
    let Some(pid) = pid else { return vec![] };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Groups:")).map(|l| {
                l["Groups:".len()..]
                    .split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

impl Daemon {
    fn cmap_in_group(&self, caller: Caller, gid: u32) -> bool {
        caller.gid == gid || groups_of(caller.pid).contains(&gid)
    }

    fn cmap_may_read(&self, caller: Caller) -> Result<(), WireError> {
        match self.cmap.read_gid {
            Some(g) if caller.uid != 0 && caller.uid != self.uid && !self.cmap_in_group(caller, g) => {
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
            || caller.uid == self.uid
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
                self.batch.delete_cmap.retain(|k| k != key);
                self.batch.put_cmap.push((key.to_string(), r));
            }
            Err(_) => {
                self.cmap.persisted.remove(key);
                self.batch.put_cmap.retain(|(k, _)| k != key);
                self.batch.delete_cmap.push(key.to_string());
            }
        }
    }

    /// Loads the persisted keys.
    pub fn cmap_restore(&mut self) -> anyhow::Result<()> {
        for (k, r) in self.store.cmap()? {
            if k == crate::sam::EXPECTED_VOTES_KEY {
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
        if key == crate::sam::EXPECTED_VOTES_KEY {
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
        if caller.uid != 0 && caller.uid != self.uid && held >= TRACKS_PER_UID {
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

impl Cmap {
    pub fn from_settings(s: &crate::config::Settings) -> Cmap {
        let mut c = Cmap::new();
        c.apply_settings(s);
        c
    }

    pub fn apply_settings(&mut self, s: &crate::config::Settings) {
        self.persist_prefixes = s.cmap_persist_prefixes.clone();
        self.write_gid = s.cmap_write_gid;
        self.read_gid = s.cmap_read_gid;
        self.limits = Limits {
            max_value_bytes: s.cmap_max_value_bytes,
        };
    }
}

impl Daemon {
    /// The keys that describe vigild itself.
    pub fn cmap_runtime_keys(&mut self) {
        self.cmap_internal("runtime.start_time", V::U64(self.started.as_millis()));
        self.cmap_internal("runtime.version", V::Str(env!("CARGO_PKG_VERSION").into()));
        self.cmap_internal("runtime.node_name", V::Str(self.node.clone()));
        self.cmap_internal("runtime.node_id", V::U32(self.node_id));
        self.cmap_internal("quorum.provider", V::Str("corosync_votequorum".into()));
        if self.cmap.main.get(crate::sam::EXPECTED_VOTES_KEY).is_err() {
            self.cmap_internal(crate::sam::EXPECTED_VOTES_KEY, V::U32(1));
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

    /// `vigil.pmf.<tag>.*`: kept in step with the tag.
    pub fn cmap_tag_keys(&mut self, name: &vigil_core::TagName) {
        let prefix = tag_key_prefix(name.as_str());
        let Some(e) = self.tags.get(name).filter(|_| fits(&prefix)) else {
            self.cmap_internal_drop(&prefix);
            return;
        };
        let state = e.tag.state().name().to_string();
        let pid = e
            .tag
            .main()
            .filter(|m| e.tag.tree().contains(m.pid))
            .map_or(0, |m| m.pid);
        let restarts = e.tag.restarts_used(crate::state::now());
        self.cmap_internal(&format!("{prefix}state"), V::Str(state));
        self.cmap_internal(&format!("{prefix}pid"), V::I32(pid));
        self.cmap_internal(&format!("{prefix}restarts"), V::U32(restarts));
    }

    /// `vigil.psm.<category>.<pid>.*`: kept in step with the member.
    pub fn cmap_member_keys(&mut self, category: &str, pid: i32) {
        let prefix = member_key_prefix(category, pid);
        let Some(m) = (self.psm.members.get(&pid))
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
        let prefix = format!("stats.ipcs.{}.", caller.conn);
        let requests = match self.cmap.stats.get(&format!("{prefix}requests")) {
            Ok(V::U64(n)) => n + 1,
            _ => {
                self.cmap_stat(&format!("{prefix}uid"), V::U32(caller.uid));
                self.cmap_stat(&format!("{prefix}pid"), V::I32(caller.pid.unwrap_or(0)));
                1
            }
        };
        self.cmap_stat(&format!("{prefix}requests"), V::U64(requests));
    }

    /// `stats.vigild.*`: vigild's own counters.
    pub fn cmap_daemon_stats(&mut self) {
        self.cmap_stat("stats.vigild.tags", V::U32(self.tags.len() as u32));
        self.cmap_stat("stats.vigild.processes", V::U32(self.procs.len() as u32));
        self.cmap_stat("stats.vigild.psm_members", V::U32(self.psm.members.len() as u32));
        self.cmap_stat("stats.vigild.last_seq", V::U64(self.seq));
        self.cmap_stat("stats.vigild.subscribers", V::U32(self.subscriptions.len() as u32));
        self.cmap_stat("stats.vigild.cmap_keys", V::U64(self.cmap.main.len() as u64));
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

/// The prefix of a tag's keys. Tag names may hold characters keys may not (`,` `@` `+`, letters beyond
/// ASCII): those are escaped (`vigil_core::cmap::key_segment`).
pub fn tag_key_prefix(tag: &str) -> String {
    format!("vigil.pmf.{}.", vigil_core::cmap::key_segment(tag))
}

/// The prefix of a PSM member's keys, escaped as a tag's.
pub fn member_key_prefix(category: &str, pid: i32) -> String {
    format!("vigil.psm.{}.{pid}.", vigil_core::cmap::key_segment(category))
}

/// Whether every key under `prefix` stays within CMAP's 255 bytes; a longer name has no keys.
fn fits(prefix: &str) -> bool {
    vigil_core::cmap::validate_key(&format!("{prefix}restarts")).is_ok()
}
