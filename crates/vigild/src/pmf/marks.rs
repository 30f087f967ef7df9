//! Start markers: how the next vigild finds every command this one started, even one whose record never
//! reached the store.
//!
//! A command is spawned while a loop step runs, and the batch that records it is committed at the end of
//! the step: a `kill -9` in between leaves a process the store does not know. So every command gets one
//! more variable in its environment, inherited by its descendants:
//!
//! `VIGIL_START=<generation>:<mac>:<tag>`
//!
//! where the generation is the tag's count of starts including this one (`Tag::starts`, which the store
//! keeps), and the mac is HMAC-SHA256 over the uid the command runs as, the generation and the tag name,
//! keyed with 32 random bytes kept in `start.key` in the state dir (mode 0600, vigild's user only). At
//! startup vigild reads the variable from every process's `/proc/PID/environ` and believes a marker only
//! if its mac checks out for the uid that process runs as (real, effective, saved and file-system uids
//! all the same): a user sees the markers of their own tags only, and cannot make one for another user's
//! tag nor for a process of another user, so no forged marker makes vigild adopt or end another user's
//! process. See `Daemon::restore` for what is done with the processes found.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use ring::hmac;
use vigil_core::ProcId;

/// The environment variable of the marker.
pub const VAR: &str = "VIGIL_START";
const KEY_FILE: &str = "start.key";
const KEY_LEN: usize = 32;
/// Bytes of the HMAC kept in a marker: 128 bits cannot be guessed.
const MAC_LEN: usize = 16;

/// The key that signs the markers of this state dir.
pub struct Marks {
    key: hmac::Key,
}

/// A process that carries a valid marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: ProcId,
    pub tag: String,
    pub generation: u64,
    pub uid: u32,
    /// Its session: a command is the leader of a session of its own.
    pub session: i32,
}

impl Marks {
    /// Reads the key of the state dir, or makes one (on the first start with markers, or after a crash
    /// left a partial file: markers signed with a lost key are then simply not believed).
    pub fn load(state_dir: &Path) -> anyhow::Result<Marks> {
        let path = state_dir.join(KEY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) if b.len() == KEY_LEN => b,
            _ => {
                let mut b = vec![0u8; KEY_LEN];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                    .map_err(|_| anyhow::anyhow!("no random bytes from the system for {}", path.display()))?;
                // Written whole under another name, then renamed: a crash leaves the old file or the new.
                let tmp = state_dir.join(format!("{KEY_FILE}.new"));
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                f.write_all(&b)
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename {}", tmp.display()))?;
                b
            }
        };
        Ok(Marks {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    fn mac(&self, uid: u32, generation: u64, tag: &str) -> String {
        let msg = format!("{uid}\0{generation}\0{tag}");
        let tag = hmac::sign(&self.key, msg.as_bytes());
        tag.as_ref()[..MAC_LEN].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The marker of the `generation`th start of `tag`, running as `uid`.
    pub fn value(&self, uid: u32, tag: &str, generation: u64) -> String {
        format!("{generation}:{}:{tag}", self.mac(uid, generation, tag))
    }

    /// The generation and tag of a marker, if it was made by this key for `uid`.
    pub fn check(&self, value: &[u8], uid: u32) -> Option<(u64, String)> {
        let value = std::str::from_utf8(value).ok()?;
        // The tag comes last: its name may hold ':'.
        let mut parts = value.splitn(3, ':');
        let generation: u64 = parts.next()?.parse().ok()?;
        let mac = parts.next()?;
        let tag = parts.next()?;
        let expected = self.mac(uid, generation, tag);
        // Compared in constant time, as a mac should be: no early exit at the first difference.
        let differ = mac.len() != expected.len()
            || mac.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0;
        if differ {
            return None;
        }
        Some((generation, tag.to_string()))
    }

    /// Every live process of `table` (but vigild itself and those `known` already) with a valid marker.
    /// The processes the store holds are known: after a re-exec or a kill with thousands of tags running,
    /// their environments are not read.
    pub fn scan(&self, table: &vigil_sys::ProcTable, known: impl Fn(ProcId) -> bool) -> Vec<Found> {
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        for pid in table.pids() {
            let Some(st) = table.stat(pid).filter(|s| s.state != 'Z' && pid != me) else {
                continue;
            };
            let id = ProcId {
                pid,
                start_time: st.start_time,
            };
            if known(id) {
                continue;
            }
            // Most processes have no marker: their status is not read.
            let Ok(Some(value)) = vigil_sys::environ_var(pid, VAR) else {
                continue;
            };
            let Ok(uids) = vigil_sys::uids(pid) else { continue };
            let uid = uids[0];
            if uids.iter().any(|u| *u != uid) {
                continue;
            }
            if let Some((generation, tag)) = self.check(&value, uid) {
                found.push(Found {
                    id,
                    tag,
                    generation,
                    uid,
                    session: st.session,
                });
            }
        }
        found.sort_by_key(|f| f.id.pid);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_checks_out_only_for_its_uid_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let m = Marks::load(dir.path()).unwrap();
        let v = m.value(1000, "web:1", 7);
        assert_eq!(m.check(v.as_bytes(), 1000), Some((7, "web:1".to_string())));
        // Another uid, another generation, another tag, a truncated mac: all refused.
        assert_eq!(m.check(v.as_bytes(), 1001), None);
        assert_eq!(m.check(v.replacen("7:", "8:", 1).as_bytes(), 1000), None);
        assert_eq!(m.check(format!("{v}x").as_bytes(), 1000), None);
        assert_eq!(m.check(b"7:00:web:1", 1000), None);
        assert_eq!(m.check(b"garbage", 1000), None);
        // The key is kept: the next vigild on this state dir believes the marker; another dir's does not.
        let again = Marks::load(dir.path()).unwrap();
        assert_eq!(again.check(v.as_bytes(), 1000), Some((7, "web:1".to_string())));
        let other = tempfile::tempdir().unwrap();
        assert_eq!(Marks::load(other.path()).unwrap().check(v.as_bytes(), 1000), None);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
