//! Cost of [`Limiter::check`]: 1 and 1,000,000 tracked keys, one thread, and two threads
//! contending on one key. Goal: ≤ 150 ns median (issue 4).
//!
//! Each case has baselines measured the same way, so the figures separate what the machine
//! costs from what the limiter adds:
//!
//! * `baseline/…/clock + fetch_add` (1 key): a [`SystemClock`] read through `dyn Clock`, as
//!   `check` does (the coarse clock: a load of the word its thread refreshes), then one
//!   `fetch_add` on one shared word: the least a check that writes the key's state can do.
//!   With 2 threads the word's cache line moves between the cores on (nearly) every
//!   operation: the contended floor of a design without leases.
//! * `baseline/1 key/2 threads/fetch_add`: the same without the clock read.
//! * `baseline/…/hashmap lookup`: a `std` `HashMap<Box<[u8]>, u64>` (SipHash) `get` of the
//!   same key. At 1M keys, visited in a cache-hostile order, both it and `check` are bound by
//!   memory latency (a few dependent misses per lookup: control bytes, slot, key bytes); the
//!   difference is the limiter's own cost.
//! * `baseline/1M keys/…/clock + one slot`: the floor for any table at 1M keys: read the
//!   clock, hash the probe key, `fetch_add` one word of a random 16-byte slot in a 32 MB array
//!   (the size of the limiter's slot arrays at 1M keys): one miss, as if the key's whole state
//!   were inline in its slot; no key comparison.
//! * `check/1M keys/hot set`: the same 1M-key table, traffic over 1,000 of the keys: what a
//!   request costs when its key's state is in cache, as for the keys that matter under load.
//!   The 1,000 keys are spread over the table, so each check touches pages no other key of the
//!   set shares; on a 4 KiB-page VM the TLB misses, not the cache misses, are most of the cost
//!   (the hot-set baselines show it).
//!
//! Probe keys are written into a stack buffer (see [`key_of`]), and the allocator is the
//! gateway's (mimalloc).

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ratelimit::{Clock, Limiter, LimiterOptions, PolicyConfig, PolicyKey, SystemClock};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The gateway's allocator: where its limiter's states live.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MANY: usize = 1_000_000;
/// Stride through the 1M keys: consecutive checks land on unrelated memory.
const STRIDE: usize = 7919;
/// Words in the floor baseline's table: 2M 16-byte slots, 32 MB.
const FLOOR_WORDS: usize = 4 * MANY;

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

/// Bytes of a probe key: `user-` and 8 digits.
const KEY_LEN: usize = 13;

/// Writes key number `i` (`user-00000042`) into `buf`. A request's key was just parsed from
/// its headers, so it is in L1 when the limiter sees it; probing with keys read from a list of
/// a million would add the list's own cache misses (its `Vec` header, then the bytes) to every
/// check and every baseline alike.
#[inline(always)]
fn key_of(mut i: usize, buf: &mut [u8; KEY_LEN]) -> &[u8] {
    buf[..5].copy_from_slice(b"user-");
    for d in buf[5..].iter_mut().rev() {
        *d = b'0' + (i % 10) as u8;
        i /= 10;
    }
    &buf[..]
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

/// The clock `check` reads, behind the same indirection.
fn clock() -> Box<dyn Clock> {
    Box::new(SystemClock::new())
}

/// The floor of a table lookup: hash `key`, one `fetch_add` in a random slot of `table`.
fn touch_slot(clock: &dyn Clock, table: &[AtomicU64], key: &[u8]) -> u64 {
    let now = clock.now();
    let slot = (xxh3_64_with_seed(key, 0x5eed) as usize % (table.len() / 2)) * 2;
    table[slot].fetch_add(1, Ordering::Relaxed) ^ now
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
    let clock = clock();
    let shared = AtomicU64::new(0);
    c.bench_function("baseline/1 key/1 thread/clock + fetch_add", |b| {
        b.iter(|| black_box(clock.now()) ^ shared.fetch_add(1, Ordering::Relaxed))
    });

    c.bench_function("check/1 key/2 threads contended", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(one.check(0, black_box(b"user-00000000")));
            })
        })
    });
    c.bench_function("baseline/1 key/2 threads/fetch_add", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(shared.fetch_add(1, Ordering::Relaxed));
            })
        })
    });
    c.bench_function("baseline/1 key/2 threads/clock + fetch_add", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(black_box(clock.now()) ^ shared.fetch_add(1, Ordering::Relaxed));
            })
        })
    });

    let many = limiter(2 * MANY);
    let mut buf = [0; KEY_LEN];
    for i in 0..MANY {
        many.check(0, key_of(i, &mut buf));
    }
    assert_eq!(many.tracked_keys(), MANY);
    let mut i = 0usize;
    c.bench_function("check/1M keys/1 thread", |b| {
        b.iter(|| {
            i = (i + STRIDE) % MANY;
            many.check(0, black_box(key_of(i, &mut buf)))
        })
    });
    let mut i = 0usize;
    c.bench_function("check/1M keys/1 thread/hot set of 1000", |b| {
        b.iter(|| {
            i = (i + STRIDE) % 1000;
            many.check(0, black_box(key_of(i * 1000, &mut buf)))
        })
    });
    drop(many);
    let floor: Vec<AtomicU64> = (0..FLOOR_WORDS).map(|_| AtomicU64::new(0)).collect();
    let mut i = 0usize;
    c.bench_function("baseline/1M keys/1 thread/clock + one slot", |b| {
        b.iter(|| {
            i = (i + STRIDE) % MANY;
            touch_slot(&*clock, &floor, black_box(key_of(i, &mut buf)))
        })
    });
    let mut i = 0usize;
    c.bench_function(
        "baseline/1M keys/1 thread/hot set of 1000/clock + one slot",
        |b| {
            b.iter(|| {
                i = (i + STRIDE) % 1000;
                touch_slot(&*clock, &floor, black_box(key_of(i * 1000, &mut buf)))
            })
        },
    );
    drop(floor);
    let naive: HashMap<Box<[u8]>, u64> = (0..MANY)
        .map(|i| (Box::from(key_of(i, &mut buf)), i as u64))
        .collect();
    let mut i = 0usize;
    c.bench_function("baseline/1M keys/1 thread/hashmap lookup", |b| {
        b.iter(|| {
            i = (i + STRIDE) % MANY;
            naive.get(black_box(key_of(i, &mut buf))).copied()
        })
    });
    let mut i = 0usize;
    c.bench_function(
        "baseline/1M keys/1 thread/hot set of 1000/hashmap lookup",
        |b| {
            b.iter(|| {
                i = (i + STRIDE) % 1000;
                naive.get(black_box(key_of(i * 1000, &mut buf))).copied()
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
