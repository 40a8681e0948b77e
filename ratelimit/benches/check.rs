//! Cost of [`Limiter::check`]: 1 and 1,000,000 tracked keys, one thread, and two threads
//! contending on one key. Goal: ≤ 150 ns median (issue 4).

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ratelimit::{Limiter, LimiterOptions, PolicyConfig, PolicyKey};

fn limiter(max_keys: usize) -> Limiter {
    // A limit nothing reaches: we measure the decision, not the denials.
    let policy = PolicyConfig::new(
        "per-user",
        PolicyKey::User,
        1_000_000_000,
        Duration::from_secs(1),
    );
    let mut options = LimiterOptions::new("bench");
    options.max_keys = max_keys;
    Limiter::new(vec![policy], options).unwrap()
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("user-{i:08}").into_bytes())
        .collect()
}

fn bench(c: &mut Criterion) {
    let one = limiter(10);
    one.check(0, b"user-00000000");
    c.bench_function("check/1 key/1 thread", |b| {
        b.iter(|| one.check(0, black_box(b"user-00000000")))
    });

    let many = limiter(2_000_000);
    let all = keys(1_000_000);
    for k in &all {
        many.check(0, k);
    }
    assert_eq!(many.tracked_keys(), 1_000_000);
    let mut i = 0usize;
    c.bench_function("check/1M keys/1 thread", |b| {
        b.iter(|| {
            i = (i + 7919) % all.len();
            many.check(0, black_box(&all[i]))
        })
    });

    c.bench_function("check/1 key/2 threads contended", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            black_box(one.check(0, black_box(b"user-00000000")));
                        }
                    });
                }
            });
            // Per check on each thread: wall time over iterations (both threads run them).
            start.elapsed()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
