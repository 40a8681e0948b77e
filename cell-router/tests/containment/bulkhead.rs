//! Bulkhead: a hard cap under concurrency, refusing at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cell_router::containment::Bulkhead;

#[test]
fn never_exceeds_max_under_contention() {
    let bulkhead = Arc::new(Bulkhead::new(8));
    let peak = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (b, peak, refused) = (bulkhead.clone(), peak.clone(), refused.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    match b.try_acquire_owned() {
                        Some(permit) => {
                            peak.fetch_max(b.in_flight(), Ordering::Relaxed);
                            drop(permit);
                        }
                        None => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(peak.load(Ordering::Relaxed) <= 8);
    assert_eq!(bulkhead.in_flight(), 0);
}

#[test]
fn the_ninth_request_is_refused_at_once() {
    let bulkhead = Bulkhead::new(8);
    let held: Vec<_> = (0..8).map(|_| bulkhead.try_acquire().unwrap()).collect();
    assert!(bulkhead.try_acquire().is_none());
    drop(held);
    assert_eq!(bulkhead.in_flight(), 0);
}
