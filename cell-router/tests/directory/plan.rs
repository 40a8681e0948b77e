//! Drain planning: who would move where.

use cell_router::{CellIndex, Directory, PLAN_SAMPLE_KEYS, Placement, plan_drain};

use crate::support::{T0, cell, drained, placement, table, weighted};

/// Share of the plan's synthetic keys that `table` routes to `target` at `now`.
fn share(p: &Placement, dir: &Directory, target: CellIndex, now: u64) -> f64 {
    let t = table(p, dir);
    let served = (0..PLAN_SAMPLE_KEYS)
        .filter(|i| t.route(format!("plan-{i}").as_bytes(), now).cell == target)
        .count();
    served as f64 / PLAN_SAMPLE_KEYS as f64
}

/// Shares sum to the drained cell's share (exactly, on the same sample), every other cell
/// gets some, and with equal weights each gets about a third of it.
///
/// About 25k of the 100k keys live on cell-2; each of the 3 others receives about 8.3k
/// ± 80 (1 sigma), so ±15% is more than 15 sigma.
#[test]
fn plan_spreads_the_drained_share_over_all_other_cells() {
    let p = placement(4);
    let dir = Directory::default();
    let plan = plan_drain(&table(&p, &dir), cell(2), T0);
    let cells: Vec<_> = plan.iter().map(|&(c, _)| c).collect();
    assert_eq!(cells, [cell(1), cell(3), cell(4)]);
    let total: f64 = plan.iter().map(|&(_, s)| s).sum();
    let current = share(&p, &dir, cell(2), T0);
    assert!(
        (total - current).abs() < 1e-9,
        "plan moves {total}, cell-2 has {current}"
    );
    assert!((current - 0.25).abs() < 0.01, "cell-2 has {current}");
    for &(c, s) in &plan {
        assert!(
            (s - current / 3.0).abs() < 0.15 * current / 3.0,
            "{c} gets {s}"
        );
    }
    assert_eq!(
        plan,
        plan_drain(&table(&p, &dir), cell(2), T0),
        "deterministic"
    );
}

#[test]
fn plan_follows_the_current_directory() {
    let p = weighted(&[1.0, 1.0, 1.0, 0.0]);
    // cell-1 is drained and cell-2 half way through a drain: cell-2 keeps half its users,
    // and drained or weight-0 cells receive none of them.
    let dir = drained(&p, &Directory::default(), "cell-1", 0, T0);
    let dir = drained(&p, &dir, "cell-2", 1_000, T0);
    let now = T0 + 500;
    let plan = plan_drain(&table(&p, &dir), cell(2), now);
    let total: f64 = plan.iter().map(|&(_, s)| s).sum();
    let current = share(&p, &dir, cell(2), now);
    assert!((total - current).abs() < 1e-9);
    // cell-2's share is 1/3 of keys at home, plus cell-1's users ranking it next (1/6), half
    // of it kept: about 1/4.
    assert!((current - 0.25).abs() < 0.01, "cell-2 has {current}");
    let shares: Vec<f64> = plan.iter().map(|&(_, s)| s).collect();
    assert_eq!(shares[0], 0.0, "drained cell-1 receives nothing");
    assert_eq!(shares[2], 0.0, "weight-0 cell-4 receives nothing");
    assert!(
        (shares[1] - current).abs() < 1e-9,
        "everything goes to cell-3"
    );
}
