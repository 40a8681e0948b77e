//! [`RedisStore`]: the directory store shared by every gateway of a deployment.
//!
//! Key layout (all keys share the `{cellgate}` hash tag, so multi-key operations stay on one
//! Redis Cluster slot) is in [`keys`] and `docs/control-plane.md`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::{Cmd, FromRedisValue, RedisError, RedisResult, Script};
use cell_router::Directory;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::BoxStream;
use tracing::debug;

use crate::config::{RedisConfig, RedisTarget};
use crate::redis_conn::{RedisClient, RedisConn};

use super::clock::{self, Clock};
use super::lease::{Lease, LeaseState};
use super::store::{
    AUDIT_CAP, AuditEntry, DirectoryStore, GatewayStatus, HeartbeatRecord, StoreError, StoreOptions,
};

mod subscriber;

/// Redis keys of the control plane. Every key carries the `{cellgate}` hash tag.
pub mod keys {
    /// The directory document (JSON string).
    pub const DIRECTORY: &str = "{cellgate}:directory";
    /// The directory version (integer string), mirrored so that polls stay cheap.
    pub const VERSION: &str = "{cellgate}:directory:version";
    /// The audit list (JSON strings), newest first, capped at [`AUDIT_CAP`](super::AUDIT_CAP).
    pub const AUDIT: &str = "{cellgate}:audit";
    /// Gateway heartbeats: hash of gateway id → JSON status with its ttl.
    pub const GATEWAYS: &str = "{cellgate}:gateways";
    /// The automation lease: `"<token> <holder>"`, with a ttl.
    pub const LEASE: &str = "{cellgate}:autoevac:lease";
    /// The last fencing token handed out with the lease (integer).
    pub const FENCE: &str = "{cellgate}:autoevac:fence";
}

/// Pub/sub channel on which every directory change announces its version (decimal payload).
pub const ANNOUNCE_CHANNEL: &str = "cellgate:directory";

/// A [`DirectoryStore`] on a Redis server or Redis Cluster (Redis ≥ 5; the compare-and-set is
/// one Lua script, its keys all on the `{cellgate}` slot). Cheap to clone: clones share one
/// multiplexed connection.
///
/// Every call is bounded by [`StoreOptions::timeout`], connection included; errors are
/// [`StoreError::Unavailable`] and the connection is re-established on the next call.
/// Creating a store does not connect, so a gateway starts even when Redis is down.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: RedisClient,
    conn: RedisConn,
    options: StoreOptions,
    clock: Arc<dyn Clock>,
    cas: Script,
    restore: Script,
    prune: Script,
    lease: Script,
    release: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately no URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("timeout", &self.inner.options.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the `[redis]` deployment of the configuration. Does not connect.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an invalid URL, or outside a Tokio runtime.
    pub fn new(config: &RedisConfig, options: StoreOptions) -> Result<RedisStore, StoreError> {
        Self::open_target(&config.target, options)
    }

    /// A store on the Redis server at `url` (`redis://host:port[/db]`). Does not connect.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an invalid URL, or when called outside a Tokio runtime.
    pub fn open(url: &str, options: StoreOptions) -> Result<RedisStore, StoreError> {
        Self::open_target(&RedisTarget::Single(url.to_owned()), options)
    }

    fn open_target(target: &RedisTarget, options: StoreOptions) -> Result<RedisStore, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Config(
                "RedisStore must be opened inside a Tokio runtime".into(),
            ));
        }
        let client = RedisClient::new(target, options.timeout)
            .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
        let conn = client
            .connect_lazy(options.timeout)
            .map_err(|e| StoreError::Config(format!("cannot set up the Redis connection: {e}")))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                conn,
                options,
                clock: clock::system(),
                cas: Script::new(include_str!("redis/cas.lua")),
                restore: Script::new(include_str!("redis/restore.lua")),
                prune: Script::new(include_str!("redis/prune.lua")),
                lease: Script::new(include_str!("redis/lease.lua")),
                release: Script::new(include_str!("redis/release.lua")),
            }),
        })
    }

    /// The same store expiring heartbeats by `clock` instead of the system clock.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> RedisStore {
        let inner = &self.inner;
        RedisStore {
            inner: Arc::new(Inner {
                client: inner.client.clone(),
                conn: inner.conn.clone(),
                options: inner.options,
                clock,
                cas: inner.cas.clone(),
                restore: inner.restore.clone(),
                prune: inner.prune.clone(),
                lease: inner.lease.clone(),
                release: inner.release.clone(),
            }),
        }
    }
}

impl Inner {
    /// Runs `call` within the store timeout, mapping every failure to `Unavailable`.
    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.options.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(redis_error(what, &e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "{what}: no answer from Redis within {}",
                humantime::format_duration(self.options.timeout)
            ))),
        }
    }

    /// Runs an idempotent command within the store timeout. After a connection error the
    /// connection manager starts a fresh connection: the command is tried once more on it, so
    /// the first call after Redis comes back succeeds instead of reporting the old failure.
    async fn query<T: FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        self.bounded(what, async {
            let mut conn = self.conn.clone();
            match cmd.query_async(&mut conn).await {
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                    debug!(error = %e, "{what}: retrying once on a fresh connection");
                    let mut conn = self.conn.clone();
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    async fn load(&self) -> Result<Directory, StoreError> {
        let raw: Option<Vec<u8>> = self
            .query("load", ::redis::cmd("GET").arg(keys::DIRECTORY))
            .await?;
        match raw {
            None => Ok(Directory::default()),
            Some(raw) => serde_json::from_slice(&raw)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", keys::DIRECTORY))),
        }
    }

    async fn version(&self) -> Result<u64, StoreError> {
        // Read as bytes and parse here: a type error inside the client would also drop the
        // connection.
        let raw: Option<Vec<u8>> = self
            .query("version", ::redis::cmd("GET").arg(keys::VERSION))
            .await?;
        parse_version(raw.as_deref())
    }

    async fn compare_and_set(
        &self,
        expected: u64,
        next: &Directory,
        audit: &AuditEntry,
        fence: Option<&Lease>,
    ) -> Result<(), StoreError> {
        StoreError::check_next(expected, next)?;
        let started = Instant::now();
        let timeout = self.options.timeout;
        // The deadline is on the server's clock, so gateway clock skew does not matter: the
        // server time now plus what is left of this call's budget. `TIME` runs in a script
        // keyed on the directory, so on a cluster it reads the clock of the node that will run
        // the compare-and-set (a bare `TIME` would go to any node).
        let time = ::redis::cmd("EVAL")
            .arg("return redis.call('TIME')")
            .arg(1)
            .arg(keys::DIRECTORY)
            .to_owned();
        let (secs, micros): (u64, u64) = self.query("compare-and-set", &time).await?;
        let left = timeout.saturating_sub(started.elapsed());
        let deadline_ms = secs
            .saturating_mul(1000)
            .saturating_add(micros / 1000)
            .saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
        let cas = self.cas_until(expected, next, audit, deadline_ms, fence);
        match tokio::time::timeout(left, cas).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "compare-and-set: no answer from Redis within {}; not applied",
                humantime::format_duration(timeout)
            ))),
        }
    }

    /// The compare-and-set script, refused by Redis if it only runs after `deadline_ms`
    /// (server clock): the caller has given up by then and reported the change as failed.
    /// With a `fence`, also refused unless that lease is still in force.
    async fn cas_until(
        &self,
        expected: u64,
        next: &Directory,
        audit: &AuditEntry,
        deadline_ms: u64,
        fence: Option<&Lease>,
    ) -> Result<(), StoreError> {
        let doc = encode("directory", next)?;
        let entry = encode("audit entry", audit)?;
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = self
            .cas
            .key(keys::DIRECTORY)
            .key(keys::VERSION)
            .key(keys::AUDIT)
            .key(keys::LEASE)
            .arg(expected)
            .arg(next.version)
            .arg(doc)
            .arg(entry)
            .arg(AUDIT_CAP)
            .arg(ANNOUNCE_CHANNEL)
            .arg(deadline_ms)
            .arg(fence.map(Lease::value).unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_error("compare-and-set", &e))?;
        match reply.as_slice() {
            [1, _] => Ok(()),
            [0, current] => Err(StoreError::Conflict {
                current: u64::try_from(*current).unwrap_or_default(),
            }),
            [-1, _] => Err(StoreError::Unavailable(
                "compare-and-set: Redis ran it after the deadline; not applied".into(),
            )),
            [-2, _] => Err(match fence {
                Some(lease) => StoreError::Fenced {
                    lease: lease.clone(),
                },
                None => StoreError::Corrupt("an unfenced compare-and-set was fenced".into()),
            }),
            other => Err(StoreError::Corrupt(format!(
                "unexpected compare-and-set reply {other:?}"
            ))),
        }
    }

    async fn restore(&self, directory: &Directory, audit: &AuditEntry) -> Result<(), StoreError> {
        let doc = encode("directory", directory)?;
        let entry = encode("audit entry", audit)?;
        let mut conn = self.conn.clone();
        let mut invocation = self.restore.key(keys::DIRECTORY);
        invocation
            .key(keys::VERSION)
            .key(keys::AUDIT)
            .arg(directory.version)
            .arg(doc)
            .arg(entry)
            .arg(AUDIT_CAP)
            .arg(ANNOUNCE_CHANNEL);
        let reply: Vec<i64> = self
            .bounded("restore", invocation.invoke_async(&mut conn))
            .await?;
        match reply.as_slice() {
            [1, _] => Ok(()),
            [0, current] => Err(StoreError::Conflict {
                current: u64::try_from(*current).unwrap_or_default(),
            }),
            other => Err(StoreError::Corrupt(format!(
                "unexpected restore reply {other:?}"
            ))),
        }
    }

    async fn acquire_lease(
        &self,
        holder: &str,
        held: Option<&Lease>,
        ttl: Duration,
    ) -> Result<LeaseState, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.lease.key(keys::LEASE);
        invocation
            .key(keys::FENCE)
            .arg(holder)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(held.map(Lease::value).unwrap_or_default());
        let (granted, value): (i64, String) = self
            .bounded("lease", invocation.invoke_async(&mut conn))
            .await?;
        let lease = Lease::parse(&value).ok_or_else(|| {
            StoreError::Corrupt(format!("{} holds {value:?}, not a lease", keys::LEASE))
        })?;
        Ok(if granted == 1 {
            LeaseState::Held(lease)
        } else {
            LeaseState::Taken(lease)
        })
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.release.key(keys::LEASE);
        invocation.arg(lease.value());
        let released: i64 = self
            .bounded("release lease", invocation.invoke_async(&mut conn))
            .await?;
        debug!(released, lease = %lease, "released the automation lease");
        Ok(())
    }

    async fn heartbeat(&self, status: &GatewayStatus, ttl: Duration) -> Result<(), StoreError> {
        let record = encode("heartbeat", &HeartbeatRecord::new(status, ttl))?;
        self.query(
            "heartbeat",
            ::redis::cmd("HSET")
                .arg(keys::GATEWAYS)
                .arg(&status.id)
                .arg(record),
        )
        .await
    }

    async fn gateways(&self) -> Result<Vec<GatewayStatus>, StoreError> {
        let entries: Vec<(String, Vec<u8>)> = self
            .query("gateways", ::redis::cmd("HGETALL").arg(keys::GATEWAYS))
            .await?;
        let now_ms = self.clock.now_ms();
        let mut live = Vec::with_capacity(entries.len());
        let mut expired = Vec::new();
        for (id, raw) in entries {
            match serde_json::from_slice::<HeartbeatRecord>(&raw) {
                Ok(record) if record.is_live(now_ms) => live.push(record.status),
                Ok(_) => expired.push((id, raw)),
                Err(e) => debug!(gateway = %id, error = %e, "skipping unparsable heartbeat"),
            }
        }
        if !expired.is_empty() {
            self.prune(&expired).await;
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    /// Best effort: a failed prune is retried by the next read that sees the entries.
    async fn prune(&self, expired: &[(String, Vec<u8>)]) {
        let mut conn = self.conn.clone();
        let mut invocation = self.prune.key(keys::GATEWAYS);
        for (id, raw) in expired {
            invocation.arg(id).arg(raw.as_slice());
        }
        let result = self
            .bounded("prune", invocation.invoke_async::<i64>(&mut conn))
            .await;
        match result {
            Ok(removed) => debug!(removed, "pruned expired gateway heartbeats"),
            Err(e) => debug!(error = %e, "could not prune expired gateway heartbeats"),
        }
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.min(AUDIT_CAP);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let raw: Vec<Vec<u8>> = self
            .query(
                "audit",
                ::redis::cmd("LRANGE")
                    .arg(keys::AUDIT)
                    .arg(0)
                    .arg(limit - 1),
            )
            .await?;
        Ok(raw
            .iter()
            .filter_map(|raw| match serde_json::from_slice(raw) {
                Ok(entry) => Some(entry),
                Err(e) => {
                    debug!(error = %e, "skipping unparsable audit entry");
                    None
                }
            })
            .collect())
    }
}

impl DirectoryStore for RedisStore {
    fn load(&self) -> BoxFuture<'_, Result<Directory, StoreError>> {
        self.inner.load().boxed()
    }

    fn compare_and_set<'a>(
        &'a self,
        expected_version: u64,
        next: &'a Directory,
        audit: &'a AuditEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner
            .compare_and_set(expected_version, next, audit, None)
            .boxed()
    }

    fn compare_and_set_fenced<'a>(
        &'a self,
        expected_version: u64,
        next: &'a Directory,
        audit: &'a AuditEntry,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner
            .compare_and_set(expected_version, next, audit, Some(lease))
            .boxed()
    }

    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        held: Option<&'a Lease>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseState, StoreError>> {
        self.inner.acquire_lease(holder, held, ttl).boxed()
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.release_lease(lease).boxed()
    }

    fn restore<'a>(
        &'a self,
        directory: &'a Directory,
        audit: &'a AuditEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.restore(directory, audit).boxed()
    }

    fn version(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.version().boxed()
    }

    fn subscribe(&self) -> BoxStream<'static, u64> {
        subscriber::spawn(self.inner.clone())
    }

    fn heartbeat<'a>(
        &'a self,
        status: &'a GatewayStatus,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.heartbeat(status, ttl).boxed()
    }

    fn gateways(&self) -> BoxFuture<'_, Result<Vec<GatewayStatus>, StoreError>> {
        self.inner.gateways().boxed()
    }

    fn audit(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        self.inner.audit(limit).boxed()
    }
}

fn parse_version(raw: Option<&[u8]>) -> Result<u64, StoreError> {
    let Some(raw) = raw else { return Ok(0) };
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{} is not an integer", keys::VERSION)))
}

fn encode(what: &str, value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))
}

fn redis_error(what: &str, e: &RedisError) -> StoreError {
    if e.code() == Some("CORRUPT") {
        StoreError::Corrupt(
            e.detail()
                .unwrap_or("corrupt control-plane data")
                .to_owned(),
        )
    } else {
        StoreError::Unavailable(format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests;
