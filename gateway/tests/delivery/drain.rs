//! Workers route at delivery time: async requests for users of a drained cell go to each
//! user's fallback cell, while their entries stay in the home cell's partition.

use std::collections::HashSet;
use std::time::Duration;

use test_support::{Gateway, RedisServer, http};

use crate::support::{
    bin, config, enqueue_all, partition_of, recording_cells, serial, statuses, users_of,
    wait_settled, where_is,
};

const USERS: usize = 40;

#[test]
fn deliveries_for_a_drained_cell_go_to_the_fallback_cell() {
    let _serial = serial();
    let redis = RedisServer::start();
    let cells = recording_cells(3, &[]);
    let refs: Vec<_> = cells.iter().collect();
    let gateway = Gateway::start(bin(), &config(&redis, &refs, "500ms", ""));
    let users = users_of(&gateway, "user", "cell-2", USERS);

    let drained = http::post_json(
        gateway.admin_addr,
        "/admin/cells/cell-2/drain",
        r#"{"over":"0s","reason":"delivery test"}"#,
    )
    .unwrap();
    assert_eq!(drained.status, 200, "{}", drained.text());
    test_support::wait_until(Duration::from_secs(5), "cell-2's users to move", || {
        users.iter().all(|u| where_is(&gateway, u) != "cell-2")
    });
    let fallback: Vec<String> = users.iter().map(|u| where_is(&gateway, u)).collect();

    let requests: Vec<(String, String)> = users
        .iter()
        .map(|u| (u.clone(), format!("drain-{u}")))
        .collect();
    let ids = enqueue_all(&gateway, &requests, 2);
    wait_settled(
        &redis,
        &["cell-1", "cell-2", "cell-3"],
        Duration::from_secs(30),
    );

    for ((id, record), expected) in ids.iter().zip(statuses(&gateway, &ids, 2)).zip(&fallback) {
        // Stored by home cell (where its idempotency key lives), delivered by route.
        assert_eq!(partition_of(id), "cell-2");
        assert_eq!(record["state"], "delivered", "{record}");
        assert_eq!(record["delivered_to"], expected.as_str(), "{record}");
    }

    let sent: HashSet<String> = requests.into_iter().map(|(_, k)| k).collect();
    let at_cell_2: Vec<_> = cells[1].recorded();
    assert!(
        at_cell_2.is_empty(),
        "the drained cell received {at_cell_2:?}"
    );
    let elsewhere: HashSet<String> = [&cells[0], &cells[2]]
        .iter()
        .flat_map(|c| c.recorded())
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(elsewhere, sent);
}
