//! A lock-free token bucket whose rate and capacity change at run time.
//!
//! The bucket is kept as GCRA: a single `AtomicU64` holding the *theoretical arrival time*
//! (`tat`), the instant at which the bucket would be full again. With `T` the time one token
//! takes to refill and `τ = capacity · T`, the tokens at `now` are `(τ − max(tat − now, 0)) / T`;
//! a request is admitted when taking one token leaves `tat + T − now ≤ τ`, and admitting it is
//! one compare-and-swap `tat → max(tat, now) + T`. A check is therefore one load of the
//! parameters and one CAS on one word: no lock, nothing to wait for.
//!
//! Rate and capacity (`T`, `τ`) change only from the sync task. They live in two slots; the
//! low bit of the `tat` word names the slot that matches it. A reconfiguration writes the
//! inactive slot, then swaps `tat` (converted to the new parameters) with the other slot's
//! bit. A check that read the old word and parameters fails its CAS and retries with the new
//! ones, so a decision always uses parameters consistent with the `tat` it replaces.
//! (Only if the word came back to the exact same value, to the 1/8 ns, after *two*
//! reconfigurations within one check could a check pair it with other parameters; that costs
//! at most one token.)

use std::sync::atomic::{AtomicU64, Ordering};

/// Time unit of `tat`, `T` and `τ`: 1/8 ns, so `T` is exact enough at a billion tokens per
/// second. `u64` of these units last 73 years of clock time (the word keeps one bit for the
/// slot: 36 years).
const UNITS_PER_NS: u64 = 8;

/// Smallest capacity: one request.
pub(crate) const MIN_CAPACITY: f64 = 1.0;
/// Smallest rate: one token per hour; keeps `1 / rate` finite.
pub(crate) const MIN_RATE: f64 = 1.0 / 3.6e12;

/// Tokens refill continuously at `rate` up to `capacity`; a request takes one token.
///
/// Invariants: `0 ≤ tokens ≤ capacity`, `rate > 0`, `capacity ≥ 1` (a bucket can always admit
/// eventually, so no key is refused forever).
#[derive(Debug)]
pub(crate) struct AtomicBucket {
    /// `(tat << 1) | slot`, `tat` in units since the clock's origin.
    word: AtomicU64,
    slots: [Params; 2],
}

/// One parameter slot. Written only while inactive (see the module docs).
#[derive(Debug, Default)]
struct Params {
    /// `T`: units per token, ≥ 1.
    interval: AtomicU64,
    /// `τ = capacity · T`, units.
    tolerance: AtomicU64,
}

/// The bucket's word right after a take: where its tokens sit in the bucket's debt (see
/// [`AtomicBucket::give_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken(u64);

impl Taken {
    /// A mark under which nothing is ever given back.
    pub(crate) const NOTHING: Taken = Taken(0);
}

/// The bucket as one check left it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Take {
    pub(crate) allowed: bool,
    /// Tokens left after this check.
    pub(crate) tokens: f64,
    /// Below a quarter of the capacity after this check (or refused).
    pub(crate) low: bool,
    /// Nanoseconds until the bucket is full again.
    pub(crate) until_full: u64,
    /// Nanoseconds until one token is available (0 if one is).
    pub(crate) wait: u64,
}

impl AtomicBucket {
    /// A full bucket.
    pub(crate) fn new(rate_per_ns: f64, capacity: f64, now: u64) -> Self {
        let bucket = Self {
            word: AtomicU64::new(units(now) << 1),
            slots: [Params::default(), Params::default()],
        };
        let (interval, tolerance) = params(rate_per_ns, capacity);
        bucket.slots[0].interval.store(interval, Ordering::Relaxed);
        bucket.slots[0]
            .tolerance
            .store(tolerance, Ordering::Relaxed);
        bucket
    }

    /// Takes one token if there is one.
    #[cfg(test)]
    pub(crate) fn try_take(&self, now: u64) -> Take {
        self.try_take_up_to(now, 1).0
    }

    /// Takes `want` tokens if a quarter of the capacity is still left afterwards, else one
    /// token if there is one (so a batch never drains the bucket: near the limit every request
    /// is decided on its own). Returns the tokens taken (`want`, 1 or 0), the [`Take`] as the
    /// bucket is after them, and the [`Taken`] mark to hand to [`give_back`](Self::give_back).
    #[inline(always)]
    pub(crate) fn try_take_up_to(&self, now: u64, want: u64) -> (Take, u64, Taken) {
        let now = units(now);
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let slot = &self.slots[(word & 1) as usize];
            let interval = slot.interval.load(Ordering::Relaxed);
            let tolerance = slot.tolerance.load(Ordering::Relaxed);
            let base = (word >> 1).max(now);
            let mut taken = want.max(1);
            let mut next = base.saturating_add(interval.saturating_mul(taken));
            if taken > 1 && (tolerance - (next - now).min(tolerance)).saturating_mul(4) < tolerance
            {
                taken = 1;
                next = base.saturating_add(interval);
            }
            if next - now > tolerance {
                // Refused: nothing to write. `base − now ≤ τ` (the invariant), so no underflow.
                let debt = base - now;
                let take = Take {
                    allowed: false,
                    tokens: (tolerance - debt.min(tolerance)) as f64 / interval as f64,
                    low: true,
                    until_full: nanos(debt),
                    wait: nanos(next - now - tolerance),
                };
                return (take, 0, Taken(word));
            }
            let after = (next << 1) | (word & 1);
            match self
                .word
                .compare_exchange_weak(word, after, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let debt = next - now;
                    let left = tolerance - debt;
                    let take = Take {
                        allowed: true,
                        tokens: left as f64 / interval as f64,
                        low: left.saturating_mul(4) < tolerance,
                        until_full: nanos(debt),
                        wait: nanos(interval.saturating_sub(left)),
                    };
                    return (take, taken, Taken(after));
                }
                Err(current) => word = current,
            }
        }
    }

    /// Returns up to `n` tokens of a take marked `taken` that were not used, as far as they are
    /// still owed at `now`.
    ///
    /// The bucket's debt (`tat − now`) is repaid oldest first as time passes, so of the tokens
    /// a take added, those still owed are the ones whose refill time (before `tat` as the take
    /// left it) is still ahead of `now`; the others have been refilled, and the bucket may have
    /// filled up and handed them out again since. Returning those would admit more than the
    /// bucket allows, so they are not returned. Nor is anything once the bucket was
    /// reconfigured since the take (its debt was converted to the new rate). Returning less
    /// than possible only under-admits.
    pub(crate) fn give_back(&self, n: u64, taken: Taken, now: u64) {
        let now = units(now);
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if (word ^ taken.0) & 1 != 0 {
                return;
            }
            let interval = self.slots[(word & 1) as usize]
                .interval
                .load(Ordering::Relaxed);
            let owed = ((taken.0 >> 1).saturating_sub(now) / interval).min(n);
            if owed == 0 {
                return;
            }
            let tat = (word >> 1).saturating_sub(interval.saturating_mul(owed));
            match self.word.compare_exchange_weak(
                word,
                (tat << 1) | (word & 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Tokens available at `now`.
    pub(crate) fn tokens(&self, now: u64) -> f64 {
        let word = self.word.load(Ordering::Acquire);
        let slot = &self.slots[(word & 1) as usize];
        let (interval, tolerance) = (
            slot.interval.load(Ordering::Relaxed),
            slot.tolerance.load(Ordering::Relaxed),
        );
        tokens_at(word >> 1, units(now), interval, tolerance)
    }

    /// Changes rate and capacity from `now` on. Tokens earned so far are kept (clamped to the
    /// new capacity): a change never grants tokens, so it cannot cause a burst.
    ///
    /// Only the sync task calls this, never two at once (it holds the key's sync lock).
    pub(crate) fn reconfigure(&self, rate_per_ns: f64, capacity: f64, now: u64) {
        let (interval, tolerance) = params(rate_per_ns, capacity);
        let now = units(now);
        let mut word = self.word.load(Ordering::Acquire);
        let inactive = &self.slots[((word & 1) ^ 1) as usize];
        inactive.interval.store(interval, Ordering::Relaxed);
        inactive.tolerance.store(tolerance, Ordering::Relaxed);
        loop {
            let active = &self.slots[(word & 1) as usize];
            let tokens = tokens_at(
                word >> 1,
                now,
                active.interval.load(Ordering::Relaxed),
                active.tolerance.load(Ordering::Relaxed),
            );
            let kept = (tokens * interval as f64).min(tolerance as f64) as u64;
            let tat = now.saturating_add(tolerance - kept);
            // Release: a check that reads the new word sees the slot written above.
            match self.word.compare_exchange_weak(
                word,
                (tat << 1) | ((word & 1) ^ 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }
}

fn tokens_at(tat: u64, now: u64, interval: u64, tolerance: u64) -> f64 {
    let debt = tat.saturating_sub(now).min(tolerance);
    (tolerance - debt) as f64 / interval as f64
}

/// `(T, τ)` in units, with the rate and capacity floored as the invariants say.
fn params(rate_per_ns: f64, capacity: f64) -> (u64, u64) {
    let rate = if rate_per_ns.is_finite() {
        rate_per_ns.max(MIN_RATE)
    } else {
        MIN_RATE
    };
    let capacity = if capacity.is_finite() {
        capacity.max(MIN_CAPACITY)
    } else {
        MIN_CAPACITY
    };
    // Float-to-int `as` saturates; `T ≥ 1` keeps every division defined.
    let interval = ((UNITS_PER_NS as f64 / rate).round() as u64).max(1);
    let tolerance = (capacity * interval as f64).round() as u64;
    (interval, tolerance.max(interval))
}

/// Nanoseconds in the clock's unit; one bit of the word is the slot.
fn units(now_ns: u64) -> u64 {
    now_ns.saturating_mul(UNITS_PER_NS).min(u64::MAX >> 1)
}

/// Units to nanoseconds, rounded up so a retry at that instant succeeds.
fn nanos(units: u64) -> u64 {
    units.div_ceil(UNITS_PER_NS)
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
        let b = AtomicBucket::new(per_sec(10.0), 5.0, 0);
        let admitted = (0..20).filter(|_| b.try_take(0).allowed).count();
        assert_eq!(admitted, 5);
        assert!(!b.try_take(SEC / 20).allowed);
        assert!(b.try_take(SEC / 10).allowed);
        let refused = b.try_take(SEC / 10);
        assert!(!refused.allowed);
        assert_eq!(refused.wait, SEC / 10);
        assert_eq!(refused.until_full, SEC / 2);
    }

    #[test]
    fn reconfigure_never_grants_tokens() {
        let b = AtomicBucket::new(per_sec(10.0), 10.0, 0);
        for _ in 0..10 {
            assert!(b.try_take(0).allowed);
        }
        b.reconfigure(per_sec(1000.0), 1000.0, 0);
        assert!(!b.try_take(0).allowed);
        b.reconfigure(per_sec(1.0), 2.0, 0);
        assert!(b.tokens(10 * SEC) <= 2.0);
        b.reconfigure(per_sec(10.0), 10.0, 10 * SEC);
        assert!((b.tokens(10 * SEC) - 2.0).abs() < 1e-9, "tokens are kept");
    }

    #[test]
    fn degenerate_settings_are_floored() {
        let b = AtomicBucket::new(0.0, 0.0, 0);
        assert!(b.try_take(0).allowed, "capacity is at least one token");
        assert!(!b.try_take(0).allowed);
        b.reconfigure(f64::NAN, f64::INFINITY, 0);
        assert!(b.tokens(u64::MAX) <= MIN_CAPACITY);
    }

    #[test]
    fn a_batch_leaves_a_quarter_of_the_bucket() {
        let b = AtomicBucket::new(per_sec(10.0), 20.0, 0);
        let (take, taken, _) = b.try_take_up_to(0, 8);
        assert_eq!((taken, take.tokens), (8, 12.0));
        // 12 − 8 = 4 < 20/4: one token only.
        let (take, taken, _) = b.try_take_up_to(0, 8);
        assert_eq!((taken, take.tokens), (1, 11.0));
        let singles = (0..20).filter(|_| b.try_take_up_to(0, 8).1 == 1).count();
        assert_eq!(singles, 11, "near the limit every request is decided alone");
        let (refused, taken, _) = b.try_take_up_to(0, 8);
        assert!(!refused.allowed && taken == 0);
    }

    #[test]
    fn tokens_given_back_at_once_are_there_again() {
        let b = AtomicBucket::new(per_sec(10.0), 20.0, 0);
        let (_, taken, mark) = b.try_take_up_to(0, 8);
        assert_eq!(taken, 8);
        b.give_back(5, mark, 0);
        assert!((b.tokens(0) - 17.0).abs() < 1e-9);
        let admitted = (0..40).filter(|_| b.try_take(0).allowed).count();
        assert_eq!(admitted, 17);
    }

    /// Tokens refilled since the take are not owed any more: returning them would add to what
    /// others took since.
    #[test]
    fn only_tokens_still_owed_are_given_back() {
        let b = AtomicBucket::new(per_sec(10.0), 20.0, 0);
        let (_, _, mark) = b.try_take_up_to(0, 8);
        // 1 s later the 8 are refilled (10/s) and someone else takes the whole bucket.
        let admitted = (0..40).filter(|_| b.try_take(SEC).allowed).count();
        assert_eq!(admitted, 20);
        b.give_back(8, mark, SEC);
        assert!(
            !b.try_take(SEC).allowed,
            "nothing was owed: nothing comes back"
        );
        // Part of a lease refilled: 0.3 s after taking 8 at t = 1 s, 3 of them are refilled
        // and 5 still owed; meanwhile another caller took 10 of the 15 left.
        let b = AtomicBucket::new(per_sec(10.0), 20.0, SEC);
        let (_, _, mark) = b.try_take_up_to(SEC, 8);
        let now = SEC + 3 * SEC / 10;
        assert_eq!((0..10).filter(|_| b.try_take(now).allowed).count(), 10);
        assert!((b.tokens(now) - 5.0).abs() < 1e-9);
        b.give_back(8, mark, now);
        assert!((b.tokens(now) - 10.0).abs() < 1e-9, "{}", b.tokens(now));
    }

    #[test]
    fn nothing_is_given_back_after_a_reconfiguration() {
        let b = AtomicBucket::new(per_sec(10.0), 20.0, 0);
        let (_, _, mark) = b.try_take_up_to(0, 8);
        b.reconfigure(per_sec(20.0), 40.0, 0);
        assert!((b.tokens(0) - 12.0).abs() < 1e-9, "tokens are kept");
        b.give_back(8, mark, 0);
        assert!((b.tokens(0) - 12.0).abs() < 1e-9, "{}", b.tokens(0));
    }

    #[test]
    fn two_threads_never_take_more_than_there_is() {
        let b = AtomicBucket::new(per_sec(1.0), 10_000.0, 0);
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| s.spawn(|| (0..20_000).filter(|_| b.try_take(0).allowed).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(admitted, 10_000);
    }

    proptest! {
        /// Over any schedule, admitted ≤ capacity + rate × elapsed, reconfigurations included
        /// (they never grant tokens).
        #[test]
        fn never_exceeds_capacity_plus_rate(
            rate in 1.0f64..10_000.0,
            capacity in 1.0f64..1_000.0,
            gaps in proptest::collection::vec((0u64..10_000_000, any::<bool>()), 1..500),
        ) {
            let b = AtomicBucket::new(per_sec(rate), capacity, 0);
            let mut now = 0;
            let mut admitted = 0u64;
            for (gap, shrink) in gaps {
                now += gap;
                if shrink {
                    b.reconfigure(per_sec(rate / 2.0), capacity / 2.0, now);
                    b.reconfigure(per_sec(rate), capacity, now);
                }
                if b.try_take(now).allowed { admitted += 1; }
            }
            let bound = capacity + rate * now as f64 / SEC as f64;
            prop_assert!(admitted as f64 <= bound + 1e-6, "{admitted} > {bound}");
        }

        /// A caller below the rate is never refused once it paces itself.
        #[test]
        fn paced_callers_are_never_refused(rate in 1.0f64..10_000.0, n in 1usize..500) {
            let b = AtomicBucket::new(per_sec(rate), 1.0, 0);
            let gap = (SEC as f64 / rate).ceil() as u64;
            for i in 0..n as u64 {
                prop_assert!(b.try_take(i * gap).allowed);
            }
        }
    }
}
