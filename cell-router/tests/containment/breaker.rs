//! Circuit breaker: opening on error ratio with minimum volume, half-open probes, re-opening.

use std::time::{Duration, Instant};

use cell_router::containment::{
    Breaker, BreakerConfig, CircuitBreaker, Outcome, Permit, Rejected, Transition,
};
use proptest::prelude::*;

use crate::support::{ms, secs, t0};

const OK: Outcome = Outcome::Success {
    latency: Duration::from_millis(1),
};

fn run(b: &CircuitBreaker, outcome: Outcome, now: Instant) -> Option<Transition> {
    b.try_acquire(now).ok()?.record(outcome, now)
}

/// Opens a fresh breaker with 10 successes and 10 failures (50% of the minimum 20).
fn opened(start: Instant) -> CircuitBreaker {
    let b = CircuitBreaker::new(BreakerConfig::default(), start);
    for _ in 0..10 {
        assert_eq!(run(&b, OK, start), None);
    }
    for _ in 0..9 {
        assert_eq!(run(&b, Outcome::UpstreamError, start), None);
    }
    let opened = run(&b, Outcome::UpstreamError, start);
    let expected = Transition::Opened {
        requests: 20,
        failures: 10,
        open_for: secs(5),
    };
    assert_eq!(opened, Some(expected));
    b
}

#[test]
fn opens_at_half_failures_with_minimum_volume_and_rejects_fast() {
    let start = t0();
    let b = opened(start);
    assert_eq!(
        b.state(),
        Breaker::Open {
            until: start + secs(5)
        }
    );
    let err = b.try_acquire(start + secs(2)).unwrap_err();
    assert_eq!(
        err,
        Rejected {
            retry_after: secs(3)
        }
    );
    assert_eq!(b.transitions().opened, 1);
}

#[test]
fn below_minimum_volume_never_opens() {
    let start = t0();
    let b = CircuitBreaker::new(BreakerConfig::default(), start);
    for _ in 0..19 {
        assert_eq!(run(&b, Outcome::UpstreamError, start), None);
    }
    assert_eq!(b.state(), Breaker::Closed);
    // Eleven seconds later the window has forgotten them.
    let later = start + secs(11);
    assert_eq!(run(&b, Outcome::UpstreamError, later), None);
    assert_eq!(b.window(later), (1, 1));
}

#[test]
fn local_outcomes_never_count() {
    let start = t0();
    let b = CircuitBreaker::new(BreakerConfig::default(), start);
    for _ in 0..1000 {
        assert_eq!(run(&b, Outcome::Local, start), None);
    }
    assert_eq!(b.window(start), (0, 0));
}

#[test]
fn half_open_admits_three_probes_and_closes_after_three_successes() {
    let start = t0();
    let b = opened(start);
    let now = start + secs(5);
    let probes: Vec<Permit<'_>> = (0..3).map(|_| b.try_acquire(now).unwrap()).collect();
    assert!(probes.iter().all(Permit::is_probe));
    assert_eq!(b.try_acquire(now).unwrap_err().retry_after, secs(1));
    let state = Breaker::HalfOpen {
        probes_in_flight: 3,
        successes: 0,
    };
    assert_eq!(b.state(), state);
    let results: Vec<_> = probes.into_iter().map(|p| p.record(OK, now)).collect();
    assert_eq!(results, [None, None, Some(Transition::Closed)]);
    assert_eq!(b.state(), Breaker::Closed);
    assert_eq!(b.window(now), (0, 0));
    let t = b.transitions();
    assert_eq!(
        (t.opened, t.half_opened, t.closed, t.reopened),
        (1, 1, 1, 0)
    );
}

#[test]
fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
    let start = t0();
    let b = opened(start);
    let mut now = start + secs(5);
    let mut open_for = Vec::new();
    for _ in 0..6 {
        match run(&b, Outcome::Timeout, now) {
            Some(Transition::Reopened { open_for: d }) => {
                open_for.push(d.as_secs());
                now += d;
            }
            other => panic!("expected a re-open, got {other:?}"),
        }
    }
    assert_eq!(open_for, [10, 20, 40, 60, 60, 60]);
    // Closing resets the growth.
    for _ in 0..3 {
        run(&b, OK, now);
    }
    assert_eq!(b.state(), Breaker::Closed);
}

#[test]
fn dropped_and_local_probes_free_their_slot() {
    let start = t0();
    let b = opened(start);
    let now = start + secs(5);
    for _ in 0..10 {
        drop(b.try_acquire(now).unwrap());
        assert_eq!(
            b.try_acquire(now).unwrap().record(Outcome::Local, now),
            None
        );
    }
    assert!(matches!(
        b.state(),
        Breaker::HalfOpen {
            probes_in_flight: 0,
            ..
        }
    ));
}

#[test]
fn late_closed_permits_do_not_disturb_half_open() {
    let start = t0();
    let b = CircuitBreaker::new(BreakerConfig::default(), start);
    let late = b.try_acquire(start).unwrap(); // taken while closed
    assert!(opened_into(&b, start).is_some());
    let now = start + secs(5);
    let probe = b.try_acquire(now).unwrap();
    assert_eq!(late.record(Outcome::UpstreamError, now), None);
    assert!(matches!(
        b.state(),
        Breaker::HalfOpen {
            probes_in_flight: 1,
            ..
        }
    ));
    drop(probe);
}

fn opened_into(b: &CircuitBreaker, now: Instant) -> Option<Transition> {
    (0..20).find_map(|_| run(b, Outcome::UpstreamError, now))
}

proptest! {
    /// Any interleaving: no panic, probes within budget, and only upstream failures open it.
    #[test]
    fn random_sequences_keep_invariants(
        ops in prop::collection::vec((0u8..5, 0u64..3_000), 0..500),
        local_only in any::<bool>(),
    ) {
        let start = t0();
        let b = CircuitBreaker::new(BreakerConfig::default(), start);
        let mut now = start;
        let mut held = Vec::new();
        for (op, step) in ops {
            now += ms(step);
            match op {
                0 => if let Ok(p) = b.try_acquire(now) { held.push(p) },
                1 => { held.pop(); }
                _ => if let Some(p) = held.pop() {
                    let outcome = match (local_only, op) {
                        (true, _) => Outcome::Local,
                        (false, 2) => OK,
                        (false, 3) => Outcome::Timeout,
                        _ => Outcome::UpstreamError,
                    };
                    p.record(outcome, now);
                },
            }
            if let Breaker::HalfOpen { probes_in_flight, .. } = b.state() {
                prop_assert!(probes_in_flight <= 3);
            }
            if local_only {
                prop_assert_eq!(b.state(), Breaker::Closed);
            }
        }
    }
}
