//! Per-request placement cost: `home` and `rank_into` with 3 and 10 cells and 16-byte keys,
//! against unweighted rendezvous (highest raw xxh3 wins, no `ln`) as a naive baseline.

use std::hint::black_box;

use cell_router::{Directory, Guard, Placement, RoutingTable, cell_seed};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// 16-byte keys, cycled so one key's hashes do not sit in the branch predictor.
fn keys() -> Vec<[u8; 16]> {
    (0u64..1024)
        .map(|i| {
            let mut key = [0; 16];
            key[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            key[8..].copy_from_slice(b"user-id!");
            key
        })
        .collect()
}

fn placement(n: usize) -> Placement {
    Placement::new((1..=n).map(|i| (format!("cell-{i}"), 1.0))).expect("valid cells")
}

/// Baseline: unweighted rendezvous over precomputed seeds.
fn naive_home(seeds: &[u64], key: &[u8]) -> usize {
    let mut best = (0, 0);
    for (i, &seed) in seeds.iter().enumerate() {
        let h = xxh3_64_with_seed(key, seed);
        if h > best.1 {
            best = (i, h);
        }
    }
    best.0
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("placement");
    for n in [3, 10] {
        let placement = placement(n);
        let seeds: Vec<u64> = (1..=n).map(|i| cell_seed(&format!("cell-{i}"))).collect();

        group.bench_with_input(BenchmarkId::new("home", n), &placement, |b, p| {
            let mut keys = keys.iter().cycle();
            b.iter(|| p.home(black_box(keys.next().expect("cycle is endless"))));
        });
        group.bench_with_input(
            BenchmarkId::new("naive_unweighted_home", n),
            &seeds,
            |b, s| {
                let mut keys = keys.iter().cycle();
                b.iter(|| naive_home(s, black_box(keys.next().expect("cycle is endless"))));
            },
        );
        group.bench_with_input(BenchmarkId::new("rank_into", n), &placement, |b, p| {
            let mut keys = keys.iter().cycle();
            let mut out = Vec::with_capacity(n);
            b.iter(|| {
                p.rank_into(black_box(keys.next().expect("cycle is endless")), &mut out);
                black_box(&out);
            });
        });
    }
    group.finish();
}

/// A directory with `cell-1` draining over 1000 s from `t0`, and `pins` pinned keys.
fn directory(placement: &Placement, t0: u64, pins: usize) -> Directory {
    let dir = Directory::default()
        .drain(placement, "cell-1", 1_000_000, t0, Guard::default())
        .expect("a valid drain");
    (0..pins).fold(dir, |dir, i| {
        dir.pin(placement, &format!("pinned-{i}"), "cell-2", true)
            .expect("a valid pin")
    })
}

fn bench_route(c: &mut Criterion) {
    let keys = keys();
    let t0 = 1_700_000_000_000;
    let mut group = c.benchmark_group("route");
    for n in [3, 10] {
        let placement = placement(n);
        let tables = [
            ("all_active", Directory::default()),
            ("draining", directory(&placement, t0, 0)),
            ("draining_pins", directory(&placement, t0, 1000)),
        ];
        for (name, dir) in tables {
            let table = RoutingTable::new(placement.clone(), &dir);
            group.bench_with_input(BenchmarkId::new(name, n), &table, |b, t| {
                let mut keys = keys.iter().cycle();
                // Half way through the ramp: half of cell-1's users have moved.
                b.iter(|| {
                    t.route(
                        black_box(keys.next().expect("cycle is endless")),
                        t0 + 500_000,
                    )
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, bench_route);
criterion_main!(benches);
