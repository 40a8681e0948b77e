//! Delivery workers: in every gateway with `delivery.workers > 0`, one blocking reader and
//! one claimer per partition hand tokens to at most `workers` concurrent deliveries (the
//! claimer takes work abandoned by dead workers); one task moves due retries back into the
//! streams, another samples the depth gauges.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::DeliveryQueue;
use super::keys::Partition;
use super::metrics::DeliveryOutcome;
use super::store::{QueueError, Take, Token};
use crate::control::now_ms;
use crate::proxy::Proxy;
use crate::proxy::deliver::Sent;
use crate::proxy::trace_context::TraceParent;

/// How long one blocking read waits for new work.
const BLOCK: Duration = Duration::from_secs(1);
/// Most tokens read at once.
const BATCH: usize = 64;
/// Least wait after a failed breaker probe before the entry is tried again.
const PROBE_PAUSE: Duration = Duration::from_secs(1);
/// How often due retries are moved back into the streams.
const PROMOTE_EVERY: Duration = Duration::from_millis(100);

/// Starts the workers (when `workers > 0`) and the depth sampler. The handle finishes after
/// `stop`, once in-flight deliveries are done or `grace` has passed (what is left is claimed
/// by another gateway after the visibility timeout).
pub fn spawn(
    queue: DeliveryQueue,
    proxy: Proxy,
    stop: CancellationToken,
    grace: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        check_eviction_policy(&queue).await;
        let workers = queue.config().workers;
        let mut tasks = vec![tokio::spawn(sample(queue.clone(), stop.clone()))];
        if workers > 0 {
            let slots = Arc::new(Semaphore::new(workers));
            for p in queue.partitions() {
                tasks.push(tokio::spawn(read(
                    queue.clone(),
                    proxy.clone(),
                    p.clone(),
                    slots.clone(),
                    stop.clone(),
                )));
                tasks.push(tokio::spawn(claim(
                    queue.clone(),
                    proxy.clone(),
                    p.clone(),
                    slots.clone(),
                    stop.clone(),
                )));
            }
            tasks.push(tokio::spawn(promote(queue.clone(), stop.clone())));
            for t in tasks {
                let _ = t.await;
            }
            // Let deliveries in flight finish: their outcome is recorded, not left to a
            // claim after the visibility timeout.
            let all = u32::try_from(workers).unwrap_or(u32::MAX);
            let _ = tokio::time::timeout(grace, slots.acquire_many(all)).await;
        } else {
            for t in tasks {
                let _ = t.await;
            }
        }
    })
}

/// Warns when Redis may evict queue keys: an evicted record or stream is acknowledged work
/// lost, so the queue needs `maxmemory-policy noeviction` (writes then fail, and clients get
/// `queue_unavailable` instead of a silent loss).
async fn check_eviction_policy(queue: &DeliveryQueue) {
    match queue.store().eviction_policy().await {
        Ok(Some(policy)) if policy != "noeviction" => warn!(
            policy,
            "Redis maxmemory-policy is not `noeviction`: under memory pressure Redis may delete \
             accepted deliveries; set `maxmemory-policy noeviction` (see docs/delivery.md)"
        ),
        Ok(_) => {}
        Err(e) => debug!(error = %e, "could not read Redis maxmemory-policy"),
    }
}

/// Reads `p`'s stream and starts a delivery per token, within the worker slots.
async fn read(
    queue: DeliveryQueue,
    proxy: Proxy,
    p: Partition,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let mut reader = queue.store().reader(queue.consumer());
    let mut backoff = Backoff::default();
    let mut group_ready = false;
    let mut idle = true;
    while !stop.is_cancelled() {
        if !group_ready {
            match queue.store().ensure_group(&p).await {
                Ok(()) => group_ready = true,
                Err(e) => {
                    backoff.wait(&stop, &p, &e).await;
                    continue;
                }
            }
        }
        // Take slots before reading, so read work always has a worker (a token waiting for
        // one would age towards the visibility timeout and be claimed twice). An idle
        // partition waits for work holding one slot only, so it does not starve busy
        // partitions; a busy one drains without blocking, as many as slots are free.
        let Some(mut permits) = take_slots(&slots, if idle { 1 } else { BATCH }, &stop).await
        else {
            return;
        };
        let block = idle.then_some(BLOCK);
        let read = tokio::select! {
            r = reader.read(&p, permits.len(), block) => r,
            () = stop.cancelled() => return,
        };
        if let Ok(tokens) = &read {
            idle = tokens.is_empty();
        }
        match read {
            Ok(tokens) => {
                backoff.reset();
                for token in tokens {
                    let Some(permit) = permits.pop() else { break };
                    tokio::spawn(deliver(
                        queue.clone(),
                        proxy.clone(),
                        p.clone(),
                        token,
                        permit,
                    ));
                }
            }
            Err(e) => {
                // NOGROUP: the stream was lost (Redis restarted without its data).
                group_ready = !e.to_string().contains("NOGROUP");
                backoff.wait(&stop, &p, &e).await;
            }
        }
    }
}

/// Waits for one worker slot, then takes up to `max` in all without waiting; `None` once
/// `stop` fires (or the semaphore is closed).
async fn take_slots(
    slots: &Arc<Semaphore>,
    max: usize,
    stop: &CancellationToken,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        permit = slots.clone().acquire_owned() => permit.ok()?,
        () = stop.cancelled() => return None,
    };
    let mut permits = vec![first];
    while permits.len() < max {
        match slots.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => break,
        }
    }
    Some(permits)
}

/// One attempt at one delivery.
async fn deliver(
    queue: DeliveryQueue,
    proxy: Proxy,
    p: Partition,
    token: Token,
    _slot: OwnedSemaphorePermit,
) {
    let config = queue.config();
    let store = queue.store();
    let m = queue.metrics();
    let take = store
        .take(&p, &token, now_ms(), config.max_age, config.max_attempts)
        .await;
    let (attempt, request) = match take {
        Ok(Take::Go { attempt, request }) => (attempt, request),
        Ok(Take::Dead(reason)) => {
            debug!(id = %token.id, reason, "delivery dead-lettered before its attempt");
            m.outcome(DeliveryOutcome::Dead);
            if reason == "max_attempts" {
                m.attempts.observe(f64::from(config.max_attempts));
            }
            return;
        }
        Ok(Take::Gone) => return,
        Err(e) => {
            // The token stays pending with this worker and is claimed later.
            debug!(id = %token.id, error = %e, "could not start a delivery");
            return;
        }
    };
    let span = info_span!("delivery", id = %token.id, attempt, cell = tracing::field::Empty);
    async {
        let Some(cell) = proxy.cell_for(&request.target) else {
            return;
        };
        tracing::Span::current().record("cell", cell.name());
        let admitted = match proxy.admit(cell) {
            Ok(a) => a,
            Err(wait) => {
                // Breaker open or bulkhead full: wait for the cell without burning the
                // attempt, rather than hammering it. Jittered up to half again, so a backlog
                // deferred together does not all come back at the instant the breaker
                // half-opens.
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(50);
                let due = now_ms()
                    .saturating_add(ms)
                    .saturating_add(fastrand::u64(0..=ms / 2));
                if store
                    .defer(&p, &token, now_ms(), due, attempt, "")
                    .await
                    .is_ok()
                {
                    m.outcome(DeliveryOutcome::Deferred);
                }
                return;
            }
        };
        let probe = admitted.is_probe();
        let origin = TraceParent::parse_str(&request.traceparent);
        let trace = crate::telemetry::link_trace(&tracing::Span::current(), origin);
        let sent = proxy
            .send_stored(admitted, &request, &token.id, attempt, trace)
            .await;
        let now = now_ms();
        let cell_name = cell.name();
        if sent == Sent::NoUpstream {
            // Nothing was sent: wait for the cell's health checks without spending the
            // attempt, as for a full bulkhead.
            let due = now.saturating_add(u64::try_from(PROBE_PAUSE.as_millis()).unwrap_or(0));
            if store.defer(&p, &token, now, due, attempt, "").await.is_ok() {
                m.outcome(DeliveryOutcome::Deferred);
            }
            return;
        }
        let failed = match &sent {
            Sent::Answered { status, .. } if retryable(*status) => {
                Some(format!("{cell_name} answered {status}"))
            }
            Sent::Failed(code) => Some(format!("{cell_name}: {code}")),
            Sent::Answered { .. } | Sent::NoUpstream => None,
        };
        if let (true, Some(error)) = (probe, &failed) {
            // A half-open probe of a cell whose breaker opened: the cell was known to be
            // failing, so the attempt does not count. Without this, a long outage would
            // dead-letter the entries that happened to be picked as probes again and again.
            let wait = queue.backoff(attempt, fastrand::u64(..)).max(PROBE_PAUSE);
            let due = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            let note = format!("{error} (breaker probe; not counted)");
            if store
                .defer(&p, &token, now, due, attempt, &note)
                .await
                .is_ok()
            {
                m.outcome(DeliveryOutcome::Deferred);
            }
            return;
        }
        let result = match &sent {
            Sent::Answered { status, .. } if (200..400).contains(status) => store
                .succeed(&p, &token, now, config.retention, *status, cell_name, attempt)
                .await
                .map(|()| DeliveryOutcome::Delivered),
            Sent::Answered { status, retry_after } if retryable(*status) => {
                let error = format!("{cell_name} answered {status}");
                retry_or_bury(&queue, &p, &token, attempt, &error, Some(*status), *retry_after).await
            }
            Sent::Answered { status, .. } => store
                .fail(
                    &p,
                    &token,
                    now,
                    None,
                    "non_retryable_status",
                    &format!("{cell_name} answered {status}"),
                    attempt,
                    Some(*status),
                )
                .await
                .map(|_| DeliveryOutcome::Dead),
            Sent::Failed(code) => {
                let error = format!("{cell_name}: {code}");
                retry_or_bury(&queue, &p, &token, attempt, &error, None, None).await
            }
            // Handled above.
            Sent::NoUpstream => return,
        };
        match result {
            Ok(outcome) => {
                m.outcome(outcome);
                if matches!(outcome, DeliveryOutcome::Delivered | DeliveryOutcome::Dead) {
                    m.attempts.observe(f64::from(attempt));
                }
            }
            Err(e) => warn!(error = %e, "could not record a delivery attempt; it will be claimed and retried"),
        }
    }
    .instrument(span)
    .await;
}

/// 408, 429 and 5xx may succeed later; other 4xx never will.
fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

async fn retry_or_bury(
    queue: &DeliveryQueue,
    p: &Partition,
    token: &Token,
    attempt: u32,
    error: &str,
    status: Option<u16>,
    retry_after: Option<Duration>,
) -> Result<DeliveryOutcome, QueueError> {
    let now = now_ms();
    let retry_at = (attempt < queue.config().max_attempts).then(|| {
        // The cell's Retry-After is honoured up to `backoff_max`: a cell must not be able to
        // park an entry beyond what the operator configured.
        let asked = retry_after
            .unwrap_or_default()
            .min(queue.config().backoff_max);
        let wait = queue.backoff(attempt, fastrand::u64(..)).max(asked);
        now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
    });
    let dead = queue
        .store()
        .fail(
            p,
            token,
            now,
            retry_at,
            "max_attempts",
            error,
            attempt,
            status,
        )
        .await?;
    Ok(if dead {
        DeliveryOutcome::Dead
    } else {
        DeliveryOutcome::Retried
    })
}

/// Moves due retries and deferrals back into the streams of every partition.
async fn promote(queue: DeliveryQueue, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PROMOTE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        for p in queue.partitions() {
            if let Err(e) = queue.store().promote(p, now_ms(), 1000).await {
                debug!(cell = p.cell(), error = %e, "promote failed");
            }
        }
    }
}

/// Claims `p`'s tokens that sat with a worker longer than the visibility timeout (that
/// worker is presumed dead, or its read's answer was lost) and delivers them, within the
/// worker slots.
///
/// Waits for a slot in the semaphore's queue like a reader: readers hold the free slots
/// while they block on the stream, so a claim that only took a slot when one happened to
/// be free would never run on an idle gateway, and abandoned work would wait forever.
async fn claim(
    queue: DeliveryQueue,
    proxy: Proxy,
    p: Partition,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let visibility = queue.config().visibility_timeout;
    // Claim often enough that abandoned work waits at most about 1.5 visibility timeouts.
    let every = (visibility / 2).max(Duration::from_millis(100));
    let mut cursor = "0-0".to_owned();
    let mut pause = every;
    loop {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
        let Some(mut permits) = take_slots(&slots, BATCH, &stop).await else {
            return;
        };
        let wanted = permits.len();
        pause = every;
        match queue
            .store()
            .claim(&p, queue.consumer(), visibility, &cursor, wanted)
            .await
        {
            Ok((next, tokens)) => {
                // A full batch, or a scan cut short: there may be more right away.
                if tokens.len() == wanted || next != "0-0" {
                    pause = Duration::ZERO;
                }
                cursor = next;
                for token in tokens {
                    let Some(permit) = permits.pop() else { break };
                    queue.metrics().claimed.inc();
                    debug!(id = %token.id, "claimed an abandoned delivery");
                    tokio::spawn(deliver(
                        queue.clone(),
                        proxy.clone(),
                        p.clone(),
                        token,
                        permit,
                    ));
                }
            }
            Err(e) => debug!(cell = p.cell(), error = %e, "claim failed"),
        }
    }
}

/// Samples the depth gauges of every partition once a second.
async fn sample(queue: DeliveryQueue, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        for p in queue.partitions() {
            if let Ok(d) = queue.store().depth(p).await {
                let age = d
                    .oldest_ms
                    .map_or(0.0, |ms| now_ms().saturating_sub(ms) as f64 / 1000.0);
                queue.metrics().set_depth(p.cell(), d.live, age, d.dead);
            }
        }
    }
}

/// Exponential backoff of a reader whose Redis calls fail, so a down Redis is not hammered.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn reset(&mut self) {
        self.failures = 0;
    }

    async fn wait(&mut self, stop: &CancellationToken, p: &Partition, e: &QueueError) {
        if self.failures == 0 {
            warn!(cell = p.cell(), error = %e, "delivery queue unreachable; backing off");
        }
        self.failures = self.failures.saturating_add(1);
        let ms = (50u64 << self.failures.min(5)).min(2000);
        let wait = Duration::from_millis(fastrand::u64(ms / 2..=ms));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => {}
        }
    }
}
