//! [`Placement`]: weighted rendezvous (highest-random-weight) hashing of keys onto cells.

use std::collections::HashMap;

use crate::hash::{cell_seed, score};
use crate::{CellIndex, CellSpec, PlacementError};

/// Cells up to this count are ranked without touching the heap.
const INLINE_CELLS: usize = 32;

/// An immutable, precomputed view of the cells, answering "which cell serves this key?".
///
/// Built once per directory version and shared (typically in an `Arc`); every query is
/// lock-free and [`home`](Self::home) never allocates. Each cell's hash seed is computed at
/// construction. See the [crate docs](crate) for the hash construction.
///
/// Queries come in two flavours: with the configured weights ([`home`](Self::home),
/// [`rank_into`](Self::rank_into), [`score`](Self::score)) and with caller-supplied effective
/// weights, for drain ramps that change weights over time without rebuilding
/// ([`home_with_weights`](Self::home_with_weights),
/// [`rank_with_weights_into`](Self::rank_with_weights_into),
/// [`score_with_weight`](Self::score_with_weight)).
#[derive(Debug, Clone)]
pub struct Placement {
    names: Box<[Box<str>]>,
    seeds: Box<[u64]>,
    weights: Box<[f64]>,
    /// Lowest index with a positive weight; exists by construction.
    first_eligible: CellIndex,
}

impl Placement {
    /// Largest number of cells a placement can hold (every index fits a [`CellIndex`]).
    pub const MAX_CELLS: usize = u16::MAX as usize + 1;

    /// Validates `cells` (in configuration order) and precomputes their hash seeds.
    ///
    /// Accepts [`CellSpec`]s or `(name, weight)` tuples.
    ///
    /// # Errors
    ///
    /// [`PlacementError`] if there are no cells or more than [`MAX_CELLS`](Self::MAX_CELLS), a
    /// name is empty or repeated, a weight is NaN, infinite or negative, or all weights are 0.
    pub fn new<I>(cells: I) -> Result<Self, PlacementError>
    where
        I: IntoIterator,
        I::Item: Into<CellSpec>,
    {
        let cells: Vec<CellSpec> = cells.into_iter().map(Into::into).collect();
        if cells.is_empty() {
            return Err(PlacementError::NoCells);
        }
        if cells.len() > Self::MAX_CELLS {
            return Err(PlacementError::TooManyCells {
                count: cells.len(),
                max: Self::MAX_CELLS,
            });
        }

        let mut seen = HashMap::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            if cell.name.is_empty() {
                return Err(PlacementError::EmptyName { index: i });
            }
            if let Some(first) = seen.insert(cell.name.as_str(), i) {
                return Err(PlacementError::DuplicateName {
                    name: cell.name.clone(),
                    first,
                    second: i,
                });
            }
            if !(cell.weight.is_finite() && cell.weight >= 0.0) {
                return Err(PlacementError::InvalidWeight {
                    name: cell.name.clone(),
                    weight: cell.weight,
                });
            }
        }
        let first_eligible = cells
            .iter()
            .position(|c| c.weight > 0.0)
            .ok_or(PlacementError::AllWeightsZero)?;

        Ok(Self {
            seeds: cells.iter().map(|c| cell_seed(&c.name)).collect(),
            weights: cells.iter().map(|c| c.weight).collect(),
            names: cells.into_iter().map(|c| c.name.into_boxed_str()).collect(),
            first_eligible: index(first_eligible),
        })
    }

    /// Number of cells, including those with weight 0.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always `false`: a placement has at least one cell.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of a cell.
    ///
    /// # Panics
    ///
    /// If `idx` is out of range (it came from a placement with more cells).
    pub fn name(&self, idx: CellIndex) -> &str {
        &self.names[idx.get()]
    }

    /// The configured weight of a cell.
    ///
    /// # Panics
    ///
    /// If `idx` is out of range.
    pub fn weight(&self, idx: CellIndex) -> f64 {
        self.weights[idx.get()]
    }

    /// The configured weights in configuration order: a starting point for effective weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The index of the cell called `name`, if any. A linear scan: not for the hot path.
    pub fn index_of(&self, name: &str) -> Option<CellIndex> {
        self.names.iter().position(|n| &**n == name).map(index)
    }

    /// All cell indices in configuration order.
    pub fn indices(&self) -> impl ExactSizeIterator<Item = CellIndex> + use<> {
        (0..self.len()).map(index)
    }

    /// The home cell of `key`: the highest-scoring cell with a positive weight, ties going to
    /// the lower index. Never allocates.
    pub fn home(&self, key: &[u8]) -> CellIndex {
        // `new` guarantees a positive weight, so `best` always finds a cell.
        self.best(key, &self.weights).unwrap_or(self.first_eligible)
    }

    /// The home cell of `key` under effective weights, `None` if no weight is positive.
    ///
    /// `weights[i]` replaces the weight of cell `i`; a NaN, infinite, negative or missing
    /// weight counts as 0 and extra entries are ignored. Never allocates.
    ///
    /// # Panics
    ///
    /// In debug builds, if `weights.len() != self.len()`: a mismatch is a caller bug.
    pub fn home_with_weights(&self, key: &[u8], weights: &[f64]) -> Option<CellIndex> {
        debug_assert_eq!(weights.len(), self.len(), "one weight per cell");
        self.best(key, weights)
    }

    /// Every cell with a positive weight, best first: the home cell, then its fallbacks.
    ///
    /// Clears `out` and writes the ranking into it, so a reused buffer makes this
    /// allocation-free (up to 32 cells).
    pub fn rank_into(&self, key: &[u8], out: &mut Vec<CellIndex>) {
        self.rank_with_weights_into(key, &self.weights, out);
    }

    /// Like [`rank_into`](Self::rank_into), allocating a new vector.
    pub fn rank(&self, key: &[u8]) -> Vec<CellIndex> {
        let mut out = Vec::with_capacity(self.len());
        self.rank_into(key, &mut out);
        out
    }

    /// Like [`rank_into`](Self::rank_into) under effective weights (read as in
    /// [`home_with_weights`](Self::home_with_weights)). `out` is left empty if no weight is
    /// positive.
    ///
    /// # Panics
    ///
    /// In debug builds, if `weights.len() != self.len()`.
    pub fn rank_with_weights_into(&self, key: &[u8], weights: &[f64], out: &mut Vec<CellIndex>) {
        debug_assert_eq!(weights.len(), self.len(), "one weight per cell");
        out.clear();
        let mut inline = [0.0; INLINE_CELLS];
        let mut heap = Vec::new();
        let scores: &mut [f64] = if self.len() <= INLINE_CELLS {
            &mut inline[..self.len()]
        } else {
            heap.resize(self.len(), 0.0);
            &mut heap
        };
        for (i, (&seed, &w)) in self.seeds.iter().zip(weights).enumerate() {
            if eligible(w) {
                scores[i] = score(key, seed, w);
                out.push(index(i));
            }
        }
        // Scores are never NaN (see `hash::score`), so `total_cmp` is the numeric order.
        out.sort_unstable_by(|a, b| {
            scores[b.get()]
                .total_cmp(&scores[a.get()])
                .then_with(|| a.cmp(b))
        });
    }

    /// The score of cell `idx` for `key` under its configured weight; the highest score wins.
    /// Exposed to explain decisions (`cellctl where`).
    ///
    /// # Panics
    ///
    /// If `idx` is out of range.
    pub fn score(&self, key: &[u8], idx: CellIndex) -> f64 {
        self.score_with_weight(key, idx, self.weight(idx))
    }

    /// The score of cell `idx` for `key` under an effective `weight` (NaN, infinite or
    /// negative count as 0, which scores 0).
    ///
    /// # Panics
    ///
    /// If `idx` is out of range.
    pub fn score_with_weight(&self, key: &[u8], idx: CellIndex, weight: f64) -> f64 {
        let weight = if eligible(weight) { weight } else { 0.0 };
        score(key, self.seeds[idx.get()], weight)
    }

    fn best(&self, key: &[u8], weights: &[f64]) -> Option<CellIndex> {
        let mut best = None;
        let mut best_score = f64::NEG_INFINITY;
        for (i, (&seed, &w)) in self.seeds.iter().zip(weights).enumerate() {
            if !eligible(w) {
                continue;
            }
            let s = score(key, seed, w);
            // Strictly greater: on a tie the lower index, seen first, stays.
            if s > best_score {
                best_score = s;
                best = Some(i);
            }
        }
        best.map(index)
    }
}

/// Whether a weight lets its cell be chosen.
fn eligible(weight: f64) -> bool {
    weight > 0.0 && weight.is_finite()
}

/// `i` as a [`CellIndex`]; callers only pass indices of a placement, which `new` bounds by
/// `MAX_CELLS`, so the truncation never happens.
fn index(i: usize) -> CellIndex {
    debug_assert!(i < Placement::MAX_CELLS);
    CellIndex::new(i as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_cell_lists() {
        let none: [CellSpec; 0] = [];
        assert_eq!(Placement::new(none).err(), Some(PlacementError::NoCells));
        assert_eq!(
            Placement::new([("", 1.0)]).err(),
            Some(PlacementError::EmptyName { index: 0 })
        );
        assert_eq!(
            Placement::new([("a", 1.0), ("b", 1.0), ("a", 2.0)]).err(),
            Some(PlacementError::DuplicateName {
                name: "a".into(),
                first: 0,
                second: 2
            })
        );
        for weight in [-1.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                Placement::new([("a", 1.0), ("b", weight)]).err(),
                Some(PlacementError::InvalidWeight {
                    name: "b".into(),
                    weight
                })
            );
        }
        assert!(matches!(
            Placement::new([("a", f64::NAN)]),
            Err(PlacementError::InvalidWeight { .. })
        ));
        assert_eq!(
            Placement::new([("a", 0.0), ("b", 0.0)]).err(),
            Some(PlacementError::AllWeightsZero)
        );
        let many = (0..=Placement::MAX_CELLS).map(|i| (i.to_string(), 1.0));
        assert!(matches!(
            Placement::new(many),
            Err(PlacementError::TooManyCells { .. })
        ));
    }

    #[test]
    fn errors_name_the_culprit() {
        let err = Placement::new([("cell-1", 1.0), ("cell-1", 1.0)]).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("duplicate cell name \"cell-1\" (cells #0 and #1)")
        );
    }

    #[test]
    fn accessors_follow_config_order() -> Result<(), PlacementError> {
        let p = Placement::new([CellSpec::new("x", 0.0), CellSpec::new("y", 2.5)])?;
        assert_eq!(p.len(), 2);
        assert!(!p.is_empty());
        let names: Vec<_> = p.indices().map(|i| p.name(i)).collect();
        assert_eq!(names, ["x", "y"]);
        assert_eq!(p.weights(), [0.0, 2.5]);
        assert_eq!(p.index_of("y"), Some(CellIndex::new(1)));
        assert_eq!(p.index_of("z"), None);
        assert_eq!(p.first_eligible, CellIndex::new(1));
        Ok(())
    }

    #[test]
    fn effective_weights_override_configured_ones() -> Result<(), PlacementError> {
        let p = Placement::new([("a", 1.0), ("b", 1.0), ("c", 1.0)])?;
        let mut out = Vec::new();
        for k in 0u32..200 {
            let key = k.to_be_bytes();
            let home = p.home(&key);
            assert_eq!(p.home_with_weights(&key, p.weights()), Some(home));

            let mut w = p.weights().to_vec();
            w[home.get()] = 0.0;
            let fallback = p.rank(&key)[1];
            assert_eq!(p.home_with_weights(&key, &w), Some(fallback));
            p.rank_with_weights_into(&key, &w, &mut out);
            assert!(!out.contains(&home));
            assert_eq!(p.score_with_weight(&key, home, f64::NAN), 0.0);
        }
        assert_eq!(p.home_with_weights(b"k", &[0.0, -1.0, f64::NAN]), None);
        p.rank_with_weights_into(b"k", &[0.0; 3], &mut out);
        assert!(out.is_empty());
        Ok(())
    }

    #[test]
    fn ranks_more_cells_than_fit_inline() -> Result<(), PlacementError> {
        let p = Placement::new((0..INLINE_CELLS * 2).map(|i| (format!("cell-{i}"), 1.0)))?;
        for k in 0u32..50 {
            let key = k.to_be_bytes();
            let rank = p.rank(&key);
            assert_eq!(rank.len(), p.len());
            assert_eq!(rank[0], p.home(&key));
            assert!(
                rank.windows(2)
                    .all(|w| p.score(&key, w[0]) >= p.score(&key, w[1]))
            );
        }
        Ok(())
    }

    #[test]
    fn ties_go_to_the_lower_index() -> Result<(), PlacementError> {
        // Huge weights overflow scores to +inf whenever -ln(u) < 1: a forced tie.
        let p = Placement::new([("a", 0.0), ("b", f64::MAX), ("c", f64::MAX)])?;
        let (b, c) = (CellIndex::new(1), CellIndex::new(2));
        let mut ties = 0;
        for k in 0u32..100 {
            let key = k.to_be_bytes();
            if p.score(&key, b).is_infinite() && p.score(&key, c).is_infinite() {
                ties += 1;
                assert_eq!(p.home(&key), b);
                assert_eq!(p.rank(&key), [b, c]);
            }
        }
        assert!(ties > 10, "only {ties} ties");
        Ok(())
    }
}
