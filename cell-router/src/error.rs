//! Errors raised while building a [`Placement`](crate::Placement).

use thiserror::Error;

/// Why a set of cells cannot be turned into a [`Placement`](crate::Placement).
///
/// Every variant is a configuration error: blame lies with whoever wrote the cell list, and
/// retrying with the same input fails the same way.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The cell list is empty: there is nowhere to place a key.
    #[error("no cells configured")]
    NoCells,

    /// More cells than a [`CellIndex`](crate::CellIndex) can address.
    #[error("too many cells: {count} (at most {max})")]
    TooManyCells {
        /// Number of cells given.
        count: usize,
        /// Largest number of cells supported.
        max: usize,
    },

    /// A cell name is the empty string.
    #[error("cell #{index} has an empty name")]
    EmptyName {
        /// Position of the cell in configuration order (0-based).
        index: usize,
    },

    /// Two cells share a name. Names seed the hash, so they must be unique.
    #[error("duplicate cell name {name:?} (cells #{first} and #{second})")]
    DuplicateName {
        /// The repeated name.
        name: String,
        /// Position of the first cell with this name (0-based).
        first: usize,
        /// Position of the second cell with this name (0-based).
        second: usize,
    },

    /// A weight is NaN, infinite or negative.
    #[error("cell {name:?} has invalid weight {weight}: it must be finite and >= 0")]
    InvalidWeight {
        /// The cell's name.
        name: String,
        /// The rejected weight.
        weight: f64,
    },

    /// Every cell has weight 0, so no cell could ever be chosen.
    #[error("all cells have weight 0: at least one cell needs a positive weight")]
    AllWeightsZero,
}
