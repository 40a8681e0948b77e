//! Metrics of guarded auto-evacuation.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// `cellgate_auto_evacuations_total{action}` and `cellgate_auto_evacuation_leader`.
#[derive(Clone, Debug, Default)]
pub(super) struct EvacuationMetrics {
    actions: Family<ActionLabel, Counter>,
    leader: Gauge,
}

impl EvacuationMetrics {
    /// Registers the metrics (names without the registry's `cellgate_` prefix).
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "auto_evacuations",
            "Automatic directory changes made by this gateway (drain, undrain), and due \
             evacuations held back (held: cap reached, no healthy peer, drain guard)",
            metrics.actions.clone(),
        );
        registry.register(
            "auto_evacuation_leader",
            "1 while this gateway holds the auto-evacuation lease",
            metrics.leader.clone(),
        );
        metrics
    }

    /// Counts one `drain`, `undrain` or `held`.
    pub(super) fn count(&self, action: &'static str) {
        self.actions.get_or_create(&ActionLabel { action }).inc();
    }

    pub(super) fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}
