//! The compatibility surface behaves as the originals do: libcmap and libcorosync_common as corosync,
//! libcfg and its headers as Tru64's pages, libdsdev and pmfadm as Solaris. Each C program is built
//! against the system's (Debian's) corosync headers where they exist and against vigil's `include/`, and
//! run against a real vigild. Every rule cites where it was read.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;

/// Runs `exe OUT scenario` against `v` to its end and returns its lines.
fn run_c(v: &Vigild, exe: &Path, scenario: &str, env: &[(&str, &str)]) -> Vec<String> {
    let name = exe.file_name().unwrap().to_string_lossy();
    let out = v.dir.path().join(format!("{scenario}-{name}.out"));
    let mut cmd = Command::new(exe);
    cmd.arg(&out)
        .arg(scenario)
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, val) in env {
        cmd.env(k, val);
    }
    let mut child = cmd.spawn().expect("start the C program");
    let status = wait_deadline(&mut child, &format!("{name} {scenario}"));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(status.success(), "{name} {scenario}: {status}\n{err}\n{lines:#?}");
    lines
}

/// The CMAP program with both header sets, for each scenario: the same lines from both. Every expected
/// list below is also what this program, built against Debian's headers, prints when run against Debian's
/// corosync 3.1.7 daemon itself (`corosync -f`, with Debian's libcmap and libcorosync_common).
fn cmap_compat(scenario: &str) -> Vec<String> {
    let v = Vigild::start();
    let mut seen = Vec::new();
    for vigil_headers in [false, true] {
        let exe = c_program("cmap_compat.c", vigil_headers, &["cmap", "corosync_common"]);
        seen.push(run_c(&v, &exe, scenario, &[]));
    }
    assert_eq!(seen[0], seen[1], "Debian's headers and vigil's give the same answers");
    seen.pop().unwrap()
}

#[test]
fn libcmap_takes_values_up_to_icmaps_16_kib() {
    // corosync exec/icmap.c: ICMAP_MAX_VALUE_LEN is (16*1024); icmap_check_value_len refuses a value_len
    // above it and icmap_set_r answers CS_ERR_INVALID_PARAM (7). lib/cmap.c cmap_set_string passes
    // strlen(value), so 16384 characters are taken (stored with their NUL: 16385 bytes).
    assert_eq!(
        cmap_compat("limits"),
        [
            "set_bin_max 1",
            "set_bin_over 7",
            "get_bin 1",
            "bin_len 16384",
            "set_string_over 7",
            "set_string_max 1",
            "get_str 1",
            "str_len 16385",
        ]
    );
}

#[test]
fn cmap_initialize_map_of_an_unknown_map_is_not_exist() {
    // Observed, not read: the corosync sources at hand predate cmap_initialize_map, and Debian's corosync
    // 3.1.7 daemon answers a map it does not have with CS_ERR_NOT_EXIST (12); CMAP_MAP_STATS exists.
    assert_eq!(
        cmap_compat("map"),
        [
            "initialize_map_2 12",
            "initialize_map_minus1 12",
            "initialize_map_stats 1"
        ]
    );
}

#[test]
fn tracks_of_type_0_or_prefix_alone_are_accepted_and_deliver_nothing() {
    // corosync exec/icmap.c icmap_track_add refuses only bits outside ADD|DELETE|MODIFY|PREFIX; the
    // track's qb_map notification (icmap_tt_to_qbtt) then holds no event, so it never fires.
    assert_eq!(
        cmap_compat("track0"),
        [
            "track_type0 1",
            "track_prefix_only 1",
            "track_marker 1",
            "set 1",
            "dispatch_all 1",
            "calls_type0 0",
            "calls_prefix_only 0",
            "calls_marker 1",
            "track_delete_type0 1",
            "track_delete_prefix_only 1",
        ]
    );
}

#[test]
fn cmap_strings_are_bytes() {
    // corosync exec/icmap.c icmap_set_r stores a string's bytes up to its NUL, whatever they are, and
    // icmap_get_r hands back the same bytes with the NUL: type CMAP_VALUETYPE_STRING (11).
    assert_eq!(
        cmap_compat("bytes"),
        [
            "set_string 1",
            "get_string 1",
            "same 1",
            "get 1",
            "type 11",
            "len 14",
            "same_get 1",
        ]
    );
}

#[test]
fn corotypes_formats_and_libcorosync_commons_functions() {
    // corosync common_lib/error_conversion.c: qb_to_cs_error, hdb_error_to_cs and cs_strerror (3.1's
    // strings, without the trailing blank older versions had); corotypes.h's CS_PRI_* formats.
    assert_eq!(
        cmap_compat("common"),
        [
            "node 7",
            "padded [         7]",
            "ring a.ff",
            "seq ff",
            "strerror_ok [success]",
            "strerror_exist [CS_ERR_EXIST]",
            "strerror_library [CS_ERR_LIBRARY]",
            "strerror_29 [unknown error]",
            "qb_ok 1",
            "qb_eagain 6",
            "qb_e2big 26",
            "qb_enotconn 2",
            "hdb_ok 1",
            "hdb_emfile 18",
            "hdb_einval 2",
        ]
    );
}

#[test]
fn libcorosync_common_exports_exactly_debians_symbols() {
    // Debian's library has no symbol versions, so objdump's column before the name is the size, which
    // differs: the names are what a program links against.
    let names = |lib: &Path| -> Vec<String> {
        let mut n: Vec<String> = exports(lib).into_iter().map(|(_, n)| n).collect();
        n.sort();
        n
    };
    let debian = names(Path::new("/usr/lib/x86_64-linux-gnu/libcorosync_common.so.4"));
    assert_eq!(debian, ["cs_strerror", "hdb_error_to_cs", "qb_to_cs_error"]);
    assert_eq!(names(&c_lib_dir().join("libcorosync_common.so.4")), debian);
}

/// Builds a test program with vigil's headers as C++ (`g++ -x c++`), linked with `libs`.
fn cxx_program(src: &str, libs: &[&str]) -> std::path::PathBuf {
    let out = c_lib_dir().join(format!("{}_cxx", src.trim_end_matches(".c")));
    let mut cmd = Command::new("g++");
    cmd.args(["-x", "c++", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg("-I")
        .arg(repo_root().join("include"))
        .arg(c_src(src))
        .args(["-x", "none", "-L"])
        .arg(c_lib_dir());
    for l in libs {
        cmd.arg(format!("-l{l}"));
    }
    let o = cmd.output().expect("run g++");
    assert!(o.status.success(), "g++ failed: {}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn cfg_h_builds_the_pages_examples_in_c_and_cxx_and_sets_the_state_string() {
    // cfg_psm_memops(3): "_PSM_REGSELF(_PSM_CAT_MOUNTD);" at file scope, and cfg_psm_memfree(memrsp) with
    // the array itself; cfg.h's C++ guards promise the same text builds as C++. psm.h: mrs_state is "a
    // user-modifiable state string", which vigil's cfg_psm_memstate_set sets.
    let v = Vigild::start();
    for exe in [
        c_program("psm_compat.c", true, &["cfg"]),
        cxx_program("psm_compat.c", &["cfg"]),
    ] {
        let o = Command::new(&exe)
            .env("VIGIL_SOCKET", v.socket())
            .env("LD_LIBRARY_PATH", c_lib_dir())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {o:?}", exe.display());
        assert_eq!(
            stdout(&o),
            "running 1 instance(s) of mountd\nmemstate_set 0\nmemstate_set_null 22\nstate warming up\nfreed 1\ncatget 0\n",
            "{}",
            exe.display()
        );
    }
}

/// Runs dsdev_test for resource rs of group rg from `dir` (through `wrap`, a command line the program
/// and its arguments are appended to, if any), with `env`; its stdout lines.
fn dsdev(v: &Vigild, dir: &Path, wrap: &[&str], env: &[(&str, &str)], ops: &[&str]) -> Vec<String> {
    let exe = c_program("dsdev_test.c", true, &["dsdev"]);
    let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
    argv.push(exe.display().to_string());
    argv.extend(["-R", "rs", "-T", "t", "-G", "rg", "--"].map(String::from));
    argv.extend(ops.iter().map(|s| s.to_string()));
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dsdev_test");
    let status = wait_deadline(&mut child, &format!("dsdev_test {ops:?}"));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "dsdev_test {ops:?}: {status}; {out}");
    out.lines().map(str::to_string).collect()
}

#[test]
fn scds_pmf_start_gives_the_program_the_callers_directory_and_path() {
    // scds_pmf_start(3HA): "the same as the pmfadm(1M) command with the -c option", which re-instates
    // the caller's current directory and PATH (and vigil's pmfadm -c does).
    let v = Vigild::start();
    let dir = tempfile::tempdir().unwrap();
    let path = "/usr/bin:/bin:/opt/compat-probe/bin";
    let lines = dsdev(
        &v,
        dir.path(),
        &[],
        &[("PATH", path)],
        &[
            "start",
            "svc",
            "0",
            "0",
            "sh -c 'pwd >cwd.out; printf %s \"$PATH\" >path.out; exec sleep 1000'",
        ],
    );
    assert_eq!(lines, ["initialize 0", "start 0"]);
    let read = |name: &str| {
        wait_for(name, || {
            std::fs::read_to_string(dir.path().join(name))
                .ok()
                .filter(|s| !s.is_empty())
        })
    };
    let real = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(read("cwd.out").trim_end(), real.display().to_string());
    assert_eq!(read("path.out"), path);
}

#[test]
fn scds_pmf_start_of_a_running_program_logs_to_syslog() {
    // scds_pmf_start(3HA): if the program is already running, scds_pmf_start() outputs a syslog() error
    // and returns SCHA_ERR_INTERNAL (18). syslog(3) writes to /dev/log: the program runs in a private
    // mount namespace where /dev is a directory holding the test's own datagram socket (and /dev/null).
    let v = Vigild::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    std::fs::create_dir(&dev).unwrap();
    let log = std::os::unix::net::UnixDatagram::bind(dev.join("log")).unwrap();
    log.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    std::fs::write(dev.join("null"), "").unwrap();
    let script = format!(
        "mount --bind /dev/null {d}/null && mount --bind {d} /dev && exec \"$@\"",
        d = dev.display()
    );
    let lines = dsdev(
        &v,
        dir.path(),
        &["unshare", "-m", "sh", "-c", &script, "sh"],
        &[],
        &[
            "start",
            "svc",
            "0",
            "0",
            "sleep 1000",
            "start",
            "svc",
            "0",
            "0",
            "sleep 1000",
        ],
    );
    assert_eq!(lines, ["initialize 0", "start 0", "start 18"]);
    let mut buf = [0u8; 2048];
    let n = log.recv(&mut buf).expect("a syslog message within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]);
    // LOG_ERR (3) of the default facility LOG_USER (8): priority 11.
    assert!(msg.starts_with("<11>"), "{msg}");
    assert!(msg.contains("rg,rs,0.svc") && msg.contains("already running"), "{msg}");
}

/// A pmfadm tag whose shell writes `<marker>` on SIGWINCH and ignores SIGTERM when `ignore_term`; its pid
/// once the trap is set. SIGWINCH (28) is a later signal than SIGTERM (15): the kernel delivers pending
/// signals lowest first, so a marker written proves no SIGTERM (or SIGKILL) was pending before it.
fn marked(v: &Vigild, tag: &str, ignore_term: bool) -> i32 {
    let ignore = if ignore_term { "trap '' TERM; " } else { "" };
    let script = format!("{ignore}trap ': > {tag}.winch' WINCH; : > {tag}.ready; while :; do sleep 0.05; done");
    let o = v.pmfadm(&["-c", tag, "sh", "-c", &script]);
    assert!(o.status.success(), "{o:?}");
    let pid = v.wait_state(tag, "running").main_pid.unwrap();
    wait_for("the trap", || v.path(&format!("{tag}.ready")).exists().then_some(()));
    pid
}

/// Sends SIGWINCH to `pid` and waits for its marker: the process ran its trap after everything sent
/// before.
fn still_answers(v: &Vigild, tag: &str, pid: i32) {
    assert!(alive(pid), "{tag}'s process is gone");
    kill(pid, "WINCH");
    wait_for("the marker", || v.path(&format!("{tag}.winch")).exists().then_some(()));
    assert!(alive(pid));
}

#[test]
fn pmfadm_s_without_a_signal_only_stops_monitoring() {
    // pmfadm(1M) -s: "Stop restarting the command associated with nametag. The signal, if specified, is
    // sent to all processes": with none, no signal is sent and the processes run on, unmonitored.
    let v = Vigild::start();
    let pid = marked(&v, "quiet", false);
    let o = v.pmfadm(&["-s", "quiet"]);
    assert!(o.status.success(), "{o:?}");
    // A SIGTERM would have ended the shell (no trap) before it could run the WINCH trap.
    still_answers(&v, "quiet", pid);
    // Not restarted when it ends, and forgotten then.
    kill(pid, "KILL");
    wait_for("the tag to be forgotten", || {
        (!v.client().query("quiet").unwrap()).then_some(())
    });
}

#[test]
fn pmfadm_s_with_a_wait_leaves_processes_that_ignore_the_signal_running_and_exits_2() {
    // pmfadm(1M): with -w, pmfadm exits 2 when the processes are still there at the end of the wait; no
    // SIGKILL follows the signal they ignore. (vigil's own `vigil stop` does send SIGKILL: vigil.md.)
    let v = Vigild::start();
    let pid = marked(&v, "stubborn", true);
    let o = v.pmfadm(&["-s", "stubborn", "-w", "1", "TERM"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    still_answers(&v, "stubborn", pid);
    kill(pid, "KILL");
    wait_for("the tag to be forgotten", || {
        (!v.client().query("stubborn").unwrap()).then_some(())
    });
}

#[test]
fn libcorosync_common_answers_every_code_as_debians() {
    // The same program linked against Debian's libcorosync_common.so.4 (run without LD_LIBRARY_PATH) and
    // against vigil's: cs_strerror of every cs_error_t and beyond, qb_to_cs_error and hdb_error_to_cs of
    // every errno.
    let exe = c_lib_dir().join("corosync_common_table");
    let o = Command::new("gcc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(c_src("corosync_common_table.c"))
        .arg("-l:libcorosync_common.so.4")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ldd = Command::new("ldd")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .output()
        .unwrap();
    let ours_path = c_lib_dir().join("libcorosync_common.so.4");
    assert!(
        stdout(&ldd).contains(&format!("libcorosync_common.so.4 => {}", ours_path.display())),
        "vigil's library is the one run: {}",
        stdout(&ldd)
    );
    let debian = Command::new(&exe).env_remove("LD_LIBRARY_PATH").output().unwrap();
    let ours = Command::new(&exe).env("LD_LIBRARY_PATH", c_lib_dir()).output().unwrap();
    assert!(debian.status.success() && ours.status.success());
    assert!(
        stdout(&debian).contains("12 [CS_ERR_NOT_EXIST]\n"),
        "{}",
        stdout(&debian)
    );
    assert_eq!(stdout(&ours), stdout(&debian));
}
