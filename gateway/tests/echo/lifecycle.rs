//! Binding, graceful shutdown and its bound.

use std::{io::ErrorKind, time::Duration};

use gateway::echo::{EchoArgs, EchoOptions, run, serve};
use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::support::{Cell, DEADLINE, eventually, wait_hung};

/// Reads from `stream` until `needle` has arrived.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("timed out reading")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

async fn refuses_connections(cell: &Cell) -> bool {
    TcpStream::connect(cell.addr).await.is_err()
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_in_flight_requests() {
    let mut cell = Cell::named("c").await;
    cell.set_fault(r#"{"hang":true}"#).await;
    let held = tokio::spawn(cell.client.get(cell.url("/held")).send());
    wait_hung(&cell, 1).await;

    // A second in-flight request, the one that will unhang the cell: `100 Continue` proves
    // its handler is already reading the body when shutdown starts.
    let mut unhang = TcpStream::connect(cell.addr).await.unwrap();
    let body = r#"{"hang":false}"#;
    let head = format!(
        "POST /_fault HTTP/1.1\r\nhost: cell\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    unhang.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut unhang, "100 Continue\r\n\r\n").await;

    cell.trigger_shutdown();
    eventually("the listener to close", || refuses_connections(&cell)).await;
    assert!(!held.is_finished());

    unhang.write_all(body.as_bytes()).await.unwrap();
    let answer = read_until(&mut unhang, r#""hang":false"#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let response = tokio::time::timeout(DEADLINE, held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    cell.stopped().await.unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_after_the_grace_period() {
    let mut opts = EchoOptions::new("c");
    opts.shutdown_grace = Duration::from_millis(200);
    let mut cell = Cell::start(opts).await;
    cell.set_fault(r#"{"hang":true}"#).await;
    let held = tokio::spawn(cell.client.get(cell.url("/held")).send());
    wait_hung(&cell, 1).await;

    cell.trigger_shutdown();
    cell.stopped().await.unwrap();
    let outcome = tokio::time::timeout(DEADLINE, held).await.unwrap().unwrap();
    assert!(
        outcome.is_err(),
        "an aborted request gets no answer: {outcome:?}"
    );
}

#[tokio::test]
async fn invalid_options_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut opts = EchoOptions::new("c");
    opts.error_rate = 1.5;
    let error = serve(listener, opts, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

fn args(name: &str, listen: std::net::SocketAddr) -> EchoArgs {
    EchoArgs {
        name: name.into(),
        listen,
        instance: None,
        latency: Duration::ZERO,
        error_rate: 0.0,
        record: None,
    }
}

#[tokio::test]
async fn run_reports_an_address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = run(
        args("c", taken.local_addr().unwrap()),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("binding echo cell c"),
        "{error:#}"
    );
}

#[tokio::test]
async fn run_serves_on_the_listen_address_until_shutdown() {
    let addr = test_support::free_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(args("run-cell", addr), async move {
        let _ = stopped.await;
    }));
    let client = crate::support::client();
    let url = format!("http://{addr}/");
    eventually("run to serve", || async {
        client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let answer: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["instance"], format!("run-cell@{addr}"));
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
