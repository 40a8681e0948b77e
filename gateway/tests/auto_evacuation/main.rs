//! Guarded auto-evacuation with real processes and real faults: a real `redis-server`, three
//! echo cells frozen with SIGSTOP (connections accepted, never answered) and resumed with
//! SIGCONT, two gateways with the automation on and light steady traffic through both.
//!
//! One scenario, in order: a dead cell is drained by exactly one gateway (the time from its
//! death to the drain is printed); a second dead cell is held back by the cap; the first cell
//! recovers and is undrained with slow start, which frees the slot for the second; an
//! operator's undrain of that cell wins over the automation.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use test_support::{EchoCell, Gateway, RedisServer, http, wait_until, workspace_bin};

/// Every wait on a condition gets this long: generous for a loaded 2-core CI box.
const WAIT: Duration = Duration::from_secs(60);
/// `[control.auto_evacuation]` of both gateways (seconds), and how fast they act on it.
const OPEN_FOR_S: u64 = 2;
const UNDRAIN_OVER_MS: u64 = 4_000;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn config(id: &str, cells: &[EchoCell], redis: &RedisServer) -> String {
    // A short request timeout makes a frozen cell fail fast enough for its breaker to open
    // within a couple of seconds of light traffic.
    let mut text = format!(
        "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n\
         gateway_id = \"{id}\"\nrequest_timeout = \"300ms\"\n\n\
         [redis]\nurl = \"{}\"\n\n\
         [control]\npoll_interval = \"500ms\"\nheartbeat_interval = \"200ms\"\ngateway_ttl = \"3s\"\n\n\
         [control.auto_evacuation]\nenabled = true\nopen_for = \"{OPEN_FOR_S}s\"\n\
         healthy_for = \"2s\"\nmax_auto_evacuated = 1\ndrain_over = \"2s\"\n\
         undrain_over = \"{UNDRAIN_OVER_MS}ms\"\n",
        redis.url()
    );
    for cell in cells {
        text.push_str(&format!(
            "\n[[cells]]\nname = \"{}\"\nupstreams = [\"{}\"]\n",
            cell.name, cell.addr
        ));
    }
    text
}

fn get(gateway: &Gateway, path: &str) -> Value {
    http::get(gateway.admin_addr, path).unwrap().json()
}

/// `(state, auto)` of `cell` as `gateway` shows it in `/admin/cells`.
fn cell(gateway: &Gateway, cell: &str) -> (String, bool) {
    let v = get(gateway, "/admin/cells");
    let c = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cell)
        .unwrap()
        .clone();
    (
        c["state"].as_str().unwrap().to_owned(),
        c["auto"].as_bool().unwrap(),
    )
}

fn automation(gateway: &Gateway) -> Value {
    get(gateway, "/admin/cells")["auto_evacuation"].clone()
}

/// The audit list, newest first.
fn audit(gateway: &Gateway) -> Vec<Value> {
    get(gateway, "/admin/audit?limit=1000")["audit"]
        .as_array()
        .unwrap()
        .clone()
}

fn is_auto(entry: &Value) -> bool {
    entry["actor"]
        .as_str()
        .is_some_and(|a| a.starts_with("auto-evacuation@"))
}

/// The automation's `action`s of `cell`, oldest first.
fn auto_entries(gateway: &Gateway, action: &str, cell: &str) -> Vec<Value> {
    let mut entries: Vec<Value> = audit(gateway)
        .into_iter()
        .filter(|e| is_auto(e) && e["action"] == action && e["target"] == cell)
        .collect();
    entries.reverse();
    entries
}

/// Waits for the automation's first `action` of `cell` and returns its audit entry.
fn wait_auto(gateway: &Gateway, action: &str, cell: &str) -> Value {
    let mut found = None;
    wait_until(WAIT, &format!("an automatic {action} of {cell}"), || {
        found = auto_entries(gateway, action, cell).into_iter().next();
        found.is_some()
    });
    found.unwrap()
}

/// The sum of a counter over both gateways' `/metrics`.
fn metric(gateways: &[Gateway], series: &str) -> f64 {
    gateways
        .iter()
        .map(|g| {
            http::get(g.admin_addr, "/metrics")
                .unwrap()
                .text()
                .lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum()
}

fn cellctl_status(cellctl: &Path, gateway: &Gateway) -> String {
    let out = Command::new(cellctl)
        .arg("--admin")
        .arg(gateway.admin_url(""))
        .arg("status")
        .env_remove("CELLCTL_TOKEN")
        .env_remove("CELLCTL_ADMIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Paced requests for many keys through every gateway until `stop`; counts answers.
fn traffic(
    gateways: &[Gateway],
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    const WORKERS: usize = 6;
    gateways
        .iter()
        .flat_map(|g| (0..WORKERS).map(move |w| (g.addr, w)))
        .map(|(addr, worker)| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let url = format!("http://{addr}/");
                let mut i = worker;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next = next.max(now) + Duration::from_millis(25);
                    let key = format!("user-{}", i % 300);
                    i += WORKERS;
                    if let Ok(r) = client.get(&url).header("x-user-id", &key).send() {
                        let _ = r.bytes();
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

#[test]
fn a_dead_cell_is_evacuated_once_within_the_cap_and_comes_back_with_slow_start() {
    // Built first: a build in the middle would compete with the timed part for the CPU.
    let cellctl = workspace_bin("cellctl");
    let redis = RedisServer::start();
    let cells: Vec<EchoCell> = ["cell-1", "cell-2", "cell-3"]
        .iter()
        .map(|n| EchoCell::start(bin(), n))
        .collect();
    let gateways: Vec<Gateway> = ["gw-a", "gw-b"]
        .iter()
        .map(|id| Gateway::start(bin(), &config(id, &cells, &redis)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let workers = traffic(&gateways, stop.clone(), answered.clone());

    // Both gateways agree on one lease holder, and every cell gets traffic on both.
    wait_until(WAIT, "one lease holder seen by both gateways", || {
        let (a, b) = (automation(&gateways[0]), automation(&gateways[1]));
        !a["lease"].is_null()
            && a["lease"] == b["lease"]
            && (a["leader"] == Value::Bool(true)) != (b["leader"] == Value::Bool(true))
    });
    let leader = automation(&gateways[0])["lease"]["holder"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(WAIT, "traffic on every cell of both gateways", || {
        gateways.iter().all(|g| {
            get(g, "/admin/cells")["cells"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["rps"].as_f64().unwrap_or(0.0) > 5.0)
        })
    });

    // 1. cell-1 dies: drained by exactly one gateway, through the directory, with a ramp.
    let died_ms = now_ms();
    cells[0].stop();
    let lead = gateways
        .iter()
        .find(|g| automation(g)["leader"] == Value::Bool(true))
        .unwrap();
    let mut opened_ms = None;
    wait_until(WAIT, "the leader's breaker of cell-1 to open", || {
        let state = metric(
            std::slice::from_ref(lead),
            "cellgate_circuit_breaker_state{cell=\"cell-1\"}",
        );
        opened_ms = (state > 0.0).then(now_ms);
        opened_ms.is_some()
    });
    let drain = wait_auto(&gateways[0], "drain", "cell-1");
    let took_ms = drain["at_ms"].as_u64().unwrap() - died_ms;
    let open_ms = opened_ms.unwrap() - died_ms;
    eprintln!(
        "time to auto-evacuation: {took_ms} ms from SIGSTOP to the drain: the breaker opened \
         after ~{open_ms} ms, the drain came {} ms later (open_for {OPEN_FOR_S}s, 1s ticks)",
        took_ms.saturating_sub(open_ms)
    );
    assert!(
        took_ms >= OPEN_FOR_S * 1000,
        "drained after {took_ms} ms, before the breaker could have been open for {OPEN_FOR_S}s"
    );
    assert_eq!(drain["actor"], format!("auto-evacuation@{leader}"));
    assert!(
        drain["reason"]
            .as_str()
            .unwrap()
            .starts_with("breaker open for "),
        "{drain}"
    );
    assert!(
        drain["to"]
            .as_str()
            .unwrap()
            .starts_with("draining over 2s"),
        "{drain}"
    );
    for g in &gateways {
        wait_until(WAIT, "cell-1 drained (auto) on every gateway", || {
            cell(g, "cell-1") == ("drained".into(), true)
        });
    }
    // Both gateways saw the breaker open; only the lease holder acted, once.
    for g in &gateways {
        assert_eq!(auto_entries(g, "drain", "cell-1").len(), 1);
    }
    assert_eq!(
        metric(
            &gateways,
            "cellgate_auto_evacuations_total{action=\"drain\"}"
        ),
        1.0
    );

    // 2. cell-2 dies while cell-1 is out: the cap holds it back, visibly.
    cells[1].stop();
    for g in &gateways {
        wait_until(WAIT, "cell-2 held back at the cap", || {
            let held = &automation(g)["held"];
            held["cell"] == "cell-2" && held["reason"] == "cap_reached"
        });
    }
    let status = cellctl_status(&cellctl, &gateways[0]);
    assert!(status.contains("drained (auto)"), "{status}");
    assert!(status.contains("HELD: cell-2"), "{status}");
    assert!(status.contains("cap reached"), "{status}");
    // Held means held: for well past open_for, cell-2 stays active on every gateway.
    let until = Instant::now() + Duration::from_secs(OPEN_FOR_S + 3);
    while Instant::now() < until {
        for g in &gateways {
            assert_eq!(cell(g, "cell-2"), ("active".into(), false));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(auto_entries(&gateways[0], "drain", "cell-2").is_empty());

    // 3. cell-1 recovers: once its probes pass for healthy_for, it is undrained with slow
    //    start; its slot frees when the ramp ends, and cell-2 (still dead) goes out then.
    let back_ms = now_ms();
    cells[0].cont();
    let undrain = wait_auto(&gateways[0], "undrain", "cell-1");
    eprintln!(
        "time to auto-undrain: {} ms from SIGCONT (probes every 5s, healthy_for 2s)",
        undrain["at_ms"].as_u64().unwrap() - back_ms
    );
    assert!(
        undrain["reason"]
            .as_str()
            .unwrap()
            .starts_with("healthy for "),
        "{undrain}"
    );
    assert!(
        undrain["to"]
            .as_str()
            .unwrap()
            .starts_with("undraining over 4s"),
        "{undrain}"
    );
    let (state, auto) = cell(&gateways[1], "cell-1");
    assert!(
        state == "undraining" && auto,
        "cell-1 ramps back up (slow start), got {state} auto={auto}"
    );
    for g in &gateways {
        wait_until(WAIT, "cell-1 active again", || {
            cell(g, "cell-1") == ("active".into(), false)
        });
    }
    let second = wait_auto(&gateways[0], "drain", "cell-2");
    assert!(
        second["at_ms"].as_u64().unwrap() >= undrain["at_ms"].as_u64().unwrap() + UNDRAIN_OVER_MS,
        "cell-2 went out before cell-1's undrain ramp ended: {undrain} / {second}"
    );
    assert_eq!(
        auto_entries(&gateways[1], "drain", "cell-1").len(),
        1,
        "cell-1 was not drained again after its recovery"
    );

    // 4. An operator undrains cell-2 (still dead): the operator wins. The automation does
    //    not drain it again, though its breaker stays open well past open_for.
    let by_hand = http::post_json(
        gateways[1].admin_addr,
        "/admin/cells/cell-2/undrain",
        r#"{"over":"1s","actor":"alice","reason":"testing the fix"}"#,
    )
    .unwrap();
    assert_eq!(by_hand.status, 200, "{}", by_hand.text());
    for g in &gateways {
        wait_until(WAIT, "cell-2 active by the operator's undrain", || {
            cell(g, "cell-2") == ("active".into(), false)
        });
    }
    let until = Instant::now() + Duration::from_secs(OPEN_FOR_S + 4);
    while Instant::now() < until {
        for g in &gateways {
            assert_eq!(cell(g, "cell-2"), ("active".into(), false));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(auto_entries(&gateways[0], "drain", "cell-2").len(), 1);
    let newest = &audit(&gateways[0])[0];
    assert_eq!(newest["actor"], "alice@gw-b", "{newest}");
    assert_eq!(
        metric(
            &gateways,
            "cellgate_auto_evacuations_total{action=\"drain\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &gateways,
            "cellgate_auto_evacuations_total{action=\"undrain\"}"
        ),
        1.0
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(answered.load(Ordering::Relaxed) > 0);
    cells[1].cont();
}
