//! The user and group databases (NSS), for a tag's `user` and `group`: names to numbers and back, and a
//! user's supplementary groups as initgroups(3) would set them. These calls may read files or ask a
//! network service: never in a child between clone and exec.

use std::ffi::{CStr, CString};

/// A user found by name: (uid, primary gid).
pub fn user_by_name(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is a plain C struct; all-zero is a valid (empty) value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: all pointers are valid; buf.len() is the true size of buf.
        let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if r == libc::ERANGE && buf.len() < (1 << 20) {
            let n = buf.len() * 4;
            buf.resize(n, 0);
            continue;
        }
        if r != 0 || result.is_null() {
            return None;
        }
        return Some((pw.pw_uid, pw.pw_gid));
    }
}

/// A group found by name or by number: (gid, name).
fn group_lookup(by: Result<&CStr, u32>) -> Option<(u32, String)> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: group is a plain C struct; all-zero is a valid (empty) value.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let r = match by {
            // SAFETY: all pointers are valid; buf.len() is the true size of buf.
            Ok(name) => unsafe {
                libc::getgrnam_r(name.as_ptr(), &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut result)
            },
            // SAFETY: as above.
            Err(gid) => unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut result) },
        };
        if r == libc::ERANGE && buf.len() < (1 << 20) {
            let n = buf.len() * 4;
            buf.resize(n, 0);
            continue;
        }
        if r != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success gr_name points to a NUL-terminated string inside buf, alive here.
        let name = unsafe { CStr::from_ptr(gr.gr_name) };
        return Some((gr.gr_gid, name.to_string_lossy().into_owned()));
    }
}

/// A group's number by name.
pub fn group_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    group_lookup(Ok(&c)).map(|(g, _)| g)
}

/// A group's name by number.
pub fn group_name(gid: u32) -> Option<String> {
    group_lookup(Err(gid)).map(|(_, n)| n)
}

/// The groups of `user` (with `gid` first), as initgroups(3) would give them: getgrouplist(3).
pub fn group_list(user: &str, gid: u32) -> Vec<u32> {
    let Ok(c) = CString::new(user) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; n as usize];
        let mut count = n;
        // SAFETY: `groups` has room for `count` gids, and getgrouplist writes at most that many,
        // reporting the number it needs in `count` when they do not fit.
        let r = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if r >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= n || count > 65_536 {
            return vec![gid];
        }
        n = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_are_found() {
        assert_eq!(user_by_name("root"), Some((0, 0)));
        assert_eq!(group_by_name("root"), Some(0));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert!(user_by_name("no-such-user-of-vigil").is_none());
        assert!(group_list("root", 0).contains(&0));
    }
}
