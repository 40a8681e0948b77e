//! Cells, keys, clocks and shortcuts shared by the directory tests.

use cell_router::{CellIndex, Directory, Guard, Placement, RoutingTable};

/// A realistic `now_ms` (November 2023), far from 0 so ramps can start in the past.
pub const T0: u64 = 1_700_000_000_000;

/// `n` cells named `cell-1`..`cell-{n}`, weight 1.
pub fn placement(n: usize) -> Placement {
    weighted(&vec![1.0; n])
}

/// Cells `cell-1`.. with the given weights.
pub fn weighted(weights: &[f64]) -> Placement {
    Placement::new(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (format!("cell-{}", i + 1), w)),
    )
    .unwrap()
}

/// The index of `cell-{n}`.
pub fn cell(n: usize) -> CellIndex {
    CellIndex::new(u16::try_from(n - 1).unwrap())
}

/// The table for `directory` over `placement`.
pub fn table(placement: &Placement, directory: &Directory) -> RoutingTable {
    RoutingTable::new(placement.clone(), directory)
}

/// `directory` with `name` drained over `over_ms` from `now_ms`, unguarded.
pub fn drained(
    placement: &Placement,
    directory: &Directory,
    name: &str,
    over_ms: u64,
    now_ms: u64,
) -> Directory {
    directory
        .drain(placement, name, over_ms, now_ms, Guard::forced())
        .unwrap()
}

/// `count` distinct keys derived from `seed`: 16 lowercase hex characters, like opaque ids.
pub fn keys(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut state = seed;
    (0..count)
        .map(|_| format!("{:016x}", splitmix64(&mut state)).into_bytes())
        .collect()
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed generator for reproducible keys.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
