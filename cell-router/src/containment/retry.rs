//! Retries: a [`RetryBudget`] caps how many, a [`RetryPolicy`] says which and when.

mod policy;

use std::time::{Duration, Instant};

pub use policy::{RetryFailure, RetryPolicy, RetryPolicyConfig};

use super::clock::{Epoch, nanos};
use super::error::{InvalidConfig, check};
use super::window::Window;

/// Tuning of a [`RetryBudget`]; defaults in `docs/containment.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per original request, e.g. 0.1 = 10% extra load at most. Default 0.1.
    pub ratio: f64,
    /// Retries per second allowed regardless of traffic, so a quiet cell can still retry.
    /// Default 10.
    pub min_per_second: u32,
    /// How long a deposit stays in the budget. Default 10 s.
    pub ttl: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.1,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl RetryBudgetConfig {
    /// # Errors
    /// [`InvalidConfig`] for the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        const S: &str = "retry_budget";
        let ok = (0.0..=1000.0).contains(&self.ratio);
        check(ok, S, "ratio", "must be in [0, 1000]")?;
        let ok = self.ttl >= Duration::from_secs(1) && self.ttl <= Duration::from_secs(60);
        check(ok, S, "ttl", "must be between 1s and 60s")
    }
}

/// A Finagle/Linkerd-style retry budget: over any `ttl`, retries may not exceed
/// `ratio × requests + min_per_second × ttl`.
///
/// [`record_request`](Self::record_request) deposits for each original request (not for
/// retries: a retry must not fund more retries); [`withdraw`](Self::withdraw) spends one
/// retry if the budget allows. Counts sit in a lock-free rolling window of 10 buckets, so a
/// deposit expires after `ttl` and a burst of failures long ago does not starve retries now.
/// Under concurrency two threads may both take the last retry: the overshoot is bounded by the
/// number of racing threads.
#[derive(Debug)]
pub struct RetryBudget {
    window: Window,
    ratio: f64,
    reserve: f64,
    epoch: Epoch,
}

const BUCKETS: u64 = 10;

impl RetryBudget {
    /// An empty budget (only the `min_per_second` reserve is available).
    pub fn new(config: &RetryBudgetConfig, now: Instant) -> Self {
        let ttl = config
            .ttl
            .clamp(Duration::from_millis(10), Duration::from_secs(3600));
        let ratio = if config.ratio.is_finite() {
            config.ratio.max(0.0)
        } else {
            0.0
        };
        Self {
            window: Window::new(BUCKETS as usize, nanos(ttl) / BUCKETS),
            ratio,
            // The window spans between `BUCKETS - 1` and `BUCKETS` bucket widths (the current
            // bucket is partial): size the reserve for the shorter span, so the floor never
            // exceeds `min_per_second` on average.
            reserve: f64::from(config.min_per_second) * ttl.as_secs_f64() * (BUCKETS - 1) as f64
                / BUCKETS as f64,
            epoch: Epoch::new(now),
        }
    }

    /// Deposits for one original request.
    pub fn record_request(&self, now: Instant) {
        self.window.add(self.epoch.nanos(now), 1, 0);
    }

    /// Whether a retry is affordable now, without spending it.
    pub fn can_retry(&self, now: Instant) -> bool {
        let (requests, retries) = self.window.sum(self.epoch.nanos(now));
        (retries + 1) as f64 <= self.ratio * requests as f64 + self.reserve
    }

    /// Spends one retry if affordable; `false` means "do not retry" (count it as refused by
    /// budget).
    pub fn withdraw(&self, now: Instant) -> bool {
        let ok = self.can_retry(now);
        if ok {
            self.window.add(self.epoch.nanos(now), 0, 1);
        }
        ok
    }
}
