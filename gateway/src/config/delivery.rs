//! `[delivery]`: the durable async queue behind `Prefer: respond-async`.

use std::time::Duration;

use toml::Spanned;

use super::raw::RawDelivery;
use super::validate::{Ctx, Result, or_default};

/// Most concurrent deliveries one gateway may run.
pub const MAX_WORKERS: usize = 4096;
/// Most replicas an enqueue may wait for.
pub const MAX_WAIT_REPLICAS: u32 = 16;

/// `[delivery]`: workers and retry policy of the async delivery queue. Needs `[redis]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Concurrent deliveries per gateway; 0 means this gateway only enqueues. Default 16.
    pub workers: usize,
    /// Attempts before an entry is dead-lettered; at least 1. Default 5.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter. Default 200ms, not zero.
    pub backoff_base: Duration,
    /// Cap on the retry delay; at least `backoff_base`. Default 30s.
    pub backoff_max: Duration,
    /// Entries older than this dead-letter with reason `expired`. Default 24h, not zero.
    pub max_age: Duration,
    /// Pending entries per target cell; beyond, 503 `queue_full`. Default 100000, at least 1.
    pub max_pending: u64,
    /// Largest body stored for async delivery, in bytes; larger gets 413. Default 1 MiB,
    /// not zero.
    pub max_body: u64,
    /// How long an entry may sit unacknowledged with a worker before another worker claims
    /// it (the worker is presumed dead). Must exceed `server.request_timeout`, or a slow but
    /// live delivery is claimed and sent twice. Default 30s.
    pub visibility_timeout: Duration,
    /// How long status records of delivered entries, and idempotency keys, are kept.
    /// Dead-lettered entries stay until replayed or purged. Default 24h, not zero.
    pub retention: Duration,
    /// Budget of the Redis write that accepts an async request (and of status lookups).
    /// `None`: `[redis].timeout`, as for every Redis call made on behalf of a request.
    pub enqueue_timeout: Option<Duration>,
    /// Replicas that must hold an accepted entry before the gateway answers 202 (`WAIT`
    /// within the enqueue budget; fewer in time is 503 `queue_unavailable`), so a master lost
    /// right after acknowledging does not lose the entry. Default 1 on a Redis Cluster (each
    /// master has a replica to fail over to), 0 on one server.
    pub wait_replicas: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            max_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            max_age: Duration::from_secs(24 * 60 * 60),
            max_pending: 100_000,
            max_body: 1024 * 1024,
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 60 * 60),
            enqueue_timeout: None,
            wait_replicas: 0,
        }
    }
}

/// `cluster`: whether `[redis]` is a Redis Cluster (the default of `wait_replicas`).
pub(super) fn build(
    raw: &Spanned<RawDelivery>,
    cluster: bool,
    ctx: &Ctx<'_>,
) -> Result<DeliveryConfig> {
    let d = DeliveryConfig::default();
    let raw = raw.get_ref();
    let workers = or_default(raw.workers.as_ref(), d.workers, |v| {
        let n = ctx.usize_at_least(v, 0, "`delivery.workers`")?;
        if n > MAX_WORKERS {
            return Err(ctx.error_at(
                v.span(),
                format!("`delivery.workers` must be at most {MAX_WORKERS}, got {n}"),
            ));
        }
        Ok(n)
    })?;
    let max_attempts = or_default(raw.max_attempts.as_ref(), d.max_attempts, |v| {
        let attempts = ctx.int_at_least(v, 1, "`delivery.max_attempts`")?;
        u32::try_from(attempts).map_err(|_| {
            ctx.error_at(
                v.span(),
                format!("`delivery.max_attempts` is too large, got {attempts}"),
            )
        })
    })?;
    let backoff_base = or_default(raw.backoff_base.as_ref(), d.backoff_base, |v| {
        ctx.positive_duration(v, "`delivery.backoff_base`")
    })?;
    let backoff_max = or_default(raw.backoff_max.as_ref(), d.backoff_max, |v| {
        ctx.duration(v, "`delivery.backoff_max`")
    })?;
    if backoff_max < backoff_base {
        let span = raw
            .backoff_max
            .as_ref()
            .or(raw.backoff_base.as_ref())
            .map_or(0..0, Spanned::span);
        return Err(ctx.error_at(
            span,
            format!(
                "`delivery.backoff_max` ({}) must be at least `delivery.backoff_base` ({})",
                humantime::format_duration(backoff_max),
                humantime::format_duration(backoff_base)
            ),
        ));
    }
    let max_age = or_default(raw.max_age.as_ref(), d.max_age, |v| {
        ctx.positive_duration(v, "`delivery.max_age`")
    })?;
    let max_pending = or_default(raw.max_pending.as_ref(), d.max_pending, |v| {
        ctx.int_at_least(v, 1, "`delivery.max_pending`")
    })?;
    let max_body = or_default(raw.max_body.as_ref(), d.max_body, |v| {
        ctx.positive_bytes(v, "`delivery.max_body`")
    })?;
    let visibility_timeout =
        or_default(raw.visibility_timeout.as_ref(), d.visibility_timeout, |v| {
            ctx.positive_duration(v, "`delivery.visibility_timeout`")
        })?;
    let retention = or_default(raw.retention.as_ref(), d.retention, |v| {
        ctx.positive_duration(v, "`delivery.retention`")
    })?;
    let enqueue_timeout = raw
        .enqueue_timeout
        .as_ref()
        .map(|v| ctx.positive_duration(v, "`delivery.enqueue_timeout`"))
        .transpose()?;
    let wait_replicas = or_default(raw.wait_replicas.as_ref(), u32::from(cluster), |v| {
        let n = ctx.int_at_least(v, 0, "`delivery.wait_replicas`")?;
        u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_WAIT_REPLICAS)
            .ok_or_else(|| {
                ctx.error_at(
                    v.span(),
                    format!(
                        "`delivery.wait_replicas` must be at most {MAX_WAIT_REPLICAS}, got {n}"
                    ),
                )
            })
    })?;
    if retention < max_age {
        let span = raw
            .retention
            .as_ref()
            .or(raw.max_age.as_ref())
            .map_or(0..0, Spanned::span);
        // An idempotency key forgotten while its entry still retries would let a client's
        // retry be accepted as a second delivery.
        return Err(ctx.error_at(
            span,
            format!(
                "`delivery.retention` ({}) must be at least `delivery.max_age` ({})",
                humantime::format_duration(retention),
                humantime::format_duration(max_age)
            ),
        ));
    }
    Ok(DeliveryConfig {
        workers,
        max_attempts,
        backoff_base,
        backoff_max,
        max_age,
        max_pending,
        max_body,
        visibility_timeout,
        retention,
        enqueue_timeout,
        wait_replicas,
    })
}
