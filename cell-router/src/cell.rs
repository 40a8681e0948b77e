//! A cell as configured, and its position in a [`Placement`](crate::Placement).

use std::fmt;

/// A cell as configured: its name (which seeds its hash) and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpec {
    /// Unique, non-empty name. Renaming a cell moves its users.
    pub name: String,
    /// Relative share of keys: a cell gets `weight / sum(weights)` of them. Finite and `>= 0`;
    /// 0 means the cell is never chosen.
    pub weight: f64,
}

impl CellSpec {
    /// A cell named `name` with `weight`.
    pub fn new(name: impl Into<String>, weight: f64) -> Self {
        Self {
            name: name.into(),
            weight,
        }
    }
}

impl From<(&str, f64)> for CellSpec {
    fn from((name, weight): (&str, f64)) -> Self {
        Self::new(name, weight)
    }
}

impl From<(String, f64)> for CellSpec {
    fn from((name, weight): (String, f64)) -> Self {
        Self::new(name, weight)
    }
}

/// Position of a cell in configuration order, as returned by [`Placement`](crate::Placement).
///
/// Only meaningful for the `Placement` (or one built from the same cell list) that produced
/// it; use [`Placement::name`](crate::Placement::name) to turn it into something stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellIndex(u16);

impl CellIndex {
    /// The index of the `i`-th configured cell (0-based).
    pub const fn new(i: u16) -> Self {
        Self(i)
    }

    /// The 0-based position in configuration order, for indexing per-cell arrays.
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

impl From<CellIndex> for usize {
    fn from(idx: CellIndex) -> Self {
        idx.get()
    }
}

impl fmt::Display for CellIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
