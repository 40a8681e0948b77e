//! The data-plane listener: accept, serve HTTP/1.1 with keep-alive, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
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
    let graceful = GracefulShutdown::new();
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
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, %remote, "connection ended with error");
            }
        });
    }
    drop(listener);
    info!(grace = ?limits.shutdown_grace, "stopped accepting; draining in-flight requests");
    match tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => true,
        Err(_) => {
            warn!("grace period over; closing remaining connections");
            false
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

    #[test]
    fn mapped_ipv4_clients_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:4000".parse().unwrap();
        assert_eq!(client_addr(mapped), "10.1.2.3:4000".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        assert_eq!(client_addr(v6), v6);
    }
}
