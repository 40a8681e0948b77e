//! Test fixtures for Cellgate's integration tests.
//!
//! Everything here runs **real processes** (echo cells, gateways, `redis-server`) on free
//! loopback ports, waits for them to be ready by polling with a deadline (never a fixed
//! sleep), and kills them when the fixture is dropped, including when the test panics. Each
//! child's stdout and stderr go to a log file; a fixture dropped during a panic prints its
//! logs, so a failing test shows what the process said.
//!
//! The API is blocking and needs no async runtime, so it works from `#[test]` and from
//! `#[tokio::test]` alike (it blocks that thread briefly while waiting).
//!
//! | fixture | runs |
//! |---|---|
//! | [`EchoCell`] | `cellgate echo-cell --name <name> --listen 127.0.0.1:<free>` (optionally `--record <tmp file>`) |
//! | [`Gateway`] | `cellgate serve --config <file>`, config from a template with `{listen}`/`{admin_listen}` |
//! | [`RedisServer`] | `redis-server --port <free> --bind 127.0.0.1 --save "" --appendonly no --dir <tmp>` |
//! | [`RedisCluster`] | 6 of those with `--cluster-enabled yes`, formed by `redis-cli --cluster create --cluster-replicas 1` |
//!
//! ```no_run
//! use std::path::Path;
//! use test_support::{EchoCell, http};
//!
//! let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/cellgate");
//! // In a gateway integration test: Path::new(env!("CARGO_BIN_EXE_cellgate")).
//! let cell = EchoCell::start(&bin, "cell-1");
//! let answer = http::get(cell.addr, "/hello").expect("echo cell answers");
//! assert_eq!(answer.json()["cell"], "cell-1");
//! ```
//!
//! Fixtures panic with a clear message when something goes wrong: in a test, that is the
//! right way to fail.

mod bins;
mod child;
mod echo_cell;
mod gateway;
pub mod http;
pub mod latency;
mod launch;
mod port;
mod redis;
mod tempdir;
mod wait;

pub use bins::{cellctl, workspace_bin};
pub use child::ChildGuard;
pub use echo_cell::{EchoCell, Recorded};
pub use gateway::{ADMIN_LISTEN_PLACEHOLDER, Gateway, LISTEN_PLACEHOLDER, render_config};
pub use port::{free_addr, free_port};
pub use redis::{ClusterNode, Redis, RedisCluster, RedisServer, Resp};
pub use tempdir::TempDir;
pub use wait::{wait_http_ok, wait_until};
