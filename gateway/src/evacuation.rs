//! Guarded auto-evacuation (SPEC §6): a cell whose circuit breaker stays open is drained
//! through the shared directory, exactly like `cellctl drain` (with a ramp), and undrained
//! with slow start once its health checks have passed for long enough.
//!
//! The guards:
//!
//! - **Off by default** (`[control.auto_evacuation] enabled`).
//! - **One gateway at a time.** Every gateway observes every tick, but only the holder of the
//!   automation [`Lease`] acts, and its writes are fenced
//!   ([`ControlPlane::apply_fenced`]): a gateway that lost the lease (paused, partitioned)
//!   cannot act on an old decision.
//! - **A cap**: at most `max_auto_evacuated` cells drained or undraining by the automation,
//!   and the directory's drain guard (`min_active_cells`) applies as to any drain.
//! - **A human wins**: the automation only touches active cells and cells it marked `auto`
//!   itself; any operator drain, undrain or evacuation of a cell clears the mark
//!   ([`Directory::auto_drain`](cell_router::Directory::auto_drain)), atomically with the
//!   compare-and-set, so a decision made before the operator's change is refused.
//! - **Audited and visible**: every change is in the audit list (actor
//!   `auto-evacuation@<gateway>`, reason such as `breaker open for 31s`), in the logs, in
//!   `cellgate_auto_evacuations_total{action}`, and in `cellctl status` (state
//!   `draining (auto)`, the lease holder, and a due evacuation held back).
//!
//! The decision itself is pure ([`AutoEvacuation`] in `cell-router`); `observe` turns this
//! gateway's breakers, probes and directory into its inputs. Details: `docs/containment.md`.

mod metrics;
mod observe;
mod status;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cell_router::containment::{
    AutoEvacuation, AutoEvacuationConfig, CellAction, CellControl, EvacuationDecision, HoldReason,
};
use cell_router::{DirectoryError, Guard};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::control::{ApplyError, ControlPlane, Lease, LeaseState};
use crate::proxy::Proxy;
use metrics::EvacuationMetrics;
use observe::Observer;
pub use status::{EvacuationStatus, Held};

/// How often every gateway observes its cells and the lease holder decides.
pub const TICK: Duration = Duration::from_secs(1);

/// How long the lease outlives its holder's last renewal (renewed every [`TICK`]): after a
/// holder dies, another gateway takes over within this.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// The automation of one gateway: cheap to clone; [`spawn`](Self::spawn) runs it.
#[derive(Clone, Debug)]
pub struct Evacuator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    decision: AutoEvacuation,
    control: ControlPlane,
    guard: Guard,
    metrics: EvacuationMetrics,
    status: Mutex<EvacuationStatus>,
}

impl Evacuator {
    /// The automation with `config`, changing the directory through `control` under the
    /// drain guard of `min_active_cells`; its metrics go to `registry`.
    pub fn new(
        config: AutoEvacuationConfig,
        control: ControlPlane,
        min_active_cells: usize,
        registry: &mut Registry,
    ) -> Self {
        let status = EvacuationStatus {
            enabled: config.enabled,
            max_auto_evacuated: config.max_auto_evacuated,
            ..EvacuationStatus::default()
        };
        Self {
            inner: Arc::new(Inner {
                decision: AutoEvacuation::new(config),
                control,
                guard: Guard {
                    min_active_cells,
                    force: false,
                },
                metrics: EvacuationMetrics::register(registry),
                status: Mutex::new(status),
            }),
        }
    }

    /// The automation as this gateway last saw it.
    pub fn status(&self) -> EvacuationStatus {
        lock(&self.inner.status).clone()
    }

    /// Observes `proxy`'s cells every [`TICK`] and, while holding the lease, acts, until
    /// `stop` is cancelled; then gives the lease up (await the handle, bounded, to let it).
    pub fn spawn(&self, proxy: Proxy, stop: CancellationToken) -> JoinHandle<()> {
        let run = Run {
            inner: self.inner.clone(),
            observer: Observer::new(proxy.cells().iter().count()),
            lease: None,
            proxy,
        };
        tokio::spawn(run.run(stop))
    }
}

/// The loop's own state.
struct Run {
    inner: Arc<Inner>,
    proxy: Proxy,
    observer: Observer,
    /// The term this gateway holds, if any.
    lease: Option<Lease>,
}

#[derive(Clone, Copy)]
enum Change {
    Drain,
    Undrain,
}

impl Run {
    async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            self.tick().await;
        }
        self.release().await;
    }

    async fn tick(&mut self) {
        let control = &self.inner.control;
        let now = Instant::now();
        let now_ms = control.now_ms();
        let table = control.table();
        let cells =
            self.observer
                .observe(self.proxy.cells().iter(), table.directory(), now, now_ms);
        let mut decision = self.inner.decision.decide(&cells, now);
        let involved = self.inner.decision.config().enabled
            || cells.iter().any(|c| {
                matches!(
                    c.control,
                    CellControl::AutoEvacuated | CellControl::AutoUndraining
                )
            });
        if !involved {
            self.release().await;
            self.report(None, None);
            return;
        }
        // The drain guard, checked on this gateway's copy so that every gateway shows the
        // same hold; the leader's write checks it again on the fresh directory.
        let mut held = decision
            .held
            .map(|(due, reason)| (due, hold_reason(reason)));
        if let Some(due) = decision.evacuate {
            let guard = self.inner.guard;
            let name = self.name(due.cell);
            let dry = table
                .directory()
                .auto_drain(table.placement(), &name, 0, now_ms, guard);
            if let Err(DirectoryError::WouldLeaveTooFewActive { .. }) = dry {
                decision.evacuate = None;
                held = Some((due, "guard"));
            }
        }
        let seen = self.keep_lease().await;
        if self.lease.is_some() {
            self.act(decision).await;
        }
        self.report(seen, held);
    }

    /// Takes or renews the lease; returns the term in force, if known.
    async fn keep_lease(&mut self) -> Option<Lease> {
        let control = &self.inner.control;
        match control.acquire_lease(self.lease.as_ref(), LEASE_TTL).await {
            Ok(LeaseState::Held(lease)) => {
                if self.lease.as_ref() != Some(&lease) {
                    info!(token = lease.token, "took the auto-evacuation lease");
                }
                self.lease = Some(lease.clone());
                Some(lease)
            }
            Ok(LeaseState::Taken(lease)) => {
                if let Some(lost) = self.lease.take() {
                    warn!(lost = %lost, holder = %lease, "lost the auto-evacuation lease");
                }
                Some(lease)
            }
            Err(e) => {
                if let Some(lost) = self.lease.take() {
                    warn!(error = %e, lease = %lost,
                        "cannot renew the auto-evacuation lease; no automatic changes until it is back");
                } else {
                    debug!(error = %e, "cannot reach the auto-evacuation lease");
                }
                None
            }
        }
    }

    async fn act(&mut self, decision: EvacuationDecision) {
        if let Some(undrain) = decision.undrain {
            self.change(Change::Undrain, undrain).await;
        }
        if let Some(evacuate) = decision.evacuate {
            self.change(Change::Drain, evacuate).await;
        }
    }

    /// Applies one decision through the directory, fenced by the lease.
    async fn change(&mut self, change: Change, due: CellAction) {
        let Some(lease) = self.lease.clone() else {
            return;
        };
        let config = self.inner.decision.config();
        let control = &self.inner.control;
        let cell = self.name(due.cell);
        let after = humantime::format_duration(Duration::from_secs(due.after.as_secs()));
        let (action, reason, over) = match change {
            Change::Drain if config.drain_over.is_zero() => (
                "evacuate",
                format!("breaker open for {after}"),
                config.drain_over,
            ),
            Change::Drain => (
                "drain",
                format!("breaker open for {after}"),
                config.drain_over,
            ),
            Change::Undrain => (
                "undrain",
                format!("healthy for {after}"),
                config.undrain_over,
            ),
        };
        let over_ms = u64::try_from(over.as_millis()).unwrap_or(u64::MAX);
        let actor = format!("auto-evacuation@{}", control.gateway_id());
        let placement = control.placement().clone();
        let guard = self.inner.guard;
        let max_auto = config.max_auto_evacuated;
        let now_ms = control.now_ms();
        let name = cell.as_str();
        let result = control
            .apply_fenced(
                &lease,
                &actor,
                action,
                name,
                Some(reason.clone()),
                move |dir| match change {
                    // The cap again, on the stored directory: this gateway's copy may not yet
                    // show a drain a previous lease holder made just before handing over.
                    Change::Drain if dir.auto_evacuated_except(name, now_ms) >= max_auto => {
                        Err(DirectoryError::AutoCapReached { max: max_auto })
                    }
                    Change::Drain => dir.auto_drain(&placement, name, over_ms, now_ms, guard),
                    Change::Undrain => dir.auto_undrain(&placement, name, over_ms, now_ms),
                },
            )
            .await;
        match result {
            Ok(directory) => {
                self.inner.metrics.count(action);
                warn!(
                    cell = name,
                    action,
                    reason,
                    version = directory.version,
                    token = lease.token,
                    "auto-evacuation changed the directory"
                );
            }
            Err(ApplyError::Fenced { .. }) => {
                warn!(cell = name, action, lease = %lease,
                    "lost the auto-evacuation lease before the change; nothing was changed");
                self.lease = None;
            }
            Err(ApplyError::Rejected(e)) => {
                // Typically an operator changed the cell since this gateway's copy: they win.
                info!(cell = name, action, error = %e, "auto-evacuation change refused; nothing was changed");
            }
            Err(ApplyError::Conflict { current }) => {
                debug!(
                    cell = name,
                    action, current, "the directory changed concurrently; deciding again"
                );
            }
            Err(ApplyError::Unavailable(e)) => {
                warn!(cell = name, action, error = %e, "auto-evacuation change not applied");
            }
        }
    }

    /// Gives the lease up, if held.
    async fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.inner.control.release_lease(&lease).await;
            info!(token = lease.token, "released the auto-evacuation lease");
        }
    }

    /// Publishes the status; logs and counts a hold when it starts or changes.
    fn report(&self, seen: Option<Lease>, held: Option<(CellAction, &'static str)>) {
        let held = held.map(|(due, reason)| Held {
            cell: self.name(due.cell),
            reason,
            breaker_open_s: due.after.as_secs(),
        });
        let leader = self.lease.is_some();
        self.inner.metrics.set_leader(leader);
        let mut status = lock(&self.inner.status);
        let before = status.held.as_ref().map(|h| (h.cell.clone(), h.reason));
        match &held {
            Some(h) if before != Some((h.cell.clone(), h.reason)) => {
                self.inner.metrics.count("held");
                warn!(
                    cell = %h.cell,
                    reason = h.reason,
                    breaker_open_s = h.breaker_open_s,
                    "auto-evacuation held back"
                );
            }
            None if before.is_some() => info!("auto-evacuation no longer held back"),
            _ => {}
        }
        status.lease = seen;
        status.leader = leader;
        status.held = held;
    }

    fn name(&self, cell: usize) -> String {
        self.proxy
            .cells()
            .iter()
            .nth(cell)
            .map(|c| c.name().to_owned())
            .unwrap_or_default()
    }
}

fn hold_reason(reason: HoldReason) -> &'static str {
    match reason {
        HoldReason::CapReached => "cap_reached",
        HoldReason::NoHealthyPeer => "no_healthy_peer",
    }
}

fn lock(status: &Mutex<EvacuationStatus>) -> MutexGuard<'_, EvacuationStatus> {
    // Every update replaces fields whole.
    status.lock().unwrap_or_else(PoisonError::into_inner)
}
