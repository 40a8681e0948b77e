//! [`Limiter`]: the per-key local decision (the request path) and its public handle.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock, duration_nanos};
use crate::metrics::{Metrics, Outcome};
use crate::recent;
use crate::share::default_share;
use crate::state::{Counts, KeyState, Local, Rates};
use crate::sync::SyncTask;
use crate::table::KeyTable;
use crate::{LimiterError, PolicyConfig, RedisSync};

/// Settings of a [`Limiter`] (`[ratelimit]` plus the gateway's identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterOptions {
    /// How often shares are exchanged with Redis (±10% jitter). `[ratelimit].sync_interval`.
    pub sync_interval: Duration,
    /// Most keys tracked individually, over all policies. `[ratelimit].max_keys`.
    pub max_keys: usize,
    /// This gateway's id in Redis; unique in the fleet. `[server].gateway_id`.
    pub gateway_id: String,
    /// A key with no request for this long (and at least the time its bucket takes to
    /// refill, `per · burst / limit`) is forgotten.
    pub idle_after: Duration,
}

impl LimiterOptions {
    /// Defaults of SPEC §3 (`sync_interval` 100ms, `max_keys` 1,000,000) and `idle_after` 30s.
    pub fn new(gateway_id: impl Into<String>) -> Self {
        Self {
            sync_interval: Duration::from_millis(100),
            max_keys: 1_000_000,
            gateway_id: gateway_id.into(),
            idle_after: Duration::from_secs(30),
        }
    }
}

/// Whether the limiter currently hears from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimiterMode {
    /// The last sync succeeded (or no Redis is configured: limits are local).
    Synced,
    /// The last sync failed or timed out: each key keeps its last-known share, keys with
    /// nothing known get `limit / live gateways`.
    Degraded,
}

impl LimiterMode {
    /// `synced` or `degraded`, as in metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Degraded => "degraded",
        }
    }
}

/// The answer to one [`Limiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Estimated requests left for this key fleet-wide right now (local tokens divided by this
    /// gateway's share, at most the burst). For the `RateLimit` header's `r`.
    pub remaining: u64,
    /// Until the local bucket is full again. For the `RateLimit` header's `t`.
    pub reset_after: Duration,
    /// For a denied request, until a token is available here. For `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// One key's state as seen by this gateway, for `GET /admin/ratelimit/{policy}/{key}`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyView {
    /// The policy's name.
    pub policy: String,
    /// Requests allowed per `per`, fleet-wide.
    pub limit: u64,
    /// The policy's window.
    pub per: Duration,
    /// Tokens in the local bucket now.
    pub tokens: f64,
    /// Local refill rate, requests per second (`limit / per × share`).
    pub local_rate: f64,
    /// Local bucket capacity (`burst × share`, at least 1).
    pub local_burst: f64,
    /// This gateway's demand (allowed + denied), requests per second, smoothed.
    pub local_demand: f64,
    /// Fleet-wide demand at the last sync, requests per second; `None` before the first.
    pub global_demand: Option<f64>,
    /// Gateways that reported the key at the last sync.
    pub live_gateways: Option<u32>,
    /// This gateway's fraction of the limit.
    pub share: f64,
    /// The limiter's mode.
    pub mode: LimiterMode,
    /// Time since the last sync answer for this key; `None` if there was none.
    pub last_sync_age: Option<Duration>,
}

/// A rate limiter for a set of policies: local decisions, shares synchronised through Redis.
///
/// Cheap to clone (an `Arc`); all clones share state. See the [crate docs](crate) for the
/// algorithm and its bounds.
#[derive(Clone)]
pub struct Limiter {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("policies", &self.shared.configs.len())
            .field("tracked", &self.tracked_keys())
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) configs: Vec<PolicyConfig>,
    pub(crate) policies: Vec<PolicyRt>,
    pub(crate) options: LimiterOptions,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) degraded: AtomicBool,
    pub(crate) live: AtomicUsize,
    pub(crate) tracked: AtomicUsize,
    pub(crate) tick: AtomicU64,
    pub(crate) metrics: Metrics,
}

/// A policy at run time.
pub(crate) struct PolicyRt {
    /// Process-wide id, for the per-thread memo of recent keys.
    uid: u64,
    pub(crate) rates: Rates,
    /// Idle time after which a key is evicted, nanoseconds.
    pub(crate) idle_ns: u64,
    /// Looked up by `&[u8]` without a lock: a check of a tracked key allocates nothing and
    /// writes nothing but the key's state.
    pub(crate) keys: KeyTable,
    /// Shared by keys that arrive while `max_keys` are tracked.
    pub(crate) overflow: KeyState,
    allowed: Counter,
    denied: Counter,
}

impl PolicyRt {
    /// Adds decisions counted on keys to `ratelimit_decisions_total`. Checks count on their
    /// key (a word they write anyway) rather than on these shared counters, whose cache line
    /// would bounce between cores on every request; the sync task moves the counts here
    /// every tick and when it forgets a key.
    pub(crate) fn record(&self, counts: Counts) {
        if counts.seen > counts.denied {
            self.allowed.inc_by(counts.seen - counts.denied);
        }
        if counts.denied > 0 {
            self.denied.inc_by(counts.denied);
        }
    }
}

impl Limiter {
    /// A limiter on the system clock.
    ///
    /// # Errors
    ///
    /// A policy is invalid or two share a name; an option is zero or empty.
    pub fn new(policies: Vec<PolicyConfig>, options: LimiterOptions) -> Result<Self, LimiterError> {
        Self::with_clock(policies, options, Arc::new(SystemClock::new()))
    }

    /// A limiter reading time from `clock` (tests and simulations use a
    /// [`ManualClock`](crate::ManualClock)).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_clock(
        policies: Vec<PolicyConfig>,
        options: LimiterOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LimiterError> {
        validate(&policies, &options)?;
        let metrics = Metrics::new();
        metrics.set_mode(false);
        let now = clock.now();
        let rts = policies
            .iter()
            .map(|p| {
                let per_ns = p.limit as f64 / p.per.as_nanos() as f64;
                let rates = Rates {
                    per_ns,
                    burst: p.burst as f64,
                };
                let refill_ns = (p.burst as f64 / per_ns).ceil() as u64;
                PolicyRt {
                    uid: crate::recent::next_uid(),
                    rates,
                    idle_ns: duration_nanos(options.idle_after).max(refill_ns),
                    keys: KeyTable::new(options.max_keys),
                    overflow: KeyState::new(b"", rates, 1.0, now),
                    allowed: metrics.decision_counter(&p.name, Outcome::Allowed),
                    denied: metrics.decision_counter(&p.name, Outcome::Denied),
                }
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                configs: policies,
                policies: rts,
                options,
                clock,
                degraded: AtomicBool::new(false),
                live: AtomicUsize::new(1),
                tracked: AtomicUsize::new(0),
                tick: AtomicU64::new(0),
                metrics,
            }),
        })
    }

    /// The policies, in the order their indexes refer to in [`check`](Self::check).
    pub fn policies(&self) -> &[PolicyConfig] {
        &self.shared.configs
    }

    /// Decides one request for `key` under policy number `policy`. Never blocks on I/O;
    /// allocates only when it starts tracking a new key.
    ///
    /// An out-of-range `policy` is a caller bug: the request is allowed (fail open) and a
    /// debug build panics.
    pub fn check(&self, policy: usize, key: &[u8]) -> Decision {
        let shared = &*self.shared;
        let Some(p) = shared.policies.get(policy) else {
            debug_assert!(false, "policy index {policy} out of range");
            return Decision {
                allowed: true,
                remaining: 0,
                reset_after: Duration::ZERO,
                retry_after: None,
            };
        };
        let now = shared.clock.now();
        // The table (hash, slot, `arc-swap` load) only when this thread's last check under this
        // policy was another key.
        let local = match recent::check(p.uid, key, now) {
            Some(local) => local,
            None => {
                let hash = p.keys.hash(key);
                let found = p.keys.find(hash, key, |state| {
                    let local = state.check_live(now)?;
                    recent::remember(p.uid, key, state, now);
                    Some(local)
                });
                match found.flatten() {
                    Some(local) => local,
                    None => self.insert_and_check(p, hash, key, now),
                }
            }
        };
        let remaining = if local.share > 0.0 {
            (local.tokens / local.share).min(p.rates.burst).max(0.0) as u64
        } else {
            0
        };
        Decision {
            allowed: local.allowed,
            remaining,
            reset_after: Duration::from_nanos(local.until_full),
            retry_after: (!local.allowed).then(|| Duration::from_nanos(local.wait)),
        }
    }

    /// The key was not found without a lock: look again under the shard's lock and insert it
    /// if it is absent and `max_keys` allows, else count on the policy's overflow bucket.
    #[cold]
    fn insert_and_check(&self, p: &PolicyRt, hash: u64, key: &[u8], now: u64) -> Local {
        let shared = &*self.shared;
        let state = p.keys.get_or_insert(hash, key, || {
            // Never above `max_keys`, even for an instant, and no write once there: during a
            // flood of new keys every check would otherwise bounce this counter's line.
            let max = shared.options.max_keys;
            shared
                .tracked
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .ok()?;
            let share = default_share(shared.live.load(Ordering::Relaxed));
            Some(KeyState::new(key, p.rates, share, now))
        });
        match state {
            Some(state) => {
                recent::remember(p.uid, key, &state, now);
                // Not `check_live`: a state the sync task retires this instant still counts
                // this one request (as any check racing with a retirement may).
                state.check(now)
            }
            None => p.overflow.check(now),
        }
    }

    /// Sets the number of live gateways (from control-plane heartbeats). New keys start with
    /// `1 / n` of each limit, and so do all keys when nothing is known from Redis. `0` counts
    /// as 1.
    pub fn set_live_gateways(&self, n: usize) {
        self.shared.live.store(n.max(1), Ordering::Relaxed);
    }

    /// The current mode.
    pub fn mode(&self) -> LimiterMode {
        if self.shared.degraded.load(Ordering::Relaxed) {
            LimiterMode::Degraded
        } else {
            LimiterMode::Synced
        }
    }

    /// Keys tracked individually, over all policies (at most `max_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.shared.tracked.load(Ordering::Relaxed)
    }

    /// This gateway's view of `key` under the policy named `policy`; `None` if there is no
    /// such policy or the key is not tracked (never seen, evicted, or over `max_keys`).
    pub fn inspect(&self, policy: &str, key: &[u8]) -> Option<KeyView> {
        let shared = &*self.shared;
        let index = shared.configs.iter().position(|p| p.name == policy)?;
        let config = &shared.configs[index];
        let p = &shared.policies[index];
        let s = p.keys.get(key)?.snapshot(shared.clock.now(), p.rates);
        Some(KeyView {
            policy: config.name.clone(),
            limit: config.limit,
            per: config.per,
            tokens: s.tokens,
            local_rate: s.rate_per_sec,
            local_burst: s.capacity,
            local_demand: s.demand,
            global_demand: s.global_demand,
            live_gateways: s.live,
            share: s.share,
            mode: self.mode(),
            last_sync_age: s.last_sync_age,
        })
    }

    /// Starts the background sync task on the current tokio runtime. With `backend` `None`
    /// (no `[redis]`), limits are local (each gateway enforces the full limit) and the task
    /// only evicts idle keys. The task ends when `shutdown` is cancelled.
    pub fn spawn_sync(
        &self,
        backend: Option<RedisSync>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(SyncTask::new(self, backend).run(shutdown))
    }

    /// Registers the limiter's metrics under the `ratelimit_` prefix: decisions by policy and
    /// outcome, mode, sync duration, sync errors, tracked keys and Redis commands.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.shared.metrics.register(registry);
    }
}

fn validate(policies: &[PolicyConfig], options: &LimiterOptions) -> Result<(), LimiterError> {
    let mut names = HashSet::new();
    for p in policies {
        p.validate().map_err(|source| LimiterError::InvalidPolicy {
            name: p.name.clone(),
            source,
        })?;
        if !names.insert(p.name.as_str()) {
            return Err(LimiterError::DuplicatePolicy(p.name.clone()));
        }
    }
    if options.sync_interval.is_zero() {
        return Err(LimiterError::ZeroSyncInterval);
    }
    if options.max_keys == 0 {
        return Err(LimiterError::ZeroMaxKeys);
    }
    if options.idle_after.is_zero() {
        return Err(LimiterError::ZeroIdleAfter);
    }
    if options.gateway_id.is_empty() {
        return Err(LimiterError::EmptyGatewayId);
    }
    Ok(())
}
