//! The async delivery queue (SPEC §4 "Async delivery"): requests sent with
//! `Prefer: respond-async` are stored durably in Redis, answered `202` at once, and delivered
//! later by workers in every gateway, with retries, a dead-letter queue and status records.
//!
//! Design, guarantees and the Redis settings they rely on: `docs/delivery.md`.
//!
//! - [`keys`]: one partition per home cell of the target key, all its keys under one hash
//!   tag; delivery ids name their partition.
//! - [`store`]: every state change is one Lua script, so no crash loses an entry; workers
//!   change a batch of one partition's entries per script call.
//! - [`worker`]: blocking reads per partition, claims of abandoned work, due retries.
//! - `recorder`: attempt outcomes recorded in batches, one script call per partition.

pub mod keys;
pub mod metrics;
pub mod record;
mod recorder;
pub mod store;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cell_router::Placement;

use crate::config::DeliveryConfig;
use crate::control::now_ms;
use keys::Partition;
use metrics::{DeliveryMetrics, EnqueueOutcome};
use record::{Record, StoredRequest};
use store::{Enqueued, QueueError, QueueStore};

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The target's partition holds `max_pending` entries: `queue_full`.
    #[error("the delivery queue of the target cell is full")]
    Full,
    /// Redis did not confirm the write in time: `queue_unavailable`.
    #[error("the delivery queue did not confirm the write: {0}")]
    Unavailable(#[source] QueueError),
}

/// An accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its id (the original one for a repeated idempotency key).
    pub id: String,
    /// Whether this was a repeat of an earlier acceptance.
    pub duplicate: bool,
}

/// The delivery queue of one gateway. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DeliveryQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: QueueStore,
    config: DeliveryConfig,
    placement: Placement,
    /// One per configured cell, in cell-index order.
    partitions: Vec<Partition>,
    metrics: DeliveryMetrics,
    consumer: String,
}

impl DeliveryQueue {
    /// The queue for `cells` (the placement and cell names of the config) on `store`.
    /// `consumer` names this gateway in the consumer groups.
    pub fn new(
        store: QueueStore,
        config: DeliveryConfig,
        placement: Placement,
        cell_names: impl IntoIterator<Item = String>,
        consumer: String,
        metrics: DeliveryMetrics,
    ) -> DeliveryQueue {
        DeliveryQueue {
            inner: Arc::new(Inner {
                store,
                config,
                placement,
                partitions: cell_names.into_iter().map(|n| Partition::new(&n)).collect(),
                metrics,
                consumer,
            }),
        }
    }

    /// The `[delivery]` settings.
    pub fn config(&self) -> &DeliveryConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &QueueStore {
        &self.inner.store
    }

    /// Every partition, in cell order.
    pub fn partitions(&self) -> &[Partition] {
        &self.inner.partitions
    }

    /// The metric handles.
    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.inner.metrics
    }

    /// This gateway's consumer name.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The partition of a target key: its home cell by the configured placement.
    ///
    /// Deliberately not the directory's current route: a drain must not move where an
    /// idempotency key is remembered. Workers route by the directory at delivery time.
    pub fn partition_for(&self, target: &[u8]) -> &Partition {
        let home = self.inner.placement.home(target).get();
        &self.inner.partitions[home.min(self.inner.partitions.len() - 1)]
    }

    /// The partition of a delivery id, if the id is well formed and names a known cell.
    pub fn partition_of(&self, id: &str) -> Option<&Partition> {
        let cell = keys::cell_of(id)?;
        self.inner.partitions.iter().find(|p| p.cell() == cell)
    }

    /// The partition of a cell name.
    pub fn partition_named(&self, cell: &str) -> Option<&Partition> {
        self.inner.partitions.iter().find(|p| p.cell() == cell)
    }

    /// Stores `request` for delivery. `sender` is the enqueuing request's routing key and
    /// `client_key` its `Idempotency-Key`: a repeat of the pair within the retention returns
    /// the original id instead of a second entry.
    ///
    /// # Errors
    /// [`EnqueueError`]; nothing is acknowledged then.
    pub async fn enqueue(
        &self,
        sender: &[u8],
        client_key: Option<&str>,
        mut request: StoredRequest,
    ) -> Result<Accepted, EnqueueError> {
        let started = Instant::now();
        let p = self.partition_for(&request.target);
        let id = keys::new_id(p.cell());
        let idem_key = client_key.map(|k| p.idempotency(sender, k.as_bytes()));
        request.idempotency_key = client_key.map_or_else(|| id.clone(), str::to_owned);
        let result = self
            .inner
            .store
            .enqueue(
                p,
                &id,
                now_ms(),
                self.inner.config.max_pending,
                idem_key
                    .as_deref()
                    .map(|k| (k, self.inner.config.retention)),
                &request,
            )
            .await;
        let m = &self.inner.metrics;
        match result {
            Ok(Enqueued::Accepted) => {
                m.enqueued(EnqueueOutcome::Accepted);
                m.enqueue_seconds.observe(started.elapsed().as_secs_f64());
                Ok(Accepted {
                    id,
                    duplicate: false,
                })
            }
            Ok(Enqueued::Duplicate(id)) => {
                m.enqueued(EnqueueOutcome::Duplicate);
                Ok(Accepted {
                    id,
                    duplicate: true,
                })
            }
            Ok(Enqueued::Full) => {
                m.enqueued(EnqueueOutcome::Full);
                Err(EnqueueError::Full)
            }
            Err(e) => {
                m.enqueued(EnqueueOutcome::Unavailable);
                Err(EnqueueError::Unavailable(e))
            }
        }
    }

    /// The record of delivery `id`; `None` for an unknown (or expired, or malformed) id.
    ///
    /// # Errors
    /// [`QueueError`] when Redis does not answer.
    pub async fn status(&self, id: &str) -> Result<Option<Record>, QueueError> {
        match self.partition_of(id) {
            Some(p) => self.inner.store.record(p, id).await,
            None => Ok(None),
        }
    }

    /// Dead letters, oldest first across the partitions, of one cell's partition or all, at
    /// most `limit`.
    ///
    /// # Errors
    /// [`QueueError`].
    pub async fn dead_letters(
        &self,
        cell: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, QueueError> {
        let store = &self.inner.store;
        // The oldest `limit` of each partition contain the oldest `limit` overall.
        let mut oldest: Vec<(u64, usize, String)> = Vec::new();
        let chosen: Vec<(usize, &Partition)> = (self.inner.partitions.iter().enumerate())
            .filter(|(_, p)| cell.is_none_or(|c| c == p.cell()))
            .collect();
        for &(i, p) in &chosen {
            for (id, dead_ms) in store.dead_page(p, 0, limit).await? {
                oldest.push((dead_ms, i, id));
            }
        }
        oldest.sort();
        oldest.truncate(limit);
        let mut out = Vec::with_capacity(oldest.len());
        for &(i, p) in &chosen {
            let ids: Vec<String> = (oldest.iter())
                .filter(|(_, part, _)| *part == i)
                .map(|(_, _, id)| id.clone())
                .collect();
            out.extend(store.records(p, &ids).await?.into_iter().flatten());
        }
        out.sort_by_key(|r| (r.dead_ms.unwrap_or(0), r.id.clone()));
        Ok(out)
    }

    /// Every dead-lettered id of one cell's partition or all (for `--all` operations).
    ///
    /// # Errors
    /// [`QueueError`].
    pub async fn dead_ids(&self, cell: Option<&str>) -> Result<Vec<String>, QueueError> {
        let mut out = Vec::new();
        for p in self
            .inner
            .partitions
            .iter()
            .filter(|p| cell.is_none_or(|c| c == p.cell()))
        {
            const PAGE: usize = 1000;
            let mut offset = 0;
            loop {
                let page = self.inner.store.dead_page(p, offset, PAGE).await?;
                let n = page.len();
                out.extend(page.into_iter().map(|(id, _)| id));
                if n < PAGE {
                    break;
                }
                offset += n;
            }
        }
        Ok(out)
    }

    /// Replays dead-lettered `id`: attempts reset, same idempotency key. Returns whether it
    /// was in the DLQ.
    ///
    /// # Errors
    /// [`QueueError`].
    pub async fn replay(&self, id: &str) -> Result<bool, QueueError> {
        match self.partition_of(id) {
            Some(p) => self.inner.store.replay(p, id, now_ms()).await,
            None => Ok(false),
        }
    }

    /// Deletes dead-lettered `id`. Returns whether it was in the DLQ.
    ///
    /// # Errors
    /// [`QueueError`].
    pub async fn purge(&self, id: &str) -> Result<bool, QueueError> {
        match self.partition_of(id) {
            Some(p) => self.inner.store.purge(p, id).await,
            None => Ok(false),
        }
    }

    /// The full-jitter backoff before attempt `attempt + 1`: uniform in
    /// `[0, min(backoff_max, backoff_base · 2^(attempt-1))]`.
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let c = &self.inner.config;
        let exp = c
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(30));
        let cap = exp.min(c.backoff_max);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(if cap_ms == 0 {
            0
        } else {
            random % (cap_ms + 1)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn queue(config: DeliveryConfig) -> DeliveryQueue {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let store = QueueStore::open_url(
            "redis://127.0.0.1:1",
            Duration::from_millis(50),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let names = ["a", "b", "c"].map(str::to_owned);
        DeliveryQueue::new(
            store,
            config,
            Placement::new([("a", 1.0), ("b", 1.0), ("c", 1.0)]).unwrap(),
            names,
            "gw".to_owned(),
            DeliveryMetrics::new(&mut registry),
        )
    }

    #[test]
    fn backoff_is_full_jitter_doubling_up_to_the_cap() {
        let q = queue(DeliveryConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..DeliveryConfig::default()
        });
        // The top of the range doubles per attempt until the cap.
        for (attempt, cap) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let max = (0..2000).map(|r| q.backoff(attempt, r)).max().unwrap();
            assert_eq!(max, Duration::from_millis(cap), "attempt {attempt}");
            assert_eq!(q.backoff(attempt, 0), Duration::ZERO);
        }
    }

    #[test]
    fn ids_lead_back_to_their_partition() {
        let q = queue(DeliveryConfig::default());
        let p = q.partition_for(b"alice").clone();
        let id = keys::new_id(p.cell());
        assert_eq!(q.partition_of(&id).unwrap().cell(), p.cell());
        assert!(
            q.partition_of("zz.0123456789abcdef0123456789abcdef")
                .is_none()
        );
        // Every cell gets some keys.
        let mut seen = std::collections::HashSet::new();
        for i in 0..100 {
            seen.insert(
                q.partition_for(format!("u{i}").as_bytes())
                    .cell()
                    .to_owned(),
            );
        }
        assert_eq!(seen.len(), 3);
    }
}
