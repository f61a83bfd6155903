//! The latency histogram every slot keeps: fixed buckets, relaxed atomic
//! adds on the hot path, and quantiles read from a copy of the counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of the latency histogram's buckets, in microseconds
/// (0.5 ms to 10 s, as Prometheus clients' defaults with a finer start).
pub(crate) const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Counts per bucket (not cumulative), the last one past the largest bound.
pub(crate) type Counts = [u64; BUCKETS_US.len() + 1];

/// A latency histogram: a count per bucket and the sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts now, and the sum in microseconds.
    pub(crate) fn read(&self) -> (Counts, u64) {
        let mut counts = [0; BUCKETS_US.len() + 1];
        for (out, b) in counts.iter_mut().zip(&self.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        (counts, self.sum_us.load(Ordering::Relaxed))
    }
}

/// The `q` quantile of `counts`, interpolated within its bucket as
/// Prometheus's `histogram_quantile` does; `None` when they are all zero.
pub(crate) fn quantile(counts: &Counts, q: f64) -> Option<Duration> {
    let count: u64 = counts.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let lower = if i == 0 { 0 } else { BUCKETS_US[i - 1] };
            // Past the last bound: the largest bound, as Prometheus does.
            let Some(&upper) = BUCKETS_US.get(i) else {
                return Some(Duration::from_micros(lower));
            };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            let us = lower as f64 + (upper - lower) as f64 * within;
            return Some(Duration::from_micros(us as u64));
        }
        below += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds_inclusive() {
        let h = Histogram::default();
        for us in [0, 500, 501, 10_000_000, 10_000_001] {
            h.record(Duration::from_micros(us));
        }
        let (n, _) = h.read();
        assert_eq!(n[0], 2);
        assert_eq!(n[1], 1);
        assert_eq!(n[BUCKETS_US.len() - 1], 1);
        assert_eq!(n[BUCKETS_US.len()], 1);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = Histogram::default();
        assert_eq!(quantile(&h.read().0, 0.5), None);
        // 100 requests between 1 and 2.5 ms.
        for _ in 0..100 {
            h.record(Duration::from_micros(2_000));
        }
        let (counts, _) = h.read();
        assert_eq!(quantile(&counts, 0.5), Some(Duration::from_micros(1_750)));
        assert_eq!(quantile(&counts, 0.99), Some(Duration::from_micros(2_485)));
    }
}
