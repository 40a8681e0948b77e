//! The data plane: one request from client to cell and back (SPEC §4).
//!
//! [`Proxy::handle`] is the whole pipeline, top to bottom; read it first.

pub mod body;
pub mod error;
pub mod headers;
pub mod limit;
pub mod pool;
pub mod request_id;
pub mod routing_key;
pub mod server;
pub mod trace_context;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, RETRY_AFTER};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::{Instrument, Level, Span, debug, field, warn};

use crate::config::Config;
use crate::control::{ControlPlane, now_ms};
use crate::metrics::{ErrorMetrics, Metrics};
use body::{InFlightGuard, LimitedBody, ProxyBody, RequestBodyError};
use error::{ErrorCode, respond};
use headers::{
    TRACEPARENT, X_CELL, X_REQUEST_DEADLINE_MS, X_REQUEST_ID, add_forwarded, header_bytes,
    strip_hop_by_hop,
};
use limit::{RATELIMIT, RATELIMIT_POLICY, RateLimits, Verdict, ceil_secs};
use routing_key::{KeyError, RoutingKeys};
use trace_context::TraceParent;
pub use upstream::{BuildError, Cell, Cells};

/// The per-request span at `$level` (which must be a constant: it is part of the callsite).
macro_rules! request_span {
    ($level:expr, $req:expr, $request_id:expr) => {
        tracing::span!(
            $level,
            "request",
            request_id = $request_id.to_str().unwrap_or_default(),
            method = %$req.method(),
            key_hash = field::Empty,
            cell = field::Empty,
            upstream = field::Empty,
            status = field::Empty,
            duration_ms = field::Empty,
        )
    };
}

/// The proxy: cheap to clone, shared by every connection.
#[derive(Clone, Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: RoutingKeys,
    cells: Cells,
    control: ControlPlane,
    limits: Option<RateLimits>,
    request_timeout: Duration,
    max_body: u64,
    max_header_bytes: usize,
    errors: ErrorMetrics,
}

impl Proxy {
    /// Builds the proxy from a validated config, its cells and the directory to route by.
    pub fn new(
        config: &Config,
        cells: Cells,
        control: ControlPlane,
        limits: Option<RateLimits>,
        metrics: &Metrics,
    ) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                keys: RoutingKeys::new(&config.routing),
                cells,
                control,
                limits,
                request_timeout: config.server.request_timeout,
                max_body: config.server.max_request_body,
                max_header_bytes: config.server.max_header_bytes,
                errors: metrics.errors(),
            }),
        }
    }

    /// The rate limits, if any policy is configured.
    pub fn limits(&self) -> Option<&RateLimits> {
        self.inner.limits.as_ref()
    }

    /// The cells this proxy routes to.
    pub fn cells(&self) -> &Cells {
        &self.inner.cells
    }

    /// Proxies one request. Never fails: every error becomes a gateway-made response.
    pub async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<ProxyBody> {
        let start = Instant::now();
        let request_id = request_id::request_id(req.headers().get(&X_REQUEST_ID));
        // An `info` span only when it is exported: under the default `info` log filter a
        // per-request span would otherwise cost an allocation and field formatting on every
        // request for nothing; `CELLGATE_LOG=debug` still shows it.
        let span = if crate::telemetry::exporting() {
            request_span!(Level::INFO, &req, &request_id)
        } else {
            request_span!(Level::DEBUG, &req, &request_id)
        };
        // The span must join the caller's trace before it is first entered.
        let incoming = req.headers().get(&TRACEPARENT).and_then(TraceParent::parse);
        let trace = crate::telemetry::join_trace(&span, incoming);
        let mut response = self
            .inner
            .forward(req, remote, start, &request_id, &span, trace)
            .instrument(span.clone())
            .await;
        response.headers_mut().insert(&X_REQUEST_ID, request_id);
        if !span.is_disabled() {
            span.record("status", response.status().as_u16());
            span.record("duration_ms", start.elapsed().as_secs_f64() * 1000.0);
            span.in_scope(|| debug!("request finished"));
        }
        response
    }
}

impl Inner {
    async fn forward(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
        start: Instant,
        request_id: &HeaderValue,
        span: &Span,
        trace: TraceParent,
    ) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let fail = |code: ErrorCode| {
            self.errors.inc(code);
            respond(code, request_id.to_str().unwrap_or_default())
        };

        // Header size first: nothing else should parse a header block we refuse to accept.
        if header_bytes(&parts.headers) > self.max_header_bytes {
            return fail(ErrorCode::HeadersTooLarge);
        }

        // 1. Routing key.
        let key = match self
            .keys
            .extract(&parts.headers, parts.uri.query(), remote.ip())
        {
            Ok(key) => key,
            Err(KeyError::Missing) => return fail(ErrorCode::MissingRoutingKey),
            Err(KeyError::Invalid) => return fail(ErrorCode::InvalidRoutingKey),
        };
        if !span.is_disabled() {
            span.record(
                "key_hash",
                field::display(format_args!("{:016x}", cell_router::key_hash(&key))),
            );
        }

        // 3 before 2: which cell serves the key is a pure lookup in the directory snapshot
        // (lock-free load); `cell`-keyed policies need it. Nothing touches the cell until the
        // limiter has said yes.
        let route = self.control.load_table().route(&key, now_ms());
        let Some(cell) = self.cells.get(route.cell) else {
            // The table is built from the same cell list; a miss would be a bug, not input.
            return fail(ErrorCode::CellUnavailable);
        };
        span.record("cell", cell.name());

        // 2. Rate limit: a local decision, no network I/O.
        let verdict = self
            .limits
            .as_ref()
            .map(|l| l.check(&key, remote.ip(), &parts.headers, cell.name()));
        // The key borrows the headers; drop it so they can be rewritten.
        drop(key);
        if let Some(Verdict {
            refused: Some(wait),
            header,
        }) = &verdict
        {
            let mut response = fail(ErrorCode::RateLimited);
            let h = response.headers_mut();
            h.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(*wait).max(1)));
            self.add_limit_headers(h, header.as_ref());
            return response;
        }

        let mut response = self
            .to_cell(cell, parts, body, remote, start, span, request_id, trace)
            .await
            .unwrap_or_else(fail);
        cell.metrics()
            .record(response.status().as_u16(), start.elapsed());
        // 5. The client learns which cell served it, even for gateway-made errors.
        response
            .headers_mut()
            .insert(&X_CELL, cell.header().clone());
        if let Some(verdict) = verdict {
            self.add_limit_headers(response.headers_mut(), verdict.header.as_ref());
        }
        response
    }

    fn add_limit_headers(&self, headers: &mut http::HeaderMap, ratelimit: Option<&HeaderValue>) {
        if let Some(limits) = &self.limits {
            headers.insert(&RATELIMIT_POLICY, limits.policy_header().clone());
        }
        if let Some(value) = ratelimit {
            headers.insert(&RATELIMIT, value.clone());
        }
    }

    /// 4. Forward to one upstream of `cell` and stream the answer back.
    #[allow(clippy::too_many_arguments)]
    async fn to_cell(
        &self,
        cell: &Cell,
        mut parts: http::request::Parts,
        body: Incoming,
        remote: SocketAddr,
        start: Instant,
        span: &Span,
        request_id: &HeaderValue,
        trace: TraceParent,
    ) -> Result<Response<ProxyBody>, ErrorCode> {
        if declared_length(&parts.headers).is_some_and(|len| len > self.max_body) {
            body::linger(body);
            return Err(ErrorCode::PayloadTooLarge);
        }
        let deadline = start + deadline_budget(&parts.headers, self.request_timeout);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            // The caller has already given up: starting work now only wastes the cell's time.
            return Err(ErrorCode::UpstreamTimeout);
        }

        let upstream = cell.pick();
        span.record("upstream", field::display(upstream.authority()));

        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        add_forwarded(headers, remote.ip());
        headers.insert(&X_REQUEST_ID, request_id.clone());
        headers.insert(&X_CELL, cell.header().clone());
        headers.insert(&TRACEPARENT, trace.to_header());
        headers.insert(
            &X_REQUEST_DEADLINE_MS,
            HeaderValue::from(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX)),
        );

        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(upstream.authority().clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(uri).map_err(|_| ErrorCode::UpstreamError)?;
        parts.version = Version::HTTP_11;
        let request = Request::from_parts(parts, LimitedBody::new(body, self.max_body));

        let guard = InFlightGuard::new(cell.metrics().in_flight());
        let result = tokio::time::timeout_at(deadline, upstream.pool().send(request)).await;
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                if caused_by_body_limit(&e) {
                    return Err(ErrorCode::PayloadTooLarge);
                }
                warn!(error = %error_chain(&e), connect = e.is_connect(), "upstream request failed");
                return Err(ErrorCode::UpstreamError);
            }
            Err(_) => {
                warn!(
                    timeout_ms = remaining.as_millis() as u64,
                    "upstream timed out"
                );
                return Err(ErrorCode::UpstreamTimeout);
            }
        };
        let (mut head, inner) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        Ok(Response::from_parts(
            head,
            ProxyBody::Upstream { inner, guard },
        ))
    }
}

/// The request's time budget: the route timeout, shortened by a client's
/// `X-Request-Deadline-Ms` (remaining milliseconds). A malformed value is ignored, as Envoy
/// does with its timeout headers, rather than failing a request over an optional hint.
fn deadline_budget(headers: &http::HeaderMap, timeout: Duration) -> Duration {
    headers
        .get(&X_REQUEST_DEADLINE_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(timeout, |ms| timeout.min(Duration::from_millis(ms)))
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn caused_by_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if matches!(
            err.downcast_ref::<RequestBodyError>(),
            Some(RequestBodyError::TooLarge)
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The error and its causes on one line, for logs (never for clients).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_header_only_shortens() {
        let mut h = http::HeaderMap::new();
        let t = Duration::from_secs(5);
        assert_eq!(deadline_budget(&h, t), t);
        h.insert(&X_REQUEST_DEADLINE_MS, HeaderValue::from_static("250"));
        assert_eq!(deadline_budget(&h, t), Duration::from_millis(250));
        h.insert(&X_REQUEST_DEADLINE_MS, HeaderValue::from_static("99999"));
        assert_eq!(deadline_budget(&h, t), t);
        h.insert(&X_REQUEST_DEADLINE_MS, HeaderValue::from_static("soon"));
        assert_eq!(deadline_budget(&h, t), t);
        h.insert(&X_REQUEST_DEADLINE_MS, HeaderValue::from_static("0"));
        assert_eq!(deadline_budget(&h, t), Duration::ZERO);
    }
}
