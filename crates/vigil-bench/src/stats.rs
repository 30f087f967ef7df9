//! Percentiles of latency samples, in nanoseconds.

/// The distribution of a set of samples (nanoseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples`; None when there are none.
    pub fn of(samples: &[u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Summary {
            n: sorted.len(),
            min: sorted[0],
            p50: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().map(|&s| s as f64).sum::<f64>() / sorted.len() as f64,
        })
    }
}

/// The nearest-rank percentile of sorted, non-empty samples: the smallest sample with at least `p`%
/// of the samples at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nanoseconds as microseconds.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        let s: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&s, 99.0), 20);
    }

    #[test]
    fn summary() {
        assert_eq!(Summary::of(&[]), None);
        let s = Summary::of(&[30, 10, 20]).unwrap();
        assert_eq!((s.n, s.min, s.p50, s.p99, s.max), (3, 10, 20, 30, 30));
        assert_eq!(s.mean, 20.0);
    }
}
