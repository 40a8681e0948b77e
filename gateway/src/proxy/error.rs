//! Gateway-made error responses: the one place where failures become HTTP.
//!
//! Bodies are JSON `{"error","message","request_id"}` (SPEC §4). Messages are fixed strings per
//! code, so no upstream address, config value or internal error text can leak to a client.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use serde::Serialize;

use super::body::ProxyBody;

/// Error codes of responses the gateway makes itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum ErrorCode {
    /// No routing key in the request and `missing_key = "reject"`.
    MissingRoutingKey,
    /// Routing key longer than 256 bytes or with control characters.
    InvalidRoutingKey,
    /// Rate limit exceeded.
    RateLimited,
    /// The cell cannot take the request (no healthy upstream, breaker open, bulkhead full).
    CellUnavailable,
    /// Load shedding.
    Overloaded,
    /// The upstream did not answer before the deadline.
    UpstreamTimeout,
    /// The upstream could not be reached or broke the exchange.
    UpstreamError,
    /// The async queue is at its bound.
    QueueFull,
    /// The async queue store did not confirm the write.
    QueueUnavailable,
    /// Request body above the configured limit.
    PayloadTooLarge,
    /// Request headers above the configured limit.
    HeadersTooLarge,
    /// No such delivery (unknown, malformed or expired id).
    NotFound,
}

impl ErrorCode {
    /// Every code, in discriminant order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::MissingRoutingKey,
        ErrorCode::InvalidRoutingKey,
        ErrorCode::RateLimited,
        ErrorCode::CellUnavailable,
        ErrorCode::Overloaded,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamError,
        ErrorCode::QueueFull,
        ErrorCode::QueueUnavailable,
        ErrorCode::PayloadTooLarge,
        ErrorCode::HeadersTooLarge,
        ErrorCode::NotFound,
    ];

    /// The `error` field of the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingRoutingKey => "missing_routing_key",
            ErrorCode::InvalidRoutingKey => "invalid_routing_key",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::CellUnavailable => "cell_unavailable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::QueueUnavailable => "queue_unavailable",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::NotFound => "not_found",
        }
    }

    /// The HTTP status of the response.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MissingRoutingKey | ErrorCode::InvalidRoutingKey => StatusCode::BAD_REQUEST,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::CellUnavailable
            | ErrorCode::Overloaded
            | ErrorCode::QueueFull
            | ErrorCode::QueueUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::UpstreamError => StatusCode::BAD_GATEWAY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// A fixed, client-safe explanation.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::MissingRoutingKey => "the request carries no routing key",
            ErrorCode::InvalidRoutingKey => {
                "the routing key is longer than 256 bytes or contains control characters"
            }
            ErrorCode::RateLimited => "rate limit exceeded; retry after the indicated delay",
            ErrorCode::CellUnavailable => "the cell serving this user is temporarily unavailable",
            ErrorCode::Overloaded => "the gateway is overloaded; retry after the indicated delay",
            ErrorCode::UpstreamTimeout => "the upstream did not answer before the deadline",
            ErrorCode::UpstreamError => "the upstream could not be reached or failed the exchange",
            ErrorCode::QueueFull => "the delivery queue for this cell is full",
            ErrorCode::QueueUnavailable => "the delivery queue is temporarily unavailable",
            ErrorCode::PayloadTooLarge => "the request body exceeds the configured limit",
            ErrorCode::HeadersTooLarge => "the request headers exceed the configured limit",
            ErrorCode::NotFound => "no such delivery (unknown id, or its record has expired)",
        }
    }

    /// Seconds a client should wait before retrying, for codes that promise one.
    fn retry_after(self) -> Option<&'static str> {
        match self {
            ErrorCode::CellUnavailable
            | ErrorCode::Overloaded
            | ErrorCode::QueueFull
            | ErrorCode::QueueUnavailable => Some("1"),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'static str,
    request_id: &'a str,
}

/// Builds the JSON error response for `code`.
pub fn respond(code: ErrorCode, request_id: &str) -> Response<ProxyBody> {
    let body = serde_json::to_vec(&ErrorBody {
        error: code.as_str(),
        message: code.message(),
        request_id,
    })
    .unwrap_or_default();
    let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
    *response.status_mut() = code.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = code.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_are_distinct_and_indexed_in_order() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn body_is_the_spec_json() {
        let response = respond(ErrorCode::CellUnavailable, "abc");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let bytes = response.into_body().into_full().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"], "cell_unavailable");
        assert_eq!(json["request_id"], "abc");
        assert!(json["message"].as_str().unwrap().len() > 10);
    }
}
