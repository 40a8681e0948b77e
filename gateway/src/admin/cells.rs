//! `/admin/cells`: status, drain, undrain, evacuate, plan.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cell_router::{
    CellIndex, CellState, Directory, DirectoryError, Guard, RoutingTable, plan_drain,
};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::ApiError;
use super::request::{duration, json_body};
use crate::control::millis;
use crate::control::now_ms;

/// Ramp length when a drain or undrain names none (SPEC §6).
const DEFAULT_RAMP: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct CellView<'a> {
    name: &'a str,
    state: &'static str,
    /// The state was made by guarded auto-evacuation (and no operator has changed it since).
    auto: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp_ends_ms: Option<u64>,
    weight: f64,
    effective_weight: f64,
    upstreams: usize,
    /// `healthy` (every upstream passes), `degraded` (some fail) or `unhealthy` (none pass).
    health: &'static str,
    healthy_upstreams: i64,
    /// Circuit breaker: `closed`, `open` or `half_open`.
    breaker: &'static str,
    rps: f64,
    error_pct: f64,
    p99_ms: Option<f64>,
    in_flight: i64,
    capacity_rps: Option<f64>,
}

/// `GET /admin/cells`
pub async fn list(State(state): State<AdminState>) -> Response {
    let table = state.control.table();
    let now = now_ms();
    let rates = state.rates.current();
    let cells: Vec<CellView<'_>> = state
        .proxy
        .cells()
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let idx = CellIndex::new(u16::try_from(i).unwrap_or(u16::MAX));
            let directory_state = table.state(idx, now);
            let raw_state = table.directory().state(cell.name());
            let r = rates.get(i).copied().unwrap_or_default();
            CellView {
                name: cell.name(),
                state: directory_state.name(),
                auto: directory_state != CellState::Active
                    && table.directory().is_auto(cell.name()),
                progress: raw_state.progress(now).filter(|_| {
                    directory_state != CellState::Active && directory_state != CellState::Drained
                }),
                ramp_ends_ms: raw_state.ends_at_ms().filter(|end| *end > now),
                weight: table.placement().weight(idx),
                effective_weight: table.effective_weight(idx, now),
                upstreams: cell.upstreams().len(),
                health: health_word(
                    cell.containment().metrics().healthy_upstreams.get(),
                    cell.upstreams().len(),
                ),
                healthy_upstreams: cell.containment().metrics().healthy_upstreams.get(),
                breaker: cell.containment().breaker().state().as_str(),
                rps: r.rps,
                error_pct: r.error_pct,
                p99_ms: r.p99_ms,
                in_flight: cell.metrics().in_flight().get(),
                capacity_rps: state.capacity.get(i).copied().flatten(),
            }
        })
        .collect();
    let status = state.control.status();
    let gateways = state.control.gateways().await;
    let audit = state.control.audit(10).await;
    Json(serde_json::json!({
        "gateway_id": &*state.gateway_id,
        "directory": {
            "version": table.version(),
            "connected": status.connected,
            "source": status.source,
            "last_sync_ms": status.last_sync_ms,
        },
        "cells": cells,
        "auto_evacuation": state.evacuation.status(),
        "gateways": gateways,
        "audit": audit,
    }))
    .into_response()
}

/// Body of drain, undrain and evacuate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// Ramp length (humantime); drain/undrain only.
    over: Option<String>,
    /// Skip the `min_active_cells` guard.
    #[serde(default)]
    force: bool,
    /// Why, for the audit log.
    reason: Option<String>,
    /// Who, for the audit log (cellctl sends `$USER`).
    actor: Option<String>,
}

#[derive(Serialize)]
struct ChangeAnswer<'a> {
    cell: &'a str,
    action: &'static str,
    state: &'static str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp_ends_ms: Option<u64>,
}

#[derive(Clone, Copy)]
enum Action {
    Drain,
    Undrain,
    Evacuate,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Drain => "drain",
            Action::Undrain => "undrain",
            Action::Evacuate => "evacuate",
        }
    }
}

/// `POST /admin/cells/{cell}/drain`
pub async fn drain(state: State<AdminState>, cell: Path<String>, body: Bytes) -> Response {
    change(state, cell, body, Action::Drain).await
}

/// `POST /admin/cells/{cell}/undrain`
pub async fn undrain(state: State<AdminState>, cell: Path<String>, body: Bytes) -> Response {
    change(state, cell, body, Action::Undrain).await
}

/// `POST /admin/cells/{cell}/evacuate`
pub async fn evacuate(state: State<AdminState>, cell: Path<String>, body: Bytes) -> Response {
    change(state, cell, body, Action::Evacuate).await
}

async fn change(
    State(state): State<AdminState>,
    Path(cell): Path<String>,
    body: Bytes,
    action: Action,
) -> Response {
    match try_change(&state, &cell, &body, action).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn try_change(
    state: &AdminState,
    cell: &str,
    body: &Bytes,
    action: Action,
) -> Result<Response, ApiError> {
    let request: ChangeRequest = json_body(body)?;
    if matches!(action, Action::Evacuate) && request.over.is_some() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "evacuate has no ramp: use drain with `over` for a gradual move",
        ));
    }
    let over_ms = millis(duration("over", request.over.as_deref(), DEFAULT_RAMP)?);
    let guard = Guard {
        min_active_cells: state.min_active_cells,
        force: request.force,
    };
    let table = state.control.table();
    let placement = table.placement().clone();
    let now = now_ms();
    let from = table.directory().state(cell).settled(now).name();
    let actor = actor(state, request.actor.as_deref());
    let applied = state
        .control
        .apply(
            &actor,
            action.name(),
            cell,
            request.reason.clone(),
            move |dir: &Directory| -> Result<Directory, DirectoryError> {
                match action {
                    Action::Drain => dir.drain(&placement, cell, over_ms, now, guard),
                    Action::Undrain => dir.undrain(&placement, cell, over_ms, now),
                    Action::Evacuate => dir.evacuate(&placement, cell, now, guard),
                }
            },
        )
        .await?;
    let new_state = applied.state(cell);
    tracing::info!(cell, action = action.name(), from, to = new_state.name(), version = applied.version, %actor, "directory changed");
    Ok(Json(ChangeAnswer {
        cell,
        action: action.name(),
        state: new_state.settled(now).name(),
        version: applied.version,
        ramp_ends_ms: new_state.ends_at_ms(),
    })
    .into_response())
}

/// `"<actor>@<gateway>"`: who asked, through which gateway.
pub fn actor(state: &AdminState, who: Option<&str>) -> String {
    let who = who
        .map(str::trim)
        .filter(|w| !w.is_empty() && w.len() <= 64 && !w.chars().any(char::is_control))
        .unwrap_or("admin");
    format!("{who}@{}", state.gateway_id)
}

#[derive(Serialize)]
struct Move<'a> {
    to: &'a str,
    /// Share of all users that moves to this cell.
    share_of_users: f64,
    /// Share of the drained cell's users that moves to this cell.
    share_of_cell: f64,
}

#[derive(Serialize)]
struct Load<'a> {
    cell: &'a str,
    rps_now: f64,
    rps_after: f64,
    capacity_rps: Option<f64>,
    over_capacity: bool,
}

/// `GET /admin/cells/{cell}/plan`: dry run of a drain.
pub async fn plan(State(state): State<AdminState>, Path(cell): Path<String>) -> Response {
    let table = state.control.table();
    let Some(idx) = table.placement().index_of(&cell) else {
        return ApiError::from(DirectoryError::UnknownCell {
            cell,
            known: known_cells(&table),
        })
        .into_response();
    };
    let now = now_ms();
    let shares = plan_drain(&table, idx, now);
    let total: f64 = shares.iter().map(|(_, s)| s).sum();
    let rps = observed_rps(&state).await;
    let placement = table.placement();
    let rps_of = |i: CellIndex| rps.get(placement.name(i)).copied().unwrap_or(0.0);
    let drained_rps = rps_of(idx);
    let moves: Vec<Move<'_>> = shares
        .iter()
        .map(|&(to, share)| Move {
            to: placement.name(to),
            share_of_users: share,
            share_of_cell: if total > 0.0 { share / total } else { 0.0 },
        })
        .collect();
    let loads: Vec<Load<'_>> = shares
        .iter()
        .map(|&(to, share)| {
            let now_rps = rps_of(to);
            let after = now_rps
                + if total > 0.0 {
                    drained_rps * share / total
                } else {
                    0.0
                };
            let capacity = state.capacity.get(to.get()).copied().flatten();
            Load {
                cell: placement.name(to),
                rps_now: now_rps,
                rps_after: after,
                capacity_rps: capacity,
                over_capacity: capacity.is_some_and(|c| after > c),
            }
        })
        .collect();
    let warnings: Vec<String> = loads
        .iter()
        .filter(|l| l.over_capacity)
        .map(|l| {
            format!(
                "{} would receive {:.0} rps, above its capacity of {:.0} rps",
                l.cell,
                l.rps_after,
                l.capacity_rps.unwrap_or_default()
            )
        })
        .collect();
    Json(serde_json::json!({
        "cell": cell,
        "action": "drain",
        "share_of_users": total,
        "rps": drained_rps,
        "moves": moves,
        "load_after": loads,
        "warnings": warnings,
    }))
    .into_response()
}

/// Per-cell request rate summed over the live gateways' heartbeats; this gateway's own
/// window when no gateway reported any (e.g. in-memory control plane).
async fn observed_rps(state: &AdminState) -> BTreeMap<String, f64> {
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    for gateway in state.control.gateways().await.gateways {
        for (cell, rps) in gateway.cell_rps {
            *total.entry(cell).or_default() += rps;
        }
    }
    if total.is_empty() {
        for (cell, rates) in state.proxy.cells().iter().zip(state.rates.current()) {
            total.insert(cell.name().to_owned(), rates.rps);
        }
    }
    total
}

/// Configured cell names, for "unknown cell" answers.
pub fn known_cells(table: &RoutingTable) -> Vec<String> {
    let placement = table.placement();
    placement
        .indices()
        .map(|i| placement.name(i).to_owned())
        .collect()
}

fn health_word(healthy: i64, total: usize) -> &'static str {
    match healthy {
        h if h <= 0 => "unhealthy",
        h if usize::try_from(h).unwrap_or(0) >= total => "healthy",
        _ => "degraded",
    }
}
