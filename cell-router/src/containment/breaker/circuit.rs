//! The breaker's state machine: a lock-free fast word for `try_acquire`, a short lock for
//! transitions and half-open bookkeeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Breaker, BreakerConfig, Rejected, Transition, TransitionCounts};
use crate::containment::clock::{Epoch, nanos, scale};
use crate::containment::outcome::Outcome;
use crate::containment::window::Window;

const CLOSED: u64 = 0;
const OPEN: u64 = 1 << 62;
const HALF_OPEN: u64 = 2 << 62;
const MODE: u64 = 3 << 62;

/// A per-cell circuit breaker (see [`Breaker`] for the states).
///
/// - **Closed**: [`try_acquire`](Self::try_acquire) is one atomic load. Each
///   [`Permit::record`] adds to a rolling window (lock-free buckets); a failure checks the
///   window and opens the breaker once it holds at least `min_requests` and the failure share
///   reaches `error_ratio`.
/// - **Open**: `try_acquire` is one atomic load and a subtraction, no lock, no allocation,
///   until the open time elapses.
/// - **Half-open**: up to `half_open_probes` concurrent probes; `close_after` successes close
///   it, one failure re-opens it for twice as long (capped). The window restarts on close.
///
/// Only upstream failures count ([`Outcome::is_upstream_failure`]); [`Outcome::Local`] is not
/// counted at all. A permit dropped without [`record`](Permit::record) frees its probe slot.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// Mode in the top two bits; for `OPEN`, the low bits are the open-until nanoseconds.
    fast: AtomicU64,
    slow: Mutex<Slow>,
    window: Window,
    config: BreakerConfig,
    epoch: Epoch,
    counts: [AtomicU64; 4],
}

#[derive(Debug, Default)]
struct Slow {
    /// Bumped on every transition so late probes of an earlier half-open period are ignored.
    generation: u64,
    reopens: u32,
    probes: u32,
    successes: u32,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        let buckets = config.buckets.max(1);
        let width = nanos(config.window) / u64::from(buckets);
        Self {
            fast: AtomicU64::new(CLOSED),
            slow: Mutex::new(Slow::default()),
            window: Window::new(buckets as usize, width),
            config,
            epoch: Epoch::new(now),
            counts: Default::default(),
        }
    }

    /// Admits a request (a [`Permit`] to record its outcome with) or refuses it.
    ///
    /// # Errors
    /// [`Rejected`] while open, or half-open with every probe slot taken.
    pub fn try_acquire(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        let fast = self.fast.load(Ordering::Acquire);
        let now_ns = self.epoch.nanos(now);
        match fast & MODE {
            CLOSED => return Ok(self.permit(None)),
            OPEN if now_ns < fast & !MODE => {
                let retry_after = Duration::from_nanos((fast & !MODE) - now_ns);
                return Err(Rejected { retry_after });
            }
            _ => {}
        }
        let mut slow = self.lock();
        let fast = self.fast.load(Ordering::Acquire);
        match fast & MODE {
            CLOSED => return Ok(self.permit(None)),
            OPEN if now_ns < fast & !MODE => {
                let retry_after = Duration::from_nanos((fast & !MODE) - now_ns);
                return Err(Rejected { retry_after });
            }
            OPEN => {
                self.transition(&mut slow, HALF_OPEN, 1);
            }
            _ => {}
        }
        if slow.probes >= self.config.half_open_probes.max(1) {
            let retry_after = self.config.half_open_retry_after;
            return Err(Rejected { retry_after });
        }
        slow.probes += 1;
        Ok(self.permit(Some(slow.generation)))
    }

    /// The current state.
    pub fn state(&self) -> Breaker {
        let fast = self.fast.load(Ordering::Acquire);
        match fast & MODE {
            CLOSED => Breaker::Closed,
            OPEN => Breaker::Open {
                until: self.epoch.instant(fast & !MODE),
            },
            _ => {
                let slow = self.lock();
                Breaker::HalfOpen {
                    probes_in_flight: slow.probes,
                    successes: slow.successes,
                }
            }
        }
    }

    /// Transitions so far, for metrics.
    pub fn transitions(&self) -> TransitionCounts {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        TransitionCounts {
            opened: c(0),
            half_opened: c(1),
            reopened: c(2),
            closed: c(3),
        }
    }

    /// Requests and upstream failures in the current window.
    pub fn window(&self, now: Instant) -> (u64, u64) {
        self.window.sum(self.epoch.nanos(now))
    }

    fn permit(&self, probe: Option<u64>) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `mode` (with `until` for `OPEN`) and resets the half-open bookkeeping.
    fn transition(&self, slow: &mut Slow, fast: u64, counter: usize) {
        slow.generation += 1;
        slow.probes = 0;
        slow.successes = 0;
        self.counts[counter].fetch_add(1, Ordering::Relaxed);
        self.fast.store(fast, Ordering::Release);
    }

    fn open(&self, slow: &mut Slow, now_ns: u64, counter: usize) -> Duration {
        let factor = 2f64.powi(slow.reopens.min(30) as i32);
        let open_for = scale(self.config.open_for, factor).min(self.config.max_open_for);
        let until = now_ns.saturating_add(nanos(open_for)).min(!MODE);
        self.transition(slow, OPEN | until, counter);
        open_for
    }

    fn finish(&self, probe: Option<u64>, outcome: Outcome, now: Instant) -> Option<Transition> {
        if outcome == Outcome::Local {
            self.release(probe);
            return None;
        }
        let now_ns = self.epoch.nanos(now);
        let failed = outcome.is_upstream_failure();
        self.window.add(now_ns, 1, u64::from(failed));
        let Some(generation) = probe else {
            return failed.then(|| self.maybe_open(now_ns)).flatten();
        };
        let mut slow = self.lock();
        if slow.generation != generation {
            return None;
        }
        slow.probes = slow.probes.saturating_sub(1);
        if failed {
            slow.reopens = slow.reopens.saturating_add(1);
            let open_for = self.open(&mut slow, now_ns, 2);
            return Some(Transition::Reopened { open_for });
        }
        slow.successes += 1;
        if slow.successes < self.config.close_after.max(1) {
            return None;
        }
        slow.reopens = 0;
        self.window.clear();
        self.transition(&mut slow, CLOSED, 3);
        Some(Transition::Closed)
    }

    fn maybe_open(&self, now_ns: u64) -> Option<Transition> {
        if self.fast.load(Ordering::Acquire) & MODE != CLOSED {
            return None;
        }
        let (requests, failures) = self.window.sum(now_ns);
        let min = u64::from(self.config.min_requests.max(1));
        if requests < min || (failures as f64) < self.config.error_ratio * requests as f64 {
            return None;
        }
        let mut slow = self.lock();
        if self.fast.load(Ordering::Acquire) & MODE != CLOSED {
            return None;
        }
        let open_for = self.open(&mut slow, now_ns, 0);
        Some(Transition::Opened {
            requests,
            failures,
            open_for,
        })
    }

    fn release(&self, probe: Option<u64>) {
        if let Some(generation) = probe {
            let mut slow = self.lock();
            if slow.generation == generation {
                slow.probes = slow.probes.saturating_sub(1);
            }
        }
    }
}

/// Leave to send one request through a [`CircuitBreaker`]; give its outcome back with
/// [`record`](Self::record). Dropping it unrecorded counts nothing and frees a probe slot.
#[derive(Debug)]
#[must_use = "a permit's outcome must be recorded"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    /// The half-open generation this probe belongs to; `None` for a closed-state permit.
    probe: Option<u64>,
}

impl Permit<'_> {
    /// Whether this request is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Records the request's outcome; returns the transition it caused, if any.
    pub fn record(mut self, outcome: Outcome, now: Instant) -> Option<Transition> {
        let probe = self.probe.take();
        self.breaker.finish(probe, outcome, now)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.breaker.release(self.probe.take());
    }
}
