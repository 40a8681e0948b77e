//! Cost of [`Limiter::check`]: 1 and 1,000,000 tracked keys, one thread, and two threads
//! contending on one key. Goal: ≤ 150 ns median (issue 4).
//!
//! Each case has a naive baseline measured the same way, so the figures separate what the
//! machine costs from what the limiter adds:
//!
//! * `baseline/…/hashmap lookup`: a `std` `HashMap<Box<[u8]>, u64>` (SipHash) `get` of the
//!   same key. At 1M keys, visited in a cache-hostile order, both it and `check` are bound by
//!   DRAM latency (a few misses per lookup: control bytes, slot, key bytes, state); the
//!   difference is the limiter's own cost.
//! * `check/1M keys/hot set`: the same 1M-key map, traffic over 1,000 of the keys: what a
//!   request costs when its key's state is in cache, as for the keys that matter under load.
//! * `baseline/1 key/2 threads/fetch_add`: two threads incrementing one shared `AtomicU64`,
//!   the cheapest write a check of a shared key could do; the cache line moves between the
//!   cores on every operation, which is most of the contended cost.

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ratelimit::{Limiter, LimiterOptions, PolicyConfig, PolicyKey};

const MANY: usize = 1_000_000;
/// Stride through the 1M keys: consecutive checks land on unrelated memory.
const STRIDE: usize = 7919;

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

/// Runs `op` `iters` times on each of two threads at once; returns the wall time, i.e. the
/// time per operation as each thread sees it.
fn two_threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..iters {
                    op();
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let one = limiter(10);
    one.check(0, b"user-00000000");
    c.bench_function("check/1 key/1 thread", |b| {
        b.iter(|| one.check(0, black_box(b"user-00000000")))
    });
    let mut naive_one: HashMap<Box<[u8]>, u64> = HashMap::new();
    naive_one.insert(Box::from(&b"user-00000000"[..]), 0);
    c.bench_function("baseline/1 key/1 thread/hashmap lookup", |b| {
        b.iter(|| naive_one.get(black_box(&b"user-00000000"[..])).copied())
    });

    c.bench_function("check/1 key/2 threads contended", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(one.check(0, black_box(b"user-00000000")));
            })
        })
    });
    let shared = AtomicU64::new(0);
    c.bench_function("baseline/1 key/2 threads/fetch_add", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(shared.fetch_add(1, Ordering::Relaxed));
            })
        })
    });

    let many = limiter(2 * MANY);
    let all = keys(MANY);
    for k in &all {
        many.check(0, k);
    }
    assert_eq!(many.tracked_keys(), MANY);
    let mut i = 0usize;
    c.bench_function("check/1M keys/1 thread", |b| {
        b.iter(|| {
            i = (i + STRIDE) % all.len();
            many.check(0, black_box(&all[i]))
        })
    });
    let mut i = 0usize;
    c.bench_function("check/1M keys/1 thread/hot set of 1000", |b| {
        b.iter(|| {
            i = (i + STRIDE) % 1000;
            many.check(0, black_box(&all[i * 1000]))
        })
    });
    drop(many);
    let naive: HashMap<Box<[u8]>, u64> = all
        .iter()
        .enumerate()
        .map(|(n, k)| (Box::from(&k[..]), n as u64))
        .collect();
    let mut i = 0usize;
    c.bench_function("baseline/1M keys/1 thread/hashmap lookup", |b| {
        b.iter(|| {
            i = (i + STRIDE) % all.len();
            naive.get(black_box(&all[i][..])).copied()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
