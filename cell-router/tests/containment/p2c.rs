//! P2C over peak-EWMA: a slow instance loses its traffic before anything is ejected.

use std::time::{Duration, Instant};

use cell_router::containment::{Load, Outcome, P2c, PeakEwma, PeakEwmaConfig, Pending};
use proptest::prelude::*;

use crate::support::{Rng, ms, secs, t0};

/// Open-loop simulation: one request per millisecond over instances with the given latency
/// (which may change at `switch`); returns each instance's requests per simulated second.
fn simulate(
    latency: impl Fn(usize, Duration) -> Duration,
    instances: usize,
    seconds: u64,
) -> Vec<Vec<u64>> {
    let start = t0();
    let ewmas: Vec<PeakEwma> = (0..instances)
        .map(|_| PeakEwma::new(&PeakEwmaConfig::default(), start))
        .collect();
    let mut rng = Rng::new(42);
    let mut in_flight: Vec<(Instant, Duration, Pending<'_>)> = Vec::new();
    let mut per_second = vec![vec![0; instances]; seconds as usize];
    for tick in 0..seconds * 1000 {
        let now = start + ms(tick);
        let (done, pending): (Vec<_>, Vec<_>) =
            in_flight.drain(..).partition(|(at, ..)| *at <= now);
        in_flight = pending;
        for (at, latency, p) in done {
            p.finish(Outcome::Success { latency }, at);
        }
        let pick = P2c::pick(instances, rng.next(), |i| {
            Load::new(ewmas[i].cost(now), true)
        });
        let i = pick.unwrap();
        let l = latency(i, ms(tick));
        per_second[(tick / 1000) as usize][i] += 1;
        in_flight.push((now + l, l, ewmas[i].start(now)));
    }
    per_second
}

fn share(counts: &[u64], i: usize) -> f64 {
    counts[i] as f64 / counts.iter().sum::<u64>() as f64
}

#[test]
fn slow_instance_gets_under_10_percent_within_5s() {
    let latency = |i: usize, _| if i == 1 { ms(200) } else { ms(2) };
    let seconds = simulate(latency, 2, 5);
    let shares: Vec<f64> = seconds.iter().map(|s| share(s, 1)).collect();
    eprintln!("slow instance share per second: {shares:.4?}");
    assert!(shares[4] < 0.10, "last second: {}", shares[4]);
    let total: Vec<u64> = (0..2).map(|i| seconds.iter().map(|s| s[i]).sum()).collect();
    assert!(share(&total, 1) < 0.10, "whole run: {total:?}");
}

#[test]
fn slow_one_of_three_is_avoided_and_the_rest_share() {
    let latency = |i: usize, _| if i == 2 { ms(200) } else { ms(2) };
    let seconds = simulate(latency, 3, 5);
    let last = &seconds[4];
    assert!(share(last, 2) < 0.10, "{last:?}");
    assert!(share(last, 0) > 0.3 && share(last, 1) > 0.3, "{last:?}");
}

#[test]
fn recovered_instance_wins_traffic_back() {
    // Slow for the first 5 s, then as fast as its peer: decay toward 0 makes P2C try it
    // again, and its fast answers pull its estimate down.
    let latency = |i: usize, at: Duration| {
        if i == 1 && at < secs(5) {
            ms(200)
        } else {
            ms(2)
        }
    };
    let seconds = simulate(latency, 2, 90);
    let tail: Vec<u64> = (0..2)
        .map(|i| seconds[80..].iter().map(|s| s[i]).sum())
        .collect();
    eprintln!("last 10 s after recovery: {tail:?}");
    assert!(share(&tail, 1) > 0.3, "{tail:?}");
}

proptest! {
    #[test]
    fn pick_is_eligible_and_no_worse_than_its_pair(
        loads in prop::collection::vec((0.0..1e9f64, any::<bool>()), 0..12),
        random in any::<u64>(),
    ) {
        let loads: Vec<Load> = loads.into_iter().map(|(c, e)| Load::new(c, e)).collect();
        let mut seen = Vec::new();
        let pick = P2c::pick(loads.len(), random, |i| { seen.push(i); loads[i] });
        let any_eligible = loads.iter().any(|l| l.eligible);
        prop_assert_eq!(pick.is_some(), any_eligible);
        if let Some(k) = pick {
            prop_assert!(loads[k].eligible);
            if loads.len() >= 2 {
                prop_assert_ne!(seen[0], seen[1]);
                let other = if k == seen[0] { seen[1] } else { seen[0] };
                if loads[other].eligible && seen.len() == 2 {
                    prop_assert!(loads[k].cost <= loads[other].cost);
                }
            }
        }
    }
}
