//! Routing of pinned keys: pins override placement, and follow drains unless told not to.

use cell_router::{Directory, Guard, Pin, Placement, Route, RouteReason, ramp_point};

use crate::support::{T0, cell, drained, keys, placement, table, weighted};

/// `directory` with every key pinned to `to`.
fn pin_all(
    p: &Placement,
    directory: &Directory,
    keys: &[Vec<u8>],
    to: &str,
    follow: bool,
) -> Directory {
    keys.iter().fold(directory.clone(), |dir, key| {
        dir.pin(p, std::str::from_utf8(key).unwrap(), to, follow)
            .unwrap()
    })
}

#[test]
fn pinned_keys_go_to_their_pin() {
    let p = placement(3);
    let all = keys(1, 400);
    let (pinned, free) = all.split_at(200);
    let dir = pin_all(&p, &Directory::default(), pinned, "cell-3", true);
    let t = table(&p, &dir);
    for key in pinned {
        let route = t.route(key, T0);
        assert_eq!(
            route,
            Route {
                cell: cell(3),
                reason: RouteReason::Pinned
            }
        );
    }
    for key in free {
        let route = t.route(key, T0);
        assert_eq!(
            route,
            Route {
                cell: p.home(key),
                reason: RouteReason::Home
            }
        );
    }
}

#[test]
fn pins_follow_a_drain_along_their_own_ranking() {
    let p = placement(4);
    let all = keys(2, 500);
    let dir = pin_all(&p, &Directory::default(), &all, "cell-3", true);
    let dir = drained(&p, &dir, "cell-3", 1_000, T0);
    let t = table(&p, &dir);
    let mut moved = 0;
    for key in &all {
        let fallback = p.rank(key).into_iter().find(|&c| c != cell(3)).unwrap();
        let route = t.route(key, T0 + 500);
        if ramp_point(key) < 0.5 {
            moved += 1;
            let reason = RouteReason::PinMovedByDrain { pinned: cell(3) };
            assert_eq!(
                route,
                Route {
                    cell: fallback,
                    reason
                }
            );
        } else {
            assert_eq!(
                route,
                Route {
                    cell: cell(3),
                    reason: RouteReason::Pinned
                }
            );
        }
        let done = t.route(key, T0 + 1_000);
        assert_eq!(
            done.cell, fallback,
            "at the end of the ramp every pinned key has moved"
        );
    }
    assert!(
        (150..350).contains(&moved),
        "{moved} of 500 moved at p = 0.5"
    );
}

#[test]
fn a_following_pin_obeys_drains_of_its_fallbacks_too() {
    let p = placement(3);
    let all = keys(3, 300);
    let dir = pin_all(&p, &Directory::default(), &all, "cell-3", true);
    let dir = drained(&p, &dir, "cell-3", 0, T0);
    let dir = drained(&p, &dir, "cell-1", 0, T0);
    let t = table(&p, &dir);
    for key in &all {
        let reason = RouteReason::PinMovedByDrain { pinned: cell(3) };
        assert_eq!(
            t.route(key, T0),
            Route {
                cell: cell(2),
                reason
            }
        );
    }
}

#[test]
fn pins_not_following_drains_stay_put() {
    let p = placement(3);
    let all = keys(4, 300);
    let dir = pin_all(&p, &Directory::default(), &all, "cell-2", false);
    let dir = dir.evacuate(&p, "cell-2", T0, Guard::default()).unwrap();
    let t = table(&p, &dir);
    for key in &all {
        assert_eq!(
            t.route(key, T0),
            Route {
                cell: cell(2),
                reason: RouteReason::Pinned
            }
        );
    }
}

#[test]
fn pins_with_nowhere_to_go_stay_on_their_cell() {
    let p = placement(2);
    let dir = Directory::default()
        .pin(&p, "alice", "cell-2", true)
        .unwrap();
    let dir = drained(&p, &dir, "cell-1", 0, T0);
    let dir = drained(&p, &dir, "cell-2", 0, T0);
    let route = table(&p, &dir).route(b"alice", T0);
    assert_eq!(
        route,
        Route {
            cell: cell(2),
            reason: RouteReason::NoneAvailable
        }
    );
}

#[test]
fn pins_reach_cells_with_weight_zero() {
    let p = weighted(&[1.0, 1.0, 0.0]);
    let dir = Directory::default()
        .pin(&p, "canary-user", "cell-3", true)
        .unwrap();
    assert_eq!(dir.pins["canary-user"], Pin::new("cell-3"));
    let route = table(&p, &dir).route(b"canary-user", T0);
    assert_eq!(
        route,
        Route {
            cell: cell(3),
            reason: RouteReason::Pinned
        }
    );
}
