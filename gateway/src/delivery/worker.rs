//! Delivery workers: in every gateway with `delivery.workers > 0`, one blocking reader and
//! one claimer per partition hand tokens to at most `workers` concurrent deliveries (the
//! claimer takes work abandoned by dead workers); one task moves due retries back into the
//! streams, another samples the depth gauges.
//!
//! Redis is asked per batch, not per message: the tokens of one read start their attempts
//! in one `take` call, and outcomes are recorded by the partition's [`Recorder`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::DeliveryQueue;
use super::keys::Partition;
use super::metrics::DeliveryOutcome;
use super::record::StoredRequest;
use super::recorder::{self, Recorder};
use super::store::{Outcome, OutcomeKind, QueueError, Take, TakeRequest, Token};
use crate::control::{millis, now_ms};
use crate::proxy::Proxy;
use crate::proxy::deliver::Sent;
use crate::proxy::trace_context::TraceParent;

/// How long one blocking read waits for new work.
const BLOCK: Duration = Duration::from_secs(1);
/// Most tokens read at once.
const BATCH: usize = 64;
/// How long a busy partition's reader waits before reading again after a read that found
/// fewer tokens than it had slots for: the next read and its `take` then carry a batch
/// rather than the one or two tokens that arrived meanwhile (at 1,000 messages/s per
/// partition, reads without a pause returned about one token each). Adds as much to a
/// delivery's latency, none to an enqueue's.
const READ_LINGER: Duration = Duration::from_millis(2);
/// Least wait after a failed breaker probe before the entry is tried again.
const PROBE_PAUSE: Duration = Duration::from_secs(1);
/// How often due retries are moved back into the streams.
const PROMOTE_EVERY: Duration = Duration::from_millis(100);

/// Starts the workers (when `workers > 0`) and the depth sampler. The handle finishes after
/// `stop`, once in-flight deliveries are done and their outcomes recorded, or `grace` has
/// passed (what is left is claimed by another gateway after the visibility timeout).
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
        if workers == 0 {
            for t in tasks {
                let _ = t.await;
            }
            return;
        }
        let slots = Arc::new(Semaphore::new(workers));
        let mut recorders = Vec::new();
        for p in queue.partitions() {
            let (recorder, task) = recorder::spawn(queue.clone(), p.clone());
            recorders.push(task);
            let w = PartitionWorker {
                queue: queue.clone(),
                proxy: proxy.clone(),
                p: p.clone(),
                recorder,
                slots: slots.clone(),
            };
            tasks.push(tokio::spawn(read(w.clone(), stop.clone())));
            tasks.push(tokio::spawn(claim(w, stop.clone())));
        }
        tasks.push(tokio::spawn(promote(queue.clone(), stop.clone())));
        for t in tasks {
            let _ = t.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        // Let deliveries in flight finish and hand their outcomes over, rather than leave
        // them to a claim after the visibility timeout...
        let all = u32::try_from(workers).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout_at(deadline, slots.acquire_many(all)).await;
        // ...and record them: each recorder ends once it has recorded everything queued and
        // the last delivery holding it is gone.
        for r in recorders {
            let _ = tokio::time::timeout_at(deadline, r).await;
        }
    })
}

/// The workers' handles on one partition.
#[derive(Clone)]
struct PartitionWorker {
    queue: DeliveryQueue,
    proxy: Proxy,
    p: Partition,
    recorder: Recorder,
    slots: Arc<Semaphore>,
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

/// Reads `p`'s stream and starts deliveries, within the worker slots.
async fn read(w: PartitionWorker, stop: CancellationToken) {
    let (queue, p) = (&w.queue, &w.p);
    let mut reader = queue.store().reader(queue.consumer());
    let mut backoff = Backoff::default();
    let mut group_ready = false;
    let mut idle = true;
    let mut linger = false;
    while !stop.is_cancelled() {
        if linger {
            tokio::select! {
                () = tokio::time::sleep(READ_LINGER) => {}
                () = stop.cancelled() => return,
            }
        }
        if !group_ready {
            match queue.store().ensure_group(p).await {
                Ok(()) => group_ready = true,
                Err(e) => {
                    backoff.wait(&stop, p, &e).await;
                    continue;
                }
            }
        }
        // Take slots before reading, so read work always has a worker (a token waiting for
        // one would age towards the visibility timeout and be claimed twice). An idle
        // partition waits for work holding one slot only, so it does not starve busy
        // partitions; a busy one drains without blocking, as many as slots are free.
        let Some(permits) = take_slots(&w.slots, if idle { 1 } else { BATCH }, &stop).await else {
            return;
        };
        let block = idle.then_some(BLOCK);
        let read = tokio::select! {
            r = reader.read(p, permits.len(), block) => r,
            () = stop.cancelled() => return,
        };
        match read {
            Ok(tokens) => {
                backoff.reset();
                idle = tokens.is_empty();
                linger = !idle && tokens.len() < permits.len();
                // In a task of its own, so that the next read does not wait for this `take`
                // (bounded: the task holds the slots of its tokens).
                if !idle {
                    let w = w.clone();
                    tokio::spawn(async move { w.start(tokens, permits).await });
                }
            }
            Err(e) => {
                linger = false;
                // NOGROUP: the stream was lost (Redis restarted without its data).
                group_ready = !e.to_string().contains("NOGROUP");
                backoff.wait(&stop, p, &e).await;
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

impl PartitionWorker {
    /// Starts attempts on `tokens` with one `take` call and a delivery task per attempt, each
    /// holding one of `permits` (at least as many as tokens). Tokens whose target cell's
    /// breaker is open are put off in the same call without an attempt, so a backlog waiting
    /// for a dead cell costs neither attempts nor worker slots.
    async fn start(&self, tokens: Vec<Token>, mut permits: Vec<OwnedSemaphorePermit>) {
        // Slots beyond the tokens read go back now, not after the `take` call: other
        // partitions' readers may be waiting for them.
        permits.truncate(tokens.len());
        if tokens.is_empty() {
            return;
        }
        let config = self.queue.config();
        let now = now_ms();
        let batch: Vec<TakeRequest> = (tokens.into_iter())
            .map(|token| {
                let defer_until = (token.target.as_deref())
                    .and_then(|target| self.proxy.cell_for(target))
                    .and_then(|cell| self.proxy.breaker_wait(cell))
                    .map(|wait| deferral_due(now, wait));
                TakeRequest { token, defer_until }
            })
            .collect();
        let takes = self
            .queue
            .store()
            .take(&self.p, &batch, now, config.max_age, config.max_attempts)
            .await;
        let takes = match takes {
            Ok(takes) => takes,
            Err(e) => {
                // The tokens stay pending with this worker and are claimed later.
                debug!(
                    cell = self.p.cell(),
                    tokens = batch.len(),
                    error = %e,
                    "could not start deliveries"
                );
                return;
            }
        };
        let m = self.queue.metrics();
        for (r, take) in batch.into_iter().zip(takes) {
            match take {
                Take::Go { attempt, request } => {
                    // Never short: one permit per token read. Left pending otherwise, the
                    // token would be claimed after the visibility timeout.
                    let Some(slot) = permits.pop() else { break };
                    tokio::spawn(self.clone().deliver(r.token, attempt, request, slot));
                }
                Take::Deferred => m.outcome(DeliveryOutcome::Deferred),
                Take::Dead(reason) => {
                    debug!(id = %r.token.id, reason, "delivery dead-lettered before its attempt");
                    m.outcome(DeliveryOutcome::Dead);
                    if reason == "max_attempts" {
                        m.attempts.observe(f64::from(config.max_attempts));
                    }
                }
                Take::Gone => {}
            }
        }
    }

    /// One attempt at one delivery; its outcome goes to the partition's recorder, and the
    /// worker slot is freed once it is handed over.
    async fn deliver(
        self,
        token: Token,
        attempt: u32,
        request: StoredRequest,
        _slot: OwnedSemaphorePermit,
    ) {
        let span = info_span!("delivery", id = %token.id, attempt, cell = tracing::field::Empty);
        let Some(kind) = self
            .attempt(&token, attempt, &request)
            .instrument(span)
            .await
        else {
            return;
        };
        let outcome = Outcome {
            token,
            attempt,
            at_ms: now_ms(),
            kind,
        };
        self.recorder.record(outcome).await;
    }

    /// Routes, admits, sends and judges attempt `attempt`; `None` when there is nothing to
    /// record (the token then stays pending and is claimed later).
    async fn attempt(
        &self,
        token: &Token,
        attempt: u32,
        request: &StoredRequest,
    ) -> Option<OutcomeKind> {
        let proxy = &self.proxy;
        let cell = proxy.cell_for(&request.target)?;
        tracing::Span::current().record("cell", cell.name());
        let admitted = match proxy.admit(cell) {
            Ok(a) => a,
            // Breaker open or bulkhead full: wait for the cell without burning the attempt,
            // rather than hammering it.
            Err(wait) => {
                return Some(OutcomeKind::Deferred {
                    due_ms: deferral_due(now_ms(), wait),
                    note: String::new(),
                });
            }
        };
        let probe = admitted.is_probe();
        let origin = TraceParent::parse_str(&request.traceparent);
        let trace = crate::telemetry::link_trace(&tracing::Span::current(), origin);
        let sent = proxy
            .send_stored(admitted, request, &token.id, attempt, trace)
            .await;
        let now = now_ms();
        let cell_name = cell.name();
        let (error, status, retry_after, retry) = match sent {
            // Nothing was sent: wait for the cell's health checks without spending the
            // attempt, as for a full bulkhead.
            Sent::NoUpstream => {
                return Some(OutcomeKind::Deferred {
                    due_ms: now.saturating_add(millis(PROBE_PAUSE)),
                    note: String::new(),
                });
            }
            Sent::Answered { status, .. } if (200..400).contains(&status) => {
                return Some(OutcomeKind::Delivered {
                    status,
                    cell: cell_name.to_owned(),
                });
            }
            Sent::Answered {
                status,
                retry_after,
            } => (
                format!("{cell_name} answered {status}"),
                Some(status),
                retry_after,
                retryable(status),
            ),
            Sent::Failed(code) => (format!("{cell_name}: {code}"), None, None, true),
        };
        Some(if probe && retry {
            // A half-open probe of a cell whose breaker opened: the cell was known to be
            // failing, so the attempt does not count. Without this, a long outage would
            // dead-letter the entries that happened to be picked as probes again and again.
            let wait = self
                .queue
                .backoff(attempt, fastrand::u64(..))
                .max(PROBE_PAUSE);
            OutcomeKind::Deferred {
                due_ms: now.saturating_add(millis(wait)),
                note: format!("{error} (breaker probe; not counted)"),
            }
        } else if retry {
            OutcomeKind::Failed {
                retry_at: self.retry_at(now, attempt, retry_after),
                reason: "max_attempts",
                error,
                status,
            }
        } else {
            OutcomeKind::Failed {
                retry_at: None,
                reason: "non_retryable_status",
                error,
                status,
            }
        })
    }

    /// When to try again after failed attempt `attempt`; `None` when it was the last.
    fn retry_at(&self, now: u64, attempt: u32, retry_after: Option<Duration>) -> Option<u64> {
        let config = self.queue.config();
        (attempt < config.max_attempts).then(|| {
            // The cell's Retry-After is honoured up to `backoff_max`: a cell must not be able
            // to park an entry beyond what the operator configured.
            let asked = retry_after.unwrap_or_default().min(config.backoff_max);
            let wait = self.queue.backoff(attempt, fastrand::u64(..)).max(asked);
            now.saturating_add(millis(wait))
        })
    }
}

/// When an entry put off for `wait` (a cell's breaker or bulkhead) comes back: at least 50 ms,
/// jittered up to half again, so a backlog deferred together does not all return at the
/// instant the breaker half-opens.
fn deferral_due(now: u64, wait: Duration) -> u64 {
    let ms = millis(wait).max(50);
    now.saturating_add(ms)
        .saturating_add(fastrand::u64(0..=ms / 2))
}

/// 408, 429 and 5xx may succeed later; other 4xx never will.
fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
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
async fn claim(w: PartitionWorker, stop: CancellationToken) {
    let (queue, p) = (&w.queue, &w.p);
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
        let Some(permits) = take_slots(&w.slots, BATCH, &stop).await else {
            return;
        };
        let wanted = permits.len();
        pause = every;
        match queue
            .store()
            .claim(p, queue.consumer(), visibility, &cursor, wanted)
            .await
        {
            Ok((next, tokens)) => {
                // A full batch, or a scan cut short: there may be more right away.
                if tokens.len() == wanted || next != "0-0" {
                    pause = Duration::ZERO;
                }
                cursor = next;
                for token in &tokens {
                    queue.metrics().claimed.inc();
                    debug!(id = %token.id, "claimed an abandoned delivery");
                }
                w.start(tokens, permits).await;
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
