//! The data-plane listener: accept, serve HTTP/1.1 with keep-alive, drain on shutdown.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::Proxy;
use super::headers::Client;

/// Limits of the HTTP/1.1 server side.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Header bytes above which the proxy answers `431 headers_too_large` (JSON).
    pub max_header_bytes: usize,
    /// Time allowed to finish in-flight requests once shutdown starts.
    pub shutdown_grace: Duration,
}

/// Most header fields one request may carry; beyond it hyper answers 431 on its own.
const MAX_HEADER_FIELDS: usize = 256;
/// A client must send its whole header block within this time (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `proxy` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to the grace period for in-flight requests. Returns whether every connection finished.
pub async fn serve(
    listener: TcpListener,
    proxy: Proxy,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADER_FIELDS)
        // Room for the request line and a header block above our own JSON 431 limit, so
        // that the usual oversize case gets the JSON answer and only absurd ones hyper's.
        .max_buf_size((limits.max_header_bytes * 2).max(64 * 1024));
    let drain = Arc::new(Drain::default());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, keep serving.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let remote = client_addr(remote);
        let client = Arc::new(Client::new(remote.ip()));
        let proxy = proxy.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            let client = Arc::clone(&client);
            async move { Ok::<_, Infallible>(proxy.handle(req, &client).await) }
        });
        let conn = drain.watch(
            builder.serve_connection(TokioIo::new(stream), service),
            http1::Connection::graceful_shutdown,
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, %remote, "connection ended with error");
            }
        });
    }
    drop(listener);
    info!(grace = ?limits.shutdown_grace, "stopped accepting; draining in-flight requests");
    match tokio::time::timeout(limits.shutdown_grace, drain.shutdown()).await {
        Ok(()) => true,
        Err(_) => {
            warn!("grace period over; closing remaining connections");
            false
        }
    }
}

/// Tells the live connections to finish their in-flight request and close, and waits for them
/// to end: what hyper-util's `GracefulShutdown` does, at the cost of one atomic load per poll
/// of a connection; its `watch` receiver, polled every time, took a lock on its waiter list.
#[derive(Debug, Default)]
struct Drain {
    stopping: AtomicBool,
    stop: Notify,
    live: AtomicUsize,
    gone: Notify,
}

impl Drain {
    /// Serves `conn` to its end; once shutdown starts, `graceful` asks it to finish. The
    /// connection counts as live from this call on (not from its first poll), so a shutdown
    /// that starts before its task first runs still waits for it.
    fn watch<C: Future, G: FnOnce(Pin<&mut C>)>(
        self: &Arc<Drain>,
        conn: C,
        graceful: G,
    ) -> impl Future<Output = C::Output> + use<C, G> {
        let live = Live::enter(Arc::clone(self));
        async move {
            let drain = &live.0;
            let mut conn = pin!(conn);
            let mut notified = pin!(drain.stop.notified());
            let mut registered: Option<std::task::Waker> = None;
            let ended = poll_fn(|cx| {
                // The notification is registered with this task's waker once (again only if
                // the waker changed); afterwards, the flag tells whether it came.
                if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    let _ = notified.as_mut().poll(cx);
                    registered = Some(cx.waker().clone());
                }
                if drain.stopping.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                conn.as_mut().poll(cx).map(Some)
            })
            .await;
            match ended {
                Some(output) => output,
                None => {
                    graceful(conn.as_mut());
                    conn.await
                }
            }
        }
    }

    /// Asks every live connection to finish, then waits until all have ended.
    async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
        loop {
            let mut gone = pin!(self.gone.notified());
            // Registered before the count is read, so that the last one to end cannot slip
            // between the read and the wait.
            gone.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            gone.await;
        }
    }
}

/// One live connection of a [`Drain`], until dropped.
struct Live(Arc<Drain>);

impl Live {
    fn enter(drain: Arc<Drain>) -> Live {
        drain.live.fetch_add(1, Ordering::AcqRel);
        Live(drain)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.gone.notify_waiters();
        }
    }
}

/// The client's address as every later step should see it: an IPv4 client accepted on a
/// dual-stack socket arrives as `::ffff:a.b.c.d`, and routing by IP, `ip` rate limits and
/// `X-Forwarded-For` must all see `a.b.c.d`.
fn client_addr(remote: SocketAddr) -> SocketAddr {
    SocketAddr::new(remote.ip().to_canonical(), remote.port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn shutdown_asks_live_connections_to_finish_and_waits_for_them() {
        let drain = Arc::new(Drain::default());
        // A stand-in for an idle connection: it runs until asked to finish (what hyper's
        // `graceful_shutdown` does to one), then ends.
        let finish = Arc::new(Notify::new());
        let asked = Arc::clone(&finish);
        let started = Arc::new(Notify::new());
        let running = Arc::clone(&started);
        let conn = async move {
            running.notify_one();
            finish.notified().await;
            7u32
        };
        // Counted from `watch`, before its task first runs.
        let task = tokio::spawn(drain.watch(conn, move |_| asked.notify_one()));
        assert_eq!(drain.live.load(Ordering::Acquire), 1);
        // Parked before shutdown starts: only the shutdown notification can wake it.
        started.notified().await;
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("shutdown waits only for the connection it asked to finish");
        assert_eq!(task.await.unwrap(), 7);
        assert_eq!(drain.live.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn shutdown_waits_for_a_connection_still_busy() {
        let drain = Arc::new(Drain::default());
        // A connection with a request in flight: asked to finish, it ends only when the
        // response is done.
        let done = Arc::new(Notify::new());
        let response = Arc::clone(&done);
        let task = tokio::spawn(drain.watch(
            async move {
                response.notified().await;
                1u32
            },
            |_| {},
        ));
        let mut shutdown = pin!(drain.shutdown());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), shutdown.as_mut())
                .await
                .is_err(),
            "shutdown returned while a connection was still live"
        );
        done.notify_one();
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("shutdown ends once the last connection has");
        assert_eq!(task.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_connection_not_yet_run_when_shutdown_starts_is_asked_to_finish() {
        let drain = Arc::new(Drain::default());
        let finish = Arc::new(Notify::new());
        let asked = Arc::clone(&finish);
        let task = tokio::spawn(drain.watch(
            async move {
                finish.notified().await;
                5u32
            },
            move |_| asked.notify_one(),
        ));
        // On this single-threaded runtime the task first runs inside the shutdown's wait.
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("a connection that starts after the signal sees it");
        assert_eq!(task.await.unwrap(), 5);
    }

    #[tokio::test]
    async fn a_connection_that_ends_by_itself_is_no_longer_waited_for() {
        let drain = Arc::new(Drain::default());
        assert_eq!(drain.watch(async { 3u32 }, |_| {}).await, 3);
        assert_eq!(drain.live.load(Ordering::Acquire), 0);
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("nothing to wait for");
    }

    #[test]
    fn mapped_ipv4_clients_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:4000".parse().unwrap();
        assert_eq!(client_addr(mapped), "10.1.2.3:4000".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        assert_eq!(client_addr(v6), v6);
    }
}
