//! `cellctl pin | unpin`

use serde_json::{Value, json};

use super::actor;
use crate::cli::{Output, PinArgs};
use crate::client::{Admin, CtlError, encode_segment};
use crate::output::print;

/// Pins a key to a cell.
pub fn pin(admin: &Admin, out: Output, args: &PinArgs) -> Result<(), CtlError> {
    let body = json!({
        "cell": args.cell,
        "follow_drain": !args.no_follow_drain,
        "reason": args.reason,
        "actor": actor(),
    });
    let answer = admin.put(&format!("/admin/pins/{}", encode_segment(&args.key)), &body)?;
    print(out, &answer, |v: &Value| {
        format!(
            "pinned {} to {} (directory version {})\n",
            v["key"].as_str().unwrap_or("?"),
            v["cell"].as_str().unwrap_or("?"),
            v["version"]
        )
    });
    Ok(())
}

/// Removes a key's pin.
pub fn unpin(admin: &Admin, out: Output, key: &str, reason: Option<&str>) -> Result<(), CtlError> {
    let body = json!({ "reason": reason, "actor": actor() });
    let answer = admin.delete(&format!("/admin/pins/{}", encode_segment(key)), &body)?;
    print(out, &answer, |v: &Value| {
        format!(
            "unpinned {} (directory version {})\n",
            v["key"].as_str().unwrap_or("?"),
            v["version"]
        )
    });
    Ok(())
}
