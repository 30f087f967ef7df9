//! What any process of a tag can send vigild: sd_notify datagrams (read as vigild reads them, lossy
//! UTF-8), and the probe addresses and URLs any user can put in a tag. Checks the parsers' promises, not
//! only that they return.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_core::health::{parse_host_port, parse_notify, HttpUrl, Notify, MAX_STATUS_BYTES};

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::catch_segv();
    let text = String::from_utf8_lossy(data);
    let msgs = parse_notify(&text);
    assert!(msgs.len() <= text.split('\n').count());
    for m in &msgs {
        match m {
            Notify::Status(s) => assert!(s.len() <= MAX_STATUS_BYTES, "STATUS kept {} bytes", s.len()),
            Notify::WatchdogUsec(n) => assert!(*n > 0),
            Notify::MainPid(p) => assert!(*p > 0),
            Notify::Ready | Notify::Watchdog | Notify::WatchdogTrigger => {}
        }
    }
    if let Ok((host, port)) = parse_host_port(&text) {
        assert!(!host.is_empty() && port > 0);
    }
    if let Ok(url) = HttpUrl::parse(&text) {
        assert!(!url.host.is_empty() && url.port > 0 && url.path.starts_with('/'));
        let _ = url.authority();
        let _ = url.to_string();
    }
});
