//! A gateway killed while outcomes of finished attempts wait to be recorded: they are
//! recorded in batches, so a crash can lose some that the cells already acted on. Those
//! entries must behave like work of a crashed worker: claimed after the visibility timeout
//! and delivered again with the same idempotency key, never lost.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use test_support::{Gateway, RedisServer, wait_until};

use crate::support::{
    bin, config, enqueue_all, metric, recording_cells, serial, statuses, wait_settled,
};

const REQUESTS: usize = 300;
const CELLS: [&str; 3] = ["cell-1", "cell-2", "cell-3"];
const IN_FLIGHT: &str = "cellgate_in_flight_requests";

#[test]
fn outcomes_lost_with_a_killed_gateway_are_delivered_again() {
    let _serial = serial();
    let redis = RedisServer::start();
    // Every delivery is in flight for 300 ms, so many finish while Redis is frozen.
    let cells = recording_cells(3, &["--latency", "300ms"]);
    let refs: Vec<_> = cells.iter().collect();
    let text = config(&redis, &refs, "500ms", "workers = 16");
    let mut a = Gateway::start(bin(), &text);

    let requests: Vec<(String, String)> = (0..REQUESTS)
        .map(|i| (format!("user-{i}"), format!("lost-key-{i}")))
        .collect();
    let ids = enqueue_all(&a, &requests, 4);
    let received = || cells.iter().map(|c| c.recorded().len()).sum::<usize>();
    let in_flight = || metric(&a, IN_FLIGHT);
    wait_until(
        Duration::from_secs(30),
        "gateway A to be mid-stream with attempts in flight",
        || received() >= REQUESTS / 10 && in_flight() >= 8.0,
    );

    // Freeze Redis: the attempts in flight still finish (the cells answer), but no outcome
    // can be recorded and no new attempt starts. The first batch of each partition is stuck
    // in Redis's socket (and recorded once it resumes); later outcomes wait in the gateway.
    redis.stop();
    wait_until(
        Duration::from_secs(10),
        "the attempts in flight to finish while Redis is frozen",
        || in_flight() == 0.0,
    );
    // Nothing is in flight now: whatever a cell receives twice from here on was answered
    // once already, its outcome lost with the gateway.
    a.kill();
    redis.cont();

    let b = Gateway::start(bin(), &text);
    wait_settled(&redis, &CELLS, Duration::from_secs(60));
    for record in statuses(&b, &ids, 4) {
        assert_eq!(record["state"], "delivered", "{record}");
    }

    let mut attempts: HashMap<String, Vec<u32>> = HashMap::new();
    for r in cells.iter().flat_map(|c| c.recorded()) {
        attempts
            .entry(r.idempotency_key)
            .or_default()
            .push(r.attempt.expect("X-Delivery-Attempt"));
    }
    assert_eq!(attempts.len(), REQUESTS, "every key reached a backend");
    let mut again = 0;
    for (key, seen) in &attempts {
        let distinct: HashSet<_> = seen.iter().collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "{key}: a repeat is a new attempt, got {seen:?}"
        );
        again += usize::from(seen.len() > 1);
    }
    assert!(
        again > 0,
        "no answered attempt was delivered again: no outcome was lost, so this test tested nothing"
    );
    eprintln!(
        "lost outcomes: {again} entries answered while their outcome could not be recorded \
         were delivered again after the kill; all {REQUESTS} delivered"
    );
}
