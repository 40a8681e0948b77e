//! Fixtures: control planes on a shared store, fast options, waits with deadlines.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cell_router::{Directory, Placement};
use gateway::control::{
    ApplyError, ControlPlane, ControlPlaneOptions, DirectoryStore, RedisStore, StoreOptions,
};
use test_support::RedisServer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Store call budget in these tests: short, so outages are noticed quickly.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(300);

pub fn placement() -> Placement {
    Placement::new([("cell-1", 1.0), ("cell-2", 1.0), ("cell-3", 1.0)]).unwrap()
}

pub fn redis_store(redis: &RedisServer) -> Arc<dyn DirectoryStore> {
    Arc::new(
        RedisStore::open(
            &redis.url(),
            StoreOptions {
                timeout: STORE_TIMEOUT,
            },
        )
        .unwrap(),
    )
}

/// Polls and heartbeats fast enough for tests that wait on outages and recoveries.
pub fn fast(id: &str) -> ControlPlaneOptions {
    ControlPlaneOptions {
        poll_interval: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(100),
        gateway_ttl: Duration::from_secs(1),
        ..ControlPlaneOptions::new(id)
    }
}

/// A running control plane, stopped when dropped.
pub struct Plane {
    pub plane: ControlPlane,
    stop: CancellationToken,
}

impl Plane {
    pub async fn start(store: Arc<dyn DirectoryStore>, options: ControlPlaneOptions) -> Plane {
        let stop = CancellationToken::new();
        let plane = ControlPlane::start(store, placement(), options, stop.clone()).await;
        Plane { plane, stop }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn version(&self) -> u64 {
        self.plane.load_table().version()
    }

    /// Pins `key` to `cell` through this plane.
    pub async fn pin(&self, key: &str, cell: &str) -> Result<Directory, ApplyError> {
        let placement = self.plane.placement().clone();
        self.plane
            .apply("test", "pin", key, None, move |dir| {
                dir.pin(&placement, key, cell, true)
            })
            .await
    }

    /// Waits until this plane applies `version` or newer.
    pub async fn applied(&self, version: u64, within: Duration) {
        let mut versions = self.plane.versions();
        let reached = tokio::time::timeout(within, versions.wait_for(|v| *v >= version)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{} did not apply version {version} within {within:?} (at {})",
            self.plane.gateway_id(),
            self.version()
        );
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The persisted directory in `state_dir`, if any.
pub fn persisted(state_dir: &Path) -> Option<Directory> {
    let bytes = std::fs::read(state_dir.join("directory.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}
