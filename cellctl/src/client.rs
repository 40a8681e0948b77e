//! The admin API client, and the mapping of its failures to exit codes.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::Value;

/// A failed command, classified by exit code (SPEC §7).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The gateway refused the request or the command failed (exit 1).
    #[error("{0}")]
    Refused(String),
    /// Bad usage that clap could not catch (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The admin API could not be reached (exit 3).
    #[error("admin API unreachable at {url}: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why (connection refused, timeout, ...).
        reason: String,
    },
}

impl CtlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Refused(_) => 1,
            CtlError::Usage(_) => 2,
            CtlError::Unreachable { .. } => 3,
        }
    }
}

/// A thin JSON client for one gateway's admin API.
pub struct Admin {
    base: String,
    token: Option<String>,
    http: Client,
}

impl Admin {
    /// A client for `base` (e.g. `http://127.0.0.1:9901`).
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Admin, CtlError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CtlError::Usage(format!(
                "--admin must be an http:// URL, got {base:?}"
            )));
        }
        let http = Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| CtlError::Refused(format!("cannot build the HTTP client: {e}")))?;
        Ok(Admin { base, token, http })
    }

    /// `GET` a JSON document.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.send(reqwest::Method::GET, path, None)
    }

    /// `POST` a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CtlError> {
        self.send(reqwest::Method::POST, path, Some(body))
    }

    /// `PUT` a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, CtlError> {
        self.send(reqwest::Method::PUT, path, Some(body))
    }

    /// `DELETE`, with an optional JSON body.
    pub fn delete(&self, path: &str, body: &Value) -> Result<Value, CtlError> {
        self.send(reqwest::Method::DELETE, path, Some(body))
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CtlError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().map_err(|e| CtlError::Unreachable {
            url: url.clone(),
            reason: root_cause(&e),
        })?;
        let status = response.status();
        let body: Value = response.json().map_err(|e| CtlError::Unreachable {
            url: url.clone(),
            reason: format!("answer is not JSON: {}", root_cause(&e)),
        })?;
        if status.is_success() {
            Ok(body)
        } else {
            let message = body["message"].as_str().unwrap_or("request refused");
            Err(CtlError::Refused(format!("{message} (HTTP {status})")))
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters pass through).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("alice"), "alice");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn exit_codes_follow_the_spec() {
        assert_eq!(CtlError::Refused(String::new()).exit_code(), 1);
        assert_eq!(CtlError::Usage(String::new()).exit_code(), 2);
        let unreachable = CtlError::Unreachable {
            url: String::new(),
            reason: String::new(),
        };
        assert_eq!(unreachable.exit_code(), 3);
    }
}
