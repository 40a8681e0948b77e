//! `cellctl status`

use serde_json::Value;

use crate::cli::Output;
use crate::client::{Admin, CtlError};
use crate::output::{print, table};

/// Shows every cell as the gateway sees it.
pub fn run(admin: &Admin, format: Output) -> Result<(), CtlError> {
    let cells = admin.get("/admin/cells")?;
    print(format, &cells, render);
    Ok(())
}

fn render(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["cells"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            vec![
                text(&c["name"]),
                text(&c["state"]),
                format!("{:.2}", c["effective_weight"].as_f64().unwrap_or_default()),
                text(&c["in_flight"]),
                c["upstreams"]
                    .as_array()
                    .map(|u| u.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "gateway {}\n{}",
        text(&v["gateway_id"]),
        table(
            &["CELL", "STATE", "WEIGHT", "IN-FLIGHT", "UPSTREAMS"],
            &rows
        )
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
