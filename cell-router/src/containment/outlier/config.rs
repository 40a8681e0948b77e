//! [`OutlierConfig`]: thresholds and timings of an [`OutlierDetector`](super::OutlierDetector).

use std::time::Duration;

use crate::containment::error::{InvalidConfig, check, is_ratio};

/// Tuning of an [`OutlierDetector`](super::OutlierDetector); defaults in `docs/containment.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierConfig {
    /// Upstream failures in a row that eject. Default 5 (Envoy's).
    pub consecutive_failures: u32,
    /// First ejection's length; the `n`-th in a row lasts `n` times as long. Default 30 s.
    pub base_ejection: Duration,
    /// Longest ejection (before jitter); also how long an instance must stay in rotation
    /// for its ejection count to reset. Default 300 s.
    pub max_ejection: Duration,
    /// Ejection lengths are scaled by a uniform factor in `[1 - j, 1 + j]`. Default 0.1.
    pub ejection_jitter: f64,
    /// Most of a cell's upstreams out at once, and the unhealthy share above which the cell
    /// is in panic mode. In `(0, 1]`. Default 0.5.
    pub max_ejection_share: f64,
    /// An upstream whose latency estimate exceeds this many times its peers' median...
    /// Default 3.
    pub latency_ratio: f64,
    /// ...and this absolute floor is a latency outlier. Default 50 ms: 3 ms against 1 ms is
    /// noise, not an outlier.
    pub latency_min: Duration,
    /// Outcomes an upstream must have had since it (re)joined before its latency is judged
    /// or used as a peer. Default 10.
    pub min_samples: u32,
    /// Length of the slow-start ramp after a return. Default 30 s.
    pub slow_start: Duration,
    /// Weight at the start of the ramp, in `(0, 1]`. Default 0.1.
    pub slow_start_min_weight: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            ejection_jitter: 0.1,
            max_ejection_share: 0.5,
            latency_ratio: 3.0,
            latency_min: Duration::from_millis(50),
            min_samples: 10,
            slow_start: Duration::from_secs(30),
            slow_start_min_weight: 0.1,
        }
    }
}

impl OutlierConfig {
    /// # Errors
    /// [`InvalidConfig`] for the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        const S: &str = "outlier_detection";
        check(
            self.consecutive_failures >= 1,
            S,
            "consecutive_failures",
            "must be at least 1",
        )?;
        check(
            !self.base_ejection.is_zero(),
            S,
            "base_ejection",
            "must be positive",
        )?;
        let ok = self.max_ejection >= self.base_ejection;
        check(ok, S, "max_ejection", "must be at least base_ejection")?;
        let ok = (0.0..=1.0).contains(&self.ejection_jitter);
        check(ok, S, "ejection_jitter", "must be in [0, 1]")?;
        let ok = is_ratio(self.max_ejection_share);
        check(ok, S, "max_ejection_share", "must be in (0, 1]")?;
        check(
            self.latency_ratio >= 1.0,
            S,
            "latency_ratio",
            "must be at least 1",
        )?;
        let ok = is_ratio(self.slow_start_min_weight);
        check(ok, S, "slow_start_min_weight", "must be in (0, 1]")
    }
}
