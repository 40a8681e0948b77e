//! [`QueueStore`]: the delivery queue's Redis operations, each bounded by the Redis timeout.
//!
//! Every state change of an entry is one Lua script (`lua/*.lua`) over the keys of one
//! partition, so a crash between two steps of a transition cannot happen: a dead-letter copy
//! exists before the original is acknowledged, a retry is scheduled before its token is
//! dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisResult, Script, ScriptInvocation, Value};

use super::keys::{GROUP, Partition};
use super::record::{Record, StoredRequest};

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

/// What a worker may do with a token it read.
#[derive(Debug)]
pub enum Take {
    /// Deliver: the attempt is counted.
    Go {
        /// This attempt's number, from 1.
        attempt: u32,
        /// The stored request.
        request: StoredRequest,
    },
    /// Dead-lettered instead (too old, or out of attempts after a claim).
    Dead(String),
    /// Nothing to do: already finished or purged.
    Gone,
}

/// A token read from a partition's stream: the stream entry and the delivery it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The stream entry id, acknowledged when the delivery changes state.
    pub entry: String,
    /// The delivery id.
    pub id: String,
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
    client: Client,
    /// Calls made on behalf of a request (enqueue, status), bounded by `[redis].timeout`.
    front: Lane,
    /// Workers' and operators' calls, on a connection of their own (a worker's large reply
    /// must not delay a request's enqueue) with a longer timeout: a script that ran but whose
    /// answer came late would otherwise count an attempt that was never made.
    back: Lane,
    enqueue: Script,
    take: Script,
    defer: Script,
    succeed: Script,
    fail: Script,
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
    /// A store on the Redis server at `url`. Calls made on behalf of a request are bounded by
    /// `timeout`, workers' and operators' calls by `background_timeout`. Does not connect,
    /// so a gateway starts while Redis is down.
    ///
    /// # Errors
    /// [`QueueError::Config`] for a bad URL or outside a Tokio runtime.
    pub fn open(
        url: &str,
        timeout: Duration,
        background_timeout: Duration,
    ) -> Result<QueueStore, QueueError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(QueueError::Config(
                "the delivery queue must be opened inside a Tokio runtime".into(),
            ));
        }
        let client =
            Client::open(url).map_err(|e| QueueError::Config(format!("invalid Redis URL: {e}")))?;
        Ok(QueueStore {
            inner: Arc::new(Inner {
                front: Lane::new(&client, timeout)?,
                back: Lane::new(&client, background_timeout)?,
                client,
                enqueue: script!("enqueue.lua"),
                take: script!("take.lua"),
                defer: script!("defer.lua"),
                succeed: script!("succeed.lua"),
                fail: script!("fail.lua"),
                promote: script!("promote.lua"),
                replay: script!("replay.lua"),
                purge: script!("purge.lua"),
            }),
        })
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
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Enqueued::Accepted),
            Some("full") => Ok(Enqueued::Full),
            Some("dup") => reply
                .get(1)
                .map(|id| Enqueued::Duplicate(id.clone()))
                .ok_or_else(|| QueueError::Corrupt("enqueue: dup without id".into())),
            _ => Err(QueueError::Corrupt(format!("enqueue: {reply:?}"))),
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

    /// Starts an attempt on `token`, dead-lettering it instead when it is older than
    /// `max_age` or out of attempts. The token stays pending with this worker until
    /// [`succeed`](Self::succeed), [`fail`](Self::fail) or [`defer`](Self::defer).
    ///
    /// # Errors
    /// [`QueueError`]; the token then stays pending and is claimed again later.
    pub async fn take(
        &self,
        p: &Partition,
        token: &Token,
        now_ms: u64,
        max_age: Duration,
        max_attempts: u32,
    ) -> Result<Take, QueueError> {
        let record = p.record(&token.id);
        let mut inv = self.inner.take.prepare_invoke();
        keys(&mut inv, p, &record);
        inv.arg(&token.id)
            .arg(&token.entry)
            .arg(now_ms)
            .arg(millis(max_age))
            .arg(max_attempts);
        let reply: Vec<Option<Vec<u8>>> = self.inner.back.invoke("take", &inv).await?;
        let text = |i: usize| -> String {
            reply
                .get(i)
                .and_then(Option::as_ref)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        match text(0).as_str() {
            "gone" => Ok(Take::Gone),
            "dead" => Ok(Take::Dead(text(1))),
            "go" => {
                let attempt = text(1)
                    .parse()
                    .map_err(|_| QueueError::Corrupt(format!("take: attempts {:?}", text(1))))?;
                let bytes = |i: usize| reply.get(i).cloned().flatten().unwrap_or_default();
                Ok(Take::Go {
                    attempt,
                    request: StoredRequest {
                        method: text(2),
                        uri: text(3),
                        headers: bytes(4),
                        body: Bytes::from(bytes(5)),
                        target: bytes(6),
                        idempotency_key: text(7),
                        traceparent: text(8),
                    },
                })
            }
            other => Err(QueueError::Corrupt(format!("take: {other:?}"))),
        }
    }

    /// Gives attempt `attempt` back and schedules `token` for `due_ms`: the cell could not
    /// take it (breaker open, bulkhead full), or it was a failed half-open probe, so it must
    /// not count. `note`: what happened, for the history (empty when nothing was sent).
    ///
    /// # Errors
    /// [`QueueError`]; the token then stays pending and is claimed again later.
    pub async fn defer(
        &self,
        p: &Partition,
        token: &Token,
        now_ms: u64,
        due_ms: u64,
        attempt: u32,
        note: &str,
    ) -> Result<(), QueueError> {
        let record = p.record(&token.id);
        let mut inv = self.inner.defer.prepare_invoke();
        keys(&mut inv, p, &record);
        inv.arg(&token.id)
            .arg(&token.entry)
            .arg(now_ms)
            .arg(due_ms)
            .arg(attempt)
            .arg(note);
        let _: i64 = self.inner.back.invoke("defer", &inv).await?;
        Ok(())
    }

    /// Records that `token`'s attempt `attempt` was answered `status` by `cell`.
    ///
    /// # Errors
    /// [`QueueError`]; the token then stays pending and is delivered again later.
    #[allow(clippy::too_many_arguments)]
    pub async fn succeed(
        &self,
        p: &Partition,
        token: &Token,
        now_ms: u64,
        retention: Duration,
        status: u16,
        cell: &str,
        attempt: u32,
    ) -> Result<(), QueueError> {
        let record = p.record(&token.id);
        let mut inv = self.inner.succeed.prepare_invoke();
        keys(&mut inv, p, &record);
        inv.arg(&token.id)
            .arg(&token.entry)
            .arg(now_ms)
            .arg(millis(retention))
            .arg(status)
            .arg(cell)
            .arg(attempt);
        let _: i64 = self.inner.back.invoke("succeed", &inv).await?;
        Ok(())
    }

    /// Records a failed attempt: a retry at `retry_at` (ms), or with `None` a dead letter
    /// with `reason`. Returns whether it was dead-lettered.
    ///
    /// # Errors
    /// [`QueueError`]; the token then stays pending and is claimed again later.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail(
        &self,
        p: &Partition,
        token: &Token,
        now_ms: u64,
        retry_at: Option<u64>,
        reason: &str,
        error: &str,
        attempt: u32,
        status: Option<u16>,
    ) -> Result<bool, QueueError> {
        let record = p.record(&token.id);
        let mut inv = self.inner.fail.prepare_invoke();
        keys(&mut inv, p, &record);
        inv.arg(&token.id).arg(&token.entry).arg(now_ms);
        match retry_at {
            Some(at) => inv.arg(at),
            None => inv.arg(""),
        };
        inv.arg(reason).arg(error).arg(attempt);
        match status {
            Some(s) => inv.arg(s),
            None => inv.arg(""),
        };
        let outcome: String = self.inner.back.invoke("fail", &inv).await?;
        Ok(outcome == "dead")
    }

    /// Moves up to `limit` due retries of `p` back into its stream; returns how many.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn promote(
        &self,
        p: &Partition,
        now_ms: u64,
        limit: usize,
    ) -> Result<usize, QueueError> {
        let mut inv = self.inner.promote.prepare_invoke();
        // The record key is unused; any key of the partition keeps the slot rule.
        keys(&mut inv, p, &p.dead);
        inv.arg(now_ms).arg(limit);
        self.inner.back.invoke("promote", &inv).await
    }

    /// Claims tokens of `p` that sat with a worker longer than `min_idle` (that worker is
    /// presumed dead), from `cursor`; returns the next cursor and the claimed tokens.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn claim(
        &self,
        p: &Partition,
        consumer: &str,
        min_idle: Duration,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<Token>), QueueError> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&p.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(millis(min_idle))
            .arg(cursor)
            .arg("COUNT")
            .arg(count);
        let reply: Value = self.inner.back.query("claim", &cmd).await?;
        let Value::Array(parts) = reply else {
            return Err(QueueError::Corrupt(format!("XAUTOCLAIM: {reply:?}")));
        };
        let next = parts
            .first()
            .and_then(as_text)
            .unwrap_or_else(|| "0-0".to_owned());
        let tokens = parts.get(1).map(parse_entries).unwrap_or_default();
        Ok((next, tokens))
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

    /// A connection of its own for blocking reads of `p`'s stream.
    pub fn reader(&self, consumer: &str) -> Reader {
        Reader {
            client: self.inner.client.clone(),
            timeout: self.inner.back.timeout,
            consumer: consumer.to_owned(),
            conn: None,
        }
    }
}

/// A blocking reader of one partition's stream, on a connection of its own: a blocked
/// `XREADGROUP` would stall every other command multiplexed on a shared connection, and its
/// response timeout must outlast the block time.
pub struct Reader {
    client: Client,
    timeout: Duration,
    consumer: String,
    conn: Option<MultiplexedConnection>,
}

impl Reader {
    /// Reads up to `count` new tokens of `p`, waiting up to `block` for the first (`None`:
    /// answer at once).
    ///
    /// A read that times out may have handed tokens to this consumer that it never saw: they
    /// stay pending and are claimed after the visibility timeout, never lost.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`]; the connection is rebuilt on the next read.
    pub async fn read(
        &mut self,
        p: &Partition,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Token>, QueueError> {
        let result = self.read_inner(p, count, block).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn read_inner(
        &mut self,
        p: &Partition,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Token>, QueueError> {
        let block = block.unwrap_or_default();
        // Redis checks block timeouts on its cron tick (100 ms at the default `hz 10`), so an
        // empty answer can come late: allow twice the block time plus the call timeout.
        let limit = block * 2 + self.timeout;
        let conn = match &self.conn {
            Some(conn) => conn.clone(),
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(limit));
                let conn = tokio::time::timeout(
                    self.timeout,
                    self.client
                        .get_multiplexed_async_connection_with_config(&config),
                )
                .await
                .map_err(|_| QueueError::Unavailable("connect: timed out".into()))?
                .map_err(|e| QueueError::Unavailable(format!("connect: {e}")))?;
                self.conn = Some(conn.clone());
                conn
            }
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        // `BLOCK 0` would wait forever: no BLOCK at all answers at once.
        if !block.is_zero() {
            cmd.arg("BLOCK").arg(millis(block));
        }
        cmd.arg("STREAMS").arg(&p.stream).arg(">");
        let reply: Value =
            tokio::time::timeout(limit, async { cmd.query_async(&mut conn.clone()).await })
                .await
                .map_err(|_| QueueError::Unavailable("read: timed out".into()))?
                .map_err(|e| QueueError::Unavailable(format!("read: {e}")))?;
        // [[stream, [[entry, [field, value, ..]], ..]]] or nil when the block time passed.
        let mut tokens = Vec::new();
        match reply {
            Value::Array(streams) => {
                for stream in &streams {
                    if let Value::Array(pair) = stream {
                        if let Some(entries) = pair.get(1) {
                            tokens.extend(parse_entries(entries));
                        }
                    }
                }
            }
            Value::Map(streams) => {
                for (_, entries) in &streams {
                    tokens.extend(parse_entries(entries));
                }
            }
            _ => {}
        }
        Ok(tokens)
    }
}

/// A connection and the timeout of every call on it.
struct Lane {
    conn: ConnectionManager,
    timeout: Duration,
}

impl Lane {
    fn new(client: &Client, timeout: Duration) -> Result<Lane, QueueError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
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

/// Declares the five partition keys every script takes, `record` last.
fn keys(inv: &mut ScriptInvocation<'_>, p: &Partition, record: &str) {
    inv.key(&p.stream)
        .key(&p.live)
        .key(&p.delayed)
        .key(&p.dead)
        .key(record);
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[[entry, [field, value, ..]] | nil, ..]` → tokens; entries without an `id` field (or
/// deleted ones, which `XAUTOCLAIM` reports as nil) are skipped.
fn parse_entries(v: &Value) -> Vec<Token> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(pair) = entry else {
                return None;
            };
            let entry = as_text(pair.first()?)?;
            let Value::Array(fields) = pair.get(1)? else {
                return None;
            };
            let id = fields
                .chunks(2)
                .find(|kv| as_text(&kv[0]).as_deref() == Some("id"))
                .and_then(|kv| kv.get(1))
                .and_then(as_text)?;
            Some(Token { entry, id })
        })
        .collect()
}
