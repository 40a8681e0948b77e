//! [`MemoryStore`]: the directory store of a single process (`cellgate demo`, tests).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cell_router::Directory;
use futures_util::future::{self, BoxFuture, FutureExt};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use super::clock::{self, Clock};
use super::lease::{Lease, LeaseState};
use super::store::{
    AUDIT_CAP, AuditEntry, DirectoryStore, GatewayStatus, HeartbeatRecord, StoreError,
};

/// A [`DirectoryStore`] in memory: the same contract as the Redis store (compare-and-set,
/// audit cap, announcements, heartbeat expiry, the automation lease and fenced writes), shared only by the control planes of one
/// process. Every call completes at once.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    announce: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct State {
    directory: Directory,
    /// Newest first.
    audit: VecDeque<AuditEntry>,
    gateways: BTreeMap<String, HeartbeatRecord>,
    /// The automation lease and when it expires (unix ms, the store's clock).
    lease: Option<(Lease, u64)>,
    /// The last fencing token handed out.
    fence: u64,
}

impl State {
    /// The lease in force at `now_ms`, if any.
    fn lease(&self, now_ms: u64) -> Option<&Lease> {
        self.lease
            .as_ref()
            .filter(|(_, expires_ms)| now_ms < *expires_ms)
            .map(|(lease, _)| lease)
    }
}

impl MemoryStore {
    /// An empty store (version 0) on the system clock.
    pub fn new() -> Self {
        Self::with_clock(clock::system())
    }

    /// An empty store that expires heartbeats by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            announce: watch::Sender::new(0),
            clock,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a panic elsewhere while the
        // lock was held does not invalidate it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn compare_and_set_now(
        &self,
        expected_version: u64,
        next: &Directory,
        audit: &AuditEntry,
        fence: Option<&Lease>,
    ) -> Result<(), StoreError> {
        StoreError::check_next(expected_version, next)?;
        {
            let mut state = self.state();
            if let Some(lease) = fence {
                if state.lease(self.clock.now_ms()) != Some(lease) {
                    return Err(StoreError::Fenced {
                        lease: lease.clone(),
                    });
                }
            }
            if state.directory.version != expected_version {
                return Err(StoreError::Conflict {
                    current: state.directory.version,
                });
            }
            state.directory = next.clone();
            state.audit.push_front(audit.clone());
            state.audit.truncate(AUDIT_CAP);
        }
        self.announce.send_replace(next.version);
        Ok(())
    }
}

impl MemoryStore {
    fn acquire_lease_now(&self, holder: &str, held: Option<&Lease>, ttl: Duration) -> LeaseState {
        let now_ms = self.clock.now_ms();
        let expires_ms = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut state = self.state();
        match state.lease(now_ms).cloned() {
            Some(current) if Some(&current) == held => {
                state.lease = Some((current.clone(), expires_ms));
                LeaseState::Held(current)
            }
            Some(current) => LeaseState::Taken(current),
            None => {
                state.fence += 1;
                let lease = Lease {
                    holder: holder.to_owned(),
                    token: state.fence,
                };
                state.lease = Some((lease.clone(), expires_ms));
                LeaseState::Held(lease)
            }
        }
    }

    fn release_lease_now(&self, lease: &Lease) {
        let mut state = self.state();
        if state.lease(self.clock.now_ms()) == Some(lease) {
            state.lease = None;
        }
    }

    fn restore_now(&self, directory: &Directory, audit: &AuditEntry) -> Result<(), StoreError> {
        {
            let mut state = self.state();
            if state.directory.version >= directory.version {
                return Err(StoreError::Conflict {
                    current: state.directory.version,
                });
            }
            state.directory = directory.clone();
            state.audit.push_front(audit.clone());
            state.audit.truncate(AUDIT_CAP);
        }
        self.announce.send_replace(directory.version);
        Ok(())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl DirectoryStore for MemoryStore {
    fn load(&self) -> BoxFuture<'_, Result<Directory, StoreError>> {
        future::ready(Ok(self.state().directory.clone())).boxed()
    }

    fn compare_and_set<'a>(
        &'a self,
        expected_version: u64,
        next: &'a Directory,
        audit: &'a AuditEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        future::ready(self.compare_and_set_now(expected_version, next, audit, None)).boxed()
    }

    fn compare_and_set_fenced<'a>(
        &'a self,
        expected_version: u64,
        next: &'a Directory,
        audit: &'a AuditEntry,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.compare_and_set_now(expected_version, next, audit, Some(lease));
        future::ready(result).boxed()
    }

    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        held: Option<&'a Lease>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseState, StoreError>> {
        future::ready(Ok(self.acquire_lease_now(holder, held, ttl))).boxed()
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        self.release_lease_now(lease);
        future::ready(Ok(())).boxed()
    }

    fn restore<'a>(
        &'a self,
        directory: &'a Directory,
        audit: &'a AuditEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        future::ready(self.restore_now(directory, audit)).boxed()
    }

    fn version(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        future::ready(Ok(self.state().directory.version)).boxed()
    }

    fn subscribe(&self) -> BoxStream<'static, u64> {
        let mut rx = self.announce.subscribe();
        rx.mark_unchanged();
        stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let version = *rx.borrow_and_update();
            Some((version, rx))
        })
        .boxed()
    }

    fn heartbeat<'a>(
        &'a self,
        status: &'a GatewayStatus,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let record = HeartbeatRecord::new(status, ttl);
        self.state().gateways.insert(status.id.clone(), record);
        future::ready(Ok(())).boxed()
    }

    fn gateways(&self) -> BoxFuture<'_, Result<Vec<GatewayStatus>, StoreError>> {
        let now_ms = self.clock.now_ms();
        let mut state = self.state();
        state.gateways.retain(|_, record| record.is_live(now_ms));
        let live = state.gateways.values().map(|r| r.status.clone()).collect();
        future::ready(Ok(live)).boxed()
    }

    fn audit(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        let entries = self.state().audit.iter().take(limit).cloned().collect();
        future::ready(Ok(entries)).boxed()
    }
}
