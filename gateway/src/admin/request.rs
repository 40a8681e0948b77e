//! Parsing of admin request bodies: an empty body means defaults, anything else must be JSON
//! of the documented shape, with a 400 that says what is wrong.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Parses an optional JSON body.
pub fn json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")))
}

/// Parses a humantime duration field such as `"60s"`.
pub fn duration(field: &str, value: Option<&str>, default: Duration) -> Result<Duration, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => humantime::parse_duration(v.trim()).map_err(|e| {
            ApiError::bad_request(
                "invalid_duration",
                format!("`{field}`: invalid duration {v:?} ({e}); use e.g. \"60s\" or \"5m\""),
            )
        }),
    }
}
