//! A gateway SIGKILLed in the middle of delivering: the work it held is claimed by another
//! gateway after the visibility timeout and delivered; nothing accepted is lost, and a
//! duplicate only ever repeats an original idempotency key, as a new attempt.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use test_support::{Gateway, RedisServer, Resp, wait_until};

use crate::support::{
    bin, config, enqueue_all, live, metric, recording_cells, serial, statuses, wait_settled,
};

const REQUESTS: usize = 600;
const CELLS: [&str; 3] = ["cell-1", "cell-2", "cell-3"];

#[test]
fn a_gateway_killed_mid_delivery_loses_nothing() {
    let _serial = serial();
    let redis = RedisServer::start();
    // Slow cells: every delivery is in flight for 200 ms, so a kill catches some mid-way.
    let cells = recording_cells(3, &["--latency", "200ms"]);
    let refs: Vec<_> = cells.iter().collect();
    // request_timeout 1s < visibility_timeout 3s: only a dead worker's work is claimed.
    let text = config(&redis, &refs, "500ms", "workers = 16");
    let mut a = Gateway::start(bin(), &text);

    let requests: Vec<(String, String)> = (0..REQUESTS)
        .map(|i| (format!("user-{i}"), format!("crash-key-{i}")))
        .collect();
    let ids = enqueue_all(&a, &requests, 4);
    let received = || cells.iter().map(|c| c.recorded().len()).sum::<usize>();
    wait_until(
        Duration::from_secs(30),
        "gateway A to be mid-stream",
        || received() >= REQUESTS / 4,
    );
    a.kill();
    let killed = Instant::now();

    // A died holding tokens: read and unacknowledged, some mid-delivery.
    let held: i64 = CELLS
        .iter()
        .map(|c| {
            match redis
                .command(&["XPENDING", &format!("{{dq:{c}}}:stream"), "workers"])
                .unwrap()
            {
                Resp::Array(Some(summary)) => summary[0].as_integer().unwrap(),
                other => panic!("XPENDING: {other:?}"),
            }
        })
        .sum();
    assert!(held > 0, "gateway A died with nothing in flight");
    assert!(live(&redis, &CELLS) > 0, "gateway A died mid-stream");

    let b = Gateway::start(bin(), &text);
    wait_settled(&redis, &CELLS, Duration::from_secs(60));
    let finished_in = killed.elapsed();
    let claimed = metric(&b, "cellgate_delivery_claimed_total");
    assert!(claimed > 0.0, "gateway B claimed A's abandoned work");

    for record in statuses(&b, &ids, 4) {
        assert_eq!(record["state"], "delivered", "{record}");
    }

    let sent: HashSet<&str> = requests.iter().map(|(_, k)| k.as_str()).collect();
    let mut attempts_seen: HashMap<String, Vec<u32>> = HashMap::new();
    for r in cells.iter().flat_map(|c| c.recorded()) {
        assert!(
            sent.contains(r.idempotency_key.as_str()),
            "a backend received a key that was never sent: {r:?}"
        );
        attempts_seen
            .entry(r.idempotency_key)
            .or_default()
            .push(r.attempt.expect("X-Delivery-Attempt"));
    }
    assert_eq!(attempts_seen.len(), REQUESTS, "every key reached a backend");
    let mut duplicates = 0;
    for (key, attempts) in &attempts_seen {
        let distinct: HashSet<_> = attempts.iter().collect();
        assert_eq!(
            distinct.len(),
            attempts.len(),
            "{key}: a repeat must be a new attempt, got {attempts:?}"
        );
        duplicates += attempts.len() - 1;
    }
    eprintln!(
        "crash: A held {held} tokens when killed; B claimed {claimed}, all {REQUESTS} \
         delivered {finished_in:?} after the kill; {duplicates} duplicate receptions"
    );
}
