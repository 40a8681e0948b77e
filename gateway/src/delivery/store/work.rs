//! The workers' side of the store: reading tokens, starting attempts and recording their
//! outcomes, a batch of one partition's entries per script call (`take.lua`, `settle.lua`),
//! moving due retries back into the stream and claiming abandoned work.
//!
//! A batch is atomic as a whole, but each entry in it is judged on its own: a stale outcome
//! in a batch is refused for that entry only. A batch whose call fails or times out changes
//! nothing that a crash could not: its tokens stay pending and are claimed after the
//! visibility timeout, so the entries are delivered again, never lost.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use crate::control::millis;
use crate::redis_conn::{RedisClient, RedisConn};

use super::{GROUP, Partition, QueueError, QueueStore, StoredRequest, as_text, partition_keys};

/// About how many bytes of stored requests (bodies and headers) one `take` call answers
/// with; the tokens beyond are taken by further calls. Bounds what one call holds in Redis's
/// Lua heap and output buffer, and in one reply, when bodies are large.
pub const TAKE_REPLY_BYTES: usize = 4 << 20;

/// A token read from a partition's stream: the stream entry and the delivery it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The stream entry id, acknowledged when the delivery changes state.
    pub entry: String,
    /// The delivery id.
    pub id: String,
    /// The target routing key, which lets a worker check the target cell's breaker before it
    /// starts an attempt. `None` on a token written without it (by an older gateway).
    pub target: Option<Vec<u8>>,
}

/// A token to start an attempt on, or to put off.
#[derive(Debug, Clone)]
pub struct TakeRequest {
    /// The token.
    pub token: Token,
    /// `Some(ms)`: the target cell refuses work now (its breaker is open), so the entry waits
    /// until then without an attempt being counted.
    pub defer_until: Option<u64>,
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
    /// Put off as asked, no attempt counted.
    Deferred,
    /// Dead-lettered instead (too old, or out of attempts after a claim).
    Dead(String),
    /// Nothing to do: already finished or purged.
    Gone,
}

/// The outcome of one attempt, to record with [`QueueStore::settle`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The token the attempt was made on.
    pub token: Token,
    /// The attempt's number.
    pub attempt: u32,
    /// When it ended, ms since the epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: OutcomeKind,
}

/// What came of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// `cell` answered 2xx/3xx with `status`.
    Delivered {
        /// The HTTP status.
        status: u16,
        /// The cell that took it.
        cell: String,
    },
    /// Failed: a retry at `retry_at` (ms), or with `None` a dead letter with `reason`.
    Failed {
        /// When to try again; `None` dead-letters the entry.
        retry_at: Option<u64>,
        /// Why it is dead-lettered (`max_attempts`, `non_retryable_status`).
        reason: &'static str,
        /// The error, as a code for the public record.
        error: String,
        /// The HTTP status the cell answered, if it answered.
        status: Option<u16>,
    },
    /// The cell could not take it (breaker, bulkhead, no eligible upstream), or it was a
    /// failed half-open probe: the attempt is given back and the entry waits until `due_ms`.
    Deferred {
        /// When to try again, ms since the epoch.
        due_ms: u64,
        /// What happened, for the history; empty when nothing was sent.
        note: String,
    },
}

/// What recording an outcome did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Marked delivered.
    Delivered,
    /// Scheduled for a retry.
    Retrying,
    /// Dead-lettered.
    Dead,
    /// Scheduled to wait, the attempt given back.
    Deferred,
    /// Nothing changed: the record is gone or already delivered, or (for a failure or a
    /// deferral) the attempt is no longer the entry's current one.
    Stale,
}

impl QueueStore {
    /// Starts attempts on a batch of `p`'s tokens, or puts off those with a `defer_until`;
    /// entries older than `max_age` or out of attempts are dead-lettered instead. One answer
    /// per request, in order. A started token stays pending with this worker until its
    /// outcome is [settled](Self::settle).
    ///
    /// One script call, unless the stored requests are large: a call answers with at most
    /// about [`TAKE_REPLY_BYTES`] of them and the rest are asked for again.
    ///
    /// # Errors
    /// [`QueueError`]; the tokens then stay pending and are claimed again later.
    pub async fn take(
        &self,
        p: &Partition,
        batch: &[TakeRequest],
        now_ms: u64,
        max_age: Duration,
        max_attempts: u32,
    ) -> Result<Vec<Take>, QueueError> {
        let mut out = Vec::with_capacity(batch.len());
        while out.len() < batch.len() {
            let rest = &batch[out.len()..];
            let answered = self
                .take_some(p, rest, now_ms, max_age, max_attempts)
                .await?;
            if answered.is_empty() {
                return Err(QueueError::Corrupt("take: no token answered".into()));
            }
            out.extend(answered);
        }
        Ok(out)
    }

    /// One `take` call: the answers up to the first one left for later.
    async fn take_some(
        &self,
        p: &Partition,
        batch: &[TakeRequest],
        now_ms: u64,
        max_age: Duration,
        max_attempts: u32,
    ) -> Result<Vec<Take>, QueueError> {
        let mut inv = self.inner.take.prepare_invoke();
        partition_keys(&mut inv, p);
        inv.arg(now_ms)
            .arg(millis(max_age))
            .arg(max_attempts)
            .arg(TAKE_REPLY_BYTES);
        for r in batch {
            inv.key(p.record(&r.token.id));
            inv.arg(&r.token.id).arg(&r.token.entry);
            match r.defer_until {
                Some(ms) => inv.arg(ms),
                None => inv.arg(""),
            };
        }
        let reply: Value = self.inner.back.invoke("take", &inv).await?;
        let replies = array(reply, "take")?;
        if replies.len() != batch.len() {
            return Err(QueueError::Corrupt(format!(
                "take: {} answers for {} tokens",
                replies.len(),
                batch.len()
            )));
        }
        let mut out = Vec::with_capacity(replies.len());
        for reply in replies {
            match parse_take(reply)? {
                Some(take) => out.push(take),
                None => break,
            }
        }
        Ok(out)
    }

    /// Records a batch of `p`'s outcomes in one script call; delivered records are kept for
    /// `retention`. One answer per outcome, in order.
    ///
    /// # Errors
    /// [`QueueError`]; the tokens then stay pending and are claimed again later, and the
    /// entries delivered again.
    pub async fn settle(
        &self,
        p: &Partition,
        outcomes: &[Outcome],
        retention: Duration,
    ) -> Result<Vec<Settled>, QueueError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.inner.settle.prepare_invoke();
        partition_keys(&mut inv, p);
        inv.arg(millis(retention));
        for o in outcomes {
            inv.key(p.record(&o.token.id));
            inv.arg(&o.token.id)
                .arg(&o.token.entry)
                .arg(o.attempt)
                .arg(o.at_ms);
            match &o.kind {
                OutcomeKind::Delivered { status, cell } => {
                    inv.arg("ok").arg(status).arg(cell).arg("").arg("")
                }
                OutcomeKind::Failed {
                    retry_at,
                    reason,
                    error,
                    status,
                } => {
                    inv.arg("fail");
                    match retry_at {
                        Some(at) => inv.arg(at),
                        None => inv.arg(""),
                    };
                    inv.arg(*reason).arg(error);
                    match status {
                        Some(s) => inv.arg(s),
                        None => inv.arg(""),
                    }
                }
                OutcomeKind::Deferred { due_ms, note } => {
                    inv.arg("defer").arg(due_ms).arg(note).arg("").arg("")
                }
            };
        }
        let replies: Vec<String> = self.inner.back.invoke("settle", &inv).await?;
        if replies.len() != outcomes.len() {
            return Err(QueueError::Corrupt(format!(
                "settle: {} answers for {} outcomes",
                replies.len(),
                outcomes.len()
            )));
        }
        (replies.iter())
            .map(|r| match r.as_str() {
                "delivered" => Ok(Settled::Delivered),
                "retry" => Ok(Settled::Retrying),
                "dead" => Ok(Settled::Dead),
                "deferred" => Ok(Settled::Deferred),
                "gone" => Ok(Settled::Stale),
                other => Err(QueueError::Corrupt(format!("settle: {other:?}"))),
            })
            .collect()
    }

    /// Moves up to `limit` due retries of `p` back into its stream; returns how many.
    ///
    /// Two steps, because a script may only touch the keys it declares: the due ids are read
    /// first, and the script moves those still waiting and due, with their targets.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn promote(
        &self,
        p: &Partition,
        now_ms: u64,
        limit: usize,
    ) -> Result<usize, QueueError> {
        let mut due = redis::cmd("ZRANGEBYSCORE");
        due.arg(&p.delayed)
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let ids: Vec<String> = self.inner.back.query("promote", &due).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = self.inner.promote.prepare_invoke();
        partition_keys(&mut inv, p);
        inv.arg(now_ms);
        for id in &ids {
            inv.key(p.record(id));
            inv.arg(id);
        }
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
    client: RedisClient,
    timeout: Duration,
    consumer: String,
    conn: Option<RedisConn>,
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
                let conn = self
                    .client
                    .connect_lazy_with(self.timeout, limit)
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

fn array(v: Value, what: &str) -> Result<Vec<Value>, QueueError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(QueueError::Corrupt(format!("{what}: {other:?}"))),
    }
}

fn bytes(v: Option<&Value>) -> Vec<u8> {
    match v {
        Some(Value::BulkString(b)) => b.clone(),
        Some(Value::SimpleString(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

fn text(v: Option<&Value>) -> String {
    v.and_then(as_text).unwrap_or_default()
}

/// One token's answer of `take.lua`; `None` for one left for a later call.
fn parse_take(v: Value) -> Result<Option<Take>, QueueError> {
    let items = array(v, "take")?;
    let field = |i: usize| text(items.get(i));
    let take = match field(0).as_str() {
        "later" => return Ok(None),
        "gone" => Take::Gone,
        "deferred" => Take::Deferred,
        "dead" => Take::Dead(field(1)),
        "go" => {
            let attempt = field(1)
                .parse()
                .map_err(|_| QueueError::Corrupt(format!("take: attempts {:?}", field(1))))?;
            Take::Go {
                attempt,
                request: StoredRequest {
                    method: field(2),
                    uri: field(3),
                    headers: bytes(items.get(4)),
                    body: Bytes::from(bytes(items.get(5))),
                    target: bytes(items.get(6)),
                    idempotency_key: field(7),
                    traceparent: field(8),
                },
            }
        }
        other => return Err(QueueError::Corrupt(format!("take: {other:?}"))),
    };
    Ok(Some(take))
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
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| as_text(&kv[0]).as_deref() == Some(name))
                    .and_then(|kv| kv.get(1))
            };
            let id = field("id").and_then(as_text)?;
            // Target keys may hold any byte but controls: read them as bytes, not text.
            let target = Some(bytes(field("t"))).filter(|t| !t.is_empty());
            Some(Token { entry, id, target })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn tokens_carry_their_target_as_bytes_when_present() {
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![bulk(b"id"), bulk(b"c.1"), bulk(b"t"), bulk(b"k\xff")]),
            ]),
            // Written by an older gateway: no target.
            Value::Array(vec![
                bulk(b"2-0"),
                Value::Array(vec![bulk(b"id"), bulk(b"c.2")]),
            ]),
            // Deleted (XAUTOCLAIM), or without an id: skipped.
            Value::Nil,
            Value::Array(vec![
                bulk(b"3-0"),
                Value::Array(vec![bulk(b"t"), bulk(b"k")]),
            ]),
        ]);
        let tokens = parse_entries(&entries);
        assert_eq!(
            tokens,
            vec![
                Token {
                    entry: "1-0".into(),
                    id: "c.1".into(),
                    target: Some(b"k\xff".to_vec()),
                },
                Token {
                    entry: "2-0".into(),
                    id: "c.2".into(),
                    target: None,
                },
            ]
        );
    }

    #[test]
    fn take_answers_parse_and_malformed_ones_are_errors() {
        let go = Value::Array(vec![
            bulk(b"go"),
            bulk(b"2"),
            bulk(b"POST"),
            bulk(b"/o"),
            bulk(b"a: b\r\n"),
            bulk(b"\x00body"),
            bulk(b"alice"),
            bulk(b"k1"),
            Value::Nil,
        ]);
        match parse_take(go).unwrap().unwrap() {
            Take::Go { attempt, request } => {
                assert_eq!(attempt, 2);
                assert_eq!(&request.body[..], b"\x00body");
                assert_eq!(request.target, b"alice");
                assert_eq!(request.traceparent, "");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_take(Value::Array(vec![bulk(b"deferred")])).unwrap(),
            Some(Take::Deferred)
        ));
        assert!(
            parse_take(Value::Array(vec![bulk(b"later")]))
                .unwrap()
                .is_none()
        );
        assert!(
            matches!(parse_take(Value::Array(vec![bulk(b"dead"), bulk(b"expired")])).unwrap(), Some(Take::Dead(r)) if r == "expired")
        );
        assert!(parse_take(Value::Array(vec![bulk(b"go"), bulk(b"x")])).is_err());
        assert!(parse_take(Value::Array(vec![bulk(b"what")])).is_err());
        assert!(parse_take(Value::Nil).is_err());
    }
}
