//! Group commit of enqueues (`delivery::admission`) through the public queue API on a real
//! `redis-server`: enqueues that arrive together share script calls, and one whose caller
//! gave up before its batch was sent is never written.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cell_router::Placement;
use gateway::config::DeliveryConfig;
use gateway::delivery::metrics::DeliveryMetrics;
use gateway::delivery::record::StoredRequest;
use gateway::delivery::store::QueueStore;
use gateway::delivery::{DeliveryQueue, EnqueueError};
use test_support::{RedisServer, Resp};

use crate::support::{redis_int, serial};

/// A one-cell queue on `redis`, its enqueues bounded by `timeout`. No workers run.
fn queue(redis: &RedisServer, timeout: Duration) -> DeliveryQueue {
    let store = QueueStore::open_url(&redis.url(), timeout, Duration::from_secs(2)).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    DeliveryQueue::new(
        store,
        DeliveryConfig::default(),
        Placement::new([("cell-1", 1.0)]).unwrap(),
        ["cell-1".to_owned()],
        "gw".to_owned(),
        DeliveryMetrics::new(&mut registry),
    )
}

fn request() -> StoredRequest {
    StoredRequest {
        method: "POST".into(),
        uri: "/orders".into(),
        headers: b"content-type: text/plain\r\n".to_vec(),
        body: Bytes::from_static(b"hello"),
        target: b"alice".to_vec(),
        idempotency_key: String::new(),
        traceparent: String::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Script calls Redis has run so far.
fn script_calls(redis: &RedisServer) -> u64 {
    let info = redis.command(&["INFO", "commandstats"]).unwrap();
    let text = info.as_text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Whether the idempotency key `key` of sender `alice` was remembered.
fn remembered(redis: &RedisServer, q: &DeliveryQueue, key: &str) -> bool {
    let index = q
        .partition_for(b"alice")
        .idempotency(b"alice", key.as_bytes());
    !matches!(redis.command(&["GET", &index]).unwrap(), Resp::Bulk(None))
}

#[test]
fn enqueues_that_arrive_together_share_script_calls() {
    let _serial = serial();
    let redis = RedisServer::start();
    let rt = runtime();
    rt.block_on(async {
        let q = queue(&redis, Duration::from_secs(2));
        // The first call loads the script; the count starts after it.
        q.enqueue(b"alice", Some("warm"), request()).await.unwrap();
        let before = script_calls(&redis);
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let q = q.clone();
                tokio::spawn(
                    async move { q.enqueue(b"alice", Some(&format!("k{i}")), request()).await },
                )
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            let accepted = t.await.unwrap().unwrap();
            assert!(!accepted.duplicate);
            ids.insert(accepted.id);
        }
        assert_eq!(ids.len(), 100, "every enqueue has its own delivery");
        let calls = script_calls(&redis) - before;
        // At most 32 entries per call: 4 calls, give or take how the tasks interleave.
        assert!(calls <= 8, "{calls} script calls for 100 enqueues");
        assert_eq!(redis_int(&redis, &["ZCARD", "{dq:cell-1}:live"]), 101);
    });
}

#[test]
fn an_enqueue_given_up_before_its_batch_was_sent_is_never_written() {
    let _serial = serial();
    let redis = RedisServer::start();
    let rt = runtime();
    rt.block_on(async {
        let q = queue(&redis, Duration::from_millis(300));
        q.enqueue(b"alice", Some("warm"), request()).await.unwrap();

        redis.stop();
        // `first` is sent and waits for the frozen Redis; `second` queues behind it and
        // its caller gives up (a client that went away) before `first`'s call ends.
        let first = tokio::spawn({
            let q = q.clone();
            async move { q.enqueue(b"alice", Some("first"), request()).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = tokio::time::timeout(
            Duration::from_millis(50),
            q.enqueue(b"alice", Some("second"), request()),
        )
        .await;
        assert!(second.is_err(), "the caller gave up first");
        let first = first.await.unwrap();
        assert!(
            matches!(first, Err(EnqueueError::Unavailable(_))),
            "{first:?}"
        );
        redis.cont();

        // The queue goes on: a new enqueue is accepted once Redis answers again...
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match q.enqueue(b"alice", Some("third"), request()).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("third: {e}; again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("no enqueue accepted after Redis resumed: {e}"),
            }
        }
        // ...and the abandoned one was never written.
        assert!(remembered(&redis, &q, "third"));
        assert!(
            !remembered(&redis, &q, "second"),
            "an abandoned enqueue was stored"
        );
    });
}
