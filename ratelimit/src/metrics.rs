//! Prometheus metrics of the limiter.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Outcome label of `ratelimit_decisions_total`: `allowed` or `denied`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    Denied,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    pub(crate) policy: String,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ModeLabels {
    pub(crate) mode: &'static str,
}

/// All metric handles; cheap to clone (each is an `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) decisions: Family<DecisionLabels, Counter>,
    pub(crate) mode: Family<ModeLabels, Gauge>,
    pub(crate) sync_duration: Histogram,
    pub(crate) sync_errors: Counter,
    pub(crate) tracked_keys: Gauge,
    pub(crate) redis_commands: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ];
        Self {
            decisions: Family::default(),
            mode: Family::default(),
            sync_duration: Histogram::new(buckets),
            sync_errors: Counter::default(),
            tracked_keys: Gauge::default(),
            redis_commands: Counter::default(),
        }
    }

    pub(crate) fn decision_counter(&self, policy: &str, outcome: Outcome) -> Counter {
        self.decisions
            .get_or_create(&DecisionLabels {
                policy: policy.to_owned(),
                outcome,
            })
            .clone()
    }

    pub(crate) fn set_mode(&self, degraded: bool) {
        self.mode
            .get_or_create(&ModeLabels { mode: "synced" })
            .set(i64::from(!degraded));
        self.mode
            .get_or_create(&ModeLabels { mode: "degraded" })
            .set(i64::from(degraded));
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ratelimit");
        r.register(
            "decisions",
            "Rate-limit decisions by policy and outcome",
            self.decisions.clone(),
        );
        r.register(
            "mode",
            "Limiter mode: 1 for the current one (synced or degraded)",
            self.mode.clone(),
        );
        r.register(
            "sync_duration_seconds",
            "Duration of sync ticks with Redis",
            self.sync_duration.clone(),
        );
        r.register(
            "sync_errors",
            "Sync ticks that failed or timed out",
            self.sync_errors.clone(),
        );
        r.register(
            "tracked_keys",
            "Keys with local state",
            self.tracked_keys.clone(),
        );
        r.register(
            "redis_commands",
            "Redis commands sent by the sync task (script calls count one)",
            self.redis_commands.clone(),
        );
    }
}
