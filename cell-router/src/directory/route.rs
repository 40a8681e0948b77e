//! [`RoutingTable`]: a [`Placement`] plus a [`Directory`], answering "which cell, and why?".

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::{CellIndex, CellState, Directory, Placement, ramp_point};

/// Cells up to this count are ranked without touching the heap.
const INLINE_CELLS: usize = 32;

/// The routing view of one directory version: built once when a version is applied, shared
/// in an `Arc`, queried per request.
///
/// [`route`](Self::route) takes no lock and does not allocate for up to 32 configured cells
/// (the ranking is walked lazily over an inline score buffer). The routing rule is in the
/// [crate docs](crate#directory-and-routing) and `docs/directory.md`.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    placement: Placement,
    directory: Directory,
    /// Stored state per cell index (`Active` when not listed).
    states: Box<[CellState]>,
    /// Pins whose cell is configured, by key bytes.
    pins: HashMap<Box<[u8]>, TablePin>,
    /// No cell listed: every key is served by its home cell unless pinned.
    all_active: bool,
}

#[derive(Debug, Clone, Copy)]
struct TablePin {
    cell: CellIndex,
    follow_drain: bool,
}

/// Where a key goes, and why ([`RoutingTable::route`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Route {
    /// The cell that serves the key.
    pub cell: CellIndex,
    /// Why this cell.
    pub reason: RouteReason,
}

/// Why a key is routed where it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RouteReason {
    /// The key's home cell (rank 0 of its ranking), not moved.
    Home,
    /// The key's pin (the pinned cell is serving the key, or the pin has `follow_drain: false`).
    Pinned,
    /// Moved off its home cell by a drain (of that cell and possibly of further ones).
    MovedByDrain {
        /// The key's home cell.
        from: CellIndex,
        /// Rank of the chosen cell in the key's hash ranking (home = 0).
        rank: usize,
    },
    /// Pinned to a draining or drained cell with `follow_drain`: moved along its own ranking.
    PinMovedByDrain {
        /// The pinned cell.
        pinned: CellIndex,
    },
    /// Every candidate sent the key away (every cell drained, or draining past this key's ramp
    /// point): rather than fail, the key goes to where it started, its pin's cell or else its
    /// home cell. The guard refuses to get here unless forced.
    NoneAvailable,
}

impl RoutingTable {
    /// Precomputes the routing view of `directory` over `placement`.
    ///
    /// Directory entries for cells the placement does not know (a cell removed from the
    /// configuration, or a document written by a gateway with a newer configuration) are
    /// ignored, as are pins to such cells; a cell listed twice takes its first entry.
    pub fn new(placement: Placement, directory: &Directory) -> RoutingTable {
        let mut states = vec![CellState::Active; placement.len()].into_boxed_slice();
        let mut seen = vec![false; placement.len()];
        for cell in &directory.cells {
            if let Some(idx) = placement.index_of(&cell.name) {
                if !std::mem::replace(&mut seen[idx.get()], true) {
                    states[idx.get()] = cell.state.clone();
                }
            }
        }
        let pins = directory
            .pins
            .iter()
            .filter_map(|(key, pin)| {
                let cell = placement.index_of(&pin.cell)?;
                let pin = TablePin {
                    cell,
                    follow_drain: pin.follow_drain,
                };
                Some((key.as_bytes().into(), pin))
            })
            .collect();
        let all_active = states.iter().all(|s| *s == CellState::Active);
        RoutingTable {
            placement,
            directory: directory.clone(),
            states,
            pins,
            all_active,
        }
    }

    /// The configured cells.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The directory this table was built from.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The directory version this table was built from.
    pub fn version(&self) -> u64 {
        self.directory.version
    }

    /// The cell for `key` at `now_ms` (unix milliseconds), and why. Lock-free; allocation-free
    /// for up to 32 cells.
    pub fn route(&self, key: &[u8], now_ms: u64) -> Route {
        if let Some(pin) = self.pin(key) {
            return self.route_pinned(key, pin, now_ms);
        }
        if self.all_active {
            return Route {
                cell: self.placement.home(key),
                reason: RouteReason::Home,
            };
        }
        self.route_by_hash(key, now_ms, &self.states)
    }

    /// Effective weight of a cell at `now_ms`: configured weight × (1 − away).
    ///
    /// # Panics
    ///
    /// If `idx` is out of range for the placement.
    pub fn effective_weight(&self, idx: CellIndex, now_ms: u64) -> f64 {
        self.placement.weight(idx) * (1.0 - self.states[idx.get()].away(now_ms))
    }

    /// The cell's state at `now_ms`, settled (a completed drain ramp reads `Drained`).
    ///
    /// # Panics
    ///
    /// If `idx` is out of range for the placement.
    pub fn state(&self, idx: CellIndex, now_ms: u64) -> CellState {
        self.states[idx.get()].settled(now_ms)
    }

    /// Stored states, one per cell index.
    pub(crate) fn states(&self) -> &[CellState] {
        &self.states
    }

    fn pin(&self, key: &[u8]) -> Option<TablePin> {
        if self.pins.is_empty() {
            return None;
        }
        self.pins.get(key).copied()
    }

    fn route_pinned(&self, key: &[u8], pin: TablePin, now_ms: u64) -> Route {
        let pinned = pin.cell;
        let mut point = LazyPoint::new(key);
        if !pin.follow_drain || !point.moved(&self.states[pinned.get()], now_ms) {
            return Route {
                cell: pinned,
                reason: RouteReason::Pinned,
            };
        }
        let scores = Scores::new(&self.placement, key);
        let chosen = Ranking::new(scores.as_slice())
            .filter(|&c| c != pinned)
            .find(|&c| !point.moved(&self.states[c.get()], now_ms));
        match chosen {
            Some(cell) => Route {
                cell,
                reason: RouteReason::PinMovedByDrain { pinned },
            },
            None => Route {
                cell: pinned,
                reason: RouteReason::NoneAvailable,
            },
        }
    }

    /// Routes by the key's ranking under `states` (one per cell), ignoring pins.
    pub(crate) fn route_by_hash(&self, key: &[u8], now_ms: u64, states: &[CellState]) -> Route {
        let scores = Scores::new(&self.placement, key);
        let mut ranking = Ranking::new(scores.as_slice());
        // `Placement::new` guarantees a cell with positive weight, so the ranking is never
        // empty; the fallback only keeps this total.
        let Some(home) = ranking.next() else {
            return Route {
                cell: self.placement.home(key),
                reason: RouteReason::NoneAvailable,
            };
        };
        let mut point = LazyPoint::new(key);
        if !point.moved(&states[home.get()], now_ms) {
            return Route {
                cell: home,
                reason: RouteReason::Home,
            };
        }
        for (i, cell) in ranking.enumerate() {
            if !point.moved(&states[cell.get()], now_ms) {
                return Route {
                    cell,
                    reason: RouteReason::MovedByDrain {
                        from: home,
                        rank: i + 1,
                    },
                };
            }
        }
        Route {
            cell: home,
            reason: RouteReason::NoneAvailable,
        }
    }
}

/// A key's [`ramp_point`], hashed only once a cell with a ramp is met.
struct LazyPoint<'k> {
    key: &'k [u8],
    point: Option<f64>,
}

impl<'k> LazyPoint<'k> {
    fn new(key: &'k [u8]) -> Self {
        Self { key, point: None }
    }

    /// The routing rule: a cell in `state` sends the key on iff `ramp_point(key) < away`.
    fn moved(&mut self, state: &CellState, now_ms: u64) -> bool {
        let away = state.away(now_ms);
        if away <= 0.0 {
            return false;
        }
        let key = self.key;
        *self.point.get_or_insert_with(|| ramp_point(key)) < away
    }
}

/// Every cell's score for one key under its configured weight; NaN marks weight 0.
struct Scores {
    inline: [f64; INLINE_CELLS],
    heap: Vec<f64>,
    len: usize,
}

impl Scores {
    fn new(placement: &Placement, key: &[u8]) -> Self {
        let len = placement.len();
        let mut scores = Self {
            inline: [f64::NAN; INLINE_CELLS],
            heap: Vec::new(),
            len,
        };
        if len > INLINE_CELLS {
            scores.heap = vec![f64::NAN; len];
        }
        let slots = if len > INLINE_CELLS {
            &mut scores.heap[..]
        } else {
            &mut scores.inline[..len]
        };
        for (slot, idx) in slots.iter_mut().zip(placement.indices()) {
            if placement.weight(idx) > 0.0 {
                // Never NaN for a positive finite weight (see `hash::score`).
                *slot = placement.score(key, idx);
            }
        }
        scores
    }

    fn as_slice(&self) -> &[f64] {
        if self.len > INLINE_CELLS {
            &self.heap
        } else {
            &self.inline[..self.len]
        }
    }
}

/// A key's ranking, best first, produced lazily by selection: the same order as
/// [`Placement::rank_into`] (score descending, ties to the lower index, weight 0 excluded).
/// Each step is O(cells); routing rarely takes more than two.
struct Ranking<'s> {
    scores: &'s [f64],
    prev: Option<(f64, usize)>,
}

impl<'s> Ranking<'s> {
    fn new(scores: &'s [f64]) -> Self {
        Self { scores, prev: None }
    }
}

impl Iterator for Ranking<'_> {
    type Item = CellIndex;

    fn next(&mut self) -> Option<CellIndex> {
        let mut best: Option<(f64, usize)> = None;
        for (i, &s) in self.scores.iter().enumerate() {
            if s.is_nan() {
                continue;
            }
            // Only cells strictly after the previous one in ranking order.
            if let Some((ps, pi)) = self.prev {
                match s.total_cmp(&ps) {
                    Ordering::Greater => continue,
                    Ordering::Equal if i <= pi => continue,
                    _ => {}
                }
            }
            // Strictly greater: on a tie the lower index, seen first, stays.
            if best.is_none_or(|(bs, _)| s.total_cmp(&bs) == Ordering::Greater) {
                best = Some((s, i));
            }
        }
        self.prev = best;
        // `Placement` holds at most `MAX_CELLS` = 2^16 cells, so every index fits a u16.
        best.map(|(_, i)| CellIndex::new(i as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_ranking_matches_placement() -> Result<(), crate::PlacementError> {
        for n in [1, 3, 7, INLINE_CELLS + 5] {
            let cells = (0..n).map(|i| (format!("cell-{i}"), (i % 3) as f64));
            let Ok(p) = Placement::new(cells) else {
                continue; // n = 1 with weight 0
            };
            for k in 0u32..300 {
                let key = k.to_be_bytes();
                let scores = Scores::new(&p, &key);
                let lazy: Vec<_> = Ranking::new(scores.as_slice()).collect();
                assert_eq!(lazy, p.rank(&key), "n = {n}, key {k}");
            }
        }
        let p = Placement::new([("a", f64::MAX), ("b", f64::MAX), ("c", 1.0)])?;
        for k in 0u32..100 {
            let key = k.to_be_bytes();
            let scores = Scores::new(&p, &key);
            let lazy: Vec<_> = Ranking::new(scores.as_slice()).collect();
            assert_eq!(lazy, p.rank(&key), "forced ties, key {k}");
        }
        Ok(())
    }
}
