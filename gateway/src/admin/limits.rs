//! `/admin/ratelimit`: the limiter's view of a key (`cellctl limits <key>`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cell_router::validate_key;
use ratelimit::KeyView;
use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;

/// `GET /admin/ratelimit`: policies and the limiter mode.
pub async fn list(State(state): State<AdminState>) -> Response {
    let Some(limits) = state.proxy.limits() else {
        return Json(json!({ "enabled": false, "policies": [] })).into_response();
    };
    let limiter = limits.limiter();
    let policies: Vec<Value> = limiter
        .policies()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "key": p.key.to_string(),
                "limit": p.limit,
                "per_ms": p.per.as_millis() as u64,
                "burst": p.burst,
            })
        })
        .collect();
    Json(json!({
        "enabled": true,
        "mode": limiter.mode().as_str(),
        "tracked_keys": limiter.tracked_keys(),
        "policies": policies,
    }))
    .into_response()
}

/// `GET /admin/ratelimit/{policy}/{key}`: local and global usage of one key.
pub async fn key(
    State(state): State<AdminState>,
    Path((policy, key)): Path<(String, String)>,
) -> Response {
    let Some(limits) = state.proxy.limits() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no_rate_limits",
            "no [ratelimit] policies are configured on this gateway",
        )
        .into_response();
    };
    // `global` policies count under the empty key; every other key is a routing-key-like value.
    if !key.is_empty() {
        if let Err(e) = validate_key(&key) {
            return ApiError::from(e).into_response();
        }
    }
    let limiter = limits.limiter();
    let Some(config) = limiter.policies().iter().find(|p| p.name == policy) else {
        let known: Vec<&str> = limiter.policies().iter().map(|p| p.name.as_str()).collect();
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_policy",
            format!(
                "unknown policy {policy:?}; known policies: {}",
                known.join(", ")
            ),
        )
        .into_response();
    };
    let view = limiter.inspect(&policy, key.as_bytes());
    Json(json!({
        "policy": policy,
        "key": key,
        "limit": config.limit,
        "per_ms": config.per.as_millis() as u64,
        "burst": config.burst,
        "mode": limiter.mode().as_str(),
        "tracked": view.is_some(),
        "usage": view.as_ref().map(view_json),
    }))
    .into_response()
}

fn view_json(v: &KeyView) -> Value {
    json!({
        "tokens": v.tokens,
        "local_rate": v.local_rate,
        "local_burst": v.local_burst,
        "local_demand": v.local_demand,
        "global_demand": v.global_demand,
        "live_gateways": v.live_gateways,
        "share": v.share,
        "mode": v.mode.as_str(),
        "last_sync_age_ms": v.last_sync_age.map(|d| d.as_millis() as u64),
    })
}

/// `GET /admin/ratelimit/{policy}`: a `global` policy's single key.
pub async fn key_global(state: State<AdminState>, Path(policy): Path<String>) -> Response {
    key(state, Path((policy, String::new()))).await
}
