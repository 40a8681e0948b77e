//! A token bucket whose rate and capacity change at run time.
//!
//! Not synchronised: [`KeyState`](crate::state::KeyState) guards it with a per-key lock.

/// Tokens refill continuously at `rate` up to `capacity`; a request takes one token.
///
/// Invariants: `0 ≤ tokens ≤ capacity`, `rate > 0`, `capacity ≥ 1` (a bucket can always admit
/// eventually, so no key is refused forever).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    tokens: f64,
    capacity: f64,
    /// Tokens per nanosecond.
    rate: f64,
    /// Time `tokens` was last brought up to date.
    updated: u64,
}

/// Smallest capacity: one request.
pub(crate) const MIN_CAPACITY: f64 = 1.0;
/// Smallest rate: one token per hour; keeps `1 / rate` finite.
pub(crate) const MIN_RATE: f64 = 1.0 / 3.6e12;

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(rate_per_ns: f64, capacity: f64, now: u64) -> Self {
        let capacity = sanitize_capacity(capacity);
        Self {
            tokens: capacity,
            capacity,
            rate: sanitize_rate(rate_per_ns),
            updated: now,
        }
    }

    fn refill(&mut self, now: u64) {
        // A clock read before `updated` (another thread's later read won the lock) adds nothing.
        let elapsed = now.saturating_sub(self.updated);
        if elapsed > 0 {
            self.tokens = (self.tokens + elapsed as f64 * self.rate).min(self.capacity);
            self.updated = now;
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: u64) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens available at `now`.
    pub(crate) fn tokens(&mut self, now: u64) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Nanoseconds until one token is available (0 if one is).
    pub(crate) fn wait_for_one(&self) -> u64 {
        nanos_for(1.0 - self.tokens, self.rate)
    }

    /// Nanoseconds until the bucket is full again.
    pub(crate) fn until_full(&self) -> u64 {
        nanos_for(self.capacity - self.tokens, self.rate)
    }

    /// Tokens per nanosecond.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Largest number of tokens held.
    pub(crate) fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Changes rate and capacity from `now` on. Tokens earned so far are kept (clamped to the
    /// new capacity): a change never grants tokens, so it cannot cause a burst.
    pub(crate) fn reconfigure(&mut self, rate_per_ns: f64, capacity: f64, now: u64) {
        self.refill(now);
        self.rate = sanitize_rate(rate_per_ns);
        self.capacity = sanitize_capacity(capacity);
        self.tokens = self.tokens.min(self.capacity);
    }
}

fn sanitize_rate(rate: f64) -> f64 {
    if rate.is_finite() {
        rate.max(MIN_RATE)
    } else {
        MIN_RATE
    }
}

fn sanitize_capacity(capacity: f64) -> f64 {
    if capacity.is_finite() {
        capacity.max(MIN_CAPACITY)
    } else {
        MIN_CAPACITY
    }
}

fn nanos_for(tokens: f64, rate: f64) -> u64 {
    if tokens <= 0.0 {
        0
    } else {
        // Float-to-int `as` saturates; rounding up so a retry at that instant succeeds.
        (tokens / rate).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn per_sec(n: f64) -> f64 {
        n / SEC as f64
    }

    #[test]
    fn admits_the_burst_then_the_rate() {
        let mut b = Bucket::new(per_sec(10.0), 5.0, 0);
        let admitted = (0..20).filter(|_| b.try_take(0)).count();
        assert_eq!(admitted, 5);
        assert!(!b.try_take(SEC / 20));
        assert!(b.try_take(SEC / 10));
        assert_eq!(b.wait_for_one(), SEC / 10);
    }

    #[test]
    fn reconfigure_never_grants_tokens() {
        let mut b = Bucket::new(per_sec(10.0), 10.0, 0);
        for _ in 0..10 {
            assert!(b.try_take(0));
        }
        b.reconfigure(per_sec(1000.0), 1000.0, 0);
        assert!(!b.try_take(0));
        b.reconfigure(per_sec(1.0), 2.0, 0);
        assert!(b.tokens(10 * SEC) <= 2.0);
    }

    #[test]
    fn degenerate_settings_are_floored() {
        let mut b = Bucket::new(0.0, 0.0, 0);
        assert!(b.try_take(0), "capacity is at least one token");
        assert!(b.rate() > 0.0);
        b.reconfigure(f64::NAN, f64::INFINITY, 0);
        assert_eq!(b.capacity(), MIN_CAPACITY);
    }

    proptest! {
        /// Over any schedule, admitted ≤ capacity + rate × elapsed.
        #[test]
        fn never_exceeds_capacity_plus_rate(
            rate in 1.0f64..10_000.0,
            capacity in 1.0f64..1_000.0,
            gaps in proptest::collection::vec(0u64..10_000_000, 1..500),
        ) {
            let mut b = Bucket::new(per_sec(rate), capacity, 0);
            let mut now = 0;
            let mut admitted = 0u64;
            for gap in gaps {
                now += gap;
                if b.try_take(now) { admitted += 1; }
            }
            let bound = capacity + rate * now as f64 / SEC as f64;
            prop_assert!(admitted as f64 <= bound + 1e-6, "{admitted} > {bound}");
        }

        /// A caller below the rate is never refused once it paces itself.
        #[test]
        fn paced_callers_are_never_refused(rate in 1.0f64..10_000.0, n in 1usize..500) {
            let mut b = Bucket::new(per_sec(rate), 1.0, 0);
            let gap = (SEC as f64 / rate).ceil() as u64;
            for i in 0..n as u64 {
                prop_assert!(b.try_take(i * gap));
            }
        }
    }
}
