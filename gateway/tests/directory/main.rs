//! Cell lifecycle across gateways: drains, undrains, pins and the shared directory in a real
//! `redis-server`, driven through `cellctl` and the admin API, under real traffic and faults.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::{EchoCell, Gateway, RedisCluster, RedisServer, latency, wait_until};

/// The tests of this file each run Redis, three cells and up to two gateways, and some
/// measure latency: running them one at a time keeps a 2-core machine from being the noise.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

struct Stack {
    cells: Vec<EchoCell>,
    gateways: Vec<Gateway>,
}

/// `redis`: the `[redis]` target line (`RedisServer::config_target`, `RedisCluster::…`).
fn config(cells: &[EchoCell], redis: Option<&str>, extra: &str) -> String {
    let mut text =
        String::from("[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin_listen}\"\n");
    text.push_str(extra);
    if let Some(target) = redis {
        text.push_str(&format!("\n[redis]\n{target}\n"));
    }
    text.push_str("\n[control]\npoll_interval = \"500ms\"\nheartbeat_interval = \"200ms\"\ngateway_ttl = \"3s\"\n");
    for cell in cells {
        text.push_str(&format!(
            "\n[[cells]]\nname = \"{}\"\nupstreams = [\"{}\"]\n",
            cell.name, cell.addr
        ));
    }
    text
}

fn stack(redis: Option<&str>, gateways: usize) -> Stack {
    let cells: Vec<EchoCell> = ["cell-1", "cell-2", "cell-3"]
        .iter()
        .map(|n| EchoCell::start(bin(), n))
        .collect();
    let text = config(&cells, redis, "");
    let gateways = (0..gateways)
        .map(|_| Gateway::start(bin(), &text))
        .collect();
    Stack { cells, gateways }
}

fn cellctl(gateway: &Gateway, args: &[&str]) -> Output {
    gateway.cellctl(args)
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cell_state(gateway: &Gateway, cell: &str) -> (String, u64) {
    let v = test_support::http::get(gateway.admin_addr, "/admin/cells")
        .unwrap()
        .json();
    let state = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cell)
        .map(|c| c["state"].as_str().unwrap().to_owned())
        .unwrap();
    (state, v["directory"]["version"].as_u64().unwrap())
}

/// One observed request: which gateway, when it started, status and serving cell.
#[derive(Clone, Debug)]
struct Seen {
    gateway: usize,
    started: Instant,
    status: u16,
    cell: String,
    latency: Duration,
}

/// Steady traffic from many keys to every gateway until stopped.
/// Three client threads per gateway, each sending a request at most every `pace` (as fast as
/// answers come when `None`) until `stop`.
fn traffic(
    gateways: &[Gateway],
    keys: usize,
    stop: Arc<AtomicBool>,
    pace: Option<Duration>,
) -> Vec<std::thread::JoinHandle<Vec<Seen>>> {
    gateways
        .iter()
        .enumerate()
        .flat_map(|(g, gateway)| {
            let addr = gateway.addr;
            (0..3).map(move |worker| (g, addr, worker))
        })
        .map(|(g, addr, worker)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let url = format!("http://{addr}/");
                let mut seen = Vec::new();
                let mut i = worker;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("user-{}", i % keys);
                    i += 3;
                    let started = Instant::now();
                    let (status, cell) = match http.get(&url).header("x-user-id", &key).send() {
                        Ok(r) => {
                            let cell = r
                                .headers()
                                .get("x-cell")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let status = r.status().as_u16();
                            let _ = r.bytes();
                            (status, cell)
                        }
                        Err(_) => (0, String::new()),
                    };
                    seen.push(Seen {
                        gateway: g,
                        started,
                        status,
                        cell,
                        latency: started.elapsed(),
                    });
                    if let Some(pace) = pace {
                        std::thread::sleep(pace.saturating_sub(started.elapsed()));
                    }
                }
                seen
            })
        })
        .collect()
}

#[test]
fn drain_and_undrain_follow_on_every_gateway_with_zero_errors() {
    let _serial = serial();
    let redis = RedisServer::start();
    drain_and_undrain(&redis.config_target());
}

#[test]
fn drain_and_undrain_on_a_redis_cluster() {
    let _serial = serial();
    let cluster = RedisCluster::start();
    drain_and_undrain(&cluster.config_target());
}

/// Two gateways sharing the directory in `redis`, under traffic: a drain reaches the other
/// gateway by pub/sub, nothing reaches the drained cell, the undrain brings traffic back,
/// and no request fails.
fn drain_and_undrain(redis: &str) {
    let s = stack(Some(redis), 2);
    let (a, b) = (&s.gateways[0], &s.gateways[1]);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = traffic(&s.gateways, 300, stop.clone(), None);
    std::thread::sleep(Duration::from_millis(500));

    let out = cellctl(
        a,
        &[
            "-o", "json", "drain", "cell-2", "--over", "2s", "--reason", "test",
        ],
    );
    let answer: Value = serde_json::from_slice(&ok(&out).stdout).unwrap();
    let drained_at = Instant::now();
    let version = answer["version"].as_u64().unwrap();
    assert_eq!(answer["state"], "draining");
    // Gateway B follows within 1 s (pub/sub, not the poll backstop).
    wait_until(
        Duration::from_secs(1),
        "gateway B applies the drain",
        || cell_state(b, "cell-2").1 >= version,
    );
    let followed = drained_at.elapsed();
    // After the ramp, nothing reaches cell-2 on either gateway.
    wait_until(Duration::from_secs(5), "cell-2 drained on both", || {
        cell_state(a, "cell-2").0 == "drained" && cell_state(b, "cell-2").0 == "drained"
    });
    let ramp_done = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));

    let undrain_started = Instant::now();
    let out = cellctl(b, &["undrain", "cell-2", "--over", "2s", "--wait"]);
    ok(&out);
    let undrained = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    let errors: Vec<&Seen> = seen.iter().filter(|s| s.status != 200).collect();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed during drain/undrain: {:?}",
        errors.len(),
        seen.len(),
        &errors[..errors.len().min(5)]
    );
    let leaked: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.started > ramp_done && s.started < undrain_started)
        .filter(|s| s.cell == "cell-2")
        .collect();
    assert!(
        leaked.is_empty(),
        "requests reached drained cell-2: {leaked:?}"
    );
    let during_drain = seen
        .iter()
        .filter(|s| s.started > ramp_done && s.started < undrain_started)
        .count();
    assert!(
        during_drain > 50,
        "too little traffic while drained: {during_drain}"
    );
    let back = seen
        .iter()
        .filter(|s| s.started > undrained && s.cell == "cell-2")
        .count();
    assert!(back > 0, "cell-2 got no traffic after undrain");
    for g in 0..2 {
        assert!(seen.iter().any(|s| s.gateway == g && s.cell == "cell-2"));
    }
    println!(
        "drain under load: {} requests, 0 errors; gateway B applied the drain {followed:?} after cellctl returned",
        seen.len()
    );
}

#[test]
fn redis_stopped_gateways_keep_routing_and_converge_after() {
    let _serial = serial();
    let redis = RedisServer::start();
    let s = stack(Some(&redis.config_target()), 2);
    let (a, b) = (&s.gateways[0], &s.gateways[1]);
    ok(&cellctl(
        a,
        &["evacuate", "cell-3", "--reason", "before outage"],
    ));
    wait_until(Duration::from_secs(2), "B sees the evacuation", || {
        cell_state(b, "cell-3").0 == "drained"
    });

    let stop = Arc::new(AtomicBool::new(false));
    // Paced (about 1,200 requests/s in all), so that the 2-core machine is not saturated:
    // latency then shows whether requests wait on Redis, not how the scheduler shares out
    // the cores the clients themselves keep busy. Windows of 3 s on each side, after a
    // warm-up (new connections, pages of the debug build): a p99 over ~3,600 requests is not
    // moved by one hiccup of the shared machine, which stalls every process at once.
    let workers = traffic(
        &s.gateways,
        200,
        stop.clone(),
        Some(Duration::from_millis(5)),
    );
    let warm = Instant::now() + Duration::from_millis(500);
    std::thread::sleep(Duration::from_millis(3500));
    redis.stop();
    let stopped = Instant::now();
    // Traffic alone first: the checks below start processes and poll the admin API, which
    // would load the machine during the measured window only.
    std::thread::sleep(Duration::from_secs(3));
    let measured = Instant::now();
    // The control plane notices, and says so.
    wait_until(
        Duration::from_secs(10),
        "control plane reported unreachable",
        || {
            let v = test_support::http::get(a.admin_addr, "/admin/cells")
                .unwrap()
                .json();
            v["directory"]["connected"] == Value::Bool(false)
        },
    );
    // Changes are refused (not silently lost) while Redis is down.
    let out = cellctl(a, &["drain", "cell-1", "--over", "1s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    redis.cont();
    let resumed = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    let errors = seen.iter().filter(|s| s.status != 200).count();
    assert_eq!(errors, 0, "requests failed while Redis was stopped");
    let during: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.started > stopped && s.started < resumed)
        .collect();
    let measured_during: Vec<&Seen> = during
        .iter()
        .filter(|s| s.started < measured)
        .copied()
        .collect();
    assert!(
        during.len() > 100,
        "too little traffic during the outage: {}",
        during.len()
    );
    assert!(
        during.iter().all(|s| s.cell != "cell-3"),
        "the last-known directory (cell-3 drained) was not kept"
    );
    let before: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.started > warm && s.started < stopped)
        .collect();
    let samples = |seen: &[&Seen]| -> Vec<(Instant, Duration)> {
        seen.iter().map(|s| (s.started, s.latency)).collect()
    };
    let (before_slices, during_slices) = (
        latency::slices(&samples(&before), warm, stopped, 3),
        latency::slices(&samples(&measured_during), stopped, measured, 3),
    );
    println!("slices before the outage {before_slices:?}, during {during_slices:?}");
    for slice in before_slices.iter().chain(&during_slices) {
        assert!(
            slice.requests > 100,
            "too little traffic in a slice (requests stalled?): {slice:?}"
        );
    }
    // A hiccup of the shared machine (every process stalls at once) lifts one slice's p99,
    // while a wait on Redis on the request path would lift all three.
    let (p99_before, p99_during) = (
        latency::median_p99(&before_slices),
        latency::median_p99(&during_slices),
    );
    println!("p99 before the outage {p99_before:?}, during {p99_during:?}");
    // Paced clients send ~1,200 requests a slice; a hiccup costs a few percent of them, a
    // request path waiting on the stopped Redis (up to the 1 s store timeout) most of them.
    let usual = latency::median_rate(&before_slices);
    for slice in &during_slices {
        assert!(
            slice.rate() >= usual * 0.7,
            "requests stalled while Redis was stopped: {slice:?}, {usual:.0}/s before"
        );
    }
    assert!(
        p99_during <= p99_before + Duration::from_millis(1),
        "p99 grew while Redis was stopped: {p99_before:?} -> {p99_during:?}"
    );

    // After SIGCONT they converge: a new change reaches both.
    wait_until(Duration::from_secs(10), "control plane reconnected", || {
        let v = test_support::http::get(a.admin_addr, "/admin/cells")
            .unwrap()
            .json();
        v["directory"]["connected"] == Value::Bool(true)
    });
    ok(&cellctl(a, &["undrain", "cell-3", "--over", "0s"]));
    wait_until(Duration::from_secs(2), "B follows after recovery", || {
        cell_state(b, "cell-3").0 == "active"
    });
}

#[test]
fn drains_survive_a_gateway_restart() {
    let _serial = serial();
    let redis = RedisServer::start();
    let mut s = stack(Some(&redis.config_target()), 1);
    ok(&cellctl(
        &s.gateways[0],
        &["drain", "cell-1", "--over", "1h"],
    ));
    ok(&cellctl(&s.gateways[0], &["pin", "alice", "cell-3"]));
    s.gateways[0].restart();
    let gw = &s.gateways[0];
    assert_eq!(cell_state(gw, "cell-1").0, "draining");
    let v: Value =
        serde_json::from_slice(&ok(&cellctl(gw, &["-o", "json", "where", "alice"])).stdout)
            .unwrap();
    assert_eq!(v["cell"], "cell-3");
}

#[test]
fn racing_drains_never_lose_an_update() {
    let _serial = serial();
    let redis = RedisServer::start();
    let s = stack(Some(&redis.config_target()), 2);
    let (a, b) = (&s.gateways[0], &s.gateways[1]);
    let mut conflicts = 0;
    for round in 0..10 {
        let (ra, rb) = std::thread::scope(|scope| {
            let ta = scope.spawn(|| cellctl(a, &["-o", "json", "drain", "cell-1", "--over", "1h"]));
            let tb = scope.spawn(|| cellctl(b, &["-o", "json", "drain", "cell-3", "--over", "1h"]));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        for (out, cell) in [(&ra, "cell-1"), (&rb, "cell-3")] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let state = cell_state(a, cell).0;
            match out.status.code() {
                Some(0) => assert_eq!(state, "draining", "round {round}: {cell} applied but lost"),
                Some(1) => {
                    assert!(stderr.contains("another change"), "{stderr}");
                    assert_eq!(state, "active", "round {round}: {cell} refused but applied");
                    conflicts += 1;
                }
                other => panic!("unexpected exit {other:?}: {stderr}"),
            }
        }
        for cell in ["cell-1", "cell-3"] {
            let _ = cellctl(a, &["undrain", cell, "--over", "0s"]);
        }
        wait_until(Duration::from_secs(2), "reset", || {
            cell_state(a, "cell-1").0 == "active" && cell_state(a, "cell-3").0 == "active"
        });
    }
    println!("racing drains: {conflicts} conflicts in 10 rounds, no lost update");
}

#[test]
fn cellctl_commands_and_exit_codes() {
    let _serial = serial();
    let s = stack(None, 1);
    let gw = &s.gateways[0];
    let _ = &s.cells;

    let status: Value =
        serde_json::from_slice(&ok(&cellctl(gw, &["-o", "json", "status"])).stdout).unwrap();
    assert_eq!(status["cells"].as_array().unwrap().len(), 3);
    assert_eq!(status["directory"]["version"], 0);
    assert!(String::from_utf8_lossy(&ok(&cellctl(gw, &["status"])).stdout).contains("cell-2"));

    let where_: Value =
        serde_json::from_slice(&ok(&cellctl(gw, &["-o", "json", "where", "alice"])).stdout)
            .unwrap();
    let home = where_["cell"].as_str().unwrap().to_owned();
    assert_eq!(where_["reason"], "hash_rank");

    // Pin alice elsewhere, see it, unpin.
    let other = if home == "cell-1" { "cell-2" } else { "cell-1" };
    ok(&cellctl(gw, &["pin", "alice", other, "--reason", "vip"]));
    let where_: Value =
        serde_json::from_slice(&ok(&cellctl(gw, &["-o", "json", "where", "alice"])).stdout)
            .unwrap();
    assert_eq!(where_["cell"], other);
    assert_eq!(where_["reason"], "pinned");
    let routed = test_support::http::request(
        gw.addr,
        "GET",
        "/",
        &[("x-user-id", "alice")],
        b"",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(routed.header("x-cell"), Some(other));
    ok(&cellctl(gw, &["unpin", "alice"]));
    let out = cellctl(gw, &["unpin", "alice"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unpin of an unpinned key is refused"
    );

    // Plan, drain, where (moved by drain), evacuate, guard, force, undrain.
    let plan: Value = serde_json::from_slice(
        &ok(&cellctl(gw, &["-o", "json", "plan", "drain", "cell-2"])).stdout,
    )
    .unwrap();
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 2);
    let total: f64 = moves
        .iter()
        .map(|m| m["share_of_cell"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-6, "{plan}");
    assert!(
        String::from_utf8_lossy(&ok(&cellctl(gw, &["plan", "drain", "cell-2"])).stdout)
            .contains("cell-1")
    );

    ok(&cellctl(gw, &["drain", "cell-2", "--over", "0s", "--wait"]));
    assert_eq!(cell_state(gw, "cell-2").0, "drained");
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let v: Value =
                serde_json::from_slice(&cellctl(gw, &["-o", "json", "where", k]).stdout).unwrap();
            v["home"] == "cell-2"
        })
        .unwrap();
    let v: Value =
        serde_json::from_slice(&ok(&cellctl(gw, &["-o", "json", "where", &key])).stdout).unwrap();
    assert_eq!(v["reason"], "moved_by_drain");
    assert_ne!(v["cell"], "cell-2");

    ok(&cellctl(gw, &["evacuate", "cell-1"]));
    let out = cellctl(gw, &["evacuate", "cell-3"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing") && stderr.contains("force"),
        "{stderr}"
    );
    assert_eq!(cell_state(gw, "cell-3").0, "active");
    ok(&cellctl(gw, &["undrain", "cell-1", "--over", "0s"]));
    ok(&cellctl(
        gw,
        &["undrain", "cell-2", "--over", "1s", "--wait"],
    ));
    assert_eq!(cell_state(gw, "cell-2").0, "active");

    // Audit trail in status.
    let status: Value =
        serde_json::from_slice(&ok(&cellctl(gw, &["-o", "json", "status"])).stdout).unwrap();
    let audit = status["audit"].as_array().unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "pin" && a["reason"] == "vip"),
        "{status}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "evacuate" && a["target"] == "cell-1")
    );

    // Unknown cell: 1, and the message lists the known cells.
    let out = cellctl(gw, &["drain", "cell-9"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cell-1") && stderr.contains("cell-3"),
        "{stderr}"
    );
    // Usage errors: 2.
    assert_eq!(cellctl(gw, &["drain"]).status.code(), Some(2));
    assert_eq!(
        cellctl(gw, &["drain", "cell-2", "--over", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(cellctl(gw, &["pin", "alice"]).status.code(), Some(2));
    // Bad input straight to the API: 4xx JSON naming the problem, nothing changes.
    let version = cell_state(gw, "cell-2").1;
    for (path, body, code) in [
        ("/admin/cells/cell-2/drain", "{not json", "invalid_body"),
        (
            "/admin/cells/cell-2/drain",
            "{\"over\":\"-5s\"}",
            "invalid_duration",
        ),
        (
            "/admin/cells/cell-2/drain",
            "{\"over\":\"30d\"}",
            "invalid_duration",
        ),
        ("/admin/cells/cell-2/drain", "{\"bogus\":1}", "invalid_body"),
    ] {
        let r = test_support::http::post_json(gw.admin_addr, path, body).unwrap();
        assert!(
            (400..500).contains(&r.status),
            "{path} {body}: {}",
            r.status
        );
        assert_eq!(r.json()["error"], code, "{body}");
    }
    let long = "k".repeat(300);
    let r = test_support::http::get(gw.admin_addr, &format!("/admin/where/{long}")).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        cell_state(gw, "cell-2").1,
        version,
        "a refused change bumped the version"
    );
    // Unreachable: 3.
    let out = test_support::cellctl("http://127.0.0.1:1", None, &["drain", "cell-2"]);
    assert_eq!(out.status.code(), Some(3));
}
