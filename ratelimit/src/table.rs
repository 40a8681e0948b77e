//! The table from keys to their states: sharded open addressing, lookups without locks.
//!
//! A lookup of a tracked key must not write memory other cores share, and should find the
//! state in as few dependent memory accesses as possible: at 1M keys each one is a cache (and
//! often TLB) miss. A `DashMap` takes its shard's read lock (two atomic writes to a word every
//! thread shares) and reaches the state through control bytes, slot, boxed key and `Arc`: four
//! dependent misses. Here a lookup hashes the key once, reads one slot (the hash as a tag next
//! to the state's pointer), loads the pointer through `arc-swap` (which records the reader in
//! thread-local memory, not on the slot), and compares the key stored in the state: two
//! dependent misses, the slot's and the state's, and no shared write.
//!
//! Writers (a new key, an eviction, growth) serialise on their shard's mutex; the sharding
//! keeps growth pauses short and writers of different keys apart. Writes cost more than a
//! `DashMap`'s (an insert takes ~1.4 times as long): storing into an `arc-swap` slot visits
//! every thread's `arc-swap` bookkeeping. New keys are the rare path; lookups are not.
//!
//! Invariants:
//! * Under its mutex a shard is an ordinary linear-probing table without tombstones (a removal
//!   shifts the following entries back), at most [`MAX_LOAD`] full, so a probe always ends at
//!   an empty slot.
//! * A slot's pointer is stored before its tag (release), so a reader that sees a tag sees the
//!   pointer written with it or a later one.
//! * A lookup without the lock may miss a key a concurrent writer is moving (a removal's shift,
//!   growth) but never returns another key's state: it compares the key in the state it
//!   loaded. A miss falls back to [`KeyTable::get_or_insert`], which finds the key under the
//!   lock if it is there.
//! * Growth publishes a new slot array and empties the old one, which stays allocated until
//!   the table is dropped (a lookup may still be reading it): at most as many slots again as
//!   the current arrays, counted in [`crate::BYTES_PER_KEY`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use arc_swap::ArcSwapOption;

use crate::hash::KeyHasher;
use crate::state::KeyState;

/// Slots of a new shard.
const MIN_CAPACITY: usize = 8;
/// A shard grows (doubles) before an insert would fill more than this fraction of its slots:
/// linear probing stays short (≈ 2.5 slots per successful lookup at worst), within a line or
/// two of slots.
const MAX_LOAD: f64 = 0.75;
/// Lowest load after growth, for the memory bound.
#[cfg(test)]
pub(crate) const MIN_LOAD: f64 = MAX_LOAD / 2.0;
/// Bytes per slot, for the memory bound.
#[cfg(test)]
pub(crate) const SLOT_BYTES: usize = size_of::<Slot>();
/// Slot arrays a shard can have over its life: capacities `MIN_CAPACITY · 2^g`.
const GENERATIONS: usize = 40;
/// Most shards per table: enough that new keys rarely wait on one another's writer lock and a
/// growth copies at most ~16,000 entries for a million keys (a few milliseconds during which
/// new keys of that shard wait); few enough that the shards themselves (two lines of one are
/// read by every lookup, ~1 KiB each) stay in cache and TLB.
const MAX_SHARDS: usize = 64;
/// Tag of an empty slot. Tags are hashes with the low bit set, so never this.
const EMPTY: u64 = 0;

struct Slot {
    tag: AtomicU64,
    state: ArcSwapOption<KeyState>,
}

impl Slot {
    fn empty() -> Self {
        Self {
            tag: AtomicU64::new(EMPTY),
            state: ArcSwapOption::empty(),
        }
    }
}

struct Shard {
    /// Index of the current array in `generations`.
    current: AtomicUsize,
    generations: [OnceLock<Box<[Slot]>>; GENERATIONS],
    /// Serialises writers; holds the number of entries.
    writer: Writer,
}

/// On its own cache line: taking the lock must not evict the line lookups read `current` from.
#[repr(align(64))]
struct Writer(Mutex<usize>);

impl Shard {
    fn new() -> Self {
        let shard = Self {
            current: AtomicUsize::new(0),
            generations: [const { OnceLock::new() }; GENERATIONS],
            writer: Writer(Mutex::new(0)),
        };
        let _ = shard.generations[0].set(empty_slots(MIN_CAPACITY));
        shard
    }

    /// The current slot array. Set before `current` names it (release/acquire), never unset.
    #[inline]
    fn slots(&self) -> &[Slot] {
        let generation = self.current.load(Ordering::Acquire);
        self.generations[generation].get().map_or(&[], |s| s)
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        // Writers leave the table consistent at every step (see the module docs).
        self.writer.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keys tracked under one policy.
pub(crate) struct KeyTable {
    hasher: KeyHasher,
    shards: Box<[Shard]>,
    /// `64 − log2(shards)`: the shard is the hash's top bits.
    shard_shift: u32,
}

impl KeyTable {
    /// A table sized for about `expected_keys` keys at most (it starts small and grows).
    pub(crate) fn new(expected_keys: usize) -> Self {
        // Up to ~16,000 keys per shard at `expected_keys`.
        let shards = (expected_keys / 16_384)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        Self {
            hasher: KeyHasher::new(),
            shards: (0..shards).map(|_| Shard::new()).collect(),
            shard_shift: 64 - shards.trailing_zeros(),
        }
    }

    /// The hash to pass to [`find`](Self::find) and [`get_or_insert`](Self::get_or_insert):
    /// computed once per check.
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        // `checked_shr`: with one shard the shift is 64.
        let index = hash.checked_shr(self.shard_shift).unwrap_or(0) as usize;
        &self.shards[index & (self.shards.len() - 1)]
    }

    /// Runs `f` on the state of `key`, without a lock. `None` if the key is not found, which
    /// may also happen while a writer moves it (see the module docs).
    #[inline]
    pub(crate) fn find<R>(
        &self,
        hash: u64,
        key: &[u8],
        f: impl FnOnce(&Arc<KeyState>) -> R,
    ) -> Option<R> {
        let slots = self.shard(hash).slots();
        let tag = tag(hash);
        let mask = slots.len().wrapping_sub(1);
        let mut i = home(tag, mask);
        // Bounded: racing writers cannot make a probe loop.
        for _ in 0..slots.len() {
            let slot = &slots[i];
            let t = slot.tag.load(Ordering::Acquire);
            if t == EMPTY {
                return None;
            }
            if t == tag {
                let state = slot.state.load();
                if let Some(state) = state.as_ref().filter(|s| s.key() == key) {
                    return Some(f(state));
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The state of `key`, inserted if absent. `make` is called (under the shard's lock) only
    /// when the key is absent and there is room; `None` from it, or a shard that cannot grow,
    /// leaves the key untracked and returns `None`.
    pub(crate) fn get_or_insert(
        &self,
        hash: u64,
        key: &[u8],
        make: impl FnOnce() -> Option<KeyState>,
    ) -> Option<Arc<KeyState>> {
        let shard = self.shard(hash);
        let mut len = shard.lock();
        let tag = tag(hash);
        let mut slots = shard.slots();
        if let Some(i) = position(slots, tag, key) {
            return slots[i].state.load_full();
        }
        let mut outgrown = None;
        if (*len + 1) as f64 > slots.len() as f64 * MAX_LOAD {
            let grown = grow(shard, slots)?;
            outgrown = Some(std::mem::replace(&mut slots, grown));
        }
        let state = make().map(Arc::new);
        if let Some(state) = &state {
            place(slots, tag, Arc::clone(state));
            *len += 1;
        }
        drop(len);
        // After the lock: lookups that raced with the growth wait on it only until the new
        // array is published. Nothing but this thread writes a replaced array.
        if let Some(old) = outgrown {
            empty(old);
        }
        state
    }

    /// The state of `key`, looked up under the shard's lock: exact, unlike a [`find`](Self::find)
    /// racing with a writer. For the admin API.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<KeyState>> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let _writer = shard.lock();
        let slots = shard.slots();
        slots[position(slots, tag(hash), key)?].state.load_full()
    }

    /// Removes `key` if `remove` says so of its state (decided under the shard's lock, so no
    /// check can re-insert the key in between); returns the removed state.
    pub(crate) fn remove_if(
        &self,
        key: &[u8],
        remove: impl FnOnce(&KeyState) -> bool,
    ) -> Option<Arc<KeyState>> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let mut len = shard.lock();
        let slots = shard.slots();
        let i = position(slots, tag(hash), key)?;
        let state = slots[i].state.load_full()?;
        if !remove(&state) {
            return None;
        }
        delete(slots, i);
        *len -= 1;
        Some(state)
    }

    /// Runs `f` on every state, one shard at a time under its lock (keys are not inserted or
    /// removed in that shard meanwhile; `f` must not call back into the table).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<KeyState>)) {
        for shard in &*self.shards {
            let _writer = shard.lock();
            for slot in shard.slots() {
                if slot.tag.load(Ordering::Relaxed) == EMPTY {
                    continue;
                }
                if let Some(state) = slot.state.load().as_ref() {
                    f(state);
                }
            }
        }
    }
}

/// The tag stored for `hash`: never [`EMPTY`].
#[inline]
fn tag(hash: u64) -> u64 {
    hash | 1
}

/// Where the probe for `tag` starts: bits above the shard-independent low bit.
#[inline]
fn home(tag: u64, mask: usize) -> usize {
    (tag >> 1) as usize & mask
}

fn empty_slots(capacity: usize) -> Box<[Slot]> {
    (0..capacity).map(|_| Slot::empty()).collect()
}

/// The slot holding `key`. Under the shard's lock.
fn position(slots: &[Slot], tag: u64, key: &[u8]) -> Option<usize> {
    let mask = slots.len() - 1;
    let mut i = home(tag, mask);
    loop {
        let t = slots[i].tag.load(Ordering::Relaxed);
        if t == EMPTY {
            return None;
        }
        if t == tag
            && slots[i]
                .state
                .load()
                .as_ref()
                .is_some_and(|s| s.key() == key)
        {
            return Some(i);
        }
        i = (i + 1) & mask;
    }
}

/// Puts `state` in the first empty slot of its probe. Under the shard's lock, with room.
fn place(slots: &[Slot], tag: u64, state: Arc<KeyState>) {
    let mask = slots.len() - 1;
    let mut i = home(tag, mask);
    while slots[i].tag.load(Ordering::Relaxed) != EMPTY {
        i = (i + 1) & mask;
    }
    slots[i].state.store(Some(state));
    slots[i].tag.store(tag, Ordering::Release);
}

/// Empties slot `hole` and shifts back the entries after it that probed past it, so probes
/// need no tombstones. Under the shard's lock. An entry being moved is briefly in two slots
/// (harmless: same state) or, to a reader that passed its new slot, in none (a false miss).
fn delete(slots: &[Slot], mut hole: usize) {
    let mask = slots.len() - 1;
    let mut j = hole;
    loop {
        j = (j + 1) & mask;
        let t = slots[j].tag.load(Ordering::Relaxed);
        if t == EMPTY {
            break;
        }
        // The entry at `j` may fill the hole unless its home lies cyclically in (hole, j]:
        // then a probe for it starts after the hole.
        let k = home(t, mask);
        let stays = if hole <= j {
            hole < k && k <= j
        } else {
            hole < k || k <= j
        };
        if !stays {
            slots[hole].state.store(slots[j].state.load_full());
            slots[hole].tag.store(t, Ordering::Release);
            hole = j;
        }
    }
    slots[hole].tag.store(EMPTY, Ordering::Release);
    slots[hole].state.store(None);
}

/// Copies a shard's entries to an array twice the size and publishes it; the caller empties
/// the old one. Under the shard's lock. `None` if the shard has used all its generations (it
/// then takes no new keys).
///
/// The new array is laid out before its slots are built: a store into an `ArcSwapOption`
/// visits every thread's `arc-swap` bookkeeping (writing to lines those threads' lookups
/// use), and the new array needs none.
fn grow<'a>(shard: &'a Shard, old: &[Slot]) -> Option<&'a [Slot]> {
    let next = shard.current.load(Ordering::Relaxed) + 1;
    let cell = shard.generations.get(next)?;
    let capacity = old.len() * 2;
    let mask = capacity - 1;
    let mut staged: Vec<(u64, Option<Arc<KeyState>>)> = vec![(EMPTY, None); capacity];
    for slot in old {
        let t = slot.tag.load(Ordering::Relaxed);
        if t == EMPTY {
            continue;
        }
        if let Some(state) = slot.state.load_full() {
            let mut i = home(t, mask);
            while staged[i].0 != EMPTY {
                i = (i + 1) & mask;
            }
            staged[i] = (t, Some(state));
        }
    }
    let new = cell.get_or_init(|| {
        staged
            .into_iter()
            .map(|(tag, state)| Slot {
                tag: AtomicU64::new(tag),
                state: ArcSwapOption::new(state),
            })
            .collect()
    });
    shard.current.store(next, Ordering::Release);
    Some(new)
}

/// Empties a replaced array, so it keeps no state alive (an evicted key's, say). Lookups still
/// probing it then miss and retry under the lock, on the current array.
fn empty(slots: &[Slot]) {
    for slot in slots {
        slot.tag.store(EMPTY, Ordering::Release);
        slot.state.store(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Rates;

    fn state(key: &[u8]) -> KeyState {
        let rates = Rates {
            per_ns: 1e-9,
            burst: 1.0,
        };
        KeyState::new(key, rates, 1.0, 0)
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("key-{i}").into_bytes()).collect()
    }

    #[test]
    fn inserted_keys_are_found_across_growth() {
        let table = KeyTable::new(1);
        let all = keys(5000);
        for k in &all {
            let h = table.hash(k);
            let inserted = table.get_or_insert(h, k, || Some(state(k)));
            assert_eq!(inserted.map(|s| s.key().to_vec()), Some(k.clone()));
        }
        for k in &all {
            let h = table.hash(k);
            assert_eq!(table.find(h, k, |s| s.key().to_vec()), Some(k.clone()));
            let again = table.get_or_insert(h, k, || panic!("already tracked"));
            assert!(again.is_some());
        }
        assert!(
            table
                .find(table.hash(b"absent"), b"absent", |_| ())
                .is_none()
        );
        let mut n = 0;
        table.for_each(|_| n += 1);
        assert_eq!(n, all.len());
    }

    #[test]
    fn make_can_refuse_a_key() {
        let table = KeyTable::new(1);
        let h = table.hash(b"k");
        assert!(table.get_or_insert(h, b"k", || None).is_none());
        assert!(table.find(h, b"k", |_| ()).is_none());
    }

    /// Removals in any order keep every other key reachable (the backward shift is right,
    /// including around the end of the array).
    #[test]
    fn removal_keeps_the_others_reachable() {
        let table = KeyTable::new(1);
        let all = keys(3000);
        for k in &all {
            table.get_or_insert(table.hash(k), k, || Some(state(k)));
        }
        let mut rng = fastrand::Rng::with_seed(3);
        let mut order: Vec<usize> = (0..all.len()).collect();
        rng.shuffle(&mut order);
        let (gone, kept) = order.split_at(all.len() / 2);
        assert!(table.remove_if(&all[gone[0]], |_| false).is_none());
        for &i in gone {
            let removed = table.remove_if(&all[i], |_| true);
            assert_eq!(removed.map(|s| s.key().to_vec()), Some(all[i].clone()));
        }
        for &i in gone {
            assert!(table.find(table.hash(&all[i]), &all[i], |_| ()).is_none());
        }
        for &i in kept {
            assert!(table.find(table.hash(&all[i]), &all[i], |_| ()).is_some());
        }
        let mut n = 0;
        table.for_each(|_| n += 1);
        assert_eq!(n, kept.len());
    }

    /// Readers racing with inserts, removals and growth only ever see the right key's state.
    #[test]
    fn concurrent_readers_never_see_another_keys_state() {
        let table = KeyTable::new(1);
        let all = keys(2000);
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..3 {
                    for k in &all {
                        table.get_or_insert(table.hash(k), k, || Some(state(k)));
                    }
                    for k in all.iter().skip(round % 2).step_by(2) {
                        table.remove_if(k, |_| true);
                    }
                }
            });
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..20 {
                        for k in &all {
                            if let Some(found) = table.find(table.hash(k), k, |s| s.key().to_vec())
                            {
                                assert_eq!(&found, k);
                            }
                        }
                    }
                });
            }
        });
    }
}
