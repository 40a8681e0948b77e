//! `GET /admin/where/{key}`: which cell serves a key, and why.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use cell_router::{RouteReason, validate_key};
use serde::Serialize;

use super::AdminState;
use super::error::ApiError;
use crate::control::now_ms;

#[derive(Serialize)]
struct Rank<'a> {
    cell: &'a str,
    score: f64,
    state: &'static str,
}

#[derive(Serialize)]
struct Where<'a> {
    key: &'a str,
    cell: &'a str,
    /// `hash_rank`, `pinned`, `moved_by_drain`, `pin_moved_by_drain` or `none_available`.
    reason: &'static str,
    /// Human explanation of `reason`.
    detail: String,
    home: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a str>,
    ranking: Vec<Rank<'a>>,
    directory_version: u64,
}

/// `GET /admin/where/{key}`
pub async fn where_key(State(state): State<AdminState>, Path(key): Path<String>) -> Response {
    if let Err(e) = validate_key(&key) {
        return ApiError::from(e).into_response();
    }
    let table = state.control.table();
    let placement = table.placement();
    let now = now_ms();
    let route = table.route(key.as_bytes(), now);
    let home = placement.home(key.as_bytes());
    let pin = table.directory().pins.get(&key).map(|p| p.cell.as_str());
    let (reason, detail) = match route.reason {
        RouteReason::Home => (
            "hash_rank",
            "highest rendezvous score among the cells".to_owned(),
        ),
        RouteReason::Pinned => ("pinned", format!("pinned to {}", pin.unwrap_or("?"))),
        RouteReason::MovedByDrain { from, rank } => (
            "moved_by_drain",
            format!(
                "home cell {} is draining or drained; moved to its rank-{} cell",
                placement.name(from),
                rank + 1
            ),
        ),
        RouteReason::PinMovedByDrain { pinned } => (
            "pin_moved_by_drain",
            format!(
                "pinned to {}, which is draining or drained; the pin follows drains",
                placement.name(pinned)
            ),
        ),
        RouteReason::NoneAvailable => (
            "none_available",
            "every candidate cell is drained; falling back to the first one".to_owned(),
        ),
    };
    let ranking = placement
        .rank(key.as_bytes())
        .into_iter()
        .map(|idx| Rank {
            cell: placement.name(idx),
            score: placement.score(key.as_bytes(), idx),
            state: table.state(idx, now).name(),
        })
        .collect();
    Json(Where {
        key: &key,
        cell: placement.name(route.cell),
        reason,
        detail,
        home: placement.name(home),
        pin,
        ranking,
        directory_version: table.version(),
    })
    .into_response()
}
