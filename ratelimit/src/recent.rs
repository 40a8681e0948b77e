//! A per-thread memo of the last key checked under each policy, with a small lease of its
//! tokens.
//!
//! A hot key (the one being hammered) is checked over and over by every worker thread. Going
//! through the table each time costs a hash, a slot probe and an `arc-swap` load (two atomic
//! writes, to thread-local memory): about 25 ns, a third of a check of a cached key. The memo
//! holds a reference to the key's state, so a repeated check goes straight to the state's
//! lock-free bucket.
//!
//! **Leases.** Every check that reaches the bucket writes its cache line; when several cores
//! check one key, the line moves between them on every request (~100 ns each on this class of
//! machine, more than the whole check). So a thread that uses up a lease within one tick of the
//! coarse clock asks the next time for twice as many tokens, up to [`MAX_LEASE`], and decides
//! its following requests for that key on them without touching shared memory; a lease that
//! ends (the clock moved on, the thread went to another key) with tokens unused gives them back
//! and the next one is half the size. The bucket grants a lease only if a quarter of its
//! capacity is left afterwards (see [`crate::bucket`]), so near the limit every request is
//! decided on the shared bucket, one at a time, as without leases.
//!
//! What a lease changes, per thread and key: admissions are never more than the bucket's
//! (leased tokens were taken from it); up to `MAX_LEASE − 1` tokens sit unused in a thread's
//! memo until its next check of the key (or its next key under the policy, or its exit) gives
//! them back, which matters only if the bucket drains from a quarter to empty meanwhile; the
//! requests admitted on a lease are counted as demand when the lease ends, so the key's counts
//! lag by at most `MAX_LEASE − 1` requests per thread.
//!
//! Invariants: an entry is used only while its state is not retired (the sync task retires a
//! state when it forgets the key), so a forgotten key's next check goes through the table. A
//! check racing with the retirement may still count on the old state: at most one request per
//! thread (or the rest of its lease), on a key idle (or least recently used) enough to be
//! forgotten. Each thread keeps at most [`SLOTS`] states alive this way.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::bucket::Taken;
use crate::state::{KeyState, Local};

/// Entries per thread; policies share them by `uid % SLOTS`.
const SLOTS: usize = 4;
/// Longer keys are not memoised (the memo keeps a copy of the key).
const MAX_KEY_LEN: usize = 128;
/// Most tokens a thread takes at once for one key (see the module docs).
pub(crate) const MAX_LEASE: u64 = 8;

struct Entry {
    policy: u64,
    key: Vec<u8>,
    state: Arc<KeyState>,
    lease: Lease,
}

/// Tokens of the entry's key taken for this thread's next requests.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Taken and not yet used.
    left: u64,
    /// Requests admitted on it after the one that took it: not yet counted on the key.
    uncounted: u64,
    /// What the next lease asks for.
    size: u64,
    /// The clock when it was taken. Its tokens are used only while the clock reads the same
    /// (one tick of the coarse clock), so the decisions made on them are current.
    at: u64,
    /// Where its tokens sit in the bucket's debt, to give back what is still owed.
    taken: Taken,
    /// The bucket as the lease left it.
    local: Local,
}

impl Lease {
    const NONE: Lease = Lease {
        left: 0,
        uncounted: 0,
        size: 1,
        at: u64::MAX,
        taken: Taken::NOTHING,
        local: Local {
            allowed: false,
            tokens: 0.0,
            share: 0.0,
            until_full: 0,
            wait: 0,
        },
    };

    /// The decision for a request admitted on this lease.
    fn decision(&self) -> Local {
        Local {
            // Tokens left to the key: the bucket's and the lease's own.
            tokens: self.local.tokens + self.left as f64,
            ..self.local
        }
    }
}

impl Entry {
    /// Ends the lease: admitted requests counted and, with `now`, what is still owed of the
    /// unused tokens back to the bucket.
    fn end_lease(&mut self, now: Option<u64>) {
        let lease = std::mem::replace(&mut self.lease, Lease::NONE);
        self.state
            .end_lease(lease.left, lease.taken, lease.uncounted, now);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The thread is exiting: the time is unknown, so unused tokens stay taken (at most
        // `MAX_LEASE − 1`, under-admitting once).
        self.end_lease(None);
    }
}

/// A slot: the memoised entry, and the address of the state the table last returned under the
/// slot's policies. A state is memoised only when the table returns it twice in a row, so
/// traffic over many keys (where the memo never hits) pays a pointer compare, not a copy of
/// the key and two reference-count updates per check.
struct Slot {
    entry: Option<Entry>,
    last: usize,
}

thread_local! {
    static RECENT: RefCell<[Slot; SLOTS]> =
        const { RefCell::new([const { Slot { entry: None, last: 0 } }; SLOTS]) };
}

/// A process-wide unique id for a policy of a limiter, so limiters never share entries.
pub(crate) fn next_uid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Checks `key` on its memoised state, if this thread's last check under `policy` was `key`
/// and the state is still tracked: on the lease if it has a token for now, else on the bucket,
/// taking a new lease. A check of another key (`None`: the caller goes to the table) ends the
/// lease of the memoised one, so a thread holds tokens of a key only until its next check
/// under the policy.
#[inline]
pub(crate) fn check(policy: u64, key: &[u8], now: u64) -> Option<Local> {
    RECENT.with(|recent| {
        let mut recent = recent.try_borrow_mut().ok()?;
        let e = recent[slot(policy)].entry.as_mut()?;
        if e.policy != policy || e.key != key || e.state.is_retired() {
            if e.lease.left > 0 || e.lease.uncounted > 0 {
                e.end_lease(Some(now));
            }
            return None;
        }
        let lease = &mut e.lease;
        if lease.left > 0 && lease.at == now {
            lease.left -= 1;
            lease.uncounted += 1;
            return Some(lease.decision());
        }
        let size = if lease.left > 0 {
            (lease.size / 2).max(1)
        } else if lease.at == now {
            (lease.size * 2).min(MAX_LEASE)
        } else {
            lease.size
        };
        if lease.left > 0 {
            e.state.end_lease(lease.left, lease.taken, 0, Some(now));
        }
        let (local, taken, mark) = e.state.lease(now, size, lease.uncounted);
        e.lease = Lease {
            left: taken.saturating_sub(1),
            uncounted: 0,
            // Refused or cut to one token near the limit: start small again.
            size: if taken < size { 1 } else { size },
            at: now,
            taken: mark,
            local,
        };
        Some(e.lease.decision())
    })
}

/// Notes that the table returned `state` for `key` under `policy`; memoises it if it did so
/// for the previous lookup too. Reuses the entry's key buffer: no allocation once it has grown
/// to the keys' length.
pub(crate) fn remember(policy: u64, key: &[u8], state: &Arc<KeyState>, now: u64) {
    if key.len() > MAX_KEY_LEN {
        return;
    }
    RECENT.with(|recent| {
        let Ok(mut recent) = recent.try_borrow_mut() else {
            return;
        };
        let slot = &mut recent[slot(policy)];
        let address = Arc::as_ptr(state) as usize;
        if std::mem::replace(&mut slot.last, address) != address {
            return;
        }
        match &mut slot.entry {
            Some(e) => {
                e.end_lease(Some(now));
                e.policy = policy;
                e.key.clear();
                e.key.extend_from_slice(key);
                e.state = Arc::clone(state);
            }
            empty => {
                *empty = Some(Entry {
                    policy,
                    key: key.to_vec(),
                    state: Arc::clone(state),
                    lease: Lease::NONE,
                });
            }
        }
    });
}

fn slot(policy: u64) -> usize {
    (policy % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Rates;

    const RATES: Rates = Rates {
        per_ns: 10.0 / 1e9,
        burst: 100.0,
    };

    fn state(key: &[u8]) -> Arc<KeyState> {
        Arc::new(KeyState::new(key, RATES, 1.0, 0))
    }

    fn tokens(k: &KeyState, now: u64) -> f64 {
        k.snapshot(now, RATES).tokens
    }

    /// Memoises `state` for `key` on this thread (the table returned it twice in a row).
    fn memoise(policy: u64, key: &[u8], state: &Arc<KeyState>) {
        remember(policy, key, state, 0);
        remember(policy, key, state, 0);
    }

    #[test]
    fn leases_grow_while_used_up_and_never_admit_more_than_the_bucket() {
        let policy = next_uid();
        let k = state(b"k");
        memoise(policy, b"k", &k);
        let admitted = (0..1000)
            .filter(|_| check(policy, b"k", 0).is_some_and(|l| l.allowed))
            .count();
        assert_eq!(admitted, 100, "the burst, exactly");
        // The counts reach the key once the lease ends (the thread's next key).
        memoise(policy, b"other", &state(b"other"));
        let counts = k.drain();
        assert_eq!((counts.seen, counts.denied), (1000, 900));
    }

    #[test]
    fn a_lease_ends_with_the_tick_and_gives_back_what_it_did_not_use() {
        let policy = next_uid();
        let k = state(b"k");
        memoise(policy, b"k", &k);
        // Leases of 1, 2, 4, 8 at t = 0: 15 tokens taken, 10 requests admitted.
        for left in [99.0, 98.0, 97.0, 96.0, 95.0, 94.0, 93.0, 92.0, 91.0, 90.0] {
            let local = check(policy, b"k", 0).expect("memoised");
            assert!(local.allowed);
            assert_eq!(
                local.tokens, left,
                "remaining counts the lease's own tokens"
            );
        }
        assert!(
            (tokens(&k, 0) - 85.0).abs() < 1e-9,
            "8 leased, 3 of them used"
        );
        // The clock moved: the 5 unused go back, the next lease is half the last one.
        let local = check(policy, b"k", 1).expect("memoised");
        assert!(local.allowed);
        assert!((tokens(&k, 1) - 86.0).abs() < 0.01, "{}", tokens(&k, 1));
        assert_eq!(
            k.drain().seen,
            11,
            "the new lease counts its request and the last one's"
        );
    }

    /// A lease left alone while the bucket refills and others drain it: the tokens it still
    /// holds were refilled long ago, so they are not owed and do not come back.
    #[test]
    fn a_stale_lease_gives_back_nothing() {
        let policy = next_uid();
        let k = state(b"k");
        memoise(policy, b"k", &k);
        for _ in 0..10 {
            assert!(check(policy, b"k", 0).is_some_and(|l| l.allowed));
        }
        // 20 s later (full again), another thread takes the whole bucket.
        let later = 20_000_000_000;
        let others = (0..200).filter(|_| k.check(later).allowed).count();
        assert_eq!(others, 100);
        // This thread's lease (5 tokens left) ends: nothing is owed, nothing comes back.
        assert!(check(policy, b"k", later).is_some_and(|l| !l.allowed));
        assert!(tokens(&k, later) < 1.0, "{}", tokens(&k, later));
    }

    #[test]
    fn checking_another_key_ends_the_lease() {
        let policy = next_uid();
        let k = state(b"k");
        memoise(policy, b"k", &k);
        for _ in 0..10 {
            assert!(check(policy, b"k", 0).is_some());
        }
        assert!((tokens(&k, 0) - 85.0).abs() < 1e-9, "15 taken, 10 used");
        // A check of another key (not memoised: the table will answer it) ends the lease.
        assert!(check(policy, b"x", 0).is_none());
        assert!((tokens(&k, 0) - 90.0).abs() < 1e-9, "{}", tokens(&k, 0));
        assert_eq!(k.drain().seen, 10);
    }

    #[test]
    fn a_retired_state_is_not_used() {
        let policy = next_uid();
        let k = state(b"k");
        memoise(policy, b"k", &k);
        assert!(check(policy, b"k", 0).is_some());
        k.retire();
        assert!(check(policy, b"k", 0).is_none());
    }
}
