//! The Redis side of the sync: one script call per slot group (and chunk of keys), calls
//! pipelined.

use std::fmt::Write as _;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use crate::LimiterError;
use crate::share::GlobalView;

const SCRIPT: &str = include_str!("script.lua");

/// Most keys in one script call. A script blocks Redis while it runs: at ~2 µs of Lua per key
/// a full call takes ~0.5 ms.
pub(crate) const CHUNK: usize = 256;
/// Most keys in one pipeline (several calls). Each pipeline is bounded by the timeout on its
/// own; a full one takes ~2 ms of Redis time, well inside the default 10 ms.
pub(crate) const PIPELINE_KEYS: usize = 1024;

/// Connection settings and state of the limiter's Redis backend.
///
/// Connects lazily, from the sync task, and reconnects after any error or timeout; every call
/// (connect, script load, pipeline) is bounded by `timeout`.
#[derive(Debug)]
pub struct RedisSync {
    client: Client,
    timeout: Duration,
    conn: Option<MultiplexedConnection>,
    script: redis::Script,
}

/// One script call: keys of one policy's slot group.
#[derive(Debug)]
pub(crate) struct GroupCall<'a> {
    pub(crate) policy: &'a str,
    pub(crate) group: u32,
    /// At most [`CHUNK`].
    pub(crate) reports: &'a [Report<'a>],
}

/// One key to report.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) key: &'a [u8],
    /// Milli-requests per second.
    pub(crate) demand_milli: u64,
    pub(crate) ttl_ms: u64,
}

/// Why a sync round trip failed. Always retryable; the limiter degrades meanwhile.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("redis call exceeded the {0:?} timeout")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("malformed script reply: {0}")]
    Reply(String),
}

impl RedisSync {
    /// A backend for `redis_url` whose every call is bounded by `timeout` (`[redis].timeout`).
    /// Does not connect.
    ///
    /// # Errors
    ///
    /// The URL does not parse, or `timeout` is zero.
    pub fn new(redis_url: &str, timeout: Duration) -> Result<Self, LimiterError> {
        if timeout.is_zero() {
            return Err(LimiterError::ZeroTimeout);
        }
        let client = Client::open(redis_url).map_err(LimiterError::Redis)?;
        Ok(Self {
            client,
            timeout,
            conn: None,
            script: redis::Script::new(SCRIPT),
        })
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SyncError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(SyncError::from),
            Err(_) => Err(SyncError::Timeout(self.timeout)),
        }
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, SyncError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let mut conn = self
            .bounded(
                self.client
                    .get_multiplexed_async_connection_with_config(&config),
            )
            .await?;
        let load = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).to_owned();
        let _: String = self.bounded(load.query_async(&mut conn)).await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Makes `calls` in one pipeline and returns the fleet's view of each reported key, in
    /// order. `group_ttl_ms`: how long a group outlives its last write (the longest entry
    /// TTL). On any failure the connection is dropped and rebuilt next time.
    pub(crate) async fn exchange(
        &mut self,
        gateway: &str,
        group_ttl_ms: u64,
        calls: &[GroupCall<'_>],
    ) -> Result<Vec<GlobalView>, SyncError> {
        let result = self.exchange_inner(gateway, group_ttl_ms, calls).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange_inner(
        &mut self,
        gateway: &str,
        group_ttl_ms: u64,
        calls: &[GroupCall<'_>],
    ) -> Result<Vec<GlobalView>, SyncError> {
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        let mut gateway_field = String::new();
        escape(&mut gateway_field, gateway.as_bytes());
        let mut name = String::new();
        let mut field = String::new();
        for call in calls {
            name.clear();
            group_name(&mut name, call.policy, call.group);
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(1)
                .arg(&name)
                .arg(&gateway_field)
                .arg(group_ttl_ms);
            for r in call.reports {
                field.clear();
                escape(&mut field, r.key);
                cmd.arg(&field).arg(r.demand_milli).arg(r.ttl_ms);
            }
        }
        // Any error, NOSCRIPT included (a restarted or flushed Redis), drops the connection;
        // the next one loads the script again.
        let replies: Vec<Vec<(String, u32, String)>> =
            self.bounded(pipe.query_async(&mut conn)).await?;
        if replies.len() != calls.len() {
            return Err(SyncError::Reply(format!(
                "{} replies for {} calls",
                replies.len(),
                calls.len()
            )));
        }
        let parse = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| SyncError::Reply(format!("not a number: {s:?}")))
        };
        let mut views = Vec::new();
        for (reply, call) in replies.into_iter().zip(calls) {
            if reply.len() != call.reports.len() {
                return Err(SyncError::Reply(format!(
                    "{} answers for {} keys",
                    reply.len(),
                    call.reports.len()
                )));
            }
            for ((total, live, effective), r) in reply.into_iter().zip(call.reports) {
                views.push(GlobalView {
                    own: r.demand_milli as f64 / 1000.0,
                    total: parse(&total)? / 1000.0,
                    effective_total: parse(&effective)? / 1000.0,
                    live,
                });
            }
        }
        Ok(views)
    }

    /// A `PING`, to probe a Redis that failed while no key needs syncing.
    pub(crate) async fn ping(&mut self) -> Result<(), SyncError> {
        let result = async {
            let mut conn = self.connection().await?;
            let _: String = self
                .bounded(redis::cmd("PING").query_async(&mut conn))
                .await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// Appends the Redis key of slot group `group` of `policy`: `{rl:<policy>:g<group>}`.
///
/// The whole name is the hash tag, so on Redis Cluster a group is one slot and a policy's
/// groups spread over the cluster. Policy names are restricted to `[A-Za-z0-9._-]` and need no
/// escaping.
pub(crate) fn group_name(out: &mut String, policy: &str, group: u32) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{{rl:{policy}:g{group}}}");
}

/// Appends `bytes` as a field name (keys) or entry tag (gateway ids): bytes outside
/// `[A-Za-z0-9._~@-]` are percent-encoded (`%7B` for `{`, `%3A` for `:`), so any byte string
/// is safe, distinct inputs never share a name (`%` itself is encoded), and names never hold
/// the script's separators (`:` `,`) nor start with `#`.
pub(crate) fn escape(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'@' | b'-') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(key: &[u8]) -> String {
        let mut s = String::new();
        escape(&mut s, key);
        s
    }

    #[test]
    fn names_are_readable_and_escaped() {
        let mut group = String::new();
        group_name(&mut group, "per-user", 3);
        assert_eq!(group, "{rl:per-user:g3}");
        assert_eq!(escaped(b"alice"), "alice");
        assert_eq!(escaped(b"10.0.0.1"), "10.0.0.1");
        assert_eq!(escaped(b"a}{b %\n:,#"), "a%7D%7Bb%20%25%0A%3A%2C%23");
    }

    proptest! {
        #[test]
        fn fields_are_injective_and_separator_free(
            a in proptest::collection::vec(any::<u8>(), 0..32),
            b in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let (ea, eb) = (escaped(&a), escaped(&b));
            prop_assert_eq!(ea == eb, a == b);
            prop_assert!(!ea.contains([':', ',', '{', '}']) && !ea.starts_with('#'), "{}", ea);
        }
    }
}
