//! Admin API errors: JSON `{"error","message"}` with a status that tells cellctl what happened.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cell_router::DirectoryError;
use serde::Serialize;

use crate::control::ApplyError;

/// An admin API failure.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(Body {
                error: self.code,
                message: &self.message,
            }),
        )
            .into_response()
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        let status = match &e {
            DirectoryError::UnknownCell { .. } | DirectoryError::NotPinned { .. } => {
                StatusCode::NOT_FOUND
            }
            DirectoryError::WouldLeaveTooFewActive { .. }
            | DirectoryError::AlreadyInState { .. } => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Rejected(e) => e.into(),
            ApplyError::Conflict { current } => ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!(
                    "another change was applied first (directory is now at version {current}); \
                     nothing was changed: check `cellctl status` and retry"
                ),
            ),
            ApplyError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "control_plane_unavailable",
                "the control plane (Redis) is unreachable; nothing was changed and gateways keep \
                 routing with the last-known directory",
            ),
            // Only automatic changes are fenced; an operator's request never gets here.
            ApplyError::Fenced { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "lease_lost",
                "the automation lease was lost; nothing was changed",
            ),
        }
    }
}
