//! libcfg from C: Tru64's cfg_psm_* calls and the three examples of cfg_psm_memops(3), compiled with gcc
//! against vigil's headers, against a real vigild.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use vigil_client::proto::{PsmNode, PSM_FL_EXIT};

use crate::harness::*;

fn build(name: &str) -> PathBuf {
    let out = c_lib_dir().join(name);
    compile_c(&[c_src(&format!("{name}.c"))], &out, true, &["cfg"]);
    out
}

fn run(v: &Vigild, exe: &PathBuf, args: &[&str], socket: Option<PathBuf>) -> String {
    let o = Command::new(exe)
        .args(args)
        .env("VIGIL_SOCKET", socket.unwrap_or_else(|| v.socket()))
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{exe:?} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

const MEMBERS: &str = "catadd 0 0
catadd_again 0 17
catadd_null 0 22
catadd_badname 0 22
catadd_zeus 0 95
catadd_empty 0 0
catrem 0 95
catrem_missing 0 95
catget_all 0 0
cat 1/2 cat1 members 0 running 0
cat 2/2 empty members 0 running 0
catfree_cleared 1
catget_missing 0 2
catget_missing_null 1
catget_nullrsp 0 22
memadd 0 0
memadd_again 0 114
memadd_other_category 0 114
memadd_nopid 0 3
memadd_nullcat 0 22
memadd_zeus 0 95
memget_cat 0 0
rec 1/1/1 pid_ok 1 exit 0 flags 0 name_ok 1 state running argv0 sleep argv1 1000
memfree_cleared 1
memget_pid_anycat 0 0
count 1
memget_empty_category 0 0
zero_record 0 0 0 0 0 0 0 0 0
memget_missing_pid 0 2
memget_missing_null 1
memget_missing_cat 0 2
memget_nullrsp 0 22
memget_allnode 0 0
allnode_count 1
memget_zeus 0 95
memget_list 0 0
list_count 1
catname mountd httpd 1
";

const EXITED: &str = "memget_exited 0 0
exited flags 1 signaled 1 sig 9 state exited
memrem 0 0
memrem_again 0 2
";

#[test]
fn every_cfg_psm_call_and_error_path() {
    let v = Vigild::start();
    let exe = build("cfg_test");
    let mut sleeper = Command::new("sleep").arg("1000").stdout(Stdio::null()).spawn().unwrap();
    let pid = sleeper.id() as i32;
    wait_argv(pid);
    // Errnos: EEXIST 17, EINVAL 22, ENOTSUP 95 (other nodes need cluster mode; categories cannot be
    // removed), EALREADY 114 (one category per running process), ESRCH 3, ENOENT 2.
    assert_eq!(run(&v, &exe, &["members", &pid.to_string()], None), MEMBERS);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    wait_for("vigild to see the member exit", || {
        let m = v
            .client()
            .psm_get(&PsmNode(String::new()), Some("cat1"), Some(pid))
            .ok()?;
        m.first().filter(|m| m.flags & PSM_FL_EXIT != 0).map(|_| ())
    });
    assert_eq!(run(&v, &exe, &["exited", &pid.to_string()], None), EXITED);
    // vigild out of reach: the framework's "can't connect" (6), and no array.
    let nowhere = v.dir.path().join("nowhere.sock");
    assert_eq!(
        run(&v, &exe, &["noconnect"], Some(nowhere)),
        "memadd 6 0\nmemget 6 0\nmemget_null 1\n"
    );
}

#[test]
fn the_three_examples_of_cfg_psm_memops_work_as_written() {
    let v = Vigild::start();
    let (regself, proxy, count) = (
        build("psm_example_regself"),
        build("psm_example_proxy"),
        build("psm_example_count"),
    );
    // No mountd category yet: the third example reports the error.
    assert_eq!(run(&v, &count, &[], None), "error: framework 0, subsystem errno 2\n");
    let out = v.dir.path().join("regself.out");
    let mut daemon = Command::new(&regself)
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let pid = daemon.id() as i32;
    wait_for("the self-registration", || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|s| s.contains("registered"))
            .map(|_| ())
    });
    let m = v
        .client()
        .psm_get(&PsmNode(String::new()), Some("mountd"), Some(pid))
        .unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].argv[0].ends_with("psm_example_regself"), "{m:?}");
    assert_eq!(run(&v, &count, &[], None), "running 1 instance(s) of mountd\n");
    // The proxy add on host zeus: another node, which needs cluster mode (ENOTSUP).
    assert_eq!(run(&v, &proxy, &[], None), "error: framework 0, subsystem errno 95\n");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    wait_for("the exit of the registered example", || {
        let m = v
            .client()
            .psm_get(&PsmNode(String::new()), Some("mountd"), Some(pid))
            .ok()?;
        m.first().filter(|m| m.flags & PSM_FL_EXIT != 0).map(|_| ())
    });
    assert_eq!(run(&v, &count, &[], None), "running 0 instance(s) of mountd\n");
}
