//! The JSON echo answer and the per-request headers.

use gateway::echo::EchoOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Cell, now_ms, xxh3_hex};

#[tokio::test]
async fn echoes_identity_and_request_details() {
    let cell = Cell::named("cell-a").await;
    let response = cell
        .client
        .get(cell.url("/some/path?x=1&y=two"))
        .header("x-user-id", "alice")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .header("X-Mixed-Case", "v")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();

    assert_eq!(answer["cell"], "cell-a");
    assert_eq!(answer["instance"], format!("cell-a@{}", cell.addr));
    assert_eq!(answer["user"], "alice");
    assert_eq!(answer["method"], "GET");
    assert_eq!(answer["path"], "/some/path");
    assert_eq!(answer["query"], "x=1&y=two");
    assert_eq!(answer["body_bytes"], 0);
    assert_eq!(answer["body_xxh3"], xxh3_hex(b""));
    assert_eq!(answer["body_spread_ms"], 0);
    assert_eq!(answer["fault"], Value::Null);
    let headers = &answer["headers"];
    assert_eq!(headers["x-multi"], "a, b");
    assert_eq!(headers["x-mixed-case"], "v");
    assert_eq!(headers["host"], cell.addr.to_string());
}

#[tokio::test]
async fn absent_user_and_query_are_null_and_instance_is_configurable() {
    let mut opts = EchoOptions::new("cell-b");
    opts.instance = Some("cell-b-7".into());
    let cell = Cell::start(opts).await;
    let (status, answer) = cell.get_json("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["instance"], "cell-b-7");
    assert_eq!(answer["user"], Value::Null);
    assert_eq!(answer["query"], Value::Null);
}

#[tokio::test]
async fn every_method_and_path_is_echoed() {
    let cell = Cell::named("cell-c").await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let response = cell
            .client
            .request(method.parse().unwrap(), cell.url("/deep/er/path"))
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["method"], method);
        assert_eq!(answer["path"], "/deep/er/path");
        assert_eq!(answer["body_bytes"], 7);
        assert_eq!(answer["body_xxh3"], xxh3_hex(b"payload"));
    }
    let (status, answer) = cell.get_json("/healthzz").await;
    assert_eq!(
        (status, &answer["path"]),
        (StatusCode::OK, &json!("/healthzz"))
    );
}

#[tokio::test]
async fn healthz_answers_ok() {
    let cell = Cell::named("cell-d").await;
    let (status, answer) = cell.get_json("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "ok");
    assert_eq!(answer["cell"], "cell-d");
}

#[tokio::test]
async fn echo_status_header_sets_the_status() {
    let cell = Cell::named("cell-e").await;
    for code in [201_u16, 404, 418, 429, 503] {
        let response = cell
            .client
            .get(cell.url("/x"))
            .header("x-echo-status", code.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), code);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["cell"], "cell-e",
            "the echo answer comes with any status"
        );
    }
    for invalid in ["abc", "99", "600", "", "4181"] {
        let response = cell
            .client
            .get(cell.url("/x"))
            .header("x-echo-status", invalid)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "x-echo-status: {invalid:?}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_echo_status");
    }
}

async fn get_with_fail_until(cell: &Cell, value: &str) -> (StatusCode, Value) {
    let response = cell
        .client
        .get(cell.url("/poison"))
        .header("x-echo-fail-until-ms", value)
        .send()
        .await
        .unwrap();
    crate::support::into_json(response).await
}

#[tokio::test]
async fn fail_until_fails_only_that_request_until_the_instant() {
    let cell = Cell::named("cell-f").await;
    let future = (now_ms() + 60_000).to_string();
    let (status, answer) = get_with_fail_until(&cell, &future).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer["fault"], "fail_until");
    assert_eq!(answer["cell"], "cell-f");

    let (status, _) = cell.get_json("/healthy-neighbour").await;
    assert_eq!(status, StatusCode::OK, "other requests stay healthy");

    let past = (now_ms() - 1_000).to_string();
    assert_eq!(get_with_fail_until(&cell, &past).await.0, StatusCode::OK);

    let (status, error) = get_with_fail_until(&cell, "soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_fail_until");
}

#[tokio::test]
async fn fail_until_heals_once_the_instant_passes() {
    let cell = Cell::named("cell-g").await;
    let until = now_ms() + 300;
    let header = until.to_string();
    assert_eq!(
        get_with_fail_until(&cell, &header).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    crate::support::eventually("the poison message to heal", || async {
        get_with_fail_until(&cell, &header).await.0 == StatusCode::OK
    })
    .await;
    assert!(now_ms() >= until, "healed before the instant");
}
