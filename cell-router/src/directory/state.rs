//! [`CellState`]: where a cell is in its drain lifecycle, and how far its ramp has gone.

use serde::{Deserialize, Serialize};

/// The lifecycle state of one cell, as stored in the [`Directory`](crate::Directory).
///
/// Ramps are described by their start and length, never by a stored progress, so every
/// gateway computes the same progress from the shared clock (`now_ms`, unix milliseconds)
/// without any further coordination. A gateway whose clock is `d` ms ahead sees every ramp
/// `d` ms further along: clock skew shifts the ramp by the skew, nothing worse.
///
/// Serialized internally tagged, e.g. `{"state":"draining","since_ms":1700000000000,"over_ms":60000}`
/// or `{"state":"drained"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CellState {
    /// Serving all of its users.
    #[default]
    Active,
    /// Moving its users away: the share sent away ramps linearly from 0 at `since_ms` to 1 at
    /// `since_ms + over_ms` (effective weight 1 → 0).
    Draining {
        /// Unix milliseconds at which the ramp is (or would have been) at 0.
        since_ms: u64,
        /// Length of a full ramp, in milliseconds; 0 is immediate.
        over_ms: u64,
    },
    /// Serving none of its own users (effective weight 0). Health checks continue.
    Drained,
    /// Taking its users back (slow start): the share sent away ramps linearly from 1 at
    /// `since_ms` to 0 at `since_ms + over_ms` (effective weight 0 → 1).
    Undraining {
        /// Unix milliseconds at which the ramp is (or would have been) at 0 progress.
        since_ms: u64,
        /// Length of a full ramp, in milliseconds; 0 is immediate.
        over_ms: u64,
    },
}

impl CellState {
    /// Fraction of the cell's own users currently sent away, in `[0, 1]`: `Active` 0,
    /// `Drained` 1, `Draining` its progress `p`, `Undraining` `1 - q` for its progress `q`.
    ///
    /// Progress is `(now_ms - since_ms) / over_ms` clamped to `[0, 1]`; a `now_ms` before
    /// `since_ms` (a gateway whose clock is behind) counts as 0 and `over_ms = 0` as 1. It is
    /// monotone in `now_ms`, so a draining cell only ever sends more users away.
    pub fn away(&self, now_ms: u64) -> f64 {
        match *self {
            Self::Active => 0.0,
            Self::Drained => 1.0,
            Self::Draining { since_ms, over_ms } => progress(since_ms, over_ms, now_ms),
            Self::Undraining { since_ms, over_ms } => 1.0 - progress(since_ms, over_ms, now_ms),
        }
    }

    /// The state after completed ramps settle: `Draining` at or past its end is `Drained`,
    /// `Undraining` at or past its end is `Active`; anything else is unchanged.
    ///
    /// `away` is the same before and after settling.
    pub fn settled(&self, now_ms: u64) -> CellState {
        match *self {
            Self::Draining { since_ms, over_ms } if done(since_ms, over_ms, now_ms) => {
                Self::Drained
            }
            Self::Undraining { since_ms, over_ms } if done(since_ms, over_ms, now_ms) => {
                Self::Active
            }
            ref other => other.clone(),
        }
    }

    /// The state's name as shown to operators and stored in the `state` field:
    /// `"active"`, `"draining"`, `"drained"` or `"undraining"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining { .. } => "draining",
            Self::Drained => "drained",
            Self::Undraining { .. } => "undraining",
        }
    }

    /// Progress of a ramp in `[0, 1]` (`None` outside a ramp), for progress bars.
    pub fn progress(&self, now_ms: u64) -> Option<f64> {
        match *self {
            Self::Draining { since_ms, over_ms } | Self::Undraining { since_ms, over_ms } => {
                Some(progress(since_ms, over_ms, now_ms))
            }
            Self::Active | Self::Drained => None,
        }
    }

    /// Unix milliseconds at which a ramp completes (`None` outside a ramp).
    pub fn ends_at_ms(&self) -> Option<u64> {
        match *self {
            Self::Draining { since_ms, over_ms } | Self::Undraining { since_ms, over_ms } => {
                Some(since_ms.saturating_add(over_ms))
            }
            Self::Active | Self::Drained => None,
        }
    }

    /// Whether the cell takes new users of its own by hash: `Active` or `Undraining`. This is
    /// what the drain [`Guard`](crate::Guard) counts.
    pub fn is_serving(&self) -> bool {
        matches!(self, Self::Active | Self::Undraining { .. })
    }
}

/// Whether a ramp starting at `since_ms` and lasting `over_ms` is complete at `now_ms`.
fn done(since_ms: u64, over_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(since_ms) >= over_ms
}

/// Ramp progress in `[0, 1]`; exactly 1 iff [`done`].
fn progress(since_ms: u64, over_ms: u64, now_ms: u64) -> f64 {
    let elapsed = now_ms.saturating_sub(since_ms);
    if elapsed >= over_ms {
        1.0
    } else {
        // elapsed < over_ms, so the ratio is < 1 (up to rounding, clamped for safety).
        (elapsed as f64 / over_ms as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn away_follows_the_ramp() {
        let draining = CellState::Draining {
            since_ms: T0,
            over_ms: 1000,
        };
        let undraining = CellState::Undraining {
            since_ms: T0,
            over_ms: 1000,
        };
        for (now, p) in [(T0 - 5, 0.0), (T0, 0.0), (T0 + 250, 0.25), (T0 + 1000, 1.0)] {
            assert_eq!(draining.away(now), p);
            assert_eq!(undraining.away(now), 1.0 - p);
        }
        assert_eq!(draining.away(u64::MAX), 1.0);
        assert_eq!(CellState::Active.away(T0), 0.0);
        assert_eq!(CellState::Drained.away(T0), 1.0);
    }

    #[test]
    fn zero_length_ramps_are_immediate() {
        let d = CellState::Draining {
            since_ms: T0,
            over_ms: 0,
        };
        let u = CellState::Undraining {
            since_ms: T0,
            over_ms: 0,
        };
        assert_eq!(d.away(0), 1.0);
        assert_eq!(d.settled(0), CellState::Drained);
        assert_eq!(u.away(0), 0.0);
        assert_eq!(u.settled(0), CellState::Active);
    }

    #[test]
    fn ramps_settle_at_their_end() {
        let d = CellState::Draining {
            since_ms: T0,
            over_ms: 10,
        };
        assert_eq!(d.settled(T0 + 9), d);
        assert_eq!(d.settled(T0 + 10), CellState::Drained);
        assert_eq!(d.ends_at_ms(), Some(T0 + 10));
        assert_eq!(d.progress(T0 + 5), Some(0.5));
        let u = CellState::Undraining {
            since_ms: u64::MAX - 1,
            over_ms: 10,
        };
        assert_eq!(u.settled(u64::MAX), u);
        assert_eq!(u.ends_at_ms(), Some(u64::MAX));
        assert_eq!(CellState::Drained.settled(T0), CellState::Drained);
        assert_eq!(CellState::Active.progress(T0), None);
    }

    #[test]
    fn names_match_the_serde_tag() {
        let states = [
            CellState::Active,
            CellState::Draining {
                since_ms: 1,
                over_ms: 2,
            },
            CellState::Drained,
            CellState::Undraining {
                since_ms: 1,
                over_ms: 2,
            },
        ];
        let names: Vec<_> = states.iter().map(CellState::name).collect();
        assert_eq!(names, ["active", "draining", "drained", "undraining"]);
        let serving: Vec<_> = states.iter().map(CellState::is_serving).collect();
        assert_eq!(serving, [true, false, false, true]);
    }
}
