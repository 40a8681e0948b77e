//! Properties of drain and undrain ramps: who moves, when, where to, and that nobody flips
//! back and forth.
//!
//! These are exact properties (no statistics), so random proptest seeds cannot make them
//! flaky: a failure is a bug. The statistical checks at the end use a fixed key set.

use cell_router::{
    CellIndex, CellState, Directory, DirectoryCell, Guard, Placement, RouteReason, RoutingTable,
    ramp_point,
};
use proptest::prelude::*;

use crate::support::{T0, drained, keys, placement, table, weighted};

/// Keys per proptest case.
const KEYS: usize = 300;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(48)
}

/// 2..=6 cell weights, at least two positive, sometimes 0.
fn weights() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![1 => Just(0.0), 4 => 0.1f64..5.0], 2..=6).prop_map(|mut w| {
        w[0] = w[0].max(0.5);
        let last = w.len() - 1;
        w[last] = w[last].max(0.5);
        w
    })
}

/// Ramp lengths from 1 ms to 1 h.
fn over() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..=1_000, 1_000u64..=3_600_000]
}

/// Two instants as offsets from the ramp start, in order, in `[0, 1.2 * over]`.
fn two_instants(over: u64) -> impl Strategy<Value = (u64, u64)> {
    let end = over + over / 5;
    (0..=end, 0..=end).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

/// The cell `idx` of `placement` drained over `over` from `T0`, as a routing table.
fn draining_table(placement: &Placement, idx: CellIndex, over: u64) -> RoutingTable {
    let dir = drained(
        placement,
        &Directory::default(),
        placement.name(idx),
        over,
        T0,
    );
    table(placement, &dir)
}

proptest! {
    #![proptest_config(config())]

    /// During a drain the moved set only grows, a moved user stays on its next-ranked cell,
    /// exactly the users with `ramp_point < p` have moved, and no other cell's user moves.
    #[test]
    fn drain_moved_set_only_grows(
        weights in weights(),
        which in any::<prop::sample::Index>(),
        (over, (d1, d2)) in over().prop_flat_map(|o| (Just(o), two_instants(o))),
        seed in any::<u64>(),
    ) {
        let p = weighted(&weights);
        let idx = CellIndex::new(which.index(p.len()) as u16);
        let t = draining_table(&p, idx, over);
        let state = t.directory().state(p.name(idx));
        let (a1, a2) = (state.away(T0 + d1), state.away(T0 + d2));
        prop_assert!(a1 <= a2);
        for key in keys(seed, KEYS) {
            let home = p.home(&key);
            let (r1, r2) = (t.route(&key, T0 + d1), t.route(&key, T0 + d2));
            if home != idx {
                prop_assert_eq!(r1.reason, RouteReason::Home, "another cell's user moved");
                prop_assert_eq!((r1.cell, r2.cell), (home, home));
                continue;
            }
            let point = ramp_point(&key);
            let (m1, m2) = (r1.cell != home, r2.cell != home);
            prop_assert_eq!(m1, point < a1, "rule at p1 = {}", a1);
            prop_assert_eq!(m2, point < a2, "rule at p2 = {}", a2);
            prop_assert!(!m1 || m2, "moved at p1 = {} but back home at p2 = {}", a1, a2);
            let next = p.rank(&key)[1];
            for r in [r1, r2].into_iter().filter(|r| r.cell != home) {
                prop_assert_eq!(r.cell, next);
                prop_assert_eq!(r.reason, RouteReason::MovedByDrain { from: home, rank: 1 });
            }
        }
    }

    /// During an undrain the moved set only shrinks, and follows `ramp_point < 1 - q`.
    #[test]
    fn undrain_moved_set_only_shrinks(
        n in 2usize..=6,
        which in any::<prop::sample::Index>(),
        (over, (d1, d2)) in over().prop_flat_map(|o| (Just(o), two_instants(o))),
        seed in any::<u64>(),
    ) {
        let p = placement(n);
        let idx = CellIndex::new(which.index(n) as u16);
        let name = p.name(idx);
        let dir = Directory::default()
            .evacuate(&p, name, T0 - 1, Guard::forced())
            .unwrap()
            .undrain(&p, name, over, T0)
            .unwrap();
        let t = table(&p, &dir);
        let state = dir.state(name);
        prop_assert_eq!(state.away(T0), 1.0, "an undrain starts where the drain ended");
        for key in keys(seed, KEYS) {
            let home = p.home(&key);
            let (r1, r2) = (t.route(&key, T0 + d1), t.route(&key, T0 + d2));
            let (m1, m2) = (r1.cell != home, r2.cell != home);
            prop_assert!(!m2 || m1, "back home at q1 but moved away again at q2");
            if home == idx {
                prop_assert_eq!(m2, ramp_point(&key) < state.away(T0 + d2));
            } else {
                prop_assert!(!m1 && !m2);
            }
        }
    }

    /// Once a drain ramp ends (or after evacuate) the cell serves exactly 0 keys, its
    /// effective weight is 0 and its settled state is `drained`.
    #[test]
    fn drained_cell_gets_no_keys(
        weights in weights(),
        which in any::<prop::sample::Index>(),
        over in over(),
        after in 0u64..10_000,
        seed in any::<u64>(),
    ) {
        let p = weighted(&weights);
        let idx = CellIndex::new(which.index(p.len()) as u16);
        let ramped = draining_table(&p, idx, over);
        let evacuated = table(
            &p,
            &Directory::default().evacuate(&p, p.name(idx), T0, Guard::forced()).unwrap(),
        );
        let now = T0 + over + after;
        for t in [&ramped, &evacuated] {
            prop_assert_eq!(t.state(idx, now), CellState::Drained);
            prop_assert_eq!(t.effective_weight(idx, now), 0.0);
            for key in keys(seed, KEYS) {
                let route = t.route(&key, now);
                prop_assert_ne!(route.cell, idx);
                prop_assert_ne!(route.reason, RouteReason::NoneAvailable);
            }
        }
    }

    /// With several drains at once (different starts and speeds), a user's cell only ever
    /// moves further down its ranking: it never returns to a cell it left. `cell-n` stays
    /// active, so every user always has somewhere to go.
    #[test]
    fn concurrent_drains_never_send_a_user_back(
        n in 3usize..=6,
        ramps in prop::collection::vec((any::<bool>(), -5_000i64..5_000, 1u64..10_000), 5),
        mut offsets in prop::collection::vec(0u64..20_000, 6),
        seed in any::<u64>(),
    ) {
        let p = placement(n);
        let cells = (0..n - 1)
            .filter(|&i| ramps[i].0)
            .map(|i| DirectoryCell {
                name: format!("cell-{}", i + 1),
                state: CellState::Draining {
                    since_ms: T0.saturating_add_signed(ramps[i].1),
                    over_ms: ramps[i].2,
                },
                auto: false,
            })
            .collect();
        let t = table(&p, &Directory { version: 1, cells, ..Directory::default() });
        offsets.sort_unstable();
        for key in keys(seed, KEYS) {
            let ranking = p.rank(&key);
            let mut last_rank = 0;
            for &d in &offsets {
                let route = t.route(&key, T0 + d);
                prop_assert_ne!(route.reason, RouteReason::NoneAvailable);
                let rank = ranking.iter().position(|&c| c == route.cell).unwrap();
                prop_assert!(rank >= last_rank, "went back from rank {} to {}", last_rank, rank);
                last_rank = rank;
            }
        }
    }

    /// Turning a drain into an undrain midway (and back) continues from the current away
    /// fraction: no jump beyond the 1 ms rounding of the new ramp's start, and every user
    /// not within that rounding of the ramp stays where it was at the switch.
    #[test]
    fn switching_direction_midway_is_continuous(
        n in 2usize..=5,
        which in any::<prop::sample::Index>(),
        first_over in 1u64..=600_000,
        second_over in 1u64..=600_000,
        switch in 0.0f64..1.2,
        drain_first in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let p = placement(n);
        let idx = CellIndex::new(which.index(n) as u16);
        let name = p.name(idx);
        let start = if drain_first {
            Directory::default()
        } else {
            Directory::default().evacuate(&p, name, T0 - 1, Guard::forced()).unwrap()
        };
        let before = if drain_first {
            drained(&p, &start, name, first_over, T0)
        } else {
            start.undrain(&p, name, first_over, T0).unwrap()
        };
        let at = T0 + (switch * first_over as f64) as u64;
        let away = before.state(name).away(at);
        let after = if drain_first {
            before.undrain(&p, name, second_over, at)
        } else {
            before.drain(&p, name, second_over, at, Guard::forced())
        };
        // Both always succeed: a drain ramp is never `active` and an undrain never `drained`.
        let after = after.unwrap();
        let new_away = after.state(name).away(at);
        let eps = 0.5 / second_over as f64 + 1e-12;
        prop_assert!((new_away - away).abs() <= eps, "away {} jumped to {}", away, new_away);

        let (t_before, t_after) = (table(&p, &before), table(&p, &after));
        for key in keys(seed, KEYS) {
            let point = ramp_point(&key);
            if (point - away).abs() > eps {
                prop_assert_eq!(t_before.route(&key, at), t_after.route(&key, at));
            }
        }
    }
}

/// Midway through a drain about half of the cell's users have moved, and they spread over
/// every other cell. Fixed keys: deterministic.
///
/// 4 equal cells, 40k keys: about 10k homed on cell-2, 5k moved at p = 0.5. The moved share is
/// 0.5 ± 0.005 (1 sigma), checked to ±0.025 (5 sigma); each of the 3 receiving cells gets
/// about 1667 ± 33, checked to ±15% (7 sigma).
#[test]
fn half_a_drain_moves_half_the_users_spread_over_all_others() {
    let p = placement(4);
    let idx = crate::support::cell(2);
    let t = draining_table(&p, idx, 1_000);
    let (mut homed, mut received) = (0usize, [0usize; 4]);
    for key in keys(7, 40_000) {
        if p.home(&key) == idx {
            homed += 1;
            let route = t.route(&key, T0 + 500);
            if route.cell != idx {
                received[route.cell.get()] += 1;
            }
        }
    }
    let moved: usize = received.iter().sum();
    let share = moved as f64 / homed as f64;
    assert!((share - 0.5).abs() < 0.025, "moved {moved} of {homed}");
    assert_eq!(received[idx.get()], 0);
    for (i, &got) in received.iter().enumerate().filter(|&(i, _)| i != idx.get()) {
        let expected = moved as f64 / 3.0;
        assert!(
            (got as f64 - expected).abs() < 0.15 * expected,
            "cell-{} received {got}, expected about {expected:.0}: {received:?}",
            i + 1
        );
    }
}

/// A weight-0 cell is never a fallback: drained users skip it.
#[test]
fn weight_zero_cells_receive_no_moved_users() {
    let p = weighted(&[1.0, 0.0, 1.0, 1.0]);
    let dir = Directory::default()
        .evacuate(&p, "cell-1", T0, Guard::default())
        .unwrap();
    let t = table(&p, &dir);
    for key in keys(3, 2_000) {
        let route = t.route(&key, T0);
        assert_ne!(route.cell, crate::support::cell(1));
        assert_ne!(route.cell, crate::support::cell(2));
    }
}
