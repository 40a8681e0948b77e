//! [`Observer`]: turns this gateway's breakers, health probes and directory into the
//! [`CellHealth`] inputs of [`AutoEvacuation::decide`](cell_router::containment::AutoEvacuation::decide).

use std::time::Instant;

use cell_router::containment::{Breaker, CellControl, CellHealth, CircuitBreaker};
use cell_router::{CellState, Directory};

use crate::proxy::upstream::Cell;

/// What the automation remembers about each cell between ticks.
#[derive(Debug)]
pub(super) struct Observer {
    cells: Vec<Watch>,
}

#[derive(Debug)]
struct Watch {
    /// When the breaker was first seen not closed, reset when a close is seen (a close
    /// between two ticks counts: the breaker's close counter moved).
    open_since: Option<Instant>,
    closes: u64,
    /// Whether the cell was serving (active or undraining) at the last tick.
    serving: bool,
    /// The breaker's transition count when the cell last started serving, and the first tick
    /// after that at which it moved: the breaker has been tested by this serving period's
    /// traffic. A breaker left open from before a drain is stale until then.
    transitions_at_serving: u64,
    tested_since: Option<Instant>,
    /// When this gateway first saw the cell auto-evacuated (drained or draining by the
    /// automation); a recovery must be proven by probes after it.
    evacuated_since: Option<Instant>,
    /// An operator changed the cell: the automation leaves it alone until its breaker has
    /// been seen closed once the operator's change is no longer in effect (an operator who
    /// undrains a failing cell is not overruled the moment the ramp ends).
    operator: bool,
    /// The operator's entry of the cell in the directory when last seen.
    operator_entry: Option<CellState>,
}

impl Observer {
    /// An observer of `cells`, all serving with closed breakers as of now.
    pub(super) fn new(cells: usize) -> Self {
        let watch = || Watch {
            open_since: None,
            closes: 0,
            serving: true,
            transitions_at_serving: 0,
            tested_since: None,
            evacuated_since: None,
            operator: false,
            operator_entry: None,
        };
        Self {
            cells: (0..cells).map(|_| watch()).collect(),
        }
    }

    /// Updates every cell's memory at `now` and returns the decision inputs, in cell order.
    ///
    /// - `control` comes from the directory ([`CellControl::of`]).
    /// - `breaker_open_since`: since when this gateway's breaker of the cell has not been
    ///   closed, counted from no earlier than the first breaker activity of the cell's current
    ///   serving period (its users' requests tested it); `None` after an operator's change
    ///   until the breaker has been seen closed.
    /// - `healthy_since`: since when every upstream of the cell has passed every active probe;
    ///   for an auto-evacuated cell, counted from no earlier than its evacuation and only with
    ///   a passed probe after it (a cell drained before any probe noticed it was down must not
    ///   come straight back).
    pub(super) fn observe<'a>(
        &mut self,
        cells: impl Iterator<Item = &'a Cell>,
        directory: &Directory,
        now: Instant,
        now_ms: u64,
    ) -> Vec<CellHealth> {
        self.cells
            .iter_mut()
            .zip(cells)
            .map(|(watch, cell)| watch.observe(cell, directory, now, now_ms))
            .collect()
    }
}

impl Watch {
    fn observe(
        &mut self,
        cell: &Cell,
        directory: &Directory,
        now: Instant,
        now_ms: u64,
    ) -> CellHealth {
        let containment = cell.containment();
        let breaker = containment.breaker();
        let transitions = transitions(breaker);
        let closes = breaker.transitions().closed;
        let closed = matches!(breaker.state(), Breaker::Closed);
        let close_seen = closed || closes != self.closes;
        if closed {
            self.open_since = None;
        } else if self.open_since.is_none() || closes != self.closes {
            self.open_since = Some(now);
        }
        self.closes = closes;

        let control = CellControl::of(directory, cell.name(), now_ms);
        // An operator's entry is recognised by its contents, so that one whose ramp ended
        // between two ticks still counts, and a stale one left in the document after the
        // breaker closed does not count again.
        let operator_entry = (directory.cells.iter())
            .find(|c| c.name == cell.name())
            .filter(|c| !c.auto)
            .map(|c| c.state.clone());
        if operator_entry.is_some() && operator_entry != self.operator_entry {
            self.operator = true;
        }
        self.operator_entry = operator_entry;
        if self.operator && control != CellControl::Human && close_seen {
            self.operator = false;
        }

        let serving = directory.state(cell.name()).settled(now_ms).is_serving();
        if serving && !self.serving {
            self.transitions_at_serving = transitions;
            self.tested_since = None;
        }
        self.serving = serving;
        if serving && self.tested_since.is_none() && transitions != self.transitions_at_serving {
            self.tested_since = Some(now);
        }

        if control == CellControl::AutoEvacuated {
            self.evacuated_since.get_or_insert(now);
        } else {
            self.evacuated_since = None;
        }

        let breaker_open_since = match (self.open_since, self.tested_since) {
            (Some(open), Some(tested)) if serving && !self.operator => Some(open.max(tested)),
            _ => None,
        };
        let probes = containment.probes();
        let healthy_since = match self.evacuated_since {
            Some(evacuated) => probes
                .passing_since(Some(evacuated))
                .map(|since| since.max(evacuated)),
            None => probes.passing_since(None),
        };
        CellHealth {
            control,
            breaker_open_since,
            healthy_since,
        }
    }
}

fn transitions(breaker: &CircuitBreaker) -> u64 {
    let t = breaker.transitions();
    t.opened + t.half_opened + t.reopened + t.closed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::time::Duration;

    use cell_router::containment::Outcome;
    use cell_router::{Guard, Placement};

    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::proxy::Cells;

    const T0: u64 = 1_700_000_000_000;

    fn cells() -> Cells {
        let text = "[[cells]]\nname = \"cell-1\"\nupstreams = [\"127.0.0.1:1\"]\n\
                    [[cells]]\nname = \"cell-2\"\nupstreams = [\"127.0.0.1:2\"]\n";
        let config = Config::parse(text, "test.toml", &HashMap::new()).unwrap();
        Cells::new(&config.cells, &config.server, &Metrics::new()).unwrap()
    }

    fn placement() -> Placement {
        Placement::new([("cell-1", 1.0), ("cell-2", 1.0)]).unwrap()
    }

    /// Opens the breaker of `cell` with a run of upstream failures at `now`.
    fn fail(cell: &Cell, now: Instant) {
        for _ in 0..40 {
            if let Ok(permit) = cell.containment().breaker().try_acquire(now) {
                permit.record(Outcome::UpstreamError, now);
            }
        }
    }

    /// Ticks at `start + secs` (wall clock `T0 + secs`) and returns cell-2's inputs.
    fn tick(
        observer: &mut Observer,
        cells: &Cells,
        dir: &Directory,
        start: Instant,
        secs: u64,
    ) -> CellHealth {
        let now = start + Duration::from_secs(secs);
        observer.observe(cells.iter(), dir, now, T0 + secs * 1000)[1]
    }

    #[test]
    fn an_open_breaker_counts_from_when_it_was_seen() {
        let cells = cells();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut observer = Observer::new(2);
        let dir = Directory::default();
        assert_eq!(
            tick(&mut observer, &cells, &dir, start, 1).breaker_open_since,
            None
        );
        fail(cells.iter().nth(1).unwrap(), at(1));
        let seen = tick(&mut observer, &cells, &dir, start, 2);
        assert_eq!(seen.control, CellControl::Automatic);
        assert_eq!(seen.breaker_open_since, Some(at(2)));
        assert_eq!(
            tick(&mut observer, &cells, &dir, start, 5).breaker_open_since,
            Some(at(2)),
            "still open: the start stays"
        );
    }

    #[test]
    fn an_operator_change_is_left_alone_until_the_breaker_closes() {
        let cells = cells();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let p = placement();
        let mut observer = Observer::new(2);
        fail(cells.iter().nth(1).unwrap(), at(0));
        // The operator undrains the failing cell over 1 s; the next tick is already past
        // the ramp, and the cell is active again.
        let dir = Directory::default()
            .drain(&p, "cell-2", 0, T0, Guard::default())
            .unwrap()
            .undrain(&p, "cell-2", 1_000, T0)
            .unwrap();
        let seen = tick(&mut observer, &cells, &dir, start, 2);
        assert_eq!(seen.control, CellControl::Automatic);
        assert_eq!(seen.breaker_open_since, None, "the operator's call stands");
        assert_eq!(
            tick(&mut observer, &cells, &dir, start, 60).breaker_open_since,
            None
        );
    }

    #[test]
    fn a_recovery_needs_a_passed_probe_after_the_evacuation() {
        let cells = cells();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let p = placement();
        let mut observer = Observer::new(2);
        let probes = cells.iter().nth(1).unwrap().containment().probes();
        probes.record(0, true, at(0));
        let dir = Directory::default()
            .auto_drain(&p, "cell-2", 0, T0, Guard::default())
            .unwrap();
        let seen = tick(&mut observer, &cells, &dir, start, 3);
        assert_eq!(seen.control, CellControl::AutoEvacuated);
        assert_eq!(seen.healthy_since, None, "no probe since the evacuation");
        probes.record(0, true, at(5));
        assert_eq!(
            tick(&mut observer, &cells, &dir, start, 6).healthy_since,
            Some(at(3)),
            "healthy since the evacuation was seen, not since before it"
        );
        probes.record(0, false, at(10));
        probes.record(0, true, at(15));
        assert_eq!(
            tick(&mut observer, &cells, &dir, start, 16).healthy_since,
            Some(at(15))
        );
    }

    #[test]
    fn a_breaker_left_open_by_a_drain_counts_only_once_tested_again() {
        let cells = cells();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let p = placement();
        let mut observer = Observer::new(2);
        let cell = cells.iter().nth(1).unwrap();
        fail(cell, at(0));
        let drained = Directory::default()
            .auto_drain(&p, "cell-2", 0, T0, Guard::default())
            .unwrap();
        tick(&mut observer, &cells, &drained, start, 1);
        let undraining = drained
            .auto_undrain(&p, "cell-2", 60_000, T0 + 30_000)
            .unwrap();
        let seen = tick(&mut observer, &cells, &undraining, start, 31);
        assert_eq!(seen.control, CellControl::AutoUndraining);
        assert_eq!(
            seen.breaker_open_since, None,
            "no request has tested it yet"
        );
        // The first request after the open time half-opens it; a failed probe re-opens it.
        fail(cell, at(40));
        assert_eq!(
            tick(&mut observer, &cells, &undraining, start, 41).breaker_open_since,
            Some(at(41))
        );
    }
}
