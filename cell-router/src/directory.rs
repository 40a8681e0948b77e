//! The cell directory: cell states, drain ramps, pins, and routing with them.
//!
//! See the [crate docs](crate#directory-and-routing) for the routing rule and
//! `docs/directory.md` for the stored format.

mod document;
mod error;
mod ops;
mod plan;
mod route;
mod state;

pub use document::{Directory, DirectoryCell, Pin};
pub use error::DirectoryError;
pub use ops::{Guard, MAX_KEY_LEN, MAX_RAMP_MS, validate_key};
pub use plan::{PLAN_SAMPLE_KEYS, plan_drain};
pub use route::{Route, RouteReason, RoutingTable};
pub use state::CellState;
