//! The routing table: accessors, effective weights, and robustness to odd directories.

use cell_router::{
    CellState, Directory, DirectoryCell, Guard, Pin, Route, RouteReason, RoutingTable,
};

use crate::support::{T0, cell, drained, keys, placement, table, weighted};

#[test]
fn an_empty_directory_routes_every_key_home() {
    let p = placement(5);
    let t = RoutingTable::new(p.clone(), &Directory::default());
    assert_eq!(t.version(), 0);
    for key in keys(5, 1_000) {
        assert_eq!(
            t.route(&key, T0),
            Route {
                cell: p.home(&key),
                reason: RouteReason::Home
            }
        );
    }
}

#[test]
fn unknown_cells_in_the_directory_are_ignored() {
    let p = placement(3);
    let mut dir = Directory {
        version: 9,
        cells: vec![
            DirectoryCell {
                name: "cell-9".into(),
                state: CellState::Drained,
                auto: false,
            },
            DirectoryCell {
                name: "".into(),
                state: CellState::Drained,
                auto: false,
            },
        ],
        ..Directory::default()
    };
    dir.pins.insert("alice".into(), Pin::new("gone"));
    let t = table(&p, &dir);
    assert_eq!(t.version(), 9);
    assert_eq!(t.directory(), &dir);
    assert_eq!(t.placement().len(), 3);
    for key in keys(6, 1_000).iter().chain([&b"alice".to_vec()]) {
        assert_eq!(
            t.route(key, T0),
            Route {
                cell: p.home(key),
                reason: RouteReason::Home
            }
        );
    }
}

#[test]
fn a_cell_listed_twice_takes_its_first_entry() {
    let p = placement(2);
    let dir = Directory {
        version: 1,
        cells: vec![
            DirectoryCell {
                name: "cell-1".into(),
                state: CellState::Drained,
                auto: false,
            },
            DirectoryCell {
                name: "cell-1".into(),
                state: CellState::Active,
                auto: false,
            },
        ],
        ..Directory::default()
    };
    let t = table(&p, &dir);
    assert_eq!(t.state(cell(1), T0), CellState::Drained);
    assert_eq!(dir.state("cell-1"), CellState::Drained);
}

#[test]
fn effective_weights_and_states_follow_the_ramp() {
    let p = weighted(&[2.0, 1.0, 1.0]);
    let dir = drained(&p, &Directory::default(), "cell-1", 1_000, T0);
    let dir = drained(&p, &dir, "cell-2", 0, T0);
    let t = table(&p, &dir);
    assert_eq!(t.effective_weight(cell(1), T0), 2.0);
    assert_eq!(t.effective_weight(cell(1), T0 + 250), 1.5);
    assert_eq!(t.effective_weight(cell(1), T0 + 1_000), 0.0);
    assert_eq!(t.effective_weight(cell(2), T0), 0.0);
    assert_eq!(t.effective_weight(cell(3), T0), 1.0);
    assert_eq!(
        t.state(cell(1), T0 + 999),
        CellState::Draining {
            since_ms: T0,
            over_ms: 1_000
        }
    );
    assert_eq!(t.state(cell(1), T0 + 1_000), CellState::Drained);
    assert_eq!(t.state(cell(3), T0), CellState::Active);
}

#[test]
fn with_every_cell_drained_keys_stay_home() {
    let p = placement(3);
    let dir = ["cell-1", "cell-2", "cell-3"]
        .iter()
        .fold(Directory::default(), |d, c| {
            d.evacuate(&p, c, T0, Guard::forced()).unwrap()
        });
    let t = table(&p, &dir);
    for key in keys(8, 300) {
        let expected = Route {
            cell: p.home(&key),
            reason: RouteReason::NoneAvailable,
        };
        assert_eq!(t.route(&key, T0), expected);
    }
}

#[test]
fn routes_with_more_cells_than_fit_inline() {
    let p = placement(40);
    let dir = drained(&p, &Directory::default(), "cell-7", 0, T0);
    let t = table(&p, &dir);
    for key in keys(9, 2_000) {
        let route = t.route(&key, T0);
        let ranking = p.rank(&key);
        if ranking[0] == cell(7) {
            let reason = RouteReason::MovedByDrain {
                from: cell(7),
                rank: 1,
            };
            assert_eq!(
                route,
                Route {
                    cell: ranking[1],
                    reason
                }
            );
        } else {
            assert_eq!(
                route,
                Route {
                    cell: ranking[0],
                    reason: RouteReason::Home
                }
            );
        }
    }
}
