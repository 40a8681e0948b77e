//! Hashing of keys: a keyed xxh3 for the in-memory table, an unkeyed one for Redis slot groups.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The in-memory table's hash: xxh3 under a per-process random seed.
///
/// Keys are attacker-controlled (client addresses, header values), so the table's hash must
/// not be predictable: with a fixed hash, keys chosen to collide would turn every lookup into a
/// linear scan (HashDoS). xxh3 with a secret 64-bit seed costs a few nanoseconds for short
/// keys, against ~20 ns for the standard library's SipHash-1-3. The key's length is part of
/// xxh3's input, so no separate length prefix is needed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    pub(crate) fn new() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        // `RandomState` draws its keys from the operating system's randomness.
        let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x5eed_u64));
        Self { seed }
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        xxh3_64_with_seed(key, self.seed)
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
    fn the_table_hash_is_seeded_per_process() {
        let h = KeyHasher::new();
        assert_eq!(h.hash(b"alice"), KeyHasher::new().hash(b"alice"));
        assert_ne!(h.hash(b"alice"), h.hash(b"bob"));
        assert_ne!(h.hash(b"alice"), xxh3_64(b"alice"), "seeded");
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
