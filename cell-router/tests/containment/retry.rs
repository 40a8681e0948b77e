//! Retry budget and policy: retries stay within 10% plus a floor, only where safe.

use cell_router::containment::{
    RetryBudget, RetryBudgetConfig, RetryFailure, RetryPolicy, RetryPolicyConfig,
};
use proptest::prelude::*;

use crate::support::{ms, secs, t0};

/// `rps` requests per second for `seconds`, every attempt failing with a 503; returns
/// (requests, retries).
fn all_failing(rps: u64, seconds: u64) -> (u64, u64) {
    let start = t0();
    let budget = RetryBudget::new(&RetryBudgetConfig::default(), start);
    let policy = RetryPolicy::default();
    let (mut requests, mut retries) = (0, 0);
    for i in 0..rps * seconds {
        let now = start + ms(i * 1000 / rps);
        budget.record_request(now);
        requests += 1;
        let mut attempt = 1;
        while policy.should_retry("GET", false, RetryFailure::Status(503), attempt)
            && budget.withdraw(now)
        {
            retries += 1;
            attempt += 1;
        }
    }
    (requests, retries)
}

#[test]
fn under_total_failure_retries_stay_within_ratio_plus_floor() {
    for (rps, seconds) in [(1000, 60), (100, 30), (5, 30), (20_000, 20)] {
        let (requests, retries) = all_failing(rps, seconds);
        let bound = requests / 10 + 10 * seconds;
        eprintln!(
            "{rps} rps for {seconds} s: {requests} requests, {retries} retries (bound {bound})"
        );
        assert!(retries <= bound, "{rps} rps: {retries} > {bound}");
        // And the budget is not needlessly stingy: most of it is usable (one retry per
        // request at most, with two attempts).
        let usable = bound.min(requests);
        assert!(
            retries * 10 >= usable * 8,
            "{rps} rps: only {retries} of {usable}"
        );
    }
}

#[test]
fn the_floor_lets_a_quiet_cell_retry() {
    let start = t0();
    let budget = RetryBudget::new(&RetryBudgetConfig::default(), start);
    assert!(budget.can_retry(start));
    let granted = (0..200).filter(|_| budget.withdraw(start)).count();
    assert_eq!(granted, 90); // 10/s over the 9 full buckets of a 10 s window
    assert!(!budget.can_retry(start));
    assert!(budget.can_retry(start + secs(11)));
}

#[test]
fn only_idempotent_requests_and_retryable_failures() {
    let p = RetryPolicy::default();
    for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
        assert!(p.should_retry(m, false, RetryFailure::Connect, 1), "{m}");
    }
    for m in ["POST", "PATCH", "CONNECT", "get"] {
        assert!(!p.should_retry(m, false, RetryFailure::Connect, 1), "{m}");
    }
    assert!(p.should_retry("POST", true, RetryFailure::Status(502), 1));
    for f in [
        RetryFailure::Status(502),
        RetryFailure::Status(503),
        RetryFailure::Status(504),
    ] {
        assert!(p.should_retry("GET", false, f, 1));
    }
    let never = [
        RetryFailure::Status(500),
        RetryFailure::Status(501),
        RetryFailure::Status(429),
        RetryFailure::Timeout,
        RetryFailure::Other,
    ];
    for f in never {
        assert!(!p.should_retry("GET", true, f, 1), "{f:?}");
    }
    assert!(!p.should_retry("GET", false, RetryFailure::Connect, 2)); // max 2 attempts
}

#[test]
fn backoff_doubles_to_the_cap_with_full_jitter() {
    let p = RetryPolicy::new(RetryPolicyConfig::default());
    let top = u64::MAX;
    let ceilings: Vec<u128> = (1..=6).map(|r| p.backoff(r, top).as_millis()).collect();
    assert_eq!(ceilings, [25, 50, 100, 200, 250, 250]);
    assert_eq!(p.backoff(3, 0), ms(0));
    assert_eq!(
        p.backoff(1, 1 << 63),
        ms(12) + std::time::Duration::from_micros(500)
    );
}

proptest! {
    #[test]
    fn backoff_is_within_bounds(retry in any::<u32>(), random in any::<u64>()) {
        let p = RetryPolicy::default();
        prop_assert!(p.backoff(retry, random) <= ms(250));
    }
}
