//! Metrics of the delivery queue.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellLabel {
    cell: String,
}

/// How an enqueue ended, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Stored, 202.
    Accepted,
    /// A repeat of an idempotency key: the original id returned.
    Duplicate,
    /// `queue_full`.
    Full,
    /// `queue_unavailable`.
    Unavailable,
}

/// How one delivery attempt (or the decision not to make one) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The target answered 2xx/3xx.
    Delivered,
    /// Failed; scheduled again.
    Retried,
    /// Dead-lettered.
    Dead,
    /// The cell could not take it now; waiting without spending an attempt.
    Deferred,
}

/// The queue's metric handles.
#[derive(Clone, Debug)]
pub struct DeliveryMetrics {
    enqueued: [Counter; 4],
    outcomes: [Counter; 4],
    /// Attempts a delivery took, observed when it is delivered or dead.
    pub attempts: Histogram,
    /// Time to store an accepted request.
    pub enqueue_seconds: Histogram,
    /// Tokens claimed from workers presumed dead.
    pub claimed: Counter,
    depth: Family<CellLabel, Gauge>,
    oldest: Family<CellLabel, Gauge<f64, AtomicU64>>,
    dead: Family<CellLabel, Gauge>,
}

impl DeliveryMetrics {
    /// Creates the handles and registers them under `cellgate_delivery_*`.
    pub fn new(registry: &mut Registry) -> DeliveryMetrics {
        let enqueued = Family::<OutcomeLabel, Counter>::default();
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let m = DeliveryMetrics {
            enqueued: ["accepted", "duplicate", "full", "unavailable"]
                .map(|outcome| enqueued.get_or_create(&OutcomeLabel { outcome }).clone()),
            outcomes: ["delivered", "retried", "dead", "deferred"]
                .map(|outcome| outcomes.get_or_create(&OutcomeLabel { outcome }).clone()),
            attempts: Histogram::new(linear_buckets(1.0, 1.0, 10)),
            enqueue_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            claimed: Counter::default(),
            depth: Family::default(),
            oldest: Family::default(),
            dead: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("delivery");
        r.register("enqueued", "Async requests by enqueue outcome", enqueued);
        r.register(
            "deliveries",
            "Delivery attempts by outcome (deferred: waited for the cell without spending an attempt)",
            outcomes,
        );
        r.register(
            "attempts",
            "Attempts per finished (delivered or dead) delivery",
            m.attempts.clone(),
        );
        r.register(
            "enqueue_duration_seconds",
            "Time to store an async request in Redis",
            m.enqueue_seconds.clone(),
        );
        r.register(
            "claimed",
            "Deliveries claimed from workers presumed dead",
            m.claimed.clone(),
        );
        r.register(
            "queue_depth",
            "Accepted, undelivered entries by partition (home cell of the target)",
            m.depth.clone(),
        );
        r.register(
            "oldest_age_seconds",
            "Age of the oldest undelivered entry by partition",
            m.oldest.clone(),
        );
        r.register(
            "dead_letters",
            "Entries in the dead-letter queue by partition",
            m.dead.clone(),
        );
        m
    }

    /// Counts one enqueue.
    pub fn enqueued(&self, outcome: EnqueueOutcome) {
        self.enqueued[outcome as usize].inc();
    }

    /// Counts one delivery outcome.
    pub fn outcome(&self, outcome: DeliveryOutcome) {
        self.outcomes[outcome as usize].inc();
    }

    /// Sets the depth gauges of `cell`'s partition.
    pub fn set_depth(&self, cell: &str, live: u64, oldest_age_secs: f64, dead: u64) {
        let label = CellLabel {
            cell: cell.to_owned(),
        };
        self.depth
            .get_or_create(&label)
            .set(i64::try_from(live).unwrap_or(i64::MAX));
        self.oldest.get_or_create(&label).set(oldest_age_secs);
        self.dead
            .get_or_create(&label)
            .set(i64::try_from(dead).unwrap_or(i64::MAX));
    }
}
