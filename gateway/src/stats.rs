//! Rolling per-cell traffic statistics for operators (`cellctl status`, drain planning).
//!
//! The request path only bumps relaxed atomics; a sampler turns the cumulative counts into
//! rates over the last [`WINDOW`] once a second, off the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Span of the rolling window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Latency buckets: bucket `i` holds latencies in `[2^i, 2^(i+1))` microseconds.
const BUCKETS: usize = 32;

/// Cumulative counters of one cell, written by the data plane.
#[derive(Debug, Default)]
pub struct CellStats {
    requests: AtomicU64,
    server_errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl CellStats {
    /// Counts a finished request.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let bucket = (63 - micros.leading_zeros() as usize).min(BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
        }
    }
}

#[derive(Clone, Debug)]
struct Snapshot {
    requests: u64,
    server_errors: u64,
    latency: [u64; BUCKETS],
}

/// Rates of one cell over the last window.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CellRates {
    /// Requests per second.
    pub rps: f64,
    /// Share of requests answered 5xx, in percent.
    pub error_pct: f64,
    /// 99th percentile latency in milliseconds (bucket upper bound), if any request finished.
    pub p99_ms: Option<f64>,
}

/// Samples of every cell's counters, oldest first.
type History = Vec<(Instant, Vec<Snapshot>)>;

/// The sampler's view: per-cell rates, indexed like the cells.
#[derive(Clone, Debug, Default)]
pub struct Rates {
    history: Arc<Mutex<History>>,
    cells: Arc<[Arc<CellStats>]>,
}

impl Rates {
    /// A sampler over these cells' counters.
    pub fn new(cells: Vec<Arc<CellStats>>) -> Rates {
        Rates {
            history: Arc::default(),
            cells: cells.into(),
        }
    }

    /// Takes one sample; call about once a second.
    pub fn sample(&self) {
        let now = Instant::now();
        let snapshot = self.cells.iter().map(|c| c.snapshot()).collect();
        if let Ok(mut history) = self.history.lock() {
            history.push((now, snapshot));
            // Keep one sample older than the window, so the window is always fully covered.
            while history.len() > 2 && now.duration_since(history[1].0) >= WINDOW {
                history.remove(0);
            }
        }
    }

    /// Rates of every cell over the window (zeros until two samples exist).
    pub fn current(&self) -> Vec<CellRates> {
        let history = match self.history.lock() {
            Ok(h) => h,
            Err(_) => return vec![CellRates::default(); self.cells.len()],
        };
        let (Some((t0, first)), Some((t1, last))) = (history.first(), history.last()) else {
            return vec![CellRates::default(); self.cells.len()];
        };
        let seconds = t1.duration_since(*t0).as_secs_f64();
        first
            .iter()
            .zip(last)
            .map(|(a, b)| rates(a, b, seconds))
            .collect()
    }
}

fn rates(a: &Snapshot, b: &Snapshot, seconds: f64) -> CellRates {
    let requests = b.requests.saturating_sub(a.requests);
    if requests == 0 || seconds <= 0.0 {
        return CellRates::default();
    }
    let errors = b.server_errors.saturating_sub(a.server_errors);
    let target = (requests as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    let mut p99_ms = None;
    for i in 0..BUCKETS {
        seen += b.latency[i].saturating_sub(a.latency[i]);
        if seen >= target {
            p99_ms = Some((1u64 << (i + 1)) as f64 / 1000.0);
            break;
        }
    }
    CellRates {
        rps: requests as f64 / seconds,
        error_pct: errors as f64 * 100.0 / requests as f64,
        p99_ms,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rates_cover_the_window() {
        let stats = Arc::new(CellStats::default());
        let rates = Rates::new(vec![stats.clone()]);
        rates.sample();
        for i in 0..100 {
            let status = if i < 5 { 503 } else { 200 };
            let latency = if i == 99 { 900 } else { 3 };
            stats.record(status, Duration::from_millis(latency));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        rates.sample();
        let r = rates.current()[0];
        assert!((r.rps - 50.0).abs() < 1e-9, "{r:?}");
        assert!((r.error_pct - 5.0).abs() < 1e-9, "{r:?}");
        // 99 of 100 requests took 3 ms: bucket [2.048, 4.096) ms.
        assert_eq!(r.p99_ms, Some(4.096));

        // Old samples fall out of the window.
        for _ in 0..15 {
            tokio::time::advance(Duration::from_secs(1)).await;
            rates.sample();
        }
        assert_eq!(rates.current()[0], CellRates::default());
    }
}
