//! Accept loop and graceful shutdown.

use std::{future::Future, io, pin::pin, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, task::JoinSet};
use tracing::{debug, info, warn};

use super::{args::EchoOptions, service::Echo};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves an echo cell on `listener` until `shutdown` completes.
///
/// On shutdown the listener is closed at once, idle keep-alive connections are closed, and
/// in-flight requests get [`EchoOptions::shutdown_grace`] to finish; whatever is still running
/// then is aborted.
///
/// # Errors
///
/// Fails when `opts` are invalid (error rate outside `[0, 1]`) or the listener has no local
/// address. Failed accepts are logged and retried, never returned.
pub async fn serve(
    listener: TcpListener,
    opts: EchoOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let echo = Arc::new(Echo::new(&opts, local)?);
    let mut http = http1::Builder::new();
    // Pipelined requests (wrk, benchmarks) get their answers flushed together.
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .pipeline_flush(true);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    info!(cell = %opts.name, addr = %local, "echo cell listening");

    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set stays as small as the live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%peer, %error, "echo cell could not set TCP_NODELAY");
                    }
                    let echo = Arc::clone(&echo);
                    let service = service_fn(move |req| Arc::clone(&echo).handle(req));
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    connections.spawn(async move {
                        if let Err(error) = conn.await {
                            debug!(%peer, %error, "echo connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    warn!(%error, "echo cell accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }

    drop(listener);
    info!(cell = %opts.name, in_flight = graceful.count(), "echo cell shutting down");
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(cell = %opts.name, grace = ?opts.shutdown_grace, "echo cell gave up waiting for in-flight requests");
    }
    connections.shutdown().await;
    Ok(())
}
