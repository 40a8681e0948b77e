//! Cellgate on a real 3+3 Redis Cluster, with a master SIGKILLed under mixed load: synchronous
//! traffic with rate limits, async deliveries, and a directory change after the failover.
//!
//! What must hold: no synchronous request fails because of the failover; every async request
//! the gateways acknowledged (202) is delivered; enqueues fail (503, never a false 202) only
//! while the killed master's slots have no master; the limiter returns to `synced` and
//! directory writes work again after the promotion. The times each took are printed.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::{EchoCell, Gateway, RedisCluster, wait_until};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

const CELLS: [&str; 3] = ["cell-1", "cell-2", "cell-3"];
/// The rate limit of the hot key; the calm keys stay far below it.
const LIMIT: u32 = 50;

/// Redis calls get 100 ms; an enqueue gets 1 s, since it waits for the replica (`WAIT`),
/// and on a 2-core machine running six Redis nodes, two debug gateways, three cells and the
/// load, a replica is sometimes not scheduled within 100 ms: an honest 503, but not the
/// failover this test is about.
fn config(cluster: &RedisCluster, cells: &[EchoCell]) -> String {
    let mut text = format!(
        "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n\
         request_timeout = \"1s\"\n\n\
         [redis]\n{}\ntimeout = \"100ms\"\n\n\
         [control]\npoll_interval = \"500ms\"\nheartbeat_interval = \"200ms\"\n\
         gateway_ttl = \"3s\"\n\n\
         [ratelimit]\nsync_interval = \"100ms\"\n\n\
         [[ratelimit.policies]]\nname = \"per-user\"\nkey = \"user\"\nlimit = {LIMIT}\n\
         per = \"1s\"\n\n\
         [delivery]\nworkers = 8\nmax_attempts = 10\nbackoff_base = \"100ms\"\n\
         enqueue_timeout = \"1s\"\n\
         backoff_max = \"1s\"\nvisibility_timeout = \"3s\"\n\n",
        cluster.config_target()
    );
    for cell in cells {
        text.push_str(&format!(
            "[[cells]]\nname = \"{}\"\nupstreams = [\"{}\"]\n\n",
            cell.name, cell.addr
        ));
    }
    text
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One request as a client saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// When the request was sent, and when its answer came.
    at: Instant,
    answered: Instant,
    status: u16,
    /// `id` of an acknowledged async request, `error` code of a refused one.
    detail: String,
    /// The idempotency key of an async request.
    key: String,
}

/// Runs `send` in a loop on its own thread until `stop`, `pause` apart.
fn load(
    stop: &Arc<AtomicBool>,
    pause: Duration,
    mut send: impl FnMut(&reqwest::blocking::Client, u64) -> Seen + Send + 'static,
) -> thread::JoinHandle<Vec<Seen>> {
    let stop = stop.clone();
    thread::spawn(move || {
        let http = http();
        let mut seen = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            seen.push(send(&http, i));
            i += 1;
            thread::sleep(pause);
        }
        seen
    })
}

fn get(http: &reqwest::blocking::Client, url: &str, user: &str) -> Seen {
    let at = Instant::now();
    let status = http
        .get(url)
        .header("x-user-id", user)
        .send()
        .map_or(0, |r| r.status().as_u16());
    Seen {
        at,
        answered: Instant::now(),
        status,
        detail: String::new(),
        key: user.to_owned(),
    }
}

fn enqueue(http: &reqwest::blocking::Client, url: &str, user: &str, key: &str) -> Seen {
    let at = Instant::now();
    let answer = http
        .post(url)
        .header("x-user-id", user)
        .header("prefer", "respond-async")
        .header("idempotency-key", key)
        .body("{}")
        .send();
    let (status, body) = match answer {
        Ok(r) => (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        ),
        Err(_) => (0, Value::Null),
    };
    let detail = body["id"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    Seen {
        at,
        answered: Instant::now(),
        status,
        detail,
        key: key.to_owned(),
    }
}

fn mode(gateway: &Gateway) -> String {
    test_support::http::get(gateway.admin_addr, "/admin/ratelimit")
        .map(|r| r.json()["mode"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[test]
fn a_master_killed_under_mixed_load() {
    let mut cluster = RedisCluster::start();
    let cells: Vec<EchoCell> = CELLS
        .iter()
        .map(|n| EchoCell::start_recording(bin(), n, &[]))
        .collect();
    let text = config(&cluster, &cells);
    let gateways: Vec<Gateway> = (0..2).map(|_| Gateway::start(bin(), &text)).collect();
    wait_until(Duration::from_secs(10), "limiters synced", || {
        gateways.iter().all(|g| mode(g) == "synced")
    });

    // The master of the directory's slot: the directory, some limiter groups and perhaps a
    // delivery partition lose their master.
    let victim = cluster.master_of("{cellgate}:directory");
    let on_victim: Vec<&str> = CELLS
        .iter()
        .copied()
        .filter(|c| cluster.master_of(&format!("{{dq:{c}}}:stream")) == victim)
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let mut calm = Vec::new();
    let mut hot = Vec::new();
    let mut async_load = Vec::new();
    for (g, gateway) in gateways.iter().enumerate() {
        let url = gateway.url("/");
        // 200 calm keys, each a few requests a second: far under the limit.
        calm.push(load(&stop, Duration::from_millis(5), move |http, i| {
            get(http, &url, &format!("calm-{}", (i * 2 + g as u64) % 200))
        }));
        let url = gateway.url("/");
        // One hot key at ~2× its limit over both gateways.
        hot.push(load(&stop, Duration::from_millis(20), move |http, _| {
            get(http, &url, "hot")
        }));
        let url = gateway.url("/orders");
        async_load.push(load(&stop, Duration::from_millis(10), move |http, i| {
            enqueue(
                http,
                &url,
                &format!("buyer-{}", i % 500),
                &format!("order-{g}-{i}"),
            )
        }));
    }
    thread::sleep(Duration::from_secs(2));

    let killed = Instant::now();
    cluster.kill(victim);
    let (promoted, failover) = cluster.wait_failover("{cellgate}:directory", victim);
    let promoted_at = Instant::now();

    // The limiter degrades (a tick touching the dead master fails) and comes back.
    wait_until(Duration::from_secs(20), "limiters synced again", || {
        gateways.iter().all(|g| mode(g) == "synced")
    });
    let limiter_back = killed.elapsed();

    // Directory writes work again.
    let mut drained = None;
    wait_until(Duration::from_secs(20), "a drain accepted", || {
        let out = gateways[0].cellctl(&["drain", "cell-3", "--over", "1s"]);
        if out.status.success() {
            drained = Some(killed.elapsed());
        }
        out.status.success()
    });
    let directory_back = drained.unwrap();
    wait_until(
        Duration::from_secs(5),
        "the drain reaches gateway 2",
        || {
            let v = test_support::http::get(gateways[1].admin_addr, "/admin/cells")
                .unwrap()
                .json();
            v["cells"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "cell-3" && c["state"] != "active")
        },
    );
    let out = gateways[1].cellctl(&["undrain", "cell-3", "--over", "1s"]);
    assert!(out.status.success(), "{out:?}");

    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let join = |handles: Vec<thread::JoinHandle<Vec<Seen>>>| -> Vec<Seen> {
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    };
    let (calm, hot, sent) = (join(calm), join(hot), join(async_load));

    // Synchronous traffic never failed.
    let failed: Vec<&Seen> = calm.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calm requests failed: {:?}",
        failed.len(),
        calm.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        hot.iter().all(|s| s.status == 200 || s.status == 429),
        "the hot key saw other answers than 200/429"
    );
    assert!(
        hot.iter().any(|s| s.status == 429),
        "the hot key was limited"
    );

    // Enqueues: 202, or 503 `queue_unavailable` only while the slot had no master, plus the
    // time the gateways' cluster client takes to learn the new master (it refreshes its slot
    // map when a call to the dead node fails; bounded here by 2 s).
    let acked: Vec<&Seen> = sent.iter().filter(|s| s.status == 202).collect();
    let refused: Vec<&Seen> = sent.iter().filter(|s| s.status != 202).collect();
    for s in &refused {
        assert_eq!(
            (s.status, s.detail.as_str()),
            (503, "queue_unavailable"),
            "{s:?}"
        );
        // Answered after the kill (one sent just before it can be caught mid-call by it),
        // sent before the new master was known.
        assert!(
            s.answered >= killed && s.at <= promoted_at + Duration::from_secs(2),
            "an enqueue refused outside the failover: sent {:?} and answered {:?} after the \
             kill, promoted after {failover:?}; {} refused in all",
            s.at.checked_duration_since(killed),
            s.answered.checked_duration_since(killed),
            refused.len()
        );
    }
    assert!(
        acked.iter().any(|s| s.at > promoted_at),
        "enqueues are accepted again after the promotion"
    );
    let last_refused = refused
        .iter()
        .map(|s| s.at.duration_since(killed))
        .max()
        .unwrap_or_default();

    // Every acknowledged delivery arrives (once per key after dedupe).
    let expected: HashSet<&str> = acked.iter().map(|s| s.key.as_str()).collect();
    let mut received = HashSet::new();
    wait_until(
        Duration::from_secs(60),
        "every acknowledged delivery",
        || {
            received = cells
                .iter()
                .flat_map(|c| c.recorded())
                .map(|r| r.idempotency_key)
                .collect::<HashSet<String>>();
            expected.iter().all(|k| received.contains(*k))
        },
    );
    let delivered_all = killed.elapsed();

    eprintln!(
        "cluster failover: node {victim} killed, node {promoted} promoted after {failover:?} \
         (partitions on it: {on_victim:?}); limiter synced again {limiter_back:?} after the \
         kill, directory writable after {directory_back:?}; {} calm + {} hot requests, 0 \
         failed; {} async requests: {} acknowledged, {} refused 503 during the failover (the \
         last {last_refused:?} after the kill); all acknowledged delivered {delivered_all:?} \
         after the kill",
        calm.len(),
        hot.len(),
        sent.len(),
        acked.len(),
        refused.len()
    );
}
