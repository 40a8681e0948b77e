//! The admin listener (SPEC §7): health, readiness, metrics, and the operator API.
//!
//! `/healthz`, `/readyz` and `/metrics` are open; everything under `/admin/` needs the bearer
//! token when one is configured. Readiness never depends on Redis.

mod cells;
mod dlq;
mod error;
mod limits;
mod pins;
mod request;
mod where_key;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::control::ControlPlane;
use crate::delivery::DeliveryQueue;
use crate::evacuation::Evacuator;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::stats::Rates;
pub use error::ApiError;

/// Shared state of the admin handlers.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The data plane, for cell views.
    pub proxy: Proxy,
    /// The directory and its store.
    pub control: ControlPlane,
    /// Rolling per-cell rates.
    pub rates: Rates,
    /// The metric registry.
    pub metrics: Arc<Metrics>,
    /// False until the data plane listens, and again once shutdown starts.
    pub ready: Arc<AtomicBool>,
    /// Bearer token for `/admin/*`, if configured.
    pub token: Option<Arc<str>>,
    /// This gateway's id.
    pub gateway_id: Arc<str>,
    /// `[control].min_active_cells`: the drain guard.
    pub min_active_cells: usize,
    /// Configured `capacity_rps` per cell, in config order.
    pub capacity: Arc<[Option<f64>]>,
    /// The async delivery queue, for its dead letters; `None` without `[delivery]`.
    pub delivery: Option<DeliveryQueue>,
    /// Guarded auto-evacuation, for its status.
    pub evacuation: Evacuator,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let admin = Router::new()
        .route("/admin/cells", get(cells::list))
        .route("/admin/cells/{cell}/drain", post(cells::drain))
        .route("/admin/cells/{cell}/undrain", post(cells::undrain))
        .route("/admin/cells/{cell}/evacuate", post(cells::evacuate))
        .route("/admin/cells/{cell}/plan", get(cells::plan))
        .route("/admin/where/{key}", get(where_key::where_key))
        .route("/admin/pins", get(pins::list))
        .route(
            "/admin/pins/{key}",
            axum::routing::put(pins::put).delete(pins::delete),
        )
        .route("/admin/audit", get(audit))
        .route("/admin/ratelimit", get(limits::list))
        .route("/admin/ratelimit/{policy}", get(limits::key_global))
        .route("/admin/ratelimit/{policy}/{key}", get(limits::key))
        .route("/admin/deliveries/dead", get(dlq::list).delete(dlq::purge))
        .route("/admin/deliveries/dead/replay", post(dlq::replay))
        .route("/admin/deliveries/dead/{id}", get(dlq::show))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
    .into_response()
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
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            )
            .into_response();
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

#[derive(serde::Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Json(serde_json::json!({ "audit": state.control.audit(limit).await })).into_response()
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
