//! Per-key local state: the bucket, its share and the demand seen since the last sync.
//!
//! Split by who writes it. The request path touches only atomics (the bucket's one word, the
//! request counters, the last-seen time and the pressure flag): no lock, no allocation. What
//! the sync task keeps between ticks (demand EWMA, last answer, report bookkeeping) sits
//! behind a mutex that checks never take.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::bucket::AtomicBucket;
use crate::share::{self, GlobalView};

const NANOS_PER_SEC: f64 = 1e9;

/// `last_seen` is refreshed when it is older than this: one store per key per millisecond at
/// most, instead of a write per check to a line other cores share. Idle and LRU eviction work
/// in seconds, so a millisecond of error is invisible.
const LAST_SEEN_GRANULE: u64 = 1_000_000;

/// The policy's rates, in the units the state needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    /// `limit / per`, tokens per nanosecond.
    pub(crate) per_ns: f64,
    /// Burst, tokens.
    pub(crate) burst: f64,
}

impl Rates {
    pub(crate) fn per_sec(&self) -> f64 {
        self.per_ns * NANOS_PER_SEC
    }
}

/// Where a key's share comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShareSource {
    /// Nothing known yet: `1 / live gateways`.
    Default,
    /// A sync answer (possibly old, if Redis has been down since).
    Synced,
}

/// One key's state. Checks are lock-free; the sync task serialises its updates on `sync`.
#[derive(Debug)]
pub(crate) struct KeyState {
    bucket: AtomicBucket,
    /// Requests seen (allowed or denied) since the sync task last drained the counters.
    seen: AtomicU64,
    /// Of those, the denied ones.
    denied: AtomicU32,
    /// Clock of the latest check, within [`LAST_SEEN_GRANULE`].
    last_seen: AtomicU64,
    /// Refused a request or fell under a quarter of capacity since the last sample.
    pressured: AtomicBool,
    /// `f64` bits of the current share (for `remaining`).
    share: AtomicU64,
    /// The key was removed from the map; per-thread memos must not use this state any more.
    retired: AtomicBool,
    sync: Mutex<SyncSide>,
}

#[derive(Debug)]
struct SyncSide {
    share: f64,
    source: ShareSource,
    sampled_at: u64,
    /// Requests drained from `seen` but not yet folded into `demand` (no time had passed).
    unsampled: u64,
    /// EWMA of requests seen per second.
    demand: f64,
    /// Last-known Σ demand of the fleet, requests per second; NaN before the first answer.
    global_demand: f64,
    live: u32,
    last_sync: Option<u64>,
    /// Demand sent in the last report; NaN before the first.
    reported_demand: f64,
    /// The last report asked Redis to keep the entry only for a hot key's lifetime.
    short_ttl: bool,
}

/// The outcome of one check, in local terms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    pub(crate) allowed: bool,
    pub(crate) tokens: f64,
    pub(crate) share: f64,
    pub(crate) until_full: u64,
    pub(crate) wait: u64,
}

/// What the sync task learns about a key at a tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) demand: f64,
    pub(crate) hot: bool,
    pub(crate) last_seen: u64,
    /// Demand sent in the last report; NaN before the first.
    pub(crate) reported_demand: f64,
    pub(crate) short_ttl: bool,
    pub(crate) source: ShareSource,
    /// Requests checked since the previous sample, and how many of them were denied.
    pub(crate) counts: Counts,
}

/// Decisions counted on a key between two samples, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) seen: u64,
    pub(crate) denied: u64,
}

/// A snapshot for the admin API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    pub(crate) tokens: f64,
    pub(crate) rate_per_sec: f64,
    pub(crate) capacity: f64,
    pub(crate) demand: f64,
    pub(crate) global_demand: Option<f64>,
    pub(crate) live: Option<u32>,
    pub(crate) share: f64,
    pub(crate) last_sync_age: Option<Duration>,
}

impl KeyState {
    pub(crate) fn new(rates: Rates, share: f64, now: u64) -> Self {
        Self {
            bucket: AtomicBucket::new(rates.per_ns * share, rates.burst * share, now),
            seen: AtomicU64::new(0),
            denied: AtomicU32::new(0),
            last_seen: AtomicU64::new(now),
            pressured: AtomicBool::new(false),
            share: AtomicU64::new(share.to_bits()),
            retired: AtomicBool::new(false),
            sync: Mutex::new(SyncSide {
                share,
                source: ShareSource::Default,
                sampled_at: now,
                unsampled: 0,
                demand: 0.0,
                global_demand: f64::NAN,
                live: 0,
                last_sync: None,
                reported_demand: f64::NAN,
                short_ttl: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SyncSide> {
        // The critical sections do arithmetic only and cannot leave the state half-updated.
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hot path: take a token if there is one and count the request as demand. Lock-free;
    /// in the common case one CAS and one `fetch_add` on the key, both on words a check of
    /// the same key on another core touches anyway.
    #[inline]
    pub(crate) fn check(&self, now: u64) -> Local {
        let take = self.bucket.try_take(now);
        self.seen.fetch_add(1, Ordering::Relaxed);
        if !take.allowed {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
        if now > self.last_seen.load(Ordering::Relaxed) + LAST_SEEN_GRANULE {
            self.last_seen.fetch_max(now, Ordering::Relaxed);
        }
        if take.low && !self.pressured.load(Ordering::Relaxed) {
            self.pressured.store(true, Ordering::Relaxed);
        }
        Local {
            allowed: take.allowed,
            tokens: take.tokens,
            share: f64::from_bits(self.share.load(Ordering::Relaxed)),
            until_full: take.until_full,
            wait: take.wait,
        }
    }

    /// Folds the requests seen since the last sample into the demand EWMA (time constant
    /// `tau_ns`) and reports whether the key is hot. Drains the counters and clears the
    /// pressure flag.
    pub(crate) fn sample(&self, now: u64, tau_ns: f64, rates: Rates) -> Sample {
        let mut s = self.lock();
        let counts = self.drain();
        s.unsampled += counts.seen;
        let dt = now.saturating_sub(s.sampled_at) as f64;
        if dt > 0.0 {
            let observed = s.unsampled as f64 * NANOS_PER_SEC / dt;
            s.demand = share::ewma(s.demand, observed, dt, tau_ns);
            s.sampled_at = now;
            s.unsampled = 0;
        }
        let local_rate = rates.per_sec() * s.share;
        let global = if s.global_demand.is_nan() {
            0.0
        } else {
            s.global_demand
        };
        let pressured = self.pressured.swap(false, Ordering::Relaxed);
        let hot = share::is_hot(pressured, s.demand, local_rate, global, rates.per_sec());
        Sample {
            demand: s.demand,
            hot,
            last_seen: self.last_seen(),
            reported_demand: s.reported_demand,
            short_ttl: s.short_ttl,
            source: s.source,
            counts,
        }
    }

    /// Marks a state removed from the map, so per-thread memos (`recent.rs`) stop using it.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Takes the decision counters (for the metrics of a key about to be forgotten).
    pub(crate) fn drain(&self) -> Counts {
        Counts {
            seen: self.seen.swap(0, Ordering::Relaxed),
            denied: u64::from(self.denied.swap(0, Ordering::Relaxed)),
        }
    }

    pub(crate) fn mark_reported(&self, demand: f64, short_ttl: bool) {
        let mut s = self.lock();
        s.reported_demand = demand;
        s.short_ttl = short_ttl;
    }

    /// Re-splits a key nobody has answered for yet (the live-gateway count may have changed).
    pub(crate) fn set_default_share(&self, share: f64, rates: Rates, now: u64) {
        let mut s = self.lock();
        if s.source == ShareSource::Default && s.share != share {
            self.set_share(&mut s, share, rates, now);
        }
    }

    fn set_share(&self, s: &mut SyncSide, share: f64, rates: Rates, now: u64) {
        s.share = share;
        self.share.store(share.to_bits(), Ordering::Relaxed);
        self.bucket
            .reconfigure(rates.per_ns * share, rates.burst * share, now);
    }

    /// Applies a sync answer. `smooth`: the first ticks after an outage (see
    /// [`share::smoothed_after_recovery`]).
    pub(crate) fn apply(&self, view: GlobalView, rates: Rates, now: u64, smooth: bool) {
        let mut s = self.lock();
        s.global_demand = view.total;
        s.live = view.live;
        s.last_sync = Some(now);
        let Some(mut share) = share::synced_share(view) else {
            return;
        };
        if smooth {
            share = share::smoothed_after_recovery(s.share, share);
        }
        s.source = ShareSource::Synced;
        if share != s.share {
            self.set_share(&mut s, share, rates, now);
        }
    }

    pub(crate) fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self, now: u64, rates: Rates) -> Snapshot {
        let s = self.lock();
        Snapshot {
            tokens: self.bucket.tokens(now),
            rate_per_sec: rates.per_sec() * s.share,
            capacity: (rates.burst * s.share).max(crate::bucket::MIN_CAPACITY),
            demand: s.demand,
            global_demand: (!s.global_demand.is_nan()).then_some(s.global_demand),
            live: (s.live > 0).then_some(s.live),
            share: s.share,
            last_sync_age: s
                .last_sync
                .map(|t| Duration::from_nanos(now.saturating_sub(t))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`crate::BYTES_PER_KEY`] covers a map slot (boxed key + `Arc` + control byte at 7/8
    /// load), the `Arc` block (two counts + state) and the key's allocation header.
    #[test]
    fn bytes_per_key_covers_the_layout() {
        let slot =
            (size_of::<Box<[u8]>>() + size_of::<std::sync::Arc<KeyState>>() + 1) as f64 / 0.875;
        let arc_block = 2 * size_of::<usize>() + size_of::<KeyState>();
        let key_header = 16;
        let estimate = slot.ceil() as usize + arc_block + key_header;
        assert!(estimate <= crate::BYTES_PER_KEY, "{estimate} bytes per key");
    }

    #[test]
    fn counters_are_drained_by_samples() {
        let rates = Rates {
            per_ns: 10.0 / NANOS_PER_SEC,
            burst: 2.0,
        };
        let k = KeyState::new(rates, 1.0, 0);
        let allowed = (0..5).filter(|_| k.check(0).allowed).count();
        assert_eq!(allowed, 2);
        let s = k.sample(100_000_000, 1e8, rates);
        assert_eq!((s.counts.seen, s.counts.denied), (5, 3));
        assert!(s.hot, "refused requests make a key hot");
        let s = k.sample(200_000_000, 1e8, rates);
        assert_eq!((s.counts.seen, s.counts.denied), (0, 0));
    }
}
