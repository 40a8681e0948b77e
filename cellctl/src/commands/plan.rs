//! `cellctl plan drain <cell>`

use serde_json::Value;

use crate::cli::Output;
use crate::client::{Admin, CtlError, encode_segment};
use crate::output::{print, table};

/// Shows where a drain would move the cell's users and the load that follows.
pub fn drain(admin: &Admin, out: Output, cell: &str) -> Result<(), CtlError> {
    let plan = admin.get(&format!("/admin/cells/{}/plan", encode_segment(cell)))?;
    print(out, &plan, render);
    Ok(())
}

fn render(v: &Value) -> String {
    let empty = Vec::new();
    let moves = v["moves"].as_array().unwrap_or(&empty);
    let loads = v["load_after"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = moves
        .iter()
        .zip(loads)
        .map(|(m, l)| {
            vec![
                m["to"].as_str().unwrap_or("?").to_owned(),
                format!("{:.1}%", m["share_of_cell"].as_f64().unwrap_or(0.0) * 100.0),
                format!("{:.1}", l["rps_now"].as_f64().unwrap_or(0.0)),
                format!("{:.1}", l["rps_after"].as_f64().unwrap_or(0.0)),
                l["capacity_rps"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}")),
            ]
        })
        .collect();
    let mut text = format!(
        "drain {}: {:.1}% of users ({:.1} rps) move\n{}",
        v["cell"].as_str().unwrap_or("?"),
        v["share_of_users"].as_f64().unwrap_or(0.0) * 100.0,
        v["rps"].as_f64().unwrap_or(0.0),
        table(&["TO", "SHARE", "RPS NOW", "RPS AFTER", "CAPACITY"], &rows)
    );
    for warning in v["warnings"].as_array().unwrap_or(&empty) {
        text.push_str(&format!("warning: {}\n", warning.as_str().unwrap_or("?")));
    }
    text
}
