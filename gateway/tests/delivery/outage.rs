//! A cell down for 20 s under 5,000 async requests: its deliveries wait (without spending
//! attempts while its breaker is open) and all arrive once it is back; the other cells'
//! deliveries go on meanwhile. Every idempotency key reaches a backend, none is dead.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use test_support::{Gateway, Redis, RedisCluster, RedisServer, wait_until};

use crate::support::{
    bin, cell_view, config, dead, enqueue_all, live, metric, partition_of, recording_cells, serial,
    statuses, wait_settled,
};

const REQUESTS: usize = 5_000;
const OUTAGE: Duration = Duration::from_secs(20);
const CELLS: [&str; 3] = ["cell-1", "cell-2", "cell-3"];
const DEFERRED: &str = "cellgate_delivery_deliveries_total{outcome=\"deferred\"}";

#[test]
fn a_cell_down_for_20s_gets_every_delivery_once_back() {
    let _serial = serial();
    outage(&RedisServer::start());
}

#[test]
fn a_cell_down_for_20s_on_a_redis_cluster() {
    let _serial = serial();
    outage(&RedisCluster::start());
}

fn outage(redis: &dyn Redis) {
    let cells = recording_cells(3, &[]);
    let refs: Vec<_> = cells.iter().collect();
    let gateway = Gateway::start(
        bin(),
        &config(redis, &refs, "500ms", "workers = 16\nmax_attempts = 5"),
    );
    let deferred_before = metric(&gateway, DEFERRED);

    let down_at = Instant::now();
    cells[1].stop(); // SIGSTOP: connections are accepted by the kernel, never answered
    let requests: Vec<(String, String)> = (0..REQUESTS)
        .map(|i| (format!("user-{i}"), format!("outage-key-{i}")))
        .collect();
    let ids = enqueue_all(&gateway, &requests, 8);
    let enqueued_in = down_at.elapsed();
    let back_at = down_at + OUTAGE;
    let left = || back_at.saturating_duration_since(Instant::now());

    // While cell-2 is down: its breaker opens, its deliveries wait without spending
    // attempts, and the other cells' deliveries are not held up by it.
    wait_until(left(), "cell-2's breaker to open", || {
        cell_view(&gateway, "cell-2")["breaker"] == "open"
    });
    wait_until(left(), "a delivery deferred by the open breaker", || {
        metric(&gateway, DEFERRED) > deferred_before
    });
    wait_until(
        left(),
        "cell-1 and cell-3's deliveries during the outage",
        || live(redis, &["cell-1", "cell-3"]) == 0,
    );
    assert!(live(redis, &["cell-2"]) > 0, "cell-2's deliveries waited");
    assert_eq!(
        dead(redis, &CELLS),
        0,
        "nothing dead-lettered during the outage"
    );

    std::thread::sleep(left()); // the outage lasts its full 20 s
    cells[1].cont();
    let resumed = Instant::now();
    // The breaker re-opened (for up to 20 s) on each failed half-open probe during the
    // outage; it has to reach half-open again before the backlog flows.
    wait_settled(redis, &CELLS, Duration::from_secs(60));
    let drained_in = resumed.elapsed();

    assert_eq!(dead(redis, &CELLS), 0, "no entry is dead");
    assert_eq!(
        metric(
            &gateway,
            "cellgate_delivery_deliveries_total{outcome=\"dead\"}"
        ),
        0.0
    );
    let deferred = metric(&gateway, DEFERRED) - deferred_before;
    assert!(deferred > 0.0);

    let records = statuses(&gateway, &ids, 4);
    let mut attempts: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for (id, record) in ids.iter().zip(&records) {
        assert_eq!(record["state"], "delivered", "{record}");
        assert_eq!(record["delivered_to"], partition_of(id), "{record}");
        let n = record["attempts"].as_u64().unwrap();
        assert!((1..=5).contains(&n), "{record}");
        *attempts
            .entry((partition_of(id).to_owned(), n))
            .or_default() += 1;
        if n > 1 && partition_of(id) != "cell-2" {
            // A healthy cell's entry needed a retry: show why.
            eprintln!("outage: {id} took {n} attempts: {}", record["history"]);
        }
    }

    // Each key reached a backend at least once, and only keys that were sent did.
    let sent: HashSet<String> = requests.iter().map(|(_, k)| k.clone()).collect();
    let mut received = HashSet::new();
    let mut lines = 0;
    for cell in &cells {
        let own: HashSet<&str> = ids
            .iter()
            .zip(&requests)
            .filter(|(id, _)| partition_of(id) == cell.name)
            .map(|(_, (_, key))| key.as_str())
            .collect();
        for r in cell.recorded() {
            assert!(
                own.contains(r.idempotency_key.as_str()),
                "{} received {r:?}, not one of its keys",
                cell.name
            );
            lines += 1;
            received.insert(r.idempotency_key);
        }
    }
    assert_eq!(received.len(), sent.len());
    assert_eq!(received, sent);
    eprintln!(
        "outage: {REQUESTS} enqueued in {enqueued_in:?}; backlog delivered {drained_in:?} after \
         cell-2 came back; {lines} requests received for {} keys; {deferred} deferrals; \
         deliveries by (cell, attempts): {attempts:?}",
        received.len()
    );
}
