//! The async side of the data plane: `Prefer: respond-async` requests are stored in the
//! delivery queue and answered `202`; `GET /_cellgate/deliveries/<id>` reports on them.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{LimitedBody, ProxyBody, RequestBodyError, linger};
use super::error::ErrorCode;
use super::headers::{
    Client, IDEMPOTENCY_KEY, TRACEPARENT, X_REQUEST_DEADLINE_MS, X_REQUEST_ID, add_forwarded,
    strip_hop_by_hop,
};
use super::routing_key::validate;
use super::trace_context::TraceParent;
use super::{Inner, declared_length};
use crate::delivery::record::{StoredRequest, encode_headers};
use crate::delivery::{DeliveryQueue, EnqueueError};

/// `X-Deliver-To: <key>`: the routing key an async request is delivered to.
pub static X_DELIVER_TO: HeaderName = HeaderName::from_static("x-deliver-to");
static PREFER: HeaderName = HeaderName::from_static("prefer");
static PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// The path prefix of delivery status records on the data-plane listener.
pub const STATUS_PREFIX: &str = "/_cellgate/deliveries/";

/// Whether the request asks for asynchronous processing (RFC 7240 `Prefer: respond-async`,
/// case-insensitive, among other preferences).
pub fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all(&PREFER)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|pref| {
            let token = pref.split(|&b| b == b';').next().unwrap_or_default();
            token.trim_ascii().eq_ignore_ascii_case(b"respond-async")
        })
}

/// What went wrong accepting an async request, as the client sees it.
pub(super) struct Refused(pub ErrorCode);

impl Inner {
    /// Stores the request for delivery to `X-Deliver-To` (else `sender`) and answers `202`
    /// with its `Location`, only once Redis confirmed the write.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn enqueue(
        &self,
        queue: &DeliveryQueue,
        mut parts: http::request::Parts,
        body: Incoming,
        sender: &[u8],
        client: &Client,
        request_id: &HeaderValue,
        trace: TraceParent,
    ) -> Result<Response<ProxyBody>, Refused> {
        let target = match parts.headers.get(&X_DELIVER_TO) {
            Some(v) => validate(v.as_bytes().into())
                .map_err(|_| Refused(ErrorCode::InvalidRoutingKey))?
                .into_owned(),
            None => sender.to_vec(),
        };
        let max_body = queue.config().max_body;
        if declared_length(&parts.headers).is_some_and(|len| len > max_body) {
            linger(body);
            return Err(Refused(ErrorCode::PayloadTooLarge));
        }
        // The whole body must be in hand before anything is acknowledged; bounded in size by
        // the limit and in time by the route timeout.
        let read = tokio::time::timeout_at(
            Instant::now() + self.request_timeout,
            LimitedBody::new(body, max_body).collect(),
        )
        .await;
        let body = match read {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(RequestBodyError::TooLarge)) => return Err(Refused(ErrorCode::PayloadTooLarge)),
            // The client went away or stalled: nothing was stored, nothing to promise.
            Ok(Err(RequestBodyError::Read(_))) | Err(_) => {
                return Err(Refused(ErrorCode::QueueUnavailable));
            }
        };

        let client_key = parts
            .headers
            .get(&IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        // Hints about this request, not the delivery: the delivery gets its own.
        headers.remove(&PREFER);
        headers.remove(&X_REQUEST_DEADLINE_MS);
        headers.remove(&TRACEPARENT);
        headers.remove(&IDEMPOTENCY_KEY);
        add_forwarded(headers, client);
        headers.insert(&X_REQUEST_ID, request_id.clone());
        let request = StoredRequest {
            method: parts.method.as_str().to_owned(),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
            headers: encode_headers(headers),
            body,
            target,
            idempotency_key: String::new(),
            traceparent: trace.to_header().to_str().unwrap_or_default().to_owned(),
        };
        let accepted = queue
            .enqueue(sender, client_key.as_deref(), request)
            .await
            .map_err(|e| match e {
                EnqueueError::Full => Refused(ErrorCode::QueueFull),
                EnqueueError::Unavailable(e) => {
                    tracing::warn!(error = %e, "async request not accepted: queue unavailable");
                    Refused(ErrorCode::QueueUnavailable)
                }
            })?;
        // A repeat answers with the original's current state.
        let state = if accepted.duplicate {
            match queue.status(&accepted.id).await {
                Ok(Some(record)) => record.state,
                _ => "pending".to_owned(),
            }
        } else {
            "pending".to_owned()
        };
        let location = format!("{STATUS_PREFIX}{}", accepted.id);
        let body = serde_json::json!({ "id": accepted.id, "state": state });
        let mut response = json(StatusCode::ACCEPTED, &body);
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(LOCATION, v);
        }
        h.insert(
            &PREFERENCE_APPLIED,
            HeaderValue::from_static("respond-async"),
        );
        Ok(response)
    }

    /// `GET /_cellgate/deliveries/<id>`: the delivery's state, or 404 JSON.
    pub(super) async fn delivery_status(
        &self,
        method: &Method,
        id: &str,
    ) -> Result<Response<ProxyBody>, ErrorCode> {
        let Some(queue) = &self.delivery else {
            return Err(ErrorCode::NotFound);
        };
        if method != Method::GET && method != Method::HEAD {
            return Err(ErrorCode::NotFound);
        }
        // Lookups are not rate limited (no routing key) and each is a Redis call: cap how many
        // run at once so a flood of them cannot load Redis for the queue itself.
        let Some(_lookup) = StatusLookup::enter(&self.status_lookups) else {
            return Err(ErrorCode::Overloaded);
        };
        match queue.status(id).await {
            Ok(Some(record)) => {
                let value = serde_json::to_value(record.public()).unwrap_or_default();
                Ok(json(StatusCode::OK, &value))
            }
            Ok(None) => Err(ErrorCode::NotFound),
            Err(e) => {
                tracing::warn!(error = %e, "delivery status lookup failed");
                Err(ErrorCode::QueueUnavailable)
            }
        }
    }
}

/// Most delivery status lookups in flight per gateway.
pub(super) const MAX_STATUS_LOOKUPS: usize = 256;

/// Holds one of the [`MAX_STATUS_LOOKUPS`] slots until dropped.
struct StatusLookup<'a>(&'a AtomicUsize);

impl<'a> StatusLookup<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STATUS_LOOKUPS).then_some(n + 1)
            })
            .ok()
            .map(|_| StatusLookup(count))
    }
}

impl Drop for StatusLookup<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    )));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_respond_async_is_found_among_preferences() {
        let mut h = HeaderMap::new();
        assert!(!prefers_async(&h));
        h.insert(&PREFER, HeaderValue::from_static("return=minimal"));
        assert!(!prefers_async(&h));
        h.append(&PREFER, HeaderValue::from_static("wait=10, Respond-Async"));
        assert!(prefers_async(&h));
        h.insert(&PREFER, HeaderValue::from_static("respond-async; foo=bar"));
        assert!(prefers_async(&h));
        h.insert(&PREFER, HeaderValue::from_static("respond-asyncx"));
        assert!(!prefers_async(&h));
    }
}
