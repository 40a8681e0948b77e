//! The stored JSON format of the directory: a golden document and round trips.
//!
//! The golden strings are a compatibility contract (`docs/directory.md`): gateways of
//! different versions read each other's documents from Redis. Never edit them to make a test
//! pass; add fields in a backwards-compatible way instead.

use std::collections::BTreeMap;

use cell_router::{CellState, Directory, DirectoryCell, Pin};
use proptest::prelude::*;

/// The golden document, exactly as `serde_json::to_string` writes it.
const GOLDEN: &str = concat!(
    r#"{"version":7,"cells":["#,
    r#"{"name":"cell-2","state":"draining","since_ms":1700000000000,"over_ms":60000},"#,
    r#"{"name":"cell-3","state":"drained"},"#,
    r#"{"name":"cell-4","state":"undraining","since_ms":1700000030000,"over_ms":120000}],"#,
    r#""pins":{"alice":{"cell":"cell-1","follow_drain":true},"#,
    r#""bob":{"cell":"cell-3","follow_drain":false}}}"#
);

fn golden() -> Directory {
    let cells = vec![
        DirectoryCell {
            name: "cell-2".into(),
            state: CellState::Draining {
                since_ms: 1_700_000_000_000,
                over_ms: 60_000,
            },
            auto: false,
        },
        DirectoryCell {
            name: "cell-3".into(),
            state: CellState::Drained,
            auto: false,
        },
        DirectoryCell {
            name: "cell-4".into(),
            state: CellState::Undraining {
                since_ms: 1_700_000_030_000,
                over_ms: 120_000,
            },
            auto: false,
        },
    ];
    let pins = BTreeMap::from([
        ("alice".to_owned(), Pin::new("cell-1")),
        (
            "bob".to_owned(),
            Pin {
                cell: "cell-3".into(),
                follow_drain: false,
            },
        ),
    ]);
    Directory {
        version: 7,
        cells,
        pins,
    }
}

#[test]
fn golden_document_is_stable() {
    assert_eq!(serde_json::to_string(&golden()).unwrap(), GOLDEN);
    assert_eq!(serde_json::from_str::<Directory>(GOLDEN).unwrap(), golden());
}

#[test]
fn optional_fields_have_defaults_and_unknown_fields_are_ignored() {
    let doc = r#"{
        "version": 3,
        "written_by": "a newer gateway",
        "pins": {"carol": {"cell": "cell-2", "reason": "support ticket"}}
    }"#;
    let dir: Directory = serde_json::from_str(doc).unwrap();
    assert_eq!(dir.version, 3);
    assert!(dir.cells.is_empty());
    assert_eq!(
        dir.pins["carol"],
        Pin::new("cell-2"),
        "follow_drain defaults to true"
    );
    assert_eq!(
        serde_json::from_str::<Directory>(r#"{"version":0}"#).unwrap(),
        Directory::default()
    );
}

#[test]
fn the_auto_flag_is_written_only_when_set() {
    let doc = concat!(
        r#"{"version":9,"cells":["#,
        r#"{"name":"cell-2","state":"draining","since_ms":1700000000000,"over_ms":10000,"auto":true},"#,
        r#"{"name":"cell-3","state":"drained"}],"pins":{}}"#
    );
    let dir = Directory {
        version: 9,
        cells: vec![
            DirectoryCell {
                auto: true,
                ..DirectoryCell::new(
                    "cell-2",
                    CellState::Draining {
                        since_ms: 1_700_000_000_000,
                        over_ms: 10_000,
                    },
                )
            },
            DirectoryCell::new("cell-3", CellState::Drained),
        ],
        pins: BTreeMap::new(),
    };
    assert_eq!(serde_json::to_string(&dir).unwrap(), doc);
    assert_eq!(serde_json::from_str::<Directory>(doc).unwrap(), dir);
    assert!(dir.is_auto("cell-2") && !dir.is_auto("cell-3") && !dir.is_auto("cell-1"));
}

#[test]
fn older_readers_ignore_the_auto_flag() {
    // What a gateway without the field sees of a cell entry: the flattened state, with the
    // unknown `auto` key among its fields.
    for (json, state) in [
        (r#"{"state":"drained","auto":true}"#, CellState::Drained),
        (
            r#"{"state":"draining","since_ms":1,"over_ms":2,"auto":true}"#,
            CellState::Draining {
                since_ms: 1,
                over_ms: 2,
            },
        ),
    ] {
        assert_eq!(serde_json::from_str::<CellState>(json).unwrap(), state);
    }
}

#[test]
fn malformed_documents_are_rejected() {
    for bad in [
        r#"{}"#,
        r#"{"version":-1}"#,
        r#"{"version":1,"cells":[{"name":"cell-1","state":"sleeping"}]}"#,
        r#"{"version":1,"cells":[{"name":"cell-1","state":"draining","since_ms":1}]}"#,
        r#"{"version":1,"cells":[{"state":"drained"}]}"#,
        r#"{"version":1,"pins":{"alice":{"follow_drain":true}}}"#,
    ] {
        assert!(serde_json::from_str::<Directory>(bad).is_err(), "{bad}");
    }
}

#[test]
fn cell_states_serialize_with_their_name_as_tag() {
    let states = [
        CellState::Active,
        CellState::Draining {
            since_ms: 1,
            over_ms: 2,
        },
        CellState::Drained,
        CellState::Undraining {
            since_ms: 3,
            over_ms: 4,
        },
    ];
    for state in states {
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["state"], state.name());
    }
    let json = serde_json::to_string(&CellState::Undraining {
        since_ms: 3,
        over_ms: 4,
    })
    .unwrap();
    assert_eq!(json, r#"{"state":"undraining","since_ms":3,"over_ms":4}"#);
}

fn state() -> impl Strategy<Value = CellState> {
    prop_oneof![
        Just(CellState::Active),
        Just(CellState::Drained),
        (any::<u64>(), any::<u64>())
            .prop_map(|(since_ms, over_ms)| CellState::Draining { since_ms, over_ms }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(since_ms, over_ms)| CellState::Undraining { since_ms, over_ms }),
    ]
}

fn directory() -> impl Strategy<Value = Directory> {
    let cell = ("\\PC{1,12}", state(), any::<bool>())
        .prop_map(|(name, state, auto)| DirectoryCell { name, state, auto });
    let pin =
        ("\\PC{1,12}", any::<bool>()).prop_map(|(cell, follow_drain)| Pin { cell, follow_drain });
    (
        any::<u64>(),
        prop::collection::vec(cell, 0..6),
        prop::collection::btree_map("\\PC{1,20}", pin, 0..6),
    )
        .prop_map(|(version, cells, pins)| Directory {
            version,
            cells,
            pins,
        })
}

proptest! {
    #[test]
    fn json_round_trips(dir in directory()) {
        let json = serde_json::to_string(&dir).unwrap();
        prop_assert_eq!(serde_json::from_str::<Directory>(&json).unwrap(), dir.clone());
        let pretty = serde_json::to_string_pretty(&dir).unwrap();
        prop_assert_eq!(serde_json::from_str::<Directory>(&pretty).unwrap(), dir);
    }
}
