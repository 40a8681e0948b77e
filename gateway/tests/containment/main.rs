//! Containment through real processes and real faults: a hung cell, a slow instance, a
//! failing upstream behind the retry budget, a full bulkhead, and load shedding by priority.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::{EchoCell, Gateway, latency, wait_until};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

/// Each test runs several processes and most measure latency: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A config with `server_extra` and, per cell, its upstreams and extra keys.
fn config(server_extra: &str, cells: &[(&str, Vec<&EchoCell>, &str)]) -> String {
    let mut text = format!(
        "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n{server_extra}\n"
    );
    for (name, upstreams, extra) in cells {
        let list: Vec<String> = upstreams
            .iter()
            .map(|u| format!("\"{}\"", u.addr))
            .collect();
        text.push_str(&format!(
            "\n[[cells]]\nname = \"{name}\"\nupstreams = [{}]\n{extra}\n",
            list.join(", ")
        ));
    }
    text
}

/// `count` keys whose home cell is `cell`, found through the admin API.
fn keys_of(gateway: &Gateway, cell: &str, count: usize) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("user-{i}"))
        .filter(|k| {
            test_support::http::get(gateway.admin_addr, &format!("/admin/where/{k}"))
                .unwrap()
                .json()["cell"]
                == cell
        })
        .take(count)
        .collect()
}

#[derive(Clone, Debug)]
struct Seen {
    key_cell: String,
    at: Instant,
    status: u16,
    error: String,
    latency: Duration,
    instance: String,
}

/// Worker threads sending requests for `keys` (with their cell) until `stop`.
fn load(
    url: String,
    keys: Vec<(String, String)>,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    headers: Vec<(&'static str, &'static str)>,
    pace: Option<Duration>,
) -> Vec<std::thread::JoinHandle<Vec<Seen>>> {
    let keys = Arc::new(keys);
    (0..workers)
        .map(|w| {
            let (url, keys, stop, headers) =
                (url.clone(), keys.clone(), stop.clone(), headers.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut seen = Vec::new();
                let mut i = w;
                let mut next = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Paced workers send at a fixed rate (skipping ticks they missed), so the
                    // load does not change when some answers get slower or faster.
                    if let Some(pace) = pace {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next = next.max(now) + pace;
                    }
                    let (key, cell) = &keys[i % keys.len()];
                    i += workers;
                    let at = Instant::now();
                    let mut request = http.get(&url).header("x-user-id", key);
                    for (k, v) in &headers {
                        request = request.header(*k, *v);
                    }
                    let (status, body) = match request.send() {
                        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
                        Err(_) => (0, String::new()),
                    };
                    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    seen.push(Seen {
                        key_cell: cell.clone(),
                        at,
                        status,
                        error: json["error"].as_str().unwrap_or_default().to_owned(),
                        latency: at.elapsed(),
                        instance: json["instance"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                seen
            })
        })
        .collect()
}

fn metric(gateway: &Gateway, prefix: &str) -> f64 {
    let text = test_support::http::get(gateway.admin_addr, "/metrics")
        .unwrap()
        .text();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn a_hung_cell_costs_only_its_own_users() {
    let _serial = serial();
    let cells: Vec<EchoCell> = ["cell-1", "cell-2", "cell-3"]
        .iter()
        .map(|n| EchoCell::start(bin(), n))
        .collect();
    let gateway = Gateway::start(
        bin(),
        &config(
            "request_timeout = \"500ms\"",
            &[
                ("cell-1", vec![&cells[0]], ""),
                ("cell-2", vec![&cells[1]], ""),
                ("cell-3", vec![&cells[2]], ""),
            ],
        ),
    );
    let mut others = Vec::new();
    for cell in ["cell-1", "cell-3"] {
        others.extend(
            keys_of(&gateway, cell, 20)
                .into_iter()
                .map(|k| (k, cell.to_owned())),
        );
    }
    let victims: Vec<(String, String)> = keys_of(&gateway, "cell-2", 20)
        .into_iter()
        .map(|k| (k, "cell-2".to_owned()))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // About 200 rps for the healthy cells and 40 rps for cell-2, each at a fixed pace.
    let pace = Some(Duration::from_millis(20));
    let mut workers = load(gateway.url("/"), others, 4, stop.clone(), vec![], pace);
    workers.extend(load(
        gateway.url("/"),
        victims,
        4,
        stop.clone(),
        vec![],
        Some(Duration::from_millis(100)),
    ));
    // The first half second is warm-up (clients connect, the debug build faults pages in);
    // then 3 s of steady traffic before the hang.
    let warm = Instant::now() + Duration::from_millis(500);
    std::thread::sleep(Duration::from_millis(3500));
    let fast_bucket = "cellgate_request_duration_seconds_bucket{le=\"0.004\",cell=\"cell-2\"}";
    let fast_before = metric(&gateway, fast_bucket);
    let hung_at = Instant::now();
    cells[1].stop(); // SIGSTOP: the process holds its connections and answers nothing
    // The breaker judges a 10 s window (at least 20 requests, 50% failing): the successes
    // from before the hang must age out of it before it opens.
    std::thread::sleep(Duration::from_secs(12));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<Seen> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    cells[1].cont();

    let others = |s: &&Seen| s.key_cell != "cell-2";
    let errors: Vec<&Seen> = seen
        .iter()
        .filter(others)
        .filter(|s| s.status != 200)
        .collect();
    assert!(
        errors.is_empty(),
        "other cells saw errors: {:?}",
        &errors[..errors.len().min(3)]
    );
    let samples: Vec<(Instant, Duration)> = seen
        .iter()
        .filter(others)
        .map(|s| (s.at, s.latency))
        .collect();
    let before = latency::slices(&samples, warm, hung_at, 3);
    let during = latency::slices(&samples, hung_at, hung_at + Duration::from_secs(12), 3);
    println!("other cells' slices: before the hang {before:?}, during {during:?}");
    // The median of three slices' p99s: a hiccup of the shared machine lifts one slice, a
    // hung cell that slowed the others would lift them all (the breaker opens only ~10 s in).
    let (p99_before, p99_during) = (latency::median_p99(&before), latency::median_p99(&during));
    println!("other cells' p99: before {p99_before:?}, during {p99_during:?}");
    assert!(
        p99_during <= p99_before + Duration::from_millis(2),
        "{p99_before:?} -> {p99_during:?}"
    );
    // The clients are paced: others' requests stalled behind the hung cell would be missing.
    let usual = latency::median_rate(&before);
    for slice in &during {
        assert!(
            slice.rate() >= usual * 0.7,
            "other cells' requests stalled: {slice:?}, {usual:.0}/s before"
        );
    }

    let hung: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.key_cell == "cell-2" && s.at >= hung_at)
        .collect();
    for s in &hung {
        assert!(matches!(s.status, 503 | 504 | 200), "{s:?}");
        assert!(
            s.latency <= Duration::from_millis(650),
            "answer after the deadline: {s:?}"
        );
    }
    let opened = hung
        .iter()
        .find(|s| s.error == "cell_unavailable")
        .map(|s| s.at)
        .expect("the breaker never opened");
    // Once open, the breaker answers without touching the network. Measured where the
    // gateway measures it (time to response head, `cellgate_request_duration_seconds`): the
    // client side of this harness is a debug build whose own overhead is milliseconds.
    let refusals = hung
        .iter()
        .filter(|s| s.error == "cell_unavailable")
        .count();
    let fast_after = metric(&gateway, fast_bucket) - fast_before;
    println!(
        "breaker opened {:?} after the hang; {refusals} refusals, {fast_after} cell-2 answers within 4 ms at the gateway",
        opened.duration_since(hung_at)
    );
    assert!(refusals > 20, "too few refusals after the breaker opened");
    assert!(
        fast_after >= refusals as f64,
        "only {fast_after} of {refusals} refusals took under 4 ms"
    );
    let mut client: Vec<Duration> = hung
        .iter()
        .filter(|s| s.error == "cell_unavailable")
        .map(|s| s.latency)
        .collect();
    client.sort_unstable();
    println!(
        "client-side refusal latency: median {:?}",
        client[client.len() / 2]
    );
}

#[test]
fn a_slow_instance_loses_its_traffic() {
    let _serial = serial();
    let a = EchoCell::start_with(bin(), "cell-1", &["--instance", "fast"]);
    let b = EchoCell::start_with(bin(), "cell-1", &["--instance", "slow"]);
    let gateway = Gateway::start(bin(), &config("", &[("cell-1", vec![&a, &b], "")]));
    let keys: Vec<(String, String)> = (0..50)
        .map(|i| (format!("u{i}"), "cell-1".to_owned()))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = load(gateway.url("/"), keys, 4, stop.clone(), vec![], None);
    std::thread::sleep(Duration::from_secs(1));
    b.set_fault(r#"{"latency_ms": 200}"#);
    let slowed = Instant::now();
    std::thread::sleep(Duration::from_secs(7));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<Seen> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        seen.iter().all(|s| s.status == 200),
        "errors with a slow instance"
    );
    let late: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.at >= slowed + Duration::from_secs(5))
        .collect();
    let to_slow = late.iter().filter(|s| s.instance == "slow").count();
    println!(
        "after 5 s: {to_slow} of {} requests went to the slow instance",
        late.len()
    );
    assert!(late.len() > 100);
    assert!(
        to_slow * 10 < late.len(),
        "slow instance still gets {to_slow} of {}",
        late.len()
    );
    let p99_late = latency::p99(late.iter().map(|s| s.latency));
    assert!(
        p99_late < Duration::from_millis(200),
        "cell p99 did not recover: {p99_late:?}"
    );
}

#[test]
fn a_failing_upstream_is_not_hammered_by_retries() {
    let _serial = serial();
    let a = EchoCell::start(bin(), "cell-1");
    let b = EchoCell::start(bin(), "cell-1");
    let gateway = Gateway::start(bin(), &config("", &[("cell-1", vec![&a, &b], "")]));
    let keys: Vec<(String, String)> = (0..50)
        .map(|i| (format!("u{i}"), "cell-1".to_owned()))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Every upstream answer is 503: retryable, and it never gets better.
    let workers = load(
        gateway.url("/"),
        keys,
        4,
        stop.clone(),
        vec![("x-echo-status", "503")],
        None,
    );
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<Seen> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let incoming = seen.len() as f64;
    let refused = seen
        .iter()
        .filter(|s| s.error == "cell_unavailable")
        .count() as f64;
    let retries = metric(
        &gateway,
        "cellgate_retries_total{cell=\"cell-1\",outcome=\"attempted\"}",
    );
    let upstream = incoming - refused + retries;
    println!(
        "incoming {incoming}, refused by the breaker {refused}, retries {retries}, upstream {upstream}"
    );
    assert!(
        upstream <= 1.1 * incoming,
        "upstream saw {upstream} for {incoming} incoming"
    );
    assert!(refused > 0.0, "the breaker never opened");
    assert!(metric(&gateway, "cellgate_circuit_breaker_state{cell=\"cell-1\"}") >= 1.0);
}

#[test]
fn a_full_bulkhead_refuses_at_once_and_spares_other_cells() {
    let _serial = serial();
    let hung = EchoCell::start(bin(), "cell-1");
    let fine = EchoCell::start(bin(), "cell-2");
    let gateway = Gateway::start(
        bin(),
        &config(
            "request_timeout = \"20s\"",
            &[
                ("cell-1", vec![&hung], "max_in_flight = 8"),
                ("cell-2", vec![&fine], ""),
            ],
        ),
    );
    let k1 = keys_of(&gateway, "cell-1", 9);
    let k2 = keys_of(&gateway, "cell-2", 5);
    hung.set_fault(r#"{"hang": true}"#);
    let url = gateway.url("/");
    let holders: Vec<_> = k1[..8]
        .iter()
        .cloned()
        .map(|k| {
            let url = url.clone();
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .get(url)
                    .header("x-user-id", k)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    wait_until(Duration::from_secs(5), "8 requests hung in cell-1", || {
        metric(&gateway, "cellgate_in_flight_requests{cell=\"cell-1\"}") >= 8.0
    });
    let http = reqwest::blocking::Client::new();
    let t = Instant::now();
    let ninth = http.get(&url).header("x-user-id", &k1[8]).send().unwrap();
    let took = t.elapsed();
    assert_eq!(ninth.status(), 503);
    assert!(ninth.headers().contains_key("retry-after"));
    assert_eq!(ninth.json::<Value>().unwrap()["error"], "cell_unavailable");
    assert!(
        took < Duration::from_millis(100),
        "request 9 waited {took:?}"
    );
    for k in &k2 {
        assert_eq!(
            http.get(&url)
                .header("x-user-id", k)
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    hung.set_fault(r#"{"hang": false}"#);
    for h in holders {
        assert_eq!(h.join().unwrap().unwrap(), 200);
    }
}

#[test]
fn overload_sheds_batch_before_normal_before_critical() {
    let _serial = serial();
    let hung = EchoCell::start(bin(), "cell-1");
    let fine = EchoCell::start(bin(), "cell-2");
    let gateway = Gateway::start(
        bin(),
        &config(
            "request_timeout = \"30s\"\nmax_in_flight = 20",
            &[("cell-1", vec![&hung], ""), ("cell-2", vec![&fine], "")],
        ),
    );
    let k1 = keys_of(&gateway, "cell-1", 19);
    let k2 = keys_of(&gateway, "cell-2", 1).remove(0);
    hung.set_fault(r#"{"hang": true}"#);
    let url = gateway.url("/");
    let hold = |keys: &[String]| -> Vec<std::thread::JoinHandle<u16>> {
        keys.iter()
            .cloned()
            .map(|k| {
                let url = url.clone();
                std::thread::spawn(move || {
                    reqwest::blocking::Client::new()
                        .get(url)
                        .header("x-user-id", k)
                        .header("x-priority", "critical")
                        .timeout(Duration::from_secs(60))
                        .send()
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect()
    };
    let http = reqwest::blocking::Client::new();
    let probe = |priority: &str| -> u16 {
        http.get(&url)
            .header("x-user-id", &k2)
            .header("x-priority", priority)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let shares = |n: usize| -> HashMap<&'static str, usize> {
        ["batch", "normal", "critical"]
            .into_iter()
            .map(|p| (p, (0..n).filter(|_| probe(p) == 200).count()))
            .collect()
    };
    // 15 of 20 in flight (75%): above the batch threshold (70%), below normal's (90%).
    let mut holders = hold(&k1[..15]);
    wait_until(Duration::from_secs(5), "15 in flight", || {
        metric(&gateway, "cellgate_in_flight_requests{cell=\"cell-1\"}") >= 15.0
    });
    let at_75 = shares(10);
    println!("admitted of 10 at 75% load: {at_75:?}");
    assert_eq!(
        (at_75["batch"], at_75["normal"], at_75["critical"]),
        (0, 10, 10)
    );
    // 19 of 20 (95%): normal is shed too; critical still passes.
    holders.extend(hold(&k1[15..19]));
    wait_until(Duration::from_secs(5), "19 in flight", || {
        metric(&gateway, "cellgate_in_flight_requests{cell=\"cell-1\"}") >= 19.0
    });
    let at_95 = shares(10);
    println!("admitted of 10 at 95% load: {at_95:?}");
    assert_eq!(
        (at_95["batch"], at_95["normal"], at_95["critical"]),
        (0, 0, 10)
    );
    let shed = http
        .get(&url)
        .header("x-user-id", &k2)
        .header("x-priority", "batch")
        .send()
        .unwrap();
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    assert_eq!(shed.json::<Value>().unwrap()["error"], "overloaded");
    hung.set_fault(r#"{"hang": false}"#);
    for h in holders {
        assert_eq!(h.join().unwrap(), 200);
    }
}
