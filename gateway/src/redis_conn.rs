//! One connection type for the `[redis]` deployment, a single server or a Redis Cluster, so
//! the control plane and the delivery queue are written once for both.
//!
//! On a cluster every multi-key script of Cellgate names keys of one hash tag only (see
//! `docs/redis.md`), so each call lands on one slot and the cluster client routes it to that
//! slot's master, following `MOVED`/`ASK` redirections and refreshing its slot map after a
//! failover. Blocking reads (`XREADGROUP BLOCK`) need a connection of their own, since a
//! blocked call would stall every other call multiplexed on the same node connection: each
//! [`RedisClient::connect_lazy`] makes an independent connection.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Client, Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

use crate::config::RedisTarget;

/// How often the cluster client follows a redirection or retries after a connection error
/// before giving up on a call. Every call is also bounded by the caller's timeout.
const CLUSTER_RETRIES: u32 = 3;
/// Bounds of the cluster client's wait between those attempts, in milliseconds: short, since
/// a redirect needs no wait and the caller's timeout is short too.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (1, 25);

/// A connection to the configured Redis: cheap to clone (clones share the underlying
/// multiplexed connections), connects lazily, reconnects after failures.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, through a connection manager that reconnects after errors.
    Single(ConnectionManager),
    /// A Redis Cluster: one multiplexed connection per node, routed by key slot.
    Cluster(ClusterConnection),
}

/// What a [`RedisConn`] is opened on; keeps the clients to make more connections.
#[derive(Clone)]
pub enum RedisClient {
    /// One server.
    Single(Client),
    /// A Redis Cluster, plus a plain client per seed node (for pub/sub).
    Cluster(Box<ClusterClient>, Vec<Client>),
}

impl RedisClient {
    /// Clients for `target`. Does not connect.
    ///
    /// # Errors
    ///
    /// A URL that does not parse.
    pub fn new(target: &RedisTarget, timeout: Duration) -> RedisResult<RedisClient> {
        match target {
            RedisTarget::Single(url) => Ok(RedisClient::Single(Client::open(url.as_str())?)),
            RedisTarget::Cluster(urls) => {
                let cluster = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
                    .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1)
                    .build()?;
                let seeds = urls
                    .iter()
                    .map(|url| Client::open(url.as_str()))
                    .collect::<RedisResult<Vec<_>>>()?;
                Ok(RedisClient::Cluster(Box::new(cluster), seeds))
            }
        }
    }

    /// A lazily connected, shared connection whose calls each give up after `timeout`.
    /// A single server's connection manager does not retry by itself (`retries`: 0), so a
    /// failure surfaces as one failed call and the caller's loop decides when to try again.
    ///
    /// # Errors
    ///
    /// Outside a Tokio runtime.
    pub fn connect_lazy(&self, timeout: Duration) -> RedisResult<RedisConn> {
        self.connect_lazy_with(timeout, timeout)
    }

    /// As [`connect_lazy`](Self::connect_lazy), with a response timeout of its own: for a
    /// connection that makes blocking calls, whose answers come after the block time.
    ///
    /// # Errors
    ///
    /// Outside a Tokio runtime.
    pub fn connect_lazy_with(
        &self,
        timeout: Duration,
        response_timeout: Duration,
    ) -> RedisResult<RedisConn> {
        match self {
            RedisClient::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(0);
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                Ok(RedisConn::Single(conn))
            }
            RedisClient::Cluster(cluster, _) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(response_timeout);
                Ok(RedisConn::Cluster(
                    cluster.get_pending_async_connection_with_config(config),
                ))
            }
        }
    }

    /// Plain clients for pub/sub: the server, or every seed node of the cluster (classic
    /// `PUBLISH` reaches every node of a cluster, so a subscriber may use any of them).
    pub fn pubsub_clients(&self) -> Vec<Client> {
        match self {
            RedisClient::Single(client) => vec![client.clone()],
            RedisClient::Cluster(_, seeds) => seeds.clone(),
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisClient::Cluster(..))
    }
}

impl RedisConn {
    /// Runs a command that names no key on the node serving `key` (on a cluster, its
    /// slot's master; a bare keyless command would go to any node), over the same connection
    /// the key's other commands use.
    ///
    /// # Errors
    ///
    /// Connection errors and error replies; the caller bounds the call with its timeout.
    pub async fn query_on_node_of<T: FromRedisValue>(
        &mut self,
        key: &str,
        cmd: Cmd,
    ) -> RedisResult<T> {
        match self {
            RedisConn::Single(conn) => cmd.query_async(conn).await,
            RedisConn::Cluster(conn) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_slot(Slot::for_key(key), SlotAddr::Master),
                ));
                let value = conn.route_command(cmd, route).await?;
                Ok(T::from_redis_value(value)?)
            }
        }
    }

    /// Waits until the writes this connection made on `key`'s node are held by
    /// `min(replicas, replicas connected to that node)` replicas, for up to half of
    /// `timeout` (the other half is for asking the node how many replicas it has);
    /// returns whether they are. A node whose replicas are all gone (e.g. a master just
    /// promoted after its old master died) has nothing to wait for: waiting there would
    /// refuse every write until an operator repaired the replica, for no durability gain
    /// (the node has no replica to fail over to).
    ///
    /// # Errors
    ///
    /// As [`query_on_node_of`](Self::query_on_node_of).
    pub async fn wait_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<bool> {
        // Half the budget for WAIT, so that ROLE still fits when it falls short. `WAIT n 0`
        // would block forever.
        let millis = u64::try_from((timeout / 2).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(millis);
        let acked: u32 = self.query_on_node_of(key, wait).await?;
        if acked >= replicas {
            return Ok(true);
        }
        // ROLE of a master: ["master", offset, [[ip, port, offset], ...]]. Anything else
        // (a node that is no longer master) confirms nothing.
        let role: Vec<Value> = self.query_on_node_of(key, redis::cmd("ROLE")).await?;
        let is_master = matches!(role.first(), Some(Value::BulkString(b)) if b == b"master");
        let connected = match role.get(2) {
            Some(Value::Array(list)) if is_master => u32::try_from(list.len()).unwrap_or(u32::MAX),
            _ => return Ok(false),
        };
        Ok(acked >= replicas.min(connected))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}
