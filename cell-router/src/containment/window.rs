//! [`Window`]: a lock-free rolling window of two counters, in fixed-width time buckets.
//!
//! Each bucket is one `AtomicU64` packing a 24-bit bucket stamp and two 20-bit counts, updated
//! with a CAS loop: no lock, no allocation after construction, and a bucket is recycled by the
//! first writer that finds a stale stamp. Counts saturate at 2^20 - 1 (about a million events
//! per bucket); a bucket untouched for exactly 2^24 bucket widths (194 days at 1 s) could be
//! mistaken for a live one, which only ever adds one stale bucket to a sum.

use std::sync::atomic::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const STAMP_MASK: u64 = (1 << 24) - 1;

/// A rolling window of `(a, b)` counts, e.g. (requests, failures) or (requests, retries).
#[derive(Debug)]
pub(crate) struct Window {
    buckets: Box<[AtomicU64]>,
    width_ns: u64,
}

impl Window {
    /// A window of `buckets` buckets (clamped to 1..=1024) of `width_ns` each (at least 1).
    pub(crate) fn new(buckets: usize, width_ns: u64) -> Self {
        Self {
            buckets: (0..buckets.clamp(1, 1024))
                .map(|_| AtomicU64::new(0))
                .collect(),
            width_ns: width_ns.max(1),
        }
    }

    /// Adds `a` and `b` (each saturating) to the bucket of `now_ns`.
    pub(crate) fn add(&self, now_ns: u64, a: u64, b: u64) {
        let tick = now_ns / self.width_ns;
        let stamp = tick & STAMP_MASK;
        let bucket = &self.buckets[(tick % self.buckets.len() as u64) as usize];
        let mut cur = bucket.load(Ordering::Relaxed);
        loop {
            let (s, ca, cb) = unpack(cur);
            let (ca, cb) = if s == stamp { (ca, cb) } else { (0, 0) };
            let next = pack(stamp, ca.saturating_add(a), cb.saturating_add(b));
            match bucket.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Sums of `a` and `b` over the buckets of the last `buckets` widths, including `now_ns`'s.
    pub(crate) fn sum(&self, now_ns: u64) -> (u64, u64) {
        let stamp = (now_ns / self.width_ns) & STAMP_MASK;
        let len = self.buckets.len() as u64;
        self.buckets.iter().fold((0, 0), |(sa, sb), bucket| {
            let (s, a, b) = unpack(bucket.load(Ordering::Relaxed));
            if stamp.wrapping_sub(s) & STAMP_MASK < len {
                (sa + a, sb + b)
            } else {
                (sa, sb)
            }
        })
    }

    /// Forgets every count (racing adds may survive; callers only need "mostly empty").
    pub(crate) fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

fn pack(stamp: u64, a: u64, b: u64) -> u64 {
    (stamp << (2 * COUNT_BITS)) | (a.min(COUNT_MAX) << COUNT_BITS) | b.min(COUNT_MAX)
}

fn unpack(v: u64) -> (u64, u64, u64) {
    (
        v >> (2 * COUNT_BITS),
        (v >> COUNT_BITS) & COUNT_MAX,
        v & COUNT_MAX,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn old_buckets_roll_out() {
        let w = Window::new(10, S);
        w.add(0, 5, 1);
        w.add(9 * S, 2, 2);
        assert_eq!(w.sum(9 * S), (7, 3));
        assert_eq!(w.sum(10 * S), (2, 2));
        w.add(10 * S, 1, 0); // recycles the bucket of second 0
        assert_eq!(w.sum(10 * S), (3, 2));
        assert_eq!(w.sum(30 * S), (0, 0));
    }

    #[test]
    fn counts_saturate_without_spilling() {
        let w = Window::new(1, S);
        w.add(0, COUNT_MAX, 0);
        w.add(0, 10, 3);
        assert_eq!(w.sum(0), (COUNT_MAX, 3));
        w.clear();
        assert_eq!(w.sum(0), (0, 0));
    }
}
