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

/// The CMAP program with both header sets, for each scenario: the same lines from both.
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
    // The map is refused by corosync's daemon (CS_ERR_NOT_EXIST, 12); CMAP_MAP_STATS exists.
    assert_eq!(
        cmap_compat("map"),
        ["initialize_map_2 12", "initialize_map_minus1 12", "initialize_map_stats 1"]
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
            "len 17",
            "same_get 1",
        ]
    );
}

#[test]
fn corotypes_formats_and_libcorosync_commons_functions() {
    // corosync common_lib/error_conversion.c: qb_to_cs_error, hdb_error_to_cs and cs_strerror (whose
    // strings keep their trailing blank); corotypes.h's CS_PRI_* formats.
    assert_eq!(
        cmap_compat("common"),
        [
            "node 7",
            "padded [         7]",
            "ring a.ff",
            "seq ff",
            "strerror_ok [success]",
            "strerror_exist [CS_ERR_EXIST ]",
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
    let names = |lib: &Path| -> Vec<String> { exports(lib).into_iter().map(|(_, n)| n).collect() };
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
    for exe in [c_program("psm_compat.c", true, &["cfg"]), cxx_program("psm_compat.c", &["cfg"])] {
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
