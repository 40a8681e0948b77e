//! [`Bulkhead`]: a cap on a cell's requests in flight, refusing (never queueing) the excess.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A counting semaphore without a queue: `max_in_flight` permits, and a request that finds
/// none is refused at once (`cell_unavailable` 503). One per cell, so a saturated cell
/// refuses its own users without delaying anyone else's.
///
/// Atomics only: an acquire is one compare-and-swap, a release one decrement. The count is
/// exact, never briefly above the limit.
#[derive(Debug)]
pub struct Bulkhead {
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

impl Bulkhead {
    /// A bulkhead admitting up to `max_in_flight` concurrent requests (0 refuses all).
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            max_in_flight,
        }
    }

    /// Takes a permit for the lifetime of the returned guard, or `None` if all are taken.
    pub fn try_acquire(&self) -> Option<BulkheadPermit<'_>> {
        self.take().then(|| BulkheadPermit { bulkhead: self })
    }

    /// Like [`try_acquire`](Self::try_acquire), with a guard that owns an `Arc`, to move into
    /// a response body that outlives the request handler.
    pub fn try_acquire_owned(self: &Arc<Self>) -> Option<OwnedBulkheadPermit> {
        self.take().then(|| OwnedBulkheadPermit {
            bulkhead: Arc::clone(self),
        })
    }

    /// Requests currently holding a permit.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The configured limit.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn take(&self) -> bool {
        let max = self.max_in_flight;
        self.in_flight
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give(&self) {
        self.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A [`Bulkhead`] permit, released on drop.
#[derive(Debug)]
#[must_use = "the permit is released as soon as it is dropped"]
pub struct BulkheadPermit<'a> {
    bulkhead: &'a Bulkhead,
}

impl Drop for BulkheadPermit<'_> {
    fn drop(&mut self) {
        self.bulkhead.give();
    }
}

/// A [`Bulkhead`] permit holding an `Arc` to it, released on drop.
#[derive(Debug)]
#[must_use = "the permit is released as soon as it is dropped"]
pub struct OwnedBulkheadPermit {
    bulkhead: Arc<Bulkhead>,
}

impl Drop for OwnedBulkheadPermit {
    fn drop(&mut self) {
        self.bulkhead.give();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_limit_and_releases_on_drop() {
        let b = Arc::new(Bulkhead::new(2));
        let p1 = b.try_acquire();
        let p2 = b.try_acquire_owned();
        assert!(p1.is_some() && p2.is_some());
        assert!(b.try_acquire().is_none());
        assert_eq!(b.in_flight(), 2);
        drop(p2);
        assert!(b.try_acquire().is_some()); // acquired and dropped at once
        assert_eq!(b.in_flight(), 1);
        assert!(Bulkhead::new(0).try_acquire().is_none());
    }
}
