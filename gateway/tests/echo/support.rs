//! An in-process echo cell on `127.0.0.1:0` and helpers to talk to it.

use std::{future::Future, io, net::SocketAddr, time::Duration};

use gateway::echo::{EchoOptions, serve};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Generous bound for conditions that normally hold within milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An echo cell served in this test's runtime; shut down when dropped.
pub struct Cell {
    pub addr: SocketAddr,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Cell {
    pub async fn start(opts: EchoOptions) -> Cell {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, opts, async move {
            let _ = stop.await;
        }));
        Cell {
            addr,
            client: client(),
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub async fn named(name: &str) -> Cell {
        Cell::start(EchoOptions::new(name)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`: status and JSON body.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        into_json(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// `POST /_fault` with `update` (any JSON text): status and JSON body.
    pub async fn post_fault(&self, update: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url("/_fault"))
            .body(update.to_owned())
            .send()
            .await
            .unwrap();
        into_json(response).await
    }

    /// `POST /_fault` that must succeed; the new fault state.
    pub async fn set_fault(&self, update: &str) -> Value {
        let (status, state) = self.post_fault(update).await;
        assert_eq!(status, StatusCode::OK, "{state}");
        state
    }

    /// Asks the server to shut down, without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (bounded) for `serve` to return.
    pub async fn stopped(&mut self) -> io::Result<()> {
        let task = self.task.take().expect("serve task already awaited");
        tokio::time::timeout(DEADLINE * 2, task)
            .await
            .expect("serve did not return after shutdown")
            .expect("serve task panicked")
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// A client that ignores proxy settings of the environment.
pub fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

pub async fn into_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {text}"));
    (status, json)
}

/// Polls `check` until it returns true.
///
/// # Panics
///
/// After [`DEADLINE`], naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the cell reports `n` requests held by `hang`.
pub async fn wait_hung(cell: &Cell, n: u64) {
    eventually(&format!("{n} hung requests"), || async {
        cell.get_json("/_fault").await.1["hung_requests"] == n
    })
    .await;
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since_epoch.as_millis()).unwrap()
}

/// The hex form the echo cell uses for xxh3 hashes.
pub fn xxh3_hex(data: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(data))
}
