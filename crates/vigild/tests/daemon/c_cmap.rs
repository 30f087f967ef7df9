//! libcmap.so.4 from C: corosync's cmap.h, compiled with gcc against Debian's headers and against vigil's;
//! a binary linked against Debian's libcmap run with vigil's (LD_LIBRARY_PATH); Debian's own
//! corosync-cmapctl, unmodified; and the library's exported symbols next to Debian's. All with a real
//! vigild.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use vigil_client::proto::{CmapMap, CmapValue};

use crate::harness::*;

/// The test program, built once per header set.
fn program(vigil_headers: bool) -> PathBuf {
    c_program("cmap_test.c", vigil_headers, &["cmap", "pthread"])
}

/// Runs a scenario of the program to its end against `socket`: its stderr and its lines.
fn run_at(exe: &Path, socket: &Path, out_dir: &Path, scenario: &str) -> (String, Vec<String>) {
    let name = exe.file_name().unwrap().to_string_lossy();
    let out = out_dir.join(format!("{scenario}-{name}.out"));
    let mut child = Command::new(exe)
        .arg(&out)
        .arg(scenario)
        .env("VIGIL_SOCKET", socket)
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the C program");
    let status = wait_deadline(&mut child, &format!("the C program ({scenario})"));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(status.success(), "{scenario}: {status}\n{err}\n{lines:#?}");
    (err, lines)
}

fn run(v: &Vigild, exe: &Path, scenario: &str) -> Vec<String> {
    run_at(exe, &v.socket(), v.dir.path(), scenario).1
}

/// What every call of the `api` scenario returns: `cs_error_t` values (1 CS_OK, 6 TRY_AGAIN, 7
/// INVALID_PARAM, 9 BAD_HANDLE, 11 ACCESS, 12 NOT_EXIST, 13 NAME_TOO_LONG, 27 NO_SECTIONS) and values.
const API: &str = "finalize_bad 9
fd_get_bad 9
dispatch_bad 9
context_get_bad 9
context_set_bad 9
set_bad 9
get_bad 9
get_uint8_bad 9
get_string_bad 9
delete_bad 9
inc_bad 9
dec_bad 9
iter_init_bad 9
iter_next_bad 9
iter_finalize_bad 9
track_add_bad 9
track_delete_bad 9
set_null_key 7
set_null_value 7
set_string_null 7
get_null_key 7
delete_null 7
inc_null 7
iter_init_null 7
iter_next_null 7
track_add_null_fn 7
track_add_null_handle 7
initialize_null 7
initialize_map_bad 12
initialize 1
set_long_key 13
get_long_key 13
set_short_key 13
set_bad_char 13
get_short_key 12
get_missing 12
set_wrong_width 7
set_bad_type 7
set_past_nul 7
set_int8 1
set_uint8 1
set_int16 1
set_uint16 1
set_int32 1
set_uint32 1
set_int64 1
set_uint64 1
set_float 1
set_double 1
set_string 1
set_binary 1
set_string_with_nul 1
get_int8 1
int8 -8
get_uint8 1
uint8 255
get_int16 1
int16 -16000
get_uint16 1
uint16 65535
get_int32 1
int32 -32
get_uint32 1
uint32 4000000000
get_int64 1
int64 -64
get_uint64 1
uint64_is_max 1
get_float 1
float_times_4 6
get_double 1
double_times_4 -9
get_string 1
string hello
get_string_of_u8 7
get_uint8_of_u32 7
get_int8_null 7
get_len_only 1
len 6
type 11
get_str2 1
len 4
get_small_buffer 7
get_buffer_no_len 7
get_buffer 1
len 3
type 12
bytes 102
get_buffer_str 1
len 6
text hello
inc_u8 1
u8_wrapped 0
dec_i64 1
i64 -65
inc_string 7
inc_missing 12
dec_missing 12
delete 1
get_deleted 12
delete_missing 12
set_readonly 11
delete_readonly 11
inc_readonly 11
get_readonly 1
iter_init 1
next it.a 4 11
next it.b 4 6
next it.c.d 1 2
iter_end 27
iter_end_again 27
iter_finalize 1
iter_finalize_again 9
iter_next_finalized 9
iter_init_empty 1
iter_next_empty 27
iter_finalize_empty 1
iter_init_all 1
iter_all_at_least_10 1
iter_finalize_all 1
initialize_stats 1
stats_set 11
stats_delete 11
stats_inc 11
stats_get 1
stats_tags 0
stats_main_key 12
stats_iter 1
stats_keys_at_least_5 1
stats_finalize 1
context_set 1
context_get 1
context ctx
initialize_writer 1
track_add_bad_flags 7
track_add 1
track_add_prefix 1
dispatch_all_none 1
dispatch_nonblocking_none 6
notify exact 4 tr.key new=u32:1/4 old=-/0 own_track=1
notify prefix 4 tr.key new=u32:1/4 old=-/0 own_track=1
notify exact 2 tr.key new=i8:-2/1 old=u32:1/4 own_track=1
notify prefix 4 tr.other new=str:s/2 old=-/0 own_track=1
notify exact 1 tr.key new=-/0 old=i8:-2/1 own_track=1
notify prefix 1 tr.key new=-/0 old=i8:-2/1 own_track=1
notified 6
dispatch_nonblocking_none 6
track_delete 1
track_delete_again 9
track_delete_other_handle 9
notify prefix 4 tr.key new=u32:3/4 old=-/0 own_track=1
dispatch_one_prefix 1
notified 1
notify prefix 4 tr.last new=u32:3/4 old=-/0 own_track=1
finalize_in_callback 1
dispatch_blocking 9
finalize_again 9
get_finalized 9
finalize_writer 1";

#[test]
fn every_cmap_function_returns_corosyncs_codes_with_either_headers() {
    for vigil_headers in [false, true] {
        let v = Vigild::start();
        let lines = run(&v, &program(vigil_headers), "api");
        assert_eq!(lines.join("\n"), API, "vigil headers: {vigil_headers}");
        // What C wrote, Rust reads: a string's NUL is corosync's, not part of the text.
        let mut c = v.client();
        assert_eq!(c.cmap_get("t.str").unwrap(), CmapValue::Str("hello".into()));
        assert_eq!(c.cmap_get("t.str2").unwrap(), CmapValue::Str("abc".into()));
        assert_eq!(c.cmap_get("t.bin").unwrap(), CmapValue::Binary(vec![1, 0, 2]));
        assert_eq!(c.cmap_get("t.u64").unwrap(), CmapValue::U64(u64::MAX));
        assert_eq!(c.cmap_get("t.flt").unwrap(), CmapValue::Float(1.5));
        assert_eq!(
            c.cmap_get_in(CmapMap::Main, "t.i8", None).unwrap_err().code(),
            Some(vigil_client::proto::ErrorCode::NotFound)
        );
    }
}

const FD: &str = "initialize 1
initialize_writer 1
fd_get 1
fd_get_null 7
fd_get_again 1
same_fd 1
track_add 1
readable_before 0
set_same_handle 1
readable_after_own_set 1
notify fd 4 fd.a new=u32:1/4 old=-/0 own_track=1
dispatch_one 1
readable_after_dispatch 0
set_two_same_handle 1
readable_two 1
notify fd 2 fd.a new=u32:2/4 old=u32:1/4 own_track=1
dispatch_nonblocking 1
readable_one_left 1
notify fd 4 fd.b new=u32:2/4 old=-/0 own_track=1
dispatch_all 1
readable_none_left 0
set_other_handle 1
readable_other 1
notify fd 4 fd.c new=u32:3/4 old=-/0 own_track=1
dispatch_all_other 1
readable_end 0
notified 4
finalize 1
finalize_writer 1";

#[test]
fn the_fd_polls_readable_for_notifications_kept_during_a_request() {
    // vigild sends a set's notification before its answer: on the tracking handle itself, the library
    // reads it while waiting for the answer, so the socket is quiet; the fd must not be.
    let v = Vigild::start();
    let lines = run(&v, &program(false), "fd");
    assert_eq!(lines.join("\n"), FD);
}

#[test]
fn a_dispatch_blocked_in_one_thread_delivers_sets_from_another_and_ends_with_finalize() {
    let v = Vigild::start();
    let lines = run(&v, &program(true), "threads");
    // The main thread writes its results once the dispatcher has returned.
    assert_eq!(
        lines,
        [
            "initialize 1",
            "track_add 1",
            "notify thread 4 th.key new=u32:1/4 old=-/0 own_track=1",
            "notify thread 2 th.key new=u32:2/4 old=u32:1/4 own_track=1",
            "notify thread 2 th.key new=u32:3/4 old=u32:2/4 own_track=1",
            "dispatch_blocking 9",
            "value 3",
            "finalize 1",
            "notified 3",
        ]
    );
}

#[test]
fn initialize_without_vigild_is_cs_err_library() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = run_at(&program(false), &dir.path().join("none.sock"), dir.path(), "nodaemon");
    // CS_ERR_LIBRARY: what Debian's library answers when corosync is not running.
    assert_eq!(lines, ["initialize 2"]);
}

#[test]
fn the_library_exports_exactly_debians_symbols_and_versions() {
    let debian = exports(Path::new("/usr/lib/x86_64-linux-gnu/libcmap.so.4"));
    let ours = exports(&c_lib_dir().join("libcmap.so.4"));
    assert_eq!(debian.len(), 40, "{debian:#?}");
    assert!(debian.contains(&("COROSYNC_CMAP_1.0".into(), "cmap_initialize".into())));
    assert_eq!(ours, debian);
    let soname = Command::new("objdump")
        .arg("-p")
        .arg(c_lib_dir().join("libcmap.so.4"))
        .output()
        .unwrap();
    let soname = String::from_utf8_lossy(&soname.stdout).into_owned();
    assert!(
        soname
            .lines()
            .any(|l| l.split_whitespace().eq(["SONAME", "libcmap.so.4"])),
        "{soname}"
    );
}

#[test]
fn a_binary_linked_against_debians_libcmap_runs_on_vigils() {
    // Linked against /usr/lib's libcmap.so.4 (Debian's, with its symbol versions), then run with vigil's.
    let exe = c_lib_dir().join("cmap_test_linked_debian");
    let o = Command::new("gcc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(c_src("cmap_test.c"))
        .args(["-l:libcmap.so.4", "-lpthread"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ldd = Command::new("ldd")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .output()
        .unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned();
    assert!(ldd.contains(&c_lib_dir().display().to_string()), "{ldd}");
    let v = Vigild::start();
    let (err, lines) = run_at(&exe, &v.socket(), v.dir.path(), "api");
    // No "no version information available" or any other word from the dynamic linker.
    assert_eq!(err, "", "stderr of a binary linked against Debian's libcmap");
    assert_eq!(lines.join("\n"), API);
}

/// Debian's corosync-cmapctl, as it is, on vigil's library and vigild.
fn cmapctl(v: &Vigild, args: &[&str]) -> Output {
    Command::new("corosync-cmapctl")
        .args(args)
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run corosync-cmapctl")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn debians_corosync_cmapctl_sets_gets_lists_and_deletes() {
    let v = Vigild::start();
    ok(&cmapctl(&v, &["-s", "app.port", "u16", "8080"]));
    ok(&cmapctl(&v, &["-s", "app.name", "str", "web front"]));
    ok(&cmapctl(&v, &["-s", "app.ratio", "dbl", "1.5"]));
    ok(&cmapctl(&v, &["-s", "app.neg", "i32", "7"]));
    ok(&cmapctl(&v, &["-s", "other.key", "u8", "1"]));
    assert_eq!(v.client().cmap_get("app.port").unwrap(), CmapValue::U16(8080));
    assert_eq!(
        v.client().cmap_get("app.name").unwrap(),
        CmapValue::Str("web front".into())
    );
    assert_eq!(ok(&cmapctl(&v, &["-g", "app.port"])), "app.port (u16) = 8080\n");
    assert_eq!(ok(&cmapctl(&v, &["-q", "-g", "app.name"])), "web front\n");
    assert_eq!(
        ok(&cmapctl(&v, &["app."])),
        "app.name (str) = web front\napp.neg (i32) = 7\napp.port (u16) = 8080\napp.ratio (dbl) = 1.500000\n"
    );
    let all = ok(&cmapctl(&v, &[]));
    assert!(all.contains("runtime.version (str) = "), "{all}");
    assert!(all.contains("other.key (u8) = 1\n"), "{all}");
    let stats = ok(&cmapctl(&v, &["-m", "stats", "stats.vigild.tags"]));
    assert_eq!(stats, "stats.vigild.tags (u32) = 0\n");

    ok(&cmapctl(&v, &["-d", "app.neg"]));
    let missing = cmapctl(&v, &["-g", "app.neg"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "Can't get key app.neg. Error CS_ERR_NOT_EXIST\n"
    );
    ok(&cmapctl(&v, &["-D", "app."]));
    // Nothing under the prefix: corosync-cmapctl prints nothing and exits 1.
    let none = cmapctl(&v, &["app."]);
    assert_eq!(
        (none.status.code(), none.stdout.len(), none.stderr.len()),
        (Some(1), 0, 0)
    );
    assert_eq!(ok(&cmapctl(&v, &["-g", "other.key"])), "other.key (u8) = 1\n");
    let refused = cmapctl(&v, &["-s", "runtime.version", "str", "x"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("CS_ERR_ACCESS"),
        "{refused:?}"
    );
}

/// A tracking corosync-cmapctl in the background, its stdout line-buffered into a file (stdbuf: the
/// binary itself is Debian's), once vigild has its track.
fn tracker(v: &Vigild, args: &[&str], out: &Path) -> Child {
    let child = Command::new("stdbuf")
        .arg("-oL")
        .arg("corosync-cmapctl")
        .args(args)
        .env("VIGIL_SOCKET", v.socket())
        .env("LD_LIBRARY_PATH", c_lib_dir())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corosync-cmapctl");
    // vigild counts a connection's requests in the stats map when it handles them: once the track_add
    // has been counted, a later request of ours is handled after it.
    let pid = child.id() as i32;
    let mut c = v.client();
    wait_for("corosync-cmapctl's track", || {
        let entries = c.cmap_iter(CmapMap::Stats, "stats.ipcs.").ok()?;
        let conn = entries
            .iter()
            .find(|e| e.key.ends_with(".pid") && e.value == CmapValue::I32(pid))?
            .key
            .trim_end_matches("pid")
            .to_string();
        entries
            .iter()
            .any(|e| e.key == format!("{conn}requests") && e.value != CmapValue::U64(0))
            .then_some(())
    });
    child
}

fn wait_lines(out: &Path, n: usize) -> String {
    wait_for("corosync-cmapctl's output", || {
        let text = std::fs::read_to_string(out).ok()?;
        (text.lines().count() >= n).then_some(text)
    })
}

#[test]
fn debians_corosync_cmapctl_tracks_keys_and_prefixes() {
    let v = Vigild::start();
    let key_out = v.path("track-key.out");
    let prefix_out = v.path("track-prefix.out");
    let mut by_key = tracker(&v, &["-t", "ct.key"], &key_out);
    let mut by_prefix = tracker(&v, &["-T", "ct."], &prefix_out);
    let mut c = v.client();
    c.cmap_set("ct.key", CmapValue::U64(5), false).unwrap();
    c.cmap_set("ct.key", CmapValue::U64(5), false).unwrap(); // unchanged: no notification
    c.cmap_set("ct.key", CmapValue::Str("a b".into()), false).unwrap();
    c.cmap_set("ct.x", CmapValue::Double(1.5), false).unwrap();
    c.cmap_set("cu.x", CmapValue::U8(1), false).unwrap(); // tracked by neither
    c.cmap_delete("ct.key").unwrap();
    c.cmap_delete("ct.x").unwrap();
    let expect_key = "Type \"q\" to finish\n\
        create> ct.key (u64) = 5\n\
        modify> ct.key (str) = a b\n\
        delete> ct.key (str) = a b\n";
    let expect_prefix = "Type \"q\" to finish\n\
        create> ct.key (u64) = 5\n\
        modify> ct.key (str) = a b\n\
        create> ct.x (dbl) = 1.500000\n\
        delete> ct.key (str) = a b\n\
        delete> ct.x (dbl) = 1.500000\n";
    assert_eq!(wait_lines(&key_out, 4), expect_key);
    assert_eq!(wait_lines(&prefix_out, 6), expect_prefix);
    // "q" on its stdin ends the first; the second is killed, as a user would.
    by_key.stdin.as_mut().unwrap().write_all(b"q\n").unwrap();
    let st = wait_for("corosync-cmapctl to quit", || by_key.try_wait().unwrap());
    assert!(st.success(), "{st}");
    let mut err = String::new();
    std::io::Read::read_to_string(by_key.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(err, "");
    by_prefix.kill().unwrap();
    by_prefix.wait().unwrap();
    assert_eq!(std::fs::read_to_string(&key_out).unwrap(), expect_key);
}
