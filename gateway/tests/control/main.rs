//! The control plane against real `redis-server` processes (and the in-memory store where the
//! contract is the same): compare-and-set races, propagation between gateways, static
//! stability when Redis freezes or dies, booting from `state_dir`, heartbeats.
//!
//! Every test starts its own Redis on a free port, so tests run in parallel; waits poll a
//! condition against a deadline.

#![allow(clippy::unwrap_used, missing_docs)]

mod boot;
mod cas;
mod conformance;
mod heartbeat;
mod propagation;
mod stability;
mod support;
