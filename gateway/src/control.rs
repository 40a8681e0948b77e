//! The control plane: where the shared cell [`Directory`](cell_router::Directory) lives, and
//! the [`ControlPlane`] that keeps this gateway's copy of it current.
//!
//! - [`DirectoryStore`] is the storage contract: versioned load, compare-and-set with an audit
//!   entry, change announcements, gateway heartbeats. [`MemoryStore`] serves a single gateway
//!   (`cellgate demo`, tests); [`RedisStore`] is shared by every gateway of a deployment.
//! - [`ControlPlane`] boots from the store (or, when the store is down, from the last
//!   directory persisted in `state_dir`), then follows it in one background task: pub/sub
//!   announcements for speed, a jittered version poll as the backstop, heartbeats with the
//!   applied version. The data plane reads the current [`RoutingTable`](cell_router::RoutingTable)
//!   lock-free with [`ControlPlane::load_table`]. When the store is unreachable nothing changes
//!   for the data plane: it keeps routing with the last-known directory (static stability).
//! - Admin changes go through [`ControlPlane::apply`]: fresh load, pure directory operation,
//!   compare-and-set on the loaded version. A racing writer gets [`ApplyError::Conflict`],
//!   never a silent overwrite.
//! - Automatic changes (guarded auto-evacuation, `crate::evacuation`) are made by the holder
//!   of a [`Lease`] ([`ControlPlane::acquire_lease`]) and go through
//!   [`ControlPlane::apply_fenced`]: the same compare-and-set, refused unless the lease is
//!   still in force.
//!
//! Key layout, failure behaviour and the Redis Cluster notes are in `docs/control-plane.md`.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cell_router::{Guard, Placement};
//! use gateway::control::{ControlPlane, ControlPlaneOptions, MemoryStore};
//! use tokio_util::sync::CancellationToken;
//!
//! let placement = Placement::new([("cell-1", 1.0), ("cell-2", 1.0)])?;
//! let store = Arc::new(MemoryStore::new());
//! let shutdown = CancellationToken::new();
//! let plane = ControlPlane::start(
//!     store,
//!     placement.clone(),
//!     ControlPlaneOptions::new("gw-1"),
//!     shutdown.clone(),
//! )
//! .await;
//!
//! let now = plane.now_ms();
//! let next = plane
//!     .apply("admin@gw-1", "drain", "cell-2", None, |dir| {
//!         dir.drain(&placement, "cell-2", 60_000, now, Guard::default())
//!     })
//!     .await?;
//! assert_eq!(plane.load_table().version(), next.version);
//! shutdown.cancel();
//! # Ok(()) }
//! ```

mod backoff;
mod clock;
mod lease;
mod memory;
mod metrics;
mod persist;
mod plane;
mod redis;
mod shared;
mod status;
mod store;
mod sync;

pub use self::clock::{Clock, ManualClock, SystemClock, millis};
pub use self::lease::{Lease, LeaseState};
pub use self::memory::MemoryStore;
pub use self::plane::{ApplyError, ControlPlane, ControlPlaneOptions};
pub use self::redis::{ANNOUNCE_CHANNEL, RedisStore, keys};
pub use self::status::{ControlPlaneStatus, GatewayList, Source};
pub use self::store::{
    AUDIT_CAP, AuditEntry, DirectoryStore, GatewayStatus, StoreError, StoreOptions,
};

/// The wall clock, unix milliseconds: the time base of ramps, heartbeats and audit entries,
/// shared by the data plane and the control plane ([`SystemClock`]).
pub fn now_ms() -> u64 {
    SystemClock.now_ms()
}
