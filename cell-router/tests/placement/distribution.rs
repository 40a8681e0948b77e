//! How keys spread over cells: 100k keys per case, checked against the expected shares.
//!
//! Counts are binomial: a cell with share `p` gets `K·p ± sqrt(K·p·(1-p))` (one sigma) of
//! `K` keys. Each test states how many sigma its bound is at the worst case; with the fixed
//! proptest seed of [`stats_config`] the key sets are the same every run, so none is flaky.

use cell_router::Placement;
use proptest::prelude::*;

use crate::support::{KEYS, cells, home_counts, keys, stats_config};

/// Whether `count` is within `tolerance` (relative) of `expected`.
fn within(count: usize, expected: f64, tolerance: f64) -> bool {
    (count as f64 - expected).abs() <= expected * tolerance
}

proptest! {
    #![proptest_config(stats_config())]

    /// Each of N equal cells gets 1/N of the keys, ±3%.
    ///
    /// Worst case N = 10: 10000 ± 94.9 keys per cell, so ±300 is 3.2 sigma: a 0.16% tail per
    /// cell, under 2% per case across 10 cells. N = 2 is 9.5 sigma.
    #[test]
    fn equal_weights_share_keys_evenly(n in 2usize..=10, seed in any::<u64>()) {
        let placement = Placement::new(cells(n, 1.0)).unwrap();
        let counts = home_counts(&placement, keys(seed, KEYS));
        let expected = KEYS as f64 / n as f64;
        for (i, &count) in counts.iter().enumerate() {
            prop_assert!(
                within(count, expected, 0.03),
                "cell-{} got {} keys, want {:.0} ± 3% (all: {:?})", i, count, expected, counts
            );
        }
    }

    /// Taking one of N equal cells out moves only its keys, and spreads them over all N-1
    /// remaining cells, ±10% of even.
    ///
    /// Worst case N = 10: about 10000 moved keys over 9 cells, 1111 ± 31.4 each, so ±111 is
    /// 3.5 sigma (0.05% per cell). N = 3 is 18 sigma.
    #[test]
    fn removing_a_cell_spreads_its_keys_evenly(
        n in 2usize..=10,
        removed in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let removed = removed.index(n);
        let mut rest = cells(n, 1.0);
        rest.remove(removed);
        let before = Placement::new(cells(n, 1.0)).unwrap();
        let after = Placement::new(rest).unwrap();

        let mut moved = vec![0usize; after.len()];
        for key in keys(seed, KEYS) {
            let (old, new) = (before.home(&key), after.home(&key));
            if old.get() == removed {
                moved[new.get()] += 1;
            } else {
                prop_assert_eq!(before.name(old), after.name(new), "an unaffected key moved");
            }
        }
        let expected = moved.iter().sum::<usize>() as f64 / (n - 1) as f64;
        for (idx, &count) in after.indices().zip(&moved) {
            prop_assert!(
                within(count, expected, 0.10),
                "{} took {} moved keys, want {:.0} ± 10% (all: {:?})",
                after.name(idx), count, expected, moved
            );
        }
    }

    /// Weights 1, 2, 3 (in any order) take 1/6, 2/6 and 3/6 of the keys, ±3%; a weight-0 cell
    /// takes none.
    ///
    /// Worst case, the 1/6 cell: 16667 ± 118 keys, so ±500 is 4.2 sigma.
    #[test]
    fn weights_skew_shares_proportionally(
        weights in Just(vec![1.0, 2.0, 3.0, 0.0]).prop_shuffle(),
        seed in any::<u64>(),
    ) {
        let cells: Vec<_> = weights.iter().enumerate().map(|(i, &w)| (format!("cell-{i}"), w)).collect();
        let placement = Placement::new(cells).unwrap();
        let counts = home_counts(&placement, keys(seed, KEYS));
        for (&w, &count) in weights.iter().zip(&counts) {
            let expected = KEYS as f64 * w / 6.0;
            if w == 0.0 {
                prop_assert_eq!(count, 0);
            } else {
                prop_assert!(
                    within(count, expected, 0.03),
                    "weight {} got {} keys, want {:.0} ± 3% (weights {:?}, counts {:?})",
                    w, count, expected, weights, counts
                );
            }
        }
    }
}
