//! Assembly of a gateway from config: bind the listeners, build the data plane and admin API,
//! run until shutdown, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::config::RedisTarget;
use crate::control::{
    ControlPlane, ControlPlaneOptions, DirectoryStore, MemoryStore, RedisStore, StoreError,
    StoreOptions,
};
use crate::delivery::DeliveryQueue;
use crate::delivery::metrics::DeliveryMetrics;
use crate::delivery::store::{QueueError, QueueStore};
use crate::evacuation::Evacuator;
use crate::metrics::Metrics;
use crate::proxy::limit::RateLimits;
use crate::proxy::server::{self, ServerLimits};
use crate::proxy::{BuildError, Cells, Proxy};
use crate::stats::Rates;
use ratelimit::{Limiter, LimiterError, LimiterOptions, RedisSync};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The data plane could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The control-plane store could not be set up (bad Redis URL).
    #[error("control plane: {0}")]
    ControlPlane(#[source] StoreError),
    /// The rate limiter could not be set up.
    #[error("rate limiter: {0}")]
    RateLimit(#[source] LimiterError),
    /// The delivery queue could not be set up.
    #[error("delivery queue: {0}")]
    Delivery(#[source] QueueError),
}

/// A gateway with its listeners bound, ready to [`run`](Gateway::run).
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    admin_listener: TcpListener,
    proxy: Proxy,
    admin: AdminState,
    /// Stops the background tasks (control-plane sync, rate sampler) after draining.
    stop: CancellationToken,
    /// The limiter's link to Redis; `None` without `[redis]` (local limits only).
    limiter_sync: Option<RedisSync>,
    /// The async delivery queue, when `[delivery]` is configured.
    delivery: Option<DeliveryQueue>,
    /// Guarded auto-evacuation (observes even when off: it undrains what it drained).
    evacuator: Evacuator,
    limits: ServerLimits,
}

impl Gateway {
    /// Builds the data plane and binds both listeners. Nothing is served until `run`.
    ///
    /// # Errors
    /// When a port cannot be bound or the cells cannot be built.
    pub async fn bind(config: &Config) -> Result<Gateway, StartError> {
        let mut metrics = Metrics::new();
        let cells = Cells::new(&config.cells, &config.server, &metrics)?;
        let listener = bind("listen", config.server.listen).await?;
        let admin_listener = bind("admin_listen", config.server.admin_listen).await?;
        let gateway_id = config
            .server
            .gateway_id
            .clone()
            .unwrap_or_else(|| default_gateway_id(&listener));

        // The directory: shared through Redis when configured, else local to this gateway.
        // Startup waits at most one control-plane timeout for it (static stability).
        let stop = CancellationToken::new();
        let store: Arc<dyn DirectoryStore> = match &config.redis {
            Some(redis) => Arc::new(
                RedisStore::new(
                    redis,
                    StoreOptions {
                        timeout: config.control.timeout,
                    },
                )
                .map_err(StartError::ControlPlane)?,
            ),
            None => Arc::new(MemoryStore::new()),
        };
        let control = ControlPlane::start(
            store,
            cells.placement().clone(),
            ControlPlaneOptions {
                gateway_id: gateway_id.clone(),
                state_dir: config.server.state_dir.clone(),
                poll_interval: config.control.poll_interval,
                heartbeat_interval: config.control.heartbeat_interval,
                gateway_ttl: config.control.gateway_ttl,
            },
            stop.clone(),
        )
        .await;
        control.register(metrics.registry_mut());
        let evacuator = Evacuator::new(
            config.control.auto_evacuation.clone(),
            control.clone(),
            config.control.min_active_cells,
            metrics.registry_mut(),
        );

        let (limits, limiter_sync) = rate_limits(config, &gateway_id, &mut metrics)?;
        let delivery = delivery_queue(config, &cells, &gateway_id, &mut metrics)?;
        let proxy = Proxy::new(
            config,
            cells,
            control.clone(),
            limits,
            delivery.clone(),
            &metrics,
        );
        let rates = Rates::new(
            proxy
                .cells()
                .iter()
                .map(|c| c.metrics().stats().clone())
                .collect(),
        );
        Ok(Gateway {
            admin: AdminState {
                proxy: proxy.clone(),
                control,
                rates,
                metrics: Arc::new(metrics),
                ready: Arc::new(AtomicBool::new(false)),
                token: config.server.admin_token.as_deref().map(Arc::from),
                gateway_id: Arc::from(gateway_id),
                min_active_cells: config.control.min_active_cells,
                capacity: config.cells.iter().map(|c| c.capacity_rps).collect(),
                delivery: delivery.clone(),
                evacuation: evacuator.clone(),
            },
            listener,
            admin_listener,
            proxy,
            stop,
            limiter_sync,
            delivery,
            evacuator,
            limits: ServerLimits {
                max_header_bytes: config.server.max_header_bytes,
                shutdown_grace: config.server.shutdown_grace,
            },
        })
    }

    /// The bound data-plane address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then stops accepting, turns `/readyz` to 503 and
    /// finishes in-flight requests within the grace period. Returns whether all finished.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> bool {
        let Gateway {
            listener,
            admin_listener,
            proxy,
            admin,
            stop,
            limiter_sync,
            delivery,
            evacuator,
            limits,
        } = self;
        crate::proxy::health::spawn(&proxy, &stop);
        if let Some(limits) = proxy.limits() {
            // Runs without Redis too: it evicts idle keys.
            limits.limiter().spawn_sync(limiter_sync, stop.clone());
        }
        let workers = delivery.map(|queue| {
            crate::delivery::worker::spawn(
                queue,
                proxy.clone(),
                stop.clone(),
                limits.shutdown_grace,
            )
        });
        let evacuation = evacuator.spawn(proxy.clone(), stop.clone());
        let ready = admin.ready.clone();
        tokio::spawn(sample_rates(
            admin.rates.clone(),
            admin.control.clone(),
            proxy.clone(),
            stop.clone(),
        ));
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(async move {
            let router = admin::router(admin);
            let _ = axum::serve(admin_listener, router)
                .with_graceful_shutdown(async {
                    let _ = admin_stopped.await;
                })
                .await;
        });
        info!(
            listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "gateway listening"
        );
        ready.store(true, Ordering::Relaxed);
        let drained = server::serve(listener, proxy, limits, async {
            shutdown.await;
            // Tell load balancers first: new traffic should go elsewhere while we drain.
            ready.store(false, Ordering::Relaxed);
        })
        .await;
        let _ = admin_stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), admin_task).await;
        stop.cancel();
        // Gives the auto-evacuation lease up, so another gateway takes over at once.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), evacuation).await;
        if let Some(workers) = workers {
            // Deliveries in flight finish and record their outcome; any left over stay
            // pending in Redis and another gateway claims them.
            let _ = tokio::time::timeout(limits.shutdown_grace, workers).await;
        }
        info!(drained, "gateway stopped");
        drained
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// `hostname:port` of the data-plane listener: unique per gateway on a host.
fn default_gateway_id(listener: &TcpListener) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "cellgate".to_owned());
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    format!("{host}:{port}")
}

/// Samples per-cell rates every second and hands them to the control plane, whose heartbeats
/// carry them to `cellctl plan` on every gateway.
async fn sample_rates(rates: Rates, control: ControlPlane, proxy: Proxy, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        rates.sample();
        let table = control.table();
        let now = crate::control::now_ms();
        for (i, cell) in proxy.cells().iter().enumerate() {
            let idx = cell_router::CellIndex::new(u16::try_from(i).unwrap_or(u16::MAX));
            let m = cell.containment().metrics();
            m.effective_weight.set(table.effective_weight(idx, now));
            m.state.set(match table.state(idx, now) {
                cell_router::CellState::Active => 0,
                cell_router::CellState::Draining { .. } => 1,
                cell_router::CellState::Drained => 2,
                cell_router::CellState::Undraining { .. } => 3,
            });
        }
        if let Some(limits) = proxy.limits() {
            // Each gateway's fallback share of a limit is limit ÷ live gateways (SPEC §5).
            let live = control.gateways().await.gateways.len();
            limits.limiter().set_live_gateways(live.max(1));
        }
        let by_cell = proxy
            .cells()
            .iter()
            .zip(rates.current())
            .map(|(cell, r)| (cell.name().to_owned(), r.rps))
            .collect();
        control.set_cell_rps(by_cell);
    }
}

/// The async delivery queue for `[delivery]` (which config validation ties to `[redis]`).
fn delivery_queue(
    config: &Config,
    cells: &Cells,
    gateway_id: &str,
    metrics: &mut Metrics,
) -> Result<Option<DeliveryQueue>, StartError> {
    let (Some(delivery), Some(redis)) = (&config.delivery, &config.redis) else {
        return Ok(None);
    };
    // Workers and operators are off the request path: they get the control plane's budget
    // (`[control].timeout`), requests keep `[redis].timeout`.
    let background = config.control.timeout.max(redis.timeout);
    let front = delivery.enqueue_timeout.unwrap_or(redis.timeout);
    let store = QueueStore::open(&redis.target, front, background, delivery.wait_replicas)
        .map_err(StartError::Delivery)?;
    Ok(Some(DeliveryQueue::new(
        store,
        delivery.clone(),
        cells.placement().clone(),
        cells.iter().map(|c| c.name().to_owned()),
        gateway_id.to_owned(),
        DeliveryMetrics::new(metrics.registry_mut()),
    )))
}

/// The limiter for `[ratelimit]`, and its Redis link when `[redis]` is configured.
fn rate_limits(
    config: &Config,
    gateway_id: &str,
    metrics: &mut Metrics,
) -> Result<(Option<RateLimits>, Option<RedisSync>), StartError> {
    let Some(rl) = config.ratelimit.as_ref().filter(|r| !r.policies.is_empty()) else {
        return Ok((None, None));
    };
    let mut options = LimiterOptions::new(gateway_id);
    options.sync_interval = rl.sync_interval;
    options.max_keys = rl.max_keys;
    let limiter = Limiter::new(rl.policies.clone(), options).map_err(StartError::RateLimit)?;
    limiter.register_metrics(metrics.registry_mut());
    let sync = match config.redis.as_ref() {
        Some(redis) => Some(
            match &redis.target {
                RedisTarget::Single(url) => RedisSync::new(url, redis.timeout),
                RedisTarget::Cluster(seeds) => RedisSync::cluster(seeds, redis.timeout),
            }
            .map_err(StartError::RateLimit)?,
        ),
        None => None,
    };
    Ok((RateLimits::new(limiter), sync))
}
