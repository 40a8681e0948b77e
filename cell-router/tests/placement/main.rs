//! Placement tests: golden vectors, properties of the ranking, and how keys spread.
#![allow(clippy::unwrap_used)]

mod distribution;
mod golden;
mod properties;
mod support;
