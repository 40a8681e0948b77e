//! The JSON echo answer.
//!
//! The identity fields never change, so they are serialized once; each answer appends the
//! per-request fields to a copy of that prefix.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, request::Parts};
use serde::{Serialize, Serializer, ser::SerializeMap};

use super::error::EchoError;

/// `Content-Type` of every JSON answer.
pub(crate) fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// What the body of a request looked like once read to its end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyStats {
    /// Bytes received.
    pub(crate) bytes: u64,
    /// xxh3-64 of the bytes.
    pub(crate) xxh3: u64,
    /// Time between the first and the last data chunk.
    pub(crate) spread_ms: u64,
}

/// Why an answer is an injected failure.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Fault {
    /// Drawn by the configured error rate.
    ErrorRate,
    /// The request's `x-echo-fail-until-ms` lies in the future.
    FailUntil,
}

/// Serializes echo answers for one cell.
#[derive(Debug)]
pub(crate) struct Replies {
    /// `{"cell":..,"instance":..` without the closing brace.
    prefix: Vec<u8>,
    healthz: Bytes,
}

#[derive(Serialize)]
struct Identity<'a> {
    cell: &'a str,
    instance: &'a str,
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    cell: &'a str,
    instance: &'a str,
}

#[derive(Serialize)]
struct PerRequest<'a> {
    user: Option<Cow<'a, str>>,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    body_bytes: u64,
    body_xxh3: String,
    body_spread_ms: u64,
    fault: Option<Fault>,
    headers: Headers<'a>,
}

/// Request headers as a JSON object: names as received (lower case), repeated values joined
/// with `", "`.
struct Headers<'a>(&'a HeaderMap);

impl Replies {
    /// Pre-serializes the parts of every answer that only depend on the cell.
    pub(crate) fn new(cell: &str, instance: &str) -> Result<Self, serde_json::Error> {
        let mut prefix = serde_json::to_vec(&Identity { cell, instance })?;
        prefix.pop(); // the closing brace; `echo` appends the rest of the object
        let healthz = serde_json::to_vec(&Health {
            status: "ok",
            cell,
            instance,
        })?;
        Ok(Self {
            prefix,
            healthz: healthz.into(),
        })
    }

    /// The `/healthz` answer.
    pub(crate) fn healthz(&self) -> Bytes {
        self.healthz.clone()
    }

    /// The echo answer for a request.
    pub(crate) fn echo(
        &self,
        parts: &Parts,
        body: BodyStats,
        fault: Option<Fault>,
    ) -> Result<Vec<u8>, EchoError> {
        let fields = PerRequest {
            user: parts
                .headers
                .get("x-user-id")
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            body_bytes: body.bytes,
            body_xxh3: format!("{:016x}", body.xxh3),
            body_spread_ms: body.spread_ms,
            fault,
            headers: Headers(&parts.headers),
        };
        let mut out = Vec::with_capacity(self.prefix.len() + 256 + 64 * parts.headers.len());
        out.extend_from_slice(&self.prefix);
        let start = out.len();
        serde_json::to_writer(&mut out, &fields)?;
        // A struct always serializes as `{...}`: turn its opening brace into the comma that
        // joins it to the prefix, giving one flat object.
        out[start] = b',';
        Ok(out)
    }
}

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.keys_len()))?;
        for name in self.0.keys() {
            let mut values = self.0.get_all(name).iter();
            let first = values.next().map(lossy).unwrap_or_default();
            let mut joined = first;
            for value in values {
                let mut all = joined.into_owned();
                all.push_str(", ");
                all.push_str(&lossy(value));
                joined = Cow::Owned(all);
            }
            map.serialize_entry(name.as_str(), &joined)?;
        }
        map.end()
    }
}

fn lossy(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}
