//! [`Shared`]: the state a [`ControlPlane`](super::ControlPlane)'s handles and its background
//! task share, and the one place where a new routing table is installed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use cell_router::{Directory, Placement, RoutingTable};
use tokio::sync::watch;
use tracing::{info, warn};

use super::clock::Clock;
use super::plane::ControlPlaneOptions;
use super::status::{GatewayList, Source};
use super::store::{AuditEntry, DirectoryStore};

/// What the handles and the background task share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn DirectoryStore>,
    pub(crate) placement: Placement,
    pub(crate) options: ControlPlaneOptions,
    clock: Arc<dyn Clock>,
    table: ArcSwap<RoutingTable>,
    /// Serialises installs; counts them, so a load that raced an install can tell.
    installs: Mutex<u64>,
    applied: watch::Sender<u64>,
    connected: AtomicBool,
    errors: AtomicU64,
    /// 0: never.
    last_sync_ms: AtomicU64,
    started_ms: u64,
    source: AtomicU8,
    pub(super) cell_rps: Mutex<BTreeMap<String, f64>>,
    /// The last gateway list read, served (flagged stale) when the store does not answer.
    pub(super) gateways: Mutex<GatewayList>,
    /// The last audit entries read, served when the store does not answer.
    pub(super) audit: Mutex<Vec<AuditEntry>>,
}

/// Who installs a directory, which decides whether an older version may replace a newer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin {
    /// A successful compare-and-set by this gateway: only ever newer.
    Apply,
    /// A load from the store started when the install counter read `installs`. Follows the
    /// store even to other contents at the same or an older version, unless something was
    /// installed meanwhile (then the load is stale).
    Load { installs: u64 },
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The state of a plane that booted with `directory` from `source`.
    pub(crate) fn new(
        store: Arc<dyn DirectoryStore>,
        placement: Placement,
        options: ControlPlaneOptions,
        clock: Arc<dyn Clock>,
        directory: &Directory,
        source: Source,
    ) -> Shared {
        let started_ms = clock.now_ms();
        let from_store = source == Source::Store;
        Shared {
            table: ArcSwap::from_pointee(RoutingTable::new(placement.clone(), directory)),
            store,
            placement,
            options,
            clock,
            installs: Mutex::new(0),
            applied: watch::Sender::new(directory.version),
            connected: AtomicBool::new(from_store),
            // A boot without the store means one failed call.
            errors: AtomicU64::new(u64::from(!from_store)),
            last_sync_ms: AtomicU64::new(if from_store { started_ms.max(1) } else { 0 }),
            started_ms,
            source: AtomicU8::new(source.to_u8()),
            cell_rps: Mutex::new(BTreeMap::new()),
            gateways: Mutex::new(GatewayList::default()),
            audit: Mutex::new(Vec::new()),
        }
    }

    /// The audit entry of writing `directory` back over a store that held `stored`.
    pub(crate) fn restore_audit(&self, stored: u64, directory: &Directory) -> AuditEntry {
        AuditEntry {
            at_ms: self.now_ms(),
            actor: self.options.gateway_id.clone(),
            action: "restore".to_owned(),
            target: "directory".to_owned(),
            from: format!("version {stored}"),
            to: format!("version {}", directory.version),
            reason: Some("the store was behind the directory this gateway applied".to_owned()),
            version: directory.version,
        }
    }

    pub(crate) fn load_table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }

    pub(crate) fn source(&self) -> Source {
        Source::from_u8(self.source.load(Ordering::Relaxed))
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    pub(crate) fn version(&self) -> u64 {
        self.table.load().version()
    }

    pub(crate) fn installs(&self) -> u64 {
        *lock(&self.installs)
    }

    pub(crate) fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Records that the applied directory was just confirmed current with the store.
    pub(crate) fn mark_synced(&self) {
        self.last_sync_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
        self.source.store(Source::Store.to_u8(), Ordering::Relaxed);
    }

    pub(crate) fn last_sync_ms(&self) -> Option<u64> {
        Some(self.last_sync_ms.load(Ordering::Relaxed)).filter(|&ms| ms != 0)
    }

    /// Seconds since the directory was last confirmed current (since start if never).
    pub(crate) fn sync_age_seconds(&self) -> f64 {
        let since = self.last_sync_ms().unwrap_or(self.started_ms);
        self.now_ms().saturating_sub(since) as f64 / 1000.0
    }

    pub(crate) fn cell_rps(&self) -> BTreeMap<String, f64> {
        lock(&self.cell_rps).clone()
    }

    /// Installs `directory` as the routing table unless `origin` says it is stale. Returns
    /// whether it was installed.
    pub(crate) fn install(&self, directory: Directory, origin: Origin) -> bool {
        let mut installs = lock(&self.installs);
        let current = self.table.load();
        let install = match origin {
            Origin::Apply => directory.version > current.version(),
            Origin::Load { installs: seen } => {
                if current.directory() == &directory {
                    false
                } else if directory.version > current.version() {
                    true
                } else if *installs == seen {
                    warn!(
                        stored = directory.version,
                        applied = current.version(),
                        "the store holds another directory at the applied version or an \
                         older one (rewritten after a data loss?); following the store"
                    );
                    true
                } else {
                    // This load raced an install of a newer version: it is the stale one.
                    false
                }
            }
        };
        if !install {
            return false;
        }
        *installs += 1;
        let version = directory.version;
        let table = RoutingTable::new(self.placement.clone(), &directory);
        self.table.store(Arc::new(table));
        self.source.store(Source::Store.to_u8(), Ordering::Relaxed);
        drop(installs);
        info!(version, "applied directory");
        self.applied.send_replace(version);
        true
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("gateway_id", &self.options.gateway_id)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}
