//! `[control]`: the cell directory's control plane (drains, pins) and its guard rails.

use std::time::Duration;

use super::raw::RawControl;
use super::validate::{Ctx, Result, or_default};

/// `[control]` (**extension**): how gateways share and guard the cell directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Cells that must keep serving: a drain or evacuation that would leave fewer is refused
    /// unless forced. Default 1, at least 1.
    pub min_active_cells: usize,
    /// How often a gateway checks the directory version, as a backstop to pub/sub. Default 2s.
    pub poll_interval: Duration,
    /// How often a gateway announces itself and the directory version it applied. Default 1s.
    pub heartbeat_interval: Duration,
    /// A gateway not heard from for this long is no longer counted as live. Default 10s.
    pub gateway_ttl: Duration,
    /// Budget of one control-plane Redis call (never on the request path). Default 1s.
    pub timeout: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            min_active_cells: 1,
            poll_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(1),
            gateway_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        }
    }
}

pub(super) fn build(raw: &RawControl, ctx: &Ctx<'_>) -> Result<ControlConfig> {
    let d = ControlConfig::default();
    let min_active_cells = or_default(raw.min_active_cells.as_ref(), d.min_active_cells, |v| {
        ctx.usize_at_least(v, 1, "`control.min_active_cells`")
    })?;
    let poll_interval = or_default(raw.poll_interval.as_ref(), d.poll_interval, |v| {
        ctx.positive_duration(v, "`control.poll_interval`")
    })?;
    let heartbeat_interval =
        or_default(raw.heartbeat_interval.as_ref(), d.heartbeat_interval, |v| {
            ctx.positive_duration(v, "`control.heartbeat_interval`")
        })?;
    let gateway_ttl = or_default(raw.gateway_ttl.as_ref(), d.gateway_ttl, |v| {
        ctx.positive_duration(v, "`control.gateway_ttl`")
    })?;
    let timeout = or_default(raw.timeout.as_ref(), d.timeout, |v| {
        ctx.positive_duration(v, "`control.timeout`")
    })?;
    Ok(ControlConfig {
        min_active_cells,
        poll_interval,
        heartbeat_interval,
        gateway_ttl,
        timeout,
    })
}
