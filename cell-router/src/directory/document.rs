//! [`Directory`]: the shared, versioned document of cell states and pins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::CellState;

/// The shared, versioned directory document: what the control plane stores (in Redis, as
/// JSON) and every gateway applies.
///
/// Cells not listed are `Active`, so the default document (version 0, nothing listed) routes
/// every key to its home cell. The operations ([`drain`](Self::drain),
/// [`undrain`](Self::undrain), [`evacuate`](Self::evacuate), [`pin`](Self::pin),
/// [`unpin`](Self::unpin)) are pure: each returns the changed document with `version + 1`,
/// which the store writes with a compare-and-set on the old version.
///
/// The JSON form is a compatibility contract (`docs/directory.md`, golden test in
/// `tests/directory/serde.rs`):
///
/// ```json
/// {"version":7,
///  "cells":[{"name":"cell-2","state":"draining","since_ms":1700000000000,"over_ms":60000},
///           {"name":"cell-3","state":"drained"}],
///  "pins":{"alice":{"cell":"cell-1","follow_drain":true}}}
/// ```
///
/// `cells` and `pins` may be omitted (empty); `follow_drain` defaults to `true`; a cell's
/// `auto` flag (set by guarded auto-evacuation) is written only when true and defaults to
/// `false`; unknown fields are ignored so that older gateways can read documents written by
/// newer ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Incremented by exactly 1 by every successful operation.
    pub version: u64,
    /// Cells whose state differs from `Active`. Operations keep this list sorted by name,
    /// settle completed ramps and drop cells that became `Active`. If a (hand-written)
    /// document lists a cell twice, the first entry wins.
    #[serde(default)]
    pub cells: Vec<DirectoryCell>,
    /// Pinned routing keys: key → pin.
    #[serde(default)]
    pub pins: BTreeMap<String, Pin>,
}

/// One listed cell of a [`Directory`] and its state.
///
/// Serialized flat: `{"name":"cell-2","state":"drained"}`, plus `"auto":true` when the
/// automation made the state (older readers ignore the field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryCell {
    /// The cell's configured name.
    pub name: String,
    /// Its lifecycle state.
    #[serde(flatten)]
    pub state: CellState,
    /// `true` when guarded auto-evacuation made the current state
    /// ([`auto_drain`](Directory::auto_drain), [`auto_undrain`](Directory::auto_undrain)).
    /// Any operator change of the cell clears it: from then on the automation leaves the cell
    /// alone until it is active again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto: bool,
}

impl DirectoryCell {
    /// A cell in `state` set by an operator (`auto: false`).
    pub fn new(name: impl Into<String>, state: CellState) -> Self {
        Self {
            name: name.into(),
            state,
            auto: false,
        }
    }
}

/// A routing key pinned to a cell, overriding its hash placement.
///
/// Serialized as `{"cell":"cell-3","follow_drain":true}`; `follow_drain` defaults to `true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The cell the key starts at instead of its home cell.
    pub cell: String,
    /// `true`: when the pinned cell drains, the key moves on along its own hash ranking like
    /// the cell's other users. `false`: the key stays on the pinned cell whatever its state.
    #[serde(default = "yes")]
    pub follow_drain: bool,
}

impl Pin {
    /// A pin to `cell` that follows drains.
    pub fn new(cell: impl Into<String>) -> Self {
        Self {
            cell: cell.into(),
            follow_drain: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Directory {
    /// The stored state of `cell`: `Active` if not listed. Not settled: see
    /// [`CellState::settled`].
    pub fn state(&self, cell: &str) -> CellState {
        self.cells
            .iter()
            .find(|c| c.name == cell)
            .map(|c| c.state.clone())
            .unwrap_or_default()
    }

    /// Whether `cell` is listed with its state made by the automation (see
    /// [`DirectoryCell::auto`]). `false` for unlisted (active) cells.
    pub fn is_auto(&self, cell: &str) -> bool {
        self.cells
            .iter()
            .find(|c| c.name == cell)
            .is_some_and(|c| c.auto)
    }

    /// Cells other than `except` that the automation has out of service at `now_ms`
    /// (marked [`auto`](DirectoryCell::auto) and not active): what `max_auto_evacuated` caps.
    pub fn auto_evacuated_except(&self, except: &str, now_ms: u64) -> usize {
        self.cells
            .iter()
            .filter(|c| c.auto && c.name != except)
            .filter(|c| c.state.settled(now_ms) != crate::CellState::Active)
            .count()
    }

    /// The pin of `key`, if any.
    pub fn pin_of(&self, key: &str) -> Option<&Pin> {
        self.pins.get(key)
    }
}
