//! Integration tests of `gateway::echo`, the demo cell backend, through real sockets.
#![allow(clippy::unwrap_used)]

mod answer;
mod args;
mod bodies;
mod faults;
mod lifecycle;
mod process;
mod support;
