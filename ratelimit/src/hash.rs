//! Hashing of keys: a keyed xxh3 for the in-memory map, an unkeyed one for Redis slot groups.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Builds [`KeyHasher`]s seeded with a per-process random seed.
///
/// Keys are attacker-controlled (client addresses, header values), so the map's hash must not
/// be predictable: with a fixed hash, keys chosen to collide would turn every lookup into a
/// linear scan (HashDoS). xxh3 with a secret 64-bit seed costs a few nanoseconds for short
/// keys, against ~20 ns for the standard library's SipHash-1-3.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHashBuilder {
    seed: u64,
}

impl KeyHashBuilder {
    pub(crate) fn new() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        // `RandomState` draws its keys from the operating system's randomness.
        let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x5eed_u64));
        Self { seed }
    }
}

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.seed,
            hash: 0,
        }
    }
}

/// One key's hash. A byte-slice key is hashed as its length (folded into the seed) then its
/// bytes (one seeded xxh3 call).
#[derive(Debug)]
pub(crate) struct KeyHasher {
    seed: u64,
    hash: u64,
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.hash = xxh3_64_with_seed(bytes, self.seed ^ self.hash);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        // The length prefix of `[u8]`'s `Hash`; xxh3 hashes the length again, so a cheap fold
        // suffices.
        self.hash = (self.hash ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// The Redis slot group of `key`, in `0..groups`. The same on every gateway and every
/// version (a golden test pins it): gateways that disagreed would not see each other's
/// demand. Unkeyed on purpose; a crafted key can only choose its group, which affects how
/// the load spreads over a cluster, not any decision.
pub(crate) fn group_of(key: &[u8], groups: u32) -> u32 {
    (xxh3_64(key) % u64::from(groups.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_whatever_their_container() {
        let b = KeyHashBuilder::new();
        let boxed: Box<[u8]> = Box::from(&b"alice"[..]);
        assert_eq!(b.hash_one(&boxed), b.hash_one(&b"alice"[..]));
        assert_ne!(b.hash_one(&b"alice"[..]), b.hash_one(&b"bob"[..]));
    }

    /// A user must not change group because we upgraded: gateways of two versions would not
    /// see each other's demand.
    #[test]
    fn groups_are_stable() {
        let got: Vec<u32> = [&b"alice"[..], b"10.0.0.1", b"", b"user-42"]
            .iter()
            .map(|k| group_of(k, 8))
            .collect();
        assert_eq!(got, GOLDEN);
    }

    const GOLDEN: [u32; 4] = [0, 6, 2, 5];
}
