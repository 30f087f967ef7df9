//! libsam.so.4 from C: corosync's sam.h, compiled with gcc against Debian's headers and against vigil's,
//! and a binary linked against Debian's libsam run with vigil's (LD_LIBRARY_PATH), all with a real vigild.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vigil_client::proto::{CmapValue, Value};

use crate::harness::*;

/// The test program, built once per header set.
fn program(vigil_headers: bool) -> PathBuf {
    c_program("sam_test.c", vigil_headers, &["sam"])
}

/// Runs the program to its end (its supervisor's exit); its exit code and its lines.
fn run(v: &Vigild, exe: &Path, scenario: &str, lib_dir: &Path) -> (i32, Vec<String>) {
    let name = exe.file_name().unwrap().to_string_lossy();
    let out = v.dir.path().join(format!("{scenario}-{name}.out"));
    let mut child = Command::new(exe)
        .arg(&out)
        .arg(scenario)
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", lib_dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the C program");
    let code = exit_code(&mut child);
    let lines = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    (code, lines)
}

/// Waits (with the deadline) for a supervisor to exit; its exit code.
fn exit_code(child: &mut std::process::Child) -> i32 {
    wait_deadline(child, "the SAM supervisor").code().unwrap_or(-1)
}

const API: &str = "0 start 9
0 stop 9
0 hc_send 9
0 finalize 9
0 register 9
0 mark_failed 9
0 warn_signal_set 9
0 data_getsize 9
0 data_getsize_null 7
0 data_restore 9
0 data_restore_null 7
0 data_store 9
0 hc_callback_register 9
0 initialize_bad_policy 7
0 initialize_quorum_only 7
0 initialize 1
0 initialize_again 9
0 start 9
0 hc_send 9
0 hc_callback_register 9
0 mark_failed 9
0 warn_signal_set 1
0 data_store 1
0 data_getsize 1
0 size 4
1 register 1
1 register_again 9
1 hc_send 9
1 stop 9
1 mark_failed 7
1 data_restore_small 7
1 data_restore 1
1 data_is_pre 1
1 hc_callback_register_null_first 7
1 start 1
1 start_again 9
1 hc_callback_register_started 9
1 hc_send 1
1 stop 1
1 data_store_null 1
1 data_getsize 1
1 size 0
1 finalize 1
1 finalize_again 9
1 start 9
1 hc_send 9
1 data_getsize 9
1 warn_signal_set 9";

#[test]
fn every_sam_function_returns_corosyncs_codes_with_either_headers() {
    let v = Vigild::start();
    for vigil_headers in [false, true] {
        let (code, lines) = run(&v, &program(vigil_headers), "api", &c_lib_dir());
        assert_eq!(code, 0, "{lines:#?}");
        assert_eq!(lines.join("\n"), API, "vigil headers: {vigil_headers}");
    }
}

#[test]
fn a_binary_linked_against_debians_libsam_runs_on_vigils() {
    // Linked against /usr/lib's libsam.so.4 (Debian's, with its symbol versions), then run with vigil's.
    let exe = c_lib_dir().join("sam_test_linked_debian");
    let o = Command::new("gcc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(c_src("sam_test.c"))
        .arg("-l:libsam.so.4")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = Vigild::start();
    let out = v.dir.path().join("ldd");
    let ldd = Command::new("ldd")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .output()
        .unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned();
    assert!(ldd.contains(&c_lib_dir().display().to_string()), "{ldd}");
    let err_file = v.dir.path().join("stderr");
    let mut child = Command::new(&exe)
        .arg(&out)
        .arg("api")
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    let code = exit_code(&mut child);
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert_eq!(code, 0, "{err}");
    // No "no version information available" or any other word from the dynamic linker.
    assert_eq!(err, "", "stderr of a binary linked against Debian's libsam");
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim_end(), API);
}

#[test]
fn c_instances_restart_with_their_data_and_the_warn_signal_comes_first() {
    let v = Vigild::start();
    let exe = program(true);
    let (code, lines) = run(&v, &exe, "restart", &c_lib_dir());
    assert_eq!(code, 7, "{lines:#?}");
    for n in 1..=4 {
        assert!(lines.contains(&format!("{n} register 1")), "{lines:#?}");
    }
    for n in 2..=4 {
        assert!(lines.contains(&format!("{n} data_gen {}", n - 1)), "{lines:#?}");
    }
    assert!(lines.contains(&"1 size 0".to_string()));
    // The supervisor reports to vigild from its own loop while vigild keeps up: it has no other thread
    // (one would be forked along with each instance, and woken on the way), and each instance inherits
    // none of its descriptors.
    let noted = |what: &str| -> Vec<String> {
        (1..=4)
            .map(|n| {
                let prefix = format!("{n} {what} ");
                let l = lines.iter().find(|l| l.starts_with(&prefix));
                l.unwrap_or_else(|| panic!("no {what} line of instance {n}: {lines:#?}"))[prefix.len()..].to_string()
            })
            .collect()
    };
    let fds = noted("fds");
    assert!(
        fds.iter().all(|f| *f == fds[0]),
        "open descriptors per instance: {fds:?}"
    );
    let threads = noted("supervisor_threads");
    assert!(
        threads.iter().all(|t| t == "1"),
        "the supervisor's threads per instance: {threads:?}"
    );

    let (code, lines) = run(&v, &exe, "warn", &c_lib_dir());
    assert_eq!(code, 0, "{lines:#?}");
    assert!(lines.contains(&"1 caught 15".to_string()), "{lines:#?}");
    assert!(lines.contains(&"2 register 1".to_string()), "{lines:#?}");

    let (code, lines) = run(&v, &exe, "callback", &c_lib_dir());
    assert_eq!(code, 0, "{lines:#?}");
    assert!(lines.contains(&"1 hc_callback_register 1".to_string()), "{lines:#?}");
    assert!(
        lines.contains(&"2 register 1".to_string()),
        "a failing callback recovers: {lines:#?}"
    );
}

#[test]
fn c_mark_failed_leaves_the_cmap_state_failed() {
    let v = Vigild::start();
    let out = v.dir.path().join("failed.out");
    let mut child = Command::new(program(false))
        .arg(&out)
        .arg("failed")
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .spawn()
        .unwrap();
    let pid = child.id();
    // corosync's sam_register: exit(WEXITSTATUS(child_status)), 0 after the SIGKILL.
    assert_eq!(exit_code(&mut child), 0);
    let lines = std::fs::read_to_string(&out).unwrap();
    assert!(lines.contains("1 mark_failed 1"), "{lines}");
    let key = format!("resources.process.{pid}.state");
    assert_eq!(v.client().cmap_get(&key).unwrap(), CmapValue::Str("failed".into()));
    let key = format!("resources.process.{pid}.recovery");
    assert_eq!(v.client().cmap_get(&key).unwrap(), CmapValue::Str("restart".into()));
    let quit = v
        .events()
        .into_iter()
        .find(|e| e.name == "sys.vigil.sam.quit" && e.subject == format!("sam/{pid}"))
        .expect("quit event");
    assert!(quit.attrs.contains(&("failed".into(), Value::Bool(true))));
}

#[test]
fn c_start_waits_for_quorum() {
    let v = Vigild::start();
    v.client()
        .cmap_set("quorum.expected_votes", CmapValue::U32(2), false)
        .unwrap();
    let out = v.dir.path().join("quorum.out");
    let mut child = Command::new(program(true))
        .arg(&out)
        .arg("quorum")
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .spawn()
        .unwrap();
    let key = format!("resources.process.{}.state", child.id());
    wait_for("waiting for quorum", || {
        (v.client().cmap_get(&key).ok() == Some(CmapValue::Str("waiting for quorum".into()))).then_some(())
    });
    let lines = std::fs::read_to_string(&out).unwrap();
    assert!(!lines.contains("1 start"), "sam_start returned without quorum: {lines}");
    v.client()
        .cmap_set("quorum.expected_votes", CmapValue::U32(1), false)
        .unwrap();
    assert_eq!(exit_code(&mut child), 0);
    let lines = std::fs::read_to_string(&out).unwrap();
    assert!(lines.contains("1 start 1") && lines.contains("1 finalize 1"), "{lines}");
}

#[test]
fn libsam_exports_exactly_debians_symbols_and_versions() {
    let debian = exports(Path::new("/usr/lib/x86_64-linux-gnu/libsam.so.4"));
    let ours = exports(&c_lib_dir().join("libsam.so.4"));
    assert_eq!(debian.len(), 13, "{debian:#?}");
    assert!(debian.contains(&("COROSYNC_SAM_1.0".into(), "sam_register".into())));
    assert_eq!(ours, debian);
}
