//! Prometheus metrics of the data plane.
//!
//! Every per-cell handle is created once, when the gateway starts, and kept next to the cell it
//! describes: the request path increments atomics and never looks a label set up in a map.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::proxy::error::ErrorCode;
use crate::stats::CellStats;

/// HTTP status class of a response, as a metric label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StatusClass {
    /// 1xx
    Informational,
    /// 2xx
    Success,
    /// 3xx
    Redirection,
    /// 4xx
    ClientError,
    /// 5xx
    ServerError,
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        })
    }
}

impl StatusClass {
    const ALL: [StatusClass; 5] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    fn index(status: u16) -> usize {
        (usize::from(status / 100)).clamp(1, 5) - 1
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    cell: String,
    class: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellLabel {
    cell: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    cell: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: &'static str,
}

/// Pre-resolved containment metric handles of one cell.
#[derive(Clone, Debug, Default)]
pub struct ContainmentMetrics {
    /// Circuit breaker state: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Gauge,
    /// Upstream ejections by the outlier detector.
    pub ejections: Counter,
    /// Retries sent.
    pub retries_attempted: Counter,
    /// Retries that got an answer that needed no further retry.
    pub retries_succeeded: Counter,
    /// Retries not sent because the retry budget was spent.
    pub retries_refused: Counter,
    /// Upstream instances currently passing active health checks.
    pub healthy_upstreams: Gauge,
    /// Effective weight in the directory (1 active, ramping while draining/undraining, 0
    /// drained), refreshed every second.
    pub effective_weight: Gauge<f64, AtomicU64>,
    /// Directory state: 0 active, 1 draining, 2 drained, 3 undraining.
    pub state: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// The gateway's metric registry and the families the data plane writes to.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    breaker_state: Family<CellLabel, Gauge>,
    ejections: Family<CellLabel, Counter>,
    retries: Family<RetryLabels, Counter>,
    healthy: Family<CellLabel, Gauge>,
    effective_weight: Family<CellLabel, Gauge<f64, AtomicU64>>,
    cell_state: Family<CellLabel, Gauge>,
    shed: Family<PriorityLabel, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<CellLabel, Histogram>,
    in_flight: Family<CellLabel, Gauge>,
    errors: Family<CodeLabel, Counter>,
    resent: Family<CellLabel, Counter>,
}

/// Pre-resolved metric handles of one cell.
#[derive(Clone, Debug)]
pub struct CellMetrics {
    by_class: [Counter; 5],
    latency: Histogram,
    in_flight: Gauge,
    resent: Counter,
    stats: Arc<CellStats>,
}

impl CellMetrics {
    /// Counts one finished request and its latency to the response head.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.by_class[StatusClass::index(status)].inc();
        self.latency.observe(elapsed.as_secs_f64());
        self.stats.record(status, elapsed);
    }

    /// The rolling-window counters behind `cellctl status`.
    pub fn stats(&self) -> &Arc<CellStats> {
        &self.stats
    }

    /// The in-flight gauge; a request holds +1 until its response body is done.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Requests the cell's upstream pools sent again on a new connection (see
    /// [`crate::proxy::pool::Pool::send`]).
    pub fn resent(&self) -> &Counter {
        &self.resent
    }
}

/// Pre-resolved counters of gateway-made errors, by code.
#[derive(Clone, Debug)]
pub struct ErrorMetrics {
    by_code: Vec<Counter>,
}

impl ErrorMetrics {
    /// Counts one gateway-made error response.
    pub fn inc(&self, code: ErrorCode) {
        if let Some(counter) = self.by_code.get(code as usize) {
            counter.inc();
        }
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~32 s: covers a loopback hop up to the longest sane request timeout.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 18))
}

impl Metrics {
    /// Creates the registry with build info and the data-plane families.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cellgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<CellLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let in_flight = Family::<CellLabel, Gauge>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let resent = Family::<CellLabel, Counter>::default();
        registry.register(
            "requests",
            "Proxied requests by cell and response status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request receipt to the upstream response head, by cell",
            latency.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests currently being proxied, by cell",
            in_flight.clone(),
        );
        registry.register(
            "gateway_errors",
            "Error responses made by the gateway itself, by error code",
            errors.clone(),
        );
        registry.register(
            "upstream_resent",
            "Requests sent again on a new connection because the pooled upstream connection \
             they went out on turned out closed (the write failed at once, or no byte of \
             answer came for a request safe to repeat), by cell",
            resent.clone(),
        );
        let breaker_state = Family::<CellLabel, Gauge>::default();
        let ejections = Family::<CellLabel, Counter>::default();
        let retries = Family::<RetryLabels, Counter>::default();
        let healthy = Family::<CellLabel, Gauge>::default();
        let shed = Family::<PriorityLabel, Counter>::default();
        let effective_weight = Family::<CellLabel, Gauge<f64, AtomicU64>>::default();
        let cell_state = Family::<CellLabel, Gauge>::default();
        registry.register(
            "cell_effective_weight",
            "Effective weight of each cell in the directory (drains ramp it to 0)",
            effective_weight.clone(),
        );
        registry.register(
            "cell_state",
            "Directory state of each cell: 0 active, 1 draining, 2 drained, 3 undraining",
            cell_state.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "Per-cell circuit breaker: 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        registry.register(
            "upstream_ejections",
            "Upstream instances ejected by outlier detection, by cell",
            ejections.clone(),
        );
        registry.register(
            "retries",
            "Retries by cell and outcome (attempted, succeeded, refused_by_budget)",
            retries.clone(),
        );
        registry.register(
            "healthy_upstreams",
            "Upstream instances passing active health checks, by cell",
            healthy.clone(),
        );
        registry.register(
            "shed_requests",
            "Requests shed under overload, by priority",
            shed.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("name", "cellgate"),
            ]),
        );
        Metrics {
            registry,
            breaker_state,
            ejections,
            retries,
            healthy,
            effective_weight,
            cell_state,
            shed,
            requests,
            latency,
            in_flight,
            errors,
            resent,
        }
    }

    /// Resolves the handles of one cell; call once per cell at startup.
    pub fn cell(&self, cell: &str) -> CellMetrics {
        let by_class = StatusClass::ALL.map(|class| {
            self.requests.get_or_create_owned(&RequestLabels {
                cell: cell.to_owned(),
                class,
            })
        });
        let label = CellLabel {
            cell: cell.to_owned(),
        };
        CellMetrics {
            by_class,
            latency: self.latency.get_or_create_owned(&label),
            in_flight: self.in_flight.get_or_create_owned(&label),
            resent: self.resent.get_or_create_owned(&label),
            stats: Arc::default(),
        }
    }

    /// Resolves the containment handles of one cell; call once per cell at startup.
    pub fn containment(&self, cell: &str) -> ContainmentMetrics {
        let label = CellLabel {
            cell: cell.to_owned(),
        };
        let retry = |outcome| {
            self.retries.get_or_create_owned(&RetryLabels {
                cell: cell.to_owned(),
                outcome,
            })
        };
        ContainmentMetrics {
            breaker_state: self.breaker_state.get_or_create_owned(&label),
            ejections: self.ejections.get_or_create_owned(&label),
            retries_attempted: retry("attempted"),
            retries_succeeded: retry("succeeded"),
            retries_refused: retry("refused_by_budget"),
            healthy_upstreams: self.healthy.get_or_create_owned(&label),
            effective_weight: self.effective_weight.get_or_create_owned(&label),
            state: self.cell_state.get_or_create_owned(&label),
        }
    }

    /// The shed counter of one priority (`critical`, `normal`, `batch`).
    pub fn shed(&self, priority: &'static str) -> Counter {
        self.shed.get_or_create_owned(&PriorityLabel { priority })
    }

    /// Resolves the gateway-error counters, one per [`ErrorCode`].
    pub fn errors(&self) -> ErrorMetrics {
        ErrorMetrics {
            by_code: ErrorCode::ALL
                .iter()
                .map(|code| {
                    self.errors.get_or_create_owned(&CodeLabel {
                        code: code.as_str(),
                    })
                })
                .collect(),
        }
    }

    /// Mutable access to register metrics owned by other components.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Renders the registry in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_are_counted_per_cell() {
        let metrics = Metrics::new();
        let (one, two) = (metrics.cell("cell-1"), metrics.cell("cell-2"));
        one.resent().inc();
        one.resent().inc();
        two.resent().inc();
        let text = metrics.render();
        assert!(
            text.contains("cellgate_upstream_resent_total{cell=\"cell-1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cellgate_upstream_resent_total{cell=\"cell-2\"} 1"),
            "{text}"
        );
    }
}
