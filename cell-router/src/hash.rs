//! The hash construction behind placement, drain ramps and log hashes.
//!
//! Everything here is part of the compatibility contract: changing a seed, a shift or the
//! float mapping moves users between cells on upgrade. `tests/placement/golden.rs` pins the
//! outputs; `docs/placement.md` describes the construction for other implementations.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Seed of the xxh3 hash behind [`ramp_point`]: the ASCII bytes `"cellgate"` read as a
/// big-endian `u64`.
///
/// It differs from every cell seed (those are `xxh3_64(name)`), so a key's ramp point is
/// independent of where the key is placed.
pub const RAMP_SEED: u64 = 0x6365_6c6c_6761_7465;

/// Seed of the xxh3 hash behind [`key_hash`]: the ASCII bytes `"key-hash"` read as a
/// big-endian `u64`.
pub const KEY_HASH_SEED: u64 = 0x6b65_792d_6861_7368;

/// `2^-52`, exact in `f64`.
const TWO_POW_NEG_52: f64 = 1.0 / (1u64 << 52) as f64;

/// `2^-53`, exact in `f64`.
const TWO_POW_NEG_53: f64 = 1.0 / (1u64 << 53) as f64;

/// The per-cell hash seed: `xxh3_64(name)` over the UTF-8 bytes of the name, seed 0.
///
/// [`Placement`](crate::Placement) computes it once per cell at construction.
pub fn cell_seed(name: &str) -> u64 {
    xxh3_64(name.as_bytes())
}

/// A key's point in `[0, 1)` for drain ramps, independent of its placement.
///
/// `(xxh3_64_with_seed(key, RAMP_SEED) >> 11) / 2^53`. During a ramp with progress `p` in
/// `[0, 1]`, a key moves when `ramp_point(key) < p`; as `p` only grows, a key that has moved
/// never moves back, and a share `p` of the keys has moved.
pub fn ramp_point(key: &[u8]) -> f64 {
    // A 53-bit integer and a power-of-two scale: both conversions are exact.
    (xxh3_64_with_seed(key, RAMP_SEED) >> 11) as f64 * TWO_POW_NEG_53
}

/// A stable 64-bit hash of a routing key, for logs and metrics labels: `xxh3_64_with_seed(key,
/// KEY_HASH_SEED)`.
///
/// It keeps raw keys out of logs but it is pseudonymous, not secret: the hash is unkeyed, so
/// anyone can recompute it for a guessed key (`cellctl where` relies on this to correlate).
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, KEY_HASH_SEED)
}

/// Maps a hash to a uniform point strictly inside `(0, 1)`: `((h >> 12) + 0.5) / 2^52`.
///
/// 52 bits, not 53: the midpoint `(m + 0.5) / 2^53` of a 53-bit `m` needs 54 significant bits
/// and rounds to `1.0` at the top (`ln(1) = 0` would give an infinite score). With 52 bits every
/// step is exact, so any IEEE-754 implementation gets the same `u`, in `[2^-53, 1 - 2^-53]`.
pub(crate) fn unit_interval(h: u64) -> f64 {
    ((h >> 12) as f64 + 0.5) * TWO_POW_NEG_52
}

/// Weighted rendezvous score of one cell for a key: `weight / -ln(u)`, the logarithmic method.
///
/// `-ln(u)` is exponentially distributed, so `-ln(u) / weight` is exponential with rate
/// `weight` and the cell with the smallest such value (highest score) wins with probability
/// `weight / sum(weights)`. `u < 1` keeps `ln(u)` strictly negative, so a finite weight `>= 0`
/// gives a score that is never NaN; weight 0 scores 0.
pub(crate) fn score(key: &[u8], seed: u64, weight: f64) -> f64 {
    let u = unit_interval(xxh3_64_with_seed(key, seed));
    weight / -u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh3_matches_reference_vector() {
        // XXH3_64bits("") from the xxHash reference implementation: guards against the
        // dependency changing algorithm under us.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn unit_interval_is_strictly_inside_and_exact_at_the_edges() {
        assert_eq!(unit_interval(0), 2f64.powi(-53));
        assert_eq!(unit_interval(u64::MAX), 1.0 - 2f64.powi(-53));
        assert!(unit_interval(u64::MAX) < 1.0);
        assert!(unit_interval(0) > 0.0);
        // The low 12 bits are dropped.
        assert_eq!(unit_interval(0xfff), unit_interval(0));
    }

    #[test]
    fn scores_are_finite_and_ordered_by_weight() {
        for key in [&b""[..], b"alice", b"bob", &[0xff; 300]] {
            let light = score(key, 42, 1.0);
            let heavy = score(key, 42, 2.0);
            assert!(light.is_finite() && light > 0.0);
            assert_eq!(heavy, 2.0 * light);
            assert_eq!(score(key, 42, 0.0), 0.0);
        }
    }

    #[test]
    fn ramp_point_is_in_unit_interval_and_independent_of_key_hash() {
        for i in 0u32..1000 {
            let key = i.to_le_bytes();
            let p = ramp_point(&key);
            assert!((0.0..1.0).contains(&p));
            assert_ne!(key_hash(&key), xxh3_64(&key));
        }
    }

    #[test]
    fn seeds_spell_their_names() {
        assert_eq!(&RAMP_SEED.to_be_bytes(), b"cellgate");
        assert_eq!(&KEY_HASH_SEED.to_be_bytes(), b"key-hash");
    }
}
