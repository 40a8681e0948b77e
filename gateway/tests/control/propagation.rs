//! How fast a change made through one gateway reaches the others.

use std::time::{Duration, Instant};

use gateway::control::ControlPlaneOptions;
use test_support::RedisServer;

use crate::support::{Plane, redis_store};

const CHANGES: usize = 50;

/// Three gateways on one Redis with the default 2 s poll, so what is measured is pub/sub:
/// the delay from `apply` returning on A to the last of B and C applying that version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_every_gateway_within_a_second() {
    let redis = RedisServer::start();
    let a = Plane::start(redis_store(&redis), ControlPlaneOptions::new("gw-a")).await;
    let b = Plane::start(redis_store(&redis), ControlPlaneOptions::new("gw-b")).await;
    let c = Plane::start(redis_store(&redis), ControlPlaneOptions::new("gw-c")).await;

    // Subscriptions are set up in the background: the first change may take a poll.
    let first = a.pin("warm-up", "cell-1").await.unwrap();
    b.applied(first.version, Duration::from_secs(5)).await;
    c.applied(first.version, Duration::from_secs(5)).await;

    let mut delays = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let cell = ["cell-1", "cell-2", "cell-3"][i % 3];
        let next = a.pin(&format!("user-{i}"), cell).await.unwrap();
        let returned = Instant::now();
        assert_eq!(
            a.version(),
            next.version,
            "the writer applies its change at once"
        );
        let mut vb = b.plane.versions();
        let mut vc = c.plane.versions();
        let both = async {
            let (rb, rc) = tokio::join!(
                vb.wait_for(|v| *v >= next.version),
                vc.wait_for(|v| *v >= next.version)
            );
            rb.is_ok() && rc.is_ok()
        };
        let reached = tokio::time::timeout(Duration::from_secs(1), both).await;
        assert!(
            matches!(reached, Ok(true)),
            "change {i} (version {}) not applied everywhere within 1 s: b={} c={}",
            next.version,
            b.version(),
            c.version()
        );
        delays.push(returned.elapsed());
    }
    delays.sort();
    let p50 = delays[CHANGES / 2];
    let p99 = delays[(CHANGES * 99).div_ceil(100) - 1];
    let max = delays[CHANGES - 1];
    println!(
        "propagation over {CHANGES} changes, apply returning on A -> last of B, C applying: \
         p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    assert!(p99 < Duration::from_secs(1));
    // Both followers hold exactly the writer's directory.
    assert_eq!(b.plane.table().directory(), a.plane.table().directory());
    assert_eq!(c.plane.table().directory(), a.plane.table().directory());
}
