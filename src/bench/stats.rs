//! Latency percentiles for the bench reports.
//!
//! Nearest-rank percentiles over every sample (no histogram buckets): a bench run records at most a few million
//! durations, so sorting them once at the end is cheap and the numbers are exact.

use std::time::Duration;

use serde::Serialize;

/// The latency summary every bench prints, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest sample.
    pub max: f64,
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of `sorted` (ascending); zero when there are no samples.
///
/// Nearest rank, rather than interpolation, so every reported value is a latency that was really observed.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts the samples and summarises them as p50/p90/p99/max in milliseconds.
pub fn summarize(samples: &mut [Duration]) -> LatencySummary {
    samples.sort_unstable();
    let ms = |d: Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    LatencySummary {
        p50: ms(percentile(samples, 50.0)),
        p90: ms(percentile(samples, 90.0)),
        p99: ms(percentile(samples, 99.0)),
        max: ms(samples.last().copied().unwrap_or(Duration::ZERO)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_of_one_to_a_hundred_is_the_rank_itself() {
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50.0), ms(50));
        assert_eq!(percentile(&samples, 90.0), ms(90));
        assert_eq!(percentile(&samples, 99.0), ms(99));
        assert_eq!(percentile(&samples, 100.0), ms(100));
        assert_eq!(percentile(&samples, 0.1), ms(1));
    }

    #[test]
    fn small_sets_round_the_rank_up() {
        let samples = [ms(10), ms(20), ms(30)];
        assert_eq!(percentile(&samples, 50.0), ms(20));
        assert_eq!(percentile(&samples, 90.0), ms(30));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
    }

    #[test]
    fn no_samples_is_all_zero() {
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert_eq!(summarize(&mut []), LatencySummary::default());
    }

    #[test]
    fn summarize_sorts_and_reports_milliseconds() {
        let mut samples: Vec<Duration> = (1..=1000).rev().map(Duration::from_micros).collect();
        samples.push(Duration::from_micros(2500));
        let s = summarize(&mut samples);
        assert_eq!(s.p50, 0.501);
        assert_eq!(s.p90, 0.901);
        assert_eq!(s.p99, 0.991);
        assert_eq!(s.max, 2.5);
    }
}
