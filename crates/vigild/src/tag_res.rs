//! A tag's resources: who asks for which user and group (and may), names looked up, limits checked, and
//! their conversions between the wire, the rules and the store.

use vigil_core::{Limit, LimitKind, Resources, TagName, TagSpec};
use vigil_proto::{self as proto, ErrorCode, WireError};
use vigil_store as store;
use vigil_sys::ChildLimit;

fn invalid(name: &TagName, msg: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, format!("tag {name}: {msg}"))
}

/// Who makes the tag, and whether vigild may start its processes as someone else.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    pub uid: u32,
    pub gid: u32,
    /// Root asking a root vigild (or the config file of a root vigild): any user and group.
    pub may_switch: bool,
}

/// Gives `spec` the resources asked for: the user and group (names or numbers) with the user's
/// supplementary groups, the limits, nice, umask, stderr log and tag group, each checked. Only an asker
/// that `may_switch` may name another user or group than its own; `spec.uid`/`gid` (the asker's) are
/// replaced by the ones named.
pub fn apply(name: &TagName, spec: &mut TagSpec, wire: &proto::Resources, asker: Asker) -> Result<(), WireError> {
    // Bounded before anything is looked at: each name at most once, and checking that is quadratic.
    if wire.limits.len() > LimitKind::ALL.len() {
        return Err(invalid(
            name,
            format!(
                "{} resource limits; there are {} kinds",
                wire.limits.len(),
                LimitKind::ALL.len()
            ),
        ));
    }
    let mut res = Resources::default();
    let (mut uid, mut gid) = (spec.uid, spec.gid);
    let mut user_name = None;
    if let Some(u) = wire.user.as_deref() {
        if u.is_empty() || u.contains('\0') || u.len() > 256 {
            return Err(invalid(name, format!("user {u:?} is not a user name or number")));
        }
        match u.parse::<u32>() {
            Ok(n) => {
                uid = n;
                match vigil_sys::user_by_uid(n) {
                    Some((uname, primary, _)) => {
                        gid = primary;
                        user_name = Some(uname);
                    }
                    None if wire.group.is_none() => {
                        return Err(invalid(
                            name,
                            format!("user {n} is not in the user database: give its group too"),
                        ))
                    }
                    None => {}
                }
            }
            Err(_) => {
                let (n, primary) =
                    vigil_sys::user_by_name(u).ok_or_else(|| invalid(name, format!("no such user: {u}")))?;
                uid = n;
                gid = primary;
                user_name = Some(u.to_string());
            }
        }
    }
    if let Some(g) = wire.group.as_deref() {
        if g.is_empty() || g.contains('\0') || g.len() > 256 {
            return Err(invalid(name, format!("group {g:?} is not a group name or number")));
        }
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => vigil_sys::group_by_name(g).ok_or_else(|| invalid(name, format!("no such group: {g}")))?,
        };
    }
    if !asker.may_switch && (uid != asker.uid || gid != asker.gid) {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!(
                "tag {name}: only root may run a tag as another user or group (uid {} gid {} asked for uid {uid} \
                 gid {gid})",
                asker.uid, asker.gid
            ),
        ));
    }
    // A named user gets its supplementary groups, as a login would (initgroups); a number alone keeps
    // the primary group alone, as before.
    if let Some(u) = &user_name {
        res.groups = vigil_sys::group_list(u, gid);
    }
    // Names are kept only when a user or group was asked for: a tag without resources keeps the spec
    // it had before they existed, so that a tag restored from an older state file compares equal to
    // its config entry and is not restarted by the upgrade. Status looks the others up (`to_wire`).
    if wire.user.is_some() {
        res.user = user_name.or_else(|| vigil_sys::user_by_uid(uid).map(|(n, _, _)| n));
    }
    if wire.user.is_some() || wire.group.is_some() {
        res.group = vigil_sys::group_name(gid);
    }
    for l in &wire.limits {
        let kind = LimitKind::parse(&l.name)
            .ok_or_else(|| invalid(name, vigil_core::ResError::UnknownLimit(l.name.clone())))?;
        let limit = Limit {
            kind,
            soft: l.soft,
            hard: l.hard,
        };
        // As a user, the child may not raise a hard limit above the one it inherits: the kernel would
        // refuse at each start. Said now, with the numbers.
        if !asker.may_switch {
            if let Some((_, inherited)) = ChildLimit::resource_by_name(kind.name()).and_then(ChildLimit::current) {
                let want = l.hard.unwrap_or(u64::MAX).max(l.soft.unwrap_or(u64::MAX));
                if want > inherited {
                    let show = |n: u64| {
                        if n == u64::MAX {
                            "unlimited".into()
                        } else {
                            n.to_string()
                        }
                    };
                    return Err(WireError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "tag {name}: limit {limit} is above the hard limit the tag inherits ({}): only root \
                             may raise a hard limit",
                            show(inherited)
                        ),
                    ));
                }
            }
        }
        res.limits.push(limit);
    }
    res.nice = wire.nice;
    res.umask = wire.umask;
    res.stderr_log = wire.stderr_log.clone();
    res.log_timestamps = wire.log_timestamps;
    res.tag_group = wire.tag_group.clone();
    res.validate().map_err(|e| invalid(name, e))?;
    spec.uid = uid;
    spec.gid = gid;
    spec.res = res;
    Ok(())
}

/// The limits as the child sets them.
pub fn child_limits(res: &Resources) -> Vec<ChildLimit> {
    res.limits
        .iter()
        .filter_map(|l| {
            Some(ChildLimit {
                resource: ChildLimit::resource_by_name(l.kind.name())?,
                soft: l.soft.unwrap_or(u64::MAX),
                hard: l.hard.unwrap_or(u64::MAX),
            })
        })
        .collect()
}

pub fn to_wire(name: &TagName, spec: &TagSpec) -> proto::TagResources {
    let r = &spec.res;
    let user = r
        .user
        .clone()
        .or_else(|| vigil_sys::user_by_uid(spec.uid).map(|(n, _, _)| n));
    let group = r.group.clone().or_else(|| vigil_sys::group_name(spec.gid));
    proto::TagResources {
        tag: name.to_string(),
        uid: spec.uid,
        gid: spec.gid,
        user,
        group,
        groups: r.groups.clone(),
        resources: proto::Resources {
            user: r.user.clone(),
            group: r.group.clone(),
            limits: r
                .limits
                .iter()
                .map(|l| proto::LimitSpec {
                    name: l.kind.name().into(),
                    soft: l.soft,
                    hard: l.hard,
                })
                .collect(),
            nice: r.nice,
            umask: r.umask,
            stderr_log: r.stderr_log.clone(),
            log_timestamps: r.log_timestamps,
            tag_group: r.tag_group.clone(),
        },
    }
}

pub fn to_record(r: &Resources) -> store::ResRecord {
    store::ResRecord {
        user: r.user.clone(),
        group: r.group.clone(),
        groups: r.groups.clone(),
        limits: r
            .limits
            .iter()
            .map(|l| store::LimitRecord {
                name: l.kind.name().into(),
                soft: l.soft,
                hard: l.hard,
            })
            .collect(),
        nice: r.nice,
        umask: r.umask,
        stderr_log: r.stderr_log.clone(),
        log_timestamps: r.log_timestamps,
        tag_group: r.tag_group.clone(),
    }
}

pub fn from_record(r: &store::ResRecord) -> Result<Resources, String> {
    Ok(Resources {
        user: r.user.clone(),
        group: r.group.clone(),
        groups: r.groups.clone(),
        limits: r
            .limits
            .iter()
            .map(|l| {
                Ok(Limit {
                    kind: LimitKind::parse(&l.name).ok_or_else(|| format!("unknown limit {:?}", l.name))?,
                    soft: l.soft,
                    hard: l.hard,
                })
            })
            .collect::<Result<_, String>>()?,
        nice: r.nice,
        umask: r.umask,
        stderr_log: r.stderr_log.clone(),
        log_timestamps: r.log_timestamps,
        tag_group: r.tag_group.clone(),
    })
}
