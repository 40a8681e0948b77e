//! The admin listener (SPEC §7): health, readiness, metrics, and the operator API.
//!
//! `/healthz`, `/readyz` and `/metrics` are open; everything under `/admin/` needs the bearer
//! token when one is configured. Readiness never depends on Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::routing_key::MAX_KEY_LEN;

/// Shared state of the admin handlers.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The data plane, for cell views.
    pub proxy: Proxy,
    /// The metric registry.
    pub metrics: Arc<Metrics>,
    /// False until the data plane listens, and again once shutdown starts.
    pub ready: Arc<AtomicBool>,
    /// Bearer token for `/admin/*`, if configured.
    pub token: Option<Arc<str>>,
    /// This gateway's id.
    pub gateway_id: Arc<str>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let admin = Router::new()
        .route("/admin/cells", get(cells))
        .route("/admin/where/{key}", get(where_key))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin)
        .fallback(not_found)
        .with_state(state)
}

#[derive(Serialize)]
struct ApiError {
    error: &'static str,
    message: String,
}

fn api_error(status: StatusCode, error: &'static str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error,
            message: message.into(),
        }),
    )
        .into_response()
}

async fn not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
}

async fn require_token(
    State(state): State<AdminState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            );
        }
    }
    next.run(request).await
}

/// Compares in time that depends only on the lengths, so a token cannot be guessed byte by
/// byte from response timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Serialize)]
struct CellView<'a> {
    name: &'a str,
    state: &'static str,
    weight: f64,
    effective_weight: f64,
    upstreams: Vec<String>,
    in_flight: i64,
}

#[derive(Serialize)]
struct CellsView<'a> {
    gateway_id: &'a str,
    cells: Vec<CellView<'a>>,
}

async fn cells(State(state): State<AdminState>) -> Response {
    let cells = state.proxy.cells();
    let placement = cells.placement();
    let view = CellsView {
        gateway_id: &state.gateway_id,
        cells: placement
            .indices()
            .filter_map(|idx| {
                let cell = cells.get(idx)?;
                Some(CellView {
                    name: cell.name(),
                    state: "active",
                    weight: placement.weight(idx),
                    effective_weight: placement.weight(idx),
                    upstreams: cell
                        .upstreams()
                        .iter()
                        .map(|u| u.authority().to_string())
                        .collect(),
                    in_flight: cell.metrics().in_flight().get(),
                })
            })
            .collect(),
    };
    Json(view).into_response()
}

#[derive(Serialize)]
struct RankView<'a> {
    cell: &'a str,
    score: f64,
}

#[derive(Serialize)]
struct WhereView<'a> {
    key: &'a str,
    cell: &'a str,
    reason: &'static str,
    ranking: Vec<RankView<'a>>,
}

async fn where_key(State(state): State<AdminState>, Path(key): Path<String>) -> Response {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_routing_key",
            format!("a routing key is 1..={MAX_KEY_LEN} bytes without control characters"),
        );
    }
    let placement = state.proxy.cells().placement();
    let ranking: Vec<RankView<'_>> = placement
        .rank(key.as_bytes())
        .into_iter()
        .map(|idx| RankView {
            cell: placement.name(idx),
            score: placement.score(key.as_bytes(), idx),
        })
        .collect();
    let home = placement.name(placement.home(key.as_bytes()));
    Json(WhereView {
        key: &key,
        cell: home,
        reason: "hash_rank",
        ranking,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
