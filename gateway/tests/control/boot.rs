//! Starting a gateway while Redis is down: bounded, from `state_dir` when there is one.

use std::time::{Duration, Instant};

use gateway::control::{ControlPlaneOptions, Source};
use test_support::{RedisServer, TempDir};

use crate::support::{Plane, STORE_TIMEOUT, eventually, fast, persisted, redis_store};

/// Startup may wait for one store timeout, plus scheduling slack on a busy 2-core machine.
const BOOT_BUDGET: Duration = Duration::from_millis(1500);

fn with_state_dir(id: &str, dir: &TempDir) -> ControlPlaneOptions {
    ControlPlaneOptions {
        state_dir: Some(dir.path().to_owned()),
        ..fast(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_boots_from_the_persisted_directory_then_catches_up() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let state = TempDir::new("control-state");
    let first = Plane::start(redis_store(&redis), with_state_dir("gw-1", &state)).await;
    let pinned = first.pin("alice", "cell-3").await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the directory to be persisted",
        || async { persisted(state.path()).is_some_and(|d| d.version == pinned.version) },
    )
    .await;
    first.stop();
    drop(first);
    redis.kill();

    let started = Instant::now();
    let second = Plane::start(redis_store(&redis), with_state_dir("gw-1", &state)).await;
    let took = started.elapsed();
    assert!(took < BOOT_BUDGET, "start took {took:?}");
    let status = second.plane.status();
    assert_eq!(status.source, Source::StateDir);
    assert_eq!(status.version, pinned.version);
    assert!(!status.connected);
    assert_eq!(status.last_sync_ms, None);
    assert_eq!(second.plane.table().directory(), &pinned);

    // Redis is back (with its data): the gateway catches up and says so.
    tokio::task::block_in_place(|| redis.restart());
    eventually(
        Duration::from_secs(10),
        "the plane to sync with the store",
        || async {
            let status = second.plane.status();
            status.connected && status.source == Source::Store && status.last_sync_ms.is_some()
        },
    )
    .await;
    assert_eq!(second.plane.table().directory(), &pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_without_state_dir_boots_empty_without_waiting() {
    let mut redis = RedisServer::start();
    redis.kill();
    let started = Instant::now();
    let plane = Plane::start(redis_store(&redis), fast("gw-1")).await;
    assert!(
        started.elapsed() < BOOT_BUDGET,
        "start took {:?}",
        started.elapsed()
    );
    let status = plane.plane.status();
    assert_eq!(status.source, Source::Empty);
    assert_eq!(status.version, 0);
    assert!(!status.connected);
    assert!(plane.plane.table().directory().cells.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_at_start_delays_startup_by_one_timeout_at_most() {
    let redis = RedisServer::start();
    let state = TempDir::new("control-state");
    redis.stop();
    let started = Instant::now();
    let plane = Plane::start(redis_store(&redis), with_state_dir("gw-1", &state)).await;
    let took = started.elapsed();
    redis.cont();
    assert!(
        took >= STORE_TIMEOUT.mul_f64(0.9) && took < BOOT_BUDGET,
        "start took {took:?}"
    );
    assert_eq!(plane.plane.status().source, Source::Empty);
    eventually(
        Duration::from_secs(10),
        "the plane to connect after SIGCONT",
        || async { plane.plane.status().connected },
    )
    .await;
    // Booting empty wrote nothing; the first directory from the store is persisted.
    let pinned = plane.pin("bob", "cell-1").await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the change to be persisted",
        || async { persisted(state.path()).is_some_and(|d| d == pinned) },
    )
    .await;
}
