//! Properties of a single ranking: determinism, consistency between the query methods,
//! independence from configuration order, weight 0, and minimal disruption.

use cell_router::{CellIndex, Placement};
use proptest::prelude::*;

use crate::support::keys;

/// A weight as operators set them: sometimes 0 (drained), otherwise anything positive.
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 3 => 0.01f64..10.0]
}

/// 1..=12 uniquely named cells in random order, at least one with a positive weight.
fn cell_list() -> impl Strategy<Value = Vec<(String, f64)>> {
    prop::collection::btree_set("[a-z][a-z0-9-]{0,11}", 1..=12)
        .prop_flat_map(|names| {
            let n = names.len();
            (Just(names), prop::collection::vec(weight(), n))
        })
        .prop_map(|(names, mut weights)| {
            if weights.iter().all(|&w| w == 0.0) {
                weights[0] = 1.0;
            }
            names.into_iter().zip(weights).collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn names(placement: &Placement, ranking: &[CellIndex]) -> Vec<String> {
    ranking
        .iter()
        .map(|&idx| placement.name(idx).to_owned())
        .collect()
}

proptest! {
    #[test]
    fn same_input_same_output(cells in cell_list(), key in key()) {
        let a = Placement::new(cells.clone()).unwrap();
        let b = Placement::new(cells).unwrap();
        let home = a.home(&key);
        prop_assert_eq!(home, a.home(&key));
        prop_assert_eq!(home, b.home(&key));
        prop_assert_eq!(a.rank(&key), b.rank(&key));
        prop_assert_eq!(a.home_with_weights(&key, a.weights()), Some(home));
    }

    #[test]
    fn ranking_is_the_eligible_cells_best_first(cells in cell_list(), key in key()) {
        let placement = Placement::new(cells).unwrap();
        // A dirty buffer: rank_into must replace, not append.
        let mut ranking = vec![CellIndex::new(0); 20];
        placement.rank_into(&key, &mut ranking);

        let mut sorted = ranking.clone();
        sorted.sort();
        let eligible: Vec<_> = placement.indices().filter(|&i| placement.weight(i) > 0.0).collect();
        prop_assert_eq!(sorted, eligible, "a permutation of the cells with weight > 0");
        prop_assert_eq!(ranking[0], placement.home(&key));
        for pair in ranking.windows(2) {
            let (first, second) = (placement.score(&key, pair[0]), placement.score(&key, pair[1]));
            prop_assert!(first > second || (first == second && pair[0] < pair[1]));
        }
    }

    #[test]
    fn config_order_does_not_move_keys(
        (cells, shuffled) in cell_list().prop_flat_map(|c| (Just(c.clone()), Just(c).prop_shuffle())),
        key in key(),
    ) {
        let a = Placement::new(cells).unwrap();
        let b = Placement::new(shuffled).unwrap();
        prop_assert_eq!(names(&a, &a.rank(&key)), names(&b, &b.rank(&key)));
    }

    #[test]
    fn zero_weight_cells_are_never_chosen(
        cells in cell_list(),
        zeroed in prop::collection::vec(any::<bool>(), 12),
        seed in any::<u64>(),
    ) {
        let placement = Placement::new(cells).unwrap();
        let effective: Vec<f64> = placement
            .weights()
            .iter()
            .zip(&zeroed)
            .map(|(&w, &zero)| if zero { 0.0 } else { w })
            .collect();
        let mut ranking = Vec::new();
        for key in keys(seed, 200) {
            prop_assert!(placement.weight(placement.home(&key)) > 0.0);
            placement.rank_into(&key, &mut ranking);
            prop_assert!(ranking.iter().all(|&i| placement.weight(i) > 0.0));

            let home = placement.home_with_weights(&key, &effective);
            prop_assert_eq!(home.is_some(), effective.iter().any(|&w| w > 0.0));
            prop_assert!(home.is_none_or(|i| effective[i.get()] > 0.0));
            placement.rank_with_weights_into(&key, &effective, &mut ranking);
            prop_assert!(ranking.iter().all(|&i| effective[i.get()] > 0.0));
            prop_assert_eq!(ranking.first().copied(), home);
        }
    }
}

proptest! {
    // Each case hashes 1000 keys.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Removing a cell moves its keys, each to its next-ranked cell, and nothing else; read
    /// backwards, adding a cell only moves keys onto it.
    #[test]
    fn removing_a_cell_moves_only_its_keys(
        cells in cell_list().prop_filter("two cells", |c| c.len() >= 2),
        removed in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let removed = removed.index(cells.len());
        let mut rest = cells.clone();
        rest.remove(removed);
        prop_assume!(rest.iter().any(|&(_, w)| w > 0.0));
        let before = Placement::new(cells).unwrap();
        let after = Placement::new(rest).unwrap();
        for key in keys(seed, 1000) {
            let ranking = before.rank(&key);
            let moved_to = if ranking[0].get() == removed { ranking[1] } else { ranking[0] };
            prop_assert_eq!(before.name(moved_to), after.name(after.home(&key)));
        }
    }

    /// Lowering one cell's effective weight (a drain ramp step) only moves keys off that cell:
    /// a user never moves between two other cells, and never comes back while the weight falls.
    #[test]
    fn lowering_a_weight_only_moves_keys_off_that_cell(
        cells in cell_list(),
        cell in any::<prop::sample::Index>(),
        factor in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        let placement = Placement::new(cells).unwrap();
        let cell = CellIndex::new(u16::try_from(cell.index(placement.len())).unwrap());
        let mut lowered = placement.weights().to_vec();
        lowered[cell.get()] *= factor;
        for key in keys(seed, 1000) {
            let before = placement.home(&key);
            match placement.home_with_weights(&key, &lowered) {
                Some(after) if after != before => prop_assert_eq!(before, cell),
                Some(_) => {}
                None => prop_assert!(lowered.iter().all(|&w| w == 0.0)),
            }
        }
    }
}
