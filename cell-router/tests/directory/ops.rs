//! Directory operations: state transitions, versions, validation and the drain guard.

use cell_router::{
    CellState, Directory, DirectoryCell, DirectoryError, Guard, MAX_KEY_LEN, MAX_RAMP_MS, Pin,
};

use crate::support::{T0, drained, placement, weighted};

fn draining(since_ms: u64, over_ms: u64) -> CellState {
    CellState::Draining { since_ms, over_ms }
}

fn undraining(since_ms: u64, over_ms: u64) -> CellState {
    CellState::Undraining { since_ms, over_ms }
}

#[test]
fn drain_starts_a_ramp_now_and_bumps_the_version() {
    let p = placement(3);
    let dir = Directory::default()
        .drain(&p, "cell-2", 60_000, T0, Guard::default())
        .unwrap();
    assert_eq!(dir.version, 1);
    assert_eq!(dir.state("cell-2"), draining(T0, 60_000));
    assert_eq!(dir.state("cell-1"), CellState::Active);
    assert_eq!(dir.cells.len(), 1, "active cells are not listed");
}

#[test]
fn repeating_a_drain_keeps_its_ramp() {
    let p = placement(3);
    let once = drained(&p, &Directory::default(), "cell-2", 60_000, T0);
    let twice = drained(&p, &once, "cell-2", 60_000, T0 + 20_000);
    assert_eq!(twice.state("cell-2"), draining(T0, 60_000));
    assert_eq!(
        twice.version, 2,
        "every successful operation bumps the version"
    );
}

#[test]
fn a_new_duration_repaces_the_drain_from_where_it_is() {
    let p = placement(3);
    let slow = drained(&p, &Directory::default(), "cell-2", 100_000, T0);
    // 25% of the way through the slow ramp, speed up to 10 s: 2.5 s already done.
    let fast = drained(&p, &slow, "cell-2", 10_000, T0 + 25_000);
    assert_eq!(fast.state("cell-2"), draining(T0 + 22_500, 10_000));
    assert_eq!(fast.state("cell-2").away(T0 + 25_000), 0.25);
    assert_eq!(fast.state("cell-2").away(T0 + 32_500), 1.0);
}

#[test]
fn undrain_turns_a_drain_around_without_a_jump() {
    let p = placement(3);
    let dir = drained(&p, &Directory::default(), "cell-2", 60_000, T0);
    // 40% away at T0 + 24 s; undrain over 10 s: 60% of it is already done.
    let back = dir.undrain(&p, "cell-2", 10_000, T0 + 24_000).unwrap();
    assert_eq!(back.state("cell-2"), undraining(T0 + 18_000, 10_000));
    assert_eq!(back.state("cell-2").away(T0 + 24_000), 0.4);
    // And around again: 20% away at T0 + 26 s, drain over 60 s.
    let again = drained(&p, &back, "cell-2", 60_000, T0 + 26_000);
    assert_eq!(again.state("cell-2"), draining(T0 + 14_000, 60_000));
    assert_eq!(again.version, 3);
}

#[test]
fn undrain_of_a_drained_cell_ramps_up_from_zero() {
    let p = placement(3);
    let dir = Directory::default()
        .evacuate(&p, "cell-3", T0, Guard::default())
        .unwrap();
    assert_eq!(dir.state("cell-3"), CellState::Drained);
    let up = dir.undrain(&p, "cell-3", 30_000, T0 + 5).unwrap();
    assert_eq!(up.state("cell-3"), undraining(T0 + 5, 30_000));
    let again = up.undrain(&p, "cell-3", 30_000, T0 + 10_000).unwrap();
    assert_eq!(again.state("cell-3"), undraining(T0 + 5, 30_000));
}

#[test]
fn zero_duration_is_immediate() {
    let p = placement(3);
    let dir = drained(&p, &Directory::default(), "cell-1", 0, T0);
    assert_eq!(dir.state("cell-1"), CellState::Drained);
    let back = dir.undrain(&p, "cell-1", 0, T0).unwrap();
    assert_eq!(back.state("cell-1"), CellState::Active);
    assert!(back.cells.is_empty());
    assert_eq!(back.version, 2);
}

#[test]
fn reaching_a_state_twice_is_refused() {
    let p = placement(3);
    let base = Directory::default();
    assert_eq!(
        base.undrain(&p, "cell-1", 1_000, T0).unwrap_err(),
        DirectoryError::AlreadyInState {
            cell: "cell-1".into(),
            state: "active"
        }
    );
    // A completed ramp counts as drained.
    let dir = drained(&p, &base, "cell-1", 1_000, T0);
    for err in [
        dir.drain(&p, "cell-1", 1_000, T0 + 1_000, Guard::forced()),
        dir.evacuate(&p, "cell-1", T0 + 1_000, Guard::forced()),
    ] {
        let err = err.unwrap_err();
        assert_eq!(err.code(), "already_in_state");
        assert_eq!(err.to_string(), "cell \"cell-1\" is already drained");
    }
    // Mid-ramp, evacuate finishes the drain at once.
    let now = dir
        .evacuate(&p, "cell-1", T0 + 10, Guard::default())
        .unwrap();
    assert_eq!(now.state("cell-1"), CellState::Drained);
}

#[test]
fn durations_beyond_a_day_are_invalid() {
    let p = placement(2);
    let base = Directory::default();
    assert!(
        base.drain(&p, "cell-1", MAX_RAMP_MS, T0, Guard::default())
            .is_ok()
    );
    let err = base
        .drain(&p, "cell-1", MAX_RAMP_MS + 1, T0, Guard::default())
        .unwrap_err();
    assert_eq!(
        err,
        DirectoryError::InvalidDuration {
            over_ms: MAX_RAMP_MS + 1,
            max_ms: 86_400_000
        }
    );
    let dir = drained(&p, &base, "cell-1", 0, T0);
    assert_eq!(
        dir.undrain(&p, "cell-1", u64::MAX, T0).unwrap_err().code(),
        "invalid_duration"
    );
}

#[test]
fn unknown_cells_are_refused_listing_the_known_ones() {
    let p = placement(3);
    let base = Directory::default();
    let expected = DirectoryError::UnknownCell {
        cell: "cell-9".into(),
        known: vec!["cell-1".into(), "cell-2".into(), "cell-3".into()],
    };
    assert_eq!(
        base.drain(&p, "cell-9", 1, T0, Guard::default())
            .unwrap_err(),
        expected
    );
    assert_eq!(base.undrain(&p, "cell-9", 1, T0).unwrap_err(), expected);
    assert_eq!(
        base.evacuate(&p, "cell-9", T0, Guard::default())
            .unwrap_err(),
        expected
    );
    assert_eq!(base.pin(&p, "alice", "cell-9", true).unwrap_err(), expected);
    assert_eq!(
        expected.to_string(),
        "unknown cell \"cell-9\"; known cells: cell-1, cell-2, cell-3"
    );
}

#[test]
fn guard_refuses_to_drain_the_last_serving_cell() {
    let p = placement(2);
    let dir = drained(&p, &Directory::default(), "cell-1", 60_000, T0);
    let err = dir
        .drain(&p, "cell-2", 60_000, T0, Guard::default())
        .unwrap_err();
    assert_eq!(
        err,
        DirectoryError::WouldLeaveTooFewActive {
            cell: "cell-2".into(),
            active_after: 0,
            min: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "refusing to drain \"cell-2\": only 0 cell(s) would remain active or undraining, \
         at least 1 required (use force to override)"
    );
    assert_eq!(
        dir.evacuate(&p, "cell-2", T0, Guard::default())
            .unwrap_err(),
        err
    );
    // force overrides.
    let all = dir.evacuate(&p, "cell-2", T0, Guard::forced()).unwrap();
    assert_eq!(all.state("cell-2"), CellState::Drained);
    // Re-draining or evacuating a cell that is already out of service is not refused.
    assert!(all.evacuate(&p, "cell-1", T0, Guard::default()).is_ok());
    assert!(dir.drain(&p, "cell-1", 5, T0, Guard::default()).is_ok());
}

#[test]
fn guard_counts_undraining_cells_but_not_weight_zero_ones() {
    let p = weighted(&[1.0, 1.0, 1.0, 0.0]);
    let guard = Guard {
        min_active_cells: 2,
        force: false,
    };
    let base = Directory::default();
    let one_out = drained(&p, &base, "cell-1", 0, T0);
    // cell-2 and cell-3 serve; draining cell-2 would leave 1 (cell-4 has weight 0).
    let err = one_out.drain(&p, "cell-2", 1, T0, guard).unwrap_err();
    assert!(matches!(
        err,
        DirectoryError::WouldLeaveTooFewActive {
            active_after: 1,
            min: 2,
            ..
        }
    ));
    // An undraining cell counts as serving.
    let coming_back = one_out.undrain(&p, "cell-1", 60_000, T0).unwrap();
    assert!(coming_back.drain(&p, "cell-2", 1, T0, guard).is_ok());
    // Draining the weight-0 cell takes nothing out of service.
    assert!(
        base.drain(
            &p,
            "cell-4",
            1,
            T0,
            Guard {
                min_active_cells: 5,
                force: false
            }
        )
        .is_ok()
    );
    // A drain that completed counts as drained, an undrain that completed as active.
    let settled = drained(&p, &base, "cell-1", 10, T0);
    assert!(settled.drain(&p, "cell-2", 1, T0 + 10, guard).is_err());
    assert!(
        coming_back
            .drain(&p, "cell-2", 1, T0 + 60_000, guard)
            .is_ok()
    );
    assert_eq!(Guard::default().min_active_cells, 1);
    assert!(!Guard::default().force);
}

#[test]
fn documents_are_kept_tidy() {
    let p = placement(4);
    let dir = Directory {
        version: 41,
        cells: vec![
            DirectoryCell {
                name: "cell-9".into(),
                state: CellState::Drained,
                auto: false,
            },
            DirectoryCell {
                name: "cell-3".into(),
                state: draining(T0 - 2_000, 1_000),
                auto: false,
            },
            DirectoryCell {
                name: "cell-1".into(),
                state: undraining(T0 - 2_000, 1_000),
                auto: false,
            },
            DirectoryCell {
                name: "cell-3".into(),
                state: CellState::Active,
                auto: false,
            },
        ],
        ..Directory::default()
    };
    let next = drained(&p, &dir, "cell-2", 5_000, T0);
    assert_eq!(next.version, 42);
    let listed: Vec<_> = next
        .cells
        .iter()
        .map(|c| (c.name.as_str(), c.state.clone()))
        .collect();
    // Sorted by name, completed ramps settled, active cells dropped, the first of duplicate
    // entries kept, unknown cells kept for gateways that know them.
    assert_eq!(
        listed,
        [
            ("cell-2", draining(T0, 5_000)),
            ("cell-3", CellState::Drained),
            ("cell-9", CellState::Drained),
        ]
    );
}

#[test]
fn pins_are_validated_and_replaced() {
    let p = placement(3);
    let base = Directory::default();
    let dir = base.pin(&p, "alice", "cell-3", true).unwrap();
    assert_eq!(dir.version, 1);
    assert_eq!(dir.pin_of("alice"), Some(&Pin::new("cell-3")));
    let dir = dir.pin(&p, "alice", "cell-2", false).unwrap();
    assert_eq!(
        dir.pins["alice"],
        Pin {
            cell: "cell-2".into(),
            follow_drain: false
        }
    );
    assert_eq!(dir.pins.len(), 1);

    let long = "k".repeat(MAX_KEY_LEN + 1);
    assert!(
        base.pin(&p, &"k".repeat(MAX_KEY_LEN), "cell-1", true)
            .is_ok()
    );
    assert_eq!(
        base.pin(&p, &long, "cell-1", true).unwrap_err(),
        DirectoryError::KeyTooLong { len: 257, max: 256 }
    );
    for bad in ["", "al\nice", "tab\there", "del\u{7f}", "c1\u{85}"] {
        let err = base.pin(&p, bad, "cell-1", true).unwrap_err();
        assert_eq!(err.code(), "invalid_key", "{bad:?}");
    }
    assert!(base.pin(&p, "ünïcode user", "cell-1", true).is_ok());
}

#[test]
fn unpin_removes_a_pin_or_says_there_was_none() {
    let p = placement(3);
    let dir = Directory::default()
        .pin(&p, "alice", "cell-3", true)
        .unwrap();
    let gone = dir.unpin("alice").unwrap();
    assert!(gone.pins.is_empty());
    assert_eq!(gone.version, 2);
    let err = gone.unpin("alice").unwrap_err();
    assert_eq!(
        err,
        DirectoryError::NotPinned {
            key: "alice".into()
        }
    );
    assert_eq!(err.to_string(), "key \"alice\" is not pinned");
    assert_eq!(gone.unpin("").unwrap_err().code(), "invalid_key");
}
