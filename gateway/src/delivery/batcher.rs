//! Group commit for enqueues: the enqueues of one partition that arrive while earlier ones are
//! being written go to Redis together, in one script call (`lua/enqueue.lua`) and one `WAIT`,
//! instead of one round trip each.
//!
//! Up to [`IN_FLIGHT`] calls of a partition are under way at once. An enqueue that finds one
//! free writes itself, from its own task: a lightly loaded gateway writes each request alone,
//! as before, with no added hop or wait. When all are busy it queues, and the partition's
//! batching task takes the next free call for every enqueue queued by then (at most
//! [`MAX_BATCH`]): under load the calls in flight pace the batches, and Redis does one script
//! invocation, one reply and one `WAIT` per batch rather than per request. A queued enqueue
//! has priority over a newcomer for the next free call (the semaphore is fair), so none
//! starves. Each entry of a batch is judged on its own, as one enqueue would be (idempotency,
//! `max_pending`).
//!
//! Bounded: at most [`QUEUED`] enqueues wait per partition; beyond, an enqueue fails at once
//! as unavailable (503), like a Redis that does not answer in time. A caller stops waiting at
//! its own deadline; its entry may still be written then (as with a reply lost in transit),
//! which the client's retry with its idempotency key resolves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::keys::Partition;
use super::record::StoredRequest;
use super::store::{EnqueueJob, Enqueued, QueueError, QueueStore};

/// Script calls of one partition under way at once.
const IN_FLIGHT: usize = 4;
/// Most enqueues in one call: a script blocks Redis while it runs (~40 µs per entry here).
const MAX_BATCH: usize = 64;
/// Enqueues waiting for a call, per partition.
const QUEUED: usize = 1024;

/// One waiting enqueue.
struct Job {
    id: String,
    now_ms: u64,
    idempotency: Option<(String, Duration)>,
    request: StoredRequest,
    reply: oneshot::Sender<Result<Enqueued, QueueError>>,
}

/// The enqueue batcher of one partition (its task ends when this is dropped).
#[derive(Debug)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
    /// Script calls under way (a permit each).
    calls: Arc<Semaphore>,
    store: QueueStore,
    partition: Partition,
    max_pending: u64,
}

impl Batcher {
    /// Starts the partition's batching task. Must be called inside a Tokio runtime.
    pub(crate) fn spawn(store: QueueStore, partition: Partition, max_pending: u64) -> Batcher {
        let (jobs, rx) = mpsc::channel(QUEUED);
        let calls = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(run(
            store.clone(),
            partition.clone(),
            max_pending,
            Arc::clone(&calls),
            rx,
        ));
        Batcher {
            jobs,
            calls,
            store,
            partition,
            max_pending,
        }
    }

    /// Stores `request` as delivery `id` (see [`QueueStore::enqueue`]), waiting at most
    /// `budget` for the answer.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the batcher is saturated or the answer does not come
    /// in time; the store's error when its call failed.
    pub(crate) async fn enqueue(
        &self,
        id: String,
        now_ms: u64,
        idempotency: Option<(String, Duration)>,
        request: StoredRequest,
        budget: Duration,
    ) -> Result<Enqueued, QueueError> {
        if let Ok(_call) = self.calls.try_acquire() {
            // A free call: write at once, from this task. Bounded by the store's timeout.
            let job = EnqueueJob {
                id: &id,
                now_ms,
                idempotency: idempotency.as_ref().map(|(k, ttl)| (k.as_str(), *ttl)),
                request: &request,
            };
            return self
                .store
                .enqueue_batch(&self.partition, self.max_pending, &[job])
                .await?
                .pop()
                .ok_or_else(|| QueueError::Corrupt("enqueue: no answer".into()));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id,
            now_ms,
            idempotency,
            request,
            reply,
        };
        self.jobs.try_send(job).map_err(|e| {
            QueueError::Unavailable(match e {
                mpsc::error::TrySendError::Full(_) => "enqueue: too many enqueues waiting".into(),
                mpsc::error::TrySendError::Closed(_) => {
                    "enqueue: the queue is shutting down".into()
                }
            })
        })?;
        match tokio::time::timeout(budget, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(QueueError::Unavailable(
                "enqueue: the write was abandoned".into(),
            )),
            Err(_) => Err(QueueError::Unavailable(format!(
                "enqueue: no confirmation within {budget:?}"
            ))),
        }
    }
}

async fn run(
    store: QueueStore,
    partition: Partition,
    max_pending: u64,
    calls: Arc<Semaphore>,
    mut rx: mpsc::Receiver<Job>,
) {
    // The first queued enqueue, then a free call (queued work waits ahead of newcomers), then
    // everything queued meanwhile.
    while let Some(first) = rx.recv().await {
        let Ok(permit) = Arc::clone(&calls).acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let store = store.clone();
        let partition = partition.clone();
        tokio::spawn(async move {
            write(&store, &partition, max_pending, batch).await;
            drop(permit);
        });
    }
}

/// One call for `batch`; every job gets its answer (or the call's error).
async fn write(store: &QueueStore, partition: &Partition, max_pending: u64, batch: Vec<Job>) {
    let result = {
        let jobs: Vec<EnqueueJob<'_>> = batch
            .iter()
            .map(|j| EnqueueJob {
                id: &j.id,
                now_ms: j.now_ms,
                idempotency: j.idempotency.as_ref().map(|(k, ttl)| (k.as_str(), *ttl)),
                request: &j.request,
            })
            .collect();
        store.enqueue_batch(partition, max_pending, &jobs).await
    };
    match result {
        Ok(answers) => {
            for (job, answer) in batch.into_iter().zip(answers) {
                // The caller may have stopped waiting: nothing to tell then.
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(e.duplicate()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use test_support::{RedisServer, Resp};

    use super::*;

    fn request(target: &str) -> StoredRequest {
        StoredRequest {
            method: "POST".into(),
            uri: "/orders".into(),
            headers: Vec::new(),
            body: Bytes::from_static(b"{}"),
            target: target.as_bytes().to_vec(),
            idempotency_key: String::new(),
            traceparent: String::new(),
        }
    }

    /// `calls` of INFO commandstats for `command` (0 before its first call).
    fn calls(redis: &RedisServer, command: &str) -> u64 {
        let Ok(Resp::Bulk(Some(info))) = redis.command(&["INFO", "commandstats"]) else {
            panic!("INFO commandstats");
        };
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// 500 enqueues at once: each gets its own answer (the repeated idempotency keys one
    /// acceptance each), and they reach Redis in far fewer script calls than enqueues.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enqueues_that_arrive_together_are_written_together() {
        let redis = RedisServer::start();
        let store =
            QueueStore::open_url(&redis.url(), Duration::from_secs(5), Duration::from_secs(5))
                .unwrap();
        let p = Partition::new("cell-1");
        let batcher = Arc::new(Batcher::spawn(store, p.clone(), 1_000_000));
        let before = calls(&redis, "evalsha") + calls(&redis, "eval");
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let batcher = Arc::clone(&batcher);
                // Every fifth request repeats the idempotency key of the one before it.
                let idem = p.idempotency(
                    b"sender",
                    format!("k-{}", i - u32::from(i % 5 == 4)).as_bytes(),
                );
                tokio::spawn(async move {
                    batcher
                        .enqueue(
                            format!("cell-1.{i:032x}"),
                            1_700_000_000_000,
                            Some((idem, Duration::from_secs(60))),
                            request("user-1"),
                            Duration::from_secs(5),
                        )
                        .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap());
        }
        let accepted = answers.iter().filter(|a| **a == Enqueued::Accepted).count();
        let duplicates = answers
            .iter()
            .filter(|a| matches!(a, Enqueued::Duplicate(_)))
            .count();
        assert_eq!((accepted, duplicates), (400, 100));
        let live = redis.command(&["ZCARD", &p.live]).unwrap();
        assert!(matches!(live, Resp::Integer(400)), "{live:?}");
        let scripts = calls(&redis, "evalsha") + calls(&redis, "eval") - before;
        eprintln!("{scripts} script calls for 500 enqueues");
        assert!(scripts < 250, "{scripts} script calls for 500 enqueues");
    }
}
