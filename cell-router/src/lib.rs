//! Cell placement for Cellgate: which cell serves a routing key.
//!
//! A [`Placement`] is an immutable, precomputed view of the configured cells. The gateway
//! builds one per directory version, shares it in an `Arc`, and asks it, per request, for a
//! key's [`home`](Placement::home) cell or its full [ranking](Placement::rank_into) (home
//! first, then the fallbacks a drain moves users to). Queries take no lock and `home` never
//! allocates.
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
#![forbid(unsafe_code)]

mod cell;
mod error;
mod hash;
mod placement;

pub use cell::{CellIndex, CellSpec};
pub use error::PlacementError;
pub use hash::{KEY_HASH_SEED, RAMP_SEED, cell_seed, key_hash, ramp_point};
pub use placement::Placement;
