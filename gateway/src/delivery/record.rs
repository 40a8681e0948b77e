//! What is stored for a delivery: the request to replay, and its state for status queries.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use redis::ScriptInvocation;
use serde::Serialize;

/// The request a worker sends to the target cell, exactly as the client sent it (hop-by-hop
/// headers stripped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// End-to-end headers in wire form (`name: value\r\n` each); binary-safe, compact.
    pub headers: Vec<u8>,
    /// The body, at most `delivery.max_body` bytes.
    pub body: Bytes,
    /// The routing key the delivery goes to (`X-Deliver-To`, else the sender's own key).
    pub target: Vec<u8>,
    /// Sent downstream as `Idempotency-Key`: the client's, else the delivery id.
    pub idempotency_key: String,
    /// The enqueuing request's W3C `traceparent`: delivery spans link to it.
    pub traceparent: String,
}

impl StoredRequest {
    /// Appends the record fields (name, value pairs) to a script invocation.
    pub(crate) fn write_fields(&self, inv: &mut ScriptInvocation<'_>) {
        inv.arg("method")
            .arg(&self.method)
            .arg("uri")
            .arg(&self.uri)
            .arg("headers")
            .arg(&self.headers[..])
            .arg("body")
            .arg(&self.body[..])
            .arg("target")
            .arg(&self.target[..])
            .arg("idem")
            .arg(&self.idempotency_key)
            .arg("traceparent")
            .arg(&self.traceparent);
    }
}

/// Headers in wire form. Names and values cannot contain CR or LF, so the lines split back
/// unambiguously.
pub fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() * 32);
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The inverse of [`encode_headers`]; malformed lines are skipped.
pub fn decode_headers(wire: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in wire.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// A delivery's state, as `GET /_cellgate/deliveries/<id>` and the DLQ show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The delivery id.
    pub id: String,
    /// `pending`, `delivering`, `retrying`, `delivered` or `dead`.
    pub state: String,
    /// Attempts made so far (reset by a replay).
    pub attempts: u32,
    /// When it was accepted, ms since the epoch.
    pub created_ms: u64,
    /// Last state change, ms since the epoch.
    pub updated_ms: u64,
    /// When the next attempt is due, for `retrying` (or waiting for a cell's breaker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<u64>,
    /// When it was delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<u64>,
    /// When it was dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_ms: Option<u64>,
    /// Why it was dead-lettered: `max_attempts`, `non_retryable_status` or `expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last attempt's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last HTTP status the target answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The cell that took the delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
    /// Every attempt: when, which, what happened.
    pub history: Vec<Attempt>,
    /// The stored request (admin views only; never on the public status endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestView>,
}

/// One line of a delivery's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// The attempt number (0 for a replay).
    pub attempt: u32,
    /// What happened.
    pub outcome: String,
}

/// The stored request, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestView {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The target routing key (lossy UTF-8).
    pub target: String,
    /// The `Idempotency-Key` sent downstream.
    pub idempotency_key: String,
    /// Body size in bytes (absent once delivered).
    pub body_bytes: usize,
}

impl Record {
    /// Builds the record from the hash fields of `id` and the stored body's size; `None`
    /// when there are no fields.
    pub fn from_fields(
        id: &str,
        fields: &HashMap<String, Vec<u8>>,
        body_bytes: usize,
    ) -> Option<Record> {
        let text = |k: &str| {
            fields
                .get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let num = |k: &str| text(k).and_then(|v| v.parse::<u64>().ok());
        let state = text("state")?;
        let history = text("history")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, '\t');
                Some(Attempt {
                    at_ms: parts.next()?.parse().ok()?,
                    attempt: parts.next()?.parse().ok()?,
                    outcome: parts.next().unwrap_or_default().to_owned(),
                })
            })
            .collect();
        Some(Record {
            id: id.to_owned(),
            state,
            attempts: num("attempts")
                .and_then(|a| u32::try_from(a).ok())
                .unwrap_or(0),
            created_ms: num("created_ms").unwrap_or(0),
            updated_ms: num("updated_ms").unwrap_or(0),
            next_attempt_ms: num("next_ms"),
            delivered_ms: num("delivered_ms"),
            dead_ms: num("dead_ms"),
            reason: text("reason"),
            last_error: text("last_error"),
            last_status: num("status").and_then(|s| u16::try_from(s).ok()),
            delivered_to: text("cell"),
            history,
            request: Some(RequestView {
                method: text("method").unwrap_or_default(),
                uri: text("uri").unwrap_or_default(),
                target: text("target").unwrap_or_default(),
                idempotency_key: text("idem").unwrap_or_default(),
                body_bytes,
            }),
        })
    }

    /// The record without the stored request, for the public status endpoint.
    pub fn public(mut self) -> Record {
        self.request = None;
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_round_trip_through_wire_form() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b: c"));
        h.insert("x-bin", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        h.insert("x-empty", HeaderValue::from_static(""));
        assert_eq!(decode_headers(&encode_headers(&h)), h);
    }

    #[test]
    fn records_parse_history_and_hide_the_request_publicly() {
        let mut f = HashMap::new();
        f.insert("state".to_owned(), b"dead".to_vec());
        f.insert("attempts".to_owned(), b"2".to_vec());
        f.insert("reason".to_owned(), b"max_attempts".to_vec());
        f.insert(
            "history".to_owned(),
            b"10\t1\tcell-1 answered 500\n20\t2\ttimeout".to_vec(),
        );
        let r = Record::from_fields("c.1", &f, 5).unwrap();
        assert_eq!(r.attempts, 2);
        assert_eq!(r.history.len(), 2);
        assert_eq!(r.history[1].outcome, "timeout");
        assert_eq!(r.request.as_ref().unwrap().body_bytes, 5);
        assert!(r.public().request.is_none());
        assert!(Record::from_fields("c.1", &HashMap::new(), 0).is_none());
    }
}
