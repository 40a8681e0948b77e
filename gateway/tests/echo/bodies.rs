//! Request bodies (streamed, hashed) and generated response bodies.

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::stream;
use reqwest::{Body, StatusCode};
use serde_json::Value;

use crate::support::{Cell, xxh3_hex};

#[tokio::test]
async fn hashes_a_streamed_10_mib_upload() {
    let cell = Cell::named("c").await;
    let mut rng = fastrand::Rng::with_seed(7);
    let data: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
        .take(10 << 20)
        .collect();
    let chunks: Vec<Result<Bytes, Infallible>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let response = cell
        .client
        .post(cell.url("/upload"))
        .body(Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["body_bytes"], 10 << 20);
    assert_eq!(answer["body_xxh3"], xxh3_hex(&data));
    assert_eq!(answer["headers"]["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn body_spread_measures_gaps_between_chunks() {
    let cell = Cell::named("c").await;
    let gap = Duration::from_millis(200);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    let sender = tokio::spawn(async move {
        for i in 0..4 {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
        }
    });
    let body = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let response = cell
        .client
        .post(cell.url("/slow-upload"))
        .body(Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    sender.await.unwrap();
    assert_eq!(answer["body_bytes"], 16);
    assert_eq!(answer["body_xxh3"], xxh3_hex(b"partpartpartpart"));
    // Sent 3 x 200 ms apart; even a badly delayed first read leaves most of it.
    let spread = answer["body_spread_ms"].as_u64().unwrap();
    assert!(spread >= 300, "spread {spread} ms");

    let (_, answer) = crate::support::into_json(
        cell.client
            .post(cell.url("/"))
            .body("at once")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer["body_spread_ms"], 0);
}

#[tokio::test]
async fn size_query_streams_exactly_that_many_bytes() {
    let cell = Cell::named("c").await;
    for size in [0_usize, 1, 64 * 1024, 200_000] {
        let response = cell
            .client
            .get(cell.url(&format!("/blob?size={size}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-length"],
            size.to_string().as_str()
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), size);
        assert!(body.iter().all(|b| *b == b'x'));
    }
    let not_found = cell
        .client
        .get(cell.url("/blob?size=10"))
        .header("x-echo-status", "404")
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert_eq!(not_found.bytes().await.unwrap().len(), 10);
}

#[tokio::test]
async fn stream_chunks_are_sent_apart_after_the_headers() {
    let cell = Cell::named("c").await;
    let started = Instant::now();
    let mut response = cell
        .client
        .get(cell.url("/stream?stream_chunks=3&chunk_bytes=10&chunk_interval_ms=400"))
        .send()
        .await
        .unwrap();
    let headers_at = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert!(response.headers().get("content-length").is_none());

    let mut arrivals = Vec::new();
    let mut total = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == b'x'));
        total += chunk.len();
        arrivals.push(started.elapsed());
    }
    assert_eq!(total, 30);
    let last = *arrivals.last().unwrap();
    // The server spaces chunks with timers, so the body cannot end before 2 x 400 ms ...
    assert!(
        last >= Duration::from_millis(800),
        "body complete after {last:?}"
    );
    // ... while head and first chunk leave at once: a buffering server would fail this.
    assert!(
        last - headers_at >= Duration::from_millis(400),
        "head at {headers_at:?}, end at {last:?}"
    );
    assert!(
        last - arrivals[0] >= Duration::from_millis(400),
        "chunks at {arrivals:?}"
    );
}

#[tokio::test]
async fn stream_chunks_without_interval_or_with_large_chunks() {
    let cell = Cell::named("c").await;
    for (query, expected) in [
        ("stream_chunks=5&chunk_bytes=100000", 500_000),
        ("stream_chunks=3", 3 * 1024),
        ("stream_chunks=0", 0),
    ] {
        let response = cell
            .client
            .get(cell.url(&format!("/s?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), expected, "{query}");
    }
}

#[tokio::test]
async fn malformed_shaping_queries_are_refused() {
    let cell = Cell::named("c").await;
    for query in [
        "size=abc",
        "size=-1",
        "stream_chunks=x",
        "stream_chunks=2&chunk_bytes=0",
        "stream_chunks=2&chunk_bytes=99999999999",
        "stream_chunks=2&chunk_interval_ms=soon",
        "size=5&stream_chunks=2",
    ] {
        let (status, error) = cell.get_json(&format!("/?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error["error"], "invalid_query", "{query}");
    }
    let (status, answer) = cell.get_json("/?other=1&size").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a bare `size` is malformed: {answer}"
    );
}
