//! Redis keys of the delivery queue, and delivery ids.
//!
//! Every key of one partition (one home cell) shares the hash tag `{dq:<cell>}`, so each
//! state transition is one Lua script on one Redis Cluster slot. The full table is in
//! `docs/delivery.md`.

use std::fmt::Write as _;

/// The consumer group every gateway's workers read through.
pub const GROUP: &str = "workers";

/// The keys of one partition: the entries whose target key's home cell is `cell`.
#[derive(Debug, Clone)]
pub struct Partition {
    cell: String,
    /// Work tokens: one entry (field `id`) per delivery that is due now.
    pub stream: String,
    /// Every accepted, undelivered entry: id → accepted (or replayed) time in ms. Its size is
    /// what `max_pending` bounds; its lowest score is the oldest entry's age.
    pub live: String,
    /// Retries and deferrals waiting for their time: id → due time in ms.
    pub delayed: String,
    /// The dead-letter index: id → dead time in ms. The entries' data stay in their records.
    pub dead: String,
}

impl Partition {
    /// The keys for `cell`'s partition.
    pub fn new(cell: &str) -> Partition {
        let tag = format!("{{dq:{cell}}}");
        Partition {
            cell: cell.to_owned(),
            stream: format!("{tag}:stream"),
            live: format!("{tag}:live"),
            delayed: format!("{tag}:delayed"),
            dead: format!("{tag}:dead"),
        }
    }

    /// The cell whose partition this is.
    pub fn cell(&self) -> &str {
        &self.cell
    }

    /// The record of delivery `id`: a hash with the stored request and its state.
    pub fn record(&self, id: &str) -> String {
        format!("{{dq:{}}}:d:{id}", self.cell)
    }

    /// The idempotency index of (`sender` routing key, `Idempotency-Key`): holds the id.
    /// Hashed, so neither key is stored in a key name.
    pub fn idempotency(&self, sender: &[u8], idempotency_key: &[u8]) -> String {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&(sender.len() as u64).to_le_bytes());
        h.update(sender);
        h.update(idempotency_key);
        format!("{{dq:{}}}:idem:{:032x}", self.cell, h.digest128())
    }
}

/// A new delivery id for an entry of `cell`'s partition: `<cell>.<32 hex digits>`.
///
/// The cell is part of the id so that a status lookup finds the record's slot without an
/// index; the random part is 128 bits, so ids are unguessable and never collide in practice.
pub fn new_id(cell: &str) -> String {
    let mut id = String::with_capacity(cell.len() + 33);
    id.push_str(cell);
    id.push('.');
    let _ = write!(id, "{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    id
}

/// The cell of a delivery id, if `id` is well formed.
pub fn cell_of(id: &str) -> Option<&str> {
    let (cell, random) = id.rsplit_once('.')?;
    let well_formed = !cell.is_empty()
        && random.len() == 32
        && random
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    well_formed.then_some(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_cell() {
        let id = new_id("cell.2");
        assert_eq!(cell_of(&id), Some("cell.2"));
        assert_ne!(new_id("cell.2"), id);
        assert_eq!(cell_of("cell-1"), None);
        assert_eq!(cell_of(".0123456789abcdef0123456789abcdef"), None);
        assert_eq!(cell_of("c.0123456789ABCDEF0123456789abcdef"), None);
        assert_eq!(cell_of("c.0123456789abcdef0123456789abcdef"), Some("c"));
    }

    #[test]
    fn keys_of_a_partition_share_one_hash_tag() {
        let p = Partition::new("cell-1");
        for key in [
            p.stream.clone(),
            p.live.clone(),
            p.delayed.clone(),
            p.dead.clone(),
            p.record("x"),
            p.idempotency(b"alice", b"k1"),
        ] {
            assert!(key.starts_with("{dq:cell-1}:"), "{key}");
        }
        assert_ne!(p.idempotency(b"alice", b"k1"), p.idempotency(b"bob", b"k1"));
        assert_ne!(p.idempotency(b"ab", b"c"), p.idempotency(b"a", b"bc"));
    }
}
