//! The shape of the crate, checked: every file sits in a layer (ARCHITECTURE.md), and its `crate::` and
//! `super::` paths name only files below it. A new file must be given its layer here; an import that
//! runs upward, or across services, fails with the file and the line.
//!
//! Paths must name the file that defines an item (`crate::events::attr::attr_i`, not the folder's
//! re-export `crate::events::attr_i`): a re-export would hide the real edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; within a layer, a file may use the files listed before it. In a service
/// layer (`true`), only those of its own folder: services meet in the daemon, not in each other.
const LAYERS: &[(&str, bool, &[&str])] = &[
    (
        "foundations",
        false,
        &[
            "clock",
            "fit",
            "stamp",
            "sd_notify",
            "events::attr",
            "events::subscription",
            "config::settings",
            "cluster::records",
            "pmf::logs",
            "pmf::marks",
            "pmf::lineage",
            "pmf::reap_scan",
            "psm::state",
            "storage",
            "scrape",
            "realtime",
        ],
    ),
    (
        "conversions and config",
        false,
        &[
            "supervision",
            "tag_res",
            "convert",
            "spec",
            "config::res_keys",
            "config",
        ],
    ),
    ("messages", false, &["conn", "msg", "node"]),
    (
        "service state and the cluster task",
        true,
        &[
            "cmap::map",
            "sam::state",
            "pmf::state",
            "cluster::etcd",
            "cluster::conn",
            "cluster::stream",
            "cluster::cmd",
            "cluster::view",
            "cluster::membership",
            "cluster::remote_ops",
            "cluster::life",
            "cluster::task",
            "cluster::without",
        ],
    ),
    ("the daemon", false, &["state"]),
    (
        "service steps",
        true,
        &[
            "events",
            "cmap",
            "cmap::mirror",
            "sam",
            "psm",
            "cluster::remote",
            "cluster::nodes",
            "cluster::quorum_lease",
            "pmf::procs",
            "pmf::drain",
            "pmf::health",
            "pmf::restore",
            "pmf::requests",
            "pmf::policy",
            "pmf::resources",
        ],
    ),
    (
        "the loop",
        false,
        &[
            "http::tls",
            "router",
            "server",
            "http::errors",
            "http::call",
            "http::bounds",
            "http::auth",
            "http::json",
            "http::routes",
            "http::sse",
            "http::metrics",
            "http::dash",
            "http",
            "lib",
        ],
    ),
];

/// Folders whose `mod.rs` only declares and re-exports: they are the crate's face to its users (tests,
/// the fuzz targets), and nothing inside the crate imports through them.
const FACADES: &[&str] = &["cluster", "pmf"];

/// Where a module sits: its layer and its place in the order.
struct Place {
    layer: usize,
    rank: usize,
}

fn places() -> BTreeMap<String, Place> {
    let mut out = BTreeMap::new();
    let mut rank = 0;
    for (layer, (_, _, mods)) in LAYERS.iter().enumerate() {
        for m in *mods {
            assert!(
                out.insert(m.to_string(), Place { layer, rank }).is_none(),
                "{m} is listed twice in LAYERS"
            );
            rank += 1;
        }
    }
    out
}

/// Every source file of the crate's library as (module path, file), tests excepted.
fn modules(src: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let path = e.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let name = rel.to_string_lossy().trim_end_matches(".rs").to_string();
            if path.extension().is_none_or(|x| x != "rs")
                || name == "main"
                || name == "tidy_tests"
                || name.ends_with("tests")
            {
                continue;
            }
            let module = match name.strip_suffix("/mod") {
                Some(folder) => folder.replace('/', "::"),
                None => name.replace('/', "::"),
            };
            out.push((module, path));
        }
    }
    out.sort();
    out
}

/// The file's code without comments and without its trailing `#[cfg(test)] mod`.
fn code(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") && lines.get(i + 1).is_some_and(|n| n.trim_start().starts_with("mod ")) {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((i + 1, line.to_string()));
    }
    out
}

/// The `use` statements of the file (joined over lines) and the inline `crate::` paths, each with the
/// line it starts on; re-exports (`pub use`) and module declarations are the folder's face, not edges.
fn paths(lines: &[(usize, String)]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut stmt: Option<(usize, String, bool)> = None;
    for (n, line) in lines {
        let t = line.trim();
        if stmt.is_none() {
            let public = t.starts_with("pub use ") || t.starts_with("pub(crate) use ");
            if let Some(rest) = t.strip_prefix("use ").or_else(|| t.split_once(" use ").map(|(_, r)| r)) {
                if t.starts_with("use ") || public {
                    stmt = Some((*n, rest.to_string(), public));
                }
            }
        } else if let Some((_, s, _)) = &mut stmt {
            s.push(' ');
            s.push_str(t);
        }
        if let Some((start, s, public)) = stmt.take() {
            if !s.contains(';') {
                stmt = Some((start, s, public));
                continue;
            }
            if !public {
                for p in expand(s.trim_end_matches(';')) {
                    out.push((start, p));
                }
            }
            continue;
        }
        // Inline paths in code: `crate::convert::exit_from_wait(s)`.
        let mut rest = line.as_str();
        while let Some(i) = rest.find("crate::") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            out.push((*n, tail[..end].trim_end_matches(':').to_string()));
            rest = &tail[end..];
        }
    }
    out
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e` (renames dropped).
fn expand(s: &str) -> Vec<String> {
    let s = s.trim();
    let Some(open) = s.find('{') else {
        let s = s.split(" as ").next().unwrap_or(s).trim();
        return vec![s.chars().filter(|c| !c.is_whitespace()).collect()];
    };
    let prefix = s[..open].trim();
    let inner = &s[open + 1..s.rfind('}').expect("closing brace")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The module a path names: the longest known module it starts with (`crate::` or `super::` resolved
/// from `module`, a folder's `mod.rs` being the folder itself). None for paths outside the crate.
fn target(module: &str, is_folder: bool, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut segs: Vec<&str> = if let Some(rest) = path.strip_prefix("crate::") {
        rest.split("::").collect()
    } else if path.starts_with("super::") {
        let mut base: Vec<&str> = module.split("::").collect();
        if !is_folder {
            base.pop();
        }
        let mut rest = path;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            if r.starts_with("super::") {
                base.pop();
            }
        }
        base.extend(rest.split("::"));
        base.retain(|s| !s.is_empty());
        base
    } else {
        return None;
    };
    while !segs.is_empty() {
        let m = segs.join("::");
        if known.contains(&m) {
            return Some(m);
        }
        segs.pop();
    }
    Some("lib".into())
}

/// The service a module belongs to: its first segment (`cluster::remote` is cluster's, `events` is
/// the events folder's own `mod.rs`).
fn service(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn no_file_imports_upward_or_across_services() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let places = places();
    let mods = modules(&src);
    let mut known: BTreeSet<String> = mods.iter().map(|(m, _)| m.clone()).collect();
    known.insert("lib".into());
    let mut problems = Vec::new();
    for (module, path) in &mods {
        let module = if module == "lib" { "lib" } else { module.as_str() };
        if FACADES.contains(&module) {
            let text = std::fs::read_to_string(path).expect("read");
            if let Some((n, p)) = paths(&code(&text)).first() {
                problems.push(format!(
                    "{}:{n}: {module} is a folder's face and imports nothing (found {p})",
                    path.display()
                ));
            }
            continue;
        }
        let Some(me) = places.get(module) else {
            problems.push(format!(
                "{}: module {module} has no layer: add it to LAYERS here and to ARCHITECTURE.md",
                path.display()
            ));
            continue;
        };
        let is_folder = path.ends_with("mod.rs") || module == "lib";
        let text = std::fs::read_to_string(path).expect("read");
        for (n, p) in paths(&code(&text)) {
            let Some(to) = target(module, is_folder, &p, &known) else {
                continue;
            };
            if to == module {
                continue;
            }
            let Some(there) = places.get(&to) else {
                problems.push(format!(
                    "{}:{n}: {p} goes through {to}, which is a folder's face: name the file that defines it",
                    path.display()
                ));
                continue;
            };
            let (name, services, _) = LAYERS[me.layer];
            if there.rank > me.rank {
                problems.push(format!(
                    "{}:{n}: {module} ({}) imports upward from {to} ({}): {p}",
                    path.display(),
                    LAYERS[me.layer].0,
                    LAYERS[there.layer].0
                ));
            } else if there.layer == me.layer && services && service(module) != service(&to) {
                problems.push(format!(
                    "{}:{n}: {module} imports {to} across services in layer {name:?}: {p}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the module graph broke its layers:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_layered_module_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known: BTreeSet<String> = modules(&src).into_iter().map(|(m, _)| m).collect();
    let missing: Vec<&str> = LAYERS
        .iter()
        .flat_map(|(_, _, m)| m.iter().copied())
        .filter(|m| !known.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "LAYERS names modules that do not exist: {missing:?}"
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    // The check itself must catch what it is for: a foundation file naming the daemon.
    let lines = code("use crate::state::Daemon;\nfn f() { crate::router::x(); }\n// crate::lib\n");
    let found: Vec<String> = paths(&lines).into_iter().map(|(_, p)| p).collect();
    assert_eq!(found, ["crate::state::Daemon", "crate::router::x"]);
    let known: BTreeSet<String> = ["state", "router", "cluster", "cluster::etcd"].map(String::from).into();
    assert_eq!(
        target("clock", false, "crate::state::Daemon", &known).as_deref(),
        Some("state")
    );
    assert_eq!(
        target("cluster::conn", false, "super::etcd::call", &known).as_deref(),
        Some("cluster::etcd")
    );
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
}
