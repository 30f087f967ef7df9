//! The report: the floors, then one table with every metric: p50, p99, what it is compared with (a floor
//! measured in the same run, or a baseline), the ratios, the rate and the target.

use crate::floor::Floors;
use crate::metrics::{Floor, Row, Stat, Target};
use crate::stats::{us, Summary};

pub fn print(floors: &Floors, rows: &[Row]) {
    println!();
    println!("floors (same run), µs:");
    print_table(
        &["floor", "n", "p50", "p99", "min", "mean", "max"],
        Floor::ALL
            .iter()
            .map(|f| {
                let s = f.summary(floors);
                vec![
                    f.name().to_string(),
                    s.n.to_string(),
                    fmt_us(s.p50),
                    fmt_us(s.p99),
                    fmt_us(s.min),
                    format!("{:.1}", s.mean / 1000.0),
                    fmt_us(s.max),
                ]
            })
            .collect(),
    );

    println!();
    println!("metrics (ratios: p50 to the floor's p50, p99 to the floor's p99):");
    print_table(
        &[
            "metric",
            "unit",
            "p50",
            "p99",
            "floor",
            "floor p50",
            "ratio p50",
            "ratio p99",
            "rate",
            "target",
        ],
        rows.iter()
            .map(|r| {
                let s = &r.summary;
                let against = r.floor.resolve(floors);
                let (fname, fp50, r50, r99) = match against {
                    Some((name, f)) => (
                        name.to_string(),
                        r.unit.fmt(f.p50),
                        format!("{:.2}x", ratio(s.p50, f.p50)),
                        format!("{:.2}x", ratio(s.p99, f.p99)),
                    ),
                    None => ("—".into(), "—".into(), "—".into(), "—".into()),
                };
                let one = s.n == 1;
                vec![
                    r.metric.clone(),
                    r.unit.name().to_string(),
                    r.unit.fmt(s.p50),
                    if one { "—".into() } else { r.unit.fmt(s.p99) },
                    fname,
                    fp50,
                    r50,
                    if one { "—".into() } else { r99 },
                    r.rate.clone().unwrap_or_default(),
                    r.target
                        .map(|t| target_text(r, t, against.map(|(_, f)| f)))
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    );

    println!();
    for r in rows {
        let s = &r.summary;
        let u = r.unit;
        println!(
            "{}: n {}, min {} {}, mean {:.1}, max {}; against: {}",
            r.metric,
            s.n,
            u.fmt(s.min),
            u.name(),
            u.scale(s.mean as u64),
            u.fmt(s.max),
            r.floor.resolve(floors).map_or("nothing", |(n, _)| n)
        );
        for n in &r.notes {
            println!("  {n}");
        }
    }
}

/// "p50 ≤ 2x, p99 ≤ 5x: met" or "max ≤ 2000.0 ms: MISSED".
fn target_text(r: &Row, t: Target, against: Option<&Summary>) -> String {
    let s = &r.summary;
    match t {
        Target::Ratio { p50, p99 } => {
            let Some(f) = against else {
                return "(no floor)".into();
            };
            let mut met = ratio(s.p50, f.p50) <= p50;
            let mut text = format!("p50 ≤ {p50}x");
            if let Some(p99) = p99 {
                met &= ratio(s.p99, f.p99) <= p99;
                text.push_str(&format!(", p99 ≤ {p99}x"));
            }
            format!("{text}: {}", verdict(met))
        }
        Target::AtMost { stat, value } => {
            let (name, got) = match stat {
                Stat::P50 => ("p50", s.p50),
                Stat::Max => ("max", s.max),
            };
            let name = if s.n == 1 { "value" } else { name };
            format!(
                "{name} ≤ {} {}: {}",
                r.unit.fmt(value),
                r.unit.name(),
                verdict(got <= value)
            )
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b.max(1)) as f64
}

fn fmt_us(ns: u64) -> String {
    format!("{:.1}", us(ns))
}

/// A Markdown table, columns padded; the first column left-aligned, the others right-aligned.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("| {} |", cells.join(" | "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    println!(
        "|{}|",
        widths
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 {
                format!(":{}", "-".repeat(w + 1))
            } else {
                format!("{}:", "-".repeat(w + 1))
            })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(r);
    }
}
