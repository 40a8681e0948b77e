//! Auto-evacuation decisions: thresholds, the cap, human precedence, recovery.

use std::time::Instant;

use cell_router::containment::{
    AutoEvacuation, AutoEvacuationConfig, CellAction, CellControl, CellHealth, HoldReason,
};

use crate::support::{secs, t0};

fn enabled() -> AutoEvacuation {
    AutoEvacuation::new(AutoEvacuationConfig {
        enabled: true,
        ..AutoEvacuationConfig::default()
    })
}

fn serving() -> CellHealth {
    CellHealth::default()
}

fn open_since(t: Instant) -> CellHealth {
    CellHealth {
        breaker_open_since: Some(t),
        ..CellHealth::default()
    }
}

#[test]
fn evacuates_after_the_breaker_stays_open_long_enough() {
    let start = t0();
    let auto = enabled();
    let cells = [serving(), open_since(start), serving()];
    assert_eq!(auto.decide(&cells, start + secs(29)).evacuate, None);
    let d = auto.decide(&cells, start + secs(30));
    assert_eq!(
        d.evacuate,
        Some(CellAction {
            cell: 1,
            after: secs(30)
        })
    );
    assert_eq!(d.held, None);
}

#[test]
fn disabled_by_default_but_still_undrains() {
    let start = t0();
    let auto = AutoEvacuation::default();
    let evacuated = CellHealth {
        control: CellControl::AutoEvacuated,
        healthy_since: Some(start),
        ..CellHealth::default()
    };
    let cells = [open_since(start), evacuated, serving()];
    let d = auto.decide(&cells, start + secs(60));
    assert_eq!(d.evacuate, None);
    assert_eq!(
        d.undrain,
        Some(CellAction {
            cell: 1,
            after: secs(60)
        })
    );
}

#[test]
fn the_cap_holds_when_a_second_cell_dies() {
    let start = t0();
    let auto = enabled();
    let evacuated = CellHealth {
        control: CellControl::AutoEvacuated,
        breaker_open_since: Some(start),
        ..CellHealth::default()
    };
    let cells = [evacuated, open_since(start), serving()];
    let d = auto.decide(&cells, start + secs(60));
    assert_eq!(d.evacuate, None);
    assert_eq!(
        d.held,
        Some((
            CellAction {
                cell: 1,
                after: secs(60)
            },
            HoldReason::CapReached
        ))
    );
}

#[test]
fn a_human_decision_wins() {
    let start = t0();
    let auto = enabled();
    let human = CellHealth {
        control: CellControl::Human,
        breaker_open_since: Some(start),
        healthy_since: Some(start),
    };
    let cells = [human, serving()];
    let d = auto.decide(&cells, start + secs(600));
    assert_eq!((d.evacuate, d.undrain, d.held), (None, None, None));
}

#[test]
fn a_failure_of_every_cell_is_not_evacuated() {
    let start = t0();
    let auto = enabled();
    let cells = [
        open_since(start),
        open_since(start + secs(1)),
        open_since(start),
    ];
    let d = auto.decide(&cells, start + secs(60));
    assert_eq!(d.evacuate, None);
    let due = CellAction {
        cell: 0,
        after: secs(60),
    };
    assert_eq!(d.held, Some((due, HoldReason::NoHealthyPeer)));
}

#[test]
fn the_longest_open_goes_first_and_recovery_needs_time() {
    let start = t0();
    let auto = AutoEvacuation::new(AutoEvacuationConfig {
        enabled: true,
        max_auto_evacuated: 2,
        ..AutoEvacuationConfig::default()
    });
    let cells = [
        serving(),
        open_since(start + secs(5)),
        open_since(start),
        serving(),
    ];
    assert_eq!(
        auto.decide(&cells, start + secs(40))
            .evacuate
            .map(|a| a.cell),
        Some(2)
    );
    let recovering = CellHealth {
        control: CellControl::AutoEvacuated,
        healthy_since: Some(start + secs(10)),
        ..CellHealth::default()
    };
    let cells = [serving(), recovering];
    assert_eq!(auto.decide(&cells, start + secs(69)).undrain, None);
    assert_eq!(
        auto.decide(&cells, start + secs(70))
            .undrain
            .map(|a| a.cell),
        Some(1)
    );
    assert_eq!(auto.decide(&[], start).evacuate, None);
}

#[test]
fn an_undraining_cell_keeps_its_slot_until_its_ramp_completes() {
    let start = t0();
    let auto = enabled();
    let undraining = CellHealth {
        control: CellControl::AutoUndraining,
        healthy_since: Some(start),
        ..CellHealth::default()
    };
    let cells = [undraining, open_since(start), serving()];
    let d = auto.decide(&cells, start + secs(60));
    assert_eq!(d.undrain, None, "its undrain is under way");
    assert_eq!(d.evacuate, None);
    assert_eq!(
        d.held.map(|(a, r)| (a.cell, r)),
        Some((1, HoldReason::CapReached))
    );
}

#[test]
fn a_failed_recovery_is_evacuated_again_without_another_slot() {
    let start = t0();
    let auto = enabled();
    let relapsed = CellHealth {
        control: CellControl::AutoUndraining,
        breaker_open_since: Some(start + secs(5)),
        ..CellHealth::default()
    };
    // Another cell's breaker has been open for longer, but it needs a slot and the relapsed
    // cell holds the only one: the relapsed cell goes first.
    let cells = [open_since(start), relapsed, serving()];
    let d = auto.decide(&cells, start + secs(35));
    assert_eq!(
        d.evacuate,
        Some(CellAction {
            cell: 1,
            after: secs(30)
        })
    );
    assert_eq!(d.held, None);
}

#[test]
fn control_follows_the_directory() {
    use cell_router::{Directory, Guard, Placement};
    let p = Placement::new([("cell-1", 1.0), ("cell-2", 1.0)]).unwrap();
    let now = 1_700_000_000_000;
    let auto = Directory::default()
        .auto_drain(&p, "cell-1", 1_000, now, Guard::default())
        .unwrap();
    assert_eq!(
        CellControl::of(&auto, "cell-1", now),
        CellControl::AutoEvacuated
    );
    assert_eq!(
        CellControl::of(&auto, "cell-2", now),
        CellControl::Automatic
    );
    let human = auto.undrain(&p, "cell-1", 1_000, now + 10).unwrap();
    assert_eq!(
        CellControl::of(&human, "cell-1", now + 10),
        CellControl::Human
    );
    assert_eq!(
        CellControl::of(&human, "cell-1", now + 2_000),
        CellControl::Automatic,
        "back to active: the automation may act again"
    );
}

#[test]
fn config_is_validated() {
    let ok = AutoEvacuationConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    let zero_cap = AutoEvacuationConfig {
        max_auto_evacuated: 0,
        ..ok.clone()
    };
    assert!(zero_cap.validate().is_err());
    let long = AutoEvacuationConfig {
        undrain_over: std::time::Duration::from_secs(2 * 86_400),
        ..ok
    };
    assert!(long.validate().is_err());
}
