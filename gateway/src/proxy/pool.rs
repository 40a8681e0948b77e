//! Keep-alive HTTP/1.1 connections to one upstream, driven by the requests that use them.
//!
//! A request checks an idle connection out of its upstream's [`Pool`], writes itself and
//! reads the response in its own task ([`conn`]), and the connection goes back to the pool
//! once the response body has been read. The HTTP/1.1 framing is in [`h1`].

mod conn;
mod h1;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, Weak};
use std::time::Duration;

use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tower_service::Service as _;
use tracing::debug;

use super::body::{LimitedBody, RequestBodyError};
use super::headers::Added;
pub use conn::ResponseBody;
use conn::{Conn, Failed};
pub use h1::ProtocolError;

/// Why a request to an upstream failed. Logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No TCP connection could be opened within the connect timeout.
    #[error("connecting to the upstream failed")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Writing the request failed.
    #[error("writing the request to the upstream failed")]
    Write(#[source] io::Error),
    /// Reading the response failed.
    #[error("reading the response from the upstream failed")]
    Read(#[source] io::Error),
    /// The upstream closed the connection before the response ended.
    #[error("the upstream closed the connection before the response ended")]
    Closed,
    /// The upstream's response broke HTTP/1.1.
    #[error("the upstream's response is not valid HTTP/1.1")]
    Protocol(#[source] ProtocolError),
    /// The client's request body failed (too large, or reading it failed).
    #[error("the request body failed")]
    Body(#[source] RequestBodyError),
    /// The request body did not match its `Content-Length`.
    #[error("the request body did not match its content-length")]
    BodyLength,
}

impl Error {
    /// Whether no connection could be opened (the upstream is down or unreachable).
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }

    /// Whether the request, not the upstream, failed the exchange (its body broke off or did
    /// not match its length): such failures must not count against the upstream.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Error::Body(_) | Error::BodyLength | Error::Protocol(ProtocolError::RequestLength)
        )
    }
}

/// Settings of a [`Pool`].
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Budget for opening one connection.
    pub connect_timeout: Duration,
    /// How long an idle connection stays pooled.
    pub idle_timeout: Duration,
    /// Idle connections kept; 0 disables reuse.
    pub max_idle: usize,
}

/// The connections to one upstream. Cheap to clone; clones share the idle set.
#[derive(Clone, Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    /// `http://host:port`, what the connector dials.
    target: Uri,
    /// `Host` for requests that came without one (HTTP/1.0 clients).
    host: HeaderValue,
    connector: HttpConnector,
    config: PoolConfig,
    /// Idle connections, most recently used last: checkout takes the warmest one, and the
    /// oldest (first to expire) sit at the front.
    idle: Mutex<Vec<Idle>>,
    reaper: Once,
    /// Requests sent again because their pooled connection turned out closed
    /// (`cellgate_upstream_resent_total`, shared by the cell's pools).
    resent: Counter,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("target", &self.target)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

impl Pool {
    /// A pool of connections to `authority`, opened on demand; `resent` counts the requests
    /// it sends again (see [`Pool::send`]).
    pub fn new(authority: &Authority, config: PoolConfig, resent: Counter) -> Pool {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let target = Uri::from_parts({
            let mut parts = Parts::default();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
            parts
        })
        // A scheme, an authority and "/" always make a valid URI.
        .unwrap_or_default();
        // As hyper-util's client does: the default port is left out of `Host`.
        let host = match authority.port_u16() {
            Some(80) | None => authority.host(),
            Some(_) => authority.as_str(),
        };
        Pool {
            shared: Arc::new(Shared {
                target,
                host: HeaderValue::from_str(host)
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                connector,
                config,
                idle: Mutex::new(Vec::new()),
                reaper: Once::new(),
                resent,
            }),
        }
    }

    /// Sends `req` on a pooled connection, or a new one, and returns the response head; the
    /// connection rejoins the pool once the response body has been read to its end.
    ///
    /// A request that a pooled connection turned out to be closed for is sent again once, on a
    /// new connection, when none of it can have reached the upstream (the write failed), or
    /// when the upstream closed without a byte of answer and the request is safe to repeat (no
    /// body; an idempotent method or an `Idempotency-Key`). Nothing else is ever retried.
    ///
    /// `now` is the caller's clock reading (the attempt's start): it judges whether an idle
    /// connection has expired, without a clock read of the pool's own.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn send(
        &self,
        req: Request<LimitedBody>,
        added: Option<&Added<'_>>,
        now: Instant,
    ) -> Result<Response<ResponseBody>, Error> {
        // A request that could not go again if its connection turned out closed gets a
        // checkout that asks the kernel, not only the I/O driver, whether it still is.
        let verify = !conn::replayable(&req);
        let conn = match self.shared.checkout(verify, now) {
            Some(conn) => conn,
            None => self.shared.connect().await?,
        };
        match conn.send(req, added).await {
            Ok(response) => Ok(response),
            Err(Failed {
                error,
                retry: Some(req),
            }) => {
                debug!(%error, "pooled connection was closed; retrying on a new one");
                let conn = self.shared.connect().await?;
                // Counted once it goes again: a failed reconnect is the connect error.
                self.shared.resent.inc();
                conn.send(req, added).await.map_err(|failed| failed.error)
            }
            Err(failed) => Err(failed.error),
        }
    }
}

impl Pool {
    /// Idle connections, for tests that wait for a connection to come back.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.shared.idle().len()
    }

    /// Requests sent again because their pooled connection turned out closed.
    #[cfg(test)]
    fn resent(&self) -> u64 {
        self.shared.resent.get()
    }
}

impl Shared {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // Nothing in a critical section can panic halfway; a poisoned set is still consistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open, if any; one idle for longer
    /// than `idle_timeout` at `now` (the caller's clock reading) has expired.
    fn checkout(self: &Arc<Self>, verify: bool, now: Instant) -> Option<Box<Conn>> {
        loop {
            let popped = self.idle().pop()?;
            if now.saturating_duration_since(popped.since) > self.config.idle_timeout {
                // Everything below it went idle earlier and has expired too.
                let expired = std::mem::take(&mut *self.idle());
                drop(expired);
                return None;
            }
            let mut conn = popped.conn;
            if conn.survived_idle(verify) {
                return Some(conn);
            }
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<Box<Conn>, Error> {
        let io = self
            .connector
            .clone()
            .call(self.target.clone())
            .await
            .map_err(|e| Error::Connect(e.into()))?;
        Ok(Conn::new(io.into_inner(), Arc::clone(self)))
    }

    fn put(self: &Arc<Self>, conn: Box<Conn>) {
        self.reaper.call_once(|| self.spawn_reaper());
        let mut idle = self.idle();
        if idle.len() < self.config.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        } else {
            // Closing a socket is a syscall: not under the lock.
            drop(idle);
            drop(conn);
        }
    }

    /// Closes expired idle connections even when no request comes to find them.
    fn spawn_reaper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool: Weak<Shared> = Arc::downgrade(self);
        let period = self.config.idle_timeout.max(Duration::from_secs(1));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                let now = Instant::now();
                let timeout = pool.config.idle_timeout;
                let expired: Vec<Idle> = {
                    let mut idle = pool.idle();
                    let keep = idle
                        .iter()
                        .position(|i| now.saturating_duration_since(i.since) <= timeout)
                        .unwrap_or(idle.len());
                    idle.drain(..keep).collect()
                };
                drop(expired);
            }
        });
    }
}
