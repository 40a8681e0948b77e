//! `[control]`: the cell directory's control plane (drains, pins) and its guard rails.

use std::time::Duration;

use cell_router::MAX_RAMP_MS;
use cell_router::containment::AutoEvacuationConfig;

use super::raw::{RawAutoEvacuation, RawControl, Text};
use super::validate::{Ctx, Result, or_default};

/// `[control]` (**extension**): how gateways share and guard the cell directory, and the
/// guarded automation allowed to change it.
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
    /// `[control.auto_evacuation]`: guarded auto-evacuation of a cell whose breaker stays
    /// open. Off by default (`docs/containment.md`).
    pub auto_evacuation: AutoEvacuationConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            min_active_cells: 1,
            poll_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(1),
            gateway_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            auto_evacuation: AutoEvacuationConfig::default(),
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
    let auto_evacuation = match &raw.auto_evacuation {
        Some(table) => auto_evacuation(table.get_ref(), ctx)?,
        None => d.auto_evacuation,
    };
    Ok(ControlConfig {
        min_active_cells,
        poll_interval,
        heartbeat_interval,
        gateway_ttl,
        timeout,
        auto_evacuation,
    })
}

fn auto_evacuation(raw: &RawAutoEvacuation, ctx: &Ctx<'_>) -> Result<AutoEvacuationConfig> {
    const T: &str = "control.auto_evacuation";
    let d = AutoEvacuationConfig::default();
    let positive = |value: &Option<Text>, key: &str, default: Duration| {
        or_default(value.as_ref(), default, |v| {
            ctx.positive_duration(v, &format!("`{T}.{key}`"))
        })
    };
    let ramp = |value: &Option<Text>, key: &str, default: Duration| {
        or_default(value.as_ref(), default, |v| {
            let what = format!("`{T}.{key}`");
            let ramp = ctx.duration(v, &what)?;
            if ramp > Duration::from_millis(MAX_RAMP_MS) {
                return Err(ctx.error_at(v.span(), format!("{what} must be at most 24h")));
            }
            Ok(ramp)
        })
    };
    Ok(AutoEvacuationConfig {
        enabled: raw.enabled.as_ref().map_or(d.enabled, |v| *v.get_ref()),
        open_for: positive(&raw.open_for, "open_for", d.open_for)?,
        healthy_for: positive(&raw.healthy_for, "healthy_for", d.healthy_for)?,
        max_auto_evacuated: or_default(
            raw.max_auto_evacuated.as_ref(),
            d.max_auto_evacuated,
            |v| ctx.usize_at_least(v, 1, &format!("`{T}.max_auto_evacuated`")),
        )?,
        drain_over: ramp(&raw.drain_over, "drain_over", d.drain_over)?,
        undrain_over: ramp(&raw.undrain_over, "undrain_over", d.undrain_over)?,
    })
}
