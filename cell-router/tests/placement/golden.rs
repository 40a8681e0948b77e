//! Backwards compatibility: a user must not change cell because we upgraded.
//!
//! These vectors were computed once, with cell-router 0.1.0, and cross-checked against an
//! independent implementation of `docs/placement.md` (Python over the C reference xxHash
//! library). Cellgate instances of different versions run side by side during a rollout and
//! must agree on every user's cell; ramps must agree on who has moved; logs must keep
//! correlating. If a test here fails, the change moves users: revert it. Never regenerate
//! these tables to make a test pass.

use cell_router::{KEY_HASH_SEED, Placement, RAMP_SEED, cell_seed, key_hash, ramp_point};

/// Equal weights, in this configuration order.
const UNIFORM_CELLS: [(&str, f64); 3] = [("cell-1", 1.0), ("cell-2", 1.0), ("cell-3", 1.0)];

/// Key and its full ranking over [`UNIFORM_CELLS`], home first.
const UNIFORM_RANKINGS: [(&str, [&str; 3]); 12] = [
    ("alice", ["cell-1", "cell-2", "cell-3"]),
    ("bob", ["cell-1", "cell-3", "cell-2"]),
    ("carol", ["cell-3", "cell-2", "cell-1"]),
    ("dave", ["cell-1", "cell-2", "cell-3"]),
    ("eve", ["cell-3", "cell-2", "cell-1"]),
    ("frank", ["cell-2", "cell-3", "cell-1"]),
    ("judy", ["cell-2", "cell-3", "cell-1"]),
    ("mallory", ["cell-1", "cell-3", "cell-2"]),
    ("user-42", ["cell-3", "cell-1", "cell-2"]),
    ("", ["cell-3", "cell-2", "cell-1"]),
    ("ünïcödé", ["cell-3", "cell-1", "cell-2"]),
    ("0123456789abcdef", ["cell-1", "cell-3", "cell-2"]),
];

/// Unequal weights, and a cell with weight 0 that must never appear.
const WEIGHTED_CELLS: [(&str, f64); 4] = [
    ("cell-1", 1.0),
    ("cell-2", 2.0),
    ("cell-3", 0.5),
    ("cell-4", 0.0),
];

/// Key and its full ranking over [`WEIGHTED_CELLS`], home first.
const WEIGHTED_RANKINGS: [(&str, [&str; 3]); 12] = [
    ("alice", ["cell-1", "cell-2", "cell-3"]),
    ("bob", ["cell-2", "cell-1", "cell-3"]),
    ("carol", ["cell-2", "cell-3", "cell-1"]),
    ("dave", ["cell-2", "cell-1", "cell-3"]),
    ("eve", ["cell-2", "cell-3", "cell-1"]),
    ("frank", ["cell-2", "cell-3", "cell-1"]),
    ("judy", ["cell-2", "cell-1", "cell-3"]),
    ("mallory", ["cell-1", "cell-2", "cell-3"]),
    ("user-42", ["cell-3", "cell-1", "cell-2"]),
    ("", ["cell-3", "cell-2", "cell-1"]),
    ("ünïcödé", ["cell-1", "cell-3", "cell-2"]),
    ("0123456789abcdef", ["cell-1", "cell-2", "cell-3"]),
];

/// Key and the score of each of [`WEIGHTED_CELLS`], in configuration order.
const WEIGHTED_SCORES: [(&str, [f64; 4]); 12] = [
    (
        "alice",
        [
            13.848743019005553,
            2.1168388606411335,
            0.35034051933248633,
            0.0,
        ],
    ),
    (
        "bob",
        [
            1.9146166713251302,
            2.0759752147393757,
            0.5538180409598094,
            0.0,
        ],
    ),
    (
        "carol",
        [
            0.4639702440528965,
            1.3652099235682755,
            0.47045090656771127,
            0.0,
        ],
    ),
    (
        "dave",
        [
            9.242080459120388,
            13.029546317490784,
            1.8361245213339596,
            0.0,
        ],
    ),
    (
        "eve",
        [0.8358090592263729, 32.406430459052, 13.083567406896483, 0.0],
    ),
    (
        "frank",
        [
            0.8669094393354578,
            10.116515172096864,
            0.9202578298364222,
            0.0,
        ],
    ),
    (
        "judy",
        [
            1.0287122206986443,
            2.33062835148473,
            0.5263043849733395,
            0.0,
        ],
    ),
    (
        "mallory",
        [
            1.0766164040088864,
            0.8195094478848581,
            0.46570408365149113,
            0.0,
        ],
    ),
    (
        "user-42",
        [2.304296484200311, 1.905334055128304, 5.585957327312088, 0.0],
    ),
    (
        "",
        [
            0.7346573667781426,
            10.360572198906977,
            38.58268730510565,
            0.0,
        ],
    ),
    (
        "ünïcödé",
        [
            2.0974678556934983,
            0.7131547787859737,
            1.8927392295814576,
            0.0,
        ],
    ),
    (
        "0123456789abcdef",
        [
            3.077286797721276,
            0.720432220092621,
            0.6380173778919073,
            0.0,
        ],
    ),
];

/// Key, its `key_hash` and its `ramp_point`.
const KEY_HASHES: [(&str, u64, f64); 12] = [
    ("alice", 0x417098c12955075d, 0.20809347711479242),
    ("bob", 0xda6402e5e7a88e15, 0.922783803248474),
    ("carol", 0xa76c1d9e51dced74, 0.3084409536223415),
    ("dave", 0x449c8cb9178e5240, 0.3343088976343789),
    ("eve", 0x2f48aa1001ccbf65, 0.22905473507625207),
    ("frank", 0x4134117c3f9135e9, 0.6561711204032001),
    ("judy", 0x5d5a8cc1f6b07052, 0.8359106090650115),
    ("mallory", 0xfe5c058f5656b77d, 0.6372293711582796),
    ("user-42", 0xfdd3a7b6396d9814, 0.5173693384877756),
    ("", 0x882f2602874e516e, 0.5499719926542046),
    ("ünïcödé", 0x9ffad1addfc9fdd5, 0.2888160414939904),
    ("0123456789abcdef", 0xc675748ffed13a82, 0.9873586996718826),
];

#[test]
fn constants_are_stable() {
    assert_eq!(RAMP_SEED, 0x6365_6c6c_6761_7465);
    assert_eq!(KEY_HASH_SEED, 0x6b65_792d_6861_7368);
}

#[test]
fn cell_seeds_are_stable() {
    assert_eq!(cell_seed("cell-1"), 0xe91f_59b4_5196_ebae);
    assert_eq!(cell_seed("cell-2"), 0x9f69_e852_c11c_f23e);
    assert_eq!(cell_seed("cell-3"), 0xd803_4296_9210_f600);
    assert_eq!(cell_seed("cell-4"), 0x34eb_4c16_e7e7_a629);
}

#[test]
fn uniform_cells_keep_their_users() {
    let placement = Placement::new(UNIFORM_CELLS).unwrap();
    for (key, expected) in UNIFORM_RANKINGS {
        assert_ranking(&placement, key, &expected);
    }
}

#[test]
fn weighted_cells_keep_their_users() {
    let placement = Placement::new(WEIGHTED_CELLS).unwrap();
    for (key, expected) in WEIGHTED_RANKINGS {
        assert_ranking(&placement, key, &expected);
    }
}

#[test]
fn weighted_scores_are_stable() {
    let placement = Placement::new(WEIGHTED_CELLS).unwrap();
    for (key, expected) in WEIGHTED_SCORES {
        for (idx, want) in placement.indices().zip(expected) {
            let got = placement.score(key.as_bytes(), idx);
            // `ln` may differ in the last ulp between math libraries; rankings above are exact.
            assert!(
                (got - want).abs() <= want * 1e-12,
                "score of {} for {key:?}: got {got:?}, want {want:?}",
                placement.name(idx)
            );
        }
    }
}

#[test]
fn key_hashes_and_ramp_points_are_stable() {
    for (key, hash, point) in KEY_HASHES {
        assert_eq!(key_hash(key.as_bytes()), hash, "key_hash({key:?})");
        // Exact: ramp_point involves no rounding.
        assert_eq!(
            ramp_point(key.as_bytes()).to_bits(),
            point.to_bits(),
            "ramp_point({key:?})"
        );
    }
}

fn assert_ranking(placement: &Placement, key: &str, expected: &[&str]) {
    let ranking: Vec<&str> = placement
        .rank(key.as_bytes())
        .into_iter()
        .map(|idx| placement.name(idx))
        .collect();
    assert_eq!(ranking, expected, "ranking of {key:?}");
    assert_eq!(
        placement.name(placement.home(key.as_bytes())),
        expected[0],
        "home of {key:?}"
    );
}
