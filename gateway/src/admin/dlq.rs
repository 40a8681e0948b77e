//! `/admin/deliveries/dead`: the dead-letter queue of the async delivery queue (`cellctl dlq`).
//!
//! Listing and showing return the full record, stored request view included (unlike the
//! public status endpoint). Replay and purge take explicit ids or `all` (optionally of one
//! cell) and answer which ids they acted on and which were not in the DLQ, so a retried
//! call is harmless: what was done the first time shows up as `not_found`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cell_router::DirectoryError;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::ApiError;
use super::request::json_body;
use crate::delivery::DeliveryQueue;
use crate::delivery::record::Record;
use crate::delivery::store::QueueError;

/// Records listed when the query names no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// Most records one listing returns.
const MAX_LIMIT: usize = 1000;
/// Most ids one replay or purge names: bounds the work of one admin call.
const MAX_IDS: usize = 10_000;
/// Replays or purges in flight at once.
const IN_FLIGHT: usize = 32;

/// Query of `GET /admin/deliveries/dead`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this cell's partition.
    cell: Option<String>,
    /// At most this many records (1 to 1000, default 100).
    limit: Option<usize>,
}

/// Body of replay and purge: `{"ids": [..]}` or `{"all": true, "cell": ".."}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// These dead letters.
    ids: Option<Vec<String>>,
    /// Every dead letter (of `cell`, when given).
    #[serde(default)]
    all: bool,
    /// With `all`: only this cell's partition.
    cell: Option<String>,
}

/// What a [`Selection`] names, once checked.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// These ids, each once.
    Ids(Vec<String>),
    /// Every dead letter, of one cell or all.
    All(Option<String>),
}

impl Selection {
    fn target(self) -> Result<Target, ApiError> {
        let invalid = |message: String| Err(ApiError::bad_request("invalid_body", message));
        match self {
            Selection {
                ids: Some(_),
                all: true,
                ..
            } => invalid("send either `ids` or `all`, not both".into()),
            Selection {
                ids: Some(_),
                cell: Some(_),
                ..
            } => invalid("`cell` goes with `all`; ids already name their cell".into()),
            Selection { ids: Some(ids), .. } if ids.is_empty() => {
                invalid("`ids` is empty: name at least one id, or send {\"all\": true}".into())
            }
            Selection { ids: Some(ids), .. } if ids.len() > MAX_IDS => invalid(format!(
                "{} ids in one call; at most {MAX_IDS} (use `all` for more)",
                ids.len()
            )),
            Selection { ids: Some(ids), .. } => Ok(Target::Ids(dedup(ids))),
            Selection {
                all: true, cell, ..
            } => Ok(Target::All(cell)),
            Selection { .. } => invalid(
                "nothing selected: send {\"ids\": [..]} or {\"all\": true} (optionally with \
                 \"cell\")"
                    .into(),
            ),
        }
    }
}

/// A dead letter as the admin API shows it: the record plus the cell whose partition holds
/// it (the home cell of its target key).
#[derive(Serialize)]
struct DeadLetter<'a> {
    cell: &'a str,
    #[serde(flatten)]
    record: Record,
}

#[derive(Serialize)]
struct Listing<'a> {
    dead: Vec<DeadLetter<'a>>,
    /// Records in `dead`.
    count: usize,
    /// Dead letters in the selected partitions, listed or not.
    total: u64,
}

#[derive(Clone, Copy)]
enum Action {
    Replay,
    Purge,
}

impl Action {
    fn done_field(self) -> &'static str {
        match self {
            Action::Replay => "replayed",
            Action::Purge => "purged",
        }
    }
}

/// `GET /admin/deliveries/dead?cell=<name>&limit=<n>`: dead letters, oldest first across the
/// selected cells.
pub async fn list(
    State(state): State<AdminState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    respond(try_list(&state, query).await)
}

async fn try_list(
    state: &AdminState,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{}; use ?cell=<name>&limit=<1..{MAX_LIMIT}>", e.body_text()),
        )
    })?;
    let queue = queue(state)?;
    let cell = query.cell.as_deref();
    if let Some(cell) = cell {
        known_cell(queue, cell)?;
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let records = queue
        .dead_letters(cell, limit)
        .await
        .map_err(|e| unavailable("list the dead letters", &e))?;
    let mut total = 0;
    for p in queue
        .partitions()
        .iter()
        .filter(|p| cell.is_none_or(|c| c == p.cell()))
    {
        let depth = queue
            .store()
            .depth(p)
            .await
            .map_err(|e| unavailable("count the dead letters", &e))?;
        total += depth.dead;
    }
    let dead: Vec<DeadLetter<'_>> = records
        .into_iter()
        .map(|record| DeadLetter {
            cell: cell_of(queue, &record.id),
            record,
        })
        .collect();
    Ok(Json(Listing {
        count: dead.len(),
        dead,
        total,
    })
    .into_response())
}

/// `GET /admin/deliveries/dead/{id}`: one dead letter with its history and stored request.
pub async fn show(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    respond(try_show(&state, &id).await)
}

async fn try_show(state: &AdminState, id: &str) -> Result<Response, ApiError> {
    let queue = queue(state)?;
    let record = queue
        .status(id)
        .await
        .map_err(|e| unavailable("read the delivery", &e))?;
    match record {
        Some(record) if record.state == "dead" => Ok(Json(DeadLetter {
            cell: cell_of(queue, id),
            record,
        })
        .into_response()),
        Some(record) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_dead",
            format!(
                "delivery {id} is not in the dead-letter queue (state: {})",
                record.state
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_delivery",
            format!("no delivery {id} (unknown, purged, or expired after delivery)"),
        )),
    }
}

/// `POST /admin/deliveries/dead/replay`: back into the queue, attempts reset.
pub async fn replay(State(state): State<AdminState>, body: Bytes) -> Response {
    respond(act(&state, &body, Action::Replay).await)
}

/// `DELETE /admin/deliveries/dead`: gone for good.
pub async fn purge(State(state): State<AdminState>, body: Bytes) -> Response {
    respond(act(&state, &body, Action::Purge).await)
}

async fn act(state: &AdminState, body: &Bytes, action: Action) -> Result<Response, ApiError> {
    let selection: Selection = json_body(body)?;
    let queue = queue(state)?;
    let ids = match selection.target()? {
        Target::Ids(ids) => ids,
        Target::All(cell) => {
            if let Some(cell) = cell.as_deref() {
                known_cell(queue, cell)?;
            }
            queue
                .dead_ids(cell.as_deref())
                .await
                .map_err(|e| unavailable("list the dead letters", &e))?
        }
    };
    // Many calls in flight on the multiplexed connection: a DLQ of thousands is replayed in
    // a fraction of the round trips a sequential loop would wait for.
    let total = ids.len();
    let mut results = stream::iter(ids)
        .map(|id| {
            let queue = queue.clone();
            async move {
                let found = match action {
                    Action::Replay => queue.replay(&id).await,
                    Action::Purge => queue.purge(&id).await,
                };
                (id, found)
            }
        })
        .buffered(IN_FLIGHT);
    let mut done = Vec::new();
    let mut not_found = Vec::new();
    while let Some((id, found)) = results.next().await {
        match found {
            Ok(true) => done.push(id),
            Ok(false) => not_found.push(id),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    action = action.done_field(),
                    done = done.len(),
                    "dead-letter operation failed"
                );
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_unavailable",
                    format!(
                        "the delivery queue (Redis) did not answer after at least {} of {} ids \
                         were {}; retrying is safe: those show up as not_found",
                        done.len(),
                        total,
                        action.done_field(),
                    ),
                ));
            }
        }
    }
    tracing::info!(
        action = action.done_field(),
        done = done.len(),
        not_found = not_found.len(),
        "dead letters changed"
    );
    Ok(Json(serde_json::json!({
        action.done_field(): done,
        "not_found": not_found,
    }))
    .into_response())
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The queue, or the answer for a gateway without `[delivery]`.
fn queue(state: &AdminState) -> Result<&DeliveryQueue, ApiError> {
    state.delivery.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "delivery_not_configured",
            "the delivery queue is not configured on this gateway (no [delivery] section)",
        )
    })
}

fn known_cell(queue: &DeliveryQueue, cell: &str) -> Result<(), ApiError> {
    match queue.partition_named(cell) {
        Some(_) => Ok(()),
        None => Err(DirectoryError::UnknownCell {
            cell: cell.to_owned(),
            known: queue
                .partitions()
                .iter()
                .map(|p| p.cell().to_owned())
                .collect(),
        }
        .into()),
    }
}

/// The partition cell of a listed id; ids of listed records always name a known cell.
fn cell_of<'q>(queue: &'q DeliveryQueue, id: &str) -> &'q str {
    queue.partition_of(id).map_or("", |p| p.cell())
}

/// 503 with a short message; the Redis error itself goes to the log only.
fn unavailable(what: &str, e: &QueueError) -> ApiError {
    tracing::warn!(error = %e, "could not {what}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unavailable",
        format!("the delivery queue (Redis) did not answer; could not {what}"),
    )
}

/// Drops repeated ids, keeping the first of each: a second replay of one id in the same call
/// would report it `not_found` and confuse the answer.
fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_count_once() {
        let ids = ["a", "b", "a", "c", "b"].map(str::to_owned).to_vec();
        assert_eq!(dedup(ids), ["a", "b", "c"]);
    }

    fn target(body: &'static str) -> Result<Target, ApiError> {
        json_body::<Selection>(&Bytes::from_static(body.as_bytes()))?.target()
    }

    #[test]
    fn selections_name_ids_or_all() {
        assert_eq!(
            target(r#"{"ids":["a","b","a"]}"#).ok(),
            Some(Target::Ids(vec!["a".into(), "b".into()]))
        );
        assert_eq!(target(r#"{"all":true}"#).ok(), Some(Target::All(None)));
        assert_eq!(
            target(r#"{"all":true,"cell":"c"}"#).ok(),
            Some(Target::All(Some("c".into())))
        );
        for bad in [
            "",
            "{}",
            r#"{"all":false}"#,
            r#"{"ids":[]}"#,
            r#"{"ids":["a"],"all":true}"#,
            r#"{"ids":["a"],"cell":"c"}"#,
            r#"{"cell":"c"}"#,
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selections_parse_from_the_documented_bodies() {
        let s: Selection = json_body(&Bytes::from_static(br#"{"ids":["x"]}"#)).unwrap_or_default();
        assert_eq!(s.ids.as_deref(), Some(&["x".to_owned()][..]));
        let s: Selection =
            json_body(&Bytes::from_static(br#"{"all":true,"cell":"c"}"#)).unwrap_or_default();
        assert!(s.all);
        assert_eq!(s.cell.as_deref(), Some("c"));
        assert!(json_body::<Selection>(&Bytes::from_static(br#"{"bogus":1}"#)).is_err());
        assert!(json_body::<Selection>(&Bytes::from_static(b"{")).is_err());
    }
}
