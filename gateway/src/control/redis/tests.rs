//! Unit tests of the Redis store against a real `redis-server`.
#![allow(clippy::unwrap_used)]

use test_support::{RedisServer, Resp};

use super::*;

fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::open(&redis.url(), StoreOptions::default()).unwrap()
}

fn entry(version: u64) -> AuditEntry {
    AuditEntry {
        at_ms: 1,
        actor: "test".into(),
        action: "pin".into(),
        target: "alice".into(),
        from: "unpinned".into(),
        to: "pinned to cell-1".into(),
        reason: None,
        version,
    }
}

fn directory(version: u64) -> Directory {
    Directory {
        version,
        ..Directory::default()
    }
}

#[test]
fn version_payloads_parse_strictly() {
    assert_eq!(parse_version(None).unwrap(), 0);
    assert_eq!(parse_version(Some(b"12")).unwrap(), 12);
    assert!(matches!(
        parse_version(Some(b"twelve")),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn a_cluster_store_opens_without_reaching_the_cluster() {
    let config = RedisConfig {
        target: RedisTarget::Cluster(vec![
            "redis://127.0.0.1:1".into(),
            "redis://127.0.0.1:2".into(),
        ]),
        timeout: Duration::from_millis(10),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    // A gateway must start while Redis is down: opening never connects.
    let store = RedisStore::new(&config, StoreOptions::default()).unwrap();
    assert!(store.inner.client.is_cluster());
}

#[test]
fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    let err = RedisStore::open("redis://127.0.0.1:1", StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Config(_)));
}

#[tokio::test]
async fn a_script_run_after_its_deadline_writes_nothing() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let err = store
        .inner
        .cas_until(0, &directory(1), &entry(1), 1, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("deadline")),
        "{err}"
    );
    assert_eq!(store.version().await.unwrap(), 0);
    assert!(store.audit(10).await.unwrap().is_empty());
    // Without a deadline (0) the same call goes through.
    store
        .inner
        .cas_until(0, &directory(1), &entry(1), 0, None)
        .await
        .unwrap();
    assert_eq!(store.version().await.unwrap(), 1);
}

#[tokio::test]
async fn bad_data_in_redis_is_corrupt_not_a_panic() {
    let redis = RedisServer::start();
    let store = store(&redis);
    redis.command(&["SET", keys::DIRECTORY, "{nope"]).unwrap();
    assert!(matches!(store.load().await, Err(StoreError::Corrupt(_))));
    redis.command(&["SET", keys::VERSION, "seven"]).unwrap();
    assert!(matches!(store.version().await, Err(StoreError::Corrupt(_))));
    let err = store
        .compare_and_set(0, &directory(1), &entry(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    // The connection survives all of that.
    redis
        .command(&["DEL", keys::DIRECTORY, keys::VERSION])
        .unwrap();
    store
        .compare_and_set(0, &directory(1), &entry(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn keys_share_one_hash_tag_and_the_version_mirrors_the_document() {
    let redis = RedisServer::start();
    let store = store(&redis);
    store
        .compare_and_set(0, &directory(1), &entry(1))
        .await
        .unwrap();
    for key in [keys::DIRECTORY, keys::VERSION, keys::AUDIT, keys::GATEWAYS] {
        assert!(key.starts_with("{cellgate}:"), "{key}");
    }
    assert_eq!(
        redis.command(&["GET", keys::VERSION]).unwrap(),
        Resp::Bulk(Some(b"1".to_vec()))
    );
    assert_eq!(
        redis.command(&["LLEN", keys::AUDIT]).unwrap(),
        Resp::Integer(1)
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_the_timeout() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let options = StoreOptions {
        timeout: Duration::from_millis(300),
    };
    let store = RedisStore::open(&url, options).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert!(matches!(
            store.version().await,
            Err(StoreError::Unavailable(_))
        ));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
