//! `cellctl status`

use serde_json::Value;

use crate::cli::Output;
use crate::client::{Admin, CtlError};
use crate::output::{print, table};

/// Shows every cell as the gateway sees it, the gateways, and recent changes.
pub fn run(admin: &Admin, format: Output) -> Result<(), CtlError> {
    let cells = admin.get("/admin/cells")?;
    print(format, &cells, render);
    Ok(())
}

fn render(v: &Value) -> String {
    let empty = Vec::new();
    let cells: Vec<Vec<String>> = v["cells"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|c| {
            let mut state = text(&c["state"]);
            if c["auto"] == Value::Bool(true) {
                state.push_str(" (auto)");
            }
            if let Some(p) = c["progress"].as_f64() {
                state.push_str(&format!(" {:.0}%", p * 100.0));
            }
            vec![
                text(&c["name"]),
                state,
                format!("{:.2}", c["effective_weight"].as_f64().unwrap_or_default()),
                format!("{:.1}", c["rps"].as_f64().unwrap_or_default()),
                format!("{:.2}", c["error_pct"].as_f64().unwrap_or_default()),
                c["p99_ms"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}")),
                text(&c["in_flight"]),
                format!(
                    "{} {}/{}",
                    text(&c["health"]),
                    text(&c["healthy_upstreams"]),
                    text(&c["upstreams"])
                ),
                text(&c["breaker"]),
            ]
        })
        .collect();
    let dir = &v["directory"];
    let mut out = format!(
        "gateway {}  directory v{} ({}{})\n\n{}",
        text(&v["gateway_id"]),
        text(&dir["version"]),
        text(&dir["source"]),
        if dir["connected"] == Value::Bool(false) {
            ", control plane UNREACHABLE: serving the last-known directory"
        } else {
            ""
        },
        table(
            &[
                "CELL",
                "STATE",
                "WEIGHT",
                "RPS",
                "ERR%",
                "P99 MS",
                "IN-FLIGHT",
                "HEALTH",
                "BREAKER"
            ],
            &cells
        )
    );
    out.push_str(&auto_evacuation(&v["auto_evacuation"]));
    let gateways: Vec<Vec<String>> = v["gateways"]["gateways"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|g| vec![text(&g["id"]), text(&g["version"]), text(&g["seen_ms"])])
        .collect();
    if !gateways.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["GATEWAY", "APPLIED VERSION", "SEEN (UNIX MS)"],
            &gateways,
        ));
    }
    let audit = v["audit"].as_array().unwrap_or(&empty);
    if !audit.is_empty() {
        out.push_str("\nrecent changes:\n");
        for a in audit {
            out.push_str(&format!(
                "  v{} {} {} {} {} -> {} by {}{}\n",
                text(&a["version"]),
                text(&a["at_ms"]),
                text(&a["action"]),
                text(&a["target"]),
                text(&a["from"]),
                text(&a["to"]),
                text(&a["actor"]),
                a["reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// One line on guarded auto-evacuation: on or off, who decides, and a held evacuation.
fn auto_evacuation(a: &Value) -> String {
    if a.is_null() {
        return String::new();
    }
    let mut line = if a["enabled"] == Value::Bool(true) {
        format!(
            "\nauto-evacuation: on (at most {} cell(s))",
            text(&a["max_auto_evacuated"])
        )
    } else {
        "\nauto-evacuation: off".to_owned()
    };
    if !a["lease"].is_null() {
        line.push_str(&format!(
            ", decided by {} (lease {}{})",
            text(&a["lease"]["holder"]),
            text(&a["lease"]["token"]),
            if a["leader"] == Value::Bool(true) {
                ", this gateway"
            } else {
                ""
            }
        ));
    }
    let held = &a["held"];
    if !held.is_null() {
        let why = match held["reason"].as_str() {
            Some("cap_reached") => "cap reached",
            Some("no_healthy_peer") => "no other cell is healthy",
            Some("guard") => "min_active_cells guard",
            _ => "held",
        };
        line.push_str(&format!(
            "; HELD: {} (breaker open for {}s; {why})",
            text(&held["cell"]),
            text(&held["breaker_open_s"])
        ));
    }
    line.push('\n');
    line
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_evacuated_cells_and_a_hold_are_shown() {
        let v = serde_json::json!({
            "gateway_id": "gw-1",
            "directory": {"version": 4, "source": "store", "connected": true},
            "cells": [
                {"name": "cell-1", "state": "draining", "auto": true, "progress": 0.5},
                {"name": "cell-2", "state": "active", "auto": false},
            ],
            "auto_evacuation": {
                "enabled": true, "max_auto_evacuated": 1, "leader": false,
                "lease": {"holder": "gw-2", "token": 3},
                "held": {"cell": "cell-2", "reason": "cap_reached", "breaker_open_s": 12},
            },
        });
        let out = render(&v);
        assert!(out.contains("draining (auto) 50%"), "{out}");
        assert!(
            out.contains("auto-evacuation: on (at most 1 cell(s)), decided by gw-2 (lease 3)"),
            "{out}"
        );
        assert!(
            out.contains("HELD: cell-2 (breaker open for 12s; cap reached)"),
            "{out}"
        );
        let off = serde_json::json!({"cells": [], "auto_evacuation": {"enabled": false}});
        assert!(render(&off).contains("auto-evacuation: off"));
    }
}
