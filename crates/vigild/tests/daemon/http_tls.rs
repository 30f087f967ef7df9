//! HTTPS on the HTTP API's TCP listener against a real vigild, with certificates made by the `openssl`
//! command and requests made by `curl`: the API over TLS with the token, plain HTTP turned away, key
//! files others may read and keys of another certificate refused by `--check`, at start and before a
//! re-exec, and a client stalling its handshake that neither blocks others nor keeps its place.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "s3cret-token-0123456789";

/// A self-signed certificate for 127.0.0.1 and its key (mode 0600), as `NAME.crt` and `NAME.key`.
fn make_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (scripts/install-deps installs it)");
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

/// A config serving `port` over TLS with the token in `dir`, and `extra` after it.
fn tls_config(dir: &Path, port: u16, cert: &Path, key: &Path, extra: &str) -> String {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{extra}",
        token.display(),
        cert.display(),
        key.display()
    )
}

/// `curl` to `url` trusting `ca`, with the token; (status, body, what curl wrote on stderr).
fn curl(ca: &Path, url: &str, extra: &[&str]) -> (u16, Value, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (code.trim().parse().unwrap_or(0), v, stderr(&out))
}

/// Runs vigild on `config` in a new directory until it exits by itself (it must: the start is
/// refused); its output, and whether the config's tag ran (it leaves nothing behind that a test
/// failing here must stop).
fn start_refused(config: &str) -> (Output, bool) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let config = format!(
        "{config}\n[tag.early]\ncommand = [\"touch\", \"{}\"]\n",
        marker.display()
    );
    std::fs::write(dir.path().join("vigil.toml"), config).unwrap();
    let mut child = vigild_in(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_deadline(&mut child, "vigild refusing its start");
    let out = child.wait_with_output().unwrap();
    (out, marker.exists())
}

fn check(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vigil.toml"), config).unwrap();
    Command::new(bin("vigild"))
        .arg("--check")
        .arg("--config")
        .arg(dir.path().join("vigil.toml"))
        .output()
        .unwrap()
}

#[test]
fn https_serves_the_api_and_turns_plain_http_away() {
    let keep = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(keep.path(), "server");
    let port = free_port();
    let v = Vigild::start_with(Some(&tls_config(keep.path(), port, &cert, &key, "")));
    v.run(sh("overtls", "exec sleep 1000"));
    let url = format!("https://127.0.0.1:{port}/api/tags");
    let (code, tags, err) = curl(&cert, &url, &["-v"]);
    assert_eq!(code, 200, "{tags} {err}");
    assert!(tags.to_string().contains("\"overtls\""), "{tags}");
    // ALPN: curl offers h2 and http/1.1, and vigild takes http/1.1.
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    // The token is asked for over TLS as over plain TCP.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&cert)
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "401", "{}", stderr(&out));
    // A client that does not trust the certificate refuses the server.
    let out = Command::new("curl").args(["-sS", &url]).output().unwrap();
    assert!(!out.status.success(), "{out:?}");

    // Plain HTTP on the port: told to use https, and closed.
    let plain = format!("http://127.0.0.1:{port}/api/tags");
    let (code, e, err) = curl(&cert, &plain, &[]);
    assert_eq!((code, e["kind"].as_str()), (400, Some("invalid_argument")), "{e} {err}");
    assert!(e["error"].as_str().unwrap().contains("HTTPS"), "{e}");
    // Bytes that start as TLS and are not: closed, nothing written in plain text.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"\x16\x03\x01\x00\x05hello not a TLS record at all\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");
    // vigild serves on as before.
    assert_eq!(curl(&cert, &url, &[]).0, 200);
    assert!(v.connect().is_ok());
}

#[test]
fn tls_files_others_may_read_or_that_do_not_match_are_refused() {
    let keep = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(keep.path(), "server");
    let (other_cert, _) = make_cert(keep.path(), "other");
    let good = tls_config(keep.path(), free_port(), &cert, &key, "");
    let out = check(&good);
    assert!(out.status.success(), "{}", stderr(&out));

    // A key others may read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&good);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let want = format!("[http] tls_key {} has mode 644", key.display());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    let (out, ran) = start_refused(&good);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert!(!ran, "a tag started before the key was refused");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key that is not the certificate's.
    let bad = tls_config(keep.path(), free_port(), &other_cert, &key, "");
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let want = format!(
        "[http] tls_key {} is not the private key of the certificate in [http] tls_cert {}",
        key.display(),
        other_cert.display()
    );
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    let (out, ran) = start_refused(&bad);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert!(!ran, "a tag started before the certificate was refused");

    // A certificate file that holds no certificate.
    std::fs::write(keep.path().join("empty.crt"), "nothing\n").unwrap();
    let none = tls_config(keep.path(), free_port(), &keep.path().join("empty.crt"), &key, "");
    let out = check(&none);
    assert!(stderr(&out).contains("holds no PEM certificate"), "{}", stderr(&out));
}

#[test]
fn sighup_with_bad_tls_files_keeps_the_running_listener() {
    let keep = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(keep.path(), "server");
    let port = free_port();
    let cfg = tls_config(keep.path(), port, &cert, &key, "");
    let v = Vigild::start_with(Some(&cfg));
    let url = format!("https://127.0.0.1:{port}/api/daemon");
    let (code, d, err) = curl(&cert, &url, &[]);
    assert_eq!(code, 200, "{d} {err}");

    // A key of another certificate: the re-exec is refused and says why; the old listener serves on.
    let (new_cert, new_key) = make_cert(keep.path(), "new");
    std::fs::copy(&new_key, &key).unwrap();
    kill(v.pid() as i32, "HUP");
    let log = v.path("vigild.log");
    wait_for("the refused re-exec in the log", || {
        let l = std::fs::read_to_string(&log).ok()?;
        (l.contains("SIGHUP: not re-executing") && l.contains("is not the private key of the certificate"))
            .then_some(())
    });
    let (code, d, err) = curl(&cert, &url, &[]);
    assert_eq!((code, d["pid"].as_u64()), (200, Some(u64::from(v.pid()))), "{d} {err}");
    // As is one asked for on the socket.
    let out = v.cli(&["daemon", "reexec"]);
    assert!(stderr(&out).contains("is not the private key"), "{out:?}");
    assert_eq!(curl(&cert, &url, &[]).0, 200);

    // A token file others may read (its owner may be any user): refused as well, rather than a new
    // image that would stop on it; a FIFO in its place does not hold vigild either.
    let token = keep.path().join("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = v.cli(&["daemon", "reexec"]);
    assert!(
        stderr(&out).contains("[http] token_file") && stderr(&out).contains("mode 644"),
        "{out:?}"
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&cert, keep.path().join("cert.kept")).unwrap();
    assert!(Command::new("mkfifo").arg(&cert).status().unwrap().success());
    let out = v.cli(&["daemon", "reexec"]);
    assert!(stderr(&out).contains("is not a regular file"), "{out:?}");
    std::fs::remove_file(&cert).unwrap();
    std::fs::rename(keep.path().join("cert.kept"), &cert).unwrap();
    assert_eq!(curl(&cert, &url, &[]).0, 200);

    // The matching certificate: the new image serves it.
    std::fs::copy(&new_cert, &cert).unwrap();
    kill(v.pid() as i32, "HUP");
    wait_for("the new certificate served", || {
        (curl(&new_cert, &url, &[]).0 == 200).then_some(())
    });
}

#[test]
fn a_stalled_handshake_neither_blocks_others_nor_keeps_its_place() {
    let keep = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(keep.path(), "server");
    let port = free_port();
    let cfg = tls_config(
        keep.path(),
        port,
        &cert,
        &key,
        "[daemon]\nhello_timeout = 3\nmax_connections_per_uid = 2\n",
    );
    let v = Vigild::start_with(Some(&cfg));
    let url = format!("https://127.0.0.1:{port}/api/tags");
    // One says nothing; one stops half-way through its ClientHello.
    let opened = Instant::now();
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut half = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").unwrap();
    // While both are held, both places are taken: a third is told so, over TLS, at once.
    let (code, e, err) = curl(&cert, &url, &["--max-time", "2"]);
    assert_eq!((code, e["kind"].as_str()), (503, Some("unavailable")), "{e} {err}");
    // Within hello_timeout vigild closes both and gives their places back.
    for s in [&mut silent, &mut half] {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    }
    let held = opened.elapsed();
    assert!(held < Duration::from_secs(6), "held for {held:?}, hello_timeout is 3 s");
    // The client may see the close a moment before vigild has given the place back.
    wait_for("a place back after the stalled handshakes", || {
        (curl(&cert, &url, &[]).0 == 200).then_some(())
    });
    drop(v);

    // With room to spare, a stalled client keeps nobody waiting.
    let port = free_port();
    let cfg = tls_config(keep.path(), port, &cert, &key, "[daemon]\nhello_timeout = 10\n");
    let v = Vigild::start_with(Some(&cfg));
    let url = format!("https://127.0.0.1:{port}/api/tags");
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _half = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let t = Instant::now();
    let (code, e, err) = curl(&cert, &url, &["--max-time", "5"]);
    assert_eq!(code, 200, "{e} {err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(v);
}
