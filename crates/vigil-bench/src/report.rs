//! The report: the floors, then one line per metric with its ratios to its floor and the targets.

use crate::floor::Floors;
use crate::metrics::{Floor, Row};
use crate::stats::us;

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
    println!("metrics, µs (ratios against the floor's p50 and p99):");
    print_table(
        &["metric", "p50", "p99", "floor p50", "ratio p50", "ratio p99"],
        rows.iter()
            .map(|r| {
                let (f, s) = (r.floor.summary(floors), &r.summary);
                vec![
                    r.metric.clone(),
                    fmt_us(s.p50),
                    fmt_us(s.p99),
                    fmt_us(f.p50),
                    format!("{:.2}x", ratio(s.p50, f.p50)),
                    format!("{:.2}x", ratio(s.p99, f.p99)),
                ]
            })
            .collect(),
    );

    println!();
    for r in rows {
        let (f, s) = (r.floor.summary(floors), &r.summary);
        println!(
            "{}: n {}, min {} µs, mean {:.1} µs, max {} µs; floor: {}",
            r.metric,
            s.n,
            fmt_us(s.min),
            s.mean / 1000.0,
            fmt_us(s.max),
            r.floor.name()
        );
        if let Some(t) = r.target {
            let (r50, r99) = (ratio(s.p50, f.p50), ratio(s.p99, f.p99));
            println!(
                "  target p50 <= {}x floor p50: {:.2}x, {}",
                t.p50,
                r50,
                verdict(r50 <= t.p50)
            );
            println!(
                "  target p99 <= {}x floor p99: {:.2}x, {}",
                t.p99,
                r99,
                verdict(r99 <= t.p99)
            );
        }
        for n in &r.notes {
            println!("  {n}");
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
fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
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
