//! The limiter without Redis, on a manual clock: decisions, live-gateway split, idle eviction,
//! the key cap under a flood.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use ratelimit::{
    BYTES_PER_KEY, Limiter, LimiterMode, LimiterOptions, ManualClock, PolicyConfig, PolicyKey,
    SyncTask,
};

fn limiter(limit: u64, burst: u64, max_keys: usize) -> (Limiter, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1)));
    let policy = PolicyConfig::new("per-user", PolicyKey::User, limit, Duration::from_secs(1))
        .with_burst(burst);
    let options = LimiterOptions {
        sync_interval: Duration::from_millis(100),
        max_keys,
        gateway_id: "gw-test".into(),
        idle_after: Duration::from_secs(2),
    };
    (
        Limiter::with_clock(vec![policy], options, clock.clone()).unwrap(),
        clock,
    )
}

#[test]
fn decisions_carry_headers_material() {
    let (l, clock) = limiter(10, 5, 100);
    for i in 0..5 {
        let d = l.check(0, b"alice");
        assert!(d.allowed);
        assert_eq!(d.remaining, 4 - i);
    }
    let denied = l.check(0, b"alice");
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Some(Duration::from_millis(100)));
    assert_eq!(denied.reset_after, Duration::from_millis(500));
    clock.advance(Duration::from_millis(100));
    assert!(l.check(0, b"alice").allowed);
    assert!(l.check(0, b"bob").allowed, "keys are independent");
    assert_eq!(l.mode(), LimiterMode::Synced);
}

/// Two threads hammer one key with the clock standing still: their leases (see `recent.rs`)
/// take tokens ahead of use, and the pair still admits exactly the burst.
#[test]
fn threads_on_leases_admit_exactly_the_burst() {
    let (l, _clock) = limiter(10, 1000, 100);
    let admitted: usize = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| s.spawn(|| (0..10_000).filter(|_| l.check(0, b"hot").allowed).count()))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(admitted, 1000);
    assert_eq!(l.inspect("per-user", b"hot").unwrap().tokens, 0.0);
}

/// A thread that stopped in the middle of a lease and comes back after the bucket refilled and
/// another thread emptied it: its unused tokens were refilled long ago and are not handed out
/// again. At one instant, never more than the burst.
#[test]
fn a_lease_left_behind_admits_nothing_extra() {
    let (l, clock) = limiter(10, 100, 100);
    // This thread: 10 requests at one instant, on leases of 1, 2, 4 and 8 (5 tokens left).
    assert_eq!((0..10).filter(|_| l.check(0, b"hot").allowed).count(), 10);
    clock.advance(Duration::from_secs(20));
    let others = std::thread::scope(|s| {
        s.spawn(|| (0..1000).filter(|_| l.check(0, b"hot").allowed).count())
            .join()
            .unwrap()
    });
    let mine = (0..1000).filter(|_| l.check(0, b"hot").allowed).count();
    assert_eq!((others, mine), (100, 0));
}

#[test]
fn new_keys_get_an_equal_split_of_the_live_gateways() {
    let (l, _clock) = limiter(300, 300, 100);
    l.set_live_gateways(3);
    let admitted = (0..1000).filter(|_| l.check(0, b"k").allowed).count();
    assert_eq!(admitted, 100);
    let view = l.inspect("per-user", b"k").unwrap();
    assert!(
        (view.share - 1.0 / 3.0).abs() < 1e-9 && (view.local_rate - 100.0).abs() < 1e-6,
        "{view:?}"
    );
    assert_eq!(view.global_demand, None);
    assert!(l.inspect("per-user", b"other").is_none() && l.inspect("nope", b"k").is_none());
}

#[tokio::test]
async fn idle_keys_are_evicted_by_the_sync_task() {
    let (l, clock) = limiter(10, 10, 100);
    let mut task = SyncTask::new(&l, None);
    l.check(0, b"a");
    l.check(0, b"b");
    clock.advance(Duration::from_secs(1));
    l.check(0, b"b");
    task.tick().await;
    assert_eq!(l.tracked_keys(), 2);
    clock.advance(Duration::from_millis(1500));
    task.tick().await;
    assert_eq!(l.tracked_keys(), 1, "a idle for 2.5 s, b for 1.5 s");
    assert!(l.inspect("per-user", b"b").is_some());
}

/// 100,000 distinct random keys at high rate, with one key hammered throughout: tracked keys
/// never exceed `max_keys`, the hammered key keeps its state, memory stays under
/// `max_keys × (BYTES_PER_KEY + key length)`.
#[tokio::test]
async fn a_key_flood_stays_within_max_keys() {
    const MAX_KEYS: usize = 10_000;
    let (l, clock) = limiter(100, 100, MAX_KEYS);
    let mut task = SyncTask::new(&l, None);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut hammered_allowed = 0;
    for batch in 0..100 {
        for _ in 0..1000 {
            let key = rng.u128(..).to_le_bytes();
            l.check(0, &key);
            if l.check(0, b"victim").allowed {
                hammered_allowed += 1;
            }
        }
        assert!(
            l.tracked_keys() <= MAX_KEYS,
            "batch {batch}: {} tracked",
            l.tracked_keys()
        );
        clock.advance(Duration::from_millis(10));
        if batch % 10 == 9 {
            task.tick().await;
        }
    }
    assert!(l.tracked_keys() <= MAX_KEYS);
    // 1 s of simulated time: the burst plus one second of refill.
    assert!(hammered_allowed <= 100 + 100 + 1, "{hammered_allowed}");
    assert!(
        l.inspect("per-user", b"victim").is_some(),
        "the hammered key stays tracked"
    );
    let bound_mb = (MAX_KEYS * (BYTES_PER_KEY + 16)) as f64 / 1e6;
    eprintln!(
        "tracked {} keys (max {MAX_KEYS}); memory bound {bound_mb:.1} MB",
        l.tracked_keys()
    );
}
