//! CMAP from C: `c/cmap_bench.c` through vigil's libcmap.so.4, for rows beside the Rust client's.
//!
//! The program is compiled with gcc against vigil's `include/` and linked against the `libcmap.so` built
//! next to this executable (vigil-bench depends on vigil-libcmap so that cargo builds it), then run
//! against the same vigild. It does set, get and track as the Rust rows do (one connection, one request
//! at a time; a tracker in its own thread) and writes one line per sample; this module only summarizes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::{Ctx, Floor, Row, Unit};
use crate::daemon::Vigild;
use crate::stats::Summary;

const SOURCE: &str = include_str!("../../c/cmap_bench.c");

/// vigil's headers, in the repository this benchmark was built from.
fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include")
}

/// Builds the program: gcc, vigil's headers, and a directory where libcmap.so.4 is this build's library.
fn build(ctx: &Ctx, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    // Cargo leaves a dependency's cdylib in deps/ and copies it up only when the library itself was asked
    // for (`cargo build --workspace`): the newer of the two is this build's.
    let bin_dir = ctx.self_exe.parent().context("vigil-bench's directory")?;
    let lib = [bin_dir.join("libcmap.so"), bin_dir.join("deps/libcmap.so")]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .with_context(|| {
            format!(
                "no libcmap.so in {} or its deps/: build vigil-bench (it builds vigil-libcmap) in this profile",
                bin_dir.display()
            )
        })?;
    let lib_dir = dir.join("c-libs");
    std::fs::create_dir_all(&lib_dir)?;
    for name in ["libcmap.so", "libcmap.so.4"] {
        let link = lib_dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)?;
    }
    let src = dir.join("cmap_bench.c");
    std::fs::write(&src, SOURCE)?;
    let exe = dir.join("cmap_bench");
    let o = Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg("-I")
        .arg(include_dir())
        .arg(&src)
        .arg("-L")
        .arg(&lib_dir)
        .args(["-lcmap", "-lpthread"])
        .output()
        .context("cannot run gcc (the C rows of cmap need it)")?;
    if !o.status.success() {
        bail!("gcc failed on cmap_bench.c: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok((exe, lib_dir))
}

/// The C rows: set, get, and set → notification, each with the same floor as the Rust rows.
pub fn rows(ctx: &Ctx, vigild: &Vigild) -> anyhow::Result<Vec<Row>> {
    let (exe, lib_dir) = build(ctx, vigild.dir())?;
    let out = vigild.dir().join("cmap_bench.out");
    let o = Command::new(&exe)
        .arg(&out)
        .arg(ctx.count.to_string())
        .env("VIGIL_SOCKET", vigild.socket())
        .env("LD_LIBRARY_PATH", &lib_dir)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    anyhow::ensure!(
        o.status.success(),
        "cmap_bench ended with {}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&out)?;
    let samples = |kind: &str| -> anyhow::Result<Vec<u64>> {
        text.lines()
            .filter_map(|l| l.strip_prefix(kind)?.strip_prefix(' '))
            .map(|n| n.parse::<u64>().with_context(|| format!("{kind} sample {n:?}")))
            .collect()
    };
    let total = |kind: &str| -> anyhow::Result<u64> {
        samples(&format!("{kind}_total"))?
            .first()
            .copied()
            .with_context(|| format!("no {kind}_total line"))
    };
    let n = ctx.count;
    let per_s = |ns: u64| n as f64 / (ns.max(1) as f64 / 1e9);
    let row = |metric: &str, kind: &str, note: String| -> anyhow::Result<Row> {
        Ok(Row {
            metric: metric.into(),
            summary: Summary::of(&samples(kind)?).with_context(|| format!("no {kind} samples"))?,
            floor: Floor::SocketRoundTrip.into(),
            target: None,
            rate: None,
            unit: Unit::Micros,
            notes: vec![note],
        })
    };
    Ok(vec![
        row(
            "cmap set, C libcmap",
            "set",
            format!(
                "C libcmap: {n} cmap_set_uint32 at {:.0} ops/s (one handle, one at a time)",
                per_s(total("set")?)
            ),
        )?,
        row(
            "cmap get, C libcmap",
            "get",
            format!("C libcmap: {n} cmap_get_uint32 at {:.0} ops/s", per_s(total("get")?)),
        )?,
        row(
            "cmap set → track notification, C libcmap",
            "track",
            "C libcmap: set on one handle until the callback runs in a thread blocked in \
             cmap_dispatch(CS_DISPATCH_BLOCKING) on another"
                .into(),
        )?,
    ])
}
