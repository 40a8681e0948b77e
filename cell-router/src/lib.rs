//! Cell placement and the cell directory for Cellgate: which cell serves a routing key.
//!
//! A [`Placement`] is an immutable, precomputed view of the configured cells; a
//! [`RoutingTable`] adds the [`Directory`] (cell states, drain ramps, pins; see
//! [below](#directory-and-routing)). The gateway builds one table per directory version,
//! shares it in an `Arc`, and asks it, per request, for a key's [`Route`]. A placement alone
//! answers a key's [`home`](Placement::home) cell or its full
//! [ranking](Placement::rank_into) (home first, then the fallbacks a drain moves users to).
//! Queries take no lock; `home` never allocates, nor does `route` for up to 32 cells.
//!
//! Placement is weighted rendezvous (highest-random-weight) hashing: every cell scores every
//! key and the highest score wins. A cell with weight `w` gets `w / sum(weights)` of the keys;
//! removing or draining a cell moves only that cell's keys, each to its next-ranked cell; and
//! the configuration order of cells does not matter (it only breaks exact ties).
//!
//! # Hash construction
//!
//! This is a compatibility contract: instances of different versions must agree on every
//! key's cell. `tests/placement/golden.rs` pins it; `docs/placement.md` has a reference
//! implementation in Python and test vectors.
//!
//! - Cell seed: `seed_c = xxh3_64(name)`, XXH3 64-bit over the UTF-8 bytes of the cell name,
//!   seed 0 ([`cell_seed`]).
//! - Key hash for a cell: `h = xxh3_64_with_seed(key, seed_c)`.
//! - Uniform point: `u = ((h >> 12) + 0.5) / 2^52`, exact in `f64` and strictly inside `(0, 1)`.
//! - Score: `score = weight / -ln(u)`; weight 0 scores 0 and is never chosen.
//! - The highest score wins; an exact tie goes to the lower configuration index.
//!
//! Two more hashes of the key, independent of placement:
//!
//! - [`ramp_point`]: `(xxh3_64_with_seed(key, RAMP_SEED) >> 11) / 2^53`, in `[0, 1)`. During a
//!   drain ramp at progress `p`, a key moves once `ramp_point(key) < p`.
//! - [`key_hash`]: `xxh3_64_with_seed(key, KEY_HASH_SEED)`, logged instead of the raw key.
//!
//! # Example
//!
//! ```
//! use cell_router::{Placement, PlacementError};
//!
//! let placement = Placement::new([("cell-1", 1.0), ("cell-2", 1.0), ("cell-3", 1.0)])?;
//!
//! let home = placement.home(b"alice");
//! assert_eq!(placement.name(home), "cell-1");
//!
//! // Home first, then the fallbacks; reuse the buffer across requests.
//! let mut ranking = Vec::new();
//! placement.rank_into(b"alice", &mut ranking);
//! assert_eq!(ranking[0], home);
//! let names: Vec<&str> = ranking.iter().map(|&i| placement.name(i)).collect();
//! assert_eq!(names, ["cell-1", "cell-2", "cell-3"]);
//!
//! // Drained cell-1 (effective weight 0): alice moves to her next-ranked cell.
//! let drained = [0.0, 1.0, 1.0];
//! assert_eq!(placement.home_with_weights(b"alice", &drained), Some(ranking[1]));
//! # Ok::<(), PlacementError>(())
//! ```
//!
//! # Directory and routing
//!
//! The [`Directory`] is the shared, versioned document of cell states ([`CellState`]:
//! `active`, `draining`, `drained`, `undraining`) and pins. Its operations
//! ([`drain`](Directory::drain), [`undrain`](Directory::undrain),
//! [`evacuate`](Directory::evacuate), [`pin`](Directory::pin), [`unpin`](Directory::unpin))
//! are pure and return the next version. A [`RoutingTable`] combines a placement and a
//! directory version and answers [`route`](RoutingTable::route) per request.
//!
//! Time is always passed in as `now_ms`, unix milliseconds. Ramps are stored as a start and a
//! length, so every gateway computes the same progress from its own clock and all gateways
//! follow the same ramp; clock skew between gateways shifts the ramp by the skew.
//!
//! **Routing rule.** Walk the key's rendezvous ranking (configured weights; cells with weight
//! 0 excluded), starting at its home cell. At each cell take `away = state.away(now_ms)`
//! (0 active, 1 drained, the ramp progress `p` when draining, `1 - q` when undraining). If
//! `ramp_point(key) < away`, the key is moved on to the next cell of its ranking; otherwise
//! that cell serves it. Hence:
//!
//! - during a drain the moved set `{key : ramp_point(key) < p}` only grows as `p` grows, and
//!   during an undrain it only shrinks: no user flips back and forth;
//! - at `p = 1` the drained cell serves exactly 0 keys (`ramp_point` is in `[0, 1)`);
//! - users whose home is another, active cell never move; moved users go to their
//!   next-ranked cell, so they spread over all other cells in proportion to their weights.
//!
//! **Pins.** A pinned key starts at its pin's cell instead of its home. If that cell sends it
//! away by the same rule and the pin has `follow_drain` (the default), the key continues along
//! its own hash ranking, skipping the pin's cell, with the same rule; with
//! `follow_drain = false` it stays on the pin's cell whatever the cell's state. If every
//! candidate sends a key away (every cell drained), the key goes to where it started, its
//! pin's cell or else its home cell, with [`RouteReason::NoneAvailable`]: serving from a
//! drained cell beats failing the request.
//!
//! ```
//! use cell_router::{Directory, Guard, Placement, RouteReason, RoutingTable};
//!
//! let placement = Placement::new([("cell-1", 1.0), ("cell-2", 1.0), ("cell-3", 1.0)])?;
//! let t0 = 1_700_000_000_000; // unix ms, from the caller's clock
//!
//! // alice's home is cell-1; drain it over 60 s.
//! let dir = Directory::default().drain(&placement, "cell-1", 60_000, t0, Guard::default())?;
//! assert_eq!(dir.version, 1);
//! let table = RoutingTable::new(placement.clone(), &dir);
//!
//! // ramp_point("alice") is about 0.208: she stays until 20.8% of the ramp, then moves to
//! // her next-ranked cell, cell-2, and never comes back during the drain.
//! assert_eq!(table.route(b"alice", t0 + 12_000).reason, RouteReason::Home);
//! let moved = table.route(b"alice", t0 + 13_000);
//! assert_eq!(placement.name(moved.cell), "cell-2");
//! assert!(matches!(moved.reason, RouteReason::MovedByDrain { rank: 1, .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod cell;
pub mod containment;
mod directory;
mod error;
mod hash;
mod placement;

pub use cell::{CellIndex, CellSpec};
pub use directory::{
    CellState, Directory, DirectoryCell, DirectoryError, Guard, MAX_KEY_LEN, MAX_RAMP_MS,
    PLAN_SAMPLE_KEYS, Pin, Route, RouteReason, RoutingTable, plan_drain, validate_key,
};
pub use error::PlacementError;
pub use hash::{KEY_HASH_SEED, RAMP_SEED, cell_seed, key_hash, ramp_point};
pub use placement::Placement;
