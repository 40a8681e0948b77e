//! [`plan_drain`]: a dry run of a drain over a sample of synthetic keys.

use std::fmt::Write as _;

use crate::{CellIndex, CellState, RoutingTable};

/// Number of synthetic keys (`"plan-0"` .. `"plan-99999"`) behind [`plan_drain`]: each share
/// is a multiple of `1 / PLAN_SAMPLE_KEYS`, with a standard error of at most about 0.16
/// percentage points.
pub const PLAN_SAMPLE_KEYS: usize = 100_000;

/// Dry run of draining `cell`: the share of *all* users that moves from `cell` to each other
/// cell once the drain completes, given the rest of the directory as it is at `now_ms`.
///
/// Estimated over [`PLAN_SAMPLE_KEYS`] synthetic keys routed by hash (pins are not sampled):
/// a key counts when it is served by `cell` now and by another cell once `cell` is drained.
/// One entry per other configured cell, in configuration order, including cells that receive
/// nothing (weight 0, drained). The shares sum to `cell`'s current share of users, minus the
/// keys that would have nowhere to go ([`RouteReason::NoneAvailable`](crate::RouteReason)).
/// Used by `cellctl plan drain`. Deterministic; about 100k hashes per cell, so not for the
/// request path.
///
/// # Panics
///
/// If `cell` is out of range for the table's placement.
pub fn plan_drain(table: &RoutingTable, cell: CellIndex, now_ms: u64) -> Vec<(CellIndex, f64)> {
    let placement = table.placement();
    let mut drained = table.states().to_vec();
    drained[cell.get()] = CellState::Drained;

    let mut moved = vec![0usize; placement.len()];
    let mut key = String::with_capacity(16);
    for i in 0..PLAN_SAMPLE_KEYS {
        key.clear();
        // Writing to a String cannot fail.
        let _ = write!(key, "plan-{i}");
        if table
            .route_by_hash(key.as_bytes(), now_ms, table.states())
            .cell
            != cell
        {
            continue;
        }
        let after = table.route_by_hash(key.as_bytes(), now_ms, &drained).cell;
        if after != cell {
            moved[after.get()] += 1;
        }
    }
    placement
        .indices()
        .filter(|&i| i != cell)
        .map(|i| (i, moved[i.get()] as f64 / PLAN_SAMPLE_KEYS as f64))
        .collect()
}
