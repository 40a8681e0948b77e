//! The client against a scripted upstream on a real socket: reuse, staleness, framing, early
//! answers, broken upstreams.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use prometheus_client::metrics::counter::Counter;

use super::{Error, Pool, PoolConfig};
use crate::proxy::body::LimitedBody;

/// What the upstream does after reading a request.
#[derive(Clone)]
enum Act {
    /// Writes the bytes and keeps reading requests.
    Reply(&'static [u8]),
    /// Writes the bytes and closes.
    ReplyClose(&'static [u8]),
    /// Writes the bytes without reading the request body, then closes after a while.
    ReplyEarly(&'static [u8]),
    /// Writes the bytes, then reads the request body and goes on reading requests.
    ReplyThenRead(&'static [u8]),
}

/// Request heads and bodies as the upstream received them.
type Seen = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A scripted upstream: request `n` (counted over all connections) gets `script[n]`.
struct Upstream {
    pool: Pool,
    accepted: Arc<AtomicUsize>,
    /// Request heads and bodies as received.
    seen: Seen,
}

async fn upstream(script: Vec<Act>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    {
        let (accepted, seen) = (accepted.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let (seen, next, script) = (seen.clone(), next.clone(), script.clone());
                tokio::spawn(serve(stream, seen, next, script));
            }
        });
    }
    Upstream {
        pool: pool_for(addr),
        accepted,
        seen,
    }
}

fn pool_for(addr: std::net::SocketAddr) -> Pool {
    Pool::new(
        &addr.to_string().parse().unwrap(),
        PoolConfig {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(30),
            max_idle: 8,
        },
        Counter::default(),
    )
}

/// An upstream on threads of its own, answering every request with [`OK`], whose open
/// connections the test can close at once from its own thread: off the runtime, so the close
/// reaches the gateway's socket while the runtime (blocked meanwhile) cannot see it.
struct ThreadUpstream {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl ThreadUpstream {
    fn start() -> ThreadUpstream {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, conns) = (accepted.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                conns.lock().unwrap().push(stream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut head, mut chunk) = (Vec::new(), [0u8; 1024]);
                    loop {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                        if head.windows(4).any(|w| w == b"\r\n\r\n") {
                            head.clear();
                            if stream.write_all(OK).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        ThreadUpstream {
            addr,
            accepted,
            open,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection (FIN at once, from this thread), without a word.
    fn close_all(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

async fn serve(mut stream: TcpStream, seen: Seen, next: Arc<AtomicUsize>, script: Arc<Vec<Act>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let act = script[next.fetch_add(1, Ordering::SeqCst)].clone();
        if let Act::ReplyEarly(reply) = act {
            seen.lock().unwrap().push((head, Vec::new()));
            stream.write_all(reply).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            return;
        }
        if let Act::ReplyThenRead(reply) = act {
            stream.write_all(reply).await.unwrap();
        }
        let body = read_body(&mut stream, &mut buf, &head).await;
        seen.lock().unwrap().push((head, body));
        match act {
            Act::Reply(reply) => stream.write_all(reply).await.unwrap(),
            Act::ReplyThenRead(_) => {}
            Act::ReplyClose(reply) | Act::ReplyEarly(reply) => {
                stream.write_all(reply).await.unwrap();
                return;
            }
        }
    }
}

/// Reads a `content-length` or chunked request body (kept raw for chunked).
async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &str) -> Vec<u8> {
    let lower = head.to_ascii_lowercase();
    let done = |buf: &Vec<u8>| -> Option<usize> {
        if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            let len: usize = len.trim().parse().unwrap();
            return (buf.len() >= len).then_some(len);
        }
        if lower.contains("transfer-encoding: chunked") {
            return buf
                .windows(5)
                .position(|w| w == b"0\r\n\r\n")
                .map(|i| i + 5);
        }
        Some(0)
    };
    loop {
        if let Some(len) = done(buf) {
            return buf.drain(..len).collect();
        }
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return std::mem::take(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn get(path: &str) -> Request<LimitedBody> {
    Request::get(format!("http://up{path}"))
        .body(LimitedBody::empty())
        .unwrap()
}

/// Sends `req` and reads the whole body.
async fn fetch(pool: &Pool, req: Request<LimitedBody>) -> Result<(u16, Bytes), Error> {
    fetch_at(pool, req, Instant::now()).await
}

/// [`fetch`] with the caller's clock reading `now` (what idle expiry is judged at).
async fn fetch_at(
    pool: &Pool,
    req: Request<LimitedBody>,
    now: Instant,
) -> Result<(u16, Bytes), Error> {
    let response = pool.send(req, None, now).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

#[tokio::test]
async fn connections_are_reused_and_requests_written_origin_form() {
    let up = upstream(vec![Act::Reply(OK), Act::Reply(OK), Act::Reply(OK)]).await;
    for path in ["/a?x=1", "/b", ""] {
        assert_eq!(
            fetch(&up.pool, get(path)).await.unwrap(),
            (200, Bytes::from_static(b"hello"))
        );
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    let seen = up.seen.lock().unwrap();
    assert!(
        seen[0].0.starts_with("GET /a?x=1 HTTP/1.1\r\n"),
        "{}",
        seen[0].0
    );
    assert!(seen[2].0.starts_with("GET / HTTP/1.1\r\n"), "{}", seen[2].0);
    assert!(seen[0].0.contains("\r\nhost: "), "{}", seen[0].0);
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_replaced() {
    // The upstream closes after the first answer without saying so.
    let up = upstream(vec![Act::ReplyClose(OK), Act::Reply(OK)]).await;
    fetch(&up.pool, get("/1")).await.unwrap();
    // Let the close arrive and be noticed while the connection sits idle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fetch(&up.pool, get("/2")).await.unwrap().0, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

/// Idle expiry is judged at the time the caller passes (its attempt's start), not at a clock
/// read of the pool's own: a connection idle for less than `idle_timeout` (30 s here) by then
/// serves the request, one idle for longer is closed and a new one dialled.
#[tokio::test]
async fn idle_expiry_is_judged_at_the_callers_time() {
    let up = upstream(vec![Act::Reply(OK), Act::Reply(OK), Act::Reply(OK)]).await;
    fetch(&up.pool, get("/1")).await.unwrap();
    idle(&up.pool, 1).await;
    let within = Instant::now() + Duration::from_secs(29);
    assert_eq!(fetch_at(&up.pool, get("/2"), within).await.unwrap().0, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    idle(&up.pool, 1).await;
    let past = Instant::now() + Duration::from_secs(31);
    assert_eq!(fetch_at(&up.pool, get("/3"), past).await.unwrap().0, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

/// A close that reached the socket while the runtime was busy (here: blocked), so that the
/// I/O driver has not seen it when the next request takes the pooled connection, costs no
/// request. A request that is safe to send again trusts the driver at checkout, meets the end
/// of the stream instead of an answer, and goes again on a new connection; any other request
/// has its checkout ask the kernel, and never goes out on the closed connection.
#[tokio::test]
async fn a_close_the_io_driver_has_not_seen_costs_no_request() {
    let up = ThreadUpstream::start();
    let pool = pool_for(up.addr);
    let post = |key: Option<&str>| {
        let mut req = Request::post("http://up/order");
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        req.body(LimitedBody::empty()).unwrap()
    };
    // (case, request, sent again by the pool)
    for (name, req, resent) in [
        ("GET", get("/a"), 1),
        ("POST", post(None), 0),
        ("POST with Idempotency-Key", post(Some("k-1")), 1),
    ] {
        // One connection, answered and pooled.
        assert_eq!(fetch(&pool, get("/warm")).await.unwrap().0, 200, "{name}");
        idle(&pool, 1).await;
        // The upstream closes it while the runtime's thread is blocked: the FIN reaches the
        // socket (on loopback, before `shutdown` returns; the pause is margin) and the I/O
        // driver gets no turn to see it.
        up.close_all();
        std::thread::sleep(Duration::from_millis(20));
        let (accepted, resent_before) = (up.accepted(), pool.resent());
        assert_eq!(fetch(&pool, req).await.unwrap().0, 200, "{name}");
        assert_eq!(up.accepted(), accepted + 1, "{name}: on a new connection");
        assert_eq!(pool.resent() - resent_before, resent, "{name}: sent again");
    }
}

/// An interim `1xx` is an answer begun: the upstream had the request, so a close after it is
/// a failure, not a stale connection, even for a request that would be safe to repeat.
#[tokio::test]
async fn a_close_after_an_interim_answer_is_not_sent_again() {
    let up = upstream(vec![
        Act::Reply(OK),
        Act::ReplyClose(b"HTTP/1.1 100 Continue\r\n\r\n"),
        Act::Reply(OK),
    ])
    .await;
    fetch(&up.pool, get("/1")).await.unwrap();
    idle(&up.pool, 1).await;
    let result = fetch(&up.pool, get("/2")).await;
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    assert_eq!(up.pool.resent(), 0);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_close_and_close_delimited_bodies_are_not_reused() {
    let up = upstream(vec![
        Act::Reply(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"),
        Act::ReplyClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end"),
        Act::Reply(OK),
    ])
    .await;
    assert_eq!(fetch(&up.pool, get("/1")).await.unwrap().1, "ok");
    assert_eq!(fetch(&up.pool, get("/2")).await.unwrap().1, "until the end");
    assert_eq!(fetch(&up.pool, get("/3")).await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn chunked_responses_are_decoded_and_the_connection_reused() {
    let up = upstream(vec![
        Act::Reply(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\ntrailer: t\r\n\r\n",
        ),
        Act::Reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Act::Reply(OK),
    ])
    .await;
    let response = up.pool.send(get("/1"), None, Instant::now()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello!");
    assert_eq!(
        fetch(&up.pool, get("/2")).await.unwrap(),
        (204, Bytes::new())
    );
    assert_eq!(fetch(&up.pool, get("/3")).await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn request_bodies_are_framed_by_length() {
    let up = upstream(vec![Act::Reply(OK), Act::Reply(OK)]).await;
    let post = Request::post("http://up/p")
        .body(LimitedBody::full(Bytes::from_static(b"payload")))
        .unwrap();
    assert_eq!(fetch(&up.pool, post).await.unwrap().0, 200);
    // A body shorter than the length it declares is never sent as if complete.
    let short = Request::post("http://up/p")
        .header("content-length", "10")
        .body(LimitedBody::full(Bytes::from_static(b"12345")))
        .unwrap();
    assert!(matches!(
        fetch(&up.pool, short).await,
        Err(Error::BodyLength)
    ));
    let seen = up.seen.lock().unwrap();
    assert!(seen[0].0.contains("content-length: 7\r\n"), "{}", seen[0].0);
    assert_eq!(seen[0].1, b"payload");
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn an_early_answer_to_an_unread_upload_comes_back_and_the_connection_is_dropped() {
    let up = upstream(vec![
        Act::ReplyEarly(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"),
        Act::Reply(OK),
    ])
    .await;
    // Far more than the socket buffers hold: written inline, it would block forever.
    let big = Bytes::from(vec![b'x'; 64 * 1024 * 1024]);
    let post = Request::post("http://up/p")
        .body(LimitedBody::full(big))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(1), fetch(&up.pool, post))
        .await
        .expect("the early answer must not wait for the upload");
    assert_eq!(answer.unwrap().0, 413);
    assert_eq!(fetch(&up.pool, get("/next")).await.unwrap().0, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn broken_upstreams_are_errors_not_panics() {
    let up = upstream(vec![
        Act::Reply(b"HTTP/1.1 2x0 OK\r\n\r\n"),
        Act::ReplyClose(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this"),
        Act::ReplyClose(b"HTTP/1.1 200 OK\r\ncontent-len"),
        Act::ReplyClose(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
    ])
    .await;
    assert!(matches!(
        fetch(&up.pool, get("/1")).await,
        Err(Error::Protocol(_))
    ));
    assert!(matches!(
        fetch(&up.pool, get("/2")).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        fetch(&up.pool, get("/3")).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        fetch(&up.pool, get("/4")).await,
        Err(Error::Protocol(_))
    ));
    // None of them went back to the pool.
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_head_request_reads_no_body() {
    let up = upstream(vec![
        Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
        Act::Reply(OK),
    ])
    .await;
    let head = Request::head("http://up/h")
        .body(LimitedBody::empty())
        .unwrap();
    assert_eq!(fetch(&up.pool, head).await.unwrap(), (200, Bytes::new()));
    assert_eq!(fetch(&up.pool, get("/g")).await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

/// Waits (bounded) until the pool holds `n` idle connections.
async fn idle(pool: &Pool, n: usize) {
    for _ in 0..400 {
        if pool.idle_count() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the pool never held {n} idle connection(s)");
}

#[tokio::test]
async fn an_upload_answered_before_it_ended_keeps_its_connection_once_it_ends() {
    const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
    let up = upstream(vec![Act::ReplyThenRead(NO_CONTENT), Act::Reply(OK)]).await;
    // More than the socket buffers hold: the 204 arrives while the upload is still going.
    const LEN: usize = 16 * 1024 * 1024;
    let post = Request::post("http://up/p")
        .body(LimitedBody::full(Bytes::from(vec![b'x'; LEN])))
        .unwrap();
    assert_eq!(fetch(&up.pool, post).await.unwrap().0, 204);
    // The upstream reads the rest; the connection then comes back and carries the next request.
    idle(&up.pool, 1).await;
    assert_eq!(fetch(&up.pool, get("/next")).await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(up.seen.lock().unwrap()[0].1.len(), LEN);
}

#[tokio::test]
async fn an_upload_shorter_than_its_length_fails_at_once() {
    let up = upstream(vec![Act::Reply(OK), Act::Reply(OK)]).await;
    let short = Request::post("http://up/p")
        .header("content-length", "200000")
        .body(LimitedBody::full(Bytes::from(vec![b'x'; 100 * 1024])))
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(2), fetch(&up.pool, short))
        .await
        .expect("the upstream waits for the rest: the client must not wait for its answer");
    assert!(matches!(result, Err(Error::BodyLength)), "{result:?}");
    // That connection is mid-request: the next request gets a new one.
    assert_eq!(fetch(&up.pool, get("/next")).await.unwrap().0, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bytes_after_a_response_keep_the_connection_out_of_the_pool() {
    let up = upstream(vec![
        Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokSURPRISE"),
        Act::Reply(OK),
    ])
    .await;
    assert_eq!(fetch(&up.pool, get("/1")).await.unwrap().1, "ok");
    assert_eq!(fetch(&up.pool, get("/2")).await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_framed_both_ways_is_read_by_its_chunks_and_not_trusted_again() {
    let up = upstream(vec![
        Act::Reply(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
        Act::Reply(OK),
    ])
    .await;
    let response = up.pool.send(get("/1"), None, Instant::now()).await.unwrap();
    assert!(!response.headers().contains_key("content-length"));
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
    assert_eq!(fetch(&up.pool, get("/2")).await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}
