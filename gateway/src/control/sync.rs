//! The control plane's background task: follow the store, heartbeat, persist.
//!
//! One task per [`ControlPlane`](super::ControlPlane), one event at a time:
//!
//! - an **announcement** of a version other than the applied one → load and install;
//!   a store *behind* the applied version lost data: this gateway restores its copy;
//! - the **poll** (every `poll_interval` ±20%) → compare versions, load on a difference. While
//!   the store is unreachable the poll is the probe, on exponential backoff instead;
//! - the **heartbeat** (every `heartbeat_interval`, and at once after an install) → report
//!   the applied version; skipped while the store is unreachable;
//! - after every event, **persist** a newly installed directory to `state_dir`.
//!
//! Every store call is bounded by the store's timeout. Failures never touch the installed
//! table: the data plane keeps routing with the last-known directory.

use std::sync::Arc;
use std::time::Duration;

use cell_router::RoutingTable;
use futures_util::stream::{self, StreamExt};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::{Backoff, jitter};
use super::persist;
use super::shared::{Origin, Shared};
use super::status::Source;
use super::store::{GatewayStatus, StoreError};

/// Consecutive failed store calls before the store counts as unreachable: one lost reply is
/// not an outage.
const FAILURES_TO_DISCONNECT: u32 = 2;

/// Floor of the poll and heartbeat periods: a zero period must not spin.
const MIN_PERIOD: Duration = Duration::from_millis(10);

pub(crate) async fn run(shared: Arc<Shared>, boot: Source, shutdown: CancellationToken) {
    let task = Task::new(shared, boot);
    task.run(shutdown).await;
}

struct Task {
    shared: Arc<Shared>,
    link: Link,
    /// Probe delays while the store is unreachable.
    backoff: Backoff,
    /// The next successful poll loads the whole document even if the versions match: after
    /// booting from `state_dir` or an outage, a store that was reset could hold the same
    /// version number with other contents.
    full_sync: bool,
    /// The table last written to `state_dir` (or read from it at boot).
    persisted: Option<Arc<RoutingTable>>,
    persist_failing: bool,
}

impl Task {
    fn new(shared: Arc<Shared>, boot: Source) -> Self {
        let poll = shared.options.poll_interval.max(MIN_PERIOD);
        // While unreachable, probe no more often than the healthy poll (heartbeats stop),
        // starting quicker to catch short blips.
        let backoff = Backoff::new(poll / 4, poll);
        let connected = boot == Source::Store;
        let persisted = (!connected).then(|| shared.table());
        Self {
            link: Link::new(connected),
            backoff,
            full_sync: !connected,
            persisted,
            persist_failing: false,
            shared,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut announcements = self.shared.store.subscribe();
        let mut applied = self.shared.subscribe_applied();
        let mut next_poll = Instant::now() + self.poll_delay();
        let mut next_heartbeat = Instant::now();
        self.persist().await;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                announced = announcements.next() => match announced {
                    Some(version) => {
                        // Also a sign of life after an outage: confirm with a load.
                        if version != self.shared.version() || !self.link.is_connected() {
                            self.sync().await;
                        }
                    }
                    None => {
                        warn!("directory announcements ended; relying on the version poll");
                        announcements = stream::pending().boxed();
                    }
                },
                changed = applied.changed() => {
                    // The sender lives in `Shared`, which this task holds: never closed.
                    if changed.is_err() {
                        break;
                    }
                    applied.borrow_and_update();
                    // Tell the others promptly which version this gateway now applies.
                    next_heartbeat = Instant::now();
                }
                () = sleep_until(next_poll) => {
                    self.poll().await;
                    next_poll = Instant::now() + self.poll_delay();
                }
                () = sleep_until(next_heartbeat), if self.link.is_connected() => {
                    self.heartbeat().await;
                    next_heartbeat = Instant::now()
                        + self.shared.options.heartbeat_interval.max(MIN_PERIOD);
                }
            }
            self.persist().await;
        }
        debug!(gateway = %self.shared.options.gateway_id, "control plane stopped");
    }

    fn poll_delay(&mut self) -> Duration {
        if self.link.is_connected() {
            jitter(self.shared.options.poll_interval.max(MIN_PERIOD), 0.2)
        } else {
            self.backoff.next_delay()
        }
    }

    async fn poll(&mut self) {
        match self.shared.store.version().await {
            Ok(version) => {
                self.succeeded();
                if version != self.shared.version() || self.full_sync {
                    self.sync().await;
                } else {
                    self.shared.mark_synced();
                }
            }
            Err(e) => self.failed(&e),
        }
    }

    async fn sync(&mut self) {
        let installs = self.shared.installs();
        match self.shared.store.load().await {
            Ok(directory) => {
                self.succeeded();
                let applied = self.shared.table();
                if directory.version < applied.version() {
                    // Unless a newer version was installed while this load was in flight (then
                    // the load is merely stale), the store lost data.
                    if self.shared.installs() == installs {
                        self.restore(&applied, directory.version).await;
                    }
                    return;
                }
                self.full_sync = false;
                self.shared.install(directory, Origin::Load { installs });
                self.shared.mark_synced();
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Writes this gateway's directory back into a store that holds an older one, so that a
    /// Redis that lost its data does not silently undo drains and pins.
    async fn restore(&mut self, applied: &RoutingTable, stored: u64) {
        let directory = applied.directory();
        warn!(
            stored,
            applied = directory.version,
            "the store holds an older directory than this gateway applied: it lost data \
             (Redis restarted without persistence?); restoring this gateway's copy"
        );
        let shared = &self.shared;
        let audit = shared.restore_audit(stored, directory);
        match shared.store.restore(directory, &audit).await {
            Ok(()) => {
                info!(
                    version = directory.version,
                    "restored the directory in the store"
                );
                self.full_sync = false;
                shared.mark_synced();
            }
            Err(StoreError::Conflict { current }) => {
                debug!(
                    current,
                    "the store is no longer behind; reloading at the next poll"
                );
                self.full_sync = true;
            }
            Err(e) => self.failed(&e),
        }
    }

    async fn heartbeat(&mut self) {
        let shared = &self.shared;
        let status = GatewayStatus {
            id: shared.options.gateway_id.clone(),
            version: shared.version(),
            seen_ms: shared.now_ms(),
            cell_rps: shared.cell_rps(),
        };
        match shared
            .store
            .heartbeat(&status, shared.options.gateway_ttl)
            .await
        {
            Ok(()) => self.succeeded(),
            Err(e) => self.failed(&e),
        }
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        if let Some(down) = self.link.succeeded() {
            info!(
                down_for = %humantime::format_duration(round_ms(down)),
                version = self.shared.version(),
                "control-plane store reachable again; catching up"
            );
            self.full_sync = true;
            self.shared.set_connected(true);
        }
    }

    fn failed(&mut self, error: &StoreError) {
        self.shared.count_error();
        if self.link.failed() {
            warn!(
                error = %error,
                version = self.shared.version(),
                "control-plane store unreachable; serving the last-known directory"
            );
            self.shared.set_connected(false);
        } else {
            debug!(error = %error, "control-plane store call failed");
        }
    }

    /// Writes a newly installed directory to `state_dir`. A failure is logged once and
    /// retried after the next event.
    async fn persist(&mut self) {
        let Some(state_dir) = self.shared.options.state_dir.clone() else {
            return;
        };
        let table = self.shared.table();
        if self
            .persisted
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &table))
        {
            return;
        }
        let directory = table.directory().clone();
        let dir = state_dir.clone();
        let written = tokio::task::spawn_blocking(move || persist::write(&dir, &directory))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match written {
            Ok(()) => {
                if self.persist_failing {
                    info!(state_dir = %state_dir.display(), "persisting the directory works again");
                }
                self.persist_failing = false;
                debug!(version = table.version(), "persisted the directory");
                self.persisted = Some(table);
            }
            Err(e) => {
                if !self.persist_failing {
                    warn!(
                        error = %e,
                        state_dir = %state_dir.display(),
                        "cannot persist the directory; a restart while the store is down \
                         would boot from an older one"
                    );
                }
                self.persist_failing = true;
            }
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether the store is reachable, flipping after [`FAILURES_TO_DISCONNECT`] consecutive
/// failures and back after one success, so that logs and metrics report state changes, not
/// individual calls.
#[derive(Debug)]
struct Link {
    state: LinkState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LinkState {
    Connected { failures: u32 },
    Disconnected { since: Instant },
}

impl Link {
    fn new(connected: bool) -> Self {
        let state = if connected {
            LinkState::Connected { failures: 0 }
        } else {
            LinkState::Disconnected {
                since: Instant::now(),
            }
        };
        Self { state }
    }

    fn is_connected(&self) -> bool {
        matches!(self.state, LinkState::Connected { .. })
    }

    /// Records a success; returns how long the store was unreachable if it was.
    fn succeeded(&mut self) -> Option<Duration> {
        let was = std::mem::replace(&mut self.state, LinkState::Connected { failures: 0 });
        match was {
            LinkState::Disconnected { since } => Some(since.elapsed()),
            LinkState::Connected { .. } => None,
        }
    }

    /// Records a failure; returns whether the store just became unreachable.
    fn failed(&mut self) -> bool {
        match self.state {
            LinkState::Connected { failures } if failures + 1 >= FAILURES_TO_DISCONNECT => {
                self.state = LinkState::Disconnected {
                    since: Instant::now(),
                };
                true
            }
            LinkState::Connected { failures } => {
                self.state = LinkState::Connected {
                    failures: failures + 1,
                };
                false
            }
            LinkState::Disconnected { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_flips_after_consecutive_failures_and_back_after_one_success() {
        let mut link = Link::new(true);
        assert!(!link.failed());
        assert!(link.is_connected());
        assert!(link.succeeded().is_none());
        assert!(!link.failed());
        assert!(link.failed(), "second consecutive failure disconnects");
        assert!(!link.is_connected());
        assert!(!link.failed(), "logged once");
        assert!(link.succeeded().is_some());
        assert!(link.is_connected());
        assert!(!Link::new(false).is_connected());
    }
}
