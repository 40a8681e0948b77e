//! Operations on a [`Directory`]: drain, undrain, evacuate, pin, unpin, and their guards.

use crate::{CellIndex, CellState, Directory, DirectoryCell, DirectoryError, Pin, Placement};

/// Longest accepted ramp (`over_ms`): 24 hours. Anything longer is almost certainly a typo.
pub const MAX_RAMP_MS: u64 = 24 * 60 * 60 * 1000;

/// Longest accepted routing key, in bytes (SPEC §4 step 1).
pub const MAX_KEY_LEN: usize = 256;

/// Safety net for [`Directory::drain`] and [`Directory::evacuate`].
///
/// A drain that would leave fewer than `min_active_cells` cells *serving* (state `active` or
/// `undraining`, configured weight > 0) is refused with
/// [`DirectoryError::WouldLeaveTooFewActive`], unless `force` is set. Only a change that takes
/// a serving cell out is checked: re-draining a cell that is already draining, or evacuating
/// it, does not reduce the count and is never refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Fewest cells that must remain serving. Default 1.
    pub min_active_cells: usize,
    /// Skip the check (`cellctl drain --force`). Default `false`.
    pub force: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            min_active_cells: 1,
            force: false,
        }
    }
}

impl Guard {
    /// The default guard with `force` set: nothing is refused.
    pub fn forced() -> Self {
        Self {
            force: true,
            ..Self::default()
        }
    }
}

/// Checks a routing key as pins store it: 1..=[`MAX_KEY_LEN`] bytes, no control characters
/// (`char::is_control`: C0, DEL and C1).
///
/// # Errors
///
/// [`DirectoryError::KeyTooLong`] or [`DirectoryError::InvalidKey`].
pub fn validate_key(key: &str) -> Result<(), DirectoryError> {
    if key.is_empty() {
        return Err(DirectoryError::InvalidKey { reason: "empty" });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(DirectoryError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    if key.chars().any(char::is_control) {
        return Err(DirectoryError::InvalidKey {
            reason: "contains control characters",
        });
    }
    Ok(())
}

impl Directory {
    /// Starts draining `cell`: its share of users sent away ramps from its current value to 1
    /// over `over_ms` (0: at once).
    ///
    /// - `active`: a fresh ramp from 0, starting at `now_ms`.
    /// - `undraining`: the ramp turns around where it is, with no jump: the new ramp starts at
    ///   the current away fraction `a` (`since_ms = now_ms - round(a * over_ms)`).
    /// - `draining` with the same `over_ms`: unchanged (a repeated command keeps its ramp and
    ///   is not an error); with another `over_ms`: re-paced from the current away fraction.
    /// - `drained`: [`DirectoryError::AlreadyInState`].
    ///
    /// An operator's change: it clears the cell's [`auto`](DirectoryCell::auto) flag, so a
    /// cell the automation drained is from then on the operator's (this is how a human wins).
    ///
    /// # Errors
    ///
    /// [`UnknownCell`](DirectoryError::UnknownCell) (listing the known cells),
    /// [`InvalidDuration`](DirectoryError::InvalidDuration) beyond [`MAX_RAMP_MS`],
    /// [`AlreadyInState`](DirectoryError::AlreadyInState), or
    /// [`WouldLeaveTooFewActive`](DirectoryError::WouldLeaveTooFewActive) (see [`Guard`]).
    pub fn drain(
        &self,
        placement: &Placement,
        cell: &str,
        over_ms: u64,
        now_ms: u64,
        guard: Guard,
    ) -> Result<Directory, DirectoryError> {
        let idx = known(placement, cell)?;
        check_duration(over_ms)?;
        let current = self.state(cell).settled(now_ms);
        let next = match current {
            // Drained by the automation: the operator takes it over (the automation would
            // otherwise undrain it once healthy), nothing else changes.
            CellState::Drained if self.is_auto(cell) => {
                return Ok(self.with_state(cell, CellState::Drained, now_ms, false));
            }
            CellState::Drained => return Err(already(cell, &current)),
            CellState::Draining { over_ms: o, .. } if o == over_ms => current.clone(),
            _ => ramp(false, current.away(now_ms), over_ms, now_ms),
        };
        self.check_guard(placement, idx, &current, now_ms, guard)?;
        Ok(self.with_state(cell, next, now_ms, false))
    }

    /// Starts undraining `cell` (slow start): its share of users sent away ramps from its
    /// current value down to 0 over `over_ms` (0: at once).
    ///
    /// - `drained`: a fresh ramp from 1, starting at `now_ms`.
    /// - `draining`: the ramp turns around where it is, with no jump
    ///   (`since_ms = now_ms - round((1 - a) * over_ms)` for the current away fraction `a`).
    /// - `undraining` with the same `over_ms`: unchanged, not an error; with another
    ///   `over_ms`: re-paced from the current away fraction.
    /// - `active`: [`DirectoryError::AlreadyInState`], so the operator sees that nothing
    ///   changed.
    ///
    /// An operator's change: it clears the cell's [`auto`](DirectoryCell::auto) flag.
    ///
    /// # Errors
    ///
    /// [`UnknownCell`](DirectoryError::UnknownCell), [`InvalidDuration`](DirectoryError::InvalidDuration)
    /// or [`AlreadyInState`](DirectoryError::AlreadyInState).
    pub fn undrain(
        &self,
        placement: &Placement,
        cell: &str,
        over_ms: u64,
        now_ms: u64,
    ) -> Result<Directory, DirectoryError> {
        known(placement, cell)?;
        check_duration(over_ms)?;
        let current = self.state(cell).settled(now_ms);
        let next = match current {
            CellState::Active => return Err(already(cell, &current)),
            CellState::Undraining { over_ms: o, .. } if o == over_ms => current.clone(),
            _ => ramp(true, current.away(now_ms), over_ms, now_ms),
        };
        Ok(self.with_state(cell, next, now_ms, false))
    }

    /// Evacuates `cell`: a drain with no ramp, `drained` at once, for emergencies. Works from
    /// any state but `drained`, including in the middle of a drain ramp. An operator's change:
    /// it clears the cell's [`auto`](DirectoryCell::auto) flag.
    ///
    /// # Errors
    ///
    /// [`UnknownCell`](DirectoryError::UnknownCell), [`AlreadyInState`](DirectoryError::AlreadyInState)
    /// or [`WouldLeaveTooFewActive`](DirectoryError::WouldLeaveTooFewActive).
    pub fn evacuate(
        &self,
        placement: &Placement,
        cell: &str,
        now_ms: u64,
        guard: Guard,
    ) -> Result<Directory, DirectoryError> {
        let idx = known(placement, cell)?;
        let current = self.state(cell).settled(now_ms);
        if current == CellState::Drained {
            if self.is_auto(cell) {
                // Taking over a cell the automation drained.
                return Ok(self.with_state(cell, CellState::Drained, now_ms, false));
            }
            return Err(already(cell, &current));
        }
        self.check_guard(placement, idx, &current, now_ms, guard)?;
        Ok(self.with_state(cell, CellState::Drained, now_ms, false))
    }

    /// The automation's drain (guarded auto-evacuation): like [`drain`](Self::drain), and the
    /// cell is marked [`auto`](DirectoryCell::auto). Only a cell under automatic control is
    /// accepted: an active one, or one the automation is undraining (its ramp turns around
    /// where it is). A cell an operator drained, undrained or evacuated is refused, so a
    /// change computed before an operator's arrives (and a stale leader) cannot override it.
    ///
    /// # Errors
    ///
    /// [`NotAutomatic`](DirectoryError::NotAutomatic) for a cell an operator is steering,
    /// [`AlreadyInState`](DirectoryError::AlreadyInState) for a cell the automation already
    /// drains, and the errors of [`drain`](Self::drain).
    pub fn auto_drain(
        &self,
        placement: &Placement,
        cell: &str,
        over_ms: u64,
        now_ms: u64,
        guard: Guard,
    ) -> Result<Directory, DirectoryError> {
        let idx = known(placement, cell)?;
        check_duration(over_ms)?;
        let current = self.state(cell).settled(now_ms);
        match (&current, self.is_auto(cell)) {
            (CellState::Active, _) | (CellState::Undraining { .. }, true) => {}
            (CellState::Draining { .. } | CellState::Drained, true) => {
                return Err(already(cell, &current));
            }
            (_, false) => return Err(not_automatic(cell, &current)),
        }
        let next = ramp(false, current.away(now_ms), over_ms, now_ms);
        self.check_guard(placement, idx, &current, now_ms, guard)?;
        Ok(self.with_state(cell, next, now_ms, true))
    }

    /// The automation's undrain (slow start): like [`undrain`](Self::undrain), for a cell the
    /// automation drained (draining or drained with the [`auto`](DirectoryCell::auto) flag);
    /// the cell stays marked `auto` until its ramp completes and it is active again.
    ///
    /// # Errors
    ///
    /// [`NotAutomatic`](DirectoryError::NotAutomatic) for a cell an operator is steering,
    /// [`AlreadyInState`](DirectoryError::AlreadyInState) for an active or already
    /// undraining cell, [`UnknownCell`](DirectoryError::UnknownCell) or
    /// [`InvalidDuration`](DirectoryError::InvalidDuration).
    pub fn auto_undrain(
        &self,
        placement: &Placement,
        cell: &str,
        over_ms: u64,
        now_ms: u64,
    ) -> Result<Directory, DirectoryError> {
        known(placement, cell)?;
        check_duration(over_ms)?;
        let current = self.state(cell).settled(now_ms);
        match (&current, self.is_auto(cell)) {
            (CellState::Draining { .. } | CellState::Drained, true) => {}
            (CellState::Active, _) | (CellState::Undraining { .. }, true) => {
                return Err(already(cell, &current));
            }
            (_, false) => return Err(not_automatic(cell, &current)),
        }
        let next = ramp(true, current.away(now_ms), over_ms, now_ms);
        Ok(self.with_state(cell, next, now_ms, true))
    }

    /// Pins `key` to `cell`, replacing any previous pin of the key. Pinning to a drained cell
    /// or to a cell with weight 0 is allowed (a canary cell only pinned users reach).
    ///
    /// # Errors
    ///
    /// [`KeyTooLong`](DirectoryError::KeyTooLong), [`InvalidKey`](DirectoryError::InvalidKey)
    /// (see [`validate_key`]) or [`UnknownCell`](DirectoryError::UnknownCell).
    pub fn pin(
        &self,
        placement: &Placement,
        key: &str,
        cell: &str,
        follow_drain: bool,
    ) -> Result<Directory, DirectoryError> {
        validate_key(key)?;
        known(placement, cell)?;
        let mut next = self.bumped();
        next.pins.insert(
            key.to_owned(),
            Pin {
                cell: cell.to_owned(),
                follow_drain,
            },
        );
        Ok(next)
    }

    /// Removes the pin of `key`.
    ///
    /// # Errors
    ///
    /// [`NotPinned`](DirectoryError::NotPinned) if the key has no pin;
    /// [`KeyTooLong`](DirectoryError::KeyTooLong) or [`InvalidKey`](DirectoryError::InvalidKey)
    /// for a key that could never have been pinned.
    pub fn unpin(&self, key: &str) -> Result<Directory, DirectoryError> {
        validate_key(key)?;
        if !self.pins.contains_key(key) {
            return Err(DirectoryError::NotPinned {
                key: key.to_owned(),
            });
        }
        let mut next = self.bumped();
        next.pins.remove(key);
        Ok(next)
    }

    /// A copy with the version bumped. Saturates: a version of `u64::MAX` is not reachable by
    /// counting and must not panic on a hand-written document.
    fn bumped(&self) -> Directory {
        Directory {
            version: self.version.saturating_add(1),
            ..self.clone()
        }
    }

    /// A copy with the version bumped, `cell` in `state` (marked `auto` or not), every ramp
    /// settled at `now_ms`, `Active` cells dropped (with their `auto` flag), duplicates
    /// dropped (first wins) and the list sorted by name.
    fn with_state(&self, cell: &str, state: CellState, now_ms: u64, auto: bool) -> Directory {
        let mut next = self.bumped();
        let mut cells: Vec<DirectoryCell> = Vec::with_capacity(self.cells.len() + 1);
        let listed = std::iter::once(DirectoryCell {
            name: cell.to_owned(),
            state,
            auto,
        });
        for c in listed.chain(self.cells.iter().filter(|c| c.name != cell).cloned()) {
            if cells.iter().any(|seen| seen.name == c.name) {
                continue;
            }
            cells.push(DirectoryCell {
                state: c.state.settled(now_ms),
                ..c
            });
        }
        cells.retain(|c| c.state != CellState::Active);
        cells.sort_by(|a, b| a.name.cmp(&b.name));
        next.cells = cells;
        next
    }

    /// Refuses a change that takes serving cell `idx` out of service if fewer than
    /// `guard.min_active_cells` serving cells would remain.
    fn check_guard(
        &self,
        placement: &Placement,
        idx: CellIndex,
        current: &CellState,
        now_ms: u64,
        guard: Guard,
    ) -> Result<(), DirectoryError> {
        let serving = |i: CellIndex| {
            placement.weight(i) > 0.0 && self.state(placement.name(i)).settled(now_ms).is_serving()
        };
        if guard.force || !(current.is_serving() && placement.weight(idx) > 0.0) {
            return Ok(());
        }
        let active_after = placement
            .indices()
            .filter(|&i| i != idx && serving(i))
            .count();
        if active_after < guard.min_active_cells {
            return Err(DirectoryError::WouldLeaveTooFewActive {
                cell: placement.name(idx).to_owned(),
                active_after,
                min: guard.min_active_cells,
            });
        }
        Ok(())
    }
}

/// A ramp (`up`: undraining, else draining) over `over_ms` that starts at `away` at `now_ms`,
/// settled (so `over_ms = 0` gives `Drained`/`Active` directly).
fn ramp(up: bool, away: f64, over_ms: u64, now_ms: u64) -> CellState {
    // Progress already made: `away` for a drain, `1 - away` for an undrain.
    let done = if up { 1.0 - away } else { away };
    // done in [0, 1] and over_ms <= MAX_RAMP_MS: the product fits a u64 exactly enough.
    let elapsed = (done.clamp(0.0, 1.0) * over_ms as f64).round() as u64;
    let since_ms = now_ms.saturating_sub(elapsed);
    let state = if up {
        CellState::Undraining { since_ms, over_ms }
    } else {
        CellState::Draining { since_ms, over_ms }
    };
    state.settled(now_ms)
}

fn known(placement: &Placement, cell: &str) -> Result<CellIndex, DirectoryError> {
    placement
        .index_of(cell)
        .ok_or_else(|| DirectoryError::UnknownCell {
            cell: cell.to_owned(),
            known: placement
                .indices()
                .map(|i| placement.name(i).to_owned())
                .collect(),
        })
}

fn check_duration(over_ms: u64) -> Result<(), DirectoryError> {
    if over_ms > MAX_RAMP_MS {
        return Err(DirectoryError::InvalidDuration {
            over_ms,
            max_ms: MAX_RAMP_MS,
        });
    }
    Ok(())
}

fn not_automatic(cell: &str, state: &CellState) -> DirectoryError {
    DirectoryError::NotAutomatic {
        cell: cell.to_owned(),
        state: state.name(),
    }
}

fn already(cell: &str, state: &CellState) -> DirectoryError {
    DirectoryError::AlreadyInState {
        cell: cell.to_owned(),
        state: state.name(),
    }
}
