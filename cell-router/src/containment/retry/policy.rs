//! [`RetryPolicy`]: which failed requests may be retried, and after how long.

use std::time::Duration;

use crate::containment::clock::{scale, unit};
use crate::containment::error::{InvalidConfig, check};

/// How an attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryFailure {
    /// The connection could not be established: the request never reached the upstream.
    Connect,
    /// The upstream answered with this status.
    Status(u16),
    /// The upstream did not answer in time (never retried: the deadline is likely spent and
    /// the first attempt may still be running).
    Timeout,
    /// Anything else, e.g. a reset after the request was sent (never retried: the upstream
    /// may have acted on it).
    Other,
}

/// Tuning of a [`RetryPolicy`]; defaults in `docs/containment.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicyConfig {
    /// Attempts per request, the first included. Default 2 (one retry).
    pub max_attempts: u32,
    /// Backoff before the first retry is drawn from `[0, base)`; it doubles per retry.
    /// Default 25 ms.
    pub backoff_base: Duration,
    /// Cap on the doubled backoff. Default 250 ms.
    pub backoff_max: Duration,
}

impl Default for RetryPolicyConfig {
    fn default() -> Self {
        Self {
            max_attempts: 2,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
        }
    }
}

impl RetryPolicyConfig {
    /// # Errors
    /// [`InvalidConfig`] for the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        const S: &str = "retry";
        check(
            self.max_attempts >= 1,
            S,
            "max_attempts",
            "must be at least 1",
        )?;
        let ok = self.backoff_max >= self.backoff_base;
        check(ok, S, "backoff_max", "must be at least backoff_base")
    }
}

/// Decides whether a failed attempt may be retried, and the jittered backoff before it.
///
/// A request is retryable if its method is idempotent (RFC 9110 §9.2.2: GET, HEAD, OPTIONS,
/// PUT, DELETE, TRACE) or it carries an `Idempotency-Key`, and the failure is a connect error
/// or a 502/503/504. The retry goes to another upstream of the same cell and needs the
/// [`RetryBudget`](super::RetryBudget) to agree; both are the caller's part.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryPolicy {
    config: RetryPolicyConfig,
}

impl RetryPolicy {
    /// A policy with `config`.
    pub fn new(config: RetryPolicyConfig) -> Self {
        Self { config }
    }

    /// Whether `method` (case-sensitive, as on the wire) is idempotent.
    pub fn is_idempotent(method: &str) -> bool {
        matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        )
    }

    /// Whether a failure is worth another attempt on another upstream.
    pub fn is_retryable_failure(failure: RetryFailure) -> bool {
        matches!(
            failure,
            RetryFailure::Connect | RetryFailure::Status(502..=504)
        )
    }

    /// Whether attempt number `attempt` (1 = the original request) that failed with
    /// `failure` may be followed by another. The budget is not consulted.
    pub fn should_retry(
        &self,
        method: &str,
        has_idempotency_key: bool,
        failure: RetryFailure,
        attempt: u32,
    ) -> bool {
        attempt < self.config.max_attempts
            && (Self::is_idempotent(method) || has_idempotency_key)
            && Self::is_retryable_failure(failure)
    }

    /// Full-jitter backoff before retry number `retry` (1 = the first retry):
    /// uniform in `[0, min(max, base × 2^(retry-1)))` drawn from the caller's `random`.
    pub fn backoff(&self, retry: u32, random: u64) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let ceiling = scale(self.config.backoff_base, f64::from(1u32 << exp));
        scale(ceiling.min(self.config.backoff_max), unit(random))
    }
}
