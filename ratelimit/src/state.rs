//! Per-key local state: the bucket, its share and the demand seen since the last sync.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::bucket::Bucket;
use crate::share::{self, GlobalView};

const NANOS_PER_SEC: f64 = 1e9;

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

/// One key's state behind a per-key lock (held for a few dozen nanoseconds, never across I/O).
#[derive(Debug)]
pub(crate) struct KeyState {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    bucket: Bucket,
    share: f64,
    source: ShareSource,
    /// Requests seen (allowed or denied) since `sampled_at`.
    seen: u64,
    sampled_at: u64,
    /// EWMA of requests seen per second.
    demand: f64,
    last_seen: u64,
    /// Refused a request or fell under a quarter of capacity since the last sample.
    pressured: bool,
    /// Last-known Σ demand of the fleet, requests per second; NaN before the first answer.
    global_demand: f64,
    live: u32,
    last_sync: Option<u64>,
    last_report_tick: u64,
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
    pub(crate) last_report_tick: u64,
    pub(crate) short_ttl: bool,
    pub(crate) source: ShareSource,
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
    pub(crate) fn new(rates: Rates, share: f64, now: u64, tick: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                bucket: Bucket::new(rates.per_ns * share, rates.burst * share, now),
                share,
                source: ShareSource::Default,
                seen: 0,
                sampled_at: now,
                demand: 0.0,
                last_seen: now,
                pressured: false,
                global_demand: f64::NAN,
                live: 0,
                last_sync: None,
                last_report_tick: tick,
                short_ttl: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections do arithmetic only and cannot leave `Inner` half-updated.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hot path: take a token if there is one and count the request as demand.
    #[inline]
    pub(crate) fn check(&self, now: u64) -> Local {
        let mut s = self.lock();
        let allowed = s.bucket.try_take(now);
        let tokens = s.bucket.tokens(now);
        s.seen += 1;
        if now > s.last_seen {
            s.last_seen = now;
        }
        if !allowed || tokens < 0.25 * s.bucket.capacity() {
            s.pressured = true;
        }
        Local {
            allowed,
            tokens,
            share: s.share,
            until_full: s.bucket.until_full(),
            wait: s.bucket.wait_for_one(),
        }
    }

    /// Folds the requests seen since the last sample into the demand EWMA (time constant
    /// `tau_ns`) and reports whether the key is hot. Clears the pressure flag.
    pub(crate) fn sample(&self, now: u64, tau_ns: f64, rates: Rates) -> Sample {
        let mut s = self.lock();
        let dt = now.saturating_sub(s.sampled_at) as f64;
        if dt > 0.0 {
            let observed = s.seen as f64 * NANOS_PER_SEC / dt;
            s.demand = share::ewma(s.demand, observed, dt, tau_ns);
            s.seen = 0;
            s.sampled_at = now;
        }
        let local_rate = s.bucket.rate() * NANOS_PER_SEC;
        let global = if s.global_demand.is_nan() {
            0.0
        } else {
            s.global_demand
        };
        let hot = share::is_hot(s.pressured, s.demand, local_rate, global, rates.per_sec());
        s.pressured = false;
        Sample {
            demand: s.demand,
            hot,
            last_seen: s.last_seen,
            last_report_tick: s.last_report_tick,
            short_ttl: s.short_ttl,
            source: s.source,
        }
    }

    pub(crate) fn mark_reported(&self, tick: u64, short_ttl: bool) {
        let mut s = self.lock();
        s.last_report_tick = tick;
        s.short_ttl = short_ttl;
    }

    /// Re-splits a key nobody has answered for yet (the live-gateway count may have changed).
    pub(crate) fn set_default_share(&self, share: f64, rates: Rates, now: u64) {
        let mut s = self.lock();
        if s.source == ShareSource::Default && s.share != share {
            s.share = share;
            s.bucket
                .reconfigure(rates.per_ns * share, rates.burst * share, now);
        }
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
        s.share = share;
        s.source = ShareSource::Synced;
        s.bucket
            .reconfigure(rates.per_ns * share, rates.burst * share, now);
    }

    pub(crate) fn last_seen(&self) -> u64 {
        self.lock().last_seen
    }

    pub(crate) fn snapshot(&self, now: u64) -> Snapshot {
        let mut s = self.lock();
        Snapshot {
            tokens: s.bucket.tokens(now),
            rate_per_sec: s.bucket.rate() * NANOS_PER_SEC,
            capacity: s.bucket.capacity(),
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
}
