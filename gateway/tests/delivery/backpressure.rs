//! Backpressure at admission: a cell's partition holds at most `max_pending` undelivered
//! entries (then 503 `queue_full`), and an async body may not exceed `max_body` (413), however
//! it is framed.

use std::time::Duration;

use test_support::{EchoCell, Gateway, RedisServer, http};

use crate::support::{bin, client, config, live, redis_int, send_async, serial};

const MAX_PENDING: usize = 5;
const MAX_BODY: usize = 1024;

#[test]
fn a_full_partition_and_a_large_body_are_refused() {
    let _serial = serial();
    let redis = RedisServer::start();
    let cell = EchoCell::start(bin(), "cell-1");
    // No workers: nothing leaves the queue, so it fills.
    let gateway = Gateway::start(
        bin(),
        &config(
            &redis,
            &[&cell],
            "500ms",
            &format!("workers = 0\nmax_pending = {MAX_PENDING}\nmax_body = \"1KiB\""),
        ),
    );
    let async_headers = [("x-user-id", "big"), ("prefer", "respond-async")];
    let timeout = Duration::from_secs(5);

    // Too large, declared up front: refused before the body is read.
    let body = vec![b'x'; MAX_BODY + 1];
    let declared = http::request(
        gateway.addr,
        "POST",
        "/orders",
        &async_headers,
        &body,
        timeout,
    )
    .unwrap();
    assert_eq!(declared.status, 413, "{}", declared.text());
    assert_eq!(declared.json()["error"], "payload_too_large");

    // Too large, chunked: refused once the limit is crossed while reading.
    let chunk = vec![b'x'; 400];
    let chunks: Vec<&[u8]> = vec![&chunk; 3];
    let chunked = http::request_chunked(
        gateway.addr,
        "POST",
        "/orders",
        &async_headers,
        &chunks,
        timeout,
    )
    .unwrap();
    assert_eq!(chunked.status, 413, "{}", chunked.text());
    assert_eq!(chunked.json()["error"], "payload_too_large");
    assert_eq!(live(&redis, &["cell-1"]), 0, "nothing stored for a 413");

    // Chunked within the limit is fine (and the first of MAX_PENDING).
    let small = http::request_chunked(
        gateway.addr,
        "POST",
        "/orders",
        &async_headers,
        &[&chunk, &chunk],
        timeout,
    )
    .unwrap();
    assert_eq!(small.status, 202, "{}", small.text());

    let http = client();
    let mut first_key = None;
    for i in 1..MAX_PENDING {
        let key = format!("fill-{i}");
        let a = send_async(&http, &gateway, &format!("user-{i}"), Some(&key), "{}").unwrap();
        assert_eq!(
            a.status,
            202,
            "request {} of {MAX_PENDING}: {}",
            i + 1,
            a.body
        );
        first_key.get_or_insert((format!("user-{i}"), key, a.id.unwrap()));
    }

    let full = send_async(&http, &gateway, "one-too-many", Some("extra"), "{}").unwrap();
    assert_eq!(full.status, 503, "{}", full.body);
    assert_eq!(full.error.as_deref(), Some("queue_full"));
    let retry_after: u64 = full
        .retry_after
        .as_deref()
        .expect("queue_full carries Retry-After")
        .parse()
        .unwrap();
    assert!(retry_after >= 1);

    // A retry of an accepted request is not new work: it still gets its id.
    let (user, key, id) = first_key.unwrap();
    let retry = send_async(&http, &gateway, &user, Some(&key), "{}").unwrap();
    assert_eq!(retry.status, 202, "{}", retry.body);
    assert_eq!(retry.id, Some(id));

    // Exactly MAX_PENDING entries exist, each with one work token.
    assert_eq!(live(&redis, &["cell-1"]), MAX_PENDING as i64);
    assert_eq!(
        redis_int(&redis, &["XLEN", "{dq:cell-1}:stream"]),
        MAX_PENDING as i64
    );
}
