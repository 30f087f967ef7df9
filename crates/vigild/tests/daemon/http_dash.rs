//! The dashboard in a real browser: Debian's headless Chromium driven by chromedriver over its W3C
//! protocol (curl as the HTTP client), against a real vigild serving the page on TCP loopback. It signs
//! in with the token (kept for the tab, sent as a header: no cookie is set), sees the tags, stops one
//! with its button and sees the state change from the event stream (read with `fetch`); after vigild
//! re-executes (the stream breaks), the page reconnects and a change made meanwhile still shows; the
//! screenshot is saved under target/ and its path printed.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use vigil_client::proto::RunSpec;

use crate::harness::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    port: u16,
    session: Option<String>,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, scripts/install-deps)");
        let mut d = Driver {
            child,
            port,
            session: None,
        };
        wait_for("chromedriver ready", || {
            d.call("GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"] == true)
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
            }
        }}});
        let v = d.call("POST", "/session", Some(caps)).expect("a browser session");
        d.session = Some(v["value"]["sessionId"].as_str().expect("sessionId").to_string());
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut cmd = Command::new("curl");
        // No call may hang the test: chromedriver answers each within seconds or not at all.
        cmd.args([
            "-sS",
            "--max-time",
            "30",
            "-X",
            method,
            "-H",
            "content-type: application/json",
        ])
        .arg(format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(b) = body {
            cmd.arg("--data-binary").arg(b.to_string());
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {:?}", out))?;
        match v["value"]["error"].as_str() {
            Some(e) => Err(format!("{e}: {}", v["value"]["message"])),
            None => Ok(v),
        }
    }

    fn s(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let id = self.session.as_deref().expect("session");
        self.call(method, &format!("/session/{id}{path}"), body)
    }

    fn find(&self, css: &str) -> Option<String> {
        let v = self
            .s("POST", "/element", Some(json!({"using": "css selector", "value": css})))
            .ok()?;
        v["value"][ELEMENT].as_str().map(String::from)
    }

    fn wait_find(&self, css: &str) -> String {
        wait_for(&format!("{css} on the page"), || self.find(css))
    }

    fn click(&self, css: &str) {
        let e = self.wait_find(css);
        self.s("POST", &format!("/element/{e}/click"), Some(json!({})))
            .unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.wait_find(css);
        self.s("POST", &format!("/element/{e}/value"), Some(json!({"text": text})))
            .unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = self.s("DELETE", "", None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn http_dashboard_in_chromium_shows_tags_and_stops_one() {
    let keep = tempfile::tempdir().unwrap();
    let token = "dashboard-token-0123456789abcdef";
    let tf = keep.path().join("token");
    std::fs::write(&tf, token).unwrap();
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
        tf.display()
    );
    let v = Vigild::start_with(Some(&cfg));
    v.run(RunSpec::new("web", vec!["sleep".into(), "1000".into()]));
    v.run(RunSpec::new("db", vec!["sleep".into(), "1000".into()]));
    let mut flap = sh("flappy", "sleep 0.2; exit 1");
    flap.retries = 3;
    v.run(flap);
    wait_for("flappy failed", || (v.status("flappy").state == "failed").then_some(()));

    let d = Driver::start();
    d.s(
        "POST",
        "/url",
        Some(json!({"url": format!("http://127.0.0.1:{port}/")})),
    )
    .unwrap();
    // A wrong token is told and stays out of the tab's storage.
    d.type_in("#token", "wrong-token-0123456789");
    d.click("#login-form button");
    wait_for("the wrong token told", || {
        let v = d
            .s(
                "POST",
                "/execute/sync",
                Some(json!({"script": "return document.querySelector('#login-error').textContent", "args": []})),
            )
            .ok()?;
        (v["value"] == "wrong token").then_some(())
    });
    // The page asks for the token; it keeps it for the tab (sessionStorage), not in a cookie.
    d.type_in("#token", token);
    d.click("#login-form button");
    d.wait_find(r#"tr[data-tag="web"] span[data-state="running"]"#);
    d.wait_find(r#"tr[data-tag="db"] span[data-state="running"]"#);
    d.wait_find(r#"tr[data-tag="flappy"] span[data-state="failed"]"#);
    d.wait_find(r#"#live.ok"#);
    let stored = d
        .s(
            "POST",
            "/execute/sync",
            Some(json!({"script": "return [sessionStorage.getItem('vigil_token'), document.cookie]", "args": []})),
        )
        .unwrap();
    assert_eq!(stored["value"], json!([token, ""]), "{stored}");
    d.click(r#"button[data-action="stop"][data-tag="web"]"#);
    // The row changes from the event stream, without a reload.
    d.wait_find(r#"tr[data-tag="web"] span[data-state="stopped"]"#);
    assert_eq!(v.status("web").state, "stopped");
    assert_eq!(v.status("db").state, "running");
    // vigild re-executes: the stream breaks, and the page reconnects with Last-Event-ID. A change
    // made meanwhile shows from the stream (the page reloads tags only on an event).
    let seen = |css: &str| {
        let script = format!("return document.querySelector('{css}') !== null");
        d.s("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
            .ok()
            .is_some_and(|v| v["value"] == true)
    };
    assert!(v.client().reexec().is_ok());
    wait_for("the page sees the stream break", || seen("#live.bad").then_some(()));
    // The new image may not listen yet: the CLI is refused until it does.
    wait_for("db stopped through the new image", || {
        let out = v.cli(&["stop", "db"]);
        let err = stderr(&out);
        assert!(out.status.success() || err.contains("cannot connect"), "{err}");
        out.status.success().then_some(())
    });
    d.wait_find(r#"tr[data-tag="db"] span[data-state="stopped"]"#);
    d.wait_find(r#"#live.ok"#);
    d.click(r#"tr[data-tag="db"]"#);
    d.wait_find("#log-panel:not([hidden])");
    std::thread::sleep(Duration::from_millis(300));

    let shot = d.s("GET", "/screenshot", None).unwrap();
    let b64 = shot["value"].as_str().expect("screenshot");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let png = target.join("http-dashboard.png");
    // Through a file: a pipe both ways would deadlock once the decoded bytes fill it.
    let b64_file = keep.path().join("shot.b64");
    std::fs::write(&b64_file, b64).unwrap();
    let out = Command::new("base64").arg("-d").arg(&b64_file).output().unwrap();
    assert!(out.stdout.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(&png, &out.stdout).unwrap();
    println!("dashboard screenshot: {}", png.canonicalize().unwrap_or(png).display());
}
