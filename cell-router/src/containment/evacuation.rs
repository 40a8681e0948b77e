//! [`AutoEvacuation`]: the guarded decision to drain a cell whose breaker stays open.

use std::time::{Duration, Instant};

use super::error::{InvalidConfig, check};
use crate::{CellState, Directory, MAX_RAMP_MS};

/// Tuning of [`AutoEvacuation`]; defaults in `docs/containment.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoEvacuationConfig {
    /// Whether cells are evacuated automatically at all. Default `false`: moving users
    /// between cells is an operator's call unless they opt in.
    pub enabled: bool,
    /// How long a cell's breaker must stay open before it is evacuated. Default 30 s.
    pub open_for: Duration,
    /// How long an auto-evacuated cell must pass health checks before it is undrained.
    /// Default 60 s.
    pub healthy_for: Duration,
    /// Most cells auto-evacuated at once. Default 1.
    pub max_auto_evacuated: usize,
    /// Drain ramp used for an evacuation (its users are failing already). Default 10 s.
    pub drain_over: Duration,
    /// Undrain ramp (slow start, to spare cold caches). Default 60 s.
    pub undrain_over: Duration,
}

impl Default for AutoEvacuationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            open_for: Duration::from_secs(30),
            healthy_for: Duration::from_secs(60),
            max_auto_evacuated: 1,
            drain_over: Duration::from_secs(10),
            undrain_over: Duration::from_secs(60),
        }
    }
}

impl AutoEvacuationConfig {
    /// # Errors
    /// [`InvalidConfig`] for the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        const S: &str = "auto_evacuation";
        let max_ramp = Duration::from_millis(MAX_RAMP_MS);
        check(!self.open_for.is_zero(), S, "open_for", "must be positive")?;
        check(
            !self.healthy_for.is_zero(),
            S,
            "healthy_for",
            "must be positive",
        )?;
        check(
            self.max_auto_evacuated >= 1,
            S,
            "max_auto_evacuated",
            "must be at least 1 (disable the automation instead)",
        )?;
        check(
            self.drain_over <= max_ramp,
            S,
            "drain_over",
            "must be at most 24h",
        )?;
        check(
            self.undrain_over <= max_ramp,
            S,
            "undrain_over",
            "must be at most 24h",
        )
    }
}

/// Who is steering a cell, as far as the automation is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CellControl {
    /// Serving, with no human action in effect: the automation may evacuate it.
    #[default]
    Automatic,
    /// Drained (or draining) by the automation; it may undrain it.
    AutoEvacuated,
    /// Being undrained by the automation (slow start): still counts against
    /// `max_auto_evacuated` until its ramp completes, is not undrained again, and is drained
    /// again (without taking another slot) if its breaker stays open.
    AutoUndraining,
    /// A human's drain/undrain/evacuate is in effect: the automation never touches it.
    Human,
}

impl CellControl {
    /// Who steers `cell` according to `directory` at `now_ms`: an active cell is
    /// `Automatic`; a listed cell is the automation's while its
    /// [`auto`](crate::DirectoryCell::auto) flag is set, a human's otherwise.
    pub fn of(directory: &Directory, cell: &str, now_ms: u64) -> CellControl {
        match (
            directory.state(cell).settled(now_ms),
            directory.is_auto(cell),
        ) {
            (CellState::Active, _) => CellControl::Automatic,
            (CellState::Undraining { .. }, true) => CellControl::AutoUndraining,
            (CellState::Draining { .. } | CellState::Drained, true) => CellControl::AutoEvacuated,
            (_, false) => CellControl::Human,
        }
    }

    /// Whether the cell takes one of the `max_auto_evacuated` slots.
    fn holds_slot(self) -> bool {
        matches!(
            self,
            CellControl::AutoEvacuated | CellControl::AutoUndraining
        )
    }
}

/// What the automation knows about one cell (index = the cell's placement index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellHealth {
    /// Who steers it.
    pub control: CellControl,
    /// Since when its circuit breaker has been open (or half-open) without closing.
    pub breaker_open_since: Option<Instant>,
    /// Since when its upstreams have passed active health checks without interruption
    /// (checks continue while drained, so this is how a drained cell proves recovery).
    pub healthy_since: Option<Instant>,
}

/// One cell and how long its condition has lasted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellAction {
    /// The cell's index.
    pub cell: usize,
    /// How long its breaker has been open (evacuate) or it has been healthy (undrain): the
    /// audited reason.
    pub after: Duration,
}

/// Why a due evacuation was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// `max_auto_evacuated` cells are evacuated already.
    CapReached,
    /// No other cell is serving with a closed breaker: a failure shared by every cell is not
    /// fixed by moving users around.
    NoHealthyPeer,
}

/// What to do now: at most one undrain and one evacuation per decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvacuationDecision {
    /// An auto-evacuated cell healthy for long enough: undrain it with slow start.
    pub undrain: Option<CellAction>,
    /// A cell whose breaker has been open for long enough: drain it.
    pub evacuate: Option<CellAction>,
    /// A cell that was due for evacuation but held back, and why (for status and logs).
    pub held: Option<(CellAction, HoldReason)>,
}

/// The pure decision half of guarded auto-evacuation. The gateway runs it on a tick while
/// holding the cluster-wide lease (a Redis lease with a fencing token), applies the result
/// through the directory with `drain_over`/`undrain_over` ramps, audits it, and reports
/// [`CellControl`] back on the next tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AutoEvacuation {
    config: AutoEvacuationConfig,
}

impl AutoEvacuation {
    /// The automation with `config`.
    pub fn new(config: AutoEvacuationConfig) -> Self {
        Self { config }
    }

    /// Its config.
    pub fn config(&self) -> &AutoEvacuationConfig {
        &self.config
    }

    /// Decides what to do at `now` given every cell's state.
    ///
    /// Rules: human-controlled cells are never touched. Undrain the auto-evacuated cell
    /// healthy for longest, once healthy for `healthy_for` (also when disabled: switching the
    /// automation off must not strand the cells it drained). If enabled, evacuate the cell
    /// whose breaker has been open longest, once open for `open_for`: first an
    /// auto-undraining one (its recovery failed; it keeps its slot), else an automatic one,
    /// unless `max_auto_evacuated` cells are auto-evacuated or auto-undraining already (an
    /// undrain decided in the same call still counts: its slot frees when its ramp
    /// completes). Either way, not if no other automatic cell has a closed breaker. Ties go
    /// to the lower index.
    pub fn decide(&self, cells: &[CellHealth], now: Instant) -> EvacuationDecision {
        let age = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let oldest = |control: CellControl, since: fn(&CellHealth) -> Option<Instant>| {
            let found = (cells.iter().enumerate())
                .filter(|(_, c)| c.control == control)
                .filter_map(|(i, c)| age(since(c)).map(|after| CellAction { cell: i, after }));
            found.fold(None, |best: Option<CellAction>, a| match best {
                Some(b) if b.after >= a.after => Some(b),
                _ => Some(a),
            })
        };
        let mut decision = EvacuationDecision {
            undrain: oldest(CellControl::AutoEvacuated, |c| c.healthy_since)
                .filter(|a| a.after >= self.config.healthy_for),
            ..EvacuationDecision::default()
        };
        if !self.config.enabled {
            return decision;
        }
        let open = |control| {
            oldest(control, |c| c.breaker_open_since).filter(|a| a.after >= self.config.open_for)
        };
        let (due, needs_slot) = match open(CellControl::AutoUndraining) {
            Some(due) => (due, false),
            None => match open(CellControl::Automatic) {
                Some(due) => (due, true),
                None => return decision,
            },
        };
        let evacuated = cells.iter().filter(|c| c.control.holds_slot()).count();
        let healthy_peer = cells.iter().enumerate().any(|(i, c)| {
            i != due.cell && c.control == CellControl::Automatic && c.breaker_open_since.is_none()
        });
        if needs_slot && evacuated >= self.config.max_auto_evacuated {
            decision.held = Some((due, HoldReason::CapReached));
        } else if !healthy_peer {
            decision.held = Some((due, HoldReason::NoHealthyPeer));
        } else {
            decision.evacuate = Some(due);
        }
        decision
    }
}
