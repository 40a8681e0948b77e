//! [`Epoch`]: turns caller-supplied `Instant`s into `u64` nanoseconds that fit in atomics.

use std::time::{Duration, Instant};

/// The instant a containment object was built; times are stored as nanoseconds since it.
///
/// Instants before the epoch count as the epoch (0): a caller passing a slightly stale `now`
/// from another thread must never panic or wrap.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    /// An epoch at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self(now)
    }

    /// Nanoseconds from the epoch to `now`, saturating at 0 and at `u64::MAX` (584 years).
    pub(crate) fn nanos(self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `nanos` after the epoch (the epoch itself if that would overflow).
    pub(crate) fn instant(self, nanos: u64) -> Instant {
        self.0
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.0)
    }
}

/// Whole nanoseconds of `d`, saturating at `u64::MAX`.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `value` scaled by `factor` (finite, `>= 0`; anything else counts as 1), saturating.
pub(crate) fn scale(value: Duration, factor: f64) -> Duration {
    let factor = if factor.is_finite() && factor >= 0.0 {
        factor
    } else {
        1.0
    };
    Duration::try_from_secs_f64(value.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// A uniform fraction in `[0, 1)` from the top 53 bits of `random`.
pub(crate) fn unit(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_epoch_is_zero_and_round_trips() {
        let t0 = Instant::now();
        let epoch = Epoch::new(t0 + Duration::from_secs(1));
        assert_eq!(epoch.nanos(t0), 0);
        let t = t0 + Duration::from_millis(1500);
        assert_eq!(epoch.nanos(t), 500_000_000);
        assert_eq!(epoch.instant(500_000_000), t);
    }

    #[test]
    fn unit_is_in_range_and_scale_saturates() {
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
        assert_eq!(scale(Duration::MAX, 2.0), Duration::MAX);
        assert_eq!(
            scale(Duration::from_secs(2), f64::NAN),
            Duration::from_secs(2)
        );
    }
}
