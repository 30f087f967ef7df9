//! A remote change is acknowledged like a local one: only once it is in the target node's state file.
//! The target's state dir is on a small tmpfs that is then filled, so that the commit of the change fails.

use std::os::unix::fs::PermissionsExt;

use vigil_client::proto::{CmapValue, ErrorCode};

use crate::etcd::Etcd;
use crate::harness::*;
use crate::sec_store::{fill, Tmpfs};

#[test]
fn a_remote_change_whose_commit_fails_is_not_acknowledged() {
    let etcd = Etcd::start1();
    let a = Vigild::start_args(&etcd.vigild_args("a", 2));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = dir.keep();
    let tmpfs = Tmpfs::mount(&dir.join("state"), "8m");
    let mut b = Vigild {
        dir: tempfile::TempDir::new_in(&dir).unwrap(),
        child: None,
        uid: None,
        scan: false,
        args: etcd.vigild_args("b", 2),
    };
    // The harness keeps its state in `<dir>/state`: point that at the tmpfs.
    std::os::unix::fs::symlink(&tmpfs.mount, b.path("state")).unwrap();
    b.spawn();
    wait_for("b up, seen from a", || {
        a.client().nodes().unwrap().into_iter().find(|n| n.name == "b" && n.up)
    });
    fill(&tmpfs.mount.join("filler"));

    // Through a, changes on b large enough that b's state file must grow: the first one b cannot
    // store was made in memory, and its answer must say so, as it does to a local caller. (Before,
    // a remote answer left at once, ahead of the commit, and said Ok.)
    let mut c = a.client();
    c.set_node(Some("b"));
    let mut stored = 0;
    let e = wait_for("a remote change the full disk cannot take", || {
        match c.cmap_set(
            &format!("remote.big{stored}"),
            CmapValue::Binary(vec![7; 500 << 10]),
            true,
        ) {
            Ok(()) => {
                stored += 1;
                assert!(stored < 40, "b's full disk took {stored} values of 500 KiB");
                None
            }
            Err(e) => Some(e),
        }
    });
    assert_eq!(e.code(), Some(ErrorCode::Internal), "{e}");
    assert!(e.to_string().contains("done, but not stored"), "{e}");
    drop(b);
    drop(tmpfs);
}
