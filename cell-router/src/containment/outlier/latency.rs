//! Latency outliers: an upstream much slower than the median of its peers.

use std::time::{Duration, Instant};

use super::{EjectionReason, OutlierDetector};
use crate::containment::clock::nanos;
use crate::containment::outlier::Ejection;

/// Upstreams compared per check; a larger cell compares its first `MAX_PEERS` candidates.
const MAX_PEERS: usize = 64;

impl OutlierDetector {
    /// Ejects the worst latency outlier, if any: an upstream in rotation with at least
    /// [`min_samples`](super::OutlierConfig::min_samples) whose `estimate` (typically
    /// [`PeakEwma::estimate`](crate::containment::PeakEwma::estimate)) exceeds both
    /// `latency_ratio ×` the median of its peers' and `latency_min`.
    ///
    /// Peers are the other upstreams in rotation with enough samples; with none there is no
    /// verdict. Call it periodically (say every second), not per request: it sorts up to
    /// 64 estimates on the stack. At most one ejection per call, so a bad check
    /// cannot empty a cell at once (the share cap holds in any case).
    pub fn check_latency(
        &self,
        now: Instant,
        random: u64,
        mut estimate: impl FnMut(usize) -> Duration,
    ) -> Option<Ejection> {
        let now_ns = self.epoch.nanos(now);
        let min_samples = self.config.min_samples;
        let mut idx = [0usize; MAX_PEERS];
        let mut val = [0f64; MAX_PEERS];
        let mut n = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if n == MAX_PEERS {
                break;
            }
            if !slot.out(now_ns) && slot.samples() >= min_samples {
                idx[n] = i;
                val[n] = nanos(estimate(i)) as f64;
                n += 1;
            }
        }
        if n < 2 {
            return None;
        }
        let mut sorted = val;
        sorted[..n].sort_unstable_by(f64::total_cmp);
        let floor = nanos(self.config.latency_min) as f64;
        let ratio = self.config.latency_ratio;
        let mut worst: Option<(usize, f64, f64)> = None;
        for (k, &v) in val[..n].iter().enumerate() {
            let median = peer_median(&sorted[..n], v);
            if v > floor && v > ratio * median {
                let score = v / median.max(1.0);
                if worst.is_none_or(|(_, s, _)| score > s) {
                    worst = Some((k, score, median));
                }
            }
        }
        let (k, _, median) = worst?;
        let reason = EjectionReason::Latency {
            estimate: Duration::from_nanos(val[k] as u64),
            peer_median: Duration::from_nanos(median as u64),
        };
        self.eject(idx[k], reason, now, random)
    }
}

/// The median of `sorted` (ascending, at least 2 values) without one occurrence of `v`.
fn peer_median(sorted: &[f64], v: f64) -> f64 {
    let p = sorted.partition_point(|x| x.total_cmp(&v).is_lt());
    let at = |k: usize| if k < p { sorted[k] } else { sorted[k + 1] };
    let m = sorted.len() - 1;
    if m % 2 == 1 {
        at(m / 2)
    } else {
        (at(m / 2 - 1) + at(m / 2)) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::peer_median;

    #[test]
    fn median_excludes_self() {
        assert_eq!(peer_median(&[2.0, 200.0], 200.0), 2.0);
        assert_eq!(peer_median(&[2.0, 200.0], 2.0), 200.0);
        assert_eq!(peer_median(&[1.0, 2.0, 3.0, 9.0], 9.0), 2.0);
        assert_eq!(peer_median(&[1.0, 2.0, 3.0, 9.0], 1.0), 3.0);
        assert_eq!(peer_median(&[5.0, 5.0, 5.0], 5.0), 5.0);
    }
}
