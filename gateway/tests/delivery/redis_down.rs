//! A frozen Redis: an async request cannot be stored, so it is refused with 503
//! `queue_unavailable` once the Redis timeout passes, never acknowledged with 202.

use std::time::{Duration, Instant};

use test_support::{EchoCell, Gateway, RedisServer};

use crate::support::{bin, client, config, send_async, serial};

/// `[redis].timeout`: what an enqueue waits for Redis to confirm.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Time on top of the Redis timeout for the gateway to answer (request parsing, a loaded
/// 2-core machine).
const SLACK: Duration = Duration::from_millis(500);

#[test]
fn a_frozen_redis_gets_queue_unavailable_within_the_timeout() {
    let _serial = serial();
    let redis = RedisServer::start();
    let cell = EchoCell::start(bin(), "cell-1");
    let gateway = Gateway::start(bin(), &config(&redis, &[&cell], "250ms", "workers = 0"));
    let http = client();
    // Connected and working first, so the frozen server holds an open connection (the
    // harder case: no connection error, only silence).
    let before = send_async(&http, &gateway, "alice", Some("before"), "{}").unwrap();
    assert_eq!(before.status, 202, "{}", before.body);

    redis.stop();
    for i in 0..5 {
        let sent = Instant::now();
        let a = send_async(&http, &gateway, "alice", Some(&format!("frozen-{i}")), "{}").unwrap();
        let took = sent.elapsed();
        assert_eq!(
            a.status, 503,
            "request {i} while Redis is frozen: {}",
            a.body
        );
        assert_eq!(a.error.as_deref(), Some("queue_unavailable"));
        assert!(
            a.retry_after.is_some(),
            "queue_unavailable carries Retry-After"
        );
        assert!(
            took < REDIS_TIMEOUT + SLACK,
            "request {i} took {took:?}, Redis timeout is {REDIS_TIMEOUT:?}"
        );
    }

    redis.cont();
    test_support::wait_until(Duration::from_secs(10), "enqueue to work again", || {
        send_async(&http, &gateway, "alice", Some("after"), "{}")
            .unwrap()
            .status
            == 202
    });
}
