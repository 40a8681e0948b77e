//! Jittered intervals and exponential backoff for the control plane's background loops.

use std::time::Duration;

/// `base` scaled by a uniformly random factor in `[1 - spread, 1 + spread]`, so that
/// gateways started together do not poll or reconnect in lockstep.
pub(crate) fn jitter(base: Duration, spread: f64) -> Duration {
    let factor = 1.0 + spread * (2.0 * fastrand::f64() - 1.0);
    base.mul_f64(factor.max(0.0))
}

/// Exponential backoff from `min` doubling to `max`, each delay jittered by ±20%.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(delay, 0.2)
    }

    /// Back to `min` after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_spread() {
        let base = Duration::from_millis(1000);
        for _ in 0..1000 {
            let d = jitter(base, 0.2);
            assert!(
                d >= Duration::from_millis(800) && d <= Duration::from_millis(1200),
                "{d:?}"
            );
        }
        assert_eq!(jitter(base, 0.0), base);
    }

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let upper = |ms: u64| Duration::from_millis(ms).mul_f64(1.2);
        assert!(b.next_delay() <= upper(100));
        assert!(b.next_delay() <= upper(200));
        let third = b.next_delay();
        assert!(
            third >= Duration::from_millis(280) && third <= upper(350),
            "{third:?}"
        );
        assert!(b.next_delay() <= upper(350));
        b.reset();
        assert!(b.next_delay() <= upper(100));
    }
}
