//! The automation's operations: `auto_drain`/`auto_undrain` mark a cell `auto`, operators'
//! changes clear the mark, and the automation never overrides an operator.

use cell_router::containment::CellControl;
use cell_router::{CellState, Directory, DirectoryError, Guard};

use crate::support::{T0, placement};

fn control(dir: &Directory, cell: &str, now_ms: u64) -> CellControl {
    CellControl::of(dir, cell, now_ms)
}

#[test]
fn an_auto_drain_marks_the_cell_until_its_undrain_completes() {
    let p = placement(3);
    let dir = Directory::default();
    assert_eq!(control(&dir, "cell-2", T0), CellControl::Automatic);
    let drained = dir
        .auto_drain(&p, "cell-2", 10_000, T0, Guard::default())
        .unwrap();
    assert_eq!(drained.version, 1);
    assert!(drained.is_auto("cell-2"));
    assert_eq!(
        drained.state("cell-2"),
        CellState::Draining {
            since_ms: T0,
            over_ms: 10_000
        }
    );
    assert_eq!(control(&drained, "cell-2", T0), CellControl::AutoEvacuated);
    assert_eq!(
        control(&drained, "cell-2", T0 + 60_000),
        CellControl::AutoEvacuated,
        "settled to drained, still the automation's"
    );

    let back = drained
        .auto_undrain(&p, "cell-2", 60_000, T0 + 60_000)
        .unwrap();
    assert!(back.is_auto("cell-2"));
    assert_eq!(
        control(&back, "cell-2", T0 + 61_000),
        CellControl::AutoUndraining
    );
    assert_eq!(
        control(&back, "cell-2", T0 + 120_000),
        CellControl::Automatic
    );
    // Any later change settles the ramp and drops the entry, and its mark with it.
    let later = back.pin(&p, "alice", "cell-1", true).unwrap();
    let tidy = later
        .drain(&p, "cell-3", 1_000, T0 + 120_000, Guard::default())
        .unwrap();
    assert!(!tidy.is_auto("cell-2"));
    assert!(tidy.cells.iter().all(|c| c.name != "cell-2"));
}

#[test]
fn other_changes_keep_the_mark_of_other_cells() {
    let p = placement(3);
    let dir = Directory::default()
        .auto_drain(&p, "cell-2", 0, T0, Guard::default())
        .unwrap()
        .drain(&p, "cell-3", 60_000, T0 + 1, Guard::default())
        .unwrap();
    assert!(dir.is_auto("cell-2"));
    assert!(!dir.is_auto("cell-3"));
    assert_eq!(dir.state("cell-2"), CellState::Drained);
}

#[test]
fn any_operator_change_takes_the_cell_over() {
    let p = placement(3);
    let auto = Directory::default()
        .auto_drain(&p, "cell-2", 10_000, T0, Guard::default())
        .unwrap();
    let now = T0 + 5_000;
    let by_drain = auto
        .drain(&p, "cell-2", 10_000, now, Guard::default())
        .unwrap();
    let by_undrain = auto.undrain(&p, "cell-2", 10_000, now).unwrap();
    let by_evacuate = auto.evacuate(&p, "cell-2", now, Guard::default()).unwrap();
    for dir in [&by_drain, &by_undrain, &by_evacuate] {
        assert!(!dir.is_auto("cell-2"), "{dir:?}");
        assert_eq!(control(dir, "cell-2", now), CellControl::Human);
    }
    assert_eq!(
        by_drain.state("cell-2"),
        auto.state("cell-2"),
        "a repeated drain keeps the ramp, but the operator now owns it"
    );
}

#[test]
fn an_operator_takes_over_a_cell_the_automation_fully_drained() {
    let p = placement(3);
    let auto = Directory::default()
        .auto_drain(&p, "cell-2", 10_000, T0, Guard::default())
        .unwrap();
    // Long after the ramp: the cell is drained, and still the automation's.
    let now = T0 + 60_000;
    assert!(auto.is_auto("cell-2"));
    for dir in [
        auto.drain(&p, "cell-2", 10_000, now, Guard::default())
            .unwrap(),
        auto.evacuate(&p, "cell-2", now, Guard::default()).unwrap(),
    ] {
        assert!(!dir.is_auto("cell-2"), "{dir:?}");
        assert_eq!(control(&dir, "cell-2", now), CellControl::Human);
        assert_eq!(dir.state("cell-2").settled(now), CellState::Drained);
        // And the automation can no longer bring it back.
        assert!(dir.auto_undrain(&p, "cell-2", 10_000, now + 1).is_err());
    }
    // A human-drained cell is still "already drained".
    let human = auto.evacuate(&p, "cell-2", now, Guard::default()).unwrap();
    assert!(
        human
            .drain(&p, "cell-2", 10_000, now, Guard::default())
            .is_err()
    );
}

#[test]
fn the_automation_never_overrides_an_operator() {
    let p = placement(3);
    let human = Directory::default()
        .drain(&p, "cell-2", 60_000, T0, Guard::default())
        .unwrap();
    let refused = human.auto_drain(&p, "cell-2", 10_000, T0 + 1_000, Guard::default());
    assert_eq!(
        refused,
        Err(DirectoryError::NotAutomatic {
            cell: "cell-2".into(),
            state: "draining",
        })
    );
    assert_eq!(
        human.auto_undrain(&p, "cell-2", 10_000, T0 + 1_000),
        Err(DirectoryError::NotAutomatic {
            cell: "cell-2".into(),
            state: "draining",
        })
    );
    let undraining = human.undrain(&p, "cell-2", 60_000, T0 + 70_000).unwrap();
    assert!(matches!(
        undraining.auto_drain(&p, "cell-2", 10_000, T0 + 71_000, Guard::default()),
        Err(DirectoryError::NotAutomatic { .. })
    ));
    assert_eq!(
        refused.unwrap_err().code(),
        "not_automatic",
        "a stable code for logs and JSON"
    );
}

#[test]
fn repeated_automatic_changes_are_refused_not_rewritten() {
    let p = placement(3);
    let dir = Directory::default()
        .auto_drain(&p, "cell-2", 10_000, T0, Guard::default())
        .unwrap();
    assert!(matches!(
        dir.auto_drain(&p, "cell-2", 10_000, T0 + 1, Guard::default()),
        Err(DirectoryError::AlreadyInState { .. })
    ));
    let up = dir.auto_undrain(&p, "cell-2", 60_000, T0 + 20_000).unwrap();
    assert!(matches!(
        up.auto_undrain(&p, "cell-2", 60_000, T0 + 21_000),
        Err(DirectoryError::AlreadyInState { .. })
    ));
    assert!(matches!(
        Directory::default().auto_undrain(&p, "cell-2", 60_000, T0),
        Err(DirectoryError::AlreadyInState { .. })
    ));
}

#[test]
fn a_failed_recovery_turns_the_undrain_around_without_a_jump() {
    let p = placement(3);
    let up = Directory::default()
        .auto_drain(&p, "cell-2", 0, T0, Guard::default())
        .unwrap()
        .auto_undrain(&p, "cell-2", 10_000, T0 + 1_000)
        .unwrap();
    // 30% back at T0 + 4 s: 70% away; drain again over 10 s from there.
    let down = up
        .auto_drain(&p, "cell-2", 10_000, T0 + 4_000, Guard::default())
        .unwrap();
    assert!(down.is_auto("cell-2"));
    assert!((down.state("cell-2").away(T0 + 4_000) - 0.7).abs() < 1e-9);
}

#[test]
fn the_guard_applies_to_the_automation() {
    let p = placement(2);
    let dir = Directory::default()
        .drain(&p, "cell-1", 0, T0, Guard::default())
        .unwrap();
    assert!(matches!(
        dir.auto_drain(&p, "cell-2", 10_000, T0, Guard::default()),
        Err(DirectoryError::WouldLeaveTooFewActive { .. })
    ));
}

#[test]
fn the_stored_directory_counts_auto_evacuated_cells() {
    let p = placement(3);
    let dir = Directory::default()
        .auto_drain(&p, "cell-1", 10_000, T0, Guard::default())
        .unwrap();
    assert_eq!(dir.auto_evacuated_except("cell-2", T0 + 1), 1);
    assert_eq!(dir.auto_evacuated_except("cell-1", T0 + 1), 0);
    // An operator's drain does not count against the automation's cap.
    let human = dir
        .drain(&p, "cell-3", 10_000, T0, Guard::default())
        .unwrap();
    assert_eq!(human.auto_evacuated_except("cell-2", T0 + 1), 1);
}
