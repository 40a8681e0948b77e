//! The Redis side of the sync: one script call per slot group (and chunk of keys), calls
//! pipelined.
//!
//! On one server the whole tick is one pipeline. On a Redis Cluster a pipeline must stay on
//! one slot, so the tick is one pipeline per slot group, all sent at once: each node's
//! pipelines share that node's multiplexed connection, so a tick still costs one round trip
//! (to every node in parallel), not one per key or per group.

use std::fmt::Write as _;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Pipeline, Value};

use crate::LimiterError;
use crate::share::GlobalView;

const SCRIPT: &str = include_str!("script.lua");

/// Most keys in one script call. A script blocks Redis while it runs: measured on this
/// machine's Redis 7.0, a call costs ~9 µs per key when Redis is idle (`redis-benchmark` of a
/// 125-key call with two gateways' entries per key: 1.17 ms, of which `HMGET` and `HSET` 0.23
/// ms) and ~14 µs per key next to a loaded gateway, so a full call blocks Redis ≤ ~2 ms.
pub(crate) const CHUNK: usize = 128;
/// Most keys in one pipeline (round trip). Each pipeline is bounded by the timeout on its own,
/// so one must fit in the default 10 ms with room to spare on a busy Redis: at ~14 µs per key,
/// 128 keys take ~2 ms. (At 1,024, the earlier value, a tick of 1,000 hot keys took 14 ms and
/// every tick timed out: `load-tests/bench/ratelimit-redis.sh` with LIMITS=10.) A tick of many
/// keys makes several round trips, one after the other.
pub(crate) const PIPELINE_KEYS: usize = 128;

/// Connection settings and state of the limiter's Redis backend.
///
/// Connects lazily, from the sync task, and reconnects after any error or timeout; every call
/// (connect, script load, pipeline) is bounded by `timeout`.
pub struct RedisSync {
    client: Backend,
    timeout: Duration,
    conn: Option<Conn>,
    /// Whether the script is known to be loaded on the connection's server(s).
    loaded: bool,
    /// Failed exchanges in a row on the current cluster connection.
    cluster_failures: u32,
    script: redis::Script,
}

impl std::fmt::Debug for RedisSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URLs: they may carry a password.
        f.debug_struct("RedisSync")
            .field("cluster", &matches!(self.client, Backend::Cluster(_)))
            .field("timeout", &self.timeout)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

enum Backend {
    Single(Client),
    Cluster(Box<ClusterClient>),
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// How often the cluster client follows a redirection (`MOVED`/`ASK`) or retries a failed
/// node before a call fails; each tick is bounded by the timeout anyway.
const CLUSTER_RETRIES: u32 = 2;
/// Budget for opening a cluster connection (seed, `CLUSTER SLOTS`, one connection per node):
/// several round trips, off the request path, so not held to the per-call timeout.
const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Failed exchanges after which a cluster connection is rebuilt from the seeds. Before that,
/// the cluster client's own reconnects and slot refreshes repair it: rebuilding after every
/// failure would spend each tick reconnecting to all nodes.
const CLUSTER_REBUILD_AFTER: u32 = 10;

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

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
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
            client: Backend::Single(client),
            timeout,
            conn: None,
            loaded: false,
            cluster_failures: 0,
            script: redis::Script::new(SCRIPT),
        })
    }

    /// A backend for the Redis Cluster with these seed node URLs, every call bounded by
    /// `timeout`. Does not connect.
    ///
    /// # Errors
    ///
    /// No seed, a URL that does not parse, or `timeout` is zero.
    pub fn cluster(seeds: &[String], timeout: Duration) -> Result<Self, LimiterError> {
        if timeout.is_zero() {
            return Err(LimiterError::ZeroTimeout);
        }
        let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(1)
            .max_retry_wait(5)
            .build()
            .map_err(LimiterError::Redis)?;
        Ok(Self {
            client: Backend::Cluster(Box::new(client)),
            timeout,
            conn: None,
            loaded: false,
            cluster_failures: 0,
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

    async fn connection(&mut self) -> Result<Conn, SyncError> {
        let mut conn = match &self.conn {
            Some(conn) => conn.clone(),
            None => {
                let conn = self.connect().await?;
                self.conn = Some(conn.clone());
                conn
            }
        };
        if !self.loaded {
            // On a cluster, SCRIPT LOAD goes to every node, so a promoted replica has it.
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).to_owned();
            let _: Value = self.bounded(load.query_async(&mut conn)).await?;
            self.loaded = true;
        }
        Ok(conn)
    }

    async fn connect(&self) -> Result<Conn, SyncError> {
        match &self.client {
            Backend::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let conn = self
                    .bounded(client.get_multiplexed_async_connection_with_config(&config))
                    .await?;
                Ok(Conn::Single(conn))
            }
            Backend::Cluster(client) => {
                let budget = self.timeout.max(CLUSTER_CONNECT_TIMEOUT);
                let config = ClusterConfig::new()
                    .set_connection_timeout(budget)
                    .set_response_timeout(self.timeout);
                match tokio::time::timeout(budget, client.get_async_connection_with_config(config))
                    .await
                {
                    Ok(conn) => Ok(Conn::Cluster(conn?)),
                    Err(_) => Err(SyncError::Timeout(budget)),
                }
            }
        }
    }

    /// After a failed call: a single server's connection is dropped and rebuilt next time
    /// (the script is loaded again, so a restarted or flushed Redis works at once); a cluster
    /// connection is kept, since it reconnects nodes and follows failovers itself, unless it
    /// keeps failing. Either way the script is loaded again first (a promoted replica may
    /// lack it: NOSCRIPT).
    fn failed(&mut self) {
        self.loaded = false;
        match self.client {
            Backend::Single(_) => self.conn = None,
            Backend::Cluster(_) => {
                self.cluster_failures += 1;
                if self.cluster_failures >= CLUSTER_REBUILD_AFTER {
                    self.cluster_failures = 0;
                    self.conn = None;
                }
            }
        }
    }

    /// Makes `calls` in one pipeline (one per slot group on a cluster) and returns the
    /// fleet's view of each reported key, in order. `group_ttl_ms`: how long a group outlives
    /// its last write (the longest entry TTL).
    pub(crate) async fn exchange(
        &mut self,
        gateway: &str,
        group_ttl_ms: u64,
        calls: &[GroupCall<'_>],
    ) -> Result<Vec<GlobalView>, SyncError> {
        let result = self.exchange_inner(gateway, group_ttl_ms, calls).await;
        match result {
            Ok(_) => self.cluster_failures = 0,
            Err(_) => self.failed(),
        }
        result
    }

    async fn exchange_inner(
        &mut self,
        gateway: &str,
        group_ttl_ms: u64,
        calls: &[GroupCall<'_>],
    ) -> Result<Vec<GlobalView>, SyncError> {
        let conn = self.connection().await?;
        let mut gateway_field = String::new();
        escape(&mut gateway_field, gateway.as_bytes());
        let mut name = String::new();
        let mut field = String::new();
        // One pipeline on a single server; on a cluster, a new pipeline whenever the slot
        // group changes (the sync emits a group's chunks together, so that is one per group).
        // A tick is all or nothing: while one master is down, the whole tick fails and the
        // limiter runs degraded until the cluster has promoted its replica.
        let cluster = matches!(conn, Conn::Cluster(_));
        let mut pipes: Vec<Pipeline> = Vec::new();
        let mut last: Option<(&str, u32)> = None;
        for call in calls {
            if pipes.is_empty() || (cluster && last != Some((call.policy, call.group))) {
                pipes.push(redis::pipe());
            }
            last = Some((call.policy, call.group));
            let Some(pipe) = pipes.last_mut() else {
                continue; // unreachable: pushed above
            };
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
        // Any error, NOSCRIPT included (a restarted or flushed Redis, a promoted replica),
        // drops the connection; the next one loads the script again.
        let sent = futures_util::future::try_join_all(pipes.iter().map(|pipe| {
            let mut conn = conn.clone();
            async move {
                pipe.query_async::<Vec<Vec<(String, u32, String)>>>(&mut conn)
                    .await
            }
        }));
        let replies: Vec<Vec<(String, u32, String)>> =
            self.bounded(sent).await?.into_iter().flatten().collect();
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
        match result {
            Ok(()) => self.cluster_failures = 0,
            Err(_) => self.failed(),
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
