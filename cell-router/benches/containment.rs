//! Per-request containment cost: breaker acquire + bulkhead acquire + P2C pick over peak-EWMA
//! (3 upstreams) + recording the outcome, against a naive baseline (round-robin and one
//! `Mutex`-guarded counter), and the cost of refusing through an open breaker.

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cell_router::containment::{
    BreakerConfig, Bulkhead, CircuitBreaker, Load, Outcome, OutlierConfig, OutlierDetector, P2c,
    PeakEwma, PeakEwmaConfig,
};
use criterion::{Criterion, criterion_group, criterion_main};

const OK: Outcome = Outcome::Success {
    latency: Duration::from_millis(2),
};

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let breaker = CircuitBreaker::new(BreakerConfig::default(), t0);
    let bulkhead = Bulkhead::new(512);
    let detector = OutlierDetector::new(OutlierConfig::default(), 3, t0);
    let ewmas: Vec<PeakEwma> = (0..3)
        .map(|_| PeakEwma::new(&PeakEwmaConfig::default(), t0))
        .collect();
    let mut group = c.benchmark_group("containment");
    let mut random = 0x9e37_79b9_7f4a_7c15u64;

    group.bench_function("request_path", |b| {
        b.iter(|| {
            random = random
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let now = Instant::now();
            let permit = breaker.try_acquire(now).ok();
            let slot = bulkhead.try_acquire();
            let panic = detector.panic_mode(now);
            let pick = P2c::pick(3, random, |i| {
                Load::new(ewmas[i].cost(now), detector.eligible(i, now, panic))
                    .with_weight(detector.slow_start_factor(i, now))
            })
            .unwrap_or(0);
            ewmas[pick].start(now).finish(OK, now);
            detector.record(pick, OK, now, random);
            black_box(permit.map(|p| p.record(OK, now)));
            drop(slot);
        })
    });

    let naive_next = AtomicUsize::new(0);
    let naive_in_flight = Mutex::new(0usize);
    group.bench_function("naive_round_robin_mutex", |b| {
        b.iter(|| {
            let pick = naive_next.fetch_add(1, Ordering::Relaxed) % 3;
            if let Ok(mut n) = naive_in_flight.lock() {
                *n += 1;
            }
            black_box(pick);
            if let Ok(mut n) = naive_in_flight.lock() {
                *n -= 1;
            }
        })
    });

    let open = CircuitBreaker::new(BreakerConfig::default(), t0);
    while open
        .try_acquire(t0)
        .is_ok_and(|p| p.record(Outcome::UpstreamError, t0).is_none())
    {}
    group.bench_function("open_breaker_reject", |b| {
        b.iter(|| {
            black_box(
                open.try_acquire(black_box(t0 + Duration::from_secs(1)))
                    .is_err(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
