//! The stamp files of the `child` program: `start NS` and `exit NS` lines, turned into restart latencies.

use anyhow::{bail, Context};

/// What a stamp file says.
#[derive(Debug, Default, PartialEq)]
pub struct Stamps {
    pub starts: usize,
    /// Restart latencies (ns), in order.
    pub samples: Vec<u64>,
    /// Pairs where the start came before the exit on the clock (a clock step), not counted.
    pub backwards: usize,
}

/// Parses `start NS` / `exit NS` lines; a sample is an exit followed by a start. A start with no exit
/// before it (the first one, or after an instance that was killed) gives no sample. An unfinished last
/// line (being written) is ignored.
pub fn parse(text: &str) -> anyhow::Result<Stamps> {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut s = Stamps::default();
    let mut last_exit = None;
    for line in complete.lines() {
        let (what, ns) = line
            .split_once(' ')
            .and_then(|(w, n)| Some((w, n.parse::<u64>().ok()?)))
            .with_context(|| format!("bad stamp line {line:?}"))?;
        match what {
            "start" => {
                s.starts += 1;
                if let Some(exit) = last_exit.take() {
                    match ns.checked_sub(exit) {
                        Some(d) => s.samples.push(d),
                        None => s.backwards += 1,
                    }
                }
            }
            "exit" => last_exit = Some(ns),
            _ => bail!("bad stamp line {line:?}"),
        }
    }
    Ok(s)
}

/// The `exit NS` lines of a stamp file written by `child-psm` only, in order. An unfinished last line is
/// ignored; any other line is an error.
pub fn parse_exits(text: &str) -> anyhow::Result<Vec<u64>> {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|line| {
            line.strip_prefix("exit ")
                .and_then(|n| n.parse::<u64>().ok())
                .with_context(|| format!("bad stamp line {line:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_exits_with_the_next_start() {
        let s = parse("start 100\nexit 200\nstart 250\nexit 300\nstart 290\nstart 400\nexit 500\nstart 5").unwrap();
        assert_eq!(
            s,
            Stamps {
                starts: 4,
                samples: vec![50],
                backwards: 1,
            }
        );
        assert_eq!(parse("").unwrap(), Stamps::default());
        assert!(parse("begin 5\n").is_err());
        assert!(parse("start x\n").is_err());
    }

    #[test]
    fn exits_only() {
        assert_eq!(parse_exits("exit 5\nexit 7\nexit 9").unwrap(), vec![5, 7]);
        assert_eq!(parse_exits("").unwrap(), Vec::<u64>::new());
        assert!(parse_exits("start 5\n").is_err());
        assert!(parse_exits("exit x\n").is_err());
    }
}
