//! Sending a stored async delivery to its cell, through the same containment as live
//! traffic: the cell's breaker and bulkhead admit it, P2C picks the upstream, and the outcome
//! feeds the outlier detector and the breaker.
//!
//! Unlike live traffic there is no in-cell retry here: the delivery queue retries with its
//! own backoff and attempt budget.

use std::time::Duration;

use bytes::Bytes;
use cell_router::containment::{Breaker, OwnedBulkheadPermit, Permit};
use http::header::RETRY_AFTER;
use http::{HeaderValue, Method, Request, Version};
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use super::Proxy;
use super::body::{InFlightGuard, LimitedBody};
use super::headers::{IDEMPOTENCY_KEY, TRACEPARENT, X_CELL, X_REQUEST_DEADLINE_MS};
use super::trace_context::TraceParent;
use crate::control::{millis, now_ms};
use crate::delivery::record::{StoredRequest, decode_headers};
use crate::proxy::upstream::Cell;

/// Names the delivery downstream, so a backend can correlate attempts.
pub static X_DELIVERY_ID: http::HeaderName = http::HeaderName::from_static("x-delivery-id");
/// The attempt number, from 1.
pub static X_DELIVERY_ATTEMPT: http::HeaderName =
    http::HeaderName::from_static("x-delivery-attempt");

/// A cell's permission to send it one delivery now.
#[derive(Debug)]
pub struct Admitted<'a> {
    cell: &'a Cell,
    permit: Permit<'a>,
    slot: OwnedBulkheadPermit,
}

impl Admitted<'_> {
    /// Whether the delivery is a half-open probe of the cell's breaker.
    pub fn is_probe(&self) -> bool {
        self.permit.is_probe()
    }
}

/// What came of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The cell answered.
    Answered {
        /// The HTTP status.
        status: u16,
        /// Its `Retry-After` in seconds, if any (honoured for every retryable status, capped
        /// at `backoff_max`).
        retry_after: Option<Duration>,
    },
    /// No answer: `upstream_error` (connect error, broken exchange) or `upstream_timeout`.
    /// The error code only: the status record is public, the details go to the log.
    Failed(&'static str),
    /// Nothing was sent: no upstream of the cell is eligible (all ejected or failing health
    /// checks, short of panic mode). Like a full bulkhead, it must not spend an attempt.
    NoUpstream,
}

impl Proxy {
    /// The cell that serves `key` now, by the current directory (drains and pins honoured).
    pub fn cell_for(&self, key: &[u8]) -> Option<&Cell> {
        let route = self.inner.control.load_table().route(key, now_ms());
        self.inner.cells.get(route.cell)
    }

    /// Admits one delivery to `cell`, or says how long to wait: breaker open, or bulkhead
    /// full. A delivery that is not admitted does not spend an attempt.
    ///
    /// # Errors
    /// The time after which asking again makes sense.
    pub fn admit<'a>(&self, cell: &'a Cell) -> Result<Admitted<'a>, Duration> {
        let c = cell.containment();
        let permit = c
            .breaker()
            .try_acquire(std::time::Instant::now())
            .map_err(|r| r.retry_after)?;
        let slot = c
            .bulkhead()
            .try_acquire_owned()
            .ok_or(Duration::from_millis(100))?;
        Ok(Admitted { cell, permit, slot })
    }

    /// How long `cell`'s breaker still refuses every request, when it is open; `None` when a
    /// request may be admitted. Unlike [`admit`](Self::admit) it takes nothing (no bulkhead
    /// slot, no half-open probe): the delivery queue asks it to put work off before starting
    /// an attempt, which costs less than starting one and giving it back.
    pub fn breaker_wait(&self, cell: &Cell) -> Option<Duration> {
        match cell.containment().breaker().state() {
            Breaker::Open { until } => {
                Some(until.saturating_duration_since(std::time::Instant::now()))
                    .filter(|wait| !wait.is_zero())
            }
            Breaker::Closed | Breaker::HalfOpen { .. } => None,
        }
    }

    /// Sends attempt `attempt` of delivery `id` to the admitted cell and reads the answer to
    /// its end (so the connection is reused), within the route timeout.
    pub async fn send_stored(
        &self,
        admitted: Admitted<'_>,
        request: &StoredRequest,
        id: &str,
        attempt: u32,
        trace: TraceParent,
    ) -> Sent {
        let Admitted { cell, permit, slot } = admitted;
        let inner = &self.inner;
        let start = Instant::now();
        let deadline = start + inner.request_timeout;
        let c = cell.containment();
        let _guard = InFlightGuard::new(cell.metrics().in_flight());
        let _slot = slot;

        let started = start.into_std();
        let Some(index) = c.pick(started, None) else {
            // No eligible upstream: nothing was sent, so nothing to judge the cell by.
            drop(permit);
            return Sent::NoUpstream;
        };
        let upstream = &cell.upstreams()[index];
        // A stored request that no longer builds (it was valid when accepted) fails like a
        // broken exchange, and runs out of attempts into the DLQ where an operator sees it.
        let Ok(req) = build(request, cell, id, attempt, trace, inner.request_timeout) else {
            drop(permit);
            tracing::warn!(id, "stored request is not a valid HTTP request");
            return Sent::Failed("upstream_error");
        };
        let (judged, done) =
            super::send_attempt(c, index, upstream, req, None, started, deadline, false).await;
        c.transition(cell.name(), permit.record(judged.outcome, done));
        let sent = match judged.response {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                // Read to the end, bounded by the deadline: the answer counts even if its
                // body breaks off, since the cell has acted on the request.
                let mut body = response.into_body();
                let _ = tokio::time::timeout_at(deadline, async {
                    while let Some(Ok(_)) = body.frame().await {}
                })
                .await;
                Sent::Answered {
                    status,
                    retry_after,
                }
            }
            Err(code) => {
                tracing::debug!(
                    id,
                    upstream = %upstream.authority(),
                    error = judged.detail.as_deref().unwrap_or("timeout"),
                    "delivery attempt failed"
                );
                Sent::Failed(code.as_str())
            }
        };
        let status = match &sent {
            Sent::Answered { status, .. } => *status,
            Sent::Failed(_) | Sent::NoUpstream => 502,
        };
        cell.metrics().record(status, start.elapsed());
        sent
    }
}

/// The upstream request for a stored delivery.
fn build(
    stored: &StoredRequest,
    cell: &Cell,
    id: &str,
    attempt: u32,
    trace: TraceParent,
    timeout: Duration,
) -> Result<Request<LimitedBody>, http::Error> {
    let method = Method::from_bytes(stored.method.as_bytes())?;
    let mut req = Request::builder()
        .method(method)
        .uri(stored.uri.as_str())
        .version(Version::HTTP_11)
        .body(LimitedBody::full(Bytes::clone(&stored.body)))?;
    let headers = req.headers_mut();
    *headers = decode_headers(&stored.headers);
    headers.insert(&X_CELL, cell.header().clone());
    headers.insert(&TRACEPARENT, trace.to_header());
    headers.insert(&X_REQUEST_DEADLINE_MS, HeaderValue::from(millis(timeout)));
    if let Ok(key) = HeaderValue::from_str(&stored.idempotency_key) {
        headers.insert(&IDEMPOTENCY_KEY, key);
    }
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(&X_DELIVERY_ID, v);
    }
    headers.insert(&X_DELIVERY_ATTEMPT, HeaderValue::from(attempt));
    Ok(req)
}
