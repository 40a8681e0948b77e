//! `/admin/pins/{key}`: pin a key to a cell, or unpin it.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cell_router::Directory;
use serde::Deserialize;

use super::AdminState;
use super::cells::actor;
use super::error::ApiError;
use super::request::json_body;

/// Body of `PUT /admin/pins/{key}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The cell to pin the key to.
    cell: Option<String>,
    /// Whether the pin follows a drain of its cell (default true).
    follow_drain: Option<bool>,
    /// Why, for the audit log.
    reason: Option<String>,
    /// Who, for the audit log.
    actor: Option<String>,
}

/// `GET /admin/pins`
pub async fn list(State(state): State<AdminState>) -> Response {
    let table = state.control.table();
    Json(serde_json::json!({
        "version": table.version(),
        "pins": table.directory().pins,
    }))
    .into_response()
}

/// `PUT /admin/pins/{key}`
pub async fn put(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let request: PinRequest = json_body(&body)?;
        let Some(cell) = request.cell else {
            return Err(ApiError::bad_request(
                "invalid_body",
                "missing `cell`: send {\"cell\": \"cell-3\"}",
            ));
        };
        let follow = request.follow_drain.unwrap_or(true);
        let placement = state.control.table().placement().clone();
        let actor = actor(&state, request.actor.as_deref());
        let target = cell.clone();
        let applied = state
            .control
            .apply(&actor, "pin", &key, request.reason, |dir: &Directory| {
                dir.pin(&placement, &key, &target, follow)
            })
            .await?;
        Ok(Json(serde_json::json!({
            "key": key,
            "cell": cell,
            "follow_drain": follow,
            "version": applied.version,
        })))
    }
    .await;
    match result {
        Ok(json) => json.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /admin/pins/{key}`
pub async fn delete(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let request: PinRequest = json_body(&body)?;
        let actor = actor(&state, request.actor.as_deref());
        let applied = state
            .control
            .apply(&actor, "unpin", &key, request.reason, |dir: &Directory| {
                dir.unpin(&key)
            })
            .await?;
        Ok(Json(serde_json::json!({
            "key": key,
            "version": applied.version,
        })))
    }
    .await;
    match result {
        Ok(json) => json.into_response(),
        Err::<_, ApiError>(e) => e.into_response(),
    }
}
