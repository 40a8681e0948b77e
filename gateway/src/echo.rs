//! The demo cell backend behind `cellgate echo-cell`.
//!
//! An echo cell answers every request with `200` and a JSON description of what it received
//! (`cell`, `instance`, `user`, `method`, `path`, `query`, body size/hash/spread and headers),
//! so gateway tests can see exactly what was forwarded. It doubles as the backend of the
//! benchmarks, so the hot path reads fault state from atomics and pre-serializes the
//! identity part of every answer.
//!
//! Knobs, for tests and chaos drills:
//!
//! | knob | effect |
//! |---|---|
//! | `--latency 5ms`, `{"latency_ms":5}` | every request (health included) waits this long |
//! | `--error-rate 0.1`, `{"error_rate":0.1}` | that fraction of echo requests is answered `500` |
//! | `{"hang":true}` | every request except `/_fault` waits, unanswered, until hang is cleared |
//! | `x-echo-status: 418` | this request is answered with that status (200..=599) |
//! | `x-echo-fail-until-ms: <unix ms>` | this request is answered `500` until that instant |
//! | `?size=N` | the body is `N` bytes of `x`, streamed in 64 KiB frames |
//! | `?stream_chunks=N&chunk_bytes=M&chunk_interval_ms=T` | `N` chunks of `M` bytes, `T` ms apart |
//! | `--record <FILE>` | appends `<Idempotency-Key>[\t<X-Delivery-Attempt>]` per echoed request |
//!
//! Runtime faults are set with `POST /_fault` (partial JSON updates; the answer is the current
//! state, which `GET /_fault` also shows, including `hung_requests`). `/healthz` is exempt from
//! the error rate and per-request headers, but not from latency or hang: a slow process is slow
//! everywhere and a hung one answers nothing.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use gateway::echo::{serve, EchoOptions};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve(listener, EchoOptions::new("cell-1"), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod args;
mod body;
mod error;
mod fault;
mod record;
mod reply;
mod server;
mod service;
mod shape;

use std::future::Future;

use anyhow::Context as _;

pub use self::args::{EchoArgs, EchoOptions};
pub use self::server::serve;

/// Binds `args.listen` and serves an echo cell until `shutdown` completes.
///
/// # Errors
///
/// Fails when the address cannot be bound or the options are invalid.
pub async fn run(
    args: EchoArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding echo cell {} to {}", args.name, args.listen))?;
    serve(listener, args.options(), shutdown)
        .await
        .with_context(|| format!("serving echo cell {}", args.name))
}
