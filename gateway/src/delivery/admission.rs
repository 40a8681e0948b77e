//! Group commit of enqueues: the enqueues of one partition that arrive while its previous
//! enqueue call to Redis is under way are stored together, in one script call, when it
//! returns. Nothing waits for company: an enqueue that finds its partition idle is sent at
//! once, so a lone request pays one round trip as before, and under load the batches grow
//! by themselves. A batch shares a call's fixed costs: in Redis the command's dispatch, the
//! script's setup, the reply and the count of held entries; in the gateway a write, a reply
//! to parse and a wake-up.
//!
//! An enqueue whose caller is gone before its batch is sent (its timeout passed, or its client
//! went away) is left out of the batch: nobody will be told it was accepted, so it is not
//! written. Once sent, a write can still land after its caller's timeout, as a single call's
//! could; the client's retry with the same idempotency key then finds it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::keys::Partition;
use super::record::StoredRequest;
use super::store::{Enqueued, NewEntry, QueueError, QueueStore};
use crate::control::now_ms;

/// Most entries per call. A batch's script holds Redis for about 30 µs per entry: a
/// bigger batch would add its run time to every other client's wait.
const MAX_BATCH: usize = 32;
/// Most stored bytes (bodies and headers) per call, unless a single entry is larger: large
/// bodies go in small batches, so one call stays well within the timeout.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Enqueues waiting per partition; beyond it an enqueue is refused at once (503) rather
/// than queued for longer than its timeout.
const QUEUE: usize = 1024;

/// Hands the enqueues of one partition to its committing task. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Admission {
    tx: mpsc::Sender<Pending>,
    timeout: Duration,
}

/// An enqueue waiting for its batch.
struct Pending {
    id: String,
    idempotency: Option<String>,
    request: StoredRequest,
    reply: oneshot::Sender<Result<Enqueued, QueueError>>,
}

impl Pending {
    fn bytes(&self) -> usize {
        self.request.body.len() + self.request.headers.len()
    }
}

/// Settings every batch of a partition shares.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `[delivery] max_pending`.
    pub max_pending: u64,
    /// How long an idempotency key is remembered (`[delivery] retention`).
    pub retention: Duration,
}

impl Admission {
    /// Starts the committing task of `p`; it ends once every clone of the returned handle
    /// is gone. Must be called within a Tokio runtime.
    pub(super) fn spawn(store: QueueStore, p: Partition, limits: Limits) -> Admission {
        let (tx, rx) = mpsc::channel(QUEUE);
        let timeout = store.request_timeout();
        tokio::spawn(run(store, p, limits, rx));
        Admission { tx, timeout }
    }

    /// Stores `request` as delivery `id`, with its idempotency index key, in the next batch
    /// of the partition; waits at most the request timeout for Redis's answer.
    pub(super) async fn enqueue(
        &self,
        id: String,
        idempotency: Option<String>,
        request: StoredRequest,
    ) -> Result<Enqueued, QueueError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            id,
            idempotency,
            request,
            reply,
        };
        self.tx.try_send(pending).map_err(|e| {
            QueueError::Unavailable(match e {
                mpsc::error::TrySendError::Full(_) => {
                    format!("enqueue: {QUEUE} enqueues already wait for Redis")
                }
                mpsc::error::TrySendError::Closed(_) => "enqueue: the queue is stopped".into(),
            })
        })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(QueueError::Unavailable(
                "enqueue: the queue stopped before Redis answered".into(),
            )),
            Err(_) => Err(QueueError::Unavailable(format!(
                "enqueue: no answer from Redis within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }
}

async fn run(store: QueueStore, p: Partition, limits: Limits, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut carried = None;
    while gather(&mut rx, &mut carried, &mut batch).await {
        // Callers that gave up are not written: they were (or will be) told 503.
        batch.retain(|e| !e.reply.is_closed());
        if !batch.is_empty() {
            commit(&store, &p, limits, &mut batch).await;
        }
        batch.clear();
    }
}

/// Fills `batch` with what is queued (after `carried`, left over from the last batch),
/// waiting only for the first entry. `false` once the queue is closed and empty.
async fn gather(
    rx: &mut mpsc::Receiver<Pending>,
    carried: &mut Option<Pending>,
    batch: &mut Vec<Pending>,
) -> bool {
    let first = match carried.take() {
        Some(e) => e,
        None => match rx.recv().await {
            Some(e) => e,
            None => return false,
        },
    };
    let mut bytes = first.bytes();
    batch.push(first);
    while batch.len() < MAX_BATCH {
        let Ok(next) = rx.try_recv() else { break };
        if bytes + next.bytes() > MAX_BATCH_BYTES {
            *carried = Some(next);
            break;
        }
        bytes += next.bytes();
        batch.push(next);
    }
    true
}

/// One script call for `batch`; every caller gets its own answer.
async fn commit(store: &QueueStore, p: &Partition, limits: Limits, batch: &mut Vec<Pending>) {
    let entries: Vec<NewEntry<'_>> = batch
        .iter()
        .map(|e| NewEntry {
            id: &e.id,
            idempotency: e.idempotency.as_deref().map(|k| (k, limits.retention)),
            request: &e.request,
        })
        .collect();
    let result = store
        .enqueue_batch(p, &entries, now_ms(), limits.max_pending)
        .await;
    drop(entries);
    debug!(partition = p.cell(), entries = batch.len(), "enqueue batch");
    match result {
        Ok(answers) => {
            for (e, answer) in batch.drain(..).zip(answers) {
                let _ = e.reply.send(answer);
            }
        }
        Err(error) => {
            for e in batch.drain(..) {
                let _ = e.reply.send(Err(error.clone()));
            }
        }
    }
}
