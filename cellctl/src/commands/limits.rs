//! `cellctl limits <key>`

use serde_json::{Value, json};

use crate::cli::Output;
use crate::client::{Admin, CtlError, encode_segment};
use crate::output::{print, table};

/// Shows every policy's local and global usage for `key` (a `global` policy shows its one
/// shared key).
pub fn run(admin: &Admin, out: Output, key: &str, only: Option<&str>) -> Result<(), CtlError> {
    let list = admin.get("/admin/ratelimit")?;
    if list["enabled"] == Value::Bool(false) {
        return Err(CtlError::Refused(
            "no [ratelimit] policies are configured on this gateway".to_owned(),
        ));
    }
    let mut views = Vec::new();
    for policy in list["policies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = policy["name"].as_str().unwrap_or_default();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let path = if policy["key"] == "global" {
            format!("/admin/ratelimit/{}", encode_segment(name))
        } else {
            format!(
                "/admin/ratelimit/{}/{}",
                encode_segment(name),
                encode_segment(key)
            )
        };
        let mut view = admin.get(&path)?;
        view["key_kind"] = policy["key"].clone();
        views.push(view);
    }
    if let Some(only) = only {
        if views.is_empty() {
            return Err(CtlError::Refused(format!("unknown policy {only:?}")));
        }
    }
    let answer = json!({ "key": key, "mode": list["mode"], "policies": views });
    print(out, &answer, render);
    Ok(())
}

fn render(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["policies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let u = &p["usage"];
            let num = |x: &Value, digits: usize| {
                x.as_f64()
                    .map_or_else(|| "-".to_owned(), |f| format!("{f:.digits$}"))
            };
            vec![
                p["policy"].as_str().unwrap_or("?").to_owned(),
                p["key_kind"].as_str().unwrap_or("?").to_owned(),
                format!("{}/{}ms", p["limit"], p["per_ms"]),
                if p["tracked"] == Value::Bool(true) {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
                num(&u["tokens"], 1),
                num(&u["local_rate"], 1),
                num(&u["local_demand"], 1),
                num(&u["global_demand"], 1),
                num(&u["share"], 3),
                u["last_sync_age_ms"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
            ]
        })
        .collect();
    format!(
        "key {}  limiter {}\n{}",
        v["key"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("?"),
        table(
            &[
                "POLICY",
                "KEY",
                "LIMIT",
                "TRACKED",
                "TOKENS",
                "LOCAL RATE",
                "LOCAL DEMAND",
                "GLOBAL DEMAND",
                "SHARE",
                "LAST SYNC",
            ],
            &rows
        )
    )
}
