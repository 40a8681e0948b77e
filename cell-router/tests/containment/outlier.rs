//! Outlier detection: what ejects, for how long, the share cap, panic mode, slow start.

use std::time::Duration;

use cell_router::containment::{EjectionReason, Outcome, OutlierConfig, OutlierDetector};
use proptest::prelude::*;

use crate::support::{ms, secs, t0};

const OK: Outcome = Outcome::Success {
    latency: Duration::from_millis(2),
};
/// The midpoint of the jitter range: no jitter.
const MID: u64 = 1 << 63;

#[test]
fn five_consecutive_failures_eject_and_a_success_resets_the_run() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 3, start);
    for _ in 0..4 {
        assert_eq!(d.record(0, Outcome::UpstreamError, start, MID), None);
    }
    d.record(0, OK, start, MID);
    for _ in 0..4 {
        assert_eq!(d.record(0, Outcome::Timeout, start, MID), None);
    }
    let e = d.record(0, Outcome::UpstreamError, start, MID).unwrap();
    assert_eq!(e.reason, EjectionReason::ConsecutiveFailures { count: 5 });
    assert_eq!(e.duration, secs(30));
    assert!(d.is_ejected(0, start + secs(29)));
    assert!(!d.eligible(0, start + secs(29), false));
    assert!(!d.is_ejected(0, start + secs(30)));
}

#[test]
fn local_outcomes_never_eject() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 2, start);
    for _ in 0..1000 {
        assert_eq!(d.record(0, Outcome::Local, start, MID), None);
    }
    // Local does not break a run of real failures either.
    for _ in 0..4 {
        d.record(1, Outcome::UpstreamError, start, MID);
        d.record(1, Outcome::Local, start, MID);
    }
    assert!(d.record(1, Outcome::UpstreamError, start, MID).is_some());
}

#[test]
fn repeat_ejections_grow_are_capped_and_jittered() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 2, start);
    let mut now = start;
    let mut durations = Vec::new();
    for _ in 0..12 {
        let e = (0..5)
            .find_map(|_| d.record(0, Outcome::UpstreamError, now, MID))
            .unwrap();
        durations.push(e.duration.as_secs());
        now = e.until;
    }
    assert_eq!(
        durations,
        [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
    );
    // ±10% jitter from the caller's random.
    let low = (0..5)
        .find_map(|_| d.record(0, Outcome::UpstreamError, now, 0))
        .unwrap();
    assert_eq!(low.duration, secs(270));
    // Long in rotation: the count starts over.
    let later = low.until + secs(301);
    let fresh = (0..5)
        .find_map(|_| d.record(0, Outcome::UpstreamError, later, MID))
        .unwrap();
    assert_eq!((fresh.ejections, fresh.duration), (1, secs(30)));
}

#[test]
fn never_ejects_more_than_half_and_panics_above_half_unhealthy() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 4, start);
    let fail = |i| (0..5).find_map(|_| d.record(i, Outcome::UpstreamError, start, MID));
    assert!(fail(0).is_some());
    assert!(fail(1).is_some());
    assert!(!d.panic_mode(start));
    assert!(fail(2).is_none()); // cap: 2 of 4 out already
    assert!(d.panic_mode(start)); // 3 of 4 unhealthy: spread over all
    assert!((0..4).all(|i| d.eligible(i, start, true)));
    d.record(2, OK, start, MID); // its run is broken: no longer unhealthy
    assert!(!d.panic_mode(start));
}

#[test]
fn health_check_failures_count_against_the_cap() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 2, start);
    d.set_health(1, false, start);
    assert!(!d.eligible(1, start, false));
    assert!(
        (0..5)
            .find_map(|_| d.record(0, Outcome::UpstreamError, start, MID))
            .is_none()
    );
    assert!(d.panic_mode(start));
    d.set_health(1, true, start + secs(1));
    assert!(d.eligible(1, start + secs(1), false));
    assert!((d.slow_start_factor(1, start + secs(1)) - 0.1).abs() < 1e-9);
}

#[test]
fn a_single_instance_cell_is_never_ejected() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 1, start);
    assert!((0..100).all(|_| d.record(0, Outcome::UpstreamError, start, MID).is_none()));
    assert!(d.eligible(0, start, d.panic_mode(start)));
}

#[test]
fn slow_start_ramps_from_a_tenth_to_one_over_30s() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 2, start);
    let e = (0..5)
        .find_map(|_| d.record(0, Outcome::UpstreamError, start, MID))
        .unwrap();
    assert_eq!(d.slow_start_factor(1, start), 1.0);
    let f = |after: Duration| d.slow_start_factor(0, e.until + after);
    assert!((f(Duration::ZERO) - 0.1).abs() < 1e-9);
    assert!((f(secs(15)) - 0.55).abs() < 1e-9);
    assert_eq!(f(secs(30)), 1.0);
    assert_eq!(d.slow_start_factor(9, start), 1.0); // out of range: no panic
}

#[test]
fn latency_outlier_against_peers_is_ejected() {
    let start = t0();
    let d = OutlierDetector::new(OutlierConfig::default(), 3, start);
    for _ in 0..10 {
        for i in 0..3 {
            d.record(i, OK, start, MID);
        }
    }
    let fast = |i: usize| if i == 2 { ms(40) } else { ms(2) };
    assert_eq!(d.check_latency(start, MID, fast), None); // 20× but under 50 ms
    let slow = |i: usize| if i == 2 { ms(200) } else { ms(2) };
    let e = d.check_latency(start, MID, slow).unwrap();
    assert_eq!(e.upstream, 2);
    let reason = EjectionReason::Latency {
        estimate: ms(200),
        peer_median: ms(2),
    };
    assert_eq!(e.reason, reason);
    // Fewer than min_samples since it joined: no verdict.
    let fresh = OutlierDetector::new(OutlierConfig::default(), 3, start);
    assert_eq!(fresh.check_latency(start, MID, slow), None);
}

proptest! {
    /// Whatever the outcomes, at most half of a cell's upstreams are ejected at once.
    #[test]
    fn ejections_never_exceed_the_share(
        n in 1usize..9,
        events in prop::collection::vec((0usize..9, 0u8..4, 0u64..5_000, any::<u64>()), 0..400),
    ) {
        let start = t0();
        let d = OutlierDetector::new(OutlierConfig::default(), n, start);
        let mut now = start;
        for (i, kind, step_ms, random) in events {
            now += ms(step_ms);
            let outcome = match kind {
                0 => OK,
                1 => Outcome::Local,
                2 => Outcome::Timeout,
                _ => Outcome::UpstreamError,
            };
            let ejection = d.record(i, outcome, now, random);
            prop_assert!(ejection.is_none() || i < n);
            let ejected = (0..n).filter(|&k| d.is_ejected(k, now)).count();
            prop_assert!(ejected <= n / 2, "{} of {} ejected", ejected, n);
            let w = d.slow_start_factor(i, now);
            prop_assert!((0.1..=1.0).contains(&w));
        }
    }

    /// Only `Local` outcomes and successes: nobody is ever ejected.
    #[test]
    fn local_and_success_never_eject(events in prop::collection::vec((0usize..4, any::<bool>()), 0..300)) {
        let start = t0();
        let d = OutlierDetector::new(OutlierConfig::default(), 4, start);
        for (i, local) in events {
            let outcome = if local { Outcome::Local } else { OK };
            prop_assert_eq!(d.record(i, outcome, start, 0), None);
        }
    }
}
