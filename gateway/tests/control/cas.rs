//! Concurrent changes through two control planes: never a lost update.

use std::collections::BTreeSet;
use std::sync::Arc;

use gateway::control::{ApplyError, DirectoryStore, MemoryStore};
use test_support::RedisServer;

use crate::support::{Plane, fast, redis_store};

const CHANGES: usize = 50;

fn cell(i: usize) -> &'static str {
    ["cell-1", "cell-2", "cell-3"][i % 3]
}

/// 50 concurrent pins of different keys, alternating between two planes, no retries: each
/// either lands or reports a conflict, and the store holds exactly the ones that landed.
async fn concurrent_pins_are_applied_or_conflict(name: &str, store: Arc<dyn DirectoryStore>) {
    let a = Arc::new(Plane::start(store.clone(), fast("gw-a")).await);
    let b = Arc::new(Plane::start(store.clone(), fast("gw-b")).await);
    let tasks: Vec<_> = (0..CHANGES)
        .map(|i| {
            let plane = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { (i, plane.pin(&format!("user-{i}"), cell(i)).await) })
        })
        .collect();
    let mut landed = BTreeSet::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(_)) => {
                landed.insert(format!("user-{i}"));
            }
            (_, Err(ApplyError::Conflict { .. })) => conflicts += 1,
            (i, Err(e)) => panic!("change {i}: unexpected {e}"),
        }
    }
    assert!(!landed.is_empty());
    assert_eq!(landed.len() + conflicts, CHANGES);
    let stored = store.load().await.unwrap();
    let pinned: BTreeSet<String> = stored.pins.keys().cloned().collect();
    assert_eq!(
        pinned, landed,
        "every success is stored, every conflict is not"
    );
    assert_eq!(stored.version, landed.len() as u64);
    assert_eq!(store.audit(1000).await.unwrap().len(), landed.len());
    println!(
        "{name}: {CHANGES} concurrent applies from two planes: {} applied, {conflicts} conflicts",
        landed.len()
    );
}

/// The same with each writer retrying on conflict, as an operator would: all 50 land.
async fn retried_conflicts_all_land(name: &str, store: Arc<dyn DirectoryStore>) {
    let a = Arc::new(Plane::start(store.clone(), fast("gw-a")).await);
    let b = Arc::new(Plane::start(store.clone(), fast("gw-b")).await);
    let tasks: Vec<_> = (0..CHANGES)
        .map(|i| {
            let plane = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let key = format!("user-{i}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match plane.pin(&key, cell(i)).await {
                        Ok(_) => return attempts,
                        Err(ApplyError::Conflict { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("change {i}: unexpected {e}"),
                    }
                }
            })
        })
        .collect();
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap();
    }
    let stored = store.load().await.unwrap();
    assert_eq!(stored.pins.len(), CHANGES);
    assert_eq!(stored.version, CHANGES as u64);
    for i in 0..CHANGES {
        assert_eq!(stored.pins[&format!("user-{i}")].cell, cell(i));
    }
    println!("{name}: {CHANGES} retried applies from two planes: {attempts} attempts in total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_pins_are_applied_or_conflict() {
    let redis = RedisServer::start();
    concurrent_pins_are_applied_or_conflict("redis", redis_store(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_concurrent_pins_are_applied_or_conflict() {
    concurrent_pins_are_applied_or_conflict("memory", Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_retried_conflicts_all_land() {
    let redis = RedisServer::start();
    retried_conflicts_all_land("redis", redis_store(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_retried_conflicts_all_land() {
    retried_conflicts_all_land("memory", Arc::new(MemoryStore::new())).await;
}
