//! [`DirectoryError`]: why a directory operation was refused.

use thiserror::Error;

/// Why a [`Directory`](crate::Directory) operation was refused. Nothing changed.
///
/// Every variant is the caller's doing (an operator's request that is invalid or unsafe), so
/// none is retryable as is: the admin API answers 4xx and `cellctl` exits 1.
/// [`code`](Self::code) gives a stable machine-readable name for JSON error bodies.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The cell is not in the configuration.
    #[error("unknown cell {cell:?}; known cells: {}", known.join(", "))]
    UnknownCell {
        /// The name asked for.
        cell: String,
        /// Every configured cell, in configuration order.
        known: Vec<String>,
    },

    /// Draining or evacuating the cell would leave fewer cells serving than the
    /// [`Guard`](crate::Guard) requires.
    #[error(
        "refusing to drain {cell:?}: only {active_after} cell(s) would remain active or \
         undraining, at least {min} required (use force to override)"
    )]
    WouldLeaveTooFewActive {
        /// The cell that was to be drained.
        cell: String,
        /// Cells that would still be serving (active or undraining, weight > 0) afterwards.
        active_after: usize,
        /// The guard's `min_active_cells`.
        min: usize,
    },

    /// A ramp duration is longer than [`MAX_RAMP_MS`](crate::MAX_RAMP_MS).
    #[error("invalid ramp duration {over_ms} ms: at most {max_ms} ms (24h)")]
    InvalidDuration {
        /// The duration asked for, in milliseconds.
        over_ms: u64,
        /// The longest duration accepted, in milliseconds.
        max_ms: u64,
    },

    /// A routing key is longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes.
    #[error("routing key is {len} bytes long: at most {max} bytes")]
    KeyTooLong {
        /// Length of the key in bytes.
        len: usize,
        /// The longest key accepted, in bytes.
        max: usize,
    },

    /// A routing key is empty or contains control characters. The key itself is not echoed.
    #[error("invalid routing key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `unpin` of a key that has no pin.
    #[error("key {key:?} is not pinned")]
    NotPinned {
        /// The key.
        key: String,
    },

    /// The cell already is in the state the operation leads to (`undrain` of an active cell,
    /// `drain` or `evacuate` of a drained one).
    #[error("cell {cell:?} is already {state}")]
    AlreadyInState {
        /// The cell.
        cell: String,
        /// Its current state's [name](crate::CellState::name).
        state: &'static str,
    },

    /// An automatic change ([`auto_drain`](crate::Directory::auto_drain),
    /// [`auto_undrain`](crate::Directory::auto_undrain)) of a cell an operator is steering:
    /// the automation never overrides a human.
    #[error("cell {cell:?} is {state} by an operator's decision; the automation leaves it alone")]
    NotAutomatic {
        /// The cell.
        cell: String,
        /// Its current state's [name](crate::CellState::name).
        state: &'static str,
    },

    /// An automatic drain while `max` cells are already out by the automation (drained,
    /// draining or undraining with the `auto` mark), as the stored directory shows.
    #[error("{max} cell(s) already auto-evacuated; the cap holds")]
    AutoCapReached {
        /// The cap (`max_auto_evacuated`).
        max: usize,
    },
}

impl DirectoryError {
    /// A stable snake_case name for the error, for JSON bodies and scripts:
    /// `unknown_cell`, `would_leave_too_few_active`, `invalid_duration`, `key_too_long`,
    /// `invalid_key`, `not_pinned`, `already_in_state` or `not_automatic`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCell { .. } => "unknown_cell",
            Self::WouldLeaveTooFewActive { .. } => "would_leave_too_few_active",
            Self::InvalidDuration { .. } => "invalid_duration",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::InvalidKey { .. } => "invalid_key",
            Self::NotPinned { .. } => "not_pinned",
            Self::AlreadyInState { .. } => "already_in_state",
            Self::NotAutomatic { .. } => "not_automatic",
            Self::AutoCapReached { .. } => "auto_cap_reached",
        }
    }
}
