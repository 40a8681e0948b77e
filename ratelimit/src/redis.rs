//! The Redis side of the sync: one pipelined round trip of script calls per chunk of keys.

use std::fmt::Write as _;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use crate::LimiterError;
use crate::share::GlobalView;

const SCRIPT: &str = include_str!("script.lua");

/// Keys per pipeline. Each pipeline is bounded by the timeout on its own; at ~10 µs of Redis
/// time per script call a full chunk takes ~3 ms, well inside the default 10 ms.
pub(crate) const CHUNK: usize = 256;

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

/// One key to report.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) policy: &'a str,
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

    /// Reports `reports` (at most [`CHUNK`]) in one pipeline and returns the fleet's view of
    /// each key, in order. On any failure the connection is dropped and rebuilt next time.
    pub(crate) async fn exchange(
        &mut self,
        gateway: &str,
        reports: &[Report<'_>],
    ) -> Result<Vec<GlobalView>, SyncError> {
        let result = self.exchange_inner(gateway, reports).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange_inner(
        &mut self,
        gateway: &str,
        reports: &[Report<'_>],
    ) -> Result<Vec<GlobalView>, SyncError> {
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        let mut name = String::new();
        for r in reports {
            name.clear();
            key_name(&mut name, r.policy, r.key);
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(1)
                .arg(&name)
                .arg(gateway)
                .arg(r.demand_milli)
                .arg(r.ttl_ms);
        }
        // Any error, NOSCRIPT included (a restarted or flushed Redis), drops the connection;
        // the next one loads the script again.
        let replies: Vec<(String, u32, String)> = self.bounded(pipe.query_async(&mut conn)).await?;
        if replies.len() != reports.len() {
            return Err(SyncError::Reply(format!(
                "{} replies for {} keys",
                replies.len(),
                reports.len()
            )));
        }
        replies
            .into_iter()
            .zip(reports)
            .map(|((total, live, effective), r)| {
                let parse = |s: &str| {
                    s.parse::<f64>()
                        .map_err(|_| SyncError::Reply(format!("not a number: {s:?}")))
                };
                Ok(GlobalView {
                    own: r.demand_milli as f64 / 1000.0,
                    total: parse(&total)? / 1000.0,
                    effective_total: parse(&effective)? / 1000.0,
                    live,
                })
            })
            .collect()
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

/// Appends the Redis key of `key` under `policy`: `{rl:<policy>:<escaped key>}`.
///
/// The whole name is the hash tag, so on Redis Cluster each key has its own slot and keys
/// spread over the cluster. Key bytes outside `[A-Za-z0-9._~@-]` are percent-encoded (`%7B`
/// for `{`), so any byte string is safe and distinct keys never share a name (`%` itself is
/// encoded). Policy names are restricted to `[A-Za-z0-9._-]` and need no escaping.
pub(crate) fn key_name(out: &mut String, policy: &str, key: &[u8]) {
    out.reserve(policy.len() + key.len() + 6);
    out.push_str("{rl:");
    out.push_str(policy);
    out.push(':');
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'@' | b'-') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(policy: &str, key: &[u8]) -> String {
        let mut s = String::new();
        key_name(&mut s, policy, key);
        s
    }

    #[test]
    fn names_are_readable_and_escaped() {
        assert_eq!(name("per-user", b"alice"), "{rl:per-user:alice}");
        assert_eq!(name("ip", b"10.0.0.1"), "{rl:ip:10.0.0.1}");
        assert_eq!(name("k", b"a}{b %\n"), "{rl:k:a%7D%7Bb%20%25%0A}");
    }

    proptest! {
        #[test]
        fn names_are_injective_and_tagged(a in proptest::collection::vec(any::<u8>(), 0..32),
                                          b in proptest::collection::vec(any::<u8>(), 0..32)) {
            let (na, nb) = (name("p", &a), name("p", &b));
            prop_assert_eq!(na == nb, a == b);
            // Exactly one `{` and one `}`: the whole name is the hash tag.
            prop_assert_eq!(na.matches('{').count(), 1);
            prop_assert_eq!(na.matches('}').count(), 1);
            prop_assert!(na.ends_with('}'), "{}", na);
        }
    }
}
