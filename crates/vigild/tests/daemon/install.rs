//! vigild installed and run for real: under systemd's `Type=notify`, with a log for shippers, and what
//! `make install` puts in place (docs/install.md).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_client::Client;

use crate::harness::*;

/// vigild started in `dir` with `args` and `env`, its stderr in `dir/vigild.log`, as the harness's own
/// handle (dropping it stops vigild and every tag).
fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &Path)]) -> Vigild {
    let log = std::fs::File::create(dir.path().join("vigild.log")).unwrap();
    let child = Command::new(bin("vigild"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("vigild.sock"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vigild");
    Vigild {
        dir,
        child: Some(child),
        uid: None,
        scan: false,
        args: vec![],
    }
}

/// systemd's `Type=notify`: vigild sends READY=1 (with its pid) to `$NOTIFY_SOCKET`, and by then its own
/// socket accepts and answers. The datagram is the first thing the test waits for: a connection made the
/// moment it arrives must be served.
#[test]
fn vigild_says_ready_to_notify_socket_once_its_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("systemd-notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(DEADLINE)).unwrap();
    let v = start_in(dir, &["--log-level", "debug"], &[("NOTIFY_SOCKET", &notify)]);
    let mut buf = [0u8; 4096];
    let n = listener
        .recv(&mut buf)
        .expect("READY=1 from vigild within the deadline");
    // Connect before anything else: READY=1 must not come before the socket serves.
    let mut c = Client::connect(&v.socket()).expect("vigild's socket accepts once READY=1 is sent");
    c.list().expect("vigild answers once READY=1 is sent");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    let lines: Vec<&str> = msg.lines().collect();
    assert!(lines.contains(&"READY=1"), "{msg:?}");
    assert!(lines.contains(&format!("MAINPID={}", v.pid()).as_str()), "{msg:?}");
    // Once: nothing more while vigild runs.
    listener.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(listener.recv(&mut buf).is_err(), "a second notification");
}

/// `--log-format json`: every line vigild writes to stderr is one JSON object with a level and a message,
/// without colour codes, the fields of the record beside them.
#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let v = start_in(dir, &["--log-format", "json", "--log-level", "debug"], &[]);
    wait_for("vigild to answer", || v.connect().ok());
    let log = v.path("vigild.log");
    let text = wait_for("the ready line in the log", || {
        let t = std::fs::read_to_string(&log).ok()?;
        t.contains("ready with").then_some(t)
    });
    assert!(!text.contains('\u{1b}'), "colour codes in the log: {text}");
    let mut ready = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let o: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(o["level"].is_string() && o["timestamp"].is_string(), "{line}");
        let m = o["message"].as_str().unwrap_or_else(|| panic!("no message: {line}"));
        if m.contains("ready with") {
            ready = true;
            assert_eq!(o["pid"], v.pid(), "{line}");
        }
    }
    assert!(ready, "{text}");

    let bad = Command::new(bin("vigild"))
        .args(["--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("xml"), "{}", stderr(&bad));
}

/// The sections of an ELF file, by name (`readelf -S -W`).
fn sections(file: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-S")
        .arg("-W")
        .arg(file)
        .output()
        .expect("run readelf");
    assert!(out.status.success(), "readelf {}: {}", file.display(), stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(']').map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next().map(String::from))
        .collect()
}

/// `make install DESTDIR=... PREFIX=/usr`, as a distribution's package build runs it (of the debug build,
/// which the tests already have: BUILD=no builds nothing): the systemd unit, the tmpfiles entry, an
/// example config that vigild accepts and that a second install leaves alone once edited, man pages and
/// completions made by the installed programs, and binaries and libraries stripped, their debug info in
/// /usr/lib/debug behind a .gnu_debuglink.
#[test]
fn make_install_puts_everything_a_package_needs_in_place() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let target = bin("vigild").parent().unwrap().to_path_buf();
    let install = || {
        let out = Command::new("make")
            .current_dir(repo_root())
            .args(["--no-print-directory", "install", "BUILD=no", "PREFIX=/usr"])
            .arg(format!("DESTDIR={}", d.display()))
            .arg(format!("RELEASE={}", target.display()))
            .output()
            .expect("run make");
        assert!(out.status.success(), "make install: {}", stderr(&out));
    };
    install();
    let read = |p: &str| std::fs::read_to_string(d.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));

    let unit = read("usr/lib/systemd/system/vigild.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/vigild --config /etc/vigil/vigild.toml",
        "ExecReload=/usr/bin/vigil reload",
        "KillMode=process",
        "RestartPreventExitStatus=2 65",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line:?} in the unit:\n{unit}");
    }
    assert!(!unit.contains('@'), "a placeholder left in the unit:\n{unit}");
    let tmpfiles = read("usr/lib/tmpfiles.d/vigil.conf");
    assert!(
        tmpfiles.lines().any(|l| l == "d /run/vigil 0755 root root -"),
        "{tmpfiles}"
    );
    assert!(
        tmpfiles.lines().any(|l| l == "d /var/lib/vigil 0711 root root -"),
        "{tmpfiles}"
    );

    // The example config is one the installed vigild starts with.
    let config = d.join("etc/vigil/vigild.toml");
    let check = Command::new(d.join("usr/bin/vigild"))
        .arg("--check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));

    for (page, mentions) in [
        ("usr/share/man/man8/vigild.8", "log\\-format"),
        ("usr/share/man/man8/pmfadm.8", "nametag"),
        ("usr/share/man/man1/vigil.1", "vigil\\-run(1)"),
        ("usr/share/man/man1/vigil-run.1", "retries"),
        ("usr/share/man/man1/vigil-cmap-set.1", "vigil cmap set"),
    ] {
        let text = read(page);
        assert!(
            text.starts_with(".ie") || text.contains("\n.TH "),
            "{page} is no man page:\n{text}"
        );
        assert!(text.contains(mentions), "{page} does not mention {mentions:?}:\n{text}");
    }
    for b in ["vigil", "vigild", "pmfadm"] {
        let bash = read(&format!("usr/share/bash-completion/completions/{b}"));
        assert!(
            bash.contains(&format!("complete -F _{b}")),
            "bash completion of {b}:\n{bash}"
        );
        let zsh = read(&format!("usr/share/zsh/site-functions/_{b}"));
        assert!(
            zsh.starts_with(&format!("#compdef {b}")),
            "zsh completion of {b}:\n{zsh}"
        );
        let fish = read(&format!("usr/share/fish/vendor_completions.d/{b}.fish"));
        assert!(
            fish.contains(&format!("complete -c {b}")),
            "fish completion of {b}:\n{fish}"
        );
    }
    // Made from each program's own definitions: vigil's commands, vigild's options.
    assert!(read("usr/share/bash-completion/completions/vigil").contains("cmap"));
    assert!(read("usr/share/bash-completion/completions/vigild").contains("--log-format"));

    for (file, debug) in [
        ("usr/bin/vigild", "usr/lib/debug/usr/bin/vigild.debug"),
        ("usr/bin/vigil", "usr/lib/debug/usr/bin/vigil.debug"),
        ("usr/bin/pmfadm", "usr/lib/debug/usr/bin/pmfadm.debug"),
        ("usr/lib/libsam.so.4.4.0", "usr/lib/debug/usr/lib/libsam.so.4.4.0.debug"),
        (
            "usr/lib/libcmap.so.4.1.0",
            "usr/lib/debug/usr/lib/libcmap.so.4.1.0.debug",
        ),
        (
            "usr/lib/libdsdev.so.1.0.0",
            "usr/lib/debug/usr/lib/libdsdev.so.1.0.0.debug",
        ),
    ] {
        let s = sections(&d.join(file));
        assert!(
            // (`.debug_gdb_scripts` is loaded data, rustc's pretty-printers, not debug info.)
            !s.iter()
                .any(|n| n == ".debug_info" || n == ".debug_line" || n == ".symtab"),
            "{file} is not stripped: {s:?}"
        );
        assert!(
            s.iter().any(|n| n == ".gnu_debuglink"),
            "{file} has no .gnu_debuglink: {s:?}"
        );
        assert!(
            sections(&d.join(debug)).iter().any(|n| n == ".debug_info"),
            "{debug} has no debug info"
        );
    }
    // Stripped, the programs still run, and a library still exports its API.
    let v = Command::new(d.join("usr/bin/vigil")).arg("--version").output().unwrap();
    assert!(v.status.success() && stdout(&v).starts_with("vigil "), "{}", stderr(&v));
    assert!(exports(&d.join("usr/lib/libsam.so.4.4.0"))
        .iter()
        .any(|(_, name)| name == "sam_initialize"));

    // An operator's edited config survives a reinstall.
    std::fs::write(&config, "# mine\n").unwrap();
    install();
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
}
