//! OTLP trace export: on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, joined to the caller's trace.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use test_support::{EchoCell, Gateway};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

/// A minimal OTLP/HTTP collector: sends (path, body) of every POST it receives.
fn collector() -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = tx.send((path, body));
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (endpoint, rx)
}

#[test]
fn spans_are_exported_over_otlp_in_the_callers_trace() {
    let (endpoint, spans) = collector();
    let cell = EchoCell::start(bin(), "cell-1");
    let config = format!(
        "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n\n[[cells]]\nname = \"cell-1\"\nupstreams = [\"{}\"]\n",
        cell.addr
    );
    let gateway = Gateway::start_with_env(
        bin(),
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let trace_hex = "4bf92f3577b34da6a3ce929d0e0e4736";
    let http = reqwest::blocking::Client::new();
    let response = http
        .get(gateway.url("/traced"))
        .header("x-user-id", "alice")
        .header("traceparent", format!("00-{trace_hex}-00f067aa0ba902b7-01"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().unwrap();
    let sent = body["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert!(sent.starts_with(&format!("00-{trace_hex}-")), "{sent}");
    let gateway_span_hex = &sent[36..52];

    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let span_id: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(&gateway_span_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (path, payload) = spans
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no OTLP export received; logs:\n{}", gateway.logs()));
        assert_eq!(path, "/v1/traces");
        let has = |needle: &[u8]| payload.windows(needle.len()).any(|w| w == needle);
        // The exported request span is in the caller's trace and is the parent the cell saw.
        if has(&trace_id) && has(&span_id) {
            break;
        }
    }
}
