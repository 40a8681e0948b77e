//! Directory tests: drain ramps, operations and guards, pins, the routing table, the stored
//! JSON format and drain planning.
#![allow(clippy::unwrap_used)]

mod auto;
mod ops;
mod pins;
mod plan;
mod ramp;
mod serde;
mod support;
mod table;
