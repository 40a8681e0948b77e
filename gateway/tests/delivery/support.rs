//! Fixtures of the delivery tests: configs, async requests, status polling, Redis and
//! metrics probes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::{EchoCell, Gateway, Redis, Resp, http};

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

/// Every test runs redis-server, echo cells and gateways, several push thousands of requests,
/// and some measure how fast Redis answers: one at a time, so they do not starve each other on
/// a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `request_timeout` of every gateway here: short, so a frozen cell costs a worker 1 s.
pub const REQUEST_TIMEOUT: &str = "1s";

/// A gateway config on `redis` for `cells` (one upstream each, named after the cell).
/// `redis_timeout` bounds every queue call; `delivery` adds or overrides `[delivery]` keys
/// (a key given twice is a TOML error, so the defaults below are only those not in it).
pub fn config(
    redis: &dyn Redis,
    cells: &[&EchoCell],
    redis_timeout: &str,
    delivery: &str,
) -> String {
    let mut text = format!(
        "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n\
         request_timeout = \"{REQUEST_TIMEOUT}\"\n\n\
         [redis]\n{}\ntimeout = \"{redis_timeout}\"\n\n",
        redis.config_target()
    );
    for cell in cells {
        text.push_str(&format!(
            "[[cells]]\nname = \"{}\"\nupstreams = [\"{}\"]\n\n",
            cell.name, cell.addr
        ));
    }
    text.push_str("[delivery]\n");
    for (key, value) in [
        ("max_attempts", "5"),
        ("backoff_base", "\"100ms\""),
        ("backoff_max", "\"2s\""),
        // Must exceed request_timeout: a live delivery is never claimed.
        ("visibility_timeout", "\"3s\""),
    ] {
        if !delivery.lines().any(|l| l.trim_start().starts_with(key)) {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    text.push_str(delivery);
    text.push('\n');
    text
}

/// Recording echo cells `cell-1`..`cell-<n>` with extra flags.
pub fn recording_cells(n: usize, args: &[&str]) -> Vec<EchoCell> {
    (1..=n)
        .map(|i| EchoCell::start_recording(bin(), &format!("cell-{i}"), args))
        .collect()
}

/// A blocking HTTP client with a connection pool, for many requests from a few threads.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// The answer to one async request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `id` of a 202.
    pub id: Option<String>,
    pub location: Option<String>,
    /// `error` of a gateway-made error.
    pub error: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// `POST /orders` for `user` with `Prefer: respond-async` and, if given, `Idempotency-Key`.
///
/// # Errors
/// Transport errors (connection refused, timeout).
pub fn send_async(
    http: &reqwest::blocking::Client,
    gateway: &Gateway,
    user: &str,
    idempotency_key: Option<&str>,
    body: &str,
) -> reqwest::Result<Answer> {
    let mut request = http
        .post(gateway.url("/orders"))
        .header("x-user-id", user)
        .header("prefer", "respond-async")
        .body(body.to_owned());
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send()?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, retry_after) = (header("location"), header("retry-after"));
    let body: Value = serde_json::from_slice(&response.bytes()?).unwrap_or(Value::Null);
    let text = |field: &str| body[field].as_str().map(str::to_owned);
    Ok(Answer {
        status,
        id: if status == 202 { text("id") } else { None },
        location,
        error: text("error"),
        retry_after,
        body,
    })
}

/// Sends async requests for `(user, idempotency key)` pairs from `threads` threads and
/// returns the accepted ids in the same order. A `503 queue_unavailable` (Redis did not
/// confirm in time) is retried with the same idempotency key, as a client should: a write
/// that landed anyway answers with its original id.
///
/// # Panics
/// On any other answer than 202 (or transport error).
pub fn enqueue_all(
    gateway: &Gateway,
    requests: &[(String, String)],
    threads: usize,
) -> Vec<String> {
    let chunk = requests.len().div_ceil(threads);
    thread::scope(|s| {
        let workers: Vec<_> = requests
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let http = client();
                    part.iter()
                        .map(|(user, key)| {
                            let deadline = Instant::now() + Duration::from_secs(10);
                            loop {
                                let a = send_async(&http, gateway, user, Some(key), "{}")
                                    .unwrap_or_else(|e| panic!("async request of {user}: {e}"));
                                if a.status == 202 {
                                    return a.id.unwrap();
                                }
                                assert!(
                                    a.status == 503
                                        && a.error.as_deref() == Some("queue_unavailable")
                                        && Instant::now() < deadline,
                                    "async request of {user} not accepted: {} {}",
                                    a.status,
                                    a.body
                                );
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// `GET /_cellgate/deliveries/<id>`: the record.
pub fn status(http: &reqwest::blocking::Client, gateway: &Gateway, id: &str) -> Value {
    let response = http
        .get(gateway.url(&format!("/_cellgate/deliveries/{id}")))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "status of {id}");
    response.json().unwrap()
}

/// The records of `ids`, fetched from `threads` threads, in the same order.
pub fn statuses(gateway: &Gateway, ids: &[String], threads: usize) -> Vec<Value> {
    let chunk = ids.len().div_ceil(threads).max(1);
    thread::scope(|s| {
        let workers: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let http = client();
                    part.iter()
                        .map(|id| status(&http, gateway, id))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// Runs one command on `redis` and expects an integer reply.
pub fn redis_int(redis: &dyn Redis, args: &[&str]) -> i64 {
    match redis.command(args) {
        Ok(Resp::Integer(n)) => n,
        other => panic!("{args:?}: {other:?}"),
    }
}

/// Accepted entries not yet delivered nor dead, over the partitions of `cells`.
pub fn live(redis: &dyn Redis, cells: &[&str]) -> i64 {
    cells
        .iter()
        .map(|c| redis_int(redis, &["ZCARD", &format!("{{dq:{c}}}:live")]))
        .sum()
}

/// Dead-lettered entries over the partitions of `cells`.
pub fn dead(redis: &dyn Redis, cells: &[&str]) -> i64 {
    cells
        .iter()
        .map(|c| redis_int(redis, &["ZCARD", &format!("{{dq:{c}}}:dead")]))
        .sum()
}

/// Waits until every accepted entry of `cells` is delivered or dead; on timeout, panics
/// with what the queue holds.
pub fn wait_settled(redis: &dyn Redis, cells: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(2);
    while live(redis, cells) != 0 {
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} waiting for every accepted delivery to finish:\n{}",
                queue_dump(redis, cells)
            );
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// What the partitions of `cells` hold, with a few live records, for failure messages.
pub fn queue_dump(redis: &dyn Redis, cells: &[&str]) -> String {
    let mut out = String::new();
    for c in cells {
        let key = |k: &str| format!("{{dq:{c}}}:{k}");
        let count = |cmd: &str, k: &str| redis_int(redis, &[cmd, &key(k)]);
        out.push_str(&format!(
            "{c}: live {} delayed {} dead {} stream {} pending {:?}\n",
            count("ZCARD", "live"),
            count("ZCARD", "delayed"),
            count("ZCARD", "dead"),
            count("XLEN", "stream"),
            redis.command(&["XPENDING", &key("stream"), "workers"]),
        ));
        if let Ok(Resp::Array(Some(ids))) = redis.command(&["ZRANGE", &key("live"), "0", "2"]) {
            for id in ids.iter().filter_map(Resp::as_text) {
                let record = redis.command(&["HGETALL", &key(&format!("d:{id}"))]);
                let fields: Vec<String> = match record {
                    Ok(Resp::Array(Some(f))) => f
                        .chunks(2)
                        .filter(|kv| {
                            !matches!(kv[0].as_text().as_deref(), Some("body" | "headers"))
                        })
                        .map(|kv| {
                            format!(
                                "{}={}",
                                kv[0].as_text().unwrap_or_default(),
                                kv[1].as_text().unwrap_or_default()
                            )
                        })
                        .collect(),
                    other => vec![format!("{other:?}")],
                };
                out.push_str(&format!("  {id}: {}\n", fields.join(" ")));
            }
        }
    }
    out
}

/// Sum of the admin `/metrics` samples whose line starts with `prefix`.
pub fn metric(gateway: &Gateway, prefix: &str) -> f64 {
    let text = http::get(gateway.admin_addr, "/metrics").unwrap().text();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The admin view of `cell`: state, breaker, ...
pub fn cell_view(gateway: &Gateway, cell: &str) -> Value {
    let cells = http::get(gateway.admin_addr, "/admin/cells")
        .unwrap()
        .json();
    cells["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cell)
        .unwrap_or_else(|| panic!("no {cell} in /admin/cells: {cells}"))
        .clone()
}

/// The cell that serves `key` now, by the admin API.
pub fn where_is(gateway: &Gateway, key: &str) -> String {
    let answer = http::get(gateway.admin_addr, &format!("/admin/where/{key}"))
        .unwrap()
        .json();
    answer["cell"].as_str().unwrap().to_owned()
}

/// `count` users `<prefix>-<i>` whose cell is `cell`, by the admin API.
pub fn users_of(gateway: &Gateway, prefix: &str, cell: &str, count: usize) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|k| where_is(gateway, k) == cell)
        .take(count)
        .collect()
}

/// The distinct idempotency keys `cells` received.
pub fn recorded_keys(cells: &[EchoCell]) -> HashSet<String> {
    cells
        .iter()
        .flat_map(EchoCell::recorded)
        .map(|r| r.idempotency_key)
        .collect()
}

/// The partition (home cell) an id names: `<cell>.<hex>`.
pub fn partition_of(id: &str) -> &str {
    id.rsplit_once('.').unwrap().0
}
