//! Per-request placement cost: `home` and `rank_into` with 3 and 10 cells and 16-byte keys,
//! against unweighted rendezvous (highest raw xxh3 wins, no `ln`) as a naive baseline.

use std::hint::black_box;

use cell_router::{Placement, cell_seed};
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

criterion_group!(benches, bench);
criterion_main!(benches);
