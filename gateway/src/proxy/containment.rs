//! Per-cell containment state, wired from `cell_router::containment` (the pure logic) into
//! the data plane: breaker, bulkhead, peak-EWMA P2C upstream choice, outlier ejection and
//! the retry budget. See `docs/containment.md` for defaults and why.

use std::sync::Arc;
use std::time::Instant;

use cell_router::containment::{
    Bulkhead, CircuitBreaker, Ejection, HealthCheckConfig, Load, Outcome, OutlierDetector, P2c,
    PeakEwma, PeakEwmaConfig, RetryBudget, RetryPolicy, Transition,
};

use crate::config::CellTuning;
use tracing::warn;

use crate::metrics::ContainmentMetrics;

use super::health::ProbeLog;

/// Containment state of one cell.
#[derive(Debug)]
pub struct CellContainment {
    breaker: CircuitBreaker,
    bulkhead: Arc<Bulkhead>,
    detector: OutlierDetector,
    ewmas: Box<[PeakEwma]>,
    budget: RetryBudget,
    policy: RetryPolicy,
    health_check: HealthCheckConfig,
    probes: ProbeLog,
    metrics: ContainmentMetrics,
}

impl CellContainment {
    /// State for a cell with `upstreams` instances, a bulkhead of `max_in_flight` and the
    /// cell's `tuning`.
    pub fn new(
        upstreams: usize,
        max_in_flight: usize,
        tuning: &CellTuning,
        metrics: ContainmentMetrics,
        now: Instant,
    ) -> CellContainment {
        let ewma = PeakEwmaConfig::default();
        CellContainment {
            breaker: CircuitBreaker::new(tuning.breaker.clone(), now),
            bulkhead: Arc::new(Bulkhead::new(max_in_flight)),
            detector: OutlierDetector::new(tuning.outlier.clone(), upstreams, now),
            ewmas: (0..upstreams).map(|_| PeakEwma::new(&ewma, now)).collect(),
            budget: RetryBudget::new(&tuning.retry_budget, now),
            policy: RetryPolicy::new(tuning.retry_policy.clone()),
            health_check: tuning.health_check.clone(),
            probes: ProbeLog::new(upstreams),
            metrics,
        }
    }

    /// The active health check settings of the cell's upstreams.
    pub fn health_check(&self) -> &HealthCheckConfig {
        &self.health_check
    }

    /// The raw results of the latest active probes of the cell's upstreams.
    pub fn probes(&self) -> &ProbeLog {
        &self.probes
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
