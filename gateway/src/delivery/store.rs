//! [`QueueStore`]: the delivery queue's Redis operations, each bounded by the Redis timeout.
//!
//! Every state change of an entry is one Lua script (`lua/*.lua`) over the keys of one
//! partition, so a crash between two steps of a transition cannot happen: a dead-letter copy
//! exists before the original is acknowledged, a retry is scheduled before its token is
//! dropped. The workers' operations ([`work`]) handle a batch of entries of one partition per
//! script call; each entry in it is judged on its own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{RedisResult, Script, ScriptInvocation, Value};

use crate::config::RedisTarget;
use crate::control::millis;
use crate::redis_conn::{RedisClient, RedisConn};

use super::keys::{GROUP, Partition};
use super::record::{Record, StoredRequest};

mod work;

pub use work::{Outcome, OutcomeKind, Reader, Settled, TAKE_REPLY_BYTES, Take, TakeRequest, Token};

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis did not answer within the timeout, refused, or the connection failed.
    #[error("{0}")]
    Unavailable(String),
    /// Redis answered something the queue never writes.
    #[error("unexpected reply from Redis: {0}")]
    Corrupt(String),
    /// The store cannot be set up (bad URL, no runtime).
    #[error("{0}")]
    Config(String),
}

/// What became of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; the id is the caller's.
    Accepted,
    /// The same idempotency key was accepted before, as this id.
    Duplicate(String),
    /// The partition is at `max_pending`.
    Full,
}

/// Depth figures of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Accepted and not yet delivered or dead.
    pub live: u64,
    /// When the oldest live entry was accepted (ms since the epoch), if any.
    pub oldest_ms: Option<u64>,
    /// Entries in the dead-letter queue.
    pub dead: u64,
}

/// The queue's Redis operations. Cheap to clone: clones share one multiplexed connection.
#[derive(Clone)]
pub struct QueueStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: RedisClient,
    /// Replicas that must hold an accepted entry before `enqueue` reports it accepted.
    wait_replicas: u32,
    /// Calls made on behalf of a request (enqueue, status), bounded by `[redis].timeout`.
    front: Lane,
    /// Workers' and operators' calls, on a connection of their own (a worker's large reply
    /// must not delay a request's enqueue) with a longer timeout: a script that ran but whose
    /// answer came late would otherwise count an attempt that was never made.
    back: Lane,
    enqueue: Script,
    take: Script,
    settle: Script,
    promote: Script,
    replay: Script,
    purge: Script,
}

impl std::fmt::Debug for QueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("QueueStore")
            .field("timeout", &self.inner.front.timeout)
            .field("background_timeout", &self.inner.back.timeout)
            .finish_non_exhaustive()
    }
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

impl QueueStore {
    /// A store on the Redis server or cluster `target`. Calls made on behalf of a request
    /// are bounded by `timeout`, workers' and operators' calls by `background_timeout`.
    /// `wait_replicas`: how many replicas must hold an accepted entry before
    /// [`enqueue`](Self::enqueue) reports it accepted. Does not connect, so a gateway starts
    /// while Redis is down.
    ///
    /// # Errors
    /// [`QueueError::Config`] for a bad URL or outside a Tokio runtime.
    pub fn open(
        target: &RedisTarget,
        timeout: Duration,
        background_timeout: Duration,
        wait_replicas: u32,
    ) -> Result<QueueStore, QueueError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(QueueError::Config(
                "the delivery queue must be opened inside a Tokio runtime".into(),
            ));
        }
        let client = RedisClient::new(target, timeout)
            .map_err(|e| QueueError::Config(format!("invalid Redis URL: {e}")))?;
        Ok(QueueStore {
            inner: Arc::new(Inner {
                front: Lane::new(&client, timeout)?,
                back: Lane::new(&client, background_timeout)?,
                client,
                wait_replicas,
                enqueue: script!("enqueue.lua"),
                take: script!("take.lua"),
                settle: script!("settle.lua"),
                promote: script!("promote.lua"),
                replay: script!("replay.lua"),
                purge: script!("purge.lua"),
            }),
        })
    }

    /// A store on the one Redis server at `url`, no replicas waited for (tests and tools).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_url(
        url: &str,
        timeout: Duration,
        background_timeout: Duration,
    ) -> Result<QueueStore, QueueError> {
        Self::open(
            &RedisTarget::Single(url.to_owned()),
            timeout,
            background_timeout,
            0,
        )
    }

    /// Stores `request` as delivery `id` of partition `p`, unless `p` holds `max_pending`
    /// entries or `idempotency` (index key, retention) names an earlier acceptance.
    ///
    /// Never retried internally: a write whose answer was lost may have happened, and only
    /// the client (with its idempotency key) can safely try again.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when Redis did not confirm within the timeout.
    pub async fn enqueue(
        &self,
        p: &Partition,
        id: &str,
        now_ms: u64,
        max_pending: u64,
        idempotency: Option<(&str, Duration)>,
        request: &StoredRequest,
    ) -> Result<Enqueued, QueueError> {
        let started = std::time::Instant::now();
        let record = p.record(id);
        let mut inv = self.inner.enqueue.prepare_invoke();
        keys(&mut inv, p, &record);
        inv.key(idempotency.map_or(record.as_str(), |(key, _)| key));
        inv.arg(id).arg(now_ms).arg(max_pending);
        match idempotency {
            Some((_, ttl)) => inv.arg(millis(ttl)),
            None => inv.arg(""),
        };
        request.write_fields(&mut inv);
        let reply: Vec<String> = self.inner.front.invoke("enqueue", &inv).await?;
        let answer = match reply.first().map(String::as_str) {
            Some("ok") => Enqueued::Accepted,
            Some("full") => return Ok(Enqueued::Full),
            Some("dup") => reply
                .get(1)
                .map(|id| Enqueued::Duplicate(id.clone()))
                .ok_or_else(|| QueueError::Corrupt("enqueue: dup without id".into()))?,
            _ => return Err(QueueError::Corrupt(format!("enqueue: {reply:?}"))),
        };
        // A duplicate waits too: the first write's replication may still be under way.
        self.replicated(p, started).await?;
        Ok(answer)
    }

    /// Waits, within what is left of the enqueue budget, until `wait_replicas` replicas
    /// (or all that are connected, if fewer) hold what this gateway wrote to `p`'s node: a
    /// 202 must survive the master's loss. Not confirmed in time: `Unavailable` (503); the
    /// entry may still be delivered, and the client's retry with its idempotency key gets
    /// the original id.
    async fn replicated(
        &self,
        p: &Partition,
        started: std::time::Instant,
    ) -> Result<(), QueueError> {
        let replicas = self.inner.wait_replicas;
        if replicas == 0 {
            return Ok(());
        }
        let lane = &self.inner.front;
        let left = lane.timeout.saturating_sub(started.elapsed());
        let mut conn = lane.conn.clone();
        let wait = conn.wait_replicas(&p.stream, replicas, left);
        match tokio::time::timeout(left, wait).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(QueueError::Unavailable(format!(
                "enqueue: written, but not confirmed by {replicas} replica(s) in time"
            ))),
            Ok(Err(e)) => Err(QueueError::Unavailable(format!(
                "enqueue: replication: {e}"
            ))),
            Err(_) => Err(lane.timed_out("enqueue: replication")),
        }
    }

    /// Creates the consumer group of `p` (and its stream) if missing.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn ensure_group(&self, p: &Partition) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&p.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        let lane = &self.inner.back;
        let result: RedisResult<()> = match tokio::time::timeout(lane.timeout, async {
            cmd.query_async(&mut lane.conn.clone()).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => return Err(lane.timed_out("create group")),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(QueueError::Unavailable(format!("create group: {e}"))),
        }
    }

    /// The record of delivery `id` in partition `p`, if it exists.
    ///
    /// # Errors
    /// [`QueueError`].
    pub async fn record(&self, p: &Partition, id: &str) -> Result<Option<Record>, QueueError> {
        let ids = std::slice::from_ref(&id.to_owned()).to_vec();
        let mut records = self.records_on(&self.inner.front, p, &ids).await?;
        Ok(records.pop().flatten())
    }

    /// The records of `ids` in partition `p`, in order, in one round trip. The stored body
    /// is never read, only its size.
    ///
    /// # Errors
    /// [`QueueError`].
    pub async fn records(
        &self,
        p: &Partition,
        ids: &[String],
    ) -> Result<Vec<Option<Record>>, QueueError> {
        self.records_on(&self.inner.back, p, ids).await
    }

    async fn records_on(
        &self,
        lane: &Lane,
        p: &Partition,
        ids: &[String],
    ) -> Result<Vec<Option<Record>>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let key = p.record(id);
            pipe.cmd("HMGET").arg(&key).arg(&RECORD_FIELDS[..]);
            pipe.cmd("HSTRLEN").arg(&key).arg("body");
        }
        let replies: Vec<Value> = lane
            .bounded("status", async {
                pipe.query_async(&mut lane.conn.clone()).await
            })
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, pair) in ids.iter().zip(replies.chunks(2)) {
            let Value::Array(values) = &pair[0] else {
                return Err(QueueError::Corrupt(format!("HMGET: {:?}", pair[0])));
            };
            let fields: HashMap<String, Vec<u8>> = RECORD_FIELDS
                .iter()
                .zip(values)
                .filter_map(|(name, v)| match v {
                    Value::BulkString(b) => Some(((*name).to_owned(), b.clone())),
                    _ => None,
                })
                .collect();
            let body_bytes = match pair.get(1) {
                Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            out.push(Record::from_fields(id, &fields, body_bytes));
        }
        Ok(out)
    }

    /// Dead-lettered ids of `p` with their dead times (ms), oldest first, from `offset`, at
    /// most `count`.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn dead_page(
        &self,
        p: &Partition,
        offset: usize,
        count: usize,
    ) -> Result<Vec<(String, u64)>, QueueError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(&p.dead)
            .arg(offset)
            .arg(offset + count - 1)
            .arg("WITHSCORES");
        let page: Vec<(String, f64)> = self.inner.back.query("dead letters", &cmd).await?;
        Ok(page.into_iter().map(|(id, ms)| (id, ms as u64)).collect())
    }

    /// Replays dead-lettered `id`; returns whether it was in the DLQ.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn replay(&self, p: &Partition, id: &str, now_ms: u64) -> Result<bool, QueueError> {
        let record = p.record(id);
        let mut inv = self.inner.replay.prepare_invoke();
        keys(&mut inv, p, &record);
        inv.arg(id).arg(now_ms);
        let done: i64 = self.inner.back.invoke("replay", &inv).await?;
        Ok(done == 1)
    }

    /// Deletes dead-lettered `id` and its idempotency acceptance; returns whether it was in
    /// the DLQ.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn purge(&self, p: &Partition, id: &str) -> Result<bool, QueueError> {
        let record = p.record(id);
        // Read first: a script may only touch keys it declares.
        let mut get = redis::cmd("HGET");
        get.arg(&record).arg("idem_key");
        let idem: Option<String> = self.inner.back.query("purge", &get).await?;
        let mut inv = self.inner.purge.prepare_invoke();
        keys(&mut inv, p, &record);
        inv.key(idem.as_deref().unwrap_or(&record));
        inv.arg(id);
        let done: i64 = self.inner.back.invoke("purge", &inv).await?;
        Ok(done == 1)
    }

    /// Depth figures of `p`, in one round trip.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn depth(&self, p: &Partition) -> Result<Depth, QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(&p.live);
        pipe.cmd("ZRANGE")
            .arg(&p.live)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES");
        pipe.cmd("ZCARD").arg(&p.dead);
        let lane = &self.inner.back;
        let (live, oldest, dead): (u64, Vec<(String, f64)>, u64) = lane
            .bounded("depth", async {
                pipe.query_async(&mut lane.conn.clone()).await
            })
            .await?;
        Ok(Depth {
            live,
            oldest_ms: oldest.first().map(|(_, ms)| *ms as u64),
            dead,
        })
    }

    /// Redis's `maxmemory-policy`, when the server lets us read it (managed services often
    /// disable `CONFIG`).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn eviction_policy(&self) -> Result<Option<String>, QueueError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let reply: Vec<String> = self.inner.back.query("config get", &cmd).await?;
        Ok(reply.get(1).cloned())
    }
}

/// A connection and the timeout of every call on it.
struct Lane {
    conn: RedisConn,
    timeout: Duration,
}

impl Lane {
    fn new(client: &RedisClient, timeout: Duration) -> Result<Lane, QueueError> {
        let conn = client
            .connect_lazy(timeout)
            .map_err(|e| QueueError::Config(format!("cannot set up the Redis connection: {e}")))?;
        Ok(Lane { conn, timeout })
    }

    fn timed_out(&self, what: &str) -> QueueError {
        QueueError::Unavailable(format!(
            "{what}: no answer from Redis within {}",
            humantime::format_duration(self.timeout)
        ))
    }

    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, QueueError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(QueueError::Unavailable(format!("{what}: {e}"))),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, QueueError> {
        self.bounded(what, async {
            cmd.query_async(&mut self.conn.clone()).await
        })
        .await
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        self.bounded(what, async {
            inv.invoke_async(&mut self.conn.clone()).await
        })
        .await
    }
}

/// Record fields read for status and DLQ views (everything but the body).
const RECORD_FIELDS: [&str; 16] = [
    "state",
    "attempts",
    "created_ms",
    "updated_ms",
    "next_ms",
    "delivered_ms",
    "dead_ms",
    "reason",
    "last_error",
    "status",
    "cell",
    "history",
    "method",
    "uri",
    "target",
    "idem",
];

/// Declares the five keys of a script on one entry: the partition's four, `record` last.
fn keys(inv: &mut ScriptInvocation<'_>, p: &Partition, record: &str) {
    partition_keys(inv, p);
    inv.key(record);
}

/// Declares the four partition keys every script starts with.
fn partition_keys(inv: &mut ScriptInvocation<'_>, p: &Partition) {
    inv.key(&p.stream).key(&p.live).key(&p.delayed).key(&p.dead);
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
