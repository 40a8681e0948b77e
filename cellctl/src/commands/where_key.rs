//! `cellctl where <key>`

use serde_json::Value;

use crate::cli::Output;
use crate::client::{Admin, CtlError, encode_segment};
use crate::output::{print, table};

/// Shows the cell serving `key` and the full hash ranking.
pub fn run(admin: &Admin, format: Output, key: &str) -> Result<(), CtlError> {
    let answer = admin.get(&format!("/admin/where/{}", encode_segment(key)))?;
    print(format, &answer, render);
    Ok(())
}

fn render(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["ranking"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                r["cell"].as_str().unwrap_or("-").to_owned(),
                format!("{:.4}", r["score"].as_f64().unwrap_or_default()),
                r["state"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    format!(
        "{} -> {} ({}: {})\n{}",
        v["key"].as_str().unwrap_or("-"),
        v["cell"].as_str().unwrap_or("-"),
        v["reason"].as_str().unwrap_or("-"),
        v["detail"].as_str().unwrap_or("-"),
        table(&["RANK", "CELL", "SCORE", "STATE"], &rows)
    )
}
