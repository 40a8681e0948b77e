//! Containment: the pure logic that keeps one bad instance or cell from hurting the rest.
//!
//! Per request, in this order (the gateway's proxy does the I/O):
//!
//! 1. [`LoadShedder::admit`] by [`Priority`] against the gateway's requests in flight
//!    (`overloaded` 503 when shed).
//! 2. The cell's [`CircuitBreaker::try_acquire`]: an open breaker answers
//!    `cell_unavailable` 503 with `Retry-After` in one atomic load.
//! 3. The cell's [`Bulkhead::try_acquire`]: full means `cell_unavailable` 503 at once.
//!    Breaker before bulkhead: a refused request must not hold a bulkhead slot.
//! 4. [`P2c::pick`] an upstream: [`PeakEwma::cost`] divided by the
//!    [`OutlierDetector::slow_start_factor`], excluding ejected and unhealthy upstreams
//!    unless the cell is in [panic mode](OutlierDetector::panic_mode).
//! 5. Forward; feed the [`Outcome`] to the [`Pending`] latency guard, the
//!    [`OutlierDetector`] and the breaker [`Permit`].
//! 6. On a failure, [`RetryPolicy::should_retry`] and [`RetryBudget::withdraw`] decide
//!    whether to try another upstream of the same cell after [`RetryPolicy::backoff`].
//!
//! Off the request path: [`HealthCheck`] per upstream (active probes, jittered with
//! [`HealthCheckConfig::next_delay`]), [`OutlierDetector::check_latency`] every second or so,
//! and [`AutoEvacuation::decide`] on a tick. Defaults and their reasons: `docs/containment.md`.
//!
//! # Time and randomness
//!
//! Time is always passed in as `now: std::time::Instant` from the caller's clock (tests
//! build instants as `t0 + Duration`); nothing here reads a clock. Each stateful type takes
//! `now` at construction as its epoch and stores later times in atomics as nanoseconds since
//! it; an instant earlier than a previous one (another thread's slightly stale `now`) counts
//! as no time elapsed. Randomness is passed in as a uniform `u64` (`random`), so every
//! decision is reproducible in tests.
//!
//! Nothing here allocates or takes a shared lock on the request path; the only locks are
//! per cell and taken on state changes (an ejection, a breaker transition, half-open probes).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use cell_router::containment::*;
//!
//! let t0 = Instant::now();
//! let breaker = CircuitBreaker::new(BreakerConfig::default(), t0);
//! let bulkhead = Bulkhead::new(512);
//! let detector = OutlierDetector::new(OutlierConfig::default(), 2, t0);
//! let ewmas = [PeakEwmaConfig::default(), PeakEwmaConfig::default()]
//!     .map(|c| PeakEwma::new(&c, t0));
//!
//! let now = t0 + Duration::from_millis(1);
//! let permit = breaker.try_acquire(now)?;
//! let _slot = bulkhead.try_acquire().expect("not full");
//! let panic = detector.panic_mode(now);
//! let pick = P2c::pick(ewmas.len(), 0x5eed, |i| {
//!     Load::new(ewmas[i].cost(now), detector.eligible(i, now, panic))
//!         .with_weight(detector.slow_start_factor(i, now))
//! })
//! .expect("an upstream");
//!
//! let pending = ewmas[pick].start(now);
//! // ... forward the request ...
//! let done = now + Duration::from_millis(3);
//! let outcome = Outcome::Success { latency: Duration::from_millis(3) };
//! pending.finish(outcome, done);
//! detector.record(pick, outcome, done, 0x1234);
//! assert_eq!(permit.record(outcome, done), None);
//! # Ok::<(), Rejected>(())
//! ```

mod breaker;
mod bulkhead;
mod clock;
mod error;
mod evacuation;
mod ewma;
mod health;
mod outcome;
mod outlier;
mod p2c;
mod retry;
mod shed;
mod window;

pub use breaker::{
    Breaker, BreakerConfig, CircuitBreaker, Permit, Rejected, Transition, TransitionCounts,
};
pub use bulkhead::{Bulkhead, BulkheadPermit, OwnedBulkheadPermit};
pub use error::InvalidConfig;
pub use evacuation::{
    AutoEvacuation, AutoEvacuationConfig, CellAction, CellControl, CellHealth, EvacuationDecision,
    HoldReason,
};
pub use ewma::{PeakEwma, PeakEwmaConfig, Pending};
pub use health::{Health, HealthCheck, HealthCheckConfig};
pub use outcome::Outcome;
pub use outlier::{Ejection, EjectionReason, OutlierConfig, OutlierDetector};
pub use p2c::{Load, P2c};
pub use retry::{RetryBudget, RetryBudgetConfig, RetryFailure, RetryPolicy, RetryPolicyConfig};
pub use shed::{LoadShedder, LoadShedderConfig, ParsePriorityError, Priority};
