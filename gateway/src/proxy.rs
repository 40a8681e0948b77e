//! The data plane: one request from client to cell and back (SPEC §4).
//!
//! [`Proxy::handle`] is the whole pipeline, top to bottom; read it first.

pub mod body;
pub mod containment;
pub mod deliver;
pub mod enqueue;
pub mod error;
pub mod headers;
pub mod health;
pub mod limit;
pub mod pool;
pub mod request_id;
pub mod routing_key;
pub mod server;
pub mod trace_context;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, RETRY_AFTER};
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::{Instrument, Level, Span, debug, field, warn};

use crate::config::Config;
use crate::control::{ControlPlane, millis, now_ms};
use crate::delivery::DeliveryQueue;
use crate::metrics::{ErrorMetrics, Metrics};
use body::{IdleTimeout, InFlightGuard, LimitedBody, ProxyBody, RequestBodyError};
use error::{ErrorCode, respond};
use headers::{
    Added, Client, IDEMPOTENCY_KEY, TRACEPARENT, X_CELL, X_PRIORITY, X_REQUEST_DEADLINE_MS,
    X_REQUEST_ID, header_bytes, strip_hop_by_hop,
};
use std::sync::atomic::{AtomicUsize, Ordering};

use cell_router::containment::{
    LoadShedder, LoadShedderConfig, Outcome, Priority, RetryFailure, RetryPolicy,
};
use limit::{RATELIMIT, RATELIMIT_POLICY, RateLimits, Verdict, ceil_secs};
use prometheus_client::metrics::counter::Counter;
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
    /// Requests between receipt and response head, gateway-wide: the shedding signal.
    in_flight: AtomicUsize,
    shedder: LoadShedder,
    /// Default priorities by path prefix, longest first.
    path_priorities: Box<[(String, Priority)]>,
    shed: [Counter; 3],
    request_timeout: Duration,
    max_body: u64,
    max_header_bytes: usize,
    errors: ErrorMetrics,
    /// The async delivery queue, when `[delivery]` is configured.
    delivery: Option<DeliveryQueue>,
    /// Delivery status lookups in flight (each is a Redis call), capped.
    status_lookups: AtomicUsize,
}

impl Proxy {
    /// Builds the proxy from a validated config, its cells and the directory to route by.
    pub fn new(
        config: &Config,
        cells: Cells,
        control: ControlPlane,
        limits: Option<RateLimits>,
        delivery: Option<DeliveryQueue>,
        metrics: &Metrics,
    ) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                keys: RoutingKeys::new(&config.routing),
                cells,
                control,
                limits,
                in_flight: AtomicUsize::new(0),
                shedder: LoadShedder::new(&LoadShedderConfig {
                    max_in_flight: config.server.max_in_flight,
                    ..LoadShedderConfig::default()
                }),
                path_priorities: config.routing.priorities.clone().into_boxed_slice(),
                shed: [Priority::Critical, Priority::Normal, Priority::Batch]
                    .map(|p| metrics.shed(p.as_str())),
                request_timeout: config.server.request_timeout,
                max_body: config.server.max_request_body,
                max_header_bytes: config.server.max_header_bytes,
                errors: metrics.errors(),
                delivery,
                status_lookups: AtomicUsize::new(0),
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
    pub async fn handle(&self, req: Request<Incoming>, client: &Client) -> Response<ProxyBody> {
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
        // Built in a statement of its own, then awaited: a temporary lives to the end of its
        // statement, so `forward(..).instrument(..).await` kept the moved-from forward future
        // (4.3 KB) in this future beside the instrumented one, and every move of it (into
        // hyper's dispatcher) copied both.
        let forwarding = self
            .inner
            .forward(req, client, start, &request_id, &span, trace)
            .instrument(span.clone());
        let mut response = forwarding.await;
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
        client: &Client,
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

        // The gateway's own namespace: delivery status records, looked up by id alone (ids
        // are unguessable), so no routing key is needed.
        if let Some(id) = parts.uri.path().strip_prefix(enqueue::STATUS_PREFIX) {
            return match self.delivery_status(&parts.method, id).await {
                Ok(response) => response,
                Err(code) => fail(code),
            };
        }

        // 1. Routing key.
        let key = match self
            .keys
            .extract(&parts.headers, parts.uri.query(), client.ip())
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
            .map(|l| l.check(&key, client.ip(), &parts.headers, cell.name()));
        // Async requests need the sender's key after the headers are rewritten: copy it, on
        // that path only.
        let sender = self
            .delivery
            .as_ref()
            .filter(|_| enqueue::prefers_async(&parts.headers))
            .map(|queue| (queue, key.to_vec()));
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

        // Overload: shed by priority against the gateway-wide in-flight count, before the
        // cell is touched. Batch goes first, then normal; critical only at the hard limit.
        let priority = priority_of(&parts.headers, parts.uri.path(), &self.path_priorities);
        let in_flight = InFlight::enter(&self.in_flight);
        if !self.shedder.admit(priority, in_flight.count()) {
            self.shed[priority as usize].inc();
            return fail(ErrorCode::Overloaded);
        }

        if let Some((queue, sender)) = sender {
            let mut response = match self
                .enqueue(queue, parts, body, &sender, client, request_id, trace)
                .await
            {
                Ok(response) => response,
                Err(enqueue::Refused(code)) => fail(code),
            };
            if let Some(verdict) = verdict {
                self.add_limit_headers(response.headers_mut(), verdict.header.as_ref());
            }
            return response;
        }

        let mut response = match self
            .to_cell(cell, parts, body, client, start, span, request_id, trace)
            .await
        {
            Ok(response) => response,
            Err(refusal) => {
                let mut response = fail(refusal.code);
                if let Some(wait) = refusal.retry_after {
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from(ceil_secs(wait).max(1)));
                }
                response
            }
        };
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

    /// 4. Forward to one upstream of `cell` and stream the answer back, inside the cell's
    ///    containment: breaker, bulkhead, P2C upstream choice, outlier feedback, retries.
    #[allow(clippy::too_many_arguments)]
    async fn to_cell(
        &self,
        cell: &Cell,
        mut parts: http::request::Parts,
        body: Incoming,
        client: &Client,
        start: Instant,
        span: &Span,
        request_id: &HeaderValue,
        trace: TraceParent,
    ) -> Result<Response<ProxyBody>, Refusal> {
        if declared_length(&parts.headers).is_some_and(|len| len > self.max_body) {
            body::linger(body);
            return Err(ErrorCode::PayloadTooLarge.into());
        }
        let route_deadline = start + self.request_timeout;
        let deadline = start + deadline_budget(&parts.headers, self.request_timeout);
        // The request's arrival stands for "now" in the deadline check, the breaker and the
        // first attempt: the microseconds of routing since then are not worth a clock read.
        let remaining = deadline.saturating_duration_since(start);
        if remaining.is_zero() {
            // The caller has already given up: starting work now only wastes the cell's time.
            return Err(ErrorCode::UpstreamTimeout.into());
        }

        // Breaker before bulkhead: a refused request must not hold a bulkhead slot. Both
        // refuse at once, never queue: a saturated or failing cell must not slow the others.
        let c = cell.containment();
        let now = start.into_std();
        let permit = c
            .breaker()
            .try_acquire(now)
            .map_err(|r| Refusal::unavailable(Some(r.retry_after)))?;
        let Some(slot) = c.bulkhead().try_acquire_owned() else {
            return Err(Refusal::unavailable(None));
        };

        strip_hop_by_hop(&mut parts.headers);
        // Written with the head, replacing the client's fields of the same names.
        let added = Added::new(client, request_id, cell.header(), &trace, millis(remaining));
        parts.version = Version::HTTP_11;

        // A retry needs the request again. Only bodiless idempotent requests (or ones with an
        // Idempotency-Key) to a cell with another upstream can be retried, and only those pay
        // for a copy of the head.
        let (budget, policy) = c.retries();
        budget.record_request(now);
        let has_key = parts.headers.contains_key(&IDEMPOTENCY_KEY);
        let replayable = cell.upstreams().len() > 1
            && http_body::Body::is_end_stream(&body)
            && (RetryPolicy::is_idempotent(parts.method.as_str()) || has_key);
        let spare = replayable.then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
        let mut first = Some((parts, body));
        let mut exclude = None;
        let mut attempt: u32 = 1;
        let guard = InFlightGuard::new(cell.metrics().in_flight());
        loop {
            // tokio's clock, like the pool's idle times (they differ only when a test pauses it).
            let started = if attempt == 1 {
                now
            } else {
                Instant::now().into_std()
            };
            let Some(index) = c.pick(started, exclude) else {
                return Err(Refusal::unavailable(None));
            };
            let upstream = &cell.upstreams()[index];
            span.record("upstream", field::display(upstream.authority()));
            // The request goes as the client sent it (origin-form): the pool dials its
            // upstream and supplies `Host` when the request has none.
            let (request, added) = match first.take() {
                Some((parts, body)) => (
                    Request::from_parts(parts, LimitedBody::new(body, self.max_body)),
                    added,
                ),
                None => match &spare {
                    Some((method, uri, headers)) => {
                        let mut retry = Request::new(LimitedBody::empty());
                        *retry.method_mut() = method.clone();
                        *retry.uri_mut() = uri.clone();
                        *retry.headers_mut() = headers.clone();
                        // The retry has less time left than the first attempt had.
                        let left = deadline.saturating_duration_since(Instant::now());
                        (retry, added.with_deadline_ms(millis(left)))
                    }
                    None => return Err(ErrorCode::UpstreamError.into()),
                },
            };

            let (attempt_result, done) = send_attempt(
                c,
                index,
                upstream,
                request,
                Some(&added),
                started,
                deadline,
                deadline < route_deadline,
            )
            .await;
            let (outcome, failure) = (attempt_result.outcome, attempt_result.failure);

            if let Some(failure) = failure {
                if spare.is_some()
                    && policy.should_retry(
                        spare.as_ref().map_or("", |(m, _, _)| m.as_str()),
                        has_key,
                        failure,
                        attempt,
                    )
                {
                    // Only spend budget on a retry the deadline leaves room for.
                    let backoff = policy.backoff(attempt, fastrand::u64(..));
                    if Instant::now() + backoff < deadline {
                        if budget.withdraw(done) {
                            c.metrics().retries_attempted.inc();
                            tokio::time::sleep(backoff).await;
                            attempt += 1;
                            exclude = Some(index);
                            continue;
                        }
                        c.metrics().retries_refused.inc();
                    }
                }
            } else if attempt > 1 {
                c.metrics().retries_succeeded.inc();
            }
            // The breaker judges the request, not each attempt.
            c.transition(cell.name(), permit.record(outcome, done));
            return match attempt_result.response {
                Ok(response) => {
                    let (mut head, inner) = response.into_parts();
                    strip_hop_by_hop(&mut head.headers);
                    Ok(Response::from_parts(
                        head,
                        ProxyBody::Upstream {
                            inner,
                            guard,
                            slot,
                            idle: IdleTimeout::new(self.request_timeout),
                        },
                    ))
                }
                Err(code) => {
                    if code != ErrorCode::PayloadTooLarge {
                        warn!(
                            upstream = %upstream.authority(),
                            error = attempt_result.detail.as_deref().unwrap_or("timeout"),
                            attempts = attempt,
                            "upstream request failed"
                        );
                    }
                    Err(code.into())
                }
            };
        }
    }
}

/// Sends one attempt to upstream `index` of a cell and feeds the outcome to its latency
/// estimator and outlier detector. Returns the judged result and when it completed.
#[allow(clippy::too_many_arguments)]
async fn send_attempt(
    c: &containment::CellContainment,
    index: usize,
    upstream: &upstream::Upstream,
    request: Request<LimitedBody>,
    added: Option<&Added<'_>>,
    started: std::time::Instant,
    deadline: Instant,
    client_deadline: bool,
) -> (AttemptResult, std::time::Instant) {
    let pending = c.ewmas()[index].start(started);
    // Two statements, so that the moved-from `send` future is not kept beside the timeout's
    // (see `Proxy::handle`).
    let sending = tokio::time::timeout_at(
        deadline,
        upstream
            .pool()
            .send(request, added, Instant::from_std(started)),
    );
    let result = sending.await;
    let done = std::time::Instant::now();
    let judged = classify(result, done.duration_since(started), client_deadline);
    pending.finish(judged.outcome, done);
    c.record(index, upstream.authority().as_str(), judged.outcome, done);
    (judged, done)
}

/// `X-Priority: critical|normal|batch` (case-insensitive); absent or unknown: the priority of
/// the longest configured path prefix matching `path` (`by_path` is sorted longest first),
/// else `normal`.
fn priority_of(headers: &http::HeaderMap, path: &str, by_path: &[(String, Priority)]) -> Priority {
    headers
        .get(&X_PRIORITY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| {
            by_path
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix.as_str()))
                .map(|(_, p)| *p)
        })
        .unwrap_or_default()
}

/// Counts a request in the gateway-wide in-flight number until dropped.
struct InFlight<'a>(&'a AtomicUsize, usize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter, before)
    }

    /// Requests in flight before this one.
    fn count(&self) -> usize {
        self.1
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A gateway-made refusal: the error code and, for `cell_unavailable` from an open breaker,
/// when to come back.
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn unavailable(retry_after: Option<Duration>) -> Refusal {
        Refusal {
            code: ErrorCode::CellUnavailable,
            retry_after,
        }
    }
}

impl From<ErrorCode> for Refusal {
    fn from(code: ErrorCode) -> Refusal {
        Refusal {
            code,
            retry_after: None,
        }
    }
}

/// One attempt's result, judged for the client, the outlier detector and the retry policy.
struct AttemptResult {
    response: Result<Response<pool::ResponseBody>, ErrorCode>,
    outcome: Outcome,
    /// Why a retry may help (`None`: the answer stands).
    failure: Option<RetryFailure>,
    /// Internal error text, for logs only.
    detail: Option<String>,
}

/// Only failures the upstream caused count against it: a deadline the client shortened, or
/// a body the client made too large, is `Local` and never ejects an instance or opens a
/// breaker.
fn classify(
    result: Result<Result<Response<pool::ResponseBody>, pool::Error>, tokio::time::error::Elapsed>,
    latency: Duration,
    client_deadline: bool,
) -> AttemptResult {
    match result {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            let (outcome, failure) = if status >= 500 {
                (Outcome::UpstreamError, Some(RetryFailure::Status(status)))
            } else {
                (Outcome::Success { latency }, None)
            };
            AttemptResult {
                response: Ok(response),
                outcome,
                failure,
                detail: None,
            }
        }
        Ok(Err(e)) if caused_by_body_limit(&e) => AttemptResult {
            response: Err(ErrorCode::PayloadTooLarge),
            outcome: Outcome::Local,
            failure: None,
            detail: None,
        },
        Ok(Err(e)) if e.is_local() => AttemptResult {
            response: Err(ErrorCode::UpstreamError),
            outcome: Outcome::Local,
            failure: None,
            detail: Some(error_chain(&e)),
        },
        Ok(Err(e)) => AttemptResult {
            response: Err(ErrorCode::UpstreamError),
            outcome: Outcome::UpstreamError,
            failure: Some(if e.is_connect() {
                RetryFailure::Connect
            } else {
                RetryFailure::Other
            }),
            detail: Some(error_chain(&e)),
        },
        Err(_) => AttemptResult {
            response: Err(ErrorCode::UpstreamTimeout),
            outcome: if client_deadline {
                Outcome::Local
            } else {
                Outcome::Timeout
            },
            failure: None,
            detail: None,
        },
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
    fn priority_header_wins_over_the_longest_path_prefix() {
        let by_path = vec![
            ("/reports/urgent".to_owned(), Priority::Critical),
            ("/reports".to_owned(), Priority::Batch),
        ];
        let mut h = http::HeaderMap::new();
        assert_eq!(priority_of(&h, "/x", &by_path), Priority::Normal);
        assert_eq!(priority_of(&h, "/reports/1", &by_path), Priority::Batch);
        assert_eq!(
            priority_of(&h, "/reports/urgent/1", &by_path),
            Priority::Critical
        );
        h.insert(&X_PRIORITY, HeaderValue::from_static("normal"));
        assert_eq!(priority_of(&h, "/reports/1", &by_path), Priority::Normal);
        h.insert(&X_PRIORITY, HeaderValue::from_static("bogus"));
        assert_eq!(priority_of(&h, "/reports/1", &by_path), Priority::Batch);
    }

    #[test]
    fn failures_the_request_caused_do_not_count_against_the_upstream() {
        let judge = |e: pool::Error| classify(Ok(Err(e)), Duration::ZERO, false);
        for local in [
            pool::Error::BodyLength,
            pool::Error::Body(RequestBodyError::TooLarge),
        ] {
            let judged = judge(local);
            assert_eq!(judged.outcome, Outcome::Local);
            assert!(judged.failure.is_none());
        }
        let judged = judge(pool::Error::Closed);
        assert_eq!(judged.outcome, Outcome::UpstreamError);
        assert!(matches!(judged.failure, Some(RetryFailure::Other)));
        let judged = judge(pool::Error::Connect("refused".into()));
        assert!(matches!(judged.failure, Some(RetryFailure::Connect)));
    }

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
