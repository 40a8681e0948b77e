//! A fleet of in-process limiters syncing through one real redis-server, and a load driver.

use std::time::{Duration, Instant};

use ratelimit::{Limiter, LimiterMode, LimiterOptions, PolicyConfig, PolicyKey, RedisSync};
use test_support::{RedisServer, Resp};
use tokio_util::sync::CancellationToken;

pub const INTERVAL: Duration = Duration::from_millis(100);

/// These tests measure rates and check latencies, and one of them spins two threads flat out:
/// run them one at a time (a 2-core machine would otherwise preempt checks mid-measurement).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `n` limiters (gateway ids `gw-0..`) sharing one policy, each with its own sync task.
pub struct Fleet {
    pub limiters: Vec<Limiter>,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Runtime,
}

impl Fleet {
    pub fn start(redis: &RedisServer, n: usize, policy: PolicyConfig, timeout: Duration) -> Fleet {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        let limiters: Vec<Limiter> = (0..n)
            .map(|i| {
                let options = LimiterOptions {
                    sync_interval: INTERVAL,
                    max_keys: 100_000,
                    gateway_id: format!("gw-{i}"),
                    idle_after: Duration::from_secs(30),
                };
                let limiter = Limiter::new(vec![policy.clone()], options).unwrap();
                limiter.set_live_gateways(n);
                let backend = RedisSync::new(&redis.url(), timeout).unwrap();
                let _guard = runtime.enter();
                limiter.spawn_sync(Some(backend), shutdown.clone());
                limiter
            })
            .collect();
        Fleet {
            limiters,
            shutdown,
            runtime,
        }
    }

    pub fn all_in(&self, mode: LimiterMode) -> bool {
        self.limiters.iter().all(|l| l.mode() == mode)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Sync tasks end at their next await point; the runtime drop waits for nothing else.
        let _ = &self.runtime;
    }
}

pub fn policy(limit: u64) -> PolicyConfig {
    PolicyConfig::new("per-user", PolicyKey::User, limit, Duration::from_secs(1))
}

/// Counts of one run of [`drive`].
#[derive(Debug, Default)]
pub struct Stats {
    /// Admitted requests of the hot key per whole second since the start.
    pub hot_admitted: Vec<u64>,
    pub calm_offered: u64,
    pub calm_denied: u64,
    pub max_check: Duration,
    pub checks: u64,
}

/// Offers the hot key at `hot(t)` requests per second per gateway and the calm key at
/// `calm` per gateway, for `length`; `at(t)` runs between steps (to stop Redis, …).
pub fn drive(
    fleet: &Fleet,
    length: Duration,
    hot: impl Fn(f64) -> [f64; 3],
    calm: f64,
    mut at: impl FnMut(Duration),
) -> Stats {
    let n = fleet.limiters.len();
    let mut stats = Stats {
        hot_admitted: vec![0; length.as_secs() as usize + 1],
        ..Stats::default()
    };
    let mut owed_hot = vec![0.0f64; n];
    let mut owed_calm = vec![0.0f64; n];
    let start = Instant::now();
    let mut last = 0.0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= length {
            break;
        }
        at(elapsed);
        let t = elapsed.as_secs_f64();
        let dt = t - last;
        last = t;
        let rates = hot(t);
        for g in 0..n {
            owed_hot[g] += rates[g] * dt;
            owed_calm[g] += calm * dt;
            while owed_hot[g] >= 1.0 {
                owed_hot[g] -= 1.0;
                let before = Instant::now();
                let d = fleet.limiters[g].check(0, b"hot");
                stats.max_check = stats.max_check.max(before.elapsed());
                stats.checks += 1;
                if d.allowed {
                    stats.hot_admitted[t as usize] += 1;
                }
            }
            while owed_calm[g] >= 1.0 {
                owed_calm[g] -= 1.0;
                let before = Instant::now();
                let d = fleet.limiters[g].check(0, b"calm");
                stats.max_check = stats.max_check.max(before.elapsed());
                stats.checks += 1;
                stats.calm_offered += 1;
                if !d.allowed {
                    stats.calm_denied += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stats
}

/// Σ calls of every command in `INFO commandstats` (script-internal calls included), and the
/// EVALSHA calls alone.
pub fn command_calls(redis: &RedisServer) -> (u64, u64) {
    let Ok(Resp::Bulk(Some(info))) = redis.command(&["INFO", "commandstats"]) else {
        panic!("INFO commandstats failed");
    };
    let info = String::from_utf8(info).unwrap();
    let (mut total, mut evalsha) = (0, 0);
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let calls: u64 = line
            .split("calls=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        if !line.starts_with("cmdstat_info:") {
            total += calls;
        }
        if line.starts_with("cmdstat_evalsha:") {
            evalsha += calls;
        }
    }
    (total, evalsha)
}

pub fn assert_within(label: &str, admitted: &[u64], seconds: std::ops::Range<usize>, limit: u64) {
    for s in seconds {
        let a = admitted[s] as f64;
        let err = (a - limit as f64).abs() / limit as f64;
        assert!(
            err <= 0.05,
            "{label}: second {s} admitted {a}, not within ±5% of {limit}; all: {admitted:?}"
        );
    }
}
