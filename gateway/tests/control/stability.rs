//! Static stability: a frozen or dead Redis changes nothing for routing, and everything
//! converges when it is back.

use std::time::{Duration, Instant};

use gateway::control::{ApplyError, ControlPlaneOptions};
use test_support::RedisServer;

use crate::support::{Plane, STORE_TIMEOUT, eventually, fast, redis_store};

use cell_router::Guard;

/// Thaws the server even when the test fails, so that its drop can kill it.
struct Frozen<'a>(&'a RedisServer);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.cont();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_keeps_the_last_directory_and_both_converge_after() {
    let redis = RedisServer::start();
    let a = Plane::start(redis_store(&redis), fast("gw-a")).await;
    let b = Plane::start(redis_store(&redis), fast("gw-b")).await;
    let placement = a.plane.placement().clone();
    let now = a.plane.now_ms();
    let drained = a
        .plane
        .apply("test", "drain", "cell-2", None, |dir| {
            dir.drain(
                &placement,
                "cell-2",
                60_000,
                now,
                cell_router::Guard::default(),
            )
        })
        .await
        .unwrap();
    b.applied(drained.version, Duration::from_secs(5)).await;
    let before = b.plane.table();

    redis.stop();
    let frozen = Frozen(&redis);

    // Routing state does not move.
    assert_eq!(a.plane.table().directory(), &drained);
    assert_eq!(b.plane.table().directory(), &drained);

    // Both notice within a few timeouts, and say so.
    let noticed = Instant::now();
    eventually(
        Duration::from_secs(5),
        "both planes to report disconnected",
        || async { !a.plane.status().connected && !b.plane.status().connected },
    )
    .await;
    println!("frozen Redis noticed after {:?}", noticed.elapsed());

    // A change fails fast with Unavailable instead of hanging, and is not applied.
    let started = Instant::now();
    let err = a.pin("frozen-key", "cell-1").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ApplyError::Unavailable(_)), "{err}");
    assert!(took < STORE_TIMEOUT * 3, "apply took {took:?}");
    println!("apply against a frozen Redis failed after {took:?}");

    // Admin reads answer quickly from what was last read.
    let started = Instant::now();
    let listed = b.plane.gateways().await;
    assert!(listed.stale);
    assert!(started.elapsed() < Duration::from_secs(1));

    // Still the same directory everywhere, after several failed polls.
    assert!(std::sync::Arc::ptr_eq(&before, &b.plane.table()));
    assert_eq!(a.plane.table().directory(), &drained);
    assert_eq!(a.plane.status().version, drained.version);

    drop(frozen);
    eventually(
        Duration::from_secs(15),
        "both planes to reconnect",
        || async { a.plane.status().connected && b.plane.status().connected },
    )
    .await;

    // A change after recovery propagates, in the other direction too.
    let undrained = b
        .plane
        .apply("test", "undrain", "cell-2", None, |dir| {
            dir.undrain(&placement, "cell-2", 0, now)
        })
        .await
        .unwrap();
    a.applied(undrained.version, Duration::from_secs(2)).await;
    assert_eq!(a.plane.table().directory(), b.plane.table().directory());
    assert!(
        !undrained.pins.contains_key("frozen-key"),
        "the change that failed during the freeze never appears"
    );
    assert_eq!(undrained.version, drained.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_survive_a_redis_restart() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    // A long poll: whatever arrives quickly arrives through pub/sub.
    let slow_poll = |id| ControlPlaneOptions {
        poll_interval: Duration::from_secs(60),
        heartbeat_interval: Duration::from_millis(100),
        ..ControlPlaneOptions::new(id)
    };
    let a = Plane::start(redis_store(&redis), slow_poll("gw-a")).await;
    let b = Plane::start(redis_store(&redis), slow_poll("gw-b")).await;
    let first = a.pin("before", "cell-1").await.unwrap();
    b.applied(first.version, Duration::from_secs(5)).await;

    redis.kill();
    eventually(
        Duration::from_secs(5),
        "both planes to notice Redis is gone",
        || async { !a.plane.status().connected && !b.plane.status().connected },
    )
    .await;
    tokio::task::block_in_place(|| redis.restart());

    // The data survived (AOF); writes work again once the connection is re-established.
    let after = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.pin("after", "cell-2").await {
                Ok(dir) => break dir,
                Err(ApplyError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("writes work within 10 s of the restart");
    assert_eq!(after.version, first.version + 1);
    // B resubscribes with backoff (at most 5 s) and announces what it missed.
    b.applied(after.version, Duration::from_secs(8)).await;
    // From then on, pub/sub is live again.
    let next = a.pin("later", "cell-3").await.unwrap();
    b.applied(next.version, Duration::from_secs(1)).await;
}

/// Redis restarts without persistence: the store comes back empty (version 0). The gateways
/// keep their directory and write it back, so the drain stays in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_gets_the_directory_back() {
    let mut redis = RedisServer::start();
    let a = Plane::start(redis_store(&redis), fast("gw-a")).await;
    let b = Plane::start(redis_store(&redis), fast("gw-b")).await;
    let placement = a.plane.placement().clone();
    let now = a.plane.now_ms();
    a.plane
        .apply("test", "drain", "cell-2", None, |dir| {
            dir.drain(&placement, "cell-2", 60_000, now, Guard::default())
        })
        .await
        .unwrap();
    let known = a.pin("alice", "cell-3").await.unwrap();
    b.applied(known.version, Duration::from_secs(5)).await;

    redis.kill();
    tokio::task::block_in_place(|| redis.restart());
    assert_eq!(
        redis
            .command(&["GET", "{cellgate}:directory:version"])
            .unwrap(),
        test_support::Resp::Bulk(None),
        "the restarted Redis is empty"
    );

    let store = redis_store(&redis);
    eventually(
        Duration::from_secs(10),
        "the directory to be restored",
        || async {
            assert!(a.version() >= known.version && b.version() >= known.version);
            store.load().await.is_ok_and(|d| d == known)
        },
    )
    .await;
    let audit = store.audit(1).await.unwrap();
    assert_eq!(audit[0].action, "restore");
    assert!(audit[0].actor == "gw-a" || audit[0].actor == "gw-b");
    assert_eq!(a.plane.table().directory(), &known);
    assert_eq!(b.plane.table().directory(), &known);

    // And changes continue from there.
    let next = b.pin("bob", "cell-1").await.unwrap();
    assert_eq!(next.version, known.version + 1);
    a.applied(next.version, Duration::from_secs(2)).await;
}

/// The store is flushed and an operator changes something before any poll noticed: the change
/// builds on the gateway's last-known directory (written back first), not on the empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_right_after_a_data_loss_builds_on_the_last_known_directory() {
    let redis = RedisServer::start();
    let options = ControlPlaneOptions {
        poll_interval: Duration::from_secs(60),
        ..ControlPlaneOptions::new("gw-a")
    };
    let a = Plane::start(redis_store(&redis), options).await;
    a.pin("alice", "cell-2").await.unwrap();
    let known = a.pin("bob", "cell-3").await.unwrap();

    redis.command(&["FLUSHALL"]).unwrap();
    let next = a.pin("carol", "cell-1").await.unwrap();
    assert_eq!(next.version, known.version + 1);
    let pinned: Vec<&str> = next.pins.keys().map(String::as_str).collect();
    assert_eq!(pinned, ["alice", "bob", "carol"]);
    let store = redis_store(&redis);
    assert_eq!(store.load().await.unwrap(), next);
    let audit = store.audit(2).await.unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[1].action.as_str()),
        ("pin", "restore")
    );
}
