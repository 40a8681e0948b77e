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

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
