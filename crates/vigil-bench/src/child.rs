//! The tiny programs the metrics start: this executable, re-invoked through hidden subcommands.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a supervised instance lives, so that its death is not part of its own start-up.
pub const LIFETIME: Duration = Duration::from_millis(20);

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME): one clock for every process of the machine, so
/// stamps taken in different processes can be subtracted.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `child STAMP`: appends `start <ns>` (the time `main` was entered), lives [`LIFETIME`], appends
/// `exit <ns>` and exits 0. Each line is one `write` to a file opened for appending, so lines never mix.
pub fn run(stamp: &Path, started_ns: u64) -> ExitCode {
    let mut file = match OpenOptions::new().append(true).create(true).open(stamp) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vigil-bench child: cannot open {}: {e}", stamp.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = file.write_all(format!("start {started_ns}\n").as_bytes()) {
        eprintln!("vigil-bench child: cannot write {}: {e}", stamp.display());
        return ExitCode::from(2);
    }
    std::thread::sleep(LIFETIME);
    if let Err(e) = file.write_all(format!("exit {}\n", now_ns()).as_bytes()) {
        eprintln!("vigil-bench child: cannot write {}: {e}", stamp.display());
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// The exit status of `child-psm`: vigild reports it as the wait(2) status `EXIT_CODE << 8`.
pub const PSM_EXIT_CODE: u8 = 7;

/// `child-psm STAMP`: blocks reading stdin; at end of file appends `exit <ns>` to STAMP and exits
/// [`PSM_EXIT_CODE`]. The parent decides the moment of the exit by closing the pipe.
pub fn run_psm(stamp: &Path) -> ExitCode {
    let mut file = match OpenOptions::new().append(true).create(true).open(stamp) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vigil-bench child-psm: cannot open {}: {e}", stamp.display());
            return ExitCode::from(2);
        }
    };
    let mut buf = [0u8; 64];
    loop {
        match std::io::stdin().lock().read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("vigil-bench child-psm: cannot read stdin: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = file.write_all(format!("exit {}\n", now_ns()).as_bytes()) {
        eprintln!("vigil-bench child-psm: cannot write {}: {e}", stamp.display());
        return ExitCode::from(2);
    }
    ExitCode::from(PSM_EXIT_CODE)
}
