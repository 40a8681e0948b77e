//! Keep-alive HTTP/1.1 connections to one upstream, driven by the requests that use them.
//!
//! hyper-util's legacy client runs each connection on a task of its own and reaches it through
//! a channel, so every request crosses tasks twice and wakes both. Here a request checks an
//! idle connection out of its upstream's [`Pool`] and polls the connection itself, in its own
//! task, until the response body has been read; then the connection goes back to the pool.
//!
//! Requests with a body are the exception: HTTP/1 clients commonly write their whole body
//! before they read the response, and an inline connection only makes progress while the
//! response body is polled, so the upload could stall behind an unread download. For them the
//! connection runs on its own task for that one exchange, as it would in the legacy client,
//! and rejoins the pool from there.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service as _;
use tracing::debug;

use super::body::LimitedBody;

type Io = TokioIo<TcpStream>;

/// Why a request to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No TCP connection could be opened within the connect timeout.
    #[error("connecting to the upstream failed")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP/1.1 connection could not be set up.
    #[error("HTTP/1.1 handshake with the upstream failed")]
    Handshake(#[source] hyper::Error),
    /// The exchange failed once the request was handed to a connection.
    #[error("upstream exchange failed")]
    Request(#[source] hyper::Error),
}

impl Error {
    /// Whether no connection could be opened (the upstream is down or unreachable).
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
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
    builder: http1::Builder,
    config: PoolConfig,
    /// Idle connections, most recently used last: checkout takes the warmest one, and the
    /// oldest (first to expire) sit at the front.
    idle: Mutex<Vec<Idle>>,
    reaper: Once,
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
    /// A pool of connections to `authority`, opened on demand.
    pub fn new(authority: &Authority, config: PoolConfig) -> Pool {
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
                builder: http1::Builder::new(),
                config,
                idle: Mutex::new(Vec::new()),
                reaper: Once::new(),
            }),
        }
    }

    /// Sends `req` on a pooled connection, or a new one, and returns the response head; the
    /// connection rejoins the pool once the response body has been read to its end.
    ///
    /// A request that a pooled connection turned out to be closed for, before any of it was
    /// written, is sent again once on a new connection; nothing that may have reached the
    /// upstream is ever retried.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn send(
        &self,
        mut req: Request<LimitedBody>,
    ) -> Result<Response<ResponseBody>, Error> {
        // The legacy client's rules: keep the client's `Host`, send origin-form.
        req.headers_mut()
            .entry(HOST)
            .or_insert_with(|| self.shared.host.clone());
        if req.method() == Method::CONNECT {
            authority_form(req.uri_mut());
        } else {
            origin_form(req.uri_mut());
        }
        let Some(conn) = self.shared.checkout() else {
            let conn = self.shared.connect().await?;
            return conn
                .send(req)
                .await
                .map_err(|e| Error::Request(e.into_error()));
        };
        match conn.send(req).await {
            Ok(response) => Ok(response),
            Err(mut e) => match e.take_message() {
                Some(req) => {
                    debug!(error = %e.error(), "pooled connection was closed; retrying on a new one");
                    let conn = self.shared.connect().await?;
                    conn.send(req)
                        .await
                        .map_err(|e| Error::Request(e.into_error()))
                }
                None => Err(Error::Request(e.into_error())),
            },
        }
    }
}

impl Shared {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // Nothing in a critical section can panic halfway; a poisoned set is still consistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open, if any.
    fn checkout(self: &Arc<Self>) -> Option<Box<Conn>> {
        let now = Instant::now();
        loop {
            let popped = self.idle().pop()?;
            if now.saturating_duration_since(popped.since) > self.config.idle_timeout {
                // Everything below it went idle earlier and has expired too.
                let expired = std::mem::take(&mut *self.idle());
                drop(expired);
                return None;
            }
            let mut conn = popped.conn;
            // Nothing has polled the connection while it sat idle: one poll reads a close or
            // stray bytes the upstream sent meanwhile. The request's own waker replaces the
            // no-op one at its first poll.
            conn.poll_conn(&mut Context::from_waker(Waker::noop()));
            if conn.open && conn.tx.is_ready() {
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
        let (tx, conn) = self.builder.handshake(io).await.map_err(Error::Handshake)?;
        Ok(Box::new(Conn {
            tx,
            conn,
            open: true,
            pool: Arc::clone(self),
        }))
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

/// One HTTP/1.1 connection: the handle requests go through and the state machine that must be
/// polled for anything to happen on the socket.
///
/// Always boxed: it is large and moves with every request (pool, request future, response
/// body), and one allocation per connection is cheaper than copying it each time.
struct Conn {
    tx: SendRequest<LimitedBody>,
    conn: Connection<Io, LimitedBody>,
    /// False once `conn` has finished: it must not be polled again.
    open: bool,
    pool: Arc<Shared>,
}

impl Conn {
    /// Lets the connection read, write and notice a close.
    fn poll_conn(&mut self, cx: &mut Context<'_>) {
        if !self.open {
            return;
        }
        if let Poll::Ready(result) = Pin::new(&mut self.conn).poll(cx) {
            self.open = false;
            if let Err(e) = result {
                debug!(error = %e, "upstream connection failed");
            }
        }
    }

    async fn send(
        mut self: Box<Self>,
        req: Request<LimitedBody>,
    ) -> Result<Response<ResponseBody>, hyper::client::conn::TrySendError<Request<LimitedBody>>>
    {
        let uploads = !req.body().is_end_stream();
        let mut response = pin!(self.tx.try_send_request(req));
        if uploads {
            tokio::spawn(self.run_exchange());
            let response = response.await?;
            return Ok(response.map(|body| ResponseBody { body, conn: None }));
        }
        // Connection first: it is what writes the request and reads the answer.
        let response = poll_fn(|cx| {
            self.poll_conn(cx);
            response.as_mut().poll(cx)
        })
        .await?;
        Ok(response.map(|body| ResponseBody {
            body,
            conn: Some(self),
        }))
    }

    /// Drives the connection on its own task until the exchange is over, then pools it.
    async fn run_exchange(mut self: Box<Self>) {
        let reusable = poll_fn(|cx| {
            self.poll_conn(cx);
            if !self.open {
                return Poll::Ready(false);
            }
            // Ready again once the response has been read and the request written.
            self.tx.poll_ready(cx).map(|ready| ready.is_ok())
        })
        .await;
        if reusable {
            Arc::clone(&self.pool).put(self);
        }
    }

    /// The response body was read to its end: back to the pool if the connection can carry
    /// another request.
    fn release(mut self: Box<Self>) {
        // The dispatcher may need one more turn after handing over the last frame to see the
        // end of the message and become idle.
        self.poll_conn(&mut Context::from_waker(Waker::noop()));
        if self.open && self.tx.is_ready() {
            Arc::clone(&self.pool).put(self);
        }
    }
}

/// An upstream response body. While it is read it also drives its connection, which returns
/// to the pool when the body ends.
#[derive(Debug)]
pub struct ResponseBody {
    body: Incoming,
    /// `None` when the connection runs on its own task, or once it was released.
    conn: Option<Box<Conn>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.release();
        }
    }

    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Pin::new(&mut self.body).poll_frame(cx);
        };
        conn.poll_conn(cx);
        match Pin::new(&mut self.body).poll_frame(cx) {
            // Polling the body asked the connection for more: let it deliver in this turn
            // rather than through a wake-up of our own task.
            Poll::Pending => {
                conn.poll_conn(cx);
                Pin::new(&mut self.body).poll_frame(cx)
            }
            ready => ready,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = this.poll_body(cx);
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            // A broken body leaves the connection mid-message: close it.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Bodiless responses (204, 304, HEAD, `Content-Length: 0`) are never polled to their
        // end; the connection is still good. A body dropped halfway closes its connection.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

fn origin_form(uri: &mut Uri) {
    *uri = match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    };
}

fn authority_form(uri: &mut Uri) {
    if let Some(authority) = uri.authority() {
        let mut parts = Parts::default();
        parts.authority = Some(authority.clone());
        *uri = Uri::from_parts(parts).unwrap_or_default();
    }
}
