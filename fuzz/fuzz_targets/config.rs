//! vigild's config file (TOML): any text is a config or an error that names the problem.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::catch_segv();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As root (the usual vigild) and as an unprivileged user running its own vigild.
    let _ = vigild::config::parse(text, 0, 0);
    let _ = vigild::config::parse(text, 65534, 65534);
});
