//! [`OutlierDetector`]: passive ejection of a cell's failing or slow upstreams, capped by share.

mod config;
mod latency;
mod slot;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use config::OutlierConfig;
use slot::Slot;

use super::clock::{Epoch, nanos, scale, unit};
use super::outcome::Outcome;

/// Why an upstream was ejected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EjectionReason {
    /// `count` upstream failures in a row (5xx, connect errors, resets, timeouts).
    ConsecutiveFailures {
        /// Failures in a row when it was ejected.
        count: u32,
    },
    /// Its latency estimate was an outlier against the median of its peers.
    Latency {
        /// Its estimate.
        estimate: Duration,
        /// The median estimate of the cell's other eligible upstreams.
        peer_median: Duration,
    },
}

/// An ejection that just happened, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ejection {
    /// Index of the ejected upstream.
    pub upstream: usize,
    /// Why.
    pub reason: EjectionReason,
    /// How long it is out: `base × ejections` capped, then jittered.
    pub duration: Duration,
    /// When it returns, with slow start.
    pub until: Instant,
    /// Its ejection count, this one included (reset after a long healthy run).
    pub ejections: u32,
}

/// Passive health of one cell's upstreams: who is ejected, who is in slow start, and whether
/// the cell is in panic mode.
///
/// - [`record`](Self::record) every outcome: [`OutlierConfig::consecutive_failures`] upstream
///   failures in a row eject; any success resets the run; [`Outcome::Local`] is ignored.
/// - [`check_latency`](Self::check_latency) periodically ejects an instance much slower than
///   its peers (see [`OutlierConfig::latency_ratio`]).
/// - An ejection lasts `base × n` for the `n`-th ejection in a row, capped at
///   [`max_ejection`](OutlierConfig::max_ejection), jittered by a caller-supplied random so
///   gateways do not return an instance in lockstep; the instance then ramps back with
///   [`slow_start_factor`](Self::slow_start_factor).
/// - At most [`max_ejection_share`](OutlierConfig::max_ejection_share) of the upstreams are
///   out (ejected or failing active health checks, [`set_health`](Self::set_health)) at
///   once; an ejection beyond it is refused. When more than that share is unhealthy (out, or
///   refused ejection) the cell is in **panic mode** ([`panic_mode`](Self::panic_mode)):
///   nothing is excluded and load spreads over all instances, since a detector that finds
///   most of a cell bad is more likely wrong than right.
///
/// Per request: atomics only, no allocation. Ejecting takes a per-cell lock, so two racing
/// ejections cannot both slip under the cap.
#[derive(Debug)]
pub struct OutlierDetector {
    slots: Box<[Slot]>,
    config: OutlierConfig,
    epoch: Epoch,
    eject_lock: Mutex<()>,
}

impl OutlierDetector {
    /// A detector for a cell of `upstreams` instances, all in rotation.
    pub fn new(config: OutlierConfig, upstreams: usize, now: Instant) -> Self {
        Self {
            slots: (0..upstreams).map(|_| Slot::default()).collect(),
            config,
            epoch: Epoch::new(now),
            eject_lock: Mutex::new(()),
        }
    }

    /// Number of upstreams.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the cell has no upstreams.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records one outcome of `upstream`; `random` jitters an ejection it may cause. Returns
    /// the ejection, if any. Out-of-range upstreams are ignored.
    pub fn record(
        &self,
        upstream: usize,
        outcome: Outcome,
        now: Instant,
        random: u64,
    ) -> Option<Ejection> {
        let slot = self.slots.get(upstream)?;
        match outcome {
            Outcome::Local => None,
            Outcome::Success { .. } => {
                slot.success(self.config.min_samples);
                None
            }
            Outcome::UpstreamError | Outcome::Timeout => {
                let count = slot.failure(self.config.min_samples);
                if count < self.config.consecutive_failures.max(1) {
                    return None;
                }
                if slot.ejected(self.epoch.nanos(now)) {
                    return None; // a late answer from before the ejection: no lock needed
                }
                let reason = EjectionReason::ConsecutiveFailures { count };
                self.eject(upstream, reason, now, random)
            }
        }
    }

    /// Whether `upstream` is currently ejected by this detector.
    pub fn is_ejected(&self, upstream: usize, now: Instant) -> bool {
        let now = self.epoch.nanos(now);
        self.slots.get(upstream).is_some_and(|s| s.ejected(now))
    }

    /// Feeds the active health checker's verdict ([`HealthCheck`](super::HealthCheck)
    /// transitions). An upstream coming back healthy starts a slow-start ramp.
    pub fn set_health(&self, upstream: usize, healthy: bool, now: Instant) {
        if let Some(slot) = self.slots.get(upstream) {
            slot.set_health(healthy, self.epoch.nanos(now));
        }
    }

    /// Whether more than [`max_ejection_share`](OutlierConfig::max_ejection_share) of the
    /// upstreams are unhealthy. O(upstreams) atomic loads: call once per request.
    pub fn panic_mode(&self, now: Instant) -> bool {
        let now = self.epoch.nanos(now);
        let unhealthy = self.slots.iter().filter(|s| s.unhealthy(now)).count();
        unhealthy as f64 > self.slots.len() as f64 * self.config.max_ejection_share
    }

    /// Whether `upstream` may be picked: in panic mode, any; else not ejected and not failing
    /// active health checks.
    pub fn eligible(&self, upstream: usize, now: Instant, panic: bool) -> bool {
        let now = self.epoch.nanos(now);
        self.slots
            .get(upstream)
            .is_some_and(|s| panic || !s.out(now))
    }

    /// Weight of `upstream` in `[min_weight, 1]`: ramps linearly from
    /// [`slow_start_min_weight`](OutlierConfig::slow_start_min_weight) to 1 over
    /// [`slow_start`](OutlierConfig::slow_start) after it returns from an ejection or from
    /// failing health checks; 1 otherwise (also while ejected: only panic mode picks it then,
    /// and panic spreads load evenly). Divide its cost by it ([`Load::with_weight`](super::Load::with_weight)).
    pub fn slow_start_factor(&self, upstream: usize, now: Instant) -> f64 {
        let now = self.epoch.nanos(now);
        let Some(slot) = self.slots.get(upstream) else {
            return 1.0;
        };
        let Some(since) = slot.ramp_since(now) else {
            return 1.0;
        };
        let window = nanos(self.config.slow_start);
        let min = self.config.slow_start_min_weight.clamp(0.0, 1.0);
        if window == 0 || now - since >= window {
            return 1.0;
        }
        min + (1.0 - min) * ((now - since) as f64 / window as f64)
    }

    /// Ejects `upstream` unless it is already out or the share cap forbids it.
    fn eject(
        &self,
        upstream: usize,
        reason: EjectionReason,
        now: Instant,
        random: u64,
    ) -> Option<Ejection> {
        let _held = self
            .eject_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now_ns = self.epoch.nanos(now);
        let slot = self.slots.get(upstream)?;
        if slot.ejected(now_ns) {
            return None;
        }
        let out = (self.slots.iter().enumerate())
            .filter(|&(i, s)| i != upstream && s.out(now_ns))
            .count();
        let cap = (self.slots.len() as f64 * self.config.max_ejection_share).floor();
        if (out + 1) as f64 > cap {
            slot.refuse();
            return None;
        }
        let c = &self.config;
        let ejections = slot.next_ejection(now_ns, nanos(c.max_ejection));
        let base = scale(c.base_ejection, f64::from(ejections)).min(c.max_ejection);
        let jitter = c.ejection_jitter.clamp(0.0, 1.0);
        let duration = scale(base, 1.0 - jitter + 2.0 * jitter * unit(random));
        let until = now_ns.saturating_add(nanos(duration));
        slot.eject(until);
        Some(Ejection {
            upstream,
            reason,
            duration,
            until: self.epoch.instant(until),
            ejections,
        })
    }
}
