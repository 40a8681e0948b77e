//! Latency, error rate and hang: from flags and at runtime through `/_fault`.

use std::time::{Duration, Instant};

use gateway::echo::EchoOptions;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Cell, wait_hung};

#[tokio::test]
async fn latency_flag_delays_every_answer() {
    let mut opts = EchoOptions::new("slow");
    opts.latency = Duration::from_millis(100);
    let cell = Cell::start(opts).await;
    for path in ["/", "/healthz"] {
        let started = Instant::now();
        assert_eq!(cell.get_json(path).await.0, StatusCode::OK);
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{path} too fast"
        );
    }
}

#[tokio::test]
async fn latency_can_be_changed_at_runtime() {
    let cell = Cell::named("c").await;
    let state = cell.set_fault(r#"{"latency_ms":120}"#).await;
    assert_eq!(state["latency_ms"], 120);
    let started = Instant::now();
    assert_eq!(cell.get_json("/").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(cell.set_fault(r#"{"latency_ms":0}"#).await["latency_ms"], 0);
}

#[tokio::test]
async fn error_rate_one_fails_every_echo_request() {
    let mut opts = EchoOptions::new("broken");
    opts.error_rate = 1.0;
    let cell = Cell::start(opts).await;
    for _ in 0..20 {
        let (status, answer) = cell.get_json("/").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer["fault"], "error_rate");
    }
    // Documented exemptions: health stays up, an explicit status is honoured.
    assert_eq!(cell.get_json("/healthz").await.0, StatusCode::OK);
    let explicit = cell
        .client
        .get(cell.url("/"))
        .header("x-echo-status", "200")
        .send()
        .await
        .unwrap();
    assert_eq!(explicit.status(), StatusCode::OK);
}

#[tokio::test]
async fn error_rate_zero_never_fails() {
    let cell = Cell::named("fine").await;
    cell.set_fault(r#"{"error_rate":1.0}"#).await;
    assert_eq!(
        cell.get_json("/").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    cell.set_fault(r#"{"error_rate":0}"#).await;
    for _ in 0..50 {
        assert_eq!(cell.get_json("/").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn error_rate_half_fails_about_half() {
    let cell = Cell::named("flaky").await;
    cell.set_fault(r#"{"error_rate":0.5}"#).await;
    let mut failures = 0;
    for _ in 0..400 {
        if cell.get_json("/").await.0 == StatusCode::INTERNAL_SERVER_ERROR {
            failures += 1;
        }
    }
    // Binomial(400, 0.5): sd 10, so these bounds are 10 sd away.
    assert!(
        (100..=300).contains(&failures),
        "{failures} failures of 400"
    );
}

#[tokio::test]
async fn fault_endpoint_updates_partially_and_rejects_invalid_input() {
    let cell = Cell::named("c").await;
    let initial = cell.get_json("/_fault").await.1;
    assert_eq!(
        initial,
        json!({"latency_ms": 0, "error_rate": 0.0, "hang": false, "hung_requests": 0})
    );
    cell.set_fault(r#"{"error_rate":0.25}"#).await;
    let state = cell.set_fault(r#"{"latency_ms":7}"#).await;
    assert_eq!(state["error_rate"], 0.25, "absent fields keep their value");
    assert_eq!(state["latency_ms"], 7);

    for invalid in [
        "not json",
        "",
        r#"{"error_rate":1.5}"#,
        r#"{"error_rate":-0.1}"#,
        r#"{"latency_ms":-1}"#,
        r#"{"hang":"yes"}"#,
        r#"{"bogus":1}"#,
        r#"{"latency_ms":9,"error_rate":2}"#,
    ] {
        let (status, error) = cell.post_fault(invalid).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid:?}: {error}");
        assert_eq!(error["error"], "invalid_fault");
        assert!(error["message"].is_string());
    }
    assert_eq!(
        cell.get_json("/_fault").await.1,
        state,
        "invalid updates change nothing"
    );

    let put = cell.client.put(cell.url("/_fault")).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn hang_holds_requests_until_cleared() {
    let cell = Cell::named("hung").await;
    assert_eq!(cell.set_fault(r#"{"hang":true}"#).await["hang"], true);

    let echo = tokio::spawn(cell.client.get(cell.url("/held")).send());
    let health = tokio::spawn(cell.client.get(cell.url("/healthz")).send());
    // Both requests are inside the cell and held there (not merely slow to arrive).
    wait_hung(&cell, 2).await;
    assert!(!echo.is_finished() && !health.is_finished());

    let state = cell.set_fault(r#"{"hang":false}"#).await;
    assert_eq!(state["hang"], false);
    for request in [echo, health] {
        let response = tokio::time::timeout(crate::support::DEADLINE, request)
            .await
            .expect("held request did not complete after unhang")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    wait_hung(&cell, 0).await;
}
