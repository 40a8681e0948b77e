//! The `DirectoryStore` contract, run against both implementations: `MemoryStore` and
//! `RedisStore` on a real `redis-server`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cell_router::{Directory, Pin};
use futures_util::StreamExt;
use gateway::control::{
    AUDIT_CAP, AuditEntry, DirectoryStore, GatewayStatus, Lease, LeaseState, MemoryStore,
    StoreError, now_ms,
};
use test_support::RedisServer;

use crate::support::redis_store;

/// One store under test, with whatever keeps it alive.
struct Subject {
    store: Arc<dyn DirectoryStore>,
    _redis: Option<RedisServer>,
}

fn memory() -> Subject {
    Subject {
        store: Arc::new(MemoryStore::new()),
        _redis: None,
    }
}

fn redis() -> Subject {
    let server = RedisServer::start();
    Subject {
        store: redis_store(&server),
        _redis: Some(server),
    }
}

fn next_of(dir: &Directory, key: &str) -> Directory {
    let mut next = dir.clone();
    next.version += 1;
    next.pins.insert(key.to_owned(), Pin::new("cell-1"));
    next
}

fn audit(version: u64, target: &str) -> AuditEntry {
    AuditEntry {
        at_ms: now_ms(),
        actor: "admin@test".into(),
        action: "pin".into(),
        target: target.into(),
        from: "unpinned".into(),
        to: "pinned to cell-1".into(),
        reason: Some("conformance".into()),
        version,
    }
}

/// Runs each contract test against both stores.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::memory()).await; })*
        }
        mod redis_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::redis()).await; })*
        }
    };
}

conformance!(
    an_empty_store_is_version_zero,
    racing_writers_on_one_version_one_wins_one_conflicts,
    a_stale_or_skipping_write_is_refused,
    audit_is_newest_first_and_capped,
    changes_are_announced_to_subscribers,
    heartbeats_expire_after_their_ttl,
    a_lost_directory_is_restored_only_over_an_older_one,
    the_lease_has_one_holder_at_a_time_and_growing_tokens,
    racing_gateways_get_the_lease_once,
    fenced_writes_need_their_lease_in_force,
);

/// Waits until `holder` gets the lease (the current term expires), with a deadline.
async fn acquire_when_free(s: &Subject, holder: &str, ttl: Duration) -> Lease {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let LeaseState::Held(lease) = s.store.acquire_lease(holder, None, ttl).await.unwrap()
            {
                break lease;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lease frees up within 10 s")
}

async fn an_empty_store_is_version_zero(s: Subject) {
    assert_eq!(s.store.load().await.unwrap(), Directory::default());
    assert_eq!(s.store.version().await.unwrap(), 0);
    assert!(s.store.audit(10).await.unwrap().is_empty());
    assert!(s.store.gateways().await.unwrap().is_empty());
}

async fn racing_writers_on_one_version_one_wins_one_conflicts(s: Subject) {
    for round in 0..20 {
        let loaded = s.store.load().await.unwrap();
        let (a, b) = (next_of(&loaded, "alice"), next_of(&loaded, "bob"));
        let (audit_a, audit_b) = (audit(a.version, "alice"), audit(b.version, "bob"));
        let (ra, rb) = tokio::join!(
            s.store.compare_and_set(loaded.version, &a, &audit_a),
            s.store.compare_and_set(loaded.version, &b, &audit_b),
        );
        let winner = match (&ra, &rb) {
            (Ok(()), Err(StoreError::Conflict { current })) => {
                assert_eq!(*current, loaded.version + 1);
                a
            }
            (Err(StoreError::Conflict { current }), Ok(())) => {
                assert_eq!(*current, loaded.version + 1);
                b
            }
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert_eq!(s.store.load().await.unwrap(), winner, "round {round}");
        assert_eq!(s.store.version().await.unwrap(), winner.version);
        let newest = s.store.audit(1).await.unwrap();
        assert_eq!(newest[0].version, winner.version);
        assert_eq!(s.store.audit(100).await.unwrap().len(), round + 1);
    }
}

async fn a_stale_or_skipping_write_is_refused(s: Subject) {
    let v0 = s.store.load().await.unwrap();
    let v1 = next_of(&v0, "alice");
    s.store
        .compare_and_set(0, &v1, &audit(1, "alice"))
        .await
        .unwrap();
    // Based on version 0 again: somebody else already wrote version 1.
    let stale = next_of(&v0, "bob");
    assert_eq!(
        s.store.compare_and_set(0, &stale, &audit(1, "bob")).await,
        Err(StoreError::Conflict { current: 1 })
    );
    // Skipping a version is a caller bug, refused before anything is written.
    let mut skipping = next_of(&v1, "carol");
    skipping.version = 5;
    assert_eq!(
        s.store
            .compare_and_set(1, &skipping, &audit(5, "carol"))
            .await,
        Err(StoreError::InvalidVersion {
            expected: 1,
            next: 5
        })
    );
    assert_eq!(s.store.load().await.unwrap(), v1);
    assert_eq!(s.store.audit(10).await.unwrap().len(), 1);
}

async fn audit_is_newest_first_and_capped(s: Subject) {
    let mut dir = s.store.load().await.unwrap();
    let writes = AUDIT_CAP + 5;
    for i in 0..writes {
        let next = Directory {
            version: dir.version + 1,
            ..dir.clone()
        };
        s.store
            .compare_and_set(
                dir.version,
                &next,
                &audit(next.version, &format!("key-{i}")),
            )
            .await
            .unwrap();
        dir = next;
    }
    let all = s.store.audit(usize::MAX).await.unwrap();
    assert_eq!(all.len(), AUDIT_CAP);
    assert_eq!(all[0].version, writes as u64, "newest first");
    assert_eq!(all[AUDIT_CAP - 1].version, 6, "the oldest 5 were dropped");
    assert_eq!(all[0].reason.as_deref(), Some("conformance"));
    let three = s.store.audit(3).await.unwrap();
    assert_eq!(
        three.iter().map(|e| e.version).collect::<Vec<_>>(),
        [writes as u64, writes as u64 - 1, writes as u64 - 2]
    );
    assert!(s.store.audit(0).await.unwrap().is_empty());
}

async fn changes_are_announced_to_subscribers(s: Subject) {
    let mut announcements = s.store.subscribe();
    // A Redis subscription is established in the background: write until one is heard.
    let mut dir = s.store.load().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let next = next_of(&dir, &format!("key-{}", dir.version));
            s.store
                .compare_and_set(dir.version, &next, &audit(next.version, "k"))
                .await
                .unwrap();
            dir = next;
            if let Ok(Some(v)) =
                tokio::time::timeout(Duration::from_millis(200), announcements.next()).await
            {
                break v;
            }
        }
    })
    .await
    .expect("an announcement within 10 s");
    assert!(heard >= 1 && heard <= dir.version);
    // Once subscribed, every change is heard promptly.
    for _ in 0..5 {
        let next = next_of(&dir, &format!("key-{}", dir.version));
        s.store
            .compare_and_set(dir.version, &next, &audit(next.version, "k"))
            .await
            .unwrap();
        dir = next;
        let announced = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match announcements.next().await {
                    Some(v) if v >= dir.version => break v,
                    Some(_) => continue,
                    None => panic!("announcement stream ended"),
                }
            }
        })
        .await
        .expect("announced within 1 s");
        assert_eq!(announced, dir.version);
    }
}

async fn heartbeats_expire_after_their_ttl(s: Subject) {
    let now = now_ms();
    let fresh = GatewayStatus {
        id: "gw-b".into(),
        version: 7,
        seen_ms: now,
        cell_rps: BTreeMap::from([("cell-1".to_owned(), 10.5)]),
    };
    let old = GatewayStatus {
        id: "gw-a".into(),
        version: 6,
        seen_ms: now - 5_000,
        cell_rps: BTreeMap::new(),
    };
    s.store
        .heartbeat(&fresh, Duration::from_secs(60))
        .await
        .unwrap();
    s.store
        .heartbeat(&old, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        s.store.gateways().await.unwrap(),
        std::slice::from_ref(&fresh)
    );
    // A newer heartbeat of the expired gateway brings it back; the list is sorted by id.
    let back = GatewayStatus {
        seen_ms: now_ms(),
        ..old
    };
    s.store
        .heartbeat(&back, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.store.gateways().await.unwrap(), [back, fresh]);
}

async fn a_lost_directory_is_restored_only_over_an_older_one(s: Subject) {
    let mut lost = next_of(&Directory::default(), "alice");
    lost.version = 7;
    let mut restore_audit = audit(7, "directory");
    restore_audit.action = "restore".into();
    s.store.restore(&lost, &restore_audit).await.unwrap();
    assert_eq!(s.store.load().await.unwrap(), lost);
    assert_eq!(s.store.version().await.unwrap(), 7);
    assert_eq!(s.store.audit(1).await.unwrap()[0].action, "restore");
    // Only ever over an older directory: never over the same or a newer version.
    for version in [7, 3] {
        let other = Directory {
            version,
            ..Directory::default()
        };
        assert_eq!(
            s.store.restore(&other, &restore_audit).await,
            Err(StoreError::Conflict { current: 7 })
        );
    }
    assert_eq!(s.store.load().await.unwrap(), lost);
    // Changes continue from the restored version.
    let next = next_of(&lost, "bob");
    s.store
        .compare_and_set(7, &next, &audit(8, "bob"))
        .await
        .unwrap();
    assert_eq!(s.store.version().await.unwrap(), 8);
}

async fn the_lease_has_one_holder_at_a_time_and_growing_tokens(s: Subject) {
    let long = Duration::from_secs(60);
    let a = match s.store.acquire_lease("gw-a", None, long).await.unwrap() {
        LeaseState::Held(lease) => lease,
        other => panic!("a free lease is granted, got {other:?}"),
    };
    assert_eq!(a.holder, "gw-a");
    assert_eq!(
        s.store.acquire_lease("gw-b", None, long).await.unwrap(),
        LeaseState::Taken(a.clone())
    );
    // Renewing keeps the term and its token.
    assert_eq!(
        s.store.acquire_lease("gw-a", Some(&a), long).await.unwrap(),
        LeaseState::Held(a.clone())
    );
    // The same id without the term (a restarted gateway) must wait like anyone else.
    assert_eq!(
        s.store.acquire_lease("gw-a", None, long).await.unwrap(),
        LeaseState::Taken(a.clone())
    );
    // Released: the next holder gets a larger token at once.
    s.store.release_lease(&a).await.unwrap();
    let b = match s.store.acquire_lease("gw-b", None, long).await.unwrap() {
        LeaseState::Held(lease) => lease,
        other => panic!("a released lease is granted, got {other:?}"),
    };
    assert!(b.token > a.token, "{b:?} after {a:?}");
    // Releasing a past term leaves the current one alone.
    s.store.release_lease(&a).await.unwrap();
    assert_eq!(
        s.store.acquire_lease("gw-a", None, long).await.unwrap(),
        LeaseState::Taken(b.clone())
    );
    // Not renewed: it expires, and the next term has a larger token again.
    s.store.release_lease(&b).await.unwrap();
    let short = s
        .store
        .acquire_lease("gw-c", None, Duration::from_millis(200))
        .await
        .unwrap();
    let c = short.held().cloned().expect("granted");
    let d = acquire_when_free(&s, "gw-d", Duration::from_secs(60)).await;
    assert!(d.token > c.token && c.token > b.token);
    assert_eq!(
        s.store
            .acquire_lease("gw-c", Some(&c), Duration::from_secs(60))
            .await
            .unwrap(),
        LeaseState::Taken(d),
        "an expired term is not renewed"
    );
}

async fn racing_gateways_get_the_lease_once(s: Subject) {
    let ttl = Duration::from_secs(60);
    for round in 0..20 {
        let (ra, rb) = tokio::join!(
            s.store.acquire_lease("gw-a", None, ttl),
            s.store.acquire_lease("gw-b", None, ttl),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let holders: Vec<&Lease> = [&ra, &rb].into_iter().filter_map(|r| r.held()).collect();
        assert_eq!(holders.len(), 1, "round {round}: {ra:?} / {rb:?}");
        assert_eq!(
            ra.lease(),
            rb.lease(),
            "round {round}: both see the same term"
        );
        s.store.release_lease(holders[0]).await.unwrap();
    }
}

async fn fenced_writes_need_their_lease_in_force(s: Subject) {
    let ttl = Duration::from_secs(60);
    let a = s
        .store
        .acquire_lease("gw-a", None, ttl)
        .await
        .unwrap()
        .held()
        .cloned()
        .expect("granted");
    let v0 = s.store.load().await.unwrap();
    let v1 = next_of(&v0, "alice");
    s.store
        .compare_and_set_fenced(0, &v1, &audit(1, "alice"), &a)
        .await
        .unwrap();
    // gw-a loses the lease (released here; expiry is the same to the store) to gw-b: a
    // write gw-a decided under its term is refused, even on the right version.
    s.store.release_lease(&a).await.unwrap();
    let b = s
        .store
        .acquire_lease("gw-b", None, ttl)
        .await
        .unwrap()
        .held()
        .cloned()
        .expect("granted");
    let v2 = next_of(&v1, "bob");
    assert_eq!(
        s.store
            .compare_and_set_fenced(1, &v2, &audit(2, "bob"), &a)
            .await,
        Err(StoreError::Fenced { lease: a.clone() })
    );
    assert_eq!(s.store.load().await.unwrap(), v1, "nothing was written");
    assert_eq!(s.store.audit(10).await.unwrap().len(), 1);
    // The current holder's write goes through; a fenced write still checks the version.
    let stale = next_of(&v0, "carol");
    assert_eq!(
        s.store
            .compare_and_set_fenced(0, &stale, &audit(1, "carol"), &b)
            .await,
        Err(StoreError::Conflict { current: 1 })
    );
    s.store
        .compare_and_set_fenced(1, &v2, &audit(2, "bob"), &b)
        .await
        .unwrap();
    // Operators' writes are not fenced.
    let v3 = next_of(&v2, "dave");
    s.store
        .compare_and_set(2, &v3, &audit(3, "dave"))
        .await
        .unwrap();
    // With no lease in force at all, every fenced write is refused.
    s.store.release_lease(&b).await.unwrap();
    let v4 = next_of(&v3, "erin");
    assert_eq!(
        s.store
            .compare_and_set_fenced(3, &v4, &audit(4, "erin"), &b)
            .await,
        Err(StoreError::Fenced { lease: b })
    );
}
