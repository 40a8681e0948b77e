//! Why an echo cell refuses a request, and the one place that turns that into a response.

use http::{Response, StatusCode, header};
use serde::Serialize;

use super::body::EchoBody;

/// A request the echo cell cannot honour.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EchoError {
    /// `x-echo-status` is not a status code in 200..=599.
    #[error("x-echo-status must be an HTTP status code between 200 and 599")]
    InvalidStatus,
    /// `x-echo-fail-until-ms` is not a unix timestamp in milliseconds.
    #[error("x-echo-fail-until-ms must be a unix timestamp in milliseconds")]
    InvalidFailUntil,
    /// A response-shaping query parameter is malformed or out of range.
    #[error("query parameter `{name}` must be {expected}")]
    InvalidQuery {
        /// The offending parameter.
        name: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// `/_fault` got a body that is not a valid fault update.
    #[error("invalid fault update: {0}")]
    InvalidFault(String),
    /// `/_fault` got an error rate outside `[0, 1]`.
    #[error("error_rate must be a number between 0 and 1")]
    ErrorRateOutOfRange,
    /// The request body could not be read to its end.
    #[error("the request body could not be read")]
    Body,
    /// `/_fault` only knows GET and POST.
    #[error("/_fault accepts GET and POST")]
    MethodNotAllowed,
    /// The answer could not be serialized (a bug).
    #[error("the answer could not be serialized")]
    Serialize(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
}

impl EchoError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Serialize(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidStatus => "invalid_echo_status",
            Self::InvalidFailUntil => "invalid_fail_until",
            Self::InvalidQuery { .. } => "invalid_query",
            Self::InvalidFault(_) | Self::ErrorRateOutOfRange => "invalid_fault",
            Self::Body => "body_error",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Serialize(_) => "internal",
        }
    }

    /// The JSON error response `{"error": <code>, "message": ...}`.
    pub(crate) fn into_response(self) -> Response<EchoBody> {
        let message = self.to_string();
        let json = serde_json::to_vec(&ErrorBody {
            error: self.code(),
            message: &message,
        })
        // Serializing two plain strings cannot fail; keep the code if it somehow does.
        .unwrap_or_else(|_| br#"{"error":"internal"}"#.to_vec());
        let mut response = Response::new(EchoBody::full(json));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, super::reply::json_content_type());
        if matches!(self, Self::MethodNotAllowed) {
            response
                .headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("GET, POST"));
        }
        response
    }
}
