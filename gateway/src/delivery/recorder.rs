//! Records attempt outcomes in batches: one `settle` script call per partition for up to
//! [`MAX_BATCH`] outcomes that ended within [`LINGER`] of each other, rather than a call per
//! attempt (a script call's fixed cost in Redis was a third of a message's Redis time).
//!
//! An outcome waits in memory for at most the linger and the call before it. A gateway that
//! dies meanwhile loses the batch the way a worker killed mid-attempt loses its attempt: the
//! tokens stay pending, are claimed after the visibility timeout and the entries delivered
//! again (at least once, same idempotency key), never lost. Each partition's queue is bounded:
//! when Redis is slow, deliveries wait to hand their outcome over while holding their worker
//! slot, so no more work is read meanwhile.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::DeliveryQueue;
use super::keys::Partition;
use super::metrics::DeliveryOutcome;
use super::store::{Outcome, OutcomeKind, Settled};

/// Most outcomes recorded by one script call.
pub(super) const MAX_BATCH: usize = 64;
/// How long the first outcome of a batch waits for others.
const LINGER: Duration = Duration::from_millis(2);
/// Outcomes waiting per partition, beyond which deliveries wait to hand theirs over.
const QUEUE: usize = 4 * MAX_BATCH;

/// Hands outcomes to the recording task of one partition. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Recorder {
    tx: mpsc::Sender<Outcome>,
}

impl Recorder {
    /// Queues `outcome` for recording, waiting while the queue is full.
    pub(super) async fn record(&self, outcome: Outcome) {
        if let Err(e) = self.tx.send(outcome).await {
            // Only when the task ended, which it does once every recorder is gone: cannot
            // happen while this one exists. Left pending, the token is claimed later.
            debug!(id = %e.0.token.id, "delivery outcome not recorded: recorder stopped");
        }
    }
}

/// Starts the recording task of `p`. It ends, after recording everything queued, once every
/// clone of the returned [`Recorder`] is dropped.
pub(super) fn spawn(queue: DeliveryQueue, p: Partition) -> (Recorder, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Recorder { tx }, tokio::spawn(run(queue, p, rx)))
}

async fn run(queue: DeliveryQueue, p: Partition, mut rx: mpsc::Receiver<Outcome>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while gather(&mut rx, &mut batch, MAX_BATCH, LINGER).await {
        flush(&queue, &p, &batch).await;
        batch.clear();
    }
}

/// Waits for a first item, then for more until there are `max` or `linger` has passed since
/// the first. Items that queued up during the previous flush are taken at once. Returns false
/// once the channel is closed and empty.
async fn gather<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    max: usize,
    linger: Duration,
) -> bool {
    if rx.recv_many(batch, max).await == 0 {
        return false;
    }
    let deadline = Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, rx.recv_many(batch, max - batch.len())).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    true
}

/// Records `batch` in one call and counts what became of each outcome.
async fn flush(queue: &DeliveryQueue, p: &Partition, batch: &[Outcome]) {
    let m = queue.metrics();
    let settled = match queue
        .store()
        .settle(p, batch, queue.config().retention)
        .await
    {
        Ok(settled) => settled,
        Err(e) => {
            warn!(
                cell = p.cell(),
                attempts = batch.len(),
                error = %e,
                "could not record a delivery attempt; it will be claimed and retried"
            );
            return;
        }
    };
    for (o, s) in batch.iter().zip(settled) {
        match (&o.kind, s) {
            // The attempt delivered, even if another worker had recorded it first.
            (OutcomeKind::Delivered { .. }, _) => {
                m.outcome(DeliveryOutcome::Delivered);
                if s == Settled::Delivered {
                    m.attempts.observe(f64::from(o.attempt));
                }
            }
            (_, Settled::Retrying) => m.outcome(DeliveryOutcome::Retried),
            (_, Settled::Dead) => {
                m.outcome(DeliveryOutcome::Dead);
                m.attempts.observe(f64::from(o.attempt));
            }
            (_, Settled::Deferred) => m.outcome(DeliveryOutcome::Deferred),
            (_, Settled::Stale | Settled::Delivered) => {
                debug!(id = %o.token.id, attempt = o.attempt, "stale delivery outcome ignored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_takes_what_is_queued_then_waits_the_linger_at_most() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = Vec::new();
        for i in 0..3 {
            tx.send(i).await.unwrap();
        }
        // A late item within the linger joins; one after it waits for the next batch.
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            late.send(3).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            late.send(4).await.unwrap();
        });
        let started = Instant::now();
        assert!(gather(&mut rx, &mut batch, 8, Duration::from_millis(2)).await);
        assert_eq!(batch, vec![0, 1, 2, 3]);
        assert_eq!(started.elapsed(), Duration::from_millis(2));
        batch.clear();
        assert!(gather(&mut rx, &mut batch, 8, Duration::from_millis(2)).await);
        assert_eq!(batch, vec![4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once_and_a_closed_queue_is_drained_first() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = Vec::new();
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        drop(tx);
        let started = Instant::now();
        assert!(gather(&mut rx, &mut batch, 3, Duration::from_secs(1)).await);
        assert_eq!(batch, vec![0, 1, 2]);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a full batch does not linger"
        );
        batch.clear();
        // Closed: what is left is still handed out, without waiting for more.
        assert!(gather(&mut rx, &mut batch, 3, Duration::from_secs(1)).await);
        assert_eq!(batch, vec![3, 4]);
        assert_eq!(started.elapsed(), Duration::ZERO);
        batch.clear();
        assert!(!gather(&mut rx, &mut batch, 3, Duration::from_secs(1)).await);
    }
}
