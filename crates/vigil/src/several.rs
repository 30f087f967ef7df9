//! The commands that act on several tags at once (`vigil stop 'web*' @db other`): each tag gets its own
//! result line (a [`Done`]), and the command fails when one of them did.

use std::time::Duration;

use vigil_client::proto::{self, json as view};
use vigil_client::{Client, ClientError, SelectError};

use crate::done::Done;
use crate::output::print_json;
use crate::Failure;

/// The tags named on the command line (names, globs, `@GROUP`).
pub fn select(c: &mut Client, targets: &[String]) -> Result<Vec<String>, Failure> {
    c.select_tags(targets).map_err(|e| match e {
        SelectError::Client(e) => Failure::from(e),
        e @ SelectError::NoMatch(_) => Failure(1, e.to_string()),
    })
}

/// Whether the targets are more than one plain tag name: then each tag gets a result line.
pub fn several(targets: &[String]) -> bool {
    targets.len() != 1 || targets[0].starts_with('@') || targets[0].contains(['*', '?'])
}

/// Does `act` on each tag and prints what it did: `TAG: DONE (...)` per tag, or `TAG: error: WHY` for a
/// tag it failed on; with `--json`, an array of the Done objects (a failed tag's error goes to stderr).
/// Fails (exit 1) if any tag failed. A single plain name keeps the plain behaviour: one Done (an object,
/// not an array), the error as the failure.
pub fn each(
    c: &mut Client,
    targets: &[String],
    json: bool,
    mut act: impl FnMut(&mut Client, &str) -> Result<Done, ClientError>,
) -> Result<(), Failure> {
    if !several(targets) {
        act(c, &targets[0])?.print(json);
        return Ok(());
    }
    let tags = select(c, targets)?;
    let mut failed = 0;
    let mut views: Vec<view::Done> = Vec::new();
    for t in &tags {
        match act(c, t) {
            Ok(d) if json => views.push(d.view()),
            Ok(d) => d.print(false),
            Err(e) => {
                failed += 1;
                let e = e.to_string();
                let (t, e) = (vigil_client::escape_terminal(t), vigil_client::escape_terminal(&e));
                if json {
                    eprintln!("vigil: {t}: {e}");
                } else {
                    println!("{t}: error: {e}");
                }
            }
        }
    }
    if json {
        print_json(&views);
    }
    if failed > 0 {
        return Err(Failure(1, format!("{failed} of {} tags failed", tags.len())));
    }
    Ok(())
}

/// `vigil stop` of one tag: the Done says which signal, and with `--wait` whether the wait ran out.
pub fn stop(c: &mut Client, tag: &str, sig: Option<i32>, wait: Option<Duration>) -> Result<Done, ClientError> {
    let before = c.status(tag)?.last_exit;
    let began = std::time::Instant::now();
    c.stop(tag, sig, wait)?;
    let took = began.elapsed();
    let st = c.status(tag)?;
    let mut d = Done::new(tag, "stopped");
    if let Some(s) = sig {
        d = d.detail("signal", proto::signal_name(s));
    }
    if let Some(w) = wait {
        // The answer came once every process was gone; the last one's exit says whether the wait ran
        // out and SIGKILL ended it.
        let killed =
            st.last_exit != before && matches!(st.last_exit, Some((_, proto::ExitStatus::Signal(9)))) && sig != Some(9);
        d = if killed {
            d.note(format!("SIGKILL after {:.1} s", w.as_secs_f64()))
        } else {
            d.note(format!("gone after {:.1} s", took.as_secs_f64()))
        };
        d = d.detail("sigkill", killed).detail("waited_ms", took.as_millis() as i64);
    }
    Ok(d.tag(&st))
}

/// `vigil status [TAG...]`: every tag without targets; a name, glob or `@GROUP` otherwise. A tag that
/// cannot be read is named on stderr and makes the exit 1; the others are shown.
pub fn status(c: &mut Client, targets: &[String], json: bool) -> Result<u8, Failure> {
    if targets.is_empty() {
        let all = c.status_all()?;
        crate::res::print_status(c, &all, json);
        return Ok(0);
    }
    if !several(targets) {
        let st = c.status(&targets[0])?;
        crate::res::print_status(c, &[st], json);
        return Ok(0);
    }
    let mut got = Vec::new();
    let mut failed = 0;
    for t in select(c, targets)? {
        match c.status(&t) {
            Ok(st) => got.push(st),
            Err(e) => {
                failed += 1;
                eprintln!(
                    "vigil: {}: {}",
                    vigil_client::escape_terminal(&t),
                    vigil_client::escape_terminal(&e.to_string())
                );
            }
        }
    }
    crate::res::print_status(c, &got, json);
    Ok(if failed > 0 { 1 } else { 0 })
}
