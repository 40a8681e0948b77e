//! [`CircuitBreaker`]: per-cell fast failure once a cell's error ratio crosses a threshold.

mod circuit;

use std::time::{Duration, Instant};

pub use circuit::{CircuitBreaker, Permit};
use thiserror::Error;

use super::error::{InvalidConfig, check, is_ratio};

/// Tuning of a [`CircuitBreaker`]; defaults in `docs/containment.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Rolling window the error ratio is measured over. Default 10 s.
    pub window: Duration,
    /// Buckets the window is split into (its resolution). Default 10 (1 s each).
    pub buckets: u32,
    /// Requests the window must hold before the ratio can open the breaker. Default 20.
    pub min_requests: u32,
    /// Share of upstream failures that opens the breaker, in `(0, 1]`. Default 0.5.
    pub error_ratio: f64,
    /// How long the first opening lasts; each re-opening from half-open doubles it.
    /// Default 5 s.
    pub open_for: Duration,
    /// Cap on the doubled open time. Default 60 s.
    pub max_open_for: Duration,
    /// Concurrent probe requests admitted while half-open. Default 3.
    pub half_open_probes: u32,
    /// Probe successes that close the breaker; one probe failure re-opens it. Default 3.
    pub close_after: u32,
    /// `Retry-After` of a request refused because every half-open probe slot is taken.
    /// Default 1 s.
    pub half_open_retry_after: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            buckets: 10,
            min_requests: 20,
            error_ratio: 0.5,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
            half_open_probes: 3,
            close_after: 3,
            half_open_retry_after: Duration::from_secs(1),
        }
    }
}

impl BreakerConfig {
    /// # Errors
    /// [`InvalidConfig`] for the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        const S: &str = "circuit_breaker";
        let ok = self.window >= Duration::from_millis(self.buckets.into()) && self.buckets >= 1;
        check(
            ok,
            S,
            "buckets",
            "must be at least 1 and at most 1 per ms of window",
        )?;
        check(self.buckets <= 1024, S, "buckets", "must be at most 1024")?;
        check(
            self.min_requests >= 1,
            S,
            "min_requests",
            "must be at least 1",
        )?;
        check(
            is_ratio(self.error_ratio),
            S,
            "error_ratio",
            "must be in (0, 1]",
        )?;
        check(!self.open_for.is_zero(), S, "open_for", "must be positive")?;
        let ok = self.max_open_for >= self.open_for;
        check(ok, S, "max_open_for", "must be at least open_for")?;
        check(
            self.half_open_probes >= 1,
            S,
            "half_open_probes",
            "must be at least 1",
        )?;
        check(
            self.close_after >= 1,
            S,
            "close_after",
            "must be at least 1",
        )
    }
}

/// The state of a breaker, for `cellctl status` and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breaker {
    /// Requests flow; outcomes are counted.
    Closed,
    /// Requests are refused until `until`; the first request after it turns the breaker
    /// half-open (an `until` in the past means "ready to probe").
    Open {
        /// When probing may start.
        until: Instant,
    },
    /// A few probe requests test the cell.
    HalfOpen {
        /// Probes admitted and not yet finished.
        probes_in_flight: u32,
        /// Probes that succeeded in this half-open period.
        successes: u32,
    },
}

impl Breaker {
    /// `closed`, `open` or `half_open`: a label for metrics and status output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        }
    }
}

/// A state change, returned by the call that caused it; turn it into a log line and metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    /// Closed → open: the window's error ratio crossed the threshold.
    Opened {
        /// Requests in the window.
        requests: u64,
        /// Upstream failures among them.
        failures: u64,
        /// How long it stays open.
        open_for: Duration,
    },
    /// Open → half-open: the open time elapsed and a request arrived.
    HalfOpened,
    /// Half-open → open: a probe failed.
    Reopened {
        /// How long it stays open this time (doubled, capped).
        open_for: Duration,
    },
    /// Half-open → closed: enough probes succeeded.
    Closed,
}

/// Transitions counted since the breaker was built (monotonic counters for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransitionCounts {
    /// Closed → open.
    pub opened: u64,
    /// Open → half-open.
    pub half_opened: u64,
    /// Half-open → open.
    pub reopened: u64,
    /// Half-open → closed.
    pub closed: u64,
}

/// A request refused by an open (or fully probed half-open) breaker: answer
/// `cell_unavailable` 503 with `Retry-After`, without touching the network.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("circuit breaker open; retry after {retry_after:?}")]
pub struct Rejected {
    /// When asking again makes sense (round up to whole seconds for `Retry-After`).
    pub retry_after: Duration,
}
