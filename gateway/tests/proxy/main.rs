//! Data-plane behaviour through real sockets: real echo-cell processes behind a real
//! `cellgate serve` process.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use test_support::{EchoCell, Gateway, free_port};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

/// A config with the given `[server]` extras and one upstream per cell.
fn config(server_extra: &str, cells: &[(&str, String)]) -> String {
    let mut text = format!(
        "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n{server_extra}\n\
         [routing]\nkey = [\"header:x-user-id\", \"query:user\"]\n"
    );
    for (name, upstream) in cells {
        text.push_str(&format!(
            "\n[[cells]]\nname = \"{name}\"\nupstreams = [\"{upstream}\"]\n"
        ));
    }
    text
}

struct Stack {
    _cells: Vec<EchoCell>,
    gateway: Gateway,
}

fn three_cells(server_extra: &str) -> Stack {
    let cells: Vec<EchoCell> = ["cell-1", "cell-2", "cell-3"]
        .iter()
        .map(|name| EchoCell::start(bin(), name))
        .collect();
    let spec: Vec<(&str, String)> = cells
        .iter()
        .map(|c| (c.name.as_str(), c.addr.to_string()))
        .collect();
    let gateway = Gateway::start(bin(), &config(server_extra, &spec));
    Stack {
        _cells: cells,
        gateway,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// Sets a runtime fault on an echo cell (after it passed its readiness check).
async fn set_fault(cell: &EchoCell, fault: &'static str) {
    let response = client()
        .post(format!("http://{}/_fault", cell.addr))
        .header("content-type", "application/json")
        .body(fault)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn json(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_evenly_and_stick_to_their_cell() {
    let stack = three_cells("");
    let url = stack.gateway.url("/spread");
    let http = client();
    let keys: Vec<String> = (0..3000).map(|i| format!("user-{i}")).collect();
    let mut first_cell: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        let results: Vec<(String, String)> = futures_util::stream::iter(keys.clone())
            .map(|key| {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let response = http
                        .get(&url)
                        .header("x-user-id", &key)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200, "key {key}");
                    let x_cell = response.headers()["x-cell"].to_str().unwrap().to_owned();
                    let body = json(response).await;
                    assert_eq!(
                        body["cell"],
                        x_cell.as_str(),
                        "X-Cell names the cell that answered"
                    );
                    assert_eq!(body["user"], key.as_str());
                    (key, x_cell)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for (key, cell) in results {
            if round == 0 {
                first_cell.insert(key, cell);
            } else {
                assert_eq!(
                    first_cell[&key], cell,
                    "{key} changed cell between requests"
                );
            }
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for cell in first_cell.values() {
        *counts.entry(cell.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (cell, n) in &counts {
        assert!(
            (950..=1050).contains(n),
            "{cell} got {n} of 3000 keys, outside ±5% of 1000: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_hop_by_hop_stripped() {
    let stack = three_cells("");
    let http = client();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = http
        .get(stack.gateway.url("/a/b?x=1"))
        .header("x-user-id", "alice")
        .header("x-request-id", "req-42")
        .header("traceparent", trace)
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "secret")
        .header("te", "trailers")
        .header("x-keep-me", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let cell = response.headers()["x-cell"].to_str().unwrap().to_owned();
    let body = json(response).await;
    assert_eq!(body["path"], "/a/b");
    assert_eq!(body["query"], "x=1");
    let h = &body["headers"];
    assert_eq!(h["x-request-id"], "req-42");
    assert_eq!(h["x-cell"], cell.as_str());
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-keep-me"], "yes");
    assert!(
        h.get("x-drop-me").is_none(),
        "Connection-named header leaked: {h}"
    );
    assert!(h.get("te").is_none(), "TE leaked: {h}");
    let sent = h["traceparent"].as_str().unwrap();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(
        !sent.contains("00f067aa0ba902b7"),
        "gateway hop needs its own span id: {sent}"
    );
    let budget: u64 = h["x-request-deadline-ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(budget > 0 && budget <= 5000, "{budget}");

    // Without a client id or trace, the gateway makes them.
    let response = http
        .get(stack.gateway.url("/"))
        .header("x-user-id", "bob")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);
    let body = json(response).await;
    assert_eq!(body["headers"]["x-request-id"], id.as_str());
    assert_eq!(body["headers"]["traceparent"].as_str().unwrap().len(), 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    let stack = three_cells("");
    let http = client();

    // 10 MiB upload, sent in 64 KiB chunks with pauses in the first ones: the upstream must
    // see the chunks spread over time (streamed), and every byte intact.
    const SIZE: usize = 10 * 1024 * 1024;
    let payload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let expected_hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&payload));
    let chunks: Vec<Vec<u8>> = payload.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let stream =
        futures_util::stream::iter(chunks.into_iter().enumerate()).then(|(i, c)| async move {
            if i < 4 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok::<_, std::io::Error>(c)
        });
    let response = http
        .post(stack.gateway.url("/upload"))
        .header("x-user-id", "uploader")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["body_bytes"], SIZE as u64);
    assert_eq!(body["body_xxh3"], expected_hash.as_str());
    let spread = body["body_spread_ms"].as_f64().unwrap();
    assert!(
        spread >= 500.0,
        "upstream saw the body arrive within {spread} ms: buffered?"
    );

    // 10 MiB download.
    let response = http
        .get(stack.gateway.url(&format!("/download?size={SIZE}")))
        .header("x-user-id", "downloader")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), SIZE);

    // A slow response arrives chunk by chunk, not all at once at the end.
    let response = http
        .get(
            stack
                .gateway
                .url("/slow?stream_chunks=4&chunk_bytes=16&chunk_interval_ms=300"),
        )
        .header("x-user-id", "streamer")
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut arrivals = Vec::new();
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
        arrivals.push(Instant::now());
    }
    assert_eq!(total, 64);
    let spread = arrivals.last().unwrap().duration_since(arrivals[0]);
    assert!(
        spread >= Duration::from_millis(600),
        "chunks arrived within {spread:?}: buffered?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cell_fails_only_its_own_keys() {
    let cells: Vec<EchoCell> = ["cell-1", "cell-2"]
        .iter()
        .map(|name| EchoCell::start(bin(), name))
        .collect();
    let dead = format!("127.0.0.1:{}", free_port());
    let spec = vec![
        ("cell-1", cells[0].addr.to_string()),
        ("cell-2", cells[1].addr.to_string()),
        ("cell-3", dead.clone()),
    ];
    let gateway = Gateway::start(bin(), &config("", &spec));
    let http = client();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..300 {
        let response = http
            .get(gateway.url("/"))
            .header("x-user-id", format!("u{i}"))
            .send()
            .await
            .unwrap();
        let cell = response.headers()["x-cell"].to_str().unwrap().to_owned();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if cell == "cell-3" {
            // Connect failures answer 502 until the cell's breaker opens; then 503 at once.
            let body: Value = serde_json::from_str(&text).unwrap();
            match status {
                502 => assert_eq!(body["error"], "upstream_error"),
                503 => assert_eq!(body["error"], "cell_unavailable"),
                other => panic!("cell-3 key answered {other}: {text}"),
            }
            assert!(
                !text.contains(&dead),
                "error leaks the upstream address: {text}"
            );
            assert!(
                !text.contains("127.0.0.1"),
                "error leaks an address: {text}"
            );
            failed += 1;
        } else {
            assert_eq!(status, 200, "{cell} key u{i} failed: {text}");
            ok += 1;
        }
    }
    assert!(failed > 50 && ok > 150, "ok {ok}, failed {failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_times_out_at_the_deadline() {
    let slow = EchoCell::start(bin(), "slow");
    set_fault(&slow, r#"{"latency_ms": 3000}"#).await;
    let gateway = Gateway::start(
        bin(),
        &config(
            "request_timeout = \"400ms\"",
            &[("slow", slow.addr.to_string())],
        ),
    );
    let http = client();
    let start = Instant::now();
    let response = http
        .get(gateway.url("/"))
        .header("x-user-id", "alice")
        .send()
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["x-cell"], "slow");
    assert_eq!(json(response).await["error"], "upstream_timeout");
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");

    // A client deadline shorter than the route timeout wins.
    let start = Instant::now();
    let response = http
        .get(gateway.url("/"))
        .header("x-user-id", "alice")
        .header("x-request-deadline-ms", "100")
        .send()
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(response.status(), 504);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");

    // An expired deadline starts no work at all.
    let response = http
        .get(gateway.url("/"))
        .header("x-user-id", "alice")
        .header("x-request-deadline-ms", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_missing_keys_get_400_json() {
    let stack = three_cells("");
    let http = client();
    let response = http.get(stack.gateway.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("x-request-id").is_some());
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json(response).await;
    assert_eq!(body["error"], "missing_routing_key");
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32);
    assert!(body["message"].is_string());

    let long = "k".repeat(257);
    for (header, query) in [
        (Some(long.as_str()), ""),
        (None, "?user=a%01b"),
        (Some("a\tb"), ""),
    ] {
        let mut request = http.get(stack.gateway.url(&format!("/{query}")));
        if let Some(key) = header {
            request = request.header("x-user-id", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json(response).await["error"], "invalid_routing_key");
    }
    let ok = http
        .get(stack.gateway.url("/"))
        .header("x-user-id", "k".repeat(256))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_and_headers_are_refused() {
    let stack = three_cells("max_request_body = \"64KiB\"\nmax_header_bytes = \"4KiB\"");
    let http = client();
    let response = http
        .post(stack.gateway.url("/"))
        .header("x-user-id", "alice")
        .body(vec![0u8; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(json(response).await["error"], "payload_too_large");

    // Chunked: the size is only known while streaming.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![1u8; 8192])));
    let response = http
        .post(stack.gateway.url("/"))
        .header("x-user-id", "alice")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(json(response).await["error"], "payload_too_large");

    let ok = http
        .post(stack.gateway.url("/"))
        .header("x-user-id", "alice")
        .body(vec![0u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let response = http
        .get(stack.gateway.url("/"))
        .header("x-user-id", "alice")
        .header("x-big", "v".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert_eq!(json(response).await["error"], "headers_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_and_metrics() {
    let stack = three_cells("");
    let http = client();
    for i in 0..30 {
        http.get(stack.gateway.url("/"))
            .header("x-user-id", format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    http.get(stack.gateway.url("/")).send().await.unwrap();
    let health = http
        .get(stack.gateway.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http
        .get(stack.gateway.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http
        .get(stack.gateway.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("cellgate_requests_total{") && l.contains("class=\"2xx\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 30.0, "{metrics}");
    for needle in [
        "cellgate_request_duration_seconds_bucket{",
        "cellgate_in_flight_requests{cell=\"cell-1\"}",
        "cellgate_build_info{",
        "cellgate_gateway_errors_total{code=\"missing_routing_key\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }

    let where_ = json(
        http.get(stack.gateway.admin_url("/admin/where/alice"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let routed = http
        .get(stack.gateway.url("/"))
        .header("x-user-id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(where_["cell"], routed.headers()["x-cell"].to_str().unwrap());
    assert_eq!(where_["ranking"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let slow = EchoCell::start(bin(), "slow");
    set_fault(&slow, r#"{"latency_ms": 1000}"#).await;
    let mut gateway = Gateway::start(bin(), &config("", &[("slow", slow.addr.to_string())]));
    let http = client();
    let url = gateway.url("/");
    let in_flight = tokio::spawn({
        let http = http.clone();
        async move { http.get(url).header("x-user-id", "alice").send().await }
    });
    // Wait until the request is really in flight at the gateway.
    let admin = gateway.admin_url("/metrics");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = http.get(&admin).send().await.unwrap().text().await.unwrap();
        if m.contains("cellgate_in_flight_requests{cell=\"slow\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "request never went in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.signal(libc_sigterm());
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(
        response.status(),
        200,
        "in-flight request was cut by shutdown"
    );
    let status = gateway
        .wait_exit(Duration::from_secs(10))
        .expect("gateway did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

fn libc_sigterm() -> i32 {
    15
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_response_body_is_cut_and_frees_the_cell() {
    let cell = EchoCell::start(bin(), "cell-1");
    let gateway = Gateway::start(
        bin(),
        &config(
            "request_timeout = \"500ms\"",
            &[("cell-1", cell.addr.to_string())],
        ),
    );
    let http = client();
    let start = Instant::now();
    // Headers at once, then chunks 3 s apart: the body stalls far longer than the timeout.
    let response = http
        .get(gateway.url("/stall?stream_chunks=3&chunk_bytes=16&chunk_interval_ms=3000"))
        .header("x-user-id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await;
    let elapsed = start.elapsed();
    assert!(
        body.is_err(),
        "a stalled body must be aborted, got {body:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "cut after {elapsed:?}"
    );
    let metrics = http
        .get(gateway.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cellgate_in_flight_requests{cell=\"cell-1\"} 0"),
        "the cell's slot was not released:\n{metrics}"
    );
}
