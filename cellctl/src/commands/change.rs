//! `cellctl drain | undrain | evacuate`

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::actor;
use crate::cli::{EvacuateArgs, Output, RampArgs};
use crate::client::{Admin, CtlError, encode_segment};
use crate::output::print;

/// drain or undrain with a ramp.
pub fn ramp(admin: &Admin, out: Output, action: &str, args: &RampArgs) -> Result<(), CtlError> {
    let over = humantime::parse_duration(&args.over)
        .map_err(|e| CtlError::Usage(format!("--over: invalid duration {:?}: {e}", args.over)))?;
    let body = json!({
        "over": args.over,
        "force": args.force,
        "reason": args.reason,
        "actor": actor(),
    });
    let answer = admin.post(
        &format!("/admin/cells/{}/{action}", encode_segment(&args.cell)),
        &body,
    )?;
    print(out, &answer, render);
    if args.wait {
        let target = if action == "drain" {
            "drained"
        } else {
            "active"
        };
        wait(admin, out, &args.cell, target, &answer, over)?;
    }
    Ok(())
}

/// evacuate: drain at once.
pub fn evacuate(admin: &Admin, out: Output, args: &EvacuateArgs) -> Result<(), CtlError> {
    let body = json!({ "force": args.force, "reason": args.reason, "actor": actor() });
    let answer = admin.post(
        &format!("/admin/cells/{}/evacuate", encode_segment(&args.cell)),
        &body,
    )?;
    print(out, &answer, render);
    if args.wait {
        wait(admin, out, &args.cell, "drained", &answer, Duration::ZERO)?;
    }
    Ok(())
}

fn render(v: &Value) -> String {
    format!(
        "{} {}: now {} (directory version {})\n",
        v["action"].as_str().unwrap_or("change"),
        v["cell"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        v["version"]
    )
}

/// Polls until the cell reaches `target` and every live gateway applied the change.
fn wait(
    admin: &Admin,
    out: Output,
    cell: &str,
    target: &str,
    answer: &Value,
    ramp: Duration,
) -> Result<(), CtlError> {
    let version = answer["version"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + ramp + Duration::from_secs(30);
    loop {
        let status = admin.get("/admin/cells")?;
        let state = status["cells"]
            .as_array()
            .and_then(|cells| cells.iter().find(|c| c["name"] == cell))
            .and_then(|c| c["state"].as_str())
            .unwrap_or("?")
            .to_owned();
        let lagging: Vec<String> = status["gateways"]["gateways"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|g| g["version"].as_u64().unwrap_or(0) < version)
            .map(|g| g["id"].as_str().unwrap_or("?").to_owned())
            .collect();
        if state == target && lagging.is_empty() {
            if out == Output::Text {
                println!("{cell} is {target} on every gateway");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CtlError::Refused(format!(
                "gave up waiting: {cell} is {state}, gateways not yet at version {version}: {}",
                if lagging.is_empty() {
                    "none".to_owned()
                } else {
                    lagging.join(", ")
                }
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
