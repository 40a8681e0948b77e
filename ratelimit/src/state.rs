//! Per-key local state: the bucket, its share and the demand seen since the last sync.
//!
//! Split by who writes it, one cache line each, so that two cores checking the same key move
//! one line between them per check and nothing else:
//!
//! * the **bucket line**, written by every check: the bucket's word and parameters, the request
//!   counters, the share. A check's first access to it is a read-modify-write (the counter),
//!   which takes the line exclusively; the bucket's load and compare-and-swap that follow hit a
//!   line this core already owns.
//! * the **key line**, read by every check and written about once per millisecond: the key (a
//!   lookup compares it before touching the bucket line), the last-seen time and the flags.
//! * the **sync line**, which only the sync task touches: demand EWMA, last answer, report
//!   bookkeeping, behind a mutex that checks never take.
//!
//! Sharing lines would cost a coherence miss per field group per check under contention; the
//! price is memory (see [`crate::BYTES_PER_KEY`]). The request path touches only atomics: no
//! lock, no allocation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::bucket::{AtomicBucket, Taken};
use crate::key::KeyBytes;
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
#[repr(C)]
pub(crate) struct KeyState {
    // Sync line first: after the `Arc`'s counts (padded to a line) the block is 256 bytes and
    // the key and bucket lines are its second 128-byte half when the allocator aligns blocks
    // to their size, as mimalloc (the gateway's) does for small ones. The adjacent-line
    // prefetcher then brings the bucket line with the key line when a lookup misses.
    sync: Mutex<SyncSide>,
    key: KeyLine,
    hot: BucketLine,
}

/// Written by every check.
#[derive(Debug)]
#[repr(C, align(64))]
struct BucketLine {
    bucket: AtomicBucket,
    /// Requests seen (allowed or denied) since the sync task last drained the counters.
    seen: AtomicU64,
    /// Of those, the denied ones.
    denied: AtomicU64,
    /// `f64` bits of the current share (for `remaining`). Written only under the sync lock.
    share: AtomicU64,
}

/// Read by every check, rarely written.
#[derive(Debug)]
#[repr(C, align(64))]
struct KeyLine {
    /// Clock of the latest check, within [`LAST_SEEN_GRANULE`].
    last_seen: AtomicU64,
    key: KeyBytes,
    /// The key was removed from the table; checks that still hold this state (per-thread
    /// memos, lookups racing with the removal) must not use it any more.
    retired: AtomicBool,
    /// Refused a request or fell under a quarter of capacity since the last sample.
    pressured: AtomicBool,
}

/// Kept to one cache line with its mutex (a test checks): the share lives on the bucket line.
#[derive(Debug)]
struct SyncSide {
    source: ShareSource,
    sampled_at: u64,
    /// Requests drained from `seen` but not yet folded into `demand` (no time had passed).
    unsampled: u64,
    /// EWMA of requests seen per second.
    demand: f64,
    /// Last-known Σ demand of the fleet, requests per second; NaN before the first answer.
    global_demand: f64,
    live: u32,
    /// When the last answer was applied; meaningful if `synced`.
    last_sync: u64,
    synced: bool,
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
    pub(crate) fn new(key: &[u8], rates: Rates, share: f64, now: u64) -> Self {
        Self {
            sync: Mutex::new(SyncSide {
                source: ShareSource::Default,
                sampled_at: now,
                unsampled: 0,
                demand: 0.0,
                global_demand: f64::NAN,
                live: 0,
                last_sync: 0,
                synced: false,
                reported_demand: f64::NAN,
                short_ttl: false,
            }),
            key: KeyLine {
                last_seen: AtomicU64::new(now),
                key: KeyBytes::new(key),
                retired: AtomicBool::new(false),
                pressured: AtomicBool::new(false),
            },
            hot: BucketLine {
                bucket: AtomicBucket::new(rates.per_ns * share, rates.burst * share, now),
                seen: AtomicU64::new(0),
                denied: AtomicU64::new(0),
                share: AtomicU64::new(share.to_bits()),
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, SyncSide> {
        // The critical sections do arithmetic only and cannot leave the state half-updated.
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key this state counts for.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        self.key.key.as_bytes()
    }

    /// [`check`](Self::check), unless the state was retired: then `None`, and the caller looks
    /// the key up again.
    #[inline]
    pub(crate) fn check_live(&self, now: u64) -> Option<Local> {
        // The key line is read-mostly: this load hits in cache even while other cores hammer
        // the bucket line.
        if self.is_retired() {
            return None;
        }
        Some(self.check(now))
    }

    /// The hot path: take a token if there is one and count the request as demand. Lock-free:
    /// a `fetch_add` on the request counter, then (if a token is there) one compare-and-swap
    /// on the bucket, both on the bucket line.
    #[inline(always)]
    pub(crate) fn check(&self, now: u64) -> Local {
        self.lease(now, 1, 0).0
    }

    /// [`check`](Self::check), taking up to `want` tokens for this request and the next ones
    /// of the calling thread (see [`crate::recent`]): `want` if a quarter of the bucket is left
    /// afterwards, else one, or none (refused). Also counts `uncounted` requests the caller
    /// admitted on tokens of its previous lease. Returns the tokens taken and their mark for
    /// [`end_lease`](Self::end_lease).
    #[inline(always)]
    pub(crate) fn lease(&self, now: u64, want: u64, uncounted: u64) -> (Local, u64, Taken) {
        let hot = &self.hot;
        // First, before any plain load of the bucket line: a read-modify-write takes the line
        // exclusively in one step, so the bucket's load and compare-and-swap below hit it. A
        // load first would fetch the line shared and the CAS would need a second transfer
        // (and fail if another core wrote in between).
        hot.seen.fetch_add(1 + uncounted, Ordering::Relaxed);
        let (take, taken, mark) = hot.bucket.try_take_up_to(now, want);
        if !take.allowed {
            hot.denied.fetch_add(1, Ordering::Relaxed);
        }
        let share = f64::from_bits(hot.share.load(Ordering::Relaxed));
        if now > self.key.last_seen.load(Ordering::Relaxed) + LAST_SEEN_GRANULE {
            self.key.last_seen.fetch_max(now, Ordering::Relaxed);
        }
        if take.low && !self.key.pressured.load(Ordering::Relaxed) {
            self.key.pressured.store(true, Ordering::Relaxed);
        }
        let local = Local {
            allowed: take.allowed,
            tokens: take.tokens,
            share,
            until_full: take.until_full,
            wait: take.wait,
        };
        (local, taken, mark)
    }

    /// Ends a lease: counts the `uncounted` requests admitted on it and, if `now` is known,
    /// returns what is still owed of its `unused` tokens (see
    /// [`AtomicBucket::give_back`](crate::bucket::AtomicBucket::give_back)).
    pub(crate) fn end_lease(&self, unused: u64, taken: Taken, uncounted: u64, now: Option<u64>) {
        if uncounted > 0 {
            self.hot.seen.fetch_add(uncounted, Ordering::Relaxed);
        }
        if let (true, Some(now)) = (unused > 0, now) {
            self.hot.bucket.give_back(unused, taken, now);
        }
    }

    /// Whether the key was removed from the table (see [`check_live`](Self::check_live)).
    #[inline]
    pub(crate) fn is_retired(&self) -> bool {
        self.key.retired.load(Ordering::Acquire)
    }

    fn share(&self) -> f64 {
        f64::from_bits(self.hot.share.load(Ordering::Relaxed))
    }

    /// Folds the requests seen since the last sample into the demand EWMA (time constant
    /// `tau_ns`, longer for thin keys: [`share::demand_tau`]) and reports whether the key is hot. Drains the counters and clears the
    /// pressure flag.
    pub(crate) fn sample(&self, now: u64, tau_ns: f64, rates: Rates) -> Sample {
        let mut s = self.lock();
        let counts = self.drain();
        s.unsampled += counts.seen;
        let dt = now.saturating_sub(s.sampled_at) as f64;
        if dt > 0.0 {
            let observed = s.unsampled as f64 * NANOS_PER_SEC / dt;
            let tau = share::demand_tau(tau_ns, s.demand.max(observed));
            s.demand = share::ewma(s.demand, observed, dt, tau);
            s.sampled_at = now;
            s.unsampled = 0;
        }
        let local_rate = rates.per_sec() * self.share();
        let global = if s.global_demand.is_nan() {
            0.0
        } else {
            s.global_demand
        };
        let pressured = self.key.pressured.swap(false, Ordering::Relaxed);
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

    /// Marks a state removed from the table, so checks still holding it (per-thread memos,
    /// racing lookups) stop using it.
    pub(crate) fn retire(&self) {
        self.key.retired.store(true, Ordering::Release);
    }

    /// Takes the decision counters (for the metrics of a key about to be forgotten).
    pub(crate) fn drain(&self) -> Counts {
        Counts {
            seen: self.hot.seen.swap(0, Ordering::Relaxed),
            denied: self.hot.denied.swap(0, Ordering::Relaxed),
        }
    }

    pub(crate) fn mark_reported(&self, demand: f64, short_ttl: bool) {
        let mut s = self.lock();
        s.reported_demand = demand;
        s.short_ttl = short_ttl;
    }

    /// Re-splits a key nobody has answered for yet (the live-gateway count may have changed).
    pub(crate) fn set_default_share(&self, share: f64, rates: Rates, now: u64) {
        let s = self.lock();
        if s.source == ShareSource::Default && self.share() != share {
            self.set_share(&s, share, rates, now);
        }
    }

    /// The caller holds the sync lock (`_s`): the share and the bucket change together, one
    /// writer at a time.
    fn set_share(&self, _s: &SyncSide, share: f64, rates: Rates, now: u64) {
        self.hot.share.store(share.to_bits(), Ordering::Relaxed);
        self.hot
            .bucket
            .reconfigure(rates.per_ns * share, rates.burst * share, now);
    }

    /// Applies a sync answer. `smooth`: the first ticks after an outage (see
    /// [`share::smoothed_after_recovery`]).
    pub(crate) fn apply(&self, view: GlobalView, rates: Rates, now: u64, smooth: bool) {
        let mut s = self.lock();
        s.global_demand = view.total;
        s.live = view.live;
        s.last_sync = now;
        s.synced = true;
        let Some(mut share) = share::synced_share(view) else {
            return;
        };
        let current = self.share();
        if smooth {
            share = share::smoothed_after_recovery(current, share);
        }
        s.source = ShareSource::Synced;
        if share != current {
            self.set_share(&s, share, rates, now);
        }
    }

    pub(crate) fn last_seen(&self) -> u64 {
        self.key.last_seen.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self, now: u64, rates: Rates) -> Snapshot {
        let s = self.lock();
        let share = self.share();
        Snapshot {
            tokens: self.hot.bucket.tokens(now),
            rate_per_sec: rates.per_sec() * share,
            capacity: (rates.burst * share).max(crate::bucket::MIN_CAPACITY),
            demand: s.demand,
            global_demand: (!s.global_demand.is_nan()).then_some(s.global_demand),
            live: (s.live > 0).then_some(s.live),
            share,
            last_sync_age: s
                .synced
                .then(|| Duration::from_nanos(now.saturating_sub(s.last_sync))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three cache lines, none shared with another: the contended-check cost depends on it.
    #[test]
    fn each_writer_has_its_own_cache_line() {
        assert_eq!(size_of::<BucketLine>(), 64);
        assert_eq!(size_of::<KeyLine>(), 64);
        assert!(size_of::<Mutex<SyncSide>>() <= 64);
        assert_eq!((size_of::<KeyState>(), align_of::<KeyState>()), (192, 64));
    }

    /// [`crate::BYTES_PER_KEY`] covers the `Arc` block (two counts padded to the state's
    /// alignment, then the state) and the table's slots (see `table.rs`) at its lowest load,
    /// twice over for the emptied arrays growth leaves behind.
    #[test]
    fn bytes_per_key_covers_the_layout() {
        let arc_block = align_of::<KeyState>() + size_of::<KeyState>();
        let slots = crate::table::SLOT_BYTES as f64 / crate::table::MIN_LOAD * 2.0;
        let estimate = arc_block + slots.ceil() as usize;
        assert!(estimate <= crate::BYTES_PER_KEY, "{estimate} bytes per key");
    }

    #[test]
    fn counters_are_drained_by_samples() {
        let rates = Rates {
            per_ns: 10.0 / NANOS_PER_SEC,
            burst: 2.0,
        };
        let k = KeyState::new(b"k", rates, 1.0, 0);
        let allowed = (0..5).filter(|_| k.check(0).allowed).count();
        assert_eq!(allowed, 2);
        let s = k.sample(100_000_000, 1e8, rates);
        assert_eq!((s.counts.seen, s.counts.denied), (5, 3));
        assert!(s.hot, "refused requests make a key hot");
        let s = k.sample(200_000_000, 1e8, rates);
        assert_eq!((s.counts.seen, s.counts.denied), (0, 0));
    }
}
