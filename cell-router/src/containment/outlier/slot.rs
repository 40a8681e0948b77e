//! [`Slot`]: one upstream's passive-health state, in atomics.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Times are nanoseconds since the detector's epoch; 0 in `ejected_until` / `ramp_from`
/// means "never". Fields are updated independently: a reader may see one change before
/// another, which at worst lets one request through a just-ejected instance.
#[derive(Debug, Default)]
pub(super) struct Slot {
    failures: AtomicU32,
    samples: AtomicU32,
    ejected_until: AtomicU64,
    ramp_from: AtomicU64,
    ejections: AtomicU32,
    health_down: AtomicBool,
    refused: AtomicBool,
}

impl Slot {
    pub(super) fn success(&self, min_samples: u32) {
        self.sample(min_samples);
        // Loads first: the common case writes nothing, keeping the cache line shared.
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.refused.load(Relaxed) {
            self.refused.store(false, Relaxed);
        }
    }

    /// Counts a failure; returns the failures in a row, this one included.
    pub(super) fn failure(&self, min_samples: u32) -> u32 {
        self.sample(min_samples);
        self.failures.fetch_add(1, Relaxed).saturating_add(1)
    }

    fn sample(&self, min_samples: u32) {
        if self.samples.load(Relaxed) < min_samples {
            self.samples.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn samples(&self) -> u32 {
        self.samples.load(Relaxed)
    }

    pub(super) fn ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Relaxed)
    }

    /// Out of rotation: ejected or failing active checks.
    pub(super) fn out(&self, now: u64) -> bool {
        self.ejected(now) || self.health_down.load(Relaxed)
    }

    /// Out, or refused an ejection by the cap.
    pub(super) fn unhealthy(&self, now: u64) -> bool {
        self.out(now) || self.refused.load(Relaxed)
    }

    pub(super) fn refuse(&self) {
        self.refused.store(true, Relaxed);
    }

    /// The ejection count after one more ejection at `now`; it restarts from 1 when the
    /// previous ejection ended more than `reset_after` ago.
    pub(super) fn next_ejection(&self, now: u64, reset_after: u64) -> u32 {
        let last_end = self.ejected_until.load(Relaxed);
        let count = if last_end != 0 && now.saturating_sub(last_end) <= reset_after {
            self.ejections.load(Relaxed).saturating_add(1)
        } else {
            1
        };
        self.ejections.store(count, Relaxed);
        count
    }

    pub(super) fn eject(&self, until: u64) {
        let until = until.max(1);
        self.ejected_until.store(until, Relaxed);
        self.ramp_from.store(until, Relaxed);
        self.failures.store(0, Relaxed);
        self.samples.store(0, Relaxed);
        self.refused.store(false, Relaxed);
    }

    pub(super) fn set_health(&self, healthy: bool, now: u64) {
        let was_down = self.health_down.swap(!healthy, Relaxed);
        if healthy && was_down {
            self.ramp_from.store(now.max(1), Relaxed);
            self.samples.store(0, Relaxed);
        }
    }

    /// Start of the current slow-start ramp, if one has started by `now`.
    pub(super) fn ramp_since(&self, now: u64) -> Option<u64> {
        let from = self.ramp_from.load(Relaxed);
        (from != 0 && from <= now && !self.out(now)).then_some(from)
    }
}
