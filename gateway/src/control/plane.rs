//! [`ControlPlane`]: this gateway's view of the shared directory, kept current in the
//! background, and the one way to change it ([`ControlPlane::apply`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cell_router::{CellState, Directory, DirectoryError, Placement, RoutingTable};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::clock::{self, Clock};
use super::lease::{Lease, LeaseState};
use super::metrics::Collector;
use super::shared::{Origin, Shared, lock};
use super::status::{ControlPlaneStatus, GatewayList, Source};
use super::store::{AuditEntry, DirectoryStore, StoreError};
use super::{persist, sync};

/// Budget of [`ControlPlane::gateways`] and [`ControlPlane::audit`]: they serve admin
/// requests, which must stay snappy when the store is slow.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Settings of a [`ControlPlane`].
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// This gateway's id in heartbeats and audit entries.
    pub gateway_id: String,
    /// Where to persist the last applied directory (`directory.json`) and boot from when the
    /// store is down at startup. `None`: nothing is persisted.
    pub state_dir: Option<PathBuf>,
    /// Version poll, the backstop of pub/sub announcements; jittered by ±20%. Default 2 s.
    pub poll_interval: Duration,
    /// Heartbeat period. Default 1 s.
    pub heartbeat_interval: Duration,
    /// How long a heartbeat keeps this gateway listed. Default 10 s.
    pub gateway_ttl: Duration,
}

impl ControlPlaneOptions {
    /// The defaults for gateway `gateway_id`.
    pub fn new(gateway_id: impl Into<String>) -> Self {
        Self {
            gateway_id: gateway_id.into(),
            state_dir: None,
            poll_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(1),
            gateway_ttl: Duration::from_secs(10),
        }
    }
}

/// Why [`ControlPlane::apply`] changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The operation refused the change (unknown cell, guard, invalid key, ...): 4xx.
    #[error(transparent)]
    Rejected(DirectoryError),
    /// Another writer changed the directory between this change's load and its write: 409.
    /// Nothing was overwritten; look at the directory again and decide.
    #[error("the directory changed concurrently (now at version {current}); nothing was changed")]
    Conflict {
        /// The version now stored.
        current: u64,
    },
    /// The store is unreachable, too slow, or holds a directory that does not parse: the
    /// change was not applied. 503; retryable once the store is back (or repaired).
    #[error("the control-plane store is unavailable; nothing was changed: {0}")]
    Unavailable(String),
    /// An automatic change ([`ControlPlane::apply_fenced`]) whose lease was no longer in
    /// force: this gateway is not (or no longer) the one deciding. Nothing was changed.
    #[error("the automation lease {lease} is no longer in force; nothing was changed")]
    Fenced {
        /// The lease the change was made under.
        lease: Lease,
    },
}

impl ApplyError {
    fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { current } => ApplyError::Conflict { current },
            StoreError::Fenced { lease } => ApplyError::Fenced { lease },
            StoreError::Unavailable(m) | StoreError::Config(m) => ApplyError::Unavailable(m),
            e @ (StoreError::Corrupt(_) | StoreError::InvalidVersion { .. }) => {
                ApplyError::Unavailable(e.to_string())
            }
        }
    }
}

/// This gateway's copy of the shared cell directory, kept current by one background task.
///
/// Cheap to clone. The data plane calls [`load_table`](Self::load_table) per request (one
/// atomic load, no lock). The task stops when the shutdown token passed to
/// [`start`](Self::start) is cancelled; the last table stays readable.
#[derive(Clone)]
pub struct ControlPlane {
    shared: Arc<Shared>,
}

impl ControlPlane {
    /// Loads the directory and starts following the store until `shutdown` is cancelled.
    ///
    /// Startup never waits longer than the store's timeout: when the store is unavailable the
    /// gateway boots from `state_dir/directory.json` if there is one, else from the empty
    /// directory (every key on its home cell), and catches up once the store answers.
    pub async fn start(
        store: Arc<dyn DirectoryStore>,
        placement: Placement,
        options: ControlPlaneOptions,
        shutdown: CancellationToken,
    ) -> ControlPlane {
        Self::start_with_clock(store, placement, options, clock::system(), shutdown).await
    }

    /// [`start`](Self::start) with another wall clock (tests).
    pub async fn start_with_clock(
        store: Arc<dyn DirectoryStore>,
        placement: Placement,
        options: ControlPlaneOptions,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> ControlPlane {
        let (directory, source) = boot(store.as_ref(), options.state_dir.as_ref()).await;
        let shared = Arc::new(Shared::new(
            store, placement, options, clock, &directory, source,
        ));
        tokio::spawn(sync::run(shared.clone(), source, shutdown));
        ControlPlane { shared }
    }

    /// The current routing table. For the per-request hot path prefer
    /// [`load_table`](Self::load_table), which does not touch the reference count.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.shared.table()
    }

    /// The current routing table, lock-free: hold the guard only for the routing decision.
    pub fn load_table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.shared.load_table()
    }

    /// The configured cells this plane routes over (for [`apply`](Self::apply) operations).
    pub fn placement(&self) -> &Placement {
        &self.shared.placement
    }

    /// The wall clock of this plane, unix milliseconds: use it for ramp operations and
    /// routing so that tests can control time in one place.
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// This gateway's id.
    pub fn gateway_id(&self) -> &str {
        &self.shared.options.gateway_id
    }

    /// The applied directory version, updated each time a directory is installed: wait on it
    /// (e.g. `wait_for(|v| *v >= 7)`) instead of polling [`table`](Self::table).
    pub fn versions(&self) -> watch::Receiver<u64> {
        self.shared.subscribe_applied()
    }

    /// Changes the shared directory: loads it fresh from the store, runs `op` on it and
    /// writes the result with a compare-and-set on the loaded version, with an audit entry
    /// (`actor`, `action`, `target`, `reason`, and the target's state before and after). On
    /// success the new directory is applied here at once and announced to the other gateways.
    ///
    /// Never retries and never overwrites: on a conflict the caller reports it (409).
    ///
    /// # Errors
    ///
    /// [`ApplyError::Rejected`] when `op` refuses, [`ApplyError::Conflict`] when another
    /// writer won, [`ApplyError::Unavailable`] when the store did not answer in time or holds
    /// an unusable directory (the change was not applied).
    pub async fn apply<F>(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        reason: Option<String>,
        op: F,
    ) -> Result<Directory, ApplyError>
    where
        F: FnOnce(&Directory) -> Result<Directory, DirectoryError> + Send,
    {
        self.change(None, actor, action, target, reason, op).await
    }

    /// [`apply`](Self::apply) for the automation: the write is fenced by `lease`
    /// ([`DirectoryStore::compare_and_set_fenced`]), so it is refused unless this gateway
    /// still holds that term of the lease when the store runs it.
    ///
    /// # Errors
    ///
    /// [`ApplyError::Fenced`] when the lease is no longer in force, and the errors of
    /// [`apply`](Self::apply).
    pub async fn apply_fenced<F>(
        &self,
        lease: &Lease,
        actor: &str,
        action: &str,
        target: &str,
        reason: Option<String>,
        op: F,
    ) -> Result<Directory, ApplyError>
    where
        F: FnOnce(&Directory) -> Result<Directory, DirectoryError> + Send,
    {
        self.change(Some(lease), actor, action, target, reason, op)
            .await
    }

    /// Takes or renews the automation lease for this gateway (see
    /// [`DirectoryStore::acquire_lease`]); `held` is the term this gateway believes it holds.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store does not answer (the caller no longer holds any lease
    /// it cannot renew: it must stop acting).
    pub async fn acquire_lease(
        &self,
        held: Option<&Lease>,
        ttl: Duration,
    ) -> Result<LeaseState, StoreError> {
        let result = self
            .shared
            .store
            .acquire_lease(&self.shared.options.gateway_id, held, ttl)
            .await;
        if result.as_ref().is_err_and(StoreError::is_retryable) {
            self.shared.count_error();
        }
        result
    }

    /// Gives up `lease` if it is still in force. Best effort: an unreachable store lets it
    /// expire by itself.
    pub async fn release_lease(&self, lease: &Lease) {
        if let Err(e) = self.shared.store.release_lease(lease).await {
            debug!(error = %e, %lease, "could not release the automation lease; it will expire");
        }
    }

    async fn change<F>(
        &self,
        fence: Option<&Lease>,
        actor: &str,
        action: &str,
        target: &str,
        reason: Option<String>,
        op: F,
    ) -> Result<Directory, ApplyError>
    where
        F: FnOnce(&Directory) -> Result<Directory, DirectoryError> + Send,
    {
        let shared = &self.shared;
        let mut loaded = shared
            .store
            .load()
            .await
            .map_err(|e| self.store_failed(e))?;
        let applied = shared.table();
        if loaded.version < applied.version() {
            // The store lost data and no poll has repaired it yet: write this gateway's copy
            // back first, so that the change does not start from (and restore later undo) a
            // stale directory. A conflict means somebody else repaired it meanwhile.
            let audit = shared.restore_audit(loaded.version, applied.directory());
            match shared.store.restore(applied.directory(), &audit).await {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(self.store_failed(e)),
            }
            loaded = shared
                .store
                .load()
                .await
                .map_err(|e| self.store_failed(e))?;
        }
        let next = op(&loaded).map_err(ApplyError::Rejected)?;
        let now_ms = shared.now_ms();
        let audit = AuditEntry {
            at_ms: now_ms,
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            from: describe(&loaded, action, target, now_ms),
            to: describe(&next, action, target, now_ms),
            reason,
            version: next.version,
        };
        let written = match fence {
            None => {
                shared
                    .store
                    .compare_and_set(loaded.version, &next, &audit)
                    .await
            }
            Some(lease) => {
                shared
                    .store
                    .compare_and_set_fenced(loaded.version, &next, &audit, lease)
                    .await
            }
        };
        written.map_err(|e| self.store_failed(e))?;
        info!(
            actor,
            action,
            target,
            from = %audit.from,
            to = %audit.to,
            version = next.version,
            "directory changed"
        );
        shared.install(next.clone(), Origin::Apply);
        Ok(next)
    }

    fn store_failed(&self, e: StoreError) -> ApplyError {
        if e.is_retryable() {
            self.shared.count_error();
        }
        debug!(error = %e, "directory change not applied");
        ApplyError::from_store(e)
    }

    /// A snapshot of the connection state and the applied version.
    pub fn status(&self) -> ControlPlaneStatus {
        let shared = &self.shared;
        ControlPlaneStatus {
            connected: shared.is_connected(),
            version: shared.version(),
            last_sync_ms: shared.last_sync_ms(),
            source: shared.source(),
        }
    }

    /// The live gateways and the versions they applied. When the store does not answer
    /// within 500 ms, the last list read is returned, flagged `stale`.
    pub async fn gateways(&self) -> GatewayList {
        let read = tokio::time::timeout(READ_TIMEOUT, self.shared.store.gateways()).await;
        let mut cache = lock(&self.shared.gateways);
        match read {
            Ok(Ok(gateways)) => {
                *cache = GatewayList {
                    gateways,
                    stale: false,
                    fetched_ms: Some(self.shared.now_ms()),
                };
                cache.clone()
            }
            Ok(Err(e)) => {
                debug!(error = %e, "cannot list gateways; returning the last list");
                self.shared.count_error();
                GatewayList {
                    stale: true,
                    ..cache.clone()
                }
            }
            Err(_) => {
                debug!("listing gateways timed out; returning the last list");
                self.shared.count_error();
                GatewayList {
                    stale: true,
                    ..cache.clone()
                }
            }
        }
    }

    /// Up to `limit` audit entries, newest first, for display. When the store does not answer
    /// within 500 ms the last entries read are returned instead (possibly none);
    /// [`status`](Self::status) tells whether the store is reachable.
    pub async fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        let read = tokio::time::timeout(READ_TIMEOUT, self.shared.store.audit(limit)).await;
        let mut cache = lock(&self.shared.audit);
        match read {
            Ok(Ok(entries)) => {
                cache.clone_from(&entries);
                entries
            }
            Ok(Err(e)) => {
                debug!(error = %e, "cannot read the audit list; returning the last one read");
                self.shared.count_error();
                cache.iter().take(limit).cloned().collect()
            }
            Err(_) => {
                debug!("reading the audit list timed out; returning the last one read");
                self.shared.count_error();
                cache.iter().take(limit).cloned().collect()
            }
        }
    }

    /// Sets the per-cell request rates this gateway observes; sent with every heartbeat (see
    /// [`GatewayStatus::cell_rps`](super::GatewayStatus::cell_rps)).
    pub fn set_cell_rps(&self, cell_rps: BTreeMap<String, f64>) {
        *lock(&self.shared.cell_rps) = cell_rps;
    }

    /// Registers the control-plane metrics, computed at scrape time, in `registry`. Names are
    /// given without the `cellgate_` prefix, which the gateway's registry adds:
    /// `cellgate_directory_version`, `cellgate_control_plane_connected` (0/1),
    /// `cellgate_control_plane_errors_total`, `cellgate_directory_sync_age_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Collector::new(self.shared.clone())));
    }
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("gateway_id", &self.shared.options.gateway_id)
            .field("store", &self.shared.store)
            .field("status", &self.status())
            .finish()
    }
}

/// The directory to start with, and where it came from.
async fn boot(store: &dyn DirectoryStore, state_dir: Option<&PathBuf>) -> (Directory, Source) {
    let error = match store.load().await {
        Ok(directory) => {
            info!(
                version = directory.version,
                "loaded the directory from the store"
            );
            return (directory, Source::Store);
        }
        Err(e) => e,
    };
    let Some(state_dir) = state_dir else {
        warn!(
            error = %error,
            "control-plane store unavailable at startup and no state_dir: starting with the \
             empty directory (every key on its home cell) until the store answers"
        );
        return (Directory::default(), Source::Empty);
    };
    let dir = state_dir.clone();
    let persisted = tokio::task::spawn_blocking(move || persist::read(&dir)).await;
    match persisted {
        Ok(Ok(Some(directory))) => {
            warn!(
                error = %error,
                version = directory.version,
                path = %state_dir.join(persist::FILE_NAME).display(),
                "control-plane store unavailable at startup: booting from the persisted \
                 directory until the store answers"
            );
            (directory, Source::StateDir)
        }
        Ok(Ok(None)) => {
            warn!(
                error = %error,
                state_dir = %state_dir.display(),
                "control-plane store unavailable at startup and nothing persisted: starting \
                 with the empty directory (every key on its home cell)"
            );
            (Directory::default(), Source::Empty)
        }
        Ok(Err(read)) => {
            warn!(
                error = %error,
                persisted = %read,
                "control-plane store unavailable at startup and the persisted directory is \
                 unreadable: starting with the empty directory"
            );
            (Directory::default(), Source::Empty)
        }
        Err(join) => {
            warn!(error = %error, cause = %join, "cannot read the persisted directory");
            (Directory::default(), Source::Empty)
        }
    }
}

/// The target's state in `directory`, for audit entries: a pin for `pin`/`unpin`, else the
/// cell's state, e.g. `draining over 1m (25% done)`.
fn describe(directory: &Directory, action: &str, target: &str, now_ms: u64) -> String {
    if matches!(action, "pin" | "unpin") {
        return match directory.pin_of(target) {
            Some(pin) if pin.follow_drain => format!("pinned to {}", pin.cell),
            Some(pin) => format!("pinned to {} (stays through drains)", pin.cell),
            None => "unpinned".to_owned(),
        };
    }
    let state = directory.state(target).settled(now_ms);
    match state {
        CellState::Draining { over_ms, .. } | CellState::Undraining { over_ms, .. } => {
            let over = humantime::format_duration(Duration::from_millis(over_ms));
            let done = state.progress(now_ms).unwrap_or(0.0) * 100.0;
            format!("{} over {over} ({done:.0}% done)", state.name())
        }
        CellState::Active | CellState::Drained => state.name().to_owned(),
    }
}

#[cfg(test)]
mod tests;
