//! The background sync: every interval, sample demand, evict idle keys, and exchange the
//! active keys' demand with Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::duration_nanos;
use crate::hash::group_of;
use crate::limiter::Shared;
use crate::redis::{CHUNK, GroupCall, PIPELINE_KEYS, Report};
use crate::share::default_share;
use crate::state::{KeyState, ShareSource};
use crate::{Limiter, RedisSync};

/// A key not hot is reported every `COOL_EVERY` ticks only, on its slot group's turn.
pub(crate) const COOL_EVERY: u64 = 10;
/// Each policy's keys are spread over this many Redis hashes ("slot groups"); one script call
/// reports all due keys of a group. Redis commands per tick are therefore bounded by
/// `policies × GROUPS`, whatever the number of keys, and on Redis Cluster a policy spreads
/// over `GROUPS` slots.
pub(crate) const GROUPS: u32 = 8;
/// A cold key whose demand reached this multiple of its last report reports at the next
/// tick rather than on its group's turn.
const RISE_FACTOR: f64 = 2.0;
/// … if it also rose by at least this many requests per second (noise on tiny demands).
const RISE_MIN: f64 = 1.0;
/// Redis keeps a hot key's entry for this many intervals after its last report.
const HOT_TTL_INTERVALS: u64 = 3;
/// Demand below this (requests per second) is not reported: the entry lapses.
const MIN_REPORTED_DEMAND: f64 = 0.01;
/// Longest pause between attempts while Redis is failing.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Ticks after a recovery whose answers are smoothed.
const SMOOTHED_TICKS: u8 = 3;
/// Eviction of least recently used keys starts above this fraction of `max_keys` …
const HIGH_WATER: f64 = 0.9;
/// … and brings the count down to this fraction.
const LOW_WATER: f64 = 0.8;

/// Where the limiter stands after an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Normal,
    /// The first successful tick after failures: report, ignore the answer (the other gateways'
    /// entries have lapsed, so the answer would overstate this one's share).
    ReportOnly,
    /// Apply answers, shrinking shares by at most half per tick.
    Smoothing(u8),
}

/// The sync loop's state. [`Limiter::spawn_sync`] runs one; tests and simulations may drive
/// [`tick`](Self::tick) themselves.
#[derive(Debug)]
pub struct SyncTask {
    limiter: Limiter,
    backend: Option<RedisSync>,
    recovery: Recovery,
    failures: u32,
    /// While failing, no Redis call before this instant (nanoseconds on the limiter's clock).
    retry_at: u64,
}

struct Item {
    policy: usize,
    group: u32,
    state: Arc<KeyState>,
    demand: f64,
    hot: bool,
}

impl SyncTask {
    /// A sync task for `limiter`; `backend` `None` means local limits only.
    pub fn new(limiter: &Limiter, backend: Option<RedisSync>) -> Self {
        Self {
            limiter: limiter.clone(),
            backend,
            recovery: Recovery::Normal,
            failures: 0,
            retry_at: 0,
        }
    }

    /// Runs ticks every `sync_interval` ±10% until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let interval = self.limiter.shared.options.sync_interval;
        loop {
            let jitter = 0.9 + 0.2 * fastrand::f64();
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval.mul_f64(jitter)) => {}
            }
            self.tick().await;
        }
        debug!("rate-limit sync stopped");
    }

    /// One tick: sample every key's demand, evict idle keys, then (unless backing off after
    /// failures) report the keys that need it to Redis and apply the answers.
    pub async fn tick(&mut self) {
        let started = Instant::now();
        let shared = Arc::clone(&self.limiter.shared);
        let now = shared.clock.now();
        let tick = shared.tick.fetch_add(1, Ordering::AcqRel) + 1;
        let items = collect(&shared, now, tick, self.backend.is_some());
        evict_lru(&shared);
        shared
            .metrics
            .tracked_keys
            .set(i64::try_from(shared.tracked.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        if now < self.retry_at {
            return;
        }
        let result = if items.is_empty() {
            if self.failures == 0 {
                return;
            }
            backend.ping().await.map(|()| Vec::new())
        } else {
            exchange(backend, &shared, &items).await
        };
        match result {
            Ok(views) => {
                if self.failures > 0 {
                    info!(failures = self.failures, "rate-limit sync recovered");
                    self.recovery = Recovery::ReportOnly;
                }
                let smooth = matches!(self.recovery, Recovery::Smoothing(_));
                if self.recovery != Recovery::ReportOnly {
                    for (item, view) in items.iter().zip(&views) {
                        let rates = shared.policies[item.policy].rates;
                        item.state.apply(*view, rates, now, smooth);
                    }
                }
                for item in items.iter().take(views.len()) {
                    item.state.mark_reported(item.demand, item.hot);
                }
                self.recovery = match self.recovery {
                    Recovery::ReportOnly => Recovery::Smoothing(SMOOTHED_TICKS),
                    Recovery::Smoothing(n) if n > 1 => Recovery::Smoothing(n - 1),
                    _ => Recovery::Normal,
                };
                self.failures = 0;
                shared.degraded.store(false, Ordering::Relaxed);
                shared.metrics.set_mode(false);
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let backoff = backoff(shared.options.sync_interval, self.failures);
                self.retry_at = now.saturating_add(duration_nanos(backoff));
                if !shared.degraded.swap(true, Ordering::Relaxed) {
                    warn!(%error, "rate-limit sync failed; enforcing last-known shares");
                } else {
                    debug!(%error, failures = self.failures, ?backoff, "rate-limit sync still failing");
                }
                shared.metrics.set_mode(true);
                shared.metrics.sync_errors.inc();
            }
        }
        shared
            .metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Samples every key, evicts the idle ones and returns those to report this tick, ordered by
/// policy and slot group.
///
/// A key is due when it is hot (reported every tick, short TTL), when its last report was hot
/// (one more report, with the long TTL, so its entry does not lapse), when its demand rose by
/// [`RISE_FACTOR`] since its last report, or on its group's turn: group `g` of policy `p` has
/// its turn at ticks where `(tick + g + p·GROUPS) % COOL_EVERY == 0`. Cold keys of one group
/// thus report together, in one script call every `COOL_EVERY` ticks.
fn collect(shared: &Shared, now: u64, tick: u64, reporting: bool) -> Vec<Item> {
    let tau = duration_nanos(shared.options.sync_interval) as f64;
    let default = default_share(shared.live.load(Ordering::Relaxed));
    let mut items = Vec::new();
    let mut idle = Vec::new();
    for (index, policy) in shared.policies.iter().enumerate() {
        policy.record(policy.overflow.drain());
        policy
            .overflow
            .set_default_share(default, policy.rates, now);
        policy.keys.for_each(|state| {
            let sample = state.sample(now, tau, policy.rates);
            policy.record(sample.counts);
            if now.saturating_sub(sample.last_seen) > policy.idle_ns {
                idle.push(Arc::clone(state));
                return;
            }
            if sample.source == ShareSource::Default {
                state.set_default_share(default, policy.rates, now);
            }
            if !reporting || sample.demand < MIN_REPORTED_DEMAND {
                return;
            }
            let group = group_of(state.key(), GROUPS);
            let turn =
                (tick + u64::from(group) + index as u64 * u64::from(GROUPS)) % COOL_EVERY == 0;
            let risen = sample.demand >= RISE_FACTOR * sample.reported_demand
                && sample.demand >= sample.reported_demand + RISE_MIN;
            if sample.hot || sample.short_ttl || turn || risen {
                items.push(Item {
                    policy: index,
                    group,
                    state: Arc::clone(state),
                    demand: sample.demand,
                    hot: sample.hot,
                });
            }
        });
        for state in idle.drain(..) {
            // Re-checked under the shard lock: a request may have arrived meanwhile.
            let removed = policy.keys.remove_if(state.key(), |s| {
                now.saturating_sub(s.last_seen()) > policy.idle_ns
            });
            if let Some(state) = removed {
                state.retire();
                policy.record(state.drain());
                shared.tracked.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    items.sort_unstable_by_key(|item| (item.policy, item.group));
    items
}

/// Above [`HIGH_WATER`] of `max_keys`, forgets the least recently used keys down to
/// [`LOW_WATER`], so new keys can be tracked again.
fn evict_lru(shared: &Shared) {
    let max = shared.options.max_keys as f64;
    let tracked = shared.tracked.load(Ordering::Relaxed);
    if (tracked as f64) <= max * HIGH_WATER {
        return;
    }
    let excess = tracked.saturating_sub((max * LOW_WATER) as usize);
    let mut all: Vec<(u64, usize, Arc<KeyState>)> = Vec::with_capacity(tracked);
    for (index, policy) in shared.policies.iter().enumerate() {
        policy
            .keys
            .for_each(|state| all.push((state.last_seen(), index, Arc::clone(state))));
    }
    if excess == 0 || all.is_empty() {
        return;
    }
    let nth = excess.min(all.len()) - 1;
    all.select_nth_unstable_by_key(nth, |(seen, _, _)| *seen);
    let cutoff = all[nth].0;
    let mut evicted = 0usize;
    for (_, index, state) in all.iter().take(nth + 1) {
        let keys = &shared.policies[*index].keys;
        if let Some(state) = keys.remove_if(state.key(), |s| s.last_seen() <= cutoff) {
            state.retire();
            shared.policies[*index].record(state.drain());
            shared.tracked.fetch_sub(1, Ordering::AcqRel);
            evicted += 1;
        }
    }
    debug!(
        evicted,
        tracked, "rate limiter over its key budget; evicted least recently used keys"
    );
}

/// Reports `items` (ordered by policy and group): one script call per group and chunk of
/// [`CHUNK`] keys, calls pipelined up to [`PIPELINE_KEYS`] keys per round trip.
async fn exchange(
    backend: &mut RedisSync,
    shared: &Shared,
    items: &[Item],
) -> Result<Vec<crate::share::GlobalView>, crate::redis::SyncError> {
    let interval_ms = u64::try_from(shared.options.sync_interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let hot_ttl = interval_ms.saturating_mul(HOT_TTL_INTERVALS);
    let cool_ttl = interval_ms.saturating_mul(COOL_EVERY + HOT_TTL_INTERVALS);
    let reports: Vec<Report<'_>> = items
        .iter()
        .map(|item| Report {
            key: item.state.key(),
            demand_milli: (item.demand * 1000.0).round() as u64,
            ttl_ms: if item.hot { hot_ttl } else { cool_ttl },
        })
        .collect();
    let mut calls = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let (policy, group) = (items[start].policy, items[start].group);
        let run = items[start..]
            .iter()
            .take(CHUNK)
            .take_while(|i| i.policy == policy && i.group == group)
            .count();
        calls.push(GroupCall {
            policy: &shared.configs[policy].name,
            group,
            reports: &reports[start..start + run],
        });
        start += run;
    }
    let mut views = Vec::with_capacity(items.len());
    let mut rest = &calls[..];
    while !rest.is_empty() {
        let mut keys = 0;
        let n = rest
            .iter()
            .take_while(|c| {
                keys += c.reports.len();
                keys <= PIPELINE_KEYS || keys == c.reports.len()
            })
            .count();
        let (batch, next) = rest.split_at(n);
        rest = next;
        shared.metrics.redis_commands.inc_by(batch.len() as u64);
        views.extend(
            backend
                .exchange(&shared.options.gateway_id, cool_ttl, batch)
                .await?,
        );
    }
    Ok(views)
}

/// Pause after `failures` consecutive failures: doubling from the interval, capped at
/// [`MAX_BACKOFF`], with jitter in [50%, 100%] so gateways do not retry in step.
pub(crate) fn backoff(interval: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = interval
        .saturating_mul(1 << exp)
        .min(MAX_BACKOFF)
        .max(interval);
    base.mul_f64(0.5 + 0.5 * fastrand::f64())
}
