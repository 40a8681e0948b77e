//! [`Lease`]: which gateway may make automatic directory changes, and the fencing token of
//! its term.
//!
//! Guarded auto-evacuation must be decided by one gateway at a time. Gateways compete for a
//! lease in the store ([`DirectoryStore::acquire_lease`](super::DirectoryStore::acquire_lease));
//! every acquisition draws a new, larger fencing token, and every automatic write is a
//! [`compare_and_set_fenced`](super::DirectoryStore::compare_and_set_fenced) that the store
//! refuses unless the lease still holds the writer's token. A gateway that paused past its
//! lease (a long GC-like stall, SIGSTOP, a partition) therefore cannot act on a decision made
//! before the pause: by then the lease is gone or someone else's.

use std::fmt;

use serde::Serialize;

/// One term of the automation lease: its holder and fencing token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The gateway id of the holder.
    pub holder: String,
    /// Drawn from a counter in the store at acquisition: each term's token is larger than
    /// every earlier one.
    pub token: u64,
}

impl Lease {
    /// The stored form: `"<token> <holder>"`.
    pub(crate) fn value(&self) -> String {
        format!("{} {}", self.token, self.holder)
    }

    /// Parses the stored form; `None` for anything else.
    pub(crate) fn parse(value: &str) -> Option<Lease> {
        let (token, holder) = value.split_once(' ')?;
        Some(Lease {
            holder: holder.to_owned(),
            token: token.parse().ok()?,
        })
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (token {})", self.holder, self.token)
    }
}

/// The outcome of [`acquire_lease`](super::DirectoryStore::acquire_lease).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// The caller holds the lease: newly acquired (a new token) or renewed (the same one).
    Held(Lease),
    /// Another term is in force (another gateway's, or an earlier term of the caller's own id
    /// that it no longer knows about, e.g. before a restart): wait for it to expire.
    Taken(Lease),
}

impl LeaseState {
    /// The lease, if the caller holds it.
    pub fn held(&self) -> Option<&Lease> {
        match self {
            LeaseState::Held(lease) => Some(lease),
            LeaseState::Taken(_) => None,
        }
    }

    /// The lease in force, whoever holds it.
    pub fn lease(&self) -> &Lease {
        match self {
            LeaseState::Held(lease) | LeaseState::Taken(lease) => lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips_holders_with_spaces() {
        let lease = Lease {
            holder: "gw 1".into(),
            token: 42,
        };
        assert_eq!(lease.value(), "42 gw 1");
        assert_eq!(Lease::parse(&lease.value()), Some(lease));
        assert_eq!(Lease::parse("gw-1"), None);
        assert_eq!(Lease::parse("x gw-1"), None);
    }
}
