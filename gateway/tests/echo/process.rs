//! `cellgate echo-cell` as a real process, through the test-support fixture.

use std::{path::Path, time::Duration};

use test_support::{EchoCell, http, wait_until};

fn cellgate() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

#[test]
fn echo_cell_process_serves_and_obeys_faults() {
    let cell = EchoCell::start_with(cellgate(), "proc-cell", &["--error-rate", "1"]);
    let answer = http::get(cell.addr, "/hello?q=1").unwrap();
    assert_eq!(answer.status, 500);
    let answer = answer.json();
    assert_eq!(answer["cell"], "proc-cell");
    assert_eq!(answer["instance"], format!("proc-cell@{}", cell.addr));
    assert_eq!(answer["query"], "q=1");

    assert_eq!(cell.set_fault(r#"{"error_rate":0}"#)["error_rate"], 0.0);
    assert_eq!(http::get(cell.addr, "/").unwrap().status, 200);
    assert!(
        cell.logs().contains("echo cell listening"),
        "{}",
        cell.logs()
    );
}

#[test]
fn stopped_echo_cell_answers_nothing_until_continued() {
    let cell = EchoCell::start(cellgate(), "frozen");
    cell.stop();
    let short = Duration::from_millis(300);
    assert!(http::get_with_timeout(cell.addr, "/healthz", short).is_err());
    cell.cont();
    wait_until(Duration::from_secs(10), "the cell to answer again", || {
        http::get_with_timeout(cell.addr, "/healthz", short).is_ok_and(|r| r.status == 200)
    });
}

#[test]
fn sigterm_stops_the_process_cleanly() {
    let mut cell = EchoCell::start(cellgate(), "terminated");
    cell.child().signal(libc::SIGTERM);
    let status = cell
        .child()
        .wait_exit(Duration::from_secs(15))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{status:?}: {}", cell.logs());
}

#[test]
fn record_appends_one_line_per_echoed_request() {
    let cell = EchoCell::start_recording(cellgate(), "recorder", &[]);
    let timeout = Duration::from_secs(5);
    let with_key = [("idempotency-key", "k-1"), ("x-delivery-attempt", "2")];
    assert_eq!(
        http::request(cell.addr, "POST", "/a", &with_key, b"x", timeout)
            .unwrap()
            .status,
        200
    );
    http::get(cell.addr, "/healthz").unwrap();
    http::get(cell.addr, "/_fault").unwrap();
    // Recorded even when the answer is an injected failure.
    let failing = [("idempotency-key", "k-2"), ("x-echo-status", "503")];
    assert_eq!(
        http::request(cell.addr, "GET", "/b", &failing, b"", timeout)
            .unwrap()
            .status,
        503
    );
    http::get(cell.addr, "/no-key").unwrap();

    let recorded = cell.recorded();
    let lines: Vec<(&str, Option<u32>)> = recorded
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r.attempt))
        .collect();
    assert_eq!(lines, [("k-1", Some(2)), ("k-2", None), ("", None)]);
}
