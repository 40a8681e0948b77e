//! Containment tests: simulations of the request path, state machines and their invariants.
#![allow(clippy::unwrap_used)]

mod breaker;
mod bulkhead;
mod evacuation;
mod health;
mod outlier;
mod p2c;
mod retry;
mod shed;
mod support;
