//! `cellctl dlq list | show | replay | purge`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::cli::{DlqListArgs, DlqSelection, Output};
use crate::client::{Admin, CtlError, encode_segment};
use crate::output::{print, table};

/// What `replay` and `purge` do to the selected dead letters.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// Back into the queue.
    Replay,
    /// Deleted.
    Purge,
}

impl Action {
    /// The field of the answer listing the ids acted on.
    fn done_field(self) -> &'static str {
        match self {
            Action::Replay => "replayed",
            Action::Purge => "purged",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Replay => "replay",
            Action::Purge => "purge",
        }
    }
}

/// Body of replay and purge.
#[derive(Serialize)]
struct Selection<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ids: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    all: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cell: Option<&'a str>,
}

/// Lists dead letters.
pub fn list(admin: &Admin, out: Output, args: &DlqListArgs) -> Result<(), CtlError> {
    let mut path = format!("/admin/deliveries/dead?limit={}", args.limit);
    if let Some(cell) = &args.cell {
        path.push_str(&format!("&cell={}", encode_segment(cell)));
    }
    let answer = admin.get(&path)?;
    let now = now_ms();
    print(out, &answer, |v| render_list(v, args.cell.as_deref(), now));
    Ok(())
}

/// Shows one dead letter.
pub fn show(admin: &Admin, out: Output, id: &str) -> Result<(), CtlError> {
    let answer = admin.get(&format!("/admin/deliveries/dead/{}", encode_segment(id)))?;
    let now = now_ms();
    print(out, &answer, |v| render_show(v, now));
    Ok(())
}

/// Replays or purges the selected dead letters. Named ids that were not in the DLQ make the
/// command fail (exit 1) after printing what was done; with `--all` there is nothing to miss.
pub fn act(
    admin: &Admin,
    out: Output,
    action: Action,
    selection: &DlqSelection,
) -> Result<(), CtlError> {
    if selection.ids.is_empty() && !selection.all {
        // clap enforces this; kept for callers that build the selection themselves.
        return Err(CtlError::Usage(format!(
            "name the dead letters to {} or pass --all",
            action.verb()
        )));
    }
    let body = Selection {
        ids: (!selection.all).then_some(&selection.ids[..]),
        all: selection.all,
        cell: selection.cell.as_deref(),
    };
    let body = serde_json::to_value(&body)
        .map_err(|e| CtlError::Refused(format!("cannot encode the request: {e}")))?;
    let answer = match action {
        Action::Replay => admin.post("/admin/deliveries/dead/replay", &body)?,
        Action::Purge => admin.delete("/admin/deliveries/dead", &body)?,
    };
    print(out, &answer, |v| render_act(v, action, selection));
    let missing = strings(&answer["not_found"]);
    if selection.all || missing.is_empty() {
        return Ok(());
    }
    Err(CtlError::Refused(format!(
        "{} of {} id(s) not in the dead-letter queue (already replayed or purged, delivered \
         meanwhile, or mistyped): {}",
        missing.len(),
        selection.ids.len(),
        missing.join(", ")
    )))
}

fn render_list(v: &Value, cell: Option<&str>, now: u64) -> String {
    let empty = Vec::new();
    let dead = v["dead"].as_array().unwrap_or(&empty);
    if dead.is_empty() {
        return match cell {
            Some(cell) => format!("no dead letters for {cell}\n"),
            None => "the dead-letter queue is empty\n".to_owned(),
        };
    }
    let rows: Vec<Vec<String>> = dead
        .iter()
        .map(|d| {
            vec![
                text(&d["id"]),
                text(&d["cell"]),
                text(&d["reason"]),
                text(&d["attempts"]),
                d["dead_ms"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |ms| age(now.saturating_sub(ms))),
                request_line(&d["request"]),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "CELL", "REASON", "ATTEMPTS", "DEAD FOR", "REQUEST"],
        &rows,
    );
    let total = v["total"].as_u64().unwrap_or(0);
    if total > dead.len() as u64 {
        out.push_str(&format!(
            "\nshowing {} of {total} dead letters (oldest first; see --limit and --cell)\n",
            dead.len()
        ));
    }
    out
}

fn render_show(v: &Value, now: u64) -> String {
    let r = &v["request"];
    let mut fields: Vec<(&str, String)> = vec![
        ("id", text(&v["id"])),
        (
            "state",
            format!("{} ({})", text(&v["state"]), text(&v["reason"])),
        ),
        ("cell", text(&v["cell"])),
        ("request", request_line(r)),
        ("target key", text(&r["target"])),
        ("body", format!("{} bytes", text(&r["body_bytes"]))),
        ("idempotency key", text(&r["idempotency_key"])),
        ("accepted", when(&v["created_ms"], now)),
        ("dead since", when(&v["dead_ms"], now)),
        ("attempts", text(&v["attempts"])),
    ];
    if !v["last_status"].is_null() {
        fields.push(("last status", text(&v["last_status"])));
    }
    if !v["last_error"].is_null() {
        fields.push(("last error", text(&v["last_error"])));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out: String = fields
        .iter()
        .map(|(k, val)| format!("{k:<width$}  {val}\n"))
        .collect();
    let empty = Vec::new();
    let history: Vec<Vec<String>> = v["history"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|h| {
            vec![
                match h["attempt"].as_u64() {
                    Some(0) | None => "-".to_owned(),
                    Some(n) => n.to_string(),
                },
                h["at_ms"].as_u64().map_or_else(|| "-".to_owned(), rfc3339),
                text(&h["outcome"]),
            ]
        })
        .collect();
    out.push_str("\nhistory:\n");
    if history.is_empty() {
        out.push_str("  (none)\n");
    } else {
        for line in table(&["ATTEMPT", "TIME (UTC)", "OUTCOME"], &history).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn render_act(v: &Value, action: Action, selection: &DlqSelection) -> String {
    let done = strings(&v[action.done_field()]);
    let missing = strings(&v["not_found"]);
    if selection.all && done.is_empty() && missing.is_empty() {
        return match &selection.cell {
            Some(cell) => format!("no dead letters for {cell}: nothing to {}\n", action.verb()),
            None => format!(
                "the dead-letter queue is empty: nothing to {}\n",
                action.verb()
            ),
        };
    }
    let mut out = format!("{} {} dead letter(s)\n", action.done_field(), done.len());
    for id in &done {
        out.push_str(&format!("  {id}\n"));
    }
    if !missing.is_empty() {
        out.push_str(&format!(
            "not in the dead-letter queue: {}\n",
            missing.len()
        ));
        for id in &missing {
            out.push_str(&format!("  {id}\n"));
        }
    }
    out
}

/// `METHOD /path?query`.
fn request_line(r: &Value) -> String {
    match (r["method"].as_str(), r["uri"].as_str()) {
        (Some(m), Some(u)) => format!("{m} {u}"),
        _ => "-".to_owned(),
    }
}

/// `2026-11-26T19:59:09.123Z (3m05s ago)`.
fn when(ms: &Value, now: u64) -> String {
    ms.as_u64().map_or_else(
        || "-".to_owned(),
        |ms| format!("{} ({} ago)", rfc3339(ms), age(now.saturating_sub(ms))),
    )
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A compact age: `42s`, `3m05s`, `2h07m`, `3d04h`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(text)
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ages_are_compact() {
        assert_eq!(age(999), "0s");
        assert_eq!(age(42_000), "42s");
        assert_eq!(age(185_000), "3m05s");
        assert_eq!(age(7_620_000), "2h07m");
        assert_eq!(age(273_600_000), "3d04h");
    }

    #[test]
    fn a_listing_is_a_table_with_the_request() {
        let v = json!({
            "dead": [{
                "id": "cell-1.0123456789abcdef0123456789abcdef",
                "cell": "cell-1",
                "reason": "max_attempts",
                "attempts": 2,
                "dead_ms": 1_000,
                "request": {"method": "POST", "uri": "/orders?x=1"},
            }],
            "count": 1,
            "total": 3,
        });
        let text = render_list(&v, None, 43_000);
        assert!(text.starts_with("ID "), "{text}");
        assert!(
            text.contains("max_attempts  2         42s       POST /orders?x=1"),
            "{text}"
        );
        assert!(text.contains("showing 1 of 3"), "{text}");
        let empty = render_list(&json!({"dead": [], "count": 0, "total": 0}), None, 0);
        assert_eq!(empty, "the dead-letter queue is empty\n");
    }

    #[test]
    fn show_lists_every_attempt() {
        let v = json!({
            "id": "c.1", "cell": "c", "state": "dead", "reason": "max_attempts",
            "attempts": 1, "created_ms": 0, "dead_ms": 2_000, "last_error": "c answered 500",
            "history": [
                {"at_ms": 1_000, "attempt": 1, "outcome": "c answered 500"},
                {"at_ms": 2_000, "attempt": 0, "outcome": "replayed"},
            ],
            "request": {"method": "GET", "uri": "/", "target": "alice",
                        "idempotency_key": "k", "body_bytes": 0},
        });
        let text = render_show(&v, 62_000);
        assert!(
            text.contains("state            dead (max_attempts)"),
            "{text}"
        );
        assert!(
            text.contains("dead since       1970-01-01T00:00:02.000Z (1m00s ago)"),
            "{text}"
        );
        assert!(
            text.contains("  1        1970-01-01T00:00:01.000Z  c answered 500"),
            "{text}"
        );
        assert!(
            text.contains("  -        1970-01-01T00:00:02.000Z  replayed"),
            "{text}"
        );
    }
}
