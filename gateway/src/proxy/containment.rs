//! Per-cell containment state, wired from `cell_router::containment` (the pure logic) into
//! the data plane: breaker, bulkhead, peak-EWMA P2C upstream choice, outlier ejection and
//! the retry budget. See `docs/containment.md` for defaults and why.

use std::sync::Arc;
use std::time::Instant;

use cell_router::containment::{
    BreakerConfig, Bulkhead, CircuitBreaker, Ejection, Load, Outcome, OutlierConfig,
    OutlierDetector, P2c, PeakEwma, PeakEwmaConfig, RetryBudget, RetryBudgetConfig, RetryPolicy,
    RetryPolicyConfig, Transition,
};
use tracing::warn;

use crate::metrics::ContainmentMetrics;

/// Containment state of one cell.
#[derive(Debug)]
pub struct CellContainment {
    breaker: CircuitBreaker,
    bulkhead: Arc<Bulkhead>,
    detector: OutlierDetector,
    ewmas: Box<[PeakEwma]>,
    budget: RetryBudget,
    policy: RetryPolicy,
    metrics: ContainmentMetrics,
}

impl CellContainment {
    /// State for a cell with `upstreams` instances and a bulkhead of `max_in_flight`.
    pub fn new(
        upstreams: usize,
        max_in_flight: usize,
        metrics: ContainmentMetrics,
        now: Instant,
    ) -> CellContainment {
        let ewma = PeakEwmaConfig::default();
        CellContainment {
            breaker: CircuitBreaker::new(BreakerConfig::default(), now),
            bulkhead: Arc::new(Bulkhead::new(max_in_flight)),
            detector: OutlierDetector::new(OutlierConfig::default(), upstreams, now),
            ewmas: (0..upstreams).map(|_| PeakEwma::new(&ewma, now)).collect(),
            budget: RetryBudget::new(&RetryBudgetConfig::default(), now),
            policy: RetryPolicy::new(RetryPolicyConfig::default()),
            metrics,
        }
    }

    /// The cell's circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The cell's bulkhead.
    pub fn bulkhead(&self) -> &Arc<Bulkhead> {
        &self.bulkhead
    }

    /// The passive outlier detector (and active health verdicts) of the cell's upstreams.
    pub fn detector(&self) -> &OutlierDetector {
        &self.detector
    }

    /// Latency estimators, one per upstream.
    pub fn ewmas(&self) -> &[PeakEwma] {
        &self.ewmas
    }

    /// Retry budget and policy.
    pub fn retries(&self) -> (&RetryBudget, &RetryPolicy) {
        (&self.budget, &self.policy)
    }

    /// Metric handles.
    pub fn metrics(&self) -> &ContainmentMetrics {
        &self.metrics
    }

    /// Power of two choices on peak-EWMA cost among eligible upstreams (not ejected, not
    /// failing health checks, unless the cell is in panic mode), weighted down while an
    /// upstream slow-starts. `exclude` skips the upstream a retry is moving away from.
    pub fn pick(&self, now: Instant, exclude: Option<usize>) -> Option<usize> {
        let panic = self.detector.panic_mode(now);
        P2c::pick(self.ewmas.len(), fastrand::u64(..), |i| {
            let eligible = Some(i) != exclude && self.detector.eligible(i, now, panic);
            Load::new(self.ewmas[i].cost(now), eligible)
                .with_weight(self.detector.slow_start_factor(i, now))
        })
    }

    /// Feeds an attempt's outcome to the outlier detector; logs and counts ejections.
    pub fn record(&self, upstream: usize, authority: &str, outcome: Outcome, now: Instant) {
        if let Some(ejection) = self
            .detector
            .record(upstream, outcome, now, fastrand::u64(..))
        {
            self.ejected(authority, &ejection);
        }
    }

    /// Logs and counts an ejection.
    pub fn ejected(&self, authority: &str, ejection: &Ejection) {
        self.metrics.ejections.inc();
        warn!(
            upstream = authority,
            reason = ?ejection.reason,
            for_ms = ejection.duration.as_millis() as u64,
            "upstream ejected"
        );
    }

    /// Counts and logs a breaker transition caused by a recorded outcome.
    pub fn transition(&self, cell: &str, transition: Option<Transition>) {
        if let Some(t) = transition {
            warn!(cell, transition = ?t, "circuit breaker");
        }
        self.metrics.breaker_state.set(breaker_code(&self.breaker));
    }
}

/// The breaker state as a gauge value: 0 closed, 1 half-open, 2 open.
pub fn breaker_code(breaker: &CircuitBreaker) -> i64 {
    match breaker.state().as_str() {
        "closed" => 0,
        "half_open" => 1,
        _ => 2,
    }
}
