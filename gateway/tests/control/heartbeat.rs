//! Heartbeats: every gateway and the version it applied; a stopped one ages out.

use std::time::Duration;

use test_support::{RedisServer, Resp};

use crate::support::{Plane, eventually, fast, redis_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_list_their_applied_version_and_a_stopped_one_disappears_after_ttl() {
    let redis = RedisServer::start();
    let a = Plane::start(redis_store(&redis), fast("gw-a")).await;
    let b = Plane::start(redis_store(&redis), fast("gw-b")).await;
    b.plane
        .set_cell_rps([("cell-2".to_owned(), 33.0)].into_iter().collect());
    let pinned = a.pin("alice", "cell-2").await.unwrap();

    eventually(
        Duration::from_secs(5),
        "both gateways at the new version",
        || async {
            let list = a.plane.gateways().await;
            !list.stale
                && list.gateways.len() == 2
                && list.gateways.iter().all(|g| g.version == pinned.version)
        },
    )
    .await;
    let list = b.plane.gateways().await;
    let ids: Vec<&str> = list.gateways.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["gw-a", "gw-b"]);
    assert_eq!(list.gateways[1].cell_rps["cell-2"], 33.0);
    assert!(list.fetched_ms.is_some());

    // gw-b stops heartbeating; after its 1 s ttl it is no longer listed, and reading the
    // list prunes its entry from Redis.
    b.stop();
    eventually(Duration::from_secs(5), "gw-b to age out", || async {
        let list = a.plane.gateways().await;
        list.gateways.len() == 1 && list.gateways[0].id == "gw-a"
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "gw-b's entry to be pruned",
        || async {
            let _ = a.plane.gateways().await;
            redis.command(&["HLEN", "{cellgate}:gateways"]).unwrap() == Resp::Integer(1)
        },
    )
    .await;
}
