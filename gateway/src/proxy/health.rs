//! Background checks of upstream health: active `/healthz` probes per upstream and the
//! periodic latency-outlier scan per cell. Both feed the cell's outlier detector, which the
//! request path consults when it picks an upstream.

use std::time::{Duration, Instant};

use cell_router::containment::{Health, HealthCheck, HealthCheckConfig};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Proxy;

mod probes;

pub use probes::ProbeLog;

/// Starts one prober per upstream and one latency scanner per cell; they stop with `stop`.
pub fn spawn(proxy: &Proxy, stop: &CancellationToken) {
    for (c, cell) in proxy.cells().iter().enumerate() {
        cell.containment()
            .metrics()
            .healthy_upstreams
            .set(cell.upstreams().len() as i64);
        for u in 0..cell.upstreams().len() {
            tokio::spawn(probe_loop(
                proxy.clone(),
                c,
                u,
                cell.containment().health_check().clone(),
                stop.clone(),
            ));
        }
        tokio::spawn(latency_scan(proxy.clone(), c, stop.clone()));
    }
}

async fn probe_loop(
    proxy: Proxy,
    cell: usize,
    upstream: usize,
    config: HealthCheckConfig,
    stop: CancellationToken,
) {
    let mut check = HealthCheck::new(&config);
    // Jittered, so gateways started together do not probe in lockstep.
    let mut delay = config.first_delay(fastrand::u64(..));
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = config.next_delay(fastrand::u64(..));
        let Some(c) = proxy.cells().iter().nth(cell) else {
            return;
        };
        let Some(u) = c.upstreams().get(upstream) else {
            return;
        };
        let authority = u.authority().as_str();
        let passed = probe(authority, &config.path, config.timeout).await;
        c.containment()
            .probes()
            .record(upstream, passed, Instant::now());
        if let Some(health) = check.record(passed) {
            let healthy = health == Health::Healthy;
            let containment = c.containment();
            containment
                .detector()
                .set_health(upstream, healthy, Instant::now());
            let gauge = &containment.metrics().healthy_upstreams;
            if healthy {
                gauge.inc();
                info!(
                    cell = c.name(),
                    upstream = authority,
                    "upstream healthy again"
                );
            } else {
                gauge.dec();
                warn!(
                    cell = c.name(),
                    upstream = authority,
                    "upstream failed health checks"
                );
            }
        }
    }
}

/// One `GET <path>` on a fresh connection: 2xx within `timeout` passes.
async fn probe(authority: &str, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(authority).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
        let driver = tokio::spawn(conn);
        let request = Request::get(path)
            .header(http::header::HOST, authority)
            .header("user-agent", "cellgate-health")
            .body(Empty::<bytes::Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok();
        driver.abort();
        response.map(|r| r.status())
    };
    matches!(
        tokio::time::timeout(timeout, attempt).await,
        Ok(Some(status)) if status.is_success() || status == StatusCode::NO_CONTENT
    )
}

/// Every second, ejects an upstream whose latency is an outlier among its cell's peers.
async fn latency_scan(proxy: Proxy, cell: usize, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(c) = proxy.cells().iter().nth(cell) else {
            return;
        };
        let containment = c.containment();
        let now = Instant::now();
        if let Some(ejection) = containment
            .detector()
            .check_latency(now, fastrand::u64(..), |i| {
                containment
                    .ewmas()
                    .get(i)
                    .map_or(Duration::ZERO, |e| e.estimate(now))
            })
        {
            let authority = c
                .upstreams()
                .get(ejection.upstream)
                .map(|u| u.authority().to_string())
                .unwrap_or_default();
            containment.ejected(&authority, &ejection);
        }
        containment.transition(c.name(), None);
    }
}
