//! [`EvacuationStatus`]: what `cellctl status` shows of the automation.

use serde::Serialize;

use crate::control::Lease;

/// What `cellctl status` shows of the automation, as this gateway sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EvacuationStatus {
    /// Whether new evacuations are made (undrains of cells the automation drained are made
    /// even when off, so that switching it off strands nothing).
    pub enabled: bool,
    /// The cap.
    pub max_auto_evacuated: usize,
    /// The lease in force as this gateway last saw it; `None` when unknown or free.
    pub lease: Option<Lease>,
    /// Whether this gateway holds the lease (and so is the one deciding).
    pub leader: bool,
    /// A due evacuation held back, if any.
    pub held: Option<Held>,
}

/// A cell due for evacuation that the automation holds back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The cell.
    pub cell: String,
    /// `cap_reached` (`max_auto_evacuated` cells are out already), `no_healthy_peer` (no
    /// other cell serves with a closed breaker) or `guard` (the drain would leave fewer than
    /// `min_active_cells` serving).
    pub reason: &'static str,
    /// How long its breaker has been open, in seconds.
    pub breaker_open_s: u64,
}
